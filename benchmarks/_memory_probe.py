"""Peak memory of one ADMM fit, in a fresh process (run by test_bench_memory.py).

    python benchmarks/_memory_probe.py --n 60000 --dtype float64 [--batch-size full] [--no-skip-zero-inputs]

Builds the training set first (real MNIST 0/1 tiled to n rows, see _data.py), then fits
``train_admm`` with default settings (--batch-size default: the default call, mini-batch ADMM;
"full": the full-batch Algorithm 1) for --max-iter iterations (evaluated every one) and prints
one JSON line: the fit's peak of traced allocations (tracemalloc; numpy reports every array
buffer to it), the process's resident-set high-water mark (VmHWM, reset just before the fit)
before and after the fit, and the sizes of the data and of the ADMM state.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
import warnings  # noqa: E402

import psutil  # noqa: E402

import fastadmm  # noqa: E402
from _data import training_set  # noqa: E402
from _flops import HIDDEN, mlp_sizes  # noqa: E402
from _measure import proc_status_bytes, reset_hwm  # noqa: E402


def _peak_rss_now():
    hwm = proc_status_bytes("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def state_bytes(n, sizes, itemsize):
    """The ADMM iterates of Algorithm 1 for n samples: z_1..z_L, a_1..a_{L-1}, lam (n x n_L)."""
    L = len(sizes) - 1
    z = sum(sizes[1 : L + 1])
    a = sum(sizes[1:L])
    lam = sizes[L]
    return n * (z + a + lam) * itemsize, {"z_columns": z, "a_columns": a, "lam_columns": lam}


def state_bytes_minibatch(batch, sizes, itemsize):
    """Mini-batch ADMM's own arrays: the weights (each layer with its bias) and the batch buffers
    (rows of X at full width and kept, targets, and z, a, h(z), the a-update and scratch per layer)."""
    L = len(sizes) - 1
    weights = sum(sizes[l] * (sizes[l - 1] + 1) for l in range(1, L + 1))
    buffers = batch * (2 * sizes[0] + sizes[L] * 4 + sum(5 * sizes[l] for l in range(1, L)))
    return (weights + buffers) * itemsize, {"weights": weights, "batch_buffer_entries": buffers}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=60_000)
    p.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    p.add_argument("--max-iter", type=int, default=8)
    p.add_argument("--no-skip-zero-inputs", action="store_true")
    p.add_argument("--batch-size", default="default", help='"default" (the default call), "full" or rows')
    args = p.parse_args(argv)

    X, y, source = training_set(args.n, args.dtype)
    proc = psutil.Process()
    rss_before = proc.memory_info().rss
    hwm_reset = reset_hwm()
    maxrss_before = _peak_rss_now()
    tracemalloc.start()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stopping at max_iter before tol is expected here
        batch = {} if args.batch_size == "default" else {"batch_size": None if args.batch_size == "full"
                                                         else int(args.batch_size)}
        res = fastadmm.train_admm(X, y, hidden=HIDDEN, max_iter=args.max_iter, random_state=0, threads=1,
                                  skip_zero_inputs=not args.no_skip_zero_inputs, **batch)
    seconds = time.perf_counter() - t0
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    maxrss_after = _peak_rss_now()

    sizes = mlp_sizes(X.shape[1])
    used_batch = res.settings["batch_size"]
    if used_batch is None:
        state, columns = state_bytes(args.n, sizes, X.dtype.itemsize)
    else:
        state, columns = state_bytes_minibatch(int(used_batch), sizes, X.dtype.itemsize)
    data = X.nbytes + y.nbytes
    print(json.dumps({
        "n": args.n, "dtype": args.dtype, "data_source": source, "skip_zero_inputs": not args.no_skip_zero_inputs,
        "batch_size": used_batch,
        "max_iter": args.max_iter, "fit_seconds": seconds, "status": res.status,
        "train_accuracy": res.history["train_accuracy"][-1],
        "data_bytes": data, "state_bytes": state, "state_columns": columns,
        "fit_traced_peak_bytes": traced_peak,
        "rss_before_fit": rss_before, "peak_rss_reset_before_fit": hwm_reset,
        "peak_rss_before_fit": maxrss_before, "peak_rss_after_fit": maxrss_after,
        "fit_rss_growth_bytes": max(maxrss_after - rss_before, 0),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
