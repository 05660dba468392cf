//! Workers on other hosts: TCP links, mutual authentication, launchers, liveness.
//!
//! # Security model
//!
//! A cluster that starts remote workers draws a per-job secret (32 random bytes) and
//! listens on TCP, on 127.0.0.1 unless [`ClusterBuilder::bind`] says another address.
//! Every connection, the data and the control one of each worker, proves the secret in both
//! directions with HMAC-SHA256 over fresh nonces before any frame is read (see `auth.rs`):
//! a peer without the secret gets nothing decoded, and a worker never runs a call from a
//! master that could not prove the secret. The secret never appears on a command line or
//! in a log: it reaches a worker on its standard input (`ssh`), or in its environment or a
//! 0600 file (MPI, Slurm). The worker removes it from its environment when it is still
//! single-threaded there (so processes it starts do not inherit it); `/proc/<pid>/environ`
//! keeps the original bytes, readable by the same user and root only. The build is
//! checked by content (the executable's build-id) before anything runs. The links are not
//! encrypted: run them on a network you trust, or through a tunnel.
//!
//! # Liveness
//!
//! The master pings each remote worker on its control connection every heartbeat
//! interval; a worker that has not answered within the heartbeat timeout (stopped, its
//! host gone, the network cut) is declared dead ([`Termination::Unresponsive`]) and its
//! connections closed, so its calls fail within `timeout + interval` of the last answer.
//! A worker whose master sent nothing for the timeout exits, as it does at the end of
//! either connection (there is no `PR_SET_PDEATHSIG` across hosts). A launcher process
//! (an `ssh` client) that dies takes its workers' links down with it.
//!
//! [`ClusterBuilder::bind`]: crate::ClusterBuilder::bind

pub(crate) mod auth;
pub(crate) mod identity;
pub(crate) mod launch;
pub(crate) mod link;
pub(crate) mod listen;
pub(crate) mod ranks;

use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use crate::error::Termination;
use crate::sys;
use crate::wire::{self, FrameReader, Link};
use auth::Secret;
use launch::ENV_TCP;
use link::TcpLink;

/// What a worker on a TCP link says first (frame [`wire::HELLO_TCP`]).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct RemoteHello {
    pub(crate) magic: u64,
    pub(crate) protocol: u32,
    pub(crate) pid: u32,
    /// [`identity::of_self`]: the build, by content.
    pub(crate) build: String,
    /// The start of workers this worker belongs to (from its environment).
    pub(crate) launch: u64,
    /// Which launcher process brought it, when it got the secret on stdin.
    pub(crate) slot: Option<u64>,
    pub(crate) hostname: String,
    pub(crate) addrs: Vec<IpAddr>,
}

/// The most addresses a worker reports (a handshake frame is capped at a few KiB).
const MAX_ADDRS: usize = 64;

/// A worker on a TCP link, seen from the master: what stands for its process.
#[derive(Debug)]
pub(crate) struct TcpPeer {
    pub(crate) pid: i32,
    pub(crate) data: Arc<TcpLink>,
    pub(crate) ctl: Arc<TcpLink>,
    /// The launcher process that brought only this worker (an `ssh` client): stopped and
    /// reaped with it. A launcher shared by several workers is reaped when the last of
    /// them lets go of it.
    pub(crate) launcher: Option<Arc<sys::Process>>,
    /// True when the launcher brought this worker alone (one `ssh` per worker).
    pub(crate) owns_launcher: bool,
    /// Why the master gave up on it, when it did (no heartbeat answer).
    pub(crate) lost: Mutex<Option<Termination>>,
}

impl TcpPeer {
    /// Closes both connections: the worker exits at their end (busy or not), and whoever
    /// reads them here wakes. Its own launcher process is killed too.
    pub(crate) fn kill(&self) {
        self.data.shutdown();
        self.ctl.shutdown();
        if let Some(l) = &self.launcher
            && self.owns_launcher
        {
            l.kill();
        }
    }

    /// Marks it lost for `why` and closes its connections.
    pub(crate) fn lose(&self, why: Termination) {
        self.lost.lock().get_or_insert(why);
        self.kill();
    }

    /// How it ended, as far as this side can tell; waits up to `grace` for its own
    /// launcher process to exit (then kills it) so nothing is left unreaped.
    pub(crate) fn reap(&self, grace: Duration) -> Termination {
        if let Some(l) = &self.launcher
            && self.owns_launcher
        {
            l.reap(grace);
        }
        self.lost.lock().unwrap_or(Termination::Disconnected)
    }
}

/// The cluster's side of remote workers: the secret and the listening socket, made at the
/// first [`Cluster::addprocs_with`](crate::Cluster::addprocs_with).
#[derive(Debug)]
pub(crate) struct Net {
    pub(crate) secret: Arc<Secret>,
    pub(crate) listener: listen::Listener,
    /// One start of remote workers at a time: proven connections are taken in order.
    pub(crate) starting: Mutex<()>,
    /// `host:port` as workers are told to connect.
    pub(crate) advertised: String,
}

impl Net {
    pub(crate) fn new(bind: SocketAddr, auth_timeout: Duration) -> io::Result<Net> {
        let secret = Arc::new(Secret::random()?);
        let listener = listen::Listener::bind(bind, secret.clone(), auth_timeout)?;
        let a = listener.addr();
        let advertised = if a.ip().is_unspecified() {
            // Listening everywhere: workers reach this host by its name.
            let h = nix::unistd::gethostname()
                .map_err(io::Error::from)?
                .to_string_lossy()
                .into_owned();
            format!("{h}:{}", a.port())
        } else {
            a.to_string()
        };
        Ok(Net {
            secret,
            listener,
            starting: Mutex::new(()),
            advertised,
        })
    }
}

/// What `PTOOLS_WORKER_TCP` tells a worker.
#[derive(Debug, PartialEq)]
pub(crate) struct TcpConfig {
    pub(crate) master: String,
    pub(crate) launch: u64,
    pub(crate) cap: usize,
    pub(crate) handshake: Duration,
    pub(crate) heartbeat: Duration,
    pub(crate) secret: String,
    /// The address of its host its connections come from (Julia's `bind_addr`).
    pub(crate) from: Option<IpAddr>,
}

impl TcpConfig {
    /// The variable's value without `secret=` (the launch adds it).
    pub(crate) fn encode_without_secret(&self) -> String {
        format!(
            "master={},launch={:x},cap={},hs={},hb={}",
            self.master,
            self.launch,
            self.cap,
            self.handshake.as_millis(),
            self.heartbeat.as_millis()
        )
    }

    pub(crate) fn parse(v: &str) -> Option<TcpConfig> {
        let mut c = TcpConfig {
            master: String::new(),
            launch: 0,
            cap: 0,
            handshake: Duration::ZERO,
            heartbeat: Duration::ZERO,
            secret: String::new(),
            from: None,
        };
        let mut seen = 0u32;
        for kv in v.split(',') {
            let (k, val) = kv.split_once('=')?;
            let bit = match k {
                "master" => {
                    c.master = val.to_owned();
                    1
                }
                "launch" => {
                    c.launch = u64::from_str_radix(val, 16).ok()?;
                    2
                }
                "cap" => {
                    c.cap = val.parse().ok()?;
                    4
                }
                "hs" => {
                    c.handshake = Duration::from_millis(val.parse().ok()?);
                    8
                }
                "hb" => {
                    c.heartbeat = Duration::from_millis(val.parse().ok()?);
                    16
                }
                "secret" => {
                    c.secret = val.to_owned();
                    32
                }
                "from" => {
                    c.from = Some(val.parse().ok()?);
                    64
                }
                _ => return None,
            };
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
        }
        let ok = seen & 63 == 63
            && (64..=wire::MAX_FRAME_LIMIT).contains(&c.cap)
            && !c.heartbeat.is_zero()
            && matches!(c.secret.as_str(), "stdin" | "env" | "file");
        ok.then_some(c)
    }
}

/// The job's secret, from where the launcher put it (and the launcher's slot number when
/// it came on stdin); the environment copy is removed.
fn read_secret(how: &str, deadline: Instant) -> Result<(Secret, Option<u64>), String> {
    let text = match how {
        "env" => {
            let v = std::env::var(launch::ENV_SECRET)
                .map_err(|_| format!("{} is not set", launch::ENV_SECRET))?;
            if crate::worker::single_threaded() {
                // SAFETY: no other thread exists, so nothing reads the environment
                // concurrently.
                unsafe { std::env::remove_var(launch::ENV_SECRET) };
            }
            v
        }
        "file" => {
            let p = std::env::var_os(launch::ENV_SECRET_FILE)
                .ok_or_else(|| format!("{} is not set", launch::ENV_SECRET_FILE))?;
            let f = open_private(std::path::Path::new(&p))
                .map_err(|e| format!("{}: {e}", p.display()))?;
            use std::os::unix::fs::MetadataExt;
            let m = f.metadata().map_err(|e| e.to_string())?;
            if !m.is_file() || m.mode() & 0o077 != 0 || m.uid() != nix::unistd::getuid().as_raw() {
                return Err(format!(
                    "{}: not a private file of this user (mode {:o}); it must be 0600",
                    p.display(),
                    m.mode() & 0o777
                ));
            }
            let mut s = String::new();
            f.take(256)
                .read_to_string(&mut s)
                .map_err(|e| e.to_string())?;
            s
        }
        _ => {
            // One line on stdin, read with the deadline (a launcher that never writes it
            // must not hang the worker).
            let mut line = Vec::with_capacity(80);
            let stdin = std::io::stdin();
            let mut b = [0u8; 80];
            while !line.contains(&b'\n') && line.len() < 256 {
                let left = deadline.saturating_duration_since(Instant::now());
                if !sys::poll_readable(std::os::fd::AsFd::as_fd(&stdin), left)
                    .map_err(|e| e.to_string())?
                {
                    return Err("no secret on standard input in time".into());
                }
                let n = nix::unistd::read(std::io::stdin(), &mut b).map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                line.extend_from_slice(&b[..n]);
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            let mut words = line.split_whitespace();
            let secret = words.next().and_then(Secret::from_hex);
            let slot = words.next().and_then(|w| u64::from_str_radix(w, 16).ok());
            return match (secret, slot, words.next()) {
                (Some(s), Some(n), None) => Ok((s, Some(n))),
                _ => Err("standard input does not hold the secret line".into()),
            };
        }
    };
    Secret::from_hex(&text)
        .map(|s| (s, None))
        .ok_or_else(|| "the secret is not 64 hex digits".into())
}

/// Opens a file that should hold a secret without following a link or blocking on a FIFO
/// (someone who can write to its directory must not hang or redirect the reader); the
/// caller checks that it is a private regular file.
pub(crate) fn open_private(p: &std::path::Path) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(p)
}

fn connect(master: &str, from: Option<IpAddr>, deadline: Instant) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("{master}: no address"));
    for a in master.to_socket_addrs()? {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        let r = match from {
            None => TcpStream::connect_timeout(&a, left),
            Some(ip) => connect_from(ip, a, left),
        };
        match r {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Connects to `to` from the local address `ip` (any port), giving up after `timeout`.
fn connect_from(ip: IpAddr, to: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    use nix::sys::socket::{
        AddressFamily, SockFlag, SockType, SockaddrStorage, bind, connect, setsockopt, socket,
        sockopt,
    };
    let family = match to {
        SocketAddr::V4(_) => AddressFamily::Inet,
        SocketAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    bind(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(SocketAddr::new(ip, 0)),
    )?;
    // Linux's connect(2) gives up after SO_SNDTIMEO (socket(7)).
    let tv = nix::sys::time::TimeVal::new(
        timeout.as_secs().min(i64::MAX as u64) as i64,
        timeout.subsec_micros().into(),
    );
    setsockopt(&fd, sockopt::SendTimeout, &tv)?;
    connect(
        std::os::fd::AsRawFd::as_raw_fd(&fd),
        &SockaddrStorage::from(to),
    )?;
    let zero = nix::sys::time::TimeVal::new(0, 0);
    setsockopt(&fd, sockopt::SendTimeout, &zero)?;
    Ok(TcpStream::from(fd))
}

/// What joining gives a worker: its two links, its id and its configuration, or why not.
pub(crate) type Joined = Result<(TcpLink, TcpLink, usize, TcpConfig), String>;

/// A worker's side of joining a master over TCP: both connections authenticated, the
/// handshake done. Returns the links, this worker's id, and the configuration.
pub(crate) fn join(v: &str) -> Joined {
    let c = TcpConfig::parse(v).ok_or_else(|| format!("malformed {ENV_TCP}={v:?}"))?;
    let deadline = Instant::now() + c.handshake + Duration::from_secs(5);
    let (secret, slot) = read_secret(&c.secret, deadline)?;
    join_with(c, &secret, slot, deadline)
}

/// [`join`] with the configuration and secret in hand.
pub(crate) fn join_with(
    c: TcpConfig,
    secret: &Secret,
    slot: Option<u64>,
    deadline: Instant,
) -> Joined {
    let open = || -> Result<TcpStream, String> {
        let mut s =
            connect(&c.master, c.from, deadline).map_err(|e| format!("{}: {e}", c.master))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        auth::authenticate_to_master(&mut s, secret, deadline)
            .map_err(|e| format!("authentication with {}: {e}", c.master))?;
        Ok(s)
    };
    let data = TcpLink::new(open()?).map_err(|e| e.to_string())?;
    // The address the master was reached from, as an address of this host (what a
    // master that targets hosts by address will name).
    let local = data.0.local_addr().map(|a| a.ip()).ok();
    let here = crate::WorkerHost::this_host();
    let mut addrs: Vec<IpAddr> = local.into_iter().collect();
    addrs.extend(here.addresses.into_iter().filter(|a| Some(*a) != local));
    addrs.truncate(MAX_ADDRS);
    let hostname = here.hostname;
    let hello = RemoteHello {
        magic: wire::MAGIC,
        protocol: wire::PROTOCOL,
        pid: std::process::id(),
        build: identity::of_self().map_err(|e| format!("build identity: {e}"))?,
        launch: c.launch,
        slot,
        hostname,
        addrs,
    };
    let mut out = Vec::new();
    wire::begin(&mut out, wire::HELLO_TCP);
    let mut out = crate::codec::encode_into(&hello, out)?;
    wire::finish(&mut out);
    data.send_all(&out).map_err(|e| e.to_string())?;
    let mut r = FrameReader::with_cap(wire::HANDSHAKE_CAP);
    let (id, token) = match r.next_before(&data, deadline) {
        Ok(Some(b)) if b[0] == wire::WELCOME_TCP && b.len() == 25 => {
            let id = wire::u64_at(b, 1).unwrap_or(0) as usize;
            let mut t = [0u8; 16];
            t.copy_from_slice(&b[9..25]);
            (id, t)
        }
        Ok(Some(b)) if b[0] == wire::REJECT => {
            return Err("the master runs another build (or this start was abandoned)".into());
        }
        Ok(_) => return Err("no valid answer to the handshake".into()),
        Err(e) => return Err(format!("handshake: {e}")),
    };
    let ctl = TcpLink::new(open()?).map_err(|e| e.to_string())?;
    let mut f = Vec::new();
    wire::begin(&mut f, wire::CTL_HELLO);
    f.extend_from_slice(&token);
    wire::finish(&mut f);
    ctl.send_all(&f).map_err(|e| e.to_string())?;
    Ok((data, ctl, id, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trip_and_refusals() {
        let c = TcpConfig {
            master: "127.0.0.1:4000".into(),
            launch: 0xabc,
            cap: 1 << 20,
            handshake: Duration::from_millis(1500),
            heartbeat: Duration::from_secs(3),
            secret: "stdin".into(),
            from: None,
        };
        let v = format!("{},secret=stdin", c.encode_without_secret());
        assert_eq!(TcpConfig::parse(&v), Some(c));
        let base = "master=h:1,launch=1,cap=100,hs=1,hb=1";
        assert!(TcpConfig::parse(&format!("{base},secret=env")).is_some());
        for bad in [
            base.to_string(),
            format!("{base},secret=argv"),
            format!("{base},secret=env,secret=env"),
            format!("{base},secret=env,x=1"),
            "master=h:1,launch=1,cap=10,hs=1,hb=1,secret=env".into(),
            "master=h:1,launch=1,cap=100,hs=1,hb=0,secret=env".into(),
        ] {
            assert!(TcpConfig::parse(&bad).is_none(), "{bad}");
        }
    }
}
