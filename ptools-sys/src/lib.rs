//! Internal to ptools: process-wide state that more than one ptools crate needs and only
//! one may own. Not a public API; use it through `ptools-shm` and `ptools-workerset`.
//!
//! Today that is the signal state: on `SIGINT` and `SIGTERM` a ptools program unlinks the
//! shared-memory segments it created and stops the workers it started, then dies by the
//! same signal (see [`signals`]). A segment is created by `ptools-shm` and a worker is
//! started by `ptools-workerset`, but a signal has one handler per process: it lives here,
//! so two crates never fight over it.
//!
//! This crate depends on nothing of ours; `ptools-shm` and `ptools-workerset` depend on it.

#[cfg(not(unix))]
compile_error!("ptools-sys supports Unix only (as ptools-shm and ptools-workerset do)");

pub mod signals;
