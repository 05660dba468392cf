//! `pmap_shm_create`: arrays created in the master and mapped in every worker, reached
//! there by plain remote functions, and unlinked everywhere by `pmap_shm_unlink`.

ptools_workerset::enable_test_support!();

use std::sync::atomic::{AtomicUsize, Ordering};

use ptools_shm::{Prefix, ShmCfg, ShmError, ShmSet};
use ptools_stasks::{Error, pmap_shm_create_on, pmap_shm_unlink_on, with_mapped};
use ptools_workerset::Cluster;

/// A prefix unique to this process and test, so tests never share segments.
fn unique_prefix() -> Prefix {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    Prefix::new(format!("{}.m{n}", Prefix::job().as_str())).unwrap()
}

/// Writes `myid()` at index `i` of "ids" under the prefix given.
fn write_id((prefix, i): (String, usize)) -> Result<(), String> {
    let p = Prefix::new(prefix).map_err(|e| e.to_string())?;
    with_mapped::<u32, _>(&p, "ids", |a| a[i] = ptools_workerset::myid() as u32)
        .map_err(|e| e.to_string())
}

fn read_at((prefix, name, i): (String, String, usize)) -> Result<u32, String> {
    let p = Prefix::new(prefix).map_err(|e| e.to_string())?;
    with_mapped::<u32, _>(&p, &name, |a| a[i]).map_err(|e| e.to_string())
}

#[test]
fn arrays_are_mapped_in_every_worker() {
    let cluster = Cluster::new();
    let ids = cluster.addprocs(2).unwrap();
    let prefix = unique_prefix();
    let cfgs = [ShmCfg::new::<u32>("ids", 8).unwrap()];
    let set = pmap_shm_create_on(&cluster, &cfgs, &prefix).unwrap();
    for (i, &id) in ids.iter().enumerate() {
        cluster
            .remotecall_fetch(id, write_id, (prefix.as_str().to_owned(), i))
            .unwrap()
            .unwrap();
    }
    let a = set.get::<u32>("ids").unwrap();
    assert_eq!(&a[..2], &[ids[0] as u32, ids[1] as u32]);
    // A wrong name is a typed error inside the worker.
    let r = cluster
        .remotecall_fetch(
            ids[0],
            read_at,
            (prefix.as_str().to_owned(), "nope".to_owned(), 0),
        )
        .unwrap();
    assert!(r.unwrap_err().contains("nope"));

    pmap_shm_unlink_on(&cluster, &cfgs, &prefix).unwrap();
    assert!(matches!(
        ShmSet::attach(&cfgs, &prefix),
        Err(ShmError::NotFound { .. })
    ));
    // The workers dropped their mappings.
    let r = cluster
        .remotecall_fetch(
            ids[1],
            read_at,
            (prefix.as_str().to_owned(), "ids".to_owned(), 0),
        )
        .unwrap();
    assert!(r.is_err());
    // Unlinking again is harmless; the master's handle drops without error.
    pmap_shm_unlink_on(&cluster, &cfgs, &prefix).unwrap();
    drop(set);
}

#[test]
fn a_name_held_by_a_live_owner_is_refused_and_nothing_is_left() {
    let cluster = Cluster::new();
    cluster.addprocs(1).unwrap();
    let prefix = unique_prefix();
    let cfgs = [ShmCfg::new::<u32>("ids", 8).unwrap()];
    let first = pmap_shm_create_on(&cluster, &cfgs, &prefix).unwrap();
    let r = pmap_shm_create_on(&cluster, &cfgs, &prefix);
    assert!(
        matches!(r, Err(Error::Shm(ShmError::AlreadyExists { .. }))),
        "{r:?}"
    );
    drop(first);
    pmap_shm_unlink_on(&cluster, &cfgs, &prefix).unwrap();
}
