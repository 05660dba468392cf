//! Frames on a byte stream, and the small transport trait they travel over.
//!
//! A frame is a little-endian `u32` body length followed by the body; the body's first byte
//! is its kind. Calls (master to worker) and replies (worker to master) travel on the *data*
//! link, strictly in order: a worker runs calls in arrival order, so the n-th reply answers
//! the n-th call and no call id is needed. Pings and shutdown travel on a second *control*
//! link so that a busy worker still answers them.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::sys;

/// Master to worker, data link: `[f_off u64][tramp_off u64][acked u64][argument]`;
/// `acked` counts the [`REPLY_ZC`] results the master has read out of the result region so
/// far (the region is free for the next one when the worker has sent no more).
pub(crate) const CALL: u8 = 1;
/// Master to worker, data link, a local worker only: `[f_off u64][tramp_off u64]
/// [acked u64][offset u64][length u64]`, the argument being those bytes of the argument
/// region (see `cluster/PROTOCOL.md`, "Large payloads").
pub(crate) const CALL_ZC: u8 = 2;
/// The length of a call's header (kind, two offsets, `acked`).
pub(crate) const CALL_HEAD: usize = 25;
/// Worker to master, data link, a local worker only: a successful result left in the
/// result region, `[offset u64][length u64]` (a plain reply's kind is its status byte).
pub(crate) const REPLY_ZC: u8 = 0x41;
/// Arguments and results of at least this many bytes go through a local worker's
/// shared-memory regions instead of the socket (measured: see the payload rows in
/// `cluster/PROTOCOL.md`).
pub(crate) const ZC_THRESHOLD: usize = 64 * 1024;
/// Worker to master, data link, first frame: the encoded [`Hello`] (`codec`).
pub(crate) const HELLO: u8 = 10;
/// Master to worker, data link, answer to `HELLO`: `[id u64]`.
pub(crate) const WELCOME: u8 = 11;
/// Master to worker, data link, answer to a `HELLO` from another build.
pub(crate) const REJECT: u8 = 12;
/// Worker to master, first frame on a TCP data link (after authentication): the
/// encoded `net::RemoteHello`.
pub(crate) const HELLO_TCP: u8 = 13;
/// Master to worker, TCP data link, answer to `HELLO_TCP`: `[id u64][control token 16]`.
pub(crate) const WELCOME_TCP: u8 = 14;
/// Worker to master, first frame on a TCP control link (after authentication):
/// `[control token 16]`, pairing it with its data link.
pub(crate) const CTL_HELLO: u8 = 15;
/// Control link, both ways: `[token u64]`.
pub(crate) const PING: u8 = 20;
/// Control link, worker to master: `[token u64]`.
pub(crate) const PONG: u8 = 21;
/// Control link, master to worker: finish the running call, then exit.
pub(crate) const SHUTDOWN: u8 = 22;

/// The largest scratch buffer (a call's frame on the master, a result on the worker) kept
/// from one call to the next: a fresh large buffer costs a page fault per 4 KiB page on
/// every call, more than the copies themselves. A worker gives its buffer back once idle
/// for [`IDLE_RELEASE`], so its idle resident memory stays what it was before the call.
pub(crate) const KEEP_BUF: usize = 64 << 20;
/// How long a worker holding a large scratch buffer waits for the next call before it
/// gives the buffer back.
pub(crate) const IDLE_RELEASE: Duration = Duration::from_millis(500);

thread_local! {
    /// A result buffer given back after decoding, for the next large result read on this
    /// thread (see [`result_buf`]).
    static SPARE: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// An empty buffer for a result of `len` bytes: the one this thread gave back last when it
/// is large enough (a `remotecall_fetch` reads its own reply on its own thread and decodes
/// it there, so a run of large calls reuses one buffer instead of faulting in a fresh one
/// each time). From 4 KiB up, not only for large results: `pmap` of 10^4 numbers reads
/// replies of about 40 KiB, and allocating and freeing them on each map was part of what
/// made the allocator return the top of its heap to the system after every map (a `brk`
/// with a TLB shootdown) and fault it back in on the next.
pub(crate) fn result_buf(len: usize) -> Vec<u8> {
    if len < 4 * 1024 {
        return Vec::with_capacity(len);
    }
    let mut v = SPARE.take();
    if v.capacity() < len {
        v = Vec::with_capacity(len);
    }
    v.clear();
    v
}

/// Gives a decoded result's buffer back to this thread, if it is at least 4 KiB but not
/// over [`KEEP_BUF`] (one buffer per thread at most).
pub(crate) fn give_back(v: Vec<u8>) {
    if (4 * 1024..=KEEP_BUF).contains(&v.capacity()) {
        SPARE.set(v);
    }
}

/// Bumped whenever the frames change (2: the codec's own format replaced postcard; 3:
/// `acked` in calls, `CALL_ZC` and `REPLY_ZC`).
pub(crate) const PROTOCOL: u32 = 3;
/// Opens every handshake.
pub(crate) const MAGIC: u64 = 0x5054_4f4f_4c53_5753;
/// The default cap on a frame's body (1 GiB): an argument or result larger than this is a
/// typed error raised by its sender. [`ClusterBuilder::max_frame_bytes`] sets another.
///
/// [`ClusterBuilder::max_frame_bytes`]: crate::ClusterBuilder::max_frame_bytes
pub(crate) const DEFAULT_MAX_FRAME: usize = 1 << 30;
/// The largest cap a user may set: the length prefix is a `u32`.
pub(crate) const MAX_FRAME_LIMIT: usize = u32::MAX as usize;
/// The cap on a handshake frame: a `Hello` or `Welcome` is a few dozen bytes.
pub(crate) const HANDSHAKE_CAP: usize = 4096;
/// The cap on a control frame (`[kind][token u64]`).
pub(crate) const CONTROL_CAP: usize = 64;
/// What a reader holds before any frame asks for more.
const FIRST_BUF: usize = 64 * 1024;

/// What the opening of a worker's first frame says, read before the rest is decoded (its
/// layout may be another build's).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Opening {
    /// Our magic and protocol: decode the whole frame.
    Ours,
    /// A ptools worker of another protocol: our magic, fixed-width, then another number, or
    /// the magic as a postcard varint (protocol 1, before the codec's own format).
    OtherBuild,
    /// Not a ptools worker.
    Foreign,
}

/// Reads the magic and protocol at the start of a `Hello` or `RemoteHello` body (both open
/// with them, so every build since protocol 2 can tell any other it is not the same).
pub(crate) fn opening(body: &[u8]) -> Opening {
    /// `MAGIC` as protocol 1's postcard wrote it (LEB128).
    const POSTCARD_MAGIC: [u8; 9] = [0xd3, 0xae, 0xcd, 0xe2, 0xf4, 0xe9, 0x93, 0xaa, 0x50];
    if let (Some(m), Some(p)) = (body.get(..8), body.get(8..12))
        && u64::from_le_bytes(m.try_into().expect("8 bytes")) == MAGIC
    {
        return if u32::from_le_bytes(p.try_into().expect("4 bytes")) == PROTOCOL {
            Opening::Ours
        } else {
            Opening::OtherBuild
        };
    }
    if body.starts_with(&POSTCARD_MAGIC) {
        return Opening::OtherBuild;
    }
    Opening::Foreign
}

/// The worker's first words.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Hello {
    pub(crate) magic: u64,
    pub(crate) protocol: u32,
    pub(crate) pid: u32,
    pub(crate) build: sys::BuildId,
}

/// A byte stream between master and worker: a Unix socket pair (the handshake, and a
/// local worker's calls without a ring), a shared-memory ring (a local worker's calls,
/// `sys/ring.rs`), or TCP (a worker started by a launcher, `net/link.rs`).
pub(crate) trait Link: Send + Sync + 'static {
    /// Writes all of `buf`.
    fn send_all(&self, buf: &[u8]) -> io::Result<()>;
    /// Reads at least one byte, or returns 0 at the end of the stream.
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    /// Waits until data is available; false when `timeout` passes first.
    fn wait_readable(&self, timeout: Duration) -> io::Result<bool>;
    /// [`wait_readable`](Self::wait_readable) for a thread that waits in the background
    /// (the master's reader thread): on a link whose waits spin, it sleeps at once, so a
    /// fallback reader never takes a core from the workers or the callers.
    fn wait_readable_quietly(&self, timeout: Duration) -> io::Result<bool> {
        self.wait_readable(timeout)
    }
    /// Ends both directions for this side, waking its blocked readers and writers (a
    /// socket also tells the peer; a ring does not: see `sys/ring.rs`, "Ends").
    fn shutdown(&self);
    /// A fault test's hook: publishes `pos` as this side's write position (`write`) or
    /// read position, as a process with corrupt memory might; false on a link that has
    /// none to forge (a socket).
    fn forge_position(&self, _write: bool, _pos: u64) -> bool {
        false
    }
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
        sys::poll_readable(self.0.as_fd(), timeout)
    }
    fn shutdown(&self) {
        sys::shutdown(self.0.as_raw_fd());
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
///
/// No length read from the peer decides an allocation: a frame longer than the buffer makes
/// it grow (at most doubling) only once the bytes received so far fill it, so the buffer
/// never exceeds twice what actually arrived (or [`FIRST_BUF`]), and a length over the
/// reader's cap is refused before anything grows.
#[derive(Debug)]
pub(crate) struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    cap: usize,
}

/// A frame reader's verdict on a stream that is not a sequence of frames: the peer broke
/// the protocol (`InvalidData`), or the stream ended inside a frame (`UnexpectedEof`).
fn bad(kind: io::ErrorKind, m: String) -> io::Error {
    io::Error::new(kind, m)
}

impl FrameReader {
    /// A reader refusing bodies longer than `cap` bytes.
    pub(crate) fn with_cap(cap: usize) -> FrameReader {
        FrameReader {
            buf: vec![0; FIRST_BUF.min(cap.saturating_add(4)).max(64)],
            start: 0,
            end: 0,
            cap,
        }
    }

    /// The same reader (bytes already buffered kept) with another cap: the handshake is
    /// read under a small one, the calls or replies after it under the link's.
    pub(crate) fn with_new_cap(mut self, cap: usize) -> FrameReader {
        self.cap = cap;
        self
    }

    /// Bytes held by the buffer (for tests of the memory bound).
    #[cfg(test)]
    fn held(&self) -> usize {
        self.buf.len()
    }

    fn announced(&self) -> Option<usize> {
        let h = self.buf.get(self.start..self.start + 4)?;
        (self.end - self.start >= 4).then(|| u32::from_le_bytes(h.try_into().unwrap()) as usize)
    }

    /// True when a whole frame is already buffered (no read needed for the next one).
    pub(crate) fn has_frame(&self) -> bool {
        self.announced()
            .is_some_and(|len| self.end - self.start >= 4 + len)
    }

    /// The next frame's body (kind byte first); `Ok(None)` at a clean end of stream.
    ///
    /// # Errors
    ///
    /// `InvalidData` for a length of zero or over the cap, `UnexpectedEof` for a stream that
    /// ends inside a frame, and the link's own errors.
    pub(crate) fn next<'a>(&'a mut self, link: &dyn Link) -> io::Result<Option<&'a [u8]>> {
        loop {
            if let Some(body) = self.take()? {
                return Ok(Some(&self.buf[body]));
            }
            if !self.fill(link)? {
                return Ok(None);
            }
        }
    }

    /// As [`next`](Self::next), but every read waits at most until `deadline`: a peer that
    /// sends part of a frame and goes silent gives `TimedOut`, not a hang.
    pub(crate) fn next_before<'a>(
        &'a mut self,
        link: &dyn Link,
        deadline: Instant,
    ) -> io::Result<Option<&'a [u8]>> {
        loop {
            if let Some(body) = self.take()? {
                return Ok(Some(&self.buf[body]));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if !link.wait_readable(left)? {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "no whole frame before the deadline ({} bytes of one received)",
                        self.end - self.start
                    ),
                ));
            }
            if !self.fill(link)? {
                return Ok(None);
            }
        }
    }

    /// The range of the next whole buffered frame's body, consumed; checks the length first.
    fn take(&mut self) -> io::Result<Option<std::ops::Range<usize>>> {
        let Some(len) = self.announced() else {
            return Ok(None);
        };
        if len == 0 || len > self.cap {
            return Err(bad(
                io::ErrorKind::InvalidData,
                format!("frame length {len} outside 1..={}", self.cap),
            ));
        }
        if self.end - self.start < 4 + len {
            return Ok(None);
        }
        let body = self.start + 4..self.start + 4 + len;
        self.start += 4 + len;
        Ok(Some(body))
    }

    /// One read towards the next frame; false at a clean end of stream.
    fn fill(&mut self, link: &dyn Link) -> io::Result<bool> {
        if self.start == self.end && self.buf.len() > 4 * FIRST_BUF {
            // A large frame has been consumed: give its memory back.
            self.buf = vec![0; FIRST_BUF];
        }
        let want = self.announced().map_or(4, |len| 4 + len);
        self.make_room(want);
        let n = link.recv(&mut self.buf[self.end..])?;
        if n > 0 {
            self.end += n;
            return Ok(true);
        }
        if self.start == self.end {
            return Ok(false);
        }
        Err(bad(
            io::ErrorKind::UnexpectedEof,
            format!(
                "stream ended inside a frame ({} of {} bytes)",
                self.end - self.start,
                want
            ),
        ))
    }

    /// Makes room to read towards a frame of `want` bytes (length prefix included) whose
    /// first bytes sit at `start`; grows only when what arrived fills the buffer.
    fn make_room(&mut self, want: usize) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        let avail = self.end - self.start;
        let room = self.buf.len() - self.end;
        if room >= 16 * 1024 || self.end + room >= self.start + want {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.start = 0;
            self.end = avail;
            if self.buf.len() - self.end >= (want - avail).min(16 * 1024) {
                return;
            }
        }
        // Full of received bytes: at most double, never past the frame.
        let grown = want
            .min(self.buf.len().saturating_mul(2))
            .max(self.buf.len());
        self.buf.resize(grown, 0);
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

    #[test]
    fn the_opening_tells_builds_apart_before_decoding() {
        let hello = Hello {
            magic: MAGIC,
            protocol: PROTOCOL,
            pid: 7,
            build: sys::BuildId::of_self().unwrap(),
        };
        let ours = crate::codec::encode(&hello).unwrap();
        assert_eq!(opening(&ours), Opening::Ours);
        let remote = crate::net::RemoteHello {
            magic: MAGIC,
            protocol: PROTOCOL,
            pid: 7,
            build: "b".into(),
            launch: 1,
            slot: None,
            hostname: "h".into(),
            addrs: Vec::new(),
        };
        assert_eq!(
            opening(&crate::codec::encode(&remote).unwrap()),
            Opening::Ours
        );
        let next = Hello {
            protocol: PROTOCOL + 1,
            ..hello
        };
        assert_eq!(
            opening(&crate::codec::encode(&next).unwrap()),
            Opening::OtherBuild
        );
        // Protocol 1 (postcard: varints) wrote the magic in LEB128.
        let mut leb = Vec::new();
        let mut m = MAGIC;
        loop {
            let b = (m & 0x7f) as u8;
            m >>= 7;
            if m == 0 {
                leb.push(b);
                break;
            }
            leb.push(b | 0x80);
        }
        leb.extend_from_slice(&[1, 7, 0, 0]);
        assert_eq!(opening(&leb), Opening::OtherBuild);
        assert_eq!(opening(&ours[..11]), Opening::Foreign);
        assert_eq!(opening(b"junk junk junk"), Opening::Foreign);
        assert_eq!(opening(&[]), Opening::Foreign);
    }
    use parking_lot::Mutex;

    /// A link over an in-memory byte string, returning it in pieces of `.1` bytes.
    struct Chunked(Mutex<(Vec<u8>, usize)>, usize);
    impl Link for Chunked {
        fn send_all(&self, _: &[u8]) -> io::Result<()> {
            Ok(())
        }
        fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
            let mut g = self.0.lock();
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
            let mut r = FrameReader::with_cap(DEFAULT_MAX_FRAME);
            for (kind, body) in &frames {
                let got = r.next(&link).unwrap().unwrap();
                proptest::prop_assert_eq!(got[0], *kind);
                proptest::prop_assert_eq!(&got[1..], &body[..]);
            }
            proptest::prop_assert!(r.next(&link).unwrap().is_none());
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        /// Arbitrary bytes, cut anywhere, under any cap: the reader never panics, ends in
        /// frames and then a clean end or a typed error, and never holds more than twice what
        /// arrived (or its first buffer) nor more than the cap allows.
        #[test]
        fn arbitrary_streams_are_frames_or_typed_errors(
            head in proptest::collection::vec(proptest::num::u8::ANY, 0..8),
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..70_000),
            chunk in 1usize..20_000,
            cap in 1usize..300_000,
        ) {
            let mut all = head;
            all.extend_from_slice(&data);
            let total = all.len();
            let link = Chunked(Mutex::new((all, 0)), chunk);
            let mut r = FrameReader::with_cap(cap);
            loop {
                let got = r.next(&link).map(|f| f.map(|b| b.len()));
                let received = link.0.lock().1;
                proptest::prop_assert!(received <= total);
                proptest::prop_assert!(
                    r.held() <= FIRST_BUF.max(2 * (received + 16 * 1024)),
                    "held {} after {} bytes", r.held(), received
                );
                proptest::prop_assert!(r.held() <= FIRST_BUF.max(cap + 4));
                match got {
                    Ok(Some(len)) => proptest::prop_assert!((1..=cap).contains(&len)),
                    Ok(None) => break,
                    Err(e) => {
                        proptest::prop_assert!(matches!(
                            e.kind(),
                            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
                        ));
                        break;
                    }
                }
            }
        }
    }

    /// A forged length is refused or costs only the bytes that came: a header announcing
    /// a frame over the cap fails at once; one under it holds the first buffer only.
    #[test]
    fn forged_lengths_allocate_nothing() {
        let mut over = u32::MAX.to_le_bytes().to_vec();
        over.extend_from_slice(&[1, 2, 3]);
        let link = Chunked(Mutex::new((over, 0)), 1 << 20);
        let mut r = FrameReader::with_cap(DEFAULT_MAX_FRAME);
        let e = r.next(&link).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(r.held(), FIRST_BUF);

        let mut under = ((DEFAULT_MAX_FRAME - 1) as u32).to_le_bytes().to_vec();
        under.extend_from_slice(&[7; 1000]);
        let link = Chunked(Mutex::new((under, 0)), 1 << 20);
        let mut r = FrameReader::with_cap(DEFAULT_MAX_FRAME);
        let e = r.next(&link).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(r.held(), FIRST_BUF);
    }

    /// A peer that sends half a frame and goes silent fails a deadline read in time.
    #[test]
    fn half_a_frame_then_silence_times_out() {
        let (a, b) = sys::socketpair().unwrap();
        let (a, b) = (UnixLink(a), UnixLink(b));
        a.send_all(&[100, 0, 0, 0, 1, 2, 3]).unwrap();
        let mut r = FrameReader::with_cap(HANDSHAKE_CAP);
        let e = r
            .next_before(&b, Instant::now() + Duration::from_millis(50))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    /// A link over an in-memory byte string, returning it in small pieces.
    struct Mem(Mutex<(Vec<u8>, usize)>);
    impl Link for Mem {
        fn send_all(&self, _: &[u8]) -> io::Result<()> {
            Ok(())
        }
        fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
            let mut g = self.0.lock();
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
        let mut r = FrameReader::with_cap(DEFAULT_MAX_FRAME);
        for (i, &s) in sizes.iter().enumerate() {
            let body = r.next(&link).unwrap().unwrap();
            assert_eq!(body[0], i as u8 + 1);
            assert_eq!(body.len(), s + 1);
            assert!(body[1..].iter().all(|&b| b == i as u8));
        }
        assert!(r.next(&link).unwrap().is_none());
    }
}
