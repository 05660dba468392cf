//! Workers that join over TCP through a launcher: calls, host facts, removal, and the
//! faults a network brings: junk, wrong keys, replays and silent connections before
//! authentication, a stopped peer past the heartbeat, another build, a launcher that fails.
//! Every worker here runs on this host (loopback), started through `sh`.

ptools_workerset::enable_test_support!();

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ptools_workerset::{
    Cluster, CommandLauncher, Error, LaunchJob, Launched, Launcher, SecretVia, SharedSlice, Ssh,
    Termination, WorkerStatus,
};

fn add1(x: u64) -> u64 {
    x + 1
}

fn my_id(_: ()) -> usize {
    ptools_workerset::myid()
}

fn echo(v: Vec<u8>) -> Vec<u8> {
    v
}

/// Whether the worker read its argument in place, and its numbers doubled.
fn double(v: SharedSlice<f64>) -> (bool, SharedSlice<f64>) {
    (v.is_in_place(), v.iter().map(|x| x * 2.0).collect())
}

fn pid_of(_: ()) -> u32 {
    std::process::id()
}

/// Writes half of a 10 MB reply past the framing, then dies: the master must see the
/// stream cut inside a frame.
fn half_a_reply(_: ()) -> u64 {
    let mut f = 10_000_001u32.to_le_bytes().to_vec();
    f.push(0);
    f.extend(std::iter::repeat_n(1u8, 5_000_000));
    let _ = ptools_workerset::__test_hooks::write_raw_to_data_link(&f);
    std::process::exit(0)
}

fn shell() -> CommandLauncher {
    CommandLauncher::new(["sh", "-c", "exec {cmd}"])
}

fn cluster() -> Cluster {
    Cluster::builder()
        .start_timeout(Duration::from_secs(20))
        .build()
}

#[test]
fn tcp_workers_serve_calls_and_report_their_host() {
    let c = cluster();
    let ids = c.addprocs_with(&shell().count(2)).unwrap();
    assert_eq!(ids.len(), 2);
    assert!(c.listen_addr().unwrap().ip().is_loopback());
    for &id in &ids {
        assert_eq!(c.remotecall_fetch(id, add1, 41).unwrap(), 42);
        assert_eq!(c.remotecall_fetch(id, my_id, ()).unwrap(), id);
        assert_eq!(
            c.remotecall_fetch(id, pid_of, ()).unwrap() as i32,
            c.pid(id).unwrap()
        );
        let h = c.worker_host(id).unwrap();
        let me = nix::unistd::gethostname().unwrap();
        assert_eq!(h.hostname, me.to_string_lossy());
        assert!(h.addresses.iter().any(|a| a.is_loopback()), "{h:?}");
    }
    // Large payloads both ways keep the framing intact.
    let big: Vec<u8> = (0..10_000_000u32).map(|i| i as u8).collect();
    assert_eq!(c.remotecall_fetch(ids[0], echo, big.clone()).unwrap(), big);
    // A large SharedSlice travels on the socket: owned on both sides, the same numbers.
    let xs: Vec<f64> = (0..1_000_000).map(|i| f64::from(i) * 0.5).collect();
    let (in_place, ys) = c
        .remotecall_fetch(ids[1], double, SharedSlice::from(xs.clone()))
        .unwrap();
    assert!(!in_place && !ys.is_in_place());
    assert_eq!(
        ys.into_vec(),
        xs.iter().map(|x| x * 2.0).collect::<Vec<_>>()
    );
    // Pipelined calls.
    let refs: Vec<_> = (0..200)
        .map(|i| c.remotecall(ids[1], add1, i).unwrap())
        .collect();
    for (i, r) in refs.into_iter().enumerate() {
        assert_eq!(r.fetch().unwrap(), i as u64 + 1);
    }
    assert!(c.ping(ids[0], Duration::from_secs(5)).is_ok());
    c.rmprocs(&ids).unwrap();
    for id in ids {
        assert!(matches!(
            c.worker_status(id),
            WorkerStatus::Gone(Error::WorkerDied { .. })
        ));
    }
}

/// A launcher that fails is a typed error at once, not a wait for the start timeout.
#[test]
fn failing_launcher_fails_fast() {
    let c = Cluster::builder()
        .start_timeout(Duration::from_secs(60))
        .build();
    let t0 = Instant::now();
    let e = c
        .addprocs_with(&CommandLauncher::new(["sh", "-c", "exit 3"]))
        .unwrap_err();
    assert!(
        matches!(e, Error::WorkerStartFailed(ref m) if m.contains("exit code 3")),
        "{e}"
    );
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    // A host name that cannot resolve: ssh fails (or is missing) quickly, typed.
    let t0 = Instant::now();
    let e = c
        .addprocs_with(&Ssh::new(["no-such-host.invalid"]).unwrap())
        .unwrap_err();
    assert!(matches!(e, Error::WorkerStartFailed(_)), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    assert_eq!(c.procs(), vec![1]);
    assert!(Ssh::new(["bad host"]).is_err());
    assert!(Ssh::new(Vec::<String>::new()).is_err());
}

/// A worker that never joins (a launcher that starts nothing useful) fails the start at
/// the timeout, and its process is stopped and reaped.
#[test]
fn silent_launcher_times_out() {
    let c = Cluster::builder()
        .start_timeout(Duration::from_millis(800))
        .build();
    let e = c
        .addprocs_with(&CommandLauncher::new(["sleep", "30"]))
        .unwrap_err();
    assert!(
        matches!(e, Error::WorkerStartFailed(ref m) if m.contains("0 of 1")),
        "{e}"
    );
}

/// Rewrites the master address that workers are given, so a test can stand between.
#[derive(Debug)]
struct Via {
    to: SocketAddr,
}

impl Launcher for Via {
    fn launch(&self, job: &LaunchJob) -> std::io::Result<Vec<Launched>> {
        let via = SecretVia::Stdin;
        let line = job.shell_command(&via, None);
        let start = line.find("master=").unwrap() + "master=".len();
        let end = start + line[start..].find(',').unwrap();
        let line = format!("{}{}{}", &line[..start], self.to, &line[end..]);
        let mut cmd = std::process::Command::new("sh");
        cmd.args(["-c", &format!("exec {line}")]);
        Ok(vec![job.spawn(cmd, &via, 1)?])
    }
}

/// A relay that records what the worker sends the master on its first connection.
fn recording_relay(master: SocketAddr) -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for (i, a) in l.incoming().enumerate() {
            let Ok(a) = a else { return };
            let b = TcpStream::connect(master).unwrap();
            let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
            let rec = (i == 0).then(|| s2.clone());
            std::thread::spawn(move || copy(a2, b, rec));
            std::thread::spawn(move || copy(b2, a, None));
        }
    });
    (addr, seen)
}

fn copy(mut from: TcpStream, mut to: TcpStream, rec: Option<Arc<Mutex<Vec<u8>>>>) {
    let mut buf = [0u8; 65536];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
        if let Some(r) = &rec {
            r.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// Connects to the master and reads its challenge.
fn challenged(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut ch = [0u8; 40];
    s.read_exact(&mut ch).unwrap();
    assert_eq!(&ch[..8], b"PTAUTH/1");
    s
}

/// True once the master has closed `s` (it reads end of stream or a reset).
fn closed_by_master(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let l = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    l.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Junk, oversized junk, wrong keys, a replayed handshake and 200 silent connections: each
/// is closed before anything is decoded, the workers already there keep serving, a new
/// worker still joins, and the master's memory stays flat.
#[test]
fn unauthenticated_connections_never_disturb_the_master() {
    let c = Cluster::builder()
        .start_timeout(Duration::from_secs(3))
        .build();
    let first = c.addprocs_with(&shell()).unwrap()[0];
    let addr = c.listen_addr().unwrap();

    // A worker joined through a relay that recorded its answer to the challenge.
    let (relay, seen) = recording_relay(addr);
    let relayed = c.addprocs_with(&Via { to: relay }).unwrap()[0];
    assert_eq!(c.remotecall_fetch(relayed, add1, 1).unwrap(), 2);
    let recorded = seen.lock().unwrap()[..64].to_vec();

    let rss0 = rss_kib();
    // 200 silent connections, held open while everything else happens.
    let silent: Vec<TcpStream> = (0..200).map(|_| challenged(addr)).collect();
    // Replay: the recorded answer on a new connection (the nonce changed).
    let mut r = challenged(addr);
    r.write_all(&recorded).unwrap();
    assert!(closed_by_master(&mut r), "a replayed answer was accepted");
    // Wrong keys: well-formed answers under another secret (random tags).
    for i in 0..300u32 {
        let mut s = challenged(addr);
        let mut junk = [0u8; 64];
        for (k, b) in junk.iter_mut().enumerate() {
            *b = (i as usize * 31 + k * 7) as u8;
        }
        s.write_all(&junk).unwrap();
        assert!(closed_by_master(&mut s));
    }
    // Junk and oversized junk, without reading anything.
    let blob = vec![0xA5u8; 256 * 1024];
    for i in 0..2000usize {
        let Ok(mut s) = TcpStream::connect(addr) else {
            continue;
        };
        let n = if i % 10 == 0 { blob.len() } else { 1 + i % 300 };
        let _ = s.write_all(&blob[..n]);
    }
    // The workers serve meanwhile, and a new one joins.
    assert_eq!(c.remotecall_fetch(first, add1, 7).unwrap(), 8);
    assert_eq!(c.remotecall_fetch(relayed, add1, 8).unwrap(), 9);
    let late = c.addprocs_with(&shell()).unwrap()[0];
    assert_eq!(c.remotecall_fetch(late, add1, 9).unwrap(), 10);
    let grown = rss_kib().saturating_sub(rss0);
    assert!(grown < 64 * 1024, "master grew by {grown} KiB");
    // The silent ones are closed at the authentication timeout (the start timeout).
    let t0 = Instant::now();
    for mut s in silent {
        assert!(closed_by_master(&mut s));
    }
    assert!(t0.elapsed() < Duration::from_secs(10));
    c.rmprocs(&[first, relayed, late]).unwrap();
}

/// A worker stopped with SIGSTOP is declared lost within the heartbeat bound; its calls
/// fail with `Unresponsive`, and once it runs again it sees its links closed and exits.
#[test]
fn stopped_worker_is_lost_within_the_heartbeat_bound() {
    let c = Cluster::builder()
        .heartbeat(Duration::from_millis(100), Duration::from_millis(600))
        .build();
    let id = c.addprocs_with(&shell()).unwrap()[0];
    let pid = c.pid(id).unwrap();
    assert_eq!(c.remotecall_fetch(id, add1, 1).unwrap(), 2);
    let stop = nix::unistd::Pid::from_raw(pid);
    nix::sys::signal::kill(stop, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let t0 = Instant::now();
    let e = c.remotecall_fetch(id, add1, 2).unwrap_err();
    let took = t0.elapsed();
    // The master may have killed it already (it was its own launcher): ESRCH is fine.
    let _ = nix::sys::signal::kill(stop, nix::sys::signal::Signal::SIGCONT);
    assert!(
        matches!(
            e,
            Error::WorkerDied {
                termination: Termination::Unresponsive,
                ..
            }
        ),
        "{e}"
    );
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// A copy of this test program whose build-id differs by one bit: another build.
#[test]
fn another_build_is_refused() {
    let me = std::fs::read("/proc/self/exe").unwrap();
    let at = me
        .windows(8)
        .position(|w| w[..4] == [3, 0, 0, 0] && &w[4..] == b"GNU\0")
        .expect("a GNU build-id note");
    let mut other = me.clone();
    other[at + 8] ^= 1;
    let dir = std::env::temp_dir().join(format!("ptools-tcp-build-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("other-build");
    std::fs::write(&path, &other).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let c = Cluster::builder().remote_program(&path).build();
    let e = c.addprocs_with(&shell()).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(matches!(e, Error::BuildMismatch), "{e}");
    // The same content at another path is the same build.
    let dir2 = std::env::temp_dir().join(format!("ptools-tcp-same-{}", std::process::id()));
    std::fs::create_dir_all(&dir2).unwrap();
    let same = dir2.join("same-build");
    std::fs::write(&same, &me).unwrap();
    std::fs::set_permissions(&same, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let c = Cluster::builder().remote_program(&same).build();
    let ids = c.addprocs_with(&shell());
    std::fs::remove_dir_all(&dir2).unwrap();
    let ids = ids.unwrap();
    assert_eq!(c.remotecall_fetch(ids[0], add1, 1).unwrap(), 2);
}

/// The secret through the environment and through a 0600 file, as MPI and Slurm
/// launchers pass it.
#[test]
fn secret_by_environment_and_by_file() {
    #[derive(Debug)]
    struct Group(SecretVia, usize);
    impl Launcher for Group {
        fn launch(&self, job: &LaunchJob) -> std::io::Result<Vec<Launched>> {
            // One process that starts several workers, as mpirun does.
            let one = job.shell_command(&self.0, None);
            let all = vec![format!("{one} &"); self.1].join(" ");
            let mut cmd = std::process::Command::new("sh");
            cmd.args(["-c", &format!("{all} wait")]);
            Ok(vec![job.spawn(cmd, &self.0, self.1)?])
        }
    }
    let c = cluster();
    let ids = c.addprocs_with(&Group(SecretVia::Env, 2)).unwrap();
    assert_eq!(ids.len(), 2);
    let path = std::env::temp_dir().join(format!("ptools-secret-{}", std::process::id()));
    let more = c.addprocs_with(&Group(SecretVia::File(path.clone()), 1));
    let _ = std::fs::remove_file(&path);
    let more = more.unwrap();
    for id in ids.iter().chain(&more) {
        assert_eq!(c.remotecall_fetch(*id, add1, 1).unwrap(), 2);
    }
    c.rmprocs(&ids).unwrap();
    c.rmprocs(&more).unwrap();
}

/// A connection cut half-way through a 10 MB reply fails that call, typed, and the
/// other workers go on.
#[test]
fn reply_cut_half_way() {
    let c = cluster();
    let ids = c.addprocs_with(&shell().count(2)).unwrap();
    let e = c.remotecall_fetch(ids[0], half_a_reply, ()).unwrap_err();
    assert!(
        matches!(
            e,
            Error::WorkerDied {
                termination: Termination::Disconnected,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(c.remotecall_fetch(ids[1], add1, 1).unwrap(), 2);
}

/// A worker never serves a "master" that cannot prove the job's secret: it gives up at
/// the proof and exits with code 2, running nothing.
#[test]
fn worker_refuses_a_master_without_the_secret() {
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = fake.local_addr().unwrap();
    let secret: String = (0..64)
        .map(|i| char::from(b"0123456789abcdef"[i % 16]))
        .collect();
    let mut worker = std::process::Command::new(std::env::current_exe().unwrap())
        .env(
            "PTOOLS_WORKER_TCP",
            format!("master={addr},launch=1,cap=1048576,hs=5000,hb=5000,secret=env"),
        )
        .env("PTOOLS_SECRET", secret)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (mut s, _) = fake.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut challenge = b"PTAUTH/1".to_vec();
    challenge.extend([7u8; 32]);
    s.write_all(&challenge).unwrap();
    let mut answer = [0u8; 64];
    s.read_exact(&mut answer).unwrap();
    s.write_all(&[9u8; 32]).unwrap();
    // The worker closes without sending a frame.
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty(), "the worker sent {} bytes", rest.len());
    let out = worker.wait_with_output_timeout();
    assert_eq!(out.0.code(), Some(2));
    assert!(out.1.contains("could not prove"), "{}", out.1);
}

trait WaitTimeout {
    fn wait_with_output_timeout(&mut self) -> (std::process::ExitStatus, String);
}

impl WaitTimeout for std::process::Child {
    fn wait_with_output_timeout(&mut self) -> (std::process::ExitStatus, String) {
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = self.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return (st, err);
            }
            if t0.elapsed() > Duration::from_secs(20) {
                let _ = self.kill();
                let _ = self.wait();
                panic!("the worker did not exit");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

const MASTER_ROLE: &str = "PTOOLS_TEST_TCP_MASTER";

/// Run by `worker_exits_when_its_master_stops`: a master with one TCP worker, which prints
/// the worker's pid, then idles.
#[test]
#[ignore = "a role run by worker_exits_when_its_master_stops"]
fn master_role() {
    if std::env::var_os(MASTER_ROLE).is_none() {
        return;
    }
    let c = Cluster::builder()
        .heartbeat(Duration::from_millis(100), Duration::from_millis(700))
        .build();
    let id = c.addprocs_with(&shell()).unwrap()[0];
    println!("WORKER {}", c.pid(id).unwrap());
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

fn state_of(pid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(") ")?.1.chars().next()
}

/// A master that stops answering (SIGSTOP: its sockets stay open, so no end of stream
/// reaches the worker) is taken for gone by its TCP worker within the heartbeat timeout:
/// the worker exits by itself. Nothing is left once the master is killed.
#[test]
fn worker_exits_when_its_master_stops() {
    use std::io::BufRead;
    let mut master = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "master_role", "--ignored", "--nocapture"])
        .env(MASTER_ROLE, "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = master.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(out).lines();
    let pid: i32 = loop {
        let l = lines.next().expect("the master's output").unwrap();
        if let Some(p) = l.strip_prefix("WORKER ") {
            break p.trim().parse().unwrap();
        }
    };
    let mpid = nix::unistd::Pid::from_raw(master.id() as i32);
    nix::sys::signal::kill(mpid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    let t0 = Instant::now();
    // The worker is the stopped master's child: once it has exited it is a zombie there.
    while !matches!(state_of(pid), None | Some('Z')) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the worker still runs {:?} after its master stopped",
            t0.elapsed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = t0.elapsed();
    nix::sys::signal::kill(mpid, nix::sys::signal::Signal::SIGKILL).unwrap();
    master.wait().unwrap();
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// Starts one worker at once and one after `delay`, through `sh`.
#[derive(Debug)]
struct Staggered(Duration);

impl Launcher for Staggered {
    fn launch(&self, job: &LaunchJob) -> std::io::Result<Vec<Launched>> {
        let via = SecretVia::Stdin;
        let line = job.shell_command(&via, None);
        let mut out = Vec::new();
        for wait in [Duration::ZERO, self.0] {
            let mut cmd = std::process::Command::new("sh");
            cmd.args(["-c", &format!("sleep {}; exec {line}", wait.as_secs_f64())]);
            out.push(job.spawn(cmd, &via, 1)?);
        }
        Ok(out)
    }
}

/// A worker that joined early waits for the rest of its start: it is not taken for
/// orphaned by a heartbeat timeout shorter than the wait for the others.
#[test]
fn early_workers_outlast_a_slow_start() {
    let c = Cluster::builder()
        .heartbeat(Duration::from_millis(200), Duration::from_millis(1500))
        .start_timeout(Duration::from_secs(30))
        .build();
    let ids = c.addprocs_with(&Staggered(Duration::from_secs(3))).unwrap();
    for &id in &ids {
        assert_eq!(c.remotecall_fetch(id, add1, 1).unwrap(), 2);
    }
    c.rmprocs(&ids).unwrap();
}

/// A launcher that starts its worker in the background and exits with success
/// (`ssh -f`, `sh -c 'cmd &'`) leaves a working worker, watched by the heartbeat.
#[test]
fn a_launcher_that_exits_after_starting_its_worker() {
    // A shell gives a background job /dev/null for stdin: the secret goes by environment.
    #[derive(Debug)]
    struct Detached;
    impl Launcher for Detached {
        fn launch(&self, job: &LaunchJob) -> std::io::Result<Vec<Launched>> {
            let line = job.shell_command(&SecretVia::Env, None);
            let mut cmd = std::process::Command::new("sh");
            cmd.args(["-c", &format!("{line} & exit 0")]);
            Ok(vec![job.spawn(cmd, &SecretVia::Env, 1)?])
        }
    }
    let c = cluster();
    let id = c.addprocs_with(&Detached).unwrap()[0];
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.remotecall_fetch(id, add1, 1).unwrap(), 2);
    c.rmprocs(&[id]).unwrap();
}
