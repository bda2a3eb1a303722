"""The Result that train_admm and train_sgd return."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from . import _arrays, _checkpoint, _losses


class Status(str, enum.Enum):
    """How a fit ended.  A str: ``result.status == "converged"`` holds, and JSON and checkpoints
    store the plain string."""

    CONVERGED = "converged"  # a stop rule held (tol: full-batch ADMM's objective and residual, the training
    # loss of mini-batch fits, or the validation accuracy; see fastadmm._fit)
    MAX_ITER = "max_iter"  # ran the iterations asked for
    DIVERGED = "diverged"  # a non-finite or exploding iterate: the last finite weights are kept
    INTERRUPTED = "interrupted"  # Ctrl-C, a KeyboardInterrupt, or the callback asked to stop
    TIME_LIMIT = "time_limit"  # the training time reached time_limit

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


STATUSES = tuple(s.value for s in Status)

# Slope of the two-class probability map p = sigmoid(BINARY_SLOPE (o - 0.5)) of a single output o
# (strictly increasing, so probabilities rank samples as the decision function does; 0.5 at the
# threshold o = 0.5 of predict).  8 measured best of 2, 4, 8, 16, 32 by test log loss on two-class
# digits tasks (scikit-learn's digits, raw pixels, stratified 75/25 split, ADMMClassifier with
# max_iter=50, mean over seeds 0-4): even/odd mse
# 0.424 / 0.283 / 0.187 / 0.190 / 0.299, hinge 0.402 / 0.263 / 0.178 / 0.194 / 0.315; 3 vs 8 mse
# 0.356 / 0.186 / 0.070 / 0.036 / 0.037, hinge 0.321 / 0.153 / 0.053 / 0.025 / 0.022.  4 (tangent
# to p = o at the threshold) was lower in all four.
BINARY_SLOPE = 8.0


def log_proba(out: np.ndarray) -> np.ndarray:
    """Log class probabilities of network outputs (n_samples, n_outputs): log-softmax for K >= 2
    outputs, ``[log(1 - p), log(p)]`` with p = sigmoid(BINARY_SLOPE (o - 0.5)) for one output o
    (see Result.predict_proba); stable for any finite outputs, in the outputs' dtype."""
    if out.shape[1] == 1:
        x = BINARY_SLOPE * (out[:, 0] - 0.5)
        return np.stack([-np.logaddexp(0, x), -np.logaddexp(0, -x)], axis=1)
    d = out - np.max(out, axis=1, keepdims=True)
    return d - np.log(np.sum(np.exp(d), axis=1, keepdims=True))


@dataclass(frozen=True)
class Result:
    """What a fit returns (its fields cannot be rebound: ``dataclasses.replace`` makes a changed copy).

    Attributes
    ----------
    status : a :class:`Status`, equal to one of the strings "converged", "max_iter", "diverged",
        "interrupted", "time_limit".
    n_iter : iterations (ADMM sweeps, or SGD epochs / GD steps) completed.
    weights : list of arrays, ``weights[l]`` of shape (n_{l+1}, n_l) as in the paper; with
        ``intercept`` the first one has one column more (the first layer's bias), and a later one
        with one column more than its input (every layer of mini-batch ADMM) has a bias there too.
    classes : the class labels; output unit k (or the single output's 1) stands for ``classes[k]``.
    intercept : whether the last column of ``weights[0]`` multiplies a constant input 1.
    loss : "mse", "hinge" or "cross_entropy".
    method : "admm", "sgd" or "gd".
    history : dict of equal-length lists, one entry per evaluated iteration: "iteration",
        "elapsed" (training seconds since the loop started, evaluation excluded), "train_loss"
        (mean loss per sample) and "train_accuracy" of the training rows (settings["train_metrics"]:
        "full", a forward pass with the iteration's final weights, or "running", the mean over the
        epoch's batches, each before its update), "test_accuracy" (a forward pass; NaN without a
        test set), with validation rows (``validation_fraction``) "validation_accuracy", and, for
        ADMM, "objective", "residual_z", "residual_a" (per-layer norms), "beta", "gamma".
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

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "status", Status(self.status))
        except ValueError:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}") from None

    def decision_function(self, X) -> np.ndarray:
        """Network outputs of an ordinary forward pass, shape (n_samples, n_outputs).

        X must be a 2-D array of real, finite numbers with the training set's number of features:
        complex X raises TypeError (its imaginary part is never dropped silently), and rows with NaN
        or infinity raise ValueError naming them (a forward pass has no prediction for them; impute
        them or leave them out).
        """
        n_in = self.weights[0].shape[1] - int(self.intercept)
        # Outputs in float64 unless both the model and X are float32 (a float32 fit, the mini-batch
        # default, predicts float64 X in float64: no float32 rounding in what the user reads).
        dtype = self.weights[0].dtype.name
        if dtype == "float32" and getattr(X, "dtype", None) != np.float32:
            dtype = "float64"
        X = _arrays.check_X(X, "X", dtype, n_features=n_in)
        weights = [W if W.dtype == X.dtype else W.astype(X.dtype) for W in self.weights]
        return _losses.forward(weights, X, self.intercept)

    def predict(self, X) -> np.ndarray:
        """Class labels by an ordinary forward pass of the learned weights."""
        return np.asarray(self.classes)[_losses.predict_index(self.decision_function(X))]

    def predict_log_proba(self, X) -> np.ndarray:
        """Logarithm of :meth:`predict_proba`, computed without taking log of a rounded 0."""
        return log_proba(self.decision_function(X))

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, shape (n_samples, n_classes), column k for ``classes[k]``.

        * K >= 2 outputs (more than two classes, or any loss="cross_entropy" fit): the softmax of
          the outputs.  With cross_entropy this is the model the loss fits, calibrated as far as the
          training made it; with "mse" and "hinge" (0/1 targets) the outputs are not log-odds and
          the softmax of values near 0 and 1 is flat (outputs (1, 0, 0) give (0.58, 0.21, 0.21)):
          a ranking of the classes, not calibrated probabilities (scikit-learn's 10 digits, mse:
          test log loss 1.72 where a uniform guess scores 2.30, at 96.5 % accuracy).
        * One output o (two classes with "mse" or "hinge"): ``[1 - p, p]`` with
          ``p = sigmoid(8 (o - 0.5))`` (``BINARY_SLOPE``), strictly increasing in o and 0.5 at the
          threshold o = 0.5 of :meth:`predict`: o = 1 gives p = 0.982, o = 0 gives 0.018.  The slope
          was chosen by test log loss on two-class digits tasks; it is not fitted to the data, so
          the probabilities are not calibrated.

        Where probabilities matter, calibrate them on held-out data (scikit-learn's
        CalibratedClassifierCV around ADMMClassifier).  The largest probability of each row is the class :meth:`predict` gives (except for
        outputs within rounding of a tie).
        """
        out = self.decision_function(X)
        if out.shape[1] == 1:
            return np.exp(log_proba(out))
        return _losses.softmax(out)

    def score(self, X, y) -> float:
        """Accuracy of predict(X) against labels y."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    def save(self, path):
        """Write this Result (weights, history, settings and the state to resume) to `path` (.npz).

        The file is written to a temporary name, flushed and renamed into place, so an existing
        checkpoint at `path` stays intact until the new one is complete.  Read it back with
        ``fastadmm.load(path)``.
        """
        return _checkpoint.save(self, path)

    def __repr__(self) -> str:
        widths = [self.weights[0].shape[1] - int(self.intercept)] + [W.shape[0] for W in self.weights]
        shapes = " -> ".join(map(str, widths))
        acc = self.history.get("test_accuracy") or self.history.get("train_accuracy") or []
        last = next((a for a in reversed(acc) if a == a), None)
        acc_s = f", accuracy={last:.4f}" if last is not None else ""
        return (
            f"Result(method={self.method!r}, status={self.status.value!r}, n_iter={self.n_iter}, "
            f"net={shapes}, loss={self.loss!r}{acc_s})"
        )


def load(path) -> Result:
    """Read a Result written by :meth:`Result.save`.

    Raises FileNotFoundError when there is no file, and :class:`fastadmm.CheckpointError` (naming
    the file) for any file that is not a complete, consistent fastadmm checkpoint.
    """
    fields = _checkpoint.read_fields(path)
    if fields["status"] not in STATUSES:
        raise _checkpoint.CheckpointError(f"{path} holds an unknown status {fields['status']!r} (not one of {STATUSES})")
    return Result(**fields)
