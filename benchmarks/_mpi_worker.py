"""What one rank does under ``mpiexec`` for ``mpi_scaling.py`` (the launcher starts it; not run by hand).

    mpiexec -n K python benchmarks/_mpi_worker.py fit --result R.json --data DIR|synthetic --n N --iters I --warmup W
    mpiexec -n K python benchmarks/_mpi_worker.py micro --result R.json --sizes S1 S2 ...
    mpiexec -n K python benchmarks/_mpi_worker.py gemm --result R.json --gemm-seconds T
    python benchmarks/_mpi_worker.py serial --result R.json --n-active A

* ``fit``: a data-parallel ``train_admm`` of the MNIST-shaped net on this rank's rows (``_data``);
  rank 0 writes the wall time per iteration (its clock between two callbacks), every rank's seconds
  inside the all-reduces, and (``--weights``) the weights.  ``--reverse``: the rows in reverse order
  (the control for the correctness check).
* ``micro``: the Allreduce(IN_PLACE, SUM) micro-benchmark at the given sizes (float64 entries).
* ``gemm``: single-thread GEMM GFLOP/s of each rank while all ranks run it.
* ``serial``: the per-iteration cost every rank pays whole, on one process, extrapolated to N = 0.

Rank 0 writes one JSON file (atomically) to ``--result``; the launcher reads it.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from _data import shard_rows_of
from _flops import HIDDEN, N_PIXELS, matmul_flops
from _scaling_model import HIGGS


def atomic_json(path, obj) -> None:
    path = Path(path)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=path.name, suffix=".tmp", delete=False) as f:
        json.dump(obj, f, indent=1)
    os.replace(f.name, path)


def atomic_npz(path, arrays) -> None:
    path = Path(path)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp.npz", delete=False) as f:
        np.savez(f, **arrays)
    os.replace(f.name, path)


def worker_fit(args) -> None:
    from mpi4py import MPI

    from fastadmm import _comm, train_admm

    world = MPI.COMM_WORLD
    rank, size = world.Get_rank(), world.Get_size()
    t_load = time.perf_counter()
    X, y = shard_rows_of(args.data, args.n, rank, size)
    if args.reverse:  # the control: one process, the same samples in the opposite order
        X, y = np.ascontiguousarray(X[::-1]), np.ascontiguousarray(y[::-1])
    t_load = time.perf_counter() - t_load
    comm = _comm.MPIComm(world)  # the driver's own wrapper, so that comm.seconds can be read per iteration
    stamps, reduce_seconds = [], []

    def callback(info):
        stamps.append(time.perf_counter())
        reduce_seconds.append(comm.seconds)

    world.Barrier()
    res = train_admm(X, y, hidden=HIDDEN, loss="mse", max_iter=args.warmup + args.iters, tol=0.0, eval_every=0,
                     random_state=0, threads=1, comm=comm, callback=callback)
    correct = np.array([float(np.sum(res.predict(X) == y)), float(X.shape[0])])
    world.Allreduce(MPI.IN_PLACE, correct, op=MPI.SUM)
    walls = np.diff(stamps)[args.warmup - 1 :] if args.warmup >= 1 else np.diff(stamps)
    reduces = np.diff(reduce_seconds)[args.warmup - 1 :] if args.warmup >= 1 else np.diff(reduce_seconds)
    per_rank = world.gather(dict(reduce=reduces.tolist(), rows=int(X.shape[0]), load_s=t_load,
                                 setup_s=res.timings["setup"]), root=0)
    if rank == 0:
        if args.weights:
            atomic_npz(args.weights, {f"W{l}": W for l, W in enumerate(res.weights)})
        atomic_json(args.result, dict(
            ranks=size, iteration_seconds=walls.tolist(), allreduce_seconds=[r["reduce"] for r in per_rank],
            rows=[r["rows"] for r in per_rank], load_seconds=max(r["load_s"] for r in per_rank),
            setup_seconds=max(r["setup_s"] for r in per_rank), timings=res.timings, n_iter=res.n_iter,
            train_accuracy=correct[0] / correct[1], loadavg=os.getloadavg()[0],
        ))


def worker_micro(args) -> None:
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    out = {}
    for n in args.sizes:
        buf = np.ones(n)
        for _ in range(args.micro_warmup):
            world.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        times = np.empty(args.micro_reps)
        world.Barrier()
        for i in range(args.micro_reps):
            t0 = time.perf_counter()
            world.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            times[i] = time.perf_counter() - t0
        medians = world.gather(float(np.median(times)), root=0)
        out[str(n)] = max(medians) if medians else None
    if world.Get_rank() == 0:
        atomic_json(args.result, dict(ranks=world.Get_size(), median_seconds=out, reps=args.micro_reps))


SERIAL_ROWS = (16, 64)  # the fixed per-iteration cost is extrapolated to 0 rows from fits on these


def _iteration_seconds(X, y, hidden, iters=8, warmup=2) -> float:
    from fastadmm import train_admm

    stamps = []
    train_admm(X, y, hidden=hidden, max_iter=warmup + iters, tol=0.0, eval_every=0, random_state=0, threads=1,
               batch_size=None, callback=lambda info: stamps.append(time.perf_counter()))
    return float(np.median(np.diff(stamps)[warmup - 1 :]))


def worker_serial(args) -> None:
    """The per-iteration cost that does not shrink with N / K, on one process: the W solves (W_1 =
    z_1 a_0^T (a_0 a_0^T + r I)^-1 alone is 2 n_1 n_0^2 flops), the a-update factorisations and the
    Python around the kernels. Every rank pays it in full. Measured at two tiny N, extrapolated to 0."""
    rng = np.random.default_rng(0)
    shapes = {"mnist": (N_PIXELS, N_PIXELS - args.n_active, HIDDEN), "higgs": (HIGGS["n_features"], 0, HIGGS["hidden"])}
    out = {}
    for name, (d, zeros, hidden) in shapes.items():
        t = []
        for n in SERIAL_ROWS:
            X = rng.random((n, d))
            X[:, :zeros] = 0.0
            y = np.arange(n) % 2
            t.append(min(_iteration_seconds(X, y, hidden) for _ in range(3)))
        slope = (t[1] - t[0]) / (SERIAL_ROWS[1] - SERIAL_ROWS[0])
        out[name] = dict(rows=list(SERIAL_ROWS), iteration_s=t, serial_s=max(0.0, t[0] - slope * SERIAL_ROWS[0]))
    atomic_json(args.result, out)


GEMM_SIDE = 1000


def worker_gemm(args) -> None:
    """Single-thread GEMM throughput of each rank while all ranks run it: the ceiling of K-rank speedup
    that this machine gives at this moment (shared cores, frequency, other processes)."""
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    rng = np.random.default_rng(0)
    a, b = rng.random((GEMM_SIDE, GEMM_SIDE)), rng.random((GEMM_SIDE, GEMM_SIDE))
    a @ b
    world.Barrier()
    t0, reps = time.perf_counter(), 0
    while time.perf_counter() - t0 < args.gemm_seconds:
        a @ b
        reps += 1
    rate = world.gather(reps * matmul_flops(GEMM_SIDE, GEMM_SIDE, GEMM_SIDE) / (time.perf_counter() - t0) / 1e9, root=0)
    if world.Get_rank() == 0:
        atomic_json(args.result, dict(ranks=world.Get_size(), gflops=rate))


WORKERS = {"fit": worker_fit, "micro": worker_micro, "gemm": worker_gemm, "serial": worker_serial}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("job", choices=list(WORKERS))
    p.add_argument("--result", required=True, help="JSON file rank 0 writes")
    p.add_argument("--data", help="fit: folder of MNIST IDX files, or 'synthetic'")
    p.add_argument("--n", type=int, help="fit: training samples (all ranks together)")
    p.add_argument("--iters", type=int, help="fit: timed iterations")
    p.add_argument("--warmup", type=int, help="fit: iterations left out of the timing")
    p.add_argument("--weights", help="fit: rank 0 writes the weights here (.npz)")
    p.add_argument("--reverse", action="store_true", help="fit: the rows in reverse order")
    p.add_argument("--sizes", type=int, nargs="*", help="micro: float64 entries per Allreduce")
    p.add_argument("--micro-reps", type=int, default=2000)
    p.add_argument("--micro-warmup", type=int, default=100)
    p.add_argument("--gemm-seconds", type=float, default=2.0)
    p.add_argument("--n-active", type=int, help="serial: non-zero input features of the MNIST-shaped data")
    args = p.parse_args(argv)
    WORKERS[args.job](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
