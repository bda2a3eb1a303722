"""ADMMClassifier: train_admm behind scikit-learn's estimator conventions."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from ._settings import ADMMSettings
from .admm import train_admm

_DEFAULTS = ADMMSettings()


class ADMMClassifier(ClassifierMixin, BaseEstimator):
    """A fully connected ReLU classifier trained by ADMM (Taylor et al., 2016), scikit-learn style.

    Parameters are those of :func:`fastadmm.train_admm` and :class:`fastadmm.ADMMSettings`
    (see there for what each does and why its default was chosen), except that
    ``hidden_layer_sizes`` defaults to (100,) like scikit-learn's MLPClassifier: one hidden layer
    fits reliably across seeds on small problems, where the deeper (100, 50, 10) of train_admm
    measured 0.83-0.94 training accuracy on scikit-learn's 3-class blobs depending on the seed.

    Attributes
    ----------
    coefs_ : list of weight matrices, ``coefs_[l]`` of shape (n_{l+1}, n_l) (no biases).
    classes_ : class labels.
    n_iter_ : ADMM iterations run.
    loss_curve_ : mean training loss per sample of the forward pass, per iteration.
    result_ : the full :class:`fastadmm.Result` (history, timings, settings, status).
    n_features_in_ : number of features seen in fit.
    """

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        loss="mse",
        max_iter=50,
        beta=_DEFAULTS.beta,
        gamma=_DEFAULTS.gamma,
        initialization=_DEFAULTS.initialization,
        init_scale=_DEFAULTS.init_scale,
        ridge=_DEFAULTS.ridge,
        warm_start_iter=_DEFAULTS.warm_start_iter,
        multiplier=_DEFAULTS.multiplier,
        tol=_DEFAULTS.tol,
        dtype=_DEFAULTS.dtype,
        backend=_DEFAULTS.backend,
        threads=_DEFAULTS.threads,
        random_state=None,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.loss = loss
        self.max_iter = max_iter
        self.beta = beta
        self.gamma = gamma
        self.initialization = initialization
        self.init_scale = init_scale
        self.ridge = ridge
        self.warm_start_iter = warm_start_iter
        self.multiplier = multiplier
        self.tol = tol
        self.dtype = dtype
        self.backend = backend
        self.threads = threads
        self.random_state = random_state

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_classification_targets(y)
        result = train_admm(
            X,
            y,
            hidden=self.hidden_layer_sizes,
            loss=self.loss,
            max_iter=self.max_iter,
            random_state=self.random_state,
            beta=self.beta,
            gamma=self.gamma,
            initialization=self.initialization,
            init_scale=self.init_scale,
            ridge=self.ridge,
            warm_start_iter=self.warm_start_iter,
            multiplier=self.multiplier,
            tol=self.tol,
            dtype=self.dtype,
            backend=self.backend,
            threads=self.threads,
        )
        result.state = None  # the resumable iterates are as large as the data: not kept here
        self.result_ = result
        self.coefs_ = result.weights
        self.classes_ = result.classes
        self.n_iter_ = result.n_iter
        self.loss_curve_ = list(result.history["train_loss"])
        return self

    def decision_function(self, X):
        """Network output; for two classes, output - 0.5 (positive means classes_[1])."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        out = self.result_.decision_function(X)
        if out.shape[1] == 1:
            return out[:, 0] - 0.5
        return out

    def predict(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self.result_.predict(X)
