//! Queued tasks for ptools workers: a priority queue of tasks targeting any worker, all of
//! them, chosen ids or hosts, with callbacks and priorities that can be recomputed for every
//! queued task.
//!
//! This facility is not built yet: the crate holds no API until it is. It builds on
//! `ptools-workerset`.
