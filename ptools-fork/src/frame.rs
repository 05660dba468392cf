//! The one frame a child sends its parent through its pipe, and the parent's reader for it.
//!
//! A frame is a 9-byte header, a tag byte and a little-endian `u64` payload length, then the
//! payload. 64-bit lengths let results above 4 GiB through. The parent trusts no length: it
//! checks the kind and the announced length against its cap, then lets its buffer grow with
//! the bytes that actually arrive, so a forged header costs nothing. A child writes exactly
//! one frame and exits.

use std::io;
use std::os::fd::BorrowedFd;

use crate::error::{ChildError, FrameError};
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

/// Cap on the payload of frames other than [`TAG_OK`] (panic messages and the like). A
/// child cuts its messages to [`MAX_MESSAGE`] so its reports stay under it.
const MAX_SIDE_PAYLOAD: u64 = 1 << 20;

/// Longest message (in bytes) a child puts in a report; longer ones are cut.
pub(crate) const MAX_MESSAGE: usize = 64 << 10;

/// Cuts `s` to at most [`MAX_MESSAGE`] bytes, at a character boundary, marking the cut.
pub(crate) fn clip(s: &mut String) {
    const MARK: &str = " [...]";
    if s.len() <= MAX_MESSAGE {
        return;
    }
    let mut end = MAX_MESSAGE - MARK.len();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    s.push_str(MARK);
}

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Nothing more to read now; the pipe is still open.
    Pending,
    /// End of file: the writer is gone.
    Eof,
    /// The reader refuses the frame (over the cap, a header pfork never writes, or no memory
    /// for the bytes): reading stops, and the child's outcome is this error.
    Refused(ChildError),
}

/// What a reader holds once the pipe has ended (or the child was reaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Received<'a> {
    /// Not a byte.
    Nothing,
    /// One whole frame (anything after it is ignored).
    Frame {
        /// The frame's kind, one of the `TAG_*` constants.
        tag: u8,
        /// Its payload.
        payload: &'a [u8],
    },
    /// Part of a frame.
    Incomplete(FrameError),
    /// The frame was refused while it arrived (see [`Progress::Refused`]).
    Refused(&'a ChildError),
}

/// Bytes of a frame the reader keeps inline (header and a small payload): most results are
/// small, and a heap buffer per child would be one more copy-on-write fault in the parent
/// while children are alive.
const INLINE: usize = 64;

/// The first heap buffer for a payload that does not fit inline holds at most this much (a
/// Linux pipe holds 64 KiB, so one read fills it); it doubles whenever it is full, up to the
/// announced length. So the buffer is never more than twice the bytes received (or this
/// size), whatever length the header announced.
const FIRST_CHUNK: usize = 64 << 10;

/// Reads one frame from a non-blocking pipe, piece by piece as the poll loop allows.
///
/// No announced length is trusted: the payload buffer grows with the bytes received.
#[derive(Debug)]
pub(crate) struct Reader {
    /// The header, then the payload if the whole frame fits.
    head: [u8; INLINE],
    head_filled: usize,
    /// The payload received so far of a frame that does not fit `head`; its capacity grows
    /// geometrically as bytes arrive, never past the announced length.
    payload: Vec<u8>,
    /// The payload length the header announced (0 until the header is in).
    announced: u64,
    cap: u64,
    /// Why the frame was refused, once it was.
    refused: Option<ChildError>,
}

impl Reader {
    /// A reader that refuses result payloads above `cap` bytes.
    pub(crate) fn new(cap: u64) -> Self {
        Self {
            head: [0; INLINE],
            head_filled: 0,
            payload: Vec::new(),
            announced: 0,
            cap,
            refused: None,
        }
    }

    /// Total frame length once the header is in, if the frame fits inline.
    fn inline_len(&self) -> Option<usize> {
        let len = usize::try_from(self.announced).ok()?;
        let total = len.checked_add(HEADER_LEN)?;
        (total <= INLINE).then_some(total)
    }

    /// Reads what is available from `fd` until it would block or ends. After
    /// [`Progress::Refused`] the reader must not be called again.
    ///
    /// A read that returns less than it asked for has emptied the pipe (a pipe's read
    /// returns what it holds, up to the size asked for): that is [`Progress::Pending`] at
    /// once, without one more read to hear `EAGAIN`. Besides a system call, that saves the
    /// parent a write to `errno`, whose page `fork` has write-protected: a page fault.
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
            let in_head = self.head_filled < head_want;
            // What this read asks for; at least 1.
            let mut asked = head_want - self.head_filled;
            let result = if in_head {
                sys::read(fd, &mut self.head[self.head_filled..head_want])
            } else if self.wants_payload() {
                if self.payload.len() == self.payload.capacity() && !self.grow() {
                    return Ok(self.refuse(ChildError::OutOfMemory {
                        len: self.announced,
                    }));
                }
                // `announced - len` may not fit a usize; the spare capacity does.
                let room = usize::try_from(self.announced - self.payload.len() as u64)
                    .unwrap_or(usize::MAX);
                asked = room.min(self.payload.capacity() - self.payload.len());
                sys::read_append(fd, &mut self.payload, room)
            } else {
                // Frame complete (or an empty payload): anything more is not ours; read it
                // away so the writer never blocks, and wait for end of file.
                asked = trash.len();
                sys::read(fd, &mut trash)
            };
            let n = match result {
                Ok(0) => return Ok(Progress::Eof),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Progress::Pending),
                Err(e) => return Err(e),
            };
            let short = n < asked;
            if in_head {
                let had_header = self.head_filled >= HEADER_LEN;
                self.head_filled += n;
                if !had_header
                    && self.head_filled >= HEADER_LEN
                    && let Err(e) = self.header_complete()
                {
                    return Ok(self.refuse(e));
                }
            }
            if short {
                return Ok(Progress::Pending);
            }
        }
    }

    /// The header is in, announces a payload that does not fit inline, and not all of it
    /// has arrived.
    fn wants_payload(&self) -> bool {
        self.head_filled >= HEADER_LEN
            && self.inline_len().is_none()
            && (self.payload.len() as u64) < self.announced
    }

    fn refuse(&mut self, e: ChildError) -> Progress {
        self.refused = Some(e.clone());
        Progress::Refused(e)
    }

    /// Checks the header's kind and announced length and, for a frame that does not fit
    /// inline, moves the payload bytes read so far into a first, small heap buffer.
    fn header_complete(&mut self) -> Result<(), ChildError> {
        let mut len = [0; 8];
        len.copy_from_slice(&self.head[1..HEADER_LEN]);
        let len = u64::from_le_bytes(len);
        let bad = |e| Err(ChildError::BadFrame(e));
        match self.head[0] {
            TAG_OK if len > self.cap => {
                return Err(ChildError::ResultTooLarge { len, max: self.cap });
            }
            TAG_OK => {}
            TAG_TOO_LARGE if len != 8 => return bad(FrameError::BadSizeReport { len }),
            TAG_PANIC | TAG_ENCODE | TAG_TOO_LARGE if len > MAX_SIDE_PAYLOAD => {
                return bad(FrameError::ReportTooLarge {
                    len,
                    max: MAX_SIDE_PAYLOAD,
                });
            }
            TAG_PANIC | TAG_ENCODE | TAG_TOO_LARGE => {}
            kind => return bad(FrameError::UnknownKind { kind }),
        }
        self.announced = len;
        if let Some(total) = self.inline_len() {
            // Bytes read past the frame's end are not ours.
            self.head_filled = self.head_filled.min(total);
            return Ok(());
        }
        // Not inline, so `len` is above the bytes already read (at most `INLINE - 9`).
        let first = usize::try_from(len).map_or(FIRST_CHUNK, |len| len.min(FIRST_CHUNK));
        if self.payload.try_reserve_exact(first).is_err() {
            return Err(ChildError::OutOfMemory { len });
        }
        self.payload
            .extend_from_slice(&self.head[HEADER_LEN..self.head_filled]);
        self.head_filled = HEADER_LEN;
        Ok(())
    }

    /// Doubles the full payload buffer (at least to [`FIRST_CHUNK`], at most to the announced
    /// length); `false` if the memory could not be had.
    fn grow(&mut self) -> bool {
        let have = self.payload.len();
        let target = (have.saturating_mul(2).max(FIRST_CHUNK) as u64).min(self.announced);
        // `target <= 2 * have`, or `FIRST_CHUNK`: it fits a usize.
        let more = usize::try_from(target).unwrap_or(usize::MAX) - have;
        self.payload.try_reserve_exact(more).is_ok()
    }

    /// The cap on result payloads this reader was made with.
    pub(crate) fn cap(&self) -> u64 {
        self.cap
    }

    /// Bytes of heap the reader holds for the payload.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.payload.capacity()
    }

    /// Whether one whole frame has arrived (and was not refused).
    pub(crate) fn has_frame(&self) -> bool {
        self.refused.is_none()
            && self.head_filled >= HEADER_LEN
            && match self.inline_len() {
                Some(total) => self.head_filled == total,
                None => self.payload.len() as u64 == self.announced,
            }
    }

    /// What arrived: nothing, one whole frame, part of one, or a refused one.
    pub(crate) fn received(&self) -> Received<'_> {
        if let Some(e) = &self.refused {
            return Received::Refused(e);
        }
        if self.head_filled == 0 {
            return Received::Nothing;
        }
        if self.head_filled < HEADER_LEN {
            return Received::Incomplete(FrameError::TruncatedHeader {
                received: self.head_filled,
            });
        }
        let (payload, got) = match self.inline_len() {
            Some(total) => (
                &self.head[HEADER_LEN..self.head_filled],
                self.head_filled == total,
            ),
            None => (
                self.payload.as_slice(),
                self.payload.len() as u64 == self.announced,
            ),
        };
        if got {
            Received::Frame {
                tag: self.head[0],
                payload,
            }
        } else {
            Received::Incomplete(FrameError::TruncatedPayload {
                received: payload.len() as u64,
                announced: self.announced,
            })
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use proptest::prelude::*;
    use std::os::fd::AsFd;

    /// What a reader made of a byte stream, owned.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Got {
        Nothing,
        Frame(u8, Vec<u8>),
        Incomplete(FrameError),
        Refused(ChildError),
    }

    /// Largest piece written at once: the pipe is empty before each write (the reader drains
    /// it), and a piece that fits its 64 KiB cannot block this single thread.
    const MAX_PIECE: usize = 16 << 10;

    /// Feeds `stream` through a pipe in pieces of the sizes in `pieces` (cycled), letting the
    /// reader take what is there after each piece as the poll loop would, then closes the
    /// pipe. After every read the reader's buffer is checked against the bytes it received.
    fn feed(stream: &[u8], pieces: &[usize], cap: u64) -> Got {
        let (r, w) = sys::pipe().expect("pipe");
        let mut w = Some(w);
        let mut reader = Reader::new(cap);
        let mut sent = 0;
        let mut sizes = pieces.iter().copied().cycle();
        loop {
            if sent < stream.len() {
                let k = sizes.next().unwrap_or(MAX_PIECE).clamp(1, MAX_PIECE);
                let k = k.min(stream.len() - sent);
                let fd = w.as_ref().expect("write end open");
                sys::write_all(fd.as_fd(), &stream[sent..sent + k]).expect("write");
                sent += k;
            } else {
                w = None;
            }
            let progress = reader.read_from(r.as_fd()).expect("read");
            // Never more than twice what arrived (or the first chunk), whatever was
            // announced; never more than the cap (or the bound on reports).
            let held = reader.held();
            assert!(
                held <= FIRST_CHUNK.max(2 * reader.payload.len()),
                "holds {held} bytes for {} received",
                reader.payload.len()
            );
            assert!(
                held as u64 <= cap.max(MAX_SIDE_PAYLOAD),
                "holds {held} over the cap"
            );
            assert!(reader.payload.len() <= sent);
            if reader.head_filled >= HEADER_LEN && reader.inline_len().is_some() {
                assert_eq!(held, 0, "a heap buffer for an inline frame");
            }
            match progress {
                Progress::Pending => assert!(w.is_some(), "pending after the pipe closed"),
                Progress::Eof => {
                    assert!(w.is_none(), "end of file with the pipe open");
                    break;
                }
                Progress::Refused(e) => {
                    assert_eq!(reader.received(), Received::Refused(&e));
                    return Got::Refused(e);
                }
            }
        }
        match reader.received() {
            Received::Nothing => Got::Nothing,
            Received::Frame { tag, payload } => Got::Frame(tag, payload.to_vec()),
            Received::Incomplete(e) => Got::Incomplete(e),
            Received::Refused(e) => panic!("refused without saying so: {e}"),
        }
    }

    /// The frame rules, written out plainly: what a reader must make of `stream`.
    fn model(stream: &[u8], cap: u64) -> Got {
        if stream.is_empty() {
            return Got::Nothing;
        }
        if stream.len() < HEADER_LEN {
            return Got::Incomplete(FrameError::TruncatedHeader {
                received: stream.len(),
            });
        }
        let tag = stream[0];
        let len = u64::from_le_bytes(stream[1..HEADER_LEN].try_into().unwrap());
        let bad = |e| Got::Refused(ChildError::BadFrame(e));
        match tag {
            TAG_OK if len > cap => {
                return Got::Refused(ChildError::ResultTooLarge { len, max: cap });
            }
            TAG_OK => {}
            TAG_TOO_LARGE if len != 8 => return bad(FrameError::BadSizeReport { len }),
            TAG_PANIC | TAG_ENCODE if len > MAX_SIDE_PAYLOAD => {
                return bad(FrameError::ReportTooLarge {
                    len,
                    max: MAX_SIDE_PAYLOAD,
                });
            }
            TAG_PANIC | TAG_ENCODE | TAG_TOO_LARGE => {}
            kind => return bad(FrameError::UnknownKind { kind }),
        }
        let body = &stream[HEADER_LEN..];
        if (body.len() as u64) < len {
            return Got::Incomplete(FrameError::TruncatedPayload {
                received: body.len() as u64,
                announced: len,
            });
        }
        Got::Frame(tag, body[..len as usize].to_vec())
    }

    fn header(tag: u8, len: u64) -> Vec<u8> {
        let mut h = vec![tag];
        h.extend_from_slice(&len.to_le_bytes());
        h
    }

    /// `n` bytes of a pattern that a misplaced byte would break.
    fn pattern(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    }

    fn whole_stream(frame: &[u8], cap: u64) -> Got {
        feed(frame, &[MAX_PIECE], cap)
    }

    #[test]
    fn whole_frames_round_trip() {
        let payload = postcard::to_allocvec(&(42u64, "x")).expect("encode");
        let got = whole_stream(&whole(TAG_OK, &payload), 1 << 20);
        assert_eq!(got, Got::Frame(TAG_OK, payload));
        let got = whole_stream(&whole(TAG_PANIC, b""), 0);
        assert_eq!(got, Got::Frame(TAG_PANIC, Vec::new()));
        assert_eq!(whole_stream(b"", 0), Got::Nothing);
    }

    #[test]
    fn truncated_frames_are_incomplete() {
        for len in [5, 100, 70_000] {
            let frame = whole(TAG_OK, &pattern(len, 1));
            for cut in (1..frame.len())
                .step_by(997)
                .chain([1, 8, 9, 10, frame.len() - 1])
            {
                let want = if cut < HEADER_LEN {
                    FrameError::TruncatedHeader { received: cut }
                } else {
                    FrameError::TruncatedPayload {
                        received: (cut - HEADER_LEN) as u64,
                        announced: len as u64,
                    }
                };
                let got = feed(&frame[..cut], &[3, 4000, 1], 1 << 20);
                assert_eq!(got, Got::Incomplete(want), "len {len}, cut at {cut}");
            }
        }
    }

    #[test]
    fn over_the_cap_stops_at_the_header() {
        let got = whole_stream(&whole(TAG_OK, &[7; 100]), 99);
        assert_eq!(
            got,
            Got::Refused(ChildError::ResultTooLarge { len: 100, max: 99 })
        );
        let got = whole_stream(&whole(TAG_OK, &[7; 100]), 100);
        assert_eq!(got, Got::Frame(TAG_OK, vec![7; 100]));
    }

    #[test]
    fn forged_lengths_cost_only_what_arrives() {
        // Headers announcing 5 GiB (which must not be cut to 32 bits), 1 TiB and u64::MAX,
        // with no cap, then a little: the reader holds its first chunk, no more, and reports
        // the frame as cut short.
        for announced in [5u64 << 30, 1 << 40, u64::MAX] {
            let mut stream = header(TAG_OK, announced);
            stream.extend_from_slice(&pattern(100_000, 2));
            let got = feed(&stream, &[1, 8, 5000], u64::MAX);
            assert_eq!(
                got,
                Got::Incomplete(FrameError::TruncatedPayload {
                    received: 100_000,
                    announced
                })
            );
        }
        let got = whole_stream(&header(TAG_OK, 5 << 30), 4 << 30);
        assert_eq!(
            got,
            Got::Refused(ChildError::ResultTooLarge {
                len: 5 << 30,
                max: 4 << 30
            })
        );
    }

    #[test]
    fn buffers_end_at_the_frame_size() {
        // The doubling stops at the announced length: a complete frame holds no slack.
        for len in [56, 1000, FIRST_CHUNK, FIRST_CHUNK + 1, 1_000_000] {
            let payload = pattern(len, 3);
            let (r, w) = sys::pipe().expect("pipe");
            let mut reader = Reader::new(u64::MAX);
            for piece in whole(TAG_OK, &payload).chunks(MAX_PIECE) {
                sys::write_all(w.as_fd(), piece).expect("write");
                assert_eq!(
                    reader.read_from(r.as_fd()).expect("read"),
                    Progress::Pending
                );
            }
            assert_eq!(reader.held(), len, "len {len}");
            assert_eq!(
                reader.received(),
                Received::Frame {
                    tag: TAG_OK,
                    payload: &payload
                }
            );
        }
    }

    #[test]
    fn headers_pfork_never_writes_are_refused() {
        let bad = |e| Got::Refused(ChildError::BadFrame(e));
        assert_eq!(
            whole_stream(&whole(9, b"x"), u64::MAX),
            bad(FrameError::UnknownKind { kind: 9 })
        );
        assert_eq!(
            whole_stream(&header(TAG_PANIC, u64::MAX), u64::MAX),
            bad(FrameError::ReportTooLarge {
                len: u64::MAX,
                max: MAX_SIDE_PAYLOAD
            })
        );
        assert_eq!(
            whole_stream(&whole(TAG_TOO_LARGE, b"abc"), u64::MAX),
            bad(FrameError::BadSizeReport { len: 3 })
        );
        let size = whole(TAG_TOO_LARGE, &7u64.to_le_bytes());
        assert_eq!(
            whole_stream(&size, 0),
            Got::Frame(TAG_TOO_LARGE, 7u64.to_le_bytes().to_vec())
        );
    }

    #[test]
    fn messages_are_clipped_under_the_report_bound() {
        let mut short = "short".to_owned();
        clip(&mut short);
        assert_eq!(short, "short");
        // Two-byte characters, so a cut at a fixed byte count would split one.
        let mut long = "é".repeat(MAX_MESSAGE);
        clip(&mut long);
        assert!(long.len() <= MAX_MESSAGE, "{}", long.len());
        assert!(long.ends_with(" [...]") && long.starts_with("éé"));
        // Message and location of a panic together stay far under the bound.
        let report = postcard::to_allocvec(&(long.clone(), Some(long))).expect("encode");
        assert!((report.len() as u64) < MAX_SIDE_PAYLOAD);
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
            let payload = pattern(len, 4);
            let mut frame = whole(TAG_OK, &payload);
            frame.extend_from_slice(b"trailing");
            let got = whole_stream(&frame, u64::MAX);
            assert_eq!(got, Got::Frame(TAG_OK, payload), "len {len}");
        }
    }

    #[test]
    fn trailing_bytes_are_ignored() {
        let mut frame = whole(TAG_OK, b"ab");
        frame.extend_from_slice(&[1; 2000]);
        let got = feed(&frame, &[7, 300], 10);
        assert_eq!(got, Got::Frame(TAG_OK, b"ab".to_vec()));
    }

    /// A byte stream: plain garbage, or a header (of any kind and length, forged or true)
    /// followed by some payload and maybe more bytes.
    fn stream() -> impl Strategy<Value = Vec<u8>> {
        let garbage = proptest::collection::vec(any::<u8>(), 0..300);
        let announced = prop_oneof![
            0u64..200,
            0u64..300_000,
            Just(8),
            Just(1 << 40),
            Just(u64::MAX),
            any::<u64>(),
        ];
        let framed = (
            0u8..6,
            announced,
            prop_oneof![Just(None), (0usize..300_000).prop_map(Some)],
            proptest::collection::vec(any::<u8>(), 0..100),
            any::<u8>(),
        )
            .prop_map(|(tag, announced, body, trailing, seed)| {
                // `None`: the announced payload exactly (or as much as is sensible).
                let body = body.unwrap_or(announced.min(300_000) as usize);
                let mut s = header(tag, announced);
                s.extend_from_slice(&pattern(body, seed));
                s.extend_from_slice(&trailing);
                s
            });
        let cut = (framed.clone(), 0usize..400_000).prop_map(|(mut s, at)| {
            s.truncate(at);
            s
        });
        prop_oneof![garbage, framed, cut]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn any_stream_in_any_pieces_ends_in_a_frame_or_a_typed_error(
            stream in stream(),
            pieces in proptest::collection::vec(1usize..20_000, 1..8),
            cap in prop_oneof![0u64..100, 0u64..400_000, Just(u64::MAX), any::<u64>()],
        ) {
            // `feed` checks the memory bound after every read; a panic fails the case.
            prop_assert_eq!(feed(&stream, &pieces, cap), model(&stream, cap));
        }

        #[test]
        fn any_payload_round_trips(tag in 0u8..3, payload in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let got = whole_stream(&whole(tag, &payload), u64::MAX);
            prop_assert_eq!(got, Got::Frame(tag, payload));
        }
    }
}
