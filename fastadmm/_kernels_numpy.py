"""The NumPy twin of the z-update kernels: vectorised, the reference the compiled twins match.

The kernels, their parameters, contract and constants are declared in ``fastadmm._kernel_api``
(once, for the three twins); the Cython (``_kernels.pyx``) and Numba (``_kernels_numba.py``) twins
write the same arrays bit for bit, except ``softmax_z_update`` (to its declared tolerance).  Same
order of jobs as the compiled twins: the ReLU update, the elementwise output update, then the
softmax update with its helpers.
"""

from __future__ import annotations

import numpy as np

# the API constants (this module exposes them too)
from ._kernel_api import HINGE, MSE, SOFTMAX_MAX_ITER, SOFTMAX_TOL32, SOFTMAX_TOL64  # noqa: F401


def relu_z_update(a, m, beta, gamma, z_out, hz_out):
    """Contract: fastadmm._kernel_api.RELU_Z_UPDATE."""
    dt = m.dtype.type
    beta, gamma = dt(beta), dt(gamma)
    zp = np.maximum((gamma * a + beta * m) / (gamma + beta), dt(0))
    zn = np.minimum(m, dt(0))
    fp = gamma * (a - zp) ** 2 + beta * (zp - m) ** 2
    fn = gamma * a**2 + beta * (zn - m) ** 2
    keep_p = fp <= fn
    rz = np.where(keep_p, zp - m, zn - m)
    z_out[...] = np.where(keep_p, zp, zn)
    hz_out[...] = np.where(keep_p, zp, dt(0))
    ra = a - hz_out
    return float(np.dot(rz.astype(np.float64), rz)), float(np.dot(ra.astype(np.float64), ra))


def _output_z(y, m, lam, beta, loss):
    dt = m.dtype.type
    beta = dt(beta)
    if loss == MSE:
        return (y - lam / dt(2) + beta * m) / (dt(1) + beta)
    t = m - lam / (dt(2) * beta)
    s = dt(1) / (dt(2) * beta)
    return np.where(
        y > dt(0.5),
        np.maximum(t, np.minimum(dt(1), t + s)),
        np.minimum(t, np.maximum(dt(0), t - s)),
    )


def _loss_values(z, y, loss):
    if loss == MSE:
        return (z - y) ** 2
    return np.where(y > 0.5, np.maximum(1 - z, 0), np.maximum(z, 0))


def output_z_update(y, m, lam, beta, loss, lam_step, z_out):
    """Contract: fastadmm._kernel_api.OUTPUT_Z_UPDATE."""
    z = _output_z(y, m, lam, beta, loss)
    r = (z - m).astype(np.float64)
    loss_sum = float(_loss_values(z.astype(np.float64), y.astype(np.float64), loss).sum())
    lam_dot_z = float(np.dot(lam.astype(np.float64), z.astype(np.float64)))
    if lam_step:
        lam += (m.dtype.type(beta) * (z - m)).astype(lam.dtype)
    z_out[...] = z
    return loss_sum, lam_dot_z, float(np.dot(r, r))


_ARMIJO = 1e-4
_T_MIN = 1e-20
_EPS64 = 2.220446049250313e-16
_LOG_START_MAX_C = 0.1


def _lse_shifted(z):
    """(max z, exp(z - max z), sum exp(z - max z)) per row."""
    mx = np.max(z, axis=1)
    e = np.exp(z - mx[:, None])
    return mx, e, np.sum(e, axis=1)


def _softmax_start(y, m, lam, beta, c):
    """The starting point of the contract (rows of float64 arrays): returns (z, max z, e, S)."""
    w = y - lam + c * m
    K = w.shape[1]
    tau = np.max(w, axis=1) - 1.0  # sum max(w - tau, 0) = 1: Newton from below, finite
    for _ in range(K + 1):
        above = w > tau[:, None]
        h = np.sum(np.where(above, w - tau[:, None], 0.0), axis=1) - 1.0
        n = np.sum(above, axis=1)
        move = (h > 0.0) & (n > 0)
        if not move.any():
            break
        tau = np.where(move, tau + h / np.maximum(n, 1), tau)
    q = np.maximum(w - tau[:, None], 0.0)
    z0 = m + ((y - lam) - q) / c
    if c >= _LOG_START_MAX_C:
        mx, e, S = _lse_shifted(z0)
        return z0, mx, e, S
    with np.errstate(divide="ignore"):
        z1 = np.where(q > 0.0, z0 + np.log(q), z0)
    out = []
    for z in (z0, z1):
        mx, e, S = _lse_shifted(z)
        r = z - m
        f = mx + np.log(S) + np.sum((lam - y) * z + beta * r * r, axis=1)
        out.append((z, mx, e, S, f))
    take1 = out[1][4] < out[0][4]
    return tuple(np.where(take1[:, None] if a.ndim == 2 else take1, b1, a) for a, b1 in zip(out[0][:4], out[1][:4]))


def _softmax_solve(y, m, lam, beta, c, tol):
    """The contract's Newton method, vectorised over rows (float64 arrays): returns (z, max z, S, ok)."""
    N, K = m.shape
    base = 1.0 + np.max(np.abs(lam), axis=1) + np.max(np.abs(y), axis=1) + c * np.max(np.abs(m), axis=1)
    z, mx, e, S = _softmax_start(y, m, lam, beta, c)
    ok = np.ones(N, dtype=bool)
    act = np.arange(N)
    for it in range(SOFTMAX_MAX_ITER + 1):
        if act.size == 0:
            break
        za, ma, la, ya = z[act], m[act], lam[act], y[act]
        p = e[act] / S[act, None]
        q = (la - ya) + c * (za - ma)  # the gradient without p
        g = p + q
        gmax = np.max(np.abs(g), axis=1)
        zmax = np.max(np.abs(za), axis=1)
        bad = ~np.all(np.abs(g) < np.inf, axis=1)  # NaN or inf
        ok[act[bad]] = False
        done = bad | (gmax <= tol * (base[act] + c * zmax) + 16.0 * _EPS64 * zmax)
        if it == SOFTMAX_MAX_ITER:
            break
        keep = ~done
        act, za, p, q, g, gmax, zmax = act[keep], za[keep], p[keep], q[keep], g[keep], gmax[keep], zmax[keep]
        if act.size == 0:
            break
        # Newton direction by Sherman-Morrison
        D = p + c
        pu = np.sum(p * g / D, axis=1)
        sv = np.sum(p / D, axis=1)
        coef = pu / (c * sv)
        d = -(g + p * coef[:, None]) / D
        gd = np.sum(g * d, axis=1)
        a1 = np.sum(q * d, axis=1)
        a2 = beta * np.sum(d * d, axis=1)
        dmax = np.max(np.abs(d), axis=1)
        # backtracking, every row with its own step t
        t = np.ones(act.size)
        accepted = np.zeros(act.size, dtype=bool)
        pending = np.ones(act.size, dtype=bool)
        while pending.any():
            j = np.flatnonzero(pending)
            rows = act[j]
            zt = za[j] + t[j, None] * d[j]
            Mt, et, St = _lse_shifted(zt)
            delta = (Mt - mx[rows]) + np.log(St / S[rows]) + t[j] * a1[j] + t[j] * t[j] * a2[j]
            acc = delta <= _ARMIJO * t[j] * gd[j]
            noise = 16.0 * _EPS64 * (1.0 + zmax[j] + t[j] * dmax[j] + np.abs(t[j] * a1[j]) + t[j] * t[j] * a2[j])
            maybe = ~acc & (delta <= noise)
            if maybe.any():
                gt = np.max(np.abs(et / St[:, None] + (lam[rows] - y[rows]) + c * (zt - m[rows])), axis=1)
                acc |= maybe & (gt < gmax[j])
            ja = j[acc]
            z[act[ja]], e[act[ja]], mx[act[ja]], S[act[ja]] = zt[acc], et[acc], Mt[acc], St[acc]
            accepted[ja] = True
            # the next trial step: the quadratic's minimiser, kept in [t/10, t/2]
            tj = t[j]
            with np.errstate(divide="ignore", invalid="ignore"):
                tq = -gd[j] * tj * tj / (2.0 * (delta - gd[j] * tj))
            tq = np.where(tq >= 0.1 * tj, tq, 0.1 * tj)
            tq = np.minimum(tq, 0.5 * tj)
            t[j] = np.where(acc, tj, tq)
            pending[j] = ~acc & (t[j] >= _T_MIN)
        act = act[accepted]  # a row with no acceptable step stops where it is
    return z, mx, S, ok


def softmax_z_update(Y, M, lam, beta, lam_step, out):
    """Contract: fastadmm._kernel_api.SOFTMAX_Z_UPDATE."""
    dt = M.dtype.type
    b = dt(beta)
    bd = float(b)
    c = 2.0 * bd
    tol = SOFTMAX_TOL32 if M.dtype == np.float32 else SOFTMAX_TOL64
    y, m, l64 = Y.astype(np.float64), M.astype(np.float64), lam.astype(np.float64)
    if M.shape[0] == 0:
        return 0.0, 0.0, 0.0
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # a non-finite row gives NaN, silently
        z64, mx, S, ok = _softmax_solve(y, m, l64, bd, c, tol)
    z64[~ok] = np.nan
    z = z64.astype(M.dtype)
    zs = z.astype(np.float64)  # the stored z; the loss is taken there
    mx2, _, S2 = _lse_shifted(zs)
    ysum = np.sum(y, axis=1)
    ce = np.log(S2) - np.sum(y * (zs - mx2[:, None]), axis=1) + np.where(ysum != 1.0, mx2 * (1.0 - ysum), 0.0)
    r = z - M
    r64 = r.astype(np.float64)
    lam_dot_z = float(np.sum(l64 * zs))
    if lam_step:
        lam += b * r
    out[...] = z
    return float(np.sum(ce)), lam_dot_z, float(np.sum(r64 * r64))
