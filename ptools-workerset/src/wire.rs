//! Frames on a byte stream, and the small transport trait they travel over.
//!
//! A frame is a little-endian `u32` body length followed by the body; the body's first byte
//! is its kind. Calls (master to worker) and replies (worker to master) travel on the *data*
//! link, strictly in order: a worker runs calls in arrival order, so the n-th reply answers
//! the n-th call and no call id is needed. Pings and shutdown travel on a second *control*
//! link so that a busy worker still answers them.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use crate::sys;

/// Master to worker, data link: `[f_off u64][tramp_off u64][argument]`.
pub(crate) const CALL: u8 = 1;
/// Worker to master, data link, first frame: the postcard-encoded [`Hello`].
pub(crate) const HELLO: u8 = 10;
/// Master to worker, data link, answer to `HELLO`: `[id u64]`.
pub(crate) const WELCOME: u8 = 11;
/// Master to worker, data link, answer to a `HELLO` from another build.
pub(crate) const REJECT: u8 = 12;
/// Control link, both ways: `[token u64]`.
pub(crate) const PING: u8 = 20;
/// Control link, worker to master: `[token u64]`.
pub(crate) const PONG: u8 = 21;
/// Control link, master to worker: finish the running call, then exit.
pub(crate) const SHUTDOWN: u8 = 22;

/// Bumped whenever the frames change.
pub(crate) const PROTOCOL: u32 = 1;
/// Opens every handshake.
pub(crate) const MAGIC: u64 = 0x5054_4f4f_4c53_5753;
/// Frames longer than this are refused (a corrupt length must not allocate gigabytes).
pub(crate) const MAX_FRAME: usize = 1 << 31;

/// The worker's first words.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Hello {
    pub(crate) magic: u64,
    pub(crate) protocol: u32,
    pub(crate) pid: u32,
    pub(crate) build: sys::BuildId,
}

/// A byte stream between master and worker. Local workers use a Unix socket pair; a TCP
/// stream to another host is the next implementation.
pub(crate) trait Link: Send + Sync + 'static {
    /// Writes all of `buf`.
    fn send_all(&self, buf: &[u8]) -> io::Result<()>;
    /// Reads at least one byte, or returns 0 at the end of the stream.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Waits until data is available; false when `timeout` passes first.
    fn wait_readable(&self, timeout: Duration) -> io::Result<bool>;
    /// Ends both directions, waking a blocked reader.
    fn shutdown(&self);
}

/// A connected Unix stream socket.
#[derive(Debug)]
pub(crate) struct UnixLink(pub(crate) OwnedFd);

impl Link for UnixLink {
    fn send_all(&self, buf: &[u8]) -> io::Result<()> {
        sys::send_all(self.0.as_raw_fd(), buf)
    }
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        sys::recv(self.0.as_raw_fd(), buf)
    }
    fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        sys::poll_readable(self.0.as_raw_fd(), timeout)
    }
    fn shutdown(&self) {
        // SAFETY: shutdown(2) on a descriptor we own; failure (already closed) is harmless.
        unsafe { libc::shutdown(self.0.as_raw_fd(), libc::SHUT_RDWR) };
    }
}

/// Starts a frame of `kind` in `buf` (cleared); finish it with [`finish`].
pub(crate) fn begin(buf: &mut Vec<u8>, kind: u8) {
    buf.clear();
    buf.extend_from_slice(&[0, 0, 0, 0, kind]);
}

/// Appends a frame of `kind` to `buf` without clearing it; returns where it starts.
pub(crate) fn append(buf: &mut Vec<u8>, kind: u8) -> usize {
    let at = buf.len();
    buf.extend_from_slice(&[0, 0, 0, 0, kind]);
    at
}

/// Writes the length of the frame that starts at `at`.
pub(crate) fn finish_at(buf: &mut [u8], at: usize) {
    let len = (buf.len() - at - 4) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// Writes the length of the frame [`begin`] started.
pub(crate) fn finish(buf: &mut [u8]) {
    finish_at(buf, 0);
}

/// Reads frames from a link through a buffer, so that many small frames cost one read.
#[derive(Debug)]
pub(crate) struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl FrameReader {
    pub(crate) fn new() -> FrameReader {
        FrameReader {
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
        }
    }

    /// True when a whole frame is already buffered (no read needed for the next one).
    pub(crate) fn has_frame(&self) -> bool {
        let avail = self.end - self.start;
        if avail < 4 {
            return false;
        }
        let len = u32::from_le_bytes(self.buf[self.start..self.start + 4].try_into().unwrap());
        avail >= 4 + len as usize
    }

    /// The next frame's body (kind byte first); `Ok(None)` at a clean end of stream.
    pub(crate) fn next<'a>(&'a mut self, link: &dyn Link) -> io::Result<Option<&'a [u8]>> {
        loop {
            let avail = self.end - self.start;
            if avail >= 4 {
                let len =
                    u32::from_le_bytes(self.buf[self.start..self.start + 4].try_into().unwrap())
                        as usize;
                if len == 0 || len > MAX_FRAME {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "bad frame length",
                    ));
                }
                if avail >= 4 + len {
                    let body = self.start + 4..self.start + 4 + len;
                    self.start += 4 + len;
                    return Ok(Some(&self.buf[body]));
                }
                if 4 + len > self.buf.len() {
                    // Grow for a large frame; move the partial frame to the front.
                    let mut bigger = vec![0; (4 + len).next_power_of_two()];
                    bigger[..avail].copy_from_slice(&self.buf[self.start..self.end]);
                    self.buf = bigger;
                    self.start = 0;
                    self.end = avail;
                }
            }
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
            } else if self.start > 0 && self.buf.len() - self.end < 16 * 1024 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let n = link.recv(&mut self.buf[self.end..])?;
            if n == 0 {
                return if self.start == self.end {
                    Ok(None)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "stream ended mid-frame",
                    ))
                };
            }
            self.end += n;
        }
    }
}

/// Reads one `u64` at `at` of a frame body.
pub(crate) fn u64_at(body: &[u8], at: usize) -> Option<u64> {
    body.get(at..at + 8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A link over an in-memory byte string, returning it in pieces of `.1` bytes.
    struct Chunked(Mutex<(Vec<u8>, usize)>, usize);
    impl Link for Chunked {
        fn send_all(&self, _: &[u8]) -> io::Result<()> {
            Ok(())
        }
        fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
            let mut g = self.0.lock().unwrap();
            let (data, pos) = &mut *g;
            let n = (data.len() - *pos).min(buf.len()).min(self.1);
            buf[..n].copy_from_slice(&data[*pos..*pos + n]);
            *pos += n;
            Ok(n)
        }
        fn wait_readable(&self, _: Duration) -> io::Result<bool> {
            Ok(true)
        }
        fn shutdown(&self) {}
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever the frame sizes and however the stream is cut, the reader returns
        /// the frames that were written, then a clean end.
        #[test]
        fn any_frames_any_chunking(
            frames in proptest::collection::vec(
                (1u8..255, proptest::collection::vec(proptest::num::u8::ANY, 0..20_000)),
                0..12,
            ),
            chunk in 1usize..30_000,
        ) {
            let mut all = Vec::new();
            for (kind, body) in &frames {
                let at = append(&mut all, *kind);
                all.extend_from_slice(body);
                finish_at(&mut all, at);
            }
            let link = Chunked(Mutex::new((all, 0)), chunk);
            let mut r = FrameReader::new();
            for (kind, body) in &frames {
                let got = r.next(&link).unwrap().unwrap();
                proptest::prop_assert_eq!(got[0], *kind);
                proptest::prop_assert_eq!(&got[1..], &body[..]);
            }
            proptest::prop_assert!(r.next(&link).unwrap().is_none());
        }
    }

    /// A link over an in-memory byte string, returning it in small pieces.
    struct Mem(Mutex<(Vec<u8>, usize)>);
    impl Link for Mem {
        fn send_all(&self, _: &[u8]) -> io::Result<()> {
            Ok(())
        }
        fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
            let mut g = self.0.lock().unwrap();
            let (data, pos) = &mut *g;
            let n = (data.len() - *pos).min(buf.len()).min(7);
            buf[..n].copy_from_slice(&data[*pos..*pos + n]);
            *pos += n;
            Ok(n)
        }
        fn wait_readable(&self, _: Duration) -> io::Result<bool> {
            Ok(true)
        }
        fn shutdown(&self) {}
    }

    #[test]
    fn frames_split_and_large_survive() {
        let mut all = Vec::new();
        let mut f = Vec::new();
        let sizes = [0usize, 1, 100, 70_000, 3, 200_000, 5];
        for (i, &s) in sizes.iter().enumerate() {
            begin(&mut f, i as u8 + 1);
            f.extend(std::iter::repeat_n(i as u8, s));
            finish(&mut f);
            all.extend_from_slice(&f);
        }
        let link = Mem(Mutex::new((all, 0)));
        let mut r = FrameReader::new();
        for (i, &s) in sizes.iter().enumerate() {
            let body = r.next(&link).unwrap().unwrap();
            assert_eq!(body[0], i as u8 + 1);
            assert_eq!(body.len(), s + 1);
            assert!(body[1..].iter().all(|&b| b == i as u8));
        }
        assert!(r.next(&link).unwrap().is_none());
    }
}
