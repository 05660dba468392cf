//! The whole stack under `SIGINT` and `SIGTERM`: a driver process (this test binary, re-run
//! on the ignored `driver` test) with two workers, server tasks over a shared array, a task
//! queue with a task running and more queued, a segment of its own and one per worker, is
//! signalled; it must die by that signal and leave no segment of its prefix in `/dev/shm`
//! and no worker. Each test removes what it finds of its prefix, and kills what is left of
//! its processes, even when it fails.

ptools::workerset::enable_test_support!();

use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ptools::queue::{QueuedWorkerTask, Target, TaskQueue};
use ptools::shm::{Prefix, ShmArray, ShmCfg, ShmSet};
use ptools::stasks::{STasks, TaskContext, pmap_stasks};
use ptools::workerset::Cluster;

const DRIVER_ENV: &str = "PTOOLS_FACADE_SIG_DRIVER";
const PREFIX_ENV: &str = "PTOOLS_FACADE_SIG_PREFIX";
/// Deadlines that only keep a broken run from hanging.
const HANG: Duration = Duration::from_secs(60);

/// In a worker: a segment of its own, whose creator handle is never dropped.
fn make_segment(prefix: String) -> u32 {
    let pid = std::process::id();
    let cfg = ShmCfg::new::<u64>(format!("w{pid}"), 256).unwrap();
    let arr = ShmArray::<u64>::create(&cfg, &Prefix::new(prefix).unwrap()).unwrap();
    Box::leak(Box::new(arr));
    pid
}

/// A server task's handler: writes its task index into its slot of the shared array.
fn mark(ctx: &mut TaskContext, v: u32) -> usize {
    let t = ctx.task();
    ctx.array_mut::<u32>("sv").unwrap()[t] = v;
    t
}

fn sleep_long(_: ()) -> u8 {
    std::thread::sleep(HANG);
    0
}

#[test]
#[ignore = "helper: run by the other tests of this file"]
fn driver() {
    if std::env::var_os(DRIVER_ENV).is_none() {
        return;
    }
    let prefix_s = std::env::var(PREFIX_ENV).unwrap();
    let prefix = Prefix::new(prefix_s.clone()).unwrap();
    let _own = ShmSet::create(&[ShmCfg::new::<f64>("own", [32, 32]).unwrap()], &prefix).unwrap();
    let c = Cluster::new();
    let ids = c.addprocs(2).unwrap();
    for &id in &ids {
        c.remotecall_fetch(id, make_segment, prefix_s.clone())
            .unwrap();
    }
    let st = STasks::builder()
        .cluster(&c)
        .start(&[ShmCfg::new::<u32>("sv", 2).unwrap()], &prefix)
        .unwrap();
    let done = pmap_stasks(&st, mark, [7, 8]).unwrap();
    assert_eq!(done.len(), 2);
    let q = TaskQueue::new(&c);
    q.prep_remotes().unwrap();
    for _ in 0..4 {
        q.queue_worker_task(QueuedWorkerTask::without_callback(
            (),
            sleep_long,
            Target::Any,
        ))
        .unwrap();
    }
    let pids: Vec<String> = ids.iter().map(|&i| c.pid(i).unwrap().to_string()).collect();
    println!("READY {}", pids.join(" "));
    std::thread::sleep(HANG);
    panic!("driver: no signal came");
}

/// True while `pid` exists and is not a zombie.
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => !s[s.rfind(')').unwrap() + 2..].starts_with('Z'),
        Err(_) => false,
    }
}

/// The names in `/dev/shm` under `prefix`, or under a prefix derived from it (server tasks
/// put their arrays under `<prefix>.s<group>`).
fn leftovers(prefix: &str) -> Vec<String> {
    let (plain, derived) = (format!("ptools_{prefix}_"), format!("ptools_{prefix}."));
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(&plain) || n.starts_with(&derived))
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
                // SAFETY: plain syscall; the pid is our driver's worker and still there
                // (not a zombie), so it has not been recycled.
                unsafe { libc::kill(w, libc::SIGKILL) };
            }
        }
        for n in leftovers(&self.prefix) {
            let _ = std::fs::remove_file(format!("/dev/shm/{n}"));
        }
    }
}

impl Run {
    /// Starts a driver in its own process group, as a shell starts a job, and waits until
    /// it is ready.
    fn start(tag: &str) -> Run {
        let prefix = format!("fsig{}-{tag}", std::process::id());
        let child = Command::new("/proc/self/exe")
            .args([
                "--exact",
                "driver",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DRIVER_ENV, "1")
            .env(PREFIX_ENV, &prefix)
            .stdout(Stdio::piped())
            .process_group(0)
            .spawn()
            .unwrap();
        let mut run = Run {
            prefix,
            child,
            workers: vec![],
        };
        let out = run.child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
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
        // Its own, the server tasks' array, one per worker.
        assert_eq!(
            leftovers(&run.prefix).len(),
            4,
            "{:?}",
            leftovers(&run.prefix)
        );
        run
    }

    fn kill(&self, target: i32, sig: libc::c_int) {
        // SAFETY: plain syscall to our own child (or its process group), not yet reaped.
        assert_eq!(unsafe { libc::kill(target, sig) }, 0);
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

    fn assert_clean_death(&mut self, sig: libc::c_int) {
        let st = self.wait();
        assert_eq!(st.signal(), Some(sig), "driver ended with {st:?}");
        assert_eq!(leftovers(&self.prefix), Vec::<String>::new());
        let deadline = Instant::now() + HANG;
        while self.workers.iter().any(|&w| alive(w)) {
            assert!(
                Instant::now() < deadline,
                "workers left: {:?}",
                self.workers
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn ctrl_c_leaves_nothing() {
    let mut run = Run::start("int");
    let group = -(run.child.id() as i32);
    run.kill(group, libc::SIGINT);
    run.assert_clean_death(libc::SIGINT);
}

#[test]
fn ctrl_c_twice_leaves_nothing() {
    let mut run = Run::start("int2");
    let group = -(run.child.id() as i32);
    run.kill(group, libc::SIGINT);
    run.kill(group, libc::SIGINT);
    run.assert_clean_death(libc::SIGINT);
}

#[test]
fn sigterm_leaves_nothing() {
    let mut run = Run::start("term");
    let pid = run.child.id() as i32;
    run.kill(pid, libc::SIGTERM);
    run.assert_clean_death(libc::SIGTERM);
}
