//! Large arguments and results through a local worker's shared-memory regions: sizes on
//! both sides of the threshold in both directions, reuse and growth over many calls,
//! pipelined calls (which fall back to the socket while a region is busy), a worker killed
//! in a large call (typed error, no descriptor or mapping left), and forged references to
//! the result region (a protocol error for that worker, never a crash of the master).

ptools_workerset::enable_test_support!();

use std::time::{Duration, Instant};

use ptools_workerset::__test_hooks::write_raw_to_data_link;
use ptools_workerset::{Cluster, Error};

/// The threshold in `wire.rs` (`ZC_THRESHOLD`).
const T: usize = 64 * 1024;
const MIB: usize = 1 << 20;

/// The tests count this process's descriptors and mappings: one at a time.
static ONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one() -> std::sync::MutexGuard<'static, ()> {
    ONE.lock().unwrap_or_else(|p| p.into_inner())
}

fn echo(v: Vec<u8>) -> Vec<u8> {
    v
}

fn len_of(v: Vec<u8>) -> usize {
    v.len()
}

fn make(n: usize) -> Vec<u8> {
    pattern(n, 5)
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

fn add1(x: u64) -> u64 {
    x + 1
}

/// Our open descriptors (the directory's own one excluded).
fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count() - 1
}

/// Our mappings and descriptors of regions.
fn regions_held() -> (usize, usize) {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mapped = maps
        .lines()
        .filter(|l| l.contains("memfd:ptools-zerocopy"))
        .count();
    let fds = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|l| l.to_string_lossy().contains("memfd:ptools-zerocopy"))
        })
        .count();
    (mapped, fds)
}

fn wait_gone(c: &Cluster, id: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.procs().contains(&id) {
        assert!(Instant::now() < deadline, "worker {id} was not removed");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn sizes_around_the_threshold_both_directions() {
    let _one = one();
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    for n in [0, 1, T - 1, T, T + 1, MIB, 16 * MIB, 64 * MIB] {
        let v = pattern(n, n as u8);
        // Both ways large, argument only, result only.
        assert!(
            c.remotecall_fetch(id, echo, v.clone()).unwrap() == v,
            "echo {n}"
        );
        assert_eq!(c.remotecall_fetch(id, len_of, v).unwrap(), n, "len_of {n}");
        assert!(
            c.remotecall_fetch(id, make, n).unwrap() == make(n),
            "make {n}"
        );
    }
}

#[test]
fn many_calls_reuse_and_grow_the_regions() {
    let _one = one();
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    let mut sizes: Vec<usize> = (0..40).map(|i| T + i * 97_000).collect();
    sizes.extend([3 * MIB, T, 5, 9 * MIB, 2 * T, 1]);
    for (k, &n) in sizes.iter().enumerate() {
        let v = pattern(n, k as u8);
        assert!(
            c.remotecall_fetch(id, echo, v.clone()).unwrap() == v,
            "call {k}, {n} bytes"
        );
    }
    assert_eq!(c.remotecall_fetch(id, add1, 1).unwrap(), 2);
}

#[test]
fn pipelined_large_calls_keep_their_order_and_bytes() {
    let _one = one();
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    let inputs: Vec<Vec<u8>> = (0..12)
        .map(|k| pattern(if k % 3 == 2 { 100 } else { T + k * 50_000 }, k as u8))
        .collect();
    let refs: Vec<_> = inputs
        .iter()
        .map(|v| c.remotecall(id, echo, v.clone()).unwrap())
        .collect();
    let makes: Vec<_> = (0..6)
        .map(|k| c.remotecall(id, make, 2 * MIB + k).unwrap())
        .collect();
    for (k, (r, v)) in refs.into_iter().zip(&inputs).enumerate() {
        assert!(r.fetch().unwrap() == *v, "call {k}");
    }
    for (k, r) in makes.into_iter().enumerate() {
        assert!(r.fetch().unwrap() == make(2 * MIB + k), "make {k}");
    }
}

fn kill_self(v: Vec<u8>) -> usize {
    // SAFETY: kill(2) on our own pid; the signal ends this worker at once.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    v.len()
}

#[test]
fn a_worker_killed_in_a_large_call_leaves_nothing_behind() {
    let _one = one();
    // The crate's own lasting descriptors (its spawner's and death watcher's) opened by
    // a first cluster, before counting.
    {
        let c = Cluster::new();
        let id = c.addprocs(1).unwrap()[0];
        assert_eq!(c.remotecall_fetch(id, add1, 1).unwrap(), 2);
    }
    // No cluster lives now (the tests run one at a time), but the last one's reader
    // threads may still hold their regions for a moment.
    let deadline = Instant::now() + Duration::from_secs(30);
    while regions_held() != (0, 0) {
        assert!(
            Instant::now() < deadline,
            "regions held: {:?}",
            regions_held()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let before_fds = fd_count();
    let before = (0, 0);
    {
        let c = Cluster::new();
        let ids = c.addprocs(2).unwrap();
        let (victim, other) = (ids[0], ids[1]);
        assert!(c.remotecall_fetch(victim, echo, make(4 * MIB)).unwrap() == make(4 * MIB));
        let queued = c.remotecall(victim, echo, make(2 * MIB)).unwrap();
        match c.remotecall_fetch(victim, kill_self, make(8 * MIB)) {
            Err(Error::WorkerDied { id, .. }) => assert_eq!(id, victim),
            other => panic!("expected WorkerDied, got {other:?}"),
        }
        // Queued before the fatal call, so answered; or failed with it.
        match queued.fetch() {
            Ok(v) => assert!(v == make(2 * MIB)),
            Err(Error::WorkerDied { .. }) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
        wait_gone(&c, victim);
        assert!(c.remotecall_fetch(other, echo, make(3 * MIB)).unwrap() == make(3 * MIB));
    }
    // The cluster is gone: every region unmapped and closed, no descriptor leaked.
    let deadline = Instant::now() + Duration::from_secs(30);
    // (At most as many descriptors: the first cluster's may still have been closing.)
    while fd_count() > before_fds || regions_held() != before {
        assert!(
            Instant::now() < deadline,
            "descriptors {} -> {}, regions {before:?} -> {:?}",
            before_fds,
            fd_count(),
            regions_held()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends a reply that says the result is in the region at `(off, len)`, then idles.
fn forge_reply(r: (u64, u64, usize)) {
    let (off, len, body) = r;
    let mut f = (body as u32).to_le_bytes().to_vec();
    f.push(0x41);
    f.extend_from_slice(&off.to_le_bytes());
    f.extend_from_slice(&len.to_le_bytes());
    f.truncate(4 + body);
    write_raw_to_data_link(&f).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

fn expect_protocol<T: std::fmt::Debug>(r: Result<T, Error>, id: usize, what: &str) {
    match r {
        Err(Error::Protocol { id: i, cause, .. }) => {
            assert_eq!(i, id);
            assert!(cause.contains(what), "cause {cause:?} lacks {what:?}");
        }
        other => panic!("expected Protocol, got {other:?}"),
    }
}

#[test]
fn forged_region_references_are_protocol_errors() {
    let _one = one();
    let c = Cluster::new();
    let cases: [((u64, u64, usize), &str); 4] = [
        // Past the region (which holds nothing yet, or what an earlier result needed).
        ((0, 1 << 29, 17), "past its size"),
        ((u64::MAX - 3, 16, 17), "overflows"),
        // Over the frame cap.
        ((0, u64::MAX / 2, 17), "over the cap"),
        ((0, 16, 9), "malformed"),
    ];
    for (forged, what) in cases {
        let id = c.addprocs(1).unwrap()[0];
        // A first large result, so the region exists and is mapped on both sides.
        assert!(c.remotecall_fetch(id, make, 3 * MIB).unwrap() == make(3 * MIB));
        let r = c.remotecall(id, forge_reply, forged).unwrap();
        expect_protocol(r.fetch(), id, what);
        wait_gone(&c, id);
    }
    // An empty reference, first thing: the region was never mapped.
    let id = c.addprocs(1).unwrap()[0];
    let r = c.remotecall(id, forge_reply, (0, 0, 17)).unwrap();
    expect_protocol(r.fetch(), id, "empty payload");
    wait_gone(&c, id);
    let id = c.addprocs(1).unwrap()[0];
    assert_eq!(c.remotecall_fetch(id, add1, 1).unwrap(), 2);
}

// ---- Encoded straight into the regions, decoded straight from the result region. ----

fn strings(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("string {i} {}", "é".repeat(i % 7)))
        .collect()
}

fn echo_strings(v: Vec<String>) -> Vec<String> {
    v
}

fn echo_pairs(v: Vec<(u32, f64)>) -> Vec<(u32, f64)> {
    v
}

/// Numbers written as a sequence of unknown length (its length is inserted before its
/// elements at the end, in the region once the encoding moved there).
#[derive(Debug, PartialEq)]
struct Odd(Vec<u64>);

impl serde::Serialize for Odd {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // `filter` makes the length unknown to the serializer.
        s.collect_seq(self.0.iter().filter(|_| true))
    }
}

impl<'de> serde::Deserialize<'de> for Odd {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Odd, D::Error> {
        <Vec<u64> as serde::Deserialize>::deserialize(d).map(Odd)
    }
}

fn odd(n: u64) -> Odd {
    Odd((0..n).filter(|i| i % 2 == 1).collect())
}

fn echo_odd(v: Odd) -> Odd {
    v
}

fn big_panic(n: usize) -> u8 {
    panic!("{}", "p".repeat(n))
}

#[test]
fn structured_values_cross_the_regions_element_by_element() {
    let _one = one();
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    for n in [10, 5_000, 200_000] {
        let s = strings(n);
        assert!(
            c.remotecall_fetch(id, echo_strings, s.clone()).unwrap() == s,
            "{n}"
        );
        let p: Vec<(u32, f64)> = (0..n as u32).map(|i| (i, f64::from(i) * 0.5)).collect();
        assert!(
            c.remotecall_fetch(id, echo_pairs, p.clone()).unwrap() == p,
            "{n}"
        );
    }
    // Unknown lengths, as a result and as an argument (encoded on the master).
    for n in [7u64, 40_000, 1_000_000] {
        assert_eq!(c.remotecall_fetch(id, odd, n).unwrap(), odd(n), "{n}");
        assert_eq!(
            c.remotecall_fetch(id, echo_odd, odd(n)).unwrap(),
            odd(n),
            "{n}"
        );
    }
    // A panic message over the threshold went into the region as it was written and
    // comes back on the socket.
    match c.remotecall_fetch(id, big_panic, 3 * T) {
        Err(Error::RemotePanic { message, .. }) => assert_eq!(message.len(), 3 * T),
        other => panic!("expected RemotePanic, got {other:?}"),
    }
    assert!(c.remotecall_fetch(id, make, 2 * MIB).unwrap() == make(2 * MIB));
}

/// A result left in the region holds it until it is fetched (or dropped): later large
/// results take the socket meanwhile, and everything arrives whole in any order of fetches.
#[test]
fn results_fetched_late_or_never_keep_everything_whole() {
    let _one = one();
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    for round in 0..3 {
        let first = c.remotecall(id, make, 3 * MIB + round).unwrap();
        let dropped = c.remotecall(id, make, 2 * MIB).unwrap();
        let waited = c.remotecall(id, make, MIB).unwrap();
        // The three replies are in before anything is fetched.
        waited.wait().unwrap();
        drop(dropped);
        assert!(c.remotecall_fetch(id, make, 4 * MIB).unwrap() == make(4 * MIB));
        assert!(waited.fetch().unwrap() == make(MIB));
        assert!(first.fetch().unwrap() == make(3 * MIB + round));
    }
    // Unfetched, dropped with the cluster's worker alive: the region is free again.
    drop(c.remotecall(id, make, 5 * MIB).unwrap());
    for n in [T, 6 * MIB] {
        assert!(c.remotecall_fetch(id, make, n).unwrap() == make(n));
    }
}

/// Maps this worker's two regions (found by their name among its descriptors) and
/// writes arbitrary bytes all over them for `ms` milliseconds, from another thread.
fn scribble_regions(ms: u64) {
    use std::os::fd::AsRawFd;
    let mut maps = Vec::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let is_region = std::fs::read_link(e.path())
            .is_ok_and(|l| l.to_string_lossy().contains("memfd:ptools-zerocopy"));
        let Ok(f) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(e.path())
        else {
            continue;
        };
        let len = f.metadata().map(|m| m.len() as usize).unwrap_or(0);
        if !is_region || len == 0 {
            continue;
        }
        // SAFETY: a new shared mapping of a region's file at an address the kernel picks;
        // only the raw pointer below touches it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if p != libc::MAP_FAILED {
            maps.push((p as usize, len));
        }
    }
    std::thread::spawn(move || {
        let end = Instant::now() + Duration::from_millis(ms);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        while Instant::now() < end {
            for &(p, len) in &maps {
                for _ in 0..4096 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let at = (x as usize) % len;
                    // SAFETY: inside the mapping made above, which is never unmapped.
                    unsafe { ((p + at) as *mut u8).write_volatile(x as u8 | 0x80) };
                }
            }
        }
    });
}

/// The strings of [`strings`], from a worker that scribbles over its regions while its
/// result is encoded, sent and read.
fn strings_scribbled(n: usize) -> Vec<String> {
    scribble_regions(300);
    strings(n)
}

fn bytes_scribbled(n: usize) -> Vec<u8> {
    scribble_regions(300);
    make(n)
}

/// A worker that writes its result region while the master decodes from it gets a wrong
/// value or a decode error back, never a crash or a hang of the master.
#[test]
fn a_worker_scribbling_its_regions_cannot_crash_the_master() {
    let _one = one();
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    // The regions exist (and are mapped by the worker) before it scribbles on them.
    assert!(c.remotecall_fetch(id, make, 4 * MIB).unwrap() == make(4 * MIB));
    assert!(c.remotecall_fetch(id, echo, make(4 * MIB)).unwrap() == make(4 * MIB));
    let mut outcomes = (0, 0);
    for _ in 0..20 {
        match c.remotecall_fetch(id, strings_scribbled, 100_000) {
            Ok(v) => {
                assert!(v.len() <= 100_000);
                outcomes.0 += 1;
            }
            Err(Error::Decode(m)) => {
                assert!(m.starts_with("result: "), "{m}");
                outcomes.1 += 1;
            }
            Err(e) => panic!("expected a value or a decode error, got {e}"),
        }
        // Its length may be scribbled on too.
        match c.remotecall_fetch(id, bytes_scribbled, 2 * MIB) {
            Ok(v) => assert!(v.len() <= 2 * MIB),
            Err(Error::Decode(m)) => assert!(m.starts_with("result: "), "{m}"),
            Err(e) => panic!("expected a value or a decode error, got {e}"),
        }
    }
    eprintln!(
        "scribbled: {} values, {} decode errors",
        outcomes.0, outcomes.1
    );
    std::thread::sleep(Duration::from_millis(350));
    assert!(c.remotecall_fetch(id, make, 3 * MIB).unwrap() == make(3 * MIB));
}

/// The sizes of the regions this process holds descriptors of.
fn region_sizes() -> Vec<u64> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path())
                .is_ok_and(|l| l.to_string_lossy().contains("memfd:ptools-zerocopy"))
        })
        .filter_map(|e| std::fs::metadata(e.path()).ok().map(|m| m.len()))
        .collect()
}

/// Payloads over the frame cap are refused as before, and the regions they started to
/// fill are not grown for them (they stay at most a step past the cap).
#[test]
fn payloads_over_the_cap_do_not_grow_the_regions() {
    let _one = one();
    let c = Cluster::builder().max_frame_bytes(MIB).build();
    let id = c.addprocs(1).unwrap()[0];
    match c.remotecall_fetch(id, len_of, make(20 * MIB)) {
        Err(Error::ArgumentTooLarge { len, .. }) => assert_eq!(len, 20 * MIB as u64 + 4),
        other => panic!("expected ArgumentTooLarge, got {other:?}"),
    }
    match c.remotecall_fetch(id, make, 20 * MIB) {
        Err(Error::ResultTooLarge { len, .. }) => assert_eq!(len, 20 * MIB as u64 + 4),
        other => panic!("expected ResultTooLarge, got {other:?}"),
    }
    let v = make(MIB / 2);
    assert!(c.remotecall_fetch(id, echo, v.clone()).unwrap() == v);
    let sizes = region_sizes();
    assert_eq!(sizes.len(), 2, "{sizes:?}");
    assert!(sizes.iter().all(|&s| s <= 2 * MIB as u64), "{sizes:?}");
}

/// The shared memory a process has mapped in, in bytes (`RssShmem`).
fn rss_shmem(pid: i32) -> usize {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: usize = s
        .lines()
        .find_map(|l| l.strip_prefix("RssShmem:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("RssShmem in /proc/<pid>/status");
    kib * 1024
}

#[test]
fn a_run_of_small_calls_gives_back_a_large_calls_pages() {
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    let pid = c.pid(id).unwrap();
    let big = make(32 * MIB);
    assert_eq!(c.remotecall_fetch(id, echo, big.clone()).unwrap(), big);
    // The worker read the argument from its region and wrote the result into the other.
    let after_big = rss_shmem(pid);
    assert!(
        after_big >= 60 * MIB,
        "{after_big} bytes after a 32 MiB echo"
    );
    // A few small calls keep the pages for the next large one...
    for i in 0..10 {
        assert_eq!(c.remotecall_fetch(id, add1, i).unwrap(), i + 1);
    }
    assert!(rss_shmem(pid) >= 60 * MIB);
    // ...a run of them gives them back: both writers (the master for arguments, the worker
    // for results) punch out all but a few MiB.
    for i in 0..10 {
        assert_eq!(c.remotecall_fetch(id, add1, i).unwrap(), i + 1);
    }
    let after_small = rss_shmem(pid);
    assert!(
        after_small <= 16 * MIB,
        "{after_small} bytes after 20 small calls (was {after_big})"
    );
    // And large calls still work, with the same bytes.
    let other = pattern(20 * MIB, 9);
    assert_eq!(c.remotecall_fetch(id, echo, other.clone()).unwrap(), other);
}
