"""Mini-batch ADMM (batch_size=, docs/ALGORITHM.md section 6): learning, resume, settings, and the
closed forms of its steps against slow obvious references."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.optimize

import fastadmm
from fastadmm import ADMMSettings
from fastadmm._admm_core import Sums, layer_penalties
from fastadmm.minibatch import MiniBatchADMM, updates as mb_updates
from fastadmm._settings import FULL_BATCH, MINI_BATCH, MINI_BATCH_ONE_OUTPUT, PRESET_FIELDS
from toy import blobs


def test_default_is_mini_batch_whose_settings_depend_on_the_outputs():
    s = ADMMSettings()
    assert s.batch_size == "auto"
    one = s.resolved()
    assert one.batch_size == MINI_BATCH["batch_size"]
    for name in PRESET_FIELDS:
        assert getattr(one, name) == MINI_BATCH[name], name
    binary = s.resolved(n_outputs=1)
    for name in PRESET_FIELDS:
        assert getattr(binary, name) == MINI_BATCH_ONE_OUTPUT[name], name
    full = ADMMSettings(batch_size=None).resolved()
    assert (full.beta, full.gamma, full.depth_decay) == (FULL_BATCH["beta"], FULL_BATCH["gamma"], FULL_BATCH["depth_decay"])
    assert full.initialization == "forward" and full.output_refit == 0.0
    # what the user sets stays
    mine = ADMMSettings(beta=2.0, batch_size=None).resolved()
    assert (mine.beta, mine.gamma, mine.batch_size) == (2.0, FULL_BATCH["gamma"], None)
    mine = ADMMSettings(sweep_order="targets_first", prox=0.5, batch_size=32).resolved(n_outputs=10)
    assert (mine.sweep_order, mine.prox, mine.batch_size, mine.beta) == ("targets_first", 0.5, 32, MINI_BATCH["beta"])
    paper = ADMMSettings.paper().resolved()
    assert (paper.batch_size, paper.beta, paper.gamma, paper.depth_decay) == (None, 1.0, 10.0, 1.0)


@pytest.mark.parametrize("k, loss, preset", [(2, "mse", MINI_BATCH_ONE_OUTPUT), (2, "hinge", MINI_BATCH_ONE_OUTPUT),
                                             (3, "mse", MINI_BATCH), (2, "cross_entropy", MINI_BATCH)])
def test_train_admm_takes_the_defaults_of_its_output_width(k, loss, preset):
    X, y = blobs(n=120, d=5, k=k, seed=2)
    res = fastadmm.train_admm(X, y, hidden=(6,), loss=loss, random_state=0, tol=0, max_iter=1)
    for name in PRESET_FIELDS:
        expected = 0.0 if name == "output_refit" and loss != "mse" else preset[name]
        assert res.settings[name] == expected, name
    res = fastadmm.train_admm(X, y, hidden=(6,), loss=loss, random_state=0, tol=0, time_limit=1e-9)
    assert res.settings["max_iter"] == preset["max_iter"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(loss="cross_entropy", output_refit=1e-3), "output_refit=0.001 refits the output by least squares"),
        (dict(loss="hinge", output_refit=1e-3), "pass output_refit=0 with loss='hinge'"),
        (dict(initialization="forward"), "initialization='forward' does not apply to mini-batch ADMM"),
        (dict(initialization="he", batch_size=None), "initialization='he' does not apply to full-batch ADMM"),
        (dict(sweep_order="random"), "sweep_order must be None or one of"),
        (dict(output_refit=-1.0), "output_refit must be"),
    ],
)
def test_settings_of_the_wrong_method_or_loss_are_refused(kwargs, match):
    X, y = blobs(n=60, d=4, k=3)
    with pytest.raises(ValueError, match=match):
        fastadmm.train_admm(X, y, hidden=(4,), max_iter=1, **kwargs)


def test_layer_penalties_decay_with_depth():
    beta, gamma = layer_penalties(0.1, 0.01, 0.01, 4)
    np.testing.assert_allclose(beta[1:], [1e-7, 1e-5, 1e-3, 1e-1])
    np.testing.assert_allclose(gamma[1:4], [1e-6, 1e-4, 1e-2])
    beta, gamma = layer_penalties(1.0, 10.0, 1.0, 3)  # depth_decay 1: the paper's equal penalties
    assert beta[1:] == [1.0, 1.0, 1.0] and gamma[1:3] == [10.0, 10.0]


@pytest.mark.parametrize("order", ["layerwise", "targets_first"])
@pytest.mark.parametrize("loss", ["mse", "hinge", "cross_entropy"])
@pytest.mark.parametrize("k", [2, 3])
def test_learns_separable_blobs(loss, k, order):
    X, y = blobs(n=400, d=10, k=k, seed=3)
    res = fastadmm.train_admm(X, y, hidden=(16, 8), loss=loss, max_iter=8, batch_size=32, random_state=0,
                              sweep_order=order, train_metrics="full")
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


# The W- and a-updates run compiled (fastadmm._updates) unless the extension is absent; each test of
# them runs both the compiled update and its NumPy version ("numpy").
UPDATES = ["compiled", "numpy"]


def _compiled_updates():
    """fastadmm._updates, or skip (fail when CI requires the Cython build: FASTADMM_REQUIRE_BACKENDS)."""
    from fastadmm import _backend

    if _backend.updates() is None:
        required = os.environ.get("FASTADMM_REQUIRE_BACKENDS", "")
        if "cython" in required or required.strip() == "all":
            pytest.fail("fastadmm._updates is not built (or stale) but FASTADMM_REQUIRE_BACKENDS requires the Cython build")
        pytest.skip("fastadmm._updates is not built")
    return _backend.updates()


def _use(p, updates):
    module = _compiled_updates() if updates == "compiled" else None
    p.updates = mb_updates.get(module, *p.updates.sizes)
    return p


def _problem(B=12, n_in=7, n_out=5, K=3, seed=0, metric="identity", updates="numpy", weight_decay=0.0,
             dtype="float64"):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(B, n_in))
    y = rng.integers(0, K, B)
    T = np.eye(K)[y]
    s = ADMMSettings(batch_size=B, prox_metric=metric, prox=0.7, dtype=dtype, weight_decay=weight_decay,
                     prox_batch=1).resolved()
    from fastadmm import _backend

    p = MiniBatchADMM(X, T, [n_in + 1, n_out, K], "mse", s, _backend.get("numpy"), rng, None, None)
    _use(p, updates)
    p.Xb[...] = X
    p.Tb[...] = T
    return p, rng


@pytest.mark.parametrize("updates", UPDATES)
@pytest.mark.parametrize("metric", ["identity", "gram"])
@pytest.mark.parametrize("B", [6, 40])  # B < n (push-through form) and B > n (normal equations)
@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
def test_w_update_minimises_the_proximal_least_squares(metric, B, updates, weight_decay):
    """W_L <- argmin ||Z - [A 1] W^T||^2 + tr((W - W_prev) P (W - W_prev)^T) + r ||W||^2 with the output
    layer's proximal weight and r = weight_decay * mean(diag([A 1]^T [A 1]))."""
    p, rng = _problem(B=B, metric=metric, updates=updates, weight_decay=weight_decay)
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
    mean_diag = np.mean(np.diag(Aa.T @ Aa))
    assert p.s.output_prox != p.s.prox  # the output layer's own weight is the one used
    if metric == "identity":
        P = p.s.output_prox * mean_diag * np.eye(6)
    else:
        P = p.s.output_prox * B * p.S[2] + 1e-6 * B * np.trace(p.S[2]) / 6 * np.eye(6)
    r = weight_decay * mean_diag

    def objective(w):
        Wm = w.reshape(Wp.shape)
        D = Wm - Wp
        return np.sum((Z - Aa @ Wm.T) ** 2) + np.trace(D @ P @ D.T) + r * np.sum(Wm ** 2)

    # the normal equations of the objective, solved the obvious way
    normal = np.linalg.solve((Aa.T @ Aa + P + r * np.eye(6)).T, (Z.T @ Aa + Wp @ P).T).T
    np.testing.assert_allclose(W, normal, rtol=1e-9, atol=1e-9)
    # and no generic minimiser finds a lower value
    best = scipy.optimize.minimize(objective, Wp.ravel(), method="BFGS", options=dict(gtol=1e-10)).x
    assert objective(W.ravel()) <= objective(best) + 1e-9


@pytest.mark.parametrize("updates", UPDATES)
@pytest.mark.parametrize("n_next", [1, 3, 9])  # fewer outputs than inputs (Woodbury form) and more
def test_a_update_minimises_its_quadratic(n_next, updates):
    B, n = 5, 6
    rng = np.random.default_rng(4)
    p, _ = _problem(B=B, n_in=4, n_out=n, K=n_next, updates=updates)
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


@pytest.mark.parametrize("updates", UPDATES)
@pytest.mark.parametrize("metric", ["identity", "gram"])
@pytest.mark.parametrize("B", [6, 40])
def test_w_update_with_weight_decay_converges_to_the_ridge_solution(B, updates, metric):
    """Repeated W-updates on one batch converge to argmin ||Z - [A 1] W^T||^2 + r ||W||^2, whatever
    the proximal weight: the ridge is part of the step's objective, not a shrink after it."""
    rng = np.random.default_rng(11)
    A = np.maximum(rng.normal(size=(B, 5)), 0)
    Z = rng.normal(size=(B, 3))
    Aa = np.hstack([A, np.ones((B, 1))])
    r = 0.25 * np.mean(np.diag(Aa.T @ Aa))
    ridge = np.linalg.solve(Aa.T @ Aa + r * np.eye(6), Aa.T @ Z).T
    p, _ = _problem(B=B, updates=updates, weight_decay=0.25, metric=metric)
    p.A[1][...] = A
    p.W[2] = np.random.default_rng(2).normal(size=p.W[2].shape)
    for _ in range(400):
        p.Z[2][...] = Z
        p._w_update(2, B)
    np.testing.assert_allclose(p.W[2], ridge, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("updates", UPDATES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.25])
def test_w_update_of_a_batch_stacked_twice_is_the_same_step(updates, weight_decay):
    """Every term of the W-update (squared errors, proximal term, ridge) is relative to the batch's
    rows: the same rows twice over take exactly the same step, so no setting's strength per epoch
    grows with the number of rows per batch or of batches per epoch."""
    rng = np.random.default_rng(4)
    A = np.maximum(rng.normal(size=(5, 5)), 0)
    Z = rng.normal(size=(5, 3))
    W0 = rng.normal(size=(3, 6))
    steps = []
    for reps in (1, 2):
        B = 5 * reps
        p, _ = _problem(B=B, updates=updates, weight_decay=weight_decay)
        p.A[1][...] = np.tile(A, (reps, 1))
        p.Z[2][...] = np.tile(Z, (reps, 1))
        p.W[2] = W0.copy()
        p._w_update(2, B)
        steps.append(p.W[2].copy())
    np.testing.assert_allclose(steps[1], steps[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("B", [6, 40])
def test_compiled_updates_agree_with_numpy_ones(B, dtype):
    """The compiled W- and a-updates against their NumPy versions, in both dtypes, with weight decay."""
    rng = np.random.default_rng(3)
    A = np.maximum(rng.normal(size=(B, 5)), 0)
    Z = rng.normal(size=(B, 3))
    W0 = rng.normal(size=(3, 6))
    out = {}
    for updates in UPDATES:
        p, _ = _problem(B=B, updates=updates, weight_decay=0.1, dtype=dtype)
        p.A[1][...] = A
        p.Z[2][...] = Z
        p.W[2] = W0.astype(dtype)
        p.H[1][...] = A
        p._a_update(1, B)
        p._w_update(2, B)
        out[updates] = (p.A_new[1].copy(), p.W[2].copy())
    tol = 1e-12 if dtype == "float64" else 2e-5
    for got, want in zip(out["compiled"], out["numpy"]):
        assert got.dtype == np.dtype(dtype)
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_compiled_gather_takes_rows_and_columns_with_the_cast():
    upd = _compiled_updates()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 9))
    rows = rng.permutation(30)[:7]
    cols = np.array([0, 2, 3, 8], dtype=np.intp)
    for dtype in (np.float32, np.float64):
        out = np.full((10, 4), np.nan, dtype)
        upd.gather(X, rows, upd.column_runs(cols), out)
        np.testing.assert_array_equal(out[:7], X[np.ix_(rows, cols)].astype(dtype))
        assert np.isnan(out[7:]).all()  # rows past the batch untouched


def test_compiled_updates_report_non_finite_input_and_ill_conditioned_float32():
    from fastadmm import _linalg

    upd = _compiled_updates()
    assert upd.FLOAT32_COND_LIMIT == _linalg.FLOAT32_COND_LIMIT
    rng = np.random.default_rng(1)
    for B in (4, 20):  # push-through and normal equations
        A = rng.normal(size=(B, 6))
        Z = rng.normal(size=(B, 3))
        W = rng.normal(size=(3, 7))
        M = A @ W[:, :-1].T + W[:, -1]
        square, work = np.empty(400), np.empty(100)

        def call(A, Z, M, W, prox=1.0, square=square, work=work):
            W_out = W.copy()
            return upd.w_update(A, Z, M, np.empty_like(Z), W, W_out, prox, 1.0, square, work), W_out

        # the residuals from M or computed from A and W: the same update
        st1, W1 = call(A, Z, M, W)
        st2, W2 = call(A, Z, None, W)
        assert st1 == st2 == upd.OK
        np.testing.assert_allclose(W1, W2, rtol=1e-12, atol=1e-12)
        Z[0, 1] = np.nan
        assert call(A, Z, M, W)[0] == upd.NONFINITE
        Z[0, 1] = 0.0
        A[1, 2] = np.inf
        assert call(A, Z, None, W)[0] == upd.NONFINITE
        A[1, 2] = 0.0
        # a float32 system whose condition bound exceeds the limit is handed back (prox tiny)
        f32 = [x.astype(np.float32) for x in (A, Z, M, W)]
        assert call(*f32, prox=1e-9, square=square.astype(np.float32), work=work.astype(np.float32))[0] \
            == upd.NEEDS_FLOAT64
        assert call(A, Z, M, W, prox=1e-9)[0] == upd.OK
    with pytest.raises(ValueError, match="scratch"):
        upd.w_update(A, Z, None, Z.copy(), W, W.copy(), 1.0, 1.0, np.empty(3), np.empty(3))


def test_compiled_linear_is_the_layer_product_and_relu():
    upd = _compiled_updates()
    rng = np.random.default_rng(2)
    A, W = rng.normal(size=(9, 5)), rng.normal(size=(4, 6))
    A[0, 0] = np.nan  # NaN propagates as through np.maximum
    want = A @ W[:, :-1].T + W[:, -1]
    out, relu, copy = (np.empty((9, 4)) for _ in range(3))
    upd.linear(A, W, out, relu, copy)
    np.testing.assert_allclose(out, want, rtol=1e-13)
    np.testing.assert_array_equal(relu, np.maximum(want, 0))
    np.testing.assert_array_equal(copy, relu)
    assert np.isnan(relu[0]).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gram_rows_writes_the_upper_triangle_of_a_a_transpose_in_place(dtype):
    from fastadmm import _linalg

    A = np.random.default_rng(2).normal(size=(9, 23)).astype(dtype)
    out = np.full((9, 9), 5.0, dtype)
    assert _linalg.gram_rows(A, out) is out
    upper, lower = np.triu_indices(9), np.tril_indices(9, -1)
    ref = A.astype(np.float64) @ A.T.astype(np.float64)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(out[upper], ref[upper], rtol=tol, atol=tol * np.abs(ref).max())
    assert (out[lower] == 5.0).all()  # left as it was
    # what the factor reads is the system's: the same factor as from the whole A A^T
    full = ref.astype(dtype) + np.eye(9, dtype=dtype)
    out += np.eye(9, dtype=dtype)
    L = _linalg.spd_factor(out, 1.0)
    R = np.random.default_rng(3).normal(size=(9, 4)).astype(dtype)
    got = R.copy()
    assert _linalg.spd_solve_factored(L, got, rows=False)
    np.testing.assert_allclose(full @ got, R, rtol=10 * tol, atol=10 * tol * np.abs(R).max())


@pytest.mark.parametrize("rows", [True, False])
def test_spd_solve_moves_an_ill_conditioned_float32_system_to_float64(rows, monkeypatch):
    """A float32 K with condition number 1e6 (above FLOAT32_COND_LIMIT): spd_solve's answer is that of
    float64 arithmetic on the same (float32) K; float32 Cholesky would be off by about 1e-2."""
    from fastadmm import _linalg

    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    eig = np.logspace(0, -6, 12)
    K32 = ((Q * eig) @ Q.T).astype(np.float32)
    K32 = (K32 + K32.T) / 2
    R32 = rng.normal(size=(5, 12) if rows else (12, 5)).astype(np.float32)
    K64 = K32.astype(np.float64)
    exact = R32 @ np.linalg.inv(K64) if rows else np.linalg.solve(K64, R32)

    def solved():
        K, R = K32.copy(), R32.copy()
        assert _linalg.spd_solve(K, R, 1e-6, rows)
        return R

    np.testing.assert_allclose(solved(), exact, rtol=1e-4, atol=1e-4 * np.abs(exact).max())
    monkeypatch.setattr(_linalg, "FLOAT32_COND_LIMIT", 1e30)  # float32 all the way: the check can fail
    err = np.abs(solved() - exact).max() / np.abs(exact).max()
    assert err > 1e-3


@pytest.mark.parametrize("center", [True, False])
def test_output_refit_is_the_ridge_least_squares_of_the_forward_features(center):
    X, y = blobs(n=150, d=6, k=3, seed=7)
    T = np.eye(3)[y]
    s = ADMMSettings(batch_size=50, output_refit=0.01, skip_zero_inputs=False, dtype="float64",
                     center_inputs=center).resolved()
    from fastadmm import _backend

    p = MiniBatchADMM(X, T, [7, 8, 5, 3], "mse", s, _backend.get("numpy"), np.random.default_rng(0), None, None)
    before = p.compact_weights()  # for the raw rows of X (W_1's bias folded with centred inputs)
    p.refit.fit(p.W, rows=40)  # blocks of 40 rows: the sums over blocks must give the whole Gram
    # the obvious way: the whole forward pass, then the normal equations of the ridge
    a = X
    for W in before[:-1]:
        a = np.maximum(a @ W[:, :-1].T + W[:, -1], 0)
    F = np.hstack([a, np.ones((len(a), 1))])
    G = F.T @ F
    ridge = 0.01 * np.trace(G) / G.shape[0]
    expected = np.linalg.solve(G + ridge * np.eye(G.shape[0]), F.T @ T).T
    np.testing.assert_allclose(p.W[3], expected, rtol=1e-9, atol=1e-10)
    for W, W0 in zip(p.compact_weights()[:2], before[:2]):  # the hidden layers are left alone
        np.testing.assert_array_equal(W, W0)

    def objective(w):
        Wm = w.reshape(expected.shape)
        return np.sum((T - F @ Wm.T) ** 2) + ridge * np.sum(Wm ** 2)

    best = scipy.optimize.minimize(objective, before[-1].ravel(), method="BFGS", options=dict(gtol=1e-10)).x
    assert objective(p.W[3].ravel()) <= objective(best) + 1e-9


def _layerwise_reference(W, X, T, beta, gamma, prox, output_prox, residual=False):
    """One layerwise (or residual) batch sweep written the obvious way (docs/ALGORITHM.md section 6),
    mse output: for l = L .. 1, a_{l-1} against the old W_l (residual: the new one), W_l refitted."""
    from reference import relu_z_update

    W = [None] + [w.copy() for w in W]
    L = len(W) - 1
    Z, A = [None] * (L + 1), [X] + [None] * L
    for l in range(1, L + 1):
        Z[l] = A[l - 1] @ W[l][:, :-1].T + W[l][:, -1]
        if l < L:
            A[l] = np.maximum(Z[l], 0)
    H = [None] + [np.maximum(Z[l], 0) for l in range(1, L)]
    Z[L] = (T + beta[L] * Z[L]) / (1 + beta[L])  # argmin ||z - t||^2 + beta ||z - m||^2
    for l in range(L, 0, -1):
        Aa = np.hstack([A[l - 1], np.ones((len(X), 1))])
        P = (output_prox if l == L else prox) * np.mean(np.diag(Aa.T @ Aa)) * np.eye(Aa.shape[1])
        W_new = np.linalg.solve((Aa.T @ Aa + P).T, (Z[l].T @ Aa + W[l] @ P).T).T
        if l > 1:
            V, b = (W_new if residual else W[l])[:, :-1], (W_new if residual else W[l])[:, -1]
            M = beta[l] * V.T @ V + gamma[l - 1] * np.eye(V.shape[1])
            a_new = np.linalg.solve(M, (beta[l] * (Z[l] - b) @ V + gamma[l - 1] * H[l - 1]).T).T
        W[l] = W_new
        if l > 1:
            m = A[l - 2] @ W[l - 1][:, :-1].T + W[l - 1][:, -1]
            z = relu_z_update(a_new.ravel(), m.ravel(), beta[l - 1], gamma[l - 1])[0]
            Z[l - 1] = np.array(z).reshape(m.shape)
    return W[1:]


@pytest.mark.parametrize("order", ["layerwise", "residual"])
@pytest.mark.parametrize("B", [12, 30])  # B < n_in + 1 for some layers (push-through form), and not
def test_layerwise_batch_equals_the_obvious_sweep(B, order):
    rng = np.random.default_rng(11)
    X = rng.normal(size=(B, 20))
    y = rng.integers(0, 3, B)
    T = np.eye(3)[y]
    s = ADMMSettings(batch_size=B, dtype="float64", sweep_order=order, weight_decay=0.0, skip_zero_inputs=False,
                     output_refit=0, beta=0.5, gamma=0.2, depth_decay=0.3, prox=0.7, output_prox=2.0, prox_batch=1,
                     batch_sweeps=1, center_inputs=False).resolved()
    from fastadmm import _backend

    p = MiniBatchADMM(X, T, [21, 16, 9, 3], "mse", s, _backend.get("numpy"), rng, None, None)
    W0 = [W.copy() for W in p.W[1:]]
    p.sweep({"W": 0.0, "a": 0.0, "z": 0.0})  # one batch: the whole data (its row order does not matter)
    expected = _layerwise_reference(W0, X, T, p.beta, p.gamma, 0.7, 2.0, residual=order == "residual")
    for W, E in zip(p.W[1:], expected):
        np.testing.assert_allclose(W, E, rtol=1e-8, atol=1e-10)


# -- skip_zero_inputs without a compacted copy of X ------------------------------------------------


@pytest.mark.parametrize("sweep_order, K, metric", [("targets_first", 2, "identity"), ("layerwise", 3, "identity"),
                                                    ("layerwise", 3, "gram")])
def test_kept_columns_gathered_per_batch_equal_a_compacted_copy(sweep_order, K, metric):
    """The batches gather their rows and kept columns from X itself (no compacted copy): the same
    weights, evaluation and output refit as the previous code, a fit on the compacted copy
    X[:, kept] started from the same compacted weights and the same shuffling stream."""
    from fastadmm import _backend, _losses

    rng = np.random.default_rng(5)
    X = rng.uniform(0.0, 1.0, (150, 30))
    X[:, [0, 1, 7, 8, 9, 29]] = 0.0  # always zero: 6 of 30 features (>= 10 %), left out
    y = rng.integers(0, K, 150)
    T = _losses.targets(y, K, X.dtype, "mse")
    sizes = [31, 12, 6, T.shape[1]]
    s = ADMMSettings(batch_size=16, dtype="float64", sweep_order=sweep_order, prox_metric=metric,
                     output_refit=1e-3 if K > 2 else 0.0).resolved(n_outputs=T.shape[1])
    kernels = _backend.get("numpy")
    p = MiniBatchADMM(X, T, sizes, "mse", s, kernels, np.random.default_rng(0), None, None)
    assert p.active is not None and p.active.shape[0] == 24 and p.X is X  # no copy
    kept = p.active
    X_compact = np.ascontiguousarray(X[:, kept])  # what the previous code trained on
    ref_settings = ADMMSettings(**{**s.as_dict(), "skip_zero_inputs": False})
    ref = MiniBatchADMM(X_compact, T, [25, *sizes[1:]], "mse", ref_settings, kernels, np.random.default_rng(0), None,
                        None)
    ref.W = [None] + [W.copy() for W in p.W[1:]]
    ref.rng = np.random.default_rng()
    ref.rng.bit_generator.state = p.rng.bit_generator.state
    if metric == "gram":
        np.testing.assert_allclose(p.S[1], ref.S[1], rtol=1e-12, atol=1e-12)
    for _ in range(3):
        p.sweep({"W": 0.0, "a": 0.0, "z": 0.0})
        ref.sweep({"W": 0.0, "a": 0.0, "z": 0.0})
    for W, R in zip(p.W[1:], ref.W[1:]):
        np.testing.assert_allclose(W, R, rtol=1e-10, atol=1e-12)
    outputs = np.concatenate([out for _, out in p.train_outputs(p.compact_weights())])
    np.testing.assert_allclose(outputs, _losses.forward(ref.compact_weights(), X_compact, True), rtol=1e-10,
                               atol=1e-12)
    assert p.compact_test(X) is X  # no copy of X_test either: test_outputs widens W_1
    X_test = rng.uniform(0.0, 1.0, (40, 30))
    X_test[:, [0, 1, 7, 8, 9, 29]] = 0.0
    test_out = np.concatenate([out for _, out in p.test_outputs(p.compact_weights(), X_test)])
    np.testing.assert_allclose(test_out, _losses.forward(ref.compact_weights(), X_test[:, kept], True), rtol=1e-10,
                               atol=1e-12)


def test_output_refit_without_hidden_layers_is_ridge_regression_on_the_inputs():
    rng = np.random.default_rng(3)
    X = rng.uniform(size=(90, 6))
    X[:, 2] = 0.0  # a left-out feature (1 of 6): its weight stays 0
    y = rng.integers(0, 3, 90)
    res = fastadmm.train_admm(X, y, hidden=(), max_iter=2, random_state=0, tol=0, output_refit=1e-2, dtype="float64")
    F = np.hstack([X, np.ones((90, 1))])
    G = F.T @ F
    keep = [0, 1, 3, 4, 5, 6]
    Gk = G[np.ix_(keep, keep)]
    Gk = Gk + 1e-2 * np.trace(Gk) / len(keep) * np.eye(len(keep))
    expected = np.zeros((3, 7))
    expected[:, keep] = np.linalg.solve(Gk, F[:, keep].T @ np.eye(3)[y]).T
    np.testing.assert_allclose(res.weights[0], expected, rtol=1e-9, atol=1e-12)


def test_float32_fit_of_float64_X_equals_a_fit_of_the_cast_X_without_copying_it():
    """Mini-batch ADMM computes in float32 by default; a float64 X is cast batch by batch (never
    copied whole): the same fit as one given X.astype(float32)."""
    X, y = blobs(n=200, d=12, k=3, seed=4)
    X[:, 3] = 0.0  # a left-out feature too
    kw = dict(hidden=(8,), max_iter=3, random_state=2, tol=0)
    a = fastadmm.train_admm(X, y, **kw)
    b = fastadmm.train_admm(X.astype(np.float32), y, **kw)
    assert a.settings["dtype"] == b.settings["dtype"] == "float32"
    for Wa, Wb in zip(a.weights, b.weights):
        assert Wa.dtype == np.float32
        np.testing.assert_array_equal(Wa, Wb)
    from fastadmm import _backend, _losses

    s = ADMMSettings().resolved(n_outputs=3)
    p = MiniBatchADMM(X, _losses.targets(y, 3, np.float32), [13, 8, 3], "mse", s, _backend.get("numpy"),
                      np.random.default_rng(0), None, None)
    assert p.X is X and p.Xb.dtype == np.float32  # X itself, batches in the fit's type


@pytest.mark.parametrize("hidden", [[8], [8, 5]])
def test_training_outputs_after_the_refit_reuse_its_features(hidden):
    """After an epoch with the output refit, the evaluation's training outputs come from the refit's
    kept features times the new W_L (no forward pass): the same numbers as a plain forward pass; once
    a batch has changed the weights, or for other weights, the plain pass runs."""
    from fastadmm import _backend

    X, y = blobs(n=200, d=30, k=3, seed=2)
    T = np.eye(3)[y]
    s = ADMMSettings(batch_size=40, output_refit=1e-3, skip_zero_inputs=False, dtype="float64").resolved(n_outputs=3)
    p = MiniBatchADMM(X, T, [31, *hidden, 3], "mse", s, _backend.get("numpy"), np.random.default_rng(0), None, None)
    p.sweep({"W": 0.0, "a": 0.0, "z": 0.0})
    assert p.refit.valid and p.refit.features.shape == (200, hidden[-1])
    w = p.compact_weights()
    cached = np.concatenate([out for _, out in p.train_outputs(w)])
    plain = np.concatenate([out for _, out in p.test_outputs(w, X)])
    np.testing.assert_allclose(cached, plain, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cached, _losses_forward(w, X), rtol=1e-12, atol=1e-12)
    other = [W * 1.5 for W in w]  # other weights: the plain pass
    np.testing.assert_allclose(np.concatenate([o for _, o in p.train_outputs(other)]), _losses_forward(other, X),
                               rtol=1e-12, atol=1e-12)
    p._batch(np.arange(40), Sums(p.L), {"W": 0.0, "a": 0.0, "z": 0.0})  # changes W in place
    assert not p.refit.valid
    w2 = p.compact_weights()
    np.testing.assert_allclose(np.concatenate([o for _, o in p.train_outputs(w2)]), _losses_forward(w2, X),
                               rtol=1e-12, atol=1e-12)


def _losses_forward(weights, X):
    from fastadmm import _losses

    return _losses.forward(weights, X, True)


def test_refit_keeps_no_features_larger_than_half_of_x():
    from fastadmm import _backend

    X, y = blobs(n=100, d=4, k=3, seed=1)  # 4 features; a hidden layer of 16 > half of X's bytes
    T = np.eye(3)[y]
    s = ADMMSettings(batch_size=25, output_refit=1e-3, skip_zero_inputs=False, dtype="float64").resolved(n_outputs=3)
    p = MiniBatchADMM(X, T, [5, 16, 3], "mse", s, _backend.get("numpy"), np.random.default_rng(0), None, None)
    p.sweep({"W": 0.0, "a": 0.0, "z": 0.0})
    assert p.refit.features is None and not p.refit.valid
    w = p.compact_weights()
    np.testing.assert_allclose(np.concatenate([o for _, o in p.train_outputs(w)]), _losses_forward(w, X),
                               rtol=1e-12, atol=1e-12)


def test_a_stale_updates_build_warns_and_falls_back(monkeypatch):
    from fastadmm import _backend

    upd = _compiled_updates()
    monkeypatch.setattr(upd, "UPDATES_ABI", _backend.UPDATES_ABI + 1)
    _backend.updates.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="stale build"):
            assert _backend.updates() is None
    finally:
        monkeypatch.undo()
        _backend.updates.cache_clear()
    assert _backend.updates() is upd


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("zero_features", [True, False])
def test_compact_test_copies_a_float64_test_set_once_in_the_fits_float32(backend, zero_features):
    from fastadmm import _backend, _losses

    rng = np.random.default_rng(8)
    X = rng.uniform(0.0, 1.0, (120, 20))
    X_test = rng.uniform(0.0, 1.0, (2500, 20))  # more than one block of rows
    if zero_features:
        X[:, [0, 5, 6]] = 0.0  # left out of the fit: X_test's values there meet no weight
    y = rng.integers(0, 3, 120)
    T = _losses.targets(y, 3, np.float32, "mse")
    s = ADMMSettings(batch_size=16, backend=backend).resolved(n_outputs=3)
    p = MiniBatchADMM(X, T, [21, 8, 3], "mse", s, _backend.get(backend), np.random.default_rng(0), None, None)
    assert p.compact_test(None) is None
    copy = p.compact_test(X_test)
    kept = p.active if zero_features else np.arange(20)
    assert copy.dtype == np.float32 and copy.shape == (2500, kept.shape[0])
    np.testing.assert_array_equal(copy, X_test[:, kept].astype(np.float32))
    p.sweep({"W": 0.0, "a": 0.0, "z": 0.0})
    w = p.compact_weights()
    from_copy = np.concatenate([out for _, out in p.test_outputs(w, copy)])
    from_blocks = np.concatenate([out for _, out in p.test_outputs(w, X_test)])  # the gathering path
    np.testing.assert_allclose(from_copy, from_blocks, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(from_copy, _losses.forward([W.astype(np.float64) for W in w],
                                                          X_test[:, kept], True), rtol=1e-4, atol=1e-4)
    # A float32 X_test in a float32 fit is left as it is (a copy would be more than half its bytes).
    X32 = X_test.astype(np.float32)
    q = MiniBatchADMM(X, T, [21, 8, 3], "mse", s, _backend.get(backend), np.random.default_rng(0), None, None)
    assert q.compact_test(X32) is X32


@pytest.mark.parametrize("order, refit", [("targets_first", 0.0), ("layerwise", 0.0), ("layerwise", 1e-3)])
def test_center_inputs_is_the_fit_of_the_centred_inputs_with_the_means_folded_into_the_bias(order, refit):
    X, y = blobs(n=240, d=9, k=3, seed=6)
    X += 2.0  # far from centred
    X[:, 4] = 0.0  # a left-out feature: its mean is 0 and it stays out
    Xt, yt = blobs(n=60, d=9, k=3, seed=7)
    mu = X.mean(axis=0)
    kw = dict(hidden=(10, 6), batch_size=32, max_iter=3, random_state=3, dtype="float64", sweep_order=order,
              output_refit=refit, tol=0)
    a = fastadmm.train_admm(X, y, X_test=Xt, y_test=yt, center_inputs=True, **kw)
    b = fastadmm.train_admm(X - mu, y, X_test=Xt - mu, y_test=yt, center_inputs=False, **kw)
    assert a.settings["center_inputs"] is True and b.settings["center_inputs"] is False
    # the same weights, W_1's bias b - W mu for the raw inputs
    np.testing.assert_allclose(a.weights[0][:, :-1], b.weights[0][:, :-1], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.weights[0][:, -1], b.weights[0][:, -1] - b.weights[0][:, :-1] @ mu, rtol=1e-9,
                               atol=1e-12)
    for Wa, Wb in zip(a.weights[1:], b.weights[1:]):
        np.testing.assert_allclose(Wa, Wb, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a.decision_function(Xt), b.decision_function(Xt - mu), rtol=1e-8, atol=1e-10)
    assert a.history["test_accuracy"] == b.history["test_accuracy"]
    assert a.history["train_accuracy"] == b.history["train_accuracy"]


def test_center_inputs_defaults_and_refusals():
    X, y = blobs(n=120, d=5, k=3, seed=1)
    many = fastadmm.train_admm(X, y, hidden=(6,), max_iter=1, random_state=0)
    one = fastadmm.train_admm(X, (y > 0).astype(int), hidden=(6,), max_iter=1, random_state=0)
    full = fastadmm.train_admm(X, y, hidden=(6,), max_iter=1, random_state=0, batch_size=None)
    assert (many.settings["center_inputs"], one.settings["center_inputs"], full.settings["center_inputs"]) == (
        MINI_BATCH["center_inputs"], MINI_BATCH_ONE_OUTPUT["center_inputs"], False)
    with pytest.raises(ValueError, match="center_inputs=True applies to mini-batch ADMM only"):
        fastadmm.train_admm(X, y, hidden=(6,), batch_size=None, center_inputs=True)
    with pytest.raises(TypeError, match="center_inputs"):
        fastadmm.train_admm(X, y, hidden=(6,), center_inputs="yes")


def test_center_inputs_gram_metric_uses_the_centred_gram():
    from fastadmm import _backend, _losses

    X, y = blobs(n=90, d=5, k=3, seed=2)
    X += 1.5
    s = ADMMSettings(batch_size=30, prox_metric="gram", dtype="float64", center_inputs=True,
                     skip_zero_inputs=False).resolved(n_outputs=3)
    p = MiniBatchADMM(X, _losses.targets(y, 3, np.float64), [6, 7, 3], "mse", s, _backend.get("numpy"),
                      np.random.default_rng(0), None, None)
    F = np.hstack([X - X.mean(axis=0), np.ones((90, 1))])
    np.testing.assert_allclose(p.S[1], F.T @ F / 90, rtol=1e-10, atol=1e-12)


def test_weight_decay_means_the_same_on_data_stacked_twice():
    """A fit on X and on X stacked twice (twice the batches per epoch, the same epochs) settle in the
    same ridge-regularised regime: the same training loss and weight norms within a few per cent,
    where a shrink once per batch would pull the stacked fit twice as hard.  The ridge is strong
    enough to matter (the loss is far above the unregularised fit's)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 6))
    y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(int) + (X[:, 2] > 0.5)

    def fit(reps, weight_decay):
        r = fastadmm.train_admm(np.vstack([X] * reps), np.tile(y, reps), hidden=(8,), batch_size=24, max_iter=80,
                                tol=0, weight_decay=weight_decay, output_refit=0, random_state=0, dtype="float64")
        return r.history["train_loss"][-1], np.array([np.linalg.norm(W) for W in r.weights])

    loss1, norms1 = fit(1, 0.3)
    loss2, norms2 = fit(2, 0.3)
    free, _ = fit(1, 0.0)
    assert loss1 > 1.3 * free
    assert abs(loss2 - loss1) < 0.05 * loss1
    np.testing.assert_allclose(norms2, norms1, rtol=0.15)


def test_the_compiled_updates_implement_their_declared_api(monkeypatch):
    """fastadmm._updates has every function of _updates_api with the declared parameters, and its
    constants (FLOAT32_COND_LIMIT that of _linalg); a build that differs is refused as stale."""
    from fastadmm import _backend, _updates_api

    upd = _compiled_updates()
    assert all(_updates_api.parameters(getattr(upd, name)) is not None for name in _updates_api.FUNCTIONS)
    assert _updates_api.problems(upd) == []
    monkeypatch.setattr(upd, "FLOAT32_COND_LIMIT", 1e5)
    assert _updates_api.problems(upd) == ["its FLOAT32_COND_LIMIT is 100000.0, declared 10000.0"]
    _backend.updates.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="stale build .*FLOAT32_COND_LIMIT"):
            assert _backend.updates() is None
    finally:
        monkeypatch.undo()
        _backend.updates.cache_clear()


@pytest.mark.parametrize("order", ["residual", "layerwise", "targets_first"])
def test_the_numpy_and_compiled_updates_give_the_same_epoch(order):
    """One backend object per fit: the NumPy updates (the reference) and the compiled ones agree."""
    from fastadmm import _backend

    module = _compiled_updates()
    X, y = blobs(n=90, d=12, k=3, seed=4)
    T = np.eye(3)[y]
    s = ADMMSettings(batch_size=30, sweep_order=order, dtype="float64").resolved(n_outputs=3)
    steps = []
    for which in (None, module):
        p = MiniBatchADMM(X, T, [13, 9, 6, 3], "mse", s, _backend.get("numpy"), np.random.default_rng(0), None, None)
        p.updates = mb_updates.get(which, *p.updates.sizes)
        p.sweep({"W": 0.0, "a": 0.0, "z": 0.0})
        steps.append(p)
    assert isinstance(steps[1].updates, mb_updates.CompiledUpdates)
    for W, V in zip(steps[0].W[1:], steps[1].W[1:]):
        np.testing.assert_allclose(W, V, rtol=1e-9, atol=1e-9)


# -- layer 1's updates formed once per batch (minibatch.first_layer) ----------------------------------


@pytest.mark.parametrize("dtype, prox, rtol", [("float64", 0.3, 1e-11), ("float32", 0.3, 2e-4),
                                               ("float32", 1e-7, 2e-3)])  # the last: factored in float64
def test_first_layer_updates_equal_the_proximal_steps_one_by_one(dtype, prox, rtol):
    from fastadmm import _comm
    from fastadmm.minibatch.first_layer import FirstLayer

    rng = np.random.default_rng(3)
    B, m, h, shrink = 20, 30, 7, 0.9
    assert FirstLayer.applies(B, m + 1)
    A = rng.uniform(0, 1, (B, m)).astype(dtype)
    W0 = rng.normal(0, 0.3, (h, m + 1)).astype(dtype)
    targets = [rng.normal(0, 1, (B, h)).astype(dtype) for _ in range(3)]
    ref = mb_updates.NumpyUpdates(np.dtype("float64"), 64 * 64, 64 * 64)
    W_ref = W0.astype(np.float64)
    first = FirstLayer(_comm.SingleProcess(), dtype, B, m, h)
    M = (A @ W0[:, :-1].T + W0[:, -1]).astype(dtype)
    R = np.empty((B, h), dtype)
    for j, Z in enumerate(targets):
        ref.w_update(1, A.astype(np.float64), Z.astype(np.float64), None, np.empty((B, h)), W_ref, prox, shrink)
        last = j == len(targets) - 1
        before = M.copy()
        first.update(1, A, Z, M, R, prox, shrink, None, product=not last)
        assert first.pending and first.updates == j + 1
        if last:  # the batch's last update keeps no product
            np.testing.assert_array_equal(M, before)
            continue
        # M is the product of the updated W_1, without W_1 being formed
        np.testing.assert_allclose(M, A.astype(np.float64) @ W_ref[:, :-1].T + W_ref[:, -1], rtol=rtol,
                                   atol=rtol * np.abs(M).max())
    W = W0.copy()
    first.finish(W)
    assert not first.pending
    np.testing.assert_allclose(W, W_ref, rtol=rtol, atol=rtol * np.abs(W_ref).max())


@pytest.mark.parametrize("order, sweeps", [("residual", 2), ("targets_first", 2), ("layerwise", 3)])
def test_a_fit_with_layer_1_formed_once_per_batch_equals_one_without(order, sweeps):
    from fastadmm import _backend, _losses

    rng = np.random.default_rng(1)
    X = rng.uniform(0, 1, (160, 40))
    y = rng.integers(0, 3, 160)
    T = _losses.targets(y, 3, X.dtype, "mse")
    s = ADMMSettings(batch_size=16, dtype="float64", sweep_order=order, batch_sweeps=sweeps,
                     weight_decay=1e-3).resolved(n_outputs=3)
    fits = []
    for lazy in (True, False):
        p = MiniBatchADMM(X, T, [41, 20, 3], "mse", s, _backend.get("cython"), np.random.default_rng(0), None, None)
        assert p.first is not None
        if not lazy:
            p.first = None  # every W_1-update as a plain proximal step
        for _ in range(2):
            p.sweep({"W": 0.0, "a": 0.0, "z": 0.0})
        fits.append(p.W)
    for W, R in zip(fits[0][1:], fits[1][1:]):
        np.testing.assert_allclose(W, R, rtol=1e-9, atol=1e-12)


def test_a_batch_smaller_than_prox_batch_is_damped_as_if_it_had_prox_batch_rows():
    X, y = blobs(n=200, d=6, k=3)
    kw = dict(hidden=(8,), max_iter=2, random_state=0, dtype="float64", tol=0)
    # batch 32 under the default prox_batch (128): the hidden layers' proximal weight times 4
    damped = fastadmm.train_admm(X, y, batch_size=32, **kw)
    assert damped.settings["prox_batch"] == MINI_BATCH["prox_batch"] == 128
    same = fastadmm.train_admm(X, y, batch_size=32, prox=4 * MINI_BATCH["prox"], prox_batch=1, **kw)
    for W, V in zip(damped.weights, same.weights):
        np.testing.assert_array_equal(W, V)
    # at or above prox_batch the weights are as given
    big = fastadmm.train_admm(X, y, batch_size=128, **kw)
    plain = fastadmm.train_admm(X, y, batch_size=128, prox_batch=1, **kw)
    for W, V in zip(big.weights, plain.weights):
        np.testing.assert_array_equal(W, V)
    # the one-output defaults are set for their own batch of 64
    assert MINI_BATCH_ONE_OUTPUT["prox_batch"] == MINI_BATCH_ONE_OUTPUT["batch_size"] == 64
    with pytest.raises(ValueError, match="prox_batch"):
        ADMMSettings(prox_batch=0)


@pytest.mark.parametrize("h", [1, 3])  # h = 1: a rank holds none of W's rows and still factors K
@pytest.mark.parametrize("B", [6, 20])  # push-through (B < 11) and normal equations
@pytest.mark.parametrize("taken_whole", [True, False])
def test_shared_w_update_over_thread_ranks_equals_the_one_process_step(h, B, taken_whole, monkeypatch):
    from test_comm import on_ranks

    from fastadmm.minibatch import shared
    from fastadmm.minibatch.shared import SharedWUpdate

    m, prox, shrink = 10, 0.4, 0.9
    if not taken_whole:  # a layer too large to take whole: rows of W per rank, or an all-reduce
        monkeypatch.setattr(shared, "WHOLE_MACS", 0)
    assert shared.whole(B, m, h) == taken_whole
    rng = np.random.default_rng(4)
    A, Z = rng.uniform(0, 1, (B, m)), rng.normal(size=(B, h))
    W0 = rng.normal(size=(h, m + 1))
    upd = mb_updates.NumpyUpdates(np.dtype("float64"), 64 * 64, 64 * 64)
    ref = W0.copy()
    upd.w_update(1, A, Z, None, np.empty((B, h)), ref, prox, shrink)
    split = [0, B // 3, B]  # uneven shards of the batch's rows
    counts = np.diff(split)

    def rank_step(comm):
        W = W0.copy()
        rows = slice(split[comm.rank], split[comm.rank + 1])
        M = A[rows] @ W0[:, :-1].T + W0[:, -1] if comm.rank else None  # the product given, or formed
        mine = mb_updates.NumpyUpdates(np.dtype("float64"), 64 * 64, 64 * 64)
        SharedWUpdate(comm, np.dtype("float64"), B, [m, h], mine).w_update(
            1, A[rows], Z[rows], M, np.empty((counts[comm.rank], h)), W, prox, shrink, counts)
        return W

    for kind, W in on_ranks(2, rank_step):
        assert kind == "ok", W
        np.testing.assert_allclose(W, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("split", [[0, 7, 20], [0, 0, 9, 20], [0, 5, 5, 20]])  # a rank may hold no rows
@pytest.mark.parametrize("h", [7, 2])  # h = 2 on 3 ranks: a rank forms none of W_1's rows
def test_first_layer_over_thread_ranks_equals_one_process(split, h):
    from test_comm import on_ranks

    from fastadmm import _comm
    from fastadmm.minibatch.first_layer import FirstLayer

    rng = np.random.default_rng(5)
    B, m, prox, shrink = 20, 30, 0.3, 0.9
    A = rng.uniform(0, 1, (B, m))
    W0 = rng.normal(0, 0.3, (h, m + 1))
    targets = [rng.normal(0, 1, (B, h)) for _ in range(3)]

    def run(comm, rows):
        first = FirstLayer(comm, np.float64, B, m, h)
        n = rows.stop - rows.start
        M = A[rows] @ W0[:, :-1].T + W0[:, -1]
        R = np.empty((n, h))
        products = []
        for Z in targets:
            first.update(1, A[rows], Z[rows], M, R, prox, shrink, None if comm.size == 1 else counts)
            products.append(M.copy())
        W = W0.copy()
        first.finish(W)
        return products, W

    counts = np.diff(split)
    ref_products, ref_W = run(_comm.SingleProcess(), slice(0, B))
    outcomes = on_ranks(len(counts), lambda comm: run(comm, slice(split[comm.rank], split[comm.rank + 1])))
    for rank, (kind, value) in enumerate(outcomes):
        assert kind == "ok", value
        products, W = value
        np.testing.assert_allclose(W, ref_W, rtol=1e-10, atol=1e-12)
        for M, ref in zip(products, ref_products):
            np.testing.assert_allclose(M, ref[split[rank] : split[rank + 1]], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss", ["mse", "hinge", "cross_entropy"])
@pytest.mark.parametrize("n_classes", [2, 5])
def test_class_targets_read_the_rows_of_the_targets_array(loss, n_classes):
    from fastadmm import _arrays, _losses

    y_index = (np.arange(40) * 7 % n_classes).astype(_arrays.index_dtype(n_classes))
    T = _losses.targets(y_index, n_classes, np.float32, loss)
    lazy = _losses.ClassTargets(y_index, n_classes, np.float32, loss)
    assert lazy.shape == T.shape and lazy.dtype == T.dtype and len(lazy) == 40
    np.testing.assert_array_equal(np.asarray(lazy), T)
    np.testing.assert_array_equal(lazy[5:17], T[5:17])
    rows = np.array([3, 0, 39, 3])
    out = np.full((4, T.shape[1]), -7.0, np.float32)
    np.take(lazy, rows, axis=0, out=out, mode="clip")  # what a batch step does
    np.testing.assert_array_equal(out, T[rows])
