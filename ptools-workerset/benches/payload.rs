//! Payload curve: a buffer of 8 B to 16 MiB sent to a worker and back through
//! `remotecall_fetch` (as `Vec<u8>` and as `Vec<f64>`), against a raw socketpair echo of the
//! same bytes with a forked process and against two plain copies of the buffer, measured in
//! the same run.

ptools_workerset::enable_test_support!();

use std::hint::black_box;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use criterion::{
    BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use ptools_workerset::{Cluster, SharedSlice};

/// The sizes of the curve, in bytes, with their labels.
const SIZES: [(usize, &str); 5] = [
    (8, "8B"),
    (1 << 10, "1KiB"),
    (64 << 10, "64KiB"),
    (1 << 20, "1MiB"),
    (16 << 20, "16MiB"),
];

fn echo_u8(v: Vec<u8>) -> Vec<u8> {
    v
}

fn echo_f64(v: Vec<f64>) -> Vec<f64> {
    v
}

fn echo_shared(v: SharedSlice<u8>) -> SharedSlice<u8> {
    v
}

/// Writes all of `buf` to `fd`; false on an error.
fn write_all(fd: i32, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: writes from a valid buffer of `buf.len()` bytes.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n <= 0 {
            return false;
        }
        buf = &buf[n as usize..];
    }
    true
}

/// Fills all of `buf` from `fd`; false on an error or the end of the stream.
fn read_all(fd: i32, mut buf: &mut [u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: reads into a valid buffer of `buf.len()` bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return false;
        }
        buf = &mut buf[n as usize..];
    }
    true
}

/// A forked child that reads an 8-byte length and that many bytes, then writes the bytes
/// back: the same bytes a remote call moves, with nothing else.
struct Echo {
    fd: OwnedFd,
    pid: i32,
}

impl Echo {
    /// `max` is the largest message; the child's buffer is allocated before the fork.
    fn start(max: usize) -> Echo {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two ints.
        let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
        assert_eq!(r, 0);
        let mut buf = vec![0u8; max];
        // SAFETY: the child makes only async-signal-safe calls (read, write, _exit) on
        // memory allocated before the fork.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let mut len = [0u8; 8];
            while read_all(fds[1], &mut len) {
                let n = u64::from_le_bytes(len) as usize;
                if n > buf.len() || !read_all(fds[1], &mut buf[..n]) {
                    break;
                }
                if !write_all(fds[1], &buf[..n]) {
                    break;
                }
            }
            // SAFETY: leave the child without running any parent state's destructors.
            unsafe { libc::_exit(0) };
        }
        drop(buf);
        // SAFETY: fds[1] is the child's end, ours to close.
        unsafe { libc::close(fds[1]) };
        // SAFETY: fds[0] is open and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fds[0]) };
        Echo { fd, pid }
    }

    /// Sends `out` after its length (one `writev`, as a frame goes out in one write) and
    /// reads it back into `back`.
    fn round_trip(&self, out: &[u8], back: &mut [u8]) {
        let fd = self.fd.as_raw_fd();
        let len = (out.len() as u64).to_le_bytes();
        let iov = [
            libc::iovec {
                iov_base: len.as_ptr() as *mut libc::c_void,
                iov_len: 8,
            },
            libc::iovec {
                iov_base: out.as_ptr() as *mut libc::c_void,
                iov_len: out.len(),
            },
        ];
        // SAFETY: both vectors point at live buffers of their lengths, only read.
        let n = unsafe { libc::writev(fd, iov.as_ptr(), 2) };
        assert!(n >= 8, "writev: {n}");
        let sent = n as usize - 8;
        assert!(write_all(fd, &out[sent..]));
        assert!(read_all(fd, &mut back[..out.len()]));
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        // SAFETY: shut our end so the child sees EOF, then reap it (it exits at once).
        unsafe {
            libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_RDWR);
            libc::waitpid(self.pid, std::ptr::null_mut(), 0);
        }
    }
}

fn payload(c: &mut Criterion) {
    let max = SIZES[SIZES.len() - 1].0;
    let echo = Echo::start(max);
    let cluster = Cluster::new();
    let id = cluster.addprocs(1).unwrap()[0];
    let mut g = c.benchmark_group("payload");
    // One iteration of 16 MiB takes milliseconds: the same number of iterations in every
    // sample, and few samples.
    g.sampling_mode(SamplingMode::Flat);
    for (size, label) in SIZES {
        g.throughput(Throughput::Bytes(size as u64));
        let bytes: Vec<u8> = (0..size).map(|i| (i * 7 + 3) as u8).collect();
        let mut back = vec![0u8; size];
        g.bench_function(BenchmarkId::new("raw_socketpair", label), |b| {
            b.iter(|| echo.round_trip(black_box(&bytes), &mut back))
        });
        let mut second = vec![0u8; size];
        let mut third = vec![0u8; size];
        g.bench_function(BenchmarkId::new("two_memcpy", label), |b| {
            b.iter(|| {
                second.copy_from_slice(black_box(&bytes));
                third.copy_from_slice(black_box(&second));
                black_box(&third);
            })
        });
        drop((second, third, back));
        // The argument is moved into the call: a fresh clone per iteration, made outside
        // the timing (the raw echo has its buffer ready too); the result is dropped outside.
        g.bench_function(BenchmarkId::new("remotecall_fetch_vec_u8", label), |b| {
            b.iter_batched(
                || bytes.clone(),
                |v| cluster.remotecall_fetch(id, echo_u8, v).unwrap(),
                BatchSize::LargeInput,
            )
        });
        // The same bytes as a `SharedSlice`: read in place on both sides from 64 KiB on.
        // The result (a view of the worker's region, when large) is dropped inside the
        // timing, which lets the worker use its region for the next result.
        g.bench_function(BenchmarkId::new("remotecall_fetch_shared_u8", label), |b| {
            b.iter_batched(
                || SharedSlice::from(bytes.clone()),
                |v| {
                    let back = cluster.remotecall_fetch(id, echo_shared, v).unwrap();
                    black_box(back.len());
                },
                BatchSize::PerIteration,
            )
        });
        let floats: Vec<f64> = (0..size / 8).map(|i| i as f64 * 0.5 - 7.25).collect();
        g.bench_function(BenchmarkId::new("remotecall_fetch_vec_f64", label), |b| {
            b.iter_batched(
                || floats.clone(),
                |v| cluster.remotecall_fetch(id, echo_f64, v).unwrap(),
                BatchSize::LargeInput,
            )
        });
        // Once, outside the timing: what came back is what went, in place when large.
        let back = cluster
            .remotecall_fetch(id, echo_shared, SharedSlice::from(bytes.clone()))
            .unwrap();
        assert_eq!(back.is_in_place(), size >= 64 << 10, "{label}");
        assert_eq!(&*back, &bytes[..]);
        drop(back);
        assert_eq!(
            cluster
                .remotecall_fetch(id, echo_u8, bytes.clone())
                .unwrap(),
            bytes
        );
        assert_eq!(
            cluster
                .remotecall_fetch(id, echo_f64, floats.clone())
                .unwrap(),
            floats
        );
    }
    g.finish();
    drop(echo);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(10);
    targets = payload
}
criterion_main!(benches);
