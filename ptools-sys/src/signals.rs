//! `SIGINT` and `SIGTERM` leave nothing behind: the segments this process created are
//! unlinked, the workers it started are stopped, and the process then dies by the same
//! signal (exit status as if unhandled: 130 and 143 in a shell).
//!
//! # How
//!
//! Everything happens inside the signal handler, with async-signal-safe calls only, and no
//! thread is started (pfork refuses to fork a multi-threaded process). The handler reads two
//! fixed-size, lock-free tables, process-global:
//!
//! - **segments**: the file to unlink for each segment this process created and has not
//!   unlinked or kept ([`SEGMENT_SLOTS`] entries; the path `/dev/shm/<name>` on Linux), with
//!   the device and inode it had, so the handler unlinks only that very object;
//! - **processes**: each worker this process started and has not reaped
//!   ([`PROCESS_SLOTS`] entries), by pidfd on Linux (so a recycled pid is never signalled).
//!
//! Each entry records the pid that registered it, and the handler skips entries of another
//! pid: a child forked by pfork inherits the handler and the tables, but never unlinks its
//! parent's segments or signals its parent's workers.
//!
//! On the first signal the handler (1) unlinks every segment, (2) sends `SIGTERM` to every
//! worker and waits up to [`WORKER_GRACE_MS`] for them to exit (a worker that created
//! segments has this handler too and unlinks them), then sends `SIGKILL` to the rest and
//! waits up to [`WORKER_GRACE_MS`] again, (3) unlinks what other threads registered
//! meanwhile, (4) restores the default action, unblocks the signal and raises it again.
//! The handler is installed with `SA_NODEFER`: a second signal during that cleanup (a
//! second Ctrl-C) runs the handler again on top of the first, which unlinks whatever is
//! left (unlinking is idempotent per entry), gives the workers at most 100 ms more to exit
//! by themselves (so a worker still unlinking its own segments can finish), sends `SIGKILL`
//! to the rest, and dies by that second signal.
//!
//! # When the handler is installed
//!
//! On the first registration: the first segment this process creates through ptools-shm,
//! or the first worker it starts through ptools-workerset. For each of `SIGINT` and
//! `SIGTERM` separately, and only when its disposition then is the default (`SIG_DFL`): a
//! handler of the program's own, or `SIG_IGN` (as `nohup` sets), is never replaced. A
//! handler the program installs later replaces ours, and then ptools does no cleanup for
//! that signal. But a library that *chains* to the handler it found (signal-hook-registry,
//! under `tokio::signal`, calls the previous one too) would run ours, and ours ends the
//! process: a program that wants to survive Ctrl-C installs its handler before its first
//! segment or worker, or calls [`disable`].
//!
//! # Opting out
//!
//! - Set [`NO_HANDLERS_ENV`] (`PTOOLS_NO_SIGNAL_HANDLERS=1`; any value but empty or `0`)
//!   in the environment; it is read once, at the first registration.
//! - Or call [`disable`] (re-exported as `ptools_shm::signals::disable` and
//!   `ptools_workerset::signals::disable`): it restores `SIG_DFL` where ptools' handler is
//!   installed and installs none later.
//!
//! Without the handlers, a signal kills the process as `SIGKILL` would: segments stay in
//! `/dev/shm` until `ptools shm clean` (or the next job of the same name) removes them.
//!
//! # Limits
//!
//! - A full table simply does not cover the entry: more than [`SEGMENT_SLOTS`] live
//!   segments or [`PROCESS_SLOTS`] live workers in one process. The segment is still
//!   unlinked on drop, and a worker still dies with its master (`PR_SET_PDEATHSIG`).
//! - A segment is covered from the moment its name is created until it is unlinked, except
//!   for the few instructions while its entry is written or freed.
//! - `SIGKILL`, and signals other than these two, still leave segments behind.
//! - A second signal sent to the master alone, before a worker has finished unlinking the
//!   segments it created itself, gives that worker only the 100 ms above: a worker slower
//!   than that (a loaded machine) is killed, and its segments stay until `ptools shm clean`.
//!   Ctrl-C in a terminal signals the workers too (they share the process group), so each
//!   cleans up on its own.
//! - Outside Linux, segments are unlinked by name with `shm_unlink` (no identity check),
//!   and workers are signalled by pid.
//! - On targets with ptools' stub backend (other than Linux and macOS, see the crate docs
//!   of `ptools-sys`), no handler is installed: [`is_active`] stays false. There is nothing
//!   to clean up there: no segment can be created and no worker started.

use std::io;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, AtomicU64, AtomicUsize, Ordering};

/// The environment variable that turns the handlers off: set to anything but empty or `0`.
pub const NO_HANDLERS_ENV: &str = "PTOOLS_NO_SIGNAL_HANDLERS";

/// How many live segments of one process the handler covers.
pub const SEGMENT_SLOTS: usize = 1024;

/// How many live workers of one process the handler covers.
pub const PROCESS_SLOTS: usize = 1024;

/// How long the handler waits for workers to exit after `SIGTERM`, and again after
/// `SIGKILL`, in milliseconds.
pub const WORKER_GRACE_MS: i64 = 2000;

/// After a second signal, how long workers still have to exit by themselves (unlinking
/// their own segments) before `SIGKILL`, in milliseconds: short, since the user asked twice.
const SECOND_SIGNAL_GRACE_MS: i64 = 100;

/// Room for one path: `/dev/shm` plus a `/`-led name of up to 255 bytes, plus the NUL.
const PATH_WORDS: usize = 34;
const PATH_BYTES: usize = PATH_WORDS * 8;

#[cfg(any(target_os = "linux", target_os = "android"))]
const SHM_DIR: &[u8] = b"/dev/shm";

// Slot states. FREE -> WRITING -> LIVE by the registering thread; LIVE -> FREE when it is
// deregistered; LIVE -> TAKEN -> DONE by a signal handler, after which only handlers read
// the slot (the process is dying).
const FREE: u8 = 0;
const WRITING: u8 = 1;
const LIVE: u8 = 2;
const TAKEN: u8 = 3;
const DONE: u8 = 4;

struct SegSlot {
    state: AtomicU8,
    owner: AtomicI32,
    dev: AtomicU64,
    ino: AtomicU64,
    /// The NUL-terminated path, in native-endian words.
    path: [AtomicU64; PATH_WORDS],
}

impl SegSlot {
    const fn new() -> SegSlot {
        SegSlot {
            state: AtomicU8::new(FREE),
            owner: AtomicI32::new(0),
            dev: AtomicU64::new(0),
            ino: AtomicU64::new(0),
            path: [const { AtomicU64::new(0) }; PATH_WORDS],
        }
    }
}

struct ProcSlot {
    state: AtomicU8,
    owner: AtomicI32,
    pid: AtomicI32,
    /// A pidfd, or -1 where there is none (then the handler signals by pid).
    pidfd: AtomicI32,
}

impl ProcSlot {
    const fn new() -> ProcSlot {
        ProcSlot {
            state: AtomicU8::new(FREE),
            owner: AtomicI32::new(0),
            pid: AtomicI32::new(0),
            pidfd: AtomicI32::new(-1),
        }
    }
}

static SEGS: [SegSlot; SEGMENT_SLOTS] = [const { SegSlot::new() }; SEGMENT_SLOTS];
static PROCS: [ProcSlot; PROCESS_SLOTS] = [const { ProcSlot::new() }; PROCESS_SLOTS];
/// Where the next search for a free segment slot starts, so that one is usually found at
/// the first try.
static SEG_HINT: AtomicUsize = AtomicUsize::new(0);

/// Decided once: whether handlers were installed.
static INSTALL: Once = Once::new();
/// True while at least one of our handlers is installed and [`disable`] was not called.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Which of [`SIGNALS`] carry our handler.
static OURS: [AtomicBool; 2] = [const { AtomicBool::new(false) }; 2];
/// How many handler invocations are under way: more than one means "finish at once".
static DEPTH: AtomicUsize = AtomicUsize::new(0);

const SIGNALS: [libc::c_int; 2] = [libc::SIGINT, libc::SIGTERM];

fn getpid() -> i32 {
    // The bare call: async-signal-safe.
    crate::sys::getpid()
}

/// Installs the handlers if that is still to be decided; returns whether ptools' cleanup is
/// active. One atomic load after the first call.
fn ensure_installed() -> bool {
    INSTALL.call_once(install);
    ACTIVE.load(Ordering::Relaxed)
}

fn opted_out() -> bool {
    std::env::var_os(NO_HANDLERS_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

fn install() {
    if opted_out() {
        return;
    }
    for (k, &sig) in SIGNALS.iter().enumerate() {
        if crate::sys::current_handler(sig) != Some(libc::SIG_DFL) {
            continue;
        }
        // SAFETY: `on_signal` only makes async-signal-safe calls (see its section below).
        if unsafe { crate::sys::install_handler(sig, on_signal) } {
            OURS[k].store(true, Ordering::Relaxed);
            ACTIVE.store(true, Ordering::Relaxed);
        }
    }
}

/// Turns ptools' signal handling off for this process: where its handler is installed,
/// the default action is restored, and no handler is installed later. Segments and
/// workers then behave on `SIGINT` and `SIGTERM` as on `SIGKILL` (see the module docs).
///
/// The environment variable [`NO_HANDLERS_ENV`] does the same without code.
pub fn disable() {
    // After this no installation can start (or one under way has finished).
    INSTALL.call_once(|| ());
    ACTIVE.store(false, Ordering::Relaxed);
    let ours = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    for (k, &sig) in SIGNALS.iter().enumerate() {
        if OURS[k].swap(false, Ordering::Relaxed) && crate::sys::current_handler(sig) == Some(ours)
        {
            crate::sys::restore_default(sig);
        }
    }
}

/// Whether ptools' cleanup on `SIGINT`/`SIGTERM` is active in this process: its handler is
/// installed for at least one of them (which happens at the first segment created or
/// worker started) and [`disable`] was not called.
pub fn is_active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

// For ptools-shm and ptools-workerset only: hidden from the docs.
/// A segment covered by the handler; dropping it takes the segment out of the table (do so
/// after unlinking it, or when it is to be kept).
#[doc(hidden)]
#[derive(Debug)]
pub struct SegmentEntry {
    slot: u32,
}

impl Drop for SegmentEntry {
    fn drop(&mut self) {
        // Fails only when a handler has taken the slot: the process is dying, leave it.
        let _ = SEGS[self.slot as usize].state.compare_exchange(
            LIVE,
            FREE,
            Ordering::Release,
            Ordering::Relaxed,
        );
    }
}

// For ptools-shm and ptools-workerset only: hidden from the docs.
/// Puts a segment this process has just created into the table, installing the handlers
/// first if this is the first registration. `os_name` is the name given to `shm_open`
/// (starting with `/`); `dev` and `ino` identify the object (from `fstat`), so that the
/// handler unlinks it only while the name still refers to it.
///
/// `None` when the cleanup is not active (opted out, or the program handles both signals
/// itself), the table is full, or the name does not fit: then the segment is not covered.
#[doc(hidden)]
pub fn register_segment(os_name: &str, dev: u64, ino: u64) -> Option<SegmentEntry> {
    if !ensure_installed() {
        return None;
    }
    let mut buf = [0u8; PATH_BYTES];
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let dir = SHM_DIR;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let dir: &[u8] = b"";
    let name = os_name.as_bytes();
    // The last byte stays NUL.
    if dir.len() + name.len() >= PATH_BYTES || name.contains(&0) {
        return None;
    }
    buf[..dir.len()].copy_from_slice(dir);
    buf[dir.len()..dir.len() + name.len()].copy_from_slice(name);
    let start = SEG_HINT.fetch_add(1, Ordering::Relaxed);
    for k in 0..SEGMENT_SLOTS {
        let i = start.wrapping_add(k) % SEGMENT_SLOTS;
        let s = &SEGS[i];
        if s.state.load(Ordering::Relaxed) != FREE
            || s.state
                .compare_exchange(FREE, WRITING, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            continue;
        }
        for (w, chunk) in s.path.iter().zip(buf.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            w.store(u64::from_ne_bytes(word), Ordering::Relaxed);
        }
        s.owner.store(getpid(), Ordering::Relaxed);
        s.dev.store(dev, Ordering::Relaxed);
        s.ino.store(ino, Ordering::Relaxed);
        s.state.store(LIVE, Ordering::Release);
        return Some(SegmentEntry { slot: i as u32 });
    }
    None
}

// For ptools-shm and ptools-workerset only: hidden from the docs.
/// Puts a worker process this process has just started (a child, not yet reaped) into the
/// table, installing the handlers first if this is the first registration. Call
/// [`forget_process`] once it is reaped. A full table, or inactive cleanup, leaves it out.
#[doc(hidden)]
pub fn register_process(pid: i32) {
    if !ensure_installed() {
        return;
    }
    let fd = pidfd_open(pid).unwrap_or(-1);
    for s in &PROCS {
        if s.state
            .compare_exchange(FREE, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        s.owner.store(getpid(), Ordering::Relaxed);
        s.pid.store(pid, Ordering::Relaxed);
        s.pidfd.store(fd, Ordering::Relaxed);
        s.state.store(LIVE, Ordering::Release);
        return;
    }
    close(fd);
}

// For ptools-shm and ptools-workerset only: hidden from the docs.
/// Takes the worker `pid` out of the table once it has been reaped, closing its pidfd. A
/// pid that is not in the table (never registered, or left out) is ignored.
#[doc(hidden)]
pub fn forget_process(pid: i32) {
    let me = getpid();
    for s in &PROCS {
        if s.state.load(Ordering::Acquire) != LIVE
            || s.pid.load(Ordering::Relaxed) != pid
            || s.owner.load(Ordering::Relaxed) != me
        {
            continue;
        }
        // Claim the slot; a handler that took it first is using the descriptor.
        if s.state
            .compare_exchange(LIVE, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            close(s.pidfd.swap(-1, Ordering::Relaxed));
            s.state.store(FREE, Ordering::Release);
        }
        return;
    }
}

/// Whether `pid` is live in this process's table (for tests).
#[cfg(test)]
pub(crate) fn is_registered(pid: i32) -> bool {
    let me = getpid();
    PROCS.iter().any(|s| {
        s.state.load(Ordering::Acquire) == LIVE
            && s.pid.load(Ordering::Relaxed) == pid
            && s.owner.load(Ordering::Relaxed) == me
    })
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn pidfd_open(pid: i32) -> io::Result<i32> {
    // The descriptor is owned by the table from here on.
    crate::sys::pidfd_open(pid).map(std::os::fd::IntoRawFd::into_raw_fd)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn pidfd_open(_pid: i32) -> io::Result<i32> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

fn close(fd: i32) {
    if fd >= 0 {
        // `fd` is a pidfd owned by the table, closed once (the slot was claimed).
        crate::sys::close(fd);
    }
}

// ---- The handler: async-signal-safe calls only, no allocation, no lock. ----
//
// Every call is in `crate::sys`: nix where its wrapper is the bare call and allocates
// nothing (`stat`/`unlink`/`shm_unlink` on a `CStr`, no copy of the path; `kill`,
// `getpid`, `clock_gettime`), raw libc with the reasons there (`poll` on the table's raw
// descriptors, `pidfd_send_signal`, and `die_by`).

extern "C" fn on_signal(sig: libc::c_int) {
    let me = getpid();
    if DEPTH.fetch_add(1, Ordering::SeqCst) == 0 {
        unlink_segments(me, false);
        stop_workers(me);
        // Whatever other threads registered meanwhile.
        unlink_segments(me, false);
    } else {
        // A second signal during cleanup: finish what the first left. Workers got
        // `SIGTERM` (and, on Ctrl-C, the signal itself); they have a moment to unlink
        // their own segments before `SIGKILL`, so that moment is bounded and short.
        unlink_segments(me, true);
        wait_workers(me, SECOND_SIGNAL_GRACE_MS);
        signal_workers(me, libc::SIGKILL, true);
    }
    crate::sys::die_by(sig)
}

/// Unlinks the live segments of `me`; with `again`, also those another invocation took and
/// may not have reached yet.
fn unlink_segments(me: i32, again: bool) {
    for s in &SEGS {
        let claimed = s
            .state
            .compare_exchange(LIVE, TAKEN, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        if !(claimed || again && s.state.load(Ordering::Acquire) == TAKEN) {
            continue;
        }
        if s.owner.load(Ordering::Relaxed) != me {
            continue;
        }
        let mut path = [0u8; PATH_BYTES];
        for (w, chunk) in s.path.iter().zip(path.chunks_exact_mut(8)) {
            chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
        }
        unlink_if_same(
            &path,
            s.dev.load(Ordering::Relaxed),
            s.ino.load(Ordering::Relaxed),
        );
        s.state.store(DONE, Ordering::Release);
    }
}

fn unlink_if_same(path: &[u8; PATH_BYTES], dev: u64, ino: u64) {
    // The last byte is always 0, so this finds a NUL and makes no copy.
    if let Ok(p) = std::ffi::CStr::from_bytes_until_nul(path) {
        crate::sys::unlink_if_same(p, dev, ino);
    }
}

/// Sends `sig` to the workers of `me`: the live ones (taking them), and with `again` also
/// those taken already.
fn signal_workers(me: i32, sig: libc::c_int, again: bool) {
    for s in &PROCS {
        let claimed = s
            .state
            .compare_exchange(LIVE, TAKEN, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        let taken = claimed || s.state.load(Ordering::Acquire) == TAKEN;
        if !(claimed || (again && taken)) || s.owner.load(Ordering::Relaxed) != me {
            continue;
        }
        send(s, sig);
    }
}

fn send(s: &ProcSlot, sig: libc::c_int) {
    let fd = s.pidfd.load(Ordering::Relaxed);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if fd >= 0 {
        // A pidfd the table owns; a plain system call, async-signal-safe.
        let _ = crate::sys::pidfd_send_signal(fd, sig);
        return;
    }
    let _ = fd;
    // No pidfd: by pid. The child is not reaped until it leaves the table, so the pid is
    // still its own (up to the moment between a reap and `forget_process`). The bare
    // kill(2), async-signal-safe.
    let _ = crate::sys::kill(s.pid.load(Ordering::Relaxed), sig);
}

/// `SIGTERM` to every worker, a bounded wait, `SIGKILL` to the rest, a bounded wait.
fn stop_workers(me: i32) {
    signal_workers(me, libc::SIGTERM, false);
    wait_workers(me, WORKER_GRACE_MS);
    signal_workers(me, libc::SIGKILL, true);
    wait_workers(me, WORKER_GRACE_MS);
}

/// Waits until every taken worker of `me` has exited (its pidfd readable), or
/// `grace_ms` passed. Workers without a pidfd are not waited for.
fn wait_workers(me: i32, grace_ms: i64) {
    let deadline = now_ms().saturating_add(grace_ms);
    for s in &PROCS {
        if s.state.load(Ordering::Acquire) != TAKEN || s.owner.load(Ordering::Relaxed) != me {
            continue;
        }
        let fd = s.pidfd.load(Ordering::Relaxed);
        if fd < 0 {
            continue;
        }
        loop {
            let left = deadline - now_ms();
            if left <= 0 {
                return;
            }
            match crate::sys::poll_in(fd, left.min(i32::MAX as i64) as libc::c_int) {
                // The time ran out: the loop sees that nothing is left.
                Ok(false) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                _ => break, // exited, or an error: nothing to wait on
            }
        }
    }
}

fn now_ms() -> i64 {
    // The bare clock_gettime, async-signal-safe.
    crate::sys::now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_segment_entry_frees_its_slot_on_drop() {
        let e = register_segment("/ptools_sys_unit_a", 1, 2);
        // The test harness leaves SIGINT/SIGTERM at SIG_DFL unless told otherwise.
        let Some(e) = e else {
            assert!(!is_active());
            return;
        };
        let slot = e.slot as usize;
        assert_eq!(SEGS[slot].state.load(Ordering::Relaxed), LIVE);
        assert_eq!(SEGS[slot].owner.load(Ordering::Relaxed), getpid());
        let mut path = Vec::new();
        for w in &SEGS[slot].path {
            path.extend_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
        }
        let end = path.iter().position(|&b| b == 0).unwrap();
        #[cfg(target_os = "linux")]
        assert_eq!(&path[..end], b"/dev/shm/ptools_sys_unit_a");
        drop(e);
        assert_eq!(SEGS[slot].state.load(Ordering::Relaxed), FREE);
    }

    #[test]
    fn names_that_do_not_fit_are_not_covered() {
        let long = format!("/{}", "x".repeat(PATH_BYTES));
        assert!(register_segment(&long, 0, 0).is_none());
        assert!(register_segment("/with\0nul", 0, 0).is_none());
    }

    #[test]
    fn forgetting_an_unknown_pid_is_harmless() {
        forget_process(i32::MAX);
    }
}
