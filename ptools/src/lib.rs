//! ptools: process-based parallel computing for Rust.
//!
//! The facade re-exports each facility as a module; the facilities that have landed so far
//! are listed below.

#[doc(inline)]
pub use ptools_shm as shm;
