"""Numba twins of the compiled kernels (same names, arguments and results as ``_kernels_numpy.py``).

The kernel contract is written in the docstring of ``fastadmm._kernels_numpy``.  Each function is
compiled once per dtype (float32, float64) and cached on disk (``cache=True``); ``warmup()``
compiles every signature the training loop uses, so a caller can time compilation apart.

Exactness: every per-entry operation is carried out in the arrays' dtype (the Python-float scalars
are first rounded to it with ``dt(beta)``, as the NumPy backend does, and every constant is a ``dt``
constant, since Numba would promote ``float32 op int`` to float64) and in the NumPy backend's order,
without ``fastmath`` (no reassociation, no FMA contraction, IEEE NaN and signed-zero rules kept),
so the arrays written agree with the NumPy backend bit for bit.  Sums are float64.

Speed: as in the Cython kernels, each chunk of ``CHUNK`` entries is handled by a flat loop that
writes the outputs and each entry's float64 sum terms to small buffers, then the buffers are summed
pairwise by halving; neither loop is a serial floating-point reduction, so LLVM vectorises both
without fastmath.
"""

from __future__ import annotations

import numpy as np
from numba import njit

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
def _relu_chunk(a_c, m_c, g, b, gb, z_c, hz_c, buf_rz, buf_ra):
    # One chunk of the ReLU update: writes z_c, hz_c and the squared residuals into the buffers.
    zero = m_c.dtype.type(0)
    for j in range(z_c.shape[0]):
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


@njit(cache=True, nogil=True)
def relu_z_update(a, m, beta, gamma, z_out, hz_out):
    """z = argmin gamma*(a - relu(z))^2 + beta*(z - m)^2 entrywise; returns (sum (z-m)^2, sum (a-relu z)^2)."""
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
        for j in range(cn, CHUNK):  # only the last, partial chunk
            buf_rz[j] = 0.0
            buf_ra[j] = 0.0
        # rz = float(np.dot(z - m, z - m)); ra = float(np.dot(a - hz, a - hz))  (up to summation order)
        rz += _pairwise_sum(buf_rz)
        ra += _pairwise_sum(buf_ra)
        c0 += cn
    return rz, ra


@njit(cache=True, nogil=True, inline="always")
def _mse_chunk(y_c, m_c, lam_c, z_c, b, bp1, lam_step, buf_loss, buf_lz, buf_rz):
    # One chunk of the mse update.  Called with a literal lam_step: after inlining, LLVM folds the
    # branch on it, so the loop has no control flow and vectorises.
    two = m_c.dtype.type(2)
    for j in range(z_c.shape[0]):
        yi = y_c[j]
        mi = m_c[j]  # read before z is written: z_out may be m
        li = lam_c[j]
        # z = (y - lam/2 + beta*m) / (1 + beta); loss = float64(z - y)**2
        zi = (yi - li / two + b * mi) / bp1
        zd = np.float64(zi)
        dl = zd - np.float64(yi)
        r = zi - mi
        rd = np.float64(r)
        buf_loss[j] = dl * dl
        buf_lz[j] = np.float64(li) * zd  # lam_old * z
        buf_rz[j] = rd * rd
        z_c[j] = zi
        if lam_step:
            lam_c[j] = li + b * r  # lam += beta*(z - m), in the array dtype


@njit(cache=True, nogil=True, inline="always")
def _hinge_chunk(y_c, m_c, lam_c, z_c, b, c2b, s, lam_step, buf_loss, buf_lz, buf_rz):
    # One chunk of the hinge update (see _mse_chunk for lam_step).
    dt = m_c.dtype.type
    zero, one, half = dt(0), dt(1), dt(0.5)
    for j in range(z_c.shape[0]):
        yi = y_c[j]
        mi = m_c[j]  # read before z is written: z_out may be m
        li = lam_c[j]
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
        r = zi - mi
        rd = np.float64(r)
        buf_loss[j] = 0.0 if dl < 0.0 else dl
        buf_lz[j] = np.float64(li) * zd  # lam_old * z
        buf_rz[j] = rd * rd
        z_c[j] = zi
        if lam_step:
            lam_c[j] = li + b * r  # lam += beta*(z - m), in the array dtype


@njit(cache=True, nogil=True, inline="always")
def _output_chunk(y_c, m_c, lam_c, z_c, b, bp1, c2b, s, hinge, step, buf_loss, buf_lz, buf_rz):
    # one inlined loop per (loss, lam_step), each with literal flags
    if not hinge and step:
        _mse_chunk(y_c, m_c, lam_c, z_c, b, bp1, True, buf_loss, buf_lz, buf_rz)
    elif not hinge:
        _mse_chunk(y_c, m_c, lam_c, z_c, b, bp1, False, buf_loss, buf_lz, buf_rz)
    elif step:
        _hinge_chunk(y_c, m_c, lam_c, z_c, b, c2b, s, True, buf_loss, buf_lz, buf_rz)
    else:
        _hinge_chunk(y_c, m_c, lam_c, z_c, b, c2b, s, False, buf_loss, buf_lz, buf_rz)


@njit(cache=True, nogil=True)
def output_z_update(y, m, lam, beta, loss, lam_step, z_out):
    """z = argmin loss(z, y) + lam*z + beta*(z - m)^2 entrywise; returns (loss_sum, lam_dot_z, rz)."""
    if loss != 0 and loss != 1:
        raise ValueError("loss code must be 0 (mse) or 1 (hinge)")
    dt = m.dtype.type
    b = dt(beta)
    bp1 = dt(1) + b  # dt(1) + beta
    c2b = dt(2) * b  # dt(2) * beta
    s = dt(1) / c2b  # dt(1) / (dt(2) * beta)
    hinge = loss == 1
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
        for j in range(cn, CHUNK):  # only the last, partial chunk
            buf_loss[j] = 0.0
            buf_lz[j] = 0.0
            buf_rz[j] = 0.0
        # loss_sum += sum(loss(z, y)); lam_dot_z += np.dot(lam_old, z); rz += np.dot(z - m, z - m)
        loss_sum += _pairwise_sum(buf_loss)
        lam_dot_z += _pairwise_sum(buf_lz)
        rz += _pairwise_sum(buf_rz)
        c0 += cn
    return loss_sum, lam_dot_z, rz


def warmup():
    """Compile (or load from the cache) every signature used: float32 and float64, both losses,
    with and without the lam step, and z_out aliasing m.  Returns nothing."""
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
