//! The worker side: a registry of server tasks keyed by group id, the remote functions
//! that register and drop them, and the bridge that runs a user handler in its task.
//!
//! Everything here runs inside a worker, called through `ptools-workerset` remote calls.

use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::{Mutex, MutexGuard};

use ptools_shm::{ElemType, Prefix, ShmBuilder, ShmCfg, ShmElem, ShmSet};
use serde::{Deserialize, Serialize};

use crate::context::{TaskContext, TaskLocalStorage};
use crate::sys::{self, PopulateError};

/// Every element type ptools-shm knows, by wire index (master and workers run the same
/// build, so the order is the same on both sides).
const ELEMS: [ElemType; 10] = ElemType::ALL;

/// A [`ShmCfg`] on the wire (ptools-shm's types are not serde types).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct WireCfg {
    name: String,
    elem: u8,
    dims: Vec<usize>,
}

impl WireCfg {
    pub(crate) fn from_cfg(cfg: &ShmCfg) -> Option<WireCfg> {
        let elem = ELEMS.iter().position(|&e| e == cfg.elem())?;
        Some(WireCfg {
            name: cfg.name().to_owned(),
            elem: u8::try_from(elem).ok()?,
            dims: cfg.dims().to_vec(),
        })
    }

    fn to_cfg(&self) -> Result<ShmCfg, String> {
        let elem = *ELEMS
            .get(usize::from(self.elem))
            .ok_or_else(|| format!("unknown element type index {}", self.elem))?;
        ShmCfg::with_elem(self.name.clone(), elem, self.dims.clone()).map_err(|e| e.to_string())
    }
}

/// What a worker needs to set up one server task.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StartMsg {
    pub(crate) group: u64,
    pub(crate) task: usize,
    pub(crate) ntasks: usize,
    pub(crate) prefix: String,
    pub(crate) cfgs: Vec<WireCfg>,
    pub(crate) populate: bool,
    /// Allocate and map this task's share of every array (see `Reserve::Tasks`).
    pub(crate) reserve_share: bool,
}

/// A failure inside the worker that is not a panic of the handler.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Fault {
    /// No server task of this group on this worker.
    NotRegistered,
    /// Attaching the arrays (or reserving this task's share of them) failed.
    Attach(String),
    /// This kernel cannot reserve a share from a task (no `MADV_POPULATE_WRITE`).
    Unsupported,
    /// The shared-memory file system has no room for this task's share.
    OutOfSpace {
        /// The segment's system name.
        name: String,
        /// The bytes this task tried to reserve.
        bytes: u64,
    },
}

enum Slot {
    /// Registered and waiting for a call.
    Idle(Box<TaskContext>),
    /// Checked out by the call running now (calls on a worker run one at a time, so a
    /// second call never finds this; it would get `NotRegistered`).
    Busy,
}

/// The server tasks of this process, by group id.
static GROUPS: Mutex<Option<HashMap<u64, Slot>>> = Mutex::new(None);

fn groups() -> MutexGuard<'static, Option<HashMap<u64, Slot>>> {
    // A poisoned lock only means a panic elsewhere while it was held; the map itself is
    // always consistent (every update is a single insert or remove).
    GROUPS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Remote function: attaches the arrays and registers the task.
pub(crate) fn register(msg: StartMsg) -> Result<(), Fault> {
    let prefix = Prefix::new(msg.prefix).map_err(|e| Fault::Attach(e.to_string()))?;
    let cfgs = msg
        .cfgs
        .iter()
        .map(WireCfg::to_cfg)
        .collect::<Result<Vec<_>, _>>()
        .map_err(Fault::Attach)?;
    let mut arrays = ShmBuilder::new()
        .prefix(prefix)
        .populate(msg.populate)
        .attach(&cfgs)
        .map_err(|e| Fault::Attach(e.to_string()))?;
    if msg.reserve_share {
        for cfg in &cfgs {
            reserve_share(&mut arrays, cfg, msg.task, msg.ntasks)?;
        }
    }
    let ctx = TaskContext {
        group: msg.group,
        task: msg.task,
        ntasks: msg.ntasks,
        storage: TaskLocalStorage::new(),
        arrays,
    };
    groups()
        .get_or_insert_with(HashMap::new)
        .insert(msg.group, Slot::Idle(Box::new(ctx)));
    Ok(())
}

/// The data of array `cfg` in `set`, as bytes.
fn data_bytes(set: &mut ShmSet, cfg: &ShmCfg) -> Option<(*mut u8, usize)> {
    macro_rules! typed {
        ($($t:ty),*) => {$(
            if cfg.elem() == <$t as ShmElem>::ELEM {
                let a = set.get_mut::<$t>(cfg.name()).ok()?;
                return Some((a.as_mut_ptr().cast::<u8>(), size_of_val(a.as_slice())));
            }
        )*};
    }
    typed!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);
    None
}

/// The byte range `[start, end)` of share `task` of `ntasks` in `len` bytes: contiguous,
/// equal up to rounding, together covering every byte.
pub(crate) fn share(len: usize, task: usize, ntasks: usize) -> (usize, usize) {
    let chunk = len.div_ceil(ntasks.max(1));
    let start = (task * chunk).min(len);
    (start, (start + chunk).min(len))
}

/// The system name of array `cfg`'s segment in `set`.
fn segment_name(set: &ShmSet, cfg: &ShmCfg) -> String {
    macro_rules! typed {
        ($($t:ty),*) => {$(
            if cfg.elem() == <$t as ShmElem>::ELEM {
                return set
                    .get::<$t>(cfg.name())
                    .map_or_else(|_| cfg.name().to_owned(), |a| a.segment_name().to_owned());
            }
        )*};
    }
    typed!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);
    cfg.name().to_owned()
}

/// Allocates and maps this task's share of array `cfg` (`Reserve::Tasks`).
fn reserve_share(set: &mut ShmSet, cfg: &ShmCfg, task: usize, ntasks: usize) -> Result<(), Fault> {
    let (ptr, len) = data_bytes(set, cfg)
        .ok_or_else(|| Fault::Attach(format!("{}: unknown element type", cfg.name())))?;
    let (start, end) = share(len, task, ntasks);
    // SAFETY: `[start, end)` lies within the array's data, which lies within the live
    // mapping that `set` holds for the whole call; rounded out to pages it stays in that
    // mapping, which covers the segment's whole pages.
    match unsafe { sys::populate_write(ptr.wrapping_add(start), end - start) } {
        Ok(()) => Ok(()),
        Err(PopulateError::Unsupported) => Err(Fault::Unsupported),
        Err(PopulateError::NoSpace) => Err(Fault::OutOfSpace {
            name: segment_name(set, cfg),
            bytes: (end - start) as u64,
        }),
        Err(PopulateError::Failed(e)) => Err(Fault::Attach(format!(
            "reserving {} bytes of {}: {e}",
            end - start,
            cfg.name()
        ))),
    }
}

/// Remote function: drops the task (its state, then its mappings). True if it was there.
pub(crate) fn unregister(group: u64) -> bool {
    let slot = groups().as_mut().and_then(|m| m.remove(&group));
    // Dropped outside the lock: user state may take a while to drop.
    slot.is_some()
}

/// Puts a checked-out context back when the call ends, by return or by unwinding, so a
/// panicking handler leaves its task's state registered.
struct Checkout {
    group: u64,
    ctx: Option<Box<TaskContext>>,
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(ctx) = self.ctx.take() {
            let mut g = groups();
            if let Some(slot) = g.as_mut().and_then(|m| m.get_mut(&self.group)) {
                *slot = Slot::Idle(ctx);
            }
        }
    }
}

fn checkout(group: u64) -> Option<Checkout> {
    let mut g = groups();
    let slot = g.as_mut()?.get_mut(&group)?;
    match std::mem::replace(slot, Slot::Busy) {
        Slot::Idle(ctx) => Some(Checkout {
            group,
            ctx: Some(ctx),
        }),
        Slot::Busy => None,
    }
}

/// Remote function: runs the handler of type `F` on `arg` in the task of `group`.
///
/// `F` is the handler's own type, a zero-sized fn item or non-capturing closure type;
/// monomorphising this function on it is how the handler travels: the master sends
/// `run::<F, A, R>` as a plain `fn((u64, A)) -> Result<R, Fault>` through ptools-workerset.
pub(crate) fn run<F, A, R>((group, arg): (u64, A)) -> Result<R, Fault>
where
    F: Fn(&mut TaskContext, A) -> R + Copy + Send + 'static,
{
    let f = conjure::<F>();
    let mut c = checkout(group).ok_or(Fault::NotRegistered)?;
    let ctx = c
        .ctx
        .as_deref_mut()
        .expect("a checkout holds its context until dropped");
    Ok(f(ctx, arg))
}

/// Checked at compile time for every handler type: only a zero-sized handler can be
/// re-created in the worker.
pub(crate) const fn assert_zero_sized<F>() {
    assert!(
        size_of::<F>() == 0,
        "a server-task handler must be a fn item or a closure that captures nothing \
         (a zero-sized type); fn pointers and capturing closures cannot be sent"
    );
}

/// A value of the zero-sized handler type `F`, made from nothing.
fn conjure<F: Copy + 'static>() -> F {
    const { assert_zero_sized::<F>() };
    // SAFETY: `F` is zero-sized (asserted at compile time just above), so a value of it
    // has no bytes, and reading one from a dangling but non-null, aligned pointer is
    // valid (std::ptr docs: for zero-sized types any such pointer is valid for reads).
    // The value is not forged: the master held a value of `F` when it sent `run::<F, ..>`
    // (`pmap_stasks` takes one), `F: Copy` allows any number of copies of it to exist,
    // and a copy of a zero-sized value is exactly this read. On stable Rust only fn items
    // and closures implement `Fn`, so `F` carries no invariant beyond its type.
    unsafe { NonNull::<F>::dangling().as_ptr().read() }
}

/// The arrays mapped by [`pmap_shm_create`](crate::pmap_shm_create) in this process:
/// (prefix, set) pairs, searched by prefix and array name.
static MAPPED: Mutex<Vec<(String, ShmSet)>> = Mutex::new(Vec::new());

pub(crate) fn mapped() -> MutexGuard<'static, Vec<(String, ShmSet)>> {
    // As for GROUPS: every update is a single push or retain.
    MAPPED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Remote function: attaches `cfgs` under `prefix` and keeps the mapping in this process.
pub(crate) fn map_shm((prefix, cfgs): (String, Vec<WireCfg>)) -> Result<(), Fault> {
    let p = Prefix::new(prefix.clone()).map_err(|e| Fault::Attach(e.to_string()))?;
    let cfgs = cfgs
        .iter()
        .map(WireCfg::to_cfg)
        .collect::<Result<Vec<_>, _>>()
        .map_err(Fault::Attach)?;
    let set = ShmSet::attach(&cfgs, &p).map_err(|e| Fault::Attach(e.to_string()))?;
    mapped().push((prefix, set));
    Ok(())
}

/// Remote function: drops the mappings of `names` under `prefix`; returns how many sets
/// were dropped.
pub(crate) fn unmap_shm((prefix, names): (String, Vec<String>)) -> usize {
    let dropped: Vec<ShmSet>;
    {
        let mut m = mapped();
        let (gone, keep): (Vec<_>, Vec<_>) =
            std::mem::take(&mut *m).into_iter().partition(|(p, set)| {
                *p == prefix && set.names().any(|n| names.iter().any(|x| x == n))
            });
        *m = keep;
        dropped = gone.into_iter().map(|(_, s)| s).collect();
    }
    dropped.len()
}

#[cfg(test)]
mod tests {
    use super::{ELEMS, WireCfg};
    use ptools_shm::ShmCfg;

    #[test]
    fn every_element_type_round_trips_on_the_wire() {
        for e in ELEMS {
            let cfg = ShmCfg::with_elem("a", e, [3, 4]).unwrap();
            let w = WireCfg::from_cfg(&cfg).unwrap();
            let bytes = postcard::to_allocvec(&w).unwrap();
            let back: WireCfg = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(back.to_cfg().unwrap(), cfg);
        }
        let bad = WireCfg {
            name: "a".into(),
            elem: 200,
            dims: vec![1],
        };
        assert!(bad.to_cfg().is_err());
    }

    #[test]
    fn shares_partition_every_byte() {
        for len in [0, 1, 7, 4096, 4097, 1 << 20] {
            for n in 1..=9 {
                let mut next = 0;
                for t in 0..n {
                    let (start, end) = super::share(len, t, n);
                    assert_eq!(start, next, "len {len}, task {t} of {n}");
                    assert!(end >= start);
                    next = end;
                }
                assert_eq!(next, len, "len {len}, {n} tasks");
            }
        }
    }

    #[test]
    fn conjured_handlers_behave_like_the_original() {
        fn twice(x: u32) -> u32 {
            x * 2
        }
        fn call<F: Fn(u32) -> u32 + Copy + 'static>(_: F, x: u32) -> u32 {
            super::conjure::<F>()(x)
        }
        assert_eq!(call(twice, 21), 42);
        assert_eq!(call(|x| x + 1, 1), 2);
    }
}
