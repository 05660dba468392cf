//! Helpers shared by the integration tests: unique prefixes with a cleanup guard, and
//! re-running this test binary as a child process in a given role.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different part

use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ptools_shm::Prefix;

/// A prefix no other test (in this or any other process) uses, whose segments are all
/// unlinked when the guard drops, even if the test panicked.
pub struct TestPrefix(pub Prefix);

impl TestPrefix {
    pub fn new() -> TestPrefix {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        TestPrefix(Prefix::new(format!("t{}-{n}", std::process::id())).unwrap())
    }

    /// The entries of /dev/shm under this prefix.
    pub fn leftovers(&self) -> Vec<String> {
        let start = format!("ptools_{}_", self.0.as_str());
        std::fs::read_dir("/dev/shm")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&start))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for TestPrefix {
    fn drop(&mut self) {
        for name in self.leftovers() {
            let _ = std::fs::remove_file(format!("/dev/shm/{name}"));
        }
    }
}

impl std::ops::Deref for TestPrefix {
    type Target = Prefix;
    fn deref(&self) -> &Prefix {
        &self.0
    }
}

/// The environment variable that tells a re-run test binary which role to play.
pub const ROLE: &str = "PTOOLS_SHM_TEST_ROLE";

/// This test binary, re-run to execute only the ignored test `name` with `envs` set.
pub fn child(name: &str, envs: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        name,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE, name)
    .envs(envs.iter().copied())
    .stdin(Stdio::null());
    cmd
}

/// Whether this process was started by [`child`] to play `name`.
pub fn is_role(name: &str) -> bool {
    std::env::var(ROLE).is_ok_and(|r| r == name)
}

/// Asserts that a role process succeeded and printed `ROLE OK` (its last act), showing
/// its status and output otherwise.
pub fn assert_role_ok(out: &std::process::Output) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ROLE OK"),
        "status {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits for `child` at most `limit`, killing and reaping it on timeout.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let status = child.wait().unwrap();
            panic!("child {} timed out after {limit:?} ({status})", child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Kills and reaps children that a failing test would otherwise leave behind.
pub struct Reaper(pub Vec<Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        for c in &mut self.0 {
            if c.try_wait().ok().flatten().is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
