"""The Result that train_admm and train_sgd return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from . import _losses

STATUSES = ("converged", "max_iter", "diverged", "interrupted", "time_limit")


@dataclass
class Result:
    """What a fit returns.

    Attributes
    ----------
    status : one of "converged", "max_iter", "diverged", "interrupted", "time_limit".
    n_iter : iterations (ADMM sweeps, or SGD epochs / GD steps) completed.
    weights : list of arrays, ``weights[l]`` of shape (n_{l+1}, n_l) as in the paper (no biases).
    classes : the class labels; output unit k (or the single output's 1) stands for ``classes[k]``.
    intercept : whether the last column of ``weights[0]`` multiplies a constant input 1.
    loss : "mse" or "hinge".
    method : "admm", "sgd" or "gd".
    history : dict of equal-length lists, one entry per evaluated iteration: "iteration",
        "elapsed" (training seconds since the loop started, evaluation excluded), "train_loss"
        (mean loss per sample of the forward pass), "train_accuracy", "test_accuracy" (NaN without a
        test set) and, for ADMM, "objective", "residual_z", "residual_a" (per-layer norms),
        "beta", "gamma".
    timings : seconds per phase ("setup", "compile", "W", "a", "z", "eval", "total", ...).
    settings : the settings actually used.
    state : the ADMM iterates (a, z, lam, ...) needed to resume, or None.
    message : a human-readable line about how the run ended.
    """

    status: str
    n_iter: int
    weights: list
    classes: np.ndarray
    loss: str
    method: str
    history: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    state: Optional[dict] = None
    message: str = ""
    intercept: bool = False

    def decision_function(self, X) -> np.ndarray:
        """Network outputs of an ordinary forward pass, shape (n_samples, n_outputs)."""
        X = np.asarray(X)
        n_in = self.weights[0].shape[1] - int(self.intercept)
        if X.ndim != 2 or X.shape[1] != n_in:
            raise ValueError(f"X must have shape (n_samples, {n_in}), got {X.shape}")
        return _losses.forward(self.weights, X.astype(self.weights[0].dtype, copy=False), self.intercept)

    def predict(self, X) -> np.ndarray:
        """Class labels by an ordinary forward pass of the learned weights."""
        return np.asarray(self.classes)[_losses.predict_index(self.decision_function(X))]

    def score(self, X, y) -> float:
        """Accuracy of predict(X) against labels y."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    def save(self, path):
        """Write this Result (weights, history, settings and the state to resume) to `path` (.npz).

        The file is written to a temporary name, flushed and renamed into place, so an existing
        checkpoint at `path` stays intact until the new one is complete.  Read it back with
        ``fastadmm.load(path)``.
        """
        from ._checkpoint import save

        return save(self, path)

    def __repr__(self) -> str:
        shapes = " -> ".join(str(W.shape[1]) for W in self.weights).replace(
            str(self.weights[0].shape[1]), str(self.weights[0].shape[1] - int(self.intercept)), 1
        ) + f" -> {self.weights[-1].shape[0]}"
        acc = self.history.get("test_accuracy") or self.history.get("train_accuracy") or []
        last = next((a for a in reversed(acc) if a == a), None)
        acc_s = f", accuracy={last:.4f}" if last is not None else ""
        return (
            f"Result(method={self.method!r}, status={self.status!r}, n_iter={self.n_iter}, "
            f"net={shapes}, loss={self.loss!r}{acc_s})"
        )
