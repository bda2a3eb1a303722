"""Result.save / fastadmm.load: round trip, resume from a file, and files that must not load."""

import os
import struct

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
                     eval_every=2, tol=0, batch_size=None)
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


@pytest.mark.parametrize("method", [dict(batch_size=None, warm_start_iter=2), dict()], ids=["full", "mini"])
def test_resume_from_file_equals_uninterrupted_run(tmp_path, method):
    X, y = data(seed=3)
    kw = dict(hidden=(10, 5), random_state=4, tol=0, **method)
    full = train_admm(X, y, max_iter=7, **kw)
    train_admm(X, y, max_iter=3, **kw).save(tmp_path / "k3.npz")
    resumed = train_admm(X, y, max_iter=4, init=fastadmm.load(tmp_path / "k3.npz"), **kw)
    assert resumed.n_iter == 7
    for a, b in zip(full.weights, resumed.weights):
        np.testing.assert_array_equal(a, b)
    assert resumed.history["objective"] == full.history["objective"]


@pytest.mark.parametrize("batch_size", [None, "auto"], ids=["full", "mini"])
def test_checkpoints_are_written_during_training(tmp_path, batch_size):
    X, y = data()
    seen = []

    def cb(info):
        if (tmp_path / "ck.npz").exists():
            seen.append((info["iteration"], fastadmm.load(tmp_path / "ck.npz").n_iter))

    res = train_admm(X, y, hidden=(6,), max_iter=5, random_state=0, tol=0, batch_size=batch_size,
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


# --------------------------------------------------------------------------------------------------
# Every damaged or inconsistent file raises CheckpointError naming it


def small_result(batch_size=None, **kw):
    """A tiny fit: full-batch ADMM (state: Z, A, lam per sample) by default, or mini-batch ADMM."""
    X, y = data(n=24, d=4)
    return train_admm(X, y, hidden=(3,), max_iter=2, random_state=0, X_test=X[:6], y_test=y[:6],
                      batch_size=batch_size, **kw)


def small_minibatch_result():
    """Mini-batch ADMM with the Gram proximal metric, so that its state holds non-empty arrays (S)."""
    return small_result(batch_size=8, prox_metric="gram")


def assert_same_state(a, b):
    assert (a is None) == (b is None)
    if a is None:
        return
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], list) and a[key] and isinstance(a[key][0], np.ndarray):
            assert len(a[key]) == len(b[key])
            for u, v in zip(a[key], b[key]):
                np.testing.assert_array_equal(u, v)
        elif isinstance(a[key], np.ndarray):
            np.testing.assert_array_equal(a[key], b[key])
        else:
            assert a[key] == b[key], key


def assert_same_result(a, b):
    assert len(a.weights) == len(b.weights)
    for u, v in zip(a.weights, b.weights):
        np.testing.assert_array_equal(u, v)
    assert (a.status, a.n_iter, a.loss, a.method, a.intercept, a.message) == (
        b.status, b.n_iter, b.loss, b.method, b.intercept, b.message)
    np.testing.assert_array_equal(a.classes, b.classes)
    assert a.settings == b.settings and a.timings == b.timings
    assert a.history.keys() == b.history.keys()
    for key in a.history:
        np.testing.assert_array_equal(np.asarray(a.history[key], float), np.asarray(b.history[key], float))
    assert_same_state(a.state, b.state)


@pytest.mark.parametrize("kind", ["full-batch", "mini-batch"])
def test_single_byte_flips_load_equal_or_raise_checkpoint_error(tmp_path, kind):
    """400 deterministic single-byte corruptions of a small checkpoint: each loads to the same Result
    (a byte the reader does not use, such as a timestamp) or raises CheckpointError naming the file."""
    res = small_result() if kind == "full-batch" else small_minibatch_result()
    assert_same_result(res, fastadmm.load(res.save(tmp_path / "unchanged.npz")))
    raw = res.save(tmp_path / "good.npz").read_bytes()
    rng = np.random.default_rng(2024)
    positions = rng.choice(len(raw), 400, replace=False)
    xors = rng.integers(1, 256, 400)
    path = tmp_path / "flipped.npz"
    outcomes = {"equal": 0, "error": 0}
    for pos, xor in zip(positions, xors):
        damaged = bytearray(raw)
        damaged[pos] ^= int(xor)
        path.write_bytes(bytes(damaged))
        try:
            back = fastadmm.load(path)
        except CheckpointError as exc:
            assert "flipped.npz" in str(exc), (pos, xor, str(exc))
            outcomes["error"] += 1
        else:
            assert_same_result(res, back)
            outcomes["equal"] += 1
    assert outcomes["error"] > 300  # nearly every byte matters (array data is CRC-checked)


def _zip_offsets(raw: bytes, signature: bytes) -> list:
    out, start = [], 0
    while (i := raw.find(signature, start)) >= 0:
        out.append(i)
        start = i + 1
    return out


def _damage_zip(raw: bytes, how: str) -> bytes:
    b = bytearray(raw)
    local = _zip_offsets(raw, b"PK\x03\x04")  # local file headers: flags at +6, method at +8
    central = _zip_offsets(raw, b"PK\x01\x02")  # central directory: flags at +8, method at +10
    if how == "encrypted flag":  # zipfile: RuntimeError "is encrypted, password required"
        b[central[0] + 8] |= 0x01
    elif how == "patched-data flag":  # zipfile: NotImplementedError "compressed patched data"
        b[central[1] + 8] |= 0x20
    elif how == "compression method":  # zipfile: NotImplementedError "compression method"
        b[central[2] + 10] = 99
    # the last member's data (the meta member's .npy file) begins after its local header (30 bytes), its
    # name and its extra field; searched from there, not from the header, whose time, date, CRC and
    # sizes may hold any byte (a "}" among them made the damage miss the .npy header now and then)
    name_len, extra_len = struct.unpack("<HH", raw[local[-1] + 26 : local[-1] + 30])
    data = local[-1] + 30 + name_len + extra_len
    if how == "npy header brace":  # numpy's header parser: tokenize.TokenError (in the meta member)
        b[raw.index(b"}", data)] ^= 0xFF
    elif how == "npy version 3":  # numpy's header parser: tokenize.TokenError
        b[raw.index(b"NUMPY", data) + 5] = 3
    return bytes(b)


@pytest.mark.parametrize("how", ["encrypted flag", "patched-data flag", "compression method", "npy header brace",
                                 "npy version 3"])
def test_zip_and_npy_damage_raises_checkpoint_error(tmp_path, how):
    path = small_result().save(tmp_path / "m.npz")
    path.write_bytes(_damage_zip(path.read_bytes(), how))
    with pytest.raises(CheckpointError, match="m.npz"):
        fastadmm.load(path)


def _rewrite(path, change):
    """Rewrite a valid checkpoint with change(meta, arrays) applied (a well-formed file, wrong content)."""
    import json

    with np.load(path, allow_pickle=False) as d:
        arrays = {k: d[k] for k in d.files}
    meta = json.loads(str(arrays["meta"]))
    meta = change(meta, arrays)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)
    return path


def _set(arrays, **new):
    arrays.update(new)


def _values(meta, change):
    """The meta with change() applied to its state's JSON values."""
    change(meta["state"]["values"])
    return meta


def _arrays(meta, change):
    """The meta with change() applied to its state's array layout."""
    change(meta["state"]["arrays"])
    return meta


INCONSISTENT = {
    "meta is a list": (lambda m, a: [1, 2], "JSON list"),
    "meta without history": (lambda m, a: {k: v for k, v in m.items() if k != "history"}, "history"),
    "n_weights a string": (lambda m, a: {**m, "n_weights": "2"}, "n_weights"),
    "intercept a number": (lambda m, a: {**m, "intercept": 1}, "intercept"),
    "unknown loss": (lambda m, a: {**m, "loss": "mae"}, "loss"),
    "history columns of different lengths": (
        lambda m, a: {**m, "history": {**m["history"], "iteration": [1]}}, "entries"),
    "state without beta": (lambda m, a: _values(m, lambda v: v.pop("beta")), "beta"),
    "beta of the wrong length": (lambda m, a: _values(m, lambda v: v.update(beta=[1.0])), "beta"),
    "a state without its kind": (lambda m, a: {**m, "state": {k: v for k, v in m["state"].items() if k != "kind"}},
                                 "kind"),
    "a state of an unknown kind": (lambda m, a: {**m, "state": {**m["state"], "kind": "admm-other"}}, "admm-other"),
    "more Z arrays than layers": (lambda m, a: _set(a, **{"state.Z.2": a["state.Z.1"]})
                                  or _arrays(m, lambda n: n.update(Z=3)), "layers"),
    "weights that do not chain": (lambda m, a: _set(a, W1=np.zeros((3, 5))) or m, "do not chain"),
    "weights of different dtypes": (lambda m, a: _set(a, W1=a["W1"].astype(np.float32)) or m, "W1"),
    "a 3-D weight": (lambda m, a: _set(a, W1=a["W1"][None]) or m, "W1"),
    "integer weights": (lambda m, a: _set(a, W0=a["W0"].astype(np.int64)) or m, "W0"),
    "more classes than outputs": (lambda m, a: _set(a, classes=np.arange(5)) or m, "output"),
    "repeated classes": (lambda m, a: _set(a, classes=np.array([0, 0, 1])) or m, "distinct"),
    "Z width not the layer's": (lambda m, a: _set(a, **{"state.Z.0": np.zeros((24, 7))}) or m, "Z0"),
    "A width not the layer's": (lambda m, a: _set(a, **{"state.A.0": np.zeros((24, 2))}) or m, "A0"),
    "lam rows not Z's": (lambda m, a: _set(a, **{"state.lam": np.zeros((20, 3))}) or m, "lam has shape (20, 3)"),
    "state dtype differs": (lambda m, a: _set(a, **{"state.Z.1": a["state.Z.1"].astype(np.float32)}) or m, "Z1"),
    "an array missing": (lambda m, a: (a.pop("state.A.0"), m)[1], "missing"),
    "an array too many": (lambda m, a: _set(a, W2=np.zeros((3, 3))) or m, "unexpected"),
    "object array": (None, "dtype"),
}
MINIBATCH_INCONSISTENT = {
    "S of the wrong size": (lambda m, a: _set(a, **{"state.S.0": np.eye(9)}) or m, "S0"),
    "S not float64": (lambda m, a: _set(a, **{"state.S.1": a["state.S.1"].astype(np.float32)}) or m, "S1"),
    "more Grams than layers": (lambda m, a: _set(a, **{"state.S.2": a["state.S.1"]})
                               or _arrays(m, lambda n: n.update(S=3)), "Grams"),
    "rng not a generator state": (lambda m, a: _values(m, lambda v: v.update(rng={"bit_generator": "MT0"})), "rng"),
    "rng missing": (lambda m, a: _values(m, lambda v: v.pop("rng")), "rng"),
    "an S array missing": (lambda m, a: (a.pop("state.S.1"), m)[1], "missing"),
    "S a vector": (lambda m, a: _set(a, **{"state.S.0": np.zeros(3)}) or m, "S0"),
    "S as a JSON value": (lambda m, a: (a.pop("state.S.0"), a.pop("state.S.1"), _arrays(m, lambda n: n.pop("S")),
                                        _values(m, lambda v: v.update(S=[1, 2])))[-1], "'S'"),
    "a value named like an array": (lambda m, a: _values(m, lambda v: v.update(bias_1=[1.0])), "both as values"),
    "bias_1 of the wrong length": (lambda m, a: _set(a, **{"state.bias_1": np.zeros(7)}) or m, "bias_1"),
}


@pytest.mark.parametrize("case", sorted(MINIBATCH_INCONSISTENT))
def test_inconsistent_minibatch_checkpoint_raises_checkpoint_error(tmp_path, case):
    change, words = MINIBATCH_INCONSISTENT[case]
    res = small_minibatch_result()
    assert "S" in res.state and res.state["S"][0].size > 0
    path = _rewrite(res.save(tmp_path / "m.npz"), change)
    with pytest.raises(CheckpointError, match="m.npz") as info:
        fastadmm.load(path)
    assert words in str(info.value)


@pytest.mark.parametrize("case", sorted(INCONSISTENT))
def test_inconsistent_checkpoint_raises_checkpoint_error(tmp_path, case):
    change, words = INCONSISTENT[case]
    path = small_result().save(tmp_path / "m.npz")
    if change is None:  # a pickled object array where the classes belong (never unpickled)
        with np.load(path, allow_pickle=False) as d:
            arrays = {k: d[k] for k in d.files}
        arrays["classes"] = np.array([0, "a", None], dtype=object)
        np.savez(path, **arrays)
    else:
        _rewrite(path, change)
    with pytest.raises(CheckpointError, match="m.npz") as info:
        fastadmm.load(path)
    assert words in str(info.value)


@pytest.mark.parametrize("shape", [b"(9, 9)", b"(999999999999, 99999999)"])
def test_npy_header_announcing_more_than_the_member_holds(tmp_path, shape):
    """A member whose .npy header (CRC intact) announces more than it holds is rejected before anything
    is allocated (the second shape would need 800 PB)."""
    import io
    import zipfile

    path = small_result().save(tmp_path / "m.npz")
    rebuilt = tmp_path / "rebuilt.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(rebuilt, "w") as dst:
        for info in src.infolist():
            content = src.read(info)
            if info.filename == "W0.npy":
                content = content.replace(b"'shape': (3, 5)", b"'shape': " + shape)
                buf = io.BytesIO(content)  # still a well-formed header (numpy pads it to 64 bytes)
                np.lib.format.read_array_header_1_0((np.lib.format.read_magic(buf), buf)[1])
            dst.writestr(info.filename, content)
    with pytest.raises(CheckpointError, match=r"rebuilt.npz: member W0.npy announces"):
        fastadmm.load(rebuilt)


# --------------------------------------------------------------------------------------------------
# One JSON codec: NaN and +-inf round-trip as floats


@pytest.mark.parametrize("kind", ["full-batch", "mini-batch"])
def test_non_finite_history_values_round_trip_as_floats(tmp_path, kind):
    res = small_result() if kind == "full-batch" else small_minibatch_result()
    res.history["train_loss"][0] = float("inf")
    res.history["objective"][1] = float("-inf")
    res.history["residual_z"][0][1] = float("nan")
    res.history["test_accuracy"][0] = float("nan")
    res.timings["W"] = float("inf")
    back = fastadmm.load(res.save(tmp_path / "m.npz"))
    assert back.history["train_loss"][0] == float("inf") and isinstance(back.history["train_loss"][0], float)
    assert back.history["objective"][1] == float("-inf")
    assert np.isnan(back.history["residual_z"][0][1]) and np.isnan(back.history["test_accuracy"][0])
    assert back.timings["W"] == float("inf")
    assert_same_result(res, back)


def test_the_old_writers_null_and_inf_history_values_still_decode(tmp_path):
    """The old writer stored NaN as null and +-inf as the strings 'inf' / '-inf'."""
    path = small_result().save(tmp_path / "m.npz")

    def old_style(meta, arrays):
        meta["history"]["train_loss"][0] = "inf"
        meta["history"]["objective"][0] = "-inf"
        meta["history"]["test_accuracy"] = [None] * len(meta["history"]["test_accuracy"])
        return meta

    _rewrite(path, old_style)
    back = fastadmm.load(path)
    assert back.history["train_loss"][0] == float("inf") and back.history["objective"][0] == float("-inf")
    assert all(np.isnan(v) for v in back.history["test_accuracy"])


def test_a_version_1_file_is_refused_naming_its_version(tmp_path):
    """Version 1 named each method's state arrays in the file; version 2 stores any step's state by its
    layout and kind.  A version-1 file is refused with a CheckpointError that says so."""
    path = _rewrite(small_result().save(tmp_path / "m.npz"), lambda m, a: {**m, "version": 1})
    with pytest.raises(CheckpointError, match=r"m.npz has checkpoint version 1, this fastadmm reads version 2"):
        fastadmm.load(path)


def test_a_gram_metric_fit_with_left_out_features_resumes_from_its_file(tmp_path):
    """W_1's running Gram is over the kept features: narrower than W_1 when some feature is zero in
    every row.  Such a file loads, and resuming from it continues the uninterrupted fit exactly."""
    X, y = data(n=60, d=6)
    X[:, 1] = 0.0
    kw = dict(hidden=(5,), batch_size=20, prox_metric="gram", random_state=0, tol=0)
    whole = train_admm(X, y, max_iter=4, **kw)
    first = train_admm(X, y, max_iter=2, **kw)
    assert first.state["S"][0].shape[0] < first.weights[0].shape[1]
    back = fastadmm.load(first.save(tmp_path / "m.npz"))
    kw.pop("random_state")
    resumed = train_admm(X, y, max_iter=2, init=back, **kw)
    for u, v in zip(whole.weights, resumed.weights):
        np.testing.assert_array_equal(u, v)


def test_a_later_layer_with_a_bias_column_loads(tmp_path):
    """Mini-batch ADMM gives later layers a bias: W_l with one column more than W_{l-1} has rows."""
    res = small_result()
    path = _rewrite(res.save(tmp_path / "m.npz"),
                    lambda m, a: _set(a, W1=np.concatenate([a["W1"], np.ones((3, 1))], axis=1)) or m)
    back = fastadmm.load(path)
    assert back.weights[1].shape == (3, 4)
