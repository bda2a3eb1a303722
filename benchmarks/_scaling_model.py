"""The strong-scaling model of data-parallel ADMM (docs/SCALING.md), fitted by ``mpi_scaling.py``.

T(K) = parallel part split over K ranks + serial part every rank pays whole + the per-iteration
all-reduces (recursive doubling for short messages, Rabenseifner for long ones).  The FLOP count is
the benchmarks' one model, ``_flops.admm_sweep_flops``; the message sizes are what ``admm.py``
packs per layer.  Pure functions of the measurements: no MPI, no timing here.
"""

from __future__ import annotations

import math

import numpy as np

from _flops import HIDDEN, admm_sweep_flops, mlp_sizes

SHORT_MESSAGE = 2048  # bytes: MPICH's classic switch from recursive doubling to Rabenseifner's allreduce
# A cluster network for the projections (assumed, not measured): 3 us latency per message step,
# 10 GB/s per link (100 Gb/s InfiniBand-class), i.e. beta = 0.1 ns per byte.
NETWORK = dict(alpha_s=3e-6, beta_s_per_byte=1e-10)
HIGGS = dict(n=10_500_000, n_features=28, hidden=(300,), n_out=1)  # the paper's largest run: 7,200 cores


def packed_sizes(n_active: int, hidden=HIDDEN, n_out: int = 1, intercept: bool = True) -> list[int]:
    """Float64 entries of each per-layer all-reduce of admm.py (``_Problem.packed``), then the
    per-iteration reduction of sums and flags (2L + 2 sums + 7 extras)."""
    sizes = [n_active, *hidden, n_out]
    L = len(sizes) - 1
    out = [sizes[1] * n_active + (sizes[1] if intercept else 0)]  # z_1 a_0^T | z_1 1 (the Gram is fixed)
    out += [sizes[l - 1] ** 2 + sizes[l] * sizes[l - 1] for l in range(2, L + 1)]  # a a^T | z a^T
    return out + [2 * L + 2 + 7]


def flops_per_iteration(n_active: int, n: int, hidden=HIDDEN, n_out: int = 1) -> float:
    """FLOPs of one sweep as the driver runs it: the kept input pixels plus the intercept's row of ones
    as layer 0 (``_flops.admm_sweep_flops``)."""
    return admm_sweep_flops(mlp_sizes(n_active + 1, hidden, n_out), n)


def fit_model(point1: dict, serial_s: float, micro2: dict, cores: int, core_throughput: float) -> dict:
    """The model's constants from the measurements.

    serial = the per-iteration work every rank does whole (the "serial" worker); parallel = the rest
    of one iteration on one rank (K = 1, all-reduce time taken out), which K ranks split; alpha, beta
    of t(m) = alpha + beta * bytes, fitted (non-negative least squares, relative errors) to the 2-rank
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
