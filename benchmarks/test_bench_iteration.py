"""One full ADMM iteration (``_Problem.sweep``) on the MNIST-shaped net 784-100-50-10-1.

What is timed: one call of ``sweep`` (Algorithm 1: every W-, a- and z-update, the output update
and the multiplier step) of the driver's own problem object, built once with the default settings
(``ADMMSettings()``: backend "cython", loss "mse", intercept, ridge, skip_zero_inputs) and warmed
by ``WARM`` sweeps (past the warm start, so the multiplier step is on).  Evaluation, stopping
tests and the per-iteration reduction of ``train_admm``'s loop are not part of a sweep (they are
O(N) and small; see test_bench_time_to_accuracy for whole fits).

FLOPs are the analytic count (``_flops.admm_sweep_flops``) for sizes [784, 100, 50, 10, 1] (1.86 GFLOP at
N = 4,839), whatever the implementation actually does (it leaves all-zero pixels out, for one).
The yardstick is the same-run GFLOP/s of one numpy matmul (N x 784) @ (784 x 100) in the same
dtype, timed right after the sweep in the same test.

Targets: sweep GFLOP/s >= 70 % of the matmul's (float64); float32 iterations >= 1.7x faster than
float64 (at the same N, with the accuracy recorded); time per sample constant in N within 25 %
(N = 5k ... 60k, float64).  The target figures come from the contenders called in turn right
after the benchmark (sweep, matmul and, for float32, a warmed float64 twin: fastest call of each,
``extra_info["side_by_side_seconds"]``), so a slow spell of the shared machine hits all alike.
Linearity is reported twice: raw time per sample, and sweep time over the same-run matmul time
at each N (the matmul is linear in N, so this cancels drift in machine load between the N).
"""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from fastadmm import _backend, _comm, _losses, _validation, admm
from fastadmm._settings import ADMMSettings

from _data import held_out_set, n_real_train, training_set
from _flops import HIDDEN, admm_sweep_flops, matmul_flops, mlp_sizes
from _measure import MEASURED, interleaved_min, pedantic, record_target

WARM = 6
CASES = [
    # (N, dtype, rounds); the real training set first, then the scaling series, then float32.
    ("real", "float64", 10),
    ("real", "float32", 10),
    (5_000, "float64", 5),
    (10_000, "float64", 5),
    (20_000, "float64", 4),
    (40_000, "float64", 3),
    (60_000, "float64", 4),
    (60_000, "float32", 4),
]
SCALING = (5_000, 10_000, 20_000, 40_000, 60_000)


def build_problem(X, y, dtype, backend="cython"):
    """The driver's _Problem for (X, y), built the way train_admm builds it (default settings)."""
    settings = ADMMSettings(dtype=dtype, backend=backend, batch_size=None).resolved()  # Algorithm 1
    comm = _comm.wrap(None)
    a = _validation.check_admm(X, y, X_test=None, y_test=None, hidden=HIDDEN, loss="mse", max_iter=1, random_state=0,
                               callback=None, settings=settings, overrides={}, init=None, comm=comm)
    T = _losses.targets(a.y_index, len(a.classes), a.dtype)
    kernels = _backend.get(a.settings.backend)
    if hasattr(kernels, "warmup"):
        kernels.warmup()
    problem = admm._Problem(a.X, T, a.sizes, a.loss, a.settings, kernels, a.rng, None, comm, a.row_offset, a.n_global,
                            a.nonzero)
    return problem, a.X, a.y_index, a.classes


def accuracy(weights, X, y_index):
    correct = 0
    for start in range(0, X.shape[0], 8192):
        out = _losses.forward(weights, X[start : start + 8192], True)
        correct += int(np.sum(_losses.predict_index(out) == y_index[start : start + 8192]))
    return correct / X.shape[0]


def _ids(case):
    n, dtype, _ = case
    return f"N={n}-{dtype}"


class Warmed:
    """A problem built by the driver's code and warmed by WARM sweeps, with its sweep callable."""

    def __init__(self, n, dtype):
        X, y, self.source = training_set(n, dtype)
        self.problem, self.X, self.y_index, self.classes = build_problem(X, y, dtype)
        self.timings = {"W": 0.0, "a": 0.0, "z": 0.0}
        with threadpool_limits(1):
            for _ in range(WARM):
                self.sweep()
        for key in self.timings:
            self.timings[key] = 0.0

    def sweep(self):
        with np.errstate(over="ignore", invalid="ignore"):
            return self.problem.sweep(self.timings)


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.heavy) if c[0] == 60_000 else c
                                  for c in CASES], ids=_ids)
def test_admm_iteration(benchmark, case):
    n, dtype, rounds = case
    n = n_real_train() if n == "real" else n
    w = Warmed(n, dtype)
    problem, X = w.problem, w.X
    with threadpool_limits(1):
        (sums, _), t = pedantic(benchmark, w.sweep, rounds=rounds, warmup_rounds=1, group=f"admm-iteration-{dtype}")
    phases = {k: v / (rounds + 1) for k, v in w.timings.items()}

    weights = problem.full_width(problem.compact_weights())
    assert all(np.isfinite(W).all() for W in weights) and np.isfinite(sums).all()
    flops = admm_sweep_flops(mlp_sizes(X.shape[1]), n)
    # The analytic count for this example: 1.86 GFLOP for 784-100-50-10-1 at N = 4,839.
    assert round(admm_sweep_flops([784, 100, 50, 10, 1], 4_839) / 1e9, 2) == 1.86
    info = benchmark.extra_info
    info.update(N=n, dtype=dtype, data=w.source, sizes=mlp_sizes(X.shape[1]), flops=flops,
                iterations_done=problem.iteration, backend=problem.s.backend,
                active_input_features=None if problem.active is None else int(problem.active.shape[0]),
                phase_seconds_per_iteration=phases, train_accuracy=accuracy(weights, X, w.y_index))
    X_test, y_test = held_out_set(dtype)
    if n == n_real_train() and X_test is not None:
        info["test_accuracy"] = accuracy(weights, X_test, np.searchsorted(w.classes, y_test))
    if t is None:
        return

    # Side by side, called in turn: this sweep, the numpy matmul yardstick and (float32) the float64 sweep.
    B = np.random.default_rng(0).standard_normal((X.shape[1], HIDDEN[0])).astype(dtype)
    C = np.empty((n, HIDDEN[0]), dtype)
    fns = {"sweep": w.sweep, "matmul": lambda: np.matmul(X, B, out=C)}
    if dtype == "float32":
        w64 = Warmed(n, "float64")
        fns["sweep_float64"] = w64.sweep
    with threadpool_limits(1):
        best = interleaved_min(fns, repeat=3 if n >= 40_000 else 5)
    del fns
    sweep_s, mm_s = best["sweep"], best["matmul"]
    gflops = flops / sweep_s / 1e9
    mm_gflops = matmul_flops(n, X.shape[1], HIDDEN[0]) / mm_s / 1e9
    info.update(seconds=t.min, GFLOP_per_s=flops / t.min / 1e9, side_by_side_seconds=best,
                side_by_side_GFLOP_per_s=gflops, matmul_GFLOP_per_s=mm_gflops, fraction_of_matmul=gflops / mm_gflops,
                us_per_sample=sweep_s / n * 1e6)
    MEASURED[("iteration", n, dtype)] = (sweep_s, mm_s)
    acc = info.get("test_accuracy", info["train_accuracy"])
    acc_text = f"{acc:.4f} {'test' if 'test_accuracy' in info else 'train'} accuracy after {problem.iteration} iterations"
    if dtype == "float64":
        record_target(benchmark, f"ADMM iteration N={n} float64: GFLOP/s / matmul GFLOP/s", gflops / mm_gflops, 0.7,
                      detail=f"{sweep_s * 1e3:.1f} ms, {gflops:.1f} vs {mm_gflops:.1f} GFLOP/s, {acc_text}")
    else:
        ratio = best["sweep_float64"] / sweep_s
        info["float64_over_float32"] = ratio
        record_target(benchmark, f"ADMM iteration N={n}: float64 time / float32 time", ratio, 1.7, unit="x",
                      detail=f"{best['sweep_float64'] * 1e3:.1f} ms vs {sweep_s * 1e3:.1f} ms float32, {acc_text}")
    if dtype == "float64" and n == SCALING[-1]:
        measured = {m: MEASURED[("iteration", m, "float64")] for m in SCALING if ("iteration", m, "float64") in MEASURED}
        per_sample = {m: s / m * 1e6 for m, (s, _) in measured.items()}
        per_matmul = {m: s / mm for m, (s, mm) in measured.items()}
        info.update(scaling_us_per_sample=per_sample, scaling_sweep_over_matmul=per_matmul)
        if len(per_sample) >= 2:
            spread = max(per_sample.values()) / min(per_sample.values())
            record_target(benchmark, "ADMM iteration float64: max/min time per sample, N=5k..60k", spread, 1.25,
                          at_least=False, unit="x",
                          detail=", ".join(f"{m // 1000}k {v:.2f} us" for m, v in per_sample.items()))
            spread_mm = max(per_matmul.values()) / min(per_matmul.values())
            record_target(benchmark, "ADMM iteration float64: max/min of sweep/matmul time, N=5k..60k", spread_mm, 1.25,
                          at_least=False, unit="x",
                          detail="the same, each N against its same-run matmul (machine-load drift cancels): "
                                 + ", ".join(f"{m // 1000}k {v:.2f}" for m, v in per_matmul.items()))
