//! Workers that fail to start or to handshake: typed errors within the timeout, and
//! nothing left registered or running.

ptools_workerset::enable_test_support!();

use std::time::Duration;

use ptools_workerset::{Cluster, Error};

/// Every child of this process that is still around (zombie or not).
fn children() -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut v = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Field 4 (after the parenthesised name) is the parent pid.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        if rest.split(' ').nth(1) == Some(me.as_str()) {
            v.push(pid);
        }
    }
    v
}

#[test]
fn another_build_is_rejected() {
    let dir = std::env::temp_dir().join(format!("ptools-ws-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join("copy-of-test-binary");
    // Copied by another process: a copy written here would hold a writable descriptor of
    // the file for a moment, which a worker forked meanwhile by a test on another thread
    // inherits until its exec, and starting the copy would then fail with ETXTBSY.
    let cp = std::process::Command::new("cp")
        .arg(std::env::current_exe().unwrap())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(cp.success());
    let c = Cluster::builder()
        .program(&copy)
        .start_timeout(Duration::from_secs(30))
        .build();
    let r = c.addprocs(2);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(r, Err(Error::BuildMismatch)), "{r:?}");
    assert_eq!(c.procs(), vec![1]);
}

#[test]
fn a_program_that_exits_is_reported() {
    let c = Cluster::builder().program("/bin/false").build();
    let r = c.addprocs(1);
    assert!(
        matches!(&r, Err(Error::WorkerStartFailed(m)) if m.contains("exit code 1")),
        "{r:?}"
    );
    assert_eq!(c.procs(), vec![1]);
}

#[test]
fn a_missing_program_is_reported() {
    let c = Cluster::builder().program("/nonexistent/ptools").build();
    let r = c.addprocs(1);
    assert!(matches!(&r, Err(Error::WorkerStartFailed(_))), "{r:?}");
}

#[test]
fn no_handshake_times_out_and_kills() {
    let c = Cluster::builder()
        .program("/bin/sleep")
        .args(["600"])
        .start_timeout(Duration::from_millis(300))
        .build();
    let r = c.addprocs(2);
    assert!(
        matches!(&r, Err(Error::WorkerStartFailed(m)) if m.contains("timeout")),
        "{r:?}"
    );
    assert_eq!(c.procs(), vec![1]);
    // Both sleepers were killed and reaped (other tests' workers are children too, but
    // none of them runs /bin/sleep).
    for pid in children() {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
        assert!(
            !exe.to_string_lossy().contains("sleep"),
            "sleep {pid} left behind"
        );
    }
}

#[test]
fn zero_workers_is_fine() {
    let c = Cluster::new();
    assert_eq!(c.addprocs(0).unwrap(), Vec::<usize>::new());
    assert_eq!(c.workers(), vec![1]);
    assert_eq!(c.nworkers(), 1);
}
