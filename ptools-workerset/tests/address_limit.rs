//! Under a 1 GiB address-space limit, a worker that announces a 4 GiB frame costs the master
//! only the bytes that actually came: the master gets a typed error for that worker and goes
//! on, instead of aborting on an allocation it was talked into.

ptools_workerset::enable_test_support!();

use std::process::Command;
use std::time::Duration;

use ptools_workerset::__test_hooks::write_raw_to_data_link;
use ptools_workerset::{Cluster, Error, Termination};

const MARK: &str = "PTOOLS_TEST_AS_LIMIT";
const GIB: u64 = 1 << 30;

fn add1(x: u64) -> u64 {
    x + 1
}

/// Announces a frame of almost 4 GiB, sends 1000 bytes of it, exits.
fn forge_then_exit(_: ()) {
    let mut b = 0xffff_fff0u32.to_le_bytes().to_vec();
    b.push(1);
    b.extend_from_slice(&[0; 1000]);
    write_raw_to_data_link(&b).unwrap();
    std::process::exit(4);
}

fn limited() {
    let lim = libc::rlimit {
        rlim_cur: GIB,
        rlim_max: GIB,
    };
    // SAFETY: setrlimit with a valid struct; only this process (a re-run of one test) and
    // the workers it starts are limited.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_AS, &lim) }, 0);
    // The limit bites: the old reader's up-front 4 GiB buffer could not be had.
    assert!(
        Vec::<u8>::new()
            .try_reserve_exact(2 * GIB as usize)
            .is_err()
    );

    let c = Cluster::builder()
        .max_frame_bytes(u32::MAX as usize)
        .start_timeout(Duration::from_secs(60))
        .build();
    let ids = c.addprocs(2).unwrap();
    match c.remotecall_fetch(ids[0], forge_then_exit, ()) {
        Err(Error::WorkerDied { termination, .. }) => {
            assert_eq!(termination, Termination::Exited(4));
        }
        other => panic!("expected WorkerDied, got {other:?}"),
    }
    assert_eq!(c.remotecall_fetch(ids[1], add1, 1).unwrap(), 2);
}

#[test]
fn a_forged_4_gib_frame_costs_the_master_only_what_arrived() {
    if std::env::var_os(MARK).is_some() {
        return limited();
    }
    // Run this test alone in a fresh process, where the limit cannot disturb other tests.
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_forged_4_gib_frame_costs_the_master_only_what_arrived",
            "--test-threads=1",
        ])
        .env(MARK, "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("1 passed"),
        "the limited run failed: {:?}\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
