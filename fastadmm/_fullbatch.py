"""Full-batch ADMM: the step object of ``train_admm(..., batch_size=None)``, Algorithm 1 of Taylor et
al. (2016) (docs/ALGORITHM.md, section 3).  One call of :meth:`FullBatchADMM.sweep` is one iteration::

    for l = 1 .. L-1:
        W_l <- z_l a_{l-1}^+                          (ridge-regularised least squares)
        a_l <- (beta W_{l+1}^T W_{l+1} + gamma I)^-1 (beta W_{l+1}^T z_{l+1} + gamma h(z_l))
        z_l <- argmin_z gamma ||a_l - h(z)||^2 + beta ||z - W_l a_{l-1}||^2
    W_L <- z_L a_{L-1}^+
    z_L <- argmin_z loss(z, y) + <z, lam> + beta ||z - W_L a_{L-1}||^2
    lam <- lam + beta (z_L - W_L a_{L-1})             (after the warm start)

Arrays hold one sample per row (A[l] is a_l^T, shape (N, n_l)); the elementwise steps are the
compiled kernels of ``_backend``, the products are BLAS-3 calls with preallocated outputs.  The rows
may be this rank's share of a distributed fit: every sum over samples is all-reduced (``comm``).
"""

from __future__ import annotations

import time

import numpy as np

from . import _admm_core, _inputs, _linalg, _losses, _step
from ._losses import ROW_BLOCK
from ._settings import ADMMSettings


@_step.register_step
class FullBatchADMM(_step.ForwardOutputs):
    """The iterates and buffers of one fit (this rank's rows of them), and the steps of a sweep."""

    kind = "admm-fullbatch"

    def __init__(self, X, T, sizes, loss, settings: ADMMSettings, kernels, rng, init, comm, row_offset, n_global,
                 nonzero=None):
        self.comm = comm
        self.intercept = settings.intercept
        # Features that are zero in every sample (over all ranks) drop out of every product with X.
        self.n_features = X.shape[1]
        self.active = self._active_inputs(X, nonzero) if settings.skip_zero_inputs else None
        self.columns = _admm_core.InputColumns(self.active, self.intercept, sizes[0])
        if self.active is not None:
            X = np.ascontiguousarray(X[:, self.active])
        self.X = X
        self.T = T
        self.sizes = sizes
        self.L = L = len(sizes) - 1
        self.s = settings
        self.k = kernels
        self.loss = loss
        dt = X.dtype
        N = X.shape[0]
        self.beta, self.gamma = _admm_core.layer_penalties(settings.beta, settings.gamma, settings.depth_decay, L)
        # Buffers, allocated once.  Z[l] also receives W_l a_{l-1} before the in-place z-kernel.
        self.Z = [None] + [np.empty((N, sizes[l]), dt) for l in range(1, L + 1)]
        self.A = [X] + [np.empty((N, sizes[l]), dt) for l in range(1, L)]
        self.H = [None] + [np.empty((N, sizes[l]), dt) for l in range(1, L)]  # h(z_l)
        self.lam = np.zeros((N, sizes[L]), dt)
        # W_1 a_0 as the last sweep formed it for the first layer's z-update (after W_1's update, which
        # is final for that sweep), kept apart from z_1 so that the evaluation reuses it: only the
        # small layers are left to compute.  One (N, n_1) buffer more, only when evaluating.
        self.M1 = np.empty((N, sizes[1]), dt) if settings.eval_every else None
        self._m1_of = None  # the W_1 that M1 was computed with
        # One packed buffer per layer for the sums of the W-update, so that a distributed fit
        # exchanges them in one all-reduce: [a a^T (l > 1) | z a^T | z 1 (intercept, l = 1)].
        self.packed = [None]
        for l in range(1, L + 1):
            n_in = X.shape[1] if l == 1 else sizes[l - 1]
            size = (0 if l == 1 else n_in * n_in) + sizes[l] * n_in + (sizes[l] if l == 1 and self.intercept else 0)
            self.packed.append(np.empty(size, dt))
        self.W = [None] * (L + 1)
        self.iteration = 0
        if init is not None:
            self.from_state(init.state, init.weights)
        else:
            self._initialise(rng, row_offset, n_global)
        # The input's Gram never changes: sum it over ranks and invert it once per fit.
        try:
            self.G0_inv = _linalg.gram_inverse(self._input_gram(), settings.ridge, sizes[0]).astype(dt)
        except _linalg.NonFiniteError:
            raise ValueError(
                "X is too large in magnitude: its Gram matrix a_0 a_0^T overflows; scale X, e.g. X / np.abs(X).max()"
            ) from None
        if init is None and (not all(np.isfinite(W).all() for W in self.W[1:]) or not np.isfinite(self.Z[L]).all()):
            raise ValueError(
                f"init_scale={settings.init_scale!r} makes the initial values overflow; use a smaller init_scale "
                "(the default 1e-3 was measured best)"
            )
        if init is None and settings.initialization == "gaussian":
            # The paper leaves the W_{l+1} of the first a_l-update unspecified: fit every W to the
            # initial z and a by the same least squares as the W-update.
            for l in range(1, L + 1):
                self._w_update(l)

    # -- the input layer, with the constant feature of `intercept` handled analytically ------
    def _active_inputs(self, X, nonzero=None):
        """The features kept (non-zero in some sample of some rank), or None to use X as it is;
        `nonzero`: this rank's _inputs.nonzero_features(X) if already known."""
        return _inputs.kept_features(self.comm.allreduce(_inputs.nonzero_features(X) if nonzero is None else nonzero))

    def compact_test(self, X_test):
        """X_test with the same features left out (for evaluating with the compact weights)."""
        if self.active is None or X_test is None:
            return X_test
        return np.ascontiguousarray(X_test[:, self.active])

    def _input_gram(self):
        """a_0 a_0^T in float64 (row blocks, so float32 X is never copied whole), summed over ranks."""
        return self.comm.allreduce(_inputs.input_gram(self.X, self.intercept, ROW_BLOCK))

    # -- initialisation -------------------------------------------------------------------
    def _initialise(self, rng, row_offset, n_global):
        L, sizes, dt = self.L, self.sizes, self.X.dtype
        N = self.X.shape[0]
        if self.s.initialization == "forward":
            for l in range(1, L + 1):
                W = rng.normal(0.0, self.s.init_scale, (sizes[l], sizes[l - 1]))
                self.W[l] = (self.columns.compact(W) if l == 1 else W).astype(dt)
                self._linear(l)
                if l < L:
                    np.maximum(self.Z[l], 0, out=self.A[l])
                    self.H[l][...] = self.A[l]
        else:  # "gaussian": the paper's unit Gaussians for every z_l and a_l
            rows = slice(row_offset, row_offset + N)  # this rank's rows of the one-process draw
            for l in range(1, L + 1):
                _gaussian_rows(rng, n_global, rows, out=self.Z[l])
                if l < L:
                    _gaussian_rows(rng, n_global, rows, out=self.A[l])
                    np.maximum(self.Z[l], 0, out=self.H[l])
            for l in range(1, L + 1):
                self.W[l] = np.zeros((sizes[l], self.packed_width(l)), dt)

    # -- the state -------------------------------------------------------------------------
    def from_state(self, state, weights):
        """Continue from a Result's state and weights (full width)."""
        self.check_state(state, weights)
        L = self.L
        for l in range(1, L + 1):
            W = np.array(weights[l - 1], dtype=self.X.dtype)
            self.W[l] = self.columns.compact(W) if l == 1 else W
            self.Z[l][...] = state["Z"][l - 1]
        for l in range(1, L):
            self.A[l][...] = state["A"][l - 1]
            np.maximum(self.Z[l], 0, out=self.H[l])
        self.lam[...] = state["lam"]
        self.beta, self.gamma = _admm_core.penalties_from_state(state)
        self.iteration = int(state["iteration"])

    def to_state(self) -> dict:
        """The iterates needed to resume (the buffers themselves: call once, after the loop)."""
        return {"Z": self.Z[1:], "A": self.A[1:], "lam": self.lam, **_admm_core.penalty_state(self.beta, self.gamma),
                "iteration": self.iteration}

    @staticmethod
    def check_state(state, weights):
        L = len(weights)
        _admm_core.check_penalties(state, L)
        _step.require(state, {"Z": (_step.is_array_list, "a list of arrays"),
                               "A": (lambda v: v == [] or _step.is_array_list(v), "a list of arrays"),
                               "lam": (lambda v: isinstance(v, np.ndarray), "an array")})
        Z, A, lam = state["Z"], state["A"], state["lam"]
        if len(Z) != L or len(A) != L - 1:
            raise ValueError(f"the state holds {len(Z)} z and {len(A)} a arrays; a network of {L} layers has {L} "
                             f"and {L - 1}")
        n = Z[0].shape[0] if Z[0].ndim == 2 else -1  # samples: every state array has one row per sample
        wanted = [(f"Z{i}", Z[i], W.shape[0]) for i, W in enumerate(weights)]
        wanted += [(f"A{i}", A[i], weights[i].shape[0]) for i in range(L - 1)]
        wanted += [("lam", lam, weights[-1].shape[0])]
        for name, array, width in wanted:
            if array.shape != (n, width) or n < 1 or array.dtype.kind != "f" or array.dtype != Z[0].dtype:
                raise ValueError(f"state array {name} has shape {array.shape} and dtype {array.dtype}; the weights "
                                 f"and Z0 ({Z[0].shape}, {Z[0].dtype}) require ({n}, {width}) of Z0's float dtype")

    def running_counts(self):
        raise ValueError("full-batch ADMM has no batches to count: its training metrics come from a forward pass "
                         "(train_metrics='full')")

    # -- the steps of a sweep -------------------------------------------------------------
    def _linear(self, l):
        """Z[l] <- W_l a_{l-1} (one sample per row)."""
        if l == 1:
            _losses.first_layer(self.W[1], self.X, self.intercept, out=self.Z[1])
        else:
            np.matmul(self.A[l - 1], self.W[l].T, out=self.Z[l])

    def _product(self, l):
        """m = W_l a_{l-1} for layer l's z-update: into M1 for l = 1 (kept for the evaluation, see
        train_outputs), else into z_l's own buffer, which the z-kernel then overwrites in place."""
        if l > 1 or self.M1 is None:
            self._linear(l)
            return self.Z[l]
        _losses.first_layer(self.W[1], self.X, self.intercept, out=self.M1)
        self._m1_of = self.W[1]
        return self.M1

    def train_outputs(self, weights):
        """(rows, outputs) blocks of the network's outputs on this rank's rows for `weights` (from
        compact_weights).  When their W_1 is the one of the last sweep, its product W_1 a_0 (M1) is
        reused, so only layers 2..L are computed; otherwise a plain forward pass."""
        if self.M1 is None or weights[0] is not self._m1_of:
            yield from _losses.forward_blocks(weights, self.X, self.intercept)
            return
        N = self.X.shape[0]
        for start in range(0, N, ROW_BLOCK):
            rows = slice(start, min(start + ROW_BLOCK, N))
            yield rows, _losses.later_layers(self.M1[rows], weights[1:])

    def _w_update(self, l):
        """W_l <- z_l a_{l-1}^T (a_{l-1} a_{l-1}^T + r I)^-1, the sums all-reduced in one buffer."""
        A_prev, Z, buf = self.A[l - 1], self.Z[l], self.packed[l]
        n_out, n_in = Z.shape[1], A_prev.shape[1]
        if l == 1:
            C = buf[: n_out * n_in].reshape(n_out, n_in)
            np.matmul(Z.T, A_prev, out=C)  # z_1 a_0^T
            if self.intercept:
                Z.sum(axis=0, out=buf[n_out * n_in:])  # z_1 1^T: the constant input's column
            self.comm.allreduce(buf)
            if not np.isfinite(buf).all():
                raise _linalg.NonFiniteError("the cross product z_1 a_0^T holds NaN or infinity")
            if self.intercept:
                C = np.concatenate([C, buf[n_out * n_in:, None]], axis=1)
            self.W[1] = C @ self.G0_inv
        else:
            G = buf[: n_in * n_in].reshape(n_in, n_in)
            C = buf[n_in * n_in:].reshape(n_out, n_in)
            np.matmul(A_prev.T, A_prev, out=G)  # a_{l-1} a_{l-1}^T (numpy calls syrk for this form)
            np.matmul(Z.T, A_prev, out=C)  # z_l a_{l-1}^T
            self.comm.allreduce(buf)
            self.W[l] = _linalg.solve_weights(C, G, self.s.ridge).astype(A_prev.dtype)

    def _a_update(self, l):
        _admm_core.a_update_dense(self.H[l], self.Z[l + 1], self.W[l + 1], self.beta[l + 1], self.gamma[l], self.A[l])

    def _z_update(self, l):
        m = self._product(l).reshape(-1)
        return self.k.relu_z_update(
            self.A[l].reshape(-1), m, self.beta[l], self.gamma[l], self.Z[l].reshape(-1), self.H[l].reshape(-1)
        )

    def _output_update(self, lam_step):
        L = self.L
        return _admm_core.output_update(self.k, self.loss, self.T, self._product(L), self.lam, self.beta[L], lam_step,
                                        self.Z[L])

    def sweep(self, timings):
        """One iteration of Algorithm 1.

        Returns this rank's sums [rz_1 .. rz_L, ra_1 .. ra_{L-1}, loss, <lam, z_L>, ||z_L||^2]
        (rz_l = ||z_l - W_l a_{l-1}||^2, ra_l = ||a_l - h(z_l)||^2) and the penalties used.
        """
        L = self.L
        sums = _admm_core.Sums(L)
        penalties = (list(self.beta), list(self.gamma))
        for l in range(1, L):
            t0 = time.perf_counter()
            self._w_update(l)
            t1 = time.perf_counter()
            self._a_update(l)
            t2 = time.perf_counter()
            sums.rz[l - 1], sums.ra[l - 1] = self._z_update(l)
            t3 = time.perf_counter()
            timings["W"] += t1 - t0
            timings["a"] += t2 - t1
            timings["z"] += t3 - t2
        t0 = time.perf_counter()
        self._w_update(L)
        t1 = time.perf_counter()
        lam_step = self.s.multiplier and self.iteration >= self.s.warm_start_iter
        sums.add_output(*self._output_update(lam_step), self.Z[L])
        t2 = time.perf_counter()
        timings["W"] += t1 - t0
        timings["z"] += t2 - t1
        self.iteration += 1
        self.beta, self.gamma = _admm_core.grown_penalties(self.beta, self.gamma, self.s, self.iteration)
        return sums.values, penalties

    def packed_width(self, l):
        """Columns of the W_l held during the fit (W_1: kept features + intercept)."""
        return self.X.shape[1] + int(self.intercept) if l == 1 else self.sizes[l - 1]

    def compact_weights(self):
        # Every W-update binds a new array, so references are a consistent snapshot.
        return list(self.W[1:])

    def full_width(self, weights):
        """Compact weights (from compact_weights) at the user's input width."""
        return [self.columns.expand(weights[0]), *weights[1:]]


def _gaussian_rows(rng, n_global, rows, out):
    """out <- rows `rows` of rng.standard_normal((n_global, out.shape[1])), drawn in blocks of
    ROW_BLOCK rows (the same stream, so the same numbers), never holding all n_global rows."""
    for start in range(0, n_global, ROW_BLOCK):
        block = rng.standard_normal((min(ROW_BLOCK, n_global - start), out.shape[1]))
        lo, hi = max(start, rows.start), min(start + block.shape[0], rows.stop)
        if lo < hi:
            out[lo - rows.start : hi - rows.start] = block[lo - start : hi - start]


