//! Arrays mapped in every process of a cluster, outside any server task (PTools.jl's
//! `pmap_shm_create`): created in the master, attached in every worker, and reached
//! there by plain remote functions through [`with_mapped`].

use ptools_shm::{Prefix, ShmArray, ShmCfg, ShmElem, ShmError, ShmSet, unlink_shm};
use ptools_workerset::Cluster;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};
use crate::registry::{self, Fault, WireCfg};

fn wire(cfgs: &[ShmCfg]) -> Result<Vec<WireCfg>> {
    cfgs.iter()
        .map(|c| {
            WireCfg::from_cfg(c).ok_or_else(|| {
                Error::InvalidArgument(format!("unsupported element type {}", c.elem()))
            })
        })
        .collect()
}

/// Calls `f(arg)` on every live worker of `cluster` at once (not the master), and returns
/// each worker's id with its outcome, in worker order.
fn on_every_worker<A, R>(
    cluster: &Cluster,
    f: fn(A) -> R,
    arg: A,
) -> Vec<(usize, ptools_workerset::Result<R>)>
where
    A: Serialize + DeserializeOwned + Clone,
    R: Serialize + DeserializeOwned,
{
    let workers: Vec<usize> = cluster
        .workers()
        .into_iter()
        .filter(|&id| id != 1)
        .collect();
    let refs: Vec<_> = workers
        .iter()
        .map(|&id| cluster.remotecall(id, f, arg.clone()))
        .collect();
    workers
        .into_iter()
        .zip(refs)
        .map(|(id, r)| (id, r.and_then(|r| r.fetch())))
        .collect()
}

/// Creates the arrays `cfgs` under `prefix` in the master and maps them in every worker
/// of `cluster`; [`pmap_shm_create`](crate::pmap_shm_create) on a given cluster.
///
/// # Errors
///
/// As [`pmap_shm_create`](crate::pmap_shm_create).
pub fn pmap_shm_create_on(cluster: &Cluster, cfgs: &[ShmCfg], prefix: &Prefix) -> Result<ShmSet> {
    let wire = wire(cfgs)?;
    let set = ShmSet::create(cfgs, prefix)?;
    let outcomes = on_every_worker(
        cluster,
        registry::map_shm,
        (prefix.as_str().to_owned(), wire),
    );
    let mut first = None;
    for (i, (id, out)) in outcomes.into_iter().enumerate() {
        let e = match out {
            Ok(Ok(())) => continue,
            Ok(Err(Fault::Attach(message))) => Error::Attach {
                task: i,
                id,
                message,
            },
            Ok(Err(
                Fault::NotRegistered
                | Fault::Unsupported
                | Fault::OutOfSpace { .. }
                | Fault::ForeignHandler,
            )) => Error::NotRegistered { task: i, id },
            Err(e) => Error::from_worker(i, id, e),
        };
        first.get_or_insert(e);
    }
    if let Some(e) = first {
        let _ = unmap_everywhere(cluster, cfgs, prefix);
        // `set` drops here and unlinks: nothing half-created survives.
        return Err(e);
    }
    Ok(set)
}

fn unmap_everywhere(cluster: &Cluster, cfgs: &[ShmCfg], prefix: &Prefix) -> Result<()> {
    let names: Vec<String> = cfgs.iter().map(|c| c.name().to_owned()).collect();
    let outcomes = on_every_worker(
        cluster,
        registry::unmap_shm,
        (prefix.as_str().to_owned(), names),
    );
    let mut first = None;
    for (i, (id, out)) in outcomes.into_iter().enumerate() {
        // A worker that died has no mapping left to drop.
        if let Err(e) = out
            && !e.is_worker_lost()
        {
            first.get_or_insert(Error::from_worker(i, id, e));
        }
    }
    first.map_or(Ok(()), Err)
}

/// Drops the mappings of `cfgs` under `prefix` in every worker of `cluster` and unlinks
/// the segments; [`pmap_shm_unlink`](crate::pmap_shm_unlink) on a given cluster.
///
/// # Errors
///
/// As [`pmap_shm_unlink`](crate::pmap_shm_unlink).
pub fn pmap_shm_unlink_on(cluster: &Cluster, cfgs: &[ShmCfg], prefix: &Prefix) -> Result<()> {
    let unmapped = unmap_everywhere(cluster, cfgs, prefix);
    match unlink_shm(cfgs, prefix) {
        // Already unlinked (the master's set was dropped first, or a second unlink).
        Ok(()) | Err(ShmError::NotFound { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    unmapped
}

/// Inside a worker, runs `f` on the array `name` that
/// [`pmap_shm_create`](crate::pmap_shm_create) mapped here under `prefix` (the master
/// uses the `ShmSet` that `pmap_shm_create` returned). `f` must not call `with_mapped`
/// itself: the mappings of the process are locked while it runs.
///
/// The `&mut` that `f` gets is exclusive in this process only: the master and every other
/// worker map the same memory, and ptools-shm's contract (its crate docs, "Safety
/// model") is the caller's to keep: while one process writes an element, no other reads
/// or writes it.
///
/// # Errors
///
/// [`Error::Shm`] with `ShmError::NoSuchArray` when no array of that name is mapped here
/// under `prefix`, or `ShmError::TypeMismatch` for another element type.
pub fn with_mapped<T: ShmElem, R>(
    prefix: &Prefix,
    name: &str,
    f: impl FnOnce(&mut ShmArray<T>) -> R,
) -> Result<R> {
    let mut m = registry::mapped();
    let set = m
        .iter_mut()
        .find(|(p, set)| p == prefix.as_str() && set.names().any(|n| n == name))
        .map(|(_, set)| set)
        .ok_or_else(|| ShmError::NoSuchArray {
            name: name.to_owned(),
        })?;
    Ok(f(set.get_mut::<T>(name)?))
}
