//! `cargo xtask bench`: runs the criterion benches of every facility (and, with `--peers`,
//! the Python peer scripts in `bench/peers/`) and writes `BENCHMARKS.md` with the plot
//! `docs/benchmarks.svg`.
//!
//! The scenarios are one data table, [`SCENARIOS`]: a line names the criterion id of
//! ptools' bench, the id of its same-run baseline, the target and the peer it is compared
//! with. Figures are read back from criterion's `estimates.json` (the median's
//! `point_estimate`, in nanoseconds) and `benchmark.json` (the throughput, if any), never
//! typed in. A result older than the run (its bench failed, or does not exist yet) is shown
//! as "not measured" with the reason.
//!
//! This file holds the table, the types and the task's flow; `run` runs the benches and
//! the peers, `collect` reads a run back into rows, `render` and `svg` write the report,
//! `json` reads criterion's files.

mod collect;
mod json;
mod render;
mod run;
mod svg;
#[cfg(test)]
mod test;

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use collect::{commit, load_average};
use render::render_markdown;
use run::{run_bench, run_peers};

/// What a scenario is held to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Target {
    /// ptools' median at most this many times its baseline's.
    Ratio(f64),
    /// At least this many items per second.
    MinRate(f64),
    /// A median of at most this many nanoseconds.
    MaxTime(f64),
    /// Faster than the Python peer, time per item.
    BeatPeer,
    /// No target: the figure is reported.
    Reported,
}

/// Which panel of the plot a scenario goes to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Plot {
    /// Time per iteration (shorter is better).
    Time,
    /// Items per second (longer is better).
    Rate,
    /// Not plotted.
    None,
}

/// Where ptools' figure comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Source {
    /// A criterion benchmark and, if any, its baseline in the same bench binary.
    Criterion {
        id: &'static str,
        baseline: Option<&'static str>,
    },
    /// Medians a bench that is not criterion's prints on stdout (ids as named by
    /// [`run::printed_figures`]).
    Printed {
        id: &'static str,
        baseline: Option<&'static str>,
    },
    /// The resident memory of an idle worker, printed by the bench on stderr as
    /// `... resident memory: Some(<KiB>) KiB`.
    WorkerRss,
}

/// One row of BENCHMARKS.md.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scenario {
    pub(crate) name: &'static str,
    pub(crate) package: &'static str,
    pub(crate) bench: &'static str,
    pub(crate) source: Source,
    pub(crate) target: Target,
    /// The key a peer script prints for the same scenario.
    pub(crate) peer: Option<&'static str>,
    /// The keys `bench/rust-peers` prints for the same scenario (procspawn, ipc-channel),
    /// shown beside the Python peer.
    pub(crate) rust: &'static [&'static str],
    pub(crate) plot: Plot,
}

impl Scenario {
    /// The same row with Rust peers.
    const fn rust(self, keys: &'static [&'static str]) -> Scenario {
        Scenario { rust: keys, ..self }
    }
}

const fn crit(
    name: &'static str,
    (package, bench): (&'static str, &'static str),
    id: &'static str,
    baseline: Option<&'static str>,
    target: Target,
    peer: Option<&'static str>,
    plot: Plot,
) -> Scenario {
    let source = Source::Criterion { id, baseline };
    Scenario {
        name,
        package,
        bench,
        source,
        target,
        peer,
        rust: &[],
        plot,
    }
}

/// A row whose figures a non-criterion bench prints (see [`run::printed_figures`]).
const fn printed(
    name: &'static str,
    at: (&'static str, &'static str),
    id: &'static str,
    baseline: Option<&'static str>,
    target: Target,
    peer: Option<&'static str>,
    plot: Plot,
) -> Scenario {
    let mut s = crit(name, at, id, baseline, target, peer, plot);
    s.source = Source::Printed { id, baseline };
    s
}

use Plot as P;
use Target::{BeatPeer, MaxTime, MinRate, Ratio, Reported};

// The bench binaries: (package, `[[bench]]` name).
const RT: (&str, &str) = ("ptools-workerset", "round_trip");
const TP: (&str, &str) = ("ptools-workerset", "throughput");
const DEATH: (&str, &str) = ("ptools-workerset", "death_latency");
const REMOTE: (&str, &str) = ("ptools-workerset", "remote");
const PAYLOAD: (&str, &str) = ("ptools-workerset", "payload");
const FORK: (&str, &str) = ("ptools-fork", "pfork");
const FORK_IL: (&str, &str) = ("ptools-fork", "pfork_interleaved");
const SHM: (&str, &str) = ("ptools-shm", "shm_cycle");
const ST: (&str, &str) = ("ptools-stasks", "stasks");
const ST_IL: (&str, &str) = ("ptools-stasks", "interleaved");
const Q: (&str, &str) = ("ptools-queue", "queue");

/// The scenarios, one per line: name, package, bench, ptools' criterion id, the baseline's,
/// the target (from each facility's issue, as its `benches/README.md` states it), the peer
/// key and the plot panel.
#[rustfmt::skip]
pub(crate) const SCENARIOS: &[Scenario] = &[
    crit("remotecall_fetch round trip (u64)", RT, "round_trip/remotecall_fetch_u64", Some("round_trip/raw_socketpair_u64"), Ratio(0.5), Some("py_processpool_round_trip"), P::Time).rust(&["rs_procspawn_round_trip", "rs_ipc_channel_round_trip"]),
    crit("remotecall_fetch round trip (u64), ring off: the socket alone", RT, "round_trip/remotecall_fetch_u64_socket", Some("round_trip/raw_socketpair_u64"), Ratio(1.5), None, P::None),
    crit("2 callers, each with its own worker: 4 busy threads on 2 cores (baseline: ring off)", RT, "round_trip/two_callers_u64", Some("round_trip/two_callers_u64_socket"), Ratio(1.0), None, P::None),
    crit("remotecall_fetch round trip over TCP (u64, loopback)", RT, "round_trip/remotecall_fetch_tcp_u64", Some("round_trip/raw_tcp_u64"), Ratio(1.3), None, P::Time),
    crit("remotecall_fetch round trip, Vec<u8> of 8 B", PAYLOAD, "payload/remotecall_fetch_vec_u8/8B", Some("payload/raw_socketpair/8B"), Reported, None, P::None).rust(&["rs_ipc_channel_bytes/8B", "rs_ipc_channel_vec_u8/8B", "rs_procspawn_vec_u8/8B"]),
    crit("remotecall_fetch round trip, Vec<u8> of 1 KiB", PAYLOAD, "payload/remotecall_fetch_vec_u8/1KiB", Some("payload/raw_socketpair/1KiB"), Reported, None, P::None).rust(&["rs_ipc_channel_bytes/1KiB", "rs_ipc_channel_vec_u8/1KiB", "rs_procspawn_vec_u8/1KiB"]),
    crit("remotecall_fetch round trip, Vec<u8> of 64 KiB", PAYLOAD, "payload/remotecall_fetch_vec_u8/64KiB", Some("payload/raw_socketpair/64KiB"), Reported, None, P::None).rust(&["rs_ipc_channel_bytes/64KiB", "rs_ipc_channel_vec_u8/64KiB", "rs_procspawn_vec_u8/64KiB"]),
    crit("remotecall_fetch round trip, Vec<u8> of 1 MiB", PAYLOAD, "payload/remotecall_fetch_vec_u8/1MiB", Some("payload/raw_socketpair/1MiB"), Reported, None, P::Time).rust(&["rs_ipc_channel_bytes/1MiB", "rs_ipc_channel_vec_u8/1MiB", "rs_procspawn_vec_u8/1MiB"]),
    crit("remotecall_fetch round trip, Vec<u8> of 16 MiB", PAYLOAD, "payload/remotecall_fetch_vec_u8/16MiB", Some("payload/raw_socketpair/16MiB"), Ratio(2.0), Some("py_processpool_payload_16mib"), P::Time).rust(&["rs_ipc_channel_bytes/16MiB", "rs_ipc_channel_vec_u8/16MiB", "rs_procspawn_vec_u8/16MiB"]),
    crit("remotecall_fetch round trip, Vec<u8> of 16 MiB (baseline: two memcpys)", PAYLOAD, "payload/remotecall_fetch_vec_u8/16MiB", Some("payload/two_memcpy/16MiB"), Reported, None, P::None),
    crit("remotecall_fetch round trip, SharedSlice<u8> of 8 B", PAYLOAD, "payload/remotecall_fetch_shared_u8/8B", Some("payload/raw_socketpair/8B"), Reported, None, P::None),
    crit("remotecall_fetch round trip, SharedSlice<u8> of 1 KiB", PAYLOAD, "payload/remotecall_fetch_shared_u8/1KiB", Some("payload/raw_socketpair/1KiB"), Reported, None, P::None),
    crit("remotecall_fetch round trip, SharedSlice<u8> of 64 KiB, read in place", PAYLOAD, "payload/remotecall_fetch_shared_u8/64KiB", Some("payload/raw_socketpair/64KiB"), Reported, None, P::None),
    crit("remotecall_fetch round trip, SharedSlice<u8> of 1 MiB, read in place (baseline: two memcpys)", PAYLOAD, "payload/remotecall_fetch_shared_u8/1MiB", Some("payload/two_memcpy/1MiB"), Reported, None, P::None),
    crit("remotecall_fetch round trip, SharedSlice<u8> of 16 MiB, read in place (baseline: two memcpys)", PAYLOAD, "payload/remotecall_fetch_shared_u8/16MiB", Some("payload/two_memcpy/16MiB"), Ratio(1.2), Some("py_processpool_payload_16mib"), P::Time),
    crit("remotecall_fetch round trip, Vec<f64> of 1 MiB", PAYLOAD, "payload/remotecall_fetch_vec_f64/1MiB", Some("payload/raw_socketpair/1MiB"), Reported, None, P::None),
    crit("remotecall_fetch round trip, Vec<f64> of 16 MiB", PAYLOAD, "payload/remotecall_fetch_vec_f64/16MiB", Some("payload/raw_socketpair/16MiB"), Reported, None, P::None),
    crit("addprocs over ssh to the first result (1 worker, loopback sshd)", REMOTE, "remote/addprocs_ssh_first_result", Some("remote/raw_ssh_true"), Reported, None, P::Time),
    printed("SIGKILL to WorkerDied, busy worker, p50", DEATH, "death_latency/worker/p50", Some("death_latency/raw_pidfd/p50"), Reported, None, P::None),
    printed("SIGKILL to WorkerDied, busy worker, p99", DEATH, "death_latency/worker/p99", Some("death_latency/raw_pidfd/p99"), Reported, None, P::None),
    printed("SIGKILL to WorkerDied, a helper holds the sockets, p50", DEATH, "death_latency/helper_holds/p50", Some("death_latency/raw_pidfd/p50"), Reported, None, P::None),
    printed("SIGKILL to WorkerDied, a helper holds the sockets, p99", DEATH, "death_latency/helper_holds/p99", Some("death_latency/raw_pidfd/p99"), Reported, None, P::None),
    crit("first-free throughput, 2 workers, 2 callers", TP, "dispatch/first_free_2_workers/2", None, MinRate(50_000.0), Some("py_pool_map_chunksize1"), P::Rate).rust(&["rs_procspawn_pool2_throughput"]),
    crit("first-free throughput, 2 workers, 8 callers (baseline: 2 callers)", TP, "dispatch/first_free_2_workers/8", Some("dispatch/first_free_2_workers/2"), Ratio(1.0), Some("py_pool_map_chunksize1"), P::Rate).rust(&["rs_procspawn_pool2_throughput"]),
    crit("pipelined remotecall, 2 workers", TP, "dispatch/pipelined_remotecall_2_workers", None, MinRate(200_000.0), None, P::Rate),
    crit("pmap throughput, 10^6 trivial items, 2 workers", TP, "pmap/trivial_1e6_items_2_workers", None, MinRate(40e6), Some("py_pool_map_default"), P::Rate),
    crit("pmap of 10^4 trivial items, 2 workers (baseline: the loop in one process)", TP, "pmap_small/trivial_1e4_items_2_workers", Some("pmap_small/sequential_1e4_items"), MaxTime(100_000.0), None, P::Time),
    crit("pfork n = 2", FORK, "pfork/ptools/2", Some("pfork/raw/2"), Ratio(1.3), Some("py_fork_pickle_2"), P::Time),
    crit("pfork n = 8", FORK, "pfork/ptools/8", Some("pfork/raw/8"), Ratio(1.3), Some("py_fork_pickle_8"), P::Time),
    crit("pfork n = 32", FORK, "pfork/ptools/32", Some("pfork/raw/32"), Ratio(1.3), Some("py_fork_pickle_32"), P::Time),
    printed("pfork n = 1, interleaved rounds", FORK_IL, "pfork_interleaved/ptools/1", Some("pfork_interleaved/raw/1"), Ratio(1.3), None, P::None),
    printed("pfork n = 2, interleaved rounds", FORK_IL, "pfork_interleaved/ptools/2", Some("pfork_interleaved/raw/2"), Ratio(1.3), Some("py_fork_pickle_2"), P::None),
    printed("pfork n = 8, interleaved rounds", FORK_IL, "pfork_interleaved/ptools/8", Some("pfork_interleaved/raw/8"), Ratio(1.3), Some("py_fork_pickle_8"), P::None),
    printed("pfork n = 32, interleaved rounds", FORK_IL, "pfork_interleaved/ptools/32", Some("pfork_interleaved/raw/32"), Ratio(1.3), Some("py_fork_pickle_32"), P::None),
    printed("pfork n = 128, interleaved rounds", FORK_IL, "pfork_interleaved/ptools/128", Some("pfork_interleaved/raw/128"), Ratio(1.3), None, P::None),
    crit("pfork n = 2, 1 GiB resident", FORK, "pfork_1gib/ptools/2", Some("pfork_1gib/raw/2"), Reported, Some("py_fork_pickle_1gib_2"), P::Time),
    crit("pfork n = 8, 1 GiB resident", FORK, "pfork_1gib/ptools/8", Some("pfork_1gib/raw/8"), Reported, Some("py_fork_pickle_1gib_8"), P::Time),
    crit("shm create cycle, 1 MiB, pages reserved", SHM, "shm_cycle/ptools_reserve/1MiB", Some("shm_cycle/raw_fallocate/1MiB"), Ratio(1.3), None, P::Time),
    crit("shm create cycle, 4 KiB, not reserved", SHM, "shm_cycle/ptools_noreserve/4KiB", Some("shm_cycle/raw/4KiB"), Ratio(1.3), None, P::Time),
    crit("shm create cycle, 1 MiB, not reserved", SHM, "shm_cycle/ptools_noreserve/1MiB", Some("shm_cycle/raw/1MiB"), Ratio(1.3), Some("py_shm_cycle_1mib"), P::Time),
    crit("256 MiB create + fill, 1 process", SHM, "fill/ptools/256MiB", Some("fill/raw/256MiB"), Ratio(1.0), None, P::Time),
    crit("256 MiB job, 1 server task", ST, "fill256/stasks/1", Some("fill256/raw_memset"), Reported, None, P::Time),
    crit("256 MiB job, 2 server tasks", ST, "fill256/stasks/2", Some("fill256/raw_memset"), BeatPeer, Some("py_numpy_fill256_2proc"), P::Time),
    printed("256 MiB job, 1 server task, interleaved rounds", ST_IL, "fill256_interleaved/stasks/1", Some("fill256_interleaved/raw_memset"), Reported, None, P::None),
    printed("256 MiB job, 2 server tasks, interleaved rounds", ST_IL, "fill256_interleaved/stasks/2", Some("fill256_interleaved/raw_memset"), BeatPeer, Some("fill256_interleaved/python"), P::None),
    crit("queue of 100 000 tasks with callbacks, 2 workers", Q, "throughput/any_worker_callbacks_2_workers_100k", Some("throughput/baseline_remotecall_fetch_2_threads_100k"), MinRate(50_000.0), None, P::Rate),
    crit("set_priorities over 100 000 queued tasks", Q, "set_priorities/reverse_100k_queued", None, MaxTime(50e6), None, P::Time),
    crit("queue of 10^4 tasks with callbacks, 2 workers (size curve)", Q, "throughput/queue_size/10000", Some("throughput/raw_boxed_fifo/10000"), MinRate(50_000.0), None, P::None),
    crit("queue of 10^5 tasks with callbacks, 2 workers (size curve)", Q, "throughput/queue_size/100000", Some("throughput/raw_boxed_fifo/100000"), MinRate(50_000.0), None, P::None),
    crit("queue of 10^6 tasks with callbacks, 2 workers (size curve)", Q, "throughput/queue_size/1000000", Some("throughput/raw_boxed_fifo/1000000"), MinRate(50_000.0), None, P::None),
    crit("set_priorities reordering 10^4 queued tasks", Q, "set_priorities/10000", Some("set_priorities/raw_memory_passes/10000"), Reported, None, P::None),
    crit("set_priorities reordering 10^5 queued tasks", Q, "set_priorities/100000", Some("set_priorities/raw_memory_passes/100000"), Reported, None, P::None),
    crit("set_priorities reordering 10^6 queued tasks", Q, "set_priorities/1000000", Some("set_priorities/raw_memory_passes/1000000"), Reported, None, P::None),
    crit("drop of a paused queue of 10^4 tasks", Q, "drop_paused/10000", Some("drop_paused/raw_vec/10000"), Reported, None, P::None),
    crit("drop of a paused queue of 10^5 tasks", Q, "drop_paused/100000", Some("drop_paused/raw_vec/100000"), Reported, None, P::None),
    crit("drop of a paused queue of 10^6 tasks", Q, "drop_paused/1000000", Some("drop_paused/raw_vec/1000000"), Reported, None, P::None),
    crit("addprocs(2) start-up", TP, "startup/addprocs_2", None, Reported, Some("py_pool2_startup"), P::Time),
    Scenario { name: "worker resident memory (idle, after one call)", package: TP.0, bench: TP.1, source: Source::WorkerRss, target: Reported, peer: Some("py_worker_rss"), rust: &[], plot: P::None },
];

/// A curve of BENCHMARKS.md and the plot: rows of [`SCENARIOS`] (by ptools' id), each
/// standing for one x value.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Curve {
    pub(crate) title: &'static str,
    /// What x is, as the table's first column names it.
    pub(crate) x_name: &'static str,
    /// (x, ptools' id), x rising.
    pub(crate) points: &'static [(f64, &'static str)],
}

/// Round trip of a `Vec<u8>` by size, against the raw socketpair echo and the peers.
pub(crate) const PAYLOAD_CURVE: Curve = Curve {
    title: "Payload curve: round trip of a byte vector by size",
    x_name: "size",
    points: &[
        (8.0, "payload/remotecall_fetch_vec_u8/8B"),
        (1024.0, "payload/remotecall_fetch_vec_u8/1KiB"),
        (65_536.0, "payload/remotecall_fetch_vec_u8/64KiB"),
        (1_048_576.0, "payload/remotecall_fetch_vec_u8/1MiB"),
        (16_777_216.0, "payload/remotecall_fetch_vec_u8/16MiB"),
    ],
};

/// The same sizes as [`PAYLOAD_CURVE`] through a `SharedSlice<u8>` (read in place from
/// 64 KiB on): a column of the curve's table and a line of its chart. Their rows in the
/// table are against the raw socketpair up to 64 KiB, where fixed costs dominate, and
/// against two `memcpy`s from 1 MiB on, where the copies do.
pub(crate) const PAYLOAD_SHARED: &[(f64, &str)] = &[
    (8.0, "payload/remotecall_fetch_shared_u8/8B"),
    (1024.0, "payload/remotecall_fetch_shared_u8/1KiB"),
    (65_536.0, "payload/remotecall_fetch_shared_u8/64KiB"),
    (1_048_576.0, "payload/remotecall_fetch_shared_u8/1MiB"),
    (16_777_216.0, "payload/remotecall_fetch_shared_u8/16MiB"),
];

/// The queue's cost per task by the number of tasks queued. Its rows come with the queue's
/// size-curve bench (`throughput/queue_size/<n>`); while the table has none, the section
/// and the chart say so.
pub(crate) const QUEUE_CURVE: Curve = Curve {
    title: "Queue-size curve: cost per task",
    x_name: "tasks queued",
    points: &[
        (1e4, "throughput/queue_size/10000"),
        (1e5, "throughput/queue_size/100000"),
        (1e6, "throughput/queue_size/1000000"),
    ],
};

/// The peer scripts, and what each of their keys measures.
pub(crate) const PEER_SCRIPTS: &[&str] = &["workers.py", "fork.py", "shm.py"];

/// The name `bench/rust-peers` goes by in the run's record (a `skipped` line for the
/// whole crate uses it as its key, like a failed script's name).
pub(crate) const RUST_PEERS: &str = "rust-peers";

/// The keys `bench/rust-peers` prints (a key with `/<size>` after one of these is the same
/// scenario at that payload size): the key, a short name for the plot and the curve table,
/// and what it measures.
#[rustfmt::skip]
pub(crate) const RUST_PEER_LABELS: &[RustPeerLabel] = &[
    ("rs_procspawn_round_trip", "procspawn", "procspawn Pool(1) spawn().join(), u64 echo"),
    ("rs_ipc_channel_round_trip", "ipc-channel", "ipc-channel `IpcSender<u64>` echo (spawned child)"),
    ("rs_procspawn_pool2_throughput", "procspawn", "procspawn Pool(2), 2000 spawns, then the joins"),
    ("rs_ipc_channel_bytes", "ipc-channel bytes", "ipc-channel `IpcBytesSender` echo (no serde)"),
    ("rs_ipc_channel_vec_u8", "ipc-channel typed", "ipc-channel `IpcSender<Vec<u8>>` echo"),
    ("rs_procspawn_vec_u8", "procspawn", "procspawn Pool(1) spawn().join(), `Vec<u8>` echo"),
];

/// An entry of [`RUST_PEER_LABELS`]: key, short name, what it measures.
pub(crate) type RustPeerLabel = (&'static str, &'static str, &'static str);

/// The entry of [`RUST_PEER_LABELS`] for a key, and its size suffix if any.
pub(crate) fn rust_peer(key: &str) -> Option<(&'static RustPeerLabel, Option<&str>)> {
    let (base, size) = match key.split_once('/') {
        Some((b, s)) => (b, Some(s)),
        None => (key, None),
    };
    RUST_PEER_LABELS
        .iter()
        .find(|(k, _, _)| *k == base)
        .map(|e| (e, size))
}

/// `1 KiB` for `1KiB`: a size as the text writes it.
pub(crate) fn spaced_size(size: &str) -> String {
    let digits = size.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    format!("{digits} {}", &size[digits.len()..])
}

#[rustfmt::skip]
pub(crate) const PEER_LABELS: &[(&str, &str)] = &[
    ("py_processpool_round_trip", "ProcessPoolExecutor(1) submit().result()"),
    ("py_processpool_payload_16mib", "ProcessPoolExecutor(1) submit(echo, 16 MiB bytes).result()"),
    ("py_pool_map_chunksize1", "Pool(2).map, chunksize=1"),
    ("py_pool_map_default", "Pool(2).map, default chunksize"),
    ("py_fork_pickle_2", "os.fork + pickle, n = 2"),
    ("py_fork_pickle_8", "os.fork + pickle, n = 8"),
    ("py_fork_pickle_32", "os.fork + pickle, n = 32"),
    ("py_fork_pickle_1gib_2", "os.fork + pickle, n = 2, 1 GiB resident"),
    ("py_fork_pickle_1gib_8", "os.fork + pickle, n = 8, 1 GiB resident"),
    ("py_shm_cycle_1mib", "SharedMemory(create=True, 1 MiB), close, unlink"),
    ("py_numpy_fill256_2proc", "SharedMemory 256 MiB, numpy fill in Pool(2), sum, unlink"),
    ("py_pool2_startup", "multiprocessing.Pool(2) (fork) + first call"),
    ("py_worker_rss", "ProcessPoolExecutor worker VmRSS"),
    ("fill256_interleaved/python", "shm.py's job (numpy, Pool(2)), in the same interleaved rounds"),
];

fn peer_label(key: &str) -> String {
    if let Some(((_, _, label), size)) = rust_peer(key) {
        return match size {
            Some(size) => format!("{label}, {}", spaced_size(size)),
            None => (*label).to_owned(),
        };
    }
    PEER_LABELS
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(key, |(_, l)| l)
        .to_owned()
}

/// The short name of a Rust peer key (`procspawn`), or the key itself.
pub(crate) fn rust_peer_name(key: &str) -> &str {
    rust_peer(key).map_or(key, |((_, name, _), _)| name)
}

/// A figure read back from criterion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Measured {
    /// Median time of one iteration.
    pub(crate) median_ns: f64,
    /// Items per iteration (criterion `Throughput::Elements`), if the bench declares them.
    pub(crate) elements: Option<f64>,
    /// Bytes per iteration (criterion `Throughput::Bytes`).
    pub(crate) bytes: Option<f64>,
    /// Half the width of the median's 95 % confidence interval, relative to the median
    /// (criterion's bootstrap); `None` for figures that are not criterion's.
    pub(crate) spread: Option<f64>,
}

/// A line printed by a peer script.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PeerFigure {
    Seconds { median: f64, items: f64 },
    Kib(f64),
    Skipped(String),
}

/// ptools' figure for one scenario.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Figure {
    Time(Measured),
    Kib(f64),
    /// Not measured, with the reason.
    Missing(String),
}

/// One rendered row: the scenario and what was measured for it.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) scenario: Scenario,
    pub(crate) ptools: Figure,
    pub(crate) baseline: Option<Figure>,
    /// The peer's figure, or why there is none.
    pub(crate) peer: Option<Result<PeerFigure, String>>,
    /// The Rust peers' figures (keys of `scenario.rust`, in order), or why there are none.
    pub(crate) rust: Vec<(&'static str, Result<PeerFigure, String>)>,
}

impl Row {
    /// ptools' median over the baseline's (time ratio: lower is better).
    pub(crate) fn ratio(&self) -> Option<f64> {
        match (&self.ptools, &self.baseline) {
            (Figure::Time(p), Some(Figure::Time(b))) if b.median_ns > 0.0 => {
                Some(p.median_ns / b.median_ns)
            }
            _ => None,
        }
    }

    /// Whether the target is met; `None` when there is no target or no figure.
    pub(crate) fn meets(&self) -> Option<bool> {
        match self.scenario.target {
            Target::Ratio(max) => self.ratio().map(|r| r <= max),
            Target::MinRate(min) => match &self.ptools {
                Figure::Time(m) => rate(m).map(|r| r >= min),
                _ => None,
            },
            Target::MaxTime(max) => match &self.ptools {
                Figure::Time(m) => Some(m.median_ns <= max),
                _ => None,
            },
            Target::BeatPeer => self.peer_factor().map(|f| f > 1.0),
            Target::Reported => None,
        }
    }

    /// How many times faster (or smaller, for memory) ptools is than the peer.
    pub(crate) fn peer_factor(&self) -> Option<f64> {
        match &self.peer {
            Some(Ok(p)) => factor(&self.ptools, p),
            _ => None,
        }
    }
}

/// How many times faster (or smaller, for memory) ptools' figure is than a peer's.
pub(crate) fn factor(ptools: &Figure, peer: &PeerFigure) -> Option<f64> {
    match (ptools, peer) {
        (Figure::Time(m), PeerFigure::Seconds { median, items }) => {
            let ours = m.median_ns / m.elements.unwrap_or(1.0);
            let theirs = median * 1e9 / items;
            (ours > 0.0).then(|| theirs / ours)
        }
        (Figure::Kib(ours), PeerFigure::Kib(theirs)) if *ours > 0.0 => Some(theirs / ours),
        _ => None,
    }
}

/// Items per second of a throughput bench.
pub(crate) fn rate(m: &Measured) -> Option<f64> {
    m.elements
        .filter(|_| m.median_ns > 0.0)
        .map(|e| e / (m.median_ns * 1e-9))
}

/// Parsed command line of `cargo xtask bench`.
#[derive(Debug, Default, Clone, Copy)]
struct Options {
    quick: bool,
    peers: bool,
    no_run: bool,
}

const USAGE: &str = "cargo xtask bench [--quick] [--peers] [--no-run]\n\n  \
    --quick   short criterion times (warm-up 0.5 s, measurement 1 s) and short peer budgets\n  \
    --peers   also run the Python peers in bench/peers/ (needs python3; numpy optional)\n            \
              and the Rust peers in bench/rust-peers/ (procspawn, ipc-channel; built on first use)\n  \
    --no-run  run nothing: re-render BENCHMARKS.md and the plot from the last results";

fn parse_args(args: &[String]) -> Result<Option<Options>, String> {
    let mut o = Options::default();
    for a in args {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--peers" => o.peers = true,
            "--no-run" => o.no_run = true,
            "--help" | "-h" => return Ok(None),
            other => return Err(format!("unknown option `{other}`\n\n{USAGE}")),
        }
    }
    Ok(Some(o))
}

/// Where results of a run are kept beside criterion's, for `--no-run`.
fn state_file(target: &Path) -> PathBuf {
    target.join("ptools-bench").join("extra.tsv")
}

fn target_dir() -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"));
    if dir.is_absolute() {
        dir
    } else {
        crate::root().join(dir)
    }
}

/// `cargo xtask bench ARGS`.
pub(crate) fn main(args: &[String]) -> Result<(), String> {
    let Some(opts) = parse_args(args)? else {
        println!("{USAGE}");
        return Ok(());
    };
    let started = Instant::now();
    let started_at = SystemTime::now();
    let target = target_dir();
    let load_before = load_average();
    let mut failures = Vec::new();
    // Key/value lines kept for `--no-run`: peer lines, worker memory, run facts.
    let mut extra: Vec<String> = Vec::new();

    if opts.no_run {
        let text = std::fs::read_to_string(state_file(&target)).map_err(|e| {
            format!(
                "--no-run needs an earlier run ({}: {e})",
                state_file(&target).display()
            )
        })?;
        extra = text.lines().map(str::to_owned).collect();
    } else {
        let before = crate::leaks::Snapshot::take(&target);
        extra.push(format!(
            "mode\t{}",
            if opts.quick { "quick" } else { "full" }
        ));
        extra.push(format!("date\t{}", utc_date(started_at)));
        extra.push(format!("commit\t{}", commit()));
        extra.push(format!("load_before\t{load_before}"));
        for (package, bench) in benches() {
            if !bench_exists(package, bench) {
                continue;
            }
            match run_bench(package, bench, opts.quick) {
                Ok((rss, figures)) => {
                    extra.push(format!("ran\t{package}\t{bench}"));
                    if let Some(kib) = rss {
                        extra.push(format!("ptools_worker_rss\tkib\t{kib}"));
                    }
                    for (id, ns) in figures {
                        extra.push(format!("printed\t{id}\t{ns}"));
                    }
                }
                Err(e) => {
                    eprintln!("xtask bench: {e}");
                    extra.push(format!("failed\t{package}\t{bench}\t{e}"));
                    failures.push(e);
                }
            }
        }
        if opts.peers {
            extra.extend(
                run_peers(opts.quick)
                    .into_iter()
                    .map(|l| format!("peer\t{l}")),
            );
        } else {
            extra.push("peers\tnot run (`--peers` not given)".to_owned());
        }
        // Benches create segments and processes too: a run must leave neither behind.
        if let Err(e) = crate::leaks::check(&before, &target) {
            eprintln!("xtask bench: {e}");
            failures.push(e);
        }
        extra.push(format!("load_after\t{}", load_average()));
        extra.push(format!("duration\t{:.0}", started.elapsed().as_secs_f64()));
        let state = state_file(&target);
        std::fs::create_dir_all(state.parent().expect("has a parent"))
            .and_then(|()| std::fs::write(&state, extra.join("\n") + "\n"))
            .map_err(|e| format!("cannot write {}: {e}", state.display()))?;
    }

    // With --no-run, results are as fresh as the run that `extra` describes.
    let fresh_since = if opts.no_run { None } else { Some(started_at) };
    let report = collect::collect(&target, &extra, fresh_since);
    let md = render_markdown(&report);
    let svg_text = svg::render(&report.rows);
    let root = crate::root();
    std::fs::create_dir_all(root.join("docs")).map_err(|e| e.to_string())?;
    std::fs::write(root.join("docs/benchmarks.svg"), svg_text).map_err(|e| e.to_string())?;
    std::fs::write(root.join("BENCHMARKS.md"), &md).map_err(|e| e.to_string())?;
    println!("\n{md}");
    println!(
        "xtask bench: wrote BENCHMARKS.md and docs/benchmarks.svg ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} bench run(s) failed: {}",
            failures.len(),
            failures.join("; ")
        ))
    }
}

/// The (package, bench) pairs of the table, each once, in table order.
fn benches() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for s in SCENARIOS {
        if !out.contains(&(s.package, s.bench)) {
            out.push((s.package, s.bench));
        }
    }
    out
}

fn bench_exists(package: &str, bench: &str) -> bool {
    crate::root()
        .join(package)
        .join("benches")
        .join(format!("{bench}.rs"))
        .is_file()
}

/// `YYYY-MM-DD HH:MM UTC` (std has no calendar; this is the civil-from-days algorithm).
pub(crate) fn utc_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}
