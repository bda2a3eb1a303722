"""The state a step object hands to a Result so that a fit can resume, and the registry of its kinds.

A state is a dict: ``"kind"`` (the step object's ``kind``, a string) and named values, each a NumPy
array, a list of NumPy arrays, or a JSON value (numbers, strings, lists, dicts).  ``_checkpoint``
writes and reads any such dict; what a kind's values must be is checked by the ``check_state`` of
the step class registered for it (``register``), on loading a file and on resuming.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

_CHECKS: dict[str, Callable] = {}


def register(kind: str, check: Callable) -> None:
    """Declare a state kind: `check(state, weights)` raises ValueError (naming what is wrong) for a
    state of this kind that the step class cannot resume from, given the Result's weights."""
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"a step kind must be a non-empty string, got {kind!r}")
    _CHECKS[kind] = check


def kinds() -> tuple[str, ...]:
    return tuple(_CHECKS)


def check(state: dict, weights) -> None:
    """Raise ValueError unless `state` is a state of a registered kind that its check accepts."""
    kind = state.get("kind")
    if kind not in _CHECKS:
        raise ValueError(f"the state is of kind {kind!r}; this fastadmm resumes the kinds {sorted(_CHECKS)}")
    _CHECKS[kind](state, weights)


def is_array_list(value) -> bool:
    """Whether a state value is a non-empty list of arrays (saved as one array per entry)."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, np.ndarray) for v in value)


def require(state: dict, types: dict) -> None:
    """Raise ValueError naming the first key of `types` ({key: (test, what it must be)}) that
    `state` lacks or holds a wrong value for."""
    for key, (ok, what) in types.items():
        if key not in state:
            raise ValueError(f"the state has no {key!r}")
        if not ok(state[key]):
            raise ValueError(f"the state's {key!r} must be {what}, got {state[key]!r:.80}")


def is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def is_number_list(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
