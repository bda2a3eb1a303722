"""The gradient baseline: full-batch gradient descent and minibatch SGD (momentum or Adam), compiled.

Same networks and losses as ADMM (``_losses``): ReLU hidden layers, a linear output layer, no
biases (unless ``intercept=True``), weights ``W_l`` of shape (n_l, n_{l-1}), 0/1 targets, and the
per-sample loss summed over the outputs, ``(o - t)^2`` ("mse") or ``max(1 - o, 0)`` / ``max(o, 0)``
("hinge"), or the softmax cross-entropy ``logsumexp(o) - <t, o>`` ("cross_entropy", one output per
class also for two classes, one-hot targets).  The objective minimised over a batch B (the whole
training set for gradient descent) is the MEAN over its samples of that per-sample loss::

    f_B(W) = 1/|B| sum_{i in B} sum_k loss(o_ik, t_ik)      (mse, hinge)
    f_B(W) = 1/|B| sum_{i in B} logsumexp(o_i) - <t_i, o_i>  (cross_entropy)

Its gradient is back-propagated exactly (the hinge and ReLU kinks get the subgradient 0; for
cross_entropy d/do_i = softmax(o_i) - t_i).  With ``optimizer="momentum"`` (the default) the
update is heavy-ball momentum in PyTorch's form (``torch.optim.SGD`` with ``dampening=0``)::

    v <- momentum * v + grad f_B(W)          (v starts at 0)
    W <- W - lr * v                          (nesterov=False, the default)
    W <- W - lr * (grad f_B(W) + momentum * v)   (nesterov=True)

so ``momentum=0`` is plain (stochastic) gradient descent and the learning rates are comparable
with PyTorch's.  An SGD epoch visits the rows in a fresh random permutation, in minibatches of
``batch_size`` (the last one smaller when ``batch_size`` does not divide n).

With ``optimizer="adam"`` the update is ``torch.optim.Adam`` with its defaults (betas 0.9 / 0.999,
eps 1e-8, no weight decay, amsgrad off), counting steps t = 1, 2, ... over the whole fit::

    m <- beta1 m + (1 - beta1) g;   v <- beta2 v + (1 - beta2) g^2        (m, v start at 0)
    W <- W - lr / (1 - beta1^t) * m / (sqrt(v / (1 - beta2^t)) + eps)

Defaults (measured on MNIST 0 vs 1, see DEFAULT_LR): gradient descent lr 0.1 with momentum 0.5,
100 steps; SGD (batch_size=64, say) lr 0.03 with momentum 0.9, 10 epochs; He-uniform weights.
Adam: lr 1e-3 (DEFAULT_ADAM_LR).

Speed: a whole epoch (every minibatch's gather, forward pass, backward pass and update) is one
Numba-compiled call (the kernels are in ``_sgd_kernels``) working in preallocated buffers, with
the products done by BLAS (``np.dot`` with an ``out`` buffer), so there is no per-step Python
overhead; a gradient-descent step is one such call over the full batch.  The compilation is forced on a tiny input before the clock starts
and reported as ``timings["compile"]``; evaluation (a forward pass over the training and test
sets) is timed apart, as ``timings["eval"]``, and excluded from ``history["elapsed"]``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from . import _arrays, _fit, _inputs, _losses, _sgd_kernels as _k, _threads, _validation
from ._gradient import ADAM_BETAS, ADAM_EPS, GradientSteps, _Net
from ._gradient import _call_epoch, _full_width, _initial_weights, _warmup  # noqa: F401 - benchmarks reach them
from ._constraints import boolean, check_fields, choice, integer, real
from ._settings import DTYPES, TRAIN_METRICS
from ._result import Result

__all__ = [
    "SGDSettings", "train_sgd", "loss_and_gradient", "DEFAULT_LR", "DEFAULT_ADAM_LR", "DEFAULT_MOMENTUM",
    "DEFAULT_MAX_ITER", "MEASURED_BATCH_SIZE", "ADAM_BETAS", "ADAM_EPS", "OPTIMIZERS",
]

OPTIMIZERS = ("momentum", "adam")

# Measured defaults per method: MNIST 0 vs 1 (4,839 training, 2,115 test images, pixels / 255),
# 784-100-50-10-1, loss "mse", He init, float64, one BLAS thread; "reaches 99 %" = the test
# accuracy stays >= 99 % from that iteration on.
#   gd:  lr 0.1, heavy-ball 0.5 reached 99 % in 5-10 steps for all 8 seeds tried (0.044 s a step);
#        heavy-ball 0.9 needed 11-18 steps at lr 0.02-0.05 (3 seeds), Nesterov 0.9 at lr 0.03 5-27,
#        no momentum at lr 0.1 9-10 steps but lr 0.2 already 36-81 steps and lr 0.5 kills every ReLU.
#        Hinge with the same defaults: 2-4 steps.
#   sgd: batch 64, lr 0.03, heavy-ball 0.9: >= 99.4 % after the first epoch for all 8 seeds (0.046 s
#        an epoch); lr 0.003-0.1 all reach 99 % in epoch 1, 0.001 in epoch 2; without momentum lr 0.3
#        killed one seed in three.  The same lr works for batch 16, 32 and 256, and for hinge.
DEFAULT_LR = {"gd": 0.1, "sgd": 0.03}
DEFAULT_MOMENTUM = {"gd": 0.5, "sgd": 0.9}
# 100 GD steps: 4.4 s of training (+ 3.3 s of evaluation) on MNIST 0/1, test accuracy 99.7-99.9 %;
# 10 SGD epochs: 0.5 s, 99.8-100 %.
DEFAULT_MAX_ITER = {"gd": 100, "sgd": 10}
# The minibatch the "sgd" and Adam defaults were measured with (batch_size has no default: None = gd).
MEASURED_BATCH_SIZE = 64
# The training-loss stop rule's tol where tol is None: SGD scikit-learn MLP's 1e-4 (relative here), as
# mini-batch ADMM; gradient descent none (its 100 steps were measured as a whole).
DEFAULT_TOL = {"gd": 0.0, "sgd": 1e-4}
# optimizer="adam": torch.optim.Adam with its defaults (betas, eps below; no weight decay, amsgrad off).
# Step size measured with 784-100-50-10-(1 or 10), He init, float64, one thread (benchmarks/sgd_baseline_measure.py):
#   sgd, batch 64, 10 epochs, MNIST ten digits (22,699 train / 10,000 test), test accuracy after epochs 1 / 10:
#     mse           lr 3e-4: 62.5 / 95.9 %   1e-3: 83.5 / 95.6 %   3e-3: 55.5 / 59.8 %   1e-2: 9.8 % (every ReLU dead)
#     cross_entropy lr 3e-4: 88.7 / 96.0 %   1e-3: 92.8 / 96.6 %   3e-3: 94.2 / 96.2 %   1e-2: 93.9 / 96.1 %
#   sgd, MNIST 0/1, 2 seeds: lr 3e-4 to 1e-2 all >= 99.5 % after epoch 1 and 99.86-100 % after 10, either loss.
#   gd (full batch, MNIST 0/1, mse, 100 steps, 2 seeds): lr 1e-3, 3e-3, 1e-2 all end at 99.7-99.9 % (3e-3 and
#     1e-2 reach 99.5 % by step 20, 1e-3 by step 30); lr 3e-2 is unstable (54.6 % at step 10, ends lower).
#   So 1e-3 (torch's default): the best on ten digits, 3x below the rate where mse kills the net.
DEFAULT_ADAM_LR = {"gd": 1e-3, "sgd": 1e-3}
# ADAM_BETAS = (0.9, 0.999) and ADAM_EPS = 1e-8: torch.optim.Adam's defaults (not tuned here), in _gradient.

# What each field of SGDSettings may hold: checked in one place (fastadmm._constraints.check_fields);
# none=True: None is allowed (the method's measured default).
SGD_CONSTRAINTS = (
    real("lr", 0, low_open=True, none=True),
    choice("optimizer", OPTIMIZERS),
    real("momentum", 0, 1, high_open=True, none=True),
    boolean("nesterov"),
    integer("batch_size", 1, none=True),
    integer("max_iter", 1, none=True),
    real("init_scale", 0, low_open=True, none=True),
    boolean("intercept"),
    integer("eval_every", 0),
    real("tol", 0, none=True),
    integer("n_iter_no_change", 1),
    choice("train_metrics", TRAIN_METRICS, none=True),
    real("time_limit", 0, low_open=True, none=True),
    choice("dtype", DTYPES, none=True),
    integer("threads", 1, none=True),
    boolean("skip_zero_inputs"),
)


@dataclass
class SGDSettings:
    """Settings of :func:`fastadmm.sgd.train_sgd` (each is also a keyword of train_sgd)."""

    # Step size.  None = the measured default of the method (see DEFAULT_LR for the measurements):
    # 0.1 for full-batch gradient descent, 0.03 for minibatch SGD.
    lr: Optional[float] = None
    # "momentum": heavy-ball (or Nesterov) SGD / GD as torch.optim.SGD, the measured defaults above.
    # "adam": torch.optim.Adam with its defaults (ADAM_BETAS, ADAM_EPS, bias correction, no weight
    # decay, amsgrad off), lr default DEFAULT_ADAM_LR; momentum and nesterov must then stay unset.
    # Measured (benchmarks/sgd_baseline_measure.py; MNIST ten digits, 22,699 train / 10,000 test, batch 64, 10
    # epochs, nets 784-300-10 and 784-100-50-10, seeds 0-2 in float32 and 0 in float64, 16 pairs):
    # test accuracy of Adam (lr 1e-3) minus momentum (lr 0.03, 0.9) is -0.3..+0.2 points with
    # cross_entropy and -0.1..+0.8 with mse (96.3-97.5 % in all); an epoch costs the same (0.76 vs
    # 0.75 s on 784-300-10, float32, one thread; torch.optim.Adam 2.6 s).  So "momentum" stays the
    # default, and "adam" is there to compare with PyTorch's usual baseline (in float64 it reaches
    # the same test accuracy as torch.optim.Adam from the same start and batches).
    optimizer: str = "momentum"
    # Heavy-ball momentum in PyTorch's form (v <- momentum v + g; W <- W - lr v); 0 = none.
    # None = the measured default of the method: 0.5 for gradient descent (0.9 took twice the
    # steps to 99 % on MNIST 0/1), 0.9 for SGD.
    momentum: Optional[float] = None
    # Use Nesterov's form of the momentum step (W <- W - lr (g + momentum v)) instead.
    nesterov: bool = False
    # Rows per minibatch; None = the full batch (gradient descent, method "gd"), an int = SGD.
    batch_size: Optional[int] = None
    # Iterations: gradient-descent steps, or SGD epochs (the keyword `epochs` is the same thing).
    # None = the default of the method: 100 GD steps, 10 SGD epochs (see DEFAULT_MAX_ITER).
    max_iter: Optional[int] = None
    # Initial weights.  None = He/Kaiming-uniform: W_l ~ U(-b, b) with b = sqrt(6 / n_{l-1}) for
    # the layers followed by a ReLU and b = sqrt(3 / n_{l-1}) for the linear output layer (both
    # keep the second moment of the pre-activations equal to that of the layer's input); a number
    # = Gaussian weights of that standard deviation, like ADMM's init_scale.
    init_scale: Optional[float] = None
    # Give the first layer a bias (the last column of W_1 multiplies a constant input 1, starting
    # at 0), exactly as ADMMSettings.intercept, whose default it shares so that the two are compared on
    # the same model.  False = no biases, like the paper and the course report.
    intercept: bool = True
    # Evaluate (train loss and accuracy, test accuracy; a forward pass not counted in the training
    # time) every this many iterations and after the last one; 0 = after the last one only.
    eval_every: int = 1
    # The stop rule (status "converged"), judged at every evaluation: the training loss (history
    # "train_loss") has not fallen below best * (1 - tol), best the lowest so far, at n_iter_no_change
    # evaluations in a row (scikit-learn MLP's rule with a relative tol); with train_sgd's
    # validation_fraction the validation accuracy, which has not risen above best * (1 + tol).  Reaching
    # max_iter is an ordinary end (no warning).  None = DEFAULT_TOL (SGD 1e-4; gradient descent 0);
    # 0 = no training-loss rule.
    tol: Optional[float] = None
    # Evaluations without improvement that stop the fit (see tol); 10 as scikit-learn's MLP.
    n_iter_no_change: int = 10
    # What the history's train_loss and train_accuracy measure, as ADMMSettings.train_metrics:
    # "full" = a forward pass over the training set with the iteration's final weights; "running" =
    # the epoch's mean over its batches, each at the weights before its step (no extra pass; for
    # gradient descent, the full batch before the step: the previous iteration's weights).  None =
    # "running" for minibatch SGD, "full" for gradient descent.
    train_metrics: Optional[str] = None
    # Limit of the training time (evaluation excluded) in seconds, checked after every iteration
    # (status "time_limit"); None = none.
    time_limit: Optional[float] = None
    # Floating type of every array: None = float32 if X is float32, else float64.
    dtype: Optional[str] = None
    # BLAS threads during the fit (threadpoolctl); None = leave them as they are.  1 by default, as
    # ADMMSettings.threads (more BLAS threads were far slower on a busy 2-core machine).
    threads: Optional[int] = 1
    # Leave input features that are zero in every training sample out of the first layer's products
    # when at least 10 % are (as ADMMSettings.skip_zero_inputs): exact, since their gradient is 0 and
    # their weights keep the initial values, which are put back.  Measured: 21 % faster steps on MNIST 0/1.
    skip_zero_inputs: bool = True

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError/TypeError naming the first field that is not usable (SGD_CONSTRAINTS, then
        the rules across fields); numbers are stored as Python float/int/bool."""
        check_fields(self, SGD_CONSTRAINTS)
        if self.optimizer == "adam" and (self.momentum is not None or self.nesterov):
            raise ValueError(
                "momentum and nesterov apply to optimizer='momentum' only; with optimizer='adam' leave "
                f"them unset (got momentum={self.momentum!r}, nesterov={self.nesterov!r})"
            )
        if self.nesterov and self.momentum is not None and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")

    @property
    def method(self) -> str:
        return "gd" if self.batch_size is None else "sgd"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def loss_and_gradient(weights, X, T, loss="mse", intercept=False):
    """(mean loss, gradient of the mean loss per layer) of the compiled backward pass.

    `weights` as Result.weights, `X` (n, n_features), `T` (n, n_outputs) 0/1 targets; all one
    floating dtype.  Exposed for testing the compiled gradient against finite differences.
    """
    dtype = weights[0].dtype
    X = np.ascontiguousarray(X, dtype=dtype)
    T = np.ascontiguousarray(T, dtype=dtype)
    sizes = [X.shape[1]] + [W.shape[0] for W in weights]
    net = _Net(sizes, intercept, dtype, rows=X.shape[0])
    net.set_weights(weights)
    total = _k.loss_and_gradient(X, T, net.params, net.grad, net.w_off, net.sizes, int(net.bias_off),
                                 _losses.LOSS_CODE[_validation.check_loss(loss)], net.act, net.delta)
    return total / X.shape[0], net.weights(net.grad)


# ---------------------------------------------------------------------------------------------
# The driver.
# ---------------------------------------------------------------------------------------------


def _settings_from(settings, overrides, max_iter, epochs) -> SGDSettings:
    """The SGDSettings of a call: `settings` (or the defaults) with the keywords put over it."""
    if max_iter is not None and epochs is not None:
        raise ValueError(
            f"give max_iter or epochs, not both (got max_iter={max_iter!r}, epochs={epochs!r}); "
            "both count iterations: gradient-descent steps or SGD epochs"
        )
    if settings is not None and not isinstance(settings, SGDSettings):
        raise TypeError(f"settings must be an SGDSettings, got {type(settings).__name__}")
    names = {f.name for f in dataclasses.fields(SGDSettings)} - {"max_iter"}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(f"unknown setting(s) {', '.join(map(repr, unknown))}; valid settings are: {', '.join(sorted(names))}")
    values = (settings or SGDSettings()).as_dict()
    values.update(overrides)
    if max_iter is not None or epochs is not None:
        name = "epochs" if epochs is not None else "max_iter"
        values["max_iter"] = _validation.check_max_iter(epochs if epochs is not None else max_iter, name)
    return SGDSettings(**values)


def train_sgd(
    X,
    y,
    *,
    hidden=(100, 50, 10),
    loss: str = "mse",
    max_iter: Optional[int] = None,
    X_test=None,
    y_test=None,
    random_state=None,
    callback: Optional[Callable[[dict], Optional[bool]]] = None,
    settings: Optional[SGDSettings] = None,
    epochs: Optional[int] = None,
    validation_fraction: Optional[float] = None,
    verbose=0,
    **overrides,
) -> Result:
    """Train the same network as ADMM by gradient descent (full batch) or minibatch SGD.

    Parameters
    ----------
    X : array (n_samples, n_features); float32 X trains in float32, anything else in float64, unless
        ``dtype`` ("float32" or "float64") says otherwise (X is then converted once).
    y : class labels (n_samples,).  Two classes give one output unit (K for cross_entropy), K > 2
        give K (one-hot).
    hidden : hidden layer sizes, e.g. (100, 50, 10); () is a linear model.
    loss : "mse" or "hinge" per output entry against 0/1 targets, or "cross_entropy" (softmax over
        the outputs); the objective is the mean over the batch of the per-sample loss.
    max_iter, epochs : the number of iterations, gradient-descent steps or SGD epochs (for full
        batch one epoch is one step); give at most one of the two.  None = settings.max_iter, else
        DEFAULT_MAX_ITER.
    X_test, y_test : optional held-out set, evaluated with the training set (train_metrics: the
        training set's loss and accuracy from a forward pass, or, by default for SGD, the running
        mean over the epoch's batches).
    random_state : None, an int seed or a numpy Generator (initial weights and the permutations).
    callback : called after every evaluation with a dict (iteration, elapsed, train_loss,
        train_accuracy, test_accuracy, and "weights", a function returning copies of the current
        weights); returning True stops the fit with status "interrupted" (a KeyboardInterrupt
        raised in it too, keeping the fit).
    settings : an SGDSettings; any keyword in **overrides overrides one of its fields: lr,
        optimizer ("momentum", torch.optim.SGD's heavy ball, or "adam"), momentum, nesterov,
        batch_size (None = full-batch gradient descent, method "gd"; an int in 1..n_samples =
        minibatch SGD, method "sgd"), init_scale, intercept, dtype, eval_every, time_limit, threads,
        skip_zero_inputs.  See :class:`SGDSettings` (lr and momentum None = the measured default of
        the method and optimizer: DEFAULT_LR, DEFAULT_ADAM_LR, DEFAULT_MOMENTUM).
    validation_fraction : None, or a share in (0, 1) of the training rows held out, of every class
        its last rows, as :func:`fastadmm.train_admm` holds them out: their accuracy (history
        "validation_accuracy") is judged instead of the training loss by the stop rule (``tol``,
        ``n_iter_no_change``), and the Result holds the weights of its best evaluation.
    verbose : 0 prints nothing; 1 (or True) one line per iteration (loss, accuracies, seconds) and
        the stop message, as train_admm.

    Returns
    -------
    Result with method "gd" or "sgd" and status "converged" (the stop rule, see SGDSettings.tol),
    "max_iter", "time_limit", "diverged" (a
    non-finite loss or weight: the last finite weights are kept, with a DivergenceWarning) or
    "interrupted" (Ctrl-C or KeyboardInterrupt, with a warning; or the callback returned True).  ``history`` has one entry per evaluation; ``timings`` has
    "setup", "compile", "train", "eval" and "total".
    """
    t_start = time.perf_counter()
    s = _settings_from(settings, overrides, max_iter, epochs)
    loss = _validation.check_loss(loss)
    hidden = _validation.check_hidden(hidden)
    if callback is not None and not callable(callback):
        raise TypeError("callback must be callable (or None)")
    verbose = _validation.check_verbose(verbose)
    validation_fraction = _validation.check_validation_fraction(validation_fraction, s.eval_every)
    X, y_index, classes = _arrays.check_Xy(X, y, s.dtype)
    X_val = y_val_index = None
    if validation_fraction is not None:  # the last rows of every class, as train_admm holds them out
        train_rows, val_rows = _validation.validation_rows(y_index, validation_fraction)
        X, X_val, y_val_index, y_index = X[train_rows], X[val_rows], y_index[val_rows], y_index[train_rows]
    if s.batch_size is not None and s.batch_size > X.shape[0]:
        raise ValueError(
            f"batch_size must be at most the number of samples ({X.shape[0]}), got {s.batch_size}; "
            "pass batch_size=None for full-batch gradient descent"
        )
    rng = _validation.check_random_state(random_state)
    X_test, y_test_index = _arrays.check_test(X_test, y_test, classes, X.shape[1], X.dtype)
    method = s.method
    adam = s.optimizer == "adam"
    lr_used = float(s.lr if s.lr is not None else (DEFAULT_ADAM_LR if adam else DEFAULT_LR)[method])
    momentum_used = None if adam else float(s.momentum if s.momentum is not None else DEFAULT_MOMENTUM[method])
    max_iter = int(s.max_iter if s.max_iter is not None else DEFAULT_MAX_ITER[method])
    tol = float(s.tol if s.tol is not None else DEFAULT_TOL[method])
    train_metrics = s.train_metrics or ("full" if s.batch_size is None else "running")
    n, n_features, dt = X.shape[0], X.shape[1], X.dtype

    timings = {k: 0.0 for k in ("setup", "compile", "train", "eval", "total")}
    limits = _threads.limit(s.threads) if s.threads is not None else None
    try:
        t_compile = time.perf_counter()
        _warmup(dt, s.intercept)
        timings["compile"] = time.perf_counter() - t_compile

        T = _losses.targets(y_index, len(classes), dt, loss)
        sizes = [n_features, *hidden, _losses.n_outputs(len(classes), loss)]
        initial = _initial_weights(rng, sizes, s.init_scale, s.intercept, dt)
        active = _inputs.kept_features(_inputs.nonzero_features(X)) if s.skip_zero_inputs else None
        if active is not None:
            X = np.ascontiguousarray(X[:, active])
            sizes[0] = active.shape[0]
        net = _Net(sizes, s.intercept, dt, n if s.batch_size is None else s.batch_size, s.optimizer)
        net.set_weights([_inputs.take_columns(initial[0], active, s.intercept), *initial[1:]])
        step = GradientSteps(net, X, T, rng, lr_used, momentum_used or 0.0, s.nesterov, loss, s.batch_size,
                              initial, active)
        timings["setup"] = time.perf_counter() - t_start - timings["compile"]
        used = s.as_dict()
        used.update(
            lr=lr_used, momentum=momentum_used, max_iter=max_iter, method=method, train_metrics=train_metrics, tol=tol,
            validation_fraction=validation_fraction, n_validation=0 if X_val is None else int(X_val.shape[0]),
            hidden=list(hidden), loss=loss,
            dtype=dt.name, n_samples=int(n), n_features=int(n_features), n_classes=int(len(classes)),
            random_state=random_state if isinstance(random_state, (int, type(None))) else repr(random_state),
        )
        plan = _fit.Plan(
            method=method, max_iter=max_iter, eval_every=s.eval_every, eval_last=True, time_limit=s.time_limit,
            train_metrics=train_metrics, tol=tol, stop_rule="train_loss", n_iter_no_change=s.n_iter_no_change,
            verbose=verbose, iteration_name="epoch" if method == "sgd" else "step",
            callback=callback, divergence_hint="Try a smaller lr.",
            result_fields=dict(classes=classes, loss=loss, settings=used, intercept=s.intercept),
        )
        # The test set keeps every feature: it meets the full-width weights (the left-out features'
        # initial weights multiply its values there).
        return _fit.run(step, plan, _fit.Data(y_index, T, X_test, y_test_index, X_val, y_val_index), timings, t_start)
    finally:
        if limits is not None:
            limits.unregister()


_fit.show_settings_keywords(train_sgd, SGDSettings)  # help(train_sgd) lists the keywords of **overrides
