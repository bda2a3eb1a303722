"""The elementwise z-update kernels, every backend, against the slow reference and brute force.

Every backend ("cython", "numba", "numpy") is checked through its low-level module
(``fastadmm._backend.get(name)``, the kernel contract of ``_kernel_api.py``) and through the
public ``fastadmm.kernels.relu_z`` / ``output_z``, in float32 and float64, once per build that is
available here (``conftest.py``: the portable and the AVX2 build of the Cython kernels, Numba,
NumPy); an absent build's tests skip with the reason (``FASTADMM_REQUIRE_BACKENDS`` makes them fail).

Tolerances, and why they are what they are.  ``eps`` is the machine epsilon of the dtype under
test; every reference value is computed in float64 from the inputs *as the kernel sees them*
(rounded to the dtype, beta and gamma rounded to the dtype as the kernels do).

* z against the reference: within ``8 eps ((|gamma a| + |beta m|)/(gamma + beta) + |z|)`` (ReLU),
  ``8 eps ((|y| + |lam|/2 + |beta m|)/(1 + beta) + |z|)`` (mse) or ``8 eps (|m| + |lam|/(2 beta) +
  1/(2 beta) + 1)`` (hinge).  zp is a few roundings of
  (gamma a + beta m)/(gamma + beta), whose terms may cancel, so its error is a few eps of the terms'
  magnitude, not of z; the output closed forms are likewise a few roundings of their terms.  In
  float64 the kernels perform the reference's own operations in its order, so there the two agree
  to the last bit in practice.
* The ReLU update may pick the other candidate than the reference only at a (near-)tie: then the
  two objectives must agree within ``16 eps scale``, ``scale = gamma (|a| + |zp|)^2 + beta (|zp| +
  |m|)^2 + gamma a^2 + beta m^2``, which bounds every term of both candidates' objectives: the
  kernel computes each objective with a handful of roundings of such terms (plus the rounding of
  zp propagated through them), so it cannot order two objectives closer than that.
* Brute force: the objective at the kernel's z may exceed the smallest objective found by search
  by at most ``16 eps scale`` (scale bounding the objective's terms at both points, as above): the
  kernel's z is the exact minimiser up to the rounding just described.
* Sums: against float64 sums of the kernel's own outputs within 1e-12 relative (only the order of
  summation differs); against the reference within the triangle bound of the per-entry differences.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastadmm import _backend, kernels

import reference as R

DTYPES = (np.float32, np.float64)
APIS = ("low", "public")
LOSS_NAMES = {0: "mse", 1: "hinge"}


def eps(dtype):
    return float(np.finfo(dtype).eps)


def rounded(x, dtype):
    """The value the kernels compute with: x rounded to dtype, as a Python float."""
    return float(dtype(x))


# ------------------------------------------------------------------------------------------------
# calling the kernels
# ------------------------------------------------------------------------------------------------
def run_relu(backend, api, a, m, beta, gamma, alias=False):
    """(z, hz, rz, ra) from one backend; hz, rz, ra are None through the public function."""
    if api == "public":
        return kernels.relu_z(a, m, beta, gamma, backend=backend), None, None, None
    k = _backend.get(backend)
    hz = np.empty_like(m)
    if alias:
        z = m.copy()
        rz, ra = k.relu_z_update(a, z, beta, gamma, z, hz)
    else:
        z = np.empty_like(m)
        m_before = m.copy()
        rz, ra = k.relu_z_update(a, m, beta, gamma, z, hz)
        np.testing.assert_array_equal(m, m_before)
    assert type(rz) is float and type(ra) is float
    return z, hz, rz, ra


def run_output(backend, api, y, m, lam, beta, loss, lam_step=False, alias=False):
    """(z, lam_after, loss_sum, lam_dot_z, rz); the sums are None through the public function."""
    if api == "public":
        assert not lam_step
        lam_before = lam.copy()
        z = kernels.output_z(y, m, lam, beta, loss=LOSS_NAMES[loss], backend=backend)
        np.testing.assert_array_equal(lam, lam_before)  # the public function leaves lam alone
        return z, lam, None, None, None
    k = _backend.get(backend)
    lam = lam.copy()
    if alias:
        z = m.copy()
        sums = k.output_z_update(y, z, lam, beta, loss, lam_step, z)
    else:
        z = np.empty_like(m)
        sums = k.output_z_update(y, m, lam, beta, loss, lam_step, z)
    assert isinstance(sums, tuple) and len(sums) == 3 and all(type(s) is float for s in sums)
    return (z, lam) + sums


# ------------------------------------------------------------------------------------------------
# test inputs
# ------------------------------------------------------------------------------------------------
PENALTIES = (1e-8, 1e-3, 1.0, 10.0, 1e3, 1e8)


def relu_batches(dtype):
    """[(a, m, beta, gamma, tie_mask)]: random, special and tied entries for many beta, gamma."""
    rng = np.random.default_rng(1234)
    batches = []
    pairs = [(b, g) for b in PENALTIES for g in PENALTIES]
    # exact ties (gamma = 3 beta, a = 2^p > 0, m = -a: zp = a/2 and both objectives are 3 beta a^2,
    # exactly in both dtypes) and the near ties of gamma = 8 beta, m = -2a (zp = 2a/3 is rounded)
    pairs += [(2.0**q, 3 * 2.0**q) for q in (-20, -1, 0, 3, 20)] + [(1.0, 8.0), (0.125, 1.0)]
    for beta, gamma in pairs:
        n = 300
        scale = 10.0 ** rng.integers(-4, 5, size=n)
        a = rng.standard_normal(n) * scale
        m = rng.standard_normal(n) * 10.0 ** rng.integers(-4, 5, size=n)
        # special entries: zeros, a = 0, m = 0, signs, huge and tiny magnitudes
        special = [
            (0.0, 0.0), (0.0, 1.0), (0.0, -1.0), (1.0, 0.0), (-1.0, 0.0), (2.0, 2.0), (-2.0, -2.0),
            (1e6, -1e6), (-1e6, 1e6), (1e-6, -1e-6), (3.5, -0.25), (-0.25, 3.5), (0.0, -0.0),
        ]
        for i, (ai, mi) in enumerate(special):
            a[i], m[i] = ai, mi
        tie = np.zeros(n, dtype=bool)
        b_d, g_d = rounded(beta, dtype), rounded(gamma, dtype)
        if g_d == 3 * b_d:  # exact ties
            p = rng.integers(-10, 11, size=40).astype(float)
            a[20:60] = 2.0**p
            m[20:60] = -a[20:60]
            tie[20:60] = True
            a[60:70] = -(2.0 ** p[:10])  # a < 0, m = -a > 0: both candidates 0
            m[60:70] = 2.0 ** p[:10]
        # near ties for these beta, gamma: m = -a (sqrt((gamma + beta)/beta) - 1), rounded
        k = math.sqrt((g_d + b_d) / b_d) - 1.0
        a[70:110] = np.abs(rng.standard_normal(40)) * 10.0 ** rng.integers(-3, 4, size=40)
        m[70:110] = -a[70:110] * k
        batches.append((a.astype(dtype), m.astype(dtype), beta, gamma, tie))
    return batches


def output_batches(dtype, loss):
    """[(y, m, lam, beta)]: random and special entries for many beta; 0/1 targets."""
    rng = np.random.default_rng(99 + loss)
    batches = []
    for beta in PENALTIES + (0.5, 2.0**-20):
        n = 300
        y = (rng.random(n) < 0.5).astype(dtype)
        m = (rng.standard_normal(n) * 10.0 ** rng.integers(-4, 4, size=n)).astype(dtype)
        lam = (rng.standard_normal(n) * 10.0 ** rng.integers(-4, 3, size=n)).astype(dtype)
        lam[:30] = 0.0  # the paper's lam = 0 start
        m[30:40] = 0.0
        m[40:50], y[40:50] = 1.0, 1.0  # on the kinks
        m[50:60], y[50:60] = 0.0, 0.0
        # on the hinge kinks: with s = 1/(2 beta), t = m - lam/(2 beta) = 1 - s (y = 1: t + s = 1)
        # and t = s (y = 0: t - s = 0), up to rounding
        m[60:70], lam[60:70], y[60:70] = 1.0, 1.0, 1.0
        m[70:80], lam[70:80], y[70:80] = 0.0, -1.0, 0.0
        batches.append((y, m, lam, beta))
    return batches


# ------------------------------------------------------------------------------------------------
# checks
# ------------------------------------------------------------------------------------------------
def relu_scale(a, m, zp, beta, gamma):
    return gamma * (abs(a) + abs(zp)) ** 2 + beta * (abs(zp) + abs(m)) ** 2 + gamma * a * a + beta * m * m


def check_relu_against_reference(z, hz, rz, ra, a, m, beta, gamma, tie, dtype):
    e = eps(dtype)
    b_d, g_d = rounded(beta, dtype), rounded(gamma, dtype)
    zr, hzr, rzr, rar = R.relu_z_update(a, m, b_d, g_d)
    a64, m64, z64 = a.astype(np.float64), m.astype(np.float64), z.astype(np.float64)
    n_branch = 0
    for i in range(len(a)):
        ai, mi, zk = float(a64[i]), float(m64[i]), float(z64[i])
        zp, zn = R.relu_candidates(ai, mi, b_d, g_d)
        tol_z = 8 * e * ((abs(g_d * ai) + abs(b_d * mi)) / (g_d + b_d) + abs(zr[i]))
        if tie[i]:
            assert zk == zp == ai / 2, ("a tie goes to zp", i, ai, mi, zk)
        if abs(zk - zr[i]) <= tol_z:
            continue
        # another branch than the reference's: only at a near-tie, with equal objectives
        n_branch += 1
        other = zn if abs(zr[i] - zp) <= abs(zr[i] - zn) else zp
        assert abs(zk - other) <= tol_z, ("z is neither candidate", i, ai, mi, zk, zp, zn)
        fk = R.relu_objective(zk, ai, mi, b_d, g_d)
        fr = R.relu_objective(zr[i], ai, mi, b_d, g_d)
        assert abs(fk - fr) <= 16 * e * relu_scale(ai, mi, zp, b_d, g_d), ("not a tie", i, ai, mi, zk, zr[i], fk, fr)
    if hz is not None:
        # hz = relu(z) exactly
        assert np.array_equal(hz, np.maximum(z, 0))
        assert hz.dtype == z.dtype
        # sums: the contract's formulas applied to the kernel's own outputs (order of summation aside)
        rz_own = float(np.sum((z - m).astype(np.float64) ** 2))
        ra_own = float(np.sum((a - hz).astype(np.float64) ** 2))
        assert rz == pytest.approx(rz_own, rel=1e-12, abs=1e-300)
        assert ra == pytest.approx(ra_own, rel=1e-12, abs=1e-300)
        # and against the reference, within the triangle bound of the entries' differences
        zr64 = np.array(zr)
        d = np.abs(z64 - zr64)
        bound_rz = np.sum(d * (np.abs(z64 - m64) + np.abs(zr64 - m64))) + 4 * e * rz_own + 1e-12 * rzr
        bound_ra = np.sum(d * (np.abs(a64) * 2 + np.abs(z64) + np.abs(zr64))) + 4 * e * ra_own + 1e-12 * rar
        assert abs(rz - rzr) <= bound_rz
        assert abs(ra - rar) <= bound_ra
    return n_branch


def output_tol_z(yi, mi, li, zi, b_d, loss, e):
    """A few roundings of the closed form's terms (see the module docstring)."""
    if loss == 0:  # (y - lam/2 + beta m) / (1 + beta)
        return 8 * e * ((abs(yi) + abs(li) / 2 + abs(b_d * mi)) / (1 + b_d) + abs(zi))
    # t = m - lam/(2 beta), then t +- 1/(2 beta), clamped by 0 or 1
    return 8 * e * (abs(mi) + abs(li) / (2 * b_d) + 1 / (2 * b_d) + 1.0)


def check_output_against_reference(res, y, m, lam, beta, loss, lam_step, dtype):
    z, lam_after, loss_sum, lam_dot_z, rz = res
    e = eps(dtype)
    b_d = rounded(beta, dtype)
    zr, lamr, lsr, ldr, rzr = R.output_z_update(y, m, lam, b_d, loss, lam_step)
    y64, m64, l64, z64 = (v.astype(np.float64) for v in (y, m, lam, z))
    zr64 = np.array(zr)
    tol = np.array([output_tol_z(y64[i], m64[i], l64[i], zr[i], b_d, loss, e) for i in range(len(m))])
    bad = np.flatnonzero(np.abs(z64 - zr64) > tol)
    assert bad.size == 0, [(int(i), y[i], m[i], lam[i], z[i], zr[i]) for i in bad[:5]]
    if loss_sum is None:
        return
    # lam step: lam + beta*(z - m) in the dtype, exactly as the contract says; lam unchanged otherwise
    if lam_step:
        dt = np.dtype(dtype).type
        np.testing.assert_array_equal(lam_after, lam + dt(beta) * (z - m))
        assert np.all(np.abs(lam_after.astype(np.float64) - np.array(lamr)) <= b_d * tol + 4 * e * np.abs(lamr) + 4 * e * b_d * np.abs(z64 - m64))
    else:
        np.testing.assert_array_equal(lam_after, lam)
    # the sums: own outputs (summation order aside), then the reference (triangle bound)
    lv = (z64 - y64) ** 2 if loss == 0 else np.where(y64 > 0.5, np.maximum(1 - z64, 0), np.maximum(z64, 0))
    r = (z - m).astype(np.float64)
    assert loss_sum == pytest.approx(float(np.sum(lv)), rel=1e-12, abs=1e-300)
    assert lam_dot_z == pytest.approx(float(np.dot(l64, z64)), rel=1e-12, abs=1e-12 * float(np.dot(np.abs(l64), np.abs(z64))) + 1e-300)
    assert rz == pytest.approx(float(np.dot(r, r)), rel=1e-12, abs=1e-300)
    d = np.abs(z64 - zr64)
    lip = 2 * (np.abs(z64) + np.abs(zr64) + np.abs(y64)) if loss == 0 else np.ones_like(d)
    assert abs(loss_sum - lsr) <= np.sum(d * lip) + 4 * e * np.sum(lv) + 1e-12 * abs(lsr)
    assert abs(lam_dot_z - ldr) <= np.sum(d * np.abs(l64)) + 1e-12 * float(np.dot(np.abs(l64), np.abs(z64))) + 1e-300
    assert abs(rz - rzr) <= np.sum(d * (np.abs(z64 - m64) + np.abs(zr64 - m64))) + 4 * e * float(np.dot(r, r)) + 1e-12 * rzr


# ------------------------------------------------------------------------------------------------
# the backends exist
# ------------------------------------------------------------------------------------------------
def test_backend_imports(backend):
    """Each available build has the kernel contract (a stale Cython build fails in the fixture)."""
    k = _backend.get(backend)
    assert callable(k.relu_z_update) and callable(k.output_z_update)
    if backend == "cython":
        assert k.KERNEL_ABI == _backend.KERNEL_ABI


def test_numba_warmup_compiles_every_signature(numba_kernels):
    k = numba_kernels
    k.warmup()
    n_relu, n_out = len(k.relu_z_update.signatures), len(k.output_z_update.signatures)
    assert n_relu >= 2 and n_out >= 2  # float32, float64
    # the calls the training loop and the public functions make compile nothing more
    for dtype in DTYPES:
        v = np.ones(5, dtype)
        k.relu_z_update(v, v.copy(), 1.0, 10.0, v.copy(), v.copy())
        for loss in (0, 1):
            for lam_step in (False, True):
                w = v.copy()
                k.output_z_update(v, w, v.copy(), 1.0, loss, lam_step, w)
    assert (len(k.relu_z_update.signatures), len(k.output_z_update.signatures)) == (n_relu, n_out)


# ------------------------------------------------------------------------------------------------
# against the reference
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_relu_matches_reference(backend, dtype, api):
    # Another branch than the reference's is taken only at near-ties (checked entry by entry).  In
    # float32 these are common with inputs of unrelated magnitudes: a = -325, m = -0.003 gives
    # fp - fn = beta m^2 ~ 1e-5 against objectives ~ 1e6, below float32 resolution.
    for a, m, beta, gamma, tie in relu_batches(dtype):
        z, hz, rz, ra = run_relu(backend, api, a, m, beta, gamma)
        assert z.dtype == dtype and z.shape == a.shape
        check_relu_against_reference(z, hz, rz, ra, a, m, beta, gamma, tie, dtype)


@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("loss", (0, 1), ids=["mse", "hinge"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_output_matches_reference(backend, dtype, loss, api):
    for y, m, lam, beta in output_batches(dtype, loss):
        for lam_step in (False, True) if api == "low" else (False,):
            res = run_output(backend, api, y, m, lam, beta, loss, lam_step)
            assert res[0].dtype == dtype
            check_output_against_reference(res, y, m, lam, beta, loss, lam_step, dtype)


# ------------------------------------------------------------------------------------------------
# against brute-force minimisation
# ------------------------------------------------------------------------------------------------
# the entries of each batch searched by brute force: the special ones, some (exact) ties, some near
# ties, some on the kinks and some random ones
_BRUTE_ENTRIES = np.r_[0:14, 20:24, 30:34, 40:44, 50:54, 60:64, 70:76, 110:300:12]


def _brute_subset(batches):
    return [tuple(v[_BRUTE_ENTRIES] if isinstance(v, np.ndarray) else v for v in b) for b in batches]


_BRUTE_CACHE: dict = {}


def _relu_brute_values(dtype):
    key = ("relu", dtype)
    if key not in _BRUTE_CACHE:
        out = []
        for a, m, beta, gamma, _ in _brute_subset(relu_batches(dtype)):
            b_d, g_d = rounded(beta, dtype), rounded(gamma, dtype)
            out.append([R.relu_brute(float(ai), float(mi), b_d, g_d)[1] for ai, mi in zip(a, m)])
        _BRUTE_CACHE[key] = out
    return _BRUTE_CACHE[key]


def _output_brute_values(dtype, loss):
    key = ("out", dtype, loss)
    if key not in _BRUTE_CACHE:
        out = []
        for y, m, lam, beta in _brute_subset(output_batches(dtype, loss)):
            b_d = rounded(beta, dtype)
            out.append(
                [R.output_brute(float(yi), float(mi), float(li), b_d, loss)[1] for yi, mi, li in zip(y, m, lam)]
            )
        _BRUTE_CACHE[key] = out
    return _BRUTE_CACHE[key]


@pytest.mark.parametrize("alias", (False, True), ids=["", "z_is_m"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_relu_no_worse_than_brute_force(backend, dtype, alias):
    e = eps(dtype)
    for (a, m, beta, gamma, _), fbrute in zip(_brute_subset(relu_batches(dtype)), _relu_brute_values(dtype)):
        z = run_relu(backend, "low", a, m, beta, gamma, alias=alias)[0]
        b_d, g_d = rounded(beta, dtype), rounded(gamma, dtype)
        for ai, mi, zk, fb in zip(a.astype(float), m.astype(float), z.astype(float), fbrute):
            fk = R.relu_objective(zk, ai, mi, b_d, g_d)
            zp, _ = R.relu_candidates(ai, mi, b_d, g_d)
            scale = relu_scale(ai, mi, max(zp, abs(zk)), b_d, g_d)
            assert fk <= fb + 16 * e * scale, (ai, mi, beta, gamma, zk, fk, fb)


@pytest.mark.parametrize("alias", (False, True), ids=["", "z_is_m"])
@pytest.mark.parametrize("loss", (0, 1), ids=["mse", "hinge"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_output_no_worse_than_brute_force(backend, dtype, loss, alias):
    e = eps(dtype)
    for (y, m, lam, beta), fbrute in zip(_brute_subset(output_batches(dtype, loss)), _output_brute_values(dtype, loss)):
        z = run_output(backend, "low", y, m, lam, beta, loss, lam_step=True, alias=alias)[0]
        b_d = rounded(beta, dtype)
        for yi, mi, li, zk, fb in zip(y.astype(float), m.astype(float), lam.astype(float), z.astype(float), fbrute):
            fk = R.output_objective(zk, yi, mi, li, b_d, loss)
            scale = abs(R.loss_value(zk, yi, loss)) + abs(li * zk) + b_d * (abs(zk) + abs(mi)) ** 2 + abs(fb) + 1.0
            assert fk <= fb + 16 * e * scale, (yi, mi, li, beta, zk, fk, fb)


# ------------------------------------------------------------------------------------------------
# the backends agree bit for bit; aliasing; lengths around the chunk size
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_compiled_backends_equal_numpy_bit_for_bit(compiled_backend, dtype):
    """Same operations in the same order in the dtype: identical arrays (needs no FMA contraction)."""
    backend = compiled_backend
    for a, m, beta, gamma, _ in relu_batches(dtype)[::3]:
        z, hz, rz, ra = run_relu(backend, "low", a, m, beta, gamma)
        z0, hz0, rz0, ra0 = run_relu("numpy", "low", a, m, beta, gamma)
        np.testing.assert_array_equal(z, z0)
        np.testing.assert_array_equal(hz, hz0)
        assert rz == pytest.approx(rz0, rel=1e-12, abs=1e-300) and ra == pytest.approx(ra0, rel=1e-12, abs=1e-300)
    for loss in (0, 1):
        for y, m, lam, beta in output_batches(dtype, loss)[::2]:
            res = run_output(backend, "low", y, m, lam, beta, loss, lam_step=True)
            res0 = run_output("numpy", "low", y, m, lam, beta, loss, lam_step=True)
            np.testing.assert_array_equal(res[0], res0[0])
            np.testing.assert_array_equal(res[1], res0[1])
            for s, s0 in zip(res[2:], res0[2:]):
                assert s == pytest.approx(s0, rel=1e-12, abs=1e-12 * (abs(res0[3]) + 1))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_non_finite_inputs_as_numpy(compiled_backend, dtype):
    """NaN and infinity (a diverging fit) come out exactly as from the NumPy backend, sums included."""
    backend = compiled_backend
    nan, inf = np.nan, np.inf
    a = np.array([nan, 1.0, nan, 0.0, inf, -inf, 1.0, 2.0, -inf], dtype)
    m = np.array([1.0, nan, nan, inf, 0.0, 1.0, -inf, -1.0, -1.0], dtype)
    y = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0], dtype)
    lam = np.array([0.0, 1.0, nan, 0.0, inf, 1.0, 0.0, -inf, 1.0], dtype)
    with np.errstate(all="ignore"):
        got = [run_relu(backend, "low", a, m, 1.0, 10.0)]
        want = [run_relu("numpy", "low", a, m, 1.0, 10.0)]
        for loss in (0, 1):
            got.append(run_output(backend, "low", y, m, lam, 1.0, loss, lam_step=True))
            want.append(run_output("numpy", "low", y, m, lam, 1.0, loss, lam_step=True))
    for g, w in zip(got, want):
        for x, x0 in zip(g, w):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(x0))  # NaN == NaN here


@pytest.mark.parametrize("n", (0, 1, 7, 255, 256, 257, 1000, 3 * 256 + 5))
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_aliasing_and_lengths(backend, dtype, n):
    """z_out may be m; every length (empty, tails of the compiled kernels' chunks) is handled."""
    rng = np.random.default_rng(n)
    a = rng.standard_normal(n).astype(dtype)
    m = rng.standard_normal(n).astype(dtype)
    y = (rng.random(n) < 0.5).astype(dtype)
    lam = rng.standard_normal(n).astype(dtype)
    z, hz, rz, ra = run_relu(backend, "low", a, m, 1.0, 10.0)
    za, hza, rza, raa = run_relu(backend, "low", a, m, 1.0, 10.0, alias=True)
    np.testing.assert_array_equal(z, za)
    np.testing.assert_array_equal(hz, hza)
    assert (rz, ra) == (rza, raa)
    check_relu_against_reference(z, hz, rz, ra, a, m, 1.0, 10.0, np.zeros(n, bool), dtype)
    if n == 0:
        assert (rz, ra) == (0.0, 0.0)
    for loss in (0, 1):
        res = run_output(backend, "low", y, m, lam, 0.7, loss, lam_step=True)
        resa = run_output(backend, "low", y, m, lam, 0.7, loss, lam_step=True, alias=True)
        np.testing.assert_array_equal(res[0], resa[0])
        np.testing.assert_array_equal(res[1], resa[1])
        assert res[2:] == resa[2:]
        check_output_against_reference(res, y, m, lam, 0.7, loss, True, dtype)
        if n == 0:
            assert res[2:] == (0.0, 0.0, 0.0)


def test_public_functions_shapes_and_dtypes(backend):
    """2-D and non-contiguous inputs, integer and mixed dtypes, out=: results as the flat kernel."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((7, 5))
    m = rng.standard_normal((5, 7)).T  # not C-contiguous
    z = kernels.relu_z(a, m, 1.0, 10.0, backend=backend)
    assert z.shape == (7, 5) and z.dtype == np.float64
    zf = run_relu("numpy", "low", np.ascontiguousarray(a).ravel(), np.ascontiguousarray(m).ravel(), 1.0, 10.0)[0]
    np.testing.assert_array_equal(z.ravel(), zf)
    # float32 with float32 stays float32; with float64 becomes float64; integers become float64
    assert kernels.relu_z(a.astype(np.float32), m.astype(np.float32), 1.0, 10.0, backend=backend).dtype == np.float32
    assert kernels.relu_z(a.astype(np.float32), m, 1.0, 10.0, backend=backend).dtype == np.float64
    assert kernels.relu_z(np.arange(6), -np.arange(6), 1.0, 10.0, backend=backend).dtype == np.float64
    out = np.empty((7, 5))
    assert kernels.relu_z(a, m, 1.0, 10.0, backend=backend, out=out) is out
    np.testing.assert_array_equal(out, z)
    y = (rng.random((7, 5)) < 0.5).astype(np.int64)
    lam = rng.standard_normal((7, 5))
    for loss in ("mse", "hinge"):
        zo = kernels.output_z(y, m, lam, 2.0, loss=loss, backend=backend)
        assert zo.shape == (7, 5) and zo.dtype == np.float64
        check_output_against_reference(
            (zo.ravel(), None, None, None, None),
            y.ravel().astype(np.float64), np.ascontiguousarray(m).ravel(), lam.ravel(), 2.0,
            {"mse": 0, "hinge": 1}[loss], False, np.float64,
        )


# ------------------------------------------------------------------------------------------------
# property-based: the kernel's z is no worse than any point of a dense grid
# ------------------------------------------------------------------------------------------------
def _magnitude(lo, hi):
    """Signed values of magnitude 10**lo .. 10**hi, and zero."""
    return st.one_of(
        st.just(0.0),
        st.builds(lambda s, x: s * 10.0**x, st.sampled_from((-1.0, 1.0)), st.floats(lo, hi)),
    )


_penalty = st.builds(lambda x: 10.0**x, st.floats(-8, 8))


def _dense_grid(points):
    """Uniform grid over the points' span widened by the span, plus fine grids around each point."""
    lo, hi = min(points), max(points)
    width = max(hi - lo, 1.0)
    parts = [np.linspace(lo - width, hi + width, 2001)]
    for p in points:
        for rel in (1e-2, 1e-5, 1e-8):
            h = rel * max(abs(p), width)
            parts.append(np.linspace(p - h, p + h, 41))
    return np.concatenate(parts)


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(a=_magnitude(-6, 6), m=_magnitude(-6, 6), beta=_penalty, gamma=_penalty)
def test_relu_property_dense_grid(available_backends, a, m, beta, gamma):
    for dtype in DTYPES:
        e = eps(dtype)
        av, mv = np.array([a], dtype), np.array([m], dtype)
        ad, md, b_d, g_d = float(av[0]), float(mv[0]), rounded(beta, dtype), rounded(gamma, dtype)
        grid = _dense_grid([ad, md, 0.0])
        fgrid = float(np.min(R.relu_objective_vec(grid, ad, md, b_d, g_d)))
        for backend in available_backends:
            for api in APIS:
                zk = float(run_relu(backend, api, av, mv, beta, gamma)[0][0])
                fk = R.relu_objective(zk, ad, md, b_d, g_d)
                zp, _ = R.relu_candidates(ad, md, b_d, g_d)
                assert fk <= fgrid + 16 * e * relu_scale(ad, md, max(zp, abs(zk)), b_d, g_d), (backend, api, dtype, zk, fk, fgrid)


@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    y=st.sampled_from((0.0, 1.0)), m=_magnitude(-6, 6), lam=_magnitude(-6, 6), beta=_penalty,
    loss=st.sampled_from((0, 1)),
)
def test_output_property_dense_grid(available_backends, y, m, lam, beta, loss):
    for dtype in DTYPES:
        e = eps(dtype)
        yv, mv, lv = np.array([y], dtype), np.array([m], dtype), np.array([lam], dtype)
        md, ld, b_d = float(mv[0]), float(lv[0]), rounded(beta, dtype)
        grid = _dense_grid([y, md, 0.0, 1.0, md - ld / (2 * b_d)])
        fv = R.output_objective_vec(grid, y, md, ld, b_d, loss)
        fgrid = float(np.min(fv))
        for backend in available_backends:
            for api in APIS:
                zk = float(run_output(backend, api, yv, mv, lv, beta, loss)[0][0])
                fk = R.output_objective(zk, y, md, ld, b_d, loss)
                scale = abs(R.loss_value(zk, y, loss)) + abs(ld * zk) + b_d * (abs(zk) + abs(md)) ** 2 + abs(fgrid) + 1.0
                assert fk <= fgrid + 16 * e * scale, (backend, api, dtype, zk, fk, fgrid)


# ------------------------------------------------------------------------------------------------
# bad input to the public functions
# ------------------------------------------------------------------------------------------------
_ok = np.ones(3)


@pytest.mark.parametrize(
    "call, exc, name",
    [
        pytest.param(lambda: kernels.relu_z(_ok, np.ones(4), 1.0, 1.0), ValueError, "m", id="relu_z-m-shape"),
        pytest.param(lambda: kernels.relu_z(np.ones((3, 1)), _ok, 1.0, 1.0), ValueError, "m", id="relu_z-m-2d-shape"),
        pytest.param(lambda: kernels.relu_z(np.array(["a", "b", "c"]), _ok, 1.0, 1.0), TypeError, "a", id="relu_z-a-strings"),
        pytest.param(lambda: kernels.relu_z(_ok, np.array(["a", "b", "c"]), 1.0, 1.0), TypeError, "m", id="relu_z-m-strings"),
        pytest.param(lambda: kernels.relu_z(_ok, _ok, 0.0, 1.0), ValueError, "beta", id="relu_z-beta-zero"),
        pytest.param(lambda: kernels.relu_z(_ok, _ok, -1.0, 1.0), ValueError, "beta", id="relu_z-beta-negative"),
        pytest.param(lambda: kernels.relu_z(_ok, _ok, float("nan"), 1.0), ValueError, "beta", id="relu_z-beta-nan"),
        pytest.param(lambda: kernels.relu_z(_ok, _ok, 1.0, 0.0), ValueError, "gamma", id="relu_z-gamma-zero"),
        pytest.param(lambda: kernels.relu_z(_ok, _ok, 1.0, float("nan")), ValueError, "gamma", id="relu_z-gamma-nan"),
        pytest.param(lambda: kernels.relu_z(_ok, _ok, 1.0, float("inf")), ValueError, "gamma", id="relu_z-gamma-inf"),
        pytest.param(lambda: kernels.relu_z(_ok, _ok, "x", 1.0), TypeError, "beta", id="relu_z-beta-string"),
        pytest.param(lambda: kernels.relu_z(_ok, _ok, 1.0, 1.0, backend="fortran"), ValueError, "backend", id="relu_z-backend"),
        pytest.param(lambda: kernels.output_z(_ok, _ok, np.ones(2), 1.0), ValueError, "lam", id="output_z-lam-shape"),
        pytest.param(lambda: kernels.output_z(np.ones(2), _ok, _ok, 1.0), ValueError, "m", id="output_z-m-shape"),
        pytest.param(lambda: kernels.output_z(np.array(["0", "1", "1"]), _ok, _ok, 1.0), TypeError, "y", id="output_z-y-strings"),
        pytest.param(lambda: kernels.output_z(_ok, _ok, np.array(["a", "b", "c"]), 1.0), TypeError, "lam", id="output_z-lam-strings"),
        pytest.param(lambda: kernels.output_z(_ok, _ok, _ok, 0.0), ValueError, "beta", id="output_z-beta-zero"),
        pytest.param(lambda: kernels.output_z(_ok, _ok, _ok, float("nan")), ValueError, "beta", id="output_z-beta-nan"),
        pytest.param(lambda: kernels.output_z(_ok, _ok, _ok, 1.0, loss="logistic"), ValueError, "loss", id="output_z-loss"),
        pytest.param(lambda: kernels.output_z(_ok, _ok, _ok, 1.0, backend="fortran"), ValueError, "backend", id="output_z-backend"),
        pytest.param(lambda: kernels.output_z(np.array([0.0, 2.0, 1.0]), _ok, _ok, 1.0, loss="hinge"), ValueError, "y", id="output_z-y-not-01-hinge"),
    ],
)
def test_bad_input_names_the_argument(call, exc, name):
    # the message starts with the argument's name ("beta must be ...", "m has shape ..."); a bare
    # word match would let "a" match "must be a finite number"
    with pytest.raises(exc, match=rf"^{name}\b"):
        call()


# ------------------------------------------------------------------------------------------------
# both builds of the Cython kernels (portable, and AVX2 + FMA where the machine has them)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_each_cython_build_equals_numpy_bit_for_bit(cython_kernels, dtype):
    module = cython_kernels  # the conftest fixture skips a build that is absent here
    assert module.KERNEL_ABI == _backend.KERNEL_ABI
    ref = _backend.get("numpy")
    rng = np.random.default_rng(7)
    n = 3 * 256 + 5  # whole chunks and a tail
    a, m = (rng.normal(0, 2, n).astype(dtype) for _ in range(2))
    m[::7] = a[::7]  # ties and exact zeros
    a[::11] = 0
    outs = []
    for k in (module, ref):
        z, hz = np.empty(n, dtype), np.empty(n, dtype)
        sums = k.relu_z_update(a, m, 1.5, 7.0, z, hz)
        outs.append((z, hz, sums))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    assert outs[0][2] == pytest.approx(outs[1][2], rel=1e-12)
    y = (rng.random(n) < 0.5).astype(dtype)
    for loss in (0, 1):
        res = []
        for k in (module, ref):
            lam, z = np.full(n, 0.25, dtype), np.empty(n, dtype)
            sums = k.output_z_update(y, m, lam, 2.0, loss, True, z)
            res.append((z, lam, sums))
        np.testing.assert_array_equal(res[0][0], res[1][0])
        np.testing.assert_array_equal(res[0][1], res[1][1])
        assert res[0][2] == pytest.approx(res[1][2], rel=1e-12, abs=1e-12)


def test_cython_backend_picks_the_build_for_this_cpu(monkeypatch):
    import importlib.util

    avx2_built = importlib.util.find_spec("fastadmm._kernels_avx2") is not None  # absent: the portable one
    expected = "fastadmm._kernels_avx2" if _backend._cpu_has_avx2_fma() and avx2_built else "fastadmm._kernels"
    assert _backend.cython_module_name() == expected
    monkeypatch.setenv(_backend.VARIANT_ENV, "portable")
    assert _backend.cython_module_name() == "fastadmm._kernels"
