"""The W-update of a batch whose rows are spread over MPI ranks (``train_admm(..., comm=)`` with
mini-batches): every rank ends with the W of one process's step on the whole global batch.

Each rank holds its rows of the batch (``schedule``: its share of every global batch) with their
inputs A = a_{l-1} (B_k x m) and targets Z = z_l (B_k x h).  The forms are the ones one process
chooses by the global batch B against the layer's input width n = m + 1
(``updates.NumpyUpdates.w_update``):

* a small layer (the work a rank would repeat, ``repeated_macs``, at most ``WHOLE_MACS``; e.g. an
  output layer of a few units, or a layer of few inputs): the ranks all-gather their rows of
  [A | Z] and every rank takes the one-process step (the backend's ``w_update``, in either form) on
  the whole batch.  Repeating it costs each rank less than the Python and collectives that
  splitting it would add.
* B < n for a larger layer: each rank forms its residuals R = Z - s W_prev [A 1], the ranks
  all-gather [A | R], every rank builds K = A A^T + 1 1^T + p I (B x B), solves Y = K^-1 R for its
  share of W's rows (a contiguous block of output units) and updates those rows,
  W_j <- s W_j + Y_j^T [A 1]; a second all-gather assembles W on every rank.
* B >= n, the normal equations: each rank sums [A 1]^T [A 1] and [A 1]^T R over its rows, one
  all-reduce of both (packed), and every rank solves the same n x n system.

The batch's rows arrive in rank order, a permutation of one process's: K and Y are permuted alike,
so the step is the same up to rounding.  W is the same on every rank: each row is computed once, or
by every rank from the same numbers with the same code.  The a- and z-updates and the forward pass
stay on each rank's rows.
"""

from __future__ import annotations

import numpy as np

from .. import _linalg
from .updates import _check_finite


# The most multiply-adds a rank repeats to take a W-update whole rather than split over the ranks:
# about 4 million, tens of microseconds on one core, the cost of the collective and the Python
# calls that splitting saves.
WHOLE_MACS = 1 << 22


def repeated_macs(B: int, m: int, h: int) -> int:
    """The multiply-adds a rank does beyond its share when it takes a layer's W-update (m inputs,
    h outputs, a global batch of B rows) whole: the other rows' residuals and, in the push-through
    form (B < m + 1), the solves and products of the other ranks' rows of W (B h (B + 2 n)), in the
    normal equations the Gram and cross product of the other rows (B (n^2 / 2 + 2 n h))."""
    n = m + 1
    return B * h * (B + 2 * n) if B < n else B * (n * n // 2 + 2 * n * h)


def whole(B: int, m: int, h: int) -> bool:
    """Whether every rank takes the W-update of a layer with m inputs and h outputs on a global batch
    of B rows whole (module docstring)."""
    return repeated_macs(B, m, h) <= WHOLE_MACS


def row_blocks(h: int, size: int) -> np.ndarray:
    """Bounds [0, ..., h] of the blocks of W's h rows that the `size` ranks compute (as np.array_split)."""
    base, extra = divmod(h, size)
    return np.concatenate([[0], np.cumsum([base + (r < extra) for r in range(size)])]).astype(np.intp)


def gather_rows(comm, parts, send, recv, counts) -> np.ndarray:
    """Every rank's rows of the column blocks `parts` (arrays of this rank's B_k rows), side by side
    and in rank order: a (B, sum of widths) view of `recv`, through the scratch `send`."""
    width = sum(p.shape[1] for p in parts)
    mine = send[: parts[0].shape[0] * width].reshape(-1, width)
    start = 0
    for p in parts:
        mine[:, start : start + p.shape[1]] = p
        start += p.shape[1]
    return comm.allgatherv(mine.reshape(-1), recv, counts * width).reshape(-1, width)


def assemble_rows(comm, W, bounds, send) -> None:
    """W <- every rank's block of W's rows (``row_blocks`` bounds), on every rank, through `send`."""
    n = W.shape[1]
    lo, hi = int(bounds[comm.rank]), int(bounds[comm.rank + 1])
    out = send[: (hi - lo) * n]
    out[...] = W[lo:hi].reshape(-1)
    comm.allgatherv(out, W.reshape(-1), np.diff(bounds) * n)


def push_through_factor(layer, A, prox, square):
    """The push-through system of the batch's rows A (B x m), K = A A^T + 1 1^T + p I with p = prox
    times the mean diagonal of [A 1]^T [A 1] (+ 1e-12), its upper triangle built in `square` and factored
    (``_linalg.spd_factor``); returns (factor, p).  NonFiniteError for NaN or infinity in A, or a K
    that is not positive definite; over MPI every rank builds the same K, so all raise together."""
    B, n = A.shape[0], A.shape[1] + 1
    K = _linalg.gram_rows(A, square[: B * B].reshape(B, B))  # its upper triangle, the one factored
    mean_diag = (float(np.trace(K)) + B) / n  # mean diagonal of [a; 1][a; 1]^T
    if not np.isfinite(mean_diag):
        raise _linalg.NonFiniteError(f"layer {layer}: the batch's activations hold NaN or infinity")
    shift = prox * mean_diag + 1e-12
    K += 1.0
    K.flat[:: B + 1] += shift
    factor = _linalg.spd_factor(K, shift)
    if factor is None:
        raise _linalg.NonFiniteError(f"layer {layer}: the W-update's system is not positive definite")
    return factor, shift


class SharedWUpdate:
    """The W-updates of one fit over `comm`; buffers for a global batch of up to `largest` rows and
    layers of the given `widths` (inputs without the bias, then each layer's outputs), in `dtype`,
    allocated once; `updates`: the fit's backend (``updates.get``), whose ``w_update`` takes a
    small layer's step whole and whose ``linear`` forms W_prev [A 1]."""

    def __init__(self, comm, dtype, largest, widths, updates):
        self.comm = comm
        self.updates = updates
        self.rank, self.size = comm.rank, comm.size
        pairs = [(widths[l - 1], widths[l]) for l in range(1, len(widths))]
        block = max(largest * (m + h) for m, h in pairs)  # a batch's [A | R] or [A | Z]
        summed = max([(m + 1) * (m + 2 + h) for m, h in pairs if largest >= m + 1] or [0])
        square = max([largest * largest for m, h in pairs if largest < m + 1] or [0])
        self.send = np.empty(max(block, max(h * (m + 1) for m, h in pairs)), dtype)
        self.recv = np.empty(max(block, summed), dtype)
        self.square = np.empty(square, dtype)
        self.Y = np.empty(max(largest * h for m, h in pairs), dtype)  # this rank's columns of K^-1 R
        # a whole update's batch, contiguous: its inputs, targets and residuals (any layer may be
        # taken whole for some batch size)
        self.A_whole = np.empty(max(largest * m for m, h in pairs), dtype)
        self.Z_whole = np.empty(max(largest * h for m, h in pairs), dtype)
        self.R_whole = np.empty_like(self.Z_whole)

    def w_update(self, layer, A, Z, M, R, W, prox, shrink, counts):
        """W <- s W + the proximal step of the global batch, in place on every rank (s = shrink).
        A (B_k, m), Z (B_k, h): this rank's rows of the layer's inputs and targets; M: W_prev [A 1]
        on them if current, else None; R (B_k, h): scratch; `counts`: every rank's rows of this
        batch, in rank order."""
        B = int(counts.sum())
        m, h = A.shape[1], W.shape[0]
        if whole(B, m, h):
            self._whole(layer, A, Z, W, prox, shrink, counts, B)
            return
        if A.shape[0]:  # the residuals z_l - s W_prev [a_{l-1}; 1]
            if M is None:
                M = self.updates.linear(A, W, R)
            np.multiply(M, shrink, out=R)
            np.subtract(Z, R, out=R)
        if B < m + 1:
            self._push_through(layer, A, R, W, prox, shrink, counts, B)
        else:
            self._normal_equations(layer, A, R, W, prox, shrink)

    def _whole(self, layer, A, Z, W, prox, shrink, counts, B):
        m, h = A.shape[1], W.shape[0]
        block = gather_rows(self.comm, [A, Z], self.send, self.recv, counts)
        Ag = self.A_whole[: B * m].reshape(B, m)
        Zg = self.Z_whole[: B * h].reshape(B, h)
        Ag[...] = block[:, :m]
        Zg[...] = block[:, m:]
        self.updates.w_update(layer, Ag, Zg, None, self.R_whole[: B * h].reshape(B, h), W, prox, shrink)

    def _push_through(self, layer, A, R, W, prox, shrink, counts, B):
        m, h = A.shape[1], W.shape[0]
        block = gather_rows(self.comm, [A, R], self.send, self.recv, counts)
        Ag, Rg = block[:, :m], block[:, m:]
        _check_finite(layer, 0.0, Rg)
        factor, _ = push_through_factor(layer, Ag, prox, self.square)  # on every rank, also without rows of W
        bounds = row_blocks(h, self.size)
        lo, hi = int(bounds[self.rank]), int(bounds[self.rank + 1])
        if hi > lo:
            Y = self.Y[: B * (hi - lo)].reshape(B, hi - lo)
            Y[...] = Rg[:, lo:hi]
            _linalg.spd_solve_factored(factor, Y, rows=False)
            Wk = W[lo:hi]
            Wk *= shrink
            Wk[:, :-1] += Y.T @ Ag
            Wk[:, -1] += Y.sum(axis=0)
        assemble_rows(self.comm, W, bounds, self.send)

    def _normal_equations(self, layer, A, R, W, prox, shrink):
        m, h = A.shape[1], W.shape[0]
        n = m + 1
        packed = self.recv[: n * (n + h)]
        G = packed[: n * n].reshape(n, n)
        rhs = packed[n * n :].reshape(n, h)
        np.matmul(A.T, A, out=G[:-1, :-1])
        colsum = A.sum(axis=0)
        G[-1, :-1] = colsum
        G[:-1, -1] = colsum
        G[-1, -1] = A.shape[0]
        np.matmul(A.T, R, out=rhs[:-1])
        R.sum(axis=0, out=rhs[-1])
        self.comm.allreduce(packed)
        mean_diag = float(np.trace(G)) / n
        _check_finite(layer, mean_diag, rhs)
        shift = prox * mean_diag + 1e-12
        G.flat[:: n + 1] += shift
        if not _linalg.spd_solve(G, rhs, shift, rows=False):
            raise _linalg.NonFiniteError(f"layer {layer}: the W-update's system is not positive definite")
        W *= shrink
        W += rhs.T
