"""train_admm's boundary on the default (mini-batch) method: each case ends in a clear error naming the
setting, or in a good fit (a resume with other settings, a refused refit of the estimator, a magnitude
that overflows the fit's dtype, a setting of the other method, a net too large for memory)."""

import warnings

import numpy as np
import pytest

import fastadmm
from fastadmm import _memory, _settings
from toy import blobs


@pytest.fixture(scope="module")
def data():
    return blobs(n=120, d=5, k=3, seed=1)


def _quiet(**kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fastadmm.train_admm(**kw)


# 1. A resume with settings that change the method is refused, naming them; when and how the fit stops
#    and runs may change.


@pytest.mark.parametrize("changed, named", [
    (dict(beta=5.0), "beta: 0.3 -> 5.0"),
    (dict(batch_size=16), "batch_size: 32 -> 16"),
    (dict(dtype="float64"), "dtype: 'float32' -> 'float64'"),
    (dict(prox=0.5), "prox: 0.3 -> 0.5"),
    (dict(beta=5.0, weight_decay=1e-2), "beta: 0.3 -> 5.0; weight_decay: 0.0001 -> 0.01"),
])
def test_resume_with_settings_that_change_the_method_is_refused_naming_them(data, tmp_path, changed, named):
    X, y = data
    kw = dict(X=X, y=y, hidden=(6,), random_state=0, batch_size=32)
    first = fastadmm.train_admm(max_iter=2, **kw)
    first.save(tmp_path / "fit.npz")
    with pytest.raises(ValueError, match="init was trained with other settings") as info:
        fastadmm.train_admm(max_iter=2, init=fastadmm.load(tmp_path / "fit.npz"), **{**kw, **changed})
    assert named in str(info.value)


def test_resume_may_change_when_the_fit_stops_and_what_it_measures(data):
    X, y = data
    kw = dict(X=X, y=y, hidden=(6,), random_state=0, batch_size=32, tol=0)
    whole = fastadmm.train_admm(max_iter=4, **kw)
    first = fastadmm.train_admm(max_iter=2, **kw)
    second = fastadmm.train_admm(max_iter=2, init=first, **{**kw, "eval_every": 2, "time_limit": 100.0,
                                                              "n_iter_no_change": 3, "backend": "numpy"})
    assert second.n_iter == 4
    for a, b in zip(whole.weights, second.weights):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)  # the numpy backend's rounding differs slightly


def test_resume_free_fields_are_settings():
    names = {f.name for f in fastadmm.ADMMSettings.__dataclass_fields__.values()}
    assert set(_settings.RESUME_FREE) <= names


# 2. The estimator checks everything before it changes its fitted state.


def test_refused_refit_leaves_the_old_model_usable(data):
    pytest.importorskip("sklearn")
    from fastadmm import ADMMClassifier

    X, y = data
    clf = ADMMClassifier(max_iter=2, random_state=0).fit(X, y)
    before = clf.predict(X)
    with pytest.raises(ValueError, match="beta"):
        clf.set_params(beta=-1).fit(X[:, :3], y)
    assert clf.n_features_in_ == 5
    np.testing.assert_array_equal(clf.predict(X), before)
    with pytest.raises(ValueError, match="ridge"):  # a setting of the other method: refused, model kept
        clf.set_params(beta=None, ridge=0.5).fit(X[:, :3], y)
    np.testing.assert_array_equal(clf.predict(X), before)


# 3. The magnitude check uses the fit's dtype (float32 by default for mini-batch), not X's.


def test_float64_x_too_large_for_the_float32_fit_is_refused_naming_dtype(data):
    X, y = data
    with pytest.raises(ValueError, match=r"overflow float32, the fit's dtype.*dtype='float64'"):
        fastadmm.train_admm(X * 1e30, y, hidden=(6,))
    with pytest.raises(ValueError, match="overflow float64"):
        fastadmm.train_admm(X * 1e160, y, hidden=(6,), dtype="float64")


@pytest.mark.parametrize("batch_size", [None, 32])
def test_divergence_advice_names_settings_of_the_method_in_use(batch_size):
    hint = _settings.divergence_hint(batch_size)
    other = _settings.MINI_BATCH_ONLY if batch_size is None else _settings.FULL_BATCH_ONLY
    named = [name for name in fastadmm.ADMMSettings.__dataclass_fields__ if name in hint]
    assert named and not set(named) & set(other)
    assert ("initialization='forward'" in hint) == (batch_size is None)  # "forward" is full batch's


# 4. A setting of the other method, given, is refused naming the method it belongs to.

OTHER = dict(init_scale=1e-2, ridge=0.5, warm_start_iter=2, multiplier=False, sweep_order="layerwise", prox=0.5,
             output_prox=2.0, prox_batch=32, prox_metric="gram", batch_sweeps=3, output_refit=1e-2, gram_decay=0.5,
             weight_decay=1e-3, center_inputs=True)


def test_every_method_only_field_has_a_case():
    assert set(OTHER) == set(_settings.FULL_BATCH_ONLY) | set(_settings.MINI_BATCH_ONLY)


@pytest.mark.parametrize("name", _settings.FULL_BATCH_ONLY)
def test_full_batch_setting_in_mini_batch_is_refused(data, name):
    X, y = data
    with pytest.raises(ValueError, match=rf"{name}=.* applies to full-batch ADMM only"):
        fastadmm.train_admm(X, y, hidden=(6,), max_iter=1, **{name: OTHER[name]})
    _quiet(X=X, y=y, hidden=(6,), max_iter=1, batch_size=None, **{name: OTHER[name]})  # its own method takes it


@pytest.mark.parametrize("name", _settings.MINI_BATCH_ONLY)
def test_mini_batch_setting_in_full_batch_is_refused(data, name):
    X, y = data
    with pytest.raises(ValueError, match=rf"{name}=.* applies to mini-batch ADMM only"):
        fastadmm.train_admm(X, y, hidden=(6,), max_iter=1, batch_size=None, **{name: OTHER[name]})
    _quiet(X=X, y=y, hidden=(6,), max_iter=1, **{name: OTHER[name]})


def test_defaults_and_a_full_batch_record_are_not_given(data):
    X, y = data
    full = _quiet(X=X, y=y, hidden=(6,), max_iter=1, batch_size=None)
    fields = fastadmm.ADMMSettings.__dataclass_fields__
    again = fastadmm.ADMMSettings(**{k: v for k, v in full.settings.items() if k in fields})
    _quiet(X=X, y=y, hidden=(6,), max_iter=1, settings=again)  # the record of a fit passes as settings
    fastadmm.ADMMSettings.paper().resolved()


# 5. A net that cannot fit in memory is refused naming hidden, before any allocation.


def test_hidden_too_large_for_memory_is_refused_naming_hidden(data):
    X, y = data
    with pytest.raises(ValueError, match=r"hidden=\(1000000000,\): the fit needs at least .* of memory"):
        fastadmm.train_admm(X, y, hidden=(10**9,))
    with pytest.raises(ValueError, match=r"hidden=\(1000000000,\)"):
        fastadmm.train_admm(X, y, hidden=(10**9,), batch_size=None)


def test_memory_check_compares_with_what_is_available(data, monkeypatch):
    X, y = data
    monkeypatch.setattr(_memory, "available_bytes", lambda: 1000)
    with pytest.raises(ValueError, match=r"hidden=\(6,\).*1,000|hidden=\(6,\).*available"):
        fastadmm.train_admm(X, y, hidden=(6,))
    monkeypatch.setattr(_memory, "available_bytes", lambda: None)  # unknown: not refused
    assert fastadmm.train_admm(X, y, hidden=(6,), max_iter=1).n_iter == 1
