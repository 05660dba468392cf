//! What runs in a child after `fork`: arrange to die with the parent, run `f(i)` under
//! `catch_unwind`, send one frame back, flush, `_exit`.
//!
//! The child never returns into the caller's frames: every path ends in `sys::exit_now`, so
//! no destructor of the parent's state (a shared-memory set, a temp file guard) runs twice,
//! and no buffered output of the parent is printed twice (the parent flushes before forking;
//! the child flushes only what it printed itself).

use std::cell::RefCell;
use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};

use serde::Serialize;

use crate::frame;
use crate::sys;

/// Exit code after a result frame (or a frame reporting an error in the child) was sent.
pub(crate) const EXIT_SENT: i32 = 0;
/// Exit code after a panic frame was sent (Rust's own code for a panicking `main`).
pub(crate) const EXIT_PANICKED: i32 = 101;
/// Exit code when the frame could not be written (the parent is gone or closed the pipe).
pub(crate) const EXIT_WRITE_FAILED: i32 = 102;
/// Exit code when the parent had ended before the child could ask to die with it.
pub(crate) const EXIT_ORPHANED: i32 = 103;

/// What a child records about itself right after `fork`, in one static: every page a child
/// writes is a copy-on-write fault of some microseconds, and two statics of their own would
/// likely be two pages (one initialised with zeros, one not).
struct ChildState {
    /// How deep in nested pfork runs this process is: 0 in the original process, 1 in its
    /// children, and so on. Set once in each child right after `fork`, read by the next run.
    depth: AtomicUsize,
    /// The child's end of its pipe, for the panic hook when panics abort
    /// (`panic = "abort"`) and for [`write_raw`]; -1 outside a child.
    panic_fd: AtomicI32,
}

static STATE: ChildState = ChildState {
    depth: AtomicUsize::new(0),
    panic_fd: AtomicI32::new(-1),
};

thread_local! {
    /// Message and location of the last panic on this thread, recorded by the child's hook.
    static LAST_PANIC: RefCell<Option<(String, Option<String>)>> = const { RefCell::new(None) };
}

/// Nesting depth of the calling process (0: not a pfork child).
pub(crate) fn depth() -> usize {
    STATE.depth.load(Ordering::Relaxed)
}

/// The child's side of a run. Never returns.
///
/// `parent` is the parent's pid recorded before `fork`; `write` the child's end of its pipe;
/// `max` the result cap in bytes.
pub(crate) fn run<R, F>(f: &F, index: usize, write: OwnedFd, parent: sys::pid_t, max: u64) -> !
where
    F: Fn(usize) -> R,
    R: Serialize,
{
    // Leave at once if the parent died between fork and this point: PR_SET_PDEATHSIG only
    // covers a parent that dies after it was set.
    if !sys::die_with_parent(parent) {
        sys::exit_now(EXIT_ORPHANED);
    }
    STATE.depth.fetch_add(1, Ordering::Relaxed);
    install_panic_hook(&write);

    // Small results are encoded on the stack: every heap page the child touches costs a
    // copy-on-write fault, and those faults are most of what a trivial child costs.
    let mut stack = [0u8; STACK_FRAME];
    // Everything that runs user code (f, R's Serialize) is inside catch_unwind, and nothing
    // after it can unwind, so the child cannot escape into the parent's frames.
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| encode(f, index, max, &mut stack)));
    let (heap, stack_len, code) = match outcome {
        Ok(Encoded::Stack(len)) => (None, len, EXIT_SENT),
        Ok(Encoded::Heap(frame)) => (Some(frame), 0, EXIT_SENT),
        Err(payload) => {
            let recorded = LAST_PANIC.with(|p| p.borrow_mut().take());
            let report = recorded.unwrap_or_else(|| (payload_message(&*payload), None));
            // A payload's destructor could panic again; the process ends in a moment anyway.
            std::mem::forget(payload);
            (Some(panic_frame(report)), 0, EXIT_PANICKED)
        }
    };
    let frame = heap.as_deref().unwrap_or(&stack[..stack_len]);
    flush_output();
    if sys::write_all(write.as_fd(), frame).is_err() {
        sys::exit_now(EXIT_WRITE_FAILED);
    }
    sys::exit_now(code)
}

/// Size of the stack buffer a child encodes its frame into; larger frames spill to the heap.
const STACK_FRAME: usize = 256;

/// An encoded frame: in the first bytes of the child's stack buffer, or on the heap.
enum Encoded {
    Stack(usize),
    Heap(Vec<u8>),
}

/// What [`Spill`] made of a result: an encoded frame, or the size of an encoding over the cap
/// (whose bytes were not kept).
enum Spilled {
    Frame(Encoded),
    Over(u64),
}

/// Runs `f(index)` and encodes its result as a frame: the result, or a report that it could
/// not be encoded or is over the cap. An encoding over the cap is measured to its end but
/// not kept, so the child holds at most `max` bytes of it.
fn encode<R, F>(f: &F, index: usize, max: u64, stack: &mut [u8; STACK_FRAME]) -> Encoded
where
    F: Fn(usize) -> R,
    R: Serialize,
{
    // The result is never dropped: the child exits right after sending it, and dropping a
    // large structure would only cost time.
    let result = ManuallyDrop::new(f(index));
    let spill = Spill {
        stack,
        len: frame::HEADER_LEN,
        heap: None,
        max,
        total: 0,
    };
    match postcard::serialize_with_flavor(&*result, spill) {
        Ok(Spilled::Over(len)) => {
            Encoded::Heap(frame::whole(frame::TAG_TOO_LARGE, &len.to_le_bytes()))
        }
        Ok(Spilled::Frame(mut encoded)) => {
            let buf: &mut [u8] = match &mut encoded {
                Encoded::Stack(len) => &mut stack[..*len],
                Encoded::Heap(v) => v,
            };
            buf[0] = frame::TAG_OK;
            frame::finish(buf);
            encoded
        }
        Err(e) => {
            let mut message = e.to_string();
            frame::clip(&mut message);
            Encoded::Heap(frame::whole(frame::TAG_ENCODE, message.as_bytes()))
        }
    }
}

/// A postcard output that fills a stack buffer first and moves to a `Vec` when it is full.
/// The first [`frame::HEADER_LEN`] bytes are left for the frame header. Once the encoding
/// passes `max` bytes, its bytes are dropped and only counted.
struct Spill<'a> {
    stack: &'a mut [u8; STACK_FRAME],
    len: usize,
    heap: Option<Vec<u8>>,
    max: u64,
    /// Bytes of encoding seen so far, kept or not.
    total: u64,
}

impl Spill<'_> {
    fn spill(&mut self, more: usize) -> &mut Vec<u8> {
        let (stack, len) = (&*self.stack, self.len);
        self.heap.get_or_insert_with(|| {
            let mut v = Vec::with_capacity((2 * STACK_FRAME).max(len + more));
            v.extend_from_slice(&stack[..len]);
            v
        })
    }
}

impl postcard::ser_flavors::Flavor for Spill<'_> {
    type Output = Spilled;

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.try_extend(&[byte])
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        let kept = self.total <= self.max;
        self.total = self.total.saturating_add(data.len() as u64);
        if self.total > self.max {
            if kept {
                // Over the cap: the bytes so far are of no use; give their memory back.
                self.heap = None;
            }
        } else if self.heap.is_none() && self.len + data.len() <= STACK_FRAME {
            copy_short(&mut self.stack[self.len..self.len + data.len()], data);
            self.len += data.len();
        } else {
            self.spill(data.len()).extend_from_slice(data);
        }
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Spilled> {
        if self.total > self.max {
            return Ok(Spilled::Over(self.total));
        }
        Ok(Spilled::Frame(match self.heap {
            Some(v) => Encoded::Heap(v),
            None => Encoded::Stack(self.len),
        }))
    }
}

/// Copies `src` into `dst`, of the same length. Up to 16 bytes (what postcard hands over
/// for a number) with at most two fixed-size moves, overlapping when the length is not a
/// power of two, instead of a call to libc's `memcpy`, whose page of code would be one more
/// page fault in a child that runs it for the first time (see `sys::fork`).
#[inline(always)]
fn copy_short(dst: &mut [u8], src: &[u8]) {
    /// The first and the last `N` bytes of `src` (`N <= src.len() <= 2 * N`) into `dst`.
    #[inline(always)]
    fn two<const N: usize>(dst: &mut [u8], src: &[u8]) {
        let n = src.len();
        let (mut head, mut tail) = ([0u8; N], [0u8; N]);
        head.copy_from_slice(&src[..N]);
        tail.copy_from_slice(&src[n - N..]);
        dst[..N].copy_from_slice(&head);
        dst[n - N..].copy_from_slice(&tail);
    }
    match src.len() {
        0 => {}
        1 => dst[0] = src[0],
        2..=3 => two::<2>(dst, src),
        4..=7 => two::<4>(dst, src),
        8..=16 => two::<8>(dst, src),
        _ => dst.copy_from_slice(src),
    }
}

/// The frame reporting a panic; message and location are cut to [`frame::MAX_MESSAGE`]
/// bytes each, so the report stays under the parent's bound on reports.
fn panic_frame(report: (String, Option<String>)) -> Vec<u8> {
    let (mut message, mut location) = report;
    frame::clip(&mut message);
    if let Some(location) = &mut location {
        frame::clip(location);
    }
    // Encoding two strings into a Vec cannot fail; keep an empty payload if it ever did.
    let payload = postcard::to_allocvec(&(message, location)).unwrap_or_default();
    frame::whole(frame::TAG_PANIC, &payload)
}

/// Replaces the panic hook (in this child only: a hook is process-wide, and this process is
/// ours) with one that records message and location instead of printing them: the panic is
/// data, sent to the parent and reported as [`ChildError::Panicked`](crate::ChildError).
fn install_panic_hook(write: &OwnedFd) {
    use std::os::fd::AsRawFd;
    STATE.panic_fd.store(write.as_raw_fd(), Ordering::Relaxed);
    panic::set_hook(Box::new(|info| {
        let message = payload_message(info.payload());
        let location = info.location().map(|l| l.to_string());
        if cfg!(panic = "abort") {
            // No unwinding will bring us back to `run`: send the report from here, before
            // the runtime aborts. The fd stays open until the process ends.
            let fd = STATE.panic_fd.load(Ordering::Relaxed);
            if fd >= 0 {
                // SAFETY: `fd` is the child's pipe end, owned by `run`'s frame, which stays
                // alive (the child never leaves `run` except through `_exit`).
                let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                let _ = sys::write_all(fd, &panic_frame((message, location)));
            }
            return;
        }
        LAST_PANIC.with(|p| *p.borrow_mut() = Some((message, location)));
    }));
}

/// Writes `bytes` as they are to this child's pipe, as a child that forges its frame would
/// (for the crate's tests, through `__test_hooks`).
///
/// # Errors
///
/// `EBADF` outside a pfork child; the write's error otherwise.
pub(crate) fn write_raw(bytes: &[u8]) -> std::io::Result<()> {
    let fd = STATE.panic_fd.load(Ordering::Relaxed);
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: `fd` is set only in a child, to its pipe end, which `run` owns and keeps open
    // until the process ends (`run` never returns: it leaves through `_exit`).
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    sys::write_all(fd, bytes)
}

fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "Box<dyn Any>".to_owned()
    }
}

/// Flushes what this child printed: Rust's stdout (line-buffered) and C's stdout. The parent
/// flushed both before forking, so the buffers hold only the child's own output. Rust's
/// stderr and C's stderr are unbuffered.
fn flush_output() {
    let _ = std::io::stdout().flush();
    sys::flush_c_stdout();
}
