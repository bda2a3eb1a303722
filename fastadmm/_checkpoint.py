"""Save and load a Result: one .npz file of arrays plus a JSON string of everything else.

Writing goes to a temporary file in the target's folder, is flushed and fsync'ed, then renamed over
the target (atomic on POSIX and Windows), so a crash while writing never destroys the previous good
file.  No pickle is used, so loading a file never runs code from it.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np

from ._atomic import atomic_write

FORMAT = "fastadmm-result"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a readable fastadmm checkpoint (truncated, corrupt or foreign)."""


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def _unjson_history(history):
    def fix(v):
        if v is None:
            return float("nan")
        if isinstance(v, list):
            return [fix(x) for x in v]
        return v

    return {k: [fix(x) for x in v] for k, v in history.items()}


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
    if result.state is not None:
        st = result.state
        for i, Z in enumerate(st["Z"]):
            arrays[f"Z{i}"] = Z
        for i, A in enumerate(st["A"]):
            arrays[f"A{i}"] = A
        arrays["lam"] = st["lam"]
        state_meta = {"beta": st["beta"], "gamma": st["gamma"], "iteration": st["iteration"],
                      "n_Z": len(st["Z"]), "n_A": len(st["A"])}
    meta = {
        "format": FORMAT, "version": VERSION, "status": result.status, "n_iter": result.n_iter,
        "n_weights": len(result.weights), "loss": result.loss, "method": result.method,
        "history": result.history, "timings": result.timings, "settings": result.settings,
        "message": result.message, "intercept": result.intercept, "state": state_meta,
    }
    arrays["meta"] = np.array(json.dumps(_jsonable(meta)))
    return atomic_write(path, lambda fh: np.savez(fh, **arrays))


def load(path):
    """Read a Result written by ``Result.save``; a truncated or foreign file raises CheckpointError."""
    from ._result import Result

    path = Path(path)
    if not path.exists() and path.with_name(path.name + ".npz").exists():
        path = path.with_name(path.name + ".npz")
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != FORMAT:
                raise CheckpointError(f"{path} is not a fastadmm checkpoint (format {meta.get('format')!r})")
            if meta.get("version") != VERSION:
                raise CheckpointError(f"{path} has checkpoint version {meta.get('version')}, this fastadmm reads {VERSION}")
            weights = [data[f"W{i}"] for i in range(meta["n_weights"])]
            state = None
            if meta["state"] is not None:
                sm = meta["state"]
                state = {
                    "Z": [data[f"Z{i}"] for i in range(sm["n_Z"])],
                    "A": [data[f"A{i}"] for i in range(sm["n_A"])],
                    "lam": data["lam"],
                    "beta": sm["beta"], "gamma": sm["gamma"], "iteration": sm["iteration"],
                }
            classes = data["classes"]
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError, json.JSONDecodeError, TypeError) as exc:
        raise CheckpointError(f"{path} is truncated or corrupt and cannot be read as a fastadmm checkpoint ({exc})") from exc
    return Result(
        status=meta["status"], n_iter=meta["n_iter"], weights=weights, classes=classes, loss=meta["loss"],
        method=meta["method"], history=_unjson_history(meta["history"]), timings=meta["timings"],
        settings=meta["settings"], state=state, message=meta["message"], intercept=meta["intercept"],
    )
