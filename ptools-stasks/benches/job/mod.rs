//! The 256 MiB end-to-end job both server-task benches measure: the raw single-process
//! baseline and the server-task version, with their shared pieces.

use std::ffi::CString;
use std::time::Duration;

use ptools_shm::{Prefix, ShmCfg};
use ptools_stasks::{Reserve, STasks, TaskContext, pmap_stasks};
use ptools_workerset::Cluster;

pub(crate) const BYTES: usize = 256 << 20;
pub(crate) const WORDS: usize = BYTES / 8;
pub(crate) const PATTERN: u64 = 0x0101_0101_0101_0101;

pub(crate) fn checksum(words: &[u64]) -> u64 {
    words.iter().fold(0u64, |a, &w| a.wrapping_add(w))
}

/// Task `i` of `n` fills its contiguous share of "big".
pub(crate) fn fill_share(ctx: &mut TaskContext, value: u64) -> usize {
    let (i, n) = (ctx.task(), ctx.ntasks());
    let a = ctx.array_mut::<u64>("big").expect("configured");
    let chunk = a.len().div_ceil(n);
    let start = (i * chunk).min(a.len());
    let end = (start + chunk).min(a.len());
    a[start..end].fill(value);
    end - start
}

pub(crate) fn raw_job(name: &CString) -> u64 {
    // SAFETY: plain libc calls on a name we own; every result is checked; the mapping is
    // BYTES long and 8-aligned (page-aligned), so viewing it as WORDS u64 is valid, and
    // any bit pattern is a valid u64; it is unmapped before the name is unlinked.
    unsafe {
        let fd = libc::shm_open(
            name.as_ptr(),
            libc::O_CREAT | libc::O_EXCL | libc::O_RDWR,
            0o600,
        );
        assert!(fd >= 0, "shm_open");
        assert_eq!(libc::ftruncate(fd, BYTES as libc::off_t), 0);
        let p = libc::mmap(
            std::ptr::null_mut(),
            BYTES,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        libc::close(fd);
        libc::memset(p, 1, BYTES);
        let sum = checksum(std::slice::from_raw_parts(p.cast::<u64>(), WORDS));
        libc::munmap(p, BYTES);
        libc::shm_unlink(name.as_ptr());
        sum
    }
}

pub(crate) fn stasks_job(
    cluster: &Cluster,
    ids: &[usize],
    cfgs: &[ShmCfg],
    reserve: Reserve,
) -> u64 {
    let mut h = STasks::builder()
        .cluster(cluster)
        .workers(ids)
        .reserve(reserve)
        .call_timeout(Duration::from_secs(120))
        .start(cfgs, &Prefix::job())
        .expect("start");
    let filled: usize = pmap_stasks(&h, fill_share, vec![PATTERN; ids.len()])
        .expect("fill")
        .into_iter()
        .sum();
    assert_eq!(filled, WORDS);
    let sum = checksum(h.array::<u64>("big").expect("big"));
    h.stop().expect("stop");
    sum
}
