//! `pfork_shm`: PTools.jl's cases (one output; two outputs of different types and shapes with
//! an extra captured parameter), then failures, and the promise that no segment is left in
//! /dev/shm whatever happens.

mod common;

use std::time::Duration;

use ptools_fork::{ChildError, Pfork, PforkError, pfork_shm};
use ptools_shm::{Prefix, ShmCfg};

fn main() {
    common::run(&[
        ("one_output", one_output),
        (
            "two_outputs_different_types_and_shapes",
            two_outputs_different_types_and_shapes,
        ),
        (
            "failed_child_unlinks_and_reports",
            failed_child_unlinks_and_reports,
        ),
        (
            "run_shm_keeps_the_arrays_on_failure",
            run_shm_keeps_the_arrays_on_failure,
        ),
        (
            "killed_children_leave_no_segment",
            killed_children_leave_no_segment,
        ),
        ("explicit_prefix", explicit_prefix),
        (
            "zero_children_give_zeroed_arrays",
            zero_children_give_zeroed_arrays,
        ),
        ("bad_cfgs_fork_nothing", bad_cfgs_fork_nothing),
        ("results_and_arrays_together", results_and_arrays_together),
    ]);
    // Last check of the binary: nothing of this job is left in /dev/shm.
    assert_eq!(job_segments(), Vec::<String>::new());
}

/// Segments of this job in /dev/shm (pfork_shm's default prefixes start with the job's).
fn job_segments() -> Vec<String> {
    let job = format!("ptools_{}.", Prefix::job().as_str());
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&job) || n.starts_with("ptools_pft"))
        .collect();
    names.sort();
    names
}

fn one_output() {
    let cfgs = [ShmCfg::new::<f64>("out", [10, 100]).unwrap()];
    let set = pfork_shm(&cfgs, 10, |i, set| {
        let out = set.get_mut::<f64>("out").unwrap();
        for j in 0..100 {
            out[i * 100 + j] = (i * 100 + j) as f64;
        }
    })
    .unwrap();
    let out = set.get::<f64>("out").unwrap();
    assert_eq!(out.dims(), &[10, 100]);
    assert!(out.iter().enumerate().all(|(k, &x)| x == k as f64));
    assert_eq!(job_segments().len(), 1);
    drop(set);
    assert_eq!(job_segments(), Vec::<String>::new());
}

fn two_outputs_different_types_and_shapes() {
    let cfgs = [
        ShmCfg::new::<f32>("cube", [4, 5, 6]).unwrap(),
        ShmCfg::new::<i64>("ids", 8).unwrap(),
    ];
    let k = -3_i64; // the extra captured parameter
    let set = pfork_shm(&cfgs, 4, |i, set| {
        let cube = set.get_mut::<f32>("cube").unwrap();
        for x in &mut cube[i * 30..(i + 1) * 30] {
            *x = i as f32 + 0.5;
        }
        let ids = set.get_mut::<i64>("ids").unwrap();
        ids[2 * i] = k * i as i64;
        ids[2 * i + 1] = std::process::id().into();
    })
    .unwrap();
    let cube = set.get::<f32>("cube").unwrap();
    assert_eq!(cube.dims(), &[4, 5, 6]);
    for i in 0..4 {
        assert!(
            cube[i * 30..(i + 1) * 30]
                .iter()
                .all(|&x| x == i as f32 + 0.5)
        );
    }
    let ids = set.get::<i64>("ids").unwrap();
    assert_eq!(ids.dims(), &[8]);
    for i in 0..4 {
        assert_eq!(ids[2 * i], -3 * i as i64);
        assert_ne!(ids[2 * i + 1], i64::from(std::process::id()));
    }
    drop(set);
    assert_eq!(job_segments(), Vec::<String>::new());
}

fn failed_child_unlinks_and_reports() {
    let cfgs = [ShmCfg::new::<u32>("out", 4).unwrap()];
    let err = pfork_shm(&cfgs, 4, |i, set| {
        assert_ne!(i, 2, "child 2 fails");
        set.get_mut::<u32>("out").unwrap()[i] = 1;
    })
    .unwrap_err();
    let failures: Vec<usize> = err.failures().map(|(i, _)| i).collect();
    assert_eq!(failures, [2]);
    assert!(matches!(
        err.failures().next(),
        Some((2, ChildError::Panicked { .. }))
    ));
    assert_eq!(job_segments(), Vec::<String>::new());
}

fn run_shm_keeps_the_arrays_on_failure() {
    let cfgs = [ShmCfg::new::<u8>("out", 4).unwrap()];
    let (set, outcomes) = Pfork::new()
        .timeout(Duration::from_secs(120))
        .run_shm(&cfgs, 4, |i, set| {
            set.get_mut::<u8>("out").unwrap()[i] = 10 + i as u8;
            if i == 1 {
                std::process::abort();
            }
        })
        .unwrap();
    assert!(matches!(
        outcomes[1],
        Err(ChildError::Signaled {
            signal: libc::SIGABRT,
            ..
        })
    ));
    assert!(
        outcomes
            .iter()
            .enumerate()
            .all(|(i, o)| i == 1 || o.is_ok())
    );
    // Child 1 wrote before it aborted: shared memory keeps it.
    assert_eq!(&set.get::<u8>("out").unwrap()[..], &[10, 11, 12, 13]);
    drop(set);
    assert_eq!(job_segments(), Vec::<String>::new());
}

fn killed_children_leave_no_segment() {
    let cfgs = [ShmCfg::new::<f64>("big", [1024, 1024]).unwrap()];
    let (set, outcomes) = Pfork::new()
        .timeout(Duration::from_millis(300))
        .run_shm(&cfgs, 2, |i, set| -> u8 {
            set.get_mut::<f64>("big").unwrap()[i] = 1.0;
            common::sleep_forever()
        })
        .unwrap();
    assert_eq!(
        outcomes,
        vec![Err(ChildError::TimedOut), Err(ChildError::TimedOut)]
    );
    drop(set);
    assert_eq!(job_segments(), Vec::<String>::new());
}

fn explicit_prefix() {
    let prefix = Prefix::new(format!("pft{}", std::process::id())).unwrap();
    let cfgs = [ShmCfg::new::<u16>("x", 3).unwrap()];
    let (set, outcomes) = Pfork::new()
        .shm_prefix(prefix.clone())
        .run_shm(&cfgs, 3, |i, set| {
            set.get_mut::<u16>("x").unwrap()[i] = 7;
        })
        .unwrap();
    assert!(outcomes.iter().all(Result::is_ok));
    assert_eq!(&set.get::<u16>("x").unwrap()[..], &[7, 7, 7]);
    // The segment carries the explicit prefix (attaching from this process is refused by
    // ptools-shm while the set maps it, so look at /dev/shm), and is gone after the drop.
    let path =
        std::path::Path::new("/dev/shm").join(prefix.segment_name("x").trim_start_matches('/'));
    assert!(path.exists(), "{}", path.display());
    drop(set);
    assert!(!path.exists(), "{}", path.display());
}

fn zero_children_give_zeroed_arrays() {
    let cfgs = [ShmCfg::new::<i32>("z", [2, 2]).unwrap()];
    let set = pfork_shm(&cfgs, 0, |_, _| unreachable!("no child runs")).unwrap();
    assert_eq!(&set.get::<i32>("z").unwrap()[..], &[0, 0, 0, 0]);
}

fn bad_cfgs_fork_nothing() {
    let cfgs = [
        ShmCfg::new::<u8>("same", 1).unwrap(),
        ShmCfg::new::<u8>("same", 2).unwrap(),
    ];
    let err = pfork_shm(&cfgs, 2, |_, _| unreachable!("no child runs")).unwrap_err();
    assert!(matches!(err, PforkError::Shm(_)), "{err:?}");
    assert!(std::error::Error::source(&err).is_some());
    assert!(common::children().is_empty());
    assert_eq!(job_segments(), Vec::<String>::new());
}

fn results_and_arrays_together() {
    let cfgs = [ShmCfg::new::<u64>("sq", 5).unwrap()];
    let (set, outcomes) = Pfork::new()
        .run_shm(&cfgs, 5, |i, set| {
            set.get_mut::<u64>("sq").unwrap()[i] = (i * i) as u64;
            format!("child {i}")
        })
        .unwrap();
    assert_eq!(outcomes[4], Ok("child 4".to_owned()));
    assert_eq!(&set.get::<u64>("sq").unwrap()[..], &[0, 1, 4, 9, 16]);
}
