"""Every combination of X's dtype (float32, float64) and the fit's ``dtype=`` (float32, float64), for
train_admm (mini-batch and full batch) and train_sgd (minibatch SGD and gradient descent).

A fit of float32 X in float64 is the fit of the same values given as float64 (float32 values are
exact in float64), so the weights must be equal; float64 X in float32 is the fit of X rounded to
float32 (mini-batch ADMM rounds each batch as it gathers it, never copying X whole)."""

import itertools
import warnings

import numpy as np
import pytest

from fastadmm import train_admm
from fastadmm.sgd import train_sgd

from toy import blobs

DTYPES = ("float32", "float64")


def _data():
    X, y = blobs(n=200, d=10, k=3, seed=3, spread=2.0)
    X[:, :2] = 0.0  # features zero in every row: skip_zero_inputs leaves them out (the gathers by column)
    X_test, y_test = X[:40] + 0.01, y[:40]
    return X, y, X_test, y_test


def _fit(method, X, y, dtype, **kw):
    X_all, y_all, X_test, y_test = _data()
    X_test = X_test.astype(X.dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # full-batch ADMM stops at max_iter=3 before its tol: expected
        if method.startswith("admm"):
            batch = None if method == "admm_full" else 32
            return train_admm(X, y, hidden=(6,), max_iter=3, random_state=0, dtype=dtype, batch_size=batch,
                              X_test=X_test, y_test=y_test, **kw)
        batch = None if method == "gd" else 32
        return train_sgd(X, y, hidden=(6,), max_iter=3, random_state=0, dtype=dtype, batch_size=batch,
                         X_test=X_test, y_test=y_test, **kw)


METHODS = ("admm_minibatch", "admm_full", "sgd", "gd")


@pytest.mark.parametrize("method, x_dtype, dtype", list(itertools.product(METHODS, DTYPES, DTYPES)))
def test_every_dtype_combination_trains_in_the_asked_dtype(method, x_dtype, dtype):
    X, y, _, _ = _data()
    res = _fit(method, X.astype(x_dtype), y, dtype)
    assert all(W.dtype == np.dtype(dtype) for W in res.weights)
    assert res.settings["dtype"] == dtype
    assert np.isfinite(res.history["train_loss"]).all()
    assert 0 <= res.history["train_accuracy"][-1] <= 1 and 0 <= res.history["test_accuracy"][-1] <= 1
    # the same model as a fit of X converted to the fit's dtype beforehand
    ref = _fit(method, X.astype(x_dtype).astype(dtype), y, dtype)
    for W, V in zip(res.weights, ref.weights):
        np.testing.assert_array_equal(W, V)


@pytest.mark.parametrize("backend", ["cython", "numpy"])
@pytest.mark.parametrize("skip_zero_inputs", [True, False])
def test_float32_X_in_a_float64_minibatch_fit_on_every_gather_path(backend, skip_zero_inputs):
    """The batch gather has three paths (compiled rows and columns in one pass; NumPy rows only;
    NumPy rows then kept columns); float32 X into float64 batches crashed in np.take before."""
    X, y, _, _ = _data()
    X32 = X.astype(np.float32)
    kw = dict(backend=backend, skip_zero_inputs=skip_zero_inputs)
    res = _fit("admm_minibatch", X32, y, "float64", **kw)
    ref = _fit("admm_minibatch", X32.astype(np.float64), y, "float64", **kw)
    for W, V in zip(res.weights, ref.weights):
        np.testing.assert_array_equal(W, V)


def test_an_unknown_dtype_is_refused_with_the_choices():
    X, y, _, _ = _data()
    with pytest.raises(ValueError, match=r"dtype must be .*float32.*float64"):
        train_admm(X, y, dtype="float16")
    with pytest.raises(ValueError, match=r"dtype must be .*float32.*float64"):
        train_sgd(X, y, dtype="float16")
