"""Mini-batch ADMM (batch_size=, docs/ALGORITHM.md section 6): learning, resume, settings, and the
closed forms of its steps against slow obvious references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize

import fastadmm
from fastadmm import ADMMSettings
from fastadmm._minibatch import MiniBatchADMM, layer_penalties
from fastadmm._settings import FULL_BATCH, MINI_BATCH
from toy import blobs


def test_default_is_mini_batch_in_one_process_and_full_batch_over_mpi():
    s = ADMMSettings()
    assert s.batch_size == "auto"
    one = s.resolved(distributed=False)
    assert one.batch_size == MINI_BATCH["batch_size"]
    assert (one.beta, one.gamma, one.depth_decay) == (MINI_BATCH["beta"], MINI_BATCH["gamma"], MINI_BATCH["depth_decay"])
    mpi = s.resolved(distributed=True)
    assert mpi.batch_size is None
    assert (mpi.beta, mpi.gamma, mpi.depth_decay) == (FULL_BATCH["beta"], FULL_BATCH["gamma"], FULL_BATCH["depth_decay"])
    # what the user sets stays
    mine = ADMMSettings(beta=2.0, batch_size=None).resolved()
    assert (mine.beta, mine.gamma, mine.batch_size) == (2.0, FULL_BATCH["gamma"], None)
    paper = ADMMSettings.paper().resolved()
    assert (paper.batch_size, paper.beta, paper.gamma, paper.depth_decay) == (None, 1.0, 10.0, 1.0)


def test_layer_penalties_decay_with_depth():
    beta, gamma = layer_penalties(0.1, 0.01, 0.01, 4)
    np.testing.assert_allclose(beta[1:], [1e-7, 1e-5, 1e-3, 1e-1])
    np.testing.assert_allclose(gamma[1:4], [1e-6, 1e-4, 1e-2])
    beta, gamma = layer_penalties(1.0, 10.0, 1.0, 3)  # depth_decay 1: the paper's equal penalties
    assert beta[1:] == [1.0, 1.0, 1.0] and gamma[1:3] == [10.0, 10.0]


@pytest.mark.parametrize("loss", ["mse", "hinge", "cross_entropy"])
@pytest.mark.parametrize("k", [2, 3])
def test_learns_separable_blobs(loss, k):
    X, y = blobs(n=400, d=10, k=k, seed=3)
    res = fastadmm.train_admm(X, y, hidden=(16, 8), loss=loss, max_iter=8, batch_size=32, random_state=0)
    assert res.status == "max_iter" and res.n_iter == 8
    assert res.history["train_accuracy"][-1] >= 0.97
    # every layer has a bias: W_l has one column more than its input
    assert [W.shape for W in res.weights] == [(16, 11), (8, 17), (1 if k == 2 and loss != "cross_entropy" else k, 9)]
    assert res.score(X, y) == res.history["train_accuracy"][-1]


def test_resume_equals_an_uninterrupted_run(tmp_path):
    X, y = blobs(n=300, d=6, k=3, seed=1)
    kw = dict(hidden=(8,), batch_size=40, random_state=5, tol=0)
    full = fastadmm.train_admm(X, y, max_iter=6, **kw)
    first = fastadmm.train_admm(X, y, max_iter=4, checkpoint=tmp_path / "fit.npz", **kw)
    again = fastadmm.train_admm(X, y, max_iter=2, init=fastadmm.load(tmp_path / "fit.npz"), **kw)
    assert first.n_iter == 4 and again.n_iter == 6
    for W_full, W_again in zip(full.weights, again.weights):
        np.testing.assert_array_equal(W_full, W_again)


def test_seed_gives_the_same_fit_and_other_seed_another():
    X, y = blobs(n=200, d=6, k=2, seed=2)
    a = fastadmm.train_admm(X, y, hidden=(8,), batch_size=32, max_iter=3, random_state=1)
    b = fastadmm.train_admm(X, y, hidden=(8,), batch_size=32, max_iter=3, random_state=1)
    c = fastadmm.train_admm(X, y, hidden=(8,), batch_size=32, max_iter=3, random_state=2)
    np.testing.assert_array_equal(a.weights[0], b.weights[0])
    assert not np.array_equal(a.weights[0], c.weights[0])


def test_full_batch_state_does_not_resume_a_mini_batch_fit():
    X, y = blobs(n=120, d=5, k=2)
    full = fastadmm.train_admm(X, y, hidden=(4,), max_iter=2, batch_size=None)
    with pytest.raises(ValueError, match="resume it with the same batch_size"):
        fastadmm.train_admm(X, y, hidden=(4,), max_iter=2, batch_size=16, init=full)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_size=0), "batch_size must be None, 'auto' or an integer >= 1"),
        (dict(batch_size="big"), "batch_size must be None, 'auto' or an integer >= 1"),
        (dict(batch_sweeps=0), "batch_sweeps must be an integer >= 1"),
        (dict(prox=0.0), "prox must be a finite number > 0"),
        (dict(prox_metric="fisher"), "prox_metric must be one of"),
        (dict(gram_decay=1.0), "gram_decay must be a finite number >= 0 and < 1"),
        (dict(depth_decay=-1.0), "depth_decay must be a finite number > 0"),
        (dict(batch_size=16, intercept=False), "needs intercept=True"),
    ],
)
def test_bad_settings_name_the_argument(kwargs, match):
    X, y = blobs(n=60, d=4, k=2)
    with pytest.raises(ValueError, match=match):
        fastadmm.train_admm(X, y, hidden=(4,), max_iter=1, **kwargs)


def test_batch_larger_than_the_data_is_one_batch():
    X, y = blobs(n=50, d=4, k=2)
    res = fastadmm.train_admm(X, y, hidden=(4,), max_iter=5, batch_size=1000, random_state=0)
    assert res.n_iter == 5 and np.isfinite(res.weights[0]).all()


# -- the steps of a batch against slow, obvious references -------------------------------------------


def _problem(B=12, n_in=7, n_out=5, K=3, seed=0, metric="identity"):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(B, n_in))
    y = rng.integers(0, K, B)
    T = np.eye(K)[y]
    s = ADMMSettings(batch_size=B, prox_metric=metric, prox=0.7).resolved()
    from fastadmm import _backend

    p = MiniBatchADMM(X, T, [n_in + 1, n_out, K], "mse", s, _backend.get("numpy"), rng, None, None)
    p.Xb[...] = X
    p.Tb[...] = T
    return p, rng


@pytest.mark.parametrize("metric", ["identity", "gram"])
@pytest.mark.parametrize("B", [6, 40])  # B < n (push-through form) and B > n (normal equations)
def test_w_update_minimises_the_proximal_least_squares(metric, B):
    p, rng = _problem(B=B, metric=metric)
    l = 2
    A = rng.normal(size=(B, 5))
    np.maximum(A, 0, out=A)
    p.A[1][...] = A
    Z = rng.normal(size=(B, 3))
    p.Z[2][...] = Z
    Wp = p.W[2].copy()
    p._w_update(l, B)
    W = p.W[2]
    Aa = np.hstack([A, np.ones((B, 1))])
    if metric == "identity":
        P = p.s.prox * np.mean(np.diag(Aa.T @ Aa)) * np.eye(6)
    else:
        P = p.s.prox * B * p.S[2] + 1e-6 * B * np.trace(p.S[2]) / 6 * np.eye(6)

    def objective(w):
        Wm = w.reshape(Wp.shape)
        D = Wm - Wp
        return np.sum((Z - Aa @ Wm.T) ** 2) + np.trace(D @ P @ D.T)

    # the normal equations of the objective, solved the obvious way
    normal = np.linalg.solve((Aa.T @ Aa + P).T, (Z.T @ Aa + Wp @ P).T).T
    np.testing.assert_allclose(W, normal, rtol=1e-9, atol=1e-9)
    # and no generic minimiser finds a lower value
    best = scipy.optimize.minimize(objective, Wp.ravel(), method="BFGS", options=dict(gtol=1e-10)).x
    assert objective(W.ravel()) <= objective(best) + 1e-9


@pytest.mark.parametrize("n_next", [3, 9])  # fewer outputs than inputs (Woodbury form) and more
def test_a_update_minimises_its_quadratic(n_next):
    B, n = 5, 6
    rng = np.random.default_rng(4)
    p, _ = _problem(B=B, n_in=4, n_out=n, K=n_next)
    W = rng.normal(size=(n_next, n + 1))
    p.W[2] = W
    Znext = rng.normal(size=(B, n_next))
    H = np.maximum(rng.normal(size=(B, n)), 0)
    p.Z[2][...] = Znext
    p.H[1][...] = H
    p._a_update(1, B)
    beta, gamma = p.beta[2], p.gamma[1]
    for i in range(B):
        def f(a):
            return beta * np.sum((Znext[i] - W[:, :-1] @ a - W[:, -1]) ** 2) + gamma * np.sum((a - H[i]) ** 2)

        best = scipy.optimize.minimize(f, H[i], method="BFGS", options=dict(gtol=1e-12)).x
        np.testing.assert_allclose(p.A_new[1][i], best, atol=1e-6)
