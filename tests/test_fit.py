"""The one fit loop (fastadmm._fit) behind train_admm and train_sgd, and the full-batch
evaluation that reuses the sweep's W_1 a_0."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import os
import signal
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import fastadmm
from fastadmm import Status, _comm, _fit, _linalg, _losses
from fastadmm._fullbatch import FullBatchADMM
from toy import WeightListStep, blobs


# -- the loop itself, driven by a toy step object ------------------------------------------------


class CountingComm(_comm.SingleProcess):
    def __init__(self):
        self.reductions = 0

    def allreduce(self, buf):
        self.reductions += 1
        return buf


class ToyStep(WeightListStep):
    """Halves its one weight per sweep; raises NonFiniteError on sweep `fail_at`."""

    kind = "toy-halving"

    def __init__(self, X, fail_at=None):
        self.comm = CountingComm()
        self.X = X
        self.iteration = 0
        self.fail_at = fail_at
        self.W = [np.ones((1, X.shape[1]))]

    def sweep(self, timings):
        if self.iteration + 1 == self.fail_at:
            raise _linalg.NonFiniteError("a toy blow-up")
        self.W = [self.W[0] * 0.5]
        self.iteration += 1
        return np.array([2.0 ** -self.iteration]), None


def _toy_run(step, **plan):
    X = step.X
    y = (X[:, 0] > 0).astype(np.intp)
    plan = _fit.Plan(**{"method": "admm", "max_iter": 6, "eval_every": 1,
                        "result_fields": dict(classes=np.array([0, 1]), loss="mse", settings={}, intercept=False),
                        **plan})
    timings = {"train": 0.0, "eval": 0.0, "total": 0.0}
    return _fit.run(step, plan, _fit.Data(y, y[:, None].astype(float)), timings, time.perf_counter())


def _toy_progress(sums, info):
    return _fit.Progress(dict(objective=float(sums[0])), objective=float(sums[0]), residual=0.0)


def test_one_reduction_per_iteration_and_a_row_each():
    X = np.random.default_rng(0).normal(size=(20, 3))
    step = ToyStep(X)
    res = _toy_run(step, progress=_toy_progress, progress_keys=("objective",))
    assert res.status == "max_iter" and res.n_iter == 6
    assert step.comm.reductions == 6  # sums, evaluation counts, clock and flags together
    assert res.history["iteration"] == [1, 2, 3, 4, 5, 6]
    assert res.history["objective"] == [2.0 ** -k for k in range(1, 7)]


def test_a_sweep_that_blows_up_keeps_the_weights_and_count_of_the_last_good_one():
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.warns(fastadmm.DivergenceWarning, match="a toy blow-up"):
        res = _toy_run(ToyStep(X, fail_at=4), divergence_hint="Hint.")
    assert res.status == "diverged" and res.n_iter == 3 and res.state is None
    assert res.message == "iteration 4: a toy blow-up"
    np.testing.assert_array_equal(res.weights[0], np.full((1, 3), 0.125))
    assert len(res.history["iteration"]) == res.n_iter


def test_convergence_rule_uses_the_objective_change_and_the_residual():
    X = np.random.default_rng(0).normal(size=(20, 3))
    res = _toy_run(ToyStep(X), max_iter=50, tol=0.6, progress=_toy_progress, progress_keys=("objective",))
    # objective 2^-k: relative change |2^-k - 2^-(k-1)| / 2^-k = 1 never < 0.6 ... so no convergence
    assert res.status == "max_iter"
    res = _toy_run(ToyStep(X), max_iter=50, tol=1.5, progress=_toy_progress, progress_keys=("objective",))
    assert res.status == "converged" and res.n_iter == 2 and res.message.startswith("converged at iteration 2")


def test_evaluate_last_also_evaluates_the_iteration_a_stop_ends_on():
    X = np.random.default_rng(0).normal(size=(20, 3))
    res = _toy_run(ToyStep(X), eval_every=0, eval_last=True, max_iter=4)
    assert res.history["iteration"] == [4]  # no progress fields: rows only where evaluated


# -- the behaviours train_admm and train_sgd now share ------------------------------------------


FITS = {
    "admm": lambda X, y, **kw: fastadmm.train_admm(X, y, hidden=(8,), batch_size=None, random_state=0, **kw),
    "minibatch": lambda X, y, **kw: fastadmm.train_admm(X, y, hidden=(8,), batch_size=16, random_state=0, **kw),
    "sgd": lambda X, y, **kw: fastadmm.train_sgd(X, y, hidden=(8,), batch_size=16, random_state=0, **kw),
}


@pytest.mark.parametrize("fit", FITS)
def test_keyboard_interrupt_in_the_callback_keeps_the_fit_and_warns(fit):
    X, y = blobs()

    def callback(info):
        if info["iteration"] == 3:
            raise KeyboardInterrupt

    with pytest.warns(UserWarning, match="KeyboardInterrupt"):
        res = FITS[fit](X, y, max_iter=10, callback=callback)
    assert res.status == "interrupted" and res.n_iter == 3
    assert res.message == "the callback was interrupted (KeyboardInterrupt) at iteration 3"
    assert all(len(v) == 3 for v in res.history.values())


@pytest.mark.parametrize("fit", FITS)
def test_ctrl_c_stops_after_the_iteration_with_a_warning(fit):
    X, y = blobs()

    def callback(info):
        if info["iteration"] == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.warns(UserWarning, match=r"interrupted \(Ctrl-C\) after iteration 2; returning the weights so far"):
        res = FITS[fit](X, y, max_iter=10, callback=callback)
    assert res.status == "interrupted" and res.n_iter == 2


def test_a_keyboard_interrupt_inside_an_admm_sweep_keeps_the_last_finished_iteration(monkeypatch, tmp_path):
    """A second Ctrl-C raises KeyboardInterrupt wherever the fit is: the weights of the last finished
    iteration come back (the half-updated iterates are not offered for resuming)."""
    X, y = blobs()
    calls = {"n": 0}
    original = FullBatchADMM._a_update

    def interrupted(self, l):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, l)

    monkeypatch.setattr(FullBatchADMM, "_a_update", interrupted)
    path = tmp_path / "fit.npz"
    with pytest.warns(UserWarning, match=r"interrupted \(KeyboardInterrupt\) after iteration 2"):
        res = FITS["admm"](X, y, max_iter=10, checkpoint=path, checkpoint_every=1)
    assert res.status == "interrupted" and res.n_iter == 2 and res.state is None
    assert len(res.history["iteration"]) == 2 and all(np.isfinite(W).all() for W in res.weights)
    saved = fastadmm.load(path)  # the checkpoint of iteration 2 is left as it was: still resumable
    assert saved.n_iter == 2 and saved.state is not None


@pytest.mark.parametrize("fit", FITS)
def test_the_callback_sees_the_weights_on_request(fit):
    X, y = blobs()
    seen = []
    res = FITS[fit](X, y, max_iter=3, callback=lambda info: seen.append(info["weights"]()))
    assert len(seen) == 3
    for W_seen, W_final in zip(seen[-1], res.weights):
        np.testing.assert_array_equal(W_seen, W_final)


def test_train_admm_and_train_sgd_have_the_same_signature_shape():
    shared = ["X", "y", "hidden", "loss", "max_iter", "X_test", "y_test", "random_state", "callback", "settings"]
    for train in (fastadmm.train_admm, fastadmm.train_sgd):
        assert list(inspect.signature(train).parameters)[: len(shared)] == shared
        code = train.__code__  # the function itself (its __signature__ adds the settings' fields)
        assert code.co_flags & inspect.CO_VARKEYWORDS and code.co_varnames[code.co_argcount + code.co_kwonlyargcount] == "overrides"
    # the settings' fields are the keywords of **overrides, shown by the signature
    assert "optimizer" in inspect.signature(fastadmm.train_sgd).parameters
    assert "ridge" in inspect.signature(fastadmm.train_admm).parameters


def test_train_sgd_takes_settings_and_overrides():
    X, y = blobs(n=60, d=4)
    s = fastadmm.SGDSettings(batch_size=10, lr=0.05)
    a = fastadmm.train_sgd(X, y, hidden=(4,), max_iter=2, settings=s, random_state=1)
    b = fastadmm.train_sgd(X, y, hidden=(4,), max_iter=2, batch_size=10, lr=0.05, random_state=1)
    c = fastadmm.train_sgd(X, y, hidden=(4,), settings=dataclasses.replace(s, max_iter=2), random_state=1)
    for Wa, Wb, Wc in zip(a.weights, b.weights, c.weights):
        np.testing.assert_array_equal(Wa, Wb)
        np.testing.assert_array_equal(Wa, Wc)
    assert fastadmm.train_sgd(X, y, hidden=(4,), max_iter=2, settings=s, lr=0.1).settings["lr"] == 0.1
    with pytest.raises(TypeError, match="unknown setting.*'learning_rate'"):
        fastadmm.train_sgd(X, y, learning_rate=0.1)
    with pytest.raises(TypeError, match="settings must be an SGDSettings"):
        fastadmm.train_sgd(X, y, settings=fastadmm.ADMMSettings())


# -- Status and the frozen Result ----------------------------------------------------------------


def test_status_is_an_enum_equal_to_its_string(tmp_path):
    X, y = blobs(n=60, d=4)
    res = fastadmm.train_admm(X, y, hidden=(4,), max_iter=2, batch_size=None, random_state=0, tol=0)
    assert res.status is Status.MAX_ITER and res.status == "max_iter" and "max_iter" == res.status
    assert str(res.status) == f"{res.status}" == "max_iter" and json.dumps(res.status) == '"max_iter"'
    assert res.status in ("converged", "max_iter") and {res.status} == {"max_iter"}
    assert "status='max_iter'" in repr(res)
    back = fastadmm.load(res.save(tmp_path / "r.npz"))
    assert back.status is Status.MAX_ITER
    assert Status("diverged") is Status.DIVERGED and [s.value for s in Status] == list(fastadmm._result.STATUSES)
    with pytest.raises(ValueError, match="status must be one of"):
        dataclasses.replace(res, status="finished")


def test_result_fields_cannot_be_rebound():
    X, y = blobs(n=60, d=4)
    res = fastadmm.train_sgd(X, y, hidden=(4,), max_iter=2, random_state=0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.message = "changed"
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.status = "converged"
    changed = dataclasses.replace(res, message="changed")
    assert changed.message == "changed" and res.message != "changed"


def test_checkpoint_module_does_not_import_the_result():
    import fastadmm._checkpoint as ck

    tree = ast.parse(Path(ck.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {"_result", "Result"} & imported


def test_loss_codes_are_declared_once():
    from fastadmm import _sgd_kernels, kernels

    assert _sgd_kernels.LOSS_CODE is _losses.LOSS_CODE
    assert kernels.LOSS_CODE is _losses.LOSS_CODE
    with pytest.raises(ValueError, match="not elementwise"):
        kernels.output_z(np.zeros(3), np.zeros(3), np.zeros(3), 1.0, loss="cross_entropy")


# -- the full-batch evaluation reuses W_1 a_0 of the sweep -----------------------------


@pytest.mark.parametrize("hidden, loss, k, intercept", [((8, 5), "mse", 2, True), ((6,), "hinge", 3, False),
                                                        ((), "cross_entropy", 3, True)])
def test_full_batch_evaluation_reuses_the_first_product_and_equals_a_forward_pass(monkeypatch, hidden, loss, k,
                                                                                  intercept):
    X, y = blobs(n=90, d=7, k=k, seed=k)
    X[:, 2] = 0.0  # a left-out feature: the reuse works on the compact weights
    forward_calls = []
    plain_forward = _losses.forward

    def counting(weights, X_, intercept_=False):
        forward_calls.append(X_.shape[0])
        return plain_forward(weights, X_, intercept_)

    monkeypatch.setattr(_losses, "forward", counting)
    res = fastadmm.train_admm(X, y, hidden=hidden, loss=loss, max_iter=5, batch_size=None, intercept=intercept,
                              random_state=0, tol=0)
    assert forward_calls == []  # no first-layer product over X was made again to evaluate
    monkeypatch.setattr(_losses, "forward", plain_forward)
    out = res.decision_function(X)
    T = _losses.targets(np.searchsorted(res.classes, y), len(res.classes), X.dtype, loss)
    assert res.history["train_loss"][-1] == pytest.approx(_losses.loss_sum(out, T, loss) / len(y), rel=1e-12)
    assert res.history["train_accuracy"][-1] == res.score(X, y)


def test_train_outputs_equal_a_plain_forward_pass_and_fall_back_for_other_weights():
    X, y = blobs(n=70, d=6, seed=4)
    settings = fastadmm.ADMMSettings(batch_size=None).resolved()
    T = _losses.targets(y, 2, X.dtype)
    from fastadmm import _backend

    step = FullBatchADMM(X, T, [6 + 1, 5, 4, 1], "mse", settings, _backend.get("numpy"), np.random.default_rng(0),
                         None, _comm.SingleProcess(), 0, X.shape[0])
    timings = {k: 0.0 for k in "Waz"}
    for _ in range(3):
        step.sweep(timings)
    weights = step.compact_weights()
    assert weights[0] is step._m1_of  # the W_1 the sweep's product used is the one evaluated
    reused = np.concatenate([out for _, out in step.train_outputs(weights)])
    np.testing.assert_allclose(reused, _losses.forward(weights, step.X, True), rtol=1e-12, atol=1e-14)
    other = [W * 2 for W in weights]  # not the sweep's W_1: a plain forward pass
    again = np.concatenate([out for _, out in step.train_outputs(other)])
    np.testing.assert_array_equal(again, _losses.forward(other, step.X, True))


def test_no_evaluation_no_extra_buffer():
    X, y = blobs(n=40, d=5)
    res = fastadmm.train_admm(X, y, hidden=(4,), max_iter=2, batch_size=None, eval_every=0, random_state=0, tol=0)
    assert all(np.isnan(v) for v in res.history["train_loss"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        settings = fastadmm.ADMMSettings(batch_size=None, eval_every=0).resolved()
        from fastadmm import _backend

        step = FullBatchADMM(X, _losses.targets(y, 2, X.dtype), [6, 4, 1], "mse", settings, _backend.get("numpy"),
                             np.random.default_rng(0), None, _comm.SingleProcess(), 0, X.shape[0])
    assert step.M1 is None
