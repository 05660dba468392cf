//! The typed handles: [`ShmArray`] (one array), [`ShmSet`] (the arrays of one
//! configuration list), and [`ShmBuilder`] for the options.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use crate::cfg::{Prefix, ShmCfg, segment_name, segment_names};
use crate::error::{Result, ShmError};
use crate::segment::{CreateMode, Found, Segment, inspect_object};
use crate::{ShmElem, sys};

/// Checked once per element type, at compile time: the layout promises of [`ShmElem`]
/// that the compiler can verify.
const fn check_layout<T: ShmElem>() {
    assert!(
        size_of::<T>() == T::ELEM.size(),
        "ShmElem::ELEM.size() must equal size_of::<T>()"
    );
    assert!(
        align_of::<T>() <= 8,
        "ShmElem types must be at most 8-aligned"
    );
}

/// A typed shared array: a slice of `T` in a named segment, row-major with [`dims`].
///
/// It derefs to `[T]`. The creator's handle unlinks the segment when dropped (unless told
/// to [keep it](ShmArray::keep_on_drop)); an attached handle only unmaps.
///
/// ```
/// use ptools_shm::{Prefix, ShmArray, ShmCfg, ShmError};
/// let prefix = Prefix::job();
/// let cfg = ShmCfg::new::<i32>("doc-array", [2, 3])?;
/// let mut a = ShmArray::<i32>::create(&cfg, &prefix)?;
/// a.copy_from_slice(&[1, 2, 3, 4, 5, 6]);
/// assert_eq!(a[4], 5);
/// assert_eq!(a.dims(), &[2, 3]);
/// // Another process attaches by name; this one already holds the segment.
/// let again = ShmArray::<i32>::attach(&cfg, &prefix);
/// assert!(matches!(again, Err(ShmError::AlreadyMapped { .. })));
/// # Ok::<(), ShmError>(())
/// ```
///
/// # Caveats
///
/// - **One handle per segment per process.** Attaching to a segment this process already
///   maps is [`ShmError::AlreadyMapped`], so safe code never holds a `&mut [T]` and a
///   `&[T]` over the same memory through two handles. Share the handle instead (it is
///   `Send + Sync`).
/// - **Other processes are outside the borrow checker.** `&mut [T]` is exclusive within
///   this process, but another process mapping the segment may write it at the same time.
///   The rule ptools follows, and asks of its users: while one process writes an element,
///   no other process reads or writes it; hand data over at points where the reader
///   waits for the writer (a finished call, a reaped child). Breaking it is a data race,
///   undefined behaviour even for plain numbers (never index with a value another
///   process may be writing); see the crate's [safety model](crate#safety-model).
/// - **Do not shrink a segment from outside.** A process that truncates the object
///   (`ftruncate`, or writing the file in `/dev/shm`) makes every process that maps it
///   die with `SIGBUS` on its next access; no library can prevent that.
///
/// [`dims`]: ShmArray::dims
#[repr(transparent)]
pub struct ShmArray<T: ShmElem> {
    seg: Segment,
    _elem: PhantomData<T>,
}

impl<T: ShmElem> ShmArray<T> {
    /// Creates the array `cfg` under `prefix`, with the defaults of [`ShmBuilder`].
    ///
    /// Safe, but other processes that attach write the same memory: the crate's
    /// [safety model](crate#safety-model) states what they and this process must keep.
    ///
    /// # Errors
    ///
    /// See [`ShmSet::create`]; also [`ShmError::TypeMismatch`] when `cfg` is for another
    /// element type than `T`.
    pub fn create(cfg: &ShmCfg, prefix: &Prefix) -> Result<ShmArray<T>> {
        ShmBuilder::new().prefix(prefix.clone()).create_array(cfg)
    }

    /// Attaches to the existing array `cfg` under `prefix`. Never waits: a segment still
    /// being created is [`ShmError::NotReady`] (see [`ShmSet::attach`]).
    ///
    /// Safe, but the creator and other attached processes may write the same memory: the
    /// crate's [safety model](crate#safety-model) states what they and this process must keep.
    ///
    /// # Errors
    ///
    /// See [`ShmSet::attach`].
    pub fn attach(cfg: &ShmCfg, prefix: &Prefix) -> Result<ShmArray<T>> {
        ShmBuilder::new().prefix(prefix.clone()).attach_array(cfg)
    }

    fn from_segment(seg: Segment) -> Result<ShmArray<T>> {
        const { check_layout::<T>() };
        if seg.elem() != T::ELEM {
            return Err(ShmError::TypeMismatch {
                name: seg.name().to_owned(),
                expected: T::ELEM,
                found: seg.elem(),
            });
        }
        Ok(ShmArray {
            seg,
            _elem: PhantomData,
        })
    }

    fn ref_from(seg: &Segment) -> Result<&ShmArray<T>> {
        const { check_layout::<T>() };
        if seg.elem() != T::ELEM {
            return Err(type_mismatch::<T>(seg));
        }
        // SAFETY: ShmArray<T> is repr(transparent) over Segment (PhantomData is a ZST), so
        // the pointer cast keeps layout; the tag check above makes the typed view valid.
        Ok(unsafe { &*std::ptr::from_ref(seg).cast::<ShmArray<T>>() })
    }

    fn mut_from(seg: &mut Segment) -> Result<&mut ShmArray<T>> {
        const { check_layout::<T>() };
        if seg.elem() != T::ELEM {
            return Err(type_mismatch::<T>(seg));
        }
        // SAFETY: as in `ref_from`; the exclusive borrow of the Segment becomes the
        // exclusive borrow of the wrapper.
        Ok(unsafe { &mut *std::ptr::from_mut(seg).cast::<ShmArray<T>>() })
    }

    /// The array's name in its configuration.
    pub fn name(&self) -> &str {
        self.seg.name()
    }

    /// The system name of its segment, e.g. `/ptools_j1f2a-5e1_temps`.
    pub fn segment_name(&self) -> &str {
        self.seg.os_name()
    }

    /// The dims, row-major (the last axis varies fastest).
    pub fn dims(&self) -> &[usize] {
        self.seg.dims()
    }

    /// The elements as a slice.
    ///
    /// Contract (not checked): while the slice lives, no other process writes the
    /// elements this process reads through it; see the crate's [safety model](crate#safety-model).
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: the data area holds `len` elements of T (checked against the header and
        // the object size at create/attach); it is 128-byte aligned, enough for any
        // ShmElem (align <= 8); any bit pattern is a valid T (ShmElem's contract); the
        // mapping lives as long as `self`; within this process no `&mut` to it exists
        // while `&self` is borrowed (one handle per segment). That no *other* process
        // writes it meanwhile is the documented contract (crate docs, "Safety model"),
        // not something this code can keep.
        unsafe { std::slice::from_raw_parts(self.seg.data_ptr().cast::<T>(), self.seg.len()) }
    }

    /// The elements as a mutable slice.
    ///
    /// Exclusive within this process. Contract (not checked): while the slice lives, no
    /// other process reads or writes the elements this process writes through it; see the
    /// crate's [safety model](crate#safety-model).
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as in `as_slice`, and `&mut self` makes the borrow exclusive within
        // this process; other processes are again the documented contract only.
        unsafe { std::slice::from_raw_parts_mut(self.seg.data_ptr().cast::<T>(), self.seg.len()) }
    }

    /// Whether this handle created the segment (and so unlinks it on drop, unless kept).
    pub fn is_creator(&self) -> bool {
        self.seg.is_creator()
    }

    /// Tells the creator's handle to leave the segment in place when dropped (`true`), or
    /// to unlink it (`false`, the default). No effect on an attached handle. A kept
    /// segment counts as stale once its creator has exited; see
    /// [`remove_stale_shm`](crate::remove_stale_shm).
    pub fn keep_on_drop(&mut self, keep: bool) {
        self.seg.set_keep(keep);
    }

    /// An `ndarray` view with the array's dims; the contract of
    /// [`as_slice`](Self::as_slice).
    #[cfg(feature = "ndarray")]
    pub fn view(&self) -> ndarray::ArrayViewD<'_, T> {
        ndarray::ArrayViewD::from_shape(self.dims(), self.as_slice())
            .expect("dims and length agree by construction")
    }

    /// A mutable `ndarray` view with the array's dims; the contract of
    /// [`as_mut_slice`](Self::as_mut_slice).
    #[cfg(feature = "ndarray")]
    pub fn view_mut(&mut self) -> ndarray::ArrayViewMutD<'_, T> {
        let dims = self.dims().to_vec();
        ndarray::ArrayViewMutD::from_shape(dims, self.as_mut_slice())
            .expect("dims and length agree by construction")
    }
}

fn type_mismatch<T: ShmElem>(seg: &Segment) -> ShmError {
    ShmError::TypeMismatch {
        name: seg.name().to_owned(),
        expected: T::ELEM,
        found: seg.elem(),
    }
}

/// [`ShmArray::as_slice`], with its contract.
impl<T: ShmElem> Deref for ShmArray<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.as_slice()
    }
}

/// [`ShmArray::as_mut_slice`], with its contract.
impl<T: ShmElem> DerefMut for ShmArray<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.as_mut_slice()
    }
}

impl<T: ShmElem> fmt::Debug for ShmArray<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShmArray")
            .field("name", &self.name())
            .field("segment", &self.segment_name())
            .field("elem", &T::ELEM)
            .field("dims", &self.dims())
            .field("creator", &self.is_creator())
            .finish()
    }
}

/// The arrays of one configuration list, created or attached together (all or none).
///
/// ```
/// use ptools_shm::{Prefix, ShmCfg, ShmSet};
/// let cfgs = [
///     ShmCfg::new::<f64>("grid", [4, 4])?,
///     ShmCfg::new::<u8>("mask", 16)?,
/// ];
/// let prefix = Prefix::job();
/// let mut set = ShmSet::create(&cfgs, &prefix)?;
/// set.get_mut::<f64>("grid")?.fill(1.5);
/// assert!(set.get::<u8>("grid").is_err());            // wrong element type
///
/// set.keep_on_drop(true);                            // leave the segments in place,
/// drop(set);
/// let other = ShmSet::attach(&cfgs, &prefix)?;      // as another process would attach
/// assert_eq!(other.get::<f64>("grid")?.iter().sum::<f64>(), 24.0);
/// drop(other);
/// ptools_shm::unlink_shm(&cfgs, &prefix)?;           // and clean up by name
/// assert!(ShmSet::attach(&cfgs, &prefix).is_err());
/// # Ok::<(), ptools_shm::ShmError>(())
/// ```
pub struct ShmSet {
    segments: Vec<Segment>,
}

impl ShmSet {
    /// Creates every array of `cfgs` under `prefix`: exclusively (a name held by a live
    /// owner is an error; one left by a dead owner is replaced), mode 0600, pages reserved.
    /// See [`ShmBuilder`] for the options. Processes that attach write the same memory:
    /// see the crate's [safety model](crate#safety-model).
    ///
    /// # Errors
    ///
    /// Input errors before any system call ([`ShmError::DuplicateName`],
    /// [`ShmError::NameTooLong`]); [`ShmError::AlreadyExists`]; [`ShmError::OutOfSpace`]
    /// when the shared-memory file system is full; [`ShmError::Os`] otherwise. On any
    /// error the arrays already created are unlinked again.
    pub fn create(cfgs: &[ShmCfg], prefix: &Prefix) -> Result<ShmSet> {
        ShmBuilder::new().prefix(prefix.clone()).create(cfgs)
    }

    /// Attaches to every array of `cfgs` under `prefix`, checking each header. The creator
    /// and other attached processes may write the same memory: see the crate's
    /// [safety model](crate#safety-model).
    ///
    /// Attaching never waits. A segment whose creator is still at work (it holds the
    /// segment's lock, or has just opened the name and not yet sized it) is
    /// [`ShmError::NotReady`], never [`ShmError::Truncated`] or [`ShmError::Foreign`]; the
    /// creator takes microseconds (plus reserving the pages), so a caller that raced it
    /// may sleep briefly and attach again. An empty or zero-headed object is reported as
    /// not ready only while it is younger than two seconds: after that nobody is creating
    /// it.
    ///
    /// # Errors
    ///
    /// [`ShmError::NotFound`], [`ShmError::TypeMismatch`], [`ShmError::DimsMismatch`],
    /// [`ShmError::Truncated`], [`ShmError::Foreign`] (no ptools header),
    /// [`ShmError::NotReady`] (still being created, see above), [`ShmError::AlreadyMapped`]
    /// (this process holds a handle to it already). On any error the arrays already
    /// attached are released again.
    pub fn attach(cfgs: &[ShmCfg], prefix: &Prefix) -> Result<ShmSet> {
        ShmBuilder::new().prefix(prefix.clone()).attach(cfgs)
    }

    fn find(&self, name: &str) -> Result<usize> {
        self.segments
            .iter()
            .position(|s| s.name() == name)
            .ok_or_else(|| ShmError::NoSuchArray {
                name: name.to_owned(),
            })
    }

    /// The array `name`, typed; its slice has the contract of [`ShmArray::as_slice`].
    ///
    /// # Errors
    ///
    /// [`ShmError::NoSuchArray`], or [`ShmError::TypeMismatch`] when it holds another
    /// element type.
    pub fn get<T: ShmElem>(&self, name: &str) -> Result<&ShmArray<T>> {
        let i = self.find(name)?;
        ShmArray::ref_from(&self.segments[i])
    }

    /// The array `name`, typed and mutable; its slice has the contract of
    /// [`ShmArray::as_mut_slice`].
    ///
    /// # Errors
    ///
    /// As [`ShmSet::get`].
    pub fn get_mut<T: ShmElem>(&mut self, name: &str) -> Result<&mut ShmArray<T>> {
        let i = self.find(name)?;
        ShmArray::mut_from(&mut self.segments[i])
    }

    /// Takes the array `name` out of the set as an owned handle.
    ///
    /// # Errors
    ///
    /// As [`ShmSet::get`]; on error the set is unchanged.
    pub fn take<T: ShmElem>(&mut self, name: &str) -> Result<ShmArray<T>> {
        let i = self.find(name)?;
        if self.segments[i].elem() != T::ELEM {
            return Err(type_mismatch::<T>(&self.segments[i]));
        }
        ShmArray::from_segment(self.segments.remove(i))
    }

    /// The array names, in configuration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map(Segment::name)
    }

    /// How many arrays the set holds.
    pub fn len(&self) -> usize {
        self.segments.len()
    }

    /// Whether the set holds no array.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Tells the creator's handles to leave the segments in place when dropped.
    /// See [`ShmArray::keep_on_drop`].
    pub fn keep_on_drop(&mut self, keep: bool) {
        for s in &mut self.segments {
            s.set_keep(keep);
        }
    }
}

impl fmt::Debug for ShmSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.segments.iter().map(|s| {
                (
                    s.name(),
                    s.os_name(),
                    s.elem(),
                    s.dims(),
                    s.is_creator() && !s.keeps(),
                )
            }))
            .finish()
    }
}

/// Options for creating and attaching arrays.
///
/// ```
/// use ptools_shm::{Prefix, ShmBuilder, ShmCfg};
/// let cfgs = [ShmCfg::new::<u32>("scratch", 1024)?];
/// // A small throw-away array: skip reserving its pages.
/// let set = ShmBuilder::new().prefix(Prefix::job()).reserve(false).create(&cfgs)?;
/// assert_eq!(set.get::<u32>("scratch")?.len(), 1024);
/// # Ok::<(), ptools_shm::ShmError>(())
/// ```
#[derive(Clone, Debug)]
#[must_use = "a ShmBuilder does nothing until `create` or `attach` is called"]
pub struct ShmBuilder {
    prefix: Prefix,
    reserve: bool,
    populate: bool,
    keep: bool,
}

impl Default for ShmBuilder {
    fn default() -> ShmBuilder {
        ShmBuilder::new()
    }
}

impl ShmBuilder {
    /// The defaults: the job's prefix, pages reserved, not pre-faulted, unlinked on drop.
    pub fn new() -> ShmBuilder {
        ShmBuilder {
            prefix: Prefix::job(),
            reserve: true,
            populate: false,
            keep: false,
        }
    }

    /// The prefix to create or attach under (default [`Prefix::job`]).
    pub fn prefix(mut self, prefix: Prefix) -> ShmBuilder {
        self.prefix = prefix;
        self
    }

    /// Reserve the pages at creation with `posix_fallocate` (default `true`). A full
    /// `/dev/shm` is then an [`ShmError::OutOfSpace`] at creation. Without it the pages are
    /// allocated at first touch, and a full `/dev/shm` kills the writing process with
    /// `SIGBUS` instead: skip it only for small throw-away arrays. (On macOS pages are
    /// allocated at creation anyway.)
    pub fn reserve(mut self, reserve: bool) -> ShmBuilder {
        self.reserve = reserve;
        self
    }

    /// Pre-fault the mapping's pages for writing (Linux; default `false`), at creation and
    /// at attach. It moves the page-fault cost of the first pass over the array into this
    /// call: worth it before a timed or latency-sensitive first pass, wasted on pages never
    /// touched. (Measured: no clear gain for a 256 MiB fill, and it doubles the cost of
    /// creating a 1 MiB array that is not touched; see `BENCHMARKS.md`.)
    pub fn populate(mut self, populate: bool) -> ShmBuilder {
        self.populate = populate;
        self
    }

    /// Leave created segments in place when their handles drop (default `false`).
    pub fn keep(mut self, keep: bool) -> ShmBuilder {
        self.keep = keep;
        self
    }

    /// Creates every array of `cfgs`, all or none. See [`ShmSet::create`].
    ///
    /// # Errors
    ///
    /// As [`ShmSet::create`].
    pub fn create(&self, cfgs: &[ShmCfg]) -> Result<ShmSet> {
        let names = segment_names(cfgs, &self.prefix)?;
        let mode = CreateMode {
            reserve: self.reserve,
            populate: self.populate,
        };
        let mut segments = Vec::with_capacity(cfgs.len());
        for (cfg, name) in cfgs.iter().zip(names) {
            // On error, `segments` drops and unlinks what was created so far.
            let mut seg = Segment::create(cfg, name, mode)?;
            seg.set_keep(self.keep);
            segments.push(seg);
        }
        Ok(ShmSet { segments })
    }

    /// Attaches to every array of `cfgs`. See [`ShmSet::attach`].
    ///
    /// # Errors
    ///
    /// As [`ShmSet::attach`].
    pub fn attach(&self, cfgs: &[ShmCfg]) -> Result<ShmSet> {
        let names = segment_names(cfgs, &self.prefix)?;
        let segments = cfgs
            .iter()
            .zip(&names)
            .map(|(cfg, name)| Segment::attach(cfg, name, self.populate))
            .collect::<Result<Vec<_>>>()?;
        Ok(ShmSet { segments })
    }

    /// Creates one typed array.
    ///
    /// # Errors
    ///
    /// As [`ShmSet::create`], and [`ShmError::TypeMismatch`] if `cfg` is not for `T`
    /// (checked before anything is created).
    pub fn create_array<T: ShmElem>(&self, cfg: &ShmCfg) -> Result<ShmArray<T>> {
        check_type::<T>(cfg)?;
        // As `create` with one array, without a set around it.
        let name = segment_name(cfg, &self.prefix)?;
        let mode = CreateMode {
            reserve: self.reserve,
            populate: self.populate,
        };
        let mut seg = Segment::create(cfg, name, mode)?;
        seg.set_keep(self.keep);
        ShmArray::from_segment(seg)
    }

    /// Attaches to one typed array.
    ///
    /// # Errors
    ///
    /// As [`ShmSet::attach`].
    pub fn attach_array<T: ShmElem>(&self, cfg: &ShmCfg) -> Result<ShmArray<T>> {
        check_type::<T>(cfg)?;
        let mut set = self.attach(std::slice::from_ref(cfg))?;
        set.take(cfg.name())
    }
}

fn check_type<T: ShmElem>(cfg: &ShmCfg) -> Result<()> {
    if cfg.elem() == T::ELEM {
        Ok(())
    } else {
        Err(ShmError::TypeMismatch {
            name: cfg.name().to_owned(),
            expected: T::ELEM,
            found: cfg.elem(),
        })
    }
}

/// Unlinks the segments of `cfgs` under `prefix` (PTools.jl's `unlink_shm`). Mappings
/// stay valid until their handles drop; the names are free at once. Only objects with a
/// ptools header are unlinked.
///
/// Every name is tried; the first failure is returned.
///
/// ```
/// use ptools_shm::{Prefix, ShmBuilder, ShmCfg, ShmError, unlink_shm};
/// let cfgs = [ShmCfg::new::<u8>("doc-unlink", 8)?];
/// let prefix = Prefix::job();
/// drop(ShmBuilder::new().prefix(prefix.clone()).keep(true).create(&cfgs)?);
/// unlink_shm(&cfgs, &prefix)?;
/// assert!(matches!(unlink_shm(&cfgs, &prefix), Err(ShmError::NotFound { .. })));
/// # Ok::<(), ShmError>(())
/// ```
///
/// # Errors
///
/// [`ShmError::NotFound`] for a segment that does not exist (unlinking twice);
/// [`ShmError::Foreign`] for an object of that name without a ptools header (left in
/// place); input errors before any system call.
pub fn unlink_shm(cfgs: &[ShmCfg], prefix: &Prefix) -> Result<()> {
    let names = segment_names(cfgs, prefix)?;
    let mut first = None;
    for name in names {
        if let Err(e) = unlink_ours(&name) {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

fn unlink_ours(name: &str) -> Result<()> {
    let os = |op, e| ShmError::os(op, name, e);
    let fd = sys::open_existing(name, false).map_err(|e| os("shm_open", e))?;
    let st = sys::stat(&fd).map_err(|e| os("fstat", e))?;
    if !matches!(inspect_object(&fd, st.size), Found::Ours { .. }) {
        return Err(ShmError::Foreign {
            name: name.to_owned(),
        });
    }
    sys::unlink(name).map_err(|e| os("shm_unlink", e))
}
