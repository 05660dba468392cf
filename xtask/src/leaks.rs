//! The leak check: shared-memory segments and processes that outlive a run.
//!
//! Before the run it records which `ptools_*` objects are in `/dev/shm` and which processes
//! run an executable from the target directory; afterwards it names every new one. A process
//! gets a short grace period to exit first, since a worker told to stop at the very end of a
//! test may still be on its way out.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

const SHM_DIR: &str = "/dev/shm";
const GRACE: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) struct Snapshot {
    segments: BTreeSet<String>,
    processes: BTreeSet<(u32, String)>,
}

impl Snapshot {
    pub(crate) fn take(target: &Path) -> Snapshot {
        Snapshot {
            segments: segments(),
            processes: processes(target),
        }
    }
}

fn segments() -> BTreeSet<String> {
    let Ok(entries) = std::fs::read_dir(SHM_DIR) else {
        return BTreeSet::new();
    };
    entries
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ptools_"))
        .collect()
}

/// Processes whose executable lies under `target`, except this one and its ancestors
/// (xtask itself is built there).
fn processes(target: &Path) -> BTreeSet<(u32, String)> {
    let ancestors = ancestors();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    let target = target
        .canonicalize()
        .unwrap_or_else(|_| target.to_path_buf());
    let mut found = BTreeSet::new();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if ancestors.contains(&pid) {
            continue;
        }
        let Ok(exe) = std::fs::read_link(entry.path().join("exe")) else {
            continue;
        };
        if exe.starts_with(&target) {
            found.insert((pid, exe.display().to_string()));
        }
    }
    found
}

fn ancestors() -> BTreeSet<u32> {
    let mut set = BTreeSet::new();
    let mut pid = std::process::id();
    while pid > 1 && set.insert(pid) {
        pid = parent_of(pid).unwrap_or(0);
    }
    set
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: read after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

pub(crate) fn check(before: &Snapshot, target: &Path) -> Result<(), String> {
    println!(
        "\n$ leak check ({SHM_DIR}, processes from {})",
        target.display()
    );
    let deadline = Instant::now() + GRACE;
    let mut new_processes;
    loop {
        new_processes = processes(target)
            .difference(&before.processes)
            .cloned()
            .collect::<Vec<_>>();
        if new_processes.is_empty() || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let new_segments: Vec<String> = segments().difference(&before.segments).cloned().collect();

    let mut problems = Vec::new();
    if !new_segments.is_empty() {
        problems.push(format!(
            "segments left in {SHM_DIR}: {}",
            new_segments.join(", ")
        ));
    }
    if !new_processes.is_empty() {
        let list: Vec<String> = new_processes
            .iter()
            .map(|(pid, exe)| format!("{pid} ({exe})"))
            .collect();
        problems.push(format!("processes still running: {}", list.join(", ")));
    }
    if problems.is_empty() {
        println!("  nothing left behind");
        Ok(())
    } else {
        Err(format!(
            "the run left things behind: {}",
            problems.join("; ")
        ))
    }
}
