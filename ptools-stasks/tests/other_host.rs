//! Shared arrays stay on their host. A worker that joined over TCP with a `/dev/shm` of its
//! own (a private tmpfs in its own mount namespace: what a worker on another host sees)
//! cannot map the master's segments: `pmap_shm_create_on` fails with a typed error naming
//! that worker, and nothing is left in the master's `/dev/shm`. Says SKIPPED where a mount
//! namespace cannot be made.

ptools_workerset::enable_test_support!();

use std::io::Write;
use std::time::Duration;

use ptools_shm::{Prefix, ShmCfg};
use ptools_stasks::{Error, pmap_shm_create_on};
use ptools_workerset::{Cluster, CommandLauncher};

#[test]
fn arrays_cannot_reach_a_worker_on_another_host() {
    let probe = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", "mount -t tmpfs tmpfs /dev/shm"])
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        // Past libtest's capture, so the skip shows in a passing run.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: arrays_cannot_reach_a_worker_on_another_host: unshare -m with a tmpfs \
             on /dev/shm is not permitted here"
        );
        return;
    }
    let c = Cluster::builder()
        .start_timeout(Duration::from_secs(30))
        .build();
    let elsewhere = CommandLauncher::new([
        "unshare",
        "-m",
        "sh",
        "-c",
        "mount -t tmpfs tmpfs /dev/shm && exec {cmd}",
    ]);
    let id = c.addprocs_with(&elsewhere).unwrap()[0];
    let prefix = Prefix::new(format!("otherhost{}", std::process::id())).unwrap();
    let cfgs = [ShmCfg::new::<f64>("field", [64, 64]).unwrap()];
    let e = pmap_shm_create_on(&c, &cfgs, &prefix).unwrap_err();
    assert!(
        matches!(e, Error::Attach { id: got, .. } if got == id),
        "{e}"
    );
    let left: Vec<_> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().contains(prefix.as_str()))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    c.rmprocs(&[id]).unwrap();
}
