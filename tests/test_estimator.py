"""ADMMClassifier against scikit-learn's conventions (check_estimator) and a pipeline."""

import numpy as np
import pytest
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastadmm import ADMMClassifier

# Checks that scikit-learn itself skips, and why (none is skipped by fastadmm):
# - check_array_api_input: runs only with SCIPY_ARRAY_API=1 and array-api-strict installed;
#   fastadmm computes with NumPy arrays only.


@parametrize_with_checks([ADMMClassifier(random_state=0)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_fit_returns_self_and_sets_attributes():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    clf = ADMMClassifier(hidden_layer_sizes=(16,), max_iter=15, random_state=0)
    assert clf.fit(X, y) is clf
    assert clf.n_iter_ == len(clf.loss_curve_) == clf.result_.n_iter
    assert [W.shape for W in clf.coefs_] == [(16, 6), (1, 16)]  # 5 features + intercept
    assert list(clf.classes_) == [0, 1] and clf.n_features_in_ == 5
    assert clf.score(X, y) > 0.9
    assert clf.decision_function(X).shape == (120,)
    assert clf.result_.state is None  # the fitted estimator does not keep the ADMM iterates


def test_get_set_params_and_pipeline():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 4)) * [1, 10, 100, 1000]
    y = rng.integers(0, 3, 150)
    X[np.arange(150), y] += 3 * [1, 10, 100][0]
    clf = ADMMClassifier(max_iter=5)
    clf.set_params(max_iter=20, hidden_layer_sizes=(8,))
    assert clf.get_params()["max_iter"] == 20
    pipe = make_pipeline(StandardScaler(), ADMMClassifier(hidden_layer_sizes=(16,), max_iter=20, random_state=0))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.mean() > 0.5


def test_bad_parameters_fail_in_fit_with_the_name():
    X = np.random.default_rng(0).normal(size=(20, 3))
    y = np.arange(20) % 2
    with pytest.raises(ValueError, match="beta"):
        ADMMClassifier(beta=-1).fit(X, y)
    with pytest.raises(ValueError, match="hidden"):
        ADMMClassifier(hidden_layer_sizes=(0,)).fit(X, y)
