//! `cargo xtask setup`, also the first step of `cargo xtask ci`: the system programs that
//! the remote-host tests drive for real on this machine, over loopback (OpenSSH's `sshd`
//! and `ssh`, Open MPI's `mpirun`, a private Slurm cluster for `srun`; see
//! `ptools-workerset/tests/support/remote_hosts.rs`).
//!
//! CI starts on a fresh machine as root, so a missing program is installed with Debian's
//! `apt-get`. Where that cannot be done (not root, no `apt-get`, no package index) or
//! fails, setup prints `SKIPPED: ...` saying which tests will skip and why, and CI goes on:
//! the machine lacking a program is not a defect of the project.
//!
//! When run as root (as CI is), what is present afterwards is handed to the test rows as
//! [`REQUIRE_VAR`]: the support module turns a failure to start a tool listed there into a
//! test failure instead of a skip, so a harness that breaks on a machine that has the
//! tools cannot pass as skipped. Not as root, the list stays empty: the harness is made
//! for root (sshd logs in the current user, whose account may be locked, as `nobody`'s
//! is), and a non-root run only skips what it cannot do.
//!
//! # Slurm
//!
//! `slurm-wlm` (slurmctld, slurmd, srun, and munge for authentication) is installed too:
//! tried for real in this container (Debian 12, Slurm 22.05.8, as root, no systemd, no
//! cgroups), a private cluster of three nodes on 127.0.0.1-3 (one `slurmd -N` each,
//! `SlurmdParameters=config_overrides`, `ProctrackType=proctrack/pgid`,
//! `TaskPlugin=task/none`, a private `munged --force` socket) was idle ~1.2 s after start
//! and ran `srun -N 3 -n 5` in ~0.3 s, five times in a row and twice side by side with no
//! failure. Installing it takes ~10 s more. It is a separate `apt-get install` so that a
//! Slurm failure only skips the srun tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The variable that tells the remote-host tests which tools this machine has
/// (`ssh,mpirun,srun`, any subset): a test whose tool is listed fails instead of skipping.
pub(crate) const REQUIRE_VAR: &str = "PTOOLS_REMOTE_TESTS_REQUIRE";

/// How long one `apt-get` may take before it is killed (a dead mirror must not eat CI).
const APT_DEADLINE: Duration = Duration::from_secs(600);

/// Programs installed together, and the tests that need them.
struct Group {
    /// The name in [`REQUIRE_VAR`].
    name: &'static str,
    programs: &'static [&'static str],
    packages: &'static [&'static str],
    /// Which tests skip without it.
    tests: &'static str,
    /// Installed by its own `apt-get install`, so that its failure costs only its tests.
    alone: bool,
}

const GROUPS: &[Group] = &[
    Group {
        name: "ssh",
        programs: &["sshd", "ssh", "ssh-keygen"],
        packages: &["openssh-server", "openssh-client"],
        tests: "the tests over ssh (loopback sshd: remote_hosts_harness ssh_*, mpirun over ssh, \
                the ssh launcher's)",
        alone: false,
    },
    Group {
        name: "mpirun",
        programs: &["mpirun"],
        packages: &["openmpi-bin"],
        tests: "the mpirun tests (remote_hosts_harness mpirun_*, the mpirun launcher's)",
        alone: false,
    },
    Group {
        name: "srun",
        programs: &["srun", "sinfo", "slurmctld", "slurmd", "munged"],
        packages: &["slurm-wlm"],
        tests: "the srun tests (remote_hosts_harness srun_*, the Slurm launcher's)",
        alone: true,
    },
];

/// What setup found, for the CI summary and the test rows.
#[derive(Debug, Default)]
pub(crate) struct Report {
    /// Whether setup ran as root, the case CI is in and the harness is made for.
    pub(crate) root: bool,
    /// Names of the groups whose programs are all present.
    pub(crate) present: Vec<&'static str>,
    /// One `SKIPPED: ...` line per missing group.
    pub(crate) skipped: Vec<String>,
}

impl Report {
    /// The environment the test rows get: [`REQUIRE_VAR`] with the present groups, or
    /// empty when not root.
    pub(crate) fn test_env(&self) -> (String, String) {
        let list = if self.root {
            self.present.join(",")
        } else {
            String::new()
        };
        (REQUIRE_VAR.to_owned(), list)
    }
}

/// Makes sure the remote-host tools exist, installing them when it can. Never fails:
/// whatever stays missing is reported as skipped.
pub(crate) fn run() -> Report {
    let started = Instant::now();
    println!("\n[setup] the remote-host tests' programs");
    let missing: Vec<&Group> = GROUPS
        .iter()
        .filter(|g| !missing_of(g).is_empty())
        .collect();
    let mut failures: Vec<(&'static str, String)> = Vec::new();
    if !missing.is_empty() {
        let names: Vec<&str> = missing.iter().flat_map(|g| missing_of(g)).collect();
        println!("  missing: {}", names.join(", "));
        match can_install() {
            Err(why) => failures.extend(missing.iter().map(|g| (g.name, why.clone()))),
            Ok(apt) => install(&apt, &missing, &mut failures),
        }
    }
    let mut report = Report {
        root: is_root(),
        ..Report::default()
    };
    for group in GROUPS {
        let still = missing_of(group);
        if still.is_empty() {
            report.present.push(group.name);
            continue;
        }
        let why = failures
            .iter()
            .find(|(name, _)| *name == group.name)
            .map(|(_, why)| why.clone())
            .unwrap_or_else(|| "installed, but still not found".to_owned());
        report.skipped.push(format!(
            "SKIPPED: {}: {} not found ({why})",
            group.tests,
            still.join(", ")
        ));
    }
    for line in &report.skipped {
        println!("{line}");
    }
    println!(
        "  present: {}; setup took {:.1} s",
        if report.present.is_empty() {
            "none".to_owned()
        } else {
            report.present.join(", ")
        },
        started.elapsed().as_secs_f64()
    );
    report
}

/// The group's programs that are not found.
fn missing_of(group: &Group) -> Vec<&'static str> {
    group
        .programs
        .iter()
        .copied()
        .filter(|p| find_program(p).is_none())
        .collect()
}

/// `program` on `PATH`, or in the sbin folders, where Debian puts the daemons and which a
/// non-root `PATH` often lacks.
pub(crate) fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether this process runs as root, as `id -u` says (xtask has std only: no `geteuid`).
fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `apt-get`'s path when this process may install packages, or why not.
fn can_install() -> Result<PathBuf, String> {
    if !is_root() {
        return Err(
            "not root, so nothing is installed; as root, `cargo xtask setup` \
                    installs it with apt-get"
                .to_owned(),
        );
    }
    find_program("apt-get").ok_or_else(|| "no apt-get on this machine".to_owned())
}

/// `apt-get update`, then one `apt-get install` for the groups that go together and one
/// for each group that goes alone.
fn install(apt: &Path, groups: &[&Group], failures: &mut Vec<(&'static str, String)>) {
    let log = log_path();
    if let Err(why) = apt_get(apt, &["update"], &log) {
        failures.extend(groups.iter().map(|g| (g.name, why.clone())));
        return;
    }
    let together: Vec<&Group> = groups.iter().copied().filter(|g| !g.alone).collect();
    let batches = std::iter::once(together)
        .chain(groups.iter().filter(|g| g.alone).map(|g| vec![*g]))
        .filter(|batch| !batch.is_empty());
    for batch in batches {
        let mut args = vec!["install", "-y", "--no-install-recommends"];
        args.extend(batch.iter().flat_map(|g| g.packages.iter().copied()));
        if let Err(why) = apt_get(apt, &args, &log) {
            failures.extend(batch.iter().map(|g| (g.name, why.clone())));
        }
    }
}

/// Where apt-get's output goes: it is long, and only worth reading when it failed.
fn log_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::root().join("target"));
    target.join("xtask-setup-apt.log")
}

/// Runs apt-get non-interactively with a deadline, its output appended to `log`.
fn apt_get(apt: &Path, args: &[&str], log: &Path) -> Result<(), String> {
    let shown = format!("DEBIAN_FRONTEND=noninteractive apt-get {}", args.join(" "));
    println!("$ {shown}  (output in {})", log.display());
    let started = Instant::now();
    let open = || {
        if let Some(dir) = log.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
    };
    let (out, err) = match (open(), open()) {
        (Ok(out), Ok(err)) => (Stdio::from(out), Stdio::from(err)),
        _ => (Stdio::null(), Stdio::null()),
    };
    let mut child = Command::new(apt)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < APT_DEADLINE => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{shown}` was killed after {} s",
                    APT_DEADLINE.as_secs()
                ));
            }
            Err(e) => return Err(format!("waiting for `{shown}`: {e}")),
        }
    };
    println!("  ({:.1} s)", started.elapsed().as_secs_f64());
    if status.success() {
        return Ok(());
    }
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(10).collect();
    for line in tail.iter().rev() {
        println!("  | {line}");
    }
    Err(format!("`{shown}` failed with {status}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_group_names_its_programs_packages_and_tests() {
        for group in GROUPS {
            assert!(!group.programs.is_empty() && !group.packages.is_empty());
            assert!(group.tests.starts_with("the "), "{}", group.tests);
        }
        let names: Vec<&str> = GROUPS.iter().map(|g| g.name).collect();
        assert_eq!(names, ["ssh", "mpirun", "srun"]);
    }

    #[test]
    fn finds_a_program_on_path_and_not_a_made_up_one() {
        assert!(find_program("sh").is_some());
        assert!(find_program("ptools-no-such-program").is_none());
    }
}
