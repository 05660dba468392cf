//! The safety model's claim that a handle's lengths, dims and pointer live in this
//! process: rewriting a mapped segment's header from outside (as another process could)
//! changes nothing a handle hands out.

mod common;

use std::io::{Seek, SeekFrom, Write};

use common::TestPrefix;
use ptools_shm::{ShmArray, ShmCfg};

#[test]
fn a_rewritten_header_changes_no_length_dims_or_pointer() {
    let p = TestPrefix::new();
    let cfg = ShmCfg::new::<u32>("hdr", [4, 8]).unwrap();
    let mut a = ShmArray::<u32>::create(&cfg, &p).unwrap();
    a.iter_mut().enumerate().for_each(|(i, x)| *x = i as u32);
    let ptr = a.as_ptr();

    // Another writer of the object: every header byte (magic, length, dims) set to 0xff.
    let path = format!("/dev/shm/{}", a.segment_name().trim_start_matches('/'));
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(&[0xff; 128]).unwrap();
    f.sync_all().unwrap();
    drop(f);

    assert_eq!(a.len(), 32);
    assert_eq!(a.dims(), &[4, 8]);
    assert_eq!(a.as_ptr(), ptr);
    assert!(a.iter().enumerate().all(|(i, &x)| x == i as u32));
    a[31] = 7;
    assert_eq!(a.as_slice()[31], 7);
    drop(a);
    assert!(p.leftovers().is_empty());
}
