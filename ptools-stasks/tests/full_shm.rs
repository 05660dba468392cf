//! A full `/dev/shm`: starting a group whose arrays do not fit is a typed error at start,
//! never a `SIGBUS` in a task, whoever reserves, and leaves no segment behind.
//!
//! The test re-runs this binary as the role `role_small_tmpfs` in a private mount
//! namespace where `/dev/shm` is a 4 MiB tmpfs (`unshare -m`); the workers, started
//! from there, share it. Where that is not permitted it says SKIPPED.

ptools_workerset::enable_test_support!();

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ptools_shm::{Prefix, ShmCfg, ShmError};
use ptools_stasks::{Error, Reserve, STasks, TaskContext, pmap_stasks};
use ptools_workerset::Cluster;

const ROLE: &str = "PTOOLS_STASKS_TEST_ROLE";

fn first(ctx: &mut TaskContext, (): ()) -> u8 {
    ctx.array::<u8>("small").unwrap()[0]
}

fn dev_shm_entries() -> Vec<String> {
    std::fs::read_dir("/dev/shm")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
#[ignore = "a role: run by a_full_dev_shm_is_a_typed_error_at_start in a small tmpfs"]
fn role_small_tmpfs() {
    if std::env::var(ROLE).as_deref() != Ok("role_small_tmpfs") {
        return;
    }
    let cluster = Cluster::new();
    cluster.addprocs(2).unwrap();
    let big = [ShmCfg::new::<u8>("big", 8 << 20).unwrap()];
    for reserve in [Reserve::Tasks, Reserve::Master] {
        let r = STasks::builder()
            .cluster(&cluster)
            .reserve(reserve)
            .control_timeout(Duration::from_secs(60))
            .start(&big, &Prefix::job());
        match &r {
            Err(Error::Shm(ShmError::OutOfSpace { name, bytes })) => {
                println!("{reserve:?}: out of space: {name}, {bytes} bytes");
            }
            _ => panic!("{reserve:?}: expected OutOfSpace, got {r:?}"),
        }
        assert_eq!(dev_shm_entries(), Vec::<String>::new(), "{reserve:?}");
    }
    // The workers are unharmed, and an array that fits works.
    let small = [ShmCfg::new::<u8>("small", 1 << 20).unwrap()];
    let h = STasks::builder()
        .cluster(&cluster)
        .call_timeout(Duration::from_secs(60))
        .start(&small, &Prefix::job())
        .unwrap();
    assert_eq!(pmap_stasks(&h, first, [(), ()]).unwrap(), [0, 0]);
    drop(h);
    assert_eq!(dev_shm_entries(), Vec::<String>::new());
    println!("ROLE OK");
}

#[test]
fn a_full_dev_shm_is_a_typed_error_at_start() {
    let probe = Command::new("unshare")
        .args(["-m", "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /dev/shm"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        println!(
            "SKIPPED a_full_dev_shm_is_a_typed_error_at_start: `unshare -m` with a tmpfs \
             mount is not permitted here (needs root or user namespaces)"
        );
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let out_path = std::env::temp_dir().join(format!("ptools-stasks-full-{}", std::process::id()));
    let out_file = std::fs::File::create(&out_path).unwrap();
    let mut child = Command::new("unshare")
        .args([
            "-m",
            "sh",
            "-c",
            "mount -t tmpfs -o size=4m tmpfs /dev/shm && exec \"$@\"",
            "sh",
        ])
        .arg(exe)
        .args(["--exact", "role_small_tmpfs", "--ignored", "--nocapture"])
        .env(ROLE, "role_small_tmpfs")
        .stdin(Stdio::null())
        .stdout(out_file.try_clone().unwrap())
        .stderr(out_file)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            // Its workers die with it (they never outlive their master).
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    println!("{out}");
    let status = status.unwrap_or_else(|| panic!("the role timed out\n{out}"));
    assert!(
        status.success() && out.contains("ROLE OK"),
        "status {status}\n{out}"
    );
}
