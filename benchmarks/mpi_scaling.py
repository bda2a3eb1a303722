"""Strong scaling of data-parallel ADMM over MPI: seconds per iteration for K ranks, the all-reduce's
share of an iteration, a micro-benchmark of the packed Allreduce, and the fitted scaling model of
docs/SCALING.md. Not a pytest file.

    python benchmarks/mpi_scaling.py                         # K = 1 2 3 4, 3 rounds, N = 60,000
    python benchmarks/mpi_scaling.py --ranks 1 2 --rounds 5 --out /tmp/mpi_scaling.json
    python benchmarks/mpi_scaling.py --data synthetic        # without MNIST files

The net is MNIST-shaped, 784-100-50-10-1 (binary task: odd vs even digit), float64, N training
samples: the MNIST training images of ``--data`` (a folder of IDX files) tiled to N rows, or
synthetic pixels with an all-zero border as in MNIST. Each configuration is one ``mpiexec -n K``
launch (the ``mpiexec`` beside ``sys.executable``) with one BLAS / Numba / OpenMP thread per rank.
Rounds go 1, 2, 3, 4, 1, 2, ... so that every K sees the same background; a launch records how
many cores other processes kept busy meanwhile (from /proc/stat), is repeated up to
``--retry-busy`` times while that is >= QUIET, and the JSON reports medians over all launches and
over the quiet ones (each launch counts with its median over the timed iterations; the first
``--warmup`` iterations of a fit are left out). Ranks beyond the machine's cores are
oversubscribed: they time-share the cores and MPICH's waiting ranks spin.

Per iteration a rank records the wall time (rank 0's clock between two callbacks) and the seconds
inside its all-reduces (``comm.seconds``: the transfer plus the wait for the slowest rank). Besides:
the Allreduce(IN_PLACE, SUM) micro-benchmark at the sizes this net packs per layer and at 100 x 100;
a GEMM calibration (what 2 single-thread processes get against 1 at this moment); the serial
per-iteration cost every rank pays whole (one process, tiny N, extrapolated to N = 0); and a
control for the correctness check: one process on the same rows in reverse order, whose weights
differ from the forward-order fit by rounding alone.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HIDDEN = (100, 50, 10)
N_INPUT = 784
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


def _default_data() -> str:
    folder = os.environ.get("FASTADMM_DATA") or ""
    return folder if folder else "synthetic"
SYNTHETIC_BLOCK = 1000  # synthetic rows are drawn in seeded blocks, so any shard is the same rows


# --------------------------------------------------------------------------------------------------
# The data (each rank builds only its rows)


def shard_data(data: str, n: int, rank: int, size: int):
    """(X, y) of rows shard_rows(n, rank, size) of the N-row training set, float64 pixels in [0, 1]."""
    from fastadmm.distributed import shard_rows

    start, stop = shard_rows(n, rank, size)
    if data == "synthetic":
        return _synthetic_rows(start, stop)
    from fastadmm.data import mnist_files, read_idx

    files = mnist_files(data)
    images = read_idx(files["train_images"]).reshape(-1, N_INPUT)
    labels = read_idx(files["train_labels"])
    rows = np.arange(start, stop) % images.shape[0]  # tiled: row g is image g mod n_images
    return images[rows] / 255.0, (labels[rows] % 2).astype(np.int64)


def _synthetic_rows(start: int, stop: int):
    blocks = range(start // SYNTHETIC_BLOCK, (stop - 1) // SYNTHETIC_BLOCK + 1)
    X, y = [], []
    border = _border()
    for b in blocks:
        rng = np.random.default_rng([7, b])
        Xb = np.clip(rng.normal(0.3, 0.3, (SYNTHETIC_BLOCK, N_INPUT)), 0.0, 1.0)
        Xb[:, border] = 0.0
        yb = (Xb[:, 300:400].mean(axis=1) > Xb[:, 400:500].mean(axis=1)).astype(np.int64)
        X.append(Xb)
        y.append(yb)
    lo = start - blocks[0] * SYNTHETIC_BLOCK
    return np.concatenate(X)[lo : lo + stop - start], np.concatenate(y)[lo : lo + stop - start]


def _border() -> np.ndarray:
    """The always-zero pixels of the synthetic images: a 2-pixel frame of the 28 x 28 image, as in MNIST."""
    border = np.zeros((28, 28), bool)
    border[:2, :] = border[-2:, :] = border[:, :2] = border[:, -2:] = True
    return border.ravel()


def active_features(data: str) -> int:
    """Input features that are non-zero in some training sample (the W_1 width the driver keeps)."""
    if data == "synthetic":
        return int((~_border()).sum())
    from fastadmm.data import mnist_files, read_idx

    images = read_idx(mnist_files(data)["train_images"]).reshape(-1, N_INPUT)
    return int((images != 0).any(axis=0).sum())


def packed_sizes(n_active: int, hidden=HIDDEN, n_out: int = 1, intercept: bool = True) -> list[int]:
    """Float64 entries of each per-layer all-reduce of admm.py (``_Problem.packed``), then the
    per-iteration reduction of sums and flags (2L + 2 sums + 7 extras)."""
    sizes = [n_active, *hidden, n_out]
    L = len(sizes) - 1
    out = [sizes[1] * n_active + (sizes[1] if intercept else 0)]  # z_1 a_0^T | z_1 1 (the Gram is fixed)
    out += [sizes[l - 1] ** 2 + sizes[l] * sizes[l - 1] for l in range(2, L + 1)]  # a a^T | z a^T
    return out + [2 * L + 2 + 7]


def flops_per_iteration(n_active: int, n: int, hidden=HIDDEN, n_out: int = 1) -> float:
    """Dense products of one sweep (BLAS-3), counted as 2 flops per multiply-add (a a^T as syrk)."""
    sizes = [n_active + 1, *hidden, n_out]
    L = len(sizes) - 1
    f = 0.0
    for l in range(1, L + 1):
        f += 2 * 2 * sizes[l] * sizes[l - 1]  # z a^T (W-update) and W a (z-update)
        if l > 1:
            f += sizes[l - 1] ** 2  # a a^T, one triangle
        if l < L:
            f += 2 * sizes[l] ** 2 + 2 * sizes[l] * sizes[l + 1]  # a-update: h(z) Q and z_{l+1} P^T
    return f * n


# --------------------------------------------------------------------------------------------------
# What one rank does under mpiexec


def worker_fit(args) -> None:
    from mpi4py import MPI

    from fastadmm import _comm, train_admm

    world = MPI.COMM_WORLD
    rank, size = world.Get_rank(), world.Get_size()
    t_load = time.perf_counter()
    X, y = shard_data(args.data, args.n, rank, size)
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
            _atomic_npz(args.weights, {f"W{l}": W for l, W in enumerate(res.weights)})
        _atomic_json(args.result, dict(
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
        _atomic_json(args.result, dict(ranks=world.Get_size(), median_seconds=out, reps=args.micro_reps))


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
    shapes = {"mnist": (N_INPUT, N_INPUT - args.n_active, HIDDEN), "higgs": (HIGGS["n_features"], 0, HIGGS["hidden"])}
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
    _atomic_json(args.result, out)


def worker_gemm(args) -> None:
    """Single-thread GEMM throughput of each rank while all ranks run it: the ceiling of K-rank speedup
    that this machine gives at this moment (shared cores, frequency, other processes)."""
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    rng = np.random.default_rng(0)
    a, b = rng.random((1000, 1000)), rng.random((1000, 1000))
    a @ b
    world.Barrier()
    t0, reps = time.perf_counter(), 0
    while time.perf_counter() - t0 < args.gemm_seconds:
        a @ b
        reps += 1
    rate = world.gather(reps * 2e9 / (time.perf_counter() - t0) / 1e9, root=0)
    if world.Get_rank() == 0:
        _atomic_json(args.result, dict(ranks=world.Get_size(), gflops=rate))


def _atomic_json(path, obj) -> None:
    path = Path(path)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=path.name, suffix=".tmp", delete=False) as f:
        json.dump(obj, f, indent=1)
    os.replace(f.name, path)


def _atomic_npz(path, arrays) -> None:
    path = Path(path)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=path.name, suffix=".tmp.npz", delete=False) as f:
        np.savez(f, **arrays)
    os.replace(f.name, path)


# --------------------------------------------------------------------------------------------------
# The launcher


def _mpiexec() -> Path:
    path = Path(sys.executable).parent / "mpiexec"
    if not path.exists():
        sys.exit(f"no mpiexec beside {sys.executable}; install it with `pip install 'fastadmm[mpi]'`")
    return path


def _cpu_busy_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, from /proc/stat (0, 0 elsewhere)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / hz, steal / hz


def _launch(k: int, worker_args: list[str], timeout: float) -> dict:
    """Run one mpiexec; returns its wall time and how many cores other processes kept busy meanwhile
    (machine-wide busy CPU time minus that of mpiexec and its ranks, over the wall time)."""
    env = dict(os.environ, **ONE_THREAD)
    cmd = [str(_mpiexec()), "-n", str(k), sys.executable, str(Path(__file__).resolve()), *worker_args]
    busy0, steal0 = _cpu_busy_seconds()
    own0, t0 = os.times(), time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    busy1, steal1 = _cpu_busy_seconds()
    own1 = os.times()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    own = (own1.children_user - own0.children_user) + (own1.children_system - own0.children_system)
    return dict(wall_s=wall, other_cores=max(0.0, (busy1 - busy0 - own) / wall), steal_cores=(steal1 - steal0) / wall)


SHORT_MESSAGE = 2048  # bytes: MPICH's classic switch from recursive doubling to Rabenseifner's allreduce
# A cluster network for the projections (assumed, not measured): 3 us latency per message step,
# 10 GB/s per link (100 Gb/s InfiniBand-class), i.e. beta = 0.1 ns per byte.
NETWORK = dict(alpha_s=3e-6, beta_s_per_byte=1e-10)
HIGGS = dict(n=10_500_000, n_features=28, hidden=(300,), n_out=1)  # the paper's largest run: 7,200 cores


def fit_model(point1: dict, serial_s: float, micro2: dict, cores: int, core_throughput: float) -> dict:
    """The model's constants from the measurements.

    serial = the per-iteration work every rank does whole (worker_serial); parallel = the rest of one
    iteration on one rank (K = 1, all-reduce time taken out), which K ranks split; alpha, beta of
    t(m) = alpha + beta * bytes, fitted (non-negative least squares, relative errors) to the 2-rank
    Allreduce micro-benchmark; core_throughput = what a core delivers while all cores compute (GEMM
    calibration: aggregate ratio / cores, at most 1).
    """
    from scipy.optimize import nnls

    sizes = np.array([int(s) for s in micro2], float) * 8
    times = np.array(list(micro2.values()), float)
    (alpha, beta), _ = nnls(np.column_stack([1 / times, sizes / times]), np.ones_like(times))
    parallel = point1["iteration_s"] - point1["allreduce_s"] - serial_s
    return dict(parallel_s=parallel, serial_s=serial_s, alpha_s=float(alpha), beta_s_per_byte=float(beta),
                cores=cores, core_throughput=core_throughput)


def allreduce_seconds(k: int, nbytes: float, alpha: float, beta: float) -> float:
    """One Allreduce of nbytes over k ranks: recursive doubling, ceil(log2 k) (alpha + beta m), for short
    messages; Rabenseifner (reduce-scatter + allgather), 2 ceil(log2 k) alpha + 2 (k-1)/k beta m, for long."""
    if k == 1:
        return 0.0
    steps = math.ceil(math.log2(k))
    if nbytes <= SHORT_MESSAGE:
        return steps * (alpha + beta * nbytes)
    return 2 * steps * alpha + 2 * (k - 1) / k * beta * nbytes


def predict(model: dict, k: int, message_bytes: list[float]) -> dict:
    """T(K) = (parallel * ceil(K / cores) / K + serial) / throughput + sum of the per-iteration all-reduces.

    With more ranks than cores the ranks time-share the cores, so the busiest core runs
    ceil(K / cores) ranks, each with N / K samples and the whole serial part; `throughput` (<= 1) is
    what a core delivers while all used cores compute."""
    per_core = math.ceil(k / model["cores"])
    compute = model["parallel_s"] * per_core / k + model["serial_s"] * per_core
    if k > 1:
        compute /= model["core_throughput"]
    comm = sum(allreduce_seconds(k, m, model["alpha_s"], model["beta_s_per_byte"]) for m in message_bytes)
    return dict(total_s=compute + comm, compute_s=compute, allreduce_s=comm)


def project(gflops_per_core: float, serial: dict, n_active: int, ranks=(1, 2, 16, 128, 1024, 7200, 16384)) -> dict:
    """T(K) = parallel / K + serial + all-reduces, one rank per core on a cluster (NETWORK's alpha and
    beta), the parallel part at this machine's measured rate per core and perfectly balanced, the
    serial part as measured here; for MNIST-shaped N = 60,000 and the paper's HIGGS shape."""
    out = {}
    workloads = {
        "mnist_60k_784-100-50-10-1": (dict(n=60_000, n_features=n_active, hidden=HIDDEN, n_out=1), "mnist"),
        "higgs_10.5M_28-300-1": (HIGGS, "higgs"),
    }
    for name, (w, key) in workloads.items():
        flops = flops_per_iteration(w["n_features"], w["n"], w["hidden"], w["n_out"])
        msg = [8.0 * m for m in packed_sizes(w["n_features"], w["hidden"], w["n_out"])]
        c1, s1 = flops / (gflops_per_core * 1e9), serial[key]["serial_s"]
        rows = {}
        for k in ranks:
            comm = sum(allreduce_seconds(k, m, NETWORK["alpha_s"], NETWORK["beta_s_per_byte"]) for m in msg)
            t = c1 / k + s1 + comm
            rows[str(k)] = dict(total_s=t, parallel_s=c1 / k, serial_s=s1, allreduce_s=comm,
                                efficiency=(c1 + s1) / (k * t))
        out[name] = dict(flops_per_iteration=flops, message_bytes=msg, samples_per_rank_at_max=w["n"] // ranks[-1],
                         ranks=rows)
    return dict(network=NETWORK, gflops_per_core=gflops_per_core, workloads=out)


QUIET = 0.2  # a launch during which other processes kept fewer cores than this busy counts as quiet


def _summarise_fits(runs: list[dict]) -> dict:
    """Medians over launches of each launch's median over its timed iterations."""
    it = [statistics.median(run["iteration_seconds"]) for run in runs]
    red = [statistics.median(float(np.mean(col)) for col in zip(*run["allreduce_seconds"])) for run in runs]
    red_max = [statistics.median(float(np.max(col)) for col in zip(*run["allreduce_seconds"])) for run in runs]
    return dict(iteration_s=statistics.median(it), allreduce_s=statistics.median(red),
                allreduce_max_rank_s=statistics.median(red_max),
                allreduce_share=statistics.median(red) / statistics.median(it),
                launches=len(runs), per_launch_iteration_s=it, per_launch_allreduce_s=red,
                other_cores=[run["other_cores"] for run in runs])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3, 4])
    p.add_argument("--rounds", type=int, default=3, help="launches per K (medians over rounds)")
    p.add_argument("--n", type=int, default=60_000, help="training samples (all ranks together)")
    p.add_argument("--iters", type=int, default=6, help="timed iterations per fit")
    p.add_argument("--warmup", type=int, default=2, help="iterations per fit left out of the timing")
    p.add_argument("--data", default=_default_data(),
                   help="folder of MNIST IDX files, or 'synthetic' (default: $FASTADMM_DATA, else "
                        "synthetic)")
    p.add_argument("--micro-reps", type=int, default=2000)
    p.add_argument("--micro-warmup", type=int, default=100)
    p.add_argument("--gemm-seconds", type=float, default=2.0, help="per launch of the GEMM calibration (0: skip)")
    p.add_argument("--out", default="mpi_scaling.json")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per mpiexec launch")
    p.add_argument("--retry-busy", type=int, default=2,
                   help="relaunch a configuration up to this many times while other processes keep the machine busy")
    p.add_argument("--worker", choices=["fit", "micro", "gemm", "serial"], help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    p.add_argument("--sizes", type=int, nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--reverse", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--n-active", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is not None:
        {"fit": worker_fit, "micro": worker_micro, "gemm": worker_gemm, "serial": worker_serial}[args.worker](args)
        return 0
    if args.warmup < 1 or args.iters < 1:
        p.error("--warmup and --iters must be >= 1 (the first iteration has no start stamp)")

    cores = len(os.sched_getaffinity(0))
    n_active = active_features(args.data)
    sizes = sorted(set(packed_sizes(n_active)) | {100 * 100})
    fits = {k: [] for k in args.ranks}
    micro = {k: [] for k in args.ranks if k > 1}
    gemm = {1: [], 2: []}
    diffs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            if args.gemm_seconds > 0:
                for _ in range(1 + args.retry_busy):
                    pair = []
                    for k in gemm:
                        res = Path(tmp) / f"gemm{k}_{r}.json"
                        info = _launch(k, ["--worker", "gemm", "--result", str(res), "--gemm-seconds",
                                           str(args.gemm_seconds)], args.timeout)
                        pair.append(dict(json.loads(res.read_text()), **info))
                    for k, run in zip(gemm, pair):
                        gemm[k].append(run)
                    if max(run["other_cores"] for run in pair) < QUIET:
                        break
            for k in args.ranks:
                for attempt in range(1 + args.retry_busy):
                    res, wts = Path(tmp) / f"fit{k}_{r}_{attempt}.json", Path(tmp) / f"W{k}.npz"
                    extra = ["--weights", str(wts)] if r == 0 and attempt == 0 else []
                    info = _launch(k, ["--worker", "fit", "--result", str(res), "--data", args.data, "--n",
                                       str(args.n), "--iters", str(args.iters), "--warmup", str(args.warmup), *extra],
                                   args.timeout)
                    fits[k].append(dict(json.loads(res.read_text()), **info))
                    print(f"round {r} K={k}: {statistics.median(fits[k][-1]['iteration_seconds']):.3f} s/iteration "
                          f"(other processes kept {info['other_cores']:.2f} cores busy)", flush=True)
                    if info["other_cores"] < QUIET:
                        break
            for k in micro:
                res = Path(tmp) / f"micro{k}_{r}.json"
                info = _launch(k, ["--worker", "micro", "--result", str(res), "--micro-reps", str(args.micro_reps),
                                   "--micro-warmup", str(args.micro_warmup), "--sizes", *map(str, sizes)], args.timeout)
                micro[k].append(dict(json.loads(res.read_text())["median_seconds"], other_cores=info["other_cores"]))
        _launch(1, ["--worker", "serial", "--result", str(Path(tmp) / "serial.json"), "--n-active", str(n_active)],
                args.timeout)
        serial = json.loads((Path(tmp) / "serial.json").read_text())
        if 1 in args.ranks:
            # How far rounding alone moves this fit: one process on the same rows in reverse order.
            _launch(1, ["--worker", "fit", "--result", str(Path(tmp) / "control.json"), "--data", args.data,
                        "--n", str(args.n), "--iters", str(args.iters), "--warmup", str(args.warmup), "--reverse",
                        "--weights", str(Path(tmp) / "Wcontrol.npz")], args.timeout)
            with np.load(Path(tmp) / "W1.npz") as f:
                ref = [f[key] for key in sorted(f.files)]
            for k in [*args.ranks, "control"]:
                with np.load(Path(tmp) / f"W{k}.npz") as f:
                    got = [f[key] for key in sorted(f.files)]
                diffs[k] = max(float(np.max(np.abs(a - b)) / np.max(np.abs(b))) for a, b in zip(got, ref))

    points, quiet = {}, {}
    for k, runs in fits.items():
        points[k] = dict(_summarise_fits(runs), train_accuracy=runs[0]["train_accuracy"], rows_per_rank=runs[0]["rows"],
                         setup_s=statistics.median(run["setup_seconds"] for run in runs),
                         weights_rel_diff_vs_1_rank=diffs.get(k))
        calm = [run for run in runs if run["other_cores"] < QUIET]
        if calm:
            quiet[k] = _summarise_fits(calm)
    micro_med = {k: {s: statistics.median(run[s] for run in runs) for s in map(str, sizes)}
                 for k, runs in micro.items()}
    flops = flops_per_iteration(n_active, args.n)
    out = dict(
        command=" ".join([Path(sys.executable).name, *sys.argv]), data=args.data, n=args.n, hidden=list(HIDDEN),
        n_active_features=n_active, dtype="float64", cores=cores, rounds=args.rounds, iters=args.iters,
        warmup=args.warmup, packed_float64_sizes=packed_sizes(n_active), flops_per_iteration=flops,
        points={str(k): v for k, v in points.items()}, quiet_threshold_cores=QUIET,
        quiet_points={str(k): v for k, v in quiet.items()},
        micro_allreduce_median_s={str(k): v for k, v in micro_med.items()},
        micro_allreduce_per_round_s={str(k): v for k, v in micro.items()},
        allreduce_transfer_per_iteration_s={str(k): sum(m[str(s)] for s in packed_sizes(n_active))
                                             for k, m in micro_med.items()},
        weights_rel_diff_1_rank_reversed_rows=diffs.get("control"),
        serial_per_iteration=serial,
    )
    if all(gemm.values()):
        ratio = [sum(two["gflops"]) / one["gflops"][0] for one, two in zip(gemm[1], gemm[2])]
        busy = [max(one["other_cores"], two["other_cores"]) for one, two in zip(gemm[1], gemm[2])]
        calm = [q for q, b in zip(ratio, busy) if b < QUIET]
        out["gemm_calibration"] = dict(gflops_1=[g["gflops"] for g in gemm[1]], gflops_2=[g["gflops"] for g in gemm[2]],
                                       other_cores=busy,
                                       aggregate_ratio_2_vs_1=ratio, median_ratio=statistics.median(calm or ratio),
                                       quiet_pairs=len(calm))
    for table in (points, quiet):
        if 1 in table:
            for k in table:
                table[k]["speedup_vs_1"] = table[1]["iteration_s"] / table[k]["iteration_s"]
    if 1 in points:
        out["gflops_1_rank"] = flops / points[1]["iteration_s"] / 1e9
        if 2 in micro_med:
            base = quiet if 1 in quiet else points
            throughput = out["gemm_calibration"]["median_ratio"] / min(2, cores) if "gemm_calibration" in out else 1.0
            model = fit_model(base[1], serial["mnist"]["serial_s"], micro_med[2], cores, min(1.0, throughput))
            msg = [8.0 * s for s in packed_sizes(n_active)]
            model["predicted"] = {str(k): predict(model, k, msg) for k in points}
            out["model"] = model
            out["projection"] = project(flops / model["parallel_s"] / 1e9, serial, n_active)
    _atomic_json(args.out, out)
    for name, table in (("all launches", points), (f"quiet launches (others < {QUIET} cores)", quiet)):
        print(name)
        for k, pt in table.items():
            print(f"  K={k}: {pt['iteration_s']:.4f} s/iteration, speedup {pt.get('speedup_vs_1', float('nan')):.2f}x, "
                  f"all-reduce {pt['allreduce_s'] * 1e3:.2f} ms ({100 * pt['allreduce_share']:.1f} %), "
                  f"{pt['launches']} launches")
    for k, pt in points.items():
        print(f"K={k}: weights vs 1 rank, max relative difference {pt['weights_rel_diff_vs_1_rank']}")
    if "control" in diffs:
        print(f"control: 1 rank, rows reversed: max relative difference {diffs['control']}")
    for k, m in micro_med.items():
        print(f"micro K={k}: " + ", ".join(f"{s} x f64 {v * 1e6:.1f} us" for s, v in m.items())
              + f"; this net's all-reduces per iteration: "
              f"{out['allreduce_transfer_per_iteration_s'][str(k)] * 1e3:.2f} ms")
    if "model" in out:
        m = out["model"]
        print(f"model: parallel {m['parallel_s']:.4f} s, serial {m['serial_s'] * 1e3:.2f} ms, "
              f"alpha {m['alpha_s'] * 1e6:.1f} us, "
              f"beta {m['beta_s_per_byte'] * 1e9:.3f} ns/byte, core throughput {m['core_throughput']:.3f}; predicted "
              + ", ".join(f"K={k}: {v['total_s']:.4f} s" for k, v in m["predicted"].items()))
        for name, w in out["projection"]["workloads"].items():
            print(f"projection {name}: " + ", ".join(
                f"K={k}: {r['total_s'] * 1e3:.3g} ms ({100 * r['efficiency']:.0f} %)" for k, r in w["ranks"].items()))
    if "gemm_calibration" in out:
        print(f"GEMM calibration: 2 processes give {out['gemm_calibration']['median_ratio']:.2f}x the throughput of 1")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
