//! Internal to ptools: one owned handle for each child process that ptools starts (a pfork
//! child, a worker). Not a public API; `ptools-fork` and `ptools-workerset` use it.
//!
//! A handle is made from the pid of a child of ours that nobody has reaped ([`Child::adopt`]).
//! From then on it is the only way the process is signalled or waited for:
//!
//! - **killed at most once**: [`Child::kill`] sends `SIGKILL` the first time only, and never
//!   after the reap;
//! - **reaped exactly once**: [`Child::try_wait`] and [`Child::reap`] reap at most once and
//!   keep the status, which every later call returns again;
//! - **never a bare pid after reaping**: once reaped, the pid is only a number for
//!   messages ([`Child::pid`]); nothing is sent to it and nothing waits on it;
//! - **no zombie**: a handle dropped unreaped kills and reaps its process.
//!
//! On Linux 5.3 and later the handle holds a pidfd: signals go through it (so they can only
//! reach this very process), it is waited on with `waitid(P_PIDFD)`, and it turns readable
//! when the process ends, so callers can `poll` it ([`Child::pidfd`]). Without a pidfd (an
//! older kernel, a sandbox that refuses the call, macOS) the handle uses the pid: `kill(pid)`
//! and `waitpid(pid, WNOHANG)`, only while the process is unreaped, when its pid cannot have
//! been given to another process. (If a program reaps our child behind our back, with
//! `waitpid(-1)` or `SIGCHLD` ignored, the status is lost: [`ExitStatus::Unknown`].)
//!
//! [`Child`] is for one owner (`&mut self`, no lock: pfork's parent loop); [`Process`] is
//! the same handle behind a mutex for threads that share it (a worker's reader, its
//! watchdog and the cluster).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
#[cfg(target_os = "linux")]
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

/// How a reaped process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Exited(i32),
    /// It was ended by `signal`; `core_dumped` when the kernel wrote a core file.
    Signaled {
        /// The signal number.
        signal: i32,
        /// Whether a core dump was written.
        core_dumped: bool,
    },
    /// The status was lost: someone else reaped the process.
    Unknown,
}

/// How often a process without a pidfd is checked while one waits for it to end.
const TICK: Duration = Duration::from_millis(2);

/// After `SIGKILL`: the bound of one wait on the pidfd, so a missed wake-up costs little.
const AFTER_KILL: Duration = Duration::from_millis(100);

/// Set once `waitid(P_PIDFD)` turned out to be missing (Linux 5.3 has pidfd_open but not
/// this): then waits go by pid, and the failing call is not repeated for every child.
#[cfg(target_os = "linux")]
static NO_P_PIDFD: AtomicBool = AtomicBool::new(false);

/// A child process of ours, owned by one owner: see the [module docs](self).
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
    pidfd: Option<OwnedFd>,
    /// In the signal handler's table (`crate::signals`) until reaped.
    registered: bool,
    killed: bool,
    reaped: Option<ExitStatus>,
}

impl Child {
    /// Takes ownership of `pid`, a child of this process that nobody has reaped (and that
    /// nobody but this handle will signal or reap from now on). Opens a pidfd where the
    /// system has them; where it has not, or the call fails, the handle works by pid.
    ///
    /// One system call (`pidfd_open`) on Linux, none elsewhere.
    pub fn adopt(pid: libc::pid_t) -> Child {
        Child {
            pid,
            pidfd: pidfd_open(pid).ok(),
            registered: false,
            killed: false,
            reaped: None,
        }
    }

    /// Like [`adopt`](Child::adopt), but a pidfd is required: if none can be opened the
    /// process is killed and reaped here, and the error returned.
    pub fn adopt_with_pidfd(pid: libc::pid_t) -> io::Result<Child> {
        match pidfd_open(pid) {
            Ok(fd) => Ok(Child {
                pid,
                pidfd: Some(fd),
                registered: false,
                killed: false,
                reaped: None,
            }),
            Err(e) => {
                // Dropping the pid-only handle kills and reaps the process.
                drop(Child::without_pidfd(pid));
                Err(e)
            }
        }
    }

    fn without_pidfd(pid: libc::pid_t) -> Child {
        Child {
            pid,
            pidfd: None,
            registered: false,
            killed: false,
            reaped: None,
        }
    }

    /// Puts the process into the `SIGINT`/`SIGTERM` cleanup table
    /// ([`crate::signals::register_process`]) until it is reaped, when the handle takes it
    /// out again. For workers only: a pfork child dies with its parent by itself.
    pub fn register_with_signals(&mut self) {
        if !self.registered && self.reaped.is_none() {
            crate::signals::register_process(self.pid);
            self.registered = true;
        }
    }

    /// The process id: for messages and for the user, never to signal or wait by.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// The pidfd, which turns readable (`POLLIN`) once the process has ended; `None` without
    /// pidfd support. Open as long as the handle lives.
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        self.pidfd.as_ref().map(AsFd::as_fd)
    }

    /// The status, if the process has been reaped; no system call.
    pub fn status(&self) -> Option<ExitStatus> {
        self.reaped
    }

    /// Whether [`kill`](Child::kill) has sent its signal.
    pub fn was_killed(&self) -> bool {
        self.killed
    }

    /// Sends `SIGKILL`, once: a second call, or a call after the reap, does nothing. Returns
    /// whether this call sent it.
    pub fn kill(&mut self) -> bool {
        if self.killed || self.reaped.is_some() {
            return false;
        }
        self.killed = true;
        send_kill(self.pid, self.pidfd.as_ref().map(AsRawFd::as_raw_fd));
        true
    }

    /// Reaps the process if it has ended; `None` while it runs. The status is kept: every
    /// later call returns it again, without a system call.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.reaped.is_some() {
            return self.reaped;
        }
        let status = match wait_nohang(self.pid, self.pidfd.as_ref().map(AsRawFd::as_raw_fd)) {
            Ok(None) => return None,
            Ok(Some(s)) => s,
            // ECHILD: reaped elsewhere; the status is lost.
            Err(_) => ExitStatus::Unknown,
        };
        self.reaped = Some(status);
        if self.registered {
            crate::signals::forget_process(self.pid);
        }
        self.reaped
    }

    /// Whether the process has ended (reaped or not), without reaping it.
    pub fn has_ended(&self) -> bool {
        self.reaped.is_some() || ended(self.pid, self.pidfd())
    }

    /// Reaps the process: waits up to `grace` for it to end, then kills it and waits.
    pub fn reap(&mut self, grace: Duration) -> ExitStatus {
        reap_with(grace, self)
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        // Never leave a zombie: a handle dropped unreaped (an error path) kills and reaps.
        if self.reaped.is_none() {
            self.reap(Duration::ZERO);
        }
    }
}

/// A [`Child`] that threads share (`&self`): each call takes an uncontended lock for its
/// few instructions; waits happen outside it.
#[derive(Debug)]
pub struct Process {
    pid: libc::pid_t,
    /// The child's pidfd, open as long as `child` is (it closes it only when dropped).
    pidfd: Option<RawFd>,
    child: Mutex<Child>,
}

impl Process {
    /// Wraps a handle for sharing.
    pub fn new(child: Child) -> Process {
        Process {
            pid: child.pid,
            pidfd: child.pidfd.as_ref().map(AsRawFd::as_raw_fd),
            child: Mutex::new(child),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Child> {
        self.child.lock()
    }

    /// See [`Child::pid`].
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// See [`Child::pidfd`].
    pub fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        // SAFETY: the descriptor belongs to `self.child`, which closes it only when dropped,
        // so it stays open for the borrow of `self`.
        self.pidfd.map(|fd| unsafe { BorrowedFd::borrow_raw(fd) })
    }

    /// See [`Child::register_with_signals`].
    pub fn register_with_signals(&self) {
        self.lock().register_with_signals();
    }

    /// See [`Child::kill`].
    pub fn kill(&self) -> bool {
        self.lock().kill()
    }

    /// See [`Child::try_wait`].
    pub fn try_wait(&self) -> Option<ExitStatus> {
        self.lock().try_wait()
    }

    /// See [`Child::has_ended`].
    pub fn has_ended(&self) -> bool {
        self.lock().has_ended()
    }

    /// See [`Child::reap`]; the lock is not held while waiting.
    pub fn reap(&self, grace: Duration) -> ExitStatus {
        let mut this = self;
        reap_with(grace, &mut this)
    }
}

/// What [`reap_with`] needs of a handle: the two steps, each taking what lock it needs.
trait Steps {
    fn try_wait(&mut self) -> Option<ExitStatus>;
    fn kill(&mut self);
    /// The pidfd to sleep on, if any.
    fn pidfd(&self) -> Option<BorrowedFd<'_>>;
}

impl Steps for Child {
    fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        Child::pidfd(self)
    }
    fn try_wait(&mut self) -> Option<ExitStatus> {
        Child::try_wait(self)
    }
    fn kill(&mut self) {
        Child::kill(self);
    }
}

impl Steps for &Process {
    fn pidfd(&self) -> Option<BorrowedFd<'_>> {
        Process::pidfd(self)
    }
    fn try_wait(&mut self) -> Option<ExitStatus> {
        Process::try_wait(self)
    }
    fn kill(&mut self) {
        Process::kill(self);
    }
}

/// Waits up to `grace` for the process to end, then kills it and waits; the pidfd (if any)
/// only to sleep on, the lock (if any) only inside each step.
fn reap_with(grace: Duration, h: &mut impl Steps) -> ExitStatus {
    if let Some(s) = h.try_wait() {
        return s;
    }
    if !grace.is_zero() {
        let deadline = Instant::now() + grace;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            wait_for_end(h.pidfd(), left);
            if let Some(s) = h.try_wait() {
                return s;
            }
        }
    }
    h.kill();
    loop {
        if let Some(s) = h.try_wait() {
            return s;
        }
        wait_for_end(h.pidfd(), AFTER_KILL);
    }
}

/// Blocks until the pidfd is readable or `at_most` passed; without a pidfd, one tick.
fn wait_for_end(pidfd: Option<BorrowedFd<'_>>, at_most: Duration) {
    let Some(fd) = pidfd else {
        std::thread::sleep(at_most.min(TICK));
        return;
    };
    let ms = at_most.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
    let _ = poll_in(fd, ms);
}

/// `poll` for `POLLIN` on one descriptor; whether it is ready (an error counts as not).
fn poll_in(fd: BorrowedFd<'_>, ms: i32) -> bool {
    crate::sys::wait_readable(fd, ms)
}

#[cfg(target_os = "linux")]
fn pidfd_open(pid: libc::pid_t) -> io::Result<OwnedFd> {
    // `pid` is our unreaped child, so it names that process and no other.
    crate::sys::pidfd_open(pid)
}

#[cfg(not(target_os = "linux"))]
fn pidfd_open(_pid: libc::pid_t) -> io::Result<OwnedFd> {
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

/// `SIGKILL` through the pidfd, or by pid where there is none (or the call is missing).
/// The caller guarantees that the process is not reaped.
fn send_kill(pid: libc::pid_t, pidfd: Option<RawFd>) {
    #[cfg(target_os = "linux")]
    if let Some(fd) = pidfd {
        // Our own pidfd names exactly this process even after it ended, so the signal can
        // reach no other. ESRCH (already ended) is fine; ENOSYS falls back to kill.
        match crate::sys::pidfd_send_signal(fd, libc::SIGKILL) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {}
            _ => return,
        }
    }
    let _ = pidfd;
    // The process is our child and unreaped (the caller checks), so the pid is still its
    // own; ESRCH cannot happen for a zombie.
    let _ = crate::sys::kill(pid, libc::SIGKILL);
}

/// One non-blocking wait: the status if the process ended (now reaped), `None` while it
/// runs, an error (ECHILD) if it is not ours to wait for any more.
fn wait_nohang(pid: libc::pid_t, pidfd: Option<RawFd>) -> io::Result<Option<ExitStatus>> {
    #[cfg(target_os = "linux")]
    if let Some(fd) = pidfd
        && !NO_P_PIDFD.load(Ordering::Relaxed)
    {
        match waitid_pidfd(fd) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                NO_P_PIDFD.store(true, Ordering::Relaxed);
            }
            r => return r,
        }
    }
    let _ = pidfd;
    // `pid` is our unreaped child, so the pid cannot have been reused by another process.
    Ok(crate::sys::waitpid_nohang(pid)?.map(decode_wait_status))
}

#[cfg(target_os = "linux")]
fn waitid_pidfd(fd: RawFd) -> io::Result<Option<ExitStatus>> {
    let (pid, code, status) = crate::sys::waitid_pidfd_nohang(fd)?;
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(match code {
        libc::CLD_EXITED => ExitStatus::Exited(status),
        libc::CLD_KILLED => ExitStatus::Signaled {
            signal: status,
            core_dumped: false,
        },
        libc::CLD_DUMPED => ExitStatus::Signaled {
            signal: status,
            core_dumped: true,
        },
        _ => ExitStatus::Unknown,
    }))
}

/// Decodes a raw `waitpid` status (`WIFEXITED` and friends).
fn decode_wait_status(status: libc::c_int) -> ExitStatus {
    if libc::WIFEXITED(status) {
        ExitStatus::Exited(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        ExitStatus::Signaled {
            signal: libc::WTERMSIG(status),
            core_dumped: libc::WCOREDUMP(status),
        }
    } else {
        // Stopped and continued are not reported without WUNTRACED/WCONTINUED.
        ExitStatus::Unknown
    }
}

/// Whether the unreaped process has ended, without reaping it.
fn ended(pid: libc::pid_t, pidfd: Option<BorrowedFd<'_>>) -> bool {
    if let Some(fd) = pidfd {
        return poll_in(fd, 0);
    }
    // WNOWAIT leaves the process unreaped; `pid` is our unreaped child, so it names no
    // other process.
    match crate::sys::waitid_pid_peek(pid) {
        Ok((p, _, _)) => p != 0,
        // ECHILD: someone else reaped it, so it has ended.
        Err(e) => e.raw_os_error() == Some(libc::ECHILD),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forks a child that runs `body`, which must only make async-signal-safe calls and
    /// never return (the test harness has other threads).
    fn fork_child(body: fn() -> !) -> libc::pid_t {
        // SAFETY: the child only runs `body`, which makes async-signal-safe calls and leaves
        // with `_exit` or by a signal.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            body()
        }
        pid
    }

    fn exit_7() -> ! {
        // SAFETY: _exit is async-signal-safe and always sound.
        unsafe { libc::_exit(7) }
    }

    fn pause_forever() -> ! {
        loop {
            // SAFETY: pause is async-signal-safe; SIGKILL ends the loop.
            unsafe { libc::pause() };
        }
    }

    fn abort_now() -> ! {
        // SAFETY: raise and _exit are async-signal-safe; SIGUSR1's default action ends the
        // process before `_exit` is reached.
        unsafe {
            libc::raise(libc::SIGUSR1);
            libc::_exit(99)
        }
    }

    /// The process state letter from `/proc/<pid>/stat` (`Z` for a zombie); `None` if there
    /// is no such process.
    #[cfg(target_os = "linux")]
    fn proc_state(pid: libc::pid_t) -> Option<char> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the command name in parentheses, which may itself contain ')'.
        let rest = &s[s.rfind(')')? + 1..];
        rest.trim_start().chars().next()
    }

    /// Whether `pid` is still a child of ours that could be waited for (zombie or running):
    /// asked with `WNOWAIT`, so nothing is reaped.
    fn still_our_child(pid: libc::pid_t) -> bool {
        // SAFETY: `siginfo_t` is plain data for which all zeroes is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: waitid with a valid out-parameter; WNOWAIT reaps nothing.
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ECHILD)
    }

    fn each_kind(body: fn() -> !, test: impl Fn(Child)) {
        test(Child::adopt(fork_child(body)));
        test(Child::without_pidfd(fork_child(body)));
    }

    #[test]
    fn an_exit_code_is_reported_and_reaped_exactly_once() {
        each_kind(exit_7, |mut c| {
            let pid = c.pid();
            assert_eq!(c.reap(Duration::from_secs(60)), ExitStatus::Exited(7));
            assert!(!still_our_child(pid));
            // The second call returns the kept status; the first left nothing to wait for.
            assert_eq!(c.try_wait(), Some(ExitStatus::Exited(7)));
            assert_eq!(c.reap(Duration::ZERO), ExitStatus::Exited(7));
            assert_eq!(c.status(), Some(ExitStatus::Exited(7)));
            assert!(c.has_ended());
            // Never killed: it exited by itself within the grace.
            assert!(!c.was_killed());
        });
    }

    #[test]
    fn a_signal_is_reported() {
        each_kind(abort_now, |mut c| {
            assert_eq!(
                c.reap(Duration::from_secs(60)),
                ExitStatus::Signaled {
                    signal: libc::SIGUSR1,
                    core_dumped: false
                }
            );
        });
    }

    #[test]
    fn kill_is_sent_at_most_once_and_never_after_the_reap() {
        each_kind(pause_forever, |mut c| {
            assert!(c.try_wait().is_none());
            assert!(!c.has_ended());
            assert!(c.kill());
            assert!(!c.kill(), "a second kill sends nothing");
            let status = c.reap(Duration::from_secs(60));
            assert_eq!(
                status,
                ExitStatus::Signaled {
                    signal: libc::SIGKILL,
                    core_dumped: false
                }
            );
            assert!(!still_our_child(c.pid()));
        });
        // A process reaped without a kill: a kill after the reap sends nothing either (its
        // pid may belong to another process by now).
        each_kind(exit_7, |mut c| {
            assert_eq!(c.reap(Duration::from_secs(60)), ExitStatus::Exited(7));
            assert!(!c.kill());
            assert!(!c.was_killed());
        });
    }

    #[test]
    fn a_child_reaped_behind_the_handle_is_unknown_and_never_signalled() {
        each_kind(exit_7, |mut c| {
            let mut status = 0;
            // SAFETY: waitpid with a valid out-parameter on our own child: what a program
            // calling waitpid(-1) would do behind the handle's back.
            let rc = unsafe { libc::waitpid(c.pid(), &mut status, 0) };
            assert_eq!(rc, c.pid());
            // Its pid may belong to another process now: the handle must not use it.
            assert!(c.has_ended());
            assert_eq!(c.try_wait(), Some(ExitStatus::Unknown));
            assert!(!c.kill());
            assert_eq!(c.reap(Duration::ZERO), ExitStatus::Unknown);
        });
    }

    #[test]
    fn has_ended_does_not_reap() {
        each_kind(exit_7, |mut c| {
            while !c.has_ended() {
                std::thread::sleep(TICK);
            }
            assert!(c.status().is_none());
            assert!(still_our_child(c.pid()), "still a zombie to reap");
            #[cfg(target_os = "linux")]
            assert_eq!(proc_state(c.pid()), Some('Z'));
            assert_eq!(c.try_wait(), Some(ExitStatus::Exited(7)));
        });
    }

    #[test]
    fn dropping_an_unreaped_handle_leaves_no_zombie() {
        each_kind(pause_forever, |c| {
            let pid = c.pid();
            #[cfg(target_os = "linux")]
            assert!(matches!(proc_state(pid), Some(s) if s != 'Z'));
            drop(c);
            assert!(!still_our_child(pid));
            #[cfg(target_os = "linux")]
            assert_ne!(proc_state(pid), Some('Z'));
        });
    }

    #[test]
    fn a_shared_handle_behaves_the_same() {
        let p = Process::new(Child::adopt(fork_child(pause_forever)));
        #[cfg(target_os = "linux")]
        assert!(p.pidfd().is_some());
        let pid = p.pid();
        assert!(p.try_wait().is_none());
        // The grace passes; then the reap kills.
        let status = p.reap(Duration::from_millis(1));
        assert_eq!(
            status,
            ExitStatus::Signaled {
                signal: libc::SIGKILL,
                core_dumped: false
            }
        );
        assert!(!p.kill());
        assert_eq!(p.try_wait(), Some(status));
        assert!(p.has_ended());
        assert!(!still_our_child(pid));

        let p = Process::new(Child::adopt(fork_child(pause_forever)));
        let pid = p.pid();
        drop(p);
        assert!(!still_our_child(pid));
    }

    #[test]
    fn a_registered_process_leaves_the_signal_table_when_reaped() {
        let mut c = Child::adopt(fork_child(pause_forever));
        let pid = c.pid();
        assert!(
            !crate::signals::is_registered(pid),
            "not registered by adopt"
        );
        c.register_with_signals();
        // Inactive cleanup (opted out by the environment) registers nothing.
        assert_eq!(
            crate::signals::is_registered(pid),
            crate::signals::is_active()
        );
        c.kill();
        c.reap(Duration::from_secs(60));
        assert!(!crate::signals::is_registered(pid));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn adopt_with_pidfd_has_one() {
        let mut c = Child::adopt_with_pidfd(fork_child(exit_7)).unwrap();
        assert!(c.pidfd().is_some());
        assert_eq!(c.reap(Duration::from_secs(60)), ExitStatus::Exited(7));
    }

    #[test]
    fn raw_statuses_decode() {
        // The traditional encoding Linux and macOS share (`<sys/wait.h>`).
        assert_eq!(decode_wait_status(3 << 8), ExitStatus::Exited(3));
        assert_eq!(
            decode_wait_status(libc::SIGSEGV | 0x80),
            ExitStatus::Signaled {
                signal: libc::SIGSEGV,
                core_dumped: true
            }
        );
    }
}
