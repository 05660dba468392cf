//! The one frame a child sends its parent through its pipe, and the parent's reader for it.
//!
//! A frame is a 9-byte header, a tag byte and a little-endian `u64` payload length, then the
//! payload. 64-bit lengths let results above 4 GiB through; the parent checks the length
//! against its cap before it allocates anything. A child writes exactly one frame and exits.

use std::io;
use std::os::fd::BorrowedFd;

use crate::sys;

/// Header size: tag (1 byte) + payload length (8 bytes, little-endian).
pub(crate) const HEADER_LEN: usize = 9;

/// The payload is the postcard encoding of `f(i)`.
pub(crate) const TAG_OK: u8 = 0;
/// The payload is the postcard encoding of `(message, location)` of a panic.
pub(crate) const TAG_PANIC: u8 = 1;
/// The payload is the UTF-8 message of an encoding error in the child.
pub(crate) const TAG_ENCODE: u8 = 2;
/// The payload is the encoded length (`u64` little-endian) of a result over the cap.
pub(crate) const TAG_TOO_LARGE: u8 = 3;

/// Cap on the payload of frames other than [`TAG_OK`] (panic messages and the like).
const MAX_SIDE_PAYLOAD: u64 = 1 << 20;

/// Starts a frame buffer: a header with the given tag and a zero length, to be followed by
/// the payload and completed by [`finish`].
pub(crate) fn start(tag: u8) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64);
    buf.push(tag);
    buf.extend_from_slice(&[0; 8]);
    buf
}

/// Writes the payload length (everything after the header) into the header.
pub(crate) fn finish(buf: &mut [u8]) {
    let len = (buf.len() - HEADER_LEN) as u64;
    buf[1..HEADER_LEN].copy_from_slice(&len.to_le_bytes());
}

/// A whole frame with the given tag and payload.
pub(crate) fn whole(tag: u8, payload: &[u8]) -> Vec<u8> {
    let mut buf = start(tag);
    buf.extend_from_slice(payload);
    finish(&mut buf);
    buf
}

/// What [`Reader::read_from`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Nothing more to read now; the pipe is still open.
    Pending,
    /// End of file: the writer is gone.
    Eof,
    /// The header announced a result over the cap (the read stops there).
    TooLarge {
        /// The announced length.
        len: u64,
    },
}

/// Bytes of a frame the reader keeps inline (header and a small payload): most results are
/// small, and a heap buffer per child would be one more copy-on-write fault in the parent
/// while children are alive.
const INLINE: usize = 64;

/// Reads one frame from a non-blocking pipe, piece by piece as the poll loop allows.
#[derive(Debug)]
pub(crate) struct Reader {
    /// The header, then the payload if the whole frame fits.
    head: [u8; INLINE],
    head_filled: usize,
    /// The payload of a frame that does not fit `head`.
    payload: Vec<u8>,
    payload_filled: usize,
    cap: u64,
}

impl Reader {
    /// A reader that refuses result payloads above `cap` bytes.
    pub(crate) fn new(cap: u64) -> Self {
        Self {
            head: [0; INLINE],
            head_filled: 0,
            payload: Vec::new(),
            payload_filled: 0,
            cap,
        }
    }

    /// Total frame length once the header is in, if the frame fits inline.
    fn inline_len(&self) -> Option<usize> {
        let len = usize::try_from(self.announced_len()).ok()?;
        let total = len.checked_add(HEADER_LEN)?;
        (total <= INLINE).then_some(total)
    }

    /// Reads what is available from `fd` until it would block or ends.
    ///
    /// # Errors
    ///
    /// A read error other than `WouldBlock` (which is [`Progress::Pending`]).
    pub(crate) fn read_from(&mut self, fd: BorrowedFd<'_>) -> io::Result<Progress> {
        let mut trash = [0u8; 512];
        loop {
            // Before the header is complete, read up to the inline size: one read then
            // takes in a whole small frame.
            let head_want = if self.head_filled < HEADER_LEN {
                INLINE
            } else {
                self.inline_len().unwrap_or(self.head_filled)
            };
            let buf: &mut [u8] = if self.head_filled < head_want {
                &mut self.head[self.head_filled..head_want]
            } else if self.payload_filled < self.payload.len() {
                &mut self.payload[self.payload_filled..]
            } else {
                // Frame complete (or an empty payload): anything more is not ours; read it
                // away so the writer never blocks, and wait for end of file.
                &mut trash
            };
            let n = match sys::read(fd, buf) {
                Ok(0) => return Ok(Progress::Eof),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Progress::Pending),
                Err(e) => return Err(e),
            };
            if self.head_filled < head_want {
                let had_header = self.head_filled >= HEADER_LEN;
                self.head_filled += n;
                if !had_header
                    && self.head_filled >= HEADER_LEN
                    && let Some(too_large) = self.header_complete()
                {
                    return Ok(too_large);
                }
            } else if self.payload_filled < self.payload.len() {
                self.payload_filled += n;
            }
        }
    }

    /// Checks the announced length against the cap and, for a frame that does not fit
    /// inline, moves the payload bytes read so far into a buffer of the full size.
    fn header_complete(&mut self) -> Option<Progress> {
        let len = self.announced_len();
        let cap = if self.head[0] == TAG_OK {
            self.cap
        } else {
            MAX_SIDE_PAYLOAD
        };
        if len > cap {
            return Some(Progress::TooLarge { len });
        }
        if let Some(total) = self.inline_len() {
            // Bytes read past the frame's end are not ours.
            self.head_filled = self.head_filled.min(total);
            return None;
        }
        // `len <= cap`, and a length above the address space cannot be allocated anyway;
        // `try_from` turns that case into the same error.
        let Ok(len) = usize::try_from(len) else {
            return Some(Progress::TooLarge { len });
        };
        // Zeroed allocation: large buffers come straight from fresh zero pages.
        self.payload = vec![0; len];
        let early = (self.head_filled - HEADER_LEN).min(len);
        self.payload[..early].copy_from_slice(&self.head[HEADER_LEN..HEADER_LEN + early]);
        self.payload_filled = early;
        self.head_filled = HEADER_LEN;
        None
    }

    /// The cap on result payloads this reader was made with.
    pub(crate) fn cap(&self) -> u64 {
        self.cap
    }

    fn announced_len(&self) -> u64 {
        let mut len = [0; 8];
        len.copy_from_slice(&self.head[1..HEADER_LEN]);
        u64::from_le_bytes(len)
    }

    /// The complete frame as `(tag, payload)`, or `None` if it did not fully arrive.
    pub(crate) fn frame(&self) -> Option<(u8, &[u8])> {
        if self.head_filled < HEADER_LEN {
            return None;
        }
        match self.inline_len() {
            Some(total) => {
                (self.head_filled == total).then(|| (self.head[0], &self.head[HEADER_LEN..total]))
            }
            None => {
                let complete =
                    self.payload_filled == self.payload.len() && !self.payload.is_empty();
                complete.then(|| (self.head[0], self.payload.as_slice()))
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use std::os::fd::AsFd;

    fn round_trip(frame: &[u8], cap: u64) -> (Progress, Option<(u8, Vec<u8>)>) {
        let (r, w) = sys::pipe().expect("pipe");
        // Small frames fit the pipe buffer, so writing all before reading cannot block.
        sys::write_all(w.as_fd(), frame).expect("write");
        drop(w);
        let mut reader = Reader::new(cap);
        let mut last = Progress::Pending;
        for _ in 0..1000 {
            last = reader.read_from(r.as_fd()).expect("read");
            if last != Progress::Pending {
                break;
            }
        }
        (
            last,
            reader.frame().map(|(tag, payload)| (tag, payload.to_vec())),
        )
    }

    #[test]
    fn whole_frames_round_trip() {
        let payload = postcard::to_allocvec(&(42u64, "x")).expect("encode");
        let (p, frame) = round_trip(&whole(TAG_OK, &payload), 1 << 20);
        assert_eq!(p, Progress::Eof);
        assert_eq!(frame, Some((TAG_OK, payload)));
        let (p, frame) = round_trip(&whole(TAG_PANIC, b""), 0);
        assert_eq!(p, Progress::Eof);
        assert_eq!(frame, Some((TAG_PANIC, Vec::new())));
    }

    #[test]
    fn truncated_frames_are_incomplete() {
        let frame = whole(TAG_OK, b"hello");
        for cut in 0..frame.len() {
            let (p, got) = round_trip(&frame[..cut], 1 << 20);
            assert_eq!(p, Progress::Eof);
            assert_eq!(got, None, "cut at {cut}");
        }
    }

    #[test]
    fn over_the_cap_stops_at_the_header() {
        let (p, _) = round_trip(&whole(TAG_OK, &[7; 100]), 99);
        assert_eq!(p, Progress::TooLarge { len: 100 });
        let (p, got) = round_trip(&whole(TAG_OK, &[7; 100]), 100);
        assert_eq!(p, Progress::Eof);
        assert_eq!(got.map(|f| f.1.len()), Some(100));
    }

    #[test]
    fn lengths_above_4_gib_are_read_whole() {
        // A header announcing 5 GiB, then end of file: the length must not be cut to 32
        // bits. The 5 GiB buffer is a zeroed allocation, so it costs no memory until written.
        let mut frame = vec![TAG_OK];
        frame.extend_from_slice(&(5u64 << 30).to_le_bytes());
        frame.extend_from_slice(b"abc");
        let (p, got) = round_trip(&frame, u64::MAX);
        assert_eq!(p, Progress::Eof);
        assert_eq!(got, None);
        let (p, _) = round_trip(&frame, 4 << 30);
        assert_eq!(p, Progress::TooLarge { len: 5 << 30 });
    }

    #[test]
    fn inline_boundary() {
        for len in [
            0,
            1,
            INLINE - HEADER_LEN - 1,
            INLINE - HEADER_LEN,
            INLINE - HEADER_LEN + 1,
            4096,
        ] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut frame = whole(TAG_OK, &payload);
            frame.extend_from_slice(b"trailing");
            let (p, got) = round_trip(&frame, u64::MAX);
            assert_eq!(p, Progress::Eof);
            assert_eq!(got, Some((TAG_OK, payload)), "len {len}");
        }
    }

    #[test]
    fn trailing_bytes_are_ignored() {
        let mut frame = whole(TAG_OK, b"ab");
        frame.extend_from_slice(&[1; 2000]);
        let (p, got) = round_trip(&frame, 10);
        assert_eq!(p, Progress::Eof);
        assert_eq!(got, Some((TAG_OK, b"ab".to_vec())));
    }

    proptest::proptest! {
        #[test]
        fn any_payload_round_trips(tag in 0u8..4, payload in proptest::collection::vec(proptest::num::u8::ANY, 0..5000)) {
            let frame = whole(tag, &payload);
            let (p, got) = round_trip(&frame, u64::MAX);
            proptest::prop_assert_eq!(p, Progress::Eof);
            proptest::prop_assert_eq!(got, Some((tag, payload)));
        }
    }
}
