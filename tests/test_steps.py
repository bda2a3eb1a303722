"""Step objects: every method's satisfies the Step protocol, and a new step object defined here fits,
checkpoints and resumes through the fit loop and the checkpoint files without any change to them."""

from __future__ import annotations

import time

import numpy as np
import pytest

import fastadmm
from fastadmm import CheckpointError, _comm, _fit, _losses, _step
from fastadmm._fullbatch import FullBatchADMM
from fastadmm._gradient import GradientSteps
from fastadmm.minibatch import MiniBatchADMM
from toy import blobs


@_step.register_step
class RidgeSteps(_step.ForwardOutputs):
    """A linear model moved a fixed fraction towards the ridge fit of a random half of the rows per
    sweep: its state holds an array, a list of arrays, the shuffling stream and plain numbers."""

    kind = "test-ridge-steps"
    intercept = False

    def __init__(self, X, T, seed):
        self.comm = _comm.SingleProcess()
        self.X, self.T = X, T
        self.rng = np.random.default_rng(seed)
        self.iteration = 0
        self.W = np.zeros((T.shape[1], X.shape[1]))
        self.velocity = np.zeros_like(self.W)
        self.seen = [np.zeros(X.shape[0]), np.zeros(3)]
        self.rate = 0.5

    def sweep(self, timings):
        rows = self.rng.permutation(self.X.shape[0])[: self.X.shape[0] // 2]
        A, T = self.X[rows], self.T[rows]
        target = np.linalg.solve(A.T @ A + np.eye(A.shape[1]), A.T @ T).T
        self.velocity = 0.5 * self.velocity + self.rate * (target - self.W)
        self.W = self.W + self.velocity
        self.seen[0][rows] += 1
        self.seen[1] += 1
        self.iteration += 1
        residual = float(np.sum((A @ self.W.T - T) ** 2))
        return np.array([residual]), None

    def running_counts(self):
        return 0.0, 0

    def compact_weights(self):
        return [self.W.copy()]

    def full_width(self, weights):
        return [W.copy() for W in weights]

    def to_state(self):
        return {"velocity": self.velocity.copy(), "seen": [s.copy() for s in self.seen], "rate": self.rate,
                "iteration": self.iteration, "rng": self.rng.bit_generator.state}

    def from_state(self, state, weights):
        self.check_state(state, weights)
        self.W = np.array(weights[0])
        self.velocity = np.array(state["velocity"])
        self.seen = [np.array(s) for s in state["seen"]]
        self.rate, self.iteration = state["rate"], state["iteration"]
        self.rng.bit_generator.state = state["rng"]

    @staticmethod
    def check_state(state, weights):
        if state.get("velocity") is None or state["velocity"].shape != weights[0].shape:
            raise ValueError(f"state array velocity must have the weights' shape {weights[0].shape}")


def _plan(max_iter, checkpoint=None):
    return _fit.Plan(method="admm", max_iter=max_iter, eval_every=1, checkpoint=checkpoint, checkpoint_every=1,
                     result_fields=dict(classes=np.array([0, 1, 2]), loss="mse", settings={}, intercept=False),
                     progress=lambda sums, info: _fit.Progress(dict(objective=float(sums[0])), float(sums[0])),
                     progress_keys=("objective",))


def _run(step, max_iter, checkpoint=None, resumed=None):
    y = _losses.predict_index(step.T)
    timings = {"train": 0.0, "eval": 0.0, "total": 0.0}
    return _fit.run(step, _plan(max_iter, checkpoint), _fit.Data(y, step.T), timings, time.perf_counter(),
                    resumed=resumed)


def test_a_new_step_object_fits_checkpoints_and_resumes_through_the_public_path(tmp_path):
    X, y = blobs(n=80, d=5, k=3, seed=3)
    T = np.eye(3)[y]
    whole = _run(RidgeSteps(X, T, seed=1), max_iter=6)
    first = _run(RidgeSteps(X, T, seed=1), max_iter=3, checkpoint=tmp_path / "fit.npz")
    assert first.state["kind"] == RidgeSteps.kind and first.state["iteration"] == 3
    back = fastadmm.load(tmp_path / "fit.npz")  # the checkpoint the loop wrote
    assert back.state["kind"] == RidgeSteps.kind and back.state["rate"] == 0.5
    np.testing.assert_array_equal(back.state["seen"][0], first.state["seen"][0])
    step = RidgeSteps(X, T, seed=99)  # another seed: the stream comes from the state
    step.from_state(back.state, back.weights)
    resumed = _run(step, max_iter=3, resumed=back)
    assert resumed.n_iter == whole.n_iter == 6
    np.testing.assert_array_equal(resumed.weights[0], whole.weights[0])
    assert resumed.history["objective"] == whole.history["objective"]
    np.testing.assert_array_equal(resumed.state["velocity"], whole.state["velocity"])
    # the step's own check runs on loading: a state it cannot resume is a CheckpointError naming the file
    bad = fastadmm.load(tmp_path / "fit.npz")
    bad.state["velocity"] = np.zeros((2, 2))
    with pytest.raises(CheckpointError, match=r"bad.npz: state array velocity"):
        fastadmm.load(bad.save(tmp_path / "bad.npz"))


def _steps_of_every_method():
    """The step object of every method, as train_admm and train_sgd build them."""
    seen = []
    plain = _fit.run

    def recording(step, *args, **kwargs):
        seen.append(step)
        return plain(step, *args, **kwargs)

    X, y = blobs(n=60, d=4, k=3, seed=0)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_fit, "run", recording)
        fastadmm.train_admm(X, y, hidden=(4,), max_iter=1, random_state=0)
        fastadmm.train_admm(X, y, hidden=(4,), max_iter=1, random_state=0, batch_size=None, tol=0)
        fastadmm.train_sgd(X, y, hidden=(4,), max_iter=1, random_state=0)
    return seen


def test_every_step_object_satisfies_the_step_protocol():
    steps = _steps_of_every_method()
    assert {type(s) for s in steps} == {MiniBatchADMM, FullBatchADMM, GradientSteps}
    for step in steps:
        assert isinstance(step, _step.Step), (type(step).__name__, _step.missing_members(step))
        assert _step.missing_members(step) == []
    assert {MiniBatchADMM.kind, FullBatchADMM.kind} <= set(_step.kinds())
    assert len({MiniBatchADMM.kind, FullBatchADMM.kind, GradientSteps.kind}) == 3


def test_the_fit_loop_refuses_an_object_that_is_not_a_step():
    class Half:
        iteration = 0
        T = np.eye(3)

        def sweep(self, timings):
            return np.zeros(0), None

    with pytest.raises(TypeError, match=r"Half is not a fit step object: it lacks \[.*'compact_weights'.*'kind'"):
        _run(Half(), max_iter=1)


@pytest.mark.parametrize("batch_size", [None, 20])
def test_admm_states_carry_their_kind_and_one_penalty_layout(batch_size):
    X, y = blobs(n=60, d=4, k=3, seed=0)
    res = fastadmm.train_admm(X, y, hidden=(5, 4), max_iter=2, random_state=0, batch_size=batch_size, tol=0)
    kind = FullBatchADMM.kind if batch_size is None else MiniBatchADMM.kind
    assert res.state["kind"] == kind
    assert len(res.state["beta"]) == 3 and len(res.state["gamma"]) == 2  # beta_1..beta_L, gamma_1..gamma_{L-1}

