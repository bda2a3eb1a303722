"""The exact output refit of mini-batch ADMM (``output_refit``): after an epoch, W_L <- the ridge
least-squares fit of the targets on the forward features [a_{L-1}, 1] of the whole training set.

The output layer is linear and the mse loss is quadratic in W_L, so this is its exact minimiser
given the hidden layers; the Gram is summed over blocks of rows in float64.  The training rows' last
hidden features may be kept (``features``), so that the evaluation right after the refit needs no
forward pass.  Over MPI each rank sums its rows and the sums are all-reduced (one packed buffer), so
every rank solves the same system."""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from .. import _linalg, _losses
from .inputs import GATHER_ROWS


class OutputRefit:
    def __init__(self, inputs, T, ridge):
        self.inputs, self.T, self.ridge = inputs, T, ridge
        self.features = None  # the training rows' last hidden features (N, n_{L-1}), when kept
        self.valid = False  # whether they belong to the current hidden weights (a batch step invalidates them)

    def _keep_buffer(self, W):
        """The buffer for the last hidden features in the fit's dtype; None when there is no hidden
        layer, or when the buffer would exceed half of X's bytes (the fit's memory stays within
        1.5x data + state)."""
        L, X = len(W) - 1, self.inputs.X
        if L == 1:
            return None
        shape = (X.shape[0], W[L].shape[1] - 1)
        if self.features is None:
            if shape[0] * shape[1] * self.inputs.dtype.itemsize > X.nbytes // 2:
                return None
            self.features = np.empty(shape, self.inputs.dtype)
        return self.features

    def fit(self, W, rows=4096):
        """W[L] <- the refit (W = [None, W_1, ..., W_L], W_1 for centred inputs, compact)."""
        L, inputs = len(W) - 1, self.inputs
        n = W[L].shape[1]
        packed = np.zeros(n * (n + self.T.shape[1]))  # [G | R], summed over the ranks in one all-reduce
        G = packed[: n * n].reshape(n, n)
        R = packed[n * n :].reshape(n, self.T.shape[1])
        F = np.empty((min(rows, inputs.X.shape[0]), n), np.float64)
        if L == 1:  # no hidden layer: the features are the kept inputs themselves
            blocks = inputs.kept_blocks(rows)
        else:
            blocks = inputs.first_layer_blocks(inputs.fold(W[1]), rows)  # of the raw rows of X
        keep = self._keep_buffer(W)
        for block, a in blocks:
            start = block.start
            if L > 1:  # a_{L-1} = h(W_{L-1} h(... h(W_1 x)))
                a = np.maximum(_losses.later_layers(a, W[2:L], overwrite=True), 0)
                if keep is not None:
                    keep[block] = a
            f = F[: a.shape[0]]
            f[:, :-1] = a
            f[:, -1] = 1.0
            G += f.T @ f
            R += f.T @ self.T[start : start + rows]
        inputs.comm.allreduce(packed)
        if not np.isfinite(G).all():
            raise _linalg.NonFiniteError("the forward features of the output refit hold NaN or infinity")
        G.flat[:: n + 1] += self.ridge * max(np.trace(G) / n, 1e-12)
        try:
            solution = sla.solve(G, R, assume_a="pos", check_finite=False)
        except (np.linalg.LinAlgError, sla.LinAlgError):
            solution = sla.lstsq(G, R, check_finite=False)[0]
        W[L] = np.ascontiguousarray(solution.T, dtype=W[L].dtype)
        if L == 1:  # fitted on the raw inputs: back to the centred ones' bias
            inputs.unfold(W[1])
        self.valid = keep is not None  # the training outputs are now features x the new W_L

    def outputs(self, W_L):
        """(rows, outputs) blocks of the kept features times W_L (valid features only)."""
        Wb, b = W_L[:, :-1].T, W_L[:, -1]
        N = self.features.shape[0]
        for start in range(0, N, GATHER_ROWS):
            rows = slice(start, min(start + GATHER_ROWS, N))
            out = self.features[rows] @ Wb
            out += b
            yield rows, out
