"""Declared constraints of the settings classes, checked in one place.

Each settings class (:class:`fastadmm.ADMMSettings`, :class:`fastadmm.sgd.SGDSettings`) declares one
table: per field its kind (a real number, an integer, True/False, one of some choices), its range
or choices, and whether None is allowed (None = the method's default).  :func:`check_fields` checks
an instance against its table in field order and stores numbers as Python float/int/bool (numpy
scalars accepted), raising TypeError/ValueError that names the field and what it must be, with the
messages of this module's scalar checkers :func:`as_real`, :func:`as_int` and :func:`as_bool`,
which the argument checks of :mod:`fastadmm._validation` use too (this module imports no other
module of the package).  Rules across fields (e.g. SGD's ``optimizer="adam"`` without momentum) stay
in the class's own ``validate``.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Optional

import numpy as np

KINDS = ("real", "int", "bool", "choice")


@dataclass(frozen=True)
class Constraint:
    """What one settings field may hold."""

    name: str
    kind: str  # one of KINDS
    low: Optional[float] = None
    high: Optional[float] = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    none: bool = False  # None is allowed (the method's default)
    literals: tuple = ()  # other values accepted as they are, e.g. ("auto",) for batch_size

    def describe(self) -> str:
        """What the field may hold, in words (for messages and documentation)."""
        if self.kind == "choice":
            text = f"one of {self.choices}"
        elif self.kind == "bool":
            text = "True or False"
        else:
            bounds = []
            if self.low is not None:
                bounds.append(f"{'>' if self.low_open else '>='} {self.low}")
            if self.high is not None:
                bounds.append(f"{'<' if self.high_open else '<='} {self.high}")
            what = "an integer" if self.kind == "int" else "a finite number"
            text = what + ("" if not bounds else " " + " and ".join(bounds))
        alternatives = (["None"] if self.none else []) + [repr(v) for v in self.literals]
        if not alternatives:
            return text
        if len(alternatives) == 1:
            return f"{alternatives[0]} or {text}"
        return f"{', '.join(alternatives)} or {text}"

    def check(self, value):
        """``value`` converted (numbers to Python float/int, bools to bool), or TypeError/ValueError
        naming the field."""
        if value is None and self.none:
            return None
        if self.literals and _is_one_of(value, self.literals):
            return value
        if self.kind == "choice":
            if not _is_one_of(value, self.choices):
                raise ValueError(f"{self.name} must be {self.describe()}, got {value!r}")
            return value
        if self.kind == "bool":
            return as_bool(self.name, value)
        try:
            if self.kind == "int":
                if self.high is not None:  # pragma: no cover - no table has one
                    raise NotImplementedError("integer constraints have a lower bound only")
                return as_int(self.name, value, self.low)
            return as_real(self.name, value, self.low, self.high, low_open=self.low_open, high_open=self.high_open)
        except (TypeError, ValueError):
            if self.literals:  # a field that takes words too: any other value is a wrong value
                raise ValueError(f"{self.name} must be {self.describe()}, got {value!r}") from None
            raise


def as_real(name, value, low=None, high=None, *, low_open=False, high_open=False):
    """`value` as a finite Python float, accepting any real number (int, float, np.float32,
    np.int64, ...) but not bool, str or complex; with `low`/`high` it must lie within them (excluded
    where `low_open`/`high_open`).  Raises TypeError/ValueError naming `name`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high}")
    ok = math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        bound = (" " + " and ".join(bounds)) if bounds else ""
        raise ValueError(f"{name} must be a finite number{bound}, got {value!r}")
    return value


def as_int(name, value, low=None):
    """`value` as a Python int, accepting any integer (int, np.int64, ...) but not bool or a
    float such as 5.0; with `low` it must be >= low.  Raises TypeError/ValueError naming `name`."""
    bound = "" if low is None else f" >= {low}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer{bound}, got {value!r} ({type(value).__name__})")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(f"{name} must be an integer{bound}, got {value}")
    return value


def as_bool(name, value):
    """`value` as a Python bool, accepting True/False and np.bool_ (not 0/1 or strings, which are
    more often a mistake than a choice).  Raises TypeError naming `name`."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__})")
    return bool(value)


def _is_one_of(value, options) -> bool:
    try:
        return value in options
    except Exception:  # noqa: BLE001 - arrays and other values without a plain ==
        return False


def real(name, low=None, high=None, *, low_open=False, high_open=False, none=False) -> Constraint:
    return Constraint(name, "real", low, high, low_open, high_open, none=none)


def integer(name, low=None, *, none=False, literals=()) -> Constraint:
    return Constraint(name, "int", low, none=none, literals=tuple(literals))


def boolean(name, *, none=False) -> Constraint:
    return Constraint(name, "bool", none=none)


def choice(name, choices, *, none=False) -> Constraint:
    return Constraint(name, "choice", choices=tuple(choices), none=none)


def check_fields(obj, table) -> None:
    """Check every field of ``obj`` named in ``table`` (in the table's order), storing the converted
    values; raises on the first field that is not usable."""
    for constraint in table:
        setattr(obj, constraint.name, constraint.check(getattr(obj, constraint.name)))


def undeclared(cls, table) -> list:
    """The fields of the dataclass ``cls`` that ``table`` lacks, and the names in it that are not
    fields (both empty when the table declares every field exactly once)."""
    fields = [f.name for f in dataclasses.fields(cls)]
    names = [c.name for c in table]
    missing = [f for f in fields if f not in names]
    extra = [n for n in names if n not in fields or names.count(n) > 1]
    return missing + extra
