//! The build's identity by content, so that the same build installed on another host (at
//! another path, with other inodes and times) is recognised, and any other build is not.
//!
//! The identity is the executable's GNU build-id note (`NT_GNU_BUILD_ID`, which the linker
//! computes from the output's content; rustc's Linux targets link with `--build-id`), read
//! from the file's program headers. A file without one is identified by the SHA-256 of its
//! whole content instead (slower: one read of the file, once per process).

use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// This process's executable's identity, computed once.
pub(crate) fn of_self() -> io::Result<String> {
    static ID: OnceLock<Result<String, String>> = OnceLock::new();
    ID.get_or_init(|| of_file(Path::new("/proc/self/exe")).map_err(|e| e.to_string()))
        .clone()
        .map_err(io::Error::other)
}

/// The identity of the executable at `path`: `gnu-build-id:<hex>` or `sha256:<hex>`.
pub(crate) fn of_file(path: &Path) -> io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    if let Some(id) = gnu_build_id(&mut f)? {
        return Ok(format!("gnu-build-id:{}", hex(&id)));
    }
    f.seek(SeekFrom::Start(0))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex(&h.finalize())))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const PT_NOTE: u32 = 4;
const NT_GNU_BUILD_ID: u32 = 3;
/// A note segment larger than this is not read (build-id notes are a few dozen bytes).
const MAX_NOTES: u64 = 64 * 1024;

/// The build-id note of a 64-bit little-endian ELF file, if it has one. Anything that is
/// not such a file, or is malformed, gives `None` (and the caller hashes the file).
fn gnu_build_id(f: &mut std::fs::File) -> io::Result<Option<Vec<u8>>> {
    let mut eh = [0u8; 64];
    if f.read_exact(&mut eh).is_err() {
        return Ok(None);
    }
    // ELF magic, ELFCLASS64, ELFDATA2LSB.
    if eh[..4] != *b"\x7fELF" || eh[4] != 2 || eh[5] != 1 {
        return Ok(None);
    }
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap());
    let phoff = u64_at(&eh, 0x20);
    let phentsize = usize::from(u16_at(&eh, 0x36));
    let phnum = usize::from(u16_at(&eh, 0x38));
    if phentsize < 56 || phnum == 0 || phnum > 4096 {
        return Ok(None);
    }
    let mut ph = vec![0u8; phentsize * phnum];
    f.seek(SeekFrom::Start(phoff))?;
    if f.read_exact(&mut ph).is_err() {
        return Ok(None);
    }
    for p in ph.chunks_exact(phentsize) {
        if u32_at(p, 0) != PT_NOTE {
            continue;
        }
        let (off, size) = (u64_at(p, 8), u64_at(p, 32));
        if size > MAX_NOTES {
            continue;
        }
        let mut notes = vec![0u8; size as usize];
        f.seek(SeekFrom::Start(off))?;
        if f.read_exact(&mut notes).is_err() {
            continue;
        }
        if let Some(id) = find_build_id(&notes, u32_at) {
            return Ok(Some(id));
        }
    }
    Ok(None)
}

/// Walks the notes of one segment: `namesz`, `descsz`, `type`, then the name and the
/// descriptor, each padded to 4 bytes.
fn find_build_id(notes: &[u8], u32_at: impl Fn(&[u8], usize) -> u32) -> Option<Vec<u8>> {
    let pad = |n: usize| n.checked_add(3).map(|x| x & !3);
    let mut at = 0usize;
    while at + 12 <= notes.len() {
        let namesz = u32_at(notes, at) as usize;
        let descsz = u32_at(notes, at + 4) as usize;
        let ty = u32_at(notes, at + 8);
        let name_at = at + 12;
        let desc_at = name_at.checked_add(pad(namesz)?)?;
        let end = desc_at.checked_add(pad(descsz)?)?;
        let name = notes.get(name_at..name_at.checked_add(namesz)?)?;
        let desc = notes.get(desc_at..desc_at.checked_add(descsz)?)?;
        if ty == NT_GNU_BUILD_ID && name == b"GNU\0" && !desc.is_empty() {
            return Some(desc.to_vec());
        }
        at = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same content at another path is the same build; one changed byte is another.
    #[test]
    fn identity_follows_content_not_path() {
        let me = of_self().unwrap();
        assert!(
            me.starts_with("gnu-build-id:") || me.starts_with("sha256:"),
            "{me}"
        );
        let dir = std::env::temp_dir().join(format!("ptools-identity-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let copy = dir.join("copy");
        std::fs::copy("/proc/self/exe", &copy).unwrap();
        assert_eq!(of_file(&copy).unwrap(), me);
        // A file that is not ELF is hashed.
        let other = dir.join("other");
        std::fs::write(&other, b"not a program").unwrap();
        let id = of_file(&other).unwrap();
        assert!(id.starts_with("sha256:"), "{id}");
        assert_ne!(id, me);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn notes_parse_and_malformed_notes_are_none() {
        let u32_at = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let mut n = Vec::new();
        // An unrelated note first (name "ABC\0", 2-byte desc padded to 4).
        n.extend_from_slice(&4u32.to_le_bytes());
        n.extend_from_slice(&2u32.to_le_bytes());
        n.extend_from_slice(&1u32.to_le_bytes());
        n.extend_from_slice(b"ABC\0");
        n.extend_from_slice(&[9, 9, 0, 0]);
        n.extend_from_slice(&4u32.to_le_bytes());
        n.extend_from_slice(&3u32.to_le_bytes());
        n.extend_from_slice(&NT_GNU_BUILD_ID.to_le_bytes());
        n.extend_from_slice(b"GNU\0");
        n.extend_from_slice(&[1, 2, 3, 0]);
        assert_eq!(find_build_id(&n, u32_at), Some(vec![1, 2, 3]));
        // Sizes that run past the end, or overflow, are no note.
        let mut bad = n.clone();
        bad[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(find_build_id(&bad, u32_at), None);
        assert_eq!(find_build_id(&n[..20], u32_at), None);
    }
}
