"""Time to 99 % test accuracy on MNIST 0 vs 1 (4,839 train / 2,115 test, pixels / 255).

Methods, all on 784-100-50-10-1 with a first-layer bias, squared-error loss, one thread, float64
unless the id says otherwise, random_state / seed 0:

* ``admm``: ``train_admm`` with its defaults (hidden (100, 50, 10), loss "mse"), ADMM_ITERS sweeps
  at most (it may stop earlier with status "converged");
* ``gd``, ``sgd``: the compiled baseline ``train_sgd`` with its measured defaults (GD: lr 0.1,
  momentum 0.5; SGD: batch 64, lr 0.03, momentum 0.9);
* ``torch-gd``, ``torch-sgd``: the same two in PyTorch (same hyper-parameters, initial weights and
  batches, see _torch_mlp.py); ``torch-adam``: Adam (lr 1e-3, batch 64).  Skipped without torch.

Every method is evaluated after every iteration (GD step, SGD epoch or ADMM sweep), outside the
training clock.  The benchmark's own time is the whole call (setup, training and evaluation);
the figure that counts is ``extra_info["seconds_to_99"]``: the training seconds (history
"elapsed", evaluation excluded) at the first evaluation with test accuracy >= 0.99.
``seconds_to_99_with_setup`` adds the fit's setup (ADMM: the input Gram, its inverse and the
initial forward pass; gradient methods: drawing the weights; compilation is never counted).

Targets: ADMM (float64) no slower to 99 % than PyTorch full-batch GD; and, the goal beyond,
no slower than minibatch Adam (recorded as the ratio ADMM / Adam).
"""

from __future__ import annotations

import importlib.util
import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import fastadmm

from _data import real_mnist01, scaled
from _measure import MEASURED, pedantic, record_target

ADMM_ITERS = 20
GD_STEPS = 30
SGD_EPOCHS = 3
TARGET_ACC = 0.99
HAS_TORCH = importlib.util.find_spec("torch") is not None
TORCH_SKIP = pytest.mark.skipif(not HAS_TORCH, reason="PyTorch is not installed (pip install torch==2.13.0, CPU build)")

METHODS = [
    pytest.param("admm-float64", id="admm-float64"),
    pytest.param("admm-float32", id="admm-float32"),
    pytest.param("gd", id="gd"),
    pytest.param("sgd", id="sgd"),
    pytest.param("torch-gd", id="torch-gd", marks=TORCH_SKIP),
    pytest.param("torch-sgd", id="torch-sgd", marks=TORCH_SKIP),
    pytest.param("torch-adam", id="torch-adam", marks=TORCH_SKIP),
]
ROUNDS = {"admm-float64": 3, "admm-float32": 3, "gd": 3, "sgd": 5, "torch-gd": 3, "torch-sgd": 5, "torch-adam": 5}


@pytest.fixture(scope="module")
def mnist01():
    real, why = real_mnist01()
    if real is None:
        pytest.skip(f"time-to-accuracy needs the real MNIST 0/1 train and test split: {why}")
    return real


def trajectory(history, setup_seconds=0.0):
    """What a history says about reaching TARGET_ACC: first reached, and held to the end of the budget."""
    acc = [float(a) for a in history["test_accuracy"]]
    elapsed = [float(e) for e in history["elapsed"]]
    its = [int(i) for i in history["iteration"]]
    first = next((k for k, a in enumerate(acc) if a >= TARGET_ACC), None)
    stays = next((k for k in range(len(acc)) if all(a >= TARGET_ACC for a in acc[k:])), None)
    return {
        "seconds_to_99": None if first is None else elapsed[first],
        "seconds_to_99_with_setup": None if first is None else elapsed[first] + setup_seconds,
        "seconds_to_sustained_99": None if stays is None else elapsed[stays],
        "iterations_to_99": None if first is None else its[first],
        "accuracy_at_99_point": None if first is None else acc[first],
        "stays_99_from_iteration": None if stays is None else its[stays],
        "final_test_accuracy": acc[-1] if acc else None,
        "best_test_accuracy": max(acc) if acc else None,
        "iterations": its[-1] if its else 0,
        "seconds_per_iteration": elapsed[-1] / its[-1] if its else None,
        "setup_seconds": setup_seconds,
    }


SECONDS_KEYS = ("seconds_to_99", "seconds_to_99_with_setup", "seconds_to_sustained_99", "seconds_per_iteration",
                "setup_seconds")


def _fastadmm_fit(method, X, y, X_test, y_test):
    if method.startswith("admm"):
        dtype = method.split("-")[1]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fastadmm.ConvergenceWarning)  # a fixed budget, not a tolerance
            res = fastadmm.train_admm(X.astype(dtype), y, X_test=X_test.astype(dtype), y_test=y_test,
                                      hidden=(100, 50, 10), loss="mse", max_iter=ADMM_ITERS, random_state=0, threads=1,
                                      batch_size=None)  # the full-batch sweep of Algorithm 1
    elif method == "gd":
        res = fastadmm.train_sgd(X, y, X_test=X_test, y_test=y_test, max_iter=GD_STEPS, random_state=0, threads=1)
    else:
        res = fastadmm.train_sgd(X, y, X_test=X_test, y_test=y_test, batch_size=64, epochs=SGD_EPOCHS,
                                 random_state=0, threads=1)
    return res.history, res.timings.get("setup", 0.0), res.status


def _torch_fit(method, X, y, X_test, y_test):
    import _torch_mlp

    T = y.astype(X.dtype)[:, None]
    if method == "torch-gd":
        kw = dict(method="gd", iterations=GD_STEPS, lr=fastadmm.sgd.DEFAULT_LR["gd"],
                  momentum=fastadmm.sgd.DEFAULT_MOMENTUM["gd"])
    elif method == "torch-sgd":
        kw = dict(method="sgd", iterations=SGD_EPOCHS, lr=fastadmm.sgd.DEFAULT_LR["sgd"],
                  momentum=fastadmm.sgd.DEFAULT_MOMENTUM["sgd"], batch_size=64)
    else:
        kw = dict(method="adam", iterations=SGD_EPOCHS, lr=1e-3, batch_size=64)
    return _torch_mlp.fit(X, T, X_test, y_test, seed=0, **kw), 0.0, "max_iter"


@pytest.mark.parametrize("method", METHODS)
def test_time_to_99(benchmark, mnist01, method):
    X, X_test = scaled(mnist01.X_train, "float64"), scaled(mnist01.X_test, "float64")
    y, y_test = mnist01.y_train.astype(np.int64), mnist01.y_test.astype(np.int64)
    fit = _torch_fit if method.startswith("torch") else _fastadmm_fit
    runs = []

    def run():
        with threadpool_limits(1):
            out = fit(method, X, y, X_test, y_test)
        runs.append(out)
        return out

    _, t = pedantic(benchmark, run, rounds=ROUNDS[method], warmup_rounds=1, group="time-to-99")
    timed = runs[1:] if len(runs) > 1 else runs  # the first was the warm-up round
    trajs = [trajectory(h, setup) for h, setup, _ in timed]
    # The runs are deterministic (one thread, seed 0): same accuracies, only the clock differs.
    assert len({tuple(tr["iterations_to_99"] for tr in trajs)}) == 1
    info = benchmark.extra_info
    traj = dict(trajs[0])
    for key in SECONDS_KEYS:  # the clock varies between rounds (shared machine): min, and the median beside it
        values = [tr[key] for tr in trajs if tr[key] is not None]
        traj[key] = float(np.min(values)) if values else None
        traj[key + "_median"] = float(np.median(values)) if values else None
    info.update(method=method, data=mnist01.source, status=timed[-1][2], rounds_of_history=len(trajs),
                seconds_are="min over the timed rounds (median in *_median)", **traj)
    assert traj["best_test_accuracy"] is not None and traj["best_test_accuracy"] > 0.9, "the fit did not learn"
    for key in ("seconds_to_99", "seconds_to_99_with_setup", "seconds_to_sustained_99"):
        MEASURED[(key, method)] = traj[key]

    if method == "admm-float32":
        record_target(benchmark, "ADMM float32 reaches 99 % test accuracy (accuracy bar)", traj["best_test_accuracy"],
                      TARGET_ACC, detail=f"first after {traj['iterations_to_99']} iterations")
    if method == "torch-gd":
        for key, label in (("seconds_to_99", "time to 99 %"), ("seconds_to_sustained_99", "time to sustained 99 %"),
                           ("seconds_to_99_with_setup", "time to 99 % incl. setup")):
            _ratio_target(benchmark, f"ADMM {label} / torch full-batch GD's", MEASURED.get((key, "admm-float64")),
                          traj[key], 1.0)
    if method == "torch-adam":
        _ratio_target(benchmark, "ADMM time to 99 % / torch Adam's (goal)", MEASURED.get(("seconds_to_99", "admm-float64")),
                      traj["seconds_to_99"], 1.0)


def _ratio_target(benchmark, name, admm, other, target):
    if admm is None or other is None:
        detail = ("ADMM did not reach 99 % (or did not run)" if admm is None else "the other method did not reach 99 %")
        value = None if admm is None else 0.0
    else:
        value = admm / other
        detail = f"ADMM {admm:.3f} s vs {other:.3f} s"
    record_target(benchmark, name, value, target, at_least=False, unit="x", detail=detail)
