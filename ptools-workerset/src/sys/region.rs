//! A shared-memory region for large arguments and results: a `memfd` sealed against
//! shrinking, kept mapped in both processes and reused across calls (see `zerocopy` in the
//! crate docs and `cluster/PROTOCOL.md`).
//!
//! Why a `memfd` and not a POSIX segment: it has no name, so it never appears in
//! `/dev/shm` and nothing can be left behind on any path (the kernel frees it with the last
//! descriptor or mapping, `SIGKILL` included). Why `F_SEAL_SHRINK | F_SEAL_SEAL`, set by the
//! master that creates it before any worker holds it: a mapping of a file that shrinks under
//! it faults with `SIGBUS` on access, so a worker that could `ftruncate` the region down
//! could kill its master; with the seal the size only grows, and every byte below a size
//! once seen by `fstat` stays backed. `F_SEAL_SEAL` keeps a worker from adding
//! `F_SEAL_GROW` or `F_SEAL_WRITE` (which would make the master's own growth or writes
//! fail).

use std::io;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::Arc;

use nix::fcntl::{FallocateFlags, FcntlArg, SealFlag, fallocate, fcntl};
use nix::sys::mman::{MRemapFlags, MapFlags, ProtFlags, mmap, mmap_anonymous, mremap, munmap};

/// Mappings grow in steps of this much (and at least double), so a run of growing
/// payloads remaps a few times only.
const STEP: usize = 2 << 20;

/// What a writer keeps of its region's pages however its payloads shrink (see
/// [`Region::settle`]).
const KEEP: usize = 4 << 20;
/// How many payloads in a row must use under a quarter of the pages a writer holds before
/// it gives the rest back.
const RELEASE_AFTER: u32 = 16;

/// A mapping of a region, `[ptr, ptr + len)`, unmapped when the last holder drops it: the
/// region holds its current one, and every [`SharedSlice`](crate::SharedSlice) that reads
/// bytes where they lie holds the one it reads, so a region that maps itself again (to
/// grow) or goes away leaves those views mapped.
#[derive(Debug)]
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a `Mapping` is an address range this process mapped and unmaps once, in `drop`;
// it makes no reference into the bytes itself, so moving or sharing it between threads
// moves or shares only the range.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`: `&Mapping` gives only the range's addresses.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range is the mapping `Region::remap` made (or `detach` replaced in
        // place), unmapped only here, when no holder is left.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

/// One region: its descriptor and its current mapping (`[0, len)`, shared, read-write).
/// `Send` and `Sync` as its parts are: the mapping's `Arc` carries the argument
/// ([`Mapping`]); what writes or remaps takes `&mut self`, and the `&self` readers hand
/// out raw pointers or (the unsafe `slice`) borrow under their caller's contract.
#[derive(Debug)]
pub(crate) struct Region {
    fd: OwnedFd,
    map: Option<Arc<Mapping>>,
    /// The writer's side: the end of the bytes written since pages were last given back
    /// (the file's pages below it may be allocated; none above).
    touched: usize,
    /// The writer's side: payloads in a row that used under a quarter of `touched`.
    slack: u32,
}

impl Region {
    /// A new empty region, sealed against shrinking (see the module docs).
    pub(crate) fn create() -> io::Result<Region> {
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_SEAL;
        let fd = super::sealed_memfd(c"ptools-zerocopy", 0, seals)?;
        check_sealed(&fd).map_err(io::Error::other)?;
        Ok(Region {
            fd,
            map: None,
            touched: 0,
            slack: 0,
        })
    }

    /// Takes the region descriptor `fd` that the master passed through the environment
    /// (a worker), once it is checked to be open and sealed against shrinking, and marks it
    /// close-on-exec. On error `fd` is left alone: it may belong to something else.
    pub(crate) fn adopt(fd: RawFd) -> Result<Region, String> {
        let fd = super::adopt_passed_fd(fd, check_sealed)?;
        Ok(Region {
            fd,
            map: None,
            touched: 0,
            slack: 0,
        })
    }

    /// The descriptor, to pass to a worker at its start.
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn size(&self) -> io::Result<usize> {
        let st = nix::sys::stat::fstat(self.fd.as_fd())?;
        usize::try_from(st.st_size).map_err(|_| io::Error::other("region: negative size"))
    }

    fn mapped(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len)
    }

    /// The current mapping as `(start, len)`; panics when there is none.
    fn range(&self) -> (NonNull<u8>, usize) {
        let m = self.map.as_ref().expect("region mapped");
        (m.ptr, m.len)
    }

    /// Maps `[0, len)` in place of the current mapping. The caller checked that the file
    /// holds at least `len` bytes (it never shrinks: sealed).
    fn remap(&mut self, len: usize) -> io::Result<()> {
        // Lets go of the current mapping: unmapped now, or when the last view of it goes.
        self.map = None;
        let Some(n) = NonZeroUsize::new(len) else {
            return Ok(());
        };
        // SAFETY: a new shared mapping of our own descriptor at an address the kernel
        // picks: it aliases no Rust object. The file is at least `len` bytes and cannot
        // shrink (F_SEAL_SHRINK, checked at creation or adoption), so no access below
        // `len` can fault with SIGBUS.
        let p = unsafe {
            mmap(
                None,
                n,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                self.fd.as_fd(),
                0,
            )
        }?;
        self.map = Some(Arc::new(Mapping { ptr: p.cast(), len }));
        Ok(())
    }

    /// Where in-place views of this region's current mapping may point, and what keeps
    /// that memory mapped while they live (see `codec::Home`).
    pub(crate) fn home(&self) -> Option<crate::codec::Home> {
        let m = self.map.as_ref()?;
        Some(crate::codec::Home::new(
            m.ptr.as_ptr().cast_const(),
            m.len,
            m.clone(),
        ))
    }

    /// The worker's side, after a call whose argument lay in this region at
    /// `[off, off + len)` and before its reply goes: when views of the argument outlive the
    /// call (a `SharedSlice` the function kept), the mapping they read is made private to
    /// this process, the argument's bytes as they are, so the master's next argument cannot
    /// change them; the region maps itself afresh for the next call. Views that nobody kept
    /// cost nothing here.
    ///
    /// A process that cannot make the copy (out of memory) cannot keep its promise to the
    /// kept views and exits (its master sees the worker die).
    pub(crate) fn keep_lent(&mut self, off: usize, len: usize) {
        let Some(m) = self.map.take_if(|m| Arc::strong_count(m) > 1) else {
            // Nobody else holds the mapping. Views dropped on other threads read it
            // before their release decrement of the count; this pairs with it, so those
            // reads come before the reply that lets the master write (as `Arc::drop`
            // pairs before freeing).
            std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
            return;
        };
        if let Err(e) = detach(&m, off, len) {
            eprintln!("ptools-workerset: worker could not keep a SharedSlice it holds: {e}");
            crate::sys::exit_now(1);
        }
    }

    /// The writer's side: makes the region (and its mapping) hold at least `len` bytes.
    pub(crate) fn ensure(&mut self, len: usize) -> io::Result<()> {
        if len <= self.mapped() {
            return Ok(());
        }
        let want = len
            .max(self.mapped().saturating_mul(2))
            .checked_next_multiple_of(STEP)
            .ok_or_else(|| io::Error::other("region: size overflow"))?;
        if self.size()? < want {
            let off = i64::try_from(want).map_err(|_| io::Error::other("region: too large"))?;
            nix::unistd::ftruncate(&self.fd, off)?;
        }
        self.remap(want)
    }

    /// The writer's side, once per payload while the region is its own (the peer reads
    /// nothing of it until told): `used` bytes from offset 0 hold the payload (0: it went on
    /// the socket). A region that once carried a large payload keeps its pages for the
    /// next, but after [`RELEASE_AFTER`] payloads in a row under a quarter of them, the
    /// pages past the larger of `used` and [`KEEP`] go back to the system (a hole punched
    /// in the file: the size, and so the seal's promise, stay). A steady run of large
    /// payloads is never touched; one huge call no longer pins its pages in both processes
    /// for the worker's life.
    pub(crate) fn settle(&mut self, used: usize) {
        self.touched = self.touched.max(used);
        if self.touched <= KEEP || used.saturating_mul(4) >= self.touched {
            self.slack = 0;
            return;
        }
        self.slack += 1;
        if self.slack < RELEASE_AFTER {
            return;
        }
        self.slack = 0;
        let from = used.max(KEEP).next_multiple_of(page_size());
        if from >= self.touched {
            return;
        }
        let (Ok(off), Ok(len)) = (i64::try_from(from), i64::try_from(self.touched - from)) else {
            return;
        };
        let how = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        // Best effort: a kernel that cannot punch holes in a memfd keeps the pages, as
        // before, and is asked again only after another run of small payloads.
        if fallocate(&self.fd, how, off, len).is_ok() {
            self.touched = from;
        }
    }

    /// Bytes the region's file holds in memory (its allocated blocks).
    #[cfg(test)]
    pub(crate) fn resident(&self) -> usize {
        let st = nix::sys::stat::fstat(self.fd.as_fd()).expect("fstat");
        st.st_blocks as usize * 512
    }

    /// The reader's side: checks that `[off, off + len)` lies inside the region as its
    /// writer grew it, and maps that far. `max` bounds `len` (the link's frame cap), so a
    /// forged length maps nothing large.
    pub(crate) fn cover(&mut self, off: u64, len: u64, max: usize) -> Result<(), String> {
        // Payloads take a region from 64 KiB on: an empty one is forged, and would find a
        // region that was never mapped with nothing to read it through.
        if len == 0 {
            return Err(format!("region reference ({off}, 0): an empty payload"));
        }
        let end = off
            .checked_add(len)
            .and_then(|e| usize::try_from(e).ok())
            .filter(|_| len as usize <= max)
            .ok_or_else(|| {
                format!("region reference ({off}, {len}) overflows or is over the cap")
            })?;
        if end <= self.mapped() {
            return Ok(());
        }
        let size = self.size().map_err(|e| format!("region: fstat: {e}"))?;
        if end > size {
            return Err(format!(
                "region reference ({off}, {len}) past its size {size}"
            ));
        }
        // Mapped no further than the bytes referenced (rounded): the peer's own growth of
        // the file decides nothing here.
        let to = end.next_multiple_of(STEP).min(size).max(end);
        self.remap(to).map_err(|e| format!("region: mmap: {e}"))
    }

    /// Writes `src` at `off` (the caller's region: the peer reads it only once told).
    /// `ensure(off + src.len())` must have succeeded.
    pub(crate) fn write(&mut self, off: usize, src: &[u8]) {
        let (p, l) = self.range();
        assert!(off.checked_add(src.len()).is_some_and(|e| e <= l));
        // SAFETY: `[off, off + len)` lies inside our mapping (asserted); the destination is
        // shared memory no Rust reference points into, so the copy aliases nothing. The peer
        // does not read it before the frame that references it is sent (the protocol); if
        // it did, it would read torn bytes, its own business.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), p.as_ptr().add(off), src.len()) };
        self.touched = self.touched.max(off + src.len());
    }

    /// Moves `[from, from + len)` to `to` inside the writer's own region (the bytes may
    /// overlap). `ensure` must cover both ranges.
    pub(crate) fn copy_within(&mut self, from: usize, to: usize, len: usize) {
        let (p, l) = self.range();
        assert!(from.checked_add(len).is_some_and(|e| e <= l));
        assert!(to.checked_add(len).is_some_and(|e| e <= l));
        // SAFETY: both ranges lie inside our mapping (asserted); `ptr::copy` allows
        // overlap, and no Rust reference points into the shared memory. As for `write`, the
        // peer does not read these bytes before the frame that references them is sent.
        unsafe { std::ptr::copy(p.as_ptr().add(from), p.as_ptr().add(to), len) };
        self.touched = self.touched.max(to + len);
    }

    /// `[off, off + len)` as a raw pointer, for a reader that copies out of the mapping
    /// piece by piece (`codec::decode_shared`). `cover(off, len, _)` must have succeeded;
    /// the pointer is valid for `len` bytes of reads while this region is neither remapped
    /// nor dropped (both take `&mut self`), whatever the peer writes meanwhile.
    pub(crate) fn shared(&self, off: usize, len: usize) -> *const u8 {
        let (p, l) = self.range();
        assert!(off.checked_add(len).is_some_and(|e| e <= l));
        p.as_ptr().wrapping_add(off).cast_const()
    }

    /// Appends `[off, off + len)` to `dst` (one copy into memory this process owns, which
    /// is what gets decoded). `cover(off, len, _)` must have succeeded.
    pub(crate) fn copy_out(&mut self, off: usize, len: usize, dst: &mut Vec<u8>) {
        let (p, l) = self.range();
        assert!(off.checked_add(len).is_some_and(|e| e <= l));
        dst.reserve(len);
        // SAFETY: the source lies inside our mapping (asserted), backed by the file (it
        // cannot shrink), so the read cannot fault; the destination is `dst`'s spare
        // capacity, just reserved. The peer process may write the source concurrently (it
        // is untrusted): the copy goes through raw pointers into bytes this process owns
        // and no `&[u8]` over the shared memory is ever made, so such a write can only
        // make the copied bytes wrong (any byte is a valid `u8`), which the decoder then
        // refuses or accepts like any other bytes; it cannot make this process misbehave.
        unsafe {
            std::ptr::copy_nonoverlapping(
                p.as_ptr().add(off),
                dst.as_mut_ptr().add(dst.len()),
                len,
            );
            dst.set_len(dst.len() + len);
        }
    }

    /// `[off, off + len)` borrowed, for a worker reading the argument its master wrote.
    ///
    /// # Safety
    ///
    /// Nothing may write those bytes while the slice lives: the master does not write its
    /// argument region again before the reply to the call that references it (the
    /// protocol), and a worker trusts its master (it runs the code the master names).
    /// `cover(off, len, _)` must have succeeded.
    pub(crate) unsafe fn slice(&self, off: usize, len: usize) -> &[u8] {
        let (p, l) = self.range();
        assert!(off.checked_add(len).is_some_and(|e| e <= l));
        // SAFETY: inside the mapping (asserted), backed (cannot shrink), and not written
        // while borrowed (the caller's contract).
        unsafe { std::slice::from_raw_parts(p.as_ptr().add(off), len) }
    }
}

/// Puts a private copy of `m` in place of the shared mapping, at the same addresses: a new
/// anonymous mapping takes a copy of `[off, off + len)` (the argument, where every view of
/// the call lies; the rest stays untouched zero pages, which cost no memory) and `mremap`
/// moves it over `m`'s range, which atomically replaces the shared pages (a thread reading
/// meanwhile sees the same bytes either way). `m` then unmaps the private copy when its
/// last holder goes.
fn detach(m: &Mapping, off: usize, len: usize) -> nix::Result<()> {
    assert!(off.checked_add(len).is_some_and(|e| e <= m.len));
    let n = NonZeroUsize::new(m.len).expect("mappings are never empty");
    // SAFETY: a new private anonymous mapping at an address the kernel picks: it aliases
    // nothing.
    let copy = unsafe {
        mmap_anonymous(
            None,
            n,
            ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            MapFlags::MAP_PRIVATE,
        )
    }?;
    // SAFETY: `[off, off + len)` lies inside both mappings of `m.len` bytes (asserted),
    // which are distinct (the copy is new); the source is read through raw pointers only
    // (the master does not write it while the reply to the call that lent it is not sent,
    // which is now), the destination is ours.
    unsafe {
        std::ptr::copy_nonoverlapping(
            m.ptr.as_ptr().add(off),
            copy.as_ptr().cast::<u8>().add(off),
            len,
        );
    }
    // SAFETY: moves our new private mapping onto `m`'s range, which `m` owns; the views
    // reading that range see the same bytes before and after (copied above). On failure
    // nothing moved: the copy is unmapped and `m` is untouched.
    let moved = unsafe {
        mremap(
            copy,
            m.len,
            m.len,
            MRemapFlags::MREMAP_MAYMOVE | MRemapFlags::MREMAP_FIXED,
            Some(m.ptr.cast()),
        )
    };
    if let Err(e) = moved {
        // SAFETY: the copy is ours, unmapped once.
        let _ = unsafe { munmap(copy, m.len) };
        return Err(e);
    }
    Ok(())
}

fn page_size() -> usize {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(4096)
}

/// Checks `F_SEAL_SHRINK` (see the module docs).
fn check_sealed(fd: &OwnedFd) -> Result<(), String> {
    let seals =
        fcntl(fd, FcntlArg::F_GET_SEALS).map_err(|e| format!("region: F_GET_SEALS: {e}"))?;
    if SealFlag::from_bits_truncate(seals).contains(SealFlag::F_SEAL_SHRINK) {
        Ok(())
    } else {
        Err("region is not sealed against shrinking".into())
    }
}
