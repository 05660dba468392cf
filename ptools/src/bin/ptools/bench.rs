//! `ptools bench`: the headline ratios on this machine, in a few seconds.
//!
//! Each scenario runs in interleaved rounds, one ptools iteration and one raw iteration
//! (the same work with plain system calls) per round, and reports the medians: load from
//! other work on a shared machine then weighs on both alike. `cargo xtask bench` in the
//! repository gives the full criterion report with the Python peers.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use ptools::fork::pfork;
use ptools::shm::{Prefix, ShmBuilder, ShmCfg};
use ptools::workerset::{Cluster, Error as WorkerError};

type BoxError = Box<dyn std::error::Error>;

/// One row of the report.
struct Row {
    scenario: &'static str,
    ptools: Duration,
    raw: Duration,
    target: f64,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Runs `rounds` rounds of (ptools, raw), each timing `per` iterations, and returns the
/// medians per iteration.
fn interleaved(
    rounds: usize,
    per: u32,
    mut ptools: impl FnMut() -> Result<(), BoxError>,
    mut raw: impl FnMut() -> Result<(), BoxError>,
) -> Result<(Duration, Duration), BoxError> {
    let (mut a, mut b) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for _ in 0..rounds {
        let t = Instant::now();
        for _ in 0..per {
            ptools()?;
        }
        a.push(t.elapsed() / per);
        let t = Instant::now();
        for _ in 0..per {
            raw()?;
        }
        b.push(t.elapsed() / per);
    }
    Ok((median(a), median(b)))
}

/// Forks `n` children that each send one byte through a pipe and exit; reads and reaps.
fn raw_fork(n: usize) -> Result<(), BoxError> {
    let mut kids = Vec::with_capacity(n);
    for _ in 0..n {
        let mut fds = [0; 2];
        // SAFETY: pipe(2) into a two-element array.
        if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // SAFETY: the child only writes to its pipe and calls _exit, both
        // async-signal-safe; `ptools bench` forks before it starts any thread.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: as above.
            unsafe {
                libc::write(fds[1], [1u8].as_ptr().cast(), 1);
                libc::_exit(0);
            }
        }
        // SAFETY: closing our copy of the write end.
        unsafe { libc::close(fds[1]) };
        if pid < 0 {
            // SAFETY: closing the read end we own.
            unsafe { libc::close(fds[0]) };
            return Err(std::io::Error::last_os_error().into());
        }
        kids.push((pid, fds[0]));
    }
    for (pid, fd) in kids {
        let mut b = [0u8; 1];
        // SAFETY: reading one byte into a local buffer from the read end we own, closing
        // it, and reaping our own child.
        unsafe {
            libc::read(fd, b.as_mut_ptr().cast(), 1);
            libc::close(fd);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
    Ok(())
}

/// A raw 1 MiB shm cycle: shm_open, ftruncate, mmap, munmap, close, shm_unlink.
fn raw_shm(name: &std::ffi::CStr) -> Result<(), BoxError> {
    const LEN: usize = 1 << 20;
    // SAFETY: plain libc calls on a valid C string and a descriptor we own and close; the
    // mapping is unmapped untouched.
    unsafe {
        let fd = libc::shm_open(
            name.as_ptr(),
            libc::O_RDWR | libc::O_CREAT | libc::O_EXCL,
            0o600,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let ok = libc::ftruncate(fd, LEN as libc::off_t) == 0;
        let p = libc::mmap(
            std::ptr::null_mut(),
            LEN,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        );
        if p != libc::MAP_FAILED {
            libc::munmap(p, LEN);
        }
        libc::close(fd);
        libc::shm_unlink(name.as_ptr());
        if !ok || p == libc::MAP_FAILED {
            return Err("raw shm cycle failed".into());
        }
    }
    Ok(())
}

fn add1(x: u64) -> u64 {
    x + 1
}

/// A child that echoes 8-byte messages on a socket until it closes (the raw round trip).
fn echo_child() -> Result<(UnixStream, i32), BoxError> {
    let (ours, theirs) = UnixStream::pair()?;
    // SAFETY: the child only reads and writes its socket and calls _exit (no allocation,
    // no locks); this runs before any thread is started.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    if pid == 0 {
        use std::os::fd::AsRawFd;
        let fd = theirs.as_raw_fd();
        let mut b = [0u8; 8];
        // SAFETY: as above: close the parent's end (or our own copy of it would keep the
        // socket open and we would never see end of stream), read/write ours, then _exit.
        unsafe {
            libc::close(ours.as_raw_fd());
            while libc::read(fd, b.as_mut_ptr().cast(), 8) == 8 {
                let v = u64::from_ne_bytes(b) + 1;
                libc::write(fd, v.to_ne_bytes().as_ptr().cast(), 8);
            }
            libc::_exit(0);
        }
    }
    drop(theirs);
    Ok((ours, pid))
}

pub(crate) fn run(rounds: usize) -> Result<(), BoxError> {
    println!("ptools bench: {rounds} interleaved rounds per scenario (medians)\n");
    let mut rows = Vec::new();

    // Forking first, while this process has one thread.
    for n in [2usize, 8] {
        let (p, r) = interleaved(rounds, 1, || Ok(pfork(n, |i| i).map(drop)?), || raw_fork(n))?;
        rows.push(Row {
            scenario: if n == 2 {
                "pfork(2), trivial"
            } else {
                "pfork(8), trivial"
            },
            ptools: p,
            raw: r,
            target: 1.3,
        });
    }

    let (mut sock, echo) = echo_child()?;
    let prefix = Prefix::new(format!("bench{}", std::process::id()))?;
    let raw_name = std::ffi::CString::new(format!("/ptools_{}_raw", prefix.as_str()))?;
    let cfg = ShmCfg::new::<u8>("cycle", 1 << 20)?;
    let noreserve = ShmBuilder::new().prefix(prefix).reserve(false);
    let (p, r) = interleaved(
        rounds,
        50,
        || {
            noreserve.create_array::<u8>(&cfg)?; // created, then dropped: unlinked
            Ok(())
        },
        || raw_shm(&raw_name),
    )?;
    rows.push(Row {
        scenario: "shm create cycle, 1 MiB, not reserved",
        ptools: p,
        raw: r,
        target: 2.0,
    });

    let cluster = Cluster::new();
    let ids = cluster.addprocs(1)?;
    // Both sides count up the same value, so each reply is checked to be the right one.
    let x = std::cell::Cell::new(0u64);
    let result = interleaved(
        rounds,
        200,
        || {
            let next = cluster.remotecall_fetch(ids[0], add1, x.get())?;
            (next == x.get() + 1)
                .then(|| x.set(next))
                .ok_or("wrong reply")?;
            Ok(())
        },
        || {
            sock.write_all(&x.get().to_ne_bytes())?;
            let mut b = [0u8; 8];
            sock.read_exact(&mut b)?;
            let next = u64::from_ne_bytes(b);
            (next == x.get() + 1)
                .then(|| x.set(next))
                .ok_or("wrong reply")?;
            Ok(())
        },
    );
    drop(sock); // the echo child sees end of stream and exits
    // SAFETY: reaping the child we forked.
    unsafe { libc::waitpid(echo, std::ptr::null_mut(), 0) };
    cluster
        .rmprocs(&ids)
        .map_err(|e: WorkerError| -> BoxError { e.into() })?;
    let (p, r) = result?;
    rows.push(Row {
        scenario: "remotecall_fetch round trip (u64)",
        ptools: p,
        raw: r,
        target: 1.5,
    });

    println!(
        "{:<40} {:>12} {:>12} {:>7} {:>8}",
        "scenario", "ptools", "raw", "ratio", "target"
    );
    for row in &rows {
        let ratio = row.ptools.as_secs_f64() / row.raw.as_secs_f64();
        println!(
            "{:<40} {:>12} {:>12} {:>6.2}x {:>7}{}",
            row.scenario,
            format!("{:.1?}", row.ptools),
            format!("{:.1?}", row.raw),
            ratio,
            format!("<= {}x", row.target),
            if ratio <= row.target { "" } else { "  (over)" }
        );
    }
    println!("\nraw = the same work with plain system calls, in the same rounds.");
    println!("The full report with the Python peers: `cargo xtask bench --peers` (BENCHMARKS.md).");
    Ok(())
}
