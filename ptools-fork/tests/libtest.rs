//! pfork in ordinary `#[test]`s under the libtest harness (this file has `harness = true`,
//! libtest's threads and all), written with `pfork_test!`.

use std::sync::mpsc;

use ptools_fork::{PforkError, pfork, pfork_test};

/// Threads of this process, from `/proc/self/task`.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

pfork_test! {
    /// The body runs where it is the only thread, so the default policy lets pfork fork.
    fn pfork_under_plain_cargo_test() {
        assert_eq!(threads(), 1);
        let parent = std::process::id();
        let got = pfork(3, |i| (i * 10, std::process::id())).unwrap();
        assert_eq!(got.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 10, 20]);
        assert!(got.iter().all(|r| r.1 != parent));
    }

    fn bodies_may_return_results() -> Result<(), PforkError<usize>> {
        assert_eq!(pfork(2, |i| i + 1)?, [1, 2]);
        Ok(())
    }

    /// The policy stays honest: a body with a second thread is refused like any process.
    fn a_thread_started_by_the_body_is_still_refused() {
        let (tx, rx) = mpsc::channel::<()>();
        let other = std::thread::spawn(move || {
            let _ = rx.recv();
        });
        let err = pfork(2, |i| i).unwrap_err();
        assert!(
            matches!(err, PforkError::Threaded { threads: Some(2) }),
            "{err:?}"
        );
        drop(tx);
        other.join().unwrap();
    }

    /// A failing body fails the test: its process exits with 101.
    #[should_panic(expected = "failed in its single-threaded process")]
    fn a_panicking_body_fails_the_test() {
        assert_eq!(pfork(1, |i| i).unwrap(), [0]);
        panic!("the body fails on purpose");
    }

    #[should_panic(expected = "failed in its single-threaded process")]
    fn an_err_from_the_body_fails_the_test() -> Result<(), String> {
        Err("the body returns Err on purpose".to_owned())
    }
}

/// A plain `#[test]` in the same binary sees libtest's threads: pfork refuses it, which is
/// what `pfork_test!` is for.
#[test]
fn a_plain_test_is_refused() {
    assert!(matches!(pfork(1, |i| i), Err(PforkError::Threaded { .. })));
}
