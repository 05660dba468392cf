//! Server tasks in a few seconds: PTools.jl's example (each task writes its worker id into
//! its stripe of two shared arrays), state kept between calls, and a handler panic that
//! fails only its own task.
//!
//! `cargo run -p ptools-stasks --example stasks`

use ptools_shm::{Prefix, ShmCfg};
use ptools_stasks::{Error, PmapError, TaskContext};

fn main() {
    ptools_workerset::init(); // a worker never gets past this line
    if let Err(e) = tour_stasks() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

/// The server-task part of the tour: runs on the default cluster's workers (starting one
/// per core, explicitly, if there are none), prints what it does, and leaves nothing
/// behind.
pub fn tour_stasks() -> Result<(), Error> {
    /// PTools.jl's `init_task`: task `offset` of `ntasks` writes `myid()` at
    /// `offset:ntasks:end` of both arrays.
    fn init_task(ctx: &mut TaskContext, (): ()) -> usize {
        let (offset, ntasks, me) = (ctx.task(), ctx.ntasks(), ctx.myid());
        let svar1 = ctx.array_mut::<i32>("svar1").expect("svar1 is configured");
        for x in svar1.iter_mut().skip(offset).step_by(ntasks) {
            *x = me as i32;
        }
        let svar2 = ctx.array_mut::<u8>("svar2").expect("svar2 is configured");
        for x in svar2.iter_mut().skip(offset).step_by(ntasks) {
            *x = me as u8;
        }
        me
    }

    /// Keeps a running count and sum in the task's own storage.
    fn accumulate(ctx: &mut TaskContext, x: f64) -> (u64, f64) {
        let (n, sum) = ctx.get_or_insert_with("acc", || (0u64, 0.0f64));
        *n += 1;
        *sum += x;
        (*n, *sum / *n as f64)
    }

    /// Panics in the task that is asked to; the others answer.
    fn maybe_panic(ctx: &mut TaskContext, panic: bool) -> u64 {
        if panic {
            panic!("task {} was asked to panic", ctx.task());
        }
        ctx.get::<(u64, f64)>("acc").map_or(0, |acc| acc.0)
    }

    let cfgs = [
        ShmCfg::new::<i32>("svar1", 64 * 1024)?,
        ShmCfg::new::<u8>("svar2", [100, 100])?,
    ];
    // `start_stasks(&cfgs, &prefix)` needs workers already; this asks for one per core
    // when there are none.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut h = ptools_stasks::STasks::builder()
        .addprocs_if_none(cores)
        .start(&cfgs, &Prefix::job())?;
    let n = ptools_stasks::count_stasks(&h);
    println!(
        "{n} server tasks on workers {:?}, arrays under prefix {}",
        h.workers(),
        h.prefix()
    );

    // 1. PTools.jl's example: every task fills its stripe; the master reads the result.
    let ids = ptools_stasks::pmap_stasks(&h, init_task, vec![(); n])?;
    let svar1 = h.array::<i32>("svar1")?;
    let right = svar1
        .iter()
        .enumerate()
        .all(|(i, &x)| x == ids[i % n] as i32);
    println!(
        "svar1: {} elements, each written by the right task: {right}",
        svar1.len()
    );

    // 2. State kept between calls, per task.
    let mut last = Vec::new();
    for call in 0..1000 {
        let args: Vec<f64> = (0..n).map(|t| (call * (t + 1)) as f64).collect();
        last = ptools_stasks::pmap_stasks(&h, accumulate, args)?;
    }
    println!("after 1000 calls, (count, mean) per task: {last:?}");

    // 3. A panic fails only its own task; the task's state survives it.
    let mut asks = vec![false; n];
    asks[0] = true;
    match ptools_stasks::pmap_stasks(&h, maybe_panic, asks) {
        Err(PmapError::Failed(outcomes)) => {
            for (task, o) in outcomes.iter().enumerate() {
                match o {
                    Ok(count) => println!("task {task}: ok, {count} calls so far"),
                    Err(e) => println!("task {task}: {e}"),
                }
            }
        }
        other => println!("unexpected: {other:?}"),
    }
    let counts = ptools_stasks::pmap_stasks(&h, maybe_panic, vec![false; n])?;
    println!("state after the panic, calls per task: {counts:?}");

    // 4. Stop: every task drops its state and mappings, the arrays are unlinked.
    ptools_stasks::stop_stasks(&mut h)?;
    println!("stopped; using the handle now gives: {:?}", {
        ptools_stasks::pmap_stasks(&h, maybe_panic, vec![false; n]).map_err(Error::from)
    });
    Ok(())
}
