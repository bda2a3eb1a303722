"""Result's prediction methods: input checks, and predict_proba / predict_log_proba against a plain
reference (the documented maps), consistent with predict."""

import warnings

import numpy as np
import pytest

from fastadmm import Result, train_admm
from fastadmm._result import BINARY_SLOPE, log_proba

from toy import blobs


def _linear_result(W, classes, loss="mse", dtype=np.float64):
    """A Result of a linear model (no hidden layer, intercept column last): outputs X @ W[:, :-1].T + b."""
    return Result(status="max_iter", n_iter=1, weights=[np.asarray(W, dtype)], classes=np.asarray(classes),
                  loss=loss, method="admm", intercept=True)


def _reference_proba(out):
    out = np.asarray(out, dtype=np.float64)
    if out.shape[1] == 1:
        with np.errstate(over="ignore"):
            p = 1.0 / (1.0 + np.exp(-BINARY_SLOPE * (out[:, 0] - 0.5)))
        return np.stack([1 - p, p], axis=1)
    e = np.exp(out - out.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_all_nan_and_partly_nan_rows_raise_naming_x_and_the_rows():
    res = _linear_result([[1.0, -1.0, 0.2]], [0, 1])
    X = np.zeros((5, 2))
    X[1] = np.nan  # an all-NaN row was predicted as classes[0] before
    X[3, 0] = np.inf
    for method in (res.predict, res.predict_proba, res.decision_function, res.predict_log_proba):
        with pytest.raises(ValueError, match=r"X contains NaN or infinity in 2 of 5 rows \(first at row 1; rows 1, 3\)"):
            method(X)


def test_complex_x_raises_instead_of_dropping_the_imaginary_part():
    res = _linear_result([[1.0, -1.0, 0.2]], [0, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # before: a ComplexWarning, then predictions of the real part
        with pytest.raises(TypeError, match="X must hold real numbers, got complex"):
            res.predict(np.ones((3, 2)) + 1j)
        with pytest.raises(TypeError, match="complex"):
            res.predict_proba(np.ones((3, 2), dtype=np.complex64))


def test_wrong_shape_names_x():
    res = _linear_result([[1.0, -1.0, 0.2]], [0, 1])
    with pytest.raises(ValueError, match="X has 3 features, but the model was fitted with 2"):
        res.predict(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="X must be 2-D"):
        res.predict(np.zeros(2))


def test_single_output_probabilities_follow_the_documented_map():
    # outputs o = 2 x0 - 0.5 over a grid, including far beyond 0 and 1 and the threshold itself
    x0 = np.array([-500.0, -1, 0, 0.2, 0.25, 0.3, 0.5, 0.75, 1, 500])
    res = _linear_result([[2.0, 0.0, -0.5]], ["neg", "pos"])
    X = np.stack([x0, np.zeros_like(x0)], axis=1)
    out = res.decision_function(X)
    np.testing.assert_allclose(out[:, 0], 2 * x0 - 0.5)
    P = res.predict_proba(X)
    np.testing.assert_allclose(P, _reference_proba(out), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    assert P[6, 1] == 0.5  # the threshold o = 0.5 (x0 = 0.5) maps to 0.5
    assert np.all(np.diff(P[:, 1]) > 0)  # strictly increasing in o
    labels = res.predict(X)
    off = np.arange(10) != 6  # argmax of a tie picks the first column, predict too (o > 0.5 is False)
    np.testing.assert_array_equal(res.classes[np.argmax(P, axis=1)][off], labels[off])
    assert labels[6] == "neg" and np.argmax(P[6]) == 0
    # log space is exact where the probabilities underflow: o = -1000.5, 999.5
    L = res.predict_log_proba(X)
    assert np.isfinite(L).all()
    np.testing.assert_allclose(L[0], [0.0, BINARY_SLOPE * (-1000.5 - 0.5)], rtol=1e-12)
    np.testing.assert_allclose(L[1:-1], np.log(P[1:-1]), rtol=1e-12, atol=1e-15)  # log near 1: absolute
    # slope BINARY_SLOPE / 4 at the threshold, and the documented values at the targets 1 and 0
    o = np.array([[0.5 - 1e-6], [0.5 + 1e-6], [1.0], [0.0]])
    q = np.exp(log_proba(o))[:, 1]
    assert abs((q[1] - q[0]) / 2e-6 - BINARY_SLOPE / 4) < 1e-6
    np.testing.assert_allclose(q[2:], [1 / (1 + np.exp(-4.0)), 1 / (1 + np.exp(4.0))])  # 0.982, 0.018
    assert BINARY_SLOPE == 8.0


@pytest.mark.parametrize("loss, k", [("mse", 3), ("hinge", 4), ("cross_entropy", 2), ("cross_entropy", 3)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_several_outputs_give_the_softmax(loss, k, dtype):
    rng = np.random.default_rng(k)
    W = rng.normal(0, 3, (k, 5))
    res = _linear_result(W, np.arange(k) * 10, loss, dtype)
    X = rng.normal(size=(50, 4)).astype(dtype)
    out = res.decision_function(X)
    P = res.predict_proba(X)
    assert P.shape == (50, k) and P.dtype == dtype
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(P, _reference_proba(out), rtol=tol, atol=tol)
    np.testing.assert_array_equal(res.classes[np.argmax(P, axis=1)], res.predict(X))
    np.testing.assert_allclose(res.predict_log_proba(X), np.log(_reference_proba(out)), rtol=tol, atol=tol)
    # far-apart outputs: finite log-probabilities, exact 0 / 1 probabilities, no overflow warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        far = _linear_result(W * 1e4, res.classes, loss, dtype)
        assert np.isfinite(far.predict_log_proba(X)).all()
        np.testing.assert_allclose(far.predict_proba(X).sum(axis=1), 1, rtol=tol)


def test_trained_two_class_result_probabilities_agree_with_predict():
    X, y = blobs(n=200, d=6, k=2, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = train_admm(X, y, hidden=(16,), max_iter=10, random_state=0)
    P = res.predict_proba(X)
    assert P.shape == (200, 2)
    np.testing.assert_array_equal(np.argmax(P, axis=1), res.predict(X))
    # ranking matches the output (strictly monotone map)
    o = res.decision_function(X)[:, 0]
    order = np.argsort(o, kind="stable")
    assert np.all(np.diff(P[order, 1]) >= 0)
