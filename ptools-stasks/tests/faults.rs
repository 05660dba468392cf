//! Faults in server tasks: a panicking handler fails only its own task and leaves its
//! state intact; a worker killed under a task reports `WorkerDied` for that task (now and
//! later), the handle says so, the other tasks go on, and stop still unlinks every array.

ptools_workerset::enable_test_support!();

use std::time::Duration;

use ptools_shm::{Prefix, ShmCfg, ShmError, ShmSet};
use ptools_stasks::{Error, PmapError, STasks, TaskContext, TaskStatus, pmap_stasks, stop_stasks};
use ptools_workerset::{Cluster, Termination};

/// Every wait in these tests is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(120);

fn start(cluster: &Cluster, cfgs: &[ShmCfg]) -> STasks {
    STasks::builder()
        .cluster(cluster)
        .call_timeout(TIMEOUT)
        .control_timeout(TIMEOUT)
        .start(cfgs, &Prefix::job())
        .unwrap()
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
enum Act {
    Count,
    Panic,
    Die,
}

/// Counts calls in the task's state and marks the array, then acts.
fn act(ctx: &mut TaskContext, what: Act) -> u64 {
    let task = ctx.task();
    let n = {
        let n = ctx.get_or_insert_with("n", || 0u64);
        *n += 1;
        *n
    };
    ctx.array_mut::<u64>("marks").unwrap()[task] = n;
    match what {
        Act::Count => n,
        Act::Panic => panic!("task {task} asked to panic at call {n}"),
        Act::Die => {
            // SAFETY: kill(2) on our own pid with a valid signal number; no memory is
            // involved. The worker dies here, as a crash in a C library would kill it.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            unreachable!("SIGKILL is not caught")
        }
    }
}

fn marks() -> Vec<ShmCfg> {
    vec![ShmCfg::new::<u64>("marks", 2).unwrap()]
}

#[test]
fn a_panicking_handler_fails_only_its_task_and_keeps_its_state() {
    let cluster = Cluster::new();
    let ids = cluster.addprocs(2).unwrap();
    let h = start(&cluster, &marks());
    assert_eq!(
        pmap_stasks(&h, act, [Act::Count, Act::Count]).unwrap(),
        [1, 1]
    );

    match pmap_stasks(&h, act, [Act::Count, Act::Panic]) {
        Err(PmapError::Failed(outcomes)) => {
            assert_eq!(outcomes.len(), 2);
            assert_eq!(*outcomes[0].as_ref().unwrap(), 2);
            match &outcomes[1] {
                Err(Error::TaskPanic {
                    task: 1,
                    id,
                    message,
                    location,
                }) => {
                    assert_eq!(*id, ids[1]);
                    assert!(message.contains("asked to panic at call 2"), "{message}");
                    assert!(location.as_deref().unwrap_or("").contains("faults.rs"));
                }
                other => panic!("expected TaskPanic, got {other:?}"),
            }
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    // The panicking task kept its state (the count made before the panic included).
    assert_eq!(
        pmap_stasks(&h, act, [Act::Count, Act::Count]).unwrap(),
        [3, 3]
    );
    assert_eq!(h.task_status(1), TaskStatus::Running);
    assert_eq!(h.array::<u64>("marks").unwrap().as_slice(), &[3, 3]);

    // `?` keeps the failing task's index and error.
    let e: Error = pmap_stasks(&h, act, [Act::Panic, Act::Count])
        .unwrap_err()
        .into();
    match e {
        Error::TasksFailed(v) => {
            assert_eq!(v.len(), 1);
            assert_eq!(v[0].0, 0);
            assert!(v[0].1.is_task_panic());
        }
        other => panic!("expected TasksFailed, got {other:?}"),
    }
}

#[test]
fn a_killed_worker_fails_its_task_and_stop_still_unlinks() {
    let cluster = Cluster::new();
    let ids = cluster.addprocs(2).unwrap();
    let cfgs = marks();
    let mut h = start(&cluster, &cfgs);
    let prefix = h.prefix().clone();
    let victim_pid = cluster.pid(ids[0]).unwrap();

    match pmap_stasks(&h, act, [Act::Die, Act::Count]) {
        Err(PmapError::Failed(outcomes)) => {
            match &outcomes[0] {
                Err(Error::WorkerDied {
                    task: 0,
                    id,
                    pid,
                    termination,
                }) => {
                    assert_eq!((*id, *pid), (ids[0], victim_pid));
                    assert_eq!(*termination, Termination::Signaled(libc::SIGKILL));
                }
                other => panic!("expected WorkerDied, got {other:?}"),
            }
            assert_eq!(*outcomes[1].as_ref().unwrap(), 1);
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    // The handle says so, and later calls fail that task at once; the other goes on.
    assert!(matches!(
        h.task_status(0),
        TaskStatus::Died { id, .. } if id == ids[0]
    ));
    assert_eq!(h.task_status(1), TaskStatus::Running);
    assert_eq!(h.dead_tasks(), [0]);
    match pmap_stasks(&h, act, [Act::Count, Act::Count]) {
        Err(PmapError::Failed(outcomes)) => {
            assert!(outcomes[0].as_ref().unwrap_err().is_worker_died());
            assert_eq!(*outcomes[1].as_ref().unwrap(), 2);
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    // The master's view of the arrays survives the worker.
    assert_eq!(h.array::<u64>("marks").unwrap()[1], 2);

    stop_stasks(&mut h).unwrap();
    assert!(matches!(
        ShmSet::attach(&cfgs, &prefix),
        Err(ShmError::NotFound { .. })
    ));
}

#[test]
fn a_worker_killed_from_outside_is_seen_by_the_handle() {
    let cluster = Cluster::new();
    let ids = cluster.addprocs(2).unwrap();
    let cfgs = marks();
    let h = start(&cluster, &cfgs);
    let prefix = h.prefix().clone();
    let pid = cluster.pid(ids[1]).unwrap();
    // SAFETY: kill(2) on a worker pid this test's cluster started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    match pmap_stasks(&h, act, [Act::Count, Act::Count]) {
        Err(PmapError::Failed(outcomes)) => {
            assert_eq!(*outcomes[0].as_ref().unwrap(), 1);
            assert!(matches!(
                outcomes[1],
                Err(Error::WorkerDied { task: 1, pid: p, .. }) if p == pid
            ));
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    assert_eq!(h.dead_tasks(), [1]);
    drop(h); // drop stops too
    assert!(matches!(
        ShmSet::attach(&cfgs, &prefix),
        Err(ShmError::NotFound { .. })
    ));
}

/// Task 1 blocks until the master sets `marks[0]` (bounded, so it never hangs).
fn block_until_released(ctx: &mut TaskContext, (): ()) -> bool {
    if ctx.task() == 0 {
        return true;
    }
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::time::Instant::now() < deadline {
        // The master writes this element from another process: read it volatile.
        let flag = &ctx.array::<u64>("marks").unwrap()[0];
        // SAFETY: `flag` is a valid, aligned reference to a u64 in the mapping.
        if unsafe { std::ptr::read_volatile(flag) } != 0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

#[test]
fn a_call_timeout_fails_only_the_running_task() {
    let cluster = Cluster::new();
    cluster.addprocs(2).unwrap();
    let mut h = STasks::builder()
        .cluster(&cluster)
        .call_timeout(Duration::from_secs(3))
        .control_timeout(TIMEOUT)
        .start(&marks(), &Prefix::job())
        .unwrap();
    match pmap_stasks(&h, block_until_released, [(), ()]) {
        Err(PmapError::Failed(outcomes)) => {
            assert!(*outcomes[0].as_ref().unwrap());
            assert!(matches!(outcomes[1], Err(Error::Timeout { task: 1 })));
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    // Release the task; its next call queues behind the one still running.
    h.array_mut::<u64>("marks").unwrap()[0] = 1;
    assert_eq!(
        pmap_stasks(&h, act, [Act::Count, Act::Count]).unwrap(),
        [1, 1]
    );
}
