"""Result.save / fastadmm.load: round trip, resume from a file, and files that must not load."""

import os

import numpy as np
import pytest

import fastadmm
from fastadmm import CheckpointError, train_admm


def data(n=150, d=8, k=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3, (k, d))
    y = rng.integers(0, k, n)
    return centers[y] + rng.normal(size=(n, d)), y


def test_round_trip_keeps_everything(tmp_path):
    X, y = data()
    labels = np.array(["a", "b", "c"])[y]
    res = train_admm(X, labels, hidden=(6,), max_iter=4, X_test=X, y_test=labels, random_state=0,
                     eval_every=2, tol=0)
    path = res.save(tmp_path / "model")
    assert path.name == "model.npz" and path.exists()
    back = fastadmm.load(path)
    for a, b in zip(res.weights, back.weights):
        np.testing.assert_array_equal(a, b)
    assert back.status == res.status and back.n_iter == 4 and back.loss == res.loss
    assert list(back.classes) == ["a", "b", "c"]
    assert back.settings == res.settings
    np.testing.assert_array_equal(back.history["test_accuracy"], res.history["test_accuracy"])  # NaN kept
    assert np.isnan(back.history["train_accuracy"][0])
    np.testing.assert_array_equal(back.predict(X), res.predict(X))
    np.testing.assert_array_equal(back.state["lam"], res.state["lam"])
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_resume_from_file_equals_uninterrupted_run(tmp_path):
    X, y = data(seed=3)
    kw = dict(hidden=(10, 5), random_state=4, tol=0, warm_start_iter=2)
    full = train_admm(X, y, max_iter=7, **kw)
    train_admm(X, y, max_iter=3, **kw).save(tmp_path / "k3.npz")
    resumed = train_admm(X, y, max_iter=4, init=fastadmm.load(tmp_path / "k3.npz"), **kw)
    assert resumed.n_iter == 7
    for a, b in zip(full.weights, resumed.weights):
        np.testing.assert_array_equal(a, b)
    assert resumed.history["objective"] == full.history["objective"]


def test_checkpoints_are_written_during_training(tmp_path):
    X, y = data()
    seen = []

    def cb(info):
        if (tmp_path / "ck.npz").exists():
            seen.append((info["iteration"], fastadmm.load(tmp_path / "ck.npz").n_iter))

    res = train_admm(X, y, hidden=(6,), max_iter=5, random_state=0, tol=0,
                     checkpoint=tmp_path / "ck.npz", checkpoint_every=2, callback=cb)
    assert seen[0] == (2, 2) and seen[-1] == (5, 4)
    final = fastadmm.load(tmp_path / "ck.npz")
    assert final.n_iter == res.n_iter == 5 and final.status == "max_iter"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_checkpoint_gives_a_clear_error(tmp_path, damage):
    X, y = data()
    path = train_admm(X, y, hidden=(4,), max_iter=2, random_state=0).save(tmp_path / "m.npz")
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(len(raw)))
    else:
        path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="m.npz"):
        fastadmm.load(path)


def test_foreign_npz_is_rejected(tmp_path):
    np.savez(tmp_path / "other.npz", a=np.arange(3))
    with pytest.raises(CheckpointError, match="other.npz"):
        fastadmm.load(tmp_path / "other.npz")
    with pytest.raises(FileNotFoundError, match="nothing_here"):
        fastadmm.load(tmp_path / "nothing_here.npz")


def test_crash_while_writing_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    X, y = data()
    res = train_admm(X, y, hidden=(4,), max_iter=2, random_state=0)
    path = res.save(tmp_path / "m.npz")
    good = path.read_bytes()

    def exploding_savez(fh, **arrays):
        fh.write(b"PK\x03\x04 partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", exploding_savez)
    with pytest.raises(OSError, match="disk full"):
        res.save(path)
    assert path.read_bytes() == good
    assert os.listdir(tmp_path) == ["m.npz"]


def test_save_into_missing_folder_names_it(tmp_path):
    X, y = data()
    res = train_admm(X, y, hidden=(4,), max_iter=2, random_state=0)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        res.save(tmp_path / "no" / "m.npz")
    with pytest.raises(ValueError, match="checkpoint folder"):
        train_admm(X, y, hidden=(4,), max_iter=2, checkpoint=tmp_path / "no" / "m.npz")
