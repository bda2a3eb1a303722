"""Only what needs code: the Cython extension fastadmm._kernels.

Metadata and dependencies live in pyproject.toml.  Set FASTADMM_NATIVE=1 to compile for the
building machine's CPU (-march=native); the default build runs on any x86-64 / aarch64 machine.
"""

import os
import platform

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

# -fno-trapping-math lets GCC vectorise the branch selection (measured 2.1x -> ~1.3x of a copy for the
# ReLU kernel); -ffp-contract=off keeps results bit-identical to the NumPy reference (no fused multiply-add).
compile_args = ["-O3", "-fno-trapping-math", "-ffp-contract=off"]
if os.environ.get("FASTADMM_NATIVE") == "1":
    compile_args.append("-march=native")



def kernels_extension(name, extra_args=()):
    return Extension(
        f"fastadmm.{name}",
        [f"fastadmm/{name}.pyx"],
        include_dirs=[np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_9_API_VERSION")],
        extra_compile_args=compile_args + list(extra_args),
    )


# _updates: the mini-batch W- and a-updates, one call each, by scipy's BLAS and LAPACK (cython_blas,
# cython_lapack: scipy is a build requirement for their .pxd files).
extensions = [kernels_extension("_kernels"), kernels_extension("_updates")]
# x86-64: the same kernels once more for AVX2 + FMA, loaded at run time when the CPU has them
# (measured: the ReLU and hinge kernels 11 -> ~20 GB/s in float64, near a copy; the portable build
# keeps them SSE2-only).  -ffp-contract=off above keeps their results identical.
if platform.machine().lower() in ("x86_64", "amd64") and os.environ.get("FASTADMM_NATIVE") != "1":
    extensions.append(kernels_extension("_kernels_avx2", ["-mavx2", "-mfma"]))



class build_ext_and_copy_to_source(build_ext):
    """Build the extensions as usual, then also copy them next to their sources (as --inplace does).

    `pip install .` builds in this folder.  Run from here, `python -m fastadmm.mnist` and
    `python -m pytest benchmarks` put this folder first on the import path, so Python imports the
    source package ``fastadmm/`` rather than the installed one; with the compiled kernels copied
    beside their sources, that package works too (the quick start's command 1 runs from here).
    A read-only source folder only skips the copy.
    """

    def run(self):
        super().run()
        if not self.inplace and os.path.isfile(os.path.join("fastadmm", "_kernels.pyx")):
            try:
                self.copy_extensions_to_source()
            except OSError as exc:  # e.g. a read-only checkout: the installed package still works
                print(f"note: compiled kernels not copied into the source folder ({exc})")


setup(
    cmdclass={"build_ext": build_ext_and_copy_to_source},
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )
)
