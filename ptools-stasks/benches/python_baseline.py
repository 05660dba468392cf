"""The Python peer of `fill256/*` in stasks.rs: the same end-to-end job with
multiprocessing.shared_memory + numpy + a 2-process Pool.

Create a 256 MiB shared array, fill it (each of 2 pool processes fills its half),
read a checksum in the parent, release it. The pool is started outside the timing,
as the Rust benchmark starts its workers outside the timing.

Usage: python3 python_baseline.py [iterations]   (needs numpy)
"""

import sys
import time
from multiprocessing import Pool, resource_tracker, shared_memory

import numpy as np

BYTES = 256 << 20
WORDS = BYTES // 8
PATTERN = 0x0101010101010101


def fill_half(args):
    name, i, n = args
    shm = shared_memory.SharedMemory(name=name)
    # Python 3.11 registers attached segments with the resource tracker too, which then
    # warns about them at exit although the parent unlinked them (CPython gh-82300).
    resource_tracker.unregister(shm._name, "shared_memory")
    a = np.ndarray((WORDS,), dtype=np.uint64, buffer=shm.buf)
    chunk = -(-WORDS // n)
    a[i * chunk:min((i + 1) * chunk, WORDS)].fill(PATTERN)
    del a
    shm.close()
    return 0


def job(pool, n):
    shm = shared_memory.SharedMemory(create=True, size=BYTES)
    t_fill = time.perf_counter()
    pool.map(fill_half, [(shm.name, i, n) for i in range(n)])
    t_fill = time.perf_counter() - t_fill
    a = np.ndarray((WORDS,), dtype=np.uint64, buffer=shm.buf)
    s = int(a.sum(dtype=np.uint64))
    del a
    shm.close()
    shm.unlink()
    assert s == (PATTERN * WORDS) % (1 << 64), s
    return t_fill


def main():
    iters = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    with Pool(2) as pool:
        pool.map(abs, range(4))  # warm the pool up
        job(pool, 2)
        totals, fills = [], []
        for _ in range(iters):
            t0 = time.perf_counter()
            fills.append(job(pool, 2))
            totals.append(time.perf_counter() - t0)
    totals.sort()
    fills.sort()
    med = lambda v: v[len(v) // 2] * 1e3
    print(f"python shared_memory+numpy+Pool(2) end-to-end: median {med(totals):.1f} ms "
          f"(min {totals[0]*1e3:.1f}); fill step alone: median {med(fills):.1f} ms")


if __name__ == "__main__":
    main()
