"""fastadmm._json: one codec, what to_json writes from_json reads back (NaN and +-inf included)."""

import math
from pathlib import Path

import numpy as np
import pytest

from fastadmm._json import from_json, plain, to_json


def test_round_trip_keeps_non_finite_floats_as_floats():
    value = {"a": [1.0, float("inf"), float("-inf"), float("nan")], "b": {"c": "inf", "d": None}, "e": True}
    back = from_json(to_json(value))
    assert back["a"][:3] == [1.0, math.inf, -math.inf] and math.isnan(back["a"][3])
    assert all(isinstance(v, float) for v in back["a"])
    assert back["b"] == {"c": "inf", "d": None}  # strings stay strings, None stays None
    assert back["e"] is True


def test_numpy_values_and_paths_become_plain():
    value = {1: np.float32(0.5), "arr": np.arange(3), "b": np.bool_(True), "i": np.int64(7),
             "p": Path("/x/y"), "t": (1, 2), "s": np.str_("z")}
    assert plain(value) == {"1": 0.5, "arr": [0, 1, 2], "b": True, "i": 7, "p": "/x/y", "t": [1, 2], "s": "z"}
    assert type(plain(np.int64(7))) is int and type(plain(np.bool_(False))) is bool
    assert from_json(to_json(value)) == plain(value)


def test_strict_writes_standard_json_with_null():
    text = to_json({"x": [float("nan"), float("inf"), 2.5]}, strict=True)
    assert "NaN" not in text and "Infinity" not in text
    assert from_json(text) == {"x": [None, None, 2.5]}


def test_unknown_objects_are_an_error_naming_where_unless_a_fallback_is_given():
    with pytest.raises(TypeError, match=r"object at \$\.settings\.cb"):
        to_json({"settings": {"cb": object()}})
    assert from_json(to_json({"cb": complex(1, 2)}, fallback=str)) == {"cb": "(1+2j)"}


def test_not_json_is_a_value_error():
    with pytest.raises(ValueError):
        from_json("{'a': 1}")
