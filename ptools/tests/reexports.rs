//! Every facility and prelude name the facade promises resolves to the facility crate's
//! own item (a compile-time check, plus a run that uses each path once).

use std::any::TypeId;

#[test]
fn shm_reexports_are_the_facility_items() {
    assert_eq!(
        TypeId::of::<ptools::shm::ShmCfg>(),
        TypeId::of::<ptools_shm::ShmCfg>()
    );
    assert_eq!(
        TypeId::of::<ptools::prelude::ShmSet>(),
        TypeId::of::<ptools_shm::ShmSet>()
    );
    assert_eq!(
        TypeId::of::<ptools::prelude::ShmArray<u8>>(),
        TypeId::of::<ptools_shm::ShmArray<u8>>()
    );
    assert_eq!(
        TypeId::of::<ptools::prelude::ShmError>(),
        TypeId::of::<ptools_shm::ShmError>()
    );
    let _: fn(&[ptools::prelude::ShmCfg], &ptools::prelude::Prefix) -> ptools::shm::Result<()> =
        ptools::prelude::unlink_shm;
    let _ = ptools::prelude::list_shm;
    let _ = ptools::prelude::remove_stale_shm;
    let _ = ptools::prelude::ShmBuilder::new();
    fn elem<T: ptools::prelude::ShmElem>() {}
    elem::<f64>();
}

#[test]
fn workerset_reexports_are_the_facility_items() {
    use ptools::prelude as p;
    assert_eq!(
        TypeId::of::<p::WorkerSet>(),
        TypeId::of::<ptools_workerset::WorkerSet>()
    );
    assert_eq!(
        TypeId::of::<p::Cluster>(),
        TypeId::of::<ptools_workerset::Cluster>()
    );
    assert_eq!(
        TypeId::of::<p::RemoteRef<u8>>(),
        TypeId::of::<ptools_workerset::RemoteRef<u8>>()
    );
    assert_eq!(
        TypeId::of::<ptools::workerset::Error>(),
        TypeId::of::<ptools_workerset::Error>()
    );
    let _: fn(usize) -> ptools::workerset::Result<Vec<usize>> = p::addprocs;
    let _: fn(&[usize]) -> ptools::workerset::Result<()> = p::rmprocs;
    let _: fn() -> Vec<usize> = p::procs;
    let _: fn() -> Vec<usize> = p::workers;
    let _: fn() -> usize = p::nprocs;
    let _: fn() -> usize = p::nworkers;
    let _: fn() -> usize = p::myid;
    let _ = p::remotecall::<u8, u8>;
    let _ = p::remotecall_fetch::<u8, u8>;
    let _ = p::remotecall_wait::<u8, u8>;
    let _: fn() = p::init;
    let _ = p::pmap::<u8, u8, Vec<u8>>;
    let _ = p::Mode::FirstFree;
    assert_eq!(p::myid(), 1, "the test process is the master");
}

#[test]
fn fork_reexports_are_the_facility_items() {
    use ptools::prelude as p;
    assert_eq!(TypeId::of::<p::Pfork>(), TypeId::of::<ptools_fork::Pfork>());
    assert_eq!(
        TypeId::of::<p::ChildError>(),
        TypeId::of::<ptools_fork::ChildError>()
    );
    assert_eq!(
        TypeId::of::<p::PforkError<u8>>(),
        TypeId::of::<ptools_fork::PforkError<u8>>()
    );
    let _ = p::pfork::<u8, fn(usize) -> u8>;
    let _ = p::pfork_shm::<fn(usize, &mut ptools::shm::ShmSet)>;
}

#[test]
fn queue_reexports_are_the_facility_items() {
    use ptools::prelude as p;
    assert_eq!(
        TypeId::of::<p::TaskQueue>(),
        TypeId::of::<ptools_queue::TaskQueue>()
    );
    assert_eq!(
        TypeId::of::<p::QueuedWorkerTask<u8, u8>>(),
        TypeId::of::<ptools_queue::QueuedWorkerTask<u8, u8>>()
    );
    assert_eq!(
        TypeId::of::<p::Target>(),
        TypeId::of::<ptools_queue::Target>()
    );
    let _ = p::queue_worker_task::<u8, u8>;
    let _ = p::execute_worker_task::<u8, u8>;
    let _ = p::dequeue_worker_task;
    let _ = p::prep_remotes;
    let _ = p::num_remotes;
    // Takes `impl FnMut`, so it cannot be named as a value; the path must still resolve.
    #[allow(unused_imports)]
    use ptools::prelude::set_priorities as _;
}

#[test]
fn stasks_reexports_are_the_facility_items() {
    use ptools::prelude as p;
    assert_eq!(
        TypeId::of::<p::STasks>(),
        TypeId::of::<ptools_stasks::STasks>()
    );
    assert_eq!(
        TypeId::of::<p::TaskContext>(),
        TypeId::of::<ptools_stasks::TaskContext>()
    );
    let _: fn(&p::STasks) -> usize = p::count_stasks;
    let _ = p::start_stasks;
    let _ = p::stop_stasks;
    let _ = p::pmap_shm_create;
    let _ = p::pmap_shm_unlink;
    #[allow(unused_imports)]
    use ptools::prelude::pmap_stasks as _;
}
