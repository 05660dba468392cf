//! Workers started over OpenSSH on "other hosts": a private sshd on loopback, reached as
//! 127.0.0.2 and 127.0.0.3, each worker connecting back from the address it was reached
//! as (Julia's `bind_addr`). Says SKIPPED where sshd or ssh cannot run.

ptools_workerset::enable_test_support!();

#[path = "support/remote_hosts.rs"]
mod remote_hosts;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ptools_workerset::{Cluster, Error, Ssh, Termination, WorkerSet};
use remote_hosts::{Sshd, Tool, skip};

fn add1(x: u64) -> u64 {
    x + 1
}

fn ssh_launcher(sshd: &Sshd, hosts: &[&str]) -> Ssh {
    let mut l = Ssh::new(hosts).unwrap().client(sshd.ssh_program());
    for o in sshd.client_options() {
        l = l.option(o);
    }
    l
}

#[test]
fn ssh_workers_on_two_hosts() {
    let sshd = match Sshd::start() {
        Ok(s) => s,
        Err(why) => return skip("ssh_workers_on_two_hosts", Tool::Ssh, &why),
    };
    let c = Cluster::builder()
        .start_timeout(Duration::from_secs(30))
        .build();
    let t0 = Instant::now();
    let ids = c
        .addprocs_with(&ssh_launcher(
            &sshd,
            &["127.0.0.2 127.0.0.2", "127.0.0.3 127.0.0.3*2"],
        ))
        .unwrap();
    assert_eq!(c.remotecall_fetch(ids[0], add1, 1).unwrap(), 2);
    eprintln!(
        "addprocs over ssh, 3 workers, to the first result: {:?}",
        t0.elapsed()
    );
    assert_eq!(ids.len(), 3);
    // Ids follow the order workers joined in, not the order of the hosts.
    let mut at: Vec<IpAddr> = ids
        .iter()
        .map(|&id| c.worker_host(id).unwrap().addresses[0])
        .collect();
    at.sort();
    let (two, three): (IpAddr, IpAddr) =
        ("127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap());
    assert_eq!(at, vec![two, three, three]);
    let pool = WorkerSet::with_cluster(&c, &ids, Default::default()).unwrap();
    let out = pool.pmap(add1, 0..1000u64).unwrap();
    assert_eq!(out[999], 1000);
    c.rmprocs(&ids).unwrap();
}

/// A worker killed on its host fails its calls with `WorkerDied` (its connections end),
/// and its ssh client is reaped.
#[test]
fn ssh_worker_killed_remotely() {
    let sshd = match Sshd::start() {
        Ok(s) => s,
        Err(why) => return skip("ssh_worker_killed_remotely", Tool::Ssh, &why),
    };
    let c = Cluster::new();
    let id = c
        .addprocs_with(&ssh_launcher(&sshd, &["127.0.0.2"]))
        .unwrap()[0];
    let pid = c.pid(id).unwrap();
    assert_eq!(c.remotecall_fetch(id, add1, 1).unwrap(), 2);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let e = c.remotecall_fetch(id, add1, 2).unwrap_err();
    assert!(
        matches!(
            e,
            Error::WorkerDied {
                termination: Termination::Disconnected,
                ..
            } | Error::UnknownWorker(_)
        ),
        "{e}"
    );
}
