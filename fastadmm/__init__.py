"""fastadmm: gradient-free training of fully connected ReLU networks by ADMM (Taylor et al., 2016).

Public names: train_admm, train_sgd, Result, Status, ADMMSettings, ADMMClassifier, kernels, load.
"""

from . import kernels
from ._checkpoint import CheckpointError
from ._result import Result, Status, load
from ._settings import ADMMSettings
from .admm import CheckpointWarning, ConvergenceWarning, DivergenceWarning, train_admm
from .sgd import SGDSettings, train_sgd

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
    # scikit-learn is imported only when the estimator is first used (it costs ~0.5 s).
    if name == "ADMMClassifier":
        from .estimator import ADMMClassifier

        return ADMMClassifier
    raise AttributeError(f"module 'fastadmm' has no attribute {name!r}")
