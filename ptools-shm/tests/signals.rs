//! `SIGINT`/`SIGTERM` cleanup from ptools-shm's side, in forked children (so this binary
//! runs without the libtest harness: it must stay single-threaded to fork): a child that
//! created a segment and is signalled unlinks it and dies by the signal; a forked child
//! never unlinks its parent's segments; kept segments and `signals::disable` leave them.
//! Whatever a case leaves under this run's prefix is removed at the end, pass or fail.

use std::time::{Duration, Instant};

use ptools_shm::{Prefix, ShmArray, ShmCfg, signals};

/// Deadline that only keeps a broken child from hanging the test.
const HANG: Duration = Duration::from_secs(60);

/// This run's prefix, fixed by the parent before any fork (a child has another pid).
static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();

fn prefix_str() -> &'static str {
    PREFIX.get().unwrap()
}

fn prefix() -> Prefix {
    Prefix::new(prefix_str()).unwrap()
}

fn exists(name: &str) -> bool {
    std::path::Path::new(&format!("/dev/shm/ptools_{}_{name}", prefix_str())).exists()
}

fn create(name: &str) -> ShmArray<u64> {
    ShmArray::create(&ShmCfg::new::<u64>(name, 64).unwrap(), &prefix()).unwrap()
}

/// Removes every segment of this run's prefix on drop.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let start = format!("ptools_{}_", prefix_str());
        for e in std::fs::read_dir("/dev/shm").unwrap().flatten() {
            if e.file_name().to_string_lossy().starts_with(&start) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// Runs `f` in a forked child, which then raises `sig` against itself (a child that
/// survives it exits with 0); returns the child's wait status.
fn in_child(sig: libc::c_int, f: impl FnOnce()) -> libc::c_int {
    // SAFETY: this binary runs no harness and starts no thread, so the child is a copy of
    // a single-threaded process and may allocate.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        // SAFETY: raise and _exit end this child; nothing of the parent's is unwound.
        unsafe {
            if r.is_err() {
                libc::_exit(101);
            }
            libc::raise(sig);
            libc::_exit(0)
        }
    }
    let deadline = Instant::now() + HANG;
    let mut status = 0;
    loop {
        // SAFETY: waiting on our own child with a valid out-parameter.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return status;
        }
        if Instant::now() >= deadline {
            // SAFETY: our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("child did not end");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn assert_killed_by(status: libc::c_int, sig: libc::c_int) {
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == sig,
        "wait status {status:#x}, expected death by signal {sig}"
    );
}

fn a_signalled_creator_unlinks_and_dies_by_the_signal() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let st = in_child(sig, || {
            let a = create("own");
            assert!(signals::is_active());
            std::mem::forget(a); // only the handler can unlink it now
        });
        assert_killed_by(st, sig);
        assert!(
            !exists("own"),
            "the child's segment stayed after signal {sig}"
        );
    }
}

fn a_forked_child_leaves_its_parents_segments() {
    // The parent's segment installs the handler here; the child inherits both.
    let parent = create("parent");
    assert!(signals::is_active());
    let st = in_child(libc::SIGTERM, || {
        std::mem::forget(create("child"));
    });
    assert_killed_by(st, libc::SIGTERM);
    assert!(exists("parent"), "a child unlinked its parent's segment");
    assert!(!exists("child"));
    drop(parent);
    assert!(!exists("parent"));
}

fn a_kept_segment_stays() {
    let st = in_child(libc::SIGINT, || {
        let mut a = create("kept");
        a.keep_on_drop(true);
        std::mem::forget(a);
    });
    assert_killed_by(st, libc::SIGINT);
    assert!(exists("kept"), "a kept segment was unlinked");
}

fn disable_turns_the_cleanup_off() {
    let st = in_child(libc::SIGTERM, || {
        let a = create("off");
        signals::disable();
        assert!(!signals::is_active());
        // Handlers created after `disable` stay off too.
        std::mem::forget(create("off2"));
        std::mem::forget(a);
    });
    assert_killed_by(st, libc::SIGTERM);
    assert!(
        exists("off") && exists("off2"),
        "segments vanished with the cleanup off"
    );
}

fn main() {
    PREFIX.set(format!("sigshm{}", std::process::id())).unwrap();
    let _cleanup = Cleanup;
    let cases: [(&str, fn()); 4] = [
        (
            "a_signalled_creator_unlinks_and_dies_by_the_signal",
            a_signalled_creator_unlinks_and_dies_by_the_signal,
        ),
        (
            "a_forked_child_leaves_its_parents_segments",
            a_forked_child_leaves_its_parents_segments,
        ),
        ("a_kept_segment_stays", a_kept_segment_stays),
        (
            "disable_turns_the_cleanup_off",
            disable_turns_the_cleanup_off,
        ),
    ];
    for (name, case) in cases {
        case();
        println!("test {name} ... ok");
    }
}
