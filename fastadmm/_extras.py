"""The optional parts of fastadmm and the pip extras that install them.

The core (``train_admm``, ``train_sgd``, checkpoints, kernels, ``fastadmm.data``'s IDX reading, MPI
shards) needs numpy, scipy, numba and threadpoolctl only. ``ADMMClassifier`` needs the ``sklearn``
extra, the command ``python -m fastadmm.mnist`` the ``mnist`` extra; without it they raise an
ImportError naming the extra and the pip command. The requirements here are those of
pyproject.toml's ``[project.optional-dependencies]`` (a test compares them).
"""

from __future__ import annotations

import importlib.util

__all__ = ["EXTRAS", "missing_error", "require"]

# extra -> (requirement as declared, module it provides)
EXTRAS: dict[str, tuple[tuple[str, str], ...]] = {
    "mnist": (("tqdm>=4.64", "tqdm"), ("matplotlib>=3.7", "matplotlib"), ("mlxtend>=0.22", "mlxtend"),
              ("pooch>=1.6", "pooch")),
    "sklearn": (("scikit-learn>=1.6", "sklearn"),),
}


def missing_error(what: str, extra: str, cause: BaseException | str) -> ImportError:
    """The ImportError for ``what`` used without ``extra``: what it needs and the pip command."""
    needs = ", ".join(req for req, _ in EXTRAS[extra])
    return ImportError(f'{what} needs the "{extra}" extra ({needs}): pip install "fastadmm[{extra}]" ({cause})')


def _absent(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):  # a parent that fails to import, or a module set to None
        return True


def require(what: str, extra: str) -> None:
    """Raise :func:`missing_error` unless every module of ``extra`` can be found (found, not imported:
    the check costs no import time)."""
    absent = [module for _, module in EXTRAS[extra] if _absent(module)]
    if absent:
        raise missing_error(what, extra, f"not installed: {', '.join(absent)}")
