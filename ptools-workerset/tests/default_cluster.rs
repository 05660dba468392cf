//! The free functions on the process-wide default cluster, as in Julia. One test, because
//! the default cluster is shared by the whole test binary.

ptools_workerset::enable_test_support!();

use ptools_workerset::{
    Mode, WorkerSet, addprocs, myid, nprocs, nworkers, pmap, procs, remotecall, remotecall_fetch,
    remotecall_wait, rmprocs, workers,
};

fn id(_: ()) -> usize {
    myid()
}

#[test]
fn julia_style_free_functions() {
    assert_eq!(
        (myid(), procs(), workers(), nprocs(), nworkers()),
        (1, vec![1], vec![1], 1, 1)
    );
    let ids = addprocs(2).unwrap();
    assert_eq!(procs(), vec![1, ids[0], ids[1]]);
    assert_eq!((nprocs(), nworkers()), (3, 2));
    assert_eq!(remotecall_fetch(ids[1], id, ()).unwrap(), ids[1]);
    assert_eq!(remotecall(ids[0], id, ()).unwrap().fetch().unwrap(), ids[0]);
    remotecall_wait(ids[0], id, ()).unwrap();
    assert_eq!(pmap(|x: i32| -x, [1, 2, 3]).unwrap(), vec![-1, -2, -3]);
    let ws = WorkerSet::with_mode(&ids, Mode::RoundRobin).unwrap();
    assert_eq!(ws.remotecall_fetch(id, ()).unwrap(), ids[0]);
    // The one-argument form is first-free, the default mode.
    let ff = WorkerSet::new(&ids).unwrap();
    assert_eq!(
        (ff.mode(), Mode::default()),
        (Mode::FirstFree, Mode::FirstFree)
    );
    assert_eq!(ff.workers(), ids);
    assert_eq!(ff.remotecall_fetch(id, ()).unwrap(), ids[0]);
    rmprocs(&[ids[0]]).unwrap();
    assert_eq!(workers(), vec![ids[1]]);
    // ids[1] stays up: the atexit handler stops it when the test binary exits.
}
