//! The ptools tour: every facility that has landed, at work on one real computation, timed
//! against a sequential baseline, leaving nothing behind.
//!
//! ```text
//! cargo run --release --example tour                 # defaults: well under a minute on 2 cores
//! cargo run --release --example tour -- --size 2048  # a larger picture
//! ```
//!
//! 1. Shared memory: a second copy of this program attaches to a shared array by name and
//!    computes half of a Julia-set field while this process computes the other half; this
//!    process reads the whole field and writes it as a PNG picture.
//! 2. pfork: forked children render the Mandelbrot set straight into a shared array, then
//!    fan out again to measure the picture, each child returning its share.
//! 3. Workers: worker processes (this program again, in worker mode) render another
//!    fractal band by band through a `WorkerSet`, round-robin and then first-free, with
//!    progress as the bands come back.
//! 4. Server tasks: one long-running task per worker keeps a shared frame mapped and its
//!    own state between calls, rendering an animation frame by frame.
//! 5. Queued tasks: tiles of a picture go through a priority queue, nearest a focus first;
//!    halfway, the focus moves and every queued tile's priority is recomputed; the picture
//!    is tinted by the order the tiles came back, so the priorities show.
//! 6. Workers over TCP: the program joins as workers over authenticated TCP connections
//!    through a launcher (a local shell standing in for `ssh`, `mpirun` or `srun`) and
//!    renders part 3's fractal again.
//!
//! The pictures are compressed PNG files in the system's temporary directory, named
//! `ptools-tour-<run>-<part>.png` with `<run>` unique to the run, so no run overwrites
//! another's.

mod fork_part;
mod fractal;
mod picture;
mod queue_part;
mod remote_part;
mod shm_part;
mod stasks_part;
mod workers_part;

use std::time::{Duration, Instant};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    // Worker mode: a copy of the tour started as a ptools worker serves calls here and
    // never returns.
    ptools::workerset::init();
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(shm_part::SHM_CHILD) {
        return shm_part::shm_child(&args[2..]);
    }
    let size = parse_size(&args)?;
    println!("ptools tour: {size} x {size} pictures, {} cores\n", cores());
    let started = Instant::now();
    shm_part::run(size)?;
    // pfork before any worker exists: see fork_part's docs.
    fork_part::run(size)?;
    workers_part::run(size)?;
    stasks_part::run(size)?;
    queue_part::run(size)?;
    remote_part::run(size)?;
    // Check the promise rather than print it: no segment of this job is left.
    let job = ptools::shm::Prefix::job();
    let left: Vec<String> = ptools::shm::list_shm()?
        .into_iter()
        .filter(|s| s.prefix.starts_with(job.as_str()))
        .map(|s| s.segment)
        .collect();
    if !left.is_empty() {
        return Err(format!("segments left behind: {left:?}").into());
    }
    println!(
        "\ntour done in {:.2} s; no segment of this job is left in /dev/shm",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn parse_size(args: &[String]) -> Result<usize, BoxError> {
    match args.iter().position(|a| a == "--size") {
        None => Ok(1024),
        Some(i) => {
            let v = args.get(i + 1).ok_or("--size needs a value")?;
            let n: usize = v.parse().map_err(|_| format!("--size {v}: not a number"))?;
            if !(16..=16384).contains(&n) {
                return Err(format!("--size {n}: choose 16 to 16384").into());
            }
            Ok(n)
        }
    }
}

pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub(crate) fn wait_with_timeout(
    child: &mut std::process::Child,
    limit: Duration,
) -> Result<std::process::ExitStatus, BoxError> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the second process timed out".into());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
