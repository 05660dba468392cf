//! `SIGINT` and `SIGTERM` leave nothing behind. A driver process (this test binary, re-run
//! on the ignored `driver` test) creates segments under a unique prefix, starts two workers
//! that create segments of their own (one of them stays busy in a call), prints what it
//! made and waits; the test signals it and checks that it died by that signal, that no
//! segment of the prefix is left in `/dev/shm`, and that no worker is left. Also: a handler
//! of the program's own is not replaced, and `PTOOLS_NO_SIGNAL_HANDLERS=1` turns the
//! cleanup off. Every test removes what it finds of its prefix, and kills its processes,
//! even when it fails.

ptools_workerset::enable_test_support!();

use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ptools_shm::{Prefix, ShmArray, ShmCfg, ShmSet};
use ptools_workerset::Cluster;

const DRIVER_ENV: &str = "PTOOLS_SIG_TEST_DRIVER";
const PREFIX_ENV: &str = "PTOOLS_SIG_TEST_PREFIX";
/// Deadlines that only keep a broken run from hanging.
const HANG: Duration = Duration::from_secs(60);

/// In a worker: creates a segment of this worker under `prefix` and keeps its creator
/// handle alive for good (it would unlink on drop); only a signal's cleanup unlinks it.
/// Returns the pid.
fn make_segment(prefix: String) -> u32 {
    let pid = std::process::id();
    let cfg = ShmCfg::new::<u64>(format!("w{pid}"), 512).unwrap();
    let arr = ShmArray::<u64>::create(&cfg, &Prefix::new(prefix).unwrap()).unwrap();
    Box::leak(Box::new(arr));
    pid
}

/// In a worker: ignore `SIGTERM`, so that the master's cleanup has to wait for it.
fn ignore_sigterm(_: ()) -> bool {
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) != libc::SIG_ERR }
}

fn sleep_forever(_: ()) -> u8 {
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

static USER_GOT_SIGINT: AtomicBool = AtomicBool::new(false);

extern "C" fn user_handler(_: libc::c_int) {
    USER_GOT_SIGINT.store(true, Ordering::SeqCst);
}

/// The driver's modes, from its environment.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    /// Two workers with a segment each, one busy.
    Plain,
    /// A worker that ignores SIGTERM (and has no segment): the master's cleanup waits.
    Stubborn,
    /// The program's own SIGINT handler, installed before anything of ptools; workers
    /// without segments.
    UserHandler,
}

#[test]
#[ignore = "helper: run by the other tests of this file"]
fn driver() {
    let Some(mode) = std::env::var(DRIVER_ENV).ok() else {
        return;
    };
    let mode = match mode.as_str() {
        "plain" => Mode::Plain,
        "stubborn" => Mode::Stubborn,
        "user" => Mode::UserHandler,
        m => panic!("unknown mode {m}"),
    };
    let prefix_s = std::env::var(PREFIX_ENV).unwrap();
    if mode == Mode::UserHandler {
        // SAFETY: the handler only stores to an atomic.
        let old = unsafe {
            libc::signal(
                libc::SIGINT,
                user_handler as extern "C" fn(libc::c_int) as libc::sighandler_t,
            )
        };
        assert_ne!(old, libc::SIG_ERR);
    }
    let prefix = Prefix::new(prefix_s.clone()).unwrap();
    let cfgs = [
        ShmCfg::new::<f64>("a", [64, 64]).unwrap(),
        ShmCfg::new::<u32>("b", 1000).unwrap(),
    ];
    let set = ShmSet::create(&cfgs, &prefix).unwrap();
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    match mode {
        Mode::Plain => {
            c.remotecall_fetch(ids[0], make_segment, prefix_s.clone())
                .unwrap();
            c.remotecall_fetch(ids[1], make_segment, prefix_s).unwrap();
        }
        Mode::Stubborn => {
            assert!(c.remotecall_fetch(ids[0], ignore_sigterm, ()).unwrap());
            c.remotecall_fetch(ids[1], make_segment, prefix_s).unwrap();
        }
        // A worker's leaked segment would outlive a normal shutdown, on purpose.
        Mode::UserHandler => {}
    }
    let _busy = c.remotecall(ids[1], sleep_forever, ()).unwrap();
    c.ping(ids[1], HANG).unwrap();
    let pids: Vec<String> = ids.iter().map(|&i| c.pid(i).unwrap().to_string()).collect();
    println!("READY {}", pids.join(" "));
    let deadline = Instant::now() + HANG;
    while Instant::now() < deadline {
        if USER_GOT_SIGINT.load(Ordering::SeqCst) {
            // The program's own handler ran: it shuts down its own way.
            drop(c);
            drop(set);
            std::process::exit(42);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("driver: no signal came");
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s[s.rfind(')').unwrap() + 2..].starts_with('Z'),
        Err(_) => false,
    }
}

/// The names in `/dev/shm` of segments under `prefix`.
fn leftovers(prefix: &str) -> Vec<String> {
    let start = format!("ptools_{prefix}_");
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(&start))
        .collect()
}

/// One driver run; on drop (passed or failed) kills what is left and removes its segments.
struct Run {
    prefix: String,
    child: Child,
    workers: Vec<i32>,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for &w in &self.workers {
            if alive(w) {
                // SAFETY: plain syscall; the pid is a worker of our driver that is still
                // there (not a zombie), so it has not been recycled.
                unsafe { libc::kill(w, libc::SIGKILL) };
            }
        }
        for n in leftovers(&self.prefix) {
            let _ = std::fs::remove_file(format!("/dev/shm/{n}"));
        }
    }
}

impl Run {
    /// Starts a driver in its own process group (as a shell starts a job) and waits for it
    /// to be ready.
    fn start(mode: &str, tag: &str, env: &[(&str, &str)]) -> Run {
        let prefix = format!("sig{}-{tag}", std::process::id());
        let mut cmd = Command::new("/proc/self/exe");
        cmd.args([
            "--exact",
            "driver",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DRIVER_ENV, mode)
        .env(PREFIX_ENV, &prefix)
        .stdout(Stdio::piped())
        .process_group(0);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        let mut run = Run {
            prefix,
            child,
            workers: vec![],
        };
        let out = run.child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                // libtest may print "test driver ... " on the same line first.
                if let Some(p) = line.find("READY ").map(|i| &line[i + 6..]) {
                    let _ = tx.send(
                        p.split(' ')
                            .map(|x| x.parse::<i32>().unwrap())
                            .collect::<Vec<_>>(),
                    );
                }
            }
        });
        run.workers = rx.recv_timeout(HANG).expect("driver never got ready");
        assert_eq!(run.workers.len(), 2);
        run
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// `sig` to the driver alone.
    fn signal(&self, sig: libc::c_int) {
        // SAFETY: plain syscall to our own child, not yet reaped.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    /// `sig` to the driver's whole process group, as Ctrl-C in a terminal does.
    fn signal_group(&self, sig: libc::c_int) {
        // SAFETY: plain syscall; the group is our child's, which leads it.
        assert_eq!(unsafe { libc::kill(-self.pid(), sig) }, 0);
    }

    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + HANG;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "driver did not end");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits (bounded) until no worker is left, and says which are.
    fn workers_left(&self) -> Vec<i32> {
        let deadline = Instant::now() + HANG;
        loop {
            let left: Vec<i32> = self.workers.iter().copied().filter(|&w| alive(w)).collect();
            if left.is_empty() || Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits (bounded) until the segments of the driver itself are gone.
    fn wait_master_segments_gone(&self) {
        let mine = [
            format!("ptools_{}_a", self.prefix),
            format!("ptools_{}_b", self.prefix),
        ];
        let deadline = Instant::now() + HANG;
        while leftovers(&self.prefix).iter().any(|n| mine.contains(n)) {
            assert!(Instant::now() < deadline, "the driver's segments stayed");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits (bounded) until worker `i` has ended.
    fn wait_worker_gone(&self, i: usize) {
        let deadline = Instant::now() + HANG;
        while alive(self.workers[i]) {
            assert!(Instant::now() < deadline, "worker {i} did not end");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Died by `sig`, left no segment and no worker.
    fn assert_clean_death(&mut self, sig: libc::c_int) {
        let st = self.wait();
        assert_eq!(st.signal(), Some(sig), "driver ended with {st:?}");
        assert_eq!(leftovers(&self.prefix), Vec::<String>::new());
        assert_eq!(self.workers_left(), Vec::<i32>::new());
    }
}

#[test]
fn ctrl_c_to_the_group_leaves_nothing() {
    let mut run = Run::start("plain", "int", &[]);
    // Four segments: the driver's two and one per worker.
    assert_eq!(leftovers(&run.prefix).len(), 4);
    run.signal_group(libc::SIGINT);
    run.assert_clean_death(libc::SIGINT);
}

#[test]
fn sigint_to_the_master_alone_leaves_nothing() {
    let mut run = Run::start("plain", "int1", &[]);
    run.signal(libc::SIGINT);
    run.assert_clean_death(libc::SIGINT);
}

#[test]
fn sigterm_to_the_master_leaves_nothing() {
    let mut run = Run::start("plain", "term", &[]);
    assert_eq!(leftovers(&run.prefix).len(), 4);
    run.signal(libc::SIGTERM);
    run.assert_clean_death(libc::SIGTERM);
}

#[test]
fn sigint_twice_rapidly_leaves_nothing() {
    let mut run = Run::start("plain", "int2", &[]);
    run.signal_group(libc::SIGINT);
    run.signal_group(libc::SIGINT);
    run.assert_clean_death(libc::SIGINT);
}

#[test]
fn a_second_sigint_during_cleanup_ends_it_at_once() {
    // One worker ignores SIGTERM, so after unlinking its own segments the master waits for
    // it (up to WORKER_GRACE_MS); the second SIGINT comes while it waits, and the master
    // dies by it, still killing the worker. The other worker ends by the first SIGTERM,
    // unlinking its own segment: the second signal is sent once it has, since a worker
    // still unlinking gets only the short second-signal grace (a documented limit), and
    // that is not what this test is about.
    let mut run = Run::start("stubborn", "int2b", &[]);
    run.signal(libc::SIGINT);
    run.wait_master_segments_gone();
    run.wait_worker_gone(1);
    assert!(
        alive(run.workers[0]),
        "the SIGTERM-ignoring worker ended before the second signal: the master's cleanup \
         was not waiting for it any more"
    );
    run.signal(libc::SIGINT);
    run.assert_clean_death(libc::SIGINT);
}

#[test]
fn a_handler_of_the_program_is_not_replaced() {
    let mut run = Run::start("user", "user", &[]);
    run.signal(libc::SIGINT);
    let st = run.wait();
    // The driver's own handler ran and it exited its own way (dropping everything).
    assert_eq!(st.code(), Some(42), "driver ended with {st:?}");
    assert_eq!(leftovers(&run.prefix), Vec::<String>::new());
    assert_eq!(run.workers_left(), Vec::<i32>::new());
}

#[test]
fn no_signal_handlers_env_leaves_segments_behind() {
    let mut run = Run::start(
        "plain",
        "off",
        &[(ptools_workerset::signals::NO_HANDLERS_ENV, "1")],
    );
    run.signal(libc::SIGTERM);
    let st = run.wait();
    assert_eq!(st.signal(), Some(libc::SIGTERM), "driver ended with {st:?}");
    // Workers die with their master all the same; the segments stay (Run's drop removes
    // them).
    assert_eq!(run.workers_left(), Vec::<i32>::new());
    assert_eq!(leftovers(&run.prefix).len(), 4);
}
