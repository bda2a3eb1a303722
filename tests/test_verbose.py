"""verbose: one line per iteration from the one fit loop (train_admm, train_sgd, ADMMClassifier), then the
stop message; nothing without it."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from fastadmm import ADMMClassifier, train_admm
from fastadmm.sgd import train_sgd

from toy import blobs


def _data():
    X, y = blobs(n=120, d=5, k=3, seed=4)
    return (X - X.mean(axis=0)) / X.std(axis=0), y


def _lines(capsys):
    out = capsys.readouterr().out
    return out.splitlines()


FITS = {
    "admm": (lambda X, y, **kw: train_admm(X, y, hidden=(6,), random_state=0, **kw), "epoch", "ADMM"),
    "admm_full": (lambda X, y, **kw: train_admm(X, y, hidden=(6,), random_state=0, batch_size=None, **kw),
                  "iteration", "ADMM"),
    "sgd": (lambda X, y, **kw: train_sgd(X, y, hidden=(6,), random_state=0, batch_size=16, **kw), "epoch", "SGD"),
    "gd": (lambda X, y, **kw: train_sgd(X, y, hidden=(6,), random_state=0, **kw), "step", "GD"),
}

NUMBER = r"[0-9.e+-]+"


@pytest.mark.parametrize("method", list(FITS))
def test_one_line_per_iteration_then_the_stop_message(method, capsys):
    fit, name, label = FITS[method]
    X, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # full batch at max_iter
        res = fit(X[:100], y[:100], max_iter=4, verbose=1, X_test=X[100:], y_test=y[100:])
    lines = _lines(capsys)
    assert len(lines) == res.n_iter + 1 == 5
    h = res.history
    for k, line in enumerate(lines[:-1]):
        m = re.fullmatch(rf"{name} (\d+), loss ({NUMBER}), accuracy ({NUMBER}), test accuracy ({NUMBER}), ({NUMBER}) s",
                         line)
        assert m, line
        assert int(m[1]) == h["iteration"][k] == k + 1
        assert float(m[2]) == pytest.approx(h["train_loss"][k], rel=1e-4)
        assert float(m[3]) == pytest.approx(h["train_accuracy"][k], abs=1e-4)
        assert float(m[4]) == pytest.approx(h["test_accuracy"][k], abs=1e-4)
        assert 0 <= float(m[5]) < 60
    assert lines[-1] == f"{label}: {res.message}"


def test_validation_accuracy_is_on_the_line(capsys):
    X, y = _data()
    res = train_admm(X, y, hidden=(6,), random_state=0, max_iter=3, verbose=True, validation_fraction=0.2)
    lines = _lines(capsys)
    assert len(lines) == 4
    for k, line in enumerate(lines[:-1]):
        assert f", validation accuracy {res.history['validation_accuracy'][k]:.4f}, " in line
        assert "test accuracy" not in line


def test_an_iteration_without_evaluation_has_a_line_with_its_seconds_only(capsys):
    X, y = _data()
    train_admm(X, y, hidden=(6,), random_state=0, max_iter=4, verbose=1, eval_every=2)
    lines = _lines(capsys)
    assert re.fullmatch(rf"epoch 1, {NUMBER} s", lines[0]) and lines[1].startswith("epoch 2, loss ")
    assert len(lines) == 5


@pytest.mark.parametrize("verbose", [0, False])
def test_silent_by_default(verbose, capsys):
    X, y = _data()
    train_admm(X, y, hidden=(6,), random_state=0, max_iter=2, verbose=verbose)
    train_admm(X, y, hidden=(6,), random_state=0, max_iter=2)
    train_sgd(X, y, hidden=(6,), random_state=0, max_iter=2, batch_size=16, verbose=verbose)
    assert capsys.readouterr().out == ""


def test_the_estimator_passes_verbose_on(capsys):
    X, y = _data()
    clf = ADMMClassifier(hidden_layer_sizes=(6,), max_iter=3, random_state=0, verbose=1).fit(X, y)
    lines = _lines(capsys)
    assert len(lines) == clf.n_iter_ + 1 and all(line.startswith("epoch ") for line in lines[:-1])
    ADMMClassifier(hidden_layer_sizes=(6,), max_iter=3, random_state=0).fit(X, y)
    assert capsys.readouterr().out == ""
    clf = ADMMClassifier(hidden_layer_sizes=(6,), max_iter=3, random_state=0, verbose=1, early_stopping=True).fit(X, y)
    lines = _lines(capsys)
    assert all(", validation accuracy " in line for line in lines[:-1])
    np.testing.assert_array_equal(len(lines), clf.n_iter_ + 1)
