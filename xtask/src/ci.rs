//! `cargo xtask ci`: the CI matrix. Every step CI runs is one row of [`MATRIX`], in the
//! order it runs, stopping at the first failure; nothing runs that the table does not show.
//!
//! # What the matrix covers, and why it is shaped so
//!
//! CI has 2 cores and 90 minutes; the matrix is budgeted for at most ~25 minutes there
//! (the single-configuration CI before it took 6-7). What costs is compiling, not running:
//! the whole test suite runs in about 25 s, building it takes minutes. Measured: a run from
//! an empty target dir took 439 s on 2 cores shared with other builds (clippy on all
//! workspace features 51 s, the 17 per-crate clippy rows 27 s together, the 7 per-crate
//! test rows 66 s, the workspace's tests 69 s, benches built 72 s, release tests 93 s,
//! nightly check 33 s). So:
//!
//! - **Lints on every feature combination of every crate alone** (`cargo clippy -p X
//!   --no-default-features --features ...`). `-p X` resolves X's dependencies with X's
//!   own features only, the way a user who depends on X alone builds it: a crate that
//!   compiles only because a sibling turned a feature on fails here. Clippy only
//!   type-checks, shares the target dir, and rebuilds only what a combination changes, so
//!   the full power set is affordable (ptools' 3 features are 8 rows). A unit test keeps
//!   the rows equal to the power set of each manifest's `[features]`.
//! - **Every crate's tests alone, once, in debug** (`cargo test -p X`, default features):
//!   the same unification point, now for behaviour; then the **whole workspace with all
//!   features, in debug**, once: the feature-gated code (ndarray views, progress bars, the
//!   CLI) is tested there. No crate has default features, so `--no-default-features`
//!   would build exactly the default rows again and is not a row.
//! - **Release: the whole suite built and run once** (`cargo test --workspace --release`),
//!   right after the benches are built (`cargo bench --no-run`). Both use the bench
//!   profile with default features, so they share every dependency and the run costs one
//!   more link of each test and ~25 s. Optimised code is where a wrong `unsafe` block
//!   misbehaves (shared memory, fork, frame parsing), so it is run, not only compiled.
//! - **Docs** with warnings denied and all features, as docs.rs builds them; **every
//!   example** run.
//! - **Other toolchains and targets**, only where this machine has them: the MSRV (the
//!   workspace's `rust-version`) and nightly type-check the workspace; macOS and aarch64
//!   Linux type-check the workspace too (on macOS the worker runtime and what sits on it
//!   build with their stub backend). One that is missing prints
//!   `SKIPPED: <what> (<why>)`, and the summary lists it; nothing is skipped silently.
//!   Other toolchains build in their own target dir (`target/rustup-<toolchain>`) so they
//!   never invalidate the main one.
//! - **The stub backends, on this machine** ([`Target::Stub`]): `--cfg ptools_stub`
//!   selects, in every crate, the backend that targets ptools does not support compile
//!   (no system call, every operation a typed `Unsupported` error), and the workspace is
//!   type-checked that way with warnings denied. It runs whether or not a macOS target is
//!   installed, so the code macOS compiles for the worker runtime is always checked. Its
//!   own target dir (`target/stub`) keeps the changed flags from invalidating the main
//!   build.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// The workspace's `rust-version`; a test checks it against `Cargo.toml`.
pub(crate) const MSRV: &str = "1.88";

/// What a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `cargo fmt --all --check` (scope, features and profile do not apply).
    Fmt,
    /// `cargo clippy --all-targets ... -- -D warnings`.
    Clippy,
    /// `cargo check`: the libraries and binaries, what a user's build compiles.
    Check,
    /// `cargo check --all-targets`: tests, benches and examples too.
    CheckAll,
    /// `cargo test`: unit, integration and doc tests, built and run.
    Test,
    /// `cargo doc --no-deps`, warnings denied.
    Doc,
    /// `cargo run --example` for every example in the scope.
    Examples,
    /// `cargo bench --no-run`: the benches compile (bench profile).
    Benches,
    /// `cargo miri test --lib`: needs the toolchain's `miri` component.
    Miri,
}

/// Which packages a step covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// `--workspace`.
    Workspace,
    /// `--package` for each, and nothing else: their features only.
    Crates(&'static [&'static str]),
}

/// Which features a step turns on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Features {
    /// The packages' default features.
    Defaults,
    /// `--all-features`.
    All,
    /// `--no-default-features` plus exactly these.
    Only(&'static [&'static str]),
}

/// The build profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Profile {
    /// The dev profile (the test profile for tests): debug assertions on.
    Dev,
    /// `--release` (the bench profile for tests and benches): optimised.
    Release,
}

/// The toolchain a step runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Toolchain {
    /// The one running xtask (the machine's default, stable).
    Current,
    /// A rustup toolchain by name, run with `rustup run NAME cargo`.
    Named(&'static str),
}

/// The target a step builds for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// This machine.
    Host,
    /// `--target TRIPLE`, when the toolchain has it installed.
    Triple(&'static str),
    /// This machine with every crate's stub backend: `RUSTFLAGS` gets
    /// [`STUB_RUSTFLAGS`], the build its own target dir (`<target>/stub`).
    Stub,
}

/// What a [`Target::Stub`] step adds to `RUSTFLAGS`: the cfg that selects the stub
/// backends, and warnings denied (a `cargo check` would only print them).
pub(crate) const STUB_RUSTFLAGS: &str = "--cfg ptools_stub -D warnings";

/// One row of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) kind: Kind,
    pub(crate) scope: Scope,
    pub(crate) features: Features,
    pub(crate) profile: Profile,
    pub(crate) toolchain: Toolchain,
    pub(crate) target: Target,
}

const fn row(
    kind: Kind,
    scope: Scope,
    features: Features,
    profile: Profile,
    toolchain: Toolchain,
    target: Target,
) -> Step {
    Step {
        kind,
        scope,
        features,
        profile,
        toolchain,
        target,
    }
}

use Features::{All, Defaults, Only};
use Kind::*;
use Profile::{Dev, Release};
use Scope::{Crates, Workspace};
use Target::{Host, Stub, Triple};
use Toolchain::{Current, Named};

/// The CI matrix: every step of `cargo xtask ci`, in order. See the module docs for why
/// it is this shape.
#[rustfmt::skip]
pub(crate) const MATRIX: &[Step] = &[
    //  kind       scope                           features                                profile   toolchain          target
    // Cheapest failures first.
    row(Fmt,       Workspace,                      Defaults,                               Dev,      Current,           Host),
    row(Clippy,    Workspace,                      All,                                    Dev,      Current,           Host),
    // Every crate alone, every feature combination.
    row(Clippy,    Crates(&["ptools-sys"]),        Only(&[]),                              Dev,      Current,           Host),
    row(Clippy,    Crates(&["ptools-shm"]),        Only(&[]),                              Dev,      Current,           Host),
    row(Clippy,    Crates(&["ptools-shm"]),        Only(&["ndarray"]),                     Dev,      Current,           Host),
    row(Clippy,    Crates(&["ptools-fork"]),       Only(&[]),                              Dev,      Current,           Host),
    row(Clippy,    Crates(&["ptools-workerset"]),  Only(&[]),                              Dev,      Current,           Host),
    row(Clippy,    Crates(&["ptools-workerset"]),  Only(&["progress"]),                    Dev,      Current,           Host),
    row(Clippy,    Crates(&["ptools-stasks"]),     Only(&[]),                              Dev,      Current,           Host),
    row(Clippy,    Crates(&["ptools-queue"]),      Only(&[]),                              Dev,      Current,           Host),
    row(Clippy,    Crates(&["ptools-queue"]),      Only(&["progress"]),                    Dev,      Current,           Host),
    row(Clippy,    Crates(&["ptools"]),            Only(&[]),                              Dev,      Current,           Host),
    row(Clippy,    Crates(&["ptools"]),            Only(&["ndarray"]),                     Dev,      Current,           Host),
    row(Clippy,    Crates(&["ptools"]),            Only(&["cli"]),                         Dev,      Current,           Host),
    row(Clippy,    Crates(&["ptools"]),            Only(&["progress"]),                    Dev,      Current,           Host),
    row(Clippy,    Crates(&["ptools"]),            Only(&["ndarray", "cli"]),              Dev,      Current,           Host),
    row(Clippy,    Crates(&["ptools"]),            Only(&["ndarray", "progress"]),         Dev,      Current,           Host),
    row(Clippy,    Crates(&["ptools"]),            Only(&["cli", "progress"]),             Dev,      Current,           Host),
    row(Clippy,    Crates(&["ptools"]),            Only(&["ndarray", "cli", "progress"]),  Dev,      Current,           Host),
    // Every crate's tests alone, then the whole workspace with every feature.
    row(Test,      Crates(&["ptools-sys"]),        Defaults,                               Dev,      Current,           Host),
    row(Test,      Crates(&["ptools-shm"]),        Defaults,                               Dev,      Current,           Host),
    row(Test,      Crates(&["ptools-fork"]),       Defaults,                               Dev,      Current,           Host),
    row(Test,      Crates(&["ptools-workerset"]),  Defaults,                               Dev,      Current,           Host),
    row(Test,      Crates(&["ptools-stasks"]),     Defaults,                               Dev,      Current,           Host),
    row(Test,      Crates(&["ptools-queue"]),      Defaults,                               Dev,      Current,           Host),
    row(Test,      Crates(&["ptools"]),            Defaults,                               Dev,      Current,           Host),
    row(Test,      Workspace,                      All,                                    Dev,      Current,           Host),
    row(Doc,       Workspace,                      All,                                    Dev,      Current,           Host),
    row(Examples,  Workspace,                      Defaults,                               Dev,      Current,           Host),
    // Release: benches built, then the whole suite run on the same (bench-profile) build.
    row(Benches,   Workspace,                      Defaults,                               Release,  Current,           Host),
    row(Test,      Workspace,                      Defaults,                               Release,  Current,           Host),
    // Other toolchains and targets, where this machine has them.
    row(Check,     Workspace,                      All,                                    Dev,      Named(MSRV),       Host),
    row(CheckAll,  Workspace,                      All,                                    Dev,      Named("nightly"),  Host),
    row(Miri,      Crates(&["ptools-shm"]),        Defaults,                               Dev,      Named("nightly"),  Host),
    row(Check,     Workspace,                      All,                                    Dev,      Current,           Stub),
    row(Check,     Workspace,                      All,                                    Dev,      Current,           Triple("x86_64-apple-darwin")),
    row(Check,     Workspace,                      All,                                    Dev,      Current,           Triple("aarch64-apple-darwin")),
    row(Check,     Workspace,                      All,                                    Dev,      Current,           Triple("aarch64-unknown-linux-gnu")),
];

impl Step {
    /// The cargo arguments, without the toolchain.
    pub(crate) fn args(&self) -> Vec<String> {
        let mut a: Vec<String> = match self.kind {
            Fmt => return ["fmt", "--all", "--check"].map(String::from).to_vec(),
            Clippy => vec!["clippy".into(), "--all-targets".into()],
            Check => vec!["check".into()],
            CheckAll => vec!["check".into(), "--all-targets".into()],
            Test => vec!["test".into()],
            Doc => vec!["doc".into(), "--no-deps".into()],
            // `run` takes one package and one example; `commands` expands this row.
            Examples => vec!["run".into()],
            Benches => vec!["bench".into(), "--no-run".into()],
            Miri => vec!["miri".into(), "test".into(), "--lib".into()],
        };
        if self.kind != Examples {
            match self.scope {
                Workspace => a.push("--workspace".into()),
                Crates(names) => {
                    for n in names {
                        a.extend(["--package".into(), (*n).into()]);
                    }
                }
            }
        }
        match self.features {
            Defaults => {}
            All => a.push("--all-features".into()),
            Only(list) => {
                a.push("--no-default-features".into());
                if !list.is_empty() {
                    a.extend(["--features".into(), list.join(",")]);
                }
            }
        }
        // `cargo bench` always uses the bench profile and refuses `--release`.
        if self.profile == Release && self.kind != Benches {
            a.push("--release".into());
        }
        if let Triple(t) = self.target {
            a.extend(["--target".into(), t.into()]);
        }
        if self.kind == Clippy {
            a.extend(["--".into(), "-D".into(), "warnings".into()]);
        }
        a
    }

    /// The environment the step adds; `rustflags` is the `RUSTFLAGS` xtask was started
    /// with, which a stub step extends rather than replaces.
    fn envs(&self, target_dir: &Path, rustflags: Option<&str>) -> Vec<(String, String)> {
        let mut e = Vec::new();
        if self.kind == Doc {
            e.push(("RUSTDOCFLAGS".to_owned(), "-D warnings".to_owned()));
        }
        if self.target == Stub {
            let flags = match rustflags.map(str::trim).filter(|f| !f.is_empty()) {
                Some(f) => format!("{f} {STUB_RUSTFLAGS}"),
                None => STUB_RUSTFLAGS.to_owned(),
            };
            e.push(("RUSTFLAGS".to_owned(), flags));
        }
        let mut dir = target_dir.to_path_buf();
        if let Named(tc) = self.toolchain {
            dir.push(format!("rustup-{tc}"));
        }
        if self.target == Stub {
            dir.push("stub");
        }
        if dir != target_dir {
            e.push((
                "CARGO_TARGET_DIR".to_owned(),
                dir.to_string_lossy().into_owned(),
            ));
        }
        e
    }

    /// Every command the row stands for (one, except for the examples).
    fn commands(&self) -> Vec<Vec<String>> {
        if self.kind != Examples {
            return vec![self.args()];
        }
        crate::examples()
            .into_iter()
            .filter(|(package, _)| match self.scope {
                Workspace => true,
                Crates(names) => names.contains(&package.as_str()),
            })
            .map(|(package, example)| {
                let mut a = self.args();
                a.splice(
                    1..1,
                    ["--package".into(), package, "--example".into(), example],
                );
                a
            })
            .collect()
    }

    /// How the row reads in the log and the summary.
    pub(crate) fn describe(&self) -> String {
        let tc = match self.toolchain {
            Current => String::new(),
            Named(t) => format!("+{t} "),
        };
        let args = if self.kind == Examples {
            "run --example (every example)".to_owned()
        } else {
            self.args().join(" ")
        };
        let env = if self.target == Stub {
            format!("RUSTFLAGS=\"{STUB_RUSTFLAGS}\" ")
        } else {
            String::new()
        };
        format!("{env}cargo {tc}{args}")
    }
}

/// What this machine has, asked of rustup once.
struct Machine {
    /// `rustup toolchain list`, first word of each line; `None` without rustup.
    toolchains: Option<Vec<String>>,
}

impl Machine {
    fn probe() -> Machine {
        let toolchains = rustup(&["toolchain", "list"]).map(|out| {
            out.lines()
                .filter_map(|l| l.split_whitespace().next())
                .map(str::to_owned)
                .collect()
        });
        Machine { toolchains }
    }

    /// Why `step` cannot run here, or `None` when it can.
    fn missing(&self, step: &Step) -> Option<String> {
        if let Named(tc) = step.toolchain {
            let Some(list) = &self.toolchains else {
                return Some(format!("toolchain {tc}: rustup is not on PATH"));
            };
            if !list.iter().any(|t| toolchain_matches(t, tc)) {
                return Some(format!(
                    "toolchain {tc} is not installed; `rustup toolchain list` has {}",
                    list.join(", ")
                ));
            }
        }
        if let Triple(triple) = step.target {
            let mut args = vec!["target", "list", "--installed"];
            if let Named(tc) = step.toolchain {
                args.extend(["--toolchain", tc]);
            }
            match rustup(&args) {
                None => return Some(format!("target {triple}: rustup is not on PATH")),
                Some(out) if !out.lines().any(|l| l.trim() == triple) => {
                    return Some(format!(
                        "target {triple} is not installed; `rustup target list --installed` \
                         has {}",
                        out.split_whitespace().collect::<Vec<_>>().join(", ")
                    ));
                }
                Some(_) => {}
            }
        }
        if step.kind == Miri {
            let has = cargo_command(step.toolchain)
                .args(["miri", "--version"])
                .output()
                .is_ok_and(|o| o.status.success());
            if !has {
                let tc = match step.toolchain {
                    Current => "the current toolchain".to_owned(),
                    Named(t) => t.to_owned(),
                };
                return Some(format!("`cargo miri` is not installed on {tc}"));
            }
        }
        None
    }
}

/// `1.88` matches `1.88-x86_64-...` and `1.88.0-x86_64-...`; `nightly` matches
/// `nightly-x86_64-...`.
fn toolchain_matches(installed: &str, wanted: &str) -> bool {
    installed == wanted
        || installed
            .strip_prefix(wanted)
            .is_some_and(|rest| rest.starts_with('-') || rest.starts_with('.'))
}

fn rustup(args: &[&str]) -> Option<String> {
    let out = Command::new("rustup").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn cargo_command(toolchain: Toolchain) -> Command {
    match toolchain {
        Current => Command::new(crate::cargo()),
        Named(tc) => {
            let mut c = Command::new("rustup");
            c.args(["run", tc, "cargo"]);
            // The running cargo's own path would pin the nested one to this toolchain.
            c.env_remove("CARGO")
                .env_remove("RUSTC")
                .env_remove("RUSTDOC");
            c
        }
    }
}

/// How a row ended, for the summary.
enum Outcome {
    Passed(f64),
    Skipped(String),
}

/// Runs the matrix; stops at the first failure. The test rows get `setup`'s
/// [`REQUIRE_VAR`](crate::setup::REQUIRE_VAR), and the summary repeats what it skipped.
pub(crate) fn run_matrix(target_dir: &Path, setup: &crate::setup::Report) -> Result<(), String> {
    let machine = Machine::probe();
    let rustflags = std::env::var("RUSTFLAGS").ok();
    let mut summary: Vec<(String, Outcome)> = Vec::new();
    let total = MATRIX.len();
    for (i, step) in MATRIX.iter().enumerate() {
        let what = step.describe();
        println!("\n[{}/{total}] {what}", i + 1);
        if let Some(why) = machine.missing(step) {
            println!("SKIPPED: {what} ({why})");
            summary.push((what, Outcome::Skipped(why)));
            continue;
        }
        let started = Instant::now();
        let mut envs = step.envs(target_dir, rustflags.as_deref());
        if step.kind == Test {
            envs.push(setup.test_env());
        }
        for args in step.commands() {
            run_one(step.toolchain, &args, &envs)?;
        }
        summary.push((what, Outcome::Passed(started.elapsed().as_secs_f64())));
    }
    println!("\nxtask ci: the matrix");
    for line in &setup.skipped {
        println!("  {line}");
    }
    for (what, outcome) in &summary {
        match outcome {
            Outcome::Passed(s) => println!("  {s:>6.1} s  {what}"),
            Outcome::Skipped(why) => println!("  SKIPPED   {what} ({why})"),
        }
    }
    Ok(())
}

/// Echoes and runs one cargo command from the workspace root.
fn run_one(toolchain: Toolchain, args: &[String], envs: &[(String, String)]) -> Result<(), String> {
    let tc = match toolchain {
        Current => String::new(),
        Named(t) => format!("+{t} "),
    };
    let shown = envs
        .iter()
        .map(|(k, v)| format!("{k}={v} "))
        .collect::<String>()
        + &format!("cargo {tc}{}", args.join(" "));
    println!("$ {shown}");
    let started = Instant::now();
    let status = cargo_command(toolchain)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .current_dir(crate::root())
        .status()
        .map_err(|e| format!("cannot run `{shown}`: {e}"))?;
    println!("  ({:.1} s)", started.elapsed().as_secs_f64());
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{shown}` failed with {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published crates, bottom up.
    const CRATES: &[&str] = &[
        "ptools-sys",
        "ptools-shm",
        "ptools-fork",
        "ptools-workerset",
        "ptools-stasks",
        "ptools-queue",
        "ptools",
    ];

    /// `step` covers `krate` and nothing else.
    fn alone(step: &Step, krate: &str) -> bool {
        matches!(step.scope, Crates([only]) if *only == krate)
    }

    /// The `[features]` of a crate's manifest, without `default`.
    fn features_of(krate: &str) -> Vec<String> {
        let path = crate::root().join(krate).join("Cargo.toml");
        let text = std::fs::read_to_string(&path).expect("manifest");
        let mut in_features = false;
        let mut found = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                in_features = line == "[features]";
            } else if in_features
                && let Some((name, _)) = line.split_once('=')
                && !line.starts_with('#')
            {
                let name = name.trim();
                if name != "default" {
                    found.push(name.to_owned());
                }
            }
        }
        found.sort();
        found
    }

    #[test]
    fn clippy_covers_every_feature_combination_of_every_crate_alone() {
        for krate in CRATES {
            let features = features_of(krate);
            let mut want: Vec<Vec<String>> = (0..1u32 << features.len())
                .map(|mask| {
                    (0..features.len())
                        .filter(|b| mask & (1 << b) != 0)
                        .map(|b| features[b].clone())
                        .collect()
                })
                .collect();
            let mut have: Vec<Vec<String>> = MATRIX
                .iter()
                .filter(|s| s.kind == Clippy && alone(s, krate))
                .filter(|s| s.toolchain == Current && s.target == Host)
                .map(|s| match s.features {
                    Only(list) => {
                        let mut l: Vec<String> = list.iter().map(|f| (*f).to_owned()).collect();
                        l.sort();
                        l
                    }
                    other => panic!("{krate}: clippy row with {other:?}, not a combination"),
                })
                .collect();
            want.sort();
            have.sort();
            assert_eq!(have, want, "{krate}: clippy rows against its [features]");
        }
    }

    #[test]
    fn every_crate_is_tested_alone_and_the_workspace_in_debug_and_release() {
        for krate in CRATES {
            assert!(
                MATRIX
                    .iter()
                    .any(|s| s.kind == Test && alone(s, krate) && s.profile == Dev),
                "{krate} has no `cargo test -p {krate}` row"
            );
        }
        for profile in [Dev, Release] {
            assert!(
                MATRIX
                    .iter()
                    .any(|s| s.kind == Test && s.scope == Workspace && s.profile == profile),
                "no workspace test row in {profile:?}"
            );
        }
    }

    #[test]
    fn crates_are_the_published_members() {
        let manifest = std::fs::read_to_string(crate::root().join("Cargo.toml")).unwrap();
        for krate in CRATES {
            assert!(
                manifest.contains(&format!("\"{krate}\",")),
                "{krate} not a member"
            );
        }
        let members = manifest.matches("\",\n").count();
        assert!(members > CRATES.len(), "a member is missing from CRATES");
        assert!(
            manifest.contains(&format!("rust-version = \"{MSRV}\"")),
            "MSRV differs from the workspace's rust-version"
        );
    }

    #[test]
    fn rows_become_the_commands_they_say() {
        let row = Step {
            kind: Clippy,
            scope: Crates(&["ptools"]),
            features: Only(&["ndarray", "cli"]),
            profile: Dev,
            toolchain: Current,
            target: Host,
        };
        assert_eq!(
            row.args().join(" "),
            "clippy --all-targets --package ptools --no-default-features --features \
             ndarray,cli -- -D warnings"
        );
        let release = Step {
            kind: Test,
            scope: Workspace,
            features: Defaults,
            profile: Release,
            toolchain: Current,
            target: Host,
        };
        assert_eq!(release.args().join(" "), "test --workspace --release");
        let bench = Step {
            kind: Benches,
            ..release
        };
        assert_eq!(bench.args().join(" "), "bench --no-run --workspace");
        let mac = Step {
            kind: Check,
            scope: Workspace,
            features: All,
            profile: Dev,
            toolchain: Named("nightly"),
            target: Triple("x86_64-apple-darwin"),
        };
        assert_eq!(
            mac.describe(),
            "cargo +nightly check --workspace --all-features --target x86_64-apple-darwin"
        );
        let stub = Step {
            target: Stub,
            toolchain: Current,
            ..mac
        };
        assert_eq!(
            stub.describe(),
            "RUSTFLAGS=\"--cfg ptools_stub -D warnings\" cargo check --workspace --all-features"
        );
        let examples = Step {
            kind: Examples,
            features: Defaults,
            profile: Dev,
            toolchain: Current,
            target: Host,
            scope: Crates(&["ptools"]),
        };
        let cmds = examples.commands();
        assert!(
            cmds.iter()
                .any(|c| c.join(" ") == "run --package ptools --example tour"),
            "{cmds:?}"
        );
    }

    #[test]
    fn the_stub_row_checks_the_workspace_with_its_cfg_in_its_own_target_dir() {
        let stub: Vec<&Step> = MATRIX.iter().filter(|s| s.target == Stub).collect();
        assert!(
            stub.iter()
                .any(|s| s.kind == Check && s.scope == Workspace && s.features == All),
            "no `cargo check --workspace --all-features` row with the stub backends"
        );
        let target = Path::new("/t");
        for s in stub {
            let envs = s.envs(target, Some("-C debuginfo=0"));
            let get = |k: &str| envs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            assert_eq!(
                get("RUSTFLAGS"),
                Some("-C debuginfo=0 --cfg ptools_stub -D warnings"),
                "{s:?}"
            );
            assert_eq!(get("CARGO_TARGET_DIR"), Some("/t/stub"), "{s:?}");
            let envs = s.envs(target, None);
            assert!(envs.contains(&("RUSTFLAGS".into(), STUB_RUSTFLAGS.into())));
        }
        // Every other current-toolchain row builds in the main target dir.
        let host = Step {
            target: Host,
            ..MATRIX[1]
        };
        assert!(host.envs(target, Some("x")).is_empty(), "{host:?}");
    }

    #[test]
    fn the_macos_rows_check_the_whole_workspace() {
        for triple in ["x86_64-apple-darwin", "aarch64-apple-darwin"] {
            assert!(
                MATRIX
                    .iter()
                    .any(|s| s.kind == Check && s.scope == Workspace && s.target == Triple(triple)),
                "no workspace check for {triple}"
            );
        }
    }

    #[test]
    fn toolchain_names_match_rustups_spelling() {
        assert!(toolchain_matches("1.88-x86_64-unknown-linux-gnu", "1.88"));
        assert!(toolchain_matches("1.88.0-x86_64-unknown-linux-gnu", "1.88"));
        assert!(toolchain_matches(
            "nightly-x86_64-unknown-linux-gnu",
            "nightly"
        ));
        assert!(!toolchain_matches("1.880-x86_64-unknown-linux-gnu", "1.88"));
        assert!(!toolchain_matches(
            "stable-x86_64-unknown-linux-gnu",
            "nightly"
        ));
    }
}
