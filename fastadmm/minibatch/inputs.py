"""The training rows as mini-batch ADMM sees them: the kept columns (features non-zero in some row,
with ``skip_zero_inputs``), cast to the fit's dtype, centred by the kept features' training means
(``center_inputs``).  X itself is never copied: each batch gathers its rows into a buffer, and the
passes over the whole training set go in blocks of rows.  Over MPI, X is this rank's rows and
what depends on the whole training set is agreed: the kept features (non-zero on some rank), the
means and the mean Gram (sums all-reduced)."""

from __future__ import annotations

import numpy as np

from .. import _admm_core, _comm, _inputs

GATHER_ROWS = 1024  # rows per block of the passes over the whole training set (a gathered block stays in cache)


class InputMap:
    """`compiled`: the compiled updates module (its gather of rows and kept columns), or None for
    NumPy's takes; `comm`: the ranks (_comm), `n_rows`: their rows together."""

    def __init__(self, X, settings, dtype, compiled, largest_batch, nonzero=None, comm=None, n_rows=None):
        self.X, self.dtype = X, dtype
        self.comm = comm = comm if comm is not None else _comm.SingleProcess()
        self.n_rows = X.shape[0] if n_rows is None else n_rows
        nonzero = _inputs.nonzero_features(X) if nonzero is None else nonzero
        self.active = (
            _inputs.kept_features(comm.allreduce(np.array(nonzero, dtype=np.float64)))
            if settings.skip_zero_inputs else None
        )
        self.columns = _admm_core.InputColumns(self.active, True, X.shape[1] + 1)
        self.width = X.shape[1] if self.active is None else self.active.shape[0]
        # center_inputs: the kept features' training means (float64 and the fit's dtype), of the values
        # the batches hold (X cast to the fit's dtype); every weight handed out has them folded into W_1's bias.
        self.mu64 = self.mu = None
        if settings.center_inputs:
            self.mu64 = comm.allreduce(_inputs.column_sums(X, self.active, settings.dtype)) / max(self.n_rows, 1)
            self.mu = self.mu64.astype(dtype)
        # The batch's rows at X's full width, before their kept columns are taken (without the compiled gather).
        self.rows_buffer = None if self.active is None else np.empty((largest_batch, X.shape[1]), dtype)
        # The compiled gather, when there are columns to leave out, with the kept columns as runs of
        # consecutive indices; else NumPy's takes.
        self.runs = None if self.active is None or compiled is None else compiled.column_runs(self.active)
        self._gather = None if self.runs is None else compiled.gather
        self.test_copy = None  # compact_test's copy of the held-out rows, if it made one

    # -- W_1 between the kept columns and the user's, centred inputs and raw ones ----------------
    def compact(self, W1):
        return self.columns.compact(W1)

    def expand(self, W1):
        return self.columns.expand(W1)

    def fold(self, W1):
        """A copy of W_1 for raw inputs: its bias b - W mu when the fit trains on centred ones."""
        out = W1.copy()
        if self.mu64 is not None:
            out[:, -1] -= (W1[:, :-1].astype(np.float64) @ self.mu64).astype(W1.dtype)
        return out

    def unfold(self, W1):
        """The inverse of fold, in place: W_1's bias for centred inputs, b' + W mu."""
        if self.mu64 is not None:
            W1[:, -1] += (W1[:, :-1].astype(np.float64) @ self.mu64).astype(W1.dtype)
        return W1

    # -- the batches -------------------------------------------------------------------------------
    def gather(self, rows, out):
        """out[:B] <- the rows `rows` of X, their kept columns, in the fit's dtype, centred."""
        B, X = rows.shape[0], self.X
        # mode="clip" (the rows are valid): np.take's default "raise" buffers its output, 3-4x slower here
        if self._gather is not None:  # rows and kept columns in one pass
            self._gather(X, rows, self.runs, out)
        elif X.dtype.itemsize < out.dtype.itemsize:  # float32 X, float64 fit: np.take's out= must cast
            # safely to X's type, which float64 does not; gather in X's type, then widen
            if self.active is None:
                out[:B] = np.take(X, rows, axis=0, mode="clip")
            else:
                out[:B] = np.take(np.take(X, rows, axis=0, mode="clip"), self.active, axis=1, mode="clip")
        elif self.active is None:
            np.take(X, rows, axis=0, out=out[:B], mode="clip")
        else:  # the rows, then their kept columns (no compacted copy of X)
            np.take(X, rows, axis=0, out=self.rows_buffer[:B], mode="clip")
            np.take(self.rows_buffer[:B], self.active, axis=1, out=out[:B], mode="clip")
        if self.mu is not None:
            out[:B] -= self.mu

    # -- passes over whole sets of rows ------------------------------------------------------------
    def first_layer_blocks(self, W1, rows=GATHER_ROWS, X=None):
        """(rows, W_1 [x; 1]) over the rows of X (default: the training set) in blocks, for a compact
        W_1, in the fit's dtype; X itself is never copied whole.  X may also be compact_test's copy
        (its kept columns in the fit's dtype already): then its blocks are multiplied as they are.
        With the compiled gather, each block's kept columns are gathered (and cast) into a buffer of
        the block's size, one pass; else the blocks of X are views, cast block by block when X has
        another dtype, and W_1 is widened to every feature instead, the left-out ones with weight 0
        (exact: they are 0 in every training row)."""
        X = self.X if X is None else X
        N = X.shape[0]
        dt = self.dtype
        compact = X is self.test_copy  # already the kept columns, in the fit's dtype
        gather = not compact and self._gather is not None
        W = W1 if self.active is None or gather or compact else self.expand(W1)
        V, b = W[:, :-1].T, W[:, -1]
        buf = np.empty((min(rows, N), W.shape[0]), dt)
        width = V.shape[0]
        cast = None if X.dtype == dt and not gather else np.empty((min(rows, N), width), dt)
        for start in range(0, N, rows):
            stop = min(start + rows, N)
            block = X[start:stop]
            if gather:  # this block's rows and kept columns, in the fit's type
                block = cast[: stop - start]
                self._gather(X, np.arange(start, stop, dtype=np.intp), self.runs, block)
            elif cast is not None:  # a float64 X in a float32 fit: this block only, in the fit's type
                block = cast[: stop - start]
                block[...] = X[start:stop]
            out = np.matmul(block, V, out=buf[: stop - start])
            out += b
            yield slice(start, stop), out

    def kept_blocks(self, rows):
        """(rows, the kept columns of X's raw rows) in blocks of `rows` rows, in X's dtype."""
        X = self.X
        for i in range(0, X.shape[0], rows):
            block = X[i : i + rows]
            yield slice(i, i + rows), block if self.active is None else np.take(block, self.active, axis=1,
                                                                                 mode="clip")

    def compact_test(self, X_test):
        """The held-out rows for the evaluations' forward passes: their kept columns in the fit's dtype,
        copied once, when that copy takes at most half of X_test's bytes (a float64 X_test in a float32
        fit: each evaluation then skips the gather and the cast); else X_test as it is (its blocks are
        gathered as they are passed, so it is never copied whole)."""
        if X_test is None:
            return None
        if X_test.shape[0] * self.width * self.dtype.itemsize > X_test.nbytes // 2:
            return X_test
        copy = np.empty((X_test.shape[0], self.width), self.dtype)
        if self.active is None:
            copy[...] = X_test
        elif self._gather is not None:
            self._gather(X_test, np.arange(X_test.shape[0], dtype=np.intp), self.runs, copy)
        else:
            copy[...] = np.take(X_test, self.active, axis=1)
        self.test_copy = copy
        return copy

    def mean_gram(self):
        """The mean Gram of the batches' inputs [x; 1] over the whole training set (float64): of the
        kept features, centred when the batches are."""
        X, N = self.X, self.n_rows
        G = self.comm.allreduce(_inputs.input_gram(X, True))
        if self.active is not None:  # the kept features' rows and columns, and the bias's
            kept = np.append(self.active, X.shape[1])
            G = G[np.ix_(kept, kept)]
        if self.mu64 is not None:  # of [x - mu; 1]: X^T X - N mu mu^T, and no cross terms with the bias
            G[:-1, :-1] -= N * np.outer(self.mu64, self.mu64)
            G[:-1, -1] = G[-1, :-1] = 0.0
        return G / N
