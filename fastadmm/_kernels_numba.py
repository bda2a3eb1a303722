"""The Numba twin of the z-update kernels: ``_kernels.pyx`` function for function.

The kernels, their parameters, contract and constants are declared in ``fastadmm._kernel_api``
(once, for the three twins).  This file follows the Cython file's structure, one function per job
in the same order, so the two read side by side: ``_pairwise_sum``, ``_zero_tail``; the ReLU update
(``_relu_one`` one entry, ``_relu_chunk`` one chunk, ``relu_z_update`` the walk over chunks); the
elementwise output update (``_output_one``, ``_output_chunk``, ``output_z_update``); the softmax
update (``_lse_shifted``, ``_softmax_objective``, ``_softmax_start``, ``_softmax_row``,
``softmax_z_update``).  Where Cython passes an entry's outputs by pointer, the Numba helper takes the
chunk's arrays and the index ``j``.  Only ``warmup`` (at the end) has no Cython counterpart.

Each function is compiled once per dtype (float32, float64) and cached on disk (``cache=True``);
``warmup()`` compiles every signature the training loop uses, so a caller can time compilation apart.

Exactness: every per-entry operation is carried out in the arrays' dtype (the Python-float scalars
are first rounded to it with ``dt(beta)``, as the NumPy backend does, and every constant is a ``dt``
constant, since Numba would promote ``float32 op int`` to float64) and in the NumPy backend's order,
without ``fastmath`` (no reassociation, no FMA contraction, IEEE NaN and signed-zero rules kept),
so the arrays written agree with the NumPy backend bit for bit.  Sums are float64.  The exception
is ``softmax_z_update``, an iterative per-sample solve whose exp and log differ from NumPy's in the
last bits: it agrees with the NumPy backend to its declared tolerance.

Speed: as in the Cython kernels, each chunk of ``CHUNK`` entries is handled by a flat loop that
writes the outputs and each entry's float64 sum terms to small buffers, then the buffers are summed
pairwise by halving; neither loop is a serial floating-point reduction, so LLVM vectorises both
without fastmath.  The per-entry and per-chunk helpers are ``inline="always"`` (inlined into the
Numba IR before typing), so the loops LLVM sees are the same as with the entry written in the loop.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# the API constants (this module exposes them too)
from ._kernel_api import HINGE, MSE, SOFTMAX_MAX_ITER, SOFTMAX_TOL32, SOFTMAX_TOL64  # noqa: F401

CHUNK = 256  # entries per chunk (a power of two: the buffers are summed by halving)


@njit(cache=True, nogil=True, inline="always")
def _pairwise_sum(buf):
    # float(np.sum(buf)), pairwise: buf[:h] += buf[h:2h] for h = CHUNK/2, ..., 1
    h = CHUNK // 2
    while h >= 1:
        for j in range(h):
            buf[j] = buf[j] + buf[j + h]
        h //= 2
    return buf[0]


@njit(cache=True, nogil=True, inline="always")
def _zero_tail(buf, start):
    # buf[start:CHUNK] = 0 (only the last, partial chunk)
    for j in range(start, CHUNK):
        buf[j] = 0.0


# --------------------------------------------------------------------------------------------------
# ReLU z-update (the NumPy backend's formulas are written beside each step of _relu_one)
# --------------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always")
def _relu_one(a_c, m_c, j, g, b, gb, z_c, hz_c, buf_rz, buf_ra):
    # One entry j of the ReLU update: writes z_c[j], hz_c[j] and its squared residuals buf_*[j].
    zero = m_c.dtype.type(0)
    ai = a_c[j]
    mi = m_c[j]  # read before z is written: z_out may be m
    # zp = np.maximum((gamma*a + beta*m) / (gamma + beta), 0); zn = np.minimum(m, 0)
    t = (g * ai + b * mi) / gb
    zp = zero if t < zero else t
    zn = zero if mi > zero else mi
    # fp = gamma*(a - zp)**2 + beta*(zp - m)**2; fn = gamma*a**2 + beta*(zn - m)**2
    dp = ai - zp
    ep = zp - mi
    en = zn - mi
    fp = g * (dp * dp) + b * (ep * ep)
    fn = g * (ai * ai) + b * (en * en)
    # keep_p = fp <= fn (ties go to zp); z = where(keep_p, zp, zn); hz = where(keep_p, zp, 0)
    keep_p = fp <= fn
    zi = zp if keep_p else zn
    hi = zp if keep_p else zero
    # rz = float64(z - m)**2, ra = float64(a - hz)**2
    r = np.float64(zi - mi)
    q = np.float64(ai - hi)
    z_c[j] = zi
    hz_c[j] = hi
    buf_rz[j] = r * r
    buf_ra[j] = q * q


@njit(cache=True, nogil=True, inline="always")
def _relu_chunk(a_c, m_c, g, b, gb, z_c, hz_c, buf_rz, buf_ra):
    # z_c, hz_c = the elementwise update; buf_rz[:cn], buf_ra[:cn] = the squared residuals
    for j in range(z_c.shape[0]):
        _relu_one(a_c, m_c, j, g, b, gb, z_c, hz_c, buf_rz, buf_ra)


@njit(cache=True, nogil=True)
def relu_z_update(a, m, beta, gamma, z_out, hz_out):
    """Contract: fastadmm._kernel_api.RELU_Z_UPDATE."""
    dt = m.dtype.type
    b = dt(beta)  # beta, gamma = dt(beta), dt(gamma)
    g = dt(gamma)
    gb = g + b
    n = a.shape[0]
    # z_out is m (the training loop's case): pass the one view for both, so that LLVM sees a single
    # pointer; with two it adds an overlap check that fails for identical arrays (scalar fallback).
    same = m.ctypes.data == z_out.ctypes.data
    buf_rz = np.zeros(CHUNK, np.float64)
    buf_ra = np.zeros(CHUNK, np.float64)
    rz = 0.0
    ra = 0.0
    c0 = 0
    while c0 < n:
        cn = min(CHUNK, n - c0)
        # chunk views indexed from 0 by a range variable: provably non-negative indices, so no
        # wraparound selects and LLVM emits plain vector loads and stores (not gathers/scatters)
        a_c, z_c, hz_c = a[c0 : c0 + cn], z_out[c0 : c0 + cn], hz_out[c0 : c0 + cn]
        if same:
            _relu_chunk(a_c, z_c, g, b, gb, z_c, hz_c, buf_rz, buf_ra)
        else:
            _relu_chunk(a_c, m[c0 : c0 + cn], g, b, gb, z_c, hz_c, buf_rz, buf_ra)
        if cn < CHUNK:
            _zero_tail(buf_rz, cn)
            _zero_tail(buf_ra, cn)
        # rz = float(np.dot(z - m, z - m)); ra = float(np.dot(a - hz, a - hz))  (up to summation order)
        rz += _pairwise_sum(buf_rz)
        ra += _pairwise_sum(buf_ra)
        c0 += cn
    return rz, ra


# --------------------------------------------------------------------------------------------------
# Output z-update (the NumPy backend's formulas are written beside each step of _output_one)
# --------------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True, inline="always")
def _output_one(y_c, m_c, lam_c, z_c, j, b, bp1, c2b, s, hinge, lam_step, buf_loss, buf_lz, buf_rz):
    # One entry j of the output update: writes z_c[j] (lam_c[j] when lam_step) and its sum terms
    # buf_*[j].  Called with literal hinge and lam_step: after inlining, LLVM folds the branches on
    # them, so each loop has no control flow and vectorises.
    dt = m_c.dtype.type
    zero, one, two, half = dt(0), dt(1), dt(2), dt(0.5)
    yi = y_c[j]
    mi = m_c[j]  # read before z is written: z_out may be m
    li = lam_c[j]
    if not hinge:
        # z = (y - lam/2 + beta*m) / (1 + beta); loss = float64(z - y)**2
        zi = (yi - li / two + b * mi) / bp1
        zd = np.float64(zi)
        dl = zd - np.float64(yi)
        loss2 = dl * dl
    else:
        # t = m - lam/(2*beta), s = 1/(2*beta);
        # z = where(y > 0.5, max(t, min(1, t + s)), min(t, max(0, t - s)))
        pos = yi > half
        t = mi - li / c2b
        u = t + s
        u = one if one <= u else u
        u = t if t >= u else u
        v = t - s
        v = zero if zero >= v else v
        v = t if t <= v else v
        zi = u if pos else v
        zd = np.float64(zi)
        # loss = max(1 - z, 0) where y = 1, max(z, 0) where y = 0 (in float64)
        dl = (1.0 - zd) if pos else zd
        loss2 = 0.0 if dl < 0.0 else dl
    r = zi - mi
    rd = np.float64(r)
    buf_loss[j] = loss2
    buf_lz[j] = np.float64(li) * zd  # lam_old * z
    buf_rz[j] = rd * rd
    z_c[j] = zi
    if lam_step:
        lam_c[j] = li + b * r  # lam += beta*(z - m), in the array dtype


@njit(cache=True, nogil=True, inline="always")
def _output_chunk(y_c, m_c, lam_c, z_c, b, bp1, c2b, s, hinge, step, buf_loss, buf_lz, buf_rz):
    # z_c (and lam_c) = the elementwise update; buf_*[:cn] = the per-entry sum terms.  One loop copy
    # per (loss, lam_step), each calling _output_one with literal flags, so that no flag is tested
    # inside a loop.
    if not hinge and step:
        for j in range(z_c.shape[0]):
            _output_one(y_c, m_c, lam_c, z_c, j, b, bp1, c2b, s, False, True, buf_loss, buf_lz, buf_rz)
    elif not hinge:
        for j in range(z_c.shape[0]):
            _output_one(y_c, m_c, lam_c, z_c, j, b, bp1, c2b, s, False, False, buf_loss, buf_lz, buf_rz)
    elif step:
        for j in range(z_c.shape[0]):
            _output_one(y_c, m_c, lam_c, z_c, j, b, bp1, c2b, s, True, True, buf_loss, buf_lz, buf_rz)
    else:
        for j in range(z_c.shape[0]):
            _output_one(y_c, m_c, lam_c, z_c, j, b, bp1, c2b, s, True, False, buf_loss, buf_lz, buf_rz)


@njit(cache=True, nogil=True)
def output_z_update(y, m, lam, beta, loss, lam_step, z_out):
    """Contract: fastadmm._kernel_api.OUTPUT_Z_UPDATE."""
    if loss != MSE and loss != HINGE:
        raise ValueError("loss code must be 0 (mse) or 1 (hinge)")
    dt = m.dtype.type
    b = dt(beta)
    bp1 = dt(1) + b  # dt(1) + beta
    c2b = dt(2) * b  # dt(2) * beta
    s = dt(1) / c2b  # dt(1) / (dt(2) * beta)
    hinge = loss == HINGE
    step = bool(lam_step)
    same = m.ctypes.data == z_out.ctypes.data  # z_out is m (see relu_z_update)
    n = m.shape[0]
    buf_loss = np.zeros(CHUNK, np.float64)
    buf_lz = np.zeros(CHUNK, np.float64)
    buf_rz = np.zeros(CHUNK, np.float64)
    loss_sum = 0.0
    lam_dot_z = 0.0
    rz = 0.0
    c0 = 0
    while c0 < n:
        cn = min(CHUNK, n - c0)
        # chunk views indexed from 0 (see relu_z_update); the same view for m and z when z_out is m
        y_c, lam_c, z_c = y[c0 : c0 + cn], lam[c0 : c0 + cn], z_out[c0 : c0 + cn]
        if same:
            _output_chunk(y_c, z_c, lam_c, z_c, b, bp1, c2b, s, hinge, step, buf_loss, buf_lz, buf_rz)
        else:
            _output_chunk(y_c, m[c0 : c0 + cn], lam_c, z_c, b, bp1, c2b, s, hinge, step, buf_loss, buf_lz, buf_rz)
        if cn < CHUNK:
            _zero_tail(buf_loss, cn)
            _zero_tail(buf_lz, cn)
            _zero_tail(buf_rz, cn)
        # loss_sum += sum(loss(z, y)); lam_dot_z += np.dot(lam_old, z); rz += np.dot(z - m, z - m)
        loss_sum += _pairwise_sum(buf_loss)
        lam_dot_z += _pairwise_sum(buf_lz)
        rz += _pairwise_sum(buf_rz)
        c0 += cn
    return loss_sum, lam_dot_z, rz


# --------------------------------------------------------------------------------------------------
# Softmax cross-entropy output z-update, per sample: the method, tolerance and results are in
# fastadmm._kernel_api.SOFTMAX_Z_UPDATE; the same algorithm, line for line, as the Cython twin.
# --------------------------------------------------------------------------------------------------
_ARMIJO = 1e-4  # sufficient-decrease constant of the backtracking line search
_T_MIN = 1e-20  # smallest step length tried; below it the sample stops where it is
_EPS64 = 2.220446049250313e-16
# the log-corrected start is tried only below this c = 2 beta: measured (K = 10, 1000 samples per
# case) it never changed the Newton step count for beta >= 0.1 and cut it for beta <= 1e-2
_LOG_START_MAX_C = 0.1


@njit(cache=True, nogil=True)
def _lse_shifted(z, e):
    # e = exp(z - max z); returns (max z, sum e)
    Mx = -np.inf
    for k in range(z.shape[0]):
        Mx = max(Mx, z[k])
    S = 0.0
    for k in range(z.shape[0]):
        ek = np.exp(z[k] - Mx)
        e[k] = ek
        S += ek
    return Mx, S


@njit(cache=True, nogil=True)
def _softmax_objective(y, m, lam, beta, z, Mx, S):
    # the objective at z, with Mx = max z and S = sum exp(z - Mx) (only to compare the two starting points)
    f = Mx + np.log(S)
    for k in range(z.shape[0]):
        r = z[k] - np.float64(m[k])
        f += (np.float64(lam[k]) - np.float64(y[k])) * z[k] + beta * r * r
    return f


@njit(cache=True, nogil=True)
def _softmax_start(y, m, lam, beta, c, z, e, d, et):
    """Starting point: with w = y - lam + c m and q = the Euclidean projection of w onto the
    simplex, z = m + (y - lam - q)/c (the solution when the entropy term of the dual is dropped,
    exact as c -> 0 up to O(log) terms), or, when c < 0.1, that point with log(q) added on the
    support of q, whichever has the smaller objective.  Writes z, e; returns (max z, sum e)."""
    K = z.shape[0]
    # tau with sum max(w - tau, 0) = 1: Newton from below on a convex piecewise-linear function
    wmax = -np.inf
    for k in range(K):
        w = np.float64(y[k]) - np.float64(lam[k]) + c * np.float64(m[k])
        d[k] = w
        wmax = max(wmax, w)
    tau = wmax - 1.0
    for _ in range(K + 1):
        h = -1.0
        n = 0
        for k in range(K):
            if d[k] > tau:
                h += d[k] - tau
                n += 1
        if h <= 0.0 or n == 0:
            break
        tau += h / n
    for k in range(K):
        q = d[k] - tau
        q = q if q > 0.0 else 0.0
        et[k] = q
        z[k] = np.float64(m[k]) + ((np.float64(y[k]) - np.float64(lam[k])) - q) / c
    Mx, S = _lse_shifted(z, e)
    if c >= _LOG_START_MAX_C:
        return Mx, S
    f0 = _softmax_objective(y, m, lam, beta, z, Mx, S)
    for k in range(K):
        d[k] = z[k] + np.log(et[k]) if et[k] > 0.0 else z[k]
    M1, S1 = _lse_shifted(d, et)
    f1 = _softmax_objective(y, m, lam, beta, d, M1, S1)
    if f1 < f0:
        for k in range(K):
            z[k] = d[k]
            e[k] = et[k]
        return M1, S1
    return Mx, S


@njit(cache=True, nogil=True)
def _softmax_row(y, m, lam, beta, c, tol, z, e, d, et):
    """Solve one sample in float64: z = argmin lse(z) - <y,z> + <lam,z> + beta ||z - m||^2.

    y, m, lam: the sample's rows (array dtype); z, e, d, et: float64 scratch of length K.  On return
    z holds the solution, e = exp(z - zmax) with zmax = max(z) and S = sum(e); returns
    (iterations, zmax, S), iterations = -1 when the gradient is not finite (a non-finite input).
    """
    K = z.shape[0]
    lmax = 0.0
    ymax = 0.0
    mmax = 0.0
    for k in range(K):
        lmax = max(lmax, abs(np.float64(lam[k])))
        ymax = max(ymax, abs(np.float64(y[k])))
        mmax = max(mmax, abs(np.float64(m[k])))
    base = 1.0 + lmax + ymax + c * mmax  # the scale of the gradient's fixed terms
    Mx, S = _softmax_start(y, m, lam, beta, c, z, e, d, et)
    it = 0
    while True:
        # gradient g = p - y + lam + c (z - m), p = e / S; d holds g for now
        invS = 1.0 / S
        gmax = 0.0
        zmax = 0.0
        finite = True
        for k in range(K):
            g = e[k] * invS + (np.float64(lam[k]) - np.float64(y[k]) + c * (z[k] - np.float64(m[k])))
            d[k] = g
            finite = finite and abs(g) < np.inf  # false for NaN and inf (max() would drop a NaN)
            gmax = max(gmax, abs(g))
            zmax = max(zmax, abs(z[k]))
        if not finite:  # from a non-finite input (or overflow)
            return -1, Mx, S
        if gmax <= tol * (base + c * zmax) + 16.0 * _EPS64 * zmax or it == SOFTMAX_MAX_ITER:
            return it, Mx, S
        it += 1
        # Newton direction d = -H^-1 g, H = diag(p) - p p^T + c I = D - p p^T, D = diag(p + c):
        # Sherman-Morrison, H^-1 g = D^-1 g + D^-1 p (p^T D^-1 g) / (1 - p^T D^-1 p), where
        # 1 - p^T D^-1 p = sum_k p_k c / (p_k + c) = c sum_k p_k / D_k (sum p = 1), without cancellation
        pu = 0.0
        sv = 0.0
        for k in range(K):
            p = e[k] * invS
            Dk = p + c
            pu += p * d[k] / Dk
            sv += p / Dk
        coef = pu / (c * sv)
        gd = 0.0  # <g, d> < 0
        a1 = 0.0  # <lam - y + c (z - m), d>: the slope of the smooth terms
        dd = 0.0
        dmax = 0.0
        for k in range(K):
            p = e[k] * invS
            g = d[k]
            dk = -(g + p * coef) / (p + c)
            d[k] = dk
            gd += g * dk
            a1 += (np.float64(lam[k]) - np.float64(y[k]) + c * (z[k] - np.float64(m[k]))) * dk
            dd += dk * dk
            dmax = max(dmax, abs(dk))
        a2 = beta * dd
        # backtracking: f(z + t d) - f(z) = [lse(z + t d) - lse(z)] + t a1 + t^2 a2, the lse difference
        # taken as (Mt - Mx) + log(St / S) with both sums shifted by their own maximum
        t = 1.0
        accepted = False
        Mt = Mx
        St = S
        while t >= _T_MIN:
            Mt = -np.inf
            for k in range(K):
                Mt = max(Mt, z[k] + t * d[k])
            St = 0.0
            for k in range(K):
                ek = np.exp((z[k] + t * d[k]) - Mt)
                et[k] = ek
                St += ek
            delta = (Mt - Mx) + np.log(St / S) + t * a1 + t * t * a2
            if delta <= _ARMIJO * t * gd:
                accepted = True
                break
            # a change within the rounding of delta: accept if the gradient got smaller
            noise = 16.0 * _EPS64 * (1.0 + zmax + t * dmax + abs(t * a1) + t * t * a2)
            if delta <= noise:
                gt = 0.0
                invSt = 1.0 / St
                for k in range(K):
                    zk = z[k] + t * d[k]
                    g = et[k] * invSt + (np.float64(lam[k]) - np.float64(y[k]) + c * (zk - np.float64(m[k])))
                    gt = max(gt, abs(g))
                if gt < gmax:
                    accepted = True
                    break
            # minimiser of the quadratic through f(z), the slope gd and f(z + t d), kept in [t/10, t/2]
            tq = -gd * t * t / (2.0 * (delta - gd * t))
            if not (tq >= 0.1 * t):
                tq = 0.1 * t
            if tq > 0.5 * t:
                tq = 0.5 * t
            t = tq
        if not accepted:  # no decrease left at the rounding level: z is the solution
            return it, Mx, S
        for k in range(K):
            z[k] = z[k] + t * d[k]
            e[k] = et[k]
        Mx = Mt
        S = St


@njit(cache=True, nogil=True)
def softmax_z_update(Y, M, lam, beta, lam_step, out):
    """Contract: fastadmm._kernel_api.SOFTMAX_Z_UPDATE."""
    N = M.shape[0]
    K = M.shape[1]
    dt = M.dtype.type
    b = dt(beta)  # beta rounded to the dtype, as in every kernel
    bd = np.float64(b)
    c = 2.0 * bd
    f32 = M.itemsize == 4
    tol = SOFTMAX_TOL32 if f32 else SOFTMAX_TOL64
    # scratch, once per call (never per sample)
    z = np.empty(K, np.float64)
    e = np.empty(K, np.float64)
    d = np.empty(K, np.float64)
    et = np.empty(K, np.float64)
    loss_sum = 0.0
    lam_dot_z = 0.0
    rz = 0.0
    for i in range(N):
        yi = Y[i]
        mi = M[i]
        li = lam[i]
        oi = out[i]
        it, Mx, S = _softmax_row(yi, mi, li, bd, c, tol, z, e, d, et)
        if it < 0:
            for k in range(K):
                z[k] = np.nan
        # the stored z is z rounded to the dtype; the loss is taken there:
        # lse(z) - <y,z> = log(sum exp(z - zmax)) - <y, z - zmax> + zmax (1 - sum y)
        if f32 or it < 0:
            for k in range(K):
                d[k] = np.float64(dt(z[k]))
            Mx, S = _lse_shifted(d, e)
        else:
            for k in range(K):
                d[k] = z[k]
        ce = np.log(S)
        ysum = 0.0
        for k in range(K):
            yk = np.float64(yi[k])
            ce -= yk * (d[k] - Mx)
            ysum += yk
        if ysum != 1.0:
            ce += Mx * (1.0 - ysum)
        loss_sum += ce
        for k in range(K):
            zk = dt(z[k])
            mk = mi[k]  # read before out is written: out may be M
            lk = li[k]
            r = zk - mk
            rd = np.float64(r)
            lam_dot_z += np.float64(lk) * np.float64(zk)  # lam_old * z
            rz += rd * rd
            oi[k] = zk
            if lam_step:
                li[k] = lk + b * r  # lam += beta*(z - m), in the array dtype
    return loss_sum, lam_dot_z, rz


def warmup():
    """Compile (or load from the cache) every signature used: float32 and float64, both losses and
    the softmax update, with and without the lam step.  Returns nothing."""
    for dt in (np.float32, np.float64):
        a = np.array([0.5, -1.0, 2.0], dtype=dt)
        m = np.array([-0.5, 1.0, 0.0], dtype=dt)
        y = np.array([1.0, 0.0, 1.0], dtype=dt)
        z = np.empty(3, dtype=dt)
        hz = np.empty(3, dtype=dt)
        relu_z_update(a, m, 1.0, 10.0, z, hz)
        for loss in (0, 1):
            for lam_step in (False, True):
                lam = np.zeros(3, dtype=dt)
                output_z_update(y, m, lam, 1.0, loss, lam_step, z)
        Y = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=dt)
        M2 = np.array([[0.5, -1.0], [2.0, 0.0]], dtype=dt)
        Z2 = np.empty((2, 2), dtype=dt)
        for lam_step in (False, True):
            softmax_z_update(Y, M2, np.zeros((2, 2), dtype=dt), 1.0, lam_step, Z2)
