"""Time to accuracy as a user sees it: the wall time of a fresh default call.

The figure is the wall-clock seconds from the call of ``train_admm(X, y, X_test=..., y_test=...,
callback=stop_at_target)`` (every other argument at its default: mini-batch ADMM, its measured
settings, evaluation every iteration (the test rows by a forward pass; the training metrics as the
default ``train_metrics`` gives them: for MNIST 0/1 the running mean over the epoch's batches, no
pass of their own, as for the compiled SGD and Adam), one BLAS thread) to the first evaluation whose test accuracy
is >= the target: validation, setup, training and the default evaluation all included.  The
callback returns True there, so the call ends as a user's would.  Compilation is apart: every
method runs once (a warm-up round) before the timed rounds, and what that first call cost is
reported separately (``compile_seconds``: the fit's own ``timings["compile"]``; ``first_call_seconds``).

MNIST 0 vs 1 (4,839 train / 2,115 test of the shared sample, pixels / 255 in float64), target 99 %:

* ``admm``: ``train_admm`` with its defaults (784-100-50-10-1, mse, mini-batch ADMM);
  ``admm-float32``: the same with X in float32 (a user passing float32 data);
* ``gd``, ``sgd``, ``adam``: the compiled baseline ``train_sgd`` with its defaults (GD: full batch,
  lr 0.1, momentum 0.5; SGD: batch 64, lr 0.03, momentum 0.9; Adam: batch 64, lr 1e-3);
* ``torch-gd``: PyTorch full-batch gradient descent, lr 0.2, no momentum; ``torch-sgd``: as ``sgd``;
  ``torch-adam``: Adam, lr 1e-3, batch 64 (``_torch_mlp.py``; same net and initial weights as
  ``train_sgd``; one thread), in float32 (PyTorch's default dtype, what its users run) and, as
  ``torch-*-float64``, in float64; timed the same way: from the call to the first evaluation
  >= target, tensors, evaluation and all.  Skipped without torch.

fastadmm's calls pass no random_state (a default call: a new seed each time, so the accuracy
reached varies by round); the PyTorch fits start from train_sgd's weights of seed 0.

The methods run in turn, one fresh call each per round, ROUNDS rounds after the warm-up round, so
that a slow spell of the shared machine hits every method alike; ``extra_info`` has, per method,
the median and the minimum over the rounds, the accuracy reached, the iterations, and the
sweep-only figure beside it (history "elapsed" at that evaluation: training seconds, evaluation and
setup excluded; ``timings["setup"]`` and ``timings["eval"]``).  Targets (recorded, not asserted):
the fresh ADMM call no slower than PyTorch full-batch GD; the ratio to PyTorch Adam (the goal).

Ten digits (``heavy``; 22,699 train / 10,000 test): 784-300-10, targets 95 % and 97 %, ADMM with
``ADMMClassifier``'s defaults (hidden (300,), mse, train_admm's settings: mini-batch, 20 epochs),
compiled SGD and Adam (batch 64, 20 epochs at most) and PyTorch Adam (lr 1e-3, batch 64, float32).
fastadmm's fits get float64 X (pixels / 255) and random_state None, as a default call does.

``test_default_call_per_iteration``: seconds per iteration of a default call with its evaluation
(``timings["total"]`` - ``timings["setup"]``, over the iterations) against the sweep alone
(``timings["train"]`` / n_iter), target <= 1.15x.
"""

from __future__ import annotations

import importlib.util
import os
import time
import warnings

import numpy as np
import pytest

import fastadmm
from fastadmm import _losses

from _data import mnist_split, real_mnist01, scaled
from _measure import pedantic, record_target

HAS_TORCH = importlib.util.find_spec("torch") is not None
ROUNDS = int(os.environ.get("FASTADMM_BENCH_TTA_ROUNDS", "5"))
ROUNDS_TEN = int(os.environ.get("FASTADMM_BENCH_TTA_ROUNDS_TEN", "1"))
GD_CAP, EPOCH_CAP, EPOCH_CAP_TEN = 300, 10, 20  # iteration caps of the gradient methods (ADMM: its default)


@pytest.fixture(scope="module")
def mnist01():
    real, why = real_mnist01()
    if real is None:
        pytest.skip(f"time-to-accuracy needs the real MNIST 0/1 train and test split: {why}")
    return (scaled(real.X_train, "float64"), real.y_train.astype(np.int64), scaled(real.X_test, "float64"),
            real.y_test.astype(np.int64), real.source)


# --------------------------------------------------------------------------------------------------
# One fresh call of a method, stopped at the last target


class StopAt:
    """The callback: records (wall seconds since the call, sweep seconds, iteration, accuracy) at the
    first evaluation reaching each target; returns True once the last one is reached."""

    def __init__(self, targets, t_call):
        self.targets, self.t_call, self.hits, self.best = sorted(targets), t_call, {}, 0.0

    def __call__(self, record):
        wall = time.perf_counter() - self.t_call
        acc = float(record["test_accuracy"])
        self.best = max(self.best, acc)
        for t in self.targets:
            if acc >= t and t not in self.hits:
                self.hits[t] = dict(wall=wall, sweep=float(record["elapsed"]), iteration=int(record["iteration"]),
                                    accuracy=acc)
        return len(self.hits) == len(self.targets)


def fastadmm_call(train, X, y, X_test, y_test, targets, **kw):
    """One fresh call of train_admm / train_sgd (a user's call plus the stopping callback)."""
    t0 = time.perf_counter()
    stop = StopAt(targets, t0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a fit that ends at its cap without reaching tol says so
        res = train(X, y, X_test=X_test, y_test=y_test, callback=stop, **kw)
    wall = time.perf_counter() - t0
    return dict(call=wall, hits=stop.hits, best=stop.best, iterations=res.n_iter,
                setup=res.timings.get("setup", 0.0), eval=res.timings.get("eval", 0.0),
                train=res.timings.get("train", 0.0), compile=res.timings.get("compile", 0.0))


def torch_call(X, y, X_test, y_test, targets, hidden, **kw):
    import _torch_mlp

    t0 = time.perf_counter()
    T = _losses.targets(y, int(y.max()) + 1, X.dtype, "mse")
    offset = time.perf_counter() - t0  # the targets' array, before the fit's own clock starts
    h = _torch_mlp.fit(X, T, X_test, y_test, seed=0, hidden=hidden, stop_at=max(targets), **kw)
    wall = time.perf_counter() - t0
    hits = {}
    for t in sorted(targets):
        k = next((i for i, a in enumerate(h["test_accuracy"]) if a >= t), None)
        if k is not None:
            hits[t] = dict(wall=offset + h["wall"][k], sweep=h["elapsed"][k], iteration=h["iteration"][k],
                           accuracy=h["test_accuracy"][k])
    return dict(call=wall, hits=hits, best=max(h["test_accuracy"]), iterations=h["iteration"][-1], setup=None,
                eval=None, train=h["elapsed"][-1], compile=0.0)


def mnist01_methods(X, y, X_test, y_test):
    """name -> a function making one fresh call to TARGET_01 (MNIST 0/1)."""
    T = (TARGET_01,)
    X32, X_test32 = X.astype(np.float32), X_test.astype(np.float32)
    methods = {
        "admm": lambda: fastadmm_call(fastadmm.train_admm, X, y, X_test, y_test, T),
        "admm-float32": lambda: fastadmm_call(fastadmm.train_admm, X32, y, X_test32, y_test, T),
        "gd": lambda: fastadmm_call(fastadmm.train_sgd, X, y, X_test, y_test, T, max_iter=GD_CAP),
        "sgd": lambda: fastadmm_call(fastadmm.train_sgd, X, y, X_test, y_test, T, batch_size=64, epochs=EPOCH_CAP),
        "adam": lambda: fastadmm_call(fastadmm.train_sgd, X, y, X_test, y_test, T, batch_size=64, epochs=EPOCH_CAP,
                                      optimizer="adam"),
    }
    if HAS_TORCH:
        hidden = (100, 50, 10)
        for suffix, (Xa, Xb) in (("", (X32, X_test32)), ("-float64", (X, X_test))):
            methods.update({
                f"torch-gd{suffix}": lambda Xa=Xa, Xb=Xb: torch_call(Xa, y, Xb, y_test, T, hidden, method="gd",
                                                                    iterations=GD_CAP, lr=0.2),
                f"torch-sgd{suffix}": lambda Xa=Xa, Xb=Xb: torch_call(Xa, y, Xb, y_test, T, hidden, method="sgd",
                                                                     iterations=EPOCH_CAP,
                                                                     lr=fastadmm.sgd.DEFAULT_LR["sgd"],
                                                                     momentum=fastadmm.sgd.DEFAULT_MOMENTUM["sgd"],
                                                                     batch_size=64),
                f"torch-adam{suffix}": lambda Xa=Xa, Xb=Xb: torch_call(Xa, y, Xb, y_test, T, hidden, method="adam",
                                                                      iterations=EPOCH_CAP, lr=1e-3, batch_size=64),
            })
    return methods


TARGET_01 = 0.99


def run_rounds(benchmark, methods, rounds, group):
    """A warm-up round, then `rounds` rounds of every method in turn; returns ({name: [outcome per
    timed round]}, {name: the warm-up round's outcome})."""
    calls = {name: [] for name in methods}

    def one_round():
        for name, fn in methods.items():
            calls[name].append(fn())

    pedantic(benchmark, one_round, rounds=rounds, warmup_rounds=1, group=group)
    first = {name: outs[0] for name, outs in calls.items()}
    timed = {name: outs[1:] if len(outs) > 1 else outs for name, outs in calls.items()}
    return timed, first


def summarize(outcomes, first, targets):
    """Per method and target: medians / minima of the wall and sweep seconds, accuracy, iterations."""
    table = {}
    for name, outs in outcomes.items():
        row = {"rounds": len(outs), "best_test_accuracy": max(o["best"] for o in outs) if outs else None,
               "iterations_run": [o["iterations"] for o in outs]}
        w = first.get(name)
        if w is not None:
            row.update(first_call_seconds=w["call"], compile_seconds=w["compile"])
        for key in ("setup", "eval", "train"):
            vals = [o[key] for o in outs if o[key] is not None]
            row[f"{key}_seconds_median"] = float(np.median(vals)) if vals else None
        for t in targets:
            hits = [o["hits"].get(t) for o in outs]
            reached = [h for h in hits if h is not None]
            pct = f"{t * 100:g}"
            if len(reached) < len(hits) or not reached:
                row[f"to_{pct}"] = None
                continue
            walls, sweeps = [h["wall"] for h in reached], [h["sweep"] for h in reached]
            row[f"to_{pct}"] = {
                "seconds_median": float(np.median(walls)), "seconds_min": float(np.min(walls)),
                "sweep_only_seconds_median": float(np.median(sweeps)),
                "accuracy_reached": sorted({h["accuracy"] for h in reached}),
                "iteration": sorted({h["iteration"] for h in reached}),
            }
        table[name] = row
    return table


def seconds(table, name, t):
    entry = table.get(name, {}).get(f"to_{t * 100:g}")
    return None if entry is None else entry["seconds_median"]


def ratio_target(benchmark, label, admm, other, target=1.0):
    if admm is None or other is None:
        value, detail = None, ("ADMM did not reach the target" if admm is None else "the other did not reach it")
    else:
        value, detail = admm / other, f"ADMM {admm:.3f} s vs {other:.3f} s (medians, same run)"
    record_target(benchmark, label, value, target, at_least=False, unit="x", detail=detail)
    return value


def test_time_to_99_fresh_call(benchmark, mnist01):
    X, y, X_test, y_test, source = mnist01
    methods = mnist01_methods(X, y, X_test, y_test)
    outcomes, first = run_rounds(benchmark, methods, ROUNDS, "time-to-99-fresh-call")
    table = summarize(outcomes, first, (TARGET_01,))
    info = benchmark.extra_info
    info.update(data=source, target=TARGET_01, methods=table,
                seconds_are="wall of a fresh call to the first evaluation >= target; median (and min) over rounds",
                what_is_timed="one round: every method's fresh call in turn")
    admm, gd, adam = (seconds(table, n, TARGET_01) for n in ("admm", "torch-gd", "torch-adam"))
    for other in ("torch-gd", "torch-adam", "torch-gd-float64", "torch-adam-float64", "gd", "sgd", "adam"):
        o = seconds(table, other, TARGET_01)
        info[f"ratio_admm_to_{other}"] = None if admm is None or o is None else admm / o
    assert table["admm"]["best_test_accuracy"] > 0.9, "ADMM did not learn"
    if HAS_TORCH:
        ratio_target(benchmark, "fresh ADMM call to 99 % / PyTorch full-batch GD's (float32)", admm, gd)
        ratio_target(benchmark, "fresh ADMM call to 99 % / PyTorch Adam's (float32; goal)", admm, adam)


@pytest.mark.heavy
def test_time_to_95_97_ten_digits(benchmark):
    try:
        X, y, X_test, y_test = mnist_split()
    except SystemExit as exc:
        pytest.skip(str(exc))
    targets, hidden = (0.95, 0.97), (300,)
    methods = {
        "admm": lambda: fastadmm_call(fastadmm.train_admm, X, y, X_test, y_test, targets, hidden=hidden),
        "sgd": lambda: fastadmm_call(fastadmm.train_sgd, X, y, X_test, y_test, targets, hidden=hidden, batch_size=64,
                                     epochs=EPOCH_CAP_TEN),
        "adam": lambda: fastadmm_call(fastadmm.train_sgd, X, y, X_test, y_test, targets, hidden=hidden, batch_size=64,
                                      epochs=EPOCH_CAP_TEN, optimizer="adam"),
    }
    if HAS_TORCH:
        X32, X_test32 = X.astype(np.float32), X_test.astype(np.float32)  # PyTorch's default dtype
        methods["torch-adam"] = lambda: torch_call(X32, y, X_test32, y_test, targets, hidden, method="adam",
                                                   iterations=EPOCH_CAP_TEN, lr=1e-3, batch_size=64)
    # Warm-up on 500 rows (compilation, first touch), so that the one timed round is a user's later call.
    Xs, ys = X[:500], y[:500]
    for kw in ({}, {"batch_size": 64, "epochs": 1}, {"batch_size": 64, "epochs": 1, "optimizer": "adam"}):
        fastadmm_call(fastadmm.train_admm if not kw else fastadmm.train_sgd, Xs, ys, Xs, ys, (1.0,), hidden=hidden,
                      **({"max_iter": 1} if not kw else kw))
    if HAS_TORCH:
        torch_call(Xs.astype(np.float32), ys, Xs.astype(np.float32), ys, (1.0,), hidden, method="adam", iterations=1,
                   lr=1e-3, batch_size=64)
    outcomes = {name: [] for name in methods}

    def one_round():
        for name, fn in methods.items():
            outcomes[name].append(fn())

    pedantic(benchmark, one_round, rounds=ROUNDS_TEN, warmup_rounds=0, group="time-to-accuracy-ten-digits")
    table = summarize(outcomes, {}, targets)
    info = benchmark.extra_info
    info.update(data=f"MNIST ten digits, {X.shape[0]} train / {X_test.shape[0]} test", targets=list(targets),
                hidden=list(hidden), methods=table,
                seconds_are="wall of a fresh call to the first evaluation >= target; median over rounds")
    for t in targets:
        admm = seconds(table, "admm", t)
        for other in ("sgd", "adam", "torch-adam"):
            o = seconds(table, other, t)
            info[f"ratio_admm_to_{other}_at_{t * 100:g}"] = None if admm is None or o is None else admm / o


def test_default_call_per_iteration(benchmark, mnist01):
    """Seconds per iteration of a default call (evaluation and the fit loop included) vs the sweep alone."""
    X, y, X_test, y_test, source = mnist01
    runs = []

    def call():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = fastadmm.train_admm(X, y, X_test=X_test, y_test=y_test, max_iter=ITERS, random_state=0)
        runs.append(res.timings | {"n_iter": res.n_iter})
        return res

    pedantic(benchmark, call, rounds=3, warmup_rounds=1, group="default-call-per-iteration")
    timed = runs[1:] or runs  # the first was the warm-up (with --benchmark-disable the only one)
    per_iter = [(t["total"] - t["setup"] - t["compile"]) / t["n_iter"] for t in timed]
    sweep = [t["train"] / t["n_iter"] for t in timed]
    evals = [t["eval"] / t["n_iter"] for t in timed]
    ratios = [p / s for p, s in zip(per_iter, sweep)]
    info = benchmark.extra_info
    info.update(data=source, iterations=ITERS, seconds_per_iteration_default_call=per_iter,
                seconds_per_iteration_sweep_only=sweep, eval_seconds_per_iteration=evals, ratios=ratios,
                ratio_median=float(np.median(ratios)), setup_seconds=[t["setup"] for t in timed])
    record_target(benchmark, "default call per iteration / sweep alone (MNIST 0/1, mini-batch)",
                  float(np.median(ratios)), 1.15, at_least=False, unit="x",
                  detail=f"{np.median(per_iter):.4f} s vs {np.median(sweep):.4f} s per epoch (medians)")


ITERS = 5
