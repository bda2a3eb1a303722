"""The boundary checks of fastadmm._validation and fastadmm._arrays: numpy scalars accepted wherever
Python numbers are, every rejection naming the argument."""

import numpy as np
import pytest

from fastadmm import _arrays, _validation as v


@pytest.mark.parametrize("value", [2, 2.0, np.float32(2.0), np.float64(2.0), np.int64(2), np.int8(2), np.float16(2)])
def test_as_real_accepts_python_and_numpy_numbers(value):
    out = v.as_real("beta", value, 0, low_open=True)
    assert out == 2.0 and type(out) is float


@pytest.mark.parametrize("value", [True, np.bool_(True), "1", 1j, np.complex128(1), None, [1.0], np.array([1.0])])
def test_as_real_rejects_non_reals_naming_the_argument(value):
    with pytest.raises(TypeError, match="beta must be a real number"):
        v.as_real("beta", value)


@pytest.mark.parametrize(
    "value, kwargs, match",
    [
        (np.nan, {}, "beta must be a finite number, got nan"),
        (np.float32(np.inf), {}, "beta must be a finite number, got inf"),
        (0.0, dict(low=0, low_open=True), "beta must be a finite number > 0, got 0.0"),
        (-1, dict(low=0), "beta must be a finite number >= 0, got -1.0"),
        (1.0, dict(low=0, high=1, low_open=True, high_open=True), "> 0 and < 1, got 1.0"),
        (1.5, dict(high=1), "<= 1, got 1.5"),
    ],
)
def test_as_real_bounds(value, kwargs, match):
    with pytest.raises(ValueError, match=match):
        v.as_real("beta", value, **kwargs)


def test_as_real_bounds_inclusive_edges_pass():
    assert v.as_real("ridge", 0, 0) == 0.0
    assert v.as_real("f", 1, 0, 1) == 1.0
    assert v.as_real("f", np.float32(0.5), 0, 1, low_open=True, high_open=True) == 0.5


@pytest.mark.parametrize("value", [5, np.int64(5), np.int32(5), np.uint8(5)])
def test_as_int_accepts_python_and_numpy_integers(value):
    out = v.as_int("warm_start_iter", value, 0)
    assert out == 5 and type(out) is int


@pytest.mark.parametrize("value", [5.0, np.float32(5), True, np.bool_(False), "5", None])
def test_as_int_rejects_non_integers_naming_the_argument(value):
    with pytest.raises(TypeError, match="warm_start_iter must be an integer >= 0"):
        v.as_int("warm_start_iter", value, 0)


def test_as_int_lower_bound():
    with pytest.raises(ValueError, match=r"max_iter must be an integer >= 1, got 0"):
        v.as_int("max_iter", np.int64(0), 1)
    assert v.as_int("n", -3) == -3  # no bound without `low`


def test_as_bool():
    assert v.as_bool("intercept", np.bool_(True)) is True
    assert v.as_bool("intercept", np.False_) is False
    assert v.as_bool("intercept", True) is True
    for bad in (1, 0, "True", None, np.int64(1), 1.0):
        with pytest.raises(TypeError, match="intercept must be True or False"):
            v.as_bool("intercept", bad)


def test_random_state_negative_or_bool_is_named():
    with pytest.raises(ValueError, match="random_state must be None, an int >= 0 .* got -1"):
        v.check_random_state(-1)
    with pytest.raises(ValueError, match="random_state"):
        v.check_random_state(np.int64(-5))
    with pytest.raises(TypeError, match="random_state"):
        v.check_random_state(True)
    with pytest.raises(TypeError, match="random_state"):
        v.check_random_state(1.5)


def test_random_state_numpy_integer_is_the_same_seed():
    a = v.check_random_state(np.int64(7)).random(3)
    b = v.check_random_state(7).random(3)
    np.testing.assert_array_equal(a, b)
    g = np.random.default_rng(0)
    assert v.check_random_state(g) is g


def test_hidden_and_max_iter_accept_numpy_integers():
    assert v.check_hidden((np.int64(10), np.int32(5))) == (10, 5)
    assert v.check_hidden(np.array([8, 4])) == (8, 4)
    assert v.check_hidden(np.int64(3)) == (3,)
    assert all(type(s) is int for s in v.check_hidden(np.array([8, 4])))
    assert v.check_max_iter(np.int64(4)) == 4 and type(v.check_max_iter(np.int64(4))) is int
    with pytest.raises(TypeError, match="hidden must hold integers"):
        v.check_hidden((np.bool_(True),))
    with pytest.raises(TypeError, match="hidden must be a sequence"):
        v.check_hidden("10")
    with pytest.raises(TypeError, match="max_iter must be an integer >= 1"):
        v.check_max_iter(np.float64(3))


def test_complex_X_is_a_type_error_with_the_fix():
    X = np.ones((4, 2), dtype=complex)
    with pytest.raises(TypeError, match=r"X must hold real numbers, got complex dtype complex128.*X\.real"):
        _arrays.check_X(X)


def test_non_finite_rows_are_counted_and_named():
    X = np.zeros((30, 3))
    X[[2, 5], 1] = np.nan
    X[7, 0] = -np.inf
    with pytest.raises(ValueError, match=r"X contains NaN or infinity in 3 of 30 rows \(first at row 2; rows 2, 5, 7\)"):
        _arrays.check_X(X)
    X[:, :] = np.nan  # every row: the list is cut after 10
    with pytest.raises(ValueError, match=r"in 30 of 30 rows \(first at row 0; rows 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, \.\.\.\)"):
        _arrays.check_X(X, "X_test")


def test_random_state_record_keeps_numpy_seeds_as_ints():
    assert v.random_state_record(np.int64(3)) == 3 and type(v.random_state_record(np.int64(3))) is int
    assert v.random_state_record(None) is None and v.random_state_record(5) == 5
    assert v.random_state_record(np.random.default_rng(0)).startswith("Generator(")


# -- the boundary's one scan of X ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["C", "F"])  # compiled one-pass scan (C) and the NumPy blocks (F)
def test_scan_gives_column_extremes_finiteness_and_zero_features(dtype, layout):
    from fastadmm import _inputs

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 7)).astype(dtype)
    X[:, 3] = 0.0
    X[:, 5] = 0.0
    X[17, 5] = -0.0  # negative zero is zero
    X = np.asarray(X, order=layout)
    s = _inputs.scan(X, rows=64)
    np.testing.assert_array_equal(s.colmin, X.min(axis=0))
    np.testing.assert_array_equal(s.colmax, X.max(axis=0))
    assert s.finite and s.low == X.min() and s.high == X.max()
    np.testing.assert_array_equal(s.nonzero(), _inputs.nonzero_features(X))
    for bad in (np.nan, np.inf, -np.inf):
        Y = X.copy(order=layout)
        Y[250, 1] = bad
        assert not _inputs.scan(Y, rows=64).finite
    Y = X.copy(order=layout)
    Y[0, 2] = np.nan  # a NaN in the first row, and in a later one, both win
    Y[299, 6] = np.nan
    s = _inputs.scan(Y, rows=64)
    assert np.isnan(s.colmin[2]) and np.isnan(s.colmax[2]) and np.isnan(s.colmin[6]) and np.isnan(s.colmax[6])


def test_column_runs_cover_the_kept_columns():
    from fastadmm import _backend

    updates = _backend.updates()
    if updates is None:
        pytest.skip("fastadmm._updates is not built (tests/test_minibatch.py fails where CI requires it)")
    cols = np.array([0, 1, 2, 5, 6, 9], dtype=np.intp)
    np.testing.assert_array_equal(updates.column_runs(cols), [[0, 0, 3], [5, 3, 2], [9, 5, 1]])
    assert updates.column_runs(np.array([], dtype=np.intp)).shape == (0, 3)


def test_nonzero_features_is_the_scan_of_any_array():
    from fastadmm import _inputs

    np.testing.assert_array_equal(_inputs.nonzero_features(np.zeros((0, 3))), [0, 0, 0])  # no rows
    np.testing.assert_array_equal(_inputs.nonzero_features(np.array([[0, 1, 0], [0, 0, -2]])), [0, 1, 1])  # ints
    X = np.zeros((20, 4), np.float32)
    X[7, 2] = 1e-30
    np.testing.assert_array_equal(_inputs.nonzero_features(X), [0, 0, 1, 0])
    np.testing.assert_array_equal(_inputs.nonzero_features(X[:, ::2]), [0, 1])  # strided: the NumPy blocks


def test_class_index_equals_numpy_unique():
    from fastadmm._arrays import class_index

    rng = np.random.default_rng(0)
    cases = [rng.integers(0, 10, 1000).astype(np.int8), rng.integers(-5, 3, 100), np.array([True, False, True]),
             rng.integers(0, 10**9, 50), np.array([3, 3, 7], dtype=np.uint16), np.array([2**63 + 1, 2**63 + 3], np.uint64),
             np.array(["b", "a", "b"]), np.array([1.0, 3.0, 1.0])]
    for y in cases:
        classes, index = class_index(y)
        ref_classes, ref_index = np.unique(y, return_inverse=True)
        assert classes.dtype == ref_classes.dtype and np.array_equal(classes, ref_classes), y
        assert np.array_equal(index, ref_index), y
        assert index.dtype == np.int8, y  # every case here has at most 128 classes
    # the smallest type that holds every index, also for many classes (counted, and through np.unique)
    from fastadmm._arrays import index_dtype

    assert [index_dtype(k) for k in (2, 128, 129, 32768, 32769, 2**31 + 1)] == [
        np.int8, np.int8, np.int16, np.int16, np.int32, np.intp]
    for y in (np.arange(300) * 7, (np.arange(300) * 7).astype(str)):
        classes, index = class_index(y)
        assert index.dtype == np.int16 and np.array_equal(classes[index], y)
