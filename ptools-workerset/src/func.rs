//! Functions as data: offsets from an anchor symbol, and the trampolines that decode, call
//! and encode.
//!
//! A remote function is a `fn(A) -> R` pointer. It travels as its distance from [`anchor`],
//! a function of this crate linked into the same executable; the trampoline
//! `trampoline::<A, R>` (monomorphised in the master, so it exists in the worker's identical
//! image too) travels the same way. The handshake proves that master and worker run the
//! very same file, so the worker can turn the offsets back into pointers.
//!
//! That only holds for code in the executable's own image: a function of a shared library
//! (one `dlopen`ed at run time, say) lies wherever the loader put that library, and its
//! offset from the anchor means nothing in another process. So the master checks, before
//! anything is sent, that both addresses lie in the executable's own code, and refuses any
//! other with [`Error::ForeignFunction`].

use std::cell::RefCell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Once, OnceLock};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::{Home, Out};
use crate::error::{Error, Result};

/// The fixed point every offset is measured from.
#[inline(never)]
pub(crate) fn anchor() -> usize {
    // A body that cannot be folded with another function's.
    std::hint::black_box(0x7074_6f6f_6c73)
}

/// What a trampoline reports; the numbers are the response kinds on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Status {
    /// `out` holds the encoded result.
    Ok = 1,
    /// `out` holds an encoded `(message, Option<location>)`.
    Panic = 2,
    /// The argument did not decode; `out` holds the message.
    DecodeArg = 3,
    /// The result did not encode; `out` holds the message.
    EncodeResult = 4,
    /// The result is over the link's frame cap and was not sent; `out` holds
    /// `[len u64][cap u64]`.
    TooLarge = 5,
}

impl Status {
    pub(crate) fn from_u8(b: u8) -> Option<Status> {
        match b {
            1 => Some(Status::Ok),
            2 => Some(Status::Panic),
            3 => Some(Status::DecodeArg),
            4 => Some(Status::EncodeResult),
            5 => Some(Status::TooLarge),
            _ => None,
        }
    }
}

/// The type every trampoline has once it is turned back into a pointer.
///
/// # Safety
///
/// `f` must be the address of a `fn(A) -> R` for exactly the `A` and `R` the trampoline was
/// monomorphised with.
pub(crate) type Tramp =
    unsafe fn(f: usize, arg: &[u8], home: Option<&Home>, out: &mut Out<'_>) -> Status;

/// A function and its trampoline, as offsets from [`anchor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FnRef {
    pub(crate) f_off: u64,
    pub(crate) tramp_off: u64,
}

/// The anchor's address in this process.
pub(crate) fn anchor_addr() -> usize {
    anchor as fn() -> usize as usize
}

fn offset(addr: usize) -> u64 {
    addr.wrapping_sub(anchor_addr()) as u64
}

fn address(off: u64) -> usize {
    anchor_addr().wrapping_add(off as usize)
}

/// The executable's own code as `[start, start + len)`: from the lowest to the highest
/// address of its executable `PT_LOAD` segments. `(0, 0)` (nothing passes) when it could
/// not be found.
static TEXT: OnceLock<(usize, usize)> = OnceLock::new();

/// True when `addr` lies in the executable's own code (one subtraction, one comparison
/// once the range is known).
pub(crate) fn in_executable(addr: usize) -> bool {
    let &(start, len) = TEXT.get_or_init(crate::sys::executable_text);
    addr.wrapping_sub(start) < len
}

/// `addr` as an offset from the anchor, if it lies in the executable's own code.
fn checked_offset(addr: usize) -> Result<u64> {
    if in_executable(addr) {
        Ok(offset(addr))
    } else {
        Err(Error::ForeignFunction { addr })
    }
}

/// A place in the executable's own code, measured the way remote functions travel: to
/// send a function pointer of another shape than `fn(A) -> R` (as ptools-stasks does for
/// its handlers) inside the argument of a remote call.
///
/// Making one checks that the address lies in the executable's own code; turning it back
/// into an address in another process is meaningful only when that process runs the same
/// executable (every worker does: the handshake checks it). Turning the address into a
/// function pointer is the receiver's `unsafe` business: nothing here vouches for the
/// pointer's type, and a `CodeOffset` decoded from bytes can be any offset at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub struct CodeOffset(u64);

impl CodeOffset {
    /// The offset of the code at `addr` (a function pointer cast to `usize`).
    ///
    /// # Errors
    ///
    /// [`Error::ForeignFunction`] when `addr` does not lie in the executable's own code.
    pub fn of(addr: usize) -> Result<CodeOffset> {
        checked_offset(addr).map(CodeOffset)
    }

    /// The address in this process, or `None` when it would not lie in the executable's
    /// own code (so not a function of this image whatever the sender meant).
    pub fn addr(self) -> Option<usize> {
        let a = address(self.0);
        in_executable(a).then_some(a)
    }
}

impl FnRef {
    /// The reference for calling `f` on one argument.
    ///
    /// # Errors
    ///
    /// [`Error::ForeignFunction`] when `f` (or the trampoline) lies outside the
    /// executable's own code.
    pub(crate) fn single<A: DeserializeOwned, R: Serialize>(f: fn(A) -> R) -> Result<FnRef> {
        Ok(FnRef {
            f_off: checked_offset(f as usize)?,
            tramp_off: checked_offset(trampoline::<A, R> as Tramp as usize)?,
        })
    }

    /// The reference for calling `f` on each element of a `Vec<A>` (a `pmap` batch).
    ///
    /// # Errors
    ///
    /// As for [`FnRef::single`].
    pub(crate) fn batch<A: DeserializeOwned, R: Serialize>(f: fn(A) -> R) -> Result<FnRef> {
        Ok(FnRef {
            f_off: checked_offset(f as usize)?,
            tramp_off: checked_offset(batch_trampoline::<A, R> as Tramp as usize)?,
        })
    }

    /// Runs the call in this process.
    ///
    /// # Safety
    ///
    /// The offsets must come from [`FnRef::single`] or [`FnRef::batch`] in a process running
    /// the same executable image (this process, or a master whose build the handshake
    /// checked). `home`: the region `arg` lies in, when it does (a `SharedSlice` in the
    /// argument is then a view of it).
    pub(crate) unsafe fn invoke(
        self,
        arg: &[u8],
        home: Option<&Home>,
        out: &mut Out<'_>,
    ) -> Status {
        // SAFETY: by the caller's promise, `tramp_off` is the offset of a `Tramp` in this
        // image, so the address is that function's.
        let tramp: Tramp = unsafe { std::mem::transmute::<usize, Tramp>(address(self.tramp_off)) };
        // SAFETY: `f_off` was made together with `tramp_off`, for the same `A` and `R`.
        unsafe { tramp(address(self.f_off), arg, home, out) }
    }
}

/// Decodes `A`, calls `f`, encodes `R`; a panic becomes [`Status::Panic`].
///
/// # Safety
///
/// `f` must be the address of a `fn(A) -> R`.
unsafe fn trampoline<A: DeserializeOwned, R: Serialize>(
    f: usize,
    arg: &[u8],
    home: Option<&Home>,
    out: &mut Out<'_>,
) -> Status {
    // SAFETY: the caller promises `f` is a `fn(A) -> R`; fn pointers are address-sized.
    let f: fn(A) -> R = unsafe { std::mem::transmute::<usize, fn(A) -> R>(f) };
    let a: A = match crate::codec::decode_in(arg, home) {
        Ok(a) => a,
        Err(e) => return message(out, Status::DecodeArg, &e.to_string()),
    };
    match run_catching(move || f(a)) {
        Ok(r) => encode_into(&r, out),
        Err((m, l)) => panic_into(out, &m, l),
    }
}

/// Like [`trampoline`] over a `Vec<A>`, giving a `Vec<R>`.
///
/// # Safety
///
/// `f` must be the address of a `fn(A) -> R`.
unsafe fn batch_trampoline<A: DeserializeOwned, R: Serialize>(
    f: usize,
    arg: &[u8],
    home: Option<&Home>,
    out: &mut Out<'_>,
) -> Status {
    // SAFETY: the caller promises `f` is a `fn(A) -> R`; fn pointers are address-sized.
    let f: fn(A) -> R = unsafe { std::mem::transmute::<usize, fn(A) -> R>(f) };
    let items: Vec<A> = match crate::codec::decode_in(arg, home) {
        Ok(a) => a,
        Err(e) => return message(out, Status::DecodeArg, &e.to_string()),
    };
    match run_catching(move || items.into_iter().map(f).collect::<Vec<R>>()) {
        Ok(r) => encode_into(&r, out),
        Err((m, l)) => panic_into(out, &m, l),
    }
}

fn encode_into<R: Serialize>(r: &R, out: &mut Out<'_>) -> Status {
    let start = out.len();
    match crate::codec::encode_out(r, out) {
        Ok(()) => Status::Ok,
        Err(e) => {
            // Start over with the message only.
            out.truncate(start);
            message(out, Status::EncodeResult, &e.to_string())
        }
    }
}

fn message(out: &mut Out<'_>, status: Status, m: &str) -> Status {
    out.extend(m.as_bytes());
    status
}

fn panic_into(out: &mut Out<'_>, m: &str, l: Option<String>) -> Status {
    let start = out.len();
    if crate::codec::encode_out(&(m, l), out).is_err() {
        out.truncate(start);
    }
    Status::Panic
}

/// Decodes what [`Status::Panic`] carried.
pub(crate) fn decode_panic(bytes: &[u8]) -> (String, Option<String>) {
    crate::codec::decode(bytes).unwrap_or_else(|_| ("<undecodable panic>".into(), None))
}

thread_local! {
    /// Set while a remote call runs on this thread: the hook stores the location here
    /// instead of printing.
    static CAPTURE: RefCell<Option<Option<String>>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

/// Wraps the panic hook once: on a thread running a remote call the location is kept for
/// the caller; elsewhere the previous hook runs as before.
fn install_hook() {
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let captured = CAPTURE.with(|c| match c.try_borrow_mut() {
                Ok(mut c) if c.is_some() => {
                    *c = Some(info.location().map(|l| l.to_string()));
                    true
                }
                _ => false,
            });
            if !captured {
                prev(info);
            }
        }));
    });
}

/// Runs `f`, turning a panic into its message and location.
fn run_catching<T>(f: impl FnOnce() -> T) -> Result<T, (String, Option<String>)> {
    install_hook();
    CAPTURE.with(|c| *c.borrow_mut() = Some(None));
    let r = catch_unwind(AssertUnwindSafe(f));
    let loc = CAPTURE.with(|c| c.borrow_mut().take()).flatten();
    r.map_err(|p| {
        let m = if let Some(s) = p.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = p.downcast_ref::<String>() {
            s.clone()
        } else {
            "<non-string panic payload>".to_owned()
        };
        (m, loc)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(x: (u32, u32)) -> u32 {
        x.0 + x.1
    }

    fn boom(_: ()) -> u8 {
        panic!("boom")
    }

    #[test]
    fn local_invoke_round_trips() {
        let r = FnRef::single(add).unwrap();
        let mut out = Out::new(Vec::new());
        let arg = crate::codec::encode(&(2u32, 3u32)).unwrap();
        // SAFETY: made by `FnRef::single` in this process.
        let s = unsafe { r.invoke(&arg, None, &mut out) };
        assert_eq!(s, Status::Ok);
        assert_eq!(crate::codec::decode::<u32>(&out.finish().0).unwrap(), 5);
    }

    #[test]
    fn closures_coerce_and_panics_are_caught() {
        let r = FnRef::batch::<u8, u8>(|x| x * 2).unwrap();
        let mut out = Out::new(Vec::new());
        let arg = crate::codec::encode(&vec![1u8, 2, 3]).unwrap();
        // SAFETY: made by `FnRef::batch` in this process.
        assert_eq!(unsafe { r.invoke(&arg, None, &mut out) }, Status::Ok);
        assert_eq!(
            crate::codec::decode::<Vec<u8>>(&out.finish().0).unwrap(),
            vec![2, 4, 6]
        );

        let mut out = Out::new(Vec::new());
        // SAFETY: made by `FnRef::single` in this process.
        let s = unsafe { FnRef::single(boom).unwrap().invoke(&[], None, &mut out) };
        assert_eq!(s, Status::Panic);
        let (m, l) = decode_panic(&out.finish().0);
        assert_eq!(m, "boom");
        assert!(l.unwrap().contains("func.rs"));
    }

    #[test]
    fn the_executables_code_is_found() {
        assert!(in_executable(anchor_addr()));
        assert!(in_executable(add as fn((u32, u32)) -> u32 as usize));
        // Data is not code.
        static DATA: u8 = 0;
        assert!(!in_executable(&raw const DATA as usize));
        assert!(!in_executable(0));
    }

    #[test]
    fn code_offsets_round_trip_and_refuse_data() {
        let f = add as fn((u32, u32)) -> u32 as usize;
        assert_eq!(CodeOffset::of(f).unwrap().addr(), Some(f));
        static DATA: u8 = 0;
        let d = &raw const DATA as usize;
        assert!(matches!(
            CodeOffset::of(d),
            Err(Error::ForeignFunction { addr }) if addr == d
        ));
        assert_eq!(CodeOffset(offset(d)).addr(), None);
    }

    #[test]
    fn bad_argument_is_reported() {
        let mut out = Out::new(Vec::new());
        // SAFETY: made by `FnRef::single` in this process.
        let s = unsafe { FnRef::single(add).unwrap().invoke(&[0xff], None, &mut out) };
        assert_eq!(s, Status::DecodeArg);
    }
}
