"""Targets, forward pass, loss values and predictions shared by ADMM and SGD.

For "mse" and "hinge", two classes give one output unit with target 0 or 1 and K > 2 classes give
K output units with one-hot targets.  These two losses are separable per output entry
(docs/ALGORITHM.md, section 3.4):

* ``"mse"``:   (o - t)^2
* ``"hinge"``: max(1 - o, 0) where t = 1, max(o, 0) where t = 0

``"cross_entropy"`` (softmax cross-entropy) always has one output unit per class, also for two
classes (a softmax over two units), with one-hot targets; it couples the outputs of a sample:

* ``"cross_entropy"``: logsumexp(o) - <t, o>   (per sample; t any probability vector)

A sample with a single output is predicted as class 1 when that output exceeds 0.5 (the midpoint
of the two targets, for either loss), otherwise by the largest output (argmax, which is also the
largest softmax probability).
"""

from __future__ import annotations

import numpy as np

LOSSES = ("mse", "hinge", "cross_entropy")
# The integer codes the compiled kernels take for a loss (Cython, Numba and NumPy z-updates: mse and
# hinge, which are elementwise; the SGD kernels also take cross_entropy).  Declared here only.
LOSS_CODE = {"mse": 0, "hinge": 1, "cross_entropy": 2}
ELEMENTWISE = ("mse", "hinge")  # the losses of the elementwise output z-update (output_z_update)
ROW_BLOCK = 8192  # rows per block of an evaluation forward pass (bounds its scratch memory)


def n_outputs(n_classes: int, loss: str = "mse") -> int:
    """Output units for `n_classes` classes: n_classes for cross_entropy (a softmax, even over two
    units); otherwise 1 for two classes (target 0/1) and n_classes for more."""
    if loss == "cross_entropy":
        return n_classes
    return 1 if n_classes == 2 else n_classes


def targets(y_index: np.ndarray, n_classes: int, dtype, loss: str = "mse") -> np.ndarray:
    """(n_samples, n_outputs(n_classes, loss)) array of 0/1 targets from class indices
    0..n_classes-1: one column holding the index for a single output, one-hot rows otherwise."""
    k = n_outputs(n_classes, loss)
    T = np.zeros((y_index.shape[0], k), dtype=dtype)
    if k == 1:
        T[:, 0] = y_index
    else:
        T[np.arange(y_index.shape[0]), y_index] = 1
    return T


class ClassTargets:
    """``targets(y_index, n_classes, dtype, loss)`` read row by row from the class indices: one row of
    targets per class, looked up, so that a fit that reads its targets a batch or a block at a time
    keeps no (n_samples, n_outputs) array.  ``T[rows]`` (rows: a slice or indices), ``np.take(T, rows,
    axis=0, out=)``, ``shape``, ``dtype`` and ``ndim`` as the array's."""

    def __init__(self, y_index: np.ndarray, n_classes: int, dtype, loss: str = "mse"):
        self.y_index = y_index
        self.table = targets(np.arange(n_classes), n_classes, dtype, loss)  # row c: the targets of class c
        self.dtype = self.table.dtype
        self.shape = (y_index.shape[0], self.table.shape[1])
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        return self.table[self.y_index[rows]]

    def take(self, indices, axis=0, out=None, mode="raise") -> np.ndarray:
        if axis != 0:
            raise ValueError("ClassTargets.take: rows only (axis=0)")
        return np.take(self.table, np.take(self.y_index, indices, mode=mode), axis=0, out=out)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        T = self.table[self.y_index]
        return T if dtype is None else T.astype(dtype, copy=False)


def first_layer(W: np.ndarray, X: np.ndarray, intercept: bool, out=None) -> np.ndarray:
    """W_1 a_0 one sample per row: X @ W.T, where with `intercept` the last column of W multiplies a
    constant input 1 (that column is added, X is never copied with a column of ones)."""
    if not intercept:
        return np.matmul(X, W.T, out=out)
    out = np.matmul(X, W[:, :-1].T, out=out)
    out += W[:, -1]
    return out


def has_bias(W: np.ndarray, n_in: int) -> bool:
    """Whether a later layer's W (n_out, n_in or n_in + 1) carries a bias in its last column
    (mini-batch ADMM gives every layer one; the full-batch method and SGD only the first)."""
    return W.shape[1] == n_in + 1


def forward(weights, X: np.ndarray, intercept: bool = False) -> np.ndarray:
    """An ordinary forward pass: ReLU hidden layers, linear output; X is (n_samples, n_features).

    A later layer whose W has one column more than its input has a bias (that last column)."""
    return later_layers(first_layer(weights[0], X, intercept), weights[1:], overwrite=True)


def later_layers(a: np.ndarray, weights, overwrite: bool = False) -> np.ndarray:
    """The rest of a forward pass from the first layer's product a = W_1 a_0 (one sample per row):
    ReLU, then each W in `weights` (layers 2..L).  `a` is overwritten only when `overwrite`."""
    for W in weights:
        a = np.maximum(a, 0, out=a if overwrite else None)
        overwrite = True
        if has_bias(W, a.shape[1]):
            a = a @ W[:, :-1].T
            a += W[:, -1]
        else:
            a = a @ W.T
    return a


def forward_blocks(weights, X: np.ndarray, intercept: bool = False):
    """(rows, outputs) of a forward pass over X in blocks of ROW_BLOCK rows (`rows` a slice)."""
    for start in range(0, X.shape[0], ROW_BLOCK):
        rows = slice(start, min(start + ROW_BLOCK, X.shape[0]))
        yield rows, forward(weights, X[rows], intercept)


def predict_index(out: np.ndarray) -> np.ndarray:
    """Class index of each row of network outputs."""
    if out.shape[1] == 1:
        return (out[:, 0] > 0.5).astype(np.intp)
    return np.argmax(out, axis=1)


def softmax(out: np.ndarray) -> np.ndarray:
    """Row-wise softmax of network outputs (n_samples, K), computed stably (each row's maximum is
    subtracted before exp, so no overflow); a new array of out's floating dtype (float64 for ints)."""
    out = np.asarray(out)
    dt = out.dtype if out.dtype in (np.float32, np.float64) else np.float64
    e = out - np.max(out, axis=1, keepdims=True)
    e = e.astype(dt, copy=False)
    np.exp(e, out=e)
    e /= np.sum(e, axis=1, keepdims=True)
    return e


def _cross_entropy_sum(out: np.ndarray, T: np.ndarray) -> float:
    """sum_i logsumexp(out_i) - <T_i, out_i>, in float64, stably: with mx_i = max_k out_ik,
    logsumexp(out_i) = mx_i + log(sum_k exp(out_ik - mx_i)), whose sum is >= 1."""
    o = np.asarray(out, dtype=np.float64)
    t = np.asarray(T, dtype=np.float64)
    mx = np.max(o, axis=1, keepdims=True)
    # logsumexp(o) - <t, o> = log(sum exp(o - mx)) - <t, o - mx> when sum(t) = 1; written without
    # that assumption: lse(o) - <t, o> = log(sum exp(o - mx)) + mx (1 - sum t) - <t, o - mx>
    d = o - mx
    lse = np.log(np.sum(np.exp(d), axis=1))
    return float(np.sum(lse) + np.sum(mx[:, 0] * (1.0 - t.sum(axis=1))) - np.vdot(t, d))


def loss_sum(out: np.ndarray, T: np.ndarray, loss: str) -> float:
    """Sum over samples (and outputs) of the loss of outputs `out` against 0/1 targets `T`; for
    cross_entropy the sum over samples of logsumexp(out_i) - <T_i, out_i>."""
    if loss == "mse":
        d = out - T
        return float(np.vdot(d, d))
    if loss == "hinge":
        pos = T > 0.5
        return float(np.maximum(1 - out[pos], 0).sum() + np.maximum(out[~pos], 0).sum())
    if loss == "cross_entropy":
        return _cross_entropy_sum(out, T)
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def accuracy(out: np.ndarray, y_index: np.ndarray) -> float:
    return float(np.mean(predict_index(out) == y_index))
