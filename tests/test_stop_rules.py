"""The stop rules of the fit loop: the training-loss rule of mini-batch ADMM and SGD, the validation
rule with the best epoch's weights (train_admm's and train_sgd's validation_fraction), tol resolved per
method, and the errors that name a bad value."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

import fastadmm
from fastadmm import ADMMSettings, _comm, _fit, _validation, train_admm
from fastadmm._settings import FULL_BATCH_TOL, MINI_BATCH_TOL
from fastadmm.sgd import DEFAULT_TOL, train_sgd

from toy import WeightListStep, blobs


# -- the rules on crafted histories ----------------------------------------------------------------


def _weight_for(score):
    """The one weight w whose model w * x classifies exactly round(1000 * score) of the validation rows
    x = 1..1000 (all of class 1) as class 1 (w x > 0.5)."""
    return 0.5 / (1000.5 - 1000 * score)


class CraftedStep(WeightListStep):
    """A step object whose epoch k reports the running loss losses[k-1] and whose weights after it
    give the validation accuracy scores[k-1] on X_VAL (and are told apart by their value)."""

    kind = "crafted"

    def __init__(self, losses, scores=None):
        self.comm = _comm.SingleProcess()
        self.X = np.ones((4, 1))
        self.iteration = 0
        self.losses, self.scores = losses, scores
        self.W = [np.zeros((1, 1))]

    def sweep(self, timings):
        self.iteration += 1
        k = self.iteration
        w = _weight_for(self.scores[k - 1]) if self.scores is not None else float(k)
        self.W = [np.full((1, 1), w)]
        return np.zeros(0), None

    def running_counts(self):
        return self.losses[self.iteration - 1] * self.X.shape[0], 0


X_VAL = np.arange(1.0, 1001.0)[:, None]
Y_VAL = np.ones(1000, np.intp)


def _run(losses, scores=None, max_iter=None, strict=True, **plan):
    step = CraftedStep(losses, scores)
    y = np.zeros(4, np.intp)
    plan = _fit.Plan(**{"method": "sgd", "max_iter": max_iter or len(losses), "eval_every": 1,
                        "train_metrics": "running", "stop_rule": "train_loss", "iteration_name": "epoch",
                        "result_fields": dict(classes=np.array([0, 1]), loss="mse", settings={}, intercept=False),
                        **plan})
    data = _fit.Data(y, y[:, None].astype(float))
    if scores is not None:
        data = _fit.Data(y, y[:, None].astype(float), X_val=X_VAL, y_val_index=Y_VAL)
    timings = {"train": 0.0, "eval": 0.0, "total": 0.0}
    with warnings.catch_warnings():
        if strict:
            warnings.simplefilter("error")  # neither rule warns, nor does max_iter with the training-loss rule
        return _fit.run(step, plan, data, timings, time.perf_counter())


def _loss_rule(losses, tol, patience):
    """The training-loss rule, written out: the epoch it stops at, or None."""
    best, count = np.inf, 0
    for k, loss in enumerate(losses, 1):
        improved = loss < best - tol * abs(best) if np.isfinite(best) else True
        best = min(best, loss)
        count = 0 if improved else count + 1
        if tol > 0 and count >= patience:
            return k
    return None


def test_the_training_loss_rule_stops_after_n_iter_no_change_epochs_without_a_relative_gain():
    losses = [1.0, 0.5, 0.4, 0.39999, 0.4, 0.41, 0.3, 0.2]
    # 0.39999 is below the best 0.4, but not by tol = 1e-3 of it: epochs 4, 5, 6 gain nothing
    res = _run(losses, tol=1e-3, n_iter_no_change=3)
    assert res.status == "converged" and res.n_iter == 6
    assert res.message.startswith("converged at epoch 6: the training loss has not fallen below its best (0.39999)")
    assert res.history["train_loss"] == losses[:6]
    np.testing.assert_array_equal(res.weights[0], [[6.0]])  # no validation: the last weights
    # one epoch more of patience: epoch 7 improves, the fit runs on
    res = _run(losses, tol=1e-3, n_iter_no_change=4)
    assert res.status == "max_iter" and res.n_iter == 8
    # a gain of more than tol relative to the best resets the count
    res = _run([1.0, 0.9, 0.9, 0.85, 0.85, 0.85, 0.85], tol=1e-2, n_iter_no_change=3)
    assert res.n_iter == 7 and res.status == "converged"
    # tol=0: no training-loss rule
    assert _run([1.0] * 30, tol=0.0, n_iter_no_change=2).status == "max_iter"


@pytest.mark.parametrize("seed", range(5))
def test_the_training_loss_rule_matches_its_written_out_form(seed):
    rng = np.random.default_rng(seed)
    losses = list(np.cumprod(1 - rng.uniform(-0.02, 0.05, 60)))  # a noisy fall
    tol, patience = [1e-3, 1e-2, 3e-2][seed % 3], 1 + seed
    expected = _loss_rule(losses, tol, patience)
    res = _run(losses, tol=tol, n_iter_no_change=patience)
    assert res.n_iter == (expected or 60) and res.status == ("converged" if expected else "max_iter")


def test_the_training_loss_rule_judges_evaluations_only():
    losses = [1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]
    res = _run(losses, tol=1e-3, n_iter_no_change=2, eval_every=2)  # evaluations at 2, 4, 6, ...
    assert res.history["iteration"] == [2, 4, 6] and res.n_iter == 6 and res.status == "converged"


def test_the_objective_rule_ignores_the_training_loss():
    with pytest.warns(fastadmm.ConvergenceWarning, match="stopped at max_iter=12 before reaching tol=0.001"):
        res = _run([1.0] * 12, tol=1e-3, n_iter_no_change=2, stop_rule="objective", strict=False)
    assert res.status == "max_iter" and res.n_iter == 12


def test_the_validation_rule_stops_and_keeps_the_best_epochs_weights():
    scores = [0.5, 0.7, 0.7, 0.6, 0.8, 0.8, 0.8, 0.7, 0.9, 0.9]
    losses = [1.0] * 10  # flat: the training-loss rule would stop at epoch 3; with validation it is off
    res = _run(losses, scores, tol=0.0, n_iter_no_change=3)
    assert res.history["validation_accuracy"] == scores[:8]
    assert res.status == "converged" and res.n_iter == 8
    assert res.message.startswith("converged at epoch 8: the validation accuracy has not risen above its best (0.8000)")
    assert "kept the weights of epoch 5" in res.message and res.state is None
    np.testing.assert_array_equal(res.weights[0], [[_weight_for(0.8)]])  # epoch 5's, the first of the equals
    # a relative tol: 0.8 -> 0.8 + 1 % of it is not a gain, 0.9 is
    res = _run(losses, [0.5, 0.8, 0.805, 0.805, 0.9, 0.9, 0.9], tol=1e-2, n_iter_no_change=2)
    assert res.n_iter == 4 and "kept the weights of epoch 3" in res.message  # 0.805 > 0.8: the best, not a gain


def test_the_validation_rule_keeps_the_best_weights_however_the_fit_ends():
    scores = [0.5, 0.9, 0.6, 0.7]
    res = _run([1.0] * 4, scores, tol=0.0, n_iter_no_change=10)
    assert res.status == "max_iter" and res.n_iter == 4 and "kept the weights of epoch 2" in res.message
    np.testing.assert_array_equal(res.weights[0], [[_weight_for(0.9)]])
    # the best is the last: its state is kept (a fit to resume from)
    res = _run([1.0] * 3, [0.5, 0.6, 0.7], tol=0.0, n_iter_no_change=10)
    assert res.state == {"kind": "crafted", "iteration": 3} and "the last epoch's weights have the best validation accuracy" in res.message


# -- validation_fraction in train_admm and train_sgd -----------------------------------------------


def test_validation_rows_are_the_last_rows_of_every_class():
    y = np.array([0, 1, 0, 0, 1, 2, 0, 1, 1, 0, 2, 1])  # class 0: rows 0 2 3 6 9; 1: 1 4 7 8 11; 2: 5 10
    train, val = _validation.validation_rows(y, 0.4)
    assert val.tolist() == [6, 8, 9, 10, 11]  # two of 0 and of 1, one of 2
    assert train.tolist() == [0, 1, 2, 3, 4, 5, 7]
    train, val = _validation.validation_rows(np.array([0, 0, 0, 1]), 0.5)  # a class of one stays whole
    assert val.tolist() == [1, 2] and train.tolist() == [0, 3]
    with pytest.raises(ValueError, match=r"validation_fraction=0.5 .*every class has a single sample.*"
                                         r"validation_fraction=None"):
        _validation.validation_rows(np.array([0, 1, 2]), 0.5)


FITS = {
    "admm": lambda X, y, **kw: train_admm(X, y, hidden=(12,), random_state=0, **kw),
    "admm_full": lambda X, y, **kw: train_admm(X, y, hidden=(12,), random_state=0, batch_size=None, **kw),
    "sgd": lambda X, y, **kw: train_sgd(X, y, hidden=(12,), random_state=0, batch_size=16, lr=0.01, **kw),
}


@pytest.mark.parametrize("method", list(FITS))
def test_validation_fraction_holds_out_the_rows_and_returns_the_best_epochs_weights(method):
    X, y = blobs(n=300, d=8, k=3, seed=5, spread=3.0)
    if method == "sgd":
        X = (X - X.mean(axis=0)) / X.std(axis=0)  # gradient methods want inputs of unit scale
    fit = FITS[method]
    kw = dict(tol=1e-6, n_iter_no_change=3, max_iter=40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastadmm.ConvergenceWarning)  # full batch at max_iter
        res = fit(X, y, validation_fraction=0.2, **kw)
        train, val = _validation.validation_rows(y, 0.2)
        assert res.settings["n_samples"] == train.shape[0] == 240 and res.settings["n_validation"] == 60
        assert res.settings["validation_fraction"] == 0.2
        # the fit on the training rows alone, with the validation rows as its test set: the same fit
        ref = fit(X[train], y[train], X_test=X[val], y_test=y[val], **{**kw, "tol": 0.0})
        n = res.n_iter
        assert res.history["validation_accuracy"] == ref.history["test_accuracy"][:n]
        assert res.history["train_loss"] == ref.history["train_loss"][:n]
        scores = res.history["validation_accuracy"]
        best = int(np.argmax(scores)) + 1  # the first of the best
        at_best = fit(X[train], y[train], **{**kw, "max_iter": best, "tol": 0.0})
    for W, V in zip(res.weights, at_best.weights):
        np.testing.assert_array_equal(W, V)
    assert np.mean(res.predict(X[val]) == y[val]) == max(scores)
    if res.status == "converged":
        assert n - best >= 3 and "validation accuracy has not risen" in res.message
    if best < n:
        assert f"kept the weights of {'iteration' if method == 'admm_full' else 'epoch'} {best}" in res.message


def test_validation_and_test_rows_side_by_side():
    X, y = blobs(n=200, d=6, k=2, seed=2)
    res = train_admm(X[:150], y[:150], hidden=(8,), max_iter=4, random_state=0, validation_fraction=0.1,
                     X_test=X[150:], y_test=y[150:])
    h = res.history
    assert len(h["validation_accuracy"]) == len(h["test_accuracy"]) == 4
    assert np.isfinite(h["validation_accuracy"]).all() and np.isfinite(h["test_accuracy"]).all()


def test_a_resumed_fit_with_validation_pads_the_earlier_history():
    X, y = blobs(n=200, d=6, k=2, seed=2)
    train, val = _validation.validation_rows(y, 0.2)
    first = train_admm(X[train], y[train], hidden=(8,), max_iter=2, random_state=0)  # its training rows
    second = train_admm(X, y, hidden=(8,), max_iter=2, random_state=0, init=first, validation_fraction=0.2)
    v = second.history["validation_accuracy"]
    assert second.history["iteration"] == [1, 2, 3, 4]
    assert len(v) == 4 and np.isnan(v[:2]).all() and np.isfinite(v[2:]).all()


# -- the rule on real fits, and tol per method --------------------------------------------------------


def test_minibatch_admm_stops_where_the_rule_on_its_recorded_history_says():
    X, y = blobs(n=300, d=8, k=3, seed=5, spread=3.0)
    res = train_admm(X, y, hidden=(12,), random_state=0, max_iter=200, tol=1e-3, n_iter_no_change=4)
    assert res.status == "converged" and res.n_iter < 200
    assert _loss_rule(res.history["train_loss"], 1e-3, 4) == res.n_iter


def test_sgd_stops_where_the_rule_on_its_recorded_history_says():
    X, y = blobs(n=300, d=8, k=3, seed=5, spread=3.0)
    X = (X - X.mean(axis=0)) / X.std(axis=0)  # gradient methods want inputs of unit scale
    res = train_sgd(X, y, hidden=(12,), random_state=0, batch_size=32, max_iter=200, tol=1e-2, n_iter_no_change=3)
    assert res.status == "converged" and res.n_iter < 200
    assert _loss_rule(res.history["train_loss"], 1e-2, 3) == res.n_iter


def test_tol_is_resolved_per_method():
    assert ADMMSettings().tol is None and ADMMSettings().n_iter_no_change == 10
    assert ADMMSettings().resolved().tol == MINI_BATCH_TOL == 1e-4
    assert ADMMSettings(batch_size=None).resolved().tol == FULL_BATCH_TOL == 1e-6
    assert ADMMSettings(batch_size=None, tol=0.5).resolved().tol == 0.5
    X, y = blobs(n=60, d=4)
    assert train_admm(X, y, hidden=(4,), max_iter=1).settings["tol"] == MINI_BATCH_TOL
    with pytest.warns(fastadmm.ConvergenceWarning, match="before reaching tol=1e-06"):
        assert train_admm(X, y, hidden=(4,), max_iter=1, batch_size=None).settings["tol"] == FULL_BATCH_TOL
    assert train_sgd(X, y, hidden=(4,), max_iter=1, batch_size=8).settings["tol"] == DEFAULT_TOL["sgd"] == 1e-4
    assert train_sgd(X, y, hidden=(4,), max_iter=1).settings["tol"] == DEFAULT_TOL["gd"] == 0.0


def test_a_default_minibatch_fit_ends_without_a_warning():
    X, y = blobs(n=200, d=6, k=3, seed=1)
    X = (X - X.mean(axis=0)) / X.std(axis=0)  # gradient methods want inputs of unit scale
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = train_admm(X, y, hidden=(8,), max_iter=3)
        assert res.status == "max_iter"
        res = train_sgd(X, y, hidden=(8,), max_iter=3, batch_size=16)
        assert res.status == "max_iter"


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(validation_fraction=1.0), ValueError, r"validation_fraction must be a finite number > 0 and < 1, got 1.0"),
        (dict(validation_fraction=0), ValueError, r"validation_fraction must be a finite number > 0 and < 1"),
        (dict(validation_fraction="0.1"), TypeError, r"validation_fraction must be a real number"),
        (dict(validation_fraction=0.1, eval_every=0), ValueError,
         r"validation_fraction=0.1 needs the validation accuracy .* set eval_every >= 1 .* or validation_fraction=None"),
        (dict(n_iter_no_change=0), ValueError, r"n_iter_no_change must be an integer >= 1, got 0"),
        (dict(n_iter_no_change=2.5), TypeError, r"n_iter_no_change must be an integer >= 1"),
        (dict(tol=-1), ValueError, r"tol must be None or a finite number >= 0|tol must be a finite number >= 0"),
        (dict(verbose=-1), ValueError, r"verbose must be True, False or an integer >= 0"),
        (dict(verbose="yes"), TypeError, r"verbose must be True, False or an integer >= 0"),
    ],
)
@pytest.mark.parametrize("train", [train_admm, train_sgd])
def test_bad_values_name_the_argument_and_the_fix(train, kwargs, error, match):
    X, y = blobs(n=60, d=4)
    with pytest.raises(error, match=match):
        train(X, y, hidden=(4,), max_iter=1, **kwargs)


@pytest.mark.parametrize("batch_size", ["auto", None])  # mini-batch and full-batch ADMM
def test_validation_fraction_over_ranks_holds_out_the_last_rows_of_each_shard(batch_size):
    from test_comm import on_ranks

    X, y = blobs(n=90, d=4, k=3, spread=2.0)
    split = [0, 35, 90]  # uneven shards

    def fit(comm):
        rows = slice(split[comm.rank], split[comm.rank + 1])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return train_admm(X[rows], y[rows], hidden=(6,), max_iter=4, tol=0, comm=comm, random_state=0,
                              dtype="float64", batch_size=batch_size, validation_fraction=0.2)

    results = []
    for kind, value in on_ranks(2, fit):
        assert kind == "ok", value
        results.append(value)
    for W, V in zip(results[0].weights, results[1].weights):  # one model on every rank
        np.testing.assert_array_equal(W, V)
    # each rank held out the last 20 % of every class of its own shard
    held = np.concatenate([np.arange(a, b)[_validation.validation_rows(np.unique(y[a:b], return_inverse=True)[1],
                                                                        0.2)[1]] for a, b in zip(split, split[1:])])
    assert results[0].settings["n_validation"] == held.shape[0]
    assert results[0].settings["n_samples"] == 90 - held.shape[0]
    # the history's accuracy is over all of them; the weights returned are those of its best evaluation
    accuracy = float(np.mean(results[0].predict(X[held]) == y[held]))
    assert accuracy == pytest.approx(np.nanmax(results[0].history["validation_accuracy"]), abs=1e-12)


def test_validation_fraction_over_ranks_that_can_hold_out_nothing_is_refused_on_every_rank():
    from test_comm import on_ranks

    X = np.arange(8.0).reshape(4, 2)
    y = np.array([0, 1, 2, 3])  # a single sample of every class on each rank

    def fit(comm):
        rows = slice(2 * comm.rank, 2 * comm.rank + 2)
        return train_admm(X[rows], y[rows], hidden=(2,), max_iter=1, comm=comm, validation_fraction=0.5)

    for kind, exc in on_ranks(2, fit):
        assert kind == "raised" and isinstance(exc, ValueError), exc
        assert "validation_fraction=0.5 holds out rows of every class" in str(exc)
