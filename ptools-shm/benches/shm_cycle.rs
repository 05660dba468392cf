//! Shared-array create/map/unlink cycles and a large fill, each against a raw libc
//! baseline doing the same work in the same run.
//!
//! - `shm_cycle/raw/<size>`: `shm_open` + `ftruncate` + `mmap` + `munmap` + `close` +
//!   `shm_unlink`, at 4 KiB and 1 MiB.
//! - `shm_cycle/raw_fallocate/1MiB`: the same plus `posix_fallocate` of the whole size.
//! - `shm_cycle/ptools_reserve/1MiB`: `ShmArray::create` (default: pages reserved) + drop;
//!   compare with `raw_fallocate`.
//! - `shm_cycle/ptools_noreserve/<size>`: the same with `reserve(false)`, at 4 KiB and
//!   1 MiB of data; compare with `raw/<size>`.
//! - `fill/raw/256MiB`: `shm_open` + `ftruncate` + `mmap` + `memset` + unmap + unlink.
//! - `fill/ptools/256MiB`: create with the defaults (reserved), fill, drop;
//!   `fill/ptools_populate/256MiB`: the same with the pages pre-faulted at creation.

use std::ffi::CString;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ptools_shm::{Prefix, ShmArray, ShmBuilder, ShmCfg};

const KIB: usize = 1 << 10;
const MIB: usize = 1 << 20;

/// One raw cycle; `fallocate` reserves the pages, `fill` writes every byte.
fn raw_cycle(name: &CString, len: usize, fallocate: bool, fill: bool) {
    // SAFETY: plain libc calls on a valid C string, a descriptor we own and close, and a
    // mapping of `len` bytes that we write within its bounds and unmap.
    unsafe {
        let fd = libc::shm_open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            0o600,
        );
        assert!(fd >= 0, "shm_open");
        assert_eq!(libc::ftruncate(fd, len as libc::off_t), 0);
        if fallocate {
            assert_eq!(libc::posix_fallocate(fd, 0, len as libc::off_t), 0);
        }
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        assert_ne!(p, libc::MAP_FAILED);
        if fill {
            std::ptr::write_bytes(p.cast::<u8>(), 1, len);
        }
        libc::munmap(p, len);
        libc::close(fd);
        libc::shm_unlink(name.as_ptr());
    }
}

fn cycles(c: &mut Criterion) {
    let prefix = Prefix::new(format!("bench{}", std::process::id())).unwrap();
    let raw_name = CString::new(format!("/ptools_{}_raw", prefix.as_str())).unwrap();
    let cfg = ShmCfg::new::<u8>("cycle", MIB).unwrap();
    let cfg_4k = ShmCfg::new::<u8>("cycle4k", 4 * KIB).unwrap();
    let reserve = ShmBuilder::new().prefix(prefix.clone());
    let noreserve = reserve.clone().reserve(false);

    let mut g = c.benchmark_group("shm_cycle");
    g.bench_function(BenchmarkId::new("raw", "4KiB"), |b| {
        b.iter(|| raw_cycle(&raw_name, 4 * KIB, false, false))
    });
    g.bench_function(BenchmarkId::new("ptools_noreserve", "4KiB"), |b| {
        b.iter(|| drop(noreserve.create_array::<u8>(&cfg_4k).unwrap()))
    });
    g.bench_function(BenchmarkId::new("raw", "1MiB"), |b| {
        b.iter(|| raw_cycle(&raw_name, MIB, false, false))
    });
    g.bench_function(BenchmarkId::new("raw_fallocate", "1MiB"), |b| {
        b.iter(|| raw_cycle(&raw_name, MIB, true, false))
    });
    g.bench_function(BenchmarkId::new("ptools_reserve", "1MiB"), |b| {
        b.iter(|| drop(reserve.create_array::<u8>(&cfg).unwrap()))
    });
    g.bench_function(BenchmarkId::new("ptools_noreserve", "1MiB"), |b| {
        b.iter(|| drop(noreserve.create_array::<u8>(&cfg).unwrap()))
    });
    g.finish();
}

fn fill(c: &mut Criterion) {
    let prefix = Prefix::new(format!("benchf{}", std::process::id())).unwrap();
    let raw_name = CString::new(format!("/ptools_{}_raw", prefix.as_str())).unwrap();
    let len = 256 * MIB;
    let cfg = ShmCfg::new::<u8>("fill", len).unwrap();
    let plain = ShmBuilder::new().prefix(prefix.clone());
    let populate = plain.clone().populate(true);

    let mut g = c.benchmark_group("fill");
    g.sample_size(10);
    g.throughput(criterion::Throughput::Bytes(len as u64));
    g.bench_function(BenchmarkId::new("raw", "256MiB"), |b| {
        b.iter(|| raw_cycle(&raw_name, len, false, true))
    });
    g.bench_function(BenchmarkId::new("ptools", "256MiB"), |b| {
        b.iter(|| {
            let mut a: ShmArray<u8> = plain.create_array(&cfg).unwrap();
            a.fill(1);
        })
    });
    g.bench_function(BenchmarkId::new("ptools_populate", "256MiB"), |b| {
        b.iter(|| {
            let mut a: ShmArray<u8> = populate.create_array(&cfg).unwrap();
            a.fill(1);
        })
    });
    g.finish();
}

criterion_group!(benches, cycles, fill);
criterion_main!(benches);
