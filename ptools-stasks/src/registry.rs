//! The worker side: a registry of server tasks keyed by group id, the remote functions
//! that register and drop them, and the bridge that runs a user handler in its task.
//!
//! Everything here runs inside a worker, called through `ptools-workerset` remote calls.

use std::collections::HashMap;
use std::marker::PhantomData;

use parking_lot::{Mutex, MutexGuard};
use ptools_shm::{ElemType, Prefix, ShmBuilder, ShmCfg, ShmElem, ShmSet};
use ptools_workerset::CodeOffset;
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
    /// The handler's offset does not lie in this executable's code (never made by a
    /// master running this build).
    ForeignHandler,
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
    GROUPS.lock()
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

/// A handler call on the wire: the group, the handler as a place in the executable's
/// code, and its argument.
///
/// The fields are private and [`Call::new`] takes the handler as a
/// `fn(&mut TaskContext, A) -> R`, so every `Call<A, R>` this crate makes names a function
/// of exactly that type. The worker decodes one only from its master's bytes (the same
/// trust the worker loop gives the master's function offsets).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Call<A, R> {
    group: u64,
    handler: CodeOffset,
    arg: A,
    #[serde(skip)]
    result: PhantomData<fn() -> R>,
}

impl<A, R> Call<A, R> {
    /// The call of `handler` on `arg` in the task of `group`.
    ///
    /// # Errors
    ///
    /// [`ptools_workerset::Error::ForeignFunction`] when `handler` does not lie in the
    /// executable's own code (a worker could not find it).
    pub(crate) fn new(
        group: u64,
        handler: fn(&mut TaskContext, A) -> R,
        arg: A,
    ) -> ptools_workerset::Result<Call<A, R>> {
        Ok(Call {
            group,
            handler: CodeOffset::of(handler as usize)?,
            arg,
            result: PhantomData,
        })
    }
}

/// Remote function: runs the call's handler on its argument in the task of its group.
///
/// The handler travels as a plain function pointer, never as a type to re-create: only a
/// `fn` item or a closure that captures nothing coerces to one, so a closure that captures
/// a zero-sized token cannot be run in a worker that never held the token.
pub(crate) fn run<A, R>(call: Call<A, R>) -> Result<R, Fault> {
    let Call {
        group,
        handler,
        arg,
        result: _,
    } = call;
    let addr = handler.addr().ok_or(Fault::ForeignHandler)?;
    // SAFETY: `Call`s are made only by `Call::new` in the master, from a
    // `fn(&mut TaskContext, A) -> R` for exactly this `A` and `R` (the master sends
    // `run::<A, R>` with it), as an offset into the executable's code; the handshake proved
    // that this worker runs the same executable, so the offset names the same function
    // here, and `addr` was checked to lie in this image's code. Fn pointers are
    // address-sized.
    let f = unsafe { std::mem::transmute::<usize, fn(&mut TaskContext, A) -> R>(addr) };
    let mut c = checkout(group).ok_or(Fault::NotRegistered)?;
    let ctx = c
        .ctx
        .as_deref_mut()
        .expect("a checkout holds its context until dropped");
    Ok(f(ctx, arg))
}

/// The arrays mapped by [`pmap_shm_create`](crate::pmap_shm_create) in this process:
/// (prefix, set) pairs, searched by prefix and array name.
static MAPPED: Mutex<Vec<(String, ShmSet)>> = Mutex::new(Vec::new());

pub(crate) fn mapped() -> MutexGuard<'static, Vec<(String, ShmSet)>> {
    MAPPED.lock()
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
    fn calls_carry_their_handler() {
        fn twice(_: &mut super::TaskContext, x: u32) -> u32 {
            x * 2
        }
        let call = super::Call::new(7, twice, 21).unwrap();
        let bytes = postcard::to_allocvec(&call).unwrap();
        let back: super::Call<u32, u32> = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.group, 7);
        assert_eq!(back.arg, 21);
        assert_eq!(
            back.handler.addr(),
            Some(twice as fn(&mut super::TaskContext, u32) -> u32 as usize)
        );
        // No task of group 7 here: the handler is found, the task is not.
        assert!(matches!(super::run(back), Err(super::Fault::NotRegistered)));
    }
}
