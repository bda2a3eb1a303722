# cython: language_level=3
"""The AVX2 + FMA build of the Cython twin of the z-update kernels (the source is ``_kernels.pyx``).

The kernels, their parameters, contract and constants are declared in ``fastadmm._kernel_api``.
"""

# The kernels of _kernels.pyx, compiled a second time with -mavx2 -mfma (x86-64 only; see setup.py).
# fastadmm._backend loads this module for backend="cython" when the CPU has AVX2 and FMA, else
# _kernels (baseline x86-64 / aarch64).  Same source, same results bit for bit (-ffp-contract=off).
include "_kernels.pyx"
