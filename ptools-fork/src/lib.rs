//! Fork-based fan-out for ptools: `pfork(n, f)` forks `n` children, child `i` runs `f(i)`,
//! and the parent gets the `n` results in index order; `pfork_shm` lets the children write
//! straight into shared arrays from [`ptools-shm`](https://docs.rs/ptools-shm).
//!
//! This facility is not built yet: the crate holds no API until it is. Its design is in the
//! repository's `ARCHITECTURE.md` and in the issue that tracks it.
