"""ADMMClassifier: train_admm behind scikit-learn's estimator conventions."""

from __future__ import annotations

import dataclasses
import inspect
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
    "validation_fraction": 0.1,  # n_iter_no_change (10) is a field of ADMMSettings, below
    "random_state": None,
    "verbose": 0,
    "comm": None,  # one process; an mpi4py communicator (or fastadmm's) trains over its ranks
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
    max_iter : ADMM iterations (epochs with mini-batches) at most, default train_admm's.  Full-batch
        ADMM (``batch_size=None``) that stops there before meeting ``tol`` issues scikit-learn's
        ``ConvergenceWarning``, as MLPClassifier does; for mini-batch ADMM (the default) max_iter
        epochs is an ordinary end, without a warning.
    early_stopping : shuffle the rows (seeded by ``random_state``) and let train_admm hold out
        ``validation_fraction`` of them, stratified (the last rows of every class), measure their
        accuracy at every evaluation (every ``eval_every`` iterations), stop when it has not risen
        above its best by more than ``tol`` (relative) for ``n_iter_no_change`` evaluations in a row,
        and keep the weights of the best evaluation (train_admm's ``validation_fraction``).
        Default False.
    validation_fraction : the share of the training set held out by early stopping, in (0, 1):
        round(validation_fraction * n_c) samples of each class c, at least one, and none of a class
        with a single sample.
    n_iter_no_change : (a field of ADMMSettings, default 10) evaluations without improvement that
        stop the fit: of the training loss for mini-batch ADMM, of the validation accuracy with
        early stopping.
    random_state : None, an int >= 0 or a numpy Generator: the initial weights and the split of
        early stopping.
    verbose : 0 (default) silent; 1 (or True) train_admm prints a line per iteration (loss,
        accuracy, validation accuracy with early stopping, seconds) and the stop message.
    comm : None (default, one process), or an mpi4py communicator (or a fastadmm one): ``fit`` on
        every rank, each with its own rows, trains one model over all of them (train_admm's
        ``comm``; run under ``mpiexec``), and every rank ends with the same coefficients, which
        predict on any rows.  With early stopping each rank holds out its share of its own rows,
        and the validation accuracy is over all of them.  The communicator is a
        handle on the running job: ``clone`` keeps it, while a pickled (or deep-copied) estimator
        leaves it out (``comm`` None), so that a saved model loads in any process.
    tol : :class:`fastadmm.ADMMSettings`'s stop rule: the relative objective change and output
        residual of full-batch ADMM; the relative gain of the epoch's training loss of mini-batch
        ADMM; with early stopping the relative gain of validation accuracy.  None = the method's
        default.
    **every other field of** :class:`fastadmm.ADMMSettings` (beta, gamma, intercept,
        initialization, init_scale, ridge, warm_start_iter, multiplier, penalty_growth, ...,
        dtype, backend, threads), with the same default; see there for what each does and why
        its default was chosen.

    Attributes
    ----------
    coefs_ : list of weight matrices, ``coefs_[l]`` of shape (n_{l+1}, n_l), or (n_{l+1}, n_l + 1)
        for a layer with a bias, whose last column multiplies a constant input 1: every layer of
        mini-batch ADMM (the default), the first layer of full-batch ADMM with ``intercept``.  With
        early stopping, those of the best validation accuracy.
    classes_ : class labels.
    n_iter_ : ADMM iterations run.
    loss_curve_ : mean training loss per sample, per iteration (ADMMSettings.train_metrics: by
        default, with several classes, a forward pass after the output refit; with two, the mean
        over the epoch's batches, each before its update, as scikit-learn's MLP reports it).
    validation_scores_ : with early stopping, the validation accuracy per evaluation; else None.
    best_validation_score_ : with early stopping, the best of them (whose weights are kept); else None.
    result_ : the full :class:`fastadmm.Result` (history, timings, settings, status).  With early
        stopping its history has the "validation_accuracy" of every iteration.
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
        """Train on X (n_samples, n_features) and class labels y; returns self.  A fit that raises
        (a refused parameter or input, an error in training) leaves the estimator as it was: a
        fitted one keeps its model."""
        before = dict(vars(self))
        try:
            return self._fit(X, y)
        except BaseException:
            vars(self).clear()
            vars(self).update(before)
            raise

    def _fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        early_stopping = _validation.as_bool("early_stopping", self.early_stopping)
        random_state = self.random_state
        validation_fraction = None
        if early_stopping:
            if _validation.as_int("eval_every", self.eval_every, 0) == 0:
                raise ValueError("early_stopping needs the validation accuracy: set eval_every >= 1 (1 = every iteration)")
            X, y, random_state = self._shuffle(X, y)
            validation_fraction = self.validation_fraction
        # Every warning of train_admm reaches the user; its ConvergenceWarning (full-batch ADMM at
        # max_iter before tol) as scikit-learn's, which scikit-learn users filter.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = train_admm(
                X,
                y,
                hidden=self.hidden_layer_sizes,
                loss=self.loss,
                max_iter=self.max_iter,
                random_state=random_state,
                validation_fraction=validation_fraction,
                verbose=self.verbose,
                comm=self.comm,
                **{name: getattr(self, name) for name in _SETTING_NAMES},
            )
        for w in caught:
            if issubclass(w.category, _admm.ConvergenceWarning):
                warnings.warn(f"ADMMClassifier: {w.message}; the weights may improve with a larger max_iter (or set "
                              "early_stopping=True)", ConvergenceWarning, stacklevel=3)
            else:
                warnings.warn(w.message, w.category, stacklevel=3)
        # The resumable iterates are as large as the data: not kept here.
        result = dataclasses.replace(result, state=None)
        self.validation_scores_ = self.best_validation_score_ = None
        if early_stopping:
            self.validation_scores_ = [v for v in result.history["validation_accuracy"] if v == v]
            self.best_validation_score_ = max(self.validation_scores_, default=None)
        self.result_ = result
        self.coefs_ = result.weights
        self.classes_ = result.classes
        self.n_iter_ = result.n_iter
        self.loss_curve_ = list(result.history["train_loss"])
        return self

    def __getstate__(self):
        state = super().__getstate__()
        if state.get("comm") is not None:  # a handle on a running job: not part of a saved model
            state = dict(state, comm=None)
        return state

    def _shuffle(self, X, y):
        """X and y in a random order (train_admm then holds out the last rows of every class: a
        random stratified hold-out, as MLPClassifier's), and the random_state to pass on to training."""
        random_state = self.random_state
        if isinstance(random_state, numbers.Integral) or random_state is None:
            _validation.check_random_state(random_state)  # names random_state (e.g. for -1)
            split_seed = random_state  # an int seeds both, as MLPClassifier's random_state does
        else:  # a Generator or RandomState: the split's seed is drawn from it
            random_state = _validation.check_random_state(random_state)
            split_seed = int(random_state.integers(2**31 - 1))
        order = np.random.default_rng(split_seed).permutation(X.shape[0])
        return X[order], y[order], random_state

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
