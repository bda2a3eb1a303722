"""fastadmm._constraints: each settings class declares one table of what its fields may hold, checked
in one place; the tests are generated from the tables, so a field added without a constraint fails."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fastadmm import ADMMSettings
from fastadmm import _constraints as c
from fastadmm._settings import ADMM_CONSTRAINTS
from fastadmm.sgd import SGD_CONSTRAINTS, SGDSettings

TABLES = [pytest.param(ADMMSettings, ADMM_CONSTRAINTS, id="ADMMSettings"),
          pytest.param(SGDSettings, SGD_CONSTRAINTS, id="SGDSettings")]


def _cases(table):
    for con in table:
        yield pytest.param(con, id=con.name)


def _bad_values(con):
    """(value, exception type) pairs that `con` must refuse."""
    if con.kind == "bool":
        return [(1, TypeError), ("yes", TypeError)]
    if con.kind == "choice":
        return [("no-such-choice", ValueError)] + ([] if con.none else [(None, ValueError)])
    wrong_type = ValueError if con.literals else TypeError
    out = [("3", wrong_type), (True, wrong_type)]
    if con.kind == "real":
        out.append((float("nan"), ValueError))
    else:
        out.append((2.0, wrong_type))
    if con.low is not None:
        out.append((con.low if con.low_open else con.low - 1, ValueError))
    if con.high is not None:
        out.append((con.high if con.high_open else con.high + 1, ValueError))
    if not con.none:
        out.append((None, wrong_type if con.kind != "choice" else ValueError))
    return out


@pytest.mark.parametrize("cls, table", TABLES)
def test_every_field_is_declared_exactly_once(cls, table):
    assert c.undeclared(cls, table) == []
    assert all(con.kind in c.KINDS for con in table)


@pytest.mark.parametrize("cls, table", TABLES)
def test_every_constraint_refuses_with_the_fields_name(cls, table):
    for con in table:
        for value, error in _bad_values(con):
            with pytest.raises(error, match=rf"^{con.name} must be") as caught:
                cls(**{con.name: value})
            assert con.name in str(caught.value), (con, value)


@pytest.mark.parametrize("cls, table", TABLES)
def test_none_is_accepted_exactly_where_declared(cls, table):
    for con in table:
        if con.none:
            assert getattr(cls(**{con.name: None}), con.name) is None


@pytest.mark.parametrize("cls, table", TABLES)
def test_numbers_are_stored_as_python_numbers(cls, table):
    for con in table:
        if con.kind in ("real", "int"):
            value = (con.low or 0) + 1 if con.high is None else (con.low + con.high) / 2
            numpy_value = np.int64(value) if con.kind == "int" else np.float32(value)
            stored = getattr(cls(**{con.name: numpy_value}), con.name)
            assert type(stored) is (int if con.kind == "int" else float) and stored == value
        elif con.kind == "bool":
            assert getattr(cls(**{con.name: np.bool_(True)}), con.name) is True


def test_the_messages_say_what_the_field_must_be():
    with pytest.raises(ValueError, match=r"^batch_size must be None, 'auto' or an integer >= 1, got 'full'$"):
        ADMMSettings(batch_size="full")
    with pytest.raises(ValueError, match=r"^batch_size must be None, 'auto' or an integer >= 1, got 2.5$"):
        ADMMSettings(batch_size=2.5)
    assert ADMMSettings(batch_size="auto").batch_size == "auto"
    assert ADMMSettings(batch_size=np.int64(32)).batch_size == 32
    with pytest.raises(ValueError, match=r"^dtype must be None or one of \('float32', 'float64'\), got 'float16'$"):
        SGDSettings(dtype="float16")
    with pytest.raises(ValueError, match=r"^momentum must be a finite number >= 0 and < 1, got 1.0$"):
        SGDSettings(momentum=1)
    with pytest.raises(ValueError, match=r"^gram_decay must be a finite number >= 0 and < 1, got 1.0$"):
        ADMMSettings(gram_decay=1.0)
    with pytest.raises(TypeError, match=r"^lr must be a real number, got 'x' \(str\)$"):
        SGDSettings(lr="x")


def test_describe():
    assert c.real("beta", 0, low_open=True, none=True).describe() == "None or a finite number > 0"
    assert c.integer("batch_size", 1, none=True, literals=("auto",)).describe() == "None, 'auto' or an integer >= 1"
    assert c.choice("backend", ("cython", "numpy")).describe() == "one of ('cython', 'numpy')"
    assert c.boolean("intercept").describe() == "True or False"


def test_choice_accepts_numpy_dtypes_as_before_and_refuses_arrays_cleanly():
    assert ADMMSettings(dtype=np.dtype("float32")).dtype == "float32"
    with pytest.raises(ValueError, match="^backend must be one of"):
        ADMMSettings(backend=np.array(["cython", "numpy"]))


def test_rules_across_fields_stay_with_the_class():
    with pytest.raises(ValueError, match="momentum and nesterov apply to optimizer='momentum' only"):
        SGDSettings(optimizer="adam", momentum=0.9)
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        SGDSettings(nesterov=True, momentum=0.0)
    assert dataclasses.asdict(SGDSettings(nesterov=True, momentum=0.5))["nesterov"] is True
