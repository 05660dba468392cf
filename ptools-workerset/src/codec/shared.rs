//! [`SharedSlice`]: a slice of plain numbers that a remote call reads where it lies in a
//! local worker's shared-memory region, not copied into a `Vec` of its own.
//!
//! # Why a type of its own
//!
//! A `Vec<u8>` or `Vec<f64>` echoed through `remotecall_fetch` is copied four times (see
//! `cluster/PROTOCOL.md`, "Copies"): into the argument region, out of it into the worker's
//! new `Vec`, into the result region, out of it into the caller's new `Vec`. Two of those
//! copies exist only because a `Vec` must own heap memory of its process. A `SharedSlice`
//! received from a region is a view of the region's bytes instead: the worker reads its
//! argument where the master wrote it, and the master reads the result where the worker
//! wrote it, so the round trip copies each way once.
//!
//! # What keeps a view valid
//!
//! - **In the worker**, a view of the argument region is valid while the call runs: the
//!   master writes that region again only after the call's reply. A view the function
//!   keeps past the call (in a `static`, a thread-local, another thread) is found when the
//!   call returns (its mapping has another holder), and before the reply goes the worker
//!   puts a private copy of those pages in place of the shared ones, at the same
//!   addresses (`Region::keep_lent`): the kept view reads the same bytes for as long as it
//!   lives, and the region maps itself afresh.
//! - **In the master**, a view of the result region holds the result unacknowledged (the
//!   acknowledgement rides on the last view's drop, see `link::InRegion`), and the worker
//!   writes its result region only once the master has acknowledged every result left
//!   there: while the view lives, that worker's later large results go on the socket. A
//!   view also holds its mapping, so a region that maps itself again, or a worker that
//!   dies, leaves it readable.
//!
//! # Trust
//!
//! The codec otherwise never lends the master a `&[u8]` over memory a worker can write
//! (`codec::decode_shared` copies every byte once). A master-side view is the one place
//! where the master relies on a worker keeping the protocol: it does not write a result
//! it has not been told was read. What the master does not rely on: the length and the
//! place of the view come from the master's own checked copy of the reply (the region's
//! size, the frame cap, the element size, the alignment), so a worker that broke the
//! protocol could change the numbers a view reads, never make it read outside the
//! mapping; and any bit pattern is a valid number. A worker runs the master's own
//! executable under its user, so the bytes under a view change only through `unsafe` code
//! of that program gone wrong: no safe API of the worker reaches its result region.
//! Callers that must not rely on that use `Vec<T>`, which the master copies out of the
//! region byte by byte as before, never reading it through a reference.

use std::any::Any;
use std::fmt;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::Arc;

use serde::de::{self, Deserialize, DeserializeOwned, Deserializer};
use serde::ser::{Serialize, Serializer};

use super::de::{Reader, Shared, Slice};
use super::error::{Error, Result};
use super::ser::Writer;

mod sealed {
    /// Implemented for the primitive numbers only (see [`super::Number`]).
    pub trait Sealed {}
}

/// A primitive number: the element types of a [`SharedSlice`] (`u8` to `u128`, `i8` to
/// `i128`, `f32`, `f64`, and on 64-bit targets `usize` and `isize`).
///
/// Sealed: implemented for those types only. Each has no padding, every bit pattern is a
/// valid value, and on little-endian targets its bytes in memory are its `to_le_bytes`,
/// which is what the wire format holds: that is what lets a view read them in place.
pub trait Number:
    sealed::Sealed + Copy + Send + Sync + Serialize + DeserializeOwned + fmt::Debug + 'static
{
}

macro_rules! number {
    ($($(#[$cfg:meta])* $t:ty),* $(,)?) => {
        $(
            $(#[$cfg])*
            impl sealed::Sealed for $t {}
            $(#[$cfg])*
            impl Number for $t {}
        )*
    };
}

with_numbers!(number);

/// Memory a reader may lend views of: `[lo, lo + len)`, kept mapped and unchanged while
/// any clone of `keep` lives (a region's mapping; in the master, with the result's
/// acknowledgement). Lent to a [`Reader`] by whoever decodes from a region.
#[derive(Clone)]
pub(crate) struct Home {
    lo: usize,
    len: usize,
    keep: Arc<dyn Any + Send + Sync>,
}

impl Home {
    /// `keep` must keep `[lo, lo + len)` mapped while it lives, and the memory's writer
    /// must not write it while a view could read it (see the module docs).
    #[cfg_attr(
        all(any(ptools_stub, not(target_os = "linux")), not(test)),
        expect(dead_code, reason = "the stub backend has no region to lend")
    )]
    pub(crate) fn new(lo: *const u8, len: usize, keep: Arc<dyn Any + Send + Sync>) -> Home {
        Home {
            lo: lo as usize,
            len,
            keep,
        }
    }

    /// The same memory, kept together with `also` (the master's acknowledgement of a
    /// result, sent when the last view goes).
    pub(crate) fn with(self, also: Arc<dyn Any + Send + Sync>) -> Home {
        Home {
            keep: Arc::new((self.keep, also)),
            ..self
        }
    }

    /// True when `[p, p + bytes)` lies inside this memory.
    fn holds(&self, p: *const u8, bytes: usize) -> bool {
        let off = (p as usize).wrapping_sub(self.lo);
        off <= self.len && bytes <= self.len - off
    }
}

impl fmt::Debug for Home {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Home")
            .field("lo", &self.lo)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// A slice of numbers that a remote call to a local worker reads where it lies in shared
/// memory: the argument where the master wrote it, the result where the worker wrote it.
///
/// Use it in place of a `Vec<T>` in a remote function's argument or result (alone, or in
/// a tuple or struct). It dereferences to `&[T]` and is made from a `Vec<T>` or a slice.
/// A large one (its numbers 64 KiB or more) that travels to or from a local worker arrives
/// as a view of that worker's shared-memory region ([`SharedSlice::is_in_place`]); a small
/// one (even beside a large field), one sent over TCP, or one decoded by another serde
/// format arrives as its own `Vec`. Either way it reads the same numbers. With serde
/// formats other than ptools' own, it is a sequence, like `Vec<T>`.
///
/// ```
/// ptools_workerset::enable_test_support!(); // in `main`: `ptools_workerset::init();`
/// use ptools_workerset::SharedSlice;
///
/// /// Reads 4 MiB of samples where the master wrote them; returns their squares, read
/// /// by the master where this worker wrote them.
/// fn squares(v: SharedSlice<f64>) -> SharedSlice<f64> {
///     v.iter().map(|x| x * x).collect::<Vec<_>>().into()
/// }
///
/// # fn main() -> Result<(), ptools_workerset::Error> {
/// let cluster = ptools_workerset::Cluster::new();
/// let id = cluster.addprocs(1)?[0];
/// let samples: Vec<f64> = (0..1 << 19).map(|i| i as f64).collect();
/// let sq = cluster.remotecall_fetch(id, squares, SharedSlice::from(samples))?;
/// assert!(sq.is_in_place());
/// assert_eq!(sq[3], 9.0);
/// # Ok(())
/// # }
/// ```
///
/// # Holding a view
///
/// In the master, a view holds its worker's result region: while it lives, that worker's
/// later large results travel on its socket (copied, slower). Drop views, or take
/// [`SharedSlice::into_vec`], when done. A view stays readable whatever happens to the
/// worker, its death included. In the worker, a view of an argument that the function keeps
/// past the call is given a private copy of its pages when the call returns, so it keeps
/// reading what it read.
///
/// The master reads a view in the worker's region relying on the worker not to write a
/// result it was not told was read: the crate docs ("Wire and handshake") say what that
/// trust covers, and why it is the trust level of a ptools-shm array.
pub struct SharedSlice<T: Number> {
    inner: Inner<T>,
}

enum Inner<T> {
    Owned(Vec<T>),
    /// `len` elements at `ptr`, inside memory `_keep` keeps mapped and unchanged.
    Lent {
        ptr: NonNull<T>,
        len: usize,
        _keep: Arc<dyn Any + Send + Sync>,
    },
}

// SAFETY: `T: Number` is `Send + Sync`; a lent view reads memory that its `_keep` (itself
// `Send + Sync`) keeps mapped and that nobody writes while it lives (the module docs), so
// it may be read from any thread, and moved to any.
unsafe impl<T: Number> Send for SharedSlice<T> {}
// SAFETY: as for `Send`: `&SharedSlice` gives only `&[T]` reads.
unsafe impl<T: Number> Sync for SharedSlice<T> {}

impl<T: Number> SharedSlice<T> {
    /// An empty slice.
    pub const fn new() -> SharedSlice<T> {
        SharedSlice {
            inner: Inner::Owned(Vec::new()),
        }
    }

    /// True when this slice reads its numbers where they lie in a worker's shared-memory
    /// region; false when it owns them in a `Vec` of its own.
    pub fn is_in_place(&self) -> bool {
        matches!(self.inner, Inner::Lent { .. })
    }

    /// The numbers as a `Vec` of this process: moved out when it owns one, copied once
    /// from the region (which it then lets go) when it is a view.
    pub fn into_vec(self) -> Vec<T> {
        match self.inner {
            Inner::Owned(v) => v,
            Inner::Lent { .. } => self.to_vec(),
        }
    }

    /// A view of `len` elements at `ptr`, inside `home`.
    fn lent(ptr: *const u8, len: usize, home: &Home) -> SharedSlice<T> {
        SharedSlice {
            inner: Inner::Lent {
                ptr: NonNull::new(ptr.cast_mut().cast::<T>()).expect("inside a mapping"),
                len,
                _keep: home.keep.clone(),
            },
        }
    }
}

impl<T: Number> Deref for SharedSlice<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match &self.inner {
            Inner::Owned(v) => v,
            // SAFETY: `ptr` is aligned for `T` and `[ptr, ptr + len)` lies inside memory
            // that `_keep` keeps mapped and that is not written while a view lives (both
            // checked or promised when the view was made: `Reader::shared_slice`, the
            // module docs); any bytes are a valid `T` (`Number`).
            Inner::Lent { ptr, len, .. } => unsafe {
                std::slice::from_raw_parts(ptr.as_ptr(), *len)
            },
        }
    }
}

impl<T: Number> AsRef<[T]> for SharedSlice<T> {
    fn as_ref(&self) -> &[T] {
        self
    }
}

impl<T: Number> Default for SharedSlice<T> {
    fn default() -> Self {
        SharedSlice::new()
    }
}

impl<T: Number> Clone for SharedSlice<T> {
    /// A view's clone reads the same memory (and holds it as long); an owned slice's
    /// clone owns a copy.
    fn clone(&self) -> Self {
        let inner = match &self.inner {
            Inner::Owned(v) => Inner::Owned(v.clone()),
            Inner::Lent { ptr, len, _keep } => Inner::Lent {
                ptr: *ptr,
                len: *len,
                _keep: _keep.clone(),
            },
        };
        SharedSlice { inner }
    }
}

impl<T: Number> fmt::Debug for SharedSlice<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: Number + PartialEq> PartialEq for SharedSlice<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Number + Eq> Eq for SharedSlice<T> {}

impl<T: Number> From<SharedSlice<T>> for Vec<T> {
    /// [`SharedSlice::into_vec`].
    fn from(s: SharedSlice<T>) -> Vec<T> {
        s.into_vec()
    }
}

impl<T: Number> From<Vec<T>> for SharedSlice<T> {
    fn from(v: Vec<T>) -> Self {
        SharedSlice {
            inner: Inner::Owned(v),
        }
    }
}

impl<T: Number> From<&[T]> for SharedSlice<T> {
    fn from(s: &[T]) -> Self {
        SharedSlice::from(s.to_vec())
    }
}

impl<T: Number> FromIterator<T> for SharedSlice<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        SharedSlice::from(iter.into_iter().collect::<Vec<T>>())
    }
}

/// `d` as ptools' own reader over input `I`, when it is one.
fn reader_of<'a, 'de, D: Deserializer<'de>, I: super::de::Input<'de>>(
    d: D,
) -> std::result::Result<&'a mut Reader<'de, I>, D> {
    if typeid::of::<D>() != typeid::of::<&mut Reader<'de, I>>() {
        return Err(d);
    }
    let d = ManuallyDrop::new(d);
    // SAFETY: type ids are equal up to lifetimes, so `D` is `&'x mut Reader<'de, I>` for
    // some `'x` (the only `Deserializer<'de>` impl of a `&mut Reader` is for `'de`); the
    // reference is moved out of `d` (never dropped: a reference has no drop) and used by
    // the caller only within this call's borrow of it.
    Ok(unsafe { std::ptr::read((&*d as *const D).cast::<&'a mut Reader<'de, I>>()) })
}

impl<'de, T: Number> Deserialize<'de> for SharedSlice<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let d = match reader_of::<D, Slice<'de>>(d) {
            Ok(r) => return r.shared_slice().map_err(de::Error::custom),
            Err(d) => d,
        };
        let d = match reader_of::<D, Shared>(d) {
            Ok(r) => return r.shared_slice().map_err(de::Error::custom),
            Err(d) => d,
        };
        Vec::<T>::deserialize(d).map(SharedSlice::from)
    }
}

impl<T: Number> Serialize for SharedSlice<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        if typeid::of::<S>() == typeid::of::<&mut Writer<'_, '_>>() {
            let s = ManuallyDrop::new(s);
            // SAFETY: type ids are equal up to lifetimes: `S` is `&'x mut Writer<'o, 'r>`
            // for some lifetimes, moved out of `s` (a reference: nothing to drop) and used
            // only within this call. `S::Ok` is `()`, the type of `Writer`'s `Ok`.
            let w: &mut Writer<'_, '_> =
                unsafe { std::ptr::read((&*s as *const S).cast::<&mut Writer<'_, '_>>()) };
            return match w.shared_slice::<T>(self) {
                // SAFETY: `S` is `&mut Writer`, whose `Ok` is `()`: a zero-sized value
                // of the same type.
                Ok(()) => Ok(unsafe { std::mem::transmute_copy::<(), S::Ok>(&()) }),
                Err(e) => Err(serde::ser::Error::custom(e)),
            };
        }
        (**self).serialize(s)
    }
}

/// The fewest bytes of numbers read in place: the size from which payloads take the
/// regions at all. A smaller slice is copied even inside a large payload: a view holds its
/// worker's result region (or, kept by a worker's function, makes it copy the argument's
/// pages), which a few numbers beside a large field are not worth.
const VIEW_MIN: usize = crate::wire::ZC_THRESHOLD;

/// The largest alignment of a [`Number`] (`u128` on some targets): what the padding before
/// a slice's numbers stays under.
const ALIGN_MAX: usize = 16;

impl Writer<'_, '_> {
    /// A [`SharedSlice`]: its length, a padding byte `p`, `p` zero bytes, the numbers. The
    /// padding puts the numbers at an offset of the payload aligned for `T`, so that a
    /// payload laid in a region from its offset 0 (page-aligned) is read in place.
    pub(super) fn shared_slice<T: Number>(&mut self, s: &[T]) -> Result<()> {
        // A level, as any sequence.
        self.room(1)?;
        self.len(s.len());
        let align = std::mem::align_of::<T>();
        let pad = (align - (self.out.payload_len() + 1) % align) % align;
        self.out.push(pad as u8);
        self.out.extend(&[0u8; ALIGN_MAX][..pad]);
        #[cfg(target_endian = "little")]
        {
            // SAFETY: `T: Number` has no padding, so all `size_of_val(s)` bytes of the
            // slice are initialized; `u8` has alignment 1; borrowed as long as `s`.
            let bytes = unsafe {
                std::slice::from_raw_parts(s.as_ptr().cast::<u8>(), std::mem::size_of_val(s))
            };
            self.out.extend(bytes);
        }
        #[cfg(not(target_endian = "little"))]
        for x in s {
            x.serialize(&mut *self)?;
        }
        Ok(())
    }
}

impl<'de, I: super::de::Input<'de>> Reader<'de, I> {
    /// A [`SharedSlice`] as [`Writer::shared_slice`] wrote it: a view when its numbers take
    /// [`VIEW_MIN`] bytes or more and lie inside the memory this reader was lent ([`Home`])
    /// at an address aligned for `T` (little-endian targets), else a `Vec` of their own.
    /// The length is checked against the bytes left before anything is allocated or lent.
    pub(super) fn shared_slice<T: Number>(&mut self) -> Result<SharedSlice<T>> {
        let n = self.len()?;
        self.nested(|r| {
            let at = r.at();
            let pad = usize::from(r.byte()?);
            if pad >= ALIGN_MAX {
                return Err(Error::Padding {
                    at,
                    byte: pad as u8,
                });
            }
            r.skip(pad)?;
            let elem = std::mem::size_of::<T>();
            let Some(bytes) = n.checked_mul(elem).filter(|&b| b <= r.left()) else {
                return Err(Error::Length {
                    at,
                    len: n,
                    elem,
                    left: r.left(),
                });
            };
            #[cfg(target_endian = "little")]
            if bytes >= VIEW_MIN
                && let Some(home) = r.home()
            {
                let p = r.here();
                if home.holds(p, bytes) && (p as usize).is_multiple_of(std::mem::align_of::<T>()) {
                    let view = SharedSlice::lent(p, n, &home);
                    r.skip(bytes)?;
                    return Ok(view);
                }
            }
            r.numbers::<T>(n).map(SharedSlice::from)
        })
    }
}
