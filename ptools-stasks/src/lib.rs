//! Server tasks for ptools: long-running worker loops that keep state between calls in
//! task-local storage, with shared arrays mapped in (`start_stasks`, `pmap_stasks`,
//! `count_stasks`, `stop_stasks`).
//!
//! This facility is not built yet: the crate holds no API until it is. It builds on
//! `ptools-workerset` and `ptools-shm`.
