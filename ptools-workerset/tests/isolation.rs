//! What a worker inherits, and how long it lives: only its two sockets, its two
//! shared-memory regions and its ring (memfds, never in /dev/shm; the ring mapped, its
//! descriptor closed once mapped, in the worker and in the master) and stdio; workers
//! started from a thread that then ends keep running (the death signal follows the
//! spawning thread, so the crate forks from a long-lived thread of its own).

ptools_workerset::enable_test_support!();

use std::os::fd::{FromRawFd, OwnedFd};

use ptools_workerset::Cluster;

/// The worker's open descriptors, and the environment variable's presence.
fn open_fds(_: ()) -> (Vec<i32>, bool) {
    // Collect first, then drop the directory handle: its own descriptor is not counted.
    let names: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let mut fds: Vec<i32> = names
        .iter()
        .filter_map(|n| n.parse().ok())
        .filter(|&fd| {
            // SAFETY: fcntl(F_GETFD) only probes whether the descriptor is still open.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
            flags != -1
        })
        .collect();
    fds.sort_unstable();
    (fds, std::env::var_os("PTOOLS_WORKER_FD").is_some())
}

#[test]
fn workers_inherit_only_their_sockets_and_stdio() {
    // A descriptor opened without O_CLOEXEC, as a C library might.
    let path = c"/proc/self/exe";
    // SAFETY: a valid NUL-terminated path; the result is checked and owned below.
    let raw = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY) };
    assert!(raw >= 0);
    // SAFETY: `raw` was just opened and is owned by nobody else.
    let leaky = unsafe { OwnedFd::from_raw_fd(raw) };
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    let (fds, env) = c.remotecall_fetch(id, open_fds, ()).unwrap();
    drop(leaky);
    assert!(!env, "PTOOLS_WORKER_FD must be cleared in the worker");
    assert_eq!(&fds[..3], &[0, 1, 2]);
    // Two sockets and two memfds, nothing else: the ring is mapped, its descriptor closed.
    assert_eq!(fds.len(), 7, "worker descriptors: {fds:?}");
    let (mut sockets, mut memfds, mut rings) = (0, 0, 0);
    for fd in &fds[3..] {
        let link = std::fs::read_link(format!("/proc/{}/fd/{fd}", c.pid(id).unwrap())).unwrap();
        let link = link.to_string_lossy();
        if link.starts_with("socket:") {
            sockets += 1;
        } else if link.starts_with("/memfd:ptools-zerocopy") {
            memfds += 1;
        } else if link.starts_with("/memfd:ptools-ring") {
            rings += 1;
        } else {
            panic!("{fd} -> {link:?}");
        }
    }
    assert_eq!(
        (sockets, memfds, rings),
        (2, 2, 0),
        "worker descriptors: {fds:?}"
    );
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", c.pid(id).unwrap())).unwrap();
    assert!(
        maps.contains("/memfd:ptools-ring"),
        "the worker maps its ring"
    );
    // Nor does the master keep a ring descriptor (its mapping holds the file). Another
    // test of this binary may be starting workers meanwhile, whose rings are open until
    // their handshakes end: a descriptor kept for good is still there two seconds on.
    let master_rings = || {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|l| l.to_string_lossy().starts_with("/memfd:ptools-ring"))
            .count()
    };
    let t0 = std::time::Instant::now();
    while master_rings() > 0 && t0.elapsed() < std::time::Duration::from_secs(2) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        master_rings(),
        0,
        "ring descriptors left open in the master"
    );
    assert_eq!(c.remotecall_fetch(id, |x: u8| x + 1, 1).unwrap(), 2);
}

#[test]
fn workers_outlive_the_thread_that_started_them() {
    let c = Cluster::new();
    let ids = std::thread::scope(|s| s.spawn(|| c.addprocs(2).unwrap()).join().unwrap());
    // The starting thread has ended; PR_SET_PDEATHSIG would have fired by now if the
    // workers had been forked from it. A round trip proves they are alive.
    std::thread::sleep(std::time::Duration::from_millis(100));
    for &id in &ids {
        assert_eq!(c.remotecall_fetch(id, |x: u8| x + 1, 1).unwrap(), 2);
    }
    assert_eq!(c.workers(), ids);
}
