"""One JSON codec for everything fastadmm writes as JSON (a checkpoint's metadata, the CLI's results.json).

``to_json`` and ``from_json`` agree: what one writes the other reads back with the same values and types
(JSON has no tuples: they come back as lists). Non-finite floats are written as the tokens ``NaN``,
``Infinity`` and ``-Infinity``, which Python's :mod:`json`, JSON5, pandas and most JSON libraries read back as
floats; ``strict=True`` writes RFC 8259 JSON instead (non-finite floats become ``null``, which loses them;
for readers that reject the tokens, such as JavaScript's ``JSON.parse``).

Only plain values are written: dicts (keys become strings), lists and tuples, str, int, float, bool, None,
numpy scalars and arrays (unwrapped with ``.item()`` / ``.tolist()``) and paths (as strings). Anything else
raises TypeError naming where it sits, unless ``fallback`` (e.g. ``str``) turns it into a plain value.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Callable, Optional

import numpy as np

__all__ = ["plain", "to_json", "from_json"]


def plain(value: Any, *, strict: bool = False, fallback: Optional[Callable[[Any], Any]] = None, _where: str = "$"):
    """``value`` as plain JSON values (see the module docstring); non-finite floats become None if ``strict``."""
    if isinstance(value, dict):
        return {str(k): plain(v, strict=strict, fallback=fallback, _where=f"{_where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, strict=strict, fallback=fallback, _where=f"{_where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):  # numpy -> Python scalars in nested lists
        return plain(value.tolist(), strict=strict, fallback=fallback, _where=_where)
    if isinstance(value, np.generic):
        return plain(value.item(), strict=strict, fallback=fallback, _where=_where)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)  # an int subclass (IntEnum) as the plain int
    if isinstance(value, float):
        value = float(value)
        return None if strict and not math.isfinite(value) else value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if fallback is not None:
        return plain(fallback(value), strict=strict, fallback=None, _where=_where)
    raise TypeError(f"cannot write {type(value).__name__} at {_where} as JSON; give plain values "
                    "(dict, list, str, int, float, bool, None, numpy scalars or arrays)")


def to_json(value: Any, *, indent: Optional[int] = None, strict: bool = False,
            fallback: Optional[Callable[[Any], Any]] = None) -> str:
    """JSON text of ``value``; ``from_json`` reads it back (NaN and +-inf as floats unless ``strict``)."""
    return json.dumps(plain(value, strict=strict, fallback=fallback), indent=indent, allow_nan=not strict,
                      ensure_ascii=False)


def from_json(text: str | bytes) -> Any:
    """The value of JSON text written by :func:`to_json` (``NaN``, ``Infinity``, ``-Infinity`` as floats).

    Raises ValueError (json.JSONDecodeError) for text that is not JSON.
    """
    return json.loads(text)
