//! The raw baseline both pfork benches measure against: fork / pipe / waitpid written
//! with libc, as a careful C programmer would.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// The baseline: what a careful C programmer writes. Fork `n` children, each writes its
/// 8-byte result into its own pipe and `_exit`s; the parent reads each pipe and reaps each
/// child by pid. No framing, no encoding, no timeout, no panic handling, no parent-death
/// signal, no thread check.
pub(crate) fn raw_fork(n: usize) -> Vec<u64> {
    let mut children = Vec::with_capacity(n);
    for i in 0..n {
        let mut fds = [-1; 2];
        // SAFETY: `fds` is a valid, writable array of two ints.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: pipe2 just returned these descriptors; nothing else owns them.
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: the bench process is single-threaded where it forks (criterion measures on
        // the main thread); the child only calls write and _exit, both async-signal-safe.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let v = (i as u64).to_le_bytes();
            // SAFETY: `v` is valid for 8 bytes; _exit never returns.
            unsafe {
                libc::write(w.as_raw_fd(), v.as_ptr().cast(), 8);
                libc::_exit(0);
            }
        }
        drop(w);
        children.push((pid, r));
    }
    children
        .into_iter()
        .map(|(pid, r)| {
            let mut v = [0u8; 8];
            // SAFETY: `v` is valid for writes of 8 bytes. The 8 bytes come in one write,
            // which a pipe delivers whole (below PIPE_BUF).
            let got = unsafe { libc::read(r.as_raw_fd(), v.as_mut_ptr().cast(), 8) };
            assert_eq!(got, 8);
            let mut status = 0;
            // SAFETY: `status` is a valid int; `pid` is our own child.
            assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
            u64::from_le_bytes(v)
        })
        .collect()
}
