//! A small test runner for test binaries without the libtest harness, and helpers for tests
//! that fork on their own.
//!
//! pfork refuses to fork a multi-threaded process by default, and libtest runs each test on a
//! thread of its own; these binaries use a plain `main` that runs the tests one by one on the
//! main thread. The runner also checks after every test that no child process is left (neither
//! running nor a zombie) and kills and reaps any it finds, so a failing test leaves nothing.
#![allow(dead_code, unreachable_pub)]

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Tests that fork take this lock (they run one at a time anyway in these binaries; the lock
/// keeps that true if the runner ever runs tests in parallel).
pub static FORK_LOCK: Mutex<()> = Mutex::new(());

/// A whole test binary gets this long before SIGALRM ends it (and, through
/// PR_SET_PDEATHSIG, every child of it): nothing hangs forever, even on a bug.
const WATCHDOG_SECS: u32 = 600;

/// Runs the `(name, test)` pairs whose name contains the first free argument (all when none),
/// or exactly matches it after `--exact`. Exits with 1 if any failed.
pub fn run(tests: &[(&str, fn())]) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let exact = args.iter().any(|a| a == "--exact");
    if args.iter().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        return;
    }
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned();
    // SAFETY: alarm takes a number of seconds and has no preconditions.
    unsafe { libc::alarm(WATCHDOG_SECS) };
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, test) in tests {
        let selected = match &filter {
            None => true,
            Some(f) if exact => f == name,
            Some(f) => name.contains(f.as_str()),
        };
        if !selected {
            continue;
        }
        ran += 1;
        wait_single_threaded();
        print!("test {name} ... ");
        let _ = std::io::stdout().flush();
        let result = {
            let _guard = FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner());
            panic::catch_unwind(AssertUnwindSafe(test))
        };
        let leftovers = reap_leftovers();
        match (result, leftovers.is_empty()) {
            (Ok(()), true) => println!("ok"),
            (Ok(()), false) => {
                println!("FAILED (left child processes behind: {leftovers:?})");
                failed.push(*name);
            }
            (Err(_), _) => {
                println!("FAILED");
                failed.push(*name);
            }
        }
    }
    println!("\n{ran} run, {} failed: {failed:?}", failed.len());
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

/// Threads this process has (from /proc/self/status).
pub fn thread_count() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("Threads: line")
}

/// A joined thread can stay counted for a moment; wait (bounded) until only main is left.
fn wait_single_threaded() {
    let start = Instant::now();
    while thread_count() > 1 && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Pids of this process's children (running or zombie), from /proc/self/task/*/children.
pub fn children() -> Vec<libc::pid_t> {
    let mut pids = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return pids;
    };
    for task in tasks.flatten() {
        let path = task.path().join("children");
        if let Ok(list) = std::fs::read_to_string(path) {
            pids.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<libc::pid_t>().ok()),
            );
        }
    }
    pids
}

/// Kills and reaps every child still there; returns their pids (empty: nothing was left).
fn reap_leftovers() -> Vec<libc::pid_t> {
    let pids = children();
    for &pid in &pids {
        // `pid` is our own unreaped child, so the pid is still its.
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let _ = wait_timeout(pid, Duration::from_secs(30));
    }
    pids
}

/// Waits for our child `pid` for at most `limit`; `None` if it did not end in time (it is then
/// killed and reaped, so nothing is left behind).
pub fn wait_timeout(pid: libc::pid_t, limit: Duration) -> Option<libc::c_int> {
    let start = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid, writable int; `pid` is our own child.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc == pid {
            return Some(status);
        }
        if rc < 0 {
            panic!("waitpid({pid}): {}", std::io::Error::last_os_error());
        }
        if start.elapsed() > limit {
            // `pid` is our own unreaped child, so the pid is still its.
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            // SAFETY: `status` is a valid, writable int; after SIGKILL the child ends, so
            // this wait returns.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            return None;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Forks a helper process that runs `body` and exits with the code it returns (101 if it
/// panics). The helper dies with the test process.
pub fn fork_helper(body: impl FnOnce() -> i32) -> libc::pid_t {
    let _ = std::io::stdout().flush();
    // SAFETY: the test process is single-threaded (this runner), so the child may run any
    // code; it leaves with _exit and never returns into the runner.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
        let code = panic::catch_unwind(AssertUnwindSafe(body)).unwrap_or(101);
        let _ = std::io::stdout().flush();
        // SAFETY: _exit is always sound; the helper must not return into the runner.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// Runs `body` in a helper process and asserts it exits with 0 within `limit`.
pub fn in_helper(limit: Duration, body: impl FnOnce() -> i32) {
    let pid = fork_helper(body);
    let status = wait_timeout(pid, limit).expect("helper timed out");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "helper failed, wait status {status:#x}"
    );
}

/// A pipe (read end, write end) for tests; both ends close-on-exec.
pub fn pipe() -> (std::fs::File, std::fs::File) {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2");
    (r.into(), w.into())
}

/// Blocks the calling (child) process until it is killed.
pub fn sleep_forever() -> ! {
    loop {
        // Returns only after a handled signal.
        nix::unistd::pause();
    }
}
