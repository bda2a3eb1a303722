"""fastadmm: gradient-free training of fully connected ReLU networks by ADMM (Taylor et al., 2016).

Public names: train_admm, train_sgd, Result, Status, ADMMSettings, ADMMClassifier, kernels, load.
"""

from . import kernels
from ._checkpoint import CheckpointError
from ._result import Result, Status, load
from ._settings import ADMMSettings
from .admm import CheckpointWarning, ConvergenceWarning, DivergenceWarning, train_admm

__version__ = "0.1.0"

__all__ = [
    "ADMMClassifier",
    "ADMMSettings",
    "CheckpointError",
    "CheckpointWarning",
    "ConvergenceWarning",
    "DivergenceWarning",
    "Result",
    "SGDSettings",
    "Status",
    "kernels",
    "load",
    "train_admm",
    "train_sgd",
    "__version__",
]


def __getattr__(name):
    # Imported when first used: scikit-learn with the estimator (it costs ~0.5 s), Numba with the
    # gradient baseline (~0.2 s and ~35 MB resident, which an ADMM fit on the compiled kernels never needs).
    if name == "ADMMClassifier":
        from .estimator import ADMMClassifier

        return ADMMClassifier
    if name in ("SGDSettings", "train_sgd"):
        from . import sgd

        return getattr(sgd, name)
    raise AttributeError(f"module 'fastadmm' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
