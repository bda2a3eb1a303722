"""Public, validated access to the elementwise z-update kernels.

These return the exact elementwise minimisers of ALGORITHM.md; the training loop calls the same
kernels through ``out=`` buffers.  Inputs are converted once here (the kernels never check).
"""

from __future__ import annotations

import numpy as np

from . import _backend
from ._losses import LOSSES

_LOSS_CODE = {"mse": 0, "hinge": 1}


def _check_real(names_arrays):
    """Name the first argument that does not hold real numbers (before any conversion)."""
    for name, arr in names_arrays:
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}; use .astype(np.float64)")


def _float_dtype(*arrays):
    dt = np.result_type(*arrays)
    if dt == np.float32:
        return np.float32
    if dt.kind in "fiub" and dt.itemsize <= 8 and dt.kind != "c":
        return np.float64
    raise TypeError(f"arrays must hold real numbers, got dtype {dt}; convert them with .astype(np.float64)")


def _prepare(names_arrays, dtype):
    shape = None
    prepared = []
    for name, arr in names_arrays:
        arr = np.asarray(arr)
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}; use .astype(np.float64)")
        if shape is None:
            shape = arr.shape
        elif arr.shape != shape:
            raise ValueError(f"{name} has shape {arr.shape}, expected {shape} like the first argument")
        prepared.append(np.ascontiguousarray(arr, dtype=dtype))
    return shape, prepared


def _scalar(name, value, *, positive=True):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not np.isfinite(v) or (positive and v <= 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def _out(out, shape, dtype, name="out"):
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != dtype or not out.flags.c_contiguous:
        raise ValueError(f"{name} must be a C-contiguous {np.dtype(dtype).name} array of shape {shape}")
    return out


def relu_z(a, m, beta, gamma, *, backend="cython", out=None):
    """argmin_z gamma*(a - relu(z))^2 + beta*(z - m)^2, entrywise.

    `a` and `m` are arrays of one shape; the result has their shape and a floating dtype
    (float32 if both are float32, else float64).
    """
    beta = _scalar("beta", beta)
    gamma = _scalar("gamma", gamma)
    a, m = np.asarray(a), np.asarray(m)
    _check_real([("a", a), ("m", m)])
    dtype = _float_dtype(a, m)
    shape, (a, m) = _prepare([("a", a), ("m", m)], dtype)
    z = _out(out, shape, dtype)
    hz = np.empty(shape, dtype=dtype)
    _backend.get(backend).relu_z_update(a.reshape(-1), m.reshape(-1), beta, gamma, z.reshape(-1), hz.reshape(-1))
    return z


def output_z(y, m, lam, beta, *, loss="mse", backend="cython", out=None):
    """argmin_z loss(z, y) + lam*z + beta*(z - m)^2, entrywise, for 0/1 targets `y`.

    loss="mse" is (z - y)^2, loss="hinge" is max(1 - z, 0) where y = 1 and max(z, 0) where y = 0.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    beta = _scalar("beta", beta)
    y, m, lam = np.asarray(y), np.asarray(m), np.asarray(lam)
    _check_real([("y", y), ("m", m), ("lam", lam)])
    dtype = _float_dtype(m, lam)
    shape, (y, m, lam) = _prepare([("y", y), ("m", m), ("lam", lam)], dtype)
    if loss == "hinge" and not np.all((y == 0) | (y == 1)):
        raise ValueError("y must hold 0/1 targets for loss='hinge'")
    z = _out(out, shape, dtype)
    _backend.get(backend).output_z_update(
        y.reshape(-1), m.reshape(-1), lam.reshape(-1), beta, _LOSS_CODE[loss], False, z.reshape(-1)  # lam unchanged
    )
    return z
