"""The elementwise z-update kernels at 60,000 x 100, every backend, float32 and float64.

What is timed: the internal kernel the driver calls (``fastadmm._backend.get(name)``), with the
driver's arguments: z written in place over m (``z_out is m``), the multiplier step on for the
output kernel (lam updated in place).  m and lam are restored from pristine copies before every
round, outside the timed region.

Bytes are counted as the logical traffic, one read or one write of each array touched:
``relu_z_update``: a, m read; z (= m), h(z) written -> 4 n itemsize.  ``output_z_update``: y, m,
lam read; lam, z (= m) written -> 5 n itemsize.  ``np.copyto``: one read, one write -> 2 n itemsize.
(A write also costs the cache a read-for-ownership; it is not counted here, nor for the copy.)

Targets: each compiled kernel >= 3x faster than its numpy reference (``backend="numpy"``,
same arrays) and at >= 1/1.5 of the GB/s of a same-run ``np.copyto`` of an array of the same size.
The target figures come from the three called in turn right after the benchmark (fastest call of
each, ``extra_info["side_by_side_seconds"]``); the benchmark table shows the kernel alone.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastadmm import _backend

from _measure import interleaved_min, pedantic, record_target

SHAPE = (60_000, 100)
N = SHAPE[0] * SHAPE[1]
BETA, GAMMA = 1.0, 10.0
KERNELS = ("relu", "output_mse", "output_hinge")
LOSS_CODE = {"output_mse": 0, "output_hinge": 1}
ARRAYS_TOUCHED = {"relu": 4, "output_mse": 5, "output_hinge": 5}
ROUNDS = {"numpy": 3, "numba": 10, "cython": 10}


class KernelCase:
    """Pristine inputs and working buffers of one kernel at one dtype."""

    def __init__(self, kernel, dtype):
        rng = np.random.default_rng(0)
        dt = np.dtype(dtype)
        self.kernel, self.dtype = kernel, dt
        if kernel == "relu":
            # a around h(m): a mix of entries where the positive and the negative branch win.
            self.m0 = rng.standard_normal(N).astype(dt)
            self.a0 = (np.maximum(self.m0, 0) + 0.3 * rng.standard_normal(N)).astype(dt)
            self.hz = np.empty(N, dt)
        else:
            self.y = (rng.random(N) < 0.5).astype(dt)
            self.m0 = (self.y + 0.5 * rng.standard_normal(N)).astype(dt)
            self.lam0 = (0.1 * rng.standard_normal(N)).astype(dt)
            self.lam = np.empty(N, dt)
        self.m = np.empty(N, dt)
        self.reset()

    def reset(self):
        np.copyto(self.m, self.m0)
        if self.kernel != "relu":
            np.copyto(self.lam, self.lam0)

    def call(self, k):
        """One driver-style call of backend module `k`; returns its sums."""
        if self.kernel == "relu":
            return k.relu_z_update(self.a0, self.m, BETA, GAMMA, self.m, self.hz)
        return k.output_z_update(self.y, self.m, self.lam, BETA, LOSS_CODE[self.kernel], True, self.m)

    def outputs(self):
        return [self.m.copy(), self.hz.copy()] if self.kernel == "relu" else [self.m.copy(), self.lam.copy()]

    @property
    def bytes(self):
        return ARRAYS_TOUCHED[self.kernel] * N * self.dtype.itemsize


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_copy_reference(benchmark, dtype):
    """np.copyto of one 60,000 x 100 array: the memory-bandwidth yardstick."""
    rng = np.random.default_rng(1)
    src = rng.standard_normal(N).astype(dtype)
    dst = np.empty_like(src)
    _, t = pedantic(benchmark, lambda: np.copyto(dst, src), rounds=10, warmup_rounds=2, group=f"kernels-{dtype}")
    assert np.array_equal(dst, src)
    nbytes = 2 * N * np.dtype(dtype).itemsize
    benchmark.extra_info.update(shape=list(SHAPE), dtype=dtype, bytes=nbytes)
    if t is not None:
        benchmark.extra_info["GB_per_s"] = nbytes / t.min / 1e9


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("backend", ["numpy", "numba", "cython"])
def test_kernel(benchmark, backend, kernel, dtype):
    try:
        k = _backend.get(backend)
    except ImportError as exc:
        pytest.skip(f"backend {backend!r} unavailable: {exc}")
    if hasattr(k, "warmup"):
        k.warmup()  # numba: compile (or load from cache) every signature, outside any timing
    case = KernelCase(kernel, dtype)
    sums, t = pedantic(benchmark, lambda: case.call(k), setup=case.reset, rounds=ROUNDS[backend],
                       warmup_rounds=1, group=f"kernels-{dtype}")
    info = benchmark.extra_info
    info.update(shape=list(SHAPE), dtype=dtype, backend=backend, kernel=kernel, bytes=case.bytes,
                bytes_counted=f"{ARRAYS_TOUCHED[kernel]} arrays x n x itemsize")

    # Same result as the numpy reference, from the same pristine inputs ("accuracy" of a kernel).
    case.reset()
    got_sums, got = case.call(k), case.outputs()
    ref_k = _backend.get("numpy")
    case.reset()
    ref_sums, ref = case.call(ref_k), case.outputs()
    max_diff = max(float(np.max(np.abs(g - r))) for g, r in zip(got, ref))
    info["max_abs_diff_vs_numpy"] = max_diff
    tol = 1e-12 if dtype == "float64" else 1e-5
    assert max_diff <= tol * 10, f"{backend} {kernel} differs from the numpy reference by {max_diff}"
    np.testing.assert_allclose(got_sums, ref_sums, rtol=1e-9 if dtype == "float64" else 1e-5)
    assert np.isfinite(got_sums).all() and np.isfinite(sums).all()

    if t is None:
        return
    info["GB_per_s"] = case.bytes / t.min / 1e9
    # The targets: kernel, copy and numpy reference called in turn on these arrays (interleaved,
    # so a slow spell of the shared machine hits all three alike); the fastest call of each.
    src = np.random.default_rng(1).standard_normal(N).astype(dtype)
    dst = np.empty_like(src)
    fns = {"kernel": lambda: case.call(k), "copy": lambda: np.copyto(dst, src)}
    if backend != "numpy":
        fns["numpy"] = lambda: case.call(ref_k)
    best = interleaved_min(fns, repeat=3 if backend == "numpy" else 5,
                           setups={"kernel": case.reset, "numpy": case.reset})
    gbps = case.bytes / best["kernel"] / 1e9
    copy_gbps = 2 * N * np.dtype(dtype).itemsize / best["copy"] / 1e9
    info.update(side_by_side_seconds=best, side_by_side_GB_per_s=gbps, copy_GB_per_s=copy_gbps,
                copy_over_kernel_GBps=copy_gbps / gbps)
    if backend == "numpy":
        return
    speedup = best["numpy"] / best["kernel"]
    info["speedup_vs_numpy"] = speedup
    record_target(benchmark, f"kernel {kernel} {backend} {dtype}: speed-up vs numpy", speedup, 3.0,
                  unit="x", detail=f"{best['kernel'] * 1e3:.2f} ms vs numpy {best['numpy'] * 1e3:.1f} ms")
    record_target(benchmark, f"kernel {kernel} {backend} {dtype}: copy GB/s / kernel GB/s", copy_gbps / gbps, 1.5,
                  at_least=False, unit="x", detail=f"{gbps:.1f} GB/s vs copy {copy_gbps:.1f} GB/s")
