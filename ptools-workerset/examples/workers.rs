//! Two workers, remote calls, a first-free `WorkerSet` and `pmap`: the one line of worker
//! support in `main` is `ptools_workerset::init()`.
//!
//! Run with `cargo run -p ptools-workerset --example workers`.

use ptools_workerset::{WorkerSet, addprocs, myid, pmap, remotecall, remotecall_fetch};

fn hello(name: String) -> String {
    format!(
        "hello {name} from worker {} (pid {})",
        myid(),
        std::process::id()
    )
}

fn collatz_len(mut n: u64) -> u32 {
    let mut steps = 0;
    while n != 1 {
        n = if n.is_multiple_of(2) {
            n / 2
        } else {
            3 * n + 1
        };
        steps += 1;
    }
    steps
}

fn main() -> Result<(), ptools_workerset::Error> {
    ptools_workerset::init();
    let ids = addprocs(2)?;
    println!("{}", remotecall_fetch(ids[0], hello, "master".to_string())?);
    let r = remotecall(ids[1], |(a, b): (u64, u64)| a * b, (6, 7))?;
    let on = r.worker();
    println!("6 * 7 = {} (computed on worker {on})", r.fetch()?);
    let ws = WorkerSet::new(&ids)?; // first-free, the default mode
    println!("{}", ws.remotecall_fetch(hello, "set".to_string())?);
    let lens = pmap(collatz_len, 1..=100_000u64)?;
    let (best, len) = lens.iter().enumerate().max_by_key(|(_, l)| **l).unwrap();
    println!(
        "longest Collatz chain below 100000 starts at {} ({len} steps)",
        best + 1
    );
    Ok(())
}
