//! Starting workers: the spawner thread, `addprocs` and the handshake.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::Cluster;
use super::link::{Park, Peer, Pending, Remote, Zc};
use crate::error::{Error, Result};
use crate::sys;
use crate::wire::{self, FrameReader, Link, UnixLink};

/// Starts processes from one long-lived thread: `PR_SET_PDEATHSIG` fires when the thread
/// that forked a child ends (prctl(2)), so forking from a short-lived caller thread (a test,
/// a scoped worker) would kill the workers with it.
fn spawner() -> &'static mpsc::Sender<Job> {
    static SPAWNER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let _ = std::thread::Builder::new()
            .name("ptools-spawner".into())
            .spawn(move || {
                for job in rx {
                    job();
                }
            });
        tx
    })
}

type Job = Box<dyn FnOnce() + Send>;

/// Runs `f` on the spawner thread (every process the cluster starts is started there) and
/// returns its result.
pub(crate) fn on_spawner<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> std::io::Result<T> {
    let gone = || std::io::Error::other("spawner thread is gone");
    let (reply, rx) = mpsc::channel();
    spawner()
        .send(Box::new(move || {
            let _ = reply.send(f());
        }))
        .map_err(|_| gone())?;
    rx.recv().map_err(|_| gone())
}

/// A started process, between spawn and registration.
struct Starting {
    proc: Arc<sys::Process>,
    data: Arc<UnixLink>,
    ctl: Arc<UnixLink>,
    reader: FrameReader,
    id: usize,
    zc: Option<Zc>,
    /// The shared-memory ring that becomes the data link after the handshake.
    ring: Option<sys::Ring>,
}

impl Cluster {
    ///
    /// Each worker is this same executable re-started in worker mode (see
    /// [`init`](crate::init)). All `n` start, or none: on failure every process of this call
    /// is killed and reaped and nothing is registered.
    ///
    /// # Errors
    ///
    /// [`Error::WorkerStartFailed`] (spawn failed, the program exited, or no handshake within
    /// the start timeout: typically a program whose `main` lacks [`init`](crate::init)),
    /// [`Error::BuildMismatch`], [`Error::InvalidArgument`] when called inside a worker;
    /// [`Error::Io`] of kind `ErrorKind::Unsupported` on a target without worker processes
    /// (see the crate docs, "Platform support"), before anything is started.
    pub fn addprocs(&self, n: usize) -> Result<Vec<usize>> {
        check_master()?;
        let cap = self.inner.opts.max_frame;
        if !(64..=wire::MAX_FRAME_LIMIT).contains(&cap) {
            return Err(Error::InvalidArgument(format!(
                "max_frame_bytes {cap} outside 64..={}",
                wire::MAX_FRAME_LIMIT
            )));
        }
        let me = sys::BuildId::of_self()?;
        let program = self
            .inner
            .opts
            .program
            .clone()
            .unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
        let mut started: Vec<Starting> = Vec::with_capacity(n);
        let result = (|| {
            for _ in 0..n {
                let (d_master, d_child) = sys::socketpair()?;
                let (c_master, c_child) = sys::socketpair()?;
                let (prog, args) = (program.clone(), self.inner.opts.args.clone());
                // The shared-memory regions for large payloads; a worker without them (out
                // of descriptors, say) still works, over its socket only.
                let zc = sys::Region::create()
                    .and_then(|a| Ok((a, sys::Region::create()?)))
                    .ok();
                // Likewise the ring: without one, the data link stays the socket.
                let ring = self
                    .inner
                    .opts
                    .ring
                    .then(|| sys::Ring::create().ok())
                    .flatten();
                let limits = sys::WorkerLimits {
                    max_frame: cap,
                    handshake: self.inner.opts.start_timeout,
                    regions: zc.as_ref().map(|(a, r)| (a.raw_fd(), r.raw_fd())),
                    ring: ring.as_ref().map(sys::Ring::raw_fd),
                };
                let proc =
                    on_spawner(move || sys::spawn_worker(&prog, &args, &d_child, &c_child, limits))
                        .map_err(|e| Error::WorkerStartFailed(e.to_string()))?
                        .map_err(|e| {
                            Error::WorkerStartFailed(format!("spawn {}: {e}", program.display()))
                        })?;
                started.push(Starting {
                    proc: Arc::new(proc),
                    data: Arc::new(UnixLink(d_master)),
                    ctl: Arc::new(UnixLink(c_master)),
                    reader: FrameReader::with_cap(wire::HANDSHAKE_CAP),
                    id: 0,
                    zc: zc.map(|(a, r)| Zc::new(a, r)),
                    ring,
                });
            }
            let deadline = Instant::now() + self.inner.opts.start_timeout;
            for s in started.iter_mut() {
                handshake(s, &me, deadline, &self.inner.next_id)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            for s in started {
                s.data.shutdown();
                s.proc.kill();
                s.proc.reap(Duration::from_secs(5));
            }
            return Err(e);
        }
        let mut ids = Vec::with_capacity(n);
        for s in started {
            // After the handshake the worker reads its calls from the ring, when it has
            // one; its socket then carries nothing more (the worker's death is seen through
            // its pidfd, which shuts the ring down).
            let data: Arc<dyn Link> = match s.ring {
                Some(r) => Arc::new(r.master(sys::ring_spin())),
                None => s.data,
            };
            self.register(
                s.id,
                Peer::Local(s.proc),
                data,
                s.ctl,
                s.reader.with_new_cap(cap),
                s.zc,
            )?;
            ids.push(s.id);
        }
        Ok(ids)
    }

    /// Makes a worker that passed its handshake part of the cluster: its record, reader
    /// and sender threads, and the watch on the process whose end is its end. On failure
    /// it is taken down (killed, reaped) and not registered.
    pub(super) fn register(
        &self,
        id: usize,
        proc: Peer,
        data: Arc<dyn Link>,
        ctl: Arc<dyn Link>,
        reader: FrameReader,
        zc: Option<Zc>,
    ) -> Result<Arc<Remote>> {
        let remote = Arc::new(Remote {
            id,
            proc,
            cap: self.inner.opts.max_frame,
            fault: Mutex::new(None),
            ended_seen: std::sync::atomic::AtomicBool::new(false),
            data,
            ctl: Mutex::new((ctl, FrameReader::with_cap(wire::CONTROL_CAP), 0)),
            tx: Mutex::new(Vec::with_capacity(4096)),
            pending: Mutex::new(Pending {
                queue: VecDeque::new(),
                outbox: VecDeque::new(),
                dead: None,
            }),
            ended: Mutex::new(None),
            ended_cv: Condvar::new(),
            rx: Mutex::new(reader),
            drivers: AtomicUsize::new(0),
            idle: Mutex::new(Park::default()),
            idle_cv: Condvar::new(),
            out_cv: Condvar::new(),
            zc,
        });
        self.inner.workers.write().insert(id, remote.clone());
        let weak = Arc::downgrade(&self.inner);
        let r2 = remote.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("ptools-reader-{id}"))
            .spawn(move || r2.read_loop(weak));
        let link = Arc::downgrade(&remote);
        let watched = spawned
            .map(drop)
            .and_then(|()| match remote.proc.watched() {
                Some(p) => crate::deaths::watch(
                    p,
                    Box::new(move || {
                        // Wakes whoever reads the link (the reader thread even when it
                        // is parked); the reader then reaps.
                        if let Some(l) = link.upgrade() {
                            l.proc.kill_links();
                            l.data.shutdown();
                            l.end_seen();
                        }
                    }),
                ),
                None => Ok(()),
            })
            .and_then(|()| {
                let r3 = remote.clone();
                std::thread::Builder::new()
                    .name(format!("ptools-sender-{id}"))
                    .spawn(move || r3.send_loop())
                    .map(drop)
            });
        if let Err(e) = watched {
            // Without a reader or a watch a death could go unseen: take it down. The
            // reader, if it runs, sees the end of the stream and reaps.
            self.inner.workers.write().remove(&id);
            remote.data.shutdown();
            remote.kick();
            remote.proc.kill();
            remote.proc.reap(Duration::from_secs(5));
            return Err(e.into());
        }
        Ok(remote)
    }
}

pub(super) fn check_master() -> Result<()> {
    if crate::worker::forgot_init() {
        eprintln!(
            "ptools-workerset: this process was started as a worker but never entered worker \
             mode: main runs in every worker up to init(), so call ptools::workerset::init() \
             (ptools_workerset::init() without the facade) first in main, or put \
             ptools::workerset::enable_test_support!(); at the top of a test file"
        );
        return Err(Error::InvalidArgument(
            "this process is an uninitialised worker: it must not start workers".into(),
        ));
    }
    if crate::worker::myid() != 1 {
        return Err(Error::InvalidArgument(
            "workers cannot start workers".into(),
        ));
    }
    Ok(())
}

fn handshake(
    s: &mut Starting,
    me: &sys::BuildId,
    deadline: Instant,
    next_id: &AtomicUsize,
) -> Result<()> {
    let pid = s.proc.pid();
    let fail = |m: String| Error::WorkerStartFailed(format!("pid {pid}: {m}"));
    // Every read honours the deadline: a program that writes part of a frame and goes
    // silent fails here in time, and the frame is capped at a few KiB.
    let body = match s.reader.next_before(&*s.data, deadline) {
        Ok(Some(b)) => b,
        Ok(None) => {
            // The link closes a moment before the process can be reaped: give it that
            // moment (bounded), then kill it.
            let t = s.proc.reap(Duration::from_secs(2));
            return Err(fail(format!("exited before the handshake ({t})")));
        }
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            return Err(fail(format!("no handshake before the start timeout: {e}")));
        }
        Err(e) => return Err(fail(format!("handshake: {e}"))),
    };
    if body[0] != wire::HELLO {
        return Err(fail(format!("bad handshake: frame of kind {}", body[0])));
    }
    let reject = |s: &Starting| {
        let mut f = Vec::new();
        wire::begin(&mut f, wire::REJECT);
        wire::finish(&mut f);
        let _ = s.data.send_all(&f);
        Error::BuildMismatch
    };
    // Magic and protocol first: another build's `Hello` may not decode as ours.
    match wire::opening(&body[1..]) {
        wire::Opening::Ours => {}
        wire::Opening::OtherBuild => return Err(reject(s)),
        wire::Opening::Foreign => return Err(fail("bad handshake: not a ptools worker".into())),
    }
    let hello: wire::Hello =
        crate::codec::decode(&body[1..]).map_err(|e| fail(format!("bad handshake: {e}")))?;
    if hello.build != *me {
        return Err(reject(s));
    }
    if hello.pid as i32 != pid {
        return Err(fail(format!("handshake from pid {}", hello.pid)));
    }
    s.id = next_id.fetch_add(1, Ordering::Relaxed);
    let mut f = Vec::new();
    wire::begin(&mut f, wire::WELCOME);
    f.extend_from_slice(&(s.id as u64).to_le_bytes());
    wire::finish(&mut f);
    s.data.send_all(&f)?;
    Ok(())
}
