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

/// Reads one frame from a non-blocking pipe, piece by piece as the poll loop allows.
#[derive(Debug)]
pub(crate) struct Reader {
    header: [u8; HEADER_LEN],
    header_filled: usize,
    payload: Vec<u8>,
    payload_filled: usize,
    cap: u64,
}

impl Reader {
    /// A reader that refuses result payloads above `cap` bytes.
    pub(crate) fn new(cap: u64) -> Self {
        Self {
            header: [0; HEADER_LEN],
            header_filled: 0,
            payload: Vec::new(),
            payload_filled: 0,
            cap,
        }
    }

    /// Reads what is available from `fd` until it would block or ends.
    ///
    /// # Errors
    ///
    /// A read error other than `WouldBlock` (which is [`Progress::Pending`]).
    pub(crate) fn read_from(&mut self, fd: BorrowedFd<'_>) -> io::Result<Progress> {
        let mut trash = [0u8; 512];
        loop {
            let buf: &mut [u8] = if self.header_filled < HEADER_LEN {
                &mut self.header[self.header_filled..]
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
            if self.header_filled < HEADER_LEN {
                self.header_filled += n;
                if self.header_filled == HEADER_LEN {
                    let len = self.announced_len();
                    let cap = if self.header[0] == TAG_OK {
                        self.cap
                    } else {
                        MAX_SIDE_PAYLOAD
                    };
                    if len > cap {
                        return Ok(Progress::TooLarge { len });
                    }
                    // `len <= cap`, and a cap above the address space cannot be allocated
                    // anyway; `try_from` turns that case into the same error.
                    let Ok(len) = usize::try_from(len) else {
                        return Ok(Progress::TooLarge { len });
                    };
                    // Zeroed allocation: large buffers come straight from fresh zero pages.
                    self.payload = vec![0; len];
                }
            } else if self.payload_filled < self.payload.len() {
                self.payload_filled += n;
            }
        }
    }

    /// The cap on result payloads this reader was made with.
    pub(crate) fn cap(&self) -> u64 {
        self.cap
    }

    fn announced_len(&self) -> u64 {
        let mut len = [0; 8];
        len.copy_from_slice(&self.header[1..HEADER_LEN]);
        u64::from_le_bytes(len)
    }

    /// The complete frame as `(tag, payload)`, or `None` if it did not fully arrive.
    pub(crate) fn into_frame(self) -> Option<(u8, Vec<u8>)> {
        let complete =
            self.header_filled == HEADER_LEN && self.payload_filled == self.payload.len();
        complete.then(|| (self.header[0], self.payload))
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
        (last, reader.into_frame())
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
