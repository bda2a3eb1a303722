"""The arrays at the boundary (X, y, X_test, y_test): converted once, or an error that names the
argument and the fix.

Everything past these functions (drivers, kernels) may assume C-contiguous, finite arrays of one
floating dtype, and never checks again.  train_admm (through _validation.check_admm), train_sgd
and Result.predict check their arrays here.
"""

from __future__ import annotations

import math

import numpy as np

from . import _inputs, _losses


def float_dtype(X_dtype, dtype=None):
    """The floating dtype of a fit: `dtype` if given, else float32 for float32 X, else float64."""
    if dtype is not None:
        if str(dtype) not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32', 'float64' or None, got {dtype!r}")
        return np.dtype(dtype)
    return np.dtype(np.float32) if X_dtype == np.float32 else np.dtype(np.float64)


def _as_array(value, name):
    if hasattr(value, "toarray") and hasattr(value, "nnz"):
        raise TypeError(f"{name} is a sparse matrix, which fastadmm does not support; pass {name}.toarray()")
    try:
        return np.asarray(value)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name} could not be read as an array ({exc}); pass a 2-D numeric array") from None


def check_X(X, name="X", dtype=None, n_features=None, *, with_scan=False):
    """Return `X` as a C-contiguous, finite, 2-D float32/float64 array (and, ``with_scan``, its
    column minima and maxima, an ``_inputs.Scan``, which then also serves the finiteness check)."""
    X = _as_array(X, name)
    if X.dtype.kind == "c":
        raise TypeError(
            f"{name} must hold real numbers, got complex dtype {X.dtype} (the imaginary parts are not "
            f"dropped silently); pass {name}.real if they are meant to go, or give the real and "
            "imaginary parts as separate features"
        )
    if X.dtype.kind not in "fiub":
        raise TypeError(
            f"{name} must hold real numbers, got dtype {X.dtype}; convert it with {name}.astype(np.float64)"
        )
    if X.ndim != 2:
        hint = f" (for one sample use {name}.reshape(1, -1), for one feature {name}.reshape(-1, 1))" if X.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D with shape (n_samples, n_features), got shape {X.shape}{hint}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {X.shape}); it needs at least one sample and one feature")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features, but the model was fitted with {n_features}")
    target = float_dtype(X.dtype, dtype)
    scan = _inputs.scan(X) if with_scan and X.dtype.kind == "f" else None
    check_fits(X, name, target, scan)
    out = np.ascontiguousarray(X, dtype=target)
    if with_scan and scan is None:  # integer or boolean X: scanned as converted (always finite)
        scan = _inputs.scan(out)
    if X.dtype.kind == "f" and not (scan.finite if scan is not None else _all_finite(out)):
        rows = np.flatnonzero(~np.isfinite(out).all(axis=1))
        shown = ", ".join(str(r) for r in rows[:10]) + (", ..." if rows.shape[0] > 10 else "")
        raise ValueError(
            f"{name} contains NaN or infinity in {rows.shape[0]} of {out.shape[0]} rows "
            f"(first at row {rows[0]}; rows {shown}); remove or impute those values"
        )
    return (out, scan) if with_scan else out


def _all_finite(X, rows=4096) -> bool:
    """np.isfinite(X).all() in blocks of rows (no boolean array as large as X)."""
    return all(np.isfinite(X[i : i + rows]).all() for i in range(0, X.shape[0], rows))


def check_fits(X, name, dtype, scan=None) -> None:
    """Refuse a float X whose finite values overflow the fit's `dtype` (float32 for mini-batch ADMM by
    default), naming the fix; a reduction only (none with X's ``scan``), X is not copied.  NaN and
    infinity are left to the finiteness check, whose message names their rows."""
    if dtype is None or X.dtype.kind != "f" or np.dtype(dtype).itemsize >= X.dtype.itemsize:
        return
    low, high = (scan.low, scan.high) if scan is not None else (float(X.min()), float(X.max()))
    big = max(abs(high), abs(low))
    if math.isfinite(big) and big > float(np.finfo(dtype).max):
        raise ValueError(
            f"{name} holds values up to {big:.3g}, which do not fit {np.dtype(dtype).name} (the fit's dtype; "
            f"mini-batch ADMM computes in float32 by default); scale {name} (e.g. {name} / np.abs({name}).max()) "
            "or pass dtype='float64'"
        )


def check_y(y, n_samples, name="y", min_classes=2):
    """Return (class index per sample, sorted class labels) for class labels `y`."""
    y = _as_array(y, name)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.ravel()
    if y.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D with one class label per sample, got shape {y.shape}; "
            "pass labels, not one-hot rows (use y.argmax(axis=1))"
        )
    if y.shape[0] != n_samples:
        raise ValueError(f"{name} has {y.shape[0]} labels but X has {n_samples} samples; they must match")
    if y.dtype.kind == "O":
        if any(v is None or (isinstance(v, float) and not np.isfinite(v)) for v in y):
            raise ValueError(f"{name} contains None or NaN labels; remove those samples")
        try:
            y = y.astype(str) if all(isinstance(v, str) for v in y) else y.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name} mixes label types; use one type (all int or all str)") from None
    if y.dtype.kind == "c":
        raise TypeError(f"{name} holds complex numbers; class labels must be integers or strings")
    if y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise ValueError(f"{name} contains NaN or infinity; remove those samples")
        if not np.all(y == np.round(y)):
            raise ValueError(
                f"{name} holds continuous values, but fastadmm trains classifiers (losses "
                f"{', '.join(map(repr, _losses.LOSSES))}) on class labels; pass integer or string class labels"
            )
    classes, y_index = class_index(y)
    if classes.shape[0] < min_classes:
        raise ValueError(
            f"{name} has a single class ({classes[0]!r} if any); training needs samples of at least two classes"
        )
    return y_index, classes  # in index_dtype (int8 for up to 128 classes)


# Rows per piece where a per-row array is processed through temporaries (the class indices, the
# fingerprint): 2^16, so that each temporary (512 kB of intp) stays below glibc's mmap threshold
# however high it has risen, and the resident set does not keep freed pieces.
PIECE = 1 << 16


def index_dtype(n_classes: int) -> np.dtype:
    """The smallest signed integer type that holds the class indices 0 .. n_classes - 1 (int8 for up
    to 128 classes): one class index per training row is kept for the whole fit."""
    for kind in (np.int8, np.int16, np.int32):
        if n_classes - 1 <= np.iinfo(kind).max:
            return np.dtype(kind)
    return np.dtype(np.intp)


def class_index(y: np.ndarray):
    """(classes, y_index) as ``np.unique(y, return_inverse=True)``, the indices in ``index_dtype``.
    Integer labels over a range not much wider than the number of rows are counted and looked up
    instead: no sorted copy of y and no argsort of it (their temporaries are several times y's size
    for a large y of small integers)."""
    if y.dtype.kind in "iub" and y.size:
        low, high = int(y.min()), int(y.max())
        if high - low <= max(y.size, 1024) and -(2**62) < low and high < 2**62:
            # In pieces (PIECE labels): bincount and take work on intp copies of their input
            pieces = [slice(start, start + PIECE) for start in range(0, y.size, PIECE)]
            flat = y.ravel()

            def shifted(rows):
                return flat[rows].astype(np.intp) - low

            counts = np.zeros(high - low + 1, np.intp)
            for rows in pieces:
                counts += np.bincount(shifted(rows), minlength=high - low + 1)
            present = counts > 0
            classes = (np.flatnonzero(present) + low).astype(y.dtype)
            lookup = (np.cumsum(present, dtype=np.intp) - 1).astype(index_dtype(classes.shape[0]))
            y_index = np.empty(y.size, lookup.dtype)
            for rows in pieces:
                np.take(lookup, shifted(rows), out=y_index[rows])
            return classes, y_index.reshape(y.shape)
    classes, y_index = np.unique(y, return_inverse=True)
    return classes, y_index.astype(index_dtype(classes.shape[0]))


def check_Xy(X, y, dtype=None, min_samples=2, min_classes=2, *, with_scan=False):
    """Validate a training set; returns (X, y_index, classes), and X's Scan last ``with_scan``."""
    X, scan = check_X(X, "X", dtype, with_scan=True) if with_scan else (check_X(X, "X", dtype), None)
    if X.shape[0] < min_samples:
        raise ValueError(f"X has {X.shape[0]} sample; training needs at least {min_samples} samples")
    y_index, classes = check_y(y, X.shape[0], min_classes=min_classes)
    return (X, y_index, classes, scan) if with_scan else (X, y_index, classes)


def check_test(X_test, y_test, classes, n_features, dtype):
    """Validate an optional held-out set; returns (X_test, y_test_index) or (None, None)."""
    if (X_test is None) != (y_test is None):
        raise ValueError("X_test and y_test go together: pass both or neither")
    if X_test is None:
        return None, None
    X_test = check_X(X_test, "X_test", dtype, n_features=n_features)
    y_test = _as_array(y_test, "y_test")
    if y_test.ndim == 2 and y_test.shape[1] == 1:
        y_test = y_test.ravel()
    if y_test.ndim != 1 or y_test.shape[0] != X_test.shape[0]:
        raise ValueError(f"y_test must be 1-D with {X_test.shape[0]} labels (one per row of X_test), got shape {y_test.shape}")
    index = np.searchsorted(classes, y_test)
    index = np.clip(index, 0, len(classes) - 1)
    unseen = classes[index] != y_test
    if unseen.any():
        raise ValueError(
            f"y_test holds labels not seen in y: {np.unique(y_test[unseen])[:5].tolist()}; "
            f"the classes are {classes.tolist()[:10]}"
        )
    return X_test, index.astype(index_dtype(len(classes)))
