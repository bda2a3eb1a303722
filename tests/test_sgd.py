"""The compiled gradient-descent / SGD baseline against finite differences and a plain NumPy version."""

import os
import signal
import warnings

import numpy as np
import pytest

from fastadmm.sgd import (
    ADAM_BETAS,
    ADAM_EPS,
    DEFAULT_ADAM_LR,
    DEFAULT_LR,
    DEFAULT_MAX_ITER,
    DEFAULT_MOMENTUM,
    SGDSettings,
    loss_and_gradient,
    train_sgd,
)

from fastadmm.admm import DivergenceWarning

import sgd_reference as ref
from toy import blobs


def _away_from_kinks(weights, X, T, loss, intercept, margin):
    """True when no pre-activation (and, for hinge, no output at a hinge) is within `margin` of a kink."""
    a = np.hstack([X, np.ones((X.shape[0], 1))]) if intercept else X
    for l, W in enumerate(weights, start=1):
        z = a @ W.T
        if l < len(weights):
            if np.min(np.abs(z)) < margin:
                return False
            a = np.maximum(z, 0)
    if loss == "hinge":
        kink = np.where(T > 0.5, 1.0, 0.0)
        return np.min(np.abs(z - kink)) >= margin
    return True


def _n_out(k, loss):
    return 1 if k == 2 and loss != "cross_entropy" else k


@pytest.mark.parametrize("loss", ["mse", "hinge", "cross_entropy"])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("intercept", [False, True])
def test_gradient_matches_central_finite_differences(loss, k, intercept):
    rng = np.random.default_rng(10 * k + intercept)
    sizes = [5, 4, 3, _n_out(k, loss)]
    n = 9
    for _ in range(200):  # draw until every ReLU and hinge is at least `margin` from its kink
        X = rng.normal(size=(n, sizes[0]))
        T = ref.targets(rng.integers(0, k, n), k, loss).T.copy()
        weights = ref.initial_weights(rng, sizes, None, intercept)
        if intercept:
            weights[0][:, -1] = rng.normal(0, 0.5, sizes[1])
        if _away_from_kinks(weights, X, T, loss, intercept, margin=1e-3):
            break
    else:
        pytest.fail("no draw away from the kinks")
    value, grads = loss_and_gradient(weights, X, T, loss=loss, intercept=intercept)
    ref_value, ref_grads = ref.loss_and_gradient(weights, X.T, T.T, loss, intercept)
    assert value == pytest.approx(ref_value, rel=1e-12)
    eps = 1e-6
    for l, W in enumerate(weights):
        assert grads[l].shape == W.shape
        np.testing.assert_allclose(grads[l], ref_grads[l], rtol=1e-10, atol=1e-12)
        numeric = np.empty_like(W)
        for idx in np.ndindex(W.shape):
            plus = [w.copy() for w in weights]
            minus = [w.copy() for w in weights]
            plus[l][idx] += eps
            minus[l][idx] -= eps
            f_plus = loss_and_gradient(plus, X, T, loss=loss, intercept=intercept)[0]
            f_minus = loss_and_gradient(minus, X, T, loss=loss, intercept=intercept)[0]
            numeric[idx] = (f_plus - f_minus) / (2 * eps)
        np.testing.assert_allclose(grads[l], numeric, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("iterations", [1, 2, 3])
@pytest.mark.parametrize("nesterov", [False, True])
def test_gradient_descent_steps_match_numpy_reference(iterations, nesterov):
    """Step 1 is a plain gradient step (v starts at 0); steps 2 and 3 use the momentum."""
    X, y = blobs(n=40, d=6, seed=3)
    sizes = [6, 5, 4, 1]
    kw = dict(lr=0.07, momentum=0.8, nesterov=nesterov)
    res = train_sgd(X, y, hidden=(5, 4), max_iter=iterations, random_state=4, **kw)
    expected = ref.train(X, y, sizes, iterations=iterations, seed=4, **kw)
    assert res.method == "gd" and res.n_iter == iterations
    for W, E in zip(res.weights, expected):
        np.testing.assert_allclose(W, E, rtol=1e-10, atol=1e-12)


def test_cross_entropy_gradient_is_softmax_minus_targets_and_stable():
    """A linear model (no hidden layer): d(mean loss)/dW = (softmax(XW^T) - T)^T X / n, and outputs of
    +-1000 (where a naive exp overflows) give finite values equal to the shifted formula's."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(6, 4))
    T = np.eye(3)[rng.integers(0, 3, 6)]
    W = rng.normal(size=(3, 4))
    value, (G,) = loss_and_gradient([W], X, T, loss="cross_entropy")
    O = X @ W.T
    P = np.exp(O) / np.exp(O).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(G, (P - T).T @ X / 6, rtol=1e-13, atol=1e-15)
    assert value == pytest.approx(np.mean(-np.log(P[T > 0.5])), rel=1e-13)
    big, (Gb,) = loss_and_gradient([W * 1000.0], X, T, loss="cross_entropy")
    Ob = X @ (W * 1000.0).T
    Pb = np.exp(Ob - Ob.max(axis=1, keepdims=True))
    Pb /= Pb.sum(axis=1, keepdims=True)
    lse = Ob.max(axis=1) + np.log(np.exp(Ob - Ob.max(axis=1, keepdims=True)).sum(axis=1))
    assert np.isfinite(big) and big == pytest.approx(np.mean(lse - (Ob * T).sum(axis=1)), rel=1e-12)
    np.testing.assert_allclose(Gb, (Pb - T).T @ X / 6, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("loss", ["mse", "hinge", "cross_entropy"])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("intercept", [False, True])
def test_sgd_epochs_match_numpy_reference(loss, k, intercept):
    """Two epochs of batch 7 over 30 rows: shuffled batches, a short last batch, momentum."""
    X, y = blobs(n=30, d=5, k=k, seed=k)
    sizes = [5, 6, 4, _n_out(k, loss)]
    kw = dict(lr=0.05, momentum=0.9, batch_size=7, loss=loss, intercept=intercept)
    res = train_sgd(X, y, hidden=(6, 4), epochs=2, random_state=9, init_scale=None, **kw)
    expected = ref.train(X, y, sizes, iterations=2, seed=9, **kw)
    assert res.method == "sgd" and res.n_iter == 2
    for W, E in zip(res.weights, expected):
        np.testing.assert_allclose(W, E, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("batch_size, iterations", [(None, 1), (None, 3), (7, 1), (7, 3), (30, 2)])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("intercept", [False, True])
def test_adam_matches_numpy_reference(batch_size, iterations, loss, k, intercept):
    """Adam steps (the step count and both moments carried across epochs) in float64: GD steps, SGD
    epochs of batch 7 over 30 rows (a short last batch) and one batch per epoch."""
    X, y = blobs(n=30, d=5, k=k, seed=k + 1)
    sizes = [5, 6, 4, _n_out(k, loss)]
    kw = dict(lr=0.01, batch_size=batch_size, loss=loss, intercept=intercept)
    res = train_sgd(X, y, hidden=(6, 4), optimizer="adam", max_iter=iterations, random_state=3, **kw)
    expected = ref.train(X, y, sizes, iterations=iterations, seed=3, optimizer="adam", **kw)
    assert res.n_iter == iterations and res.settings["optimizer"] == "adam"
    for W, E in zip(res.weights, expected):
        np.testing.assert_allclose(W, E, rtol=1e-12, atol=1e-13)
    # ... and the weights moved by about lr per entry on the first step (Adam's normalised step), so
    # a match is not a match of two unchanged initial draws.
    start = ref.initial_weights(np.random.default_rng(3), sizes, None, intercept)
    assert np.max(np.abs(res.weights[-1] - start[-1])) > 0.5 * kw["lr"]


def _torch_adam(torch, X, y, sizes, loss, intercept, epochs, batch_size, lr, seed, k):
    """torch.optim.Adam (defaults) on the same net, initial weights and permutations as train_sgd."""
    rng = np.random.default_rng(seed)
    init = ref.initial_weights(rng, sizes, None, intercept)
    layers = []
    for l, W in enumerate(init):
        bias = intercept and l == 0
        lin = torch.nn.Linear(W.shape[1] - bias, W.shape[0], bias=bias, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(W[:, :-1] if bias else W))
            if bias:
                lin.bias.copy_(torch.from_numpy(W[:, -1]))
        layers += [lin, torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers[:-1])
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    T = torch.from_numpy(ref.targets(y, k, loss).T.copy())
    for _ in range(epochs):
        for rows in ref.batches(rng, X.shape[0], batch_size):
            idx = torch.from_numpy(rows)
            opt.zero_grad()
            out = net(Xt[idx])
            if loss == "cross_entropy":
                f = torch.nn.functional.cross_entropy(out, yt[idx])
            else:
                f = ((out - T[idx]) ** 2).sum(dim=1).mean()
            f.backward()
            opt.step()
    weights = [m.weight.detach().numpy().copy() for m in net if isinstance(m, torch.nn.Linear)]
    if intercept:
        weights[0] = np.hstack([weights[0], net[0].bias.detach().numpy()[:, None]])
    return weights


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
@pytest.mark.parametrize("k, intercept", [(2, True), (3, False), (3, True)])
def test_adam_matches_torch_optim_adam(loss, k, intercept):
    torch = pytest.importorskip("torch")
    X, y = blobs(n=30, d=5, k=k, seed=7)
    sizes = [5, 6, 4, _n_out(k, loss)]
    res = train_sgd(X, y, hidden=(6, 4), loss=loss, optimizer="adam", lr=0.01, batch_size=7, epochs=3,
                    random_state=11, intercept=intercept)
    expected = _torch_adam(torch, X, y, sizes, loss, intercept, epochs=3, batch_size=7, lr=0.01, seed=11, k=k)
    assert ADAM_BETAS == (0.9, 0.999) and ADAM_EPS == 1e-8  # torch's defaults, used above
    for W, E in zip(res.weights, expected):
        np.testing.assert_allclose(W, E, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("batch_size", [None, 16])
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_adam_separates_a_toy_problem_with_its_default_lr(batch_size, loss):
    X, y = blobs(n=600, d=20, k=3, seed=12, spread=2.0)
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    res = train_sgd(X[:400], y[:400], hidden=(32, 16), loss=loss, optimizer="adam", batch_size=batch_size,
                    max_iter=60 if batch_size else 300, random_state=0, X_test=X[400:], y_test=y[400:])
    assert res.status == "max_iter" and res.settings["lr"] == DEFAULT_ADAM_LR[res.method]
    assert res.settings["momentum"] is None and res.settings["optimizer"] == "adam"
    assert res.score(X[400:], y[400:]) >= 0.95
    assert res.history["train_loss"][-1] < 0.5 * res.history["train_loss"][0]


def test_cross_entropy_two_classes_gives_two_outputs_and_the_mean_loss():
    X, y = blobs(n=80, d=4, seed=6)
    res = train_sgd(X, y, hidden=(6,), loss="cross_entropy", batch_size=16, epochs=3, random_state=0,
                    X_test=X, y_test=y, train_metrics="full")
    assert res.loss == "cross_entropy" and [W.shape for W in res.weights] == [(6, 5), (2, 6)]
    out = res.decision_function(X)
    mx = out.max(axis=1)
    lse = mx + np.log(np.exp(out - mx[:, None]).sum(axis=1))
    assert res.history["train_loss"][-1] == pytest.approx(np.mean(lse - out[np.arange(80), y]), rel=1e-10)
    assert res.score(X, y) == pytest.approx(res.history["test_accuracy"][-1])
    assert np.array_equal(res.predict(X), np.argmax(out, axis=1))


def test_adam_float32_runs_in_float32_and_agrees_with_float64():
    X, y = blobs(n=200, d=8, k=3, seed=2)
    kw = dict(hidden=(12, 6), batch_size=20, epochs=2, random_state=1, optimizer="adam", loss="cross_entropy")
    r64 = train_sgd(X, y, **kw)
    r32 = train_sgd(X.astype(np.float32), y, **kw)
    assert all(W.dtype == np.float32 for W in r32.weights)
    for W32, W64 in zip(r32.weights, r64.weights):
        np.testing.assert_allclose(W32, W64, rtol=1e-3, atol=1e-4)


def test_gaussian_init_scale_and_plain_sgd_match_reference():
    X, y = blobs(n=25, d=4, seed=1)
    kw = dict(lr=0.1, momentum=0.0, batch_size=25, init_scale=0.3)
    res = train_sgd(X, y, hidden=(3,), epochs=3, random_state=2, **kw)
    expected = ref.train(X, y, [4, 3, 1], iterations=3, seed=2, **kw)
    for W, E in zip(res.weights, expected):
        np.testing.assert_allclose(W, E, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("batch_size", [None, 16])
@pytest.mark.parametrize("loss", ["mse", "hinge"])
def test_training_separates_a_toy_problem_and_generalises(batch_size, loss):
    X, y = blobs(n=600, d=20, k=3, seed=11, spread=2.0)
    X = (X - X.mean(axis=0)) / X.std(axis=0)  # gradient methods want inputs of unit scale
    res = train_sgd(X[:400], y[:400], hidden=(32, 16), loss=loss, batch_size=batch_size, max_iter=60,
                    lr=0.02, random_state=0, X_test=X[400:], y_test=y[400:])
    assert res.status in ("max_iter", "converged")  # SGD's training-loss rule may end it early (hinge: 0)
    assert res.score(X[400:], y[400:]) >= 0.95
    assert res.history["test_accuracy"][-1] == pytest.approx(res.score(X[400:], y[400:]))
    assert res.history["train_loss"][-1] < res.history["train_loss"][0]


def test_result_fields_history_and_timings():
    X, y = blobs()
    Xt, yt = blobs(n=80, seed=1)
    res = train_sgd(X, y, hidden=(16, 8), batch_size=32, epochs=7, eval_every=3, X_test=Xt, y_test=yt,
                    random_state=0, train_metrics="full")
    h = res.history
    assert h["iteration"] == [3, 6, 7]  # every 3rd epoch and the last one
    assert all(len(v) == 3 for v in h.values())
    assert np.all(np.diff(h["elapsed"]) > 0) and h["elapsed"][-1] <= res.timings["train"] + 1e-9
    assert all(0 <= a <= 1 for a in h["train_accuracy"] + h["test_accuracy"])
    assert all(v >= 0 for v in h["train_loss"])
    for phase in ("setup", "compile", "train", "eval", "total"):
        assert res.timings[phase] >= 0
    assert res.timings["total"] >= res.timings["train"] + res.timings["eval"] + res.timings["compile"]
    assert res.status == "max_iter" and res.n_iter == 7 and res.method == "sgd" and res.loss == "mse"
    assert res.state is None and res.intercept  # biased first layer by default, like ADMM
    assert [W.shape for W in res.weights] == [(16, 12 + 1), (8, 16), (1, 8)]
    s = res.settings
    assert s["method"] == "sgd" and s["batch_size"] == 32 and s["max_iter"] == 7 and s["hidden"] == [16, 8]
    assert s["lr"] == DEFAULT_LR["sgd"] and s["momentum"] == DEFAULT_MOMENTUM["sgd"] and s["dtype"] == "float64"
    assert res.predict(Xt).shape == (80,) and set(res.predict(Xt)) <= {0, 1}
    assert res.score(Xt, yt) == pytest.approx(h["test_accuracy"][-1])
    # The evaluated training loss is the mean over samples of the forward pass's summed loss.
    out = res.decision_function(X)
    assert h["train_loss"][-1] == pytest.approx(np.mean((out[:, 0] - y) ** 2), rel=1e-10)


def test_without_test_set_and_eval_every_zero():
    X, y = blobs(n=100)
    res = train_sgd(X, y, hidden=(8,), max_iter=5, eval_every=0, random_state=0)
    assert res.history["iteration"] == [5] and np.isnan(res.history["test_accuracy"][0])
    assert res.method == "gd" and res.settings["lr"] == DEFAULT_LR["gd"]
    assert res.settings["momentum"] == DEFAULT_MOMENTUM["gd"]


def test_default_iterations_and_string_labels():
    X, y = blobs(n=60, d=4)
    labels = np.array(["cat", "dog"])[y]
    res = train_sgd(X, labels, hidden=(4,), eval_every=0, random_state=0)
    assert res.n_iter == DEFAULT_MAX_ITER["gd"] and list(res.classes) == ["cat", "dog"]
    assert set(res.predict(X)) <= {"cat", "dog"}


def test_epochs_and_max_iter_are_the_same_count():
    X, y = blobs(n=50, d=4)
    a = train_sgd(X, y, hidden=(4,), batch_size=10, epochs=3, random_state=5)
    b = train_sgd(X, y, hidden=(4,), batch_size=10, max_iter=3, random_state=5)
    for Wa, Wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(Wa, Wb)


def test_same_seed_same_weights_other_seed_other_weights():
    X, y = blobs(n=120, d=6, k=3)
    kw = dict(hidden=(10, 5), batch_size=16, epochs=4)
    a = train_sgd(X, y, random_state=7, **kw)
    b = train_sgd(X, y, random_state=7, **kw)
    c = train_sgd(X, y, random_state=8, **kw)
    for Wa, Wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(Wa, Wb)
    assert a.history["train_loss"] == b.history["train_loss"]
    assert not np.array_equal(a.weights[0], c.weights[0])


def test_float32_runs_in_float32_and_agrees_with_float64():
    X, y = blobs(n=200, d=8, seed=2)
    kw = dict(hidden=(12, 6), batch_size=20, epochs=3, random_state=1)
    r64 = train_sgd(X, y, **kw)
    r32 = train_sgd(X.astype(np.float32), y, **kw)
    assert all(W.dtype == np.float32 for W in r32.weights) and r32.settings["dtype"] == "float32"
    for W32, W64 in zip(r32.weights, r64.weights):
        np.testing.assert_allclose(W32, W64, rtol=1e-3, atol=1e-4)
    r = train_sgd(X, y, hidden=(4,), max_iter=2, dtype="float32", random_state=0)
    assert r.weights[0].dtype == np.float32


def test_intercept_puts_the_bias_in_the_last_column():
    X, y = blobs(n=100, d=5)
    X = X + 10.0  # far from the origin
    res = train_sgd(X, y, hidden=(6,), max_iter=20, intercept=True, random_state=0, X_test=X, y_test=y)
    assert res.intercept and res.weights[0].shape == (6, 6)
    assert np.any(res.weights[0][:, -1] != 0)
    assert res.score(X, y) == pytest.approx(res.history["test_accuracy"][-1])


def test_linear_model_without_hidden_layers():
    X, y = blobs(n=100, d=5)
    res = train_sgd(X, y, hidden=(), max_iter=50, lr=0.01, random_state=0)
    assert [W.shape for W in res.weights] == [(1, 5 + 1)] and res.score(X, y) > 0.9  # + bias column


def test_time_limit_status():
    X, y = blobs(n=2000, d=50)
    X /= X.std()
    res = train_sgd(X, y, hidden=(64, 32), batch_size=8, epochs=10_000, time_limit=0.05, random_state=0)
    assert res.status == "time_limit" and 1 <= res.n_iter < 10_000
    assert res.history["iteration"][-1] == res.n_iter


def test_callback_sees_each_evaluation_and_can_stop():
    X, y = blobs()
    seen = []

    def cb(info):
        seen.append(info["iteration"])
        return info["iteration"] == 4

    res = train_sgd(X, y, hidden=(8,), max_iter=10, eval_every=2, callback=cb, random_state=0)
    assert seen == [2, 4] and res.status == "interrupted" and res.n_iter == 4


def test_sigint_returns_interrupted_result_with_a_warning():
    X, y = blobs()

    def cb(info):
        if info["iteration"] == 2:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.warns(UserWarning, match="interrupted"):
        res = train_sgd(X, y, hidden=(8,), batch_size=16, epochs=10, callback=cb, random_state=0)
    assert res.status == "interrupted" and res.n_iter == 2
    assert res.predict(X).shape == y.shape


def test_keyboard_interrupt_returns_the_result_so_far():
    X, y = blobs()

    def cb(info):
        if info["iteration"] == 3:
            raise KeyboardInterrupt

    with pytest.warns(UserWarning, match="KeyboardInterrupt"):
        res = train_sgd(X, y, hidden=(8,), max_iter=10, callback=cb, random_state=0)
    assert res.status == "interrupted" and res.n_iter == 3
    assert all(len(v) == 3 for v in res.history.values())
    assert all(np.isfinite(W).all() for W in res.weights)


@pytest.mark.parametrize("batch_size", [None, 10])
def test_divergence_keeps_last_finite_weights(batch_size):
    X, y = blobs(n=60, d=5)
    with pytest.warns(DivergenceWarning, match="diverged"):
        # A linear model with a step far beyond 2 / (largest curvature): the loss grows geometrically.
        # tol=0: without the training-loss rule, which stops a rising loss after n_iter_no_change epochs
        res = train_sgd(X, y, hidden=(), max_iter=500, batch_size=batch_size, lr=1.0, random_state=0, tol=0)
    assert res.status == "diverged" and 1 < res.n_iter < 500
    assert all(np.isfinite(W).all() for W in res.weights)
    assert len(res.history["iteration"]) == res.n_iter
    assert all(np.isfinite(v) for v in res.history["train_loss"])


def _X_with_nan():
    X, _ = blobs(n=20, d=3)
    X[4, 1] = np.nan
    return X


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(X=_X_with_nan()), ValueError, "X contains NaN"),
        (dict(X=np.zeros(20)), ValueError, "X must be 2-D"),
        (dict(y=np.zeros(19, int)), ValueError, "y has 19 labels"),
        (dict(y=np.zeros(20, int)), ValueError, "single class"),
        (dict(lr=0.0), ValueError, "lr"),
        (dict(lr=-1.0), ValueError, "lr"),
        (dict(lr=float("nan")), ValueError, "lr"),
        (dict(lr="fast"), TypeError, "lr"),
        (dict(momentum=1.0), ValueError, "momentum"),
        (dict(momentum=-0.1), ValueError, "momentum"),
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(batch_size=21), ValueError, "batch_size"),
        (dict(batch_size=2.5), TypeError, "batch_size"),
        (dict(max_iter=0), ValueError, "max_iter"),
        (dict(epochs=0), ValueError, "epochs"),
        (dict(max_iter=3, epochs=3), ValueError, "max_iter or epochs"),
        (dict(hidden=(4, 0)), ValueError, "hidden"),
        (dict(loss="log"), ValueError, "loss"),
        (dict(init_scale=0.0), ValueError, "init_scale"),
        (dict(eval_every=-1), ValueError, "eval_every"),
        (dict(time_limit=0), ValueError, "time_limit"),
        (dict(threads=0), ValueError, "threads"),
        (dict(dtype="float16"), ValueError, "dtype"),
        (dict(nesterov=True, momentum=0.0), ValueError, "nesterov"),
        (dict(optimizer="rmsprop"), ValueError, "optimizer must be one of"),
        (dict(optimizer=None), ValueError, "optimizer must be one of"),
        (dict(optimizer="adam", momentum=0.9), ValueError, "momentum and nesterov apply"),
        (dict(optimizer="adam", nesterov=True), ValueError, "momentum and nesterov apply"),
        (dict(callback=3), TypeError, "callback"),
        (dict(X_test=np.zeros((5, 3))), ValueError, "X_test and y_test"),
        (dict(X_test=np.zeros((5, 4)), y_test=np.zeros(5, int)), ValueError, "X_test has 4 features"),
        (dict(random_state="seed"), TypeError, "random_state"),
    ],
)
def test_bad_input_names_the_argument(kwargs, error, name):
    X, y = blobs(n=20, d=3)
    args = dict(X=X, y=y, hidden=(4,), max_iter=None)
    args.update(kwargs)
    with pytest.raises(error, match=name):
        train_sgd(args.pop("X"), args.pop("y"), **args)


def test_settings_dataclass_documents_and_checks_the_defaults():
    s = SGDSettings()
    assert s.method == "gd" and s.lr is None and s.momentum is None and s.batch_size is None
    assert SGDSettings(batch_size=64).method == "sgd"
    with pytest.raises(ValueError, match="momentum"):
        SGDSettings(momentum=1.5)
    assert set(SGDSettings().as_dict()) >= {"lr", "momentum", "nesterov", "batch_size", "max_iter", "init_scale",
                                            "optimizer"}
    assert SGDSettings().optimizer == "momentum" and SGDSettings(optimizer="adam").optimizer == "adam"


def test_threads_setting_runs():
    X, y = blobs(n=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = train_sgd(X, y, hidden=(8,), max_iter=3, threads=1, random_state=0)
    assert res.settings["threads"] == 1 and res.n_iter == 3


@pytest.mark.parametrize("batch_size", [None, 16])
@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_all_zero_features_are_left_out_exactly(batch_size, intercept, optimizer):
    """Features that are 0 in every training sample get a zero gradient: training without them gives
    the full-width weights, with those columns at their initial values."""
    X, y = blobs(n=80, d=10, seed=3)
    zero = [0, 4, 5, 9]
    X[:, zero] = 0.0
    X_test, y_test = blobs(n=30, d=10, seed=4)  # non-zero there: meets the initial weights
    kw = dict(hidden=(6, 4), batch_size=batch_size, max_iter=4, random_state=5, intercept=intercept,
              X_test=X_test, y_test=y_test, lr=0.05, optimizer=optimizer)
    res = train_sgd(X, y, **kw)
    plain = train_sgd(X, y, skip_zero_inputs=False, **kw)
    start = train_sgd(X, y, **dict(kw, max_iter=1, lr=1e-300))  # ~ the initial weights
    assert res.weights[0].shape == (6, 10 + intercept) and res.settings["n_features"] == 10
    for got, want in zip(res.weights, plain.weights):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(res.weights[0][:, zero], plain.weights[0][:, zero])
    np.testing.assert_array_equal(res.weights[0][:, zero], start.weights[0][:, zero])
    np.testing.assert_allclose(res.history["test_accuracy"], plain.history["test_accuracy"])
