"""A default call limits BLAS to one thread for the fit (threads=1), whatever the process had set;
threads=None leaves the pools as they are (benchmarks/threads_default.py measures why)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

import fastadmm
from toy import blobs


def _blas_threads():
    return sorted({p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"})


def _fit_threads(train, **kw):
    X, y = blobs(n=60, k=2, seed=0)
    seen = []

    def callback(record):
        seen.append(_blas_threads())

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(X, y, hidden=(6,), max_iter=2, random_state=0, callback=callback, **kw)
    return seen


@pytest.mark.parametrize("train", [fastadmm.train_admm, fastadmm.train_sgd])
def test_default_call_uses_one_blas_thread(train):
    if not _blas_threads():
        pytest.skip("threadpoolctl sees no BLAS library")
    with threadpool_limits(2, user_api="blas"):
        outside = _blas_threads()
        seen = _fit_threads(train)
        assert seen and all(s == [1] for s in seen), seen
        assert _blas_threads() == outside  # restored after the fit
        as_they_are = _fit_threads(train, threads=None)
        assert all(s == outside for s in as_they_are), (as_they_are, outside)


def test_estimator_default_threads_is_one():
    X, y = blobs(n=60, k=3, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = fastadmm.ADMMClassifier(max_iter=2, random_state=0).fit(X, y)
    assert clf.threads == 1 and clf.result_.settings["threads"] == 1
    assert np.isfinite(clf.coefs_[0]).all()
