//! `SharedSlice`: large ones are read where they lie on both sides (the worker reads the
//! argument in its master's region, the master reads the result in the worker's), small
//! ones are owned; a view the master holds keeps the result region (later large results
//! still arrive, through the socket) and outlives its worker; a view a worker keeps past
//! the call keeps reading what it read while the master writes new arguments; and
//! nothing is left mapped once the views and the cluster are gone.

ptools_workerset::enable_test_support!();

use std::sync::Mutex;
use std::time::{Duration, Instant};

use ptools_workerset::{Cluster, SharedSlice};

const MIB: usize = 1 << 20;

/// The tests count this process's mappings: one at a time.
static ONE: Mutex<()> = Mutex::new(());

fn one() -> std::sync::MutexGuard<'static, ()> {
    ONE.lock().unwrap_or_else(|p| p.into_inner())
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

fn floats(n: usize) -> Vec<f64> {
    (0..n).map(|i| i as f64 * 0.25 - 3.0).collect()
}

/// Whether `addr` lies in a mapping of a region in this process. By address, not by a
/// count of mappings: another test's cluster may still be letting go of its own.
fn region_mapped_at(addr: usize) -> bool {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("memfd:ptools-zerocopy"))
        .any(|l| {
            let range = l.split_whitespace().next().unwrap();
            let (lo, hi) = range.split_once('-').unwrap();
            let lo = usize::from_str_radix(lo, 16).unwrap();
            let hi = usize::from_str_radix(hi, 16).unwrap();
            (lo..hi).contains(&addr)
        })
}

/// Whether the worker read its argument in place, and the argument back.
fn echo(v: SharedSlice<u8>) -> (bool, SharedSlice<u8>) {
    (v.is_in_place(), v)
}

/// A slice of `f64` after a byte, both ways: the numbers must still be aligned.
fn scale(a: (u8, SharedSlice<f64>)) -> (u16, bool, SharedSlice<f64>) {
    let (k, v) = a;
    let out: SharedSlice<f64> = v.iter().map(|x| x * f64::from(k)).collect();
    (u16::from(k) + 1, v.is_in_place(), out)
}

#[test]
fn a_large_round_trip_is_read_in_place_on_both_sides() {
    let _one = one();
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    for n in [64 * 1024, MIB + 5, 16 * MIB] {
        let bytes = pattern(n, 3);
        let (worker_in_place, back) = c
            .remotecall_fetch(id, echo, SharedSlice::from(bytes.clone()))
            .unwrap();
        assert!(worker_in_place, "{n} bytes: the worker copied its argument");
        assert!(
            back.is_in_place(),
            "{n} bytes: the master copied the result"
        );
        assert_eq!(&*back, &bytes[..]);
    }
    let xs = floats(MIB / 8 + 3);
    let (k, worker_in_place, ys) = c
        .remotecall_fetch(id, scale, (3u8, SharedSlice::from(xs.clone())))
        .unwrap();
    assert_eq!(k, 4);
    assert!(worker_in_place);
    assert!(ys.is_in_place());
    assert_eq!(ys.as_ptr() as usize % std::mem::align_of::<f64>(), 0);
    let want: Vec<f64> = xs.iter().map(|x| x * 3.0).collect();
    assert_eq!(&*ys, &want[..]);
    assert_eq!(ys.clone().into_vec(), want);
}

#[test]
fn small_slices_are_owned_and_read_the_same() {
    let _one = one();
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    for n in [0, 1, 1000, 60 * 1024] {
        let bytes = pattern(n, 9);
        let (worker_in_place, back) = c
            .remotecall_fetch(id, echo, SharedSlice::from(&bytes[..]))
            .unwrap();
        assert!(!worker_in_place && !back.is_in_place(), "{n} bytes");
        assert_eq!(back.into_vec(), bytes);
    }
    // The master's calls to itself (worker 1) own their numbers too.
    let (in_place, back) = c
        .remotecall_fetch(1, echo, SharedSlice::from(pattern(MIB, 1)))
        .unwrap();
    assert!(!in_place && !back.is_in_place());
    assert_eq!(&*back, &pattern(MIB, 1)[..]);
}

#[test]
fn a_held_view_keeps_the_region_and_later_results_take_the_socket() {
    let _one = one();
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    let first = pattern(2 * MIB, 1);
    let (_, held) = c
        .remotecall_fetch(id, echo, SharedSlice::from(first.clone()))
        .unwrap();
    assert!(held.is_in_place());
    for seed in 2..6 {
        let bytes = pattern(2 * MIB, seed);
        let (worker_in_place, back) = c
            .remotecall_fetch(id, echo, SharedSlice::from(bytes.clone()))
            .unwrap();
        assert!(worker_in_place, "the argument region is free all along");
        assert!(!back.is_in_place(), "a held view keeps the result region");
        assert_eq!(back.into_vec(), bytes);
        assert_eq!(&*held, &first[..], "the held view changed");
    }
    drop(held);
    let bytes = pattern(2 * MIB, 7);
    let (_, back) = c
        .remotecall_fetch(id, echo, SharedSlice::from(bytes.clone()))
        .unwrap();
    assert!(back.is_in_place(), "the region is the worker's again");
    assert_eq!(&*back, &bytes[..]);
}

#[test]
fn a_view_outlives_its_worker_and_nothing_stays_mapped() {
    let _one = one();
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    let bytes = pattern(3 * MIB, 4);
    let (_, view) = c
        .remotecall_fetch(id, echo, SharedSlice::from(bytes.clone()))
        .unwrap();
    assert!(view.is_in_place());
    let at = view.as_ptr() as usize;
    assert!(region_mapped_at(at));
    let pid = c.pid(id).unwrap();
    // SAFETY: kill(2) on our own worker's pid, still ours (not reaped: it is in `procs`).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.procs().contains(&id) {
        assert!(Instant::now() < deadline, "worker {id} was not removed");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(&*view, &bytes[..], "the view changed when its worker died");
    let copy = view.clone();
    drop(c);
    assert_eq!(copy, SharedSlice::from(bytes));
    assert!(region_mapped_at(at), "the views hold their mapping");
    drop((view, copy));
    assert!(!region_mapped_at(at), "the views' region is still mapped");
}

/// What the worker kept of an earlier call's argument.
static KEPT: Mutex<Option<SharedSlice<u8>>> = Mutex::new(None);

/// Keeps its argument past the call (a view of the master's region).
fn keep(v: SharedSlice<u8>) -> bool {
    let in_place = v.is_in_place();
    *KEPT.lock().unwrap() = Some(v);
    in_place
}

/// What the kept view reads now, as a copy.
fn kept(_: ()) -> Vec<u8> {
    KEPT.lock().unwrap().as_ref().map(|v| v.to_vec()).unwrap()
}

/// The number of bytes equal to `b`, read in place.
fn count(a: (u8, SharedSlice<u8>)) -> (bool, usize) {
    (a.1.is_in_place(), a.1.iter().filter(|&&x| x == a.0).count())
}

#[test]
fn a_view_the_worker_keeps_reads_what_it_read() {
    let _one = one();
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    let first = pattern(4 * MIB, 1);
    assert!(
        c.remotecall_fetch(id, keep, SharedSlice::from(first.clone()))
            .unwrap()
    );
    // New arguments overwrite the region where the kept view was: it must not see them.
    for seed in [2u8, 3] {
        let bytes = vec![seed; 4 * MIB];
        let (in_place, n) = c
            .remotecall_fetch(id, count, (seed, SharedSlice::from(bytes)))
            .unwrap();
        assert!(in_place, "the region maps itself afresh for the next call");
        assert_eq!(n, 4 * MIB);
    }
    assert_eq!(c.remotecall_fetch(id, kept, ()).unwrap(), first);
    // Keeping another one (the old one is dropped in the worker) works the same way.
    let second = pattern(MIB, 8);
    assert!(
        c.remotecall_fetch(id, keep, SharedSlice::from(second.clone()))
            .unwrap()
    );
    let (_, n) = c
        .remotecall_fetch(id, count, (0, SharedSlice::from(vec![0u8; 2 * MIB])))
        .unwrap();
    assert_eq!(n, 2 * MIB);
    assert_eq!(c.remotecall_fetch(id, kept, ()).unwrap(), second);
}

/// Whether the item was read in place, and its sum.
fn total(v: SharedSlice<u8>) -> (bool, u64) {
    (v.is_in_place(), v.iter().map(|&b| u64::from(b)).sum())
}

#[test]
fn pmap_over_slices_reads_items_in_place() {
    let _one = one();
    let c = Cluster::new();
    c.addprocs(2).unwrap();
    let items: Vec<SharedSlice<u8>> = (0..6).map(|s| pattern(100_000, s).into()).collect();
    let want: Vec<u64> = items.iter().map(|v| total(v.clone()).1).collect();
    let got = c.pmap(total, items).unwrap();
    assert_eq!(got.iter().map(|r| r.1).collect::<Vec<_>>(), want);
    // A batch the calling thread sends goes through the region (one a reader thread sends
    // for it takes the socket): the first batches to each worker do.
    assert!(got.iter().any(|r| r.0), "no item was read in place");
}

/// A large field beside two small slices.
fn mixed(n: usize) -> (SharedSlice<u8>, SharedSlice<u32>, SharedSlice<f64>) {
    (
        vec![7u8; n].into(),
        vec![1u32, 2, 3].into(),
        SharedSlice::new(),
    )
}

#[test]
fn small_slices_beside_a_large_one_are_owned_and_hold_nothing() {
    let _one = one();
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    let (large, three, empty) = c.remotecall_fetch(id, mixed, MIB).unwrap();
    assert!(large.is_in_place());
    assert!(!three.is_in_place() && !empty.is_in_place());
    assert_eq!((&*three, empty.len()), (&[1u32, 2, 3][..], 0));
    drop(large);
    // Only the small ones held: the worker's region is free for the next large result.
    let (again, ..) = c.remotecall_fetch(id, mixed, 2 * MIB).unwrap();
    assert!(again.is_in_place(), "a small slice held the result region");
    assert_eq!(again.len(), 2 * MIB);
}

/// Resident anonymous memory of a process, in bytes.
fn rss_anon(pid: i32) -> usize {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: usize = s
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon in /proc/<pid>/status");
    kb * 1024
}

/// Reads its argument in place and lets it go.
fn first(v: SharedSlice<u8>) -> u8 {
    v[0]
}

#[test]
fn a_kept_view_costs_a_copy_of_its_argument_only() {
    let _one = one();
    let c = Cluster::new();
    let id = c.addprocs(1).unwrap()[0];
    let pid = c.pid(id).unwrap();
    // The argument region grows to hold 48 MiB.
    assert_eq!(
        c.remotecall_fetch(id, first, SharedSlice::from(vec![9u8; 48 * MIB]))
            .unwrap(),
        9
    );
    let before = rss_anon(pid);
    let small = pattern(MIB, 6);
    assert!(
        c.remotecall_fetch(id, keep, SharedSlice::from(small.clone()))
            .unwrap()
    );
    let grew = rss_anon(pid).saturating_sub(before);
    assert!(grew < 8 * MIB, "keeping a 1 MiB view took {grew} bytes");
    assert_eq!(c.remotecall_fetch(id, kept, ()).unwrap(), small);
}
