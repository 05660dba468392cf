//! Internal to ptools: process-wide state that more than one ptools crate needs and only
//! one may own, and the process handle that more than one crate needs. Not a public API;
//! use it through `ptools-shm`, `ptools-fork` and `ptools-workerset`.
//!
//! Today that is the signal state: on `SIGINT` and `SIGTERM` a ptools program unlinks the
//! shared-memory segments it created and stops the workers it started, then dies by the
//! same signal (see [`signals`]). A segment is created by `ptools-shm` and a worker is
//! started by `ptools-workerset`, but a signal has one handler per process: it lives here,
//! so two crates never fight over it.
//!
//! The other is the owned handle of a child process ([`process`]): pidfd, killed at most
//! once, reaped exactly once. pfork's children (`ptools-fork`) and the workers
//! (`ptools-workerset`) both use it, and neither crate may depend on the other.
//!
//! This crate depends on nothing of ours; `ptools-shm`, `ptools-fork` and `ptools-workerset`
//! depend on it.
//!
//! # Platform support
//!
//! Linux and macOS. Other Unix targets build with a stub backend that makes no system call:
//! no signal handler is installed and every process operation fails with
//! `ErrorKind::Unsupported` (the crates above fail first, with their own typed errors).
//! `--cfg ptools_stub` selects that backend on any target, which is how CI type-checks it.
//! Targets without Unix file descriptors (`std::os::fd`) are refused at compile time: the
//! handles here are descriptors.

#[cfg(not(unix))]
compile_error!(
    "ptools needs a Unix target: its handles are file descriptors (std::os::fd); Unix \
     targets other than Linux and macOS build with a stub backend"
);

pub mod process;
pub mod signals;
mod sys;
