"""Public, validated access to the elementwise z-update kernels.

These return the exact elementwise minimisers of docs/ALGORITHM.md (3.3, 3.4) (and, for the softmax
cross-entropy, the per-sample minimiser to the tolerance declared in ``fastadmm._kernel_api``); the
training loop calls the same kernels through ``out=`` buffers.  The kernels' API (names, parameters,
contract) is declared in ``fastadmm._kernel_api``.  Inputs are converted once here (the kernels never
check).
"""

from __future__ import annotations

import numpy as np

from . import _backend
from ._losses import ELEMENTWISE, LOSS_CODE
from ._validation import as_real


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


def _scalar(name, value):
    """A penalty (beta, gamma): a finite number > 0 (the checks of fastadmm._validation)."""
    return as_real(name, value, 0, low_open=True)


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
    if loss not in ELEMENTWISE:
        if loss == "cross_entropy":
            raise ValueError("loss='cross_entropy' is not elementwise: use kernels.softmax_z(y, m, lam, beta)")
        raise ValueError(f"loss must be one of {ELEMENTWISE}, got {loss!r}")
    beta = _scalar("beta", beta)
    y, m, lam = np.asarray(y), np.asarray(m), np.asarray(lam)
    _check_real([("y", y), ("m", m), ("lam", lam)])
    dtype = _float_dtype(m, lam)
    shape, (y, m, lam) = _prepare([("y", y), ("m", m), ("lam", lam)], dtype)
    if loss == "hinge" and not np.all((y == 0) | (y == 1)):
        raise ValueError("y must hold 0/1 targets for loss='hinge'")
    z = _out(out, shape, dtype)
    _backend.get(backend).output_z_update(
        y.reshape(-1), m.reshape(-1), lam.reshape(-1), beta, LOSS_CODE[loss], False, z.reshape(-1)  # lam unchanged
    )
    return z


def softmax_z(y, m, lam, beta, *, backend="cython", out=None):
    """argmin_z CE(z, y_i) + <lam_i, z> + beta ||z - m_i||^2 for every sample (row) i, where
    CE(z, y) = logsumexp(z) - <y, z> is the softmax cross-entropy.

    `y`, `m` and `lam` have one shape (n_samples, K), K >= 2; each row of `y` is a probability
    vector (a one-hot target, or soft labels).  The result has their shape and a floating dtype
    (float32 if `m` and `lam` are float32, else float64).  It is found by a safeguarded Newton
    method per sample to a relative gradient tolerance of 1e-10 (float64) or 1e-6 (float32),
    as declared in ``fastadmm._kernel_api``; `lam` is left unchanged.
    """
    beta = _scalar("beta", beta)
    y, m, lam = np.asarray(y), np.asarray(m), np.asarray(lam)
    _check_real([("y", y), ("m", m), ("lam", lam)])
    if y.ndim != 2:
        raise ValueError(
            f"y must be 2-D (n_samples, K), one probability row per sample, got shape {y.shape}; "
            "for class indices use np.eye(K)[y], for one sample y.reshape(1, -1)"
        )
    if y.shape[1] < 2:
        raise ValueError(f"y must have K >= 2 columns (one per class), got shape {y.shape}")
    dtype = _float_dtype(m, lam)
    shape, (y, m, lam) = _prepare([("y", y), ("m", m), ("lam", lam)], dtype)
    if not np.all(np.isfinite(y)) or np.any(y < 0):
        raise ValueError("y must hold probabilities (finite, >= 0, each row summing to 1), e.g. one-hot rows")
    row_sums = y.sum(axis=1, dtype=np.float64)
    if np.any(np.abs(row_sums - 1.0) > 16 * shape[1] * np.finfo(dtype).eps):
        i = int(np.argmax(np.abs(row_sums - 1.0)))
        raise ValueError(f"y must have rows summing to 1 (probabilities), row {i} sums to {row_sums[i]!r}")
    z = _out(out, shape, dtype)
    _backend.get(backend).softmax_z_update(y, m, lam, beta, False, z)  # lam unchanged
    return z
