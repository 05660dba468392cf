//! The parent's side of a run: fork up to `max_alive` children, read every pipe as data
//! arrives (one `poll` over all pipes and pidfds, so no child ever blocks on a full pipe),
//! reap each child through its own handle (`ptools_sys::process::Child`: by pidfd, killed
//! at most once, reaped exactly once, killed and reaped if dropped early), enforce the
//! timeout, and turn what came back into one outcome per child.
//!
//! A child is finished when it has been reaped *and* its pipe has been read to the end or,
//! after reaping, drained of what is there: a grandchild that inherited the write end can
//! keep the pipe open, but everything the child wrote is in the pipe once it is a zombie.
//! Once a child's whole frame is in and it has a pidfd, only the pidfd is watched: the
//! child writes nothing more, and the parent then wakes once for its end, as the raw
//! `read`-then-`waitpid` loop does, instead of twice (end of file, then the zombie).

use std::os::fd::{AsFd, OwnedFd};

use ptools_sys::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ChildError;
use crate::frame::{self, Progress, Reader, Received};
use crate::scratch::{Scratch, ScratchVec};
use crate::sys;
use crate::{Pfork, child};

/// Poll tick when a child has no pidfd (macOS, Linux before 5.3): how often its exit is
/// checked with `waitpid(WNOHANG)`.
const TICK: Duration = Duration::from_millis(2);

/// Why the parent killed a child, which decides how it is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Killed {
    TimedOut,
    Cancelled,
    /// The reader refused its frame; the reason is in the reader.
    Refused,
}

/// A child that has been forked and not yet finished.
struct Running {
    index: usize,
    /// The process: its pidfd (readable when it has ended; `None` without pidfd support)
    /// and, once reaped, its status.
    proc: Child,
    /// Read end of the child's pipe; `None` once read to the end.
    pipe: Option<OwnedFd>,
    reader: Reader,
    killed: Option<Killed>,
    /// The last poll saw data (or end of file) on the pipe.
    pipe_ready: bool,
    /// The last poll saw the pidfd readable: the child has ended.
    exit_ready: bool,
}

/// What a poll entry watches.
#[derive(Debug, Clone, Copy)]
enum Ready {
    Pipe,
    Exit,
}

impl Running {
    fn kill(&mut self, why: Killed) {
        if self.proc.status().is_none() && self.killed.is_none() {
            self.proc.kill();
            self.killed = Some(why);
        }
    }

    /// Reads what the pipe holds now; on end of file or a read error the pipe is closed.
    fn read_pipe(&mut self) {
        let Some(fd) = &self.pipe else { return };
        match self.reader.read_from(fd.as_fd()) {
            Ok(Progress::Pending) => {}
            Ok(Progress::Eof) => self.pipe = None,
            // No read error is expected on a pipe (EAGAIN and EINTR are the reader's), but
            // the pipe is never closed under a live child: on Linux the child keeps its copy
            // of the read end, so a write it is blocked in would never fail with EPIPE. It
            // is killed, and its outcome is its exit status.
            Err(_) => {
                self.pipe = None;
                self.kill(Killed::Refused);
            }
            Ok(Progress::Refused(_)) => {
                self.pipe = None;
                self.kill(Killed::Refused);
            }
        }
    }

    /// Whether only the child's end is still to come: its whole frame is in, and its pidfd
    /// will say when it has ended. A child writes nothing after its frame, so its pipe is
    /// no longer watched: the parent wakes once, when the child has ended, instead of at the
    /// pipe's end of file and again when the child is a zombie. The pipe is drained at the
    /// reap (of anything a grandchild wrote meanwhile) and closed.
    fn waits_for_exit_only(&self) -> bool {
        self.reader.has_frame() && self.proc.pidfd().is_some() && self.proc.status().is_none()
    }

    fn finished(&self) -> bool {
        self.proc.status().is_some() && self.pipe.is_none()
    }
}

/// Runs `n` children of `f` under the options `opts`; outcome `i` belongs to child `i`.
/// The caller has checked the thread and nesting policies.
pub(crate) fn run<R, F>(opts: &Pfork, n: usize, f: &F) -> Vec<Result<R, ChildError>>
where
    F: Fn(usize) -> R,
    R: Serialize + DeserializeOwned,
{
    let mut outcomes: Vec<Option<Result<R, ChildError>>> = (0..n).map(|_| None).collect();
    let max_alive = opts.max_alive.unwrap_or(n).max(1);
    let deadline = opts.timeout.map(|t| Instant::now() + t);
    let parent = sys::getpid();
    // The state of the children alive, written between forks, in memory they do not share
    // (see `scratch`): on the heap, every fork would make the parent's next writes to it
    // copy pages.
    let slots = max_alive.min(n);
    let mut scratch = Scratch::new(
        ScratchVec::<Running>::bytes_for(slots)
            .saturating_add(ScratchVec::<sys::PollFd<'static>>::bytes_for(2 * slots))
            .saturating_add(ScratchVec::<(usize, Ready, bool)>::bytes_for(2 * slots)),
    );
    let mut carve = scratch.carve();
    let mut alive: ScratchVec<'_, Running> = carve.vec(slots);
    // The poll list's one buffer, empty between passes (its entries borrow `alive`).
    let mut poll_buf: ScratchVec<'_, sys::PollFd<'static>> = carve.vec(2 * slots);
    // Which child, and which of its descriptors, each poll entry is, and whether it saw an
    // event.
    let mut owners: ScratchVec<'_, (usize, Ready, bool)> = carve.vec(2 * slots);
    let mut next = 0;
    // Set when the run must stop starting children (fork failed, or the deadline passed).
    let mut stop: Option<ChildError> = None;

    // Whatever the parent buffered is written now, so that no child inherits it.
    flush_parent_output();

    loop {
        // The deadline is checked before starting more children, so none is started late.
        let mut wait_ms: libc::c_int = -1;
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                wait_ms = ms_ceil(left);
            } else if stop.is_none() {
                stop = Some(ChildError::Cancelled);
                alive.iter_mut().for_each(|c| c.kill(Killed::TimedOut));
            }
        }
        while stop.is_none() && next < n && alive.len() < max_alive {
            match spawn(f, next, parent, opts.max_result_bytes) {
                Ok(running) => alive.push(running),
                Err(errno) => {
                    outcomes[next] = Some(Err(ChildError::ForkFailed { errno }));
                    stop = Some(ChildError::Cancelled);
                    alive.iter_mut().for_each(|c| c.kill(Killed::Cancelled));
                }
            }
            next += 1;
        }
        if alive.is_empty() {
            break;
        }

        // A killed child, or one without a pidfd, is checked with waitpid on a short tick.
        if alive
            .iter()
            .any(|c| c.proc.pidfd().is_none() || c.killed.is_some())
        {
            wait_ms = if wait_ms < 0 {
                ms_ceil(TICK)
            } else {
                wait_ms.min(ms_ceil(TICK))
            };
        }

        let mut pollfds: ScratchVec<'_, sys::PollFd<'_>> = poll_buf.recycle();
        owners.clear();
        for (k, c) in alive.iter().enumerate() {
            if let Some(fd) = &c.pipe
                && !c.waits_for_exit_only()
            {
                pollfds.push(sys::poll_in(fd.as_fd()));
                owners.push((k, Ready::Pipe, false));
            }
            if let (Some(fd), None) = (c.proc.pidfd(), c.proc.status()) {
                pollfds.push(sys::poll_in(fd));
                owners.push((k, Ready::Exit, false));
            }
        }
        let polled = sys::poll(&mut pollfds, wait_ms);
        if polled.is_ok() {
            for (pfd, owner) in pollfds.iter().zip(&mut owners) {
                owner.2 = sys::poll_saw(pfd);
            }
        }
        // The entries borrow `alive`; hand the buffer back before marking the children.
        poll_buf = pollfds.recycle();
        match polled {
            Ok(_) => {
                for &(k, ready, saw) in &owners {
                    if saw {
                        match ready {
                            Ready::Pipe => alive[k].pipe_ready = true,
                            Ready::Exit => alive[k].exit_ready = true,
                        }
                    }
                }
            }
            Err(_) => {
                // A poll error (ENOMEM): check everything on the tick instead.
                std::thread::sleep(TICK);
                for c in &mut alive {
                    (c.pipe_ready, c.exit_ready) = (true, true);
                }
            }
        }

        // Read the pipes that have data, reap the children that have ended. Without a pidfd
        // (or once killed) a child is checked with waitpid on every pass.
        let mut k = 0;
        while k < alive.len() {
            let c = &mut alive[k];
            if std::mem::take(&mut c.pipe_ready) {
                c.read_pipe();
            }
            let check =
                std::mem::take(&mut c.exit_ready) || c.proc.pidfd().is_none() || c.killed.is_some();
            if c.proc.status().is_none() && check {
                // Reaped once; a child someone else reaped (SIGCHLD set to SIG_IGN, or a
                // waitpid(-1) elsewhere) counts as reaped with `ExitStatus::Unknown`.
                c.proc.try_wait();
            }
            if c.proc.status().is_some() && c.pipe.is_some() {
                // Reaped: all the child wrote is in the pipe. Take it (unless its whole frame
                // is in already: anything after it is not ours), and stop waiting for an end
                // of file that a grandchild holding the write end could delay.
                if !c.reader.has_frame() {
                    c.read_pipe();
                }
                c.pipe = None;
            }
            if c.finished() {
                let c = alive.swap_remove(k);
                let index = c.index;
                outcomes[index] = Some(outcome(c));
            } else {
                k += 1;
            }
        }
    }

    let rest = stop.unwrap_or(ChildError::Cancelled);
    outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(rest.clone())))
        .collect()
}

/// Forks child `index`; in the child this never returns. `Err(errno)` if the pipe or the
/// fork failed.
///
/// Not inlined into the parent loop, whose stack frame is large: the child then runs on
/// this frame and the ones below it only, and every page of stack a child writes is a
/// page fault.
#[inline(never)]
fn spawn<R, F>(f: &F, index: usize, parent: sys::pid_t, max: u64) -> Result<Running, i32>
where
    F: Fn(usize) -> R,
    R: Serialize,
{
    let errno = |e: std::io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    let (read, write) = sys::pipe().map_err(errno)?;
    // SAFETY: the caller checked the thread policy (`Pfork::check`): either this process is
    // single-threaded, or the user opted in with `allow_threads` and took on its contract.
    // The child runs `child::run`, which never returns.
    match unsafe { sys::fork() }.map_err(errno)? {
        sys::Forked::Child => {
            // The read end is the parent's. On Linux the child leaves its copy open until it
            // exits, which saves it a system call and a page of libc's code (see
            // `sys::fork`): the kernel kills the child if the parent dies
            // (PR_SET_PDEATHSIG), so a write blocked on a full pipe, which its own read end
            // would keep from failing with EPIPE, cannot outlive the parent. Elsewhere there
            // is no such signal, and the copy is closed.
            if cfg!(target_os = "linux") {
                std::mem::forget(read);
            } else {
                drop(read);
            }
            child::run(f, index, write, parent, max)
        }
        sys::Forked::Parent(pid) => {
            drop(write);
            // The child's only handle from here: one pidfd_open, as before.
            Ok(Running {
                index,
                proc: Child::adopt(pid),
                pipe: Some(read),
                reader: Reader::new(max),
                killed: None,
                pipe_ready: false,
                exit_ready: false,
            })
        }
    }
}

/// Turns what a finished child left into its outcome.
fn outcome<R: DeserializeOwned>(c: Running) -> Result<R, ChildError> {
    decide(
        c.killed,
        c.proc.status().unwrap_or(ExitStatus::Unknown),
        c.reader.received(),
        c.reader.cap(),
    )
}

/// The outcome of a child from why the parent killed it (if it did), its wait status, what
/// it sent and the result cap. In order: a kill by the parent (a refused frame says why),
/// then a report the child sent (panic, over the cap, encoding error), then the exit status,
/// then the result, or why there is none.
fn decide<R: DeserializeOwned>(
    killed: Option<Killed>,
    status: ExitStatus,
    received: Received<'_>,
    cap: u64,
) -> Result<R, ChildError> {
    match killed {
        Some(Killed::TimedOut) => return Err(ChildError::TimedOut),
        Some(Killed::Cancelled) => return Err(ChildError::Cancelled),
        Some(Killed::Refused) | None => {}
    }
    match received {
        Received::Refused(e) => return Err(e.clone()),
        // A panic report wins over the exit status: with `panic = "abort"` the child sends it
        // and then dies of SIGABRT.
        Received::Frame {
            tag: frame::TAG_PANIC,
            payload,
        } => {
            let (message, location) = postcard::from_bytes::<(String, Option<String>)>(payload)
                .unwrap_or_else(|_| ("(unreadable panic message)".to_owned(), None));
            return Err(ChildError::Panicked { message, location });
        }
        Received::Frame {
            tag: frame::TAG_TOO_LARGE,
            payload,
        } => {
            // The reader accepts only 8-byte size reports.
            let len = payload
                .try_into()
                .map(u64::from_le_bytes)
                .unwrap_or(u64::MAX);
            return Err(ChildError::ResultTooLarge { len, max: cap });
        }
        Received::Frame {
            tag: frame::TAG_ENCODE,
            payload,
        } => {
            return Err(ChildError::Encode(
                String::from_utf8_lossy(payload).into_owned(),
            ));
        }
        _ => {}
    }
    match status {
        ExitStatus::Signaled {
            signal,
            core_dumped,
        } => Err(ChildError::Signaled {
            signal,
            core_dumped,
        }),
        // Unknown: someone else reaped the child and its status is lost; the outcome is
        // then decided from its frame alone, as after a clean exit.
        ExitStatus::Exited(0) | ExitStatus::Unknown => match received {
            Received::Frame {
                tag: frame::TAG_OK,
                payload,
            } => postcard::from_bytes(payload).map_err(|e| ChildError::Decode(e.to_string())),
            Received::Incomplete(e) => Err(ChildError::BadFrame(e)),
            // Reports (and refusals) were handled above; the reader accepts no other kinds.
            Received::Frame { .. } | Received::Nothing | Received::Refused(_) => {
                Err(ChildError::NoResult)
            }
        },
        ExitStatus::Exited(code) => Err(ChildError::Exited { code }),
    }
}

/// Flushes Rust's stdout and C stdio, so a child never inherits (and prints again) output the
/// parent buffered.
fn flush_parent_output() {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    sys::flush_c_stdio();
}

/// Milliseconds in `d`, rounded up so a deadline is never polled early, and capped.
fn ms_ceil(d: Duration) -> libc::c_int {
    let ms = d.as_nanos().div_ceil(1_000_000);
    libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
}

#[cfg(test)]
mod test {
    use super::*;

    fn exited(code: i32) -> ExitStatus {
        ExitStatus::Exited(code)
    }
    fn signaled(signal: i32, core_dumped: bool) -> ExitStatus {
        ExitStatus::Signaled {
            signal,
            core_dumped,
        }
    }

    fn ok_frame(v: u32) -> Vec<u8> {
        postcard::to_allocvec(&v).unwrap()
    }

    #[test]
    fn a_kill_by_the_parent_wins() {
        let ok = ok_frame(5);
        let frame = Received::Frame {
            tag: frame::TAG_OK,
            payload: &ok[..],
        };
        let sig = signaled(libc::SIGKILL, false);
        assert_eq!(
            decide::<u32>(Some(Killed::TimedOut), sig, frame.clone(), 10),
            Err(ChildError::TimedOut)
        );
        assert_eq!(
            decide::<u32>(Some(Killed::Cancelled), sig, Received::Nothing, 10),
            Err(ChildError::Cancelled)
        );
        let refused = ChildError::ResultTooLarge { len: 99, max: 10 };
        assert_eq!(
            decide::<u32>(Some(Killed::Refused), sig, Received::Refused(&refused), 10),
            Err(refused.clone())
        );
    }

    #[test]
    fn a_panic_report_wins_over_the_signal_of_panic_abort() {
        let report =
            postcard::to_allocvec(&("boom".to_owned(), Some("x.rs:1:2".to_owned()))).unwrap();
        let got = decide::<u32>(
            None,
            signaled(libc::SIGABRT, true),
            Received::Frame {
                tag: frame::TAG_PANIC,
                payload: &report,
            },
            10,
        );
        assert_eq!(
            got,
            Err(ChildError::Panicked {
                message: "boom".into(),
                location: Some("x.rs:1:2".into())
            })
        );
        let got = decide::<u32>(
            None,
            exited(101),
            Received::Frame {
                tag: frame::TAG_PANIC,
                payload: &b"\xff"[..],
            },
            10,
        );
        assert!(matches!(
            got,
            Err(ChildError::Panicked { location: None, .. })
        ));
    }

    #[test]
    fn exit_status_then_result() {
        let ok = ok_frame(5);
        let frame = Received::Frame {
            tag: frame::TAG_OK,
            payload: &ok[..],
        };
        assert_eq!(decide::<u32>(None, exited(0), frame.clone(), 10), Ok(5));
        // A complete result does not hide a crash after it.
        assert_eq!(
            decide::<u32>(None, signaled(libc::SIGSEGV, false), frame.clone(), 10),
            Err(ChildError::Signaled {
                signal: libc::SIGSEGV,
                core_dumped: false
            })
        );
        assert_eq!(
            decide::<u32>(None, exited(3), frame.clone(), 10),
            Err(ChildError::Exited { code: 3 })
        );
        assert_eq!(
            decide::<u32>(None, exited(0), Received::Nothing, 10),
            Err(ChildError::NoResult)
        );
        // Part of a frame: a malformed frame after a clean exit, but the exit status of a
        // child that died while sending.
        let cut = crate::error::FrameError::TruncatedPayload {
            received: 3,
            announced: 1 << 40,
        };
        assert_eq!(
            decide::<u32>(None, exited(0), Received::Incomplete(cut.clone()), 10),
            Err(ChildError::BadFrame(cut.clone()))
        );
        assert_eq!(
            decide::<u32>(None, exited(4), Received::Incomplete(cut), 10),
            Err(ChildError::Exited { code: 4 })
        );
        assert!(matches!(
            decide::<bool>(
                None,
                exited(0),
                Received::Frame {
                    tag: frame::TAG_OK,
                    payload: &[7][..]
                },
                10
            ),
            Err(ChildError::Decode(_))
        ));
        let len = 77u64.to_le_bytes();
        assert_eq!(
            decide::<u32>(
                None,
                exited(0),
                Received::Frame {
                    tag: frame::TAG_TOO_LARGE,
                    payload: &len[..]
                },
                10
            ),
            Err(ChildError::ResultTooLarge { len: 77, max: 10 })
        );
        assert_eq!(
            decide::<u32>(
                None,
                exited(0),
                Received::Frame {
                    tag: frame::TAG_ENCODE,
                    payload: &b"nope"[..]
                },
                10
            ),
            Err(ChildError::Encode("nope".into()))
        );
    }
}
