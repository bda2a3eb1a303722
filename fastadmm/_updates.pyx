# cython: language_level=3
"""The small dense steps of a mini-batch ADMM batch, compiled: the proximal W-update and the
Woodbury a-update of ``fastadmm._minibatch`` (docs/ALGORITHM.md, section 6), a layer's product
with its bias and ReLU, the gather of a batch's rows and kept columns, and the one-pass column
minima and maxima of the boundary's scan of X (``_inputs.scan``).

Each is one call doing what ``MiniBatchADMM._w_update_numpy`` / ``_a_update_numpy`` do in a dozen
NumPy and LAPACK calls: the same products and triangular solves by BLAS and LAPACK (scipy's
``cython_blas``, ``cython_lapack``), the Cholesky factorisation written out here (``_potrf``: at
these sizes OpenBLAS's potrf spends more time in call and blocking overhead than in arithmetic;
hand-written triangular solves were measured slower than trsm and are not used), in the arrays'
own dtype, into buffers the caller owns, with no Python object touched and no
allocation.  For the 10-100-wide layers of a batch of 64 the NumPy
version spends most of its time in call overheads (about 60 of 70 microseconds for a W-update of a
10 x 51 layer); here they are gone, and what is left is the arithmetic.

Arrays are row-major (one sample per row, as everywhere in fastadmm); BLAS and LAPACK are
column-major, so a row-major r x c array is passed as the column-major c x r array it also is
(``_gemm_rm`` does this for products).

Status codes returned: ``OK``; ``NONFINITE`` (the activations, targets or weights hold NaN or
infinity); ``NOT_SPD`` (the Cholesky factorisation failed); ``NEEDS_FLOAT64`` (a float32 system
whose condition-number bound, trace / smallest eigenvalue, exceeds ``FLOAT32_COND_LIMIT``: the
caller solves it in float64 instead, as ``_linalg.spd_solve`` does).  On any status but ``OK`` the
output arrays are undefined.
"""

from cython cimport floating
from libc.math cimport isfinite, sqrt
cimport scipy.linalg.cython_blas as blas
cimport scipy.linalg.cython_lapack as lapack

# Checked by fastadmm._backend.updates(): bump it with _backend.UPDATES_ABI when a signature changes.
UPDATES_ABI = 2

# The same bound as fastadmm._linalg.FLOAT32_COND_LIMIT (checked by the tests).
FLOAT32_COND_LIMIT = 1e4
cdef double _F32_COND = FLOAT32_COND_LIMIT  # the Python constant, checked against _linalg by _updates_api

cdef enum:
    ST_OK = 0
    ST_NONFINITE = 1
    ST_NOT_SPD = 2
    ST_NEEDS_FLOAT64 = 3

OK = ST_OK
NONFINITE = ST_NONFINITE
NOT_SPD = ST_NOT_SPD
NEEDS_FLOAT64 = ST_NEEDS_FLOAT64


cdef inline void _gemm_rm(char ta, char tb, int M, int N, int K, floating alpha, floating* A, int lda,
                          floating* B, int ldb, floating beta, floating* C, int ldc) noexcept nogil:
    # Row-major C (M x N, leading dimension ldc) = alpha op(A) op(B) + beta C, op(A) M x K: the
    # column-major product C^T = alpha op(B)^T op(A)^T + beta C^T.
    if floating is float:
        blas.sgemm(&tb, &ta, &N, &M, &K, &alpha, B, &ldb, A, &lda, &beta, C, &ldc)
    else:
        blas.dgemm(&tb, &ta, &N, &M, &K, &alpha, B, &ldb, A, &lda, &beta, C, &ldc)


cdef inline void _gram_upper_rm(char trans, int n, int k, floating* A, int lda, floating* C, int ldc) noexcept nogil:
    # The upper triangle of the row-major n x n Gram C (leading dimension ldc) of the row-major A,
    # by syrk (half a gemm's multiply-adds): trans 'T': A is n x k and C = A A^T; 'N': A is k x n and
    # C = A^T A.  Column-major these are the lower triangles of A'^T A' and A' A'^T (A' = A's
    # column-major view, leading dimension lda).  The strict lower triangle is not written: _potrf
    # reads the upper one only.
    cdef char lo = c'L'
    cdef floating one = 1, zero = 0
    if floating is float:
        blas.ssyrk(&lo, &trans, &n, &k, &one, A, &lda, &zero, C, &ldc)
    else:
        blas.dsyrk(&lo, &trans, &n, &k, &one, A, &lda, &zero, C, &ldc)


cdef int _potrf(floating* K, int n) noexcept nogil:
    # The Cholesky factor of the symmetric n x n K in place, as LAPACK potrf('L') leaves it in
    # column-major storage: row-major, the upper triangle U with K = U^T U (read from K's upper
    # triangle; the strict lower one is left alone).  Returns 0, or k + 1 if the k-th pivot is not
    # positive (NaN included), as potrf's info.  Right-looking, row by row: each update is a
    # contiguous axpy, which the compiler vectorises; for the 1-100-wide systems of a batch this
    # takes a fraction of OpenBLAS potrf's ~15 microseconds of call and blocking overhead.
    cdef int k, i, j
    cdef floating d, f
    cdef floating* rk
    cdef floating* ri
    for k in range(n):
        rk = K + <Py_ssize_t>k * n
        d = rk[k]
        if not d > 0:
            return k + 1
        d = <floating>sqrt(d)
        rk[k] = d
        f = 1 / d
        for j in range(k + 1, n):
            rk[j] = rk[j] * f
        for i in range(k + 1, n):
            ri = K + <Py_ssize_t>i * n
            f = rk[i]
            for j in range(i, n):
                ri[j] = ri[j] - f * rk[j]
    return 0


cdef inline void _solve_columns(floating* L, int n, floating* R, int h) noexcept nogil:
    # Row-major R (n x h) <- K^-1 R for K = L L^T: on the column-major R^T (h x n),
    # R^T <- R^T L^-T L^-1 by two triangular solves from the right.
    cdef char right = c'R', lo = c'L', tr = c'T', no = c'N'
    cdef floating one = 1
    if floating is float:
        blas.strsm(&right, &lo, &tr, &no, &h, &n, &one, L, &n, R, &h)
        blas.strsm(&right, &lo, &no, &no, &h, &n, &one, L, &n, R, &h)
    else:
        blas.dtrsm(&right, &lo, &tr, &no, &h, &n, &one, L, &n, R, &h)
        blas.dtrsm(&right, &lo, &no, &no, &h, &n, &one, L, &n, R, &h)


cdef inline int _solve_rows(floating* L, int n, floating* R, int m) noexcept nogil:
    # Row-major R (m x n) <- R K^-1 (each row r <- K^-1 r): its column-major view has the rows as columns.
    cdef char lo = c'L'
    cdef int info = 0
    if floating is float:
        lapack.spotrs(&lo, &n, &m, L, &n, R, &n, &info)
    else:
        lapack.dpotrs(&lo, &n, &m, L, &n, R, &n, &info)
    return info


cdef inline bint _all_finite(floating* x, Py_ssize_t size) noexcept nogil:
    # x - x is 0 for a finite x and NaN for NaN or infinity; the flags are OR-ed (no float
    # reduction, so the loop vectorises).
    cdef Py_ssize_t i
    cdef int bad = 0
    for i in range(size):
        bad = bad | (x[i] - x[i] != 0)
    return bad == 0


cdef int _w_update(const floating[:, ::1] A, floating[:, ::1] R, const floating[:, ::1] W_prev,
                   floating[:, ::1] W_out, double prox, double shrink, floating* K, floating* S) noexcept nogil:
    cdef int B = A.shape[0], m = A.shape[1], h = R.shape[1], n = m + 1
    cdef int i, j, q
    cdef double trace = 0.0, mean_diag, shift
    cdef floating s, f = <floating>shrink
    if not _all_finite(&R[0, 0], <Py_ssize_t>B * h):
        return ST_NONFINITE
    if B < n:
        _gram_upper_rm(c'T', B, m, <floating*>&A[0, 0], m, K, B)  # K = A A^T, its upper triangle
        for i in range(B):
            trace += K[i * B + i]
        mean_diag = (trace + B) / n
        if not isfinite(mean_diag):
            return ST_NONFINITE
        shift = prox * mean_diag + 1e-12
        for i in range(B * B):
            K[i] = K[i] + 1
        for i in range(B):
            K[i * B + i] = K[i * B + i] + <floating>shift
        if floating is float and trace + B + B * shift > _F32_COND * shift:
            return ST_NEEDS_FLOAT64
        if _potrf(K, B) != 0:
            return ST_NOT_SPD
        _solve_columns(K, B, &R[0, 0], h)  # R <- Y = K^-1 R
        for j in range(h):
            for q in range(n):
                W_out[j, q] = f * W_prev[j, q]
        # W_out[:, :m] += Y^T A (leading dimension n); the bias column += the sums of Y's columns
        _gemm_rm(c'T', c'N', h, m, B, <floating>1, &R[0, 0], h, <floating*>&A[0, 0], m, <floating>1, &W_out[0, 0], n)
        for j in range(h):
            s = 0
            for i in range(B):
                s = s + R[i, j]
            W_out[j, m] = W_out[j, m] + s
        return ST_OK
    # G = [A 1]^T [A 1] (n x n, its upper triangle): A^T A, the column sums of A, and B
    _gram_upper_rm(c'N', m, B, <floating*>&A[0, 0], m, K, n)
    for q in range(m):
        s = 0
        for i in range(B):
            s = s + A[i, q]
        K[q * n + m] = s
        K[m * n + q] = s
    K[m * n + m] = B
    for i in range(n):
        trace += K[i * n + i]
    mean_diag = trace / n
    if not isfinite(mean_diag):
        return ST_NONFINITE
    shift = prox * mean_diag + 1e-12
    for i in range(n):
        K[i * n + i] = K[i * n + i] + <floating>shift
    if floating is float and trace + n * shift > _F32_COND * shift:
        return ST_NEEDS_FLOAT64
    if _potrf(K, n) != 0:
        return ST_NOT_SPD
    # S (n x h) = [A 1]^T R, then S <- G^-1 S
    _gemm_rm(c'T', c'N', m, h, B, <floating>1, <floating*>&A[0, 0], m, &R[0, 0], h, <floating>0, S, h)
    for j in range(h):
        s = 0
        for i in range(B):
            s = s + R[i, j]
        S[m * h + j] = s
    _solve_columns(K, n, S, h)
    for j in range(h):
        for q in range(n):
            W_out[j, q] = f * W_prev[j, q] + S[q * h + j]
    return ST_OK


def w_update(const floating[:, ::1] A, const floating[:, ::1] Z, const floating[:, ::1] M, floating[:, ::1] R,
             const floating[:, ::1] W_prev, floating[:, ::1] W_out, double prox, double shrink,
             floating[::1] square, floating[::1] work):
    """W_out <- s W_prev + R^T [A 1] ([A 1]^T [A 1] + p I)^-1 with the residuals R = Z - s W_prev [A 1]^T,
    the proximal W-update of a batch anchored at s W_prev (s = ``shrink``: p_l / (p_l + r) for a ridge
    r, which makes it the exact step of min ||Z - W [A 1]^T||^2 + p_l ||W - W_prev||^2 + r ||W||^2
    with p = p_l + r; 1 for none).

    A (B, m): the batch's inputs a_{l-1}; Z (B, h): the targets z_l; M (B, h): W_prev [A 1]^T if the
    caller has it, else None (then it is computed into R); R (B, h): scratch, overwritten by the
    residuals and the solve;
    W_prev, W_out (h, m + 1), the bias last; p = prox * mean diagonal of [A 1]^T [A 1] (+ 1e-12).
    Push-through (B < m + 1): a B x B solve with K = A A^T + 1 1^T + p I; otherwise the normal
    equations, an (m + 1) x (m + 1) solve.  ``square`` holds at least min(B, m + 1)^2 entries,
    ``work`` at least (m + 1) * h.  Returns a status code (module docstring).
    """
    cdef int B = A.shape[0], m = A.shape[1], h = R.shape[1], n = m + 1
    cdef int status
    cdef Py_ssize_t i, j
    if R.shape[0] != B or W_prev.shape[0] != h or W_prev.shape[1] != n or W_out.shape[0] != h \
            or W_out.shape[1] != n or square.shape[0] < min(B, n) * min(B, n) or work.shape[0] < n * h \
            or Z.shape[0] != B or Z.shape[1] != h or (M is not None and (M.shape[0] != B or M.shape[1] != h)):
        raise ValueError("w_update: inconsistent shapes or scratch too small")
    with nogil:
        if M is None:  # R = Z - s (b + A W_b^T)
            for i in range(B):
                for j in range(h):
                    R[i, j] = Z[i, j] - <floating>shrink * W_prev[j, m]
            _gemm_rm(c'N', c'T', B, h, m, <floating>(-shrink), <floating*>&A[0, 0], m, <floating*>&W_prev[0, 0], n,
                     <floating>1, &R[0, 0], h)
        else:
            for i in range(B):
                for j in range(h):
                    R[i, j] = Z[i, j] - <floating>shrink * M[i, j]
        status = _w_update(A, R, W_prev, W_out, prox, shrink, &square[0], &work[0])
    return status


cdef int _a_update(const floating[:, ::1] W, const floating[:, ::1] Z, const floating[:, ::1] H, double beta,
                   double gamma, floating[:, ::1] out, floating[:, ::1] R, floating* C) noexcept nogil:
    cdef int k = W.shape[0], m = W.shape[1] - 1, B = Z.shape[0], n = m + 1
    cdef int i, j
    cdef double trace = 0.0, shift = gamma / beta
    # C = W_b W_b^T + gamma/beta I (W_b: the first m columns of W, leading dimension n)
    _gemm_rm(c'N', c'T', k, k, m, <floating>1, <floating*>&W[0, 0], n, <floating*>&W[0, 0], n, <floating>0, C, k)
    for i in range(k):
        trace += C[i * k + i]
        C[i * k + i] = C[i * k + i] + <floating>shift
    if not isfinite(trace):
        return ST_NONFINITE
    if floating is float and trace + k * shift > _F32_COND * shift:
        return ST_NEEDS_FLOAT64
    # R = Z - b - H W_b^T
    for i in range(B):
        for j in range(k):
            R[i, j] = Z[i, j] - W[j, m]
    _gemm_rm(c'N', c'T', B, k, m, <floating>-1, <floating*>&H[0, 0], m, <floating*>&W[0, 0], n, <floating>1, &R[0, 0], k)
    if _potrf(C, k) != 0:
        return ST_NOT_SPD
    _solve_rows(C, k, &R[0, 0], B)  # R <- R C^-1
    # out = H + R W_b
    for i in range(B):
        for j in range(m):
            out[i, j] = H[i, j]
    _gemm_rm(c'N', c'N', B, m, k, <floating>1, &R[0, 0], k, <floating*>&W[0, 0], n, <floating>1, &out[0, 0], m)
    return ST_OK


def a_update(const floating[:, ::1] W, const floating[:, ::1] Z, const floating[:, ::1] H, double beta,
             double gamma, floating[:, ::1] out, floating[:, ::1] R, floating[::1] square):
    """out <- h + (z - b - h W^T) C^-1 W with C = gamma/beta I + W W^T (the Woodbury form of the
    a-update (beta W^T W + gamma I)^-1 (beta W^T (z - b) + gamma h), for fewer outputs k than inputs m).

    W (k, m + 1): W_{l+1} with its bias last; Z (B, k): z_{l+1}; H (B, m): h(z_l); out (B, m);
    R (B, k) scratch; ``square`` at least k^2 entries.  Returns a status code (module docstring).
    """
    cdef int k = W.shape[0], m = W.shape[1] - 1, B = Z.shape[0], n = m + 1
    cdef int status
    if Z.shape[1] != k or H.shape[0] != B or H.shape[1] != m or out.shape[0] != B or out.shape[1] != m \
            or R.shape[0] != B or R.shape[1] != k or square.shape[0] < k * k:
        raise ValueError("a_update: inconsistent shapes or scratch too small")
    with nogil:
        status = _a_update(W, Z, H, beta, gamma, out, R, &square[0])
    return status


ctypedef fused source_t:
    float
    double


def column_runs(const Py_ssize_t[::1] cols):
    """The runs of consecutive indices in the sorted `cols`, as an (n_runs, 3) array of (first
    column in X, first column in the output, length): what ``gather`` copies run by run."""
    import numpy as np

    cdef Py_ssize_t m = cols.shape[0], j, start = 0, n_runs = 0
    runs = np.empty((max(m, 1), 3), dtype=np.intp)
    cdef Py_ssize_t[:, ::1] r = runs
    for j in range(1, m + 1):
        if j == m or cols[j] != cols[j - 1] + 1:
            r[n_runs, 0] = cols[start]
            r[n_runs, 1] = start
            r[n_runs, 2] = j - start
            n_runs += 1
            start = j
    return runs[:n_runs]


def gather(const source_t[:, ::1] X, const Py_ssize_t[::1] rows, const Py_ssize_t[:, ::1] runs,
           floating[:, ::1] out):
    """out[i, :] <- X[rows[i], kept columns], cast to out's dtype: a batch's rows and kept columns in
    one pass (NumPy needs two takes and a buffer of the rows at full width).  The kept columns come
    as ``column_runs(cols)``: each run is a contiguous copy with the cast, which vectorises.  The
    indices must be valid (the driver's own permutation and kept features; not checked per entry)."""
    cdef Py_ssize_t B = rows.shape[0], n_runs = runs.shape[0], i, j, r, src0, dst0, length, m = 0
    cdef const source_t* src
    cdef floating* dst
    for r in range(n_runs):
        m += runs[r, 2]
        if runs[r, 0] < 0 or runs[r, 0] + runs[r, 2] > X.shape[1] or runs[r, 1] + runs[r, 2] > out.shape[1]:
            raise ValueError("gather: a run of columns lies outside X or out")
    if out.shape[0] < B or out.shape[1] != m:
        raise ValueError("gather: out has the wrong shape")
    with nogil:
        for i in range(B):
            src = &X[rows[i], 0]
            dst = &out[i, 0]
            for r in range(n_runs):
                src0, dst0, length = runs[r, 0], runs[r, 1], runs[r, 2]
                for j in range(length):
                    dst[dst0 + j] = <floating>src[src0 + j]


def column_range(const source_t[:, ::1] X, source_t[::1] colmin, source_t[::1] colmax, bint start):
    """colmin, colmax <- the minimum and maximum of each column of X over its rows, in one pass;
    ``start``: overwrite them, else fold X's rows into them.  Returns False if X holds NaN or
    infinity (then colmin and colmax are undefined: the caller takes NumPy's NaN-propagating
    reductions instead).  No NaN test inside the comparisons, so the loop vectorises."""
    cdef Py_ssize_t N = X.shape[0], n = X.shape[1], i, j
    cdef source_t v
    cdef int bad = 0
    if colmin.shape[0] != n or colmax.shape[0] != n:
        raise ValueError("column_range: colmin and colmax need one entry per column of X")
    if N == 0:
        return True
    cdef const source_t* row
    cdef source_t* lo = &colmin[0]
    cdef source_t* hi = &colmax[0]
    cdef source_t a, b
    with nogil:
        if start:
            for j in range(n):
                lo[j] = X[0, j]
                hi[j] = X[0, j]
        for i in range(N):
            row = &X[i, 0]
            for j in range(n):
                v = row[j]
                a = lo[j]
                b = hi[j]
                lo[j] = v if v < a else a
                hi[j] = v if v > b else b
                bad = bad | (v - v != 0)  # NaN or infinity
    return bad == 0


def linear(const floating[:, ::1] A, const floating[:, ::1] W, floating[:, ::1] out,
           floating[:, ::1] relu_out=None, floating[:, ::1] relu_copy=None):
    """out <- [A 1] W^T (W's last column the bias), one gemm; then, if given, relu_out <- max(out, 0)
    and relu_copy <- the same (the forward pass's a_l and h(z_l) of a batch)."""
    cdef int B = A.shape[0], m = A.shape[1], h = W.shape[0], n = m + 1
    cdef Py_ssize_t i, j
    cdef floating v
    if W.shape[1] != n or out.shape[0] != B or out.shape[1] != h \
            or (relu_out is not None and (relu_out.shape[0] != B or relu_out.shape[1] != h)) \
            or (relu_copy is not None and (relu_copy.shape[0] != B or relu_copy.shape[1] != h)):
        raise ValueError("linear: inconsistent shapes")
    with nogil:
        for i in range(B):
            for j in range(h):
                out[i, j] = W[j, m]
        _gemm_rm(c'N', c'T', B, h, m, <floating>1, <floating*>&A[0, 0], m, <floating*>&W[0, 0], n,
                 <floating>1, &out[0, 0], h)
        if relu_out is not None:
            for i in range(B):
                for j in range(h):
                    v = out[i, j]
                    relu_out[i, j] = 0 if v < 0 else v  # as np.maximum(v, 0): NaN stays NaN
            if relu_copy is not None:
                for i in range(B):
                    for j in range(h):
                        relu_copy[i, j] = relu_out[i, j]
