"""Save and load a Result: one .npz file of arrays plus a JSON string of everything else.

Writing goes to a temporary file in the target's folder, is flushed and fsync'ed, then renamed over
the target (atomic on POSIX and Windows), so a crash while writing never destroys the previous good
file.  No pickle is used, so loading a file never runs code from it.

Loading trusts nothing in the file: each zip member is checked against the zip directory and the
file's size before anything is allocated, its CRC-32 is verified (so any change to an array's bytes or
header is caught), the metadata is checked field by field, and the arrays' shapes must chain (weights)
and agree with each other (the ADMM state).  Every failure is a :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import math
import numbers
import zipfile
from pathlib import Path

import numpy as np

from . import _losses
from ._atomic import atomic_write
from ._json import from_json, to_json

FORMAT = "fastadmm-result"
VERSION = 1

_MAX_MEMBERS = 10_000  # far more arrays than any network has layers; a guard against a forged directory
_ARRAY_KINDS = "biufU"  # bool, int, uint, float, str: what a Result holds (never object: no pickle)


class CheckpointError(ValueError):
    """A file that is not a readable fastadmm checkpoint (truncated, corrupt, inconsistent or foreign)."""


# --------------------------------------------------------------------------------------------------
# Saving


def save(result, path) -> Path:
    """Write `result` to `path` (suffix .npz added if missing); returns the path written."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot save to {path}: the folder {folder} does not exist")
    classes = np.asarray(result.classes)
    if classes.dtype.kind == "O":
        raise TypeError("cannot save classes of dtype object; use int or str labels")
    arrays = {"classes": classes}
    for i, W in enumerate(result.weights):
        arrays[f"W{i}"] = np.asarray(W)
    state_meta = None
    if result.state is not None and "S" in result.state:  # mini-batch: running Grams, no per-sample arrays
        st = result.state
        for i, S in enumerate(st["S"]):
            arrays[f"S{i}"] = np.asarray(S, dtype=np.float64)
        if np.size(st.get("bias_1", [])):  # center_inputs: W_1's bias for the centred inputs
            arrays["bias1"] = np.asarray(st["bias_1"])
        state_meta = {"kind": "minibatch", "beta": st["beta"], "gamma": st["gamma"], "iteration": st["iteration"],
                      "rng": st["rng"], "n_S": len(st["S"])}
    elif result.state is not None:
        st = result.state
        for i, Z in enumerate(st["Z"]):
            arrays[f"Z{i}"] = Z
        for i, A in enumerate(st["A"]):
            arrays[f"A{i}"] = A
        arrays["lam"] = st["lam"]
        state_meta = {"beta": st["beta"], "gamma": st["gamma"], "iteration": st["iteration"],
                      "n_Z": len(st["Z"]), "n_A": len(st["A"])}
    meta = {
        "format": FORMAT, "version": VERSION, "status": str(result.status), "n_iter": result.n_iter,
        "n_weights": len(result.weights), "loss": result.loss, "method": result.method,
        "history": result.history, "timings": result.timings, "settings": result.settings,
        "message": result.message, "intercept": result.intercept, "state": state_meta,
    }
    arrays["meta"] = np.array(to_json(meta))
    return atomic_write(path, lambda fh: np.savez(fh, **arrays))


# --------------------------------------------------------------------------------------------------
# Loading


def read_fields(path) -> dict:
    """The keyword arguments of the Result written to `path` by ``Result.save`` (``fastadmm.load``
    makes the Result; this module never imports it).

    Raises FileNotFoundError when there is no file, and :class:`CheckpointError` (naming the file) for
    any file that is not a complete, consistent fastadmm checkpoint.
    """
    path = Path(path)
    if not path.exists() and path.with_name(path.name + ".npz").exists():
        path = path.with_name(path.name + ".npz")
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        meta, arrays = _read(path)
    except (CheckpointError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to parse untrusted bytes means "unreadable"
        # zipfile, the .npy header parser and json raise many types for damaged input (BadZipFile,
        # RuntimeError "encrypted", NotImplementedError, tokenize.TokenError, SyntaxError, ...).
        raise CheckpointError(
            f"{path} is truncated or corrupt and cannot be read as a fastadmm checkpoint "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    return _fields(meta, arrays, path)


def _read(path: Path) -> tuple[dict, dict]:
    """(meta, arrays) from the zip, every member's sizes and CRC checked; the meta's head checked."""
    size = path.stat().st_size
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > _MAX_MEMBERS:
            raise CheckpointError(f"{path}: {len(infos)} members; not a fastadmm checkpoint")
        members = {}
        for info in infos:
            key = info.filename.removesuffix(".npy")
            if key == info.filename or key in members:
                raise CheckpointError(f"{path}: unexpected zip member {info.filename!r}; not a fastadmm checkpoint")
            members[key] = info
        if "meta" not in members:
            raise CheckpointError(f"{path} is not a fastadmm checkpoint (it has no 'meta' entry)")
        text = _read_member(zf, members.pop("meta"), size, path)
        if text.dtype.kind != "U" or text.shape != ():
            raise CheckpointError(f"{path}: 'meta' is a {text.dtype} array of shape {text.shape}, not a JSON string")
        meta = from_json(str(text))
        _check_head(meta, path)
        arrays = {key: _read_member(zf, info, size, path) for key, info in members.items()}
    return meta, arrays


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, archive_size: int, path: Path) -> np.ndarray:
    """One .npy member, its header checked against the zip directory before allocating, CRC verified."""
    name = info.filename
    if info.flag_bits & 0x1:
        raise CheckpointError(f"{path}: zip member {name} is marked encrypted; fastadmm never writes that")
    if info.compress_type != zipfile.ZIP_STORED:
        raise CheckpointError(f"{path}: zip member {name} uses compression method {info.compress_type}; "
                              "fastadmm writes uncompressed members")
    if info.compress_size != info.file_size or info.header_offset + info.compress_size > archive_size:
        raise CheckpointError(f"{path}: the zip directory gives member {name} {info.file_size} bytes, "
                              f"more than the file of {archive_size} bytes holds")
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise CheckpointError(f"{path}: member {name} has .npy format version {version}; expected 1.0 or 2.0")
        if dtype.hasobject or dtype.names is not None or dtype.kind not in _ARRAY_KINDS:
            raise CheckpointError(f"{path}: member {name} has dtype {dtype}; a checkpoint holds only "
                                  "bool, integer, float and str arrays")
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        body = info.file_size - f.tell()
        if nbytes != body:
            raise CheckpointError(f"{path}: member {name} announces a {dtype} array of shape {shape} "
                                  f"({nbytes} bytes) but holds {body} bytes")
        out = np.empty(count, dtype)
        view = memoryview(out.view(np.uint8)) if nbytes else memoryview(b"")
        done = 0
        while done < nbytes:
            got = f.readinto(view[done:])
            if not got:
                raise CheckpointError(f"{path}: member {name} ends {nbytes - done} bytes early")
            done += got
        if f.read(1):  # reaching the end is also what makes zipfile verify the CRC-32
            raise CheckpointError(f"{path}: member {name} is longer than its header says")
    return out.reshape(shape, order="F" if fortran else "C")


# -- metadata -------------------------------------------------------------------------------------


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_head(meta, path: Path) -> None:
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is not a fastadmm checkpoint (its meta is a JSON {type(meta).__name__}, "
                              "not an object)")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a fastadmm checkpoint (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {meta.get('version')!r}, this fastadmm reads {VERSION}")


_META_TYPES = {  # key -> (check, what it must be)
    "status": (lambda v: isinstance(v, str), "a string"),
    "n_iter": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "n_weights": (lambda v: _is_int(v) and 1 <= v <= _MAX_MEMBERS, "an integer >= 1"),
    "loss": (lambda v: v in _losses.LOSSES, f"one of {_losses.LOSSES}"),
    "method": (lambda v: isinstance(v, str), "a string"),
    "history": (lambda v: isinstance(v, dict), "an object"),
    "timings": (lambda v: isinstance(v, dict), "an object"),
    "settings": (lambda v: isinstance(v, dict), "an object"),
    "message": (lambda v: isinstance(v, str), "a string"),
    "intercept": (lambda v: isinstance(v, bool), "true or false"),
    "state": (lambda v: v is None or isinstance(v, dict), "null or an object"),
}
_STATE_TYPES = {
    "beta": (lambda v: isinstance(v, list), "a list"),
    "gamma": (lambda v: isinstance(v, list), "a list"),
    "iteration": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "n_Z": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
    "n_A": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
}
_MINIBATCH_STATE_TYPES = {
    "beta": (lambda v: isinstance(v, list), "a list"),
    "gamma": (lambda v: isinstance(v, list), "a list"),
    "iteration": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "rng": (lambda v: isinstance(v, dict), "an object (a numpy bit generator's state)"),
    "n_S": (lambda v: _is_int(v) and v >= 1, "an integer >= 1"),
}
# Version-1 files written before the shared JSON codec stored NaN as null and +-inf as strings.
_LEGACY = {None: math.nan, "inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _check_keys(obj: dict, types: dict, where: str, path: Path) -> None:
    for key, (ok, what) in types.items():
        if key not in obj:
            raise CheckpointError(f"{path}: the checkpoint's {where} has no {key!r}")
        if not ok(obj[key]):
            raise CheckpointError(f"{path}: the checkpoint's {where}[{key!r}] must be {what}, got {obj[key]!r:.80}")


def _number(value, where: str, path: Path) -> float | int:
    if _is_number(value):
        return value
    if isinstance(value, str) or value is None:
        if value in _LEGACY:
            return _LEGACY[value]
    raise CheckpointError(f"{path}: {where} must be a number, got {value!r:.80}")


def _legacy(value):
    """History and timings values as written; version-1 null / 'inf' / '-inf' decoded to floats."""
    if isinstance(value, list):
        return [_legacy(v) for v in value]
    if value is None or (isinstance(value, str) and value in _LEGACY):
        return _LEGACY[value]
    return value


def _decoded_history(history: dict, path: Path) -> dict:
    out, length = {}, None
    for key, column in history.items():
        if not isinstance(column, list):
            raise CheckpointError(f"{path}: history[{key!r}] must be a list, got {type(column).__name__}")
        if length is not None and len(column) != length:
            raise CheckpointError(f"{path}: history[{key!r}] has {len(column)} entries, the others {length}")
        length = len(column)
        out[key] = _legacy(column)
    return out


def _fields(meta: dict, arrays: dict, path: Path) -> dict:
    """The Result's keyword arguments, after checking that the metadata and arrays agree."""
    _check_keys(meta, _META_TYPES, "meta", path)
    n_w, sm = meta["n_weights"], meta["state"]
    L = n_w
    expected = {"classes", *(f"W{i}" for i in range(n_w))}
    minibatch = isinstance(sm, dict) and sm.get("kind") == "minibatch"
    if minibatch:
        _check_keys(sm, _MINIBATCH_STATE_TYPES, "state", path)
        if sm["n_S"] != L or len(sm["beta"]) != L or len(sm["gamma"]) != L - 1:
            raise CheckpointError(f"{path}: the mini-batch state of a {L}-layer network needs {L} Grams, {L} beta "
                                  f"and {L - 1} gamma values, got {sm['n_S']}, {len(sm['beta'])}, {len(sm['gamma'])}")
        expected |= {f"S{i}" for i in range(L)} | ({"bias1"} & set(arrays))  # bias1: only with center_inputs
    elif sm is not None:
        _check_keys(sm, _STATE_TYPES, "state", path)
        if sm["n_Z"] != L or sm["n_A"] != L - 1:
            raise CheckpointError(f"{path}: the state holds {sm['n_Z']} z and {sm['n_A']} a arrays; "
                                  f"a network of {L} layers has {L} and {L - 1}")
        for key in ("beta", "gamma"):
            if len(sm[key]) != L + 1:
                raise CheckpointError(f"{path}: state[{key!r}] has {len(sm[key])} entries, expected {L + 1}")
        expected |= {"lam", *(f"Z{i}" for i in range(L)), *(f"A{i}" for i in range(L - 1))}
    if set(arrays) != expected:
        missing, extra = sorted(expected - set(arrays)), sorted(set(arrays) - expected)
        raise CheckpointError(f"{path}: its arrays do not match its metadata (missing {missing}, unexpected {extra})")

    classes = arrays["classes"]
    if classes.ndim != 1 or classes.shape[0] < 1 or np.unique(classes).shape[0] != classes.shape[0]:
        raise CheckpointError(f"{path}: 'classes' must be a 1-D array of distinct labels, got shape {classes.shape}")
    weights = [arrays[f"W{i}"] for i in range(n_w)]
    for i, W in enumerate(weights):
        if W.ndim != 2 or W.dtype.kind != "f" or min(W.shape) < 1 or W.dtype != weights[0].dtype:
            raise CheckpointError(f"{path}: weight W{i} must be a non-empty 2-D float array like W0 "
                                  f"({weights[0].dtype}), got {W.dtype} of shape {W.shape}")
        # A later layer's columns are the previous layer's rows, plus one when it has a bias.
        if i > 0 and W.shape[1] - weights[i - 1].shape[0] not in (0, 1):
            raise CheckpointError(f"{path}: the weights do not chain: W{i - 1} has shape {weights[i - 1].shape} "
                                  f"but W{i} has shape {W.shape} (its columns must be W{i - 1}'s rows, "
                                  "or one more for a bias)")
    if weights[0].shape[1] <= int(meta["intercept"]):
        raise CheckpointError(f"{path}: W0 has {weights[0].shape[1]} columns, too few for intercept={meta['intercept']}")
    n_out = _losses.n_outputs(classes.shape[0], meta["loss"])
    if weights[-1].shape[0] != n_out:
        raise CheckpointError(f"{path}: {classes.shape[0]} classes with loss {meta['loss']!r} need {n_out} output "
                              f"units, but W{n_w - 1} has {weights[-1].shape[0]}")

    state = None
    if minibatch:
        S = [arrays[f"S{i}"] for i in range(L)]
        for i, (Si, W) in enumerate(zip(S, weights)):
            if Si.dtype != np.float64 or Si.shape not in ((0, 0), (W.shape[1], W.shape[1])):
                raise CheckpointError(f"{path}: state array S{i} has shape {Si.shape} and dtype {Si.dtype}; W{i} "
                                      f"requires float64 of shape {(W.shape[1], W.shape[1])} (or (0, 0))")
        try:
            np.random.default_rng().bit_generator.state = sm["rng"]
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{path}: the state's 'rng' is not a numpy PCG64 state ({exc})") from None
        bias_1 = arrays.get("bias1", np.zeros(0))
        if bias_1.size and (bias_1.ndim != 1 or bias_1.shape[0] != weights[0].shape[0] or bias_1.dtype.kind != "f"):
            raise CheckpointError(f"{path}: state array bias1 has shape {bias_1.shape} and dtype {bias_1.dtype}; "
                                  f"W0 requires a float vector of {weights[0].shape[0]} entries")
        state = {
            "S": S,
            "bias_1": bias_1,
            "beta": [_number(b, "state['beta']", path) for b in sm["beta"]],
            "gamma": [_number(g, "state['gamma']", path) for g in sm["gamma"]],
            "iteration": sm["iteration"],
            "rng": sm["rng"],
        }
    elif sm is not None:
        Z = [arrays[f"Z{i}"] for i in range(L)]
        A = [arrays[f"A{i}"] for i in range(L - 1)]
        lam = arrays["lam"]
        n = Z[0].shape[0] if Z[0].ndim == 2 else -1  # samples: every state array has one row per sample
        wanted = [(f"Z{i}", Z[i], W.shape[0]) for i, W in enumerate(weights)]
        wanted += [(f"A{i}", A[i], weights[i].shape[0]) for i in range(L - 1)]
        wanted += [("lam", lam, weights[-1].shape[0])]
        for name, array, width in wanted:
            if array.shape != (n, width) or n < 1 or array.dtype.kind != "f" or array.dtype != Z[0].dtype:
                raise CheckpointError(
                    f"{path}: state array {name} has shape {array.shape} and dtype {array.dtype}; the weights and "
                    f"Z0 ({Z[0].shape}, {Z[0].dtype}) require ({n}, {width}) of Z0's float dtype")
        state = {
            "Z": Z, "A": A, "lam": lam,
            "beta": [_number(b, "state['beta']", path) for b in sm["beta"]],
            "gamma": [_number(g, "state['gamma']", path) for g in sm["gamma"]],
            "iteration": sm["iteration"],
        }
    timings = {k: _legacy(v) for k, v in meta["timings"].items()}
    return dict(
        status=meta["status"], n_iter=meta["n_iter"], weights=weights, classes=classes, loss=meta["loss"],
        method=meta["method"], history=_decoded_history(meta["history"], path), timings=timings,
        settings=meta["settings"], state=state, message=meta["message"], intercept=meta["intercept"],
    )
