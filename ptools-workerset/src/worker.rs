//! Worker mode: what a re-executed program does instead of its `main`.
//!
//! The worker's main thread runs calls one at a time in arrival order, reading them straight
//! from the data link (one read brings many queued calls) and writing replies back (replies
//! to calls that arrived together leave in one write). A second thread serves the control
//! link: it answers pings while a call is busy, and ends the process at shutdown or when the
//! master is gone (end of stream). `PR_SET_PDEATHSIG(SIGKILL)` is the second guard: a worker
//! busy in a call that never returns is killed by the kernel when its master dies.

use std::io::Write;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::codec::Out;
use crate::func::{FnRef, Status};
use crate::sys;
use crate::wire::{self, FrameReader, Link, UnixLink};

/// Set in a worker's environment by the master:
/// `data_fd,control_fd,master_pid,max_frame_bytes,handshake_timeout_ms,arg_fd,res_fd,ring_fd`
/// (the shared-memory regions and ring, -1 when the master has none for it).
pub(crate) const ENV_FDS: &str = "PTOOLS_WORKER_FD";

static MYID: AtomicUsize = AtomicUsize::new(1);
static BUSY: AtomicBool = AtomicBool::new(false);
static SHUTDOWN: AtomicBool = AtomicBool::new(false);
/// This worker's data link (for [`write_raw_to_data_link`]); unset in the master.
static DATA_LINK: std::sync::OnceLock<Arc<dyn Link>> = std::sync::OnceLock::new();
/// The link's frame cap, as the master set it.
static CAP: AtomicUsize = AtomicUsize::new(wire::DEFAULT_MAX_FRAME);

/// This process's id: 1 in the master, 2, 3, ... in workers.
pub(crate) fn myid() -> usize {
    MYID.load(Ordering::Relaxed)
}

/// True when this process was started as a worker but has not entered worker mode: the
/// program forgot [`crate::init`]. Such a process must not act as a master.
pub(crate) fn forgot_init() -> bool {
    std::env::var_os(ENV_FDS).is_some() || std::env::var_os(crate::net::launch::ENV_TCP).is_some()
}

fn exit_now(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    sys::exit_now(code)
}

/// Enters worker mode when this process was started as a worker; returns otherwise.
pub(crate) fn enter_if_worker() {
    if let Some(v) = std::env::var_os(crate::net::launch::ENV_TCP) {
        enter_tcp(&v)
    }
    let Some(v) = std::env::var_os(ENV_FDS) else {
        return;
    };
    type Parsed = (RawFd, RawFd, i32, usize, u64, RawFd, RawFd, RawFd);
    let parsed: Option<Parsed> = v.to_str().and_then(|s| {
        let mut it = s.split(',');
        let d = it.next()?.parse().ok()?;
        let c = it.next()?.parse().ok()?;
        let m = it.next()?.parse().ok()?;
        let cap = it.next()?.parse().ok()?;
        let ms = it.next()?.parse().ok()?;
        // The regions are optional: without them the worker uses its socket only.
        let a = it.next().map_or(Some(-1), |a| a.parse().ok())?;
        let r = it.next().map_or(Some(-1), |r| r.parse().ok())?;
        let g = it.next().map_or(Some(-1), |g| g.parse().ok())?;
        it.next().is_none().then_some((d, c, m, cap, ms, a, r, g))
    });
    let Some((d, c, master, cap, ms, a, r, g)) = parsed else {
        eprintln!("ptools-workerset: malformed {ENV_FDS}={v:?}");
        exit_now(2)
    };
    if !(64..=wire::MAX_FRAME_LIMIT).contains(&cap) || d == c {
        eprintln!("ptools-workerset: malformed {ENV_FDS}={v:?}");
        exit_now(2)
    }
    // Only the master's own child is a worker: a process the worker started inherits the
    // environment (when it could not be cleared below) but has another parent.
    if sys::parent_pid() != master {
        return;
    }
    if single_threaded() {
        // SAFETY: no other thread exists, so nothing reads the environment concurrently.
        unsafe { std::env::remove_var(ENV_FDS) };
    }
    let [data, ctl] = [d, c].map(|fd| match sys::adopt_passed_socket(fd) {
        Ok(owned) => owned,
        Err(why) => {
            eprintln!(
                "ptools-workerset: worker descriptor {fd} from {ENV_FDS} is not a socket the \
                 master passed ({why}); workers are started by addprocs, not by hand"
            );
            exit_now(2)
        }
    });
    if !sys::die_with_parent(master) {
        exit_now(0)
    }
    // Without both regions, every payload goes on the socket (the master sends no
    // `CALL_ZC` to a worker it passed none; one it did is refused below, see `serve`).
    let zc = (a >= 0 && r >= 0 && a != r && ![d, c].contains(&a) && ![d, c].contains(&r))
        .then(|| {
            Some(WorkerZc::new(
                sys::Region::adopt(a).ok()?,
                sys::Region::adopt(r).ok()?,
            ))
        })
        .flatten();
    // The ring, when the master made one, is the data link after the handshake: the master
    // switches to it then, so a worker that cannot take it cannot serve.
    let ring = (g >= 0 && ![d, c, a, r].contains(&g)).then(|| match sys::Ring::adopt(g) {
        Ok(ring) => ring,
        Err(why) => {
            eprintln!("ptools-workerset: worker ring descriptor {g}: {why}");
            exit_now(2)
        }
    });
    run(
        UnixLink(data),
        UnixLink(ctl),
        cap,
        Duration::from_millis(ms),
        zc,
        ring,
    )
}

/// A local worker's side of its two shared-memory regions (see `cluster/PROTOCOL.md`,
/// "Large payloads").
struct WorkerZc {
    /// Written by the master, read here.
    arg: sys::Region,
    /// Written here (results are encoded straight into it), read by the master.
    res: sys::Region,
    /// Results left in `res` so far.
    sent: u64,
    /// The largest count of those the master has said it read.
    acked: u64,
}

impl WorkerZc {
    fn new(arg: sys::Region, res: sys::Region) -> WorkerZc {
        WorkerZc {
            arg,
            res,
            sent: 0,
            acked: 0,
        }
    }
}

/// Worker mode for a process a launcher started: join the master over TCP, then serve.
fn enter_tcp(v: &std::ffi::OsStr) -> ! {
    if single_threaded() {
        // SAFETY: no other thread exists, so nothing reads the environment concurrently.
        // A process this worker starts must not take itself for a worker.
        unsafe { std::env::remove_var(crate::net::launch::ENV_TCP) };
    }
    let Some(v) = v.to_str() else {
        eprintln!(
            "ptools-workerset: malformed {}",
            crate::net::launch::ENV_TCP
        );
        exit_now(2)
    };
    serve_joined(crate::net::join(v), "this worker could not join its master")
}

/// Serves the master a worker joined over TCP, or exits with `why` and the reason.
fn serve_joined(joined: crate::net::Joined, why: &str) -> ! {
    match joined {
        Ok((data, ctl, id, cfg)) => {
            MYID.store(id, Ordering::Relaxed);
            serve(
                Arc::new(data),
                Box::new(ctl),
                FrameReader::with_cap(cfg.cap),
                cfg.cap,
                // The master pings only once every worker of the start has joined (within
                // its start timeout); from then on, at least once per heartbeat timeout.
                Some((
                    cfg.handshake + cfg.heartbeat + Duration::from_secs(5),
                    cfg.heartbeat,
                )),
                None,
            )
        }
        Err(m) => {
            eprintln!("ptools-workerset: {why}: {m}");
            exit_now(2)
        }
    }
}

/// Rank `n > 0` of a job whose rank 0 is the master: join it through the rendezvous file
/// at `path`, then serve.
pub(crate) fn serve_rank_zero(path: &std::path::Path, timeout: Duration) -> ! {
    let deadline = std::time::Instant::now() + timeout + Duration::from_secs(5);
    let joined = crate::net::ranks::read(path, deadline).and_then(|(config, secret)| {
        let c = crate::net::TcpConfig::parse(&config)
            .ok_or_else(|| format!("{}: malformed", path.display()))?;
        crate::net::join_with(c, &secret, None, deadline)
    });
    serve_joined(joined, "this rank could not join rank 0")
}

/// Writes `bytes` as they are on this worker's data link, past the framing (tests of the
/// master's handling of a corrupt stream use it from a remote function).
pub(crate) fn write_raw_to_data_link(bytes: &[u8]) -> std::io::Result<()> {
    match DATA_LINK.get() {
        Some(link) => link.send_all(bytes),
        None => Err(std::io::ErrorKind::NotConnected.into()),
    }
}

/// Publishes `pos` as this worker's write (`write`) or read position on its shared-memory
/// ring (tests of the master's checks of the ring use it from a remote function); false
/// without a ring.
pub(crate) fn forge_ring_position(write: bool, pos: u64) -> bool {
    DATA_LINK
        .get()
        .is_some_and(|link| link.forge_position(write, pos))
}

pub(crate) fn single_threaded() -> bool {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count() == 1)
        .unwrap_or(false)
}

fn run(
    data: UnixLink,
    ctl: UnixLink,
    cap: usize,
    handshake: Duration,
    zc: Option<WorkerZc>,
    ring: Option<sys::Ring>,
) -> ! {
    CAP.store(cap, Ordering::Relaxed);
    let mut reader = FrameReader::with_cap(wire::HANDSHAKE_CAP);
    let Ok(build) = sys::BuildId::of_self() else {
        exit_now(2)
    };
    let hello = wire::Hello {
        magic: wire::MAGIC,
        protocol: wire::PROTOCOL,
        pid: std::process::id(),
        build,
    };
    let mut out = Vec::with_capacity(64 * 1024);
    wire::begin(&mut out, wire::HELLO);
    let Ok(mut out) = crate::codec::encode_into(&hello, out) else {
        exit_now(2)
    };
    wire::finish(&mut out);
    if data.send_all(&out).is_err() {
        exit_now(0)
    }
    // The master answers at once; one that never does (it hung, or the descriptors lead
    // elsewhere) ends this worker after the start timeout plus a margin, never a hang.
    let deadline = std::time::Instant::now() + handshake + Duration::from_secs(5);
    match reader.next_before(&data, deadline) {
        Ok(Some(b)) if b[0] == wire::WELCOME => {
            MYID.store(wire::u64_at(b, 1).unwrap_or(0) as usize, Ordering::Relaxed);
        }
        Ok(Some(b)) if b[0] == wire::REJECT => exit_now(3),
        Ok(None) => exit_now(0),
        Ok(Some(_)) | Err(_) => {
            eprintln!("ptools-workerset: worker got no valid answer to its handshake");
            exit_now(2)
        }
    }
    // Nothing follows the welcome on the socket: with a ring, calls come through it.
    let data: Arc<dyn Link> = match ring {
        Some(r) => Arc::new(r.worker(sys::ring_spin())),
        None => Arc::new(data),
    };
    serve(data, Box::new(ctl), reader.with_new_cap(cap), cap, None, zc)
}

/// Serves calls on `data` until shutdown or the master's end; `ctl` is served beside it
/// by its own thread. With a `heartbeat`, a master silent on `ctl` for that long is taken
/// for gone (a worker on another host has no `PR_SET_PDEATHSIG`).
fn serve(
    data: Arc<dyn Link>,
    ctl: Box<dyn Link>,
    mut reader: FrameReader,
    cap: usize,
    heartbeat: Option<(Duration, Duration)>,
    mut zc: Option<WorkerZc>,
) -> ! {
    CAP.store(cap, Ordering::Relaxed);
    let _ = DATA_LINK.set(data.clone());
    let replies = Arc::new(Replies {
        buf: Mutex::new(Vec::with_capacity(64 * 1024)),
        spare: Mutex::new(Vec::with_capacity(64 * 1024)),
        armed: Mutex::new(false),
        cv: Condvar::new(),
        link: data.clone(),
    });
    let r_ctl = replies.clone();
    std::thread::Builder::new()
        .name("ptools-control".into())
        .spawn(move || control(&*ctl, &r_ctl, heartbeat))
        .unwrap_or_else(|_| exit_now(2));
    let r2 = replies.clone();
    std::thread::Builder::new()
        .name("ptools-flusher".into())
        .spawn(move || r2.flusher())
        .unwrap_or_else(|_| exit_now(2));
    let mut res = Vec::new();
    // Freed memory is kept by the allocator while calls come (see `KEEP_BUF`), given back
    // once the worker is idle.
    sys::keep_freed_memory(wire::KEEP_BUF);
    let mut held_large = false;
    loop {
        // Replies go out as soon as no further call is already buffered: a lone call is
        // answered at once, and pipelined calls share one write.
        if !reader.has_frame() {
            replies.flush();
            // A large result buffer is kept for the next call only if it comes soon.
            if held_large && !data.wait_readable(wire::IDLE_RELEASE).unwrap_or(true) {
                res = Vec::new();
                sys::release_freed_memory();
                held_large = false;
            }
        }
        let body = match reader.next(&*data) {
            Ok(Some(b)) => b,
            Ok(None) => exit_now(0),
            Err(_) => exit_now(1),
        };
        let zc_call = body[0] == wire::CALL_ZC && body.len() == wire::CALL_HEAD + 16;
        if !(zc_call || body[0] == wire::CALL && body.len() >= wire::CALL_HEAD) {
            eprintln!("ptools-workerset: worker got a malformed frame");
            exit_now(1)
        }
        let f = FnRef {
            f_off: wire::u64_at(body, 1).unwrap_or(0),
            tramp_off: wire::u64_at(body, 9).unwrap_or(0),
        };
        let acked = wire::u64_at(body, 17).unwrap_or(0);
        // The result region is lent to this call's result when the master has read every
        // result left there before (`acked` from its calls against our count).
        let (z_arg, z_res) = match zc.as_mut() {
            Some(z) => {
                z.acked = z.acked.max(acked);
                let free = z.acked == z.sent;
                (Some(&mut z.arg), free.then_some(&mut z.res))
            }
            None => (None, None),
        };
        let mut arg_len = body.len();
        // The argument's region and place in it, when it lies there.
        let mut lent = None;
        let arg: &[u8] = if zc_call {
            let off = wire::u64_at(body, 25).unwrap_or(0);
            let len = wire::u64_at(body, 33).unwrap_or(0);
            let Some(a) = z_arg else {
                eprintln!("ptools-workerset: worker got a malformed frame");
                exit_now(1)
            };
            if a.cover(off, len, cap).is_err() {
                eprintln!("ptools-workerset: worker got a malformed frame");
                exit_now(1)
            }
            arg_len = len as usize;
            lent = a.home().map(|h| (h, off as usize, len as usize));
            // SAFETY: `cover` checked the range; the master writes its argument region
            // again only after it has read the reply to this call, which is sent after the
            // argument is decoded (and this borrow is gone), and this worker trusts its
            // master in any case (it runs the code the master names).
            unsafe { a.slice(off as usize, len as usize) }
        } else {
            &body[wire::CALL_HEAD..]
        };
        BUSY.store(true, Ordering::SeqCst);
        if SHUTDOWN.load(Ordering::SeqCst) {
            replies.flush();
            exit_now(0)
        }
        res.clear();
        // A result of `ZC_THRESHOLD` bytes or more is encoded straight into the result
        // region when it is free (one copy, by the codec), else into `res`.
        let mut out = match z_res {
            Some(r) => {
                let max = CAP.load(Ordering::Relaxed) - 1;
                Out::with_region(std::mem::take(&mut res), r, wire::ZC_THRESHOLD, max)
            }
            None => Out::new(std::mem::take(&mut res)),
        };
        // SAFETY: the handshake proved the master runs this very executable image, and
        // the master made these offsets with `FnRef::single`/`FnRef::batch`.
        let status = unsafe { f.invoke(arg, lent.as_ref().map(|(h, ..)| h), &mut out) };
        // The reply is in the buffer before the call counts as done: a shutdown that finds
        // this worker idle flushes the buffer, so a finished call is never reported dead.
        let len = out.payload_len();
        let cap_ok = len < CAP.load(Ordering::Relaxed);
        let in_region = out.spilled().is_some() && status == Status::Ok && cap_ok;
        if !in_region {
            // An error's message that spilled comes back to go on the socket (a payload
            // over the cap never stays in the region: `max`).
            out.unspill();
        }
        res = out.finish().0;
        // Our `Home` is not a view: once it is dropped, what holds the argument's mapping
        // is the region and the views the function kept.
        let lent = lent.map(|(_, off, len)| (off, len));
        if let Some(z) = zc.as_mut() {
            // Views of the argument that the function kept get their own copy before the
            // reply lets the master write the region again.
            if let Some((off, len)) = lent {
                z.arg.keep_lent(off, len);
            }
            z.sent += u64::from(in_region);
        }
        if in_region {
            replies.push_zc(len);
        } else {
            replies.push(status, &res);
        }
        BUSY.store(false, Ordering::SeqCst);
        if SHUTDOWN.load(Ordering::SeqCst) {
            replies.flush();
            exit_now(0)
        }
        if reader.has_frame() {
            // The next call runs before this reply is written; it may be a long one, so
            // the flusher writes the held replies soon if the call thread does not.
            replies.arm();
        }
        if res.capacity() > wire::KEEP_BUF {
            res = Vec::new();
        }
        held_large |= res.capacity() > 1 << 20 || arg_len > 1 << 20;
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock()
}

/// Replies waiting to be written, so that pipelined calls share one write.
struct Replies {
    buf: Mutex<Vec<u8>>,
    /// Held while writing, so that flushes from two threads keep the order of replies.
    spare: Mutex<Vec<u8>>,
    armed: Mutex<bool>,
    cv: Condvar,
    link: Arc<dyn Link>,
}

/// How long a reply may wait behind a later call before the flusher writes it.
const HOLD: Duration = Duration::from_micros(200);

impl Replies {
    fn push(&self, status: Status, res: &[u8]) {
        // The body is the status byte and the result.
        let cap = CAP.load(Ordering::Relaxed) - 1;
        if res.len() > cap && status != Status::TooLarge {
            return self.push_too_large(res.len());
        }
        let mut b = lock(&self.buf);
        let at = wire::append(&mut b, status as u8);
        b.extend_from_slice(res);
        wire::finish_at(&mut b, at);
    }

    /// The reply to a call whose result (of `len` bytes) is over the link's frame cap.
    fn push_too_large(&self, len: usize) {
        let cap = CAP.load(Ordering::Relaxed) - 1;
        let mut m = [0u8; 16];
        m[..8].copy_from_slice(&(len as u64).to_le_bytes());
        m[8..].copy_from_slice(&(cap as u64).to_le_bytes());
        self.push(Status::TooLarge, &m);
    }

    /// The reply to a call whose result was left in the result region.
    fn push_zc(&self, len: usize) {
        let mut b = lock(&self.buf);
        let at = wire::append(&mut b, wire::REPLY_ZC);
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&(len as u64).to_le_bytes());
        wire::finish_at(&mut b, at);
    }

    fn flush(&self) {
        let mut spare = lock(&self.spare);
        std::mem::swap(&mut *lock(&self.buf), &mut *spare);
        if !spare.is_empty() {
            if self.link.send_all(&spare).is_err() {
                exit_now(0)
            }
            spare.clear();
            if spare.capacity() > 1 << 20 {
                *spare = Vec::new();
            }
        }
    }

    fn arm(&self) {
        let mut a = lock(&self.armed);
        if !*a {
            *a = true;
            self.cv.notify_one();
        }
    }

    fn flusher(&self) {
        loop {
            {
                let mut a = lock(&self.armed);
                while !*a {
                    self.cv.wait(&mut a);
                }
            }
            std::thread::sleep(HOLD);
            *lock(&self.armed) = false;
            self.flush();
        }
    }
}

/// Serves the control link. With `heartbeat = (first, then)`, a master silent for `first`
/// before its first frame, or for `then` between frames, is taken for gone.
fn control(ctl: &dyn Link, replies: &Replies, heartbeat: Option<(Duration, Duration)>) -> ! {
    let mut reader = FrameReader::with_cap(wire::CONTROL_CAP);
    let mut out = Vec::new();
    let mut heard = false;
    loop {
        let next = match heartbeat {
            // The master pings more often than this; silence means it is gone or stopped.
            Some((first, then)) => {
                let t = if heard { then } else { first };
                reader.next_before(ctl, std::time::Instant::now() + t)
            }
            None => reader.next(ctl),
        };
        heard = true;
        match next {
            Ok(Some(b)) if b[0] == wire::PING => {
                wire::begin(&mut out, wire::PONG);
                out.extend_from_slice(&b[1..]);
                wire::finish(&mut out);
                let _ = ctl.send_all(&out);
            }
            Ok(Some(b)) if b[0] == wire::SHUTDOWN => {
                SHUTDOWN.store(true, Ordering::SeqCst);
                if !BUSY.load(Ordering::SeqCst) {
                    // Replies of finished calls may still be held back (pipelined calls
                    // share one write); they go out before the worker does. The call
                    // thread either saw SHUTDOWN after marking itself busy (it flushes and
                    // exits itself) or is idle with its replies in the buffer.
                    replies.flush();
                    exit_now(0)
                }
                // The call thread exits when the running call returns.
            }
            Ok(Some(_)) => {}
            // The master is gone (or broke the protocol): end now, busy or not.
            Ok(None) | Err(_) => exit_now(0),
        }
    }
}
