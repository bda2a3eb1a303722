"""The dense linear algebra of an ADMM sweep: Gram solves for W and the batched a-update.

Arrays are stored one sample per row (``A_l`` is a_l^T, shape (N, n_l)), so the paper's
``W a`` is ``A @ W.T`` and ``a a^T`` is ``A.T @ A``; every N-sized product is one BLAS-3 call.
The small n x n factorisations are done in float64 whatever the working dtype.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg as sla
from scipy.linalg import lapack
from scipy.linalg.blas import dsyrk, dtrsm, get_blas_funcs, ssyrk, strsm

# The in-place Cholesky routines of each working dtype (fetched once: scipy's cho_factor/cho_solve
# wrappers cost more than the solve itself for the 10-100-wide systems of a mini-batch).
_SYRK = {np.dtype(np.float32): ssyrk, np.dtype(np.float64): dsyrk}
_CHOLESKY = {
    np.dtype(np.float32): (lapack.spotrf, lapack.spotrs, strsm),
    np.dtype(np.float64): (lapack.dpotrf, lapack.dpotrs, dtrsm),
}
# A float32 system is solved in float32 while its condition number is at most this bound (the
# solution's relative error then stays below about 1e4 * 6e-8 = 6e-4, far below a proximal step's
# own inexactness); a worse-conditioned one is solved in float64.
FLOAT32_COND_LIMIT = 1e4


class NonFiniteError(ArithmeticError):
    """An iterate became NaN or infinite (the driver turns this into status "diverged")."""


def ridge_value(G: np.ndarray, ridge: float, n_diag: int | None = None) -> float:
    """The absolute ridge: `ridge` times the mean diagonal of the Gram (or `ridge` if that is 0).

    `n_diag` is the number of diagonal entries the mean is taken over (default: G's own); a Gram
    with all-zero features left out passes the full count, so that the ridge does not change.
    """
    scale = float(np.trace(G)) / (G.shape[0] if n_diag is None else n_diag)
    return ridge * scale if scale > 0 else ridge


def gram_inverse(G: np.ndarray, ridge: float, n_diag: int | None = None) -> np.ndarray:
    """(G + r I)^-1 by Cholesky, or the pseudo-inverse G^+ when ridge == 0 (the paper's W = z a^+).

    G is a Gram matrix a a^T (symmetric positive semi-definite); returned in float64.
    """
    G = np.array(G, dtype=np.float64)
    if not np.isfinite(G).all():
        raise NonFiniteError("the Gram matrix a a^T holds NaN or infinity")
    if ridge > 0:
        G.flat[:: G.shape[0] + 1] += ridge_value(G, ridge, n_diag)
        try:
            c, _ = sla.cho_factor(G, lower=True, check_finite=False)
            # The inverse from the factor (LAPACK potri: a third of the work of solving with I).
            inv, info = sla.lapack.dpotri(c, lower=True)
            if info == 0:
                inv = np.tril(inv)
                return inv + np.tril(inv, -1).T
        except np.linalg.LinAlgError:
            pass  # numerically indefinite despite the ridge: fall through to the pseudo-inverse
    return sla.pinvh(G, check_finite=False)


def solve_weights(C: np.ndarray, G: np.ndarray, ridge: float) -> np.ndarray:
    """W = C (G + r I)^-1 for the cross product C = z a^T (n_out, n_in) and Gram G = a a^T."""
    C = np.asarray(C, dtype=np.float64)
    if not np.isfinite(C).all():
        raise NonFiniteError("the cross product z a^T holds NaN or infinity")
    Gd = np.array(G, dtype=np.float64)
    if not np.isfinite(Gd).all():
        raise NonFiniteError("the Gram matrix a a^T holds NaN or infinity")
    if ridge > 0:
        Gd.flat[:: Gd.shape[0] + 1] += ridge_value(Gd, ridge)
        try:
            factor = sla.cho_factor(Gd, lower=True, check_finite=False)
            return sla.cho_solve(factor, C.T, check_finite=False).T
        except np.linalg.LinAlgError:
            pass
    return C @ sla.pinvh(Gd, check_finite=False)


def a_update_operators(W_next: np.ndarray, beta_next: float, gamma: float):
    """The two small matrices of the a-update, from one Cholesky factorisation.

    a_l = (beta W^T W + gamma I)^-1 (beta W^T z_{l+1} + gamma h(z_l)) is, one sample per row,
    A_l = Z_{l+1} P + H_l Q with P = beta W (beta W^T W + gamma I)^-1 and Q = gamma (...)^-1.
    Returns (P^T, Q) in float64: P^T has shape (n_l, n_{l+1}), Q (n_l, n_l).
    """
    W = np.asarray(W_next, dtype=np.float64)
    if not np.isfinite(W).all():
        raise NonFiniteError("a weight matrix holds NaN or infinity")
    n = W.shape[1]
    Mx = beta_next * (W.T @ W)
    Mx.flat[:: n + 1] += gamma
    factor = sla.cho_factor(Mx, lower=True, check_finite=False)  # SPD: gamma > 0
    rhs = np.concatenate([beta_next * W.T, gamma * np.eye(n)], axis=1)
    sol = sla.cho_solve(factor, rhs, check_finite=False)
    return sol[:, : W.shape[0]], sol[:, W.shape[0]:]


def gram_rows(A: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out <- A A^T for a C-contiguous A (B x m), float32 or float64: its upper triangle only (BLAS
    syrk, half a product's multiply-adds; the lower is left as it was), the triangle :func:`spd_factor`
    reads.  `out` (B x B, C-contiguous, A's dtype) is returned."""
    syrk = _SYRK[A.dtype]
    # On the Fortran views: out^T's lower triangle <- (A^T)^T A^T, i.e. out's upper triangle <- A A^T
    got = syrk(1.0, A.T, beta=0.0, c=out.T, trans=1, lower=1, overwrite_c=1)
    if not np.shares_memory(got, out):  # pragma: no cover - f2py copies only a buffer it cannot use
        out.T[...] = got
    return out


def spd_factor(K: np.ndarray, shift: float):
    """The Cholesky factor of a symmetric positive definite K for :func:`spd_solve_factored`, or None
    if K is not numerically positive definite.

    K (n x n, C-contiguous, the upper triangle read) is overwritten by the factor.  ``shift`` is the
    smallest eigenvalue K is known to have (its diagonal shift): with trace(K) it bounds the condition
    number, and a float32 K above FLOAT32_COND_LIMIT is factored in float64 (a copy) instead.  LAPACK
    works on K's transposed (Fortran-ordered) view, so no copy is made otherwise.
    """
    if K.dtype == np.float32 and float(np.trace(K)) > FLOAT32_COND_LIMIT * shift:
        K = K.astype(np.float64)
    L, info = _CHOLESKY[K.dtype][0](K.T, lower=1, overwrite_a=1, clean=0)
    return L if info == 0 else None


def spd_solve_factored(L: np.ndarray, R: np.ndarray, rows: bool) -> bool:
    """R <- R K^-1 (``rows``: one right-hand side per row of R) or R <- K^-1 R (one per column), in
    place, for K's factor L from :func:`spd_factor`; R is C-contiguous (solved in L's dtype, a float64
    factor of a float32 R through a copy).  Returns False, R undefined, if LAPACK reports a failure."""
    _, potrs, trsm = _CHOLESKY[L.dtype]
    work = R if R.dtype == L.dtype else R.astype(L.dtype)
    info = 0
    if rows:  # K^-1 R^T, R^T being R's Fortran view
        out, info = potrs(L, work.T, lower=1, overwrite_b=1)
    else:  # R^T K^-1 = R^T L^-T L^-1 on R^T, by two triangular solves from the right
        out = trsm(1.0, L, work.T, side=1, lower=1, trans_a=1, overwrite_b=1)
        out = trsm(1.0, L, out, side=1, lower=1, trans_a=0, overwrite_b=1)
    if not np.shares_memory(out, R):  # a float64 solve of float32 R (in place otherwise)
        R[...] = out.T
    return info == 0


def spd_solve(K: np.ndarray, R: np.ndarray, shift: float, rows: bool) -> bool:
    """Solve with a symmetric positive definite K in place: R <- R K^-1 (``rows``) or R <- K^-1 R,
    K overwritten by its factor (:func:`spd_factor`, whose ``shift`` it takes), R by the solution
    (:func:`spd_solve_factored`).  Returns False, R undefined, if K is not numerically positive
    definite."""
    L = spd_factor(K, shift)
    return L is not None and spd_solve_factored(L, R, rows)


def gemm_accumulate(out: np.ndarray, Z: np.ndarray, Pt: np.ndarray) -> None:
    """out += Z @ Pt.T in place, for C-contiguous `out` (N, n) and `Z` (N, k), by one BLAS gemm.

    BLAS is column-major, so this computes out^T += Pt @ Z^T on the transposed (F-ordered) views.
    """
    gemm = get_blas_funcs("gemm", (out,))
    res = gemm(1.0, np.asarray(Pt, dtype=out.dtype, order="F"), Z.T, beta=1.0, c=out.T, overwrite_c=True)
    if not np.shares_memory(res, out):  # never expected for C-contiguous out; keep it correct anyway
        out[...] = res.T
