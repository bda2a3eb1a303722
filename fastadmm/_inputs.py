"""Input features that are zero in every training sample, left out of the first layer's products.

Exact for both trainers: such a feature adds nothing to W_1 a_0, and its column of z a^T (ADMM) and
of the gradient (SGD) is zero, so every other weight comes out the same.  The left-out columns of
W_1 are put back with the value full-width training would give them: 0 for ADMM's least squares
(with the same absolute ridge), the initial weight for gradient descent.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from . import _backend

MIN_ZERO_FRACTION = 0.1  # compact X only when at least this share of its features is zero
_ROWS = 8192  # rows per block of the NumPy scan and of input_gram (bounds their temporaries)


def nonzero_features(X: np.ndarray) -> np.ndarray:
    """1.0 for each feature that is non-zero in some row of X, else 0.0 (floats, so ranks can sum them)."""
    return scan(X).nonzero()


@dataclass(frozen=True)
class Scan:
    """Each feature's smallest and largest value over the rows (NaN where a row holds NaN): what the
    boundary checks (finiteness, magnitude, fit in the working dtype) and the zero features need,
    from one scan of X instead of one pass each."""

    colmin: np.ndarray
    colmax: np.ndarray

    @property
    def low(self) -> float:
        return float(self.colmin.min())

    @property
    def high(self) -> float:
        return float(self.colmax.max())

    @property
    def finite(self) -> bool:
        """No NaN or infinity in X (np.minimum/np.maximum propagate NaN)."""
        return math.isfinite(self.low) and math.isfinite(self.high)

    def nonzero(self) -> np.ndarray:
        """As nonzero_features(X)."""
        return ((self.colmin != 0) | (self.colmax != 0)).astype(np.float64)


def scan(X: np.ndarray, rows: int = _ROWS) -> Scan:
    """The column minima and maxima of X: one compiled pass over a C-contiguous float32/float64 X
    (``_updates.column_range``), else NumPy reductions over blocks of rows (any strides; no copy)."""
    if X.shape[0] == 0:  # no rows: no feature is non-zero
        return Scan(np.zeros(X.shape[1]), np.zeros(X.shape[1]))
    _updates = _backend.updates()
    if _updates is not None and X.dtype in (np.float32, np.float64) and X.flags.c_contiguous:
        colmin, colmax = np.empty(X.shape[1], X.dtype), np.empty(X.shape[1], X.dtype)
        if _updates.column_range(X, colmin, colmax, True):
            return Scan(colmin, colmax)
        # NaN or infinity somewhere (an error to report): the NaN-propagating NumPy reductions below
    colmin, colmax = X[:rows].min(axis=0), X[:rows].max(axis=0)
    for start in range(rows, X.shape[0], rows):
        block = X[start : start + rows]
        np.minimum(colmin, block.min(axis=0), out=colmin)
        np.maximum(colmax, block.max(axis=0), out=colmax)
    return Scan(colmin, colmax)


def kept_features(nonzero: np.ndarray) -> Optional[np.ndarray]:
    """Indices of the features to keep, or None when fewer than MIN_ZERO_FRACTION (or all) are zero:
    then the copy of X would cost more than it saves, and X is used as it is."""
    keep = nonzero > 0
    n_zero = keep.shape[0] - int(keep.sum())
    if n_zero < MIN_ZERO_FRACTION * keep.shape[0] or n_zero == keep.shape[0]:
        return None
    return np.flatnonzero(keep)


def take_columns(W1: np.ndarray, kept: Optional[np.ndarray], intercept: bool) -> np.ndarray:
    """The columns of a full-width W_1 that meet the kept features (and the intercept's, last)."""
    if kept is None:
        return W1
    cols = np.append(kept, W1.shape[1] - 1) if intercept else kept
    return np.ascontiguousarray(W1[:, cols])


def put_columns(full: np.ndarray, W1: np.ndarray, kept: Optional[np.ndarray], intercept: bool) -> np.ndarray:
    """`full` (a full-width W_1 holding the left-out columns' values) with W_1's columns written back."""
    if kept is None:
        return W1
    full[:, kept] = W1[:, : kept.shape[0]]
    if intercept:
        full[:, -1] = W1[:, -1]
    return full


def column_sums(X: np.ndarray, kept: Optional[np.ndarray] = None, dtype=None, rows: int = _ROWS) -> np.ndarray:
    """The sum of each column of X (of the `kept` ones only, when given) over its rows, of X's values
    as cast to `dtype` (default: X's), in float64 over blocks of rows (X is never copied whole)."""
    total = np.zeros(X.shape[1])
    for start in range(0, X.shape[0], rows):
        total += X[start : start + rows].astype(dtype or X.dtype, copy=False).sum(axis=0, dtype=np.float64)
    return total if kept is None else total[kept]


def input_gram(X: np.ndarray, intercept: bool, rows: int = _ROWS) -> np.ndarray:
    """[X 1]^T [X 1] (without the 1 when not ``intercept``) in float64, summed in row blocks so that a
    float32 X is never copied whole."""
    n = X.shape[1]
    G = np.zeros((n + int(intercept),) * 2)
    for start in range(0, X.shape[0], rows):
        block = X[start : start + rows].astype(np.float64, copy=False)
        G[:n, :n] += block.T @ block
        if intercept:
            G[n, :n] += block.sum(axis=0)
    if intercept:
        G[:n, n] = G[n, :n]
        G[n, n] = X.shape[0]
    return G
