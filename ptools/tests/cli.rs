//! The `ptools` command-line tool on real segments, including one whose owner was killed
//! with SIGKILL.
#![cfg(feature = "cli")]

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ptools::shm::{Prefix, ShmArray, ShmCfg};

const ROLE: &str = "PTOOLS_CLI_TEST_ROLE";

fn ptools(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ptools"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Removes the prefix's segments even if the test fails.
struct Guard(String);

impl Drop for Guard {
    fn drop(&mut self) {
        let start = format!("ptools_{}_", self.0);
        for e in std::fs::read_dir("/dev/shm")
            .into_iter()
            .flatten()
            .flatten()
        {
            if e.file_name().to_string_lossy().starts_with(&start) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[test]
#[ignore = "child role of list_and_clean_a_killed_owners_segment"]
fn role_killed_owner() {
    if std::env::var(ROLE).as_deref() != Ok("role_killed_owner") {
        return;
    }
    let prefix = Prefix::new(std::env::var("T_PREFIX").unwrap()).unwrap();
    let _a =
        ShmArray::<f32>::create(&ShmCfg::new::<f32>("orphan", [3, 7]).unwrap(), &prefix).unwrap();
    // SAFETY: kill(2) on our own pid; SIGKILL runs no destructor, as a crash would.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

#[test]
fn list_and_clean_a_killed_owners_segment() {
    let p = format!("cli{}", std::process::id());
    let _guard = Guard(p.clone());
    let prefix = Prefix::new(p.as_str()).unwrap();
    let live = ShmArray::<u16>::create(&ShmCfg::new::<u16>("alive", 10).unwrap(), &prefix).unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "role_killed_owner", "--ignored"])
        .env(ROLE, "role_killed_owner")
        .env("T_PREFIX", &p)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the owner never died");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(status.signal(), Some(libc::SIGKILL));

    let out = ptools(&["shm", "list", "--prefix", &p]);
    assert!(out.status.success(), "{}", text(&out));
    let listing = text(&out);
    let orphan = listing
        .lines()
        .find(|l| l.contains(&format!("ptools_{p}_orphan")))
        .unwrap_or_else(|| panic!("orphan not listed:\n{listing}"));
    assert!(orphan.contains("f32") && orphan.contains("3x7"), "{orphan}");
    assert!(
        orphan.contains(&child.id().to_string()) && orphan.contains("no (stale)"),
        "{orphan}"
    );
    let alive = listing.lines().find(|l| l.contains("_alive")).unwrap();
    assert!(alive.contains("u16") && alive.contains("yes"), "{alive}");

    // A dry run names the stale segment and removes nothing.
    let out = ptools(&["shm", "clean", "--prefix", &p, "--dry-run"]);
    assert!(out.status.success());
    assert!(text(&out).contains(&format!("would remove /ptools_{p}_orphan")));
    assert!(std::path::Path::new(&format!("/dev/shm/ptools_{p}_orphan")).exists());

    let out = ptools(&["shm", "clean", "--prefix", &p]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("removed 1 stale segment(s)"),
        "{}",
        text(&out)
    );
    assert!(!std::path::Path::new(&format!("/dev/shm/ptools_{p}_orphan")).exists());
    assert!(
        std::path::Path::new(&format!("/dev/shm/ptools_{p}_alive")).exists(),
        "a live owner's segment stays"
    );
    drop(live);
}

#[test]
fn clean_needs_a_prefix_or_all() {
    // Without a scope, nothing is removed: the command asks for `--prefix` or `--all`.
    let out = ptools(&["shm", "clean"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("--prefix") && text(&out).contains("--all"),
        "{}",
        text(&out)
    );
    // Both at once is refused too.
    let out = ptools(&["shm", "clean", "--prefix", "x", "--all"]);
    assert!(!out.status.success(), "{}", text(&out));
    // The help says what `--all` reaches.
    let out = ptools(&["shm", "clean", "--help"]);
    assert!(
        text(&out).contains("every stale ptools segment on this machine"),
        "{}",
        text(&out)
    );
    // A dry run over the whole machine removes nothing and succeeds.
    let out = ptools(&["shm", "clean", "--all", "--dry-run"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("would remove"), "{}", text(&out));
}

#[test]
fn empty_or_malformed_prefixes_are_refused() {
    for bad in ["", "*", "a_b", "../x"] {
        let out = ptools(&["shm", "clean", "--prefix", bad]);
        assert!(!out.status.success(), "prefix {bad:?} accepted");
        assert!(text(&out).contains("invalid prefix"), "{}", text(&out));
    }
}

#[test]
fn objects_without_our_header_are_never_listed_or_removed() {
    let p = format!("clif{}", std::process::id());
    let _guard = Guard(p.clone());
    let path = format!("/dev/shm/ptools_{p}_foreign");
    std::fs::write(&path, vec![0u8; 4096]).unwrap();
    let out = ptools(&["shm", "list", "--prefix", &p]);
    assert!(!text(&out).contains("foreign"), "{}", text(&out));
    let out = ptools(&["shm", "clean", "--prefix", &p]);
    assert!(out.status.success());
    assert!(std::path::Path::new(&path).exists());
}

#[test]
fn bench_reports_every_headline_ratio_and_leaves_nothing() {
    let before: Vec<_> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let out = ptools(&["bench", "--rounds", "3"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for scenario in [
        "pfork(2), trivial",
        "pfork(8), trivial",
        "shm create cycle, 1 MiB, not reserved",
        "remotecall_fetch round trip (u64)",
    ] {
        let line = t
            .lines()
            .find(|l| l.starts_with(scenario))
            .unwrap_or_else(|| panic!("no row for {scenario}:\n{t}"));
        let ratio: f64 = line
            .split_whitespace()
            .find_map(|w| w.strip_suffix('x').and_then(|r| r.parse().ok()))
            .unwrap_or_else(|| panic!("no ratio in {line:?}"));
        assert!(ratio > 0.0 && ratio.is_finite(), "{line}");
    }
    // Only the bench's own names (`ptools_bench<pid>_...`): the other tests of this file
    // run at the same time and make segments of their own.
    let after: Vec<_> = std::fs::read_dir("/dev/shm")
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| !before.contains(n))
        .filter(|n| n.to_string_lossy().starts_with("ptools_bench"))
        .collect();
    assert!(after.is_empty(), "left in /dev/shm: {after:?}");

    let out = ptools(&["bench", "--rounds", "0"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("--rounds must be at least 1"),
        "{}",
        text(&out)
    );
}
