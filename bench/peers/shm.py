"""shared_memory peers: a 1 MiB create/map/unlink cycle, and the end-to-end 256 MiB job
(create, fill by 2 pool processes with numpy, checksum in the parent, unlink). numpy is
optional: without it the job is reported as skipped. Every segment is unlinked, even on
error, and the pool is shut down on exit.

`ptools-stasks/benches/interleaved.rs` imports this module and calls `job(pool)` and
reads `np` to run the same job in its own rounds: keep both names.
"""

import multiprocessing
import time
from multiprocessing import resource_tracker, shared_memory

from common import budget, die_with_parent, measure, note, report, skip

MIB = 1 << 20
BYTES = 256 * MIB
WORDS = BYTES // 8
PATTERN = 0x0101_0101_0101_0101

try:
    import numpy as np
except ImportError:
    np = None


def create_cycle():
    shm = shared_memory.SharedMemory(create=True, size=MIB)
    try:
        shm.close()
    finally:
        shm.unlink()


def attach(name):
    """Attaches to the creator's segment without registering it with a resource tracker.

    Before Python 3.13 attaching registers the segment too; a worker whose tracker is not
    the creator's would then "clean up" (unlink, with a leak warning) the segment when the
    pool ends, and one that shares it would unbalance the creator's unregister. The
    creator owns the segment. Pool workers run one task at a time on one thread, so
    swapping `register` out for the call is safe.
    """
    try:
        return shared_memory.SharedMemory(name=name, track=False)  # Python >= 3.13
    except TypeError:
        pass
    register = resource_tracker.register
    resource_tracker.register = lambda *args: None
    try:
        return shared_memory.SharedMemory(name=name)
    finally:
        resource_tracker.register = register


def fill_share(args):
    name, i, n = args
    shm = attach(name)
    try:
        a = np.ndarray((WORDS,), dtype=np.uint64, buffer=shm.buf)
        chunk = -(-WORDS // n)
        start, end = min(i * chunk, WORDS), min((i + 1) * chunk, WORDS)
        a[start:end] = PATTERN
        del a
        return end - start
    finally:
        shm.close()


def job(pool):
    shm = shared_memory.SharedMemory(create=True, size=BYTES)
    try:
        filled = sum(pool.map(fill_share, [(shm.name, i, 2) for i in range(2)], chunksize=1))
        assert filled == WORDS, filled
        a = np.ndarray((WORDS,), dtype=np.uint64, buffer=shm.buf)
        total = int(a.sum(dtype=np.uint64))
        del a
        assert total == (PATTERN * WORDS) % (1 << 64), total
    finally:
        shm.close()
        shm.unlink()


if __name__ == "__main__":
    t0 = time.perf_counter()
    report("py_shm_cycle_1mib", measure(create_cycle, budget(3), max_samples=2000, batch=10))
    if np is None:
        skip("py_numpy_fill256_2proc", "numpy is not installed")
    else:
        note(f"shm.py: numpy {np.__version__}")
        # The pool is started outside the timing, as the ptools workers are.
        with multiprocessing.Pool(2, initializer=die_with_parent) as pool:
            report("py_numpy_fill256_2proc", measure(lambda: job(pool), budget(6), max_samples=20, min_samples=3))
    note(f"shm.py: {time.perf_counter() - t0:.1f} s")
