"""ADMMClassifier against scikit-learn's conventions (check_estimator) and a pipeline."""

import numpy as np
import pytest
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastadmm import ADMMClassifier

from toy import blobs

# Checks that scikit-learn itself skips, and why (none is skipped by fastadmm):
# - check_array_api_input: runs only with SCIPY_ARRAY_API=1 and array-api-strict installed;
#   fastadmm computes with NumPy arrays only.


@parametrize_with_checks([ADMMClassifier(random_state=0), ADMMClassifier(random_state=0, early_stopping=True)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_fit_returns_self_and_sets_attributes():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 5))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    clf = ADMMClassifier(hidden_layer_sizes=(16,), max_iter=15, random_state=0, batch_size=None)  # full batch
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


# -- parameters: every ADMMSettings field, keyword-only ---------------------------------------------


def test_every_settings_field_is_a_parameter_with_its_default():
    import dataclasses

    import inspect

    from sklearn.base import clone

    from fastadmm import ADMMSettings, train_admm

    params = ADMMClassifier().get_params()
    for f in dataclasses.fields(ADMMSettings):  # the declared defaults (None stays None)
        assert params[f.name] == f.default and f.default is not dataclasses.MISSING, f.name
    own = {"hidden_layer_sizes": (100,), "loss": "mse", "early_stopping": False,
           "max_iter": inspect.signature(train_admm).parameters["max_iter"].default,
           "validation_fraction": 0.1, "random_state": None, "verbose": 0, "comm": None}
    assert params["n_iter_no_change"] == 10  # a field of ADMMSettings (its stop rules)
    assert set(params) == {f.name for f in dataclasses.fields(ADMMSettings)} | set(own)
    assert {k: params[k] for k in own} == own
    clf = ADMMClassifier(intercept=False, penalty_growth=1.5, eval_every=2)
    assert clone(clf).get_params() == clf.get_params()
    assert clf.set_params(intercept=True).intercept is True
    with pytest.raises(TypeError, match="unknown parameter.*'hidden'.*valid parameters are"):
        ADMMClassifier(hidden=(3,))
    with pytest.raises(TypeError):
        ADMMClassifier((16,))  # keyword-only, as scikit-learn's own estimators


def test_a_settings_parameter_reaches_the_fit():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] > 0).astype(int)
    kw = dict(hidden_layer_sizes=(5,), max_iter=3, tol=0, random_state=0, batch_size=None)  # full batch
    assert ADMMClassifier(**kw).fit(X, y).coefs_[0].shape == (5, 5)  # intercept column
    clf = ADMMClassifier(intercept=False, ridge=0.5, **kw).fit(X, y)
    assert clf.coefs_[0].shape == (5, 4) and clf.result_.settings["ridge"] == 0.5


def test_numpy_scalars_for_the_estimators_own_parameters():
    X, y = blobs(n=100, d=4, k=3, seed=2)
    clf = ADMMClassifier(hidden_layer_sizes=(np.int64(8),), max_iter=np.int64(6), random_state=np.int64(0),
                         early_stopping=np.bool_(True), validation_fraction=np.float32(0.2),
                         n_iter_no_change=np.int64(2), tol=0)
    clf.fit(X, y)
    assert clf.coefs_[0].shape == (8, 5) and 1 <= clf.n_iter_ <= 6


@pytest.mark.parametrize("early_stopping", [False, True])
def test_negative_random_state_is_named(early_stopping):
    X, y = blobs(n=60, d=3)
    with pytest.raises(ValueError, match="random_state must be None, an int >= 0"):
        ADMMClassifier(random_state=-1, max_iter=2, early_stopping=early_stopping).fit(X, y)


# -- predict_proba -------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [2, 3])
def test_predict_proba_agrees_with_predict_and_decision_function(k):
    from scipy.stats import rankdata

    X, y = blobs(n=150, d=5, k=k, seed=4, spread=2.0)
    labels = np.array(["ant", "bee", "cat"])[y]
    clf = ADMMClassifier(hidden_layer_sizes=(16,), max_iter=10, tol=0, random_state=0).fit(X, labels)
    P = clf.predict_proba(X)
    assert P.shape == (150, k)
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.classes_[np.argmax(P, axis=1)], clf.predict(X))
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(P), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(P, clf.result_.predict_proba(X))
    if k == 2:  # the same ranking as the decision function (a strictly increasing map)
        np.testing.assert_array_equal(rankdata(P[:, 1]), rankdata(clf.decision_function(X)))


# -- ConvergenceWarning: scikit-learn's, from the estimator only ---------------------------------


def _convergence_warnings(clf, X, y):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit(X, y)
    return [w for w in caught if "onvergence" in w.category.__name__]


def test_convergence_warning_is_scikit_learns_at_max_iter_only():
    from sklearn.exceptions import ConvergenceWarning

    X, y = blobs()
    full = dict(hidden_layer_sizes=(8,), random_state=0, batch_size=None)
    caught = _convergence_warnings(ADMMClassifier(max_iter=2, **full), X, y)
    assert [w.category for w in caught] == [ConvergenceWarning]  # train_admm's, as scikit-learn's (once)
    assert "max_iter=2" in str(caught[0].message) and caught[0].filename == __file__
    # tol=0 asks for max_iter iterations: nothing to warn about; a met tolerance neither
    assert _convergence_warnings(ADMMClassifier(max_iter=2, tol=0, **full), X, y) == []
    clf = ADMMClassifier(max_iter=200, tol=1e-2, **full)
    assert _convergence_warnings(clf, X, y) == [] and clf.result_.status == "converged"
    # mini-batch ADMM (the default): max_iter epochs is an ordinary end, no warning
    clf = ADMMClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0)
    assert _convergence_warnings(clf, X, y) == [] and clf.result_.status == "max_iter"


def test_other_warnings_of_train_admm_reach_the_user():
    import warnings

    from fastadmm import DivergenceWarning

    X, y = blobs()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ADMMClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0, batch_size=None,
                       divergence_factor=1e-9).fit(X, y)
    assert [w.category for w in caught] == [DivergenceWarning] and caught[0].filename == __file__


# -- early stopping ------------------------------------------------------------------------------


def _patience_stop(scores, n_iter_no_change, tol):
    """train_admm's validation rule, written out: (iterations run, best iteration)."""
    best, best_it, count = -np.inf, 0, 0
    for it, s in enumerate(scores, 1):
        count = 0 if s > best + tol * abs(best) or best_it == 0 else count + 1
        if s > best:
            best, best_it = s, it
        if count >= n_iter_no_change:
            return it, best_it
    return len(scores), best_it


def test_early_stopping_is_train_admms_validation_rule_and_keeps_the_best_weights():
    from fastadmm import _validation, train_admm

    X, y = blobs(n=300, d=8, k=3, seed=5, spread=3.0)
    kw = dict(hidden=(12,), random_state=0, tol=1e-6)
    clf = ADMMClassifier(hidden_layer_sizes=(12,), max_iter=60, early_stopping=True, validation_fraction=0.2,
                         n_iter_no_change=3, random_state=0, tol=1e-6).fit(X, y)
    # the same hold-out (the rows shuffled by random_state, then the last 20 % of every class), and an
    # ordinary fit on its training part, run to the end
    order = np.random.default_rng(0).permutation(300)
    Xs, ys = X[order], y[order]
    train, val = _validation.validation_rows(ys, 0.2)
    assert np.array_equal(np.bincount(ys[val]), np.round(np.bincount(y) * 0.2))  # stratified
    full = train_admm(Xs[train], ys[train], max_iter=60, X_test=Xs[val], y_test=ys[val], **kw)
    scores = full.history["test_accuracy"]
    n_run, best_it = _patience_stop(scores, 3, 1e-6)
    assert n_run < 60, "the toy problem must stop early for this test to test anything"
    assert clf.n_iter_ == n_run and clf.validation_scores_ == scores[:n_run]
    assert clf.result_.history["validation_accuracy"] == scores[:n_run]
    assert clf.best_validation_score_ == max(scores[:n_run])
    assert clf.result_.status == "converged" and f"kept the weights of epoch {best_it}" in clf.result_.message
    # the kept weights are exactly those after best_it iterations (not the last ones)
    at_best = train_admm(Xs[train], ys[train], max_iter=best_it, **kw)
    assert best_it < n_run
    for W, V in zip(clf.coefs_, at_best.weights):
        np.testing.assert_array_equal(W, V)
    assert np.mean(clf.result_.predict(Xs[val]) == ys[val]) == clf.best_validation_score_


def test_early_stopping_off_sets_no_validation_attributes():
    X, y = blobs(n=80, d=3)
    clf = ADMMClassifier(hidden_layer_sizes=(4,), max_iter=3, tol=0, random_state=0).fit(X, y)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    assert np.isnan(clf.result_.history["test_accuracy"]).all()


@pytest.mark.parametrize(
    "params, exc, match",
    [
        (dict(validation_fraction=0.0), ValueError, r"validation_fraction must be a finite number > 0 and < 1"),
        (dict(validation_fraction=1.0), ValueError, r"validation_fraction must be a finite number > 0 and < 1"),
        (dict(validation_fraction="0.1"), TypeError, "validation_fraction must be a real number"),
        (dict(n_iter_no_change=0), ValueError, "n_iter_no_change must be an integer >= 1"),
        (dict(n_iter_no_change=2.5), TypeError, "n_iter_no_change must be an integer"),
        (dict(early_stopping="yes"), TypeError, "early_stopping must be True or False"),
        (dict(eval_every=0), ValueError, "early_stopping needs the validation accuracy: set eval_every >= 1"),
    ],
)
def test_early_stopping_bad_parameters_are_named(params, exc, match):
    X, y = blobs(n=60, d=3, k=3)
    with pytest.raises(exc, match=match):
        ADMMClassifier(**{"early_stopping": True, "max_iter": 2, **params}).fit(X, y)


def test_early_stopping_holds_out_at_least_one_sample_per_class():
    X, y = blobs(n=20, d=3, k=3, seed=1)
    # round(0.1 * n_c) = 1 of each class: three held out, where MLPClassifier's ceil(0.1 * 20) = 2 would
    # miss a class
    clf = ADMMClassifier(hidden_layer_sizes=(4,), early_stopping=True, max_iter=3, tol=0, random_state=0).fit(X, y)
    assert clf.result_.settings["n_samples"] == 17 and clf.result_.settings["n_validation"] == 3
    assert clf.validation_scores_ == clf.result_.history["validation_accuracy"]
    # a class of a single sample is not held out (it stays in the training rows)
    y_one = y.copy()
    y_one[0] = 7
    clf = ADMMClassifier(hidden_layer_sizes=(4,), early_stopping=True, max_iter=2, random_state=0).fit(X, y_one)
    assert 7 in clf.classes_ and clf.result_.settings["n_validation"] == 3
    # 4 classes, 5 samples: only class 3 (two samples) gives one
    clf = ADMMClassifier(hidden_layer_sizes=(4,), early_stopping=True, max_iter=2, random_state=0)
    clf.fit(X[:5], [0, 1, 2, 3, 3])
    assert clf.result_.settings["n_validation"] == 1 and list(clf.classes_) == [0, 1, 2, 3]


def _admm_trains_cross_entropy():
    """False while train_admm does not implement loss="cross_entropy" yet (it is being added)."""
    from fastadmm import train_admm

    X, y = blobs(n=20, d=2)
    try:
        train_admm(X, y, hidden=(), loss="cross_entropy", max_iter=1, tol=0)
    except (KeyError, NotImplementedError):
        return False
    return True


@pytest.mark.skipif(not _admm_trains_cross_entropy(), reason="train_admm has no cross_entropy yet")
def test_cross_entropy_two_classes_has_two_outputs_and_a_softmax():
    from scipy.stats import rankdata

    X, y = blobs(n=120, d=4, k=2, seed=6, spread=2.0)
    clf = ADMMClassifier(hidden_layer_sizes=(8,), loss="cross_entropy", max_iter=10, tol=0, random_state=0).fit(X, y)
    out = clf.result_.decision_function(X)
    assert out.shape == (120, 2) and clf.coefs_[-1].shape[0] == 2
    np.testing.assert_allclose(clf.decision_function(X), out[:, 1] - out[:, 0])
    P = clf.predict_proba(X)
    e = np.exp(out - out.max(axis=1, keepdims=True))
    np.testing.assert_allclose(P, e / e.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_array_equal(clf.classes_[np.argmax(P, axis=1)], clf.predict(X))
    np.testing.assert_array_equal(rankdata(P[:, 1].round(10)), rankdata(clf.decision_function(X).round(10)))


def test_early_stopping_never_holds_out_a_whole_class():
    X = np.random.default_rng(0).normal(size=(40, 3))
    y = np.r_[[0, 0], np.ones(19, int), 2 * np.ones(19, int)]  # class 0 has two samples
    clf = ADMMClassifier(early_stopping=True, validation_fraction=0.8, max_iter=2, random_state=0).fit(X, y)
    # 0.8 of each class, but one sample of every class stays to train on
    assert clf.result_.settings["n_validation"] == 1 + 15 + 15 and clf.result_.settings["n_samples"] == 9


def test_early_stopping_over_thread_ranks_gives_every_rank_the_same_model():
    from test_comm import on_ranks

    X, y = blobs(n=120, d=5, k=3, spread=2.0)
    split = [0, 50, 120]

    def fit(comm):
        rows = slice(split[comm.rank], split[comm.rank + 1])
        return ADMMClassifier(comm=comm, early_stopping=True, hidden_layer_sizes=(6,), max_iter=6,
                              random_state=0).fit(X[rows], y[rows])

    fitted = []
    for kind, value in on_ranks(2, fit):
        assert kind == "ok", value
        fitted.append(value)
    a, b = fitted
    assert a.validation_scores_ and a.validation_scores_ == b.validation_scores_
    assert a.best_validation_score_ == max(a.validation_scores_)
    for W, V in zip(a.coefs_, b.coefs_):
        np.testing.assert_array_equal(W, V)
