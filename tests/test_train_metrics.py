"""train_metrics: what the history's train_loss and train_accuracy measure.

"full" is a forward pass over the training rows with the iteration's final weights; "running" is the
mean over the epoch's batches of each batch's loss and accuracy at the weights before its update
(no pass of its own).  Checked against slow references: a recorded snapshot of the weights before
every mini-batch ADMM batch and a plain forward pass of them; the NumPy SGD reference's own
pre-step losses; and, with a single batch per epoch, the identity running[k] == full[k - 1].
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import fastadmm
from fastadmm import _losses
from fastadmm.minibatch import MiniBatchADMM

import sgd_reference as ref
from toy import blobs


def _quiet(train, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train(*args, **kw)


CASES = [("mse", 2), ("mse", 3), ("hinge", 2), ("cross_entropy", 2), ("cross_entropy", 3)]


@pytest.mark.parametrize("loss, k", CASES)
@pytest.mark.parametrize("train", ["admm", "sgd", "adam"])
def test_one_batch_running_metrics_are_the_previous_iterations_full_ones(train, loss, k):
    # One batch per epoch: its forward pass, before the update, is a full pass with the weights the
    # previous epoch ended with.
    X, y = blobs(n=150, d=6, k=k, seed=k)
    if train == "admm":
        fit = lambda tm: _quiet(fastadmm.train_admm, X, y, hidden=(8,), loss=loss, batch_size=150, max_iter=5,
                                random_state=1, dtype="float64", output_refit=0, train_metrics=tm)
    else:
        kw = dict(optimizer="adam") if train == "adam" else {}
        fit = lambda tm: _quiet(fastadmm.train_sgd, X, y, hidden=(8,), loss=loss, batch_size=150, epochs=5,
                                random_state=1, train_metrics=tm, **kw)
    running, full = fit("running"), fit("full")
    assert running.settings["train_metrics"] == "running" and full.settings["train_metrics"] == "full"
    for W, V in zip(running.weights, full.weights):  # the metrics change nothing else
        np.testing.assert_array_equal(W, V)
    np.testing.assert_allclose(running.history["train_loss"][1:], full.history["train_loss"][:-1], rtol=1e-10)
    assert running.history["train_accuracy"][1:] == full.history["train_accuracy"][:-1]
    assert full.history["train_accuracy"][-1] == full.score(X, y)


@pytest.mark.parametrize("loss, k", CASES)
@pytest.mark.parametrize("order", ["targets_first", "layerwise"])
def test_minibatch_admm_running_metrics_are_the_batches_pre_update_forward_passes(monkeypatch, loss, k, order):
    X, y = blobs(n=203, d=7, k=k, seed=10 + k)  # 203 rows: batches of 29 (7 of them)
    seen = []
    plain_batch = MiniBatchADMM._batch

    def recording(self, rows, sums, timings):
        seen.append((rows.copy(), self.compact_weights()))  # for the raw rows (center_inputs folded in)
        return plain_batch(self, rows, sums, timings)

    monkeypatch.setattr(MiniBatchADMM, "_batch", recording)
    res = _quiet(fastadmm.train_admm, X, y, hidden=(9, 5), loss=loss, batch_size=29, max_iter=3, random_state=2,
                 dtype="float64", sweep_order=order, output_refit=0, train_metrics="running")
    assert len(seen) == 3 * 7
    T = _losses.targets(y, k, np.float64, loss)
    for epoch in range(3):
        loss_sum, correct = 0.0, 0
        for rows, weights in seen[7 * epoch : 7 * (epoch + 1)]:
            out = _losses.forward(weights, X[rows], True)  # every layer's bias in its W's last column
            loss_sum += _losses.loss_sum(out, T[rows], loss)
            correct += int(np.sum(_losses.predict_index(out) == y[rows]))
        assert res.history["train_loss"][epoch] == pytest.approx(loss_sum / len(y), rel=1e-10)
        assert res.history["train_accuracy"][epoch] == correct / len(y)


@pytest.mark.parametrize("loss, k", CASES)
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_sgd_running_metrics_match_the_reference_pre_step_losses(loss, k, optimizer):
    X, y = blobs(n=90, d=5, k=k, seed=20 + k)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    kw = dict(lr=0.02, batch_size=16) | ({"momentum": 0.9} if optimizer == "momentum" else {})
    res = fastadmm.train_sgd(X, y, hidden=(6,), loss=loss, epochs=3, random_state=4, optimizer=optimizer, **kw)
    assert res.settings["train_metrics"] == "running"  # minibatch SGD's default
    running = []
    sizes = [5, 6, 1 if k == 2 and loss != "cross_entropy" else k]
    ref.train(X, y, sizes, iterations=3, seed=4, loss=loss, intercept=True, optimizer=optimizer, running=running,
              **kw)
    np.testing.assert_allclose(res.history["train_loss"], [r[0] for r in running], rtol=1e-9)
    assert res.history["train_accuracy"] == [r[1] for r in running]


def test_defaults_choose_running_where_a_full_pass_would_cost_one():
    X, y = blobs(n=120, d=5, k=2, seed=3)
    X3, y3 = blobs(n=120, d=5, k=3, seed=3)
    admm = lambda *a, **kw: _quiet(fastadmm.train_admm, *a, hidden=(6,), max_iter=2, random_state=0, **kw)
    assert admm(X, y).settings["train_metrics"] == "running"  # mini-batch, one output: no output refit
    assert admm(X3, y3).settings["train_metrics"] == "full"  # the output refit's pass gives the features
    assert admm(X3, y3, output_refit=0).settings["train_metrics"] == "running"
    assert admm(X3, y3, loss="cross_entropy").settings["train_metrics"] == "running"  # no refit with it
    assert admm(X, y, batch_size=None).settings["train_metrics"] == "full"
    sgd = lambda **kw: _quiet(fastadmm.train_sgd, X, y, hidden=(6,), max_iter=2, random_state=0, **kw)
    assert sgd().settings["train_metrics"] == "full"  # gradient descent
    assert sgd(batch_size=32).settings["train_metrics"] == "running"
    assert sgd(batch_size=32, train_metrics="full").settings["train_metrics"] == "full"


def test_running_metrics_of_full_batch_admm_and_bad_values_are_refused():
    X, y = blobs(n=60, d=4, seed=1)
    with pytest.raises(ValueError, match="train_metrics='running'.*full-batch"):
        fastadmm.train_admm(X, y, hidden=(4,), batch_size=None, train_metrics="running")
    for train in (fastadmm.train_admm, fastadmm.train_sgd):
        with pytest.raises(ValueError, match="train_metrics"):
            train(X, y, hidden=(4,), train_metrics="exact")


def test_running_metrics_skip_the_training_forward_pass(monkeypatch):
    # The default mini-batch fit evaluates only X_test: no block of the training rows is passed.
    X, y = blobs(n=200, d=6, seed=5)
    Xt, yt = blobs(n=50, d=6, seed=6)
    passed = []
    plain = MiniBatchADMM.test_outputs

    def counting(self, weights, X_):
        passed.append(X_.shape[0])
        return plain(self, weights, X_)

    monkeypatch.setattr(MiniBatchADMM, "test_outputs", counting)
    res = _quiet(fastadmm.train_admm, X, y, X_test=Xt, y_test=yt, hidden=(6,), max_iter=3, random_state=0)
    assert res.settings["train_metrics"] == "running" and passed == [50, 50, 50]
    passed.clear()
    _quiet(fastadmm.train_admm, X, y, X_test=Xt, y_test=yt, hidden=(6,), max_iter=3, random_state=0,
           train_metrics="full")
    assert passed == [200, 50] * 3
