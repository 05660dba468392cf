//! Repository hygiene, checked as a test: every Rust source opens with a `//!` doc comment,
//! no debugging leftovers or placeholders are committed, and every published crate ships
//! the license files and docs.rs metadata.

use std::path::{Path, PathBuf};

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.starts_with("target") {
            continue;
        }
        if path.is_dir() {
            rust_sources(&path, out);
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_sources(&crate::root(), &mut files);
    assert!(!files.is_empty(), "found no Rust sources to check");
    files
}

#[test]
fn every_source_opens_with_module_docs() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without `//!` docs: {missing:?}");
}

#[test]
fn no_debugging_leftovers_or_placeholders() {
    // Spelled in two halves so this file does not match itself.
    let banned = [["dbg", "!("], ["todo", "!("], ["unimplemented", "!("]];
    let mut hits = Vec::new();
    for path in sources() {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for (no, line) in text.lines().enumerate() {
            for [a, b] in banned {
                if line.contains(&format!("{a}{b}")) {
                    hits.push(format!("{}:{}", path.display(), no + 1));
                }
            }
        }
    }
    assert!(hits.is_empty(), "leftovers: {hits:?}");
}

/// The workspace members that are published: every member folder but xtask.
fn published_crates() -> Vec<PathBuf> {
    let text = std::fs::read_to_string(crate::root().join("Cargo.toml")).unwrap_or_default();
    let members: Vec<PathBuf> = text
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix('"')?.strip_suffix("\","))
        .filter(|m| *m != "xtask")
        .map(|m| crate::root().join(m))
        .collect();
    assert!(members.len() >= 7, "read the members: {members:?}");
    members
}

#[test]
fn every_published_crate_ships_both_licenses() {
    // cargo packages only files inside the crate's folder, so each crate keeps a copy of
    // the root's license files; this keeps the copies identical to the root's.
    let root = crate::root();
    for name in ["LICENSE-MIT", "LICENSE-APACHE"] {
        let original = std::fs::read(root.join(name)).expect(name);
        for krate in published_crates() {
            let copy = std::fs::read(krate.join(name)).unwrap_or_default();
            assert!(
                copy == original,
                "{} differs from the root's {name}: `cp {name} {}/`",
                krate.join(name).display(),
                krate.display()
            );
        }
    }
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default();
    assert!(manifest.contains("license = \"MIT OR Apache-2.0\""));
}

#[test]
fn every_published_crate_has_docs_rs_metadata() {
    for krate in published_crates() {
        let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap_or_default();
        assert!(
            manifest.contains(
                "[package.metadata.docs.rs]\nall-features = true\n\
                 targets = [\"x86_64-unknown-linux-gnu\"]\n"
            ),
            "{}: no docs.rs metadata",
            krate.display()
        );
    }
}
