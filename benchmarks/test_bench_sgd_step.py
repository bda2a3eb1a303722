"""The compiled SGD step against PyTorch's, batch 64, 784-100-50-10-1 (first-layer bias), MSE.

Two regimes, both timed per step:

* ``epoch``: one pass over the 4,839 MNIST 0/1 training rows in minibatches of 64 (76 steps), as
  ``train_sgd`` runs it: the compiled ``_epoch`` kernel (gather, forward, backward, momentum
  update, all in one Numba call) against a PyTorch loop over the same permutation (index gather,
  zero_grad, forward, backward, ``SGD.step``).  Seconds per step = epoch time / 76.
* ``single``: one step on a fixed batch of 64 rows, one call each (the compiled call's dispatch
  overhead included; no gather).

Same initial weights, lr 0.03 and momentum 0.9 for both; one thread.  Before timing, one compiled
step and one torch step from the same weights on the same batch are compared (they must agree to
rounding: same arithmetic, different code).  Target: compiled >= 2x faster than PyTorch (float64,
both regimes recorded; float32 for information), from the two called in turn on the same batches
after the torch benchmark (``extra_info["side_by_side_seconds_per_step"]``).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from fastadmm import _inputs, sgd

from _data import base_digits, scaled
from _flops import mlp_sizes
from _measure import interleaved_min, pedantic, record_target

BATCH = 64
LR, MOMENTUM = sgd.DEFAULT_LR["sgd"], sgd.DEFAULT_MOMENTUM["sgd"]
HAS_TORCH = importlib.util.find_spec("torch") is not None
ROUNDS = {"epoch": 15, "single": 200}


def _data(dtype):
    digits = base_digits()
    X = scaled(digits.X_train, dtype)
    T = digits.y_train.astype(dtype)[:, None].copy()
    return X, T, digits.source


class Compiled:
    """train_sgd's buffers and kernel call for one regime."""

    def __init__(self, X, T, weights, rows):
        # As train_sgd does (skip_zero_inputs=True): the all-zero pixels leave the first layer.
        self.initial, self.active = weights, _inputs.kept_features(_inputs.nonzero_features(X))
        if self.active is not None:
            X = np.ascontiguousarray(X[:, self.active])
        self.X, self.T = X, T
        dt = X.dtype
        self.net = sgd._Net([X.shape[1], *mlp_sizes(X.shape[1])[1:]], True, dt, rows)
        self.net.set_weights([_inputs.take_columns(weights[0], self.active, True), *weights[1:]])
        self.xbuf, self.tbuf = np.empty(rows * X.shape[1], dt), np.empty(rows * T.shape[1], dt)
        sgd._warmup(dt, True)  # compile (or load from Numba's cache) outside any timing

    def weights(self):
        return sgd._full_width(self.initial, self.net.weights(), self.active, True)

    def run(self, order):
        return sgd._call_epoch(self.net, self.X, self.T, order, BATCH, LR, MOMENTUM, False, 0, self.xbuf, self.tbuf)


class Torch:
    def __init__(self, X, T, weights):
        import torch

        import _torch_mlp

        _torch_mlp.one_thread()
        self.torch, self.mse = torch, _torch_mlp.mse
        self.net = _torch_mlp.TorchMLP(weights, X.dtype)
        self.opt = _torch_mlp.make_optimizer("sgd", self.net.params, LR, MOMENTUM)
        self.X, self.T = torch.from_numpy(X), torch.from_numpy(T)

    def weights(self):
        return self.net.weights()

    def step(self, xb, tb):
        self.opt.zero_grad(set_to_none=True)
        loss = self.mse(self.net(xb), tb)
        loss.backward()
        self.opt.step()
        return loss

    def run(self, order):
        if order.shape[0] == 0:
            return self.step(self.X[:BATCH], self.T[:BATCH])
        idx = self.torch.from_numpy(order)
        for start in range(0, idx.shape[0], BATCH):
            b = idx[start : start + BATCH]
            self.step(self.X[b], self.T[b])


def _max_rel_diff(a, b):
    return max(float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-300)) for x, y in zip(a, b))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("regime", ["epoch", "single"])
@pytest.mark.parametrize("impl", ["compiled", pytest.param("torch", marks=pytest.mark.skipif(
    not HAS_TORCH, reason="PyTorch is not installed (pip install torch==2.13.0, CPU build)"))])
def test_sgd_step(benchmark, impl, regime, dtype):
    X, T, source = _data(dtype)
    rng = np.random.default_rng(0)
    weights = sgd._initial_weights(rng, mlp_sizes(X.shape[1]), None, True, np.dtype(dtype))
    rows = BATCH
    if regime == "single":
        X, T = np.ascontiguousarray(X[:BATCH]), np.ascontiguousarray(T[:BATCH])
        order = np.empty(0, np.int64)  # the rows in order, no gather: exactly one step
    else:
        order = rng.permutation(X.shape[0]).astype(np.int64)
    n_steps = 1 if regime == "single" else -(-X.shape[0] // BATCH)
    info = benchmark.extra_info
    info.update(impl=impl, regime=regime, dtype=dtype, batch=BATCH, steps_per_call=n_steps, data=source,
                lr=LR, momentum=MOMENTUM)

    with threadpool_limits(1):
        if impl == "compiled":
            model = Compiled(X, T, weights, rows)
            if HAS_TORCH and regime == "single":  # the two steps do the same arithmetic
                ref = Torch(X, T, weights)
                model.run(order)
                ref.run(order)
                diff = _max_rel_diff(model.weights(), ref.weights())
                info["max_rel_diff_vs_torch_after_one_step"] = diff
                assert diff < (1e-10 if dtype == "float64" else 1e-4), diff
                model = Compiled(X, T, weights, rows)
        else:
            model = Torch(X, T, weights)
        rounds = ROUNDS[regime]
        _, t = pedantic(benchmark, lambda: model.run(order), rounds=rounds, warmup_rounds=max(2, rounds // 10),
                        group=f"sgd-step-{regime}-{dtype}")
    weights_after = model.weights()
    assert all(np.isfinite(W).all() for W in weights_after)
    info["train_loss_after"], info["train_accuracy_after"] = _loss_accuracy(weights_after, X, T)
    if t is None:
        return
    per_step = t.min / n_steps
    info.update(seconds_per_step=per_step, median_seconds_per_step=t.median / n_steps)
    if impl == "torch":
        # The target: both implementations from the same weights, called in turn on the same batches
        # (fastest call of each), so a slow spell of the shared machine hits both alike.
        with threadpool_limits(1):
            mine, theirs = Compiled(X, T, weights, rows), Torch(X, T, weights)
            best = interleaved_min({"compiled": lambda: mine.run(order), "torch": lambda: theirs.run(order)},
                                   repeat=ROUNDS[regime] // 2, warmup=2)
        ratio = best["torch"] / best["compiled"]
        info.update(side_by_side_seconds_per_step={k: v / n_steps for k, v in best.items()}, torch_over_compiled=ratio)
        detail = (f"compiled {best['compiled'] / n_steps * 1e6:.0f} us vs torch {best['torch'] / n_steps * 1e6:.0f} us "
                  "per step")
        if dtype == "float64":
            record_target(benchmark, f"SGD step batch 64 ({regime}) float64: torch time / compiled time", ratio, 2.0,
                          unit="x", detail=detail)


def _loss_accuracy(weights, X, T):
    """(mean training loss, training accuracy) of the weights after the timed steps."""
    from fastadmm import _losses

    out = _losses.forward(weights, X, True)
    acc = float(np.mean(_losses.predict_index(out) == T[:, 0].astype(np.intp)))
    return float(_losses.loss_sum(out, T, "mse") / X.shape[0]), acc
