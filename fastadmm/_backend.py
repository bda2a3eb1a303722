"""Pick the elementwise-kernel module for a backend name, once, with errors that say how to fix.

All three modules implement the kernel API declared in ``fastadmm._kernel_api`` (the kernels, their
parameters and contract, the loss codes and constants); ``get`` checks that a module it loads does.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import warnings
from types import ModuleType
from typing import Optional

from . import _kernel_api, _updates_api
from ._kernel_api import KERNEL_ABI  # the Cython build's must equal it (tests read it here too)
from ._updates_api import UPDATES_ABI  # fastadmm._updates' must equal it
from ._settings import BACKENDS

_REBUILD = (
    "Rebuild it from the project folder with `pip install -e .` (or `python setup.py build_ext "
    "--inplace`), which needs a C compiler; or pass backend='numba' or backend='numpy'."
)

_cache: dict[str, ModuleType] = {}

# Set to "portable" to use the baseline build of the Cython kernels even on an AVX2 machine.
VARIANT_ENV = "FASTADMM_CYTHON_KERNELS"


def _cpu_has_avx2_fma() -> bool:
    """What NumPy's own dispatcher found on this CPU (and OS): AVX2 and FMA3."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # numpy < 2
        try:
            from numpy.core._multiarray_umath import __cpu_features__ as features
        except ImportError:
            return False
    return bool(features.get("AVX2") and features.get("FMA3"))


def cython_module_name() -> str:
    """fastadmm._kernels_avx2 where it was built and the CPU runs it, else fastadmm._kernels."""
    if os.environ.get(VARIANT_ENV, "") != "portable" and _cpu_has_avx2_fma():
        if importlib.util.find_spec("fastadmm._kernels_avx2") is not None:
            return "fastadmm._kernels_avx2"
    return "fastadmm._kernels"


def get(backend: str) -> ModuleType:
    """The kernel module for `backend` ("cython", "numba" or "numpy")."""
    if backend in _cache:
        return _cache[backend]
    if backend == "cython":
        try:
            module = importlib.import_module(cython_module_name())
        except ImportError as exc:
            raise ImportError(
                f"fastadmm's compiled Cython kernels (fastadmm._kernels) could not be imported ({exc}). "
                + _REBUILD
            ) from exc
        abi = getattr(module, "KERNEL_ABI", None)
        if abi != KERNEL_ABI:
            raise ImportError(
                f"fastadmm's compiled Cython kernels are stale (built for kernel ABI {abi}, "
                f"this source needs {KERNEL_ABI}). " + _REBUILD
            )
    elif backend == "numba":
        try:
            module = importlib.import_module("fastadmm._kernels_numba")
        except ImportError as exc:
            raise ImportError(
                f"backend='numba' needs the numba package ({exc}); install it with "
                "`pip install numba`, or pass backend='cython' or backend='numpy'."
            ) from exc
    elif backend == "numpy":
        module = importlib.import_module("fastadmm._kernels_numpy")
    else:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    try:
        _kernel_api.check(module)
    except ImportError as exc:
        raise ImportError(f"backend={backend!r}: {exc}" + (". " + _REBUILD if backend == "cython" else "")) from None
    _cache[backend] = module
    return module


@functools.lru_cache(maxsize=1)
def updates() -> Optional[ModuleType]:
    """fastadmm._updates (mini-batch ADMM's compiled updates, gather and the boundary's column scan),
    checked against the API declared in ``_updates_api``, or None: then their NumPy versions run (a
    source checkout without the build, or a stale build, which warns once)."""
    try:
        module = importlib.import_module("fastadmm._updates")
    except ImportError:
        return None
    found = _updates_api.problems(module, signatures=False)
    if found:
        warnings.warn(f"fastadmm._updates is a stale build ({'; '.join(found)}); mini-batch ADMM and the input scan "
                      "fall back to their slower NumPy versions. " + _REBUILD.split(";")[0] + ".", RuntimeWarning,
                      stacklevel=2)
        return None
    return module


def available() -> list[str]:
    """Backends that import on this machine."""
    names = []
    for name in BACKENDS:
        try:
            get(name)
        except ImportError:
            continue
        names.append(name)
    return names
