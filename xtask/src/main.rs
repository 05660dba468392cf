//! `cargo xtask`: the project's own tooling (std, plus `serde_json` for criterion's files).
//!
//! - `cargo xtask ci`: everything CI checks, in the order CI checks it, stopping at the first
//!   failure: first `setup`, then the matrix of `ci::MATRIX` (every crate alone with every
//!   feature combination, debug and release, docs, examples, other toolchains and targets
//!   where installed). `.ci/run` calls only this, so a local run and a CI run are the same
//!   run.
//! - `cargo xtask setup`: the system programs the remote-host tests drive (sshd, ssh,
//!   mpirun, Slurm), installed with apt-get when missing and root; never fails.
//!
//! The leak check around the run is the part no off-the-shelf tool does: ptools creates
//! shared-memory segments and processes, and a run that leaves either behind has a bug even
//! when every test passed.

mod bench;
mod ci;
mod leaks;
mod setup;
#[cfg(test)]
mod tidy;

use std::env;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let task = args.first().map(String::as_str).unwrap_or("help");
    let result = match task {
        "ci" => ci(),
        "bench" => bench::main(&args[1..]),
        "setup" => {
            setup::run();
            Ok(())
        }
        "help" | "--help" | "-h" => {
            print_help();
            Ok(())
        }
        other => Err(format!("unknown task `{other}`; run `cargo xtask help`")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_help() {
    println!(
        "cargo xtask TASK\n\n\
         Tasks:\n  \
         ci     setup, then the CI matrix (xtask/src/ci.rs): fmt; clippy on every crate alone\n         \
         with every feature combination; each crate's tests alone, the workspace's with all\n         \
         features, the suite in release; docs; examples; benches compiled; MSRV, nightly,\n         \
         Miri and other targets when installed (else SKIPPED); then the leak check\n  \
         setup  the remote-host tests' programs (sshd, ssh, mpirun, Slurm): installed with\n         \
         apt-get when missing and root, else SKIPPED lines; never fails\n  \
         bench  run the benches (--quick, --peers, --no-run) and write BENCHMARKS.md"
    );
}

/// The workspace root: xtask lives one level below it.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf()
}

fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// Every example of every workspace member, as (package, example name). Members live one
/// folder below the root, and their folder is named after the package.
fn examples() -> Vec<(String, String)> {
    let mut found = Vec::new();
    let Ok(members) = std::fs::read_dir(root()) else {
        return found;
    };
    for member in members.flatten() {
        let dir = member.path().join("examples");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let package = member.file_name().to_string_lossy().into_owned();
        for entry in entries.flatten() {
            let path = entry.path();
            // An example is `examples/NAME.rs` or `examples/NAME/main.rs` (cargo's rules).
            let is_example =
                path.extension().is_some_and(|e| e == "rs") || path.join("main.rs").is_file();
            if is_example {
                let name = path.file_stem().unwrap_or_default().to_string_lossy();
                found.push((package.clone(), name.into_owned()));
            }
        }
    }
    found.sort();
    found
}

fn ci() -> Result<(), String> {
    let started = Instant::now();
    let target = env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target"));
    let before = leaks::Snapshot::take(&target);

    // Before the matrix, so that the test rows know which remote-host tools exist.
    let setup = setup::run();
    let outcome = ci::run_matrix(&target, &setup);
    // The leak check runs whatever happened above: a failed test is the likeliest one to
    // leave a segment or a process behind, and that is worth knowing too.
    let leaked = leaks::check(&before, &target);
    outcome?;
    leaked?;
    println!(
        "\nxtask ci: all checks passed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_single_file_and_directory_examples() {
        let found = super::examples();
        assert!(
            found.contains(&("ptools".to_owned(), "tour".to_owned())),
            "the tour (a directory example) is found: {found:?}"
        );
        assert!(
            found
                .iter()
                .all(|(_, name)| !name.is_empty() && !name.ends_with(".rs")),
            "{found:?}"
        );
    }
}
