//! Starting workers through a [`Launcher`]: they connect back over TCP, prove the job's
//! secret, and join like local ones; then the heartbeat that watches them.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use super::link::{Peer, Remote};
use super::spawn::check_master;
use super::{Cluster, lock};
use crate::error::{Error, Result, Termination};
use crate::net::launch::{LaunchJob, Launched, Launcher};
use crate::net::link::TcpLink;
use crate::net::{Net, RemoteHello, TcpConfig, TcpPeer, auth, identity, ranks};
use crate::wire::{self, FrameReader, Link};

/// A worker between its hello and its registration.
struct Joining {
    id: usize,
    data: TcpLink,
    reader: FrameReader,
    hello: RemoteHello,
    token: [u8; 16],
    ctl: Option<TcpLink>,
    /// The address its data connection came from.
    from: std::net::IpAddr,
}

impl Cluster {
    /// Starts workers through `launcher` (over [`Ssh`](crate::Ssh), a
    /// [`CommandLauncher`](crate::CommandLauncher), ...) and returns their ids, as
    /// [`addprocs`](Self::addprocs) does for local ones.
    ///
    /// The first call draws the job's secret and starts listening (on the
    /// [`bind`](crate::ClusterBuilder::bind) address, 127.0.0.1 by default). Each worker
    /// connects twice (data, control), proves the secret on both connections, and is
    /// checked to run this very build by content ([`Error::BuildMismatch`] otherwise).
    /// All start, or none: if one does not join within the start timeout, or a launcher
    /// process exits with a failure first, every process of this call is stopped and
    /// reaped, and nothing is registered. One call runs at a time per cluster.
    ///
    /// # Errors
    ///
    /// [`Error::WorkerStartFailed`] (the launcher failed, or the workers did not join in
    /// time), [`Error::BuildMismatch`], [`Error::InvalidArgument`] inside a worker, and
    /// [`Error::Io`] when the listening socket cannot be made.
    pub fn addprocs_with<L: Launcher + ?Sized>(&self, launcher: &L) -> Result<Vec<usize>> {
        check_master()?;
        let opts = &self.inner.opts;
        let cap = opts.max_frame;
        if !(64..=wire::MAX_FRAME_LIMIT).contains(&cap) {
            return Err(Error::InvalidArgument(format!(
                "max_frame_bytes {cap} outside 64..={}",
                wire::MAX_FRAME_LIMIT
            )));
        }
        if opts.heartbeat_interval.is_zero() || opts.heartbeat_timeout <= opts.heartbeat_interval {
            return Err(Error::InvalidArgument(format!(
                "heartbeat interval {:?} must be non-zero and below its timeout {:?}",
                opts.heartbeat_interval, opts.heartbeat_timeout
            )));
        }
        let me = identity::of_self()?;
        let program = match &opts.remote_program {
            Some(p) => p.clone(),
            None => std::env::current_exe()?,
        };
        let net = self.net()?;
        let _one = lock(&net.starting);
        let mut l = [0u8; 8];
        auth::random(&mut l)?;
        let launch = u64::from_le_bytes(l);
        let cfg = TcpConfig {
            master: net.advertised.clone(),
            launch,
            cap,
            handshake: opts.start_timeout,
            heartbeat: opts.heartbeat_timeout,
            secret: String::new(),
            from: None,
        };
        let job = LaunchJob {
            program,
            args: opts.args.clone(),
            tcp: cfg.encode_without_secret(),
            secret: net.secret.clone(),
            next_slot: Default::default(),
        };
        let launched = launcher
            .launch(&job)
            .map_err(|e| Error::WorkerStartFailed(format!("launcher: {e}")))?;
        let expected: usize = launched.iter().map(|l| l.workers).sum();
        let joined = self.join(&net, &launched, expected, launch, &me);
        // Joined or not, the secret files of this start have served.
        for f in launched.iter().filter_map(|l| l.secret_file.as_ref()) {
            let _ = std::fs::remove_file(f);
        }
        let joined = match joined {
            Ok(j) => j,
            Err(e) => {
                for p in launched.iter().filter_map(|l| l.proc.as_ref()) {
                    p.kill();
                    p.reap(Duration::from_secs(5));
                }
                return Err(e);
            }
        };
        self.admit(joined, launched)
    }

    /// For a program started as the ranks of `mpirun` or the tasks of `srun`: in rank 0,
    /// every other rank joins this cluster as a worker, and their ids are returned; in any
    /// other rank this call becomes a worker of rank 0 and never returns (as
    /// [`init`](crate::init) does in a launched worker), exiting when rank 0 is done.
    ///
    /// Everything `main` does before this call runs in every rank. The ranks meet
    /// through a private file (mode 0600) in `PTOOLS_RENDEZVOUS_DIR` or the working
    /// directory, which the ranks' hosts must share; rank 0 listens on the
    /// [`bind`](crate::ClusterBuilder::bind) address, so ranks on other hosts need one
    /// they can reach. Rank and size come from `OMPI_COMM_WORLD_*`, `PMI_*` or
    /// `SLURM_PROCID`/`SLURM_NTASKS`.
    ///
    /// ```no_run
    /// // mpirun -np 4 ./my_program: rank 0 is the master of 3 workers.
    /// use ptools_workerset::{Cluster, WorkerSet};
    /// # fn main() -> Result<(), ptools_workerset::Error> {
    /// ptools_workerset::init();
    /// let cluster = Cluster::new();
    /// let ids = cluster.addprocs_ranks()?; // ranks 1..4 never return from here
    /// let pool = WorkerSet::with_cluster(&cluster, &ids, Default::default())?;
    /// let squares = pool.pmap(|x: u64| x * x, 0..100u64)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when the environment names no rank; in rank 0, those
    /// of [`addprocs_with`](Self::addprocs_with).
    pub fn addprocs_ranks(&self) -> Result<Vec<usize>> {
        check_master()?;
        let Some((rank, size)) = ranks::rank_and_size() else {
            return Err(Error::InvalidArgument(
                "not started by mpirun or srun: no rank in the environment".into(),
            ));
        };
        let path = ranks::rendezvous_path()?;
        if rank != 0 {
            crate::worker::serve_rank_zero(&path, self.inner.opts.start_timeout)
        }
        if size == 1 {
            return Ok(Vec::new());
        }
        let r = self.addprocs_with(&Rendezvous {
            path: path.clone(),
            workers: size - 1,
        });
        let _ = std::fs::remove_file(&path);
        r
    }

    /// The cluster's listener and secret, made on first use.
    fn net(&self) -> Result<Arc<Net>> {
        let mut g = lock(&self.inner.net);
        if let Some(n) = &*g {
            return Ok(n.clone());
        }
        let n = Arc::new(Net::new(
            self.inner.opts.bind,
            self.inner.opts.start_timeout,
        )?);
        *g = Some(n.clone());
        Ok(n)
    }

    /// Takes proven connections until `expected` workers of this launch have both.
    fn join(
        &self,
        net: &Net,
        launched: &[Launched],
        expected: usize,
        launch: u64,
        me: &str,
    ) -> Result<Vec<Joining>> {
        let deadline = Instant::now() + self.inner.opts.start_timeout;
        let mut joining: Vec<Joining> = Vec::with_capacity(expected);
        let fail = |m: String| Error::WorkerStartFailed(m);
        while joining.len() < expected || joining.iter().any(|j| j.ctl.is_none()) {
            for p in launched.iter().filter_map(|l| l.proc.as_ref()) {
                if let Some(t) = p.try_wait()
                    && t != Termination::Exited(0)
                {
                    return Err(fail(format!(
                        "launcher process {} ended ({t}) before its workers joined",
                        p.pid()
                    )));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                let ctl = joining.iter().filter(|j| j.ctl.is_some()).count();
                return Err(fail(format!(
                    "{} of {expected} workers joined ({ctl} with both connections) before \
                     the start timeout",
                    joining.len()
                )));
            }
            // Short waits, so a launcher that fails is noticed while others are slow.
            let Some(p) = net
                .listener
                .next_before(deadline.min(now + Duration::from_millis(50)))
            else {
                continue;
            };
            if p.at + self.inner.opts.start_timeout < now {
                continue; // proven long ago, for a start that gave up
            }
            let from = p.peer.ip();
            let Ok(link) = TcpLink::new(p.stream) else {
                continue;
            };
            let mut reader = FrameReader::with_cap(wire::HANDSHAKE_CAP);
            // A proven peer holds the secret, but a slow one must not stall the others: its
            // first frame is due at once (a few seconds at most).
            let hello_by = deadline.min(Instant::now() + Duration::from_secs(5));
            let first = match reader.next_before(&link, hello_by) {
                Ok(Some(b)) => b.to_vec(),
                _ => continue,
            };
            match first[0] {
                wire::HELLO_TCP => {
                    // A peer that proved it holds the secret but speaks another protocol
                    // runs another build of this program: say so, rather than time out.
                    match wire::opening(&first[1..]) {
                        wire::Opening::Ours => {}
                        wire::Opening::OtherBuild => {
                            reject(&link);
                            return Err(Error::BuildMismatch);
                        }
                        wire::Opening::Foreign => {
                            reject(&link);
                            continue;
                        }
                    }
                    let Ok(hello) = crate::codec::decode::<RemoteHello>(&first[1..]) else {
                        continue;
                    };
                    if hello.launch != launch || joining.len() == expected {
                        reject(&link);
                        continue;
                    }
                    if hello.build != me {
                        reject(&link);
                        return Err(Error::BuildMismatch);
                    }
                    let mut token = [0u8; 16];
                    auth::random(&mut token)?;
                    let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
                    let mut f = Vec::with_capacity(32);
                    wire::begin(&mut f, wire::WELCOME_TCP);
                    f.extend_from_slice(&(id as u64).to_le_bytes());
                    f.extend_from_slice(&token);
                    wire::finish(&mut f);
                    if link.send_all(&f).is_err() {
                        continue;
                    }
                    joining.push(Joining {
                        id,
                        data: link,
                        reader,
                        hello,
                        token,
                        ctl: None,
                        from,
                    });
                }
                wire::CTL_HELLO if first.len() == 17 => {
                    if let Some(j) = joining
                        .iter_mut()
                        .find(|j| j.ctl.is_none() && j.token[..] == first[1..])
                    {
                        j.ctl = Some(link);
                    }
                }
                _ => {}
            }
        }
        Ok(joining)
    }

    /// Registers joined workers, each with the launcher process that brought it.
    fn admit(&self, joined: Vec<Joining>, launched: Vec<Launched>) -> Result<Vec<usize>> {
        // A launcher that already exited (with success: `join` fails on anything else) started
        // its workers and left (`ssh -f`, `sh -c 'cmd &'`): nothing of it to watch, and its
        // workers are watched by the heartbeat alone.
        let running = |l: &&Launched| l.proc.as_ref().is_some_and(|p| p.try_wait().is_none());
        let by_slot: HashMap<u64, Arc<crate::sys::Process>> = launched
            .iter()
            .filter(running)
            .filter_map(|l| Some((l.slot?, l.proc.clone()?)))
            .collect();
        let groups: Vec<&Arc<crate::sys::Process>> = launched
            .iter()
            .filter(running)
            .filter(|l| l.slot.is_none())
            .filter_map(|l| l.proc.as_ref())
            .collect();
        // Workers without a slot came from a launcher that brings several: theirs when
        // there is one such launcher; otherwise the cluster keeps the launchers.
        let group = (groups.len() == 1).then(|| groups[0].clone());
        if groups.len() > 1 {
            lock(&self.inner.launchers).extend(groups.iter().map(|p| (*p).clone()));
        }
        let hb = (
            self.inner.opts.heartbeat_interval,
            self.inner.opts.heartbeat_timeout,
        );
        let mut ids = Vec::with_capacity(joined.len());
        let mut rest = joined.into_iter();
        while let Some(j) = rest.next() {
            let (launcher, owns) = match j.hello.slot.and_then(|s| by_slot.get(&s)) {
                Some(p) => (Some(p.clone()), true),
                None => (group.clone(), false),
            };
            let data = Arc::new(j.data);
            let ctl = Arc::new(j.ctl.expect("joined workers have both connections"));
            let peer = Arc::new(TcpPeer {
                pid: j.hello.pid as i32,
                data: data.clone(),
                ctl: ctl.clone(),
                launcher,
                owns_launcher: owns,
                lost: Mutex::new(None),
            });
            let mut addresses = j.hello.addrs.clone();
            if !addresses.contains(&j.from) {
                addresses.insert(0, j.from);
            }
            lock(&self.inner.hosts).insert(
                j.id,
                crate::WorkerHost {
                    hostname: j.hello.hostname.clone(),
                    addresses,
                },
            );
            let cap = self.inner.opts.max_frame;
            let registered = self.register(
                j.id,
                Peer::Tcp(peer.clone()),
                data,
                ctl,
                j.reader.with_new_cap(cap),
                // No shared memory across hosts: large payloads stay on the socket.
                None,
            );
            match registered {
                Ok(remote) => {
                    // A first ping before the start returns: every worker has heard from
                    // its master, so from now on its silence bound is the heartbeat
                    // timeout (before this, it waits as long as a start may take).
                    if !matches!(remote.ping(hb.1), Ok(Some(_))) {
                        ids.push(j.id);
                        self.abandon(&ids, rest);
                        return Err(Error::WorkerStartFailed(format!(
                            "worker {} did not answer its first ping",
                            j.id
                        )));
                    }
                    let weak = Arc::downgrade(&remote);
                    let spawned = std::thread::Builder::new()
                        .name(format!("ptools-heartbeat-{}", j.id))
                        .spawn(move || heartbeat(&weak, &peer, hb.0, hb.1));
                    ids.push(j.id);
                    if let Err(e) = spawned {
                        // Unwatched, a stopped peer would hang its calls: all or none.
                        self.abandon(&ids, rest);
                        return Err(e.into());
                    }
                }
                Err(e) => {
                    self.abandon(&ids, rest);
                    return Err(e);
                }
            }
        }
        Ok(ids)
    }
}

/// The other ranks of the job this master is rank 0 of: nothing to start, a file to
/// write.
#[derive(Debug)]
struct Rendezvous {
    path: std::path::PathBuf,
    workers: usize,
}

impl Launcher for Rendezvous {
    fn launch(&self, job: &LaunchJob) -> std::io::Result<Vec<Launched>> {
        ranks::publish(&self.path, &format!("{},secret=file", job.tcp), &job.secret)?;
        Ok(vec![Launched {
            proc: None,
            workers: self.workers,
            slot: None,
            // `addprocs_ranks` removes the rendezvous file itself.
            secret_file: None,
        }])
    }
}

impl Cluster {
    /// Undoes a start that failed half-way: stops the workers already registered by it and
    /// closes the connections of the others.
    fn abandon(&self, admitted: &[usize], rest: impl Iterator<Item = Joining>) {
        for j in rest {
            j.data.shutdown();
            if let Some(c) = &j.ctl {
                c.shutdown();
            }
        }
        let _ = self.rmprocs(admitted);
    }
}

fn reject(link: &TcpLink) {
    let mut f = Vec::new();
    wire::begin(&mut f, wire::REJECT);
    wire::finish(&mut f);
    let _ = link.send_all(&f);
    link.shutdown();
}

impl Remote {
    /// One ping on the control link, answered within `timeout`: the round trip.
    /// `Ok(None)` when the link ended.
    pub(super) fn ping(&self, timeout: Duration) -> Result<Option<Duration>> {
        let mut g = lock(&self.ctl);
        let (link, reader, token) = &mut *g;
        *token += 1;
        let want = *token;
        let mut f = Vec::with_capacity(16);
        wire::begin(&mut f, wire::PING);
        f.extend_from_slice(&want.to_le_bytes());
        wire::finish(&mut f);
        let t0 = Instant::now();
        if link.send_all(&f).is_err() {
            return Ok(None);
        }
        let deadline = t0 + timeout;
        loop {
            // Every read has the deadline: half a frame then silence is a timeout.
            match reader.next_before(&**link, deadline) {
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Err(Error::Timeout),
                Ok(Some(b)) if b[0] == wire::PONG && wire::u64_at(b, 1) == Some(want) => {
                    return Ok(Some(t0.elapsed()));
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return Ok(None),
            }
        }
    }
}

/// Pings a TCP worker every `interval` until it is gone; one that does not answer within
/// `timeout` is lost ([`Termination::Unresponsive`]): its connections are closed, so its
/// reader fails what was pending.
fn heartbeat(remote: &Weak<Remote>, peer: &TcpPeer, interval: Duration, timeout: Duration) {
    loop {
        let Some(r) = remote.upgrade() else {
            return;
        };
        if r.wait_ended(interval).is_some() {
            return;
        }
        match r.ping(timeout) {
            Ok(Some(_)) => {}
            Ok(None) => {
                peer.lose(Termination::Disconnected);
                r.end_seen();
                return;
            }
            Err(_) => {
                peer.lose(Termination::Unresponsive);
                r.end_seen();
                return;
            }
        }
    }
}
