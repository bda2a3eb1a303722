"""Seconds of a train_admm call with BLAS threads as a default call leaves them, left as they are
(None), 1 and 2, side by side.

    python benchmarks/threads_default.py            # the embedded MNIST 0/1 digits, 10 iterations, 3 rounds
    python benchmarks/threads_default.py --busy     # the same with one competing busy process of its own

Prints threadpoolctl's view of the BLAS pools before the fit and inside it (from the callback), then
one line per round and setting: threads, seconds, training accuracy reached, and the medians.  The
default call must use one thread (not None).  Run it on an idle machine and with another process busy.
"""

import argparse
import multiprocessing
import time

import numpy as np
from threadpoolctl import threadpool_info

import fastadmm
from _data import embedded_split

SETTINGS = {"default": {}, "None": {"threads": None}, "1": {"threads": 1}, "2": {"threads": 2}}


def _pools():
    return [(i["internal_api"], i["num_threads"]) for i in threadpool_info()]


def _spin():
    while True:
        pass


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--busy", action="store_true", help="run one busy-looping process beside the fits")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    X, y, _, _ = embedded_split(classes=(0, 1))
    print("pools before the fit:", _pools())
    busy = None
    if args.busy:
        busy = multiprocessing.Process(target=_spin, daemon=True)
        busy.start()
        print(f"competing busy process: pid {busy.pid}")
    seconds = {name: [] for name in SETTINGS}
    try:
        for _ in range(args.rounds):
            for name, kw in SETTINGS.items():
                inside = []
                t0 = time.perf_counter()
                result = fastadmm.train_admm(X, y, max_iter=10, random_state=0, tol=0,
                                             callback=lambda r, inside=inside: inside.append(_pools()) and None, **kw)
                seconds[name].append(time.perf_counter() - t0)
                print(f"threads={name}: {seconds[name][-1]:.3f} s, training accuracy "
                      f"{result.history['train_accuracy'][-1]:.4f}, pools inside the fit {inside[-1]}")
    finally:
        if busy is not None:
            busy.terminate()
            busy.join()
    print("medians:", {name: round(float(np.median(v)), 3) for name, v in seconds.items()})


if __name__ == "__main__":
    main()
