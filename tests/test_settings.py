"""Numpy scalars accepted wherever Python
numbers are in ADMMSettings / train_admm / ADMMClassifier, and stored as Python numbers."""
import warnings

import numpy as np
import pytest

from fastadmm import ADMMClassifier, ADMMSettings, train_admm
from toy import blobs


def test_settings_accept_numpy_scalars_and_store_python_numbers():
    s = ADMMSettings(beta=np.float32(1.5), gamma=np.float64(8), ridge=np.float32(0), init_scale=np.float32(1e-3),
                     warm_start_iter=np.int64(2), eval_every=np.int32(1), penalty_every=np.int64(3),
                     intercept=np.bool_(False), multiplier=np.True_, threads=np.int64(1), time_limit=np.float32(5))
    assert s.beta == 1.5 and type(s.beta) is float and type(s.warm_start_iter) is int
    assert s.intercept is False and s.multiplier is True and type(s.threads) is int


@pytest.mark.parametrize("field, bad, exc", [
    ("beta", np.bool_(True), TypeError), ("beta", np.float32("nan"), ValueError), ("intercept", 1, TypeError),
    ("warm_start_iter", np.float64(2), TypeError), ("warm_start_iter", np.int64(-1), ValueError),
    ("threads", np.int64(0), ValueError), ("gram_decay", 1.0, ValueError),
])
def test_settings_reject_with_the_name(field, bad, exc):
    with pytest.raises(exc, match=field):
        ADMMSettings(**{field: bad})


def test_train_admm_and_estimator_with_numpy_scalars():
    X, y = blobs(n=80, d=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = train_admm(X, y, hidden=(np.int64(4),), max_iter=np.int64(3), beta=np.float32(1.0),
                         warm_start_iter=np.int64(1), intercept=np.bool_(True), random_state=np.int64(0), batch_size=None)
        ref = train_admm(X, y, hidden=(4,), max_iter=3, beta=1.0, warm_start_iter=1, intercept=True, random_state=0,
                         batch_size=None)
        for W, V in zip(res.weights, ref.weights):
            np.testing.assert_array_equal(W, V)
        clf = ADMMClassifier(beta=np.float32(1.0), warm_start_iter=np.int64(1), intercept=np.bool_(False), batch_size=None,
                             max_iter=np.int64(3), hidden_layer_sizes=(np.int64(4),)).fit(X, y)
    assert clf.coefs_[0].shape == (4, 4)
