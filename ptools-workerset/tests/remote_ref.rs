//! `RemoteRef`: fetch, wait, try_fetch, fetch_timeout, is_ready, and `Future`; pipelined
//! calls keep their order; calls to id 1 run in the master.

ptools_workerset::enable_test_support!();

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use ptools_workerset::{Cluster, Error, RemoteRef};

/// Blocks until the test creates `path`, so no assertion depends on timing.
fn wait_for_file(path: String) -> u32 {
    while !std::path::Path::new(&path).exists() {
        std::thread::sleep(Duration::from_millis(2));
    }
    7
}

fn add1(x: u64) -> u64 {
    x + 1
}

fn fail(_: ()) -> u8 {
    panic!("failed on purpose")
}

struct Flag(mpsc::Sender<()>);
impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        let _ = self.0.send(());
    }
}

/// A minimal executor: polls, and sleeps on a channel until woken.
fn block_on<F: Future>(f: F) -> F::Output {
    let (tx, rx) = mpsc::channel();
    let waker = Waker::from(Arc::new(Flag(tx)));
    let mut cx = Context::from_waker(&waker);
    let mut f = pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        rx.recv_timeout(Duration::from_secs(60))
            .expect("future never woke");
    }
}

fn gate() -> (String, impl Drop) {
    struct Rm(String);
    impl Drop for Rm {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let p = std::env::temp_dir()
        .join(format!("ptools-ws-gate-{}-{n}", std::process::id()))
        .to_string_lossy()
        .into_owned();
    (p.clone(), Rm(p))
}

#[test]
fn try_fetch_timeout_and_ready() {
    let c = Cluster::new();
    let [w] = c.addprocs(1).unwrap()[..] else {
        panic!()
    };
    let (path, _rm) = gate();
    let r: RemoteRef<u32> = c.remotecall(w, wait_for_file, path.clone()).unwrap();
    assert_eq!(r.worker(), w);
    assert!(!r.is_ready());
    assert!(r.try_fetch().is_none());
    assert!(matches!(
        r.fetch_timeout(Duration::from_millis(20)),
        Err(Error::Timeout)
    ));
    std::fs::write(&path, b"go").unwrap();
    r.wait().unwrap();
    assert!(r.is_ready());
    assert_eq!(r.try_fetch().unwrap().unwrap(), 7);
    assert!(matches!(r.try_fetch(), Some(Err(Error::AlreadyFetched))));
    assert!(matches!(r.fetch(), Err(Error::AlreadyFetched)));
}

#[test]
fn fetch_timeout_gets_the_value() {
    let c = Cluster::new();
    let [w] = c.addprocs(1).unwrap()[..] else {
        panic!()
    };
    let r = c.remotecall(w, add1, 1).unwrap();
    assert_eq!(r.fetch_timeout(Duration::from_secs(60)).unwrap(), 2);
}

#[test]
fn wait_reports_failure_and_fetch_still_gets_it() {
    let c = Cluster::new();
    let [w] = c.addprocs(1).unwrap()[..] else {
        panic!()
    };
    let r = c.remotecall(w, fail, ()).unwrap();
    assert!(r.wait().unwrap_err().is_remote_panic());
    assert!(r.fetch().unwrap_err().is_remote_panic());
    assert!(
        c.remotecall_wait(w, fail, ())
            .unwrap_err()
            .is_remote_panic()
    );
    c.remotecall_wait(w, add1, 1).unwrap();
}

#[test]
fn future_resolves() {
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    let a = c.remotecall(ids[0], add1, 10).unwrap();
    let b = c.remotecall(ids[1], add1, 20).unwrap();
    let (path, _rm) = gate();
    let slow = c.remotecall(ids[0], wait_for_file, path.clone()).unwrap();
    assert_eq!(block_on(a).unwrap(), 11);
    assert_eq!(block_on(b).unwrap(), 21);
    let writer = std::thread::spawn(move || std::fs::write(&path, b"go").unwrap());
    assert_eq!(block_on(slow).unwrap(), 7);
    writer.join().unwrap();
}

#[test]
fn pipelined_calls_keep_order_on_each_worker() {
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    let refs: Vec<_> = (0..2000u64)
        .map(|i| c.remotecall(ids[(i % 2) as usize], add1, i).unwrap())
        .collect();
    for (i, r) in refs.into_iter().enumerate() {
        assert_eq!(r.fetch().unwrap(), i as u64 + 1);
    }
}

#[test]
fn calls_to_the_master() {
    let c = Cluster::new();
    let r = c.remotecall(1, add1, 41).unwrap();
    assert_eq!(r.worker(), 1);
    assert_eq!(r.fetch().unwrap(), 42);
    c.remotecall_wait(1, add1, 0).unwrap();
    assert!(
        c.remotecall_fetch(1, fail, ())
            .unwrap_err()
            .is_remote_panic()
    );
}

#[test]
fn many_threads_share_a_cluster() {
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let c = &c;
            let ids = &ids;
            s.spawn(move || {
                for i in 0..200 {
                    let id = ids[((t + i) % 2) as usize];
                    assert_eq!(
                        c.remotecall_fetch(id, add1, t * 1000 + i).unwrap(),
                        t * 1000 + i + 1
                    );
                }
            });
        }
    });
}

#[test]
fn a_reply_is_not_held_behind_a_long_call() {
    let c = Cluster::new();
    let [w] = c.addprocs(1).unwrap()[..] else {
        panic!()
    };
    let (path, _rm) = gate();
    for round in 0..20 {
        let quick = c.remotecall(w, add1, round).unwrap();
        let slow = c.remotecall(w, wait_for_file, path.clone()).unwrap();
        // Arrived together, the quick call's reply must still leave before the slow call
        // ends (which only happens once the file exists, below).
        assert_eq!(
            quick.fetch_timeout(Duration::from_secs(60)).unwrap(),
            round + 1
        );
        std::fs::write(&path, b"go").unwrap();
        assert_eq!(slow.fetch().unwrap(), 7);
        std::fs::remove_file(&path).unwrap();
    }
}

#[test]
fn drivers_reader_thread_and_waiters_mix_on_one_worker() {
    let c = Cluster::new();
    let [w] = c.addprocs(1).unwrap()[..] else {
        panic!()
    };
    std::thread::scope(|s| {
        let c = &c;
        // Pipelined calls fetched late: mostly completed by others' reads.
        s.spawn(move || {
            let refs: Vec<_> = (0..3000u64)
                .map(|i| c.remotecall(w, add1, i).unwrap())
                .collect();
            for (i, r) in refs.into_iter().enumerate() {
                assert_eq!(r.fetch().unwrap(), i as u64 + 1);
            }
        });
        // Synchronous callers: each drives the link for its own reply.
        for t in 0..3u64 {
            s.spawn(move || {
                for i in 0..500 {
                    assert_eq!(
                        c.remotecall_fetch(w, add1, t * 10_000 + i).unwrap(),
                        t * 10_000 + i + 1
                    );
                }
            });
        }
        // Waiters that never drive: timeouts and futures rely on the reader thread.
        s.spawn(move || {
            for i in 0..300u64 {
                let r = c.remotecall(w, add1, i).unwrap();
                if i % 2 == 0 {
                    assert_eq!(r.fetch_timeout(Duration::from_secs(60)).unwrap(), i + 1);
                } else {
                    assert_eq!(block_on(r).unwrap(), i + 1);
                }
            }
        });
    });
}
