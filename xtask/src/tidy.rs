//! Repository hygiene, checked as a test: every Rust source opens with a `//!` doc comment,
//! and no debugging leftovers or placeholders are committed.

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
