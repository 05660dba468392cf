//! How soon a killed worker's death reaches its caller: `SIGKILL` sent to a worker busy in a
//! call, until `fetch` returns `WorkerDied`; once for a plain worker, once for a worker whose
//! forked helper keeps its sockets open (so the death can only be seen through the pidfd).
//! The baseline, in the same run: a raw forked child killed while the parent polls its pidfd.
//!
//! Prints, per variant, `death <variant> p50 <µs> p99 <µs>` (read by `cargo xtask bench`).

ptools_workerset::enable_test_support!();

use std::time::{Duration, Instant};

use ptools_workerset::{Cluster, Error};

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn fork_sleeping_helper(_: ()) -> i32 {
    // SAFETY: the child only calls async-signal-safe functions (sleep, _exit).
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            libc::sleep(60);
            libc::_exit(0);
        }
        pid
    }
}

fn raw_round() -> Duration {
    let mut ready = [0; 2];
    // SAFETY: `ready` is a valid array of two ints.
    assert_eq!(unsafe { libc::pipe(ready.as_mut_ptr()) }, 0);
    // SAFETY: the child only calls async-signal-safe functions (write, pause, _exit).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: as above; the byte says the child runs.
        unsafe {
            libc::write(ready[1], [1u8].as_ptr().cast(), 1);
            libc::pause();
            libc::_exit(0)
        }
    }
    // SAFETY: waits for the child's byte, so it is running (as a busy worker is) when killed.
    unsafe {
        let mut b = 0u8;
        libc::read(ready[0], (&mut b as *mut u8).cast(), 1);
        libc::close(ready[0]);
        libc::close(ready[1]);
    }
    // SAFETY: raw syscall on our own unreaped child.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    assert!(fd >= 0, "pidfd_open");
    let t = Instant::now();
    // SAFETY: plain syscalls on our own child and its pidfd.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        libc::poll(&mut p, 1, -1);
    }
    let dt = t.elapsed();
    // SAFETY: reaping our own child and closing our own descriptor.
    unsafe {
        libc::waitpid(pid, std::ptr::null_mut(), 0);
        libc::close(fd);
    }
    dt
}

fn worker_round(c: &Cluster, with_helper: bool) -> Duration {
    let id = c.addprocs(1).expect("addprocs")[0];
    let pid = c.pid(id).expect("pid");
    let helper = with_helper.then(|| c.remotecall_fetch(id, fork_sleeping_helper, ()).unwrap());
    let r = c.remotecall(id, sleep_ms, 60_000).expect("remotecall");
    // Let the call start, so the worker is busy in it when killed.
    c.ping(id, Duration::from_secs(10)).expect("ping");
    let t = Instant::now();
    // SAFETY: plain syscall on our own unreaped child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let e = r.fetch().expect_err("the call must fail");
    let dt = t.elapsed();
    assert!(matches!(e, Error::WorkerDied { .. }), "{e:?}");
    if let Some(h) = helper {
        // SAFETY: plain syscall; the helper was re-parented, not ours to reap.
        unsafe { libc::kill(h, libc::SIGKILL) };
    }
    dt
}

fn report(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    println!(
        "death {name:<14} p50 {:>9.1} p99 {:>9.1}",
        at(0.5),
        at(0.99)
    );
}

fn main() {
    let rounds = std::env::args()
        .skip(1)
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(100);
    println!("SIGKILL to the death seen, {rounds} rounds; times in microseconds");
    let c = Cluster::new();
    let (mut raw, mut plain, mut held) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        raw.push(raw_round());
        plain.push(worker_round(&c, false));
        held.push(worker_round(&c, true));
    }
    report("raw_pidfd", raw);
    report("worker", plain);
    report("helper_holds", held);
}
