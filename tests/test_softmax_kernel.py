"""The softmax cross-entropy output z-update, every backend, against the slow reference and brute force.

Per sample (row) the kernel solves  z = argmin_z f(z),  f(z) = CE(z, y) + <lam, z> + beta ||z - m||^2,
CE(z, y) = logsumexp(z) - <y, z>, by Newton's method (``fastadmm._kernel_api.SOFTMAX_Z_UPDATE`` documents it).
The reference (``reference.softmax_z_one``) shares nothing with it: a 1-D root search in
logsumexp(z) through the Wright omega function.  Brute force knows only the objective.

Every bound below is derived, none is tuned.  c = 2 beta is f's strong-convexity modulus (its
Hessian diag(p) - p p^T + c I is >= c I), beta and the inputs are taken as the kernel sees them
(rounded to the dtype), and every check is evaluated in float64 by the slow Python code:

* Optimality: the gradient g(z) = p - y + lam + c (z - m) at the *stored* z satisfies
  ``max|g| <= tol (base + c max|z|) + 16 eps64 max|z| + (1 + c/2) eps_d max|z| + 8 eps64 (base + (1 + c) max|z|)``
  with base = 1 + max|lam| + max|y| + c max|m|: the kernel's stopping rule (tol = 1e-10 for
  float64, 1e-6 for float32), plus the change of g when z is rounded to the dtype (a change delta
  of z moves g by at most (2 + c) max|delta|, and |delta| <= eps_d/2 |z|; zero for float64), plus
  the float64 rounding of this evaluation of g.
* z against the reference: strong convexity gives ||z1 - z2||_2 <= ||g(z1) - g(z2)||_2 / c, so
  ``max|z - z_ref| <= (||g(z)||_2 + ||g(z_ref)||_2 + 8 eps64 sqrt(K) (base + (1 + c) max|z|)) / c``,
  both gradients measured.  The reference's own gradient is checked to be at the rounding level.
* Objective against brute force: f(z) - min f <= ||g(z)||_2^2 / (2c) (strong convexity), and the
  brute-force value is >= min f, so ``f(z) <= f_brute + ||g(z)||_2^2 / (2c) + 16 eps64 scale``,
  scale bounding the terms of both objective evaluations.
* Sums: against float64 sums of the kernel's own stored outputs, within 1e-12 relative (summation
  order only; the CE terms within 8 eps64 of their magnitude).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastadmm import _backend, _losses, kernels

import reference as R

DTYPES = (np.float32, np.float64)
APIS = ("low", "public")
EPS64 = float(np.finfo(np.float64).eps)
TOL = {np.float32: 1e-6, np.float64: 1e-10}  # the kernels' documented stopping tolerances


def eps(dtype):
    return float(np.finfo(dtype).eps)


def rounded(x, dtype):
    return float(np.dtype(dtype).type(x))


# ------------------------------------------------------------------------------------------------
# calling the kernel
# ------------------------------------------------------------------------------------------------
def run_softmax(backend, api, Y, M, lam, beta, lam_step=False, alias=False):
    """(Z, lam_after, sums); sums is None through the public function."""
    if api == "public":
        assert not lam_step
        lam_before = lam.copy()
        Z = kernels.softmax_z(Y, M, lam, beta, backend=backend)
        np.testing.assert_array_equal(lam, lam_before)
        return Z, lam, None
    k = _backend.get(backend)
    lam = lam.copy()
    if alias:
        Z = M.copy()
        sums = k.softmax_z_update(Y, Z, lam, beta, lam_step, Z)
    else:
        Z = np.empty_like(M)
        M_before = M.copy()
        sums = k.softmax_z_update(Y, M, lam, beta, lam_step, Z)
        np.testing.assert_array_equal(M, M_before)
    assert isinstance(sums, tuple) and len(sums) == 3 and all(type(s) is float for s in sums)
    return Z, lam, sums


# ------------------------------------------------------------------------------------------------
# checks
# ------------------------------------------------------------------------------------------------
def _row(a, i):
    return [float(v) for v in a[i]]


def grad_bound(y, m, lam, z, b_d, dtype):
    """The optimality bound of the module docstring for one sample (lists of floats)."""
    c = 2.0 * b_d
    zmax = max(abs(v) for v in z)
    base = 1.0 + max(abs(v) for v in lam) + max(abs(v) for v in y) + c * max(abs(v) for v in m)
    rounding = (1.0 + c / 2.0) * eps(dtype) * zmax if dtype == np.float32 else 0.0
    return TOL[dtype] * (base + c * zmax) + 16 * EPS64 * zmax + rounding + 8 * EPS64 * (base + (1 + c) * zmax)


def check_optimal(Z, Y, M, L, beta, dtype, where=""):
    """Every row of the stored Z meets the optimality bound; returns the gradients (lists)."""
    b_d = rounded(beta, dtype)
    grads = []
    for i in range(Z.shape[0]):
        y, m, lam, z = _row(Y, i), _row(M, i), _row(L, i), _row(Z, i)
        g = R.softmax_gradient(z, y, m, lam, b_d)
        bound = grad_bound(y, m, lam, z, b_d, dtype)
        assert max(abs(v) for v in g) <= bound, (where, i, beta, max(abs(v) for v in g), bound, m, lam, y, z)
        grads.append(g)
    return grads


def check_against_reference(Z, Y, M, L, beta, dtype, ref, where="", ref_exact=True):
    b_d = rounded(beta, dtype)
    c = 2.0 * b_d
    Zr, _, _, _, _ = ref
    for i in range(Z.shape[0]):
        y, m, lam, z = _row(Y, i), _row(M, i), _row(L, i), _row(Z, i)
        zr = Zr[i]
        g = R.softmax_gradient(z, y, m, lam, b_d)
        gr = R.softmax_gradient(zr, y, m, lam, b_d)
        K = len(z)
        zmax = max(max(abs(v) for v in z), max(abs(v) for v in zr))
        base = 1.0 + max(abs(v) for v in lam) + max(abs(v) for v in y) + c * max(abs(v) for v in m)
        noise = 8 * EPS64 * math.sqrt(K) * (base + (1 + c) * zmax)
        # the reference is a minimiser to the rounding level: z = t - omega with t = m + (y - lam)/c
        # carries an absolute error of a few eps |t|, which moves g by (2 + c) times that
        if ref_exact:
            tmax = max(abs(a + (b - d) / c) for a, b, d in zip(m, y, lam))
            assert max(abs(v) for v in gr) <= 64 * EPS64 * (base + (1 + c) * (zmax + tmax)), ("reference", i, gr)
        bound = (math.hypot(*g) + math.hypot(*gr) + noise) / c
        err = max(abs(a - b) for a, b in zip(z, zr))
        assert err <= bound, (where, i, beta, err, bound, z, zr)


def check_sums(Z, Y, M, L, lam_after, sums, beta, lam_step, dtype):
    loss_sum, lam_dot_z, rz = sums
    dt = np.dtype(dtype).type
    if lam_step:
        np.testing.assert_array_equal(lam_after, L + dt(beta) * (Z - M))
    else:
        np.testing.assert_array_equal(lam_after, L)
    Z64, Y64, M64, L64 = (a.astype(np.float64) for a in (Z, Y, M, L))
    ce = [R.cross_entropy(_row(Z64, i), _row(Y64, i)) for i in range(Z.shape[0])]
    spread = np.sum(1.0 + np.sum(np.abs(Y64), axis=1) * (Z64.max(axis=1) - Z64.min(axis=1)))
    assert abs(loss_sum - math.fsum(ce)) <= 8 * EPS64 * Z.shape[1] * spread + 1e-12 * math.fsum(abs(v) for v in ce)
    r = (Z - M).astype(np.float64)
    assert lam_dot_z == pytest.approx(float(np.sum(L64 * Z64)), rel=1e-12, abs=1e-12 * float(np.sum(np.abs(L64 * Z64))) + 1e-300)
    assert rz == pytest.approx(float(np.sum(r * r)), rel=1e-12, abs=1e-300)


# ------------------------------------------------------------------------------------------------
# inputs
# ------------------------------------------------------------------------------------------------
PENALTIES = (1e-8, 1e-3, 0.5, 1.0, 10.0, 1e8)


def make_case(rng, n, K, m_scale, lam_scale, soft=False):
    Y = np.eye(K)[rng.integers(0, K, n)]
    if soft:
        Y[: n // 2] = rng.dirichlet(np.ones(K), size=n // 2)
    M = rng.standard_normal((n, K)) * m_scale
    L = rng.standard_normal((n, K)) * lam_scale
    return Y, M, L


def batches(dtype):
    """[(name, Y, M, lam, beta)] in the dtype: random, soft labels, extremes."""
    rng = np.random.default_rng(2024)
    out = []
    for beta in PENALTIES:
        for K in (2, 3, 10):
            Y, M, L = make_case(rng, 12, K, 3.0, 1.0, soft=True)
            L[:3] = 0.0  # the paper's lam = 0 start
            M[3] = 0.0
            out.append((f"K{K}-beta{beta:g}", Y, M, L, beta))
        Y, M, L = make_case(rng, 4, 2, 1e6, 1.0)  # huge |m|
        out.append((f"K2-hugem-beta{beta:g}", Y, M, L, beta))
    for beta in (1e-8, 1.0, 1e8):  # K = 100, few rows: the reference is slow there
        Y, M, L = make_case(rng, 3, 100, 3.0, 1.0)
        out.append((f"K100-beta{beta:g}", Y, M, L, beta))
        Y, M, L = make_case(rng, 2, 100, 1e6, 1.0)
        out.append((f"K100-hugem-beta{beta:g}", Y, M, L, beta))
    return [(name, Y.astype(dtype), M.astype(dtype), L.astype(dtype), beta) for name, Y, M, L, beta in out]


@functools.lru_cache(maxsize=None)
def reference_for(dtype):
    return [R.softmax_z_update(Y, M, L, rounded(beta, dtype), False) for _, Y, M, L, beta in batches(dtype)]


# ------------------------------------------------------------------------------------------------
# against the reference
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_softmax_matches_reference(backend, dtype, api):
    for (name, Y, M, L, beta), ref in zip(batches(dtype), reference_for(dtype)):
        Z, lam_after, sums = run_softmax(backend, api, Y, M, L, beta)
        assert Z.dtype == dtype and Z.shape == M.shape
        check_optimal(Z, Y, M, L, beta, dtype, name)
        check_against_reference(Z, Y, M, L, beta, dtype, ref, name)
        if sums is not None:
            check_sums(Z, Y, M, L, lam_after, sums, beta, False, dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_softmax_lam_step_and_aliasing(backend, dtype):
    """lam_step adds beta (z - m) to lam in the dtype and changes neither z nor the sums; out may be M."""
    rng = np.random.default_rng(5)
    for beta in (1e-3, 1.0, 1e3):
        Y, M, L = (a.astype(dtype) for a in make_case(rng, 40, 10, 3.0, 1.0, soft=True))
        Z0, lam0, s0 = run_softmax(backend, "low", Y, M, L, beta, lam_step=False)
        Z1, lam1, s1 = run_softmax(backend, "low", Y, M, L, beta, lam_step=True)
        Z2, lam2, s2 = run_softmax(backend, "low", Y, M, L, beta, lam_step=True, alias=True)
        np.testing.assert_array_equal(Z0, Z1)
        np.testing.assert_array_equal(Z0, Z2)
        np.testing.assert_array_equal(lam1, lam2)
        assert s0 == s1 == s2  # lam_dot_z uses the old lam in every case
        check_sums(Z0, Y, M, L, lam0, s0, beta, False, dtype)
        check_sums(Z1, Y, M, L, lam1, s1, beta, True, dtype)
        assert not np.array_equal(lam1, L)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_backends_agree(compiled_backend, dtype):
    """The three twins run one algorithm: each compiled build's z agree with the NumPy twin's within
    the strong-convexity bound of the reference check, with both gradients measured."""
    rng = np.random.default_rng(11)
    for beta in (1e-3, 1.0, 1e3):
        Y, M, L = (a.astype(dtype) for a in make_case(rng, 200, 10, 3.0, 1.0, soft=True))
        Z = run_softmax(compiled_backend, "low", Y, M, L, beta)[0]
        Z_numpy = run_softmax("numpy", "low", Y, M, L, beta)[0]
        ref = ([_row(Z_numpy, i) for i in range(200)], None, None, None, None)
        check_against_reference(Z, Y, M, L, beta, dtype, ref, compiled_backend, ref_exact=False)


# ------------------------------------------------------------------------------------------------
# against brute force
# ------------------------------------------------------------------------------------------------
def objective_scale(z, y, m, lam, b_d):
    return (
        1.0
        + abs(R.logsumexp(z))
        + sum(abs(a * b) for a, b in zip(y, z))
        + sum(abs(a * b) for a, b in zip(lam, z))
        + b_d * sum((abs(a) + abs(b)) ** 2 for a, b in zip(z, m))
    )


def check_no_worse_than(z, zb, fb, y, m, lam, b_d, where):
    g = R.softmax_gradient(z, y, m, lam, b_d)
    fk = R.softmax_objective(z, y, m, lam, b_d)
    scale = objective_scale(z, y, m, lam, b_d) + objective_scale(zb, y, m, lam, b_d)
    bound = math.fsum(v * v for v in g) / (4.0 * b_d) + 16 * EPS64 * scale
    assert fk <= fb + bound, (where, fk, fb, bound, z, zb)


@pytest.mark.parametrize("alias", [False, True], ids=["", "alias"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_k2_no_worse_than_brute_force(backend, dtype, alias):
    rng = np.random.default_rng(21)
    for beta in PENALTIES:
        for m_scale, lam_scale in ((1.0, 0.0), (3.0, 1.0), (1e6, 1.0), (0.0, 0.0)):
            Y, M, L = (a.astype(dtype) for a in make_case(rng, 6, 2, m_scale, lam_scale, soft=True))
            Z, _, _ = run_softmax(backend, "low", Y, M, L, beta, alias=alias)
            b_d = rounded(beta, dtype)
            for i in range(Z.shape[0]):
                y, m, lam = _row(Y, i), _row(M, i), _row(L, i)
                zb, fb = R.softmax_brute_k2(y, m, lam, b_d)
                check_no_worse_than(_row(Z, i), zb, fb, y, m, lam, b_d, (beta, m_scale, i))


def brute_k3(y, m, lam, beta, z0, radius):
    """Zooming grid search in 3-D, knowing only the objective: 21^3 points around the best so far,
    the box shrunk 4x each round (a convex function's minimiser stays inside), until the box is
    below 1e-13 of the scale of z.  Returns (z, f)."""
    y, m, lam = (np.array(a, dtype=np.float64) for a in (y, m, lam))
    axis = np.linspace(-1.0, 1.0, 21)
    G = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1).reshape(-1, 3)
    best = np.array(z0, dtype=np.float64)
    while radius > 1e-13 * (1.0 + np.abs(best).max()):
        P = best + radius * G
        mx = P.max(axis=1, keepdims=True)
        lse = mx[:, 0] + np.log(np.exp(P - mx).sum(axis=1))
        f = lse + P @ (lam - y) + beta * ((P - m) ** 2).sum(axis=1)
        best = P[int(np.argmin(f))]
        radius /= 4.0
    z = [float(v) for v in best]
    return z, R.softmax_objective(z, list(y), list(m), list(lam), beta)


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_k3_no_worse_than_brute_force(backend, dtype):
    rng = np.random.default_rng(31)
    for beta in (0.1, 1.0, 10.0):
        Y, M, L = (a.astype(dtype) for a in make_case(rng, 5, 3, 2.0, 0.5, soft=True))
        Z, _, _ = run_softmax(backend, "low", Y, M, L, beta)
        b_d = rounded(beta, dtype)
        for i in range(Z.shape[0]):
            y, m, lam = _row(Y, i), _row(M, i), _row(L, i)
            z0 = [a - b / (2 * b_d) for a, b in zip(m, lam)]  # the minimiser without CE; the
            radius = 2.0 / (2 * b_d) + 2.0  # solution is within 1/c (max-norm) of it
            zb, fb = brute_k3(y, m, lam, b_d, z0, radius)
            check_no_worse_than(_row(Z, i), zb, fb, y, m, lam, b_d, (beta, i))


# ------------------------------------------------------------------------------------------------
# random inputs: optimality
# ------------------------------------------------------------------------------------------------
def _magnitude(lo, hi):
    return st.one_of(st.just(0.0), st.builds(lambda s, x: s * 10.0**x, st.sampled_from((-1.0, 1.0)), st.floats(lo, hi)))


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    K=st.sampled_from((2, 3, 5, 10, 37)),
    seed=st.integers(0, 2**32 - 1),
    m_mag=_magnitude(-3, 6),
    lam_mag=_magnitude(-3, 3),
    beta=st.builds(lambda x: 10.0**x, st.floats(-8, 8)),
    soft=st.booleans(),
)
def test_softmax_optimal_on_random_inputs(available_backends, K, seed, m_mag, lam_mag, beta, soft):
    rng = np.random.default_rng(seed)
    Y, M, L = make_case(rng, 3, K, abs(m_mag), abs(lam_mag), soft=soft)
    for dtype in DTYPES:
        Yd, Md, Ld = (a.astype(dtype) for a in (Y, M, L))
        for backend in available_backends:
            Z, _, _ = run_softmax(backend, "low", Yd, Md, Ld, beta)
            check_optimal(Z, Yd, Md, Ld, beta, dtype, (backend, dtype))


# ------------------------------------------------------------------------------------------------
# no allocation per sample, compilation, non-finite input, the public function
# ------------------------------------------------------------------------------------------------
def test_numba_allocates_per_call_not_per_sample(numba_kernels):
    """The Numba kernel's allocations (its scratch vectors) do not grow with the number of samples.
    The Cython kernel mallocs its one scratch block once per call, outside the sample loop (see
    _kernels.pyx); the NumPy twin works on whole arrays."""
    from numba.core.runtime import _nrt_python, rtsys

    k = numba_kernels
    _nrt_python.memsys_enable_stats()
    counts = []
    for n in (1, 1000):
        Y, M, L = make_case(np.random.default_rng(n), n, 10, 3.0, 1.0)
        Z = np.empty_like(M)
        k.softmax_z_update(Y, M, L, 1.0, True, Z)  # compiled already
        before = rtsys.get_allocation_stats()
        k.softmax_z_update(Y, M, L, 1.0, True, Z)
        after = rtsys.get_allocation_stats()
        counts.append(after.alloc - before.alloc)
    assert counts[0] == counts[1] <= 8, counts


def test_numba_warmup_compiles_softmax(numba_kernels):
    k = numba_kernels
    k.warmup()
    n = len(k.softmax_z_update.signatures)
    assert n >= 2
    for dtype in DTYPES:
        Y = np.eye(3, dtype=dtype)
        for lam_step in (False, True):
            k.softmax_z_update(Y, Y.copy(), np.zeros_like(Y), 1.0, lam_step, np.empty_like(Y))
        kernels.softmax_z(Y, Y, np.zeros_like(Y), 2.0, backend="numba")
    assert len(k.softmax_z_update.signatures) == n


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_non_finite_row_gives_nan_row_only(backend, dtype):
    rng = np.random.default_rng(3)
    Y, M, L = (a.astype(dtype) for a in make_case(rng, 4, 5, 1.0, 1.0))
    M[1, 2] = np.nan
    L[2, 0] = np.inf
    Z, _, sums = run_softmax(backend, "low", Y, M, L, 1.0)
    assert np.all(np.isnan(Z[1])) and np.all(np.isnan(Z[2]))
    assert np.all(np.isfinite(Z[[0, 3]]))
    check_optimal(Z[[0, 3]], Y[[0, 3]], M[[0, 3]], L[[0, 3]], 1.0, dtype)
    assert math.isnan(sums[0])


def test_public_function_shapes_and_dtypes(backend):
    Y = np.eye(4)[[0, 1, 2]]
    M = np.arange(12.0).reshape(3, 4)
    z = kernels.softmax_z(Y, M, np.zeros((3, 4)), 1.0, backend=backend)
    assert z.dtype == np.float64 and z.shape == (3, 4)
    z32 = kernels.softmax_z(Y, M.astype(np.float32), np.zeros((3, 4), np.float32), 1.0, backend=backend)
    assert z32.dtype == np.float32
    out = np.empty((3, 4))
    assert kernels.softmax_z(Y, M, np.zeros((3, 4)), 1.0, backend=backend, out=out) is out
    np.testing.assert_array_equal(out, z)
    # integer and Fortran-ordered inputs are converted
    zf = kernels.softmax_z(Y.astype(int), np.asfortranarray(M), np.zeros((3, 4)), 1.0, backend=backend)
    np.testing.assert_array_equal(zf, z)


_Y = np.eye(3)[[0, 1]]
_ok = np.zeros((2, 3))


@pytest.mark.parametrize(
    "call, exc, name",
    [
        pytest.param(lambda: kernels.softmax_z(np.array([0, 1]), _ok, _ok, 1.0), ValueError, "y", id="y-1d"),
        pytest.param(lambda: kernels.softmax_z(np.ones((2, 1)), np.zeros((2, 1)), np.zeros((2, 1)), 1.0), ValueError, "y", id="y-k1"),
        pytest.param(lambda: kernels.softmax_z(_Y, np.zeros((2, 4)), _ok, 1.0), ValueError, "m", id="m-shape"),
        pytest.param(lambda: kernels.softmax_z(_Y, _ok, np.zeros((3, 3)), 1.0), ValueError, "lam", id="lam-shape"),
        pytest.param(lambda: kernels.softmax_z(_Y, _ok, _ok, 0.0), ValueError, "beta", id="beta-zero"),
        pytest.param(lambda: kernels.softmax_z(_Y, _ok, _ok, float("nan")), ValueError, "beta", id="beta-nan"),
        pytest.param(lambda: kernels.softmax_z(_Y, _ok, _ok, "x"), TypeError, "beta", id="beta-string"),
        pytest.param(lambda: kernels.softmax_z(_Y * 2, _ok, _ok, 1.0), ValueError, "y", id="y-sum-2"),
        pytest.param(lambda: kernels.softmax_z(-_Y, _ok, _ok, 1.0), ValueError, "y", id="y-negative"),
        pytest.param(lambda: kernels.softmax_z(np.array([["a", "b", "c"]] * 2), _ok, _ok, 1.0), TypeError, "y", id="y-strings"),
        pytest.param(lambda: kernels.softmax_z(_Y, _ok.astype(complex), _ok, 1.0), TypeError, "m", id="m-complex"),
        pytest.param(lambda: kernels.softmax_z(_Y, _ok, _ok, 1.0, backend="fortran"), ValueError, "backend", id="backend"),
        pytest.param(lambda: kernels.softmax_z(_Y, _ok, _ok, 1.0, out=np.empty((2, 3), np.float32)), ValueError, "out", id="out-dtype"),
        pytest.param(lambda: kernels.output_z(_ok, _ok, _ok, 1.0, loss="cross_entropy"), ValueError, "loss", id="output_z-ce"),
    ],
)
def test_bad_input_names_the_argument(call, exc, name):
    with pytest.raises(exc, match=rf"^{name}\b"):
        call()


# ------------------------------------------------------------------------------------------------
# fastadmm._losses: the cross-entropy loss, outputs and softmax
# ------------------------------------------------------------------------------------------------
def test_losses_cross_entropy():
    rng = np.random.default_rng(8)
    assert _losses.n_outputs(2) == 1 and _losses.n_outputs(2, "cross_entropy") == 2
    assert _losses.n_outputs(5) == 5 == _losses.n_outputs(5, "cross_entropy")
    T = _losses.targets(np.array([1, 0, 1]), 2, np.float32, "cross_entropy")
    np.testing.assert_array_equal(T, [[0, 1], [1, 0], [0, 1]])
    assert T.dtype == np.float32
    np.testing.assert_array_equal(_losses.targets(np.array([1, 0]), 2, np.float64), [[1], [0]])
    for scale in (1.0, 1e3, 1e6):
        out = rng.standard_normal((7, 4)) * scale
        Y = np.eye(4)[rng.integers(0, 4, 7)]
        Y[:3] = rng.dirichlet(np.ones(4), 3)
        want = math.fsum(R.cross_entropy(_row(out, i), _row(Y, i)) for i in range(7))
        got = _losses.loss_sum(out, Y, "cross_entropy")
        assert abs(got - want) <= 64 * EPS64 * (7 + np.abs(out).max() * 7 * 4), (scale, got, want)
        P = _losses.softmax(out)
        for i in range(7):
            np.testing.assert_allclose(P[i], R.softmax_list(_row(out, i)), rtol=1e-13, atol=1e-300)
        np.testing.assert_array_equal(_losses.predict_index(out), np.argmax(out, axis=1))
    assert _losses.softmax(np.zeros((2, 3), np.float32)).dtype == np.float32
    assert "cross_entropy" in _losses.LOSSES
