"""The API of ``fastadmm._updates`` (mini-batch ADMM's compiled updates, the batch gather and the
boundary's column scan), declared once; ``_backend.updates`` checks a build against it on loading.

Every array argument is C-contiguous; the floating arrays of one call share one dtype (float32 or
float64).  ``w_update`` and ``a_update`` return a status code (``OK``, ``NONFINITE``, ``NOT_SPD``,
``NEEDS_FLOAT64``: a float32 system whose condition-number bound exceeds ``FLOAT32_COND_LIMIT``,
which the caller then solves in float64 as ``_linalg.spd_solve`` does).  ``minibatch.updates``
holds the NumPy versions of the updates, which are their reference.
"""

from __future__ import annotations

import inspect
from types import ModuleType

from . import _linalg

# Bumped whenever a signature below changes; a build that reports another value is stale.
UPDATES_ABI = 2

FUNCTIONS = {
    "w_update": ("A", "Z", "M", "R", "W_prev", "W_out", "prox", "shrink", "square", "work"),
    "a_update": ("W", "Z", "H", "beta", "gamma", "out", "R", "square"),
    "column_runs": ("cols",),
    "gather": ("X", "rows", "runs", "out"),
    "column_range": ("X", "colmin", "colmax", "start"),
    "linear": ("A", "W", "out", "relu_out", "relu_copy"),
}

CONSTANTS = {
    "UPDATES_ABI": UPDATES_ABI,
    "FLOAT32_COND_LIMIT": _linalg.FLOAT32_COND_LIMIT,
    "OK": 0,
    "NONFINITE": 1,
    "NOT_SPD": 2,
    "NEEDS_FLOAT64": 3,
}


def parameters(func) -> tuple[str, ...] | None:
    """A function's parameter names in order; None where its signature cannot be read."""
    try:
        return tuple(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        return None


def problems(module: ModuleType, signatures: bool = True) -> list[str]:
    """What `module` lacks or gets wrong against this declaration (empty: it implements the API)."""
    found = []
    for name, params in FUNCTIONS.items():
        func = getattr(module, name, None)
        if not callable(func):
            found.append(f"it has no function {name!r}")
            continue
        have = parameters(func) if signatures else None
        if have is not None and have != params:
            found.append(f"{name} takes ({', '.join(have)}), declared ({', '.join(params)})")
    for name, value in CONSTANTS.items():
        have = getattr(module, name, None)
        if have != value:
            found.append(f"its {name} is {have!r}, declared {value!r}")
    return found
