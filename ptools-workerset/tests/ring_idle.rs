//! An idle cluster uses no CPU: the shared-memory ring spins only for a short while after
//! each frame, then both sides sleep on a futex. Alone in its binary, so that no other
//! test's threads count in this process's CPU time.

ptools_workerset::enable_test_support!();

use std::time::Duration;

use ptools_workerset::Cluster;

fn add1(x: u64) -> u64 {
    x + 1
}

/// Nanoseconds a process has run on a CPU, all its threads summed (`/proc/PID/stat`
/// utime + stime are in clock ticks; the scheduler's per-thread `schedstat` is exact).
fn cpu_ns(pid: i32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|t| {
            std::fs::read_to_string(t.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

#[test]
fn an_idle_cluster_uses_no_cpu_after_busy_calls() {
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    for &id in &ids {
        for x in 0..2000 {
            assert_eq!(c.remotecall_fetch(id, add1, x).unwrap(), x + 1);
        }
    }
    // Past every spin.
    std::thread::sleep(Duration::from_millis(100));
    let me = std::process::id() as i32;
    let pids: Vec<i32> = ids.iter().map(|&id| c.pid(id).unwrap()).collect();
    let before: Vec<u64> = pids.iter().map(|&p| cpu_ns(p)).collect();
    let master_before = cpu_ns(me);
    let idle = Duration::from_millis(500);
    std::thread::sleep(idle);
    for (p, b) in pids.iter().zip(&before) {
        let used = cpu_ns(*p) - b;
        // A spinning worker would use all of it; a sleeping one, nothing to speak of.
        assert!(
            used < 10_000_000,
            "worker {p} used {used} ns of CPU in {idle:?} idle"
        );
    }
    let used = cpu_ns(me) - master_before;
    assert!(
        used < 20_000_000,
        "master used {used} ns of CPU in {idle:?} idle"
    );
}
