//! A test binary that lacks `enable_test_support!()`: re-executed as a worker, it runs the
//! test harness instead of worker mode. It must not become a master (no fork bomb): inside
//! it `addprocs` refuses, and the real master reports `WorkerStartFailed`.

use std::time::Duration;

use ptools_workerset::{Cluster, Error};

#[test]
fn forgetful_binary_fails_loudly() {
    let c = Cluster::builder()
        .args(["--exact", "forgetful_binary_fails_loudly", "--nocapture"])
        .start_timeout(Duration::from_secs(60))
        .build();
    let r = c.addprocs(1);
    if std::env::var_os("PTOOLS_WORKER_FD").is_some() {
        // This is the re-executed copy.
        assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
        std::process::exit(42);
    }
    assert!(
        matches!(&r, Err(Error::WorkerStartFailed(m)) if m.contains("exit code 42")),
        "{r:?}"
    );
    assert_eq!(c.procs(), vec![1]);
}
