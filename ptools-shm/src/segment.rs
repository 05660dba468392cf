//! One mapped segment, untyped: creation, attachment, takeover of stale segments, and
//! the unlink on drop. The typed handles in `array.rs` wrap it.
//!
//! # The protocol between processes
//!
//! - A creator opens the name with `O_EXCL`, takes an `flock` on the new object at once,
//!   and holds it until the header is published. Everyone else who looks at the object
//!   tries that lock without waiting: held means "a creator is at work".
//! - The header's owner fields (pid, start time) are written before the data pages are
//!   reserved, the ready flag last, so an object whose creator died part-way is still
//!   recognisably ours and stale.
//! - A taker (a creator that found the name taken, or `remove_stale_shm`) holds the stale
//!   object's lock, re-checks that it is stale, and that the name still refers to that
//!   very object (device and inode), before unlinking it. The loser of two racing takers
//!   finds the name gone or pointing to the winner's new segment, and leaves it alone.
//! - An attacher that finds the object unfinished (size 0, or no complete magic and
//!   version in its header) tries the lock too: held, or free but the object blank and
//!   younger than [`BLANK_GRACE`] (a creator between `shm_open` and `flock`), means a
//!   creator at work, reported as `NotReady` at once, never as `Truncated` or `Foreign`.
//! - An object with our name but a header that was never written at all (all zero) is a
//!   creator that died between `shm_open` and its first write. It is taken over only when
//!   its lock is free and it is older than [`BLANK_GRACE`]; objects with any other content
//!   are never touched.
//!
//! # One mapping per segment per process
//!
//! Each segment carries a random generation id. A process-wide registry refuses to map a
//! generation twice, so safe code cannot hold `&mut [T]` and `&[T]` over the same memory
//! through two handles (the compiler would assume they do not overlap).

use std::os::fd::OwnedFd;

use parking_lot::Mutex;

use crate::cfg::ShmCfg;
use crate::error::{Result, ShmError};
use crate::header::{self, HEADER_LEN, Header, HeaderError};
use crate::{ElemType, sys};

/// How old a blank object (see the module docs) must be before it counts as abandoned, in
/// seconds. A live creator leaves the blank state within microseconds.
pub(crate) const BLANK_GRACE: i64 = 2;

/// How to create a segment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CreateMode {
    pub(crate) reserve: bool,
    pub(crate) populate: bool,
}

/// A live mapping (memmap2's, `MAP_SHARED` from offset 0), unmapped on drop.
#[derive(Debug)]
struct Mapping {
    map: memmap2::MmapRaw,
}

impl Mapping {
    fn new(fd: &OwnedFd, len: usize, writable: bool, name: &str) -> Result<Mapping> {
        let map = sys::map(fd, len, writable).map_err(|e| ShmError::os("mmap", name, e))?;
        Ok(Mapping { map })
    }

    /// The first byte of the mapping, page-aligned (the mapping starts at offset 0).
    fn base(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    /// The header bytes, read atomically. The mapping must be at least HEADER_LEN long.
    fn header(&self) -> [u8; HEADER_LEN] {
        debug_assert!(self.len() >= HEADER_LEN);
        // SAFETY: the mapping is live, page-aligned and at least HEADER_LEN bytes (every
        // caller maps at least that much).
        unsafe { header::read_mapped(self.base()) }
    }
}

/// Generations mapped in this process (see the module docs), sorted. A vector keeps its
/// buffer when it empties, so creating and dropping one segment at a time allocates
/// nothing here (a `BTreeSet` allocates a node for its first element and frees it with the
/// last).
static MAPPED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

/// Records `generation` as mapped; false if it was already.
fn mapped_insert(generation: u64) -> bool {
    let mut m = MAPPED.lock();
    match m.binary_search(&generation) {
        Ok(_) => false,
        Err(at) => {
            m.insert(at, generation);
            true
        }
    }
}

/// Forgets `generation` (no longer mapped).
fn mapped_remove(generation: u64) {
    let mut m = MAPPED.lock();
    if let Ok(at) = m.binary_search(&generation) {
        m.remove(at);
    }
}

/// A mapped segment: header plus data.
#[derive(Debug)]
pub(crate) struct Segment {
    map: Mapping,
    /// The name given to `shm_open`.
    os_name: String,
    /// The array's name in its configuration.
    name: String,
    elem: ElemType,
    dims: Box<[usize]>,
    len: usize,
    /// This segment's entry in `MAPPED`.
    generation: u64,
    /// Set on the creator's handle. Drop unlinks only when it runs in the creating pid and
    /// the name still refers to the object created.
    owner: Option<Owner>,
    /// The creator's entry in the signal handler's table (see `ptools_sys::signals`), while
    /// the segment is to be unlinked on drop. A field, so it drops after `drop` unlinked.
    on_signal: Option<ptools_sys::signals::SegmentEntry>,
}

#[derive(Clone, Copy, Debug)]
struct Owner {
    pid: u32,
    dev: u64,
    ino: u64,
    unlink_on_drop: bool,
}

// Send and Sync come from the fields: memmap2's `MmapRaw` is both (it is a raw region,
// valid from any thread); the typed wrappers decide what data access is allowed.
const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<Segment>();
};

/// Unlinks a freshly created object unless defused: the error paths of `create` leave
/// nothing behind. It holds the object's entry for the signal handler until then, which
/// leaves the table only after the unlink (fields drop after `drop`).
struct UnlinkGuard<'a>(Option<&'a str>, Option<ptools_sys::signals::SegmentEntry>);

impl Drop for UnlinkGuard<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.0 {
            // Best effort on an error path: we created the object a moment ago and still
            // hold its lock, so nobody else can have replaced it; a failure can only mean
            // the name is already gone.
            let _ = sys::unlink(name);
        }
    }
}

impl Segment {
    pub(crate) fn create(cfg: &ShmCfg, os_name: String, mode: CreateMode) -> Result<Segment> {
        let (map, generation, owner, on_signal) = {
            let os_name = os_name.as_str();
            let fd = Segment::open_new(os_name)?;
            let mut guard = UnlinkGuard(Some(os_name), None);
            sys::lock(&fd).map_err(|e| ShmError::os("flock", os_name, e))?;
            let st = sys::stat(&fd).map_err(|e| ShmError::os("fstat", os_name, e))?;
            // Covered by SIGINT/SIGTERM cleanup from here on (a few atomics).
            guard.1 = ptools_sys::signals::register_segment(os_name, st.dev, st.ino);
            let (map, generation, owner, via_fd) = Segment::init(cfg, os_name, &fd, mode, &st)?;
            if via_fd {
                // The header went through the descriptor; so does its ready flag, after a
                // fence: the kernel's copies of the header were this thread's stores, and
                // an attacher's acquire load of the flag must see them all.
                std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
                if let Err(e) =
                    sys::write_at(&fd, &header::READY.to_ne_bytes(), header::READY_AT as u64)
                {
                    // Never published (an attacher that mapped it saw it not ready): the
                    // guard unlinks the name.
                    mapped_remove(generation);
                    return Err(ShmError::os("pwrite", os_name, e));
                }
            } else {
                // SAFETY: the mapping is live, writable, page-aligned and longer than
                // HEADER_LEN; `init` wrote the rest of the header.
                unsafe { header::publish(map.base()) };
            }
            guard.0 = None;
            // Closing the descriptor releases the creator's lock: the segment is published.
            drop(fd);
            (map, generation, owner, guard.1.take())
        };
        let mut seg = Segment::from_cfg(map, cfg, os_name, generation, Some(owner));
        seg.on_signal = on_signal;
        Ok(seg)
    }

    /// Opens `os_name` as a new object, taking the name over if a dead owner left it.
    fn open_new(os_name: &str) -> Result<OwnedFd> {
        Ok(match sys::create_exclusive(os_name) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                if !take_over_stale(os_name)? {
                    return Err(already_exists(os_name));
                }
                sys::create_exclusive(os_name).map_err(|e| match e.raw_os_error() {
                    // Someone else took the freed name first.
                    Some(libc::EEXIST) => already_exists(os_name),
                    _ => ShmError::os("shm_open", os_name, e),
                })?
            }
            Err(e) => return Err(ShmError::os("shm_open", os_name, e)),
        })
    }

    /// Sizes the new object, maps it, writes its header but for the ready flag, and
    /// reserves what `mode` asks for. Returns the mapping, the generation (registered in
    /// `MAPPED`), the owner record, and whether the header went through the descriptor
    /// (then so must the ready flag).
    fn init(
        cfg: &ShmCfg,
        os_name: &str,
        fd: &OwnedFd,
        mode: CreateMode,
        st: &sys::Stat,
    ) -> Result<(Mapping, u64, Owner, bool)> {
        let os = |op, e| ShmError::os(op, os_name, e);
        let total = HEADER_LEN as u64 + cfg.data_bytes();
        // ShmCfg guarantees the total fits isize.
        let map_len = total as usize;
        let out_of_space = |e: std::io::Error| {
            if e.raw_os_error() == Some(libc::ENOSPC) {
                ShmError::OutOfSpace {
                    name: os_name.to_owned(),
                    bytes: total,
                }
            } else {
                os("posix_fallocate", e)
            }
        };
        sys::set_len(fd, total).map_err(|e| os("ftruncate", e))?;
        let (pid, start) = own_identity();
        let generation = new_generation(pid);
        let hdr = Header {
            elem: cfg.elem(),
            dims: cfg.dims().to_vec(),
            owner_pid: pid,
            owner_start: start,
            generation,
        };
        // The header's page is allocated before the header is in it, in every mode: writing
        // it must not SIGBUS. On Linux one `pwrite` of the header does both, without a page
        // fault or a page-table entry (`ENOSPC` on a full tmpfs).
        let via_fd = match sys::write_at(fd, &hdr.encode(), 0) {
            Ok(()) => true,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => {
                return Err(ShmError::OutOfSpace {
                    name: os_name.to_owned(),
                    bytes: total,
                });
            }
            // macOS: shared memory objects take no `write`.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => false,
            Err(e) => return Err(os("pwrite", e)),
        };
        let map = Mapping::new(fd, map_len, true, os_name)?;
        if !via_fd {
            // Populating the header's page for writing allocates and maps it in one call,
            // without a page fault; where the kernel lacks that (macOS), the page is
            // reserved with posix_fallocate and faults in when written.
            match sys::populate_write_start(&map.map, HEADER_LEN) {
                Ok(()) => {}
                // A write would have raised SIGBUS: on tmpfs, no space for the page.
                Err(e) if e.raw_os_error() == Some(libc::EFAULT) => {
                    return Err(ShmError::OutOfSpace {
                        name: os_name.to_owned(),
                        bytes: total,
                    });
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    sys::reserve(fd, 0, HEADER_LEN as u64).map_err(out_of_space)?;
                }
                Err(e) => return Err(os("madvise", e)),
            }
            // SAFETY: the mapping is live, writable, page-aligned and longer than
            // HEADER_LEN.
            unsafe { hdr.write_into(map.base()) };
        }
        // Owner fields are in place: if we die while reserving, the segment is ours and
        // stale, so `remove_stale_shm` can clean it.
        if mode.reserve && cfg.data_bytes() > 0 {
            sys::reserve(fd, HEADER_LEN as u64, cfg.data_bytes()).map_err(out_of_space)?;
        }
        if mode.populate {
            populate(&map);
        }
        // A fresh random generation cannot be mapped here already.
        mapped_insert(generation);
        let owner = Owner {
            pid,
            dev: st.dev,
            ino: st.ino,
            unlink_on_drop: true,
        };
        Ok((map, generation, owner, via_fd))
    }

    pub(crate) fn attach(cfg: &ShmCfg, os_name: &str, populate_pages: bool) -> Result<Segment> {
        let os = |op, e| ShmError::os(op, os_name, e);
        let fd = sys::open_existing(os_name, true).map_err(|e| os("shm_open", e))?;
        let st = sys::stat(&fd).map_err(|e| os("fstat", e))?;
        let expected = HEADER_LEN as u64 + cfg.data_bytes();
        let truncated = || ShmError::Truncated {
            name: os_name.to_owned(),
            size: st.size,
            expected,
        };
        // A creator sizes its object in one `ftruncate`, so only size 0 can be its work in
        // progress; any other size too small for a header is not ours.
        if st.size == 0 {
            return Err(unfinished(&fd, os_name, truncated()));
        }
        if st.size < HEADER_LEN as u64 {
            return Err(truncated());
        }
        let map_len = usize::try_from(st.size).map_err(|_| truncated())?;
        let map = Mapping::new(&fd, map_len, true, os_name)?;
        let hdr = match Header::decode(&map.header()) {
            Ok(hdr) => hdr,
            Err(HeaderError::NotReady) => {
                return Err(ShmError::NotReady {
                    name: os_name.to_owned(),
                });
            }
            // No magic and version (yet): a blank header, or one a creator is writing.
            Err(HeaderError::Foreign) => return Err(unfinished(&fd, os_name, foreign(os_name))),
            // A ready header is complete (the ready flag is read first, with acquire
            // ordering), so a contradiction in it is no creator's work in progress.
            Err(HeaderError::Short | HeaderError::Corrupt) => return Err(foreign(os_name)),
        };
        if hdr.elem != cfg.elem() {
            return Err(ShmError::TypeMismatch {
                name: os_name.to_owned(),
                expected: cfg.elem(),
                found: hdr.elem,
            });
        }
        if hdr.dims != cfg.dims() {
            return Err(ShmError::DimsMismatch {
                name: os_name.to_owned(),
                expected: cfg.dims().to_vec(),
                found: hdr.dims,
            });
        }
        if st.size < expected {
            return Err(truncated());
        }
        if !mapped_insert(hdr.generation) {
            return Err(ShmError::AlreadyMapped {
                name: os_name.to_owned(),
            });
        }
        if populate_pages {
            populate(&map);
        }
        Ok(Segment::from_cfg(
            map,
            cfg,
            os_name.to_owned(),
            hdr.generation,
            None,
        ))
    }

    /// A segment described by `cfg` over `map`, whose generation is registered already.
    fn from_cfg(
        map: Mapping,
        cfg: &ShmCfg,
        os_name: String,
        generation: u64,
        owner: Option<Owner>,
    ) -> Segment {
        Segment {
            map,
            os_name,
            name: cfg.name().to_owned(),
            elem: cfg.elem(),
            dims: cfg.dims().into(),
            len: cfg.len(),
            generation,
            owner,
            on_signal: None,
        }
    }

    pub(crate) fn data_ptr(&self) -> *mut u8 {
        // SAFETY: the mapping is at least HEADER_LEN bytes long (checked at create and
        // attach), so the offset stays inside it.
        unsafe { self.map.base().add(HEADER_LEN) }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn elem(&self) -> ElemType {
        self.elem
    }

    pub(crate) fn dims(&self) -> &[usize] {
        &self.dims
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn os_name(&self) -> &str {
        &self.os_name
    }

    pub(crate) fn is_creator(&self) -> bool {
        self.owner.is_some()
    }

    pub(crate) fn set_keep(&mut self, keep: bool) {
        if let Some(o) = self.owner.as_mut() {
            o.unlink_on_drop = !keep;
            // A kept segment outlives the process on purpose, signal or not.
            if keep {
                self.on_signal = None;
            } else if self.on_signal.is_none() && o.pid == std::process::id() {
                self.on_signal = ptools_sys::signals::register_segment(&self.os_name, o.dev, o.ino);
            }
        }
    }

    pub(crate) fn keeps(&self) -> bool {
        self.owner.is_none_or(|o| !o.unlink_on_drop)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        mapped_remove(self.generation);
        if let Some(o) = self.owner
            && o.unlink_on_drop
            && o.pid == std::process::id()
        {
            // Unlink only the very object we created: after an explicit `unlink_shm`
            // somebody may have created a new segment under the same name. On Linux the
            // check takes no descriptor, so it works when descriptors have run out. A
            // failure means the name is already gone, which is the state we want.
            if let Ok(st) = sys::stat_name(&self.os_name)
                && (st.dev, st.ino) == (o.dev, o.ino)
            {
                let _ = sys::unlink(&self.os_name);
            }
        }
        // The mapping unmaps when the fields drop, after this.
    }
}

/// Pre-faults every page of the mapping for writing, so that later accesses take no page
/// fault: one `madvise(MADV_POPULATE_WRITE)` (Linux 5.14, madvise(2)) instead of a fault
/// per 4 KiB page. On older kernels, and elsewhere, it does nothing and pages fault on
/// first touch as usual. Measured in `benches/shm_cycle.rs` (`fill/*`).
fn populate(map: &Mapping) {
    let _ = sys::populate_write(&map.map);
}

fn foreign(os_name: &str) -> ShmError {
    ShmError::Foreign {
        name: os_name.to_owned(),
    }
}

/// The error for the object open as `fd` that looked unfinished on attach (size 0, or a
/// header without our magic and version): [`ShmError::NotReady`] when a creator may still
/// be at work on it, `err` (what it looked like) otherwise.
///
/// A creator is at work when it holds the object's lock (from just after `shm_open` until
/// the header is published). Before it has the lock, its object is blank (size 0 or a
/// header of zeros) and younger than [`BLANK_GRACE`], as in the takeover rule. Testing
/// the lock takes it when it is free, which delays such a creator's `flock` by the few
/// calls below; closing `fd` (when the caller returns the error) releases it. This runs
/// only on attach's error path: creation and a successful attach do not pay for it.
fn unfinished(fd: &OwnedFd, os_name: &str, err: ShmError) -> ShmError {
    let not_ready = || ShmError::NotReady {
        name: os_name.to_owned(),
    };
    match sys::try_lock(fd) {
        Ok(true) => {}
        // A creator between `flock` and publishing (or a taker about to unlink a stale
        // object, which was not attachable either way).
        Ok(false) => return not_ready(),
        Err(_) => return err,
    }
    // We hold the lock: no creator is past `shm_open` and short of publishing, except one
    // still waiting for the lock. Look again, at what is there now.
    let Ok(st) = sys::stat(fd) else {
        return err;
    };
    let young = || now_secs() - st.ctime < BLANK_GRACE;
    let Some(raw) = header_bytes(fd, st.size) else {
        // Size 0: blank, or unmappable (which `err` reports well enough).
        return if st.size == 0 && young() {
            not_ready()
        } else {
            err
        };
    };
    if st.size < HEADER_LEN as u64 {
        return err;
    }
    match Header::decode(&raw) {
        // Published since we looked, or our header with its ready flag still clear: as
        // attach reports the latter, not ready.
        Ok(_) | Err(HeaderError::NotReady) => not_ready(),
        Err(_) if raw.iter().all(|&b| b == 0) && young() => not_ready(),
        Err(_) => err,
    }
}

/// This process's pid and start time. Recomputed when the pid changes, so a forked child
/// records itself, not its parent, as the owner of what it creates.
pub(crate) fn own_identity() -> (u32, u64) {
    static CACHE: Mutex<(u32, u64)> = Mutex::new((0, 0));
    let pid = std::process::id();
    let mut c = CACHE.lock();
    if c.0 != pid {
        *c = (pid, sys::process_start_time(pid).unwrap_or(0));
    }
    *c
}

/// A random 64-bit id, never the same twice in practice (std's randomly keyed hasher over
/// the pid, the time and a counter).
fn new_generation(pid: u32) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(pid);
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

/// What an existing object under one of our names is.
#[derive(Debug)]
pub(crate) enum Found {
    /// A ptools header with these owner fields (published or not).
    Ours { pid: u32, start: u64 },
    /// Nothing ever written: size 0, or a header area of zeros.
    Blank,
    /// Anything else.
    Foreign,
}

/// The header area of the object open as `fd` (of size `size`), read atomically; `None`
/// for an empty object or one that cannot be mapped. A mapping of one header's length
/// works for smaller objects too: the rest of their single page reads as zeros.
pub(crate) fn header_bytes(fd: &OwnedFd, size: u64) -> Option<[u8; HEADER_LEN]> {
    if size == 0 {
        return None;
    }
    Mapping::new(fd, HEADER_LEN, false, "")
        .ok()
        .map(|m| m.header())
}

/// Looks at the object open as `fd` (of size `size`).
pub(crate) fn inspect_object(fd: &OwnedFd, size: u64) -> Found {
    if size == 0 {
        return Found::Blank;
    }
    let Some(raw) = header_bytes(fd, size) else {
        return Found::Foreign;
    };
    match Header::decode_owner(&raw) {
        Some((pid, start)) => Found::Ours { pid, start },
        None if raw.iter().all(|&b| b == 0) => Found::Blank,
        None => Found::Foreign,
    }
}

/// Whether the object open as `fd` is abandoned: our header with a dead owner, or blank
/// and old. Call with the object's lock held.
fn abandoned(fd: &OwnedFd, st: &sys::Stat) -> bool {
    match inspect_object(fd, st.size) {
        Found::Ours { pid, start } => !sys::process_alive(pid, start),
        Found::Blank => now_secs() - st.ctime >= BLANK_GRACE,
        Found::Foreign => false,
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn already_exists(os_name: &str) -> ShmError {
    let owner_pid = sys::open_existing(os_name, false).ok().and_then(|fd| {
        let st = sys::stat(&fd).ok()?;
        match inspect_object(&fd, st.size) {
            Found::Ours { pid, .. } => Some(pid),
            _ => None,
        }
    });
    ShmError::AlreadyExists {
        name: os_name.to_owned(),
        owner_pid,
    }
}

/// If `os_name` is abandoned (see [`abandoned`]), unlinks it and returns true; false when
/// it is in use, being created, or not ours.
pub(crate) fn take_over_stale(os_name: &str) -> Result<bool> {
    let fd = match sys::open_existing(os_name, false) {
        Ok(fd) => fd,
        // Gone in the meantime: the name is free.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(true),
        Err(e) => return Err(ShmError::os("shm_open", os_name, e)),
    };
    remove_if_abandoned(os_name, &fd)
}

/// Unlinks `os_name` if the object open as `fd` is abandoned and the name still refers to
/// it, holding the object's lock throughout.
pub(crate) fn remove_if_abandoned(os_name: &str, fd: &OwnedFd) -> Result<bool> {
    let os = |op, e| ShmError::os(op, os_name, e);
    if !sys::try_lock(fd).map_err(|e| os("flock", e))? {
        return Ok(false); // a creator at work, or another taker
    }
    let ours = sys::stat(fd).map_err(|e| os("fstat", e))?;
    if !abandoned(fd, &ours) {
        return Ok(false);
    }
    match sys::stat_name(os_name) {
        Ok(now) if (now.dev, now.ino) == (ours.dev, ours.ino) => {}
        Ok(_) => return Ok(false),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(true),
        Err(e) => return Err(os("stat", e)),
    }
    match sys::unlink(os_name) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(true),
        Err(e) => Err(os("shm_unlink", e)),
    }
}
