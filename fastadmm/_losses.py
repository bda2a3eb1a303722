"""Targets, forward pass, loss values and predictions shared by ADMM and SGD.

Two classes give one output unit with target 0 or 1; K > 2 classes give K output units
with one-hot targets.  Both losses are separable per output entry (ALGORITHM.md):

* ``"mse"``:   (o - t)^2
* ``"hinge"``: max(1 - o, 0) where t = 1, max(o, 0) where t = 0

A sample is predicted as class 1 when its single output exceeds 0.5 (the midpoint of the
two targets, for either loss), otherwise by the largest output.
"""

from __future__ import annotations

import numpy as np

LOSSES = ("mse", "hinge")


def n_outputs(n_classes: int) -> int:
    return 1 if n_classes == 2 else n_classes


def targets(y_index: np.ndarray, n_classes: int, dtype) -> np.ndarray:
    """(n_samples, n_outputs) array of 0/1 targets from class indices 0..n_classes-1."""
    k = n_outputs(n_classes)
    T = np.zeros((y_index.shape[0], k), dtype=dtype)
    if k == 1:
        T[:, 0] = y_index
    else:
        T[np.arange(y_index.shape[0]), y_index] = 1
    return T


def first_layer(W: np.ndarray, X: np.ndarray, intercept: bool, out=None) -> np.ndarray:
    """W_1 a_0 one sample per row: X @ W.T, where with `intercept` the last column of W multiplies a
    constant input 1 (that column is added, X is never copied with a column of ones)."""
    if not intercept:
        return np.matmul(X, W.T, out=out)
    out = np.matmul(X, W[:, :-1].T, out=out)
    out += W[:, -1]
    return out


def forward(weights, X: np.ndarray, intercept: bool = False) -> np.ndarray:
    """An ordinary forward pass: ReLU hidden layers, linear output; X is (n_samples, n_features)."""
    a = first_layer(weights[0], X, intercept)
    for W in weights[1:]:
        np.maximum(a, 0, out=a)
        a = a @ W.T
    return a


def predict_index(out: np.ndarray) -> np.ndarray:
    """Class index of each row of network outputs."""
    if out.shape[1] == 1:
        return (out[:, 0] > 0.5).astype(np.intp)
    return np.argmax(out, axis=1)


def loss_sum(out: np.ndarray, T: np.ndarray, loss: str) -> float:
    """Sum over samples and outputs of the loss of outputs `out` against 0/1 targets `T`."""
    if loss == "mse":
        d = out - T
        return float(np.vdot(d, d))
    if loss == "hinge":
        pos = T > 0.5
        return float(np.maximum(1 - out[pos], 0).sum() + np.maximum(out[~pos], 0).sum())
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def accuracy(out: np.ndarray, y_index: np.ndarray) -> float:
    return float(np.mean(predict_index(out) == y_index))
