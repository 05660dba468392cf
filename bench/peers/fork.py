"""os.fork + pickle fan-out: fork n children, child i pickles i into its own pipe and
leaves with os._exit; the parent reads and unpickles each result and reaps each child.
Then the same with 1 GiB resident in the parent. Every child is reaped, even on error.
"""

import os
import pickle
import time

from common import budget, measure, note, report


def fan_out(n):
    children = []
    try:
        for i in range(n):
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                try:
                    os.close(r)
                    os.write(w, pickle.dumps(i))
                finally:
                    os._exit(0)
            os.close(w)
            children.append((pid, r))
        results = []
        for _, r in children:
            chunks = []
            while True:
                b = os.read(r, 65536)
                if not b:
                    break
                chunks.append(b)
            results.append(pickle.loads(b"".join(chunks)))
        assert results == list(range(n)), results
        return results
    finally:
        for pid, r in children:
            os.close(r)
            os.waitpid(pid, 0)


if __name__ == "__main__":
    t0 = time.perf_counter()
    for n in (2, 8, 32):
        report(f"py_fork_pickle_{n}", measure(lambda: fan_out(n), budget(3), max_samples=100))
    big = bytearray(1 << 30)
    big[::4096] = b"\x01" * (len(big) // 4096)  # every page written, so resident
    for n in (2, 8):
        report(f"py_fork_pickle_1gib_{n}", measure(lambda: fan_out(n), budget(3), max_samples=20))
    del big
    note(f"fork.py: {time.perf_counter() - t0:.1f} s")
