"""Seconds of a default train_admm call with BLAS threads left as they are (None), 1 and 2, side by side.

    python benchmarks/threads_default.py            # the embedded MNIST 0/1 digits, 10 iterations, 2 rounds

Prints threadpoolctl's view of the BLAS pools, then one line per round and setting: threads, seconds,
training accuracy reached.  Run it on an idle machine and with another process busy.
"""

import time

from threadpoolctl import threadpool_info

import fastadmm
from _data import embedded_split


def main() -> None:
    X, y, _, _ = embedded_split(classes=(0, 1))
    print([(i["internal_api"], i["num_threads"]) for i in threadpool_info()])
    for _ in range(2):
        for threads in (None, 1, 2):
            t0 = time.perf_counter()
            result = fastadmm.train_admm(X, y, max_iter=10, threads=threads, random_state=0, tol=0)
            print(f"threads={threads}: {time.perf_counter() - t0:.3f} s, "
                  f"training accuracy {result.history['train_accuracy'][-1]:.4f}")


if __name__ == "__main__":
    main()
