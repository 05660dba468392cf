//! The Rust peers of `cargo xtask bench --peers`: procspawn and ipc-channel, timed the way
//! `bench/peers/common.py` times the Python peers (medians over repeated rounds, each loop
//! bounded in count and in time), printed in the same tab-separated format:
//!
//! ```text
//! <key>  seconds  <median seconds per iteration>  <items per iteration>
//! <key>  skipped  <reason>
//! ```
//!
//! `README.md` beside this crate says what each key measures. `--quick` shortens every
//! budget. `--ipc-child NAME` is the echo child of the ipc-channel scenarios (this same
//! binary, started by the parent).

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use ipc_channel::ipc::{self, IpcBytesReceiver, IpcBytesSender, IpcReceiver, IpcSender};
use serde::{Deserialize, Serialize};

/// The payload sizes, as the ptools payload bench names them.
const SIZES: &[(&str, usize)] = &[
    ("8B", 8),
    ("1KiB", 1 << 10),
    ("64KiB", 64 << 10),
    ("1MiB", 1 << 20),
    ("16MiB", 16 << 20),
];

/// Calls per sample of the procspawn pool throughput.
const POOL_CALLS: usize = 2_000;

fn main() {
    // procspawn re-runs this binary for its workers: this must come first.
    procspawn::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, name] = args.as_slice()
        && flag == "--ipc-child"
    {
        ipc_child(name);
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let t0 = Instant::now();
    procspawn_peers(quick);
    ipc_channel_peers(quick);
    eprintln!("rust-peers: {:.1} s", t0.elapsed().as_secs_f64());
}

/// The time budget of one scenario, shortened in quick mode.
fn budget(quick: bool, seconds: f64) -> Duration {
    Duration::from_secs_f64(if quick { seconds / 4.0 } else { seconds })
}

/// Median seconds per call of `run_once`, from samples of `batch` calls each: one untimed
/// warm-up call, then samples until `budget` has passed (at least 5, at most
/// `max_samples`).
fn measure(budget: Duration, max_samples: usize, batch: usize, mut run_once: impl FnMut()) -> f64 {
    run_once();
    let mut samples = Vec::new();
    let deadline = Instant::now() + budget;
    while samples.len() < max_samples {
        let t = Instant::now();
        for _ in 0..batch {
            run_once();
        }
        samples.push(t.elapsed().as_secs_f64() / batch as f64);
        if samples.len() >= 5 && Instant::now() > deadline {
            break;
        }
    }
    samples.sort_by(f64::total_cmp);
    let n = samples.len();
    if n % 2 == 1 {
        samples[n / 2]
    } else {
        (samples[n / 2 - 1] + samples[n / 2]) / 2.0
    }
}

fn report(key: &str, seconds: f64, items: usize) {
    println!("{key}\tseconds\t{seconds:.9e}\t{items}");
}

fn skip(key: &str, why: &str) {
    // A reason is one field: no tabs or newlines.
    let why = why.replace(['\t', '\n'], " ");
    println!("{key}\tskipped\t{why}");
}

fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| i as u8).collect()
}

/// Samples for a payload of `size` bytes: fewer for the large ones.
fn samples_for(size: usize) -> (usize, usize) {
    // (max samples, calls per sample)
    match size {
        s if s <= 1 << 10 => (100, 50),
        s if s <= 64 << 10 => (100, 10),
        s if s <= 1 << 20 => (50, 1),
        _ => (15, 1),
    }
}

// ---- procspawn ----------------------------------------------------------------------

fn echo_u64(x: u64) -> u64 {
    x
}

fn echo_bytes(v: Vec<u8>) -> Vec<u8> {
    v
}

fn procspawn_peers(quick: bool) {
    let one = match procspawn::Pool::new(1) {
        Ok(p) => p,
        Err(e) => {
            let why = format!("procspawn::Pool::new(1): {e}");
            skip("rs_procspawn_round_trip", &why);
            for (name, _) in SIZES {
                skip(&format!("rs_procspawn_vec_u8/{name}"), &why);
            }
            return;
        }
    };
    let call = |x: u64| one.spawn(x, echo_u64).join();
    match call(1) {
        Ok(1) => {
            let s = measure(budget(quick, 3.0), 100, 20, || {
                call(41).expect("procspawn echo");
            });
            report("rs_procspawn_round_trip", s, 1);
        }
        r => skip("rs_procspawn_round_trip", &format!("echo failed: {r:?}")),
    }
    for &(name, size) in SIZES {
        let key = format!("rs_procspawn_vec_u8/{name}");
        let data = payload(size);
        let (max, batch) = samples_for(size);
        match one.spawn(data.clone(), echo_bytes).join() {
            Ok(back) if back == data => {
                let s = measure(budget(quick, 2.0), max, batch, || {
                    let back = one
                        .spawn(data.clone(), echo_bytes)
                        .join()
                        .expect("procspawn");
                    assert_eq!(back.len(), size);
                });
                report(&key, s, 1);
            }
            Ok(_) => skip(&key, "the echo came back different"),
            Err(e) => skip(&key, &format!("echo failed: {e}")),
        }
    }
    one.shutdown();

    let key = "rs_procspawn_pool2_throughput";
    match procspawn::Pool::new(2) {
        Ok(two) => {
            let s = measure(budget(quick, 4.0), 20, 1, || {
                let handles: Vec<_> = (0..POOL_CALLS as u64)
                    .map(|i| two.spawn(i, echo_u64))
                    .collect();
                for (i, h) in handles.into_iter().enumerate() {
                    assert_eq!(h.join().expect("procspawn"), i as u64);
                }
            });
            report(key, s, POOL_CALLS);
            two.shutdown();
        }
        Err(e) => skip(key, &format!("procspawn::Pool::new(2): {e}")),
    }
}

// ---- ipc-channel --------------------------------------------------------------------

/// A request on the typed channel.
#[derive(Debug, Serialize, Deserialize)]
enum Request {
    U64(u64),
    Bytes(Vec<u8>),
    /// From now on, echo on the bytes channel, until an empty message.
    ToBytes,
}

/// What the child hands the parent through the one-shot server: the ends the parent uses.
#[derive(Serialize, Deserialize)]
struct Ends {
    requests: IpcSender<Request>,
    replies: IpcReceiver<Request>,
    bytes_requests: IpcBytesSender,
    bytes_replies: IpcBytesReceiver,
}

/// The echo child: connects to the parent's one-shot server, hands it its channel ends,
/// echoes typed requests, then bytes, and exits when the parent goes away.
fn ipc_child(name: &str) {
    let (req_tx, req_rx) = ipc::channel::<Request>().expect("channel");
    let (rep_tx, rep_rx) = ipc::channel::<Request>().expect("channel");
    let (breq_tx, breq_rx) = ipc::bytes_channel().expect("bytes channel");
    let (brep_tx, brep_rx) = ipc::bytes_channel().expect("bytes channel");
    let boot: IpcSender<Ends> = IpcSender::connect(name.to_owned()).expect("connect");
    boot.send(Ends {
        requests: req_tx,
        replies: rep_rx,
        bytes_requests: breq_tx,
        bytes_replies: brep_rx,
    })
    .expect("bootstrap");
    // Typed phase: every error (the parent went away) ends the child.
    while let Ok(r) = req_rx.recv() {
        match r {
            Request::ToBytes => break,
            r => {
                if rep_tx.send(r).is_err() {
                    return;
                }
            }
        }
    }
    while let Ok(b) = breq_rx.recv() {
        if b.is_empty() || brep_tx.send(&b).is_err() {
            return;
        }
    }
}

/// The child process and the parent's channel ends; the child is killed and reaped on
/// drop, whatever happened.
struct IpcPeer {
    child: Child,
    ends: Ends,
}

impl Drop for IpcPeer {
    fn drop(&mut self) {
        let _ = self.ends.bytes_requests.send(&[]);
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return;
                }
            }
        }
    }
}

fn start_ipc_peer() -> Result<IpcPeer, String> {
    let (server, name) =
        ipc::IpcOneShotServer::<Ends>::new().map_err(|e| format!("one-shot server: {e}"))?;
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let mut child = Command::new(exe)
        .arg("--ipc-child")
        .arg(&name)
        .spawn()
        .map_err(|e| format!("cannot start the child: {e}"))?;
    // `accept` blocks: a child that dies before connecting would hang it, so wait on a
    // thread with a time limit.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(server.accept().map(|(_, ends)| ends));
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(ends)) => Ok(IpcPeer { child, ends }),
        other => {
            let _ = child.kill();
            let _ = child.wait();
            Err(match other {
                Ok(Err(e)) => format!("bootstrap failed: {e:?}"),
                _ => "the child did not connect within 20 s".to_owned(),
            })
        }
    }
}

fn ipc_channel_peers(quick: bool) {
    let peer = match start_ipc_peer() {
        Ok(p) => p,
        Err(why) => {
            skip("rs_ipc_channel_round_trip", &why);
            for (name, _) in SIZES {
                skip(&format!("rs_ipc_channel_vec_u8/{name}"), &why);
                skip(&format!("rs_ipc_channel_bytes/{name}"), &why);
            }
            return;
        }
    };
    let e = &peer.ends;
    let call = |r: Request| -> Request {
        e.requests.send(r).expect("send");
        e.replies.recv().expect("recv")
    };
    let s = measure(budget(quick, 3.0), 100, 100, || {
        let Request::U64(41) = call(Request::U64(41)) else {
            panic!("wrong echo");
        };
    });
    report("rs_ipc_channel_round_trip", s, 1);

    for &(name, size) in SIZES {
        let data = payload(size);
        let (max, batch) = samples_for(size);
        let s = measure(budget(quick, 2.0), max, batch, || {
            let Request::Bytes(back) = call(Request::Bytes(data.clone())) else {
                panic!("wrong echo");
            };
            assert_eq!(back.len(), size);
        });
        report(&format!("rs_ipc_channel_vec_u8/{name}"), s, 1);
    }

    e.requests.send(Request::ToBytes).expect("send");
    for &(name, size) in SIZES {
        let data = payload(size);
        let (max, batch) = samples_for(size);
        let s = measure(budget(quick, 2.0), max, batch, || {
            e.bytes_requests.send(&data).expect("send");
            let back = e.bytes_replies.recv().expect("recv");
            assert_eq!(back.len(), size);
        });
        report(&format!("rs_ipc_channel_bytes/{name}"), s, 1);
    }
    drop(peer);
}
