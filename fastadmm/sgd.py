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
import math
import numbers
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
from threadpoolctl import threadpool_limits

from . import _inputs, _losses, _sgd_kernels as _k, _validation
from ._interrupt import deferred_sigint
from ._result import Result
from .admm import DivergenceWarning

__all__ = [
    "SGDSettings", "train_sgd", "loss_and_gradient", "DEFAULT_LR", "DEFAULT_ADAM_LR", "DEFAULT_MOMENTUM",
    "DEFAULT_MAX_ITER", "ADAM_BETAS", "ADAM_EPS", "OPTIMIZERS",
]

OPTIMIZERS = ("momentum", "adam")
_EVAL_CHUNK = 8192  # rows per block of the evaluation forward pass (bounds its scratch memory)
_DTYPES = ("float32", "float64")

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
ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults (not tuned here)
ADAM_EPS = 1e-8  # torch.optim.Adam's default


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
        """Raise ValueError/TypeError naming the first field that is not usable."""

        def number(name, value, *, low=None, low_open=False, high_open=None):
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise TypeError(f"{name} must be a real number, got {value!r}")
            value = float(value)
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite, got {value!r}")
            if low is not None and (value < low or (low_open and value == low)):
                raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value!r}")
            if high_open is not None and value >= high_open:
                raise ValueError(f"{name} must be < {high_open}, got {value!r}")

        def integer(name, value, low):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{name} must be an integer >= {low}, got {value!r}")
            if value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

        if not isinstance(self.optimizer, str) or self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.optimizer == "adam" and (self.momentum is not None or self.nesterov):
            raise ValueError(
                "momentum and nesterov apply to optimizer='momentum' only; with optimizer='adam' leave "
                f"them unset (got momentum={self.momentum!r}, nesterov={self.nesterov!r})"
            )
        if self.lr is not None:
            number("lr", self.lr, low=0, low_open=True)
        if self.momentum is not None:
            number("momentum", self.momentum, low=0, high_open=1)
        if not isinstance(self.nesterov, (bool, np.bool_)):
            raise TypeError(f"nesterov must be True or False, got {self.nesterov!r}")
        if self.nesterov and self.momentum is not None and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        if self.batch_size is not None:
            integer("batch_size", self.batch_size, 1)
        if self.max_iter is not None:
            integer("max_iter", self.max_iter, 1)
        if self.init_scale is not None:
            number("init_scale", self.init_scale, low=0, low_open=True)
        if not isinstance(self.intercept, (bool, np.bool_)):
            raise TypeError(f"intercept must be True or False, got {self.intercept!r}")
        integer("eval_every", self.eval_every, 0)
        if self.time_limit is not None:
            number("time_limit", self.time_limit, low=0, low_open=True)
        if self.dtype is not None and str(self.dtype) not in _DTYPES:
            raise ValueError(f"dtype must be None or one of {_DTYPES}, got {self.dtype!r}")
        if self.threads is not None:
            integer("threads", self.threads, 1)

    @property
    def method(self) -> str:
        return "gd" if self.batch_size is None else "sgd"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# The network's flat parameters and buffers.
# ---------------------------------------------------------------------------------------------


class _Net:
    """Flat parameter, optimizer-state and gradient buffers of an MLP, and the views that make its weights.

    `state1` is the momentum buffer (or Adam's first moment), `state2` Adam's second moment (empty
    for momentum), `step` the count of Adam steps taken; all allocated once, here.
    """

    def __init__(self, sizes, intercept, dtype, rows, optimizer="momentum"):
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.L = len(sizes) - 1
        self.intercept = bool(intercept)
        w_off = [0]
        for l in range(1, self.L + 1):
            w_off.append(w_off[-1] + sizes[l] * sizes[l - 1])
        self.w_off = np.asarray(w_off, dtype=np.int64)
        self.bias_off = int(w_off[-1]) if intercept else -1
        n_params = w_off[-1] + (sizes[1] if intercept else 0)
        self.params = np.zeros(n_params, dtype)
        self.optimizer = optimizer
        self.state1 = np.zeros(n_params, dtype)
        self.state2 = np.zeros(n_params if optimizer == "adam" else 0, dtype)
        self.step = np.zeros(1, np.int64)
        self.grad = np.zeros(n_params, dtype)
        self.rows = int(rows)
        width = sum(sizes[1:])
        self.act = np.empty(self.rows * width, dtype)
        self.delta = np.empty(self.rows * width, dtype)

    def view(self, l):
        """W_l (1-based) as a view of the flat parameters."""
        return self.params[self.w_off[l - 1] : self.w_off[l]].reshape(self.sizes[l], self.sizes[l - 1])

    def set_weights(self, weights):
        for l, W in enumerate(weights, start=1):
            if self.intercept and l == 1:
                self.view(1)[...] = W[:, :-1]
                self.params[self.bias_off :] = W[:, -1]
            else:
                self.view(l)[...] = W

    def weights(self, params=None):
        """Copies of the weights as Result.weights holds them (bias as W_1's last column)."""
        saved = self.params
        if params is not None:
            self.params = params
        try:
            out = [self.view(l).copy() for l in range(1, self.L + 1)]
            if self.intercept:
                out[0] = np.concatenate([out[0], self.params[self.bias_off :, None]], axis=1)
            return out
        finally:
            self.params = saved


def _full_width(initial, weights, kept, intercept):
    """Weights at the user's width: the trained columns, and the initial values of the left-out
    features (whose gradient is exactly 0, so full-width training would leave them there too)."""
    if kept is None:
        return weights
    return [_inputs.put_columns(initial[0].copy(), weights[0], kept, intercept), *weights[1:]]


def _initial_weights(rng, sizes, init_scale, intercept, dtype):
    """He/Kaiming-uniform (init_scale None) or Gaussian(0, init_scale) weights; bias 0."""
    L = len(sizes) - 1
    weights = []
    for l in range(1, L + 1):
        shape = (sizes[l], sizes[l - 1])
        if init_scale is None:
            bound = math.sqrt((6.0 if l < L else 3.0) / sizes[l - 1])
            W = rng.uniform(-bound, bound, shape)
        else:
            W = rng.normal(0.0, init_scale, shape)
        if l == 1 and intercept:
            W = np.concatenate([W, np.zeros((sizes[1], 1))], axis=1)
        weights.append(W.astype(dtype))
    return weights


def _call_epoch(net, X, T, order, batch_size, lr, momentum, nesterov, loss_code, xbuf, tbuf):
    # Every argument has a fixed type (int, float, bool, C arrays) so the warm-up's compilation is reused.
    return _k.epoch(
        X, T, order, net.params, net.state1, net.state2, net.grad, net.w_off, net.sizes, int(net.bias_off),
        int(batch_size), int(_k.OPTIMIZER_CODE[net.optimizer]), float(lr), float(momentum), bool(nesterov),
        float(ADAM_BETAS[0]), float(ADAM_BETAS[1]), float(ADAM_EPS), net.step, int(loss_code), net.act,
        net.delta, xbuf, tbuf,
    )


def _warmup(dtype, intercept):
    """Compile (or load from Numba's cache) the kernels for `dtype` on a tiny problem."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 3)).astype(dtype)
    T = (rng.random((5, 1)) > 0.5).astype(dtype)
    net = _Net([3, 2, 1], intercept, dtype, rows=2, optimizer="adam")  # one compilation serves both optimizers
    net.params[:] = rng.normal(size=net.params.shape)
    xbuf, tbuf = np.empty(2 * 3, dtype), np.empty(2, dtype)
    _call_epoch(net, X, T, np.arange(5, dtype=np.int64), 2, 1e-3, 0.9, False, 0, xbuf, tbuf)


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
                                 _k.LOSS_CODE[_validation.check_loss(loss)], net.act, net.delta)
    return total / X.shape[0], net.weights(net.grad)


# ---------------------------------------------------------------------------------------------
# The driver.
# ---------------------------------------------------------------------------------------------

_D = SGDSettings()


def _evaluate(weights, X, y_index, T, loss, intercept):
    """(summed loss, number correct) of an ordinary forward pass, in row blocks."""
    total, correct = 0.0, 0
    for start in range(0, X.shape[0], _EVAL_CHUNK):
        out = _losses.forward(weights, X[start : start + _EVAL_CHUNK], intercept)
        correct += int(np.sum(_losses.predict_index(out) == y_index[start : start + _EVAL_CHUNK]))
        if T is not None:
            total += _losses.loss_sum(out, T[start : start + _EVAL_CHUNK], loss)
    return total, correct


def train_sgd(
    X,
    y,
    *,
    hidden=(100, 50, 10),
    loss: str = "mse",
    lr: Optional[float] = _D.lr,
    optimizer: str = _D.optimizer,
    batch_size: Optional[int] = _D.batch_size,
    max_iter: Optional[int] = None,
    epochs: Optional[int] = None,
    momentum: Optional[float] = _D.momentum,
    nesterov: bool = _D.nesterov,
    random_state=None,
    X_test=None,
    y_test=None,
    init_scale: Optional[float] = _D.init_scale,
    intercept: bool = _D.intercept,
    dtype: Optional[str] = _D.dtype,
    eval_every: int = _D.eval_every,
    time_limit: Optional[float] = _D.time_limit,
    threads: Optional[int] = _D.threads,
    skip_zero_inputs: bool = _D.skip_zero_inputs,
    callback: Optional[Callable[[dict], Optional[bool]]] = None,
) -> Result:
    """Train the same network as ADMM by gradient descent (full batch) or minibatch SGD.

    Parameters
    ----------
    X : array (n_samples, n_features); float32 X trains in float32, anything else in float64.
    y : class labels (n_samples,).  Two classes give one output unit (K for cross_entropy), K > 2
        give K (one-hot).
    hidden : hidden layer sizes, e.g. (100, 50, 10); () is a linear model.
    loss : "mse" or "hinge" per output entry against 0/1 targets, or "cross_entropy" (softmax over
        the outputs); the objective is the mean over the batch of the per-sample loss.
    lr : step size; None = the measured default of the method and optimizer (DEFAULT_LR, DEFAULT_ADAM_LR).
    optimizer : "momentum" (torch.optim.SGD's heavy ball, the default) or "adam" (torch.optim.Adam
        with its defaults); see :class:`SGDSettings`.
    batch_size : None = full-batch gradient descent (method "gd"); an int in 1..n_samples =
        minibatch SGD (method "sgd"), a fresh random permutation of the rows every epoch.
    max_iter, epochs : the number of iterations, gradient-descent steps or SGD epochs (for full
        batch one epoch is one step); give at most one of the two.  None = DEFAULT_MAX_ITER.
    momentum, nesterov : heavy-ball momentum in PyTorch's form, or Nesterov's (see the module
        docstring); momentum None = the measured default of the method (DEFAULT_MOMENTUM).  Only for
        optimizer="momentum" (leave them unset for Adam; settings["momentum"] is then None).
    random_state : None, an int seed or a numpy Generator (initial weights and the permutations).
    X_test, y_test : optional held-out set, evaluated with the training set.
    init_scale, intercept, dtype, eval_every, time_limit, threads : see :class:`SGDSettings`.
    callback : called after every evaluation with a dict (iteration, elapsed, train_loss,
        train_accuracy, test_accuracy); returning True stops the fit with status "interrupted".

    Returns
    -------
    Result with method "gd" or "sgd" and status "max_iter", "time_limit", "diverged" (a
    non-finite loss or weight: the last finite weights are kept, with a DivergenceWarning) or
    "interrupted" (Ctrl-C or KeyboardInterrupt, with a warning; or the callback returned True).  ``history`` has one entry per evaluation; ``timings`` has
    "setup", "compile", "train", "eval" and "total".
    """
    t_start = time.perf_counter()
    if max_iter is not None and epochs is not None:
        raise ValueError(
            f"give max_iter or epochs, not both (got max_iter={max_iter!r}, epochs={epochs!r}); "
            "both count iterations: gradient-descent steps or SGD epochs"
        )
    iter_name = "epochs" if epochs is not None else "max_iter"
    n_iter_arg = epochs if epochs is not None else max_iter
    if n_iter_arg is not None:
        n_iter_arg = _validation.check_max_iter(n_iter_arg, iter_name)
    s = SGDSettings(
        lr=lr, optimizer=optimizer, momentum=momentum, nesterov=nesterov, batch_size=batch_size, max_iter=n_iter_arg,
        init_scale=init_scale, intercept=intercept, eval_every=eval_every, time_limit=time_limit,
        dtype=dtype, threads=threads, skip_zero_inputs=skip_zero_inputs,
    )
    loss = _validation.check_loss(loss)
    hidden = _validation.check_hidden(hidden)
    if callback is not None and not callable(callback):
        raise TypeError("callback must be callable (or None)")
    X, y_index, classes = _validation.check_Xy(X, y, s.dtype)
    if s.batch_size is not None and s.batch_size > X.shape[0]:
        raise ValueError(
            f"batch_size must be at most the number of samples ({X.shape[0]}), got {s.batch_size}; "
            "pass batch_size=None for full-batch gradient descent"
        )
    rng = _validation.check_random_state(random_state)
    X_test, y_test_index = _validation.check_test(X_test, y_test, classes, X.shape[1], X.dtype)
    method = s.method
    adam = s.optimizer == "adam"
    lr_used = float(s.lr if s.lr is not None else (DEFAULT_ADAM_LR if adam else DEFAULT_LR)[method])
    if adam:
        momentum_used = None
    else:
        momentum_used = float(s.momentum if s.momentum is not None else DEFAULT_MOMENTUM[method])
    max_iter = int(s.max_iter if s.max_iter is not None else DEFAULT_MAX_ITER[method])
    n, dt = X.shape[0], X.dtype

    timings = {k: 0.0 for k in ("setup", "compile", "train", "eval", "total")}
    limits = threadpool_limits(s.threads) if s.threads is not None else None
    try:
        t_compile = time.perf_counter()
        _warmup(dt, s.intercept)
        timings["compile"] = time.perf_counter() - t_compile

        T = _losses.targets(y_index, len(classes), dt, loss)
        sizes = [X.shape[1], *hidden, _losses.n_outputs(len(classes), loss)]
        initial = _initial_weights(rng, sizes, s.init_scale, s.intercept, dt)
        n_features = X.shape[1]
        active = _inputs.kept_features(_inputs.nonzero_features(X)) if s.skip_zero_inputs else None
        if active is not None:
            X = np.ascontiguousarray(X[:, active])
            sizes[0] = active.shape[0]
        rows = n if s.batch_size is None else s.batch_size
        net = _Net(sizes, s.intercept, dt, rows, s.optimizer)
        net.set_weights([_inputs.take_columns(initial[0], active, s.intercept), *initial[1:]])
        if s.batch_size is None:
            xbuf, tbuf = np.empty(0, dt), np.empty(0, dt)
        else:
            xbuf, tbuf = np.empty(rows * X.shape[1], dt), np.empty(rows * T.shape[1], dt)
        timings["setup"] = time.perf_counter() - t_start - timings["compile"]
        history = {k: [] for k in ("iteration", "elapsed", "train_loss", "train_accuracy", "test_accuracy")}
        run = _Run(net, s, X, T, y_index, X_test, y_test_index, loss, rng, lr_used, momentum_used or 0.0, max_iter,
                   xbuf, tbuf, history, timings, callback)
        # The test set keeps every feature: it meets the full-width weights (the left-out features'
        # initial weights multiply its values there).
        run.expand = lambda weights: _full_width(initial, weights, active, s.intercept)
        run.loop()
    finally:
        if limits is not None:
            limits.unregister()
    timings["total"] = time.perf_counter() - t_start

    used = s.as_dict()
    used.update(
        lr=lr_used, momentum=momentum_used, max_iter=max_iter, method=method, hidden=list(hidden), loss=loss,
        dtype=dt.name, n_samples=int(n), n_features=int(n_features), n_classes=int(len(classes)),
        random_state=random_state if isinstance(random_state, (int, type(None))) else repr(random_state),
    )
    if run.status == "diverged":
        warnings.warn(
            f"{method.upper()} diverged ({run.message}); the last finite weights are kept. Try a smaller lr.",
            DivergenceWarning,
            stacklevel=2,
        )
    elif run.status == "interrupted" and run.warn_interrupt:
        warnings.warn(f"{method.upper()} {run.message}; returning the weights so far", UserWarning, stacklevel=2)
    return Result(
        status=run.status,
        n_iter=run.iteration,
        weights=_full_width(initial, run.good_weights, active, s.intercept),
        classes=classes,
        loss=loss,
        method=method,
        history=history,
        timings=timings,
        settings=used,
        state=None,
        message=run.message,
        intercept=s.intercept,
    )


class _Run:
    """The iteration loop of one fit and what it leaves behind (status, message, last good weights)."""

    def __init__(self, net, s, X, T, y_index, X_test, y_test_index, loss, rng, lr, momentum, max_iter, xbuf,
                 tbuf, history, timings, callback):
        self.net, self.s, self.rng, self.max_iter = net, s, rng, max_iter
        self.lr, self.momentum = lr, momentum
        self.X, self.T, self.y_index, self.loss = X, T, y_index, loss
        self.X_test, self.y_test_index = X_test, y_test_index
        self.xbuf, self.tbuf = xbuf, tbuf
        self.history, self.timings, self.callback = history, timings, callback
        self.iteration = 0
        self.train_time = 0.0
        self.status, self.message = "max_iter", f"stopped at max_iter={max_iter}"
        self.warn_interrupt = False
        self.good_params = net.params.copy()  # the weights before the current step
        self.good_weights = None
        self.expand = lambda weights: weights  # compact -> full-width weights (for the test set)

    def _step(self):
        """One GD step or SGD epoch; False when the loss or a weight became non-finite."""
        net, s = self.net, self.s
        if s.batch_size is None:
            order, batch = np.empty(0, np.int64), self.X.shape[0]
        else:
            order, batch = self.rng.permutation(self.X.shape[0]).astype(np.int64), s.batch_size
        total = _call_epoch(net, self.X, self.T, order, batch, self.lr, self.momentum, s.nesterov,
                            _k.LOSS_CODE[self.loss], self.xbuf, self.tbuf)
        return math.isfinite(total) and bool(np.isfinite(net.params).all())

    def _evaluate(self):
        weights = self.net.weights()
        nan = float("nan")
        with np.errstate(over="ignore", invalid="ignore"):
            loss_sum, correct = _evaluate(weights, self.X, self.y_index, self.T, self.loss, self.s.intercept)
            test_acc = nan
            if self.X_test is not None:
                test_acc = _evaluate(self.expand(weights), self.X_test, self.y_test_index, None, self.loss, self.s.intercept)[1]
                test_acc /= self.X_test.shape[0]
        n = self.X.shape[0]
        return dict(iteration=self.iteration, elapsed=self.train_time, train_loss=loss_sum / n,
                    train_accuracy=correct / n, test_accuracy=test_acc)

    def _stop(self, status, message, warn=False):
        self.status, self.message, self.warn_interrupt = status, message, warn
        return True

    def _iterate(self, interrupted):
        """One step or epoch, then the stopping rules and the evaluation; True = stop."""
        s = self.s
        t0 = time.perf_counter()
        np.copyto(self.good_params, self.net.params)  # finite: checked after the last step
        finite = self._step()
        self.train_time += time.perf_counter() - t0
        if not finite:
            return self._stop("diverged", f"iteration {self.iteration + 1}: the loss or a weight became non-finite")
        self.iteration += 1
        stop = None
        if interrupted:
            stop = "interrupted", f"interrupted (Ctrl-C) after iteration {self.iteration}", True
        elif s.time_limit is not None and self.train_time >= s.time_limit:
            stop = "time_limit", f"time_limit={s.time_limit} s reached after iteration {self.iteration}"
        due = bool(s.eval_every) and self.iteration % s.eval_every == 0
        if stop is not None or self.iteration == self.max_iter or due:
            t_eval = time.perf_counter()
            record = self._evaluate()
            self.timings["eval"] += time.perf_counter() - t_eval
            if not math.isfinite(record["train_loss"]):
                self.iteration -= 1  # the weights kept are those before this step
                loss = record["train_loss"]
                return self._stop("diverged", f"iteration {self.iteration + 1}: the training loss is {loss}")
            for key, value in record.items():
                self.history[key].append(value)
            if stop is None and self.callback is not None and self.callback(dict(record)):
                stop = "interrupted", f"the callback stopped the fit at iteration {self.iteration}"
            if stop is None and interrupted:  # Ctrl-C during the evaluation or the callback
                stop = "interrupted", f"interrupted (Ctrl-C) after iteration {self.iteration}", True
        return stop is not None and self._stop(*stop)

    def loop(self):
        try:
            with deferred_sigint() as interrupted:
                while self.iteration < self.max_iter and not self._iterate(interrupted):
                    pass
        except KeyboardInterrupt:  # a second Ctrl-C, or one raised by the callback
            self._stop("interrupted", f"interrupted (KeyboardInterrupt) after iteration {self.iteration}", True)
            shortest = min(len(v) for v in self.history.values())
            for v in self.history.values():
                del v[shortest:]
            if not np.isfinite(self.net.params).all():
                self._stop("diverged", f"iteration {self.iteration + 1}: a weight became NaN or infinite")
        self.timings["train"] = self.train_time
        self.good_weights = self.net.weights(self.good_params if self.status == "diverged" else None)
