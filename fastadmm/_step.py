"""Step objects: the protocol the fit loop (``_fit.run``) drives, plain forward outputs for steps that
reuse nothing, and the states that let a fit resume, with the registry of their kinds.

A state is a dict: ``"kind"`` (the step object's ``kind``, a string) and named values, each a NumPy
array, a list of NumPy arrays, or a JSON value (numbers, strings, lists, dicts).  ``_checkpoint``
writes and reads any such dict; what a kind's values must be is checked by the ``check_state`` of
the step class registered for it (``register``), on loading a file and on resuming.
"""

from __future__ import annotations

from typing import Callable, ClassVar, Iterator, Optional, Protocol, runtime_checkable

import numpy as np

from . import _losses

_CHECKS: dict[str, Callable] = {}


@runtime_checkable
class Step(Protocol):
    """What the fit loop needs of a method's step object.

    * ``kind``: the name of its states (``to_state()["kind"]`` in a Result);
    * ``iteration``: iterations completed (a resumed fit starts above 0);
    * ``comm``: its communicator (``_comm.SingleProcess`` or ``_comm.MPIComm``);
    * ``X``, ``intercept``: this rank's training rows at the working width, and whether the last
      column of W_1 multiplies a constant 1;
    * ``sweep(timings)``: one iteration; returns ``(sums, info)``, this rank's numbers to sum over the
      ranks (a 1-D float array, maybe empty) and what :attr:`Plan.progress` needs besides.
      Non-finite numbers raise ``_linalg.NonFiniteError`` (or ``np.linalg.LinAlgError``), on every
      rank together;
    * ``compact_weights()``: the weights now, at the working width (a snapshot later sweeps leave alone);
    * ``full_width(weights)``: those weights at the user's input width;
    * ``train_outputs(weights)``, ``test_outputs(weights, X_test)``: ``(rows, outputs)`` blocks of the
      network's outputs on ``X`` and on held-out rows (``ForwardOutputs`` gives plain forward passes);
    * ``running_counts()``: this rank's [summed loss, correct predictions] of the last sweep's
      batches, each from the forward pass that began its step (``Plan.train_metrics == "running"``);
    * ``to_state()``: what a resumed fit needs (a dict of arrays, lists of arrays and JSON values,
      without ``kind``), or None; ``from_state(state, weights)`` continues from a Result's state and
      weights in a step built for the same fit; ``check_state(state, weights)`` (static) raises
      ValueError for a state it cannot resume.
    """

    kind: ClassVar[str]
    iteration: int
    comm: object
    X: np.ndarray
    intercept: bool

    def sweep(self, timings: dict) -> tuple: ...

    def compact_weights(self) -> list: ...

    def full_width(self, weights: list) -> list: ...

    def train_outputs(self, weights: list) -> Iterator: ...

    def test_outputs(self, weights: list, X_test: np.ndarray) -> Iterator: ...

    def running_counts(self) -> tuple: ...

    def to_state(self) -> Optional[dict]: ...

    def from_state(self, state: dict, weights: list) -> None: ...

    @staticmethod
    def check_state(state: dict, weights: list) -> None: ...


class ForwardOutputs:
    """Plain forward passes for a step object's ``train_outputs`` and ``test_outputs`` (at the
    compact width; a step whose test rows are at the user's width sets ``test_at_full_width``)."""

    test_at_full_width = False

    def train_outputs(self, weights):
        return _losses.forward_blocks(weights, self.X, self.intercept)

    def test_outputs(self, weights, X_test):
        if self.test_at_full_width:
            weights = self.full_width(weights)
        return _losses.forward_blocks(weights, X_test, self.intercept)


def register_step(cls):
    """Class decorator: `cls` (a Step) resumes the states of its ``kind``; ``fastadmm.load`` checks a
    file's state with its ``check_state``."""
    register(cls.kind, cls.check_state)
    return cls


def state_of(step) -> Optional[dict]:
    """The step's state with its kind, as a Result holds it, or None."""
    state = step.to_state()
    return None if state is None else {"kind": step.kind, **state}


def missing_members(step) -> list[str]:
    """The members of the Step protocol that `step` lacks."""
    names = {*Step.__annotations__, *(n for n in vars(Step) if not n.startswith("_"))}
    return sorted(n for n in names if not hasattr(step, n))





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
