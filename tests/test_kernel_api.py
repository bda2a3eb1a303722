"""The kernel API declared once (fastadmm._kernel_api) and every available twin that implements it.

Each build of the conftest fixtures (Cython portable, Cython AVX2, Numba, NumPy; an absent build
skips) must expose every declared kernel with exactly the declared parameter names in order, and
the declared constants (loss codes from fastadmm._losses, the softmax limits); the loader
(fastadmm._backend.get) refuses a module that does not, naming what is missing.
"""

from __future__ import annotations

import inspect
import re
import types

import pytest
from conftest import BUILDS, load_build

from fastadmm import _backend, _kernel_api, _losses


def _params(func):
    """Parameter names in order, read the way each twin allows: a Numba dispatcher through its
    ``py_func``, a Cython (binding) function and a NumPy function by inspect.signature."""
    return tuple(inspect.signature(getattr(func, "py_func", func)).parameters)


@pytest.fixture(params=list(BUILDS))
def twin(request):
    """The module of each available build (skips an absent one)."""
    return request.param, load_build(request.param)


def test_declaration_is_consistent():
    assert _kernel_api.NAMES == ("relu_z_update", "output_z_update", "softmax_z_update")
    for kernel in _kernel_api.KERNELS:
        assert len(set(kernel.params)) == len(kernel.params)
        assert set(kernel.writes) <= set(kernel.params), kernel.name
        assert kernel.doc.strip() and kernel.name in _kernel_api.__doc__
    # the loss codes come from the one table in fastadmm._losses
    assert _kernel_api.MSE == _losses.LOSS_CODE["mse"]
    assert _kernel_api.HINGE == _losses.LOSS_CODE["hinge"]
    assert _backend.KERNEL_ABI == _kernel_api.KERNEL_ABI


def test_each_twin_has_the_declared_signatures(twin):
    build, module = twin
    for kernel in _kernel_api.KERNELS:
        func = getattr(module, kernel.name, None)
        assert callable(func), f"{build}: no kernel {kernel.name}"
        assert _params(func) == kernel.params, f"{build}: {kernel.name}"
    if build == "numba":  # the compiled function and the Python source it was compiled from agree
        for kernel in _kernel_api.KERNELS:
            assert _params(getattr(module, kernel.name)) == _params(getattr(module, kernel.name).py_func)
    assert _kernel_api.problems(module) == []


def test_each_twin_has_the_declared_constants(twin):
    build, module = twin
    for name, value in _kernel_api.CONSTANTS.items():
        assert getattr(module, name) == value, f"{build}: {name}"


def test_each_twin_points_to_the_declaration(twin):
    """The contract is written once: a kernel's docstring names its declaration, not a copy of it."""
    build, module = twin
    assert "fastadmm._kernel_api" in module.__doc__, build
    for kernel in _kernel_api.KERNELS:
        doc = getattr(module, kernel.name).__doc__ or ""
        assert f"fastadmm._kernel_api.{kernel.name.upper()}" in doc, f"{build}: {kernel.name}"
        assert getattr(_kernel_api, kernel.name.upper()) is kernel


def test_numba_helpers_follow_the_cython_file():
    """The Numba twin has the Cython file's functions (one per job), in the same order."""
    from pathlib import Path

    src = Path(_kernel_api.__file__).parent
    cython = re.findall(r"^(?:cdef inline \w+|def) (\w+)\(", (src / "_kernels.pyx").read_text(), re.M)
    numba = re.findall(r"^def (\w+)\(", (src / "_kernels_numba.py").read_text(), re.M)
    assert numba[-1] == "warmup"  # the only function without a Cython counterpart
    assert numba[:-1] == cython


def _fake(**overrides):
    module = types.ModuleType("fake_kernels")
    for kernel in _kernel_api.KERNELS:
        exec(f"def {kernel.name}({', '.join(kernel.params)}): pass", module.__dict__)
    module.__dict__.update(_kernel_api.CONSTANTS)
    for name, value in overrides.items():
        if value is None:
            delattr(module, name)
        else:
            setattr(module, name, value)
    return module


def test_check_accepts_a_complete_module_and_names_what_is_missing_or_differs():
    _kernel_api.check(_fake())
    with pytest.raises(ImportError, match="no kernel 'softmax_z_update'"):
        _kernel_api.check(_fake(softmax_z_update=None))
    swapped = _fake(relu_z_update=lambda a, m, gamma, beta, z_out, hz_out: None)
    assert _kernel_api.problems(swapped) == [
        "relu_z_update takes (a, m, gamma, beta, z_out, hz_out), declared (a, m, beta, gamma, z_out, hz_out)"
    ]
    _kernel_api.check(swapped)  # the loader checks presence only: a test may wrap a kernel
    with pytest.raises(ImportError, match="HINGE is 2, declared 1"):
        _kernel_api.check(_fake(HINGE=2))


def test_backend_get_refuses_a_module_without_a_declared_kernel(monkeypatch):
    from fastadmm import _kernels_numpy

    monkeypatch.setattr(_backend, "_cache", {})
    monkeypatch.delattr(_kernels_numpy, "output_z_update")
    with pytest.raises(ImportError, match="backend='numpy'.*no kernel 'output_z_update'"):
        _backend.get("numpy")
    assert "numpy" not in _backend._cache
