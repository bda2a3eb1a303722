"""The W_1-updates of a batch, formed once per batch.

Layer 1's input, the batch's rows [x; 1], does not change while the batch is swept, so when the
push-through form applies (the batch has fewer rows B than W_1 has columns n) every W_1-update of
the batch shares one B x B system K = A A^T + p I (A = [X_b 1], p the proximal shift of
``updates.NumpyUpdates.w_update``).  Each update j takes R_j = Z - s M (M = A W^T, the layer's
current product on the batch, s the ridge's anchor scale) and solves Y_j = K^-1 R_j; then

* the layer's product on the batch after the update is M <- s M + A A^T Y_j = s M + R_j - p Y_j
  = Z - p Y_j (exact: K Y_j = R_j), with no product with W_1; the next sweep's forward pass takes it
  (after the batch's last update nothing reads it, and it is not formed);
* W_1 itself after the batch's S updates is s^S W_prev + Ytot^T A with Ytot = sum_j s^(S-j) Y_j:
  one product with A per batch, however many sweeps (``finish``).

So a batch of S sweeps factors K once and multiplies by W_1's n columns twice (the forward pass and
``finish``) instead of 2 S times.  The result is the sequence of proximal steps
``updates.NumpyUpdates.w_update`` takes, up to rounding.

Over MPI each rank holds its rows of the batch: the ranks all-gather A once per batch and R once per
update, so that every rank holds K and R of the whole batch and decides the same on their checks.
Each rank solves only its block of Y's columns (W_1's rows that it forms in ``finish``) and keeps that
block of Ytot; an all-gather of the blocks (but after the batch's last update) gives every rank
the rows of Y that the update of M on its rows needs (an all-to-all would move less, but would wait on up to min(K, h) partners where an
all-gather takes log2 K steps); a last all-gather assembles W_1 on every rank.
"""

from __future__ import annotations

import numpy as np

from .. import _linalg
from .updates import _check_finite
from .shared import assemble_rows, gather_rows, push_through_factor, row_blocks


class FirstLayer:
    """Layer 1's W-updates over the batches of a fit: `comm` (a _comm.Communicator; one process or
    ranks), buffers in `dtype` for a (global) batch of up to `largest` rows, m = X's kept columns,
    h = W_1's rows."""

    def __init__(self, comm, dtype, largest, m, h):
        self.comm, self.rank, self.size = comm, comm.rank, comm.size
        # the block of Y's columns (W_1's rows) this rank solves and forms: all of them in one process
        self.bounds = row_blocks(h, self.size)
        self.lo, self.hi = int(self.bounds[self.rank]), int(self.bounds[self.rank + 1])
        self.widths = np.diff(self.bounds)
        shared = comm.size > 1
        block = largest * (self.hi - self.lo)
        self.A_all = np.empty((largest * m,), dtype) if shared else None  # the batch's gathered rows
        self.R_all = np.empty((largest * h,), dtype) if shared else None  # the gathered residuals
        self.send = np.empty((max(largest * max(m, h), h * (m + 1)),), dtype) if shared else None
        self.Y_block = np.empty((block,), dtype) if shared else None  # this rank's columns of Y
        self.Y_all = np.empty((largest * h,), dtype) if shared else None  # every rank's block of Y
        self.K = np.empty((largest * largest,), dtype)
        self.Ytot_buffer = np.empty((block,), dtype)
        self.pending = False  # whether W_1 has updates of the current batch not yet formed
        self.A = self.factor = self.Ytot = None  # the batch's inputs, K's factor, sum_j s^(S-j) Y_j (own columns)
        self.shift = self.scale = 0.0
        self.updates = 0  # W_1-updates of the current batch so far (0 between batches)
        self.rows = slice(0, 0)  # this rank's rows within the batch's gathered rows

    @staticmethod
    def applies(B: int, n: int) -> bool:
        """Whether a (global) batch of B rows takes the push-through form for n columns."""
        return B < n

    # -- the batch's system ------------------------------------------------------------------------
    def _begin(self, layer, A, prox, counts):
        """Gather the batch's rows (over MPI), build K and factor it."""
        if counts is None:
            self.A, self.rows = A, slice(0, A.shape[0])
        else:
            self.A = gather_rows(self.comm, [A], self.send, self.A_all, counts)
            start = int(counts[: self.rank].sum())
            self.rows = slice(start, start + A.shape[0])
        B = self.A.shape[0]
        self.factor, self.shift = push_through_factor(layer, self.A, prox, self.K)
        self.Ytot = self.Ytot_buffer[: B * (self.hi - self.lo)].reshape(B, self.hi - self.lo)
        self.Ytot[...] = 0.0
        self.scale = 1.0  # s^S of the updates so far
        self.pending = True

    # -- one W_1-update ----------------------------------------------------------------------------
    def update(self, layer, A, Z, M, R, prox, shrink, counts, product=True):
        """One W_1-update of the batch: A (B_k, m) this rank's rows of the batch's inputs, Z (B_k, h)
        their targets, M (B_k, h) W_1's current product on them, replaced by the product after the
        update if `product` (the batch's last update passes False: nothing reads it before W_1 is
        formed, and over MPI that saves the all-gather of Y's blocks); R (B_k, h) scratch;
        `counts`: every rank's rows of the batch (None: one process)."""
        if not self.pending:
            self._begin(layer, A, prox, counts)
        self.updates += 1
        np.multiply(M, shrink, out=R)
        np.subtract(Z, R, out=R)  # z_1 - s W_1 a_0
        if counts is None:
            Y = R
            _check_finite(layer, 0.0, Y)
            _linalg.spd_solve_factored(self.factor, Y, rows=False)
        else:
            Rg = gather_rows(self.comm, [R], self.send, self.R_all, counts)
            _check_finite(layer, 0.0, Rg)  # on the whole batch: every rank decides the same
            B = Rg.shape[0]
            Y = self.Y_block[: B * (self.hi - self.lo)].reshape(B, self.hi - self.lo)
            if self.hi > self.lo:  # more ranks than W_1 has rows: some hold none
                Y[...] = Rg[:, self.lo : self.hi]
                _linalg.spd_solve_factored(self.factor, Y, rows=False)
        self.Ytot *= shrink
        self.Ytot += Y
        self.scale *= shrink
        if not product:
            return
        # M <- Z - p Y on this rank's rows
        if counts is None:
            np.multiply(Y, -self.shift, out=M)
            M += Z
            return
        B = Y.shape[0]
        blocks = self.comm.allgatherv(Y.reshape(-1), self.Y_all, B * self.widths)
        start = 0
        for lo, hi in zip(self.bounds[:-1], self.bounds[1:]):
            part = blocks[start : start + B * (hi - lo)].reshape(B, hi - lo)[self.rows]
            np.multiply(part, -self.shift, out=M[:, lo:hi])
            M[:, lo:hi] += Z[:, lo:hi]
            start += B * (hi - lo)

    def finish(self, W):
        """W_1 <- s^S W_1 + Ytot^T [A 1], the batch's updates formed (W: h x (m + 1), every rank)."""
        if not self.pending:
            return
        self.pending = False
        self.updates = 0
        Ytot, A = self.Ytot, self.A
        if self.hi > self.lo:
            Wk = W[self.lo : self.hi]
            if self.scale != 1.0:
                Wk *= self.scale
            Wk[:, :-1] += Ytot.T @ A
            Wk[:, -1] += Ytot.sum(axis=0)
        if self.size > 1:
            assemble_rows(self.comm, W, self.bounds, self.send)
        self.A = None
