//! Errors: what went wrong in one child ([`ChildError`]) and in a whole run ([`PforkError`]).

use std::fmt;

/// Why one child produced no result. The other children's outcomes are kept beside it.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChildError {
    /// `f(i)` panicked in the child.
    #[error("panicked{}: {message}", at(location))]
    Panicked {
        /// The panic message (`"Box<dyn Any>"` when the payload was not a string).
        message: String,
        /// `file:line:column` of the panic, when known.
        location: Option<String>,
    },
    /// The child was ended by a signal it did not handle (from `abort`, a crash, or `kill`
    /// from outside). A child pfork killed itself is reported as [`TimedOut`](Self::TimedOut)
    /// or [`Cancelled`](Self::Cancelled) instead.
    #[error(
        "killed by {}{}",
        crate::sys::signal_name(*signal),
        if *core_dumped { " (core dumped)" } else { "" }
    )]
    Signaled {
        /// The signal number (`libc::SIGKILL`, ...).
        signal: i32,
        /// Whether the kernel wrote a core dump.
        core_dumped: bool,
    },
    /// The child exited with a non-zero code before sending a result (for example `f` called
    /// `std::process::exit(3)`).
    #[error("exited with code {code} without a result")]
    Exited {
        /// The exit code.
        code: i32,
    },
    /// The child exited with code 0 without sending anything (for example `f` called
    /// `std::process::exit(0)`). A child that sent part of a frame is
    /// [`BadFrame`](Self::BadFrame) instead.
    #[error("exited with code 0 without a complete result")]
    NoResult,
    /// The child's result could not be encoded in the child.
    #[error("result could not be encoded: {0}")]
    Encode(String),
    /// The child's result arrived but could not be decoded as the result type.
    #[error("result could not be decoded: {0}")]
    Decode(String),
    /// The child was still running at the run's timeout; it was killed and reaped.
    #[error("timed out, killed")]
    TimedOut,
    /// `fork` (or the pipe made for this child) failed with this `errno`; the children alive
    /// at that moment were killed and reaped, and no further child was started.
    #[error("fork failed: {}", std::io::Error::from_raw_os_error(*errno))]
    ForkFailed {
        /// The `errno` of the failed call (`libc::EAGAIN`, ...).
        errno: i32,
    },
    /// The encoded result is larger than the run's cap ([`Pfork::max_result_bytes`]).
    ///
    /// Normally the child finds this before sending and reports its exact size. A child whose
    /// frame header announces more than the cap is reported the same way, with the announced
    /// length: the parent stops reading at the header and kills the child.
    ///
    /// [`Pfork::max_result_bytes`]: crate::Pfork::max_result_bytes
    #[error("result of {len} bytes is over the cap of {max} bytes")]
    ResultTooLarge {
        /// Size of the encoded result (or the length the child announced), in bytes.
        len: u64,
        /// The cap, in bytes.
        max: u64,
    },
    /// The child was never started, or was killed and reaped, because the run ended early:
    /// another child's fork failed, or the timeout came first.
    #[error("cancelled: the run ended before this child finished")]
    Cancelled,
    /// What the child wrote to its pipe is not one well-formed frame: cut short, or a header
    /// pfork never writes. Only a child that wrote to its pipe on its own (or whose memory
    /// was corrupted) gets here; a child that was killed or exited non-zero while sending is
    /// reported as [`Signaled`](Self::Signaled) or [`Exited`](Self::Exited).
    #[error("malformed result frame: {0}")]
    BadFrame(#[source] FrameError),
    /// The parent could not allocate room for the child's result (under the cap, but more
    /// than the parent's memory allows); the child was killed.
    #[error("out of memory in the parent while receiving a result of {len} bytes")]
    OutOfMemory {
        /// The result's length announced by the child, in bytes.
        len: u64,
    },
}

/// How the bytes a child sent fail to be a frame (see [`ChildError::BadFrame`]).
///
/// A frame is a 9-byte header (a kind byte and a little-endian 64-bit payload length) and
/// the payload. The parent trusts no length before the bytes arrive: its buffer grows with
/// what was received, so a forged length costs nothing.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The pipe ended inside the 9-byte header.
    #[error("the pipe ended after {received} of the 9 header bytes")]
    TruncatedHeader {
        /// Header bytes received (1 to 8).
        received: usize,
    },
    /// The pipe ended before the announced payload was complete.
    #[error("the pipe ended after {received} of the {announced} payload bytes announced")]
    TruncatedPayload {
        /// Payload bytes received.
        received: u64,
        /// Payload bytes the header announced.
        announced: u64,
    },
    /// The header's kind byte is not one pfork writes.
    #[error("unknown frame kind {kind}")]
    UnknownKind {
        /// The kind byte received.
        kind: u8,
    },
    /// A report frame (a panic message, an encoding error, a size) announced a payload
    /// larger than such reports may be.
    #[error("a report of {len} bytes is announced, over the bound of {max} bytes for reports")]
    ReportTooLarge {
        /// The announced payload length, in bytes.
        len: u64,
        /// The bound on report payloads, in bytes.
        max: u64,
    },
    /// A report that the result is over the cap does not hold the 8 bytes of a size.
    #[error("a result-size report announces {len} bytes instead of 8")]
    BadSizeReport {
        /// The announced payload length, in bytes.
        len: u64,
    },
}

/// " at <location>" when the panic's location is known.
fn at(location: &Option<String>) -> String {
    location
        .as_ref()
        .map(|l| format!(" at {l}"))
        .unwrap_or_default()
}

/// Error of a pfork run.
///
/// `R` is the children's result type: [`Children`](Self::Children) carries every child's
/// outcome, the successful results included, so nothing a child computed is lost. Take them
/// out with [`into_outcomes`](Self::into_outcomes).
#[non_exhaustive]
pub enum PforkError<R> {
    /// At least one child failed. Outcome `i` belongs to child `i`.
    Children(Vec<Result<R, ChildError>>),
    /// The process has other threads, and the run was not allowed to fork a multi-threaded
    /// process (see the crate docs, "Threads", and [`Pfork::allow_threads`]). `None` when the
    /// thread count could not be read, which is treated the same way.
    ///
    /// [`Pfork::allow_threads`]: crate::Pfork::allow_threads
    Threaded {
        /// Threads counted in this process.
        threads: Option<usize>,
    },
    /// pfork was called in a pfork child at a depth the run does not allow (see the crate
    /// docs, "Nesting", and [`Pfork::max_depth`]).
    ///
    /// [`Pfork::max_depth`]: crate::Pfork::max_depth
    Nested {
        /// Depth of the calling process: 1 in a child of a top-level run.
        depth: usize,
        /// The run's limit.
        max_depth: usize,
    },
    /// An option or argument is invalid (`max_alive(0)`); nothing was forked.
    InvalidArgument(&'static str),
    /// The shared arrays of a `pfork_shm` run could not be created; nothing was forked.
    Shm(ptools_shm::ShmError),
    /// pfork does not run on this target (see the crate docs, "Platform support"): the
    /// stub backend's `ErrorKind::Unsupported`. Found before anything else; nothing was
    /// created or forked.
    Unsupported(std::io::Error),
}

impl<R> PforkError<R> {
    /// Every child's outcome, in index order, if this is a [`Children`](Self::Children) error.
    pub fn into_outcomes(self) -> Option<Vec<Result<R, ChildError>>> {
        match self {
            Self::Children(outcomes) => Some(outcomes),
            _ => None,
        }
    }

    /// The failed children as `(index, error)` pairs, in index order (empty for an error
    /// that is not about children).
    pub fn failures(&self) -> impl Iterator<Item = (usize, &ChildError)> + '_ {
        let outcomes = match self {
            Self::Children(outcomes) => outcomes.as_slice(),
            _ => &[],
        };
        outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, o)| o.as_ref().err().map(|e| (i, e)))
    }
}

impl<R> fmt::Debug for PforkError<R> {
    // Written by hand so that `R` needs no `Debug` and a large result is not dumped: the
    // successful children are summarised by count.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Children(outcomes) => {
                let ok = outcomes.iter().filter(|o| o.is_ok()).count();
                let failed: Vec<(usize, &ChildError)> = self.failures().collect();
                f.debug_struct("Children")
                    .field("ok", &ok)
                    .field("failed", &failed)
                    .finish()
            }
            Self::Threaded { threads } => f
                .debug_struct("Threaded")
                .field("threads", threads)
                .finish(),
            Self::Nested { depth, max_depth } => f
                .debug_struct("Nested")
                .field("depth", depth)
                .field("max_depth", max_depth)
                .finish(),
            Self::InvalidArgument(what) => f.debug_tuple("InvalidArgument").field(what).finish(),
            Self::Shm(e) => f.debug_tuple("Shm").field(e).finish(),
            Self::Unsupported(e) => f.debug_tuple("Unsupported").field(e).finish(),
        }
    }
}

impl<R> fmt::Display for PforkError<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Children(outcomes) => {
                let mut failures = self.failures();
                let count = self.failures().count();
                write!(f, "{count} of {} children failed", outcomes.len())?;
                if let Some((i, e)) = failures.next() {
                    write!(f, "; child {i}: {e}")?;
                }
                Ok(())
            }
            Self::Threaded { threads: Some(n) } => write!(
                f,
                "refusing to fork a process with {n} threads (see Pfork::allow_threads)"
            ),
            Self::Threaded { threads: None } => f.write_str(
                "refusing to fork: the thread count could not be read (see Pfork::allow_threads)",
            ),
            Self::Nested { depth, max_depth } => write!(
                f,
                "pfork at depth {depth} is over the nesting limit of {max_depth} (see Pfork::max_depth)"
            ),
            Self::InvalidArgument(what) => write!(f, "invalid argument: {what}"),
            Self::Shm(_) => f.write_str("could not create the shared arrays"),
            Self::Unsupported(_) => f.write_str("pfork is not supported on this platform"),
        }
    }
}

impl<R> std::error::Error for PforkError<R> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Shm(e) => Some(e),
            Self::Unsupported(e) => Some(e),
            Self::Children(_) => self.failures().next().map(|(_, e)| e as _),
            _ => None,
        }
    }
}

impl<R> From<ptools_shm::ShmError> for PforkError<R> {
    fn from(e: ptools_shm::ShmError) -> Self {
        Self::Shm(e)
    }
}
