//! Worker processes for ptools: the same executable re-started in worker mode, remote calls
//! (`remotecall`, `remotecall_fetch`, `remotecall_wait`) and `WorkerSet`, a pool of workers
//! used round-robin or first-free.
//!
//! This facility is not built yet: the crate holds no API until it is. Its design is in the
//! repository's `ARCHITECTURE.md` and in the issue that tracks it.
