"""The z-update kernels' API, declared once for the three twins that implement it.

``_kernels.pyx`` (Cython, also built as ``_kernels_avx2``), ``_kernels_numba.py`` and
``_kernels_numpy.py`` each expose the kernels of ``KERNELS`` below, with exactly the parameter names
declared there, in that order, and the constants of ``CONSTANTS`` with the values declared there
(the Cython build carries compiled-in copies).  ``fastadmm._backend.get`` checks with ``check``
that a backend it loads has every kernel and these constants; ``tests/test_kernel_api.py`` checks
every available build, parameter names included.

Rules common to every kernel:

* the array arguments are C-contiguous, of one floating dtype (float32 or float64), and all have
  one shape: 1-D of one length for the elementwise kernels, 2-D (N, K) for ``softmax_z_update``;
  scalars are Python floats (``beta``, ``gamma``), ints (``loss``) or bools (``lam_step``);
  nothing is validated here (``fastadmm.kernels`` and the training loop do it);
* a scalar penalty is first rounded to the arrays' dtype (``dt(beta)``), and every per-entry
  operation is done in that dtype, so the three twins write the same arrays bit for bit (except
  ``softmax_z_update``: see its entry);
* outputs are written into the ``*_out`` / ``out`` arrays and, when ``lam_step`` is true, into
  ``lam``; ``z_out`` (``out``) may be the same array as ``m`` (``M``): each entry is read before it
  is written;
* the returned sums are accumulated and returned in float64.

Loss codes (``loss``) are those of ``fastadmm._losses.LOSS_CODE``; the elementwise output update
takes ``MSE`` and ``HINGE`` only.  Each kernel's own contract is in its ``Kernel.doc`` (listed in
full at the end of this docstring).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from types import ModuleType

from ._losses import ELEMENTWISE, LOSS_CODE

# Bumped whenever the compiled kernels' signatures change; a Cython build that reports another
# value is stale (fastadmm._backend refuses it).  _kernels.pyx carries the same number.
KERNEL_ABI = 2

# The loss codes the elementwise output update takes (from fastadmm._losses, declared there only).
MSE = LOSS_CODE["mse"]
HINGE = LOSS_CODE["hinge"]
assert ELEMENTWISE == ("mse", "hinge")

# The softmax update's limits (see softmax_z_update's contract below).
# Newton steps per sample, at most (at most 26 needed: benchmarks/softmax_newton_steps.py)
SOFTMAX_MAX_ITER = 100
SOFTMAX_TOL64 = 1e-10  # relative gradient tolerance, float64 arrays
SOFTMAX_TOL32 = 1e-6  # relative gradient tolerance, float32 arrays

# Module constants every twin exposes with these values (the compiled twin's are compiled in).
CONSTANTS = {
    "MSE": MSE,
    "HINGE": HINGE,
    "SOFTMAX_MAX_ITER": SOFTMAX_MAX_ITER,
    "SOFTMAX_TOL64": SOFTMAX_TOL64,
    "SOFTMAX_TOL32": SOFTMAX_TOL32,
}


@dataclass(frozen=True)
class Kernel:
    """One kernel: its name, parameters in order, the arrays it writes, what it returns, its contract."""

    name: str
    params: tuple[str, ...]
    shape: str  # the arrays' shape contract
    writes: tuple[str, ...]  # the parameters written in place
    returns: tuple[str, ...]  # names of the float64 sums returned, in order
    doc: str

    def signature(self) -> str:
        return f"{self.name}({', '.join(self.params)}) -> ({', '.join(self.returns)})"


RELU_Z_UPDATE = Kernel(
    name="relu_z_update",
    params=("a", "m", "beta", "gamma", "z_out", "hz_out"),
    shape="a, m, z_out, hz_out: 1-D, one length",
    writes=("z_out", "hz_out"),
    returns=("rz", "ra"),
    doc="""\
For each entry, z = argmin_z gamma*(a - relu(z))^2 + beta*(z - m)^2 (docs/ALGORITHM.md, 3.3):
candidates zp = max(0, (gamma*a + beta*m)/(gamma + beta)) and zn = min(0, m); zp is kept when
its objective is <= that of zn (ties go to zp).  Writes z to z_out and relu(z) to hz_out.
Returns rz = sum (z - m)^2 and ra = sum (a - relu(z))^2, so the layer's objective term is
gamma*ra + beta*rz.""",
)

OUTPUT_Z_UPDATE = Kernel(
    name="output_z_update",
    params=("y", "m", "lam", "beta", "loss", "lam_step", "z_out"),
    shape="y, m, lam, z_out: 1-D, one length",
    writes=("z_out", "lam"),
    returns=("loss_sum", "lam_dot_z", "rz"),
    doc="""\
z = argmin_z loss(z, y) + lam*z + beta*(z - m)^2 entrywise (docs/ALGORITHM.md, 3.4), for 0/1
targets y, loss MSE = squared error (z - y)^2, HINGE = max(1 - z, 0) where y = 1 and max(z, 0)
where y = 0 (the compiled twins raise ValueError for another code).  Writes z to z_out; then, when lam_step is true,
lam += beta*(z - m) in place (in the dtype).  Returns loss_sum = sum loss(z, y), lam_dot_z =
sum lam_old*z and rz = sum (z - m)^2.""",
)

SOFTMAX_Z_UPDATE = Kernel(
    name="softmax_z_update",
    params=("Y", "M", "lam", "beta", "lam_step", "out"),
    shape="Y, M, lam, out: 2-D (N, K), one shape, K >= 1",
    writes=("out", "lam"),
    returns=("loss_sum", "lam_dot_z", "rz"),
    doc="""\
The softmax cross-entropy output update, per sample (row) i:
    z_i = argmin_z  CE(z, y_i) + <lam_i, z> + beta ||z - m_i||^2,  CE(z, y) = logsumexp(z) - <y, z>,
strongly convex (Hessian diag(p) - p p^T + 2 beta I, p = softmax(z)), for any real y (a one-hot
or probability vector in use).  Writes z to out; then, when lam_step is true, lam += beta*(z - M)
in place (in the dtype, as output_z_update).  Returns loss_sum = sum_i CE(z_i, y_i) (at the stored
z), lam_dot_z = sum lam_old*z and rz = sum (z - m)^2, in float64: the same three sums, in the same
order and meaning, as output_z_update, so a driver treats both alike.

Method (the same in every twin; all arithmetic in float64, also for float32 arrays, whose values
are rounded to float32 only when stored; exp and log are the platform's, so the twins agree to the
tolerance below, in practice to a few ulps, not bit for bit), with c = 2 beta (beta first rounded
to the dtype):
* start: q = the Euclidean projection of w = y - lam + c m onto the probability simplex and
  z0 = m + (y - lam - q)/c, the exact solution as c -> 0 up to O(log) terms (from the dual,
  max_q H(q) - ||q - w||^2/(2c)); when c < 0.1, also z0 + log(q) on the support of q, keeping
  whichever has the smaller objective (measured, K = 10, 1000 samples per case: that cuts the
  Newton steps for beta <= 1e-2 and never changed them for beta >= 0.1).  For large c, z0 is
  within 2/c of the solution.
* Newton steps d = -H^-1 g, g = p - y + lam + c (z - m), in O(K) by Sherman-Morrison
  (H = D - p p^T, D = diag(p + c); 1 - p^T D^-1 p is formed as c sum p/D, without cancellation);
* a backtracking line search (Armijo, constant 1e-4; trial steps by safeguarded quadratic
  interpolation within [t/10, t/2]) on the objective change, computed as a difference
  (lse(z + t d) - lse(z)) + t <lam - y + c(z - m), d> + beta t^2 ||d||^2, each lse shifted by its
  own maximum (no overflow, no cancellation of large objective values).  A step is accepted when
  it decreases the objective by Armijo's rule, or, when the change is within the rounding of its
  computation (16 eps (1 + max|z| + t max|d| + |t a1| + t^2 a2)), when it lowers max|g|.  So the
  objective never increases beyond rounding.  If no step is accepted down to t = 1e-20, the
  sample stops where it is (no progress is possible at the rounding level);
* stop when max_k |g_k| <= tol (1 + max|lam_i| + max|y_i| + c max|m_i| + c max|z|) + 16 eps max|z|
  with tol = SOFTMAX_TOL64 = 1e-10 for float64 arrays and SOFTMAX_TOL32 = 1e-6 for float32 arrays
  (eps = 2^-52): the first term is relative to the gradient's terms, the second is the gradient
  noise from rounding z itself (a relative change eps of z moves p by up to about 3 eps max|z|);
  or after SOFTMAX_MAX_ITER = 100 Newton steps.  Measured: at most 26 steps over K = 2, 10, 100,
  beta = 1e-8 ... 1e8, |m| up to 1e6.
A sample with a non-finite gradient at the start (a NaN or inf input, or overflow) gets z = NaN.
The compiled twins use K-length scratch buffers made once per call, never per sample.""",
)

KERNELS = (RELU_Z_UPDATE, OUTPUT_Z_UPDATE, SOFTMAX_Z_UPDATE)
BY_NAME = {k.name: k for k in KERNELS}
NAMES = tuple(BY_NAME)

if __doc__ is not None:  # None under python -OO
    __doc__ += "\n" + "\n\n".join(
        f"``{k.signature()}``\n    Arrays: {k.shape}; writes {', '.join(k.writes)}.\n"
        + "\n".join("    " + line if line else "" for line in k.doc.splitlines())
        for k in KERNELS
    ) + "\n"


def parameters(func) -> tuple[str, ...] | None:
    """The parameter names of a twin's kernel `func`, in order (a Numba dispatcher is read through
    its ``py_func``); None where the signature cannot be read."""
    try:
        return tuple(inspect.signature(getattr(func, "py_func", func)).parameters)
    except (TypeError, ValueError):
        return None


def problems(module: ModuleType, signatures: bool = True) -> list[str]:
    """What `module` lacks or gets wrong against this declaration (empty: it implements the API);
    with `signatures`, also a kernel whose parameter names differ from the declared ones."""
    found = []
    for kernel in KERNELS:
        func = getattr(module, kernel.name, None)
        if not callable(func):
            found.append(f"it has no kernel {kernel.name!r}")
            continue
        params = parameters(func) if signatures else None
        if params is not None and params != kernel.params:
            found.append(f"{kernel.name} takes ({', '.join(params)}), "
                         f"declared ({', '.join(kernel.params)})")
    for name, value in CONSTANTS.items():
        have = getattr(module, name, None)
        if have != value:
            found.append(f"its {name} is {have!r}, declared {value!r}")
    return found


def check(module: ModuleType) -> None:
    """Raise ImportError naming every kernel `module` lacks and every constant that differs from this
    declaration (what fastadmm._backend.get checks on loading).  The parameter names are checked by
    tests/test_kernel_api.py, not here: a test may wrap a kernel in a function of its own."""
    found = problems(module, signatures=False)
    if found:
        raise ImportError(
            f"{module.__name__} does not implement the kernel API of fastadmm._kernel_api: "
            + "; ".join(found)
        )
