//! The master's listening socket: accepts connections, authenticates each one on a single
//! thread, and hands the proven ones to whoever is starting workers.
//!
//! Nothing a peer sends before it has proven the secret is decoded or decides a size: the
//! only pre-authentication read is the fixed [`RESPONSE_LEN`]-byte answer, into a buffer
//! of that size. One thread polls the listener and every connection still authenticating,
//! each with a deadline, so junk, wrong keys, replays and silent connections cost one
//! small slot each, for at most the authentication timeout, and never block the others. At
//! most [`MAX_PENDING`] connections authenticate at once, and never more than a quarter of
//! the process's descriptor limit (a flood must not take the descriptors the cluster needs
//! to start workers); past that the oldest is closed.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use super::auth::{MasterSide, RESPONSE_LEN, Secret};
use crate::sys;
use crate::wire::{Link, UnixLink};

/// Connections authenticating at once; a flood past it closes the oldest first.
pub(crate) const MAX_PENDING: usize = 1024;
/// Proven connections not yet taken by a start of workers; past it the oldest is closed.
const MAX_READY: usize = 1024;

/// A connection that proved the secret, with the address it came from.
#[derive(Debug)]
pub(crate) struct Proven {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) at: Instant,
}

#[derive(Debug)]
struct Shared {
    ready: Mutex<VecDeque<Proven>>,
    ready_cv: Condvar,
    stop: AtomicBool,
}

/// The listening socket and its thread; dropping it stops the thread and closes every
/// connection it still holds.
#[derive(Debug)]
pub(crate) struct Listener {
    addr: SocketAddr,
    shared: Arc<Shared>,
    wake: UnixLink,
    thread: Option<JoinHandle<()>>,
}

impl Listener {
    /// Binds `addr` and starts authenticating connections with `secret`, each within
    /// `auth_timeout`.
    pub(crate) fn bind(
        addr: SocketAddr,
        secret: Arc<Secret>,
        auth_timeout: Duration,
    ) -> io::Result<Listener> {
        let l = TcpListener::bind(addr)?;
        l.set_nonblocking(true)?;
        let addr = l.local_addr()?;
        let (wake, wake_rx) = sys::socketpair()?;
        let shared = Arc::new(Shared {
            ready: Mutex::new(VecDeque::new()),
            ready_cv: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let s2 = shared.clone();
        let thread = std::thread::Builder::new()
            .name("ptools-listener".into())
            .spawn(move || run(&l, &UnixLink(wake_rx), &secret, auth_timeout, &s2))?;
        Ok(Listener {
            addr,
            shared,
            wake: UnixLink(wake),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The next proven connection, waiting until `deadline`; `None` when it passes.
    pub(crate) fn next_before(&self, deadline: Instant) -> Option<Proven> {
        let mut q = self.shared.ready.lock();
        loop {
            if let Some(p) = q.pop_front() {
                return Some(p);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.shared.ready_cv.wait_for(&mut q, left);
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.send_all(&[1]);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One connection proving itself.
struct Pending {
    stream: TcpStream,
    peer: SocketAddr,
    side: MasterSide,
    got: [u8; RESPONSE_LEN],
    n: usize,
    deadline: Instant,
}

/// How many connections may authenticate at once here: [`MAX_PENDING`], or a quarter of
/// the soft descriptor limit (`RLIMIT_NOFILE`) when that is lower.
fn pending_cap() -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| usize::try_from(soft).unwrap_or(usize::MAX))
        .unwrap_or(1024);
    MAX_PENDING.min(soft / 4).max(16)
}

fn run(l: &TcpListener, wake: &UnixLink, secret: &Secret, timeout: Duration, sh: &Shared) {
    let cap = pending_cap();
    let mut pending: VecDeque<Pending> = VecDeque::new();
    loop {
        if sh.stop.load(Ordering::SeqCst) {
            return;
        }
        let now = Instant::now();
        pending.retain(|p| p.deadline > now);
        let next = pending.iter().map(|p| p.deadline).min();
        let wait = next.map_or(PollTimeout::NONE, |d| {
            let ms = d.saturating_duration_since(now).as_millis() + 1;
            PollTimeout::try_from(ms.min(60_000) as i32).unwrap_or(PollTimeout::MAX)
        });
        let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(2 + pending.len());
        fds.push(PollFd::new(wake.0.as_fd(), PollFlags::POLLIN));
        fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        fds.extend(
            pending
                .iter()
                .map(|p| PollFd::new(p.stream.as_fd(), PollFlags::POLLIN)),
        );
        match poll(&mut fds, wait) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            // Nothing else fails with valid descriptors; do not spin if it does.
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if ready[0] {
            let mut b = [0u8; 16];
            let _ = wake.recv(&mut b);
            continue;
        }
        // Connections first (their indices are those of the poll set), then new ones.
        let mut i = 0;
        let mut idx = 2;
        while i < pending.len() {
            let r = ready[idx];
            idx += 1;
            if !r {
                i += 1;
                continue;
            }
            match step(&mut pending[i], secret) {
                Step::More => i += 1,
                Step::Drop => {
                    pending.remove(i);
                }
                Step::Proven => {
                    let p = pending.remove(i).expect("index in range");
                    hand_over(sh, p);
                }
            }
        }
        if ready[1] && !accept_all(l, &mut pending, timeout, cap) {
            // Out of descriptors: the connection stays in the backlog and the listener
            // readable. Make room by closing the oldest unproven connection, or wait a
            // little, rather than spin.
            if pending.pop_front().is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

enum Step {
    More,
    Drop,
    Proven,
}

/// Reads what the peer sent towards its answer; checks it once whole.
fn step(p: &mut Pending, secret: &Secret) -> Step {
    match (&p.stream).read(&mut p.got[p.n..]) {
        Ok(0) => return Step::Drop,
        Ok(k) => p.n += k,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            return Step::More;
        }
        Err(_) => return Step::Drop,
    }
    if p.n < RESPONSE_LEN {
        return Step::More;
    }
    let Some(proof) = p.side.check(secret, &p.got) else {
        return Step::Drop;
    };
    // 32 bytes into a new connection's empty send buffer: written whole or not at all.
    match (&p.stream).write(&proof) {
        Ok(n) if n == proof.len() => Step::Proven,
        _ => Step::Drop,
    }
}

fn hand_over(sh: &Shared, p: Pending) {
    if p.stream.set_nonblocking(false).is_err() {
        return;
    }
    let mut q = sh.ready.lock();
    if q.len() >= MAX_READY {
        q.pop_front();
    }
    q.push_back(Proven {
        stream: p.stream,
        peer: p.peer,
        at: Instant::now(),
    });
    drop(q);
    sh.ready_cv.notify_all();
}

/// Accepts every waiting connection; false when `accept` failed for want of descriptors.
fn accept_all(
    l: &TcpListener,
    pending: &mut VecDeque<Pending>,
    timeout: Duration,
    cap: usize,
) -> bool {
    loop {
        let (s, peer) = match l.accept() {
            Ok(x) => x,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) => {
                // EMFILE/ENFILE leave the connection waiting; anything else (a connection
                // reset before it was taken) is gone.
                let starved = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                return !starved;
            }
        };
        let Ok(side) = MasterSide::new() else {
            continue;
        };
        if s.set_nonblocking(true).is_err() || s.set_nodelay(true).is_err() {
            continue;
        }
        let challenge = side.challenge();
        match (&s).write(&challenge) {
            Ok(n) if n == challenge.len() => {}
            _ => continue,
        }
        if pending.len() >= cap {
            pending.pop_front();
        }
        pending.push_back(Pending {
            stream: s,
            peer,
            side,
            got: [0; RESPONSE_LEN],
            n: 0,
            deadline: Instant::now() + timeout,
        });
    }
}
