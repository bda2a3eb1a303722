"""Save and load a Result: one .npz file of arrays plus a JSON string of everything else.

Writing goes to a temporary file in the target's folder, is flushed and fsync'ed, then renamed over
the target (atomic on POSIX and Windows), so a crash while writing never destroys the previous good
file.  No pickle is used, so loading a file never runs code from it.

Loading trusts nothing in the file: each zip member is checked against the zip directory and the
file's size before anything is allocated, its CRC-32 is verified (so any change to an array's bytes or
header is caught), the metadata is checked field by field, the weights' shapes must chain, and the
state must satisfy the check of its kind (``_step.check``, declared by the step class that wrote it).
Every failure is a :class:`CheckpointError` naming the file.

The state (``_step``) is stored by its layout only: each array value as the member ``state.<name>``,
each list of arrays as ``state.<name>.<i>``, and in the metadata ``state = {"kind", "values": the JSON
values, "arrays": {name: null for an array, or the list's length}}``.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from . import _losses, _step
from ._atomic import atomic_write
from ._json import from_json, to_json

FORMAT = "fastadmm-result"
VERSION = 2  # 2: states stored by layout, with their kind (version 1 named each method's arrays)

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
    state_meta = None if result.state is None else _state_members(result.state, arrays)
    meta = {
        "format": FORMAT, "version": VERSION, "status": str(result.status), "n_iter": result.n_iter,
        "n_weights": len(result.weights), "loss": result.loss, "method": result.method,
        "history": result.history, "timings": result.timings, "settings": result.settings,
        "message": result.message, "intercept": result.intercept, "state": state_meta,
    }
    arrays["meta"] = np.array(to_json(meta))
    return atomic_write(path, lambda fh: np.savez(fh, **arrays))


def _state_members(state: dict, arrays: dict) -> dict:
    """Put the state's arrays into `arrays` (members state.<name>[.<i>]); return its metadata."""
    values, layout = {}, {}
    for name, value in state.items():
        if name == "kind":
            continue
        if isinstance(value, np.ndarray):
            arrays[f"state.{name}"] = value
            layout[name] = None
        elif _step.is_array_list(value):
            for i, item in enumerate(value):
                arrays[f"state.{name}.{i}"] = item
            layout[name] = len(value)
        else:
            values[name] = value
    return {"kind": state["kind"], "values": values, "arrays": layout}


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


def _check_head(meta, path: Path) -> None:
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is not a fastadmm checkpoint (its meta is a JSON {type(meta).__name__}, "
                              "not an object)")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a fastadmm checkpoint (format {meta.get('format')!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint version {meta.get('version')!r}, this fastadmm reads version "
                              f"{VERSION} only; load it with the fastadmm that wrote it, or fit again")


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
_STATE_META_TYPES = {
    "kind": (lambda v: isinstance(v, str), "a string"),
    "values": (lambda v: isinstance(v, dict), "an object"),
    "arrays": (lambda v: isinstance(v, dict) and all(n is None or (_is_int(n) and 1 <= n <= _MAX_MEMBERS)
                                                   for n in v.values()), "an object of null or list lengths"),
}
# Files written before the shared JSON codec stored NaN as null and +-inf as strings.
_LEGACY = {None: math.nan, "inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def _check_keys(obj: dict, types: dict, where: str, path: Path) -> None:
    for key, (ok, what) in types.items():
        if key not in obj:
            raise CheckpointError(f"{path}: the checkpoint's {where} has no {key!r}")
        if not ok(obj[key]):
            raise CheckpointError(f"{path}: the checkpoint's {where}[{key!r}] must be {what}, got {obj[key]!r:.80}")


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
    expected = {"classes", *(f"W{i}" for i in range(n_w))}
    if sm is not None:
        _check_keys(sm, _STATE_META_TYPES, "state", path)
        for name, n in sm["arrays"].items():
            expected |= {f"state.{name}"} if n is None else {f"state.{name}.{i}" for i in range(n)}
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
    if sm is not None:
        clash = sorted({"kind", *sm["arrays"]} & set(sm["values"]))
        if clash:
            raise CheckpointError(f"{path}: the state names {clash} both as values and as its kind or arrays")
        state = {"kind": sm["kind"], **sm["values"]}
        for name, n in sm["arrays"].items():
            state[name] = arrays[f"state.{name}"] if n is None else [arrays[f"state.{name}.{i}"] for i in range(n)]
        try:
            _step.check(state, weights)
        except ValueError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
    timings = {k: _legacy(v) for k, v in meta["timings"].items()}
    return dict(
        status=meta["status"], n_iter=meta["n_iter"], weights=weights, classes=classes, loss=meta["loss"],
        method=meta["method"], history=_decoded_history(meta["history"], path), timings=timings,
        settings=meta["settings"], state=state, message=meta["message"], intercept=meta["intercept"],
    )
