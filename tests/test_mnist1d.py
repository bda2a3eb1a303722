"""MNIST-1D in miniature: the default mini-batch method learns features where a linear model cannot.

MNIST-1D (Greydanus 2020) comes from the ``mnist1d`` package's own generator (a test extra); a linear
model reaches about 0.32 on it and a trained MLP about 0.68 on the default 5,000 samples.
"""

import warnings

import numpy as np
import pytest

import fastadmm

mnist1d_data = pytest.importorskip("mnist1d.data")


@pytest.fixture(scope="module")
def data():
    args = mnist1d_data.get_dataset_args()
    args.num_samples = 5000
    d = mnist1d_data.make_dataset(args)
    return d["x"], d["y"], d["x_test"], d["y_test"]


def test_default_fit_learns_features_and_keeps_climbing(data):
    X, y, Xt, yt = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a default fit ends without a warning
        r = fastadmm.train_admm(X, y, X_test=Xt, y_test=yt, hidden=(100, 100), random_state=0, max_iter=30, tol=0)
    train = np.array(r.history["train_accuracy"])
    assert train[-1] > 0.6  # a linear model stops near 0.35 on the training rows
    assert train[-1] >= train.max() - 0.01  # no fall below the best
    assert r.history["test_accuracy"][-1] > 0.45
