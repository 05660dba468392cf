//! Part 6, workers over TCP: the same program joins as workers over authenticated TCP
//! connections, as it would on other hosts through `ssh`, `mpirun` or `srun`; here a local
//! shell stands in for the remote engine, so the tour needs no server. They render the
//! fractal of part 3 again through a first-free set, and the picture must be identical.

use std::time::{Duration, Instant};

use ptools::workerset::{Cluster, CommandLauncher, Mode, WorkerSet};

use crate::workers_part::{render_here, render_with};
use crate::{BoxError, cores};

pub(crate) fn run(size: usize) -> Result<(), BoxError> {
    let n = cores().max(2);
    println!(
        "\n6. workers over TCP: {n} workers join through a launcher and prove the job's secret"
    );
    let cluster = Cluster::builder()
        .heartbeat(Duration::from_millis(500), Duration::from_secs(5))
        .build();
    let t = Instant::now();
    // `Ssh::new(["node1*2"])` on a cluster; `sh` here.
    let ids = cluster.addprocs_with(&CommandLauncher::new(["sh", "-c", "exec {cmd}"]).count(n))?;
    println!(
        "   workers {ids:?} joined {} in {:.1} ms",
        cluster
            .listen_addr()
            .map(|a| a.to_string())
            .unwrap_or_default(),
        t.elapsed().as_secs_f64() * 1e3
    );
    for &id in &ids {
        if let Some(h) = cluster.worker_host(id) {
            println!(
                "   worker {id} reports host {:?}, from {}",
                h.hostname, h.addresses[0]
            );
        }
    }
    let result = (|| -> Result<(), BoxError> {
        let baseline = render_here(size);
        let set = WorkerSet::with_cluster(&cluster, &ids, Mode::FirstFree)?;
        let (picture, took) = render_with(&set, size)?;
        println!(
            " in {:.0} ms over TCP; identical to the sequential picture: {}",
            took.as_secs_f64() * 1e3,
            picture == baseline
        );
        if picture != baseline {
            return Err("the TCP workers' picture differs from the sequential one".into());
        }
        Ok(())
    })();
    cluster.rmprocs(&ids)?;
    result
}
