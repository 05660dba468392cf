"""Worker-pool peers: ProcessPoolExecutor round trip (8 bytes and a 16 MiB bytes
payload), Pool.map throughput with chunksize 1 and with the default chunking, Pool(2)
start-up and a worker's resident memory. Two worker processes, like the ptools benches; every pool is shut down on exit.
"""

import concurrent.futures
import multiprocessing
import os
import time

from common import budget, die_with_parent, measure, note, report, report_kib, rss_kib, skip


def add1(x):
    return x + 1


def round_trip():
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, initializer=die_with_parent) as ex:
        ex.submit(add1, 0).result()
        s = measure(lambda: ex.submit(add1, 41).result(), budget(3), max_samples=100, batch=100)
        report("py_processpool_round_trip", s)
        pid = ex.submit(os.getpid).result()
        kib = rss_kib(pid)
        if kib is None:
            skip("py_worker_rss", "no /proc/PID/status")
        else:
            report_kib("py_worker_rss", kib)


def echo(b):
    return b


def payload_round_trip():
    """16 MiB of bytes to a worker and back (pickled through its pipe both ways)."""
    data = bytes(range(256)) * (16 * 1024 * 1024 // 256)
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, initializer=die_with_parent) as ex:
        assert ex.submit(echo, data).result() == data
        s = measure(lambda: ex.submit(echo, data).result(), budget(3), max_samples=20, min_samples=3)
        report("py_processpool_payload_16mib", s)


def pool_map():
    with multiprocessing.Pool(2, initializer=die_with_parent) as pool:
        n1 = 20_000
        s = measure(lambda: pool.map(add1, range(n1), chunksize=1), budget(4), max_samples=20, min_samples=3)
        report("py_pool_map_chunksize1", s, n1)
        n = 1_000_000
        s = measure(lambda: pool.map(add1, range(n)), budget(4), max_samples=20, min_samples=3)
        report("py_pool_map_default", s, n)


def startup():
    def once():
        pool = multiprocessing.Pool(2, initializer=die_with_parent)
        try:
            # Both workers are forked by the constructor; one call proves they serve.
            pool.apply(add1, (0,))
        finally:
            pool.terminate()
            pool.join()

    report("py_pool2_startup", measure(once, budget(3), max_samples=20, min_samples=3))


if __name__ == "__main__":
    note(f"workers.py: start method {multiprocessing.get_start_method()}")
    t0 = time.perf_counter()
    round_trip()
    payload_round_trip()
    pool_map()
    startup()
    note(f"workers.py: {time.perf_counter() - t0:.1f} s")
