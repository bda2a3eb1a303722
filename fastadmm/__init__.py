"""fastadmm: gradient-free training of fully connected ReLU networks by ADMM (Taylor et al., 2016)."""

from ._result import Result
from ._settings import ADMMSettings
from .admm import train_admm

__version__ = "0.1.0"

__all__ = ["ADMMSettings", "Result", "train_admm", "__version__"]
