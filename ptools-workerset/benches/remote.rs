//! Workers on "other hosts": `addprocs_with(Ssh)` through a private sshd on loopback, to
//! the first result, against a plain `ssh host true` to the same server in the same run.
//! Prints SKIPPED and measures nothing where sshd or ssh cannot run.

ptools_workerset::enable_test_support!();

#[path = "../tests/support/remote_hosts.rs"]
mod remote_hosts;

use std::process::Stdio;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use ptools_workerset::{Cluster, Ssh};

fn add1(x: u64) -> u64 {
    x + 1
}

fn remote(c: &mut Criterion) {
    let sshd = match remote_hosts::Sshd::start() {
        Ok(s) => s,
        Err(why) => {
            eprintln!("SKIPPED: remote benches: {why}");
            return;
        }
    };
    let mut launcher = Ssh::new(["127.0.0.2"]).unwrap().client(sshd.ssh_program());
    for o in sshd.client_options() {
        launcher = launcher.option(o);
    }
    let mut g = c.benchmark_group("remote");
    g.sample_size(10);
    g.bench_function("raw_ssh_true", |b| {
        b.iter(|| {
            let st = sshd
                .ssh("127.0.0.2")
                .arg("true")
                .stdin(Stdio::null())
                .status()
                .unwrap();
            assert!(st.success());
        })
    });
    g.bench_function("addprocs_ssh_first_result", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let cluster = Cluster::new();
                let t0 = Instant::now();
                let id = cluster.addprocs_with(&launcher).unwrap()[0];
                assert_eq!(cluster.remotecall_fetch(id, add1, 1).unwrap(), 2);
                total += t0.elapsed();
                // Stopping the worker stays out of the timing.
                drop(cluster);
            }
            total
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(10));
    targets = remote
}
criterion_main!(benches);
