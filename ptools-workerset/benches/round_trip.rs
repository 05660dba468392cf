//! Round trip of a `u64`: `remotecall_fetch` to one worker against a raw socketpair
//! ping-pong between two processes, and the same over TCP on loopback (a worker joined
//! through a launcher against a raw TCP ping-pong), measured in the same run.

ptools_workerset::enable_test_support!();

use std::hint::black_box;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use ptools_workerset::Cluster;

fn add1(x: u64) -> u64 {
    x + 1
}

/// A forked child that answers each 8-byte message with the same message plus one.
struct Echo {
    fd: OwnedFd,
    pid: i32,
}

impl Echo {
    fn start() -> Echo {
        let mut fds = [0; 2];
        // SAFETY: `fds` is a valid array of two ints.
        let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM, 0, fds.as_mut_ptr()) };
        assert_eq!(r, 0);
        // SAFETY: the child makes only async-signal-safe calls (read, write, _exit).
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            let mut b = [0u8; 8];
            loop {
                // SAFETY: reads into a valid 8-byte buffer.
                let n = unsafe { libc::read(fds[1], b.as_mut_ptr().cast(), 8) };
                if n != 8 {
                    // SAFETY: leave the child without running any parent state's destructors.
                    unsafe { libc::_exit(0) };
                }
                let v = u64::from_le_bytes(b) + 1;
                b = v.to_le_bytes();
                // SAFETY: writes from a valid 8-byte buffer.
                unsafe { libc::write(fds[1], b.as_ptr().cast(), 8) };
            }
        }
        // SAFETY: fds[1] is the child's end, ours to close.
        unsafe { libc::close(fds[1]) };
        // SAFETY: fds[0] is open and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fds[0]) };
        Echo { fd, pid }
    }

    fn ping(&self, x: u64) -> u64 {
        let mut b = x.to_le_bytes();
        // SAFETY: valid 8-byte buffers on an open socket.
        unsafe {
            libc::write(self.fd.as_raw_fd(), b.as_ptr().cast(), 8);
            libc::read(self.fd.as_raw_fd(), b.as_mut_ptr().cast(), 8);
        }
        u64::from_le_bytes(b)
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

/// A forked child that answers each 8-byte message on a loopback TCP connection
/// (`TCP_NODELAY` both ends) with the same message plus one.
struct TcpEcho {
    s: std::net::TcpStream,
    pid: i32,
}

impl TcpEcho {
    fn start() -> TcpEcho {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        // SAFETY: the child only accepts, reads and writes on sockets (no allocation on
        // these paths) and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            if let Ok((mut s, _)) = l.accept() {
                let _ = s.set_nodelay(true);
                let mut b = [0u8; 8];
                while s.read_exact(&mut b).is_ok() {
                    b = (u64::from_le_bytes(b) + 1).to_le_bytes();
                    if s.write_all(&b).is_err() {
                        break;
                    }
                }
            }
            // SAFETY: leave the child without running any parent state's destructors.
            unsafe { libc::_exit(0) };
        }
        drop(l);
        let s = std::net::TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        TcpEcho { s, pid }
    }

    fn ping(&mut self, x: u64) -> u64 {
        use std::io::{Read, Write};
        let mut b = x.to_le_bytes();
        self.s.write_all(&b).unwrap();
        self.s.read_exact(&mut b).unwrap();
        u64::from_le_bytes(b)
    }
}

impl Drop for TcpEcho {
    fn drop(&mut self) {
        let _ = self.s.shutdown(std::net::Shutdown::Both);
        // SAFETY: reaps our own child, which exits at the end of its stream.
        unsafe { libc::waitpid(self.pid, std::ptr::null_mut(), 0) };
    }
}

fn round_trip(c: &mut Criterion) {
    let mut g = c.benchmark_group("round_trip");
    let echo = Echo::start();
    g.bench_function("raw_socketpair_u64", |b| {
        b.iter(|| echo.ping(black_box(41)))
    });
    drop(echo);
    let cluster = Cluster::new();
    let id = cluster.addprocs(1).unwrap()[0];
    g.bench_function("remotecall_fetch_u64", |b| {
        b.iter(|| cluster.remotecall_fetch(id, add1, black_box(41)).unwrap())
    });
    // The same calls over the socket alone (the ring turned off), and two callers each
    // with a worker of its own, four busy threads on a machine of two cores: where
    // spinning could starve the peer it waits for.
    let plain = Cluster::builder().shared_memory_ring(false).build();
    let pid = plain.addprocs(1).unwrap()[0];
    g.bench_function("remotecall_fetch_u64_socket", |b| {
        b.iter(|| plain.remotecall_fetch(pid, add1, black_box(41)).unwrap())
    });
    for (name, c) in [
        ("two_callers_u64", &cluster),
        ("two_callers_u64_socket", &plain),
    ] {
        let ids = c.addprocs(2).unwrap();
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let t = std::time::Instant::now();
                std::thread::scope(|s| {
                    for &w in &ids {
                        s.spawn(move || {
                            for _ in 0..iters {
                                c.remotecall_fetch(w, add1, black_box(41)).unwrap();
                            }
                        });
                    }
                });
                t.elapsed()
            })
        });
        c.rmprocs(&ids).unwrap();
    }
    drop(plain);
    let mut tcp = TcpEcho::start();
    g.bench_function("raw_tcp_u64", |b| b.iter(|| tcp.ping(black_box(41))));
    drop(tcp);
    let launcher = ptools_workerset::CommandLauncher::new(["sh", "-c", "exec {cmd}"]);
    let tid = cluster.addprocs_with(&launcher).unwrap()[0];
    g.bench_function("remotecall_fetch_tcp_u64", |b| {
        b.iter(|| cluster.remotecall_fetch(tid, add1, black_box(41)).unwrap())
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = round_trip
}
criterion_main!(benches);
