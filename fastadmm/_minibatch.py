"""Mini-batch ADMM: the step object of ``train_admm(..., batch_size=B)`` (docs/ALGORITHM.md, section 6).

One call of :meth:`MiniBatchADMM.sweep` is one epoch: the rows are reshuffled and visited in batches of
``batch_size``.  For each batch (row layout, one sample per row; every layer has a bias, the last
column of its ``W_l``, i.e. a constant input 1 handled analytically):

1. ``z_l``, ``a_l`` start from an ordinary forward pass of the current weights (``a_l = h(z_l)``).
2. ``batch_sweeps`` backward sweeps, each:
   * output: ``z_L <- argmin_z loss(z, y) + beta_L ||z - m_L||^2`` with ``m_L = W_L a_{L-1}`` (the
     loss's proximal step; the compiled kernels of the full-batch method with ``lam = 0``);
   * for l = L .. 1:
       ``W_l <- argmin_W beta_l ||z_l - W a_{l-1}||^2 + ||(W - W_prev) P_l^{1/2}||^2``, in closed form
       ``W_l = W_prev + (z_l - W_prev a_{l-1}) a_{l-1}^T (a_{l-1} a_{l-1}^T + P_l / beta_l)^-1``,
       a proximal least-squares step whose metric ``P_l`` is ``prox * B * S_l`` (``S_l`` the
       running mean of the layer's input Gram, ``prox_metric="gram"``) or ``prox * I``
       (``prox_metric="identity"``, the BCD papers' ``alpha ||W - W_prev||^2``);
       then, for l > 1, the paper's a- and z-updates of layer l - 1 against the new ``W_l``:
       ``a_{l-1} <- (beta_l W^T W + gamma I)^-1 (beta_l W^T (z_l - b_l) + gamma h(z_{l-1}))`` and
       ``z_{l-1} <- argmin_z gamma ||a_{l-1} - h(z)||^2 + beta_{l-1} ||z - W_{l-1} a_{l-2}||^2``.
No multiplier is kept (the per-sample ``lam`` of a batch would be stale by its next visit).  Every
product over a batch is one BLAS-3 call into a buffer allocated once; the small n x n solves are
done in float64.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.linalg as sla

from . import _inputs, _linalg, _losses

_LOSS_CODE = {"mse": 0, "hinge": 1}


class MiniBatchADMM:
    """The iterates, buffers and update steps of a mini-batch fit (one process)."""

    def __init__(self, X, T, sizes, loss, settings, kernels, rng, init, comm):
        self.comm = comm
        self.s = settings
        self.k = kernels
        self.loss = loss
        self.intercept = True  # every layer has a bias (the last column of each W_l)
        self.n_features = X.shape[1]
        self.active = (
            _inputs.kept_features(_inputs.nonzero_features(X)) if settings.skip_zero_inputs else None
        )
        if self.active is not None:
            X = np.ascontiguousarray(X[:, self.active])
        self.X, self.T = X, T
        self.sizes = sizes  # [n_0 (+1 for the bias), n_1, ..., n_L]
        self.L = L = len(sizes) - 1
        dt = X.dtype
        self.rng = rng
        N = X.shape[0]
        # Equal batches of about batch_size rows (the remainder spread over them): the largest has B rows.
        self.n_batches = max(1, N // min(int(settings.batch_size), N))
        B = -(-N // self.n_batches)
        self.B = B
        widths = [X.shape[1]] + list(sizes[1:])
        self.widths = widths
        # Batch buffers, allocated once: Xb holds the batch's rows of X; Z[l], A[l], H[l] its z_l, a_l, h(z_l).
        self.Xb = np.empty((B, widths[0]), dt)
        self.Tb = np.empty((B, widths[L]), dt)
        self.Z = [None] + [np.empty((B, widths[l]), dt) for l in range(1, L + 1)]
        self.A = [self.Xb] + [np.empty((B, widths[l]), dt) for l in range(1, L)]
        self.H = [None] + [np.empty((B, widths[l]), dt) for l in range(1, L)]
        self.A_new = [None] + [np.empty((B, widths[l]), dt) for l in range(1, L)]  # a_l's update, swapped in
        self.lam0 = np.zeros((B, widths[L]), dt)  # the output update's multiplier: always 0 here
        self._scratch = [None] + [np.empty((B, widths[l]), dt) for l in range(1, L + 1)]
        self.beta = [float(settings.beta)] * (L + 1)
        self.gamma = [float(settings.gamma)] * (L + 1)
        self.iteration = 0
        # The running Grams S_l (with the bias row/column) of prox_metric="gram", float64.
        self.S = [None] + [None] * L
        if init is not None:
            self._load_state(init)
        else:
            self.W = [None]
            for l in range(1, L + 1):
                n_in = sizes[l - 1] - 1 if l == 1 else sizes[l - 1]  # without the bias column
                std = np.sqrt(2.0 / n_in)  # He: keeps the forward pass's scale through the ReLUs
                W = np.zeros((sizes[l], n_in + 1))
                W[:, :-1] = rng.normal(0.0, std, (sizes[l], n_in))
                self.W.append((self._compact(W) if l == 1 else W).astype(dt))
        if settings.prox_metric == "gram" and self.S[1] is None:
            # Layer 1's input never changes: its metric is the whole training set's mean Gram.
            self.S[1] = self._input_gram() / X.shape[0]

    # -- the input layer's left-out features (as the full-batch driver) --------------------------
    def _compact(self, W1):
        return _inputs.take_columns(W1, self.active, True)

    def _expand(self, W1):
        full = np.zeros((W1.shape[0], self.sizes[0]), W1.dtype)
        return _inputs.put_columns(full, W1, self.active, True)

    def compact_test(self, X_test):
        if self.active is None or X_test is None:
            return X_test
        return np.ascontiguousarray(X_test[:, self.active])

    def _input_gram(self):
        """[X 1]^T [X 1] in float64, in row blocks."""
        X = self.X
        n = X.shape[1]
        G = np.zeros((n + 1, n + 1))
        for start in range(0, X.shape[0], 8192):
            block = X[start : start + 8192].astype(np.float64, copy=False)
            G[:n, :n] += block.T @ block
            G[n, :n] += block.sum(axis=0)
        G[:n, n] = G[n, :n]
        G[n, n] = X.shape[0]
        return G

    def _load_state(self, init):
        st = init.state
        self.W = [None] + [np.array(W, dtype=self.X.dtype) for W in init.weights]
        self.W[1] = self._compact(self.W[1])
        for l, S in enumerate(st.get("S", []), start=1):
            self.S[l] = None if S is None or np.size(S) == 0 else np.array(S, dtype=np.float64)
        self.beta = [float(b) for b in st["beta"]]
        self.gamma = [float(g) for g in st["gamma"]]
        self.iteration = int(st["iteration"])
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = st["rng"]

    def state(self) -> dict:
        """What a resumed fit needs: the running Grams, penalties, epoch count and shuffling stream."""
        return {
            "S": [np.zeros((0, 0)) if S is None else S for S in self.S[1:]],
            "beta": list(self.beta),
            "gamma": list(self.gamma),
            "iteration": self.iteration,
            "rng": self.rng.bit_generator.state,
        }

    # -- the steps of a batch --------------------------------------------------------------------
    def _linear(self, l, B):
        """Z[l][:B] <- W_l [a_{l-1}; 1] (one sample per row)."""
        W = self.W[l]
        out = self.Z[l][:B]
        np.matmul(self.A[l - 1][:B], W[:, :-1].T, out=out)
        out += W[:, -1]
        return out

    def _w_update(self, l, B):
        """The proximal least-squares step of W_l (module docstring), solved in float64."""
        A, Z, Wp = self.A[l - 1][:B], self.Z[l][:B], self.W[l]
        n = A.shape[1]
        if self.s.prox_metric == "identity" and B < n + 1:
            return self._w_update_small_batch(l, B)
        G = np.empty((n + 1, n + 1))
        G[:n, :n] = A.T @ A
        colsum = A.sum(axis=0, dtype=np.float64)
        G[n, :n] = colsum
        G[:n, n] = colsum
        G[n, n] = B
        R = Z - self._linear_into_residual(l, B)  # z_l - W_prev a_{l-1}
        rhs = np.empty((n + 1, R.shape[1]))
        rhs[:n] = A.T @ R
        rhs[n] = R.sum(axis=0, dtype=np.float64)
        s = self.s
        if not np.isfinite(G).all() or not np.isfinite(rhs).all():
            raise _linalg.NonFiniteError(f"layer {l}: the batch's Gram or cross product holds NaN or infinity")
        if s.prox_metric == "gram":
            if l > 1:
                Gm = G / B
                self.S[l] = Gm if self.S[l] is None else s.gram_decay * self.S[l] + (1.0 - s.gram_decay) * Gm
            S = self.S[l]
            P = (s.prox * B) * S
            P.flat[:: n + 2] += s.ridge * B * max(np.trace(S) / (n + 1), 1e-12)
        else:
            P = np.zeros_like(G)
            P.flat[:: n + 2] = s.prox
        G += P
        try:
            factor = sla.cho_factor(G, lower=True, check_finite=False)
            step = sla.cho_solve(factor, rhs, check_finite=False)
        except np.linalg.LinAlgError:
            step = sla.lstsq(G, rhs, check_finite=False)[0]
        self.W[l] = (Wp + step.T).astype(Wp.dtype)

    def _w_update_small_batch(self, l, B):
        """The identity-metric step when the batch is smaller than the layer's input, by the push-through
        identity (a a^T + p I)^-1 a = a (a^T a + p I)^-1: one B x B Cholesky instead of n x n.

        With the bias column of ones, [a; 1]^T [a; 1] = A A^T + 1 1^T (row layout), so
        Y = (A A^T + 1 1^T + p I)^-1 R and W += Y^T [A 1].
        """
        A, Wp = self.A[l - 1][:B], self.W[l]
        R = self.Z[l][:B] - self._linear_into_residual(l, B)  # z_l - W_prev a_{l-1}
        K = A.astype(np.float64, copy=False) @ A.T.astype(np.float64, copy=False)
        K += 1.0
        K.flat[:: B + 1] += self.s.prox
        if not np.isfinite(K).all() or not np.isfinite(R).all():
            raise _linalg.NonFiniteError(f"layer {l}: the batch's Gram or residual holds NaN or infinity")
        factor = sla.cho_factor(K, lower=True, check_finite=False)  # SPD: prox > 0
        Y = sla.cho_solve(factor, R.astype(np.float64), check_finite=False).astype(Wp.dtype)
        W = Wp.copy()
        W[:, :-1] += Y.T @ A
        W[:, -1] += Y.sum(axis=0)
        self.W[l] = W

    def _linear_into_residual(self, l, B):
        """W_prev [a_{l-1}; 1] into the scratch R buffer of layer l."""
        W = self.W[l]
        out = self._scratch[l][:B]
        np.matmul(self.A[l - 1][:B], W[:, :-1].T, out=out)
        out += W[:, -1]
        return out

    def _a_update(self, l, B):
        """A_new[l] <- (beta W^T W + gamma I)^-1 (beta W^T (z_{l+1} - b) + gamma h(z_l)), W = W_{l+1} without bias."""
        W = self.W[l + 1]
        Wb, b = W[:, :-1], W[:, -1]
        dt = self.A[l].dtype
        out = self.A_new[l][:B]
        if Wb.shape[0] < Wb.shape[1]:
            # Fewer outputs than inputs (e.g. 300 -> 10): by Woodbury the same a is
            # h + (z - b - h W^T) C^-1 W with C = gamma/beta I + W W^T, an n_{l+1} x n_{l+1} solve.
            Wd = Wb.astype(np.float64)
            C = Wd @ Wd.T
            C.flat[:: C.shape[0] + 1] += self.gamma[l] / self.beta[l + 1]
            H = self.H[l][:B]
            R = self._scratch[l + 1][:B]
            np.subtract(self.Z[l + 1][:B], b, out=R)
            R -= H @ Wb.T
            factor = sla.cho_factor(C, lower=True, check_finite=False)
            Y = sla.cho_solve(factor, R.T.astype(np.float64), check_finite=False).T.astype(dt)
            np.matmul(Y, Wb, out=out)
            out += H
            return
        Pt, Q = _linalg.a_update_operators(Wb, self.beta[l + 1], self.gamma[l])
        np.matmul(self.H[l][:B], Q.astype(dt), out=out)
        Zs = self._scratch[l + 1][:B]
        np.subtract(self.Z[l + 1][:B], b, out=Zs)
        _linalg.gemm_accumulate(out, Zs, Pt)

    def _z_update(self, l, B):
        m = self._linear(l, B)
        zf = m.reshape(-1)
        return self.k.relu_z_update(self.A[l][:B].reshape(-1), zf, self.beta[l], self.gamma[l], zf,
                                    self.H[l][:B].reshape(-1))

    def _output_update(self, B):
        L = self.L
        m = self._linear(L, B)
        lam = self.lam0[:B]
        if self.loss == "cross_entropy":
            return self.k.softmax_z_update(self.Tb[:B], m, lam, self.beta[L], False, m)
        return self.k.output_z_update(self.Tb[:B].reshape(-1), m.reshape(-1), lam.reshape(-1), self.beta[L],
                                      _LOSS_CODE[self.loss], False, m.reshape(-1))

    def _forward(self, B):
        for l in range(1, self.L):
            self._linear(l, B)
            np.maximum(self.Z[l][:B], 0, out=self.A[l][:B])
            self.H[l][:B] = self.A[l][:B]

    def _batch(self, rows, sums, timings):
        B, L = rows.shape[0], self.L
        np.take(self.X, rows, axis=0, out=self.Xb[:B])
        np.take(self.T, rows, axis=0, out=self.Tb[:B])
        t0 = time.perf_counter()
        self._forward(B)
        t1 = time.perf_counter()
        timings["z"] += t1 - t0
        for _ in range(self.s.batch_sweeps):
            t0 = time.perf_counter()
            loss_sum, _, rz = self._output_update(B)
            sums[L - 1] += rz
            sums[2 * L - 1] += loss_sum
            zL = self.Z[L][:B].reshape(-1)
            sums[2 * L + 1] += float(np.dot(zL, zL))
            timings["z"] += time.perf_counter() - t0
            for l in range(L, 0, -1):
                # a_{l-1} moves first, against the W_l that produced the forward pass (as a gradient
                # would be taken at the current weights); then W_l is fitted to z_l from the old
                # a_{l-1}; then the new a_{l-1} takes its place.  (Measured, 784-300-10, 4 epochs:
                # 0.938 test against 0.936 for W first at batch 500.)
                t0 = time.perf_counter()
                if l > 1:
                    self._a_update(l - 1, B)
                t1 = time.perf_counter()
                self._w_update(l, B)
                t2 = time.perf_counter()
                timings["a"] += t1 - t0
                timings["W"] += t2 - t1
                if l > 1:
                    self.A[l - 1], self.A_new[l - 1] = self.A_new[l - 1], self.A[l - 1]
                    t2 = time.perf_counter()
                    rz, ra = self._z_update(l - 1, B)
                    sums[l - 2] += rz
                    sums[L + l - 2] += ra
                    timings["z"] += time.perf_counter() - t2

    def sweep(self, timings):
        """One epoch over shuffled batches; returns the epoch's summed residuals and the penalties used."""
        L = self.L
        sums = np.zeros(2 * L + 2)
        penalties = (list(self.beta), list(self.gamma))
        N = self.X.shape[0]
        order = self.rng.permutation(N)
        bounds = np.linspace(0, N, self.n_batches + 1).astype(np.intp)
        for i in range(self.n_batches):
            rows = order[bounds[i] : bounds[i + 1]]
            self._batch(rows, sums, timings)
        self.iteration += 1
        s = self.s
        if s.penalty_growth != 1.0 and self.iteration % s.penalty_every == 0:
            self.beta = [min(b * s.penalty_growth, s.penalty_max) for b in self.beta]
            self.gamma = [min(g * s.penalty_growth, s.penalty_max) for g in self.gamma]
        return sums, penalties

    def compact_weights(self):
        return list(self.W[1:])

    def full_width(self, weights):
        return [self._expand(weights[0]), *weights[1:]]
