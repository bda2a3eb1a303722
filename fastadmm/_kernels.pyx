# cython: language_level=3
"""The Cython twin of the z-update kernels (``_kernels_numba.py`` follows it function for function).

The kernels, their parameters, contract and constants are declared in ``fastadmm._kernel_api``
(once, for the three twins); the constants below are compiled-in copies, which
``fastadmm._backend`` checks against that declaration when it loads this module.  One function per
job, in this order (the Numba twin's order too): ``_pairwise_sum``, ``_zero_tail``; the ReLU update
(``_relu_one``, ``_relu_chunk``, ``relu_z_update``); the elementwise output update (``_output_one``,
``_output_chunk``, ``output_z_update``); the softmax update (``_lse_shifted``,
``_softmax_objective``, ``_softmax_start``, ``_softmax_row``, ``softmax_z_update``).

Each elementwise kernel is one
pass over its arrays, under ``nogil``, with no heap allocation.  One source serves float32 and
float64 through the fused type ``floating``.  Every per-entry operation is carried out in the
arrays' own dtype and in the same order as the NumPy backend, so the arrays written agree with it
bit for bit, provided the C compiler does not contract a*b + c into a fused multiply-add (build
with ``-ffp-contract=off`` where the target has FMA: aarch64, or x86-64 with -march=native).  The
returned sums are accumulated in float64.

Speed: the arrays are walked in chunks of ``CHUNK`` entries.  A flat, branch-free loop writes the
outputs and each entry's float64 sum terms into small stack buffers; the buffers are then summed
pairwise by halving (``buf[j] += buf[j + h]``).  Neither loop is a serial reduction, so GCC
vectorises both without reassociating anything (-ffast-math is never needed).  GCC turns the
selects into vector blends only with ``-fno-trapping-math``, which changes no value (it only lets
the compiler evaluate a floating-point operation that the source evaluates on one side of a
select; GCC's PRE moves such operations into the branches).  Without it the code is correct but
GCC keeps the ReLU and hinge selects as scalar branches, about 6-10x slower on random data.
When z_out is m, both are passed as one pointer, so the compiler needs no run-time overlap test.
The loops touch no Python object (``cython -a``: only the entry, ``with nogil`` and return lines).

``softmax_z_update`` (at the end) is the exception to the above: an iterative solve per sample,
in double, with libm's exp and log, so it agrees with the NumPy backend to its stated tolerance
(in practice to a few ulps), not bit for bit; it is checked against a reference and brute force.
"""

from cython cimport floating
from libc.math cimport exp, log, fabs, INFINITY, NAN
from libc.stdlib cimport malloc, free

# Checked by fastadmm._backend: bump it together with _kernel_api.KERNEL_ABI when a signature changes.
KERNEL_ABI = 2

# The loss codes of fastadmm._kernel_api (from fastadmm._losses.LOSS_CODE), compiled in as literals.
MSE = 0
HINGE = 1

cdef enum:
    CHUNK = 256     # entries per chunk; the sum buffers take 3 * 256 * 8 bytes of stack


cdef inline double _pairwise_sum(double* buf) noexcept nogil:
    # float(np.sum(buf[:CHUNK])), pairwise: buf[:h] += buf[h:2h] for h = CHUNK/2, ..., 1
    cdef Py_ssize_t h = CHUNK // 2
    cdef Py_ssize_t j
    while h >= 1:
        for j in range(h):
            buf[j] = buf[j] + buf[j + h]
        h = h // 2
    return buf[0]


cdef inline void _zero_tail(double* buf, Py_ssize_t start) noexcept nogil:
    # buf[start:CHUNK] = 0 (only the last, partial chunk)
    cdef Py_ssize_t j
    for j in range(start, CHUNK):
        buf[j] = 0.0


# --------------------------------------------------------------------------------------------------
# ReLU z-update, one entry (NumPy backend, elementwise):
#   zp = np.maximum((gamma*a + beta*m) / (gamma + beta), 0);  zn = np.minimum(m, 0)
#   fp = gamma*(a - zp)**2 + beta*(zp - m)**2;  fn = gamma*a**2 + beta*(zn - m)**2
#   keep_p = fp <= fn;  z = where(keep_p, zp, zn);  hz = where(keep_p, zp, 0)
#   rz2 = float64(z - m)**2;  ra2 = float64(a - hz)**2
# The selects are ternaries on values already computed; `t < 0 ? 0 : t` keeps a NaN as np.maximum
# does, and a NaN objective compares false, so the entry takes zn as in NumPy.
# a[i], m[i] are passed by value, so they are read before z is stored: z_out may be m.
# --------------------------------------------------------------------------------------------------
cdef inline void _relu_one(floating ai, floating mi, floating g, floating b, floating gb,
                           floating* z, floating* hz, double* rz2, double* ra2) noexcept nogil:
    cdef floating zero = 0
    cdef floating t = (g * ai + b * mi) / gb
    cdef floating zp = zero if t < zero else t
    cdef floating zn = zero if mi > zero else mi
    cdef floating dp = ai - zp
    cdef floating ep = zp - mi
    cdef floating en = zn - mi
    cdef floating fp = g * (dp * dp) + b * (ep * ep)
    cdef floating fn = g * (ai * ai) + b * (en * en)
    cdef bint keep_p = fp <= fn
    cdef floating zi = zp if keep_p else zn
    cdef floating hi = zp if keep_p else zero
    cdef double r = <double>(zi - mi)
    cdef double q = <double>(ai - hi)
    z[0] = zi
    hz[0] = hi
    rz2[0] = r * r
    ra2[0] = q * q


cdef inline void _relu_chunk(const floating* a, const floating* m, floating* z, floating* hz,
                             Py_ssize_t cn, floating g, floating b, floating gb,
                             double* buf_rz, double* buf_ra) noexcept nogil:
    # z[:cn], hz[:cn] = the elementwise update; buf_rz[:cn], buf_ra[:cn] = the squared residuals
    cdef Py_ssize_t j
    for j in range(cn):
        _relu_one(a[j], m[j], g, b, gb, &z[j], &hz[j], &buf_rz[j], &buf_ra[j])


def relu_z_update(const floating[::1] a, const floating[::1] m, double beta, double gamma,
                  floating[::1] z_out, floating[::1] hz_out):
    """Contract: fastadmm._kernel_api.RELU_Z_UPDATE."""
    cdef Py_ssize_t n = a.shape[0]
    cdef Py_ssize_t c0 = 0, cn
    # beta, gamma = dt(beta), dt(gamma); the denominator gamma + beta is formed in dt as in NumPy
    cdef floating b = <floating>beta
    cdef floating g = <floating>gamma
    cdef floating gb = g + b
    cdef double buf_rz[CHUNK]
    cdef double buf_ra[CHUNK]
    cdef double rz = 0.0, ra = 0.0
    if n == 0:
        return rz, ra
    cdef const floating* ap = &a[0]
    cdef const floating* mp = &m[0]
    cdef floating* zp = &z_out[0]
    cdef floating* hp = &hz_out[0]
    # z_out is m (the training loop's case): pass one pointer for both, so that the compiler sees
    # that they are equal instead of testing for overlap at run time (a test that fails, and falls
    # back to scalar code, when the arrays are the same).
    cdef bint same = <const void*>zp == <const void*>mp
    with nogil:
        while c0 < n:
            cn = n - c0 if n - c0 < CHUNK else CHUNK
            if same:
                _relu_chunk(ap + c0, zp + c0, zp + c0, hp + c0, cn, g, b, gb, buf_rz, buf_ra)
            else:
                _relu_chunk(ap + c0, mp + c0, zp + c0, hp + c0, cn, g, b, gb, buf_rz, buf_ra)
            if cn < CHUNK:
                _zero_tail(buf_rz, cn)
                _zero_tail(buf_ra, cn)
            # rz += np.dot(z - m, z - m); ra += np.dot(a - hz, a - hz)  (up to summation order)
            rz += _pairwise_sum(buf_rz)
            ra += _pairwise_sum(buf_ra)
            c0 += cn
    return rz, ra


# --------------------------------------------------------------------------------------------------
# Output z-update, one entry (NumPy backend, elementwise):
#   mse:   z = (y - lam/2 + beta*m) / (1 + beta)
#   hinge: t = m - lam/(2*beta);  s = 1/(2*beta)
#          z = where(y > 0.5, np.maximum(t, np.minimum(1, t + s)), np.minimum(t, np.maximum(0, t - s)))
#   loss2 = loss(float64(z), float64(y));  lz2 = float64(lam_old) * float64(z);  rz2 = float64(z - m)**2
#   if lam_step: lam += beta * (z - m)   (in the array dtype)
# `loss` and `lam_step` are literals at every call site, so each loop copy folds them away.
# All inputs of the entry are passed by value before z and lam are stored, so z_out may be m.
# A NaN t makes t +- s NaN too, so these plain ternary max/min propagate NaN as NumPy does.
# --------------------------------------------------------------------------------------------------
cdef inline void _output_one(floating yi, floating mi, floating li, floating b, floating bp1,
                             floating c2b, floating s, int loss, bint lam_step,
                             floating* z, floating* lam, double* loss2, double* lz2,
                             double* rz2) noexcept nogil:
    cdef floating zero = 0, one = 1, two = 2, half = 0.5
    cdef floating zi, t, u, v
    cdef double zd, dl
    cdef bint pos = yi > half
    if loss == 0:
        zi = (yi - li / two + b * mi) / bp1
        zd = <double>zi
        dl = zd - <double>yi
        loss2[0] = dl * dl
    else:
        t = mi - li / c2b
        u = t + s                        # y = 1: max(t, min(1, t + s))
        u = one if one <= u else u
        u = t if t >= u else u
        v = t - s                        # y = 0: min(t, max(0, t - s))
        v = zero if zero >= v else v
        v = t if t <= v else v
        zi = u if pos else v
        zd = <double>zi
        dl = (1.0 - zd) if pos else zd   # max(1 - z, 0) where y = 1, max(z, 0) where y = 0
        loss2[0] = 0.0 if dl < 0.0 else dl
    cdef floating r = zi - mi
    cdef double rd = <double>r
    lz2[0] = <double>li * zd
    rz2[0] = rd * rd
    z[0] = zi
    if lam_step:
        lam[0] = li + b * r


cdef inline void _output_chunk(const floating* y, const floating* m, floating* lam, floating* z,
                               Py_ssize_t cn, floating b, floating bp1, floating c2b, floating s,
                               int loss, bint lam_step, double* buf_loss, double* buf_lz,
                               double* buf_rz) noexcept nogil:
    # z[:cn] (and lam[:cn]) = the elementwise update; buf_*[:cn] = the per-entry sum terms.
    # One loop copy per (loss, lam_step), each calling _output_one with literal flags, so that no
    # flag is tested inside a loop.
    cdef Py_ssize_t j
    if loss == 0 and lam_step:
        for j in range(cn):
            _output_one(y[j], m[j], lam[j], b, bp1, c2b, s, 0, True, &z[j], &lam[j],
                        &buf_loss[j], &buf_lz[j], &buf_rz[j])
    elif loss == 0:
        for j in range(cn):
            _output_one(y[j], m[j], lam[j], b, bp1, c2b, s, 0, False, &z[j], &lam[j],
                        &buf_loss[j], &buf_lz[j], &buf_rz[j])
    elif lam_step:
        for j in range(cn):
            _output_one(y[j], m[j], lam[j], b, bp1, c2b, s, 1, True, &z[j], &lam[j],
                        &buf_loss[j], &buf_lz[j], &buf_rz[j])
    else:
        for j in range(cn):
            _output_one(y[j], m[j], lam[j], b, bp1, c2b, s, 1, False, &z[j], &lam[j],
                        &buf_loss[j], &buf_lz[j], &buf_rz[j])


def output_z_update(const floating[::1] y, const floating[::1] m, floating[::1] lam, double beta,
                    int loss, bint lam_step, floating[::1] z_out):
    """Contract: fastadmm._kernel_api.OUTPUT_Z_UPDATE."""
    cdef Py_ssize_t n = m.shape[0]
    cdef Py_ssize_t c0 = 0, cn
    cdef floating b = <floating>beta
    cdef floating one = 1, two = 2
    cdef floating bp1 = one + b          # dt(1) + beta
    cdef floating c2b = two * b          # dt(2) * beta
    cdef floating s = one / c2b          # dt(1) / (dt(2) * beta)
    cdef double buf_loss[CHUNK]
    cdef double buf_lz[CHUNK]
    cdef double buf_rz[CHUNK]
    cdef double loss_sum = 0.0, lam_dot_z = 0.0, rz = 0.0
    if loss != 0 and loss != 1:
        raise ValueError(f"loss code must be 0 (mse) or 1 (hinge), got {loss}")
    if n == 0:
        return loss_sum, lam_dot_z, rz
    cdef const floating* yp = &y[0]
    cdef const floating* mp = &m[0]
    cdef floating* lp = &lam[0]
    cdef floating* zp = &z_out[0]
    cdef bint same = <const void*>zp == <const void*>mp   # z_out is m: see relu_z_update
    with nogil:
        while c0 < n:
            cn = n - c0 if n - c0 < CHUNK else CHUNK
            if same:
                _output_chunk(yp + c0, zp + c0, lp + c0, zp + c0, cn, b, bp1, c2b, s, loss, lam_step,
                              buf_loss, buf_lz, buf_rz)
            else:
                _output_chunk(yp + c0, mp + c0, lp + c0, zp + c0, cn, b, bp1, c2b, s, loss, lam_step,
                              buf_loss, buf_lz, buf_rz)
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
# fastadmm._kernel_api.SOFTMAX_Z_UPDATE; this is the same algorithm, line for line as the Numba twin
# (_kernels_numba.py), one row at a time, all arithmetic in double.  The four K-length double
# scratch vectors are malloc'ed once per call (never per sample) and freed before returning.
# --------------------------------------------------------------------------------------------------
# compiled-in copies of fastadmm._kernel_api's (checked by fastadmm._backend)
SOFTMAX_MAX_ITER = 100
SOFTMAX_TOL64 = 1e-10
SOFTMAX_TOL32 = 1e-6

cdef enum:
    _SOFTMAX_MAX_ITER = 100
cdef double _ARMIJO = 1e-4
cdef double _T_MIN = 1e-20
cdef double _EPS64 = 2.220446049250313e-16
cdef double _LOG_START_MAX_C = 0.1   # the log-corrected start only below this c (see the Numba twin)


cdef inline double _lse_shifted(const double* z, double* e, Py_ssize_t K, double* S) noexcept nogil:
    # e = exp(z - max z), S = sum e; returns max z
    cdef Py_ssize_t k
    cdef double Mx = -INFINITY, s = 0.0, ek
    for k in range(K):
        if z[k] > Mx:
            Mx = z[k]
    for k in range(K):
        ek = exp(z[k] - Mx)
        e[k] = ek
        s += ek
    S[0] = s
    return Mx


cdef inline double _softmax_objective(const floating* y, const floating* m, const floating* lam, double beta,
                                      const double* z, double Mx, double S, Py_ssize_t K) noexcept nogil:
    # the objective at z (only to compare the two starting points)
    cdef Py_ssize_t k
    cdef double f = Mx + log(S), r
    for k in range(K):
        r = z[k] - <double>m[k]
        f += (<double>lam[k] - <double>y[k]) * z[k] + beta * r * r
    return f


cdef inline double _softmax_start(const floating* y, const floating* m, const floating* lam, double beta,
                                  double c, Py_ssize_t K, double* z, double* e, double* d, double* et,
                                  double* S) noexcept nogil:
    # the starting point of the contract; writes z, e = exp(z - max z), S; returns max z
    cdef Py_ssize_t k, it, n
    cdef double w, wmax = -INFINITY, tau, h, q, f0, f1, Mx, M1, S1
    for k in range(K):
        w = <double>y[k] - <double>lam[k] + c * <double>m[k]
        d[k] = w
        if w > wmax:
            wmax = w
    tau = wmax - 1.0
    for it in range(K + 1):
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
        z[k] = <double>m[k] + ((<double>y[k] - <double>lam[k]) - q) / c
    Mx = _lse_shifted(z, e, K, S)
    if c >= _LOG_START_MAX_C:
        return Mx
    f0 = _softmax_objective(y, m, lam, beta, z, Mx, S[0], K)
    for k in range(K):
        d[k] = z[k] + log(et[k]) if et[k] > 0.0 else z[k]
    M1 = _lse_shifted(d, et, K, &S1)
    f1 = _softmax_objective(y, m, lam, beta, d, M1, S1, K)
    if f1 < f0:
        for k in range(K):
            z[k] = d[k]
            e[k] = et[k]
        S[0] = S1
        return M1
    return Mx


cdef inline int _softmax_row(const floating* y, const floating* m, const floating* lam, double beta,
                             double c, double tol, Py_ssize_t K, double* z, double* e, double* d,
                             double* et, double* Mx_out, double* S_out) noexcept nogil:
    # one sample; returns the Newton steps taken, -1 for a non-finite gradient
    cdef Py_ssize_t k
    cdef int it = 0
    cdef double lmax = 0.0, ymax = 0.0, mmax = 0.0, base, Mx, S, Mt, St
    cdef double invS, invSt, gmax, zmax, g, p, Dk, pu, sv, coef, gd, a1, dd, dmax, dk, a2
    cdef double t, delta, noise, gt, zk, ek, tq
    cdef bint accepted, finite
    for k in range(K):
        lmax = max(lmax, fabs(<double>lam[k]))
        ymax = max(ymax, fabs(<double>y[k]))
        mmax = max(mmax, fabs(<double>m[k]))
    base = 1.0 + lmax + ymax + c * mmax
    Mx = _softmax_start(y, m, lam, beta, c, K, z, e, d, et, &S)
    while True:
        invS = 1.0 / S
        gmax = 0.0
        zmax = 0.0
        finite = True
        for k in range(K):
            g = e[k] * invS + ((<double>lam[k] - <double>y[k]) + c * (z[k] - <double>m[k]))
            d[k] = g
            finite = finite and fabs(g) < INFINITY   # false for NaN and inf (max() would drop a NaN)
            gmax = max(gmax, fabs(g))
            zmax = max(zmax, fabs(z[k]))
        Mx_out[0] = Mx
        S_out[0] = S
        if not finite:
            return -1
        if gmax <= tol * (base + c * zmax) + 16.0 * _EPS64 * zmax or it == _SOFTMAX_MAX_ITER:
            return it
        it += 1
        pu = 0.0
        sv = 0.0
        for k in range(K):
            p = e[k] * invS
            Dk = p + c
            pu += p * d[k] / Dk
            sv += p / Dk
        coef = pu / (c * sv)
        gd = 0.0
        a1 = 0.0
        dd = 0.0
        dmax = 0.0
        for k in range(K):
            p = e[k] * invS
            g = d[k]
            dk = -(g + p * coef) / (p + c)
            d[k] = dk
            gd += g * dk
            a1 += ((<double>lam[k] - <double>y[k]) + c * (z[k] - <double>m[k])) * dk
            dd += dk * dk
            dmax = max(dmax, fabs(dk))
        a2 = beta * dd
        t = 1.0
        accepted = False
        Mt = Mx
        St = S
        while t >= _T_MIN:
            Mt = -INFINITY
            for k in range(K):
                zk = z[k] + t * d[k]
                if zk > Mt:
                    Mt = zk
            St = 0.0
            for k in range(K):
                ek = exp((z[k] + t * d[k]) - Mt)
                et[k] = ek
                St += ek
            delta = (Mt - Mx) + log(St / S) + t * a1 + t * t * a2
            if delta <= _ARMIJO * t * gd:
                accepted = True
                break
            noise = 16.0 * _EPS64 * (1.0 + zmax + t * dmax + fabs(t * a1) + t * t * a2)
            if delta <= noise:
                gt = 0.0
                invSt = 1.0 / St
                for k in range(K):
                    zk = z[k] + t * d[k]
                    g = et[k] * invSt + ((<double>lam[k] - <double>y[k]) + c * (zk - <double>m[k]))
                    gt = max(gt, fabs(g))
                if gt < gmax:
                    accepted = True
                    break
            tq = -gd * t * t / (2.0 * (delta - gd * t))
            if not (tq >= 0.1 * t):
                tq = 0.1 * t
            if tq > 0.5 * t:
                tq = 0.5 * t
            t = tq
        if not accepted:
            return it
        for k in range(K):
            z[k] = z[k] + t * d[k]
            e[k] = et[k]
        Mx = Mt
        S = St


def softmax_z_update(const floating[:, ::1] Y, const floating[:, ::1] M, floating[:, ::1] lam,
                     double beta, bint lam_step, floating[:, ::1] out):
    """Contract: fastadmm._kernel_api.SOFTMAX_Z_UPDATE."""
    cdef Py_ssize_t N = M.shape[0], K = M.shape[1], i, k
    cdef floating b = <floating>beta
    cdef double bd = <double>b
    cdef double c = 2.0 * bd
    cdef bint f32 = floating is float
    cdef double tol = SOFTMAX_TOL32 if f32 else SOFTMAX_TOL64
    cdef double loss_sum = 0.0, lam_dot_z = 0.0, rz = 0.0
    cdef double Mx, S, ce, ysum, yk, rd
    cdef int it
    cdef floating zk, mk, lk, r
    cdef const floating* yi
    cdef const floating* mi
    cdef floating* li
    cdef floating* oi
    cdef double* z
    cdef double* e
    cdef double* d
    cdef double* et
    if N == 0 or K == 0:
        return loss_sum, lam_dot_z, rz
    cdef double* scratch = <double*>malloc(4 * K * sizeof(double))
    if scratch == NULL:
        raise MemoryError(f"softmax_z_update: no memory for 4 x {K} doubles of scratch")
    z, e, d, et = scratch, scratch + K, scratch + 2 * K, scratch + 3 * K
    with nogil:
        for i in range(N):
            yi = &Y[i, 0]
            mi = &M[i, 0]
            li = &lam[i, 0]
            oi = &out[i, 0]
            it = _softmax_row(yi, mi, li, bd, c, tol, K, z, e, d, et, &Mx, &S)
            if it < 0:
                for k in range(K):
                    z[k] = NAN
            # the loss at the stored z (z rounded to the dtype)
            if f32 or it < 0:
                for k in range(K):
                    d[k] = <double>(<floating>z[k])
                Mx = _lse_shifted(d, e, K, &S)
            else:
                for k in range(K):
                    d[k] = z[k]
            ce = log(S)
            ysum = 0.0
            for k in range(K):
                yk = <double>yi[k]
                ce -= yk * (d[k] - Mx)
                ysum += yk
            if ysum != 1.0:
                ce += Mx * (1.0 - ysum)
            loss_sum += ce
            for k in range(K):
                zk = <floating>z[k]
                mk = mi[k]          # read before out is written: out may be M
                lk = li[k]
                r = zk - mk
                rd = <double>r
                lam_dot_z += <double>lk * <double>zk
                rz += rd * rd
                oi[k] = zk
                if lam_step:
                    li[k] = lk + b * r
    free(scratch)
    return loss_sum, lam_dot_z, rz
