//! One mapped segment, untyped: creation, attachment, takeover of stale segments, and
//! the unlink on drop. The typed handles in `array.rs` wrap it.

use std::os::fd::OwnedFd;
use std::ptr::NonNull;

use crate::cfg::ShmCfg;
use crate::error::{Result, ShmError};
use crate::header::{self, HEADER_LEN, Header, HeaderError};
use crate::{ElemType, sys};

/// How to create a segment.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CreateMode {
    pub(crate) reserve: bool,
    pub(crate) populate: bool,
}

/// A mapped segment: header plus data.
#[derive(Debug)]
pub(crate) struct Segment {
    base: NonNull<u8>,
    map_len: usize,
    /// The name given to `shm_open`.
    os_name: String,
    /// The array's name in its configuration.
    name: String,
    elem: ElemType,
    dims: Box<[usize]>,
    len: usize,
    /// Set on the creator's handle: the object's identity and the creating pid. Drop
    /// unlinks only when it runs in that pid and the name still refers to that object.
    owner: Option<Owner>,
}

#[derive(Clone, Copy, Debug)]
struct Owner {
    pid: u32,
    dev: u64,
    ino: u64,
    unlink_on_drop: bool,
}

// SAFETY: a Segment owns its mapping, which is valid from any thread; it holds no
// thread-bound state. The typed wrappers decide what data access is allowed.
unsafe impl Send for Segment {}
// SAFETY: shared references to a Segment give read access to its fields and a raw base
// pointer only; the typed wrappers mediate data access.
unsafe impl Sync for Segment {}

/// Unlinks a freshly created object unless defused: the error paths of `create` leave
/// nothing behind.
struct UnlinkGuard<'a>(Option<&'a str>);

impl Drop for UnlinkGuard<'_> {
    fn drop(&mut self) {
        if let Some(name) = self.0 {
            // Best effort on an error path: the object was created by us a moment ago;
            // failing to unlink it can only mean someone else already did.
            let _ = sys::unlink(name);
        }
    }
}

impl Segment {
    pub(crate) fn create(cfg: &ShmCfg, os_name: &str, mode: CreateMode) -> Result<Segment> {
        let fd = match sys::create_exclusive(os_name) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                if take_over_stale(os_name)? {
                    sys::create_exclusive(os_name)
                        .map_err(|e| ShmError::os("shm_open", os_name, e))?
                } else {
                    return Err(ShmError::AlreadyExists {
                        name: os_name.to_owned(),
                        owner_pid: owner_of(os_name),
                    });
                }
            }
            Err(e) => return Err(ShmError::os("shm_open", os_name, e)),
        };
        let mut guard = UnlinkGuard(Some(os_name));
        let seg = Segment::init(cfg, os_name, &fd, mode)?;
        guard.0 = None;
        Ok(seg)
    }

    fn init(cfg: &ShmCfg, os_name: &str, fd: &OwnedFd, mode: CreateMode) -> Result<Segment> {
        let os = |op, e| ShmError::os(op, os_name, e);
        let total = HEADER_LEN as u64 + cfg.data_bytes();
        let map_len = usize::try_from(total).map_err(|_| ShmError::InvalidDims {
            dims: cfg.dims().to_vec(),
            reason: "the byte size overflows",
        })?;
        let out_of_space = |op| {
            move |e: std::io::Error| {
                if e.raw_os_error() == Some(libc::ENOSPC) {
                    ShmError::OutOfSpace {
                        name: os_name.to_owned(),
                        bytes: total,
                    }
                } else {
                    os(op, e)
                }
            }
        };
        sys::set_len(fd, total).map_err(|e| os("ftruncate", e))?;
        let st = sys::stat(fd).map_err(|e| os("fstat", e))?;
        let pid = std::process::id();
        let hdr = Header {
            elem: cfg.elem(),
            dims: cfg.dims().to_vec(),
            owner_pid: pid,
            owner_start: own_start_time(),
        };
        // The header goes in through the descriptor, not the mapping: that allocates its
        // page with an ENOSPC on a full file system (never a SIGBUS), and spares this
        // process a page fault. Its ready flag is still clear.
        sys::write_at(fd, &hdr.encode(), 0).map_err(out_of_space("pwrite"))?;
        // Owner fields are in place: if we die while reserving, the segment is ours and
        // stale, so `remove_stale_shm` can clean it.
        if mode.reserve && cfg.data_bytes() > 0 {
            sys::reserve(fd, HEADER_LEN as u64, cfg.data_bytes())
                .map_err(out_of_space("posix_fallocate"))?;
        }
        let base = sys::map(fd, map_len, true, false).map_err(|e| os("mmap", e))?;
        let seg = Segment {
            base,
            map_len,
            os_name: os_name.to_owned(),
            name: cfg.name().to_owned(),
            elem: cfg.elem(),
            dims: cfg.dims().into(),
            len: cfg.len(),
            owner: Some(Owner {
                pid,
                dev: st.dev,
                ino: st.ino,
                // Set once the segment is complete; the caller's guard unlinks before.
                unlink_on_drop: false,
            }),
        };
        if mode.populate {
            populate(base, map_len);
        }
        // Publish last. A separate write, after the one above has completed, so a reader
        // that sees the flag sees the whole header; a reader checks for the full READY
        // value, so a torn write of the flag can only read as "not ready".
        sys::write_at(fd, &header::READY.to_ne_bytes(), header::READY_AT as u64)
            .map_err(|e| os("pwrite", e))?;
        let mut seg = seg;
        if let Some(o) = seg.owner.as_mut() {
            o.unlink_on_drop = true;
        }
        Ok(seg)
    }

    pub(crate) fn attach(cfg: &ShmCfg, os_name: &str, populate_pages: bool) -> Result<Segment> {
        let os = |op, e| ShmError::os(op, os_name, e);
        let fd = sys::open_existing(os_name, true).map_err(|e| os("shm_open", e))?;
        let st = sys::stat(&fd).map_err(|e| os("fstat", e))?;
        let expected = HEADER_LEN as u64 + cfg.data_bytes();
        if st.size < HEADER_LEN as u64 {
            return Err(ShmError::Truncated {
                name: os_name.to_owned(),
                size: st.size,
                expected,
            });
        }
        let map_len = usize::try_from(st.size).map_err(|_| ShmError::Truncated {
            name: os_name.to_owned(),
            size: st.size,
            expected,
        })?;
        let base = sys::map(&fd, map_len, true, false).map_err(|e| os("mmap", e))?;
        // Unmaps on every error below.
        let seg = Segment {
            base,
            map_len,
            os_name: os_name.to_owned(),
            name: cfg.name().to_owned(),
            elem: cfg.elem(),
            dims: cfg.dims().into(),
            len: cfg.len(),
            owner: None,
        };
        let hdr = read_header(base, map_len, os_name)?;
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
            return Err(ShmError::Truncated {
                name: os_name.to_owned(),
                size: st.size,
                expected,
            });
        }
        if populate_pages {
            populate(base, map_len);
        }
        Ok(seg)
    }

    pub(crate) fn data_ptr(&self) -> *mut u8 {
        // SAFETY: the mapping is at least HEADER_LEN bytes long (checked at create and
        // attach), so the offset stays inside it.
        unsafe { self.base.as_ptr().add(HEADER_LEN) }
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
        }
    }

    pub(crate) fn keeps(&self) -> bool {
        self.owner.is_none_or(|o| !o.unlink_on_drop)
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // SAFETY: `base`/`map_len` are exactly our live mapping, and the Segment is the
        // only owner: every view borrows it, so none outlives this drop.
        let r = unsafe { sys::unmap(self.base, self.map_len) };
        // munmap fails only for arguments that were never a mapping: a bug, not a runtime
        // condition, so it is checked in debug builds only.
        debug_assert!(r.is_ok(), "munmap failed: {r:?}");
        if let Some(o) = self.owner
            && o.unlink_on_drop
            && o.pid == std::process::id()
        {
            // Unlink only the very object we created: after an explicit `unlink_shm`
            // somebody may have created a new segment under the same name. A failure
            // here means the name is already gone, which is the state we want.
            if let Ok(fd) = sys::open_existing(&self.os_name, false)
                && let Ok(st) = sys::stat(&fd)
                && st.dev == o.dev
                && st.ino == o.ino
            {
                let _ = sys::unlink(&self.os_name);
            }
        }
    }
}

/// Pre-faults every page of the mapping for writing, so that later accesses take no page
/// fault: one `madvise(MADV_POPULATE_WRITE)` (Linux 5.14, madvise(2)) instead of a fault
/// per 4 KiB page. On older kernels, and elsewhere, it does nothing and pages fault on
/// first touch as usual. Measured in `benches/shm_cycle.rs` (`fill/*`).
fn populate(base: NonNull<u8>, len: usize) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: `base`/`len` describe our live mapping; MADV_POPULATE_WRITE only faults
        // pages in (it never changes their contents). Old kernels answer EINVAL, which is
        // harmless: the pages then fault on first touch.
        let _ = unsafe { libc::madvise(base.as_ptr().cast(), len, libc::MADV_POPULATE_WRITE) };
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (base, len);
}

/// Reads and checks the header of a mapping.
fn read_header(base: NonNull<u8>, map_len: usize, os_name: &str) -> Result<Header> {
    debug_assert!(map_len >= HEADER_LEN);
    // SAFETY: the mapping holds at least HEADER_LEN bytes (checked by the caller).
    if !unsafe { header::is_published(base.as_ptr()) } {
        let mut raw = [0u8; HEADER_LEN];
        // SAFETY: as above; copying bytes another process may be writing yields some
        // bytes, any of which are valid u8, and we only compare them.
        unsafe { std::ptr::copy_nonoverlapping(base.as_ptr(), raw.as_mut_ptr(), HEADER_LEN) };
        return Err(match Header::decode_owner(&raw) {
            Some(_) => ShmError::NotReady {
                name: os_name.to_owned(),
            },
            None => ShmError::Foreign {
                name: os_name.to_owned(),
            },
        });
    }
    let mut raw = [0u8; HEADER_LEN];
    // SAFETY: as above; the acquire load of the ready flag made the creator's header
    // writes visible, and nobody writes a header after publishing it.
    unsafe { std::ptr::copy_nonoverlapping(base.as_ptr(), raw.as_mut_ptr(), HEADER_LEN) };
    let hdr = Header::decode(&raw).map_err(|e| match e {
        HeaderError::NotReady => ShmError::NotReady {
            name: os_name.to_owned(),
        },
        HeaderError::Short | HeaderError::Foreign | HeaderError::Corrupt => ShmError::Foreign {
            name: os_name.to_owned(),
        },
    })?;
    let need = HEADER_LEN as u64 + hdr.data_bytes();
    if (map_len as u64) < need {
        return Err(ShmError::Truncated {
            name: os_name.to_owned(),
            size: map_len as u64,
            expected: need,
        });
    }
    Ok(hdr)
}

/// This process's start time, read once.
pub(crate) fn own_start_time() -> u64 {
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *START.get_or_init(|| sys::process_start_time(std::process::id()).unwrap_or(0))
}

/// Reads the owner fields of a named object, if it is ours: `(pid, start time)`.
pub(crate) fn read_owner(fd: &OwnedFd) -> Option<(u32, u64)> {
    let st = sys::stat(fd).ok()?;
    if st.size < HEADER_LEN as u64 {
        return None;
    }
    let base = sys::map(fd, HEADER_LEN, false, false).ok()?;
    let mut raw = [0u8; HEADER_LEN];
    // SAFETY: a fresh read-only mapping of HEADER_LEN bytes (the object is at least that
    // long); we copy bytes out and unmap right after.
    unsafe {
        std::ptr::copy_nonoverlapping(base.as_ptr(), raw.as_mut_ptr(), HEADER_LEN);
        let _ = sys::unmap(base, HEADER_LEN);
    }
    Header::decode_owner(&raw)
}

/// The owner pid of an existing object, for error messages.
fn owner_of(os_name: &str) -> Option<u32> {
    let fd = sys::open_existing(os_name, false).ok()?;
    read_owner(&fd).map(|(pid, _)| pid)
}

/// If `os_name` is a ptools segment whose owner is dead, unlinks it and returns true.
///
/// Two processes may find the same stale segment at once. Each takes an exclusive `flock`
/// on the stale object and, holding it, checks that the name still refers to that very
/// object before unlinking. The second one then finds the name gone or pointing to the
/// winner's new segment, and leaves it alone.
pub(crate) fn take_over_stale(os_name: &str) -> Result<bool> {
    let fd = match sys::open_existing(os_name, false) {
        Ok(fd) => fd,
        // Gone in the meantime: the name is free.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(true),
        Err(e) => return Err(ShmError::os("shm_open", os_name, e)),
    };
    let Some((pid, start)) = read_owner(&fd) else {
        return Ok(false); // not ours, or too young to have a header: never touched
    };
    if sys::process_alive(pid, start) {
        return Ok(false);
    }
    remove_if_same(os_name, &fd)
}

/// Unlinks `os_name` if it still names the object open as `fd`, under that object's lock.
pub(crate) fn remove_if_same(os_name: &str, fd: &OwnedFd) -> Result<bool> {
    let os = |op, e| ShmError::os(op, os_name, e);
    if !sys::try_lock(fd).map_err(|e| os("flock", e))? {
        return Ok(false);
    }
    let ours = sys::stat(fd).map_err(|e| os("fstat", e))?;
    let now = match sys::open_existing(os_name, false) {
        Ok(fd) => sys::stat(&fd).map_err(|e| os("fstat", e))?,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(true),
        Err(e) => return Err(os("shm_open", e)),
    };
    if (now.dev, now.ino) != (ours.dev, ours.ino) {
        return Ok(false);
    }
    match sys::unlink(os_name) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(true),
        Err(e) => Err(os("shm_unlink", e)),
    }
}
