"""The dense steps of a mini-batch ADMM batch as one backend object, chosen once per fit (``get``):
``CompiledUpdates`` (``fastadmm._updates``, one call each, its API declared in ``_updates_api``) or
``NumpyUpdates`` (NumPy and LAPACK calls in place, through ``_linalg.spd_solve``: the compiled
ones' reference, and their fallback for a float32 system that needs float64).  Both work in the
fit's dtype, in two scratch buffers they own.  ``gram_system`` and ``solve_gram`` are the W-update
of ``prox_metric="gram"`` (float64, the same for both).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from .. import _admm_core, _linalg


def get(module, dtype, square, product):
    """The compiled updates of `module` (``_backend.updates()``), or the NumPy ones for None; `square`
    and `product`: the entries of the largest square system and product of the fit."""
    if module is None:
        return NumpyUpdates(dtype, square, product)
    return CompiledUpdates(module, dtype, square, product)


def _check_finite(layer, mean_diag, R):
    if not np.isfinite(mean_diag) or not np.isfinite(R).all():
        raise _linalg.NonFiniteError(f"layer {layer}: the batch's activations or targets hold NaN or infinity")


class NumpyUpdates:
    module = None  # no compiled module (its gather and column runs)

    def __init__(self, dtype, square, product):
        self.sizes = (dtype, square, product)
        self.square_buf = np.empty(square, dtype)
        self.prod_buf = np.empty(product, dtype)

    def _square(self, n):
        """A contiguous n x n scratch matrix in the fit's dtype."""
        return self.square_buf[: n * n].reshape(n, n)

    def _prod(self, rows, cols):
        """A contiguous rows x cols scratch matrix in the fit's dtype."""
        return self.prod_buf[: rows * cols].reshape(rows, cols)

    def linear(self, A, W, out):
        """out <- [A 1] W^T (W's last column the bias)."""
        np.matmul(A, W[:, :-1].T, out=out)
        out += W[:, -1]
        return out

    def hidden(self, A, W, M, relu_out, relu_copy):
        """M <- [A 1] W^T, relu_out <- max(M, 0) and relu_copy <- the same (a hidden layer's forward pass)."""
        self.linear(A, W, M)
        np.maximum(M, 0, out=relu_out)
        relu_copy[...] = relu_out

    def w_update(self, layer, A, Z, M, R, W, prox, shrink):
        """W <- s W + (Z - s W [A 1]) [A 1]^T ([A 1]^T [A 1] + p I)^-1 in place (s = shrink, the anchor's
        scale: the ridge's step), p = prox times the mean diagonal of [A 1]^T [A 1]; M: W [A 1], or None
        to compute it; R: scratch of Z's shape.  M is not modified."""
        if shrink != 1.0:
            W *= shrink
            M = None if M is None else np.multiply(M, shrink, out=R)
        if M is None:
            M = self.linear(A, W, R)
        np.subtract(Z, M, out=R)  # z_l - s W_prev a_{l-1}
        B, n = A.shape[0], A.shape[1] + 1
        if B < n:
            # Push-through identity: (a a^T + p I)^-1 a = a (a^T a + p I)^-1, a B x B solve (row layout:
            # K = A A^T + 1 1^T + p I, Y = K^-1 R, W += Y^T [A 1]).
            K = np.matmul(A, A.T, out=self._square(B))
            mean_diag = (float(np.trace(K)) + B) / n  # mean diagonal of [a; 1][a; 1]^T
            _check_finite(layer, mean_diag, R)
            shift = prox * mean_diag + 1e-12
            K += 1.0
            K.flat[:: B + 1] += shift
            if not _linalg.spd_solve(K, R, shift, rows=False):
                raise _linalg.NonFiniteError(f"layer {layer}: the W-update's system is not positive definite")
            W[:, :-1] += np.matmul(R.T, A, out=self._prod(R.shape[1], n - 1))
            W[:, -1] += R.sum(axis=0)
            return
        # The normal equations of [A 1]: G = [A 1]^T [A 1] + p I (n x n), step = G^-1 [A 1]^T R.
        G = self._square(n)
        np.matmul(A.T, A, out=G[:-1, :-1])
        colsum = A.sum(axis=0)
        G[-1, :-1] = colsum
        G[:-1, -1] = colsum
        G[-1, -1] = B
        mean_diag = float(np.trace(G)) / n
        _check_finite(layer, mean_diag, R)
        shift = prox * mean_diag + 1e-12
        G.flat[:: n + 1] += shift
        step = self._prod(n, R.shape[1])
        np.matmul(A.T, R, out=step[:-1])
        R.sum(axis=0, out=step[-1])
        if not _linalg.spd_solve(G, step, shift, rows=False):
            raise _linalg.NonFiniteError(f"layer {layer}: the W-update's system is not positive definite")
        W += step.T

    def a_update(self, layer, W, Z, H, beta, gamma, out, R):
        """out <- (beta W^T W + gamma I)^-1 (beta W^T (z - b) + gamma h), W = W_layer without its bias b;
        R: scratch of Z's shape."""
        Wb, b = W[:, :-1], W[:, -1]
        np.subtract(Z, b, out=R)
        k = Wb.shape[0]
        if k < Wb.shape[1]:
            # Fewer outputs than inputs (e.g. 300 -> 10): by Woodbury the same a is
            # h + (z - b - h W^T) C^-1 W with C = gamma/beta I + W W^T, an n_{l+1} x n_{l+1} solve.
            C = np.matmul(Wb, Wb.T, out=self._square(k))
            shift = gamma / beta
            C.flat[:: k + 1] += shift
            R -= np.matmul(H, Wb.T, out=self._prod(H.shape[0], k))
            if not _linalg.spd_solve(C, R, shift, rows=True):
                raise _linalg.NonFiniteError(f"layer {layer}: the a-update's system holds NaN or infinity")
            np.matmul(R, Wb, out=out)
            out += H
        else:
            _admm_core.a_update_dense(H, R, Wb, beta, gamma, out)


class CompiledUpdates(NumpyUpdates):
    """One compiled call per update; a float32 system that needs float64 goes to the NumPy version."""

    def __init__(self, module, dtype, square, product):
        super().__init__(dtype, square, product)
        self.module = module

    def linear(self, A, W, out):
        self.module.linear(A, W, out)
        return out

    def hidden(self, A, W, M, relu_out, relu_copy):
        self.module.linear(A, W, M, relu_out, relu_copy)

    def w_update(self, layer, A, Z, M, R, W, prox, shrink):
        # The residuals (from M, or computed), the solve and the update in one call; W is untouched
        # unless the status is OK.
        status = self.module.w_update(A, Z, M, R, W, W, prox, shrink, self.square_buf, self.prod_buf)
        if status == self.module.OK:
            return
        if status != self.module.NEEDS_FLOAT64:
            raise _linalg.NonFiniteError(f"layer {layer}: the batch's activations or targets hold NaN or infinity, "
                                         "or its W-update's system is not positive definite")
        super().w_update(layer, A, Z, M, R, W, prox, shrink)

    def a_update(self, layer, W, Z, H, beta, gamma, out, R):
        if W.shape[0] < W.shape[1] - 1:
            status = self.module.a_update(W, Z, H, beta, gamma, out, R, self.square_buf)
            if status == self.module.OK:
                return
            if status != self.module.NEEDS_FLOAT64:
                raise _linalg.NonFiniteError(f"layer {layer}: the a-update's system holds NaN or infinity")
        super().a_update(layer, W, Z, H, beta, gamma, out, R)


def gram_system(layer, A, R, check=True):
    """The float64 Gram G = [A 1]^T [A 1] of a batch and rhs = [A 1]^T R (R: the residuals
    Z - W [A 1]), the system of the W-update of prox_metric="gram" before its proximal term;
    `check`: raise NonFiniteError for NaN or infinity (over MPI the caller checks the sums instead)."""
    B, n = A.shape[0], A.shape[1] + 1
    Ad = A.astype(np.float64, copy=False)
    if check:
        _check_finite(layer, float(np.vdot(Ad, Ad)), R)
    colsum = Ad.sum(axis=0)
    G = np.empty((n, n))
    G[:-1, :-1] = Ad.T @ Ad
    G[-1, :-1] = colsum
    G[:-1, -1] = colsum
    G[-1, -1] = B
    rhs = np.empty((n, R.shape[1]))
    rhs[:-1] = Ad.T @ R
    rhs[-1] = R.sum(axis=0, dtype=np.float64)
    return G, rhs


def solve_gram(G, rhs, W, S, prox, weight_decay, B):
    """The W-update of prox_metric="gram" from gram_system's G and rhs (both overwritten), solved in
    float64: the proximal term prox * B * S (S the running mean input Gram) and the ridge
    weight_decay relative to the batch Gram's mean diagonal.  Returns the new W, in W's dtype."""
    n = G.shape[0]
    ridge = weight_decay * float(np.trace(G)) / n  # relative to the batch Gram's mean diagonal
    G += (prox * B) * S
    G.flat[:: n + 1] += 1e-6 * B * max(np.trace(S) / n, 1e-12) + ridge
    rhs -= ridge * W.T  # the ridge pulls W, not the step, towards 0
    try:
        step = sla.cho_solve(sla.cho_factor(G, lower=True, check_finite=False), rhs, check_finite=False)
    except np.linalg.LinAlgError:
        step = sla.lstsq(G, rhs, check_finite=False)[0]
    return (W + step.T).astype(W.dtype)
