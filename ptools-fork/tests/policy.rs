//! The thread policy: a multi-threaded process is refused by default, and forked only with
//! the explicit `unsafe` opt-in.

mod common;

use std::sync::mpsc;

use ptools_fork::{Pfork, PforkError, pfork};

fn main() {
    common::run(&[
        ("single_threaded_runs", single_threaded_runs),
        ("multi_threaded_is_refused", multi_threaded_is_refused),
        ("multi_threaded_with_opt_in", multi_threaded_with_opt_in),
    ]);
}

fn single_threaded_runs() {
    assert_eq!(common::thread_count(), 1);
    assert_eq!(pfork(2, |i| i).unwrap(), vec![0, 1]);
}

/// Runs `body` while a second thread exists (parked on a channel), then ends that thread.
fn with_second_thread(body: impl FnOnce()) {
    let (tx, rx) = mpsc::channel::<()>();
    let other = std::thread::spawn(move || {
        let _ = rx.recv();
    });
    body();
    drop(tx);
    other.join().unwrap();
}

fn multi_threaded_is_refused() {
    with_second_thread(|| {
        let err = pfork(2, |i| i).unwrap_err();
        assert!(
            matches!(err, PforkError::Threaded { threads: Some(2) }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("refusing to fork a process with 2 threads"),
            "{err}"
        );
        let err = Pfork::new().run(2, |i| i).unwrap_err();
        assert!(matches!(err, PforkError::Threaded { .. }));
        // Nothing was forked.
        assert!(common::children().is_empty());
    });
}

fn multi_threaded_with_opt_in() {
    with_second_thread(|| {
        // SAFETY: the other thread only waits on a channel: it holds no lock a child needs.
        let opts = unsafe { Pfork::new().allow_threads() };
        let outcomes = opts.run(3, |i| i * 2).unwrap();
        assert_eq!(outcomes, vec![Ok(0), Ok(2), Ok(4)]);
    });
}
