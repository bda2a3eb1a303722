"""Faults around a fit that must never lose it and callbacks that stop it."""

from __future__ import annotations

import tempfile
import warnings

import numpy as np
import pytest

import fastadmm
from fastadmm import admm as admm_module
from toy import blobs


def two_blobs():
    return blobs(n=120, d=6)


def test_checkpoint_path_that_is_a_folder_is_refused_before_the_fit(tmp_path):
    X, y = two_blobs()
    with pytest.raises(ValueError, match="is a folder; pass a file path"):
        fastadmm.train_admm(X, y, hidden=(4,), max_iter=2, checkpoint=tmp_path)


def test_unwritable_checkpoint_folder_is_refused_before_the_fit(tmp_path, monkeypatch):
    X, y = two_blobs()
    calls = []

    def refuse(*args, **kwargs):  # root may write anywhere: simulate the folder refusing new files
        calls.append(kwargs.get("dir"))
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(ValueError, match="is not writable"):
        fastadmm.train_admm(X, y, hidden=(4,), max_iter=2, checkpoint=tmp_path / "fit.npz")
    assert calls == [tmp_path]


def test_a_failing_final_save_returns_the_result_and_warns(tmp_path, monkeypatch):
    X, y = two_blobs()

    def disk_full(self, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fastadmm.Result, "save", disk_full)
    with pytest.warns(admm_module.CheckpointWarning, match="could not be written to"):
        result = fastadmm.train_admm(X, y, hidden=(4,), max_iter=3, checkpoint=tmp_path / "fit.npz",
                                     checkpoint_every=1, random_state=0)
    assert result.n_iter == 3 and result.status in ("max_iter", "converged")
    assert "could not be written" in result.message
    assert result.score(X, y) > 0.5


def test_keyboard_interrupt_inside_the_callback_keeps_the_fit():
    X, y = two_blobs()

    def callback(info):
        if info["iteration"] == 2:
            raise KeyboardInterrupt

    result = fastadmm.train_admm(X, y, hidden=(4,), max_iter=10, callback=callback, random_state=0)
    assert result.status == "interrupted" and result.n_iter == 2
    assert "KeyboardInterrupt" in result.message


def test_callback_sees_the_current_weights_on_request():
    X, y = two_blobs()
    seen = []

    def callback(info):
        seen.append(info["weights"]())

    result = fastadmm.train_admm(X, y, hidden=(4,), max_iter=3, callback=callback, random_state=0, tol=0)
    assert len(seen) == 3
    for W_seen, W_final in zip(seen[-1], result.weights):
        np.testing.assert_array_equal(W_seen, W_final)
    seen[-1][0][...] = 0  # a copy: changing it leaves the Result alone
    assert np.abs(result.weights[0]).sum() > 0


def test_huge_X_is_a_clear_error_naming_X():
    X, y = two_blobs()
    with pytest.raises(ValueError, match="X is too large in magnitude"):
        fastadmm.train_admm(X * 1e200, y, hidden=(4,), max_iter=2, dtype="float64")
    # the mini-batch default computes in float32: values beyond its range are named, with the fix
    with pytest.raises(ValueError, match="X holds values up to .* which do not fit float32 .* pass dtype='float64'"):
        fastadmm.train_admm(X * 1e200, y, hidden=(4,), max_iter=2)


def test_huge_init_scale_is_a_clear_error_naming_it():
    X, y = two_blobs()
    with pytest.raises(ValueError, match="init_scale=1e\\+308 makes the initial values overflow"):
        fastadmm.train_admm(X, y, hidden=(4,), max_iter=2, init_scale=1e308, batch_size=None)  # full batch only


def test_resume_on_other_data_of_the_same_size_is_refused():
    X, y = two_blobs()
    first = fastadmm.train_admm(X, y, hidden=(4,), max_iter=2, random_state=0)
    other = X[::-1].copy()
    with pytest.raises(ValueError, match="init was trained on other data"):
        fastadmm.train_admm(other, y[::-1], hidden=(4,), max_iter=2, init=first)
    again = fastadmm.train_admm(X, y, hidden=(4,), max_iter=2, init=first)  # the same data resumes
    assert again.n_iter == 4
