//! Workers started by Open MPI's `mpirun`: as the ranks of an `mpirun` the master starts
//! ([`Mpirun`]), and a program started under `mpirun` whose rank 0 is the master
//! (`Cluster::addprocs_ranks`). Says SKIPPED where mpirun cannot run.

ptools_workerset::enable_test_support!();

#[path = "support/remote_hosts.rs"]
mod remote_hosts;

use std::process::{Command, Stdio};
use std::time::Duration;

use ptools_workerset::{Cluster, Mpirun, WorkerSet};
use remote_hosts::{Tool, mpirun_command, skip};

fn add1(x: u64) -> u64 {
    x + 1
}

fn my_id(_: ()) -> usize {
    ptools_workerset::myid()
}

fn mpirun(np: usize, prefix: &[String]) -> Mpirun {
    let mut m = Mpirun::new(np).client(&prefix[0]);
    for o in &prefix[1..] {
        m = m.option(o.clone());
    }
    m
}

#[test]
fn mpirun_ranks_join_as_workers() {
    let prefix = match mpirun_command() {
        Ok(p) => p,
        Err(why) => return skip("mpirun_ranks_join_as_workers", Tool::Mpirun, &why),
    };
    let c = Cluster::builder()
        .start_timeout(Duration::from_secs(60))
        .build();
    let ids = c.addprocs_with(&mpirun(3, &prefix)).unwrap();
    assert_eq!(ids.len(), 3);
    for &id in &ids {
        assert_eq!(c.remotecall_fetch(id, my_id, ()).unwrap(), id);
    }
    let pool = WorkerSet::with_cluster(&c, &ids, Default::default()).unwrap();
    assert_eq!(pool.pmap(add1, 0..300u64).unwrap()[299], 300);
    c.rmprocs(&ids).unwrap();
}

const ROLE: &str = "PTOOLS_TEST_MPI_RANKS";

/// Run as every rank of `mpirun` by `rank_zero_is_the_master`; nothing otherwise.
#[test]
#[ignore = "a role run by rank_zero_is_the_master under mpirun"]
fn rank_zero_role() {
    if std::env::var_os(ROLE).is_none() {
        return;
    }
    let c = Cluster::builder()
        .start_timeout(Duration::from_secs(60))
        .build();
    let ids = c.addprocs_ranks().unwrap();
    // Only rank 0 gets here.
    assert_eq!(ids.len(), 2);
    for &id in &ids {
        assert_eq!(c.remotecall_fetch(id, add1, 41).unwrap(), 42);
    }
    println!("RANK0 MASTER OF {}", ids.len());
    c.rmprocs(&ids).unwrap();
}

#[test]
fn rank_zero_is_the_master() {
    let prefix = match mpirun_command() {
        Ok(p) => p,
        Err(why) => return skip("rank_zero_is_the_master", Tool::Mpirun, &why),
    };
    let dir = std::env::temp_dir().join(format!("ptools-ranks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(&prefix[0])
        .args(&prefix[1..])
        .args(["-np", "3"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "rank_zero_role", "--ignored", "--nocapture"])
        .env(ROLE, "1")
        .env("PTOOLS_RENDEZVOUS_DIR", &dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    std::fs::remove_dir_all(&dir).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("RANK0 MASTER OF 2"),
        "{}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(left.is_empty(), "rendezvous file left behind: {left:?}");
}
