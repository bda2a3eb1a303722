"""Shared fixtures: the kernel backends that are actually available on this machine.

A test that runs once per backend asks for one of these fixtures instead of writing the list itself:

* ``backend``: the public backend name ("cython", "numba" or "numpy") to pass as ``backend=``, once
  per *build*: the Cython kernels run twice, as the portable build (``fastadmm._kernels``, id
  ``cython``) and as the AVX2 + FMA build (``fastadmm._kernels_avx2``, id ``cython_avx2``); for the
  duration of the test ``fastadmm._backend.get("cython")`` returns that build, so the low-level
  module, the public kernel functions and ``train_admm`` all run it.
* ``compiled_backend``: the same, without "numpy" (the compiled twins compared against it).
* ``cython_kernels``: the module of each Cython build itself.
* ``available_backends``: the public names that import here, for a test that loops over them.

A build that is absent (not compiled, numba not installed, an AVX2 build on a CPU without AVX2/FMA
or not on x86-64) makes its tests SKIP with the reason, never fail.  A build that imports but is
stale (another kernel ABI) fails: that is a broken checkout, not an absent feature.  CI, which builds
everything, sets ``FASTADMM_REQUIRE_BACKENDS`` (a comma-separated list of the ids above, or "all")
to turn those skips into failures.
"""

from __future__ import annotations

import importlib
import os
import platform

import pytest

from fastadmm import _backend

# id -> (public backend name, module that implements it)
BUILDS = {
    "cython": ("cython", "fastadmm._kernels"),
    "cython_avx2": ("cython", "fastadmm._kernels_avx2"),
    "numba": ("numba", "fastadmm._kernels_numba"),
    "numpy": ("numpy", "fastadmm._kernels_numpy"),
}
COMPILED = ("cython", "cython_avx2", "numba")
CYTHON = ("cython", "cython_avx2")
REQUIRE_ENV = "FASTADMM_REQUIRE_BACKENDS"


def _required() -> set[str]:
    value = os.environ.get(REQUIRE_ENV, "").strip()
    if value == "all":
        return set(BUILDS)
    return {v.strip() for v in value.split(",") if v.strip()}


def why_absent(build: str) -> str | None:
    """Why `build` cannot run here (None: it can).  Imports nothing but the build's own module."""
    name, module_name = BUILDS[build]
    if build == "cython_avx2":
        if platform.machine().lower() not in ("x86_64", "amd64"):
            return "the AVX2 build of the Cython kernels exists only on x86-64"
        if not _backend._cpu_has_avx2_fma():
            return "this CPU lacks AVX2/FMA: the AVX2 build of the Cython kernels is never loaded here"
    try:
        importlib.import_module(module_name)
    except ImportError as exc:
        hint = {"cython": "build it with `pip install -e .`", "numba": "pip install numba"}.get(name, "")
        return f"{module_name} does not import ({exc}){'; ' + hint if hint else ''}"
    return None


def load_build(build: str):
    """The module of `build`, or skip the calling test with the reason it is absent (fail instead when
    FASTADMM_REQUIRE_BACKENDS names it).  A stale compiled build fails."""
    reason = why_absent(build)
    if reason is not None:
        if build in _required():
            pytest.fail(f"backend build {build!r} is required ({REQUIRE_ENV}) but absent: {reason}")
        pytest.skip(f"backend build {build!r} is not available: {reason}")
    module = importlib.import_module(BUILDS[build][1])
    if BUILDS[build][0] == "cython" and getattr(module, "KERNEL_ABI", None) != _backend.KERNEL_ABI:
        pytest.fail(f"{BUILDS[build][1]} is stale (kernel ABI {getattr(module, 'KERNEL_ABI', None)}, "
                    f"this source needs {_backend.KERNEL_ABI}): rebuild with `pip install -e .`")
    return module


def _use_build(build: str, monkeypatch) -> str:
    """Load `build` (or skip) and make fastadmm._backend.get return it for this test; its public name."""
    name = BUILDS[build][0]
    module = load_build(build)
    if name == "cython":
        monkeypatch.setitem(_backend._cache, "cython", module)
    return name


@pytest.fixture(params=list(BUILDS))
def backend(request, monkeypatch) -> str:
    """The public backend name, once per available build (see the module docstring)."""
    return _use_build(request.param, monkeypatch)


@pytest.fixture(params=list(COMPILED))
def compiled_backend(request, monkeypatch) -> str:
    """The public name of each compiled build (Cython portable, Cython AVX2, Numba)."""
    return _use_build(request.param, monkeypatch)


@pytest.fixture(params=list(CYTHON))
def cython_kernels(request):
    """The module of each build of the Cython kernels (portable, AVX2 + FMA)."""
    return load_build(request.param)


@pytest.fixture(scope="session")
def available_backends() -> tuple[str, ...]:
    """The public backend names whose default build imports here (for tests that loop over them)."""
    names = []
    for name in ("cython", "numba", "numpy"):
        try:
            _backend.get(name)
        except ImportError:
            continue
        names.append(name)
    return tuple(names)


@pytest.fixture
def numba_kernels():
    """fastadmm._kernels_numba, or skip where numba is not installed."""
    return load_build("numba")
