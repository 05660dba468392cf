//! Workers that send what they should not: junk before or during the handshake, a corrupt
//! stream after it, frames over the cap, a death hidden by a helper holding the sockets,
//! and a worker started by hand. Each ends in a typed error for that worker alone, within
//! the time the stream allows, with no process left behind.

ptools_workerset::enable_test_support!();

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ptools_workerset::__test_hooks::write_raw_to_data_link;
use ptools_workerset::{Cluster, Error, Termination};

fn add1(x: u64) -> u64 {
    x + 1
}

fn sleep_ms(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn len_of(v: Vec<u8>) -> usize {
    v.len()
}

fn make_vec(n: usize) -> Vec<u8> {
    vec![7; n]
}

/// Writes `bytes` past the framing, then sits idle for a minute (so only the master's
/// reading of the stream can end the call).
fn write_junk_then_idle(bytes: Vec<u8>) {
    std::thread::sleep(Duration::from_millis(100));
    write_raw_to_data_link(&bytes).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

/// Forks a helper that keeps every descriptor of the worker (its sockets too) and sleeps;
/// returns its pid.
fn fork_sleeping_helper(_: ()) -> i32 {
    // SAFETY: the child only calls async-signal-safe functions (sleep, _exit).
    unsafe {
        let pid = libc::fork();
        if pid == 0 {
            libc::sleep(120);
            libc::_exit(0);
        }
        pid
    }
}

/// The live children of this process, from every thread's `children` list.
fn children() -> Vec<i32> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let list = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        out.extend(
            list.split_whitespace()
                .filter_map(|p| p.parse::<i32>().ok()),
        );
    }
    out
}

/// The children running the bash scripts below (`bash`, or the `sleep` it became); other
/// tests of this binary run at the same time, and their workers are children too.
fn script_children() -> Vec<i32> {
    children()
        .into_iter()
        .filter(|p| {
            let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
            matches!(comm.trim(), "bash" | "sleep")
        })
        .collect()
}

/// A cluster whose worker program is a bash script run with the worker's descriptors:
/// `$fd` is its data socket.
fn bash_cluster(script: &str, start_timeout: Duration) -> Cluster {
    Cluster::builder()
        .program("/bin/bash")
        .args(["-c", &format!("fd=${{PTOOLS_WORKER_FD%%,*}}; {script}")])
        .start_timeout(start_timeout)
        .build()
}

/// The bash-script tests run one at a time, so each sees only its own script's process.
static SCRIPTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn start_failed(r: ptools_workerset::Result<Vec<usize>>) -> String {
    match r {
        Err(Error::WorkerStartFailed(m)) => m,
        other => panic!("expected WorkerStartFailed, got {other:?}"),
    }
}

#[test]
fn four_junk_bytes_before_the_handshake_fail_addprocs_at_once() {
    let _one = SCRIPTS.lock().unwrap_or_else(|p| p.into_inner());
    // 0x7fffffff: a 2 GiB frame, announced; the program then sleeps.
    let c = bash_cluster(
        r"printf '\377\377\377\177' >&$fd; exec sleep 60",
        Duration::from_secs(120),
    );
    let m = start_failed(c.addprocs(1));
    assert!(m.contains("frame length"), "{m}");
    assert_eq!(script_children(), [], "the junk writer was not reaped");
}

#[test]
fn half_a_handshake_then_silence_fails_within_the_start_timeout() {
    let _one = SCRIPTS.lock().unwrap_or_else(|p| p.into_inner());
    // A 100-byte frame announced, 3 bytes of it sent, then silence for a minute.
    let c = bash_cluster(
        r"printf '\144\0\0\0\012ab' >&$fd; exec sleep 60",
        Duration::from_millis(300),
    );
    let m = start_failed(c.addprocs(1));
    assert!(m.contains("before the start timeout"), "{m}");
    assert_eq!(script_children(), [], "the silent program was not reaped");
}

fn expect_protocol(r: Result<impl std::fmt::Debug, Error>, id: usize, what: &str) {
    match r {
        Err(Error::Protocol { id: i, cause, .. }) => {
            assert_eq!(i, id);
            assert!(cause.contains(what), "cause {cause:?} lacks {what:?}");
        }
        other => panic!("expected Protocol, got {other:?}"),
    }
}

fn wait_gone(c: &Cluster, id: usize, pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.procs().contains(&id) || children().contains(&pid) {
        assert!(Instant::now() < deadline, "worker {id} was not removed");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_corrupt_length_fails_every_pending_call_and_removes_the_worker() {
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    let (bad, good) = (ids[0], ids[1]);
    let pid = c.pid(bad).unwrap();
    let junk = c
        .remotecall(bad, write_junk_then_idle, vec![0xff; 4])
        .unwrap();
    // Queued behind the junk writer (which waits a moment first); on a loaded machine the
    // junk may be read before this call is made, and then the call itself is refused.
    let queued = c.remotecall(bad, add1, 1);
    // Both paths: the caller driving the read side, and a wait with a timeout.
    expect_protocol(junk.fetch(), bad, "frame length");
    expect_protocol(
        queued.and_then(|r| r.fetch_timeout(Duration::from_secs(60))),
        bad,
        "frame length",
    );
    wait_gone(&c, bad, pid);
    expect_protocol(c.remotecall_fetch(bad, add1, 1), bad, "frame length");
    assert_eq!(c.remotecall_fetch(good, add1, 41).unwrap(), 42);
}

#[test]
fn a_frame_of_unknown_kind_is_a_protocol_error() {
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    let pid = c.pid(id).unwrap();
    let r = c
        .remotecall(id, write_junk_then_idle, vec![1, 0, 0, 0, 99])
        .unwrap();
    expect_protocol(r.fetch(), id, "unknown kind 99");
    wait_gone(&c, id, pid);
}

#[test]
fn a_stream_cut_inside_a_frame_is_a_death_not_a_hang() {
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    // Announces 1000 bytes, sends 5, then the worker exits.
    fn half_frame_then_exit(_: ()) {
        write_raw_to_data_link(&[0xe8, 3, 0, 0, 1, 1, 2, 3, 4]).unwrap();
        std::process::exit(5);
    }
    match c.remotecall(id, half_frame_then_exit, ()).unwrap().fetch() {
        Err(Error::WorkerDied { termination, .. }) => {
            assert_eq!(termination, Termination::Exited(5));
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
}

#[test]
fn a_killed_worker_is_seen_dead_while_a_helper_holds_its_sockets() {
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    let pid = c.pid(id).unwrap();
    let helper = c.remotecall_fetch(id, fork_sleeping_helper, ()).unwrap();
    struct KillHelper(i32);
    impl Drop for KillHelper {
        fn drop(&mut self) {
            // SAFETY: plain syscall; the helper is re-parented, not ours to reap.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
    let _helper = KillHelper(helper);
    let running = c.remotecall(id, sleep_ms, 60_000).unwrap();
    let queued = c.remotecall(id, add1, 1).unwrap();
    // SAFETY: plain syscall on our own unreaped child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    for r in [running.fetch().map(drop), queued.fetch().map(drop)] {
        match r {
            Err(Error::WorkerDied { termination, .. }) => {
                assert_eq!(termination, Termination::Signaled(libc::SIGKILL));
            }
            other => panic!("expected WorkerDied, got {other:?}"),
        }
    }
    wait_gone(&c, id, pid);
    // rmprocs of a new worker and drop both end, with the helper still holding the old
    // worker's sockets.
    let id2 = c.addprocs(1).unwrap()[0];
    c.rmprocs(&[id2]).unwrap();
}

#[test]
fn caps_refuse_big_arguments_and_results_and_keep_the_link() {
    let c = Cluster::builder().max_frame_bytes(4096).build();
    let id = c.addprocs(1).unwrap()[0];
    match c.remotecall_fetch(id, len_of, vec![0u8; 10_000]) {
        Err(Error::ArgumentTooLarge { len, cap }) => {
            assert!(len > 10_000 && cap < 4096, "{len} {cap}");
        }
        other => panic!("expected ArgumentTooLarge, got {other:?}"),
    }
    assert_eq!(
        c.remotecall_fetch(id, len_of, vec![0u8; 1000]).unwrap(),
        1000
    );
    match c.remotecall_fetch(id, make_vec, 10_000) {
        Err(Error::ResultTooLarge { id: i, len, cap }) => {
            assert_eq!(i, id);
            assert!(len > 10_000 && cap < 4096, "{len} {cap}");
        }
        other => panic!("expected ResultTooLarge, got {other:?}"),
    }
    assert_eq!(c.remotecall_fetch(id, make_vec, 3000).unwrap().len(), 3000);
    assert_eq!(c.remotecall_fetch(id, add1, 1).unwrap(), 2);
}

#[test]
fn a_cap_outside_its_range_is_refused_before_anything_starts() {
    for cap in [0, 63, u32::MAX as usize + 1] {
        // A script that would fail the test if it ever ran.
        let c = Cluster::builder()
            .program("/bin/bash")
            .args(["-c", "exit 9"])
            .max_frame_bytes(cap)
            .build();
        match c.addprocs(1) {
            Err(Error::InvalidArgument(m)) => assert!(m.contains("max_frame_bytes"), "{m}"),
            other => panic!("expected InvalidArgument, got {other:?}"),
        }
    }
}

/// Starts this test binary by hand as a worker whose descriptors are not sockets.
fn by_hand(stdin_closed: bool) -> (Option<i32>, String) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.env(
        "PTOOLS_WORKER_FD",
        format!("0,1,{},4096,1000", std::process::id()),
    )
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    if stdin_closed {
        use std::os::unix::process::CommandExt;
        // SAFETY: close(2) is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                libc::close(0);
                Ok(())
            })
        };
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_worker_started_by_hand_without_its_sockets_says_so_and_exits_2() {
    for stdin_closed in [false, true] {
        let (code, err) = by_hand(stdin_closed);
        assert_eq!(code, Some(2), "stderr: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("is not a socket the master passed"), "{err}");
    }
}

#[test]
fn a_worker_of_another_protocol_is_a_build_mismatch() {
    let _one = SCRIPTS.lock().unwrap_or_else(|p| p.into_inner());
    // HELLO frames as other builds write them, each followed by a minute of silence: our
    // magic with protocol 99 (fixed-width, as since protocol 2), and protocol 1's
    // postcard Hello (the magic as a varint). Neither decodes as this build's Hello.
    for frame in [
        r"\015\0\0\0\012\123\127\123\114\117\117\124\120\143\0\0\0",
        r"\016\0\0\0\012\323\256\315\342\364\351\223\252\120\001\007\0\0",
    ] {
        let c = bash_cluster(
            &format!("printf '{frame}' >&$fd; exec sleep 60"),
            Duration::from_secs(120),
        );
        let t0 = Instant::now();
        assert!(matches!(c.addprocs(1), Err(Error::BuildMismatch)));
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "waited out the script"
        );
        assert_eq!(script_children(), [], "the other build was not reaped");
    }
}
