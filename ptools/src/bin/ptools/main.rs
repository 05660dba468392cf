//! The `ptools` command-line tool (feature `cli`).
//!
//! ```text
//! ptools shm list [--prefix P]             our segments: size, element type, dims, owner, alive
//! ptools shm clean (--prefix P | --all) [--dry-run]
//!                                           remove segments whose owner is dead
//! ptools bench [--rounds N]                 the headline ratios on this machine, quickly
//! ```
//!
//! Only objects named `ptools_*` that carry a ptools header are listed or removed; a
//! segment whose owner is alive is never removed. A prefix matches exactly (no patterns),
//! and must be a valid prefix: an empty or malformed one is refused. `clean` acts on the
//! whole machine (every user's job that left segments it may remove) unless given a
//! prefix, so it asks for that choice to be spelled out: `--prefix P` or `--all`.

mod bench;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ptools::shm::{Prefix, SegmentInfo, list_shm, remove_stale_shm};

#[derive(Debug, Parser)]
#[command(
    name = "ptools",
    version,
    about = "Inspect and clean up after ptools jobs"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Shared-memory segments.
    #[command(subcommand)]
    Shm(ShmCommand),
    /// Measure the headline ratios against raw system calls on this machine.
    Bench {
        /// Interleaved rounds per scenario.
        #[arg(long, default_value_t = 31)]
        rounds: usize,
    },
}

#[derive(Debug, Subcommand)]
enum ShmCommand {
    /// List ptools segments with their size, element type, dims and owner.
    List {
        /// Only segments with exactly this prefix.
        #[arg(long)]
        prefix: Option<String>,
    },
    /// Remove the segments whose owner process is dead: those of one prefix (`--prefix P`),
    /// or every stale ptools segment on this machine (`--all`). One of the two is required.
    #[command(group(clap::ArgGroup::new("scope").required(true).args(["prefix", "all"])))]
    Clean {
        /// Only segments with exactly this prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// Every stale ptools segment of the machine, whatever job or prefix left it.
        #[arg(long)]
        all: bool,
        /// Show what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn main() -> ExitCode {
    // `ptools bench` starts workers: this same binary in worker mode.
    ptools::workerset::init();
    let result: Result<(), Box<dyn std::error::Error>> = match Cli::parse().command {
        Command::Shm(cmd) => shm(cmd).map_err(Into::into),
        Command::Bench { rounds: 0 } => Err("--rounds must be at least 1".into()),
        Command::Bench { rounds } => bench::run(rounds),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ptools: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_prefix(p: Option<String>) -> Result<Option<Prefix>, ptools::shm::ShmError> {
    p.map(Prefix::new).transpose()
}

fn shm(cmd: ShmCommand) -> Result<(), ptools::shm::ShmError> {
    match cmd {
        ShmCommand::List { prefix } => {
            let prefix = parse_prefix(prefix)?;
            let found: Vec<SegmentInfo> = list_shm()?
                .into_iter()
                .filter(|s| prefix.as_ref().is_none_or(|p| p.as_str() == s.prefix))
                .collect();
            print_table(&found);
        }
        ShmCommand::Clean {
            prefix,
            all,
            dry_run,
        } => {
            // clap's required group gives exactly one of the two.
            debug_assert!(all != prefix.is_some());
            let prefix = parse_prefix(prefix)?;
            let verb;
            let gone = if dry_run {
                verb = "would remove";
                list_shm()?
                    .into_iter()
                    .filter(|s| {
                        !s.owner_alive && prefix.as_ref().is_none_or(|p| p.as_str() == s.prefix)
                    })
                    .collect()
            } else {
                verb = "removed";
                remove_stale_shm(prefix.as_ref())?
            };
            for s in &gone {
                println!("{verb} {} (owner pid {} dead)", s.segment, s.owner_pid);
            }
            println!("{verb} {} stale segment(s)", gone.len());
        }
    }
    Ok(())
}

fn print_table(found: &[SegmentInfo]) {
    let rows: Vec<[String; 6]> = found
        .iter()
        .map(|s| {
            [
                s.segment.clone(),
                human(s.size),
                s.elem.map_or("?".to_owned(), |e| e.to_string()),
                s.dims.as_ref().map_or("(being created)".to_owned(), |d| {
                    d.iter().map(usize::to_string).collect::<Vec<_>>().join("x")
                }),
                s.owner_pid.to_string(),
                if s.owner_alive { "yes" } else { "no (stale)" }.to_owned(),
            ]
        })
        .collect();
    let header = ["SEGMENT", "SIZE", "TYPE", "DIMS", "OWNER", "ALIVE"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    if rows.is_empty() {
        println!("(no ptools segments)");
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}
