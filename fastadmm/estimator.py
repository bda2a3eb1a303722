"""ADMMClassifier: train_admm behind scikit-learn's estimator conventions."""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers
import warnings

import numpy as np

from . import _extras

try:  # validate_data is scikit-learn >= 1.6's: an older one fails here too, with the same advice
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import check_is_fitted, validate_data
except ImportError as exc:
    raise _extras.missing_error("fastadmm.ADMMClassifier", "sklearn", exc) from exc

from . import admm as _admm
from . import _validation
from ._settings import ADMMSettings
from .admm import train_admm

# The estimator's own parameters, then every field of ADMMSettings with the same default, so that a
# setting added to the dataclass is a constructor parameter (and in get_params/set_params) at once.
_OWN_PARAMS = {
    # (100,) like MLPClassifier, not train_admm's (100, 50, 10): one hidden layer fits reliably
    # across seeds on small problems, where (100, 50, 10) measured 0.83-0.94 training accuracy on
    # scikit-learn's 3-class blobs depending on the seed.
    "hidden_layer_sizes": (100,),
    "loss": "mse",
    # train_admm's default, whatever it is (it may depend on the method, full batch or mini-batch)
    "max_iter": inspect.signature(train_admm).parameters["max_iter"].default,
    "early_stopping": False,
    "validation_fraction": 0.1,
    "n_iter_no_change": 10,
    "random_state": None,
}
_SETTING_NAMES = tuple(f.name for f in dataclasses.fields(ADMMSettings))


def _field_default(f):
    # The declared default (not an instance's value: a None that train_admm resolves per method
    # must stay None here, or the estimator would pass the full-batch value explicitly).
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


_PARAMS = {**_OWN_PARAMS, **{f.name: _field_default(f) for f in dataclasses.fields(ADMMSettings)}}
assert len(_PARAMS) == len(_OWN_PARAMS) + len(_SETTING_NAMES), "a setting shadows an estimator parameter"

# scikit-learn reads the parameters from the signature of __init__ (get_params, set_params, clone,
# repr); it is built here from _PARAMS, every parameter keyword-only with its default.
_SIGNATURE = inspect.Signature(
    [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    + [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=d) for name, d in _PARAMS.items()]
)


class ADMMClassifier(ClassifierMixin, BaseEstimator):
    """A fully connected ReLU classifier trained by ADMM (Taylor et al., 2016), scikit-learn style.

    Every parameter is keyword-only.

    Parameters
    ----------
    hidden_layer_sizes : hidden layer sizes, default (100,) like scikit-learn's MLPClassifier: one
        hidden layer fits reliably across seeds on small problems, where the deeper (100, 50, 10)
        of train_admm measured 0.83-0.94 training accuracy on scikit-learn's 3-class blobs
        depending on the seed.
    loss : "mse", "hinge" or "cross_entropy" (see :func:`fastadmm.train_admm`).
    max_iter : ADMM iterations (epochs with mini-batches) at most, default train_admm's.  A fit that stops there without meeting ``tol`` issues
        scikit-learn's ``ConvergenceWarning`` (when ``tol > 0``), as MLPClassifier does.
    early_stopping : hold out a stratified ``validation_fraction`` of the training set, measure
        its accuracy after every evaluated iteration (every ``eval_every``), stop when it has not
        improved by at least ``tol`` for more than ``n_iter_no_change`` evaluations in a row (the
        rule of MLPClassifier), and keep the weights of the best evaluation.  Default False.
    validation_fraction : the share of the training set held out by early stopping, in (0, 1):
        ceil(validation_fraction * n_samples) samples as in MLPClassifier, but at least one per class.
    n_iter_no_change : evaluations without improvement tolerated by early stopping.
    random_state : None, an int >= 0 or a numpy Generator: the initial weights and the split of
        early stopping.
    tol : :class:`fastadmm.ADMMSettings`'s convergence test (relative objective change and
        output residual) and, with early stopping, the least gain of validation accuracy that
        counts as an improvement (MLPClassifier's use of tol).
    **every other field of** :class:`fastadmm.ADMMSettings` (beta, gamma, intercept,
        initialization, init_scale, ridge, warm_start_iter, multiplier, penalty_growth, ...,
        dtype, backend, threads), with the same default; see there for what each does and why
        its default was chosen.

    Attributes
    ----------
    coefs_ : list of weight matrices, ``coefs_[l]`` of shape (n_{l+1}, n_l) (no biases; with
        ``intercept`` the last column of ``coefs_[0]`` multiplies a constant input 1).  With early
        stopping, those of the best validation accuracy.
    classes_ : class labels.
    n_iter_ : ADMM iterations run.
    loss_curve_ : mean training loss per sample, per iteration (ADMMSettings.train_metrics: by
        default, with several classes, a forward pass after the output refit; with two, the mean
        over the epoch's batches, each before its update, as scikit-learn's MLP reports it).
    validation_scores_ : with early stopping, the validation accuracy per evaluation; else None.
    best_validation_score_ : with early stopping, the best of them (whose weights are kept); else None.
    result_ : the full :class:`fastadmm.Result` (history, timings, settings, status).  With early
        stopping its history's "test_accuracy" is the validation accuracy.
    n_features_in_ : number of features seen in fit.
    """

    def __init__(self, **params):
        unknown = sorted(set(params) - set(_PARAMS))
        if unknown:
            raise TypeError(
                f"ADMMClassifier got unknown parameter(s) {', '.join(map(repr, unknown))}; "
                f"valid parameters are: {', '.join(sorted(_PARAMS))}"
            )
        bound = _SIGNATURE.bind(self, **params)
        bound.apply_defaults()
        for name, value in bound.arguments.items():
            if name != "self":
                setattr(self, name, value)

    __init__.__signature__ = _SIGNATURE

    def fit(self, X, y):
        """Train on X (n_samples, n_features) and class labels y; returns self."""
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        early_stopping = _validation.as_bool("early_stopping", self.early_stopping)
        random_state = self.random_state
        X_val = y_val = callback = None
        monitor = None
        if early_stopping:
            if _validation.as_int("eval_every", self.eval_every, 0) == 0:
                raise ValueError("early_stopping needs the validation accuracy: set eval_every >= 1 (1 = every iteration)")
            X, X_val, y, y_val, random_state = self._split(X, y)
            monitor = _EarlyStopping(
                _validation.as_int("n_iter_no_change", self.n_iter_no_change, 1),
                _validation.as_real("tol", self.tol, 0),
            )
            callback = monitor
        with warnings.catch_warnings():
            # train_admm's own convergence note: the estimator issues scikit-learn's warning below.
            warnings.simplefilter("ignore", _admm.ConvergenceWarning)
            result = train_admm(
                X,
                y,
                hidden=self.hidden_layer_sizes,
                loss=self.loss,
                max_iter=self.max_iter,
                X_test=X_val,
                y_test=y_val,
                random_state=random_state,
                callback=callback,
                **{name: getattr(self, name) for name in _SETTING_NAMES},
            )
        # The resumable iterates are as large as the data: not kept here.
        result = dataclasses.replace(result, state=None)
        self.validation_scores_ = self.best_validation_score_ = None
        if monitor is not None:
            self.validation_scores_ = monitor.scores
            self.best_validation_score_ = monitor.best
            if monitor.best_weights is not None:
                result = dataclasses.replace(
                    result,
                    weights=monitor.best_weights,
                    message=(f"{monitor.message(result) or result.message}; kept the weights of "
                             f"iteration {monitor.best_iteration} (validation accuracy {monitor.best:.4f})"),
                )
        self.result_ = result
        self.coefs_ = result.weights
        self.classes_ = result.classes
        self.n_iter_ = result.n_iter
        self.loss_curve_ = list(result.history["train_loss"])
        if result.status in ("max_iter", "time_limit") and result.settings.get("tol", 0) > 0:
            warnings.warn(
                f"ADMMClassifier: {result.message}, before meeting tol={result.settings['tol']}; "
                "the weights may improve with a larger max_iter (or set early_stopping=True)",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    def _split(self, X, y):
        """The stratified hold-out of early stopping, and the random_state to pass on to training."""
        from sklearn.model_selection import train_test_split

        fraction = _validation.as_real(
            "validation_fraction", self.validation_fraction, 0, 1, low_open=True, high_open=True
        )
        random_state = self.random_state
        if isinstance(random_state, numbers.Integral) or random_state is None:
            _validation.check_random_state(random_state)  # names random_state (e.g. for -1)
            split_seed = random_state  # an int seeds both, as MLPClassifier's random_state does
        else:  # a Generator or RandomState: the split's seed is drawn from it
            random_state = _validation.check_random_state(random_state)
            split_seed = int(random_state.integers(2**31 - 1))
        # MLPClassifier's hold-out, ceil(fraction * n) samples (train_test_split's rounding), but at
        # least one per class, where MLPClassifier's split would fail on a small training set.
        n_classes = np.unique(y).shape[0]
        n_val = max(math.ceil(fraction * X.shape[0]), n_classes)
        try:
            if X.shape[0] - n_val < n_classes:
                raise ValueError(f"{n_val} held out would leave fewer than {n_classes} (one per class) to train on.")
            X, X_val, y, y_val = train_test_split(X, y, test_size=n_val, stratify=y, random_state=split_seed)
        except ValueError as exc:
            raise ValueError(
                f"early_stopping holds out validation_fraction={fraction} of the {X.shape[0]} samples, stratified "
                f"by class, and could not: {exc} Give at least two samples of every class, change "
                "validation_fraction, or set early_stopping=False"
            ) from None
        missing = np.setdiff1d(y_val, y)
        if missing.shape[0]:  # possible for validation_fraction > 0.5 and classes of few samples
            raise ValueError(
                f"early_stopping's validation_fraction={fraction} held out every sample of class(es) "
                f"{missing[:5].tolist()}, leaving none to train on; lower validation_fraction, or set early_stopping=False"
            )
        return X, X_val, y, y_val, random_state

    def decision_function(self, X):
        """Network output: one column per class for K > 2 classes; for two classes one value per
        sample, positive for classes_[1] (output - 0.5 for a single output, the difference of the
        two outputs for loss="cross_entropy")."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        out = self.result_.decision_function(X)
        if out.shape[1] == 1:
            return out[:, 0] - 0.5
        if out.shape[1] == 2:
            return out[:, 1] - out[:, 0]
        return out

    def predict(self, X):
        """Class labels, by the largest output (or a single output above 0.5)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self.result_.predict(X)

    def predict_proba(self, X):
        """Class probabilities, column k for ``classes_[k]``; the largest is the predicted class.

        Softmax of the outputs, or for a single output (two classes with loss "mse"/"hinge")
        ``[1 - p, p]`` with ``p = sigmoid(8 (output - 0.5))``.  Calibrated only as far as training
        makes them with loss="cross_entropy"; with "mse" and "hinge" they rank classes but are not
        calibrated probabilities (see :meth:`fastadmm.Result.predict_proba`; scikit-learn's
        CalibratedClassifierCV calibrates them).
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self.result_.predict_proba(X)

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`, computed in log space (no log of a rounded 0)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self.result_.predict_log_proba(X)


class _EarlyStopping:
    """train_admm's callback for early stopping: MLPClassifier's rule on the validation accuracy
    (train_admm's "test_accuracy"), keeping a copy of the weights of the best one."""

    def __init__(self, n_iter_no_change, tol):
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.scores = []
        self.best = -math.inf
        self.best_weights = None
        self.best_iteration = 0
        self.no_improvement = 0
        self.stopped = False

    def __call__(self, record):
        score = record["test_accuracy"]
        if score != score:  # not evaluated at this iteration (eval_every > 1)
            return False
        self.scores.append(score)
        if score < self.best + self.tol:
            self.no_improvement += 1
        else:
            self.no_improvement = 0
        if score > self.best:
            # a copy of the full-width weights, taken only when the score improves
            self.best, self.best_weights, self.best_iteration = score, record["weights"](), record["iteration"]
        self.stopped = self.no_improvement > self.n_iter_no_change
        return self.stopped

    def message(self, result):
        if not self.stopped:
            return None
        return (
            f"early stopping at iteration {result.n_iter}: the validation accuracy did not improve by "
            f"tol={self.tol} for {self.no_improvement} evaluations"
        )
