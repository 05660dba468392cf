//! The free functions on the default cluster: with no worker there, `start_stasks` fails
//! unless asked to start some; `pmap_shm_create` maps in every worker of it. One test
//! only, so nothing else in this binary touches the default cluster concurrently.

ptools_workerset::enable_test_support!();

use ptools_shm::{Prefix, ShmCfg};
use ptools_stasks::{
    Error, STasks, TaskContext, count_stasks, pmap_stasks, start_stasks, stop_stasks,
};

fn whoami(ctx: &mut TaskContext, (): ()) -> (usize, usize) {
    (ctx.task(), ctx.myid())
}

fn read_first(prefix: String) -> Result<u16, String> {
    let p = Prefix::new(prefix).map_err(|e| e.to_string())?;
    ptools_stasks::with_mapped::<u16, _>(&p, "shared", |a| a[0]).map_err(|e| e.to_string())
}

#[test]
fn start_stasks_starts_workers_only_when_asked() {
    assert_eq!(ptools_workerset::workers(), [1]);
    let cfgs = [ShmCfg::new::<f32>("x", 16).unwrap()];
    // No worker and none asked for: a typed error, no worker started, nothing created.
    let prefix = Prefix::new(format!("{}.nw", Prefix::job().as_str())).unwrap();
    let err = start_stasks(&cfgs, &prefix).unwrap_err();
    assert!(matches!(err, Error::NoWorkers), "{err:?}");
    assert!(err.to_string().contains("addprocs_if_none"), "{err}");
    assert_eq!(ptools_workerset::workers(), [1]);
    let left: Vec<_> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(prefix.as_str()))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(matches!(
        STasks::builder().addprocs_if_none(0).start(&cfgs, &prefix),
        Err(Error::InvalidArgument(_))
    ));

    let cores = 2;
    let mut h = STasks::builder()
        .addprocs_if_none(cores)
        .start(&cfgs, &Prefix::job())
        .unwrap();
    assert_eq!(count_stasks(&h), cores);
    assert_eq!(ptools_workerset::nworkers(), cores);
    let ids = ptools_workerset::workers();
    assert_eq!(h.workers(), &ids[..]);
    let out = pmap_stasks(&h, whoami, vec![(); cores]).unwrap();
    assert_eq!(out, ids.iter().copied().enumerate().collect::<Vec<_>>());
    stop_stasks(&mut h).unwrap();
    // The workers stay in the default cluster, and a new group uses them.
    assert_eq!(ptools_workerset::workers(), ids);
    let h2 = start_stasks(&[], &Prefix::job()).unwrap();
    assert_eq!(h2.workers(), &ids[..]);
    drop(h2);

    // pmap_shm_create maps in every worker of the default cluster.
    let prefix = Prefix::new(format!("{}.dc", Prefix::job().as_str())).unwrap();
    let cfgs = [ShmCfg::new::<u16>("shared", 4).unwrap()];
    let mut set = ptools_stasks::pmap_shm_create(&cfgs, &prefix).unwrap();
    set.get_mut::<u16>("shared").unwrap()[0] = 99;
    for &id in &ids {
        let got = ptools_workerset::remotecall_fetch(id, read_first, prefix.as_str().to_owned())
            .unwrap()
            .unwrap();
        assert_eq!(got, 99);
    }
    ptools_stasks::pmap_shm_unlink(&cfgs, &prefix).unwrap();
    drop(set);
}
