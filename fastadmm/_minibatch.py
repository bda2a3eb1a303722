"""Mini-batch ADMM: the step object of ``train_admm(..., batch_size=B)`` (docs/ALGORITHM.md, section 6).

One call of :meth:`MiniBatchADMM.sweep` is one epoch: the rows are reshuffled and visited in batches
of about ``batch_size``.  Row layout (one sample per row); every layer has a bias, the last column of
its ``W_l`` (a constant input 1, never stored).  For each batch:

1. ``z_l``, ``a_l = h(z_l)`` from an ordinary forward pass of the current weights.
2. ``batch_sweeps`` sweeps, each:
   * the targets, top down, with the current weights: the output update
     ``z_L <- argmin_z loss(z, y) + beta_L ||z - W_L a_{L-1}||^2`` (the full-batch kernels with
     ``lam = 0``), then for l = L-1 .. 1 the paper's a-update against ``W_{l+1}`` and ``z_{l+1}``
     and its ReLU z-update against ``W_l a_{l-1}``;
   * then every ``W_l`` is refitted to its target ``z_l`` from its (updated) input ``a_{l-1}`` by a
     proximal least-squares step,
     ``W_l = W_prev + (z_l - W_prev a_{l-1}) a_{l-1}^T (a_{l-1} a_{l-1}^T + P_l)^-1``, where
     ``P_l = prox * mean(diag(a a^T)) * I`` (``prox_metric="identity"``) or
     ``prox * B * S_l`` with ``S_l`` the running mean input Gram (``"gram"``).
The batch's forward pass is also the network's prediction on it with the weights before its update:
its loss and correct predictions are summed over the epoch (``running_counts``, the history's
training metrics with ``train_metrics="running"``, as Keras and scikit-learn report them).
Penalties are per layer: ``beta_l = beta * depth_decay^(L-l)``, ``gamma_l = gamma *
depth_decay^(L-1-l)``, so that each constraint is weighted ``depth_decay`` times less than the
one above it.  No multiplier is kept.  Every product over a batch is one BLAS-3 call into a buffer
allocated once; the small solves too are in the fit's dtype (a float32 system whose condition
number could cost precision is solved in float64), except for ``prox_metric="gram"`` (float64).
The W- and a-updates, the layer products and the batch gather run compiled (``_updates.pyx``, one
call each); the NumPy versions here (``_w_update_numpy``, ``_a_update_numpy``, by LAPACK in place
through ``_linalg.spd_solve``) are their reference and fallback.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.linalg as sla

from . import _backend, _inputs, _linalg, _losses

_updates = _backend.updates()  # the compiled updates, or None (their NumPy versions below run)

_GATHER_ROWS = 1024  # rows per block of the passes over the whole training set (a gathered block stays in cache)


def layer_penalties(beta, gamma, depth_decay, L):
    """[_, beta_1 .. beta_L] and [_, gamma_1 .. gamma_{L-1}, _] from the output's beta and the decay."""
    betas = [0.0] + [beta * depth_decay ** (L - l) for l in range(1, L + 1)]
    gammas = [0.0] + [gamma * depth_decay ** (L - 1 - l) for l in range(1, L)] + [0.0]
    return betas, gammas


class MiniBatchADMM:
    """The weights, buffers and update steps of a mini-batch fit (one process)."""

    intercept = True  # every layer has a bias (the last column of each W_l)

    def __init__(self, X, T, sizes, loss, settings, kernels, rng, init, comm, nonzero=None):
        """`nonzero`: _inputs.nonzero_features(X) if the caller has it (from the boundary's scan of X)."""
        self.comm = comm
        self.s = settings
        # The batch gather and the W- and a-updates: compiled (one call each) unless the NumPy backend
        # is asked for (or the extension is not built).
        self.compiled = None if settings.backend == "numpy" else _updates
        self.k = kernels
        self.loss = loss
        self.active = (
            _inputs.kept_features(_inputs.nonzero_features(X) if nonzero is None else nonzero)
            if settings.skip_zero_inputs else None
        )
        # X is never copied: each batch gathers its rows, and of them the kept columns, into Xb (_batch);
        # a compacted copy of X would double the memory of a large fit for a few per cent of speed.
        self.X, self.T = X, T
        # The class index of each training row (from its 0/1 targets), and the running metrics of the
        # current sweep: [summed loss, correct predictions] of each batch's forward pass (running_counts).
        self.y_index = _losses.predict_index(T) if settings.train_metrics == "running" else None
        # center_inputs: the kept features' training means (float64 and the fit's dtype); the batches are
        # centred as they are gathered, and every weight handed out has them folded into W_1's bias.
        self.mu64 = self.mu = None
        if settings.center_inputs:  # of the values the batches hold: X cast to the fit's dtype
            self.mu64 = _inputs.column_means(X, self.active, settings.dtype)
        self._running = [0.0, 0]
        self.sizes = sizes  # [n_0 + 1 (the bias), n_1, ..., n_L]
        self.L = L = len(sizes) - 1
        # The fit's floating type (settings.dtype, float32 by default); X keeps its own: each batch is
        # cast as it is gathered, so a float64 X is never copied whole.
        dt = np.dtype(settings.dtype) if settings.dtype else X.dtype
        self.dtype = dt
        if self.mu64 is not None:
            self.mu = self.mu64.astype(dt)
        N = X.shape[0]
        # Equal batches of about batch_size rows (the remainder spread over them): the largest has B rows.
        self.n_batches = max(1, N // min(int(settings.batch_size), N))
        self.B = B = -(-N // self.n_batches)
        widths = [X.shape[1] if self.active is None else self.active.shape[0]] + list(sizes[1:])
        # The batch's rows at X's full width, before their kept columns go to Xb (skip_zero_inputs
        # without the compiled gather).
        self.Xrows = None if self.active is None else np.empty((B, X.shape[1]), dt)
        # The kept columns as runs of consecutive indices, for the compiled gather.
        self._runs = None if self.active is None or self.compiled is None else self.compiled.column_runs(self.active)
        # Batch buffers, allocated once: Xb holds the batch's rows of X; Z[l], A[l], H[l] its z_l, a_l,
        # h(z_l); A_new[l] receives the a-update before it replaces A[l]; R[l] is scratch of z_l's width.
        self.Xb = np.empty((B, widths[0]), dt)
        self.Tb = np.empty((B, widths[L]), dt)
        self.Z = [None] + [np.empty((B, widths[l]), dt) for l in range(1, L + 1)]
        self.A = [self.Xb] + [np.empty((B, widths[l]), dt) for l in range(1, L)]
        self.H = [None] + [np.empty((B, widths[l]), dt) for l in range(1, L)]
        self.A_new = [None] + [np.empty((B, widths[l]), dt) for l in range(1, L)]
        self.R = [None] + [np.empty((B, widths[l]), dt) for l in range(1, L + 1)]
        # M[l] = W_l [a_{l-1}; 1] of the batch's forward pass, reused while neither W_l nor a_{l-1} has
        # changed since (m_valid[l]): the z-updates and W-update residuals need the same product.
        self.M = [None] + [np.empty((B, widths[l]), dt) for l in range(1, L + 1)]
        self.m_valid = [False] * (L + 1)
        self.lam0 = np.zeros((B, widths[L]), dt)  # the output update's multiplier: always 0 here
        # Scratch of the small solves, as contiguous views of two flat buffers: the square systems
        # (B x B, n x n, n_{l+1} x n_{l+1}) and the products of a W- or a-update.
        square = max(B, *(w + 1 for w in widths[:L]))
        self._square_buf = np.empty(square * square, dt)
        self._prod_buf = np.empty(max(max(widths[l] * (widths[l - 1] + 1), B * widths[l]) for l in range(1, L + 1)), dt)
        self.beta, self.gamma = layer_penalties(settings.beta, settings.gamma, settings.depth_decay, L)
        # Each layer's proximal weight p_l (prox; output_prox for W_L) and the ridge r = weight_decay, both
        # relative to the batch Gram's mean diagonal: the step min ||z - W a||^2 + p ||W - W_prev||^2 +
        # r ||W||^2 is the proximal step of weight p + r anchored at W_prev p / (p + r) (_w_update).
        p = [0.0] + [settings.prox] * (L - 1) + [settings.output_prox]
        self._prox = [q + settings.weight_decay for q in p]
        self._shrink = [1.0] + [p[l] / self._prox[l] for l in range(1, L + 1)]
        self.iteration = 0
        self.S = [None] * (L + 1)  # running input Grams (with the bias) of prox_metric="gram", float64
        # The training rows' last hidden features from the last output refit (refit_output), and
        # whether they still belong to the current weights (any batch step invalidates them).
        self._features = None
        self._features_valid = False
        self._test_copy = None  # compact_test's copy of the held-out rows, if it made one
        if init is not None:
            self._load_state(init)
        else:
            self.rng = rng
            self.W = [None]
            for l in range(1, L + 1):
                n_in = sizes[l - 1] - 1 if l == 1 else sizes[l - 1]
                if settings.initialization == "he":  # N(0, 2 / n_in) weights, zero biases
                    W = np.zeros((sizes[l], n_in + 1))
                    W[:, :-1] = rng.normal(0.0, np.sqrt(2.0 / n_in), (sizes[l], n_in))
                else:  # "uniform", PyTorch's default: weights and bias ~ U(-1/sqrt(n_in), 1/sqrt(n_in))
                    bound = 1.0 / np.sqrt(n_in)
                    W = rng.uniform(-bound, bound, (sizes[l], n_in + 1))
                self.W.append((self._compact(W) if l == 1 else W).astype(dt))
        if settings.prox_metric == "gram" and self.S[1] is None:
            # Layer 1's input never changes: its metric is the whole training set's mean Gram.
            G = _inputs.input_gram(self.X, True)
            if self.active is not None:  # the kept features' rows and columns, and the bias's
                kept = np.append(self.active, X.shape[1])
                G = G[np.ix_(kept, kept)]
            if self.mu64 is not None:  # of [x - mu; 1]: X^T X - N mu mu^T, and no cross terms with the bias
                G[:-1, :-1] -= N * np.outer(self.mu64, self.mu64)
                G[:-1, -1] = G[-1, :-1] = 0.0
            self.S[1] = G / N

    # -- the input layer's left-out features (as the full-batch driver) --------------------------
    def _compact(self, W1):
        return _inputs.take_columns(W1, self.active, True)

    def _expand(self, W1):
        full = np.zeros((W1.shape[0], self.sizes[0]), W1.dtype)
        return _inputs.put_columns(full, W1, self.active, True)

    def _fold(self, W1):
        """A copy of W_1 for raw inputs: its bias b - W mu when the fit trains on centred ones
        (center_inputs)."""
        out = W1.copy()
        if self.mu64 is not None:
            out[:, -1] -= (W1[:, :-1].astype(np.float64) @ self.mu64).astype(W1.dtype)
        return out

    def _unfold(self, W1):
        """The inverse of _fold, in place: W_1's bias for centred inputs, b' + W mu."""
        if self.mu64 is not None:
            W1[:, -1] += (W1[:, :-1].astype(np.float64) @ self.mu64).astype(W1.dtype)
        return W1

    def _first_layer_blocks(self, W1, rows=_GATHER_ROWS, X=None):
        """(rows, W_1 [x; 1]) over the rows of X (default: the training set) in blocks, for a compact
        W_1, in the fit's dtype; X itself is never copied whole.  X may also be compact_test's copy
        (its kept columns in the fit's dtype already): then its blocks are multiplied as they are.
        With the compiled gather, each
        block's kept columns are gathered (and cast) into a buffer of the block's size, one pass; else
        the blocks of X are views, cast block by block when X has another dtype, and W_1 is widened
        to every feature instead, the left-out ones with weight 0 (exact: they are 0 in every
        training row)."""
        X = self.X if X is None else X
        N = X.shape[0]
        dt = self.dtype
        compact = X is self._test_copy  # already the kept columns, in the fit's dtype
        gather = not compact and self.compiled is not None and self.active is not None
        W = W1 if self.active is None or gather or compact else self._expand(W1)
        V, b = W[:, :-1].T, W[:, -1]
        buf = np.empty((min(rows, N), W.shape[0]), dt)
        width = V.shape[0]
        cast = None if X.dtype == dt and not gather else np.empty((min(rows, N), width), dt)
        for start in range(0, N, rows):
            stop = min(start + rows, N)
            block = X[start:stop]
            if gather:  # this block's rows and kept columns, in the fit's type
                block = cast[: stop - start]
                self.compiled.gather(X, np.arange(start, stop, dtype=np.intp), self._runs, block)
            elif cast is not None:  # a float64 X in a float32 fit: this block only, in the fit's type
                block = cast[: stop - start]
                block[...] = X[start:stop]
            out = np.matmul(block, V, out=buf[: stop - start])
            out += b
            yield slice(start, stop), out

    def train_outputs(self, weights):
        """(rows, outputs) blocks of a forward pass over the training rows for `weights` (from
        compact_weights).  Right after an output refit that kept the last hidden features, and for
        the weights it left, the outputs are those features times W_L: the refit's pass already
        computed them with these hidden weights, so no forward pass is made (the same numbers)."""
        if self._features_valid and all(np.array_equal(w, W) for w, W in zip(weights, self._handed_out())):
            W = weights[-1]
            Wb, b = W[:, :-1].T, W[:, -1]
            for start in range(0, self.X.shape[0], _GATHER_ROWS):
                rows = slice(start, min(start + _GATHER_ROWS, self.X.shape[0]))
                out = self._features[rows] @ Wb
                out += b
                yield rows, out
            return
        yield from self.test_outputs(weights, self.X)

    def test_outputs(self, weights, X_test):
        """(rows, outputs) blocks of a forward pass over the rows of X_test (at the user's width,
        any float dtype), in the fit's dtype, for compact `weights`."""
        for rows, z1 in self._first_layer_blocks(weights[0], X=X_test):
            yield rows, _losses.later_layers(z1, weights[1:], overwrite=True)

    def compact_test(self, X_test):
        """The held-out rows for test_outputs, which every evaluation passes forward: their kept
        columns in the fit's dtype, copied once, when that copy takes at most half of X_test's bytes
        (a float64 X_test in a float32 fit: each evaluation then skips the gather and the cast; MNIST
        0/1's evaluation 9 -> 7 ms, docs/TIME_TO_ACCURACY.md); else X_test as it is (test_outputs
        gathers its blocks, so it is never copied whole)."""
        if X_test is None:
            return None
        width = X_test.shape[1] if self.active is None else self.active.shape[0]
        if X_test.shape[0] * width * self.dtype.itemsize > X_test.nbytes // 2:
            return X_test
        copy = np.empty((X_test.shape[0], width), self.dtype)
        if self.active is None:
            copy[...] = X_test
        elif self.compiled is not None:
            self.compiled.gather(X_test, np.arange(X_test.shape[0], dtype=np.intp), self._runs, copy)
        else:
            copy[...] = np.take(X_test, self.active, axis=1)
        self._test_copy = copy
        return copy

    # -- resuming -----------------------------------------------------------------------------
    def _load_state(self, init):
        st = init.state
        self.W = [None] + [np.array(W, dtype=self.dtype) for W in init.weights]
        self.W[1] = self._compact(self.W[1])
        if self.mu64 is not None and np.size(st.get("bias_1", [])):  # W_1's bias for centred inputs, as left
            self.W[1][:, -1] = st["bias_1"]
        else:
            self._unfold(self.W[1])
        for l, S in enumerate(st.get("S", []), start=1):
            self.S[l] = None if np.size(S) == 0 else np.array(S, dtype=np.float64)
        self.beta = [0.0] + [float(b) for b in st["beta"]]
        self.gamma = [0.0] + [float(g) for g in st["gamma"]] + [0.0]
        self.iteration = int(st["iteration"])
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = st["rng"]

    def state(self) -> dict:
        """What a resumed fit needs: running Grams, penalties, epoch count and the shuffling stream."""
        return {
            "S": [np.zeros((0, 0)) if S is None else S for S in self.S[1:]],
            "beta": self.beta[1:],
            "gamma": self.gamma[1:-1],
            "iteration": self.iteration,
            "rng": self.rng.bit_generator.state,
            # center_inputs: W_1's bias for the centred inputs (unfolding the Result's would round)
            "bias_1": np.zeros(0) if self.mu64 is None else self.W[1][:, -1].copy(),
        }

    # -- the steps of a batch --------------------------------------------------------------------
    def _linear(self, l, B, out):
        """out <- W_l [a_{l-1}; 1] for the batch's B rows."""
        W = self.W[l]
        if self.compiled is not None:
            self.compiled.linear(self.A[l - 1][:B], W, out)
            return out
        np.matmul(self.A[l - 1][:B], W[:, :-1].T, out=out)
        out += W[:, -1]
        return out

    def _forward(self, B):
        """z_l = W_l [a_{l-1}; 1] (kept in M[l]), a_l = h(z_l) and a copy of it in H[l]."""
        for l in range(1, self.L + 1):
            if self.compiled is not None and l < self.L:
                self.compiled.linear(self.A[l - 1][:B], self.W[l], self.M[l][:B], self.A[l][:B], self.H[l][:B])
                continue
            self._linear(l, B, self.M[l][:B])
            if l < self.L:
                np.maximum(self.M[l][:B], 0, out=self.A[l][:B])
                self.H[l][:B] = self.A[l][:B]
        self.m_valid = [False] + [True] * self.L

    def _pre(self, l, B, out):
        """out <- W_l [a_{l-1}; 1]: the forward pass's product while it is still current."""
        if self.m_valid[l]:
            np.copyto(out, self.M[l][:B])
            return out
        return self._linear(l, B, out)

    def _output_update(self, B):
        L = self.L
        m = self._pre(L, B, self.Z[L][:B])
        lam = self.lam0[:B]
        if self.loss == "cross_entropy":
            return self.k.softmax_z_update(self.Tb[:B], m, lam, self.beta[L], False, m)
        return self.k.output_z_update(self.Tb[:B].reshape(-1), m.reshape(-1), lam.reshape(-1), self.beta[L],
                                      _losses.LOSS_CODE[self.loss], False, m.reshape(-1))

    def _square(self, n):
        """A contiguous n x n scratch matrix in the fit's dtype."""
        return self._square_buf[: n * n].reshape(n, n)

    def _prod(self, rows, cols):
        """A contiguous rows x cols scratch matrix in the fit's dtype."""
        return self._prod_buf[: rows * cols].reshape(rows, cols)

    def _a_update(self, l, B):
        """A_new[l] <- (beta W^T W + gamma I)^-1 (beta W^T (z_{l+1} - b) + gamma h(z_l)), W = W_{l+1}."""
        W = self.W[l + 1]
        if self.compiled is not None and W.shape[0] < W.shape[1] - 1:
            status = self.compiled.a_update(W, self.Z[l + 1][:B], self.H[l][:B], self.beta[l + 1], self.gamma[l],
                                            self.A_new[l][:B], self.R[l + 1][:B], self._square_buf)
            if status == _updates.OK:
                return
            if status != _updates.NEEDS_FLOAT64:
                raise _linalg.NonFiniteError(f"layer {l + 1}: the a-update's system holds NaN or infinity")
        self._a_update_numpy(l, B)

    def _a_update_numpy(self, l, B):
        """The a-update by NumPy and LAPACK calls (the compiled one's reference and fallback)."""
        W = self.W[l + 1]
        Wb, b = W[:, :-1], W[:, -1]
        beta, gamma = self.beta[l + 1], self.gamma[l]
        out = self.A_new[l][:B]
        H = self.H[l][:B]
        R = self.R[l + 1][:B]
        np.subtract(self.Z[l + 1][:B], b, out=R)
        k = Wb.shape[0]
        if k < Wb.shape[1]:
            # Fewer outputs than inputs (e.g. 300 -> 10): by Woodbury the same a is
            # h + (z - b - h W^T) C^-1 W with C = gamma/beta I + W W^T, an n_{l+1} x n_{l+1} solve.
            C = np.matmul(Wb, Wb.T, out=self._square(k))
            shift = gamma / beta
            C.flat[:: k + 1] += shift
            R -= np.matmul(H, Wb.T, out=self._prod(B, k))
            if not _linalg.spd_solve(C, R, shift, rows=True):
                raise _linalg.NonFiniteError(f"layer {l + 1}: the a-update's system holds NaN or infinity")
            np.matmul(R, Wb, out=out)
            out += H
        else:
            Pt, Q = _linalg.a_update_operators(Wb, beta, gamma)
            np.matmul(H, Q.astype(out.dtype), out=out)
            _linalg.gemm_accumulate(out, R, Pt)

    def _z_update(self, l, B):
        m = self._pre(l, B, self.Z[l][:B])
        zf = m.reshape(-1)
        return self.k.relu_z_update(self.A_new[l][:B].reshape(-1), zf, self.beta[l], self.gamma[l], zf,
                                    self.H[l][:B].reshape(-1))

    def _w_update(self, l, B):
        """W_l <- W_prev + (z_l - W_prev a) a^T (a a^T + P)^-1 with a = [a_{l-1}; 1] (module docstring),
        the ridge r = weight_decay * mean(diag(a a^T)) taken as a shrink of W_prev by p / (p + r) first.

        With the identity metric every product and solve is in the fit's dtype, in scratch buffers
        (spd_solve moves a float32 system to float64 when its condition number asks for it)."""
        A, Wp = self.A[l - 1][:B], self.W[l]
        R = self.R[l][:B]
        Z = self.Z[l][:B]
        M = self.M[l][:B] if self.m_valid[l] else None  # W_prev a_{l-1}, when still current
        self.m_valid[l] = False  # W_l changes below, in place (compact_weights hands out copies)
        if self._shrink[l] != 1.0 and self.s.prox_metric == "identity":
            # The ridge: min ||Z - W a||^2 + p ||W - W_prev||^2 + r ||W||^2 is the proximal step of weight
            # p + r anchored at W_prev p / (p + r) (exact; M scales with W_prev).
            Wp *= self._shrink[l]
            if M is not None:
                M *= self._shrink[l]
        if self.compiled is not None and self.s.prox_metric == "identity":
            # The residuals (from M, or computed), the solve and the update in one call.
            status = self.compiled.w_update(A, Z, M, R, Wp, Wp, self._prox[l], 1.0, self._square_buf,
                                            self._prod_buf)
            if status == _updates.OK:
                return
            if status != _updates.NEEDS_FLOAT64:
                raise _linalg.NonFiniteError(f"layer {l}: the batch's activations or targets hold NaN or infinity, "
                                             "or its W-update's system is not positive definite")
        if M is None:
            M = self._linear(l, B, R)
        np.subtract(Z, M, out=R)  # z_l - W_prev a_{l-1}
        if self.s.prox_metric == "gram":
            return self._w_update_gram(l, B, A, R, Wp)
        self._w_update_numpy(l, B, A, R, Wp)

    def _w_update_numpy(self, l, B, A, R, Wp):
        """The W-update by NumPy and LAPACK calls (the compiled one's reference and fallback); R holds
        the residuals z_l - W_prev [a; 1] and is overwritten."""
        n = A.shape[1] + 1
        prox = self._prox[l]
        if B < n:
            # Push-through identity: (a a^T + p I)^-1 a = a (a^T a + p I)^-1, a B x B solve (row layout:
            # K = A A^T + 1 1^T + p I, Y = K^-1 R, W += Y^T [A 1]).
            K = np.matmul(A, A.T, out=self._square(B))
            mean_diag = (float(np.trace(K)) + B) / n  # mean diagonal of [a; 1][a; 1]^T
            self._check_finite(l, mean_diag, R)
            shift = prox * mean_diag + 1e-12
            K += 1.0
            K.flat[:: B + 1] += shift
            if not _linalg.spd_solve(K, R, shift, rows=False):
                raise _linalg.NonFiniteError(f"layer {l}: the W-update's system is not positive definite")
            Wp[:, :-1] += np.matmul(R.T, A, out=self._prod(R.shape[1], n - 1))
            Wp[:, -1] += R.sum(axis=0)
            return
        # The normal equations of [A 1]: G = [A 1]^T [A 1] + p I (n x n), step = G^-1 [A 1]^T R.
        G = self._square(n)
        np.matmul(A.T, A, out=G[:-1, :-1])
        colsum = A.sum(axis=0)
        G[-1, :-1] = colsum
        G[:-1, -1] = colsum
        G[-1, -1] = B
        mean_diag = float(np.trace(G)) / n
        self._check_finite(l, mean_diag, R)
        shift = prox * mean_diag + 1e-12
        G.flat[:: n + 1] += shift
        step = self._prod(n, R.shape[1])
        np.matmul(A.T, R, out=step[:-1])
        R.sum(axis=0, out=step[-1])
        if not _linalg.spd_solve(G, step, shift, rows=False):
            raise _linalg.NonFiniteError(f"layer {l}: the W-update's system is not positive definite")
        Wp += step.T

    @staticmethod
    def _check_finite(l, mean_diag, R):
        if not np.isfinite(mean_diag) or not np.isfinite(R).all():
            raise _linalg.NonFiniteError(f"layer {l}: the batch's activations or targets hold NaN or infinity")

    def _w_update_gram(self, l, B, A, R, Wp):
        """The W-update of prox_metric="gram": the proximal term prox * B * S_l (running mean input
        Gram, float64), solved in float64."""
        s = self.s
        n = A.shape[1] + 1
        Ad = A.astype(np.float64, copy=False)
        self._check_finite(l, float(np.vdot(Ad, Ad)), R)
        colsum = Ad.sum(axis=0)
        G = np.empty((n, n))
        G[:-1, :-1] = Ad.T @ Ad
        G[-1, :-1] = colsum
        G[:-1, -1] = colsum
        G[-1, -1] = B
        rhs = np.empty((n, R.shape[1]))
        rhs[:-1] = Ad.T @ R
        rhs[-1] = R.sum(axis=0, dtype=np.float64)
        if l > 1:
            self.S[l] = G / B if self.S[l] is None else s.gram_decay * self.S[l] + (1.0 - s.gram_decay) * (G / B)
        ridge = s.weight_decay * float(np.trace(G)) / n  # relative to the batch Gram's mean diagonal
        G += ((s.output_prox if l == self.L else s.prox) * B) * self.S[l]
        G.flat[:: n + 1] += 1e-6 * B * max(np.trace(self.S[l]) / n, 1e-12) + ridge
        rhs -= ridge * Wp.T  # the ridge pulls W, not the step, towards 0
        try:
            step = sla.cho_solve(sla.cho_factor(G, lower=True, check_finite=False), rhs, check_finite=False)
        except np.linalg.LinAlgError:
            step = sla.lstsq(G, rhs, check_finite=False)[0]
        self.W[l] = (Wp + step.T).astype(Wp.dtype)

    def _output_target(self, B, sums):
        loss_sum, _, rz = self._output_update(B)
        sums[self.L - 1] += rz
        sums[2 * self.L - 1] += loss_sum
        zL = self.Z[self.L][:B].reshape(-1)
        sums[2 * self.L + 1] += float(np.dot(zL, zL))

    def _layerwise_sweep(self, B, sums, timings):
        """sweep_order="layerwise": for l = L .. 1, the a-update of a_{l-1} against the old W_l, then
        W_l refitted to z_l from the forward activations a_{l-1}, then z_{l-1} against the new a_{l-1}."""
        L = self.L
        t0 = time.perf_counter()
        self._output_target(B, sums)
        timings["z"] += time.perf_counter() - t0
        residual = self.s.sweep_order == "residual"
        for l in range(L, 0, -1):
            if residual:  # W_l first: a_{l-1} then receives what W_l's step left of z_l
                t0 = time.perf_counter()
                self._w_update(l, B)
                timings["W"] += time.perf_counter() - t0
            if l > 1:
                t0 = time.perf_counter()
                self._a_update(l - 1, B)
                timings["a"] += time.perf_counter() - t0
            if not residual:
                t0 = time.perf_counter()
                self._w_update(l, B)
                timings["W"] += time.perf_counter() - t0
            if l > 1:
                t0 = time.perf_counter()
                rz, ra = self._z_update(l - 1, B)
                sums[l - 2] += rz
                sums[L + l - 2] += ra
                timings["z"] += time.perf_counter() - t0

    def _batch(self, rows, sums, timings):
        B, L = rows.shape[0], self.L
        self._features_valid = False  # the batch changes the weights the kept features belong to
        # mode="clip" (the rows are valid): np.take's default "raise" buffers its output, 3-4x slower here
        if self.compiled is not None and self.active is not None:  # rows and kept columns in one pass
            self.compiled.gather(self.X, rows, self._runs, self.Xb)
        elif self.X.dtype.itemsize < self.Xb.dtype.itemsize:  # float32 X, float64 fit: np.take's out=
            # must cast safely to X's type, which float64 does not; gather in X's type, then widen
            if self.active is None:
                self.Xb[:B] = np.take(self.X, rows, axis=0, mode="clip")
            else:
                self.Xb[:B] = np.take(np.take(self.X, rows, axis=0, mode="clip"), self.active, axis=1, mode="clip")
        elif self.active is None:
            np.take(self.X, rows, axis=0, out=self.Xb[:B], mode="clip")
        else:  # the rows, then their kept columns (no compacted copy of X)
            np.take(self.X, rows, axis=0, out=self.Xrows[:B], mode="clip")
            np.take(self.Xrows[:B], self.active, axis=1, out=self.Xb[:B], mode="clip")
        if self.mu is not None:
            self.Xb[:B] -= self.mu
        np.take(self.T, rows, axis=0, out=self.Tb[:B], mode="clip")
        t0 = time.perf_counter()
        self._forward(B)
        if self.y_index is not None:  # the network's outputs on the batch, before its update
            out = self.M[L][:B]
            self._running[0] += _losses.loss_sum(out, self.Tb[:B], self.loss)
            self._running[1] += int(np.count_nonzero(_losses.predict_index(out) == self.y_index[rows]))
        timings["z"] += time.perf_counter() - t0
        if self.s.sweep_order in ("layerwise", "residual"):
            for sweep in range(self.s.batch_sweeps):
                if sweep:
                    self._forward(B)
                self._layerwise_sweep(B, sums, timings)
            return
        for _ in range(self.s.batch_sweeps):
            t0 = time.perf_counter()
            self._output_target(B, sums)
            t1 = time.perf_counter()
            timings["z"] += t1 - t0
            for l in range(L - 1, 0, -1):  # the targets, top down, with the current weights
                t0 = time.perf_counter()
                self._a_update(l, B)
                t1 = time.perf_counter()
                rz, ra = self._z_update(l, B)
                sums[l - 1] += rz
                sums[L + l - 1] += ra
                self.A[l], self.A_new[l] = self.A_new[l], self.A[l]
                self.m_valid[l + 1] = False  # its input a_l has changed
                timings["a"] += t1 - t0
                timings["z"] += time.perf_counter() - t1
            t0 = time.perf_counter()
            for l in range(1, L + 1):  # then every W_l, fitted to its target from its updated input
                self._w_update(l, B)
            timings["W"] += time.perf_counter() - t0

    def sweep(self, timings):
        """One epoch over shuffled batches; returns the epoch's summed residuals and the penalties used."""
        L = self.L
        sums = np.zeros(2 * L + 2)
        penalties = (list(self.beta), list(self.gamma))
        N = self.X.shape[0]
        order = self.rng.permutation(N)
        self._running = [0.0, 0]
        bounds = np.linspace(0, N, self.n_batches + 1).astype(np.intp)
        for i in range(self.n_batches):
            self._batch(order[bounds[i] : bounds[i + 1]], sums, timings)
        s = self.s
        if s.output_refit:
            self.refit_output()
        self.iteration += 1
        if s.penalty_growth != 1.0 and self.iteration % s.penalty_every == 0:
            self.beta = [min(b * s.penalty_growth, s.penalty_max) for b in self.beta]
            self.gamma = [min(g * s.penalty_growth, s.penalty_max) for g in self.gamma]
        return sums, penalties

    def refit_output(self, rows=4096):
        """W_L <- the ridge least-squares fit of the targets on the forward features [a_{L-1}, 1] of the
        whole training set (output_refit = the ridge relative to the mean diagonal of their Gram).

        The output layer is linear and the mse loss is quadratic in W_L, so this is its exact minimiser
        given the hidden layers; the Gram is summed over blocks of rows in float64."""
        L, X = self.L, self.X
        n = self.W[L].shape[1]
        G = np.zeros((n, n))
        R = np.zeros((n, self.T.shape[1]))
        F = np.empty((min(rows, X.shape[0]), n), np.float64)
        if L == 1:  # no hidden layer: the features are the kept inputs themselves
            blocks = ((slice(i, i + rows), X[i : i + rows] if self.active is None else
                       np.take(X[i : i + rows], self.active, axis=1, mode="clip")) for i in range(0, X.shape[0], rows))
        else:
            blocks = self._first_layer_blocks(self._fold(self.W[1]), rows)  # of the raw rows of X
        keep = self._keep_features()
        for block, a in blocks:
            start = block.start
            if L > 1:  # a_{L-1} = h(W_{L-1} h(... h(W_1 x)))
                a = np.maximum(_losses.later_layers(a, self.W[2:L], overwrite=True), 0)
                if keep is not None:
                    keep[block] = a
            f = F[: a.shape[0]]
            f[:, :-1] = a
            f[:, -1] = 1.0
            G += f.T @ f
            R += f.T @ self.T[start : start + rows]
        if not np.isfinite(G).all():
            raise _linalg.NonFiniteError("the forward features of the output refit hold NaN or infinity")
        G.flat[:: n + 1] += self.s.output_refit * max(np.trace(G) / n, 1e-12)
        try:
            W = sla.solve(G, R, assume_a="pos", check_finite=False)
        except (np.linalg.LinAlgError, sla.LinAlgError):
            W = sla.lstsq(G, R, check_finite=False)[0]
        self.W[L] = np.ascontiguousarray(W.T, dtype=self.W[L].dtype)
        if L == 1:  # fitted on the raw inputs: back to the centred ones' bias
            self._unfold(self.W[1])
        self._features_valid = keep is not None  # the training outputs are now features x the new W_L

    def _keep_features(self):
        """The buffer for the training rows' last hidden features (N, n_{L-1}) in the fit's dtype, kept
        by the output refit so that the evaluation after it needs no forward pass; None when there is
        no hidden layer, or when the buffer would exceed half of X's bytes (the fit's memory stays
        within 1.5x data + state)."""
        if self.L == 1:
            return None
        shape = (self.X.shape[0], self.W[self.L].shape[1] - 1)
        if self._features is None:
            if shape[0] * shape[1] * self.dtype.itemsize > self.X.nbytes // 2:
                return None
            self._features = np.empty(shape, self.dtype)
        return self._features

    def running_counts(self):
        """[summed loss, correct predictions] of the last sweep's batches, each from the forward pass
        that began its step (train_metrics="running")."""
        return self._running[0], self._running[1]

    def _handed_out(self):
        """The weights as the Result holds them (compact): W_1 for raw inputs (a copy), the others as they are."""
        return [self._fold(self.W[1]), *self.W[2:]]

    def compact_weights(self):
        """Copies (the sweeps update the weights in place), W_1 for raw inputs."""
        return [self._fold(self.W[1]), *(W.copy() for W in self.W[2:])]

    def full_width(self, weights):
        return [self._expand(weights[0]), *weights[1:]]
