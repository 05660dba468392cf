"""Shared helpers of the peer benchmarks: bounded timing loops and the output format.

Every script prints one machine-readable line per scenario on stdout, tab-separated:

    <scenario>  seconds  <median seconds per iteration>  <items per iteration>
    <scenario>  kib      <kibibytes>
    <scenario>  skipped  <reason>

Anything else goes to stderr. `cargo xtask bench --peers` reads these lines.
"""

import ctypes
import os
import signal
import statistics
import sys
import time

# --quick shortens every time budget (used by `cargo xtask bench --quick --peers`).
QUICK = "--quick" in sys.argv[1:]


def budget(seconds):
    """The time budget of one scenario, shortened in quick mode."""
    return seconds / 4 if QUICK else seconds


def measure(run_once, seconds, max_samples=200, min_samples=5, batch=1):
    """Median seconds per call of `run_once`, from samples of `batch` calls each.

    One untimed warm-up call, then samples until `seconds` have passed (at least
    `min_samples`, at most `max_samples`): every loop is bounded in count and in time.
    """
    run_once()
    samples = []
    deadline = time.perf_counter() + seconds
    while len(samples) < max_samples:
        t0 = time.perf_counter()
        for _ in range(batch):
            run_once()
        samples.append((time.perf_counter() - t0) / batch)
        if len(samples) >= min_samples and time.perf_counter() > deadline:
            break
    return statistics.median(samples)


def report(scenario, seconds, items=1):
    print(f"{scenario}\tseconds\t{seconds:.9g}\t{items}", flush=True)


def report_kib(scenario, kib):
    print(f"{scenario}\tkib\t{kib}", flush=True)


def skip(scenario, reason):
    print(f"{scenario}\tskipped\t{reason}", flush=True)


def rss_kib(pid):
    """VmRSS of a process in KiB (Linux), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def note(msg):
    print(msg, file=sys.stderr, flush=True)


PR_SET_PDEATHSIG = 1


def die_with_parent():
    """Pool initializer: the worker gets SIGKILL when its parent dies (Linux), so a
    script ended from outside (xtask's time limit) leaves no workers behind."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (AttributeError, OSError):
        pass  # not Linux: the pools are still shut down on every normal exit
