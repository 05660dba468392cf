//! Workers started as the tasks of Slurm's `srun`, in a private three-node Slurm cluster
//! on loopback. Says SKIPPED where Slurm cannot run here.

ptools_workerset::enable_test_support!();

#[path = "support/remote_hosts.rs"]
mod remote_hosts;

use std::time::Duration;

use ptools_workerset::{Cluster, Srun};
use remote_hosts::{Slurm, Tool, skip};

fn add1(x: u64) -> u64 {
    x + 1
}

fn node_name(_: ()) -> String {
    std::env::var("SLURMD_NODENAME").unwrap_or_default()
}

#[test]
fn srun_tasks_join_as_workers() {
    let slurm = match Slurm::start() {
        Ok(s) => s,
        Err(why) => return skip("srun_tasks_join_as_workers", Tool::Srun, &why),
    };
    // The harness's srun command: its program and the variables that aim it at the
    // private cluster (and tag its tasks for cleanup).
    let cmd = slurm.command("srun");
    let mut srun = Srun::new(3).client(cmd.get_program()).option("--nodes=3");
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            srun = srun.env(k.to_string_lossy(), v.to_string_lossy());
        }
    }
    let c = Cluster::builder()
        .start_timeout(Duration::from_secs(60))
        .build();
    let ids = c.addprocs_with(&srun).unwrap();
    assert_eq!(ids.len(), 3);
    let mut nodes: Vec<String> = ids
        .iter()
        .map(|&id| {
            assert_eq!(c.remotecall_fetch(id, add1, 1).unwrap(), 2);
            c.remotecall_fetch(id, node_name, ()).unwrap()
        })
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["node1", "node2", "node3"]);
    c.rmprocs(&ids).unwrap();
}
