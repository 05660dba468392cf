//! Server tasks end to end: PTools.jl's example first (two arrays, each task writing its
//! worker id into its stripe), then state kept across calls, separate groups, the master's
//! view of the arrays, and the lifecycle (count mismatch, stop twice, use after stop).

ptools_workerset::enable_test_support!();

use std::time::Duration;

use ptools_shm::{Prefix, ShmCfg, ShmError, ShmSet};
use ptools_stasks::{
    Error, PmapError, Reserve, STasks, TaskContext, TaskStatus, count_stasks, pmap_stasks,
    stop_stasks,
};
use ptools_workerset::Cluster;

const LEN1: usize = 64 * 1024;

/// Every wait in these tests is bounded by this.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Whether the segment `name` (`/ptools_...`) is in `/dev/shm` (Linux, as workers are).
fn segment_exists(name: &str) -> bool {
    std::path::Path::new("/dev/shm")
        .join(name.trim_start_matches('/'))
        .exists()
}

fn cfgs() -> Vec<ShmCfg> {
    vec![
        ShmCfg::new::<i32>("svar1", LEN1).unwrap(),
        ShmCfg::new::<u8>("svar2", [100, 100]).unwrap(),
    ]
}

fn start(cluster: &Cluster, cfgs: &[ShmCfg]) -> STasks {
    STasks::builder()
        .cluster(cluster)
        .call_timeout(TIMEOUT)
        .control_timeout(TIMEOUT)
        .start(cfgs, &Prefix::job())
        .unwrap()
}

/// PTools.jl's example: task `offset` of `ntasks` writes `myid()` at `offset:ntasks:end`.
fn init_task(ctx: &mut TaskContext, (): ()) -> (usize, usize) {
    let (offset, ntasks, me) = (ctx.task(), ctx.ntasks(), ctx.myid());
    let svar1 = ctx.array_mut::<i32>("svar1").unwrap();
    for x in svar1.iter_mut().skip(offset).step_by(ntasks) {
        *x = me as i32;
    }
    let svar2 = ctx.array_mut::<u8>("svar2").unwrap();
    for x in svar2.iter_mut().skip(offset).step_by(ntasks) {
        *x = me as u8;
    }
    (offset, me)
}

#[test]
fn ptools_jl_example_each_task_writes_its_stripe() {
    let cluster = Cluster::new();
    let ids = cluster.addprocs(2).unwrap();
    let cfgs = cfgs();
    let mut h = start(&cluster, &cfgs);
    assert_eq!(count_stasks(&h), 2);
    assert_eq!(h.workers(), &ids[..]);

    let out = pmap_stasks(&h, init_task, [(), ()]).unwrap();
    assert_eq!(out, vec![(0, ids[0]), (1, ids[1])]);

    let svar1 = h.array::<i32>("svar1").unwrap();
    assert_eq!(svar1.len(), LEN1);
    for (i, &x) in svar1.iter().enumerate() {
        assert_eq!(x, ids[i % 2] as i32, "svar1[{i}]");
    }
    let svar2 = h.array::<u8>("svar2").unwrap();
    assert_eq!(svar2.dims(), &[100, 100]);
    for (i, &x) in svar2.iter().enumerate() {
        assert_eq!(x, ids[i % 2] as u8, "svar2[{i}]");
    }

    // The arrays are named under the group's own prefix, and go away with the group.
    let prefix = h.prefix().clone();
    assert!(prefix.as_str().starts_with(Prefix::job().as_str()));
    let names: Vec<String> = ["svar1", "svar2"]
        .iter()
        .map(|n| prefix.segment_name(n))
        .collect();
    assert_eq!(names[0], svar1.segment_name());
    assert!(names.iter().all(|n| segment_exists(n)), "{names:?}");
    stop_stasks(&mut h).unwrap();
    assert!(!names.iter().any(|n| segment_exists(n)), "{names:?}");
    assert!(matches!(
        ShmSet::attach(&cfgs, &prefix),
        Err(ShmError::NotFound { .. })
    ));
}

fn count_calls(ctx: &mut TaskContext, add: u64) -> (u64, u64) {
    let calls = {
        let c = ctx.get_or_insert_with("calls", || 0u64);
        *c += 1;
        *c
    };
    let sum = ctx.get_or_insert_with("sum", || 0u64);
    *sum += add;
    (calls, *sum)
}

#[test]
fn state_is_kept_across_1000_calls() {
    let cluster = Cluster::new();
    cluster.addprocs(2).unwrap();
    let h = start(&cluster, &[]);
    let mut expect_sum = [0u64; 2];
    for call in 1..=1000u64 {
        let args = [call, 2 * call];
        expect_sum[0] += args[0];
        expect_sum[1] += args[1];
        let out = pmap_stasks(&h, count_calls, args).unwrap();
        assert_eq!(out, vec![(call, expect_sum[0]), (call, expect_sum[1])]);
    }
}

fn set_tag(ctx: &mut TaskContext, tag: String) {
    ctx.set("tag", tag);
}

fn get_tag(ctx: &mut TaskContext, (): ()) -> Option<String> {
    ctx.get::<String>("tag").cloned()
}

fn wrong_type(ctx: &mut TaskContext, (): ()) -> (bool, bool) {
    (
        ctx.get::<u64>("tag").is_none(),
        ctx.array::<f64>("svar1").is_err(),
    )
}

#[test]
fn two_groups_on_the_same_workers_keep_separate_state() {
    let cluster = Cluster::new();
    cluster.addprocs(2).unwrap();
    let cfgs = cfgs();
    let a = start(&cluster, &cfgs);
    let b = start(&cluster, &cfgs);
    assert_eq!(a.workers(), b.workers());
    assert_ne!(a.group(), b.group());
    assert_ne!(a.prefix(), b.prefix());

    pmap_stasks(&a, set_tag, ["a0".to_string(), "a1".to_string()]).unwrap();
    assert_eq!(pmap_stasks(&b, get_tag, [(), ()]).unwrap(), [None, None]);
    pmap_stasks(&b, set_tag, ["b0".to_string(), "b1".to_string()]).unwrap();
    assert_eq!(
        pmap_stasks(&a, get_tag, [(), ()]).unwrap(),
        [Some("a0".into()), Some("a1".into())]
    );
    assert_eq!(
        pmap_stasks(&b, get_tag, [(), ()]).unwrap(),
        [Some("b0".into()), Some("b1".into())]
    );
    // A read with the wrong type is None, never a mis-typed value; arrays are checked too.
    assert_eq!(
        pmap_stasks(&a, wrong_type, [(), ()]).unwrap(),
        [(true, true), (true, true)]
    );

    // The arrays are separate too.
    pmap_stasks(&a, init_task, [(), ()]).unwrap();
    assert!(b.array::<i32>("svar1").unwrap().iter().all(|&x| x == 0));
    assert!(a.array::<i32>("svar1").unwrap().iter().all(|&x| x != 0));
}

fn sum_svar1(ctx: &mut TaskContext, (): ()) -> i64 {
    ctx.array::<i32>("svar1")
        .unwrap()
        .iter()
        .map(|&x| i64::from(x))
        .sum()
}

#[test]
fn tasks_see_what_the_master_writes() {
    let cluster = Cluster::new();
    cluster.addprocs(2).unwrap();
    let mut h = start(&cluster, &cfgs());
    h.array_mut::<i32>("svar1").unwrap().fill(3);
    let expect = 3 * LEN1 as i64;
    assert_eq!(
        pmap_stasks(&h, sum_svar1, [(), ()]).unwrap(),
        [expect, expect]
    );
}

#[test]
fn closures_that_capture_nothing_are_handlers() {
    let cluster = Cluster::new();
    cluster.addprocs(2).unwrap();
    let h = start(&cluster, &[]);
    let out = pmap_stasks(
        &h,
        |ctx: &mut TaskContext, x: u32| x * 10 + ctx.task() as u32,
        [1, 2],
    )
    .unwrap();
    assert_eq!(out, [10, 21]);
    // A handler chosen at run time travels as a plain fn pointer too.
    let handlers: [fn(&mut TaskContext, u32) -> u32; 2] =
        [|_, x| x + 1, |ctx, x| x * 100 + ctx.task() as u32];
    for (i, f) in handlers.into_iter().enumerate() {
        let out = pmap_stasks(&h, f, [3, 4]).unwrap();
        assert_eq!(out, if i == 0 { [4, 5] } else { [300, 401] });
    }
}

#[test]
fn count_mismatch_is_refused_before_sending() {
    let cluster = Cluster::new();
    cluster.addprocs(2).unwrap();
    let h = start(&cluster, &[]);
    for args in [vec![], vec![1u64], vec![1, 2, 3]] {
        let got = args.len();
        match pmap_stasks(&h, count_calls, args) {
            Err(PmapError::Refused(Error::CountMismatch {
                expected: 2,
                got: g,
            })) => {
                assert_eq!(g, got)
            }
            other => panic!("expected CountMismatch, got {other:?}"),
        }
    }
    // Nothing was sent: the first real call is call 1 on every task.
    assert_eq!(
        pmap_stasks(&h, count_calls, [0, 0]).unwrap(),
        [(1, 0), (1, 0)]
    );
}

#[test]
fn stop_twice_is_harmless_and_use_after_stop_is_typed() {
    let cluster = Cluster::new();
    cluster.addprocs(2).unwrap();
    let cfgs = cfgs();
    let mut h = start(&cluster, &cfgs);
    let prefix = h.prefix().clone();
    stop_stasks(&mut h).unwrap();
    stop_stasks(&mut h).unwrap();
    assert!(h.is_stopped());
    assert_eq!(h.task_status(0), TaskStatus::Stopped);
    assert!(matches!(
        pmap_stasks(&h, count_calls, [0, 0]),
        Err(PmapError::Refused(Error::Stopped))
    ));
    assert!(matches!(h.array::<i32>("svar1"), Err(Error::Stopped)));
    assert!(ShmSet::attach(&cfgs, &prefix).is_err());
    drop(h); // drop after stop does nothing more
}

#[test]
fn drop_stops_and_unlinks() {
    let cluster = Cluster::new();
    cluster.addprocs(2).unwrap();
    let cfgs = cfgs();
    let h = start(&cluster, &cfgs);
    let prefix = h.prefix().clone();
    let group = h.group();
    drop(h);
    assert!(matches!(
        ShmSet::attach(&cfgs, &prefix),
        Err(ShmError::NotFound { .. })
    ));
    // The workers dropped the group: a new group gets a new id and starts empty.
    let h2 = start(&cluster, &[]);
    assert_ne!(h2.group(), group);
    assert_eq!(
        pmap_stasks(&h2, count_calls, [0, 0]).unwrap(),
        [(1, 0), (1, 0)]
    );
}

#[test]
fn chosen_workers_and_bad_worker_lists() {
    let cluster = Cluster::new();
    let ids = cluster.addprocs(3).unwrap();
    let h = STasks::builder()
        .cluster(&cluster)
        .workers(&[ids[2], ids[0]])
        .call_timeout(TIMEOUT)
        .start(&[], &Prefix::job())
        .unwrap();
    assert_eq!(h.workers(), &[ids[2], ids[0]]);
    assert_eq!(
        pmap_stasks(&h, |c: &mut TaskContext, (): ()| c.myid(), [(), ()]).unwrap(),
        [ids[2], ids[0]]
    );
    for bad in [vec![], vec![1], vec![ids[0], ids[0]]] {
        let r = STasks::builder()
            .cluster(&cluster)
            .workers(&bad)
            .start(&[], &Prefix::job());
        assert!(
            matches!(r, Err(Error::InvalidArgument(_))),
            "{bad:?}: {r:?}"
        );
    }
    let r = STasks::builder()
        .cluster(&cluster)
        .workers(&[999])
        .control_timeout(TIMEOUT)
        .start(&cfgs(), &Prefix::job());
    assert!(r.is_err(), "{r:?}");
}

#[test]
fn every_reserve_mode_gives_the_same_arrays() {
    let cluster = Cluster::new();
    let ids = cluster.addprocs(2).unwrap();
    // Arrays smaller than a page and not a multiple of one, with more tasks than pages.
    let cfgs = [
        ShmCfg::new::<i32>("svar1", LEN1 + 3).unwrap(),
        ShmCfg::new::<u8>("svar2", [100, 100]).unwrap(),
        ShmCfg::new::<u8>("tiny", 1).unwrap(),
    ];
    for reserve in [Reserve::Tasks, Reserve::Master, Reserve::None] {
        let h = STasks::builder()
            .cluster(&cluster)
            .reserve(reserve)
            .call_timeout(TIMEOUT)
            .control_timeout(TIMEOUT)
            .start(&cfgs, &Prefix::job())
            .unwrap();
        pmap_stasks(&h, init_task, [(), ()]).unwrap();
        let svar1 = h.array::<i32>("svar1").unwrap();
        assert!(
            svar1
                .iter()
                .enumerate()
                .all(|(i, &x)| x == ids[i % 2] as i32),
            "{reserve:?}"
        );
        assert_eq!(h.array::<u8>("tiny").unwrap()[0], 0, "{reserve:?}");
    }
}

#[test]
fn one_handle_serves_many_threads_at_once() {
    let cluster = Cluster::new();
    cluster.addprocs(2).unwrap();
    let h = start(&cluster, &[]);
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let h = &h;
            s.spawn(move || {
                for _ in 0..100 {
                    pmap_stasks(h, count_calls, [t, t]).unwrap();
                }
            });
        }
    });
    // Every call ran exactly once in each task: 400 calls, sum 100 * (0 + 1 + 2 + 3).
    assert_eq!(
        pmap_stasks(&h, count_calls, [0, 0]).unwrap(),
        [(401, 600), (401, 600)]
    );
}
