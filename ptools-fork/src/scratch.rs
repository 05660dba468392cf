//! The parent's bookkeeping of a run, in memory its children do not share.
//!
//! `fork` write-protects the parent's private pages, and the first write to each of them
//! afterwards copies it (a copy-on-write fault, some microseconds in a VM), again after
//! every fork. The parent's state for each child (its process handle and frame reader, the
//! poll list) is written between forks, so on the heap it cost the parent a few faults per
//! child. On Linux it lives instead in an anonymous mapping marked `MADV_WIPEONFORK`
//! (madvise(2), Linux 4.14): a child gets zeros there instead of a share of the parent's
//! pages, so `fork` leaves those pages writable and the parent writes them without a fault.
//!
//! One such mapping ([`KEPT_BYTES`] of address space; only the pages touched take memory)
//! is made at the first run and kept for the next ones, so a run makes no system call for
//! it. A run that needs more, or that finds it in use (a concurrent run, under
//! `allow_threads`), maps one of its own for the run. A child inherits the kept mapping as
//! zeros, which mark it as not set up in that process: a child that runs pfork itself sets
//! it up again. Where the advice is refused (Linux before 4.14) or does not exist (macOS),
//! the vectors are ordinary heap vectors, as before.

use std::marker::PhantomData;
use std::mem::{ManuallyDrop, align_of, size_of};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};

use crate::sys;

/// Size of the kept mapping: room for the state of about 900 children alive at once.
const KEPT_BYTES: usize = 256 << 10;

/// Bytes at the start of every mapping before the data: the [`Head`], padded so that the
/// data is aligned for any type pfork keeps there.
const HEAD_BYTES: usize = 64;

/// The kept mapping's state word. Zero in a child, where the mapping was wiped at `fork`.
#[repr(C)]
struct Head {
    state: AtomicU32,
}

/// Not set up in this process: fresh, or wiped by `fork`.
const UNSET: u32 = 0;
/// Set up, and free for the next run.
const FREE: u32 = 1;
/// In use by a run.
const BUSY: u32 = 2;

/// The kept mapping, once made; never unmapped, so a pointer read here stays valid (in a
/// child too, where the mapping is still there, wiped).
static KEPT: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());

/// Memory for one run: the kept mapping, or one of the run's own; empty where there are
/// no such mappings.
pub(crate) struct Scratch {
    map: Option<Map>,
}

struct Map {
    base: NonNull<u8>,
    len: usize,
    kept: bool,
}

impl Scratch {
    /// Memory for `bytes` of vectors (see [`ScratchVec::bytes_for`]).
    pub(crate) fn new(bytes: usize) -> Scratch {
        let map = bytes.checked_add(HEAD_BYTES).and_then(|need| {
            if need <= KEPT_BYTES
                && let Some(map) = take_kept()
            {
                return Some(map);
            }
            if REFUSED.load(Ordering::Relaxed) {
                return None;
            }
            let len = need.checked_next_multiple_of(sys::page_size())?;
            let base = map_or_note_refusal(len.max(KEPT_BYTES))?;
            Some(Map {
                base,
                len: len.max(KEPT_BYTES),
                kept: false,
            })
        });
        Scratch { map }
    }

    /// Hands out vectors from this memory, one after the other.
    pub(crate) fn carve(&mut self) -> Carver<'_> {
        let (next, end) = match &self.map {
            // SAFETY: the mapping is `len > HEAD_BYTES` bytes long, so both offsets stay
            // inside it (or one past its end).
            Some(m) => unsafe { (m.base.as_ptr().add(HEAD_BYTES), m.base.as_ptr().add(m.len)) },
            None => (std::ptr::null_mut(), std::ptr::null_mut()),
        };
        Carver {
            next,
            end,
            _memory: PhantomData,
        }
    }

    /// Whether the vectors are in memory children do not share (for tests).
    #[cfg(test)]
    fn is_mapped(&self) -> bool {
        self.map.is_some()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let Some(m) = self.map.take() else { return };
        if m.kept {
            // SAFETY: the kept mapping starts with its Head and is never unmapped.
            let head = unsafe { m.base.cast::<Head>().as_ref() };
            head.state.store(FREE, Ordering::Release);
        } else {
            // SAFETY: this run's own mapping, made by `map_wipe_on_fork` with this length;
            // every vector carved from it borrowed `self` and is gone.
            unsafe { sys::unmap(m.base, m.len) };
        }
    }
}

/// Set once the kernel refused a mapping (no `MADV_WIPEONFORK`: Linux before 4.14, some
/// sandboxes; always outside Linux): later runs go to the heap at once, with no system call.
static REFUSED: AtomicBool = AtomicBool::new(false);

fn map_or_note_refusal(len: usize) -> Option<NonNull<u8>> {
    let m = sys::map_wipe_on_fork(len);
    if m.is_none() {
        REFUSED.store(true, Ordering::Relaxed);
    }
    m
}

/// Takes the kept mapping for a run: makes it at the first run, sets it up again in a
/// child; `None` when it is in use, or cannot be made.
fn take_kept() -> Option<Map> {
    let kept = |base| Map {
        base,
        len: KEPT_BYTES,
        kept: true,
    };
    if let Some(base) = NonNull::new(KEPT.load(Ordering::Acquire)) {
        // SAFETY: the kept mapping starts with its Head, is never unmapped, and is still
        // mapped in a child (wiped: its state reads UNSET there).
        let head = unsafe { base.cast::<Head>().as_ref() };
        let taken = head
            .state
            .compare_exchange(FREE, BUSY, Ordering::Acquire, Ordering::Relaxed)
            .or_else(|_| {
                head.state
                    .compare_exchange(UNSET, BUSY, Ordering::Acquire, Ordering::Relaxed)
            });
        return taken.is_ok().then(|| kept(base));
    }
    if REFUSED.load(Ordering::Relaxed) {
        return None;
    }
    let base = map_or_note_refusal(KEPT_BYTES)?;
    // SAFETY: a fresh mapping of KEPT_BYTES, zeroed, ours alone until published.
    let head = unsafe { base.cast::<Head>().as_ref() };
    head.state.store(BUSY, Ordering::Relaxed);
    match KEPT.compare_exchange(
        std::ptr::null_mut(),
        base.as_ptr(),
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => Some(kept(base)),
        // Another thread kept one first: this one serves this run only.
        Err(_) => Some(Map {
            base,
            len: KEPT_BYTES,
            kept: false,
        }),
    }
}

/// Hands out disjoint vectors from a [`Scratch`], each for as long as the scratch is
/// borrowed; a vector that does not fit (or any, without a mapping) goes on the heap.
pub(crate) struct Carver<'s> {
    next: *mut u8,
    end: *mut u8,
    _memory: PhantomData<&'s mut [u8]>,
}

impl<'s> Carver<'s> {
    /// An empty vector with room for `cap` elements.
    pub(crate) fn vec<T>(&mut self, cap: usize) -> ScratchVec<'s, T> {
        if let Some(ptr) = self.room::<T>(cap) {
            return ScratchVec {
                ptr,
                len: 0,
                cap,
                heap_cap: None,
                _owns: PhantomData,
                _memory: PhantomData,
            };
        }
        let mut v = ManuallyDrop::new(Vec::<T>::with_capacity(cap));
        ScratchVec {
            ptr: NonNull::new(v.as_mut_ptr()).unwrap_or(NonNull::dangling()),
            len: 0,
            cap: v.capacity(),
            heap_cap: Some(v.capacity()),
            _owns: PhantomData,
            _memory: PhantomData,
        }
    }

    /// The next `cap` elements' worth of the mapping, aligned for `T`, if they fit.
    fn room<T>(&mut self, cap: usize) -> Option<NonNull<T>> {
        if self.next.is_null() || size_of::<T>() == 0 {
            return None;
        }
        let pad = self.next.align_offset(align_of::<T>());
        let bytes = cap.checked_mul(size_of::<T>())?.checked_add(pad)?;
        let left = self.end.addr() - self.next.addr();
        if bytes > left {
            return None;
        }
        // SAFETY: `pad + cap * size_of::<T>()` bytes from `next` lie inside the mapping
        // (checked just above).
        let start = unsafe { self.next.add(pad) };
        // SAFETY: as above; `next` ends at most at `end`.
        self.next = unsafe { self.next.add(bytes) };
        NonNull::new(start.cast::<T>())
    }
}

/// A vector of fixed capacity in a [`Scratch`] (or on the heap): what pfork's parent needs
/// of `Vec`, no more. Elements are dropped with it.
pub(crate) struct ScratchVec<'s, T> {
    ptr: NonNull<T>,
    len: usize,
    cap: usize,
    /// The capacity of the heap buffer this vector owns, or `None` in a scratch mapping.
    heap_cap: Option<usize>,
    _owns: PhantomData<T>,
    _memory: PhantomData<&'s mut [u8]>,
}

impl<'s, T> ScratchVec<'s, T> {
    /// Bytes of scratch memory a vector of `cap` elements may take, alignment included.
    pub(crate) fn bytes_for(cap: usize) -> usize {
        cap.saturating_mul(size_of::<T>())
            .saturating_add(align_of::<T>())
    }

    /// Appends `value`.
    ///
    /// # Panics
    ///
    /// When the vector is full: its capacity is fixed, and the caller sized it.
    pub(crate) fn push(&mut self, value: T) {
        assert!(self.len < self.cap, "scratch vector full ({})", self.cap);
        // SAFETY: slot `len < cap` is inside the buffer and holds no value.
        unsafe { self.ptr.as_ptr().add(self.len).write(value) };
        self.len += 1;
    }

    /// Removes element `k` and returns it, moving the last element into its place.
    ///
    /// # Panics
    ///
    /// When `k` is out of bounds.
    pub(crate) fn swap_remove(&mut self, k: usize) -> T {
        assert!(k < self.len, "swap_remove({k}) of {} elements", self.len);
        self.len -= 1;
        // SAFETY: `k` and `len` (the old last slot) are initialised slots; the value at `k`
        // is moved out and the last one moved over it (or is it, when `k` is last), after
        // which slot `len` counts as empty.
        unsafe {
            let base = self.ptr.as_ptr();
            let value = base.add(k).read();
            if k != self.len {
                base.add(k).write(base.add(self.len).read());
            }
            value
        }
    }

    /// Drops every element.
    pub(crate) fn clear(&mut self) {
        let len = std::mem::replace(&mut self.len, 0);
        // SAFETY: the first `len` slots were initialised; `len` is 0 from here, so a panic in
        // a destructor leaks the rest instead of dropping them twice.
        unsafe { std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), len).drop_in_place() };
    }

    /// This vector's buffer, emptied, for elements of type `U` of the same size and
    /// alignment: the poll list borrows the children's descriptors for one pass, then gives
    /// the buffer back for the next.
    ///
    /// # Panics
    ///
    /// When `U` differs from `T` in size or alignment.
    pub(crate) fn recycle<U>(mut self) -> ScratchVec<'s, U> {
        assert!(size_of::<T>() == size_of::<U>() && align_of::<T>() == align_of::<U>());
        self.clear();
        let this = ManuallyDrop::new(self);
        ScratchVec {
            ptr: this.ptr.cast(),
            len: 0,
            cap: this.cap,
            heap_cap: this.heap_cap,
            _owns: PhantomData,
            _memory: PhantomData,
        }
    }
}

impl<T> Deref for ScratchVec<'_, T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        // SAFETY: the first `len` slots are initialised and owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T> DerefMut for ScratchVec<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: the first `len` slots are initialised and owned by `self`, borrowed
        // mutably here.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<'a, T> IntoIterator for &'a ScratchVec<'_, T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a, T> IntoIterator for &'a mut ScratchVec<'_, T> {
    type Item = &'a mut T;
    type IntoIter = std::slice::IterMut<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl<T> Drop for ScratchVec<'_, T> {
    fn drop(&mut self) {
        self.clear();
        if let Some(cap) = self.heap_cap {
            // SAFETY: the buffer of a `Vec<T>` with this capacity, taken apart in
            // `Carver::vec` (or in `recycle`, for a `T` of the same layout); it is empty.
            drop(unsafe { Vec::from_raw_parts(self.ptr.as_ptr(), 0, cap) });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;

    /// Counts its drops through a shared counter.
    struct Token(#[expect(dead_code, reason = "held for its drop")] Rc<()>);

    fn exercise(scratch: &mut Scratch) {
        let counter = Rc::new(());
        let mut c = scratch.carve();
        let mut a: ScratchVec<'_, Token> = c.vec(4);
        let mut b: ScratchVec<'_, (u64, u8)> = c.vec(3);
        for k in 0..4 {
            a.push(Token(counter.clone()));
            if k < 3 {
                b.push((k, k as u8));
            }
        }
        assert_eq!(Rc::strong_count(&counter), 5);
        assert_eq!(a.len(), 4);
        assert_eq!(&b[..], &[(0, 0), (1, 1), (2, 2)]);
        drop(a.swap_remove(1));
        assert_eq!(Rc::strong_count(&counter), 4);
        assert_eq!(b.swap_remove(0), (0, 0));
        assert_eq!(&b[..], &[(2, 2), (1, 1)]);
        assert_eq!(b.swap_remove(1), (1, 1));
        b.iter_mut().for_each(|e| e.0 = 9);
        assert_eq!(&b[..], &[(9, 2)]);
        // The same buffer, for another type of the same layout.
        let mut b2: ScratchVec<'_, (i64, i8)> = b.recycle();
        assert!(b2.is_empty());
        b2.push((-1, -1));
        assert_eq!(&b2[..], &[(-1, -1)]);
        drop(a);
        assert_eq!(Rc::strong_count(&counter), 1);
    }

    #[test]
    fn vectors_in_a_scratch_behave_like_vectors() {
        let mut scratch = Scratch::new(1 << 10);
        // MADV_WIPEONFORK is Linux's (4.14 and later; a kernel or sandbox may refuse it, and
        // then the heap serves, as remembered).
        if !cfg!(target_os = "linux") {
            assert!(!scratch.is_mapped());
        }
        assert_eq!(scratch.is_mapped(), !REFUSED.load(Ordering::Relaxed));
        exercise(&mut scratch);
        drop(scratch);
        // The kept mapping is free again (or this run had its own), and serves again.
        exercise(&mut Scratch::new(1 << 10));
    }

    #[test]
    fn vectors_on_the_heap_behave_like_vectors() {
        exercise(&mut Scratch { map: None });
    }

    #[test]
    fn a_large_run_gets_a_mapping_of_its_own_and_overflow_goes_to_the_heap() {
        let mut big = Scratch::new(KEPT_BYTES * 2);
        let mut c = big.carve();
        let mut v: ScratchVec<'_, u64> = c.vec(KEPT_BYTES / 4);
        for k in 0..KEPT_BYTES as u64 / 4 {
            v.push(k);
        }
        assert_eq!(v[12345], 12345);
        // More than is left: on the heap, still a vector.
        let mut h: ScratchVec<'_, u64> = c.vec(KEPT_BYTES);
        assert!(h.heap_cap.is_some());
        h.push(7);
        assert_eq!(&h[..], &[7]);
    }

    #[test]
    #[should_panic(expected = "scratch vector full")]
    fn pushing_past_the_capacity_panics() {
        let mut scratch = Scratch::new(64);
        let mut c = scratch.carve();
        let mut v: ScratchVec<'_, u8> = c.vec(1);
        v.push(1);
        v.push(2);
    }
}
