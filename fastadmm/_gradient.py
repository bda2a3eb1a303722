"""The step object of train_sgd (see ``_fit``): the network's flat parameters, optimizer state and
buffers, and one gradient-descent step or SGD epoch per sweep, a single Numba-compiled call
(``_sgd_kernels.epoch``).  No validation and no loop: ``sgd.train_sgd`` checks, ``_fit.run`` iterates.
"""

from __future__ import annotations

import math

import numpy as np

from . import _comm, _inputs, _linalg, _losses, _sgd_kernels as _k, _step

ADAM_BETAS = (0.9, 0.999)  # torch.optim.Adam's defaults (not tuned here)
ADAM_EPS = 1e-8  # torch.optim.Adam's default


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


class GradientSteps(_step.ForwardOutputs):
    """The step object of train_sgd (see ``_fit``): one gradient-descent step or SGD epoch per sweep.
    Its fits are not resumed: it has no state."""

    kind = "gradient"
    comm = _comm.SingleProcess()
    test_at_full_width = True  # the held-out rows keep the user's width

    def __init__(self, net, X, T, rng, lr, momentum, nesterov, loss, batch_size, initial, active):
        self.net, self.X, self.T, self.rng = net, X, T, rng
        self.lr, self.momentum, self.nesterov = lr, momentum, nesterov
        self.loss_code = _losses.LOSS_CODE[loss]
        self.batch_size = batch_size
        self.intercept = net.intercept
        self.initial, self.active = initial, active  # the full-width start (its left-out columns stay)
        self.iteration = 0
        self._running = (math.nan, 0)  # running_counts() of the last sweep
        dt = X.dtype
        if batch_size is None:
            self.xbuf, self.tbuf = np.empty(0, dt), np.empty(0, dt)
        else:
            self.xbuf, self.tbuf = np.empty(batch_size * X.shape[1], dt), np.empty(batch_size * T.shape[1], dt)

    def sweep(self, timings):
        """One GD step or SGD epoch (a fresh permutation of the rows); nothing to sum over ranks."""
        if self.batch_size is None:
            order, batch = np.empty(0, np.int64), self.X.shape[0]
        else:
            order, batch = self.rng.permutation(self.X.shape[0]).astype(np.int64), self.batch_size
        total, correct = _call_epoch(self.net, self.X, self.T, order, batch, self.lr, self.momentum, self.nesterov,
                                     self.loss_code, self.xbuf, self.tbuf)
        if not (math.isfinite(total) and np.isfinite(self.net.params).all()):
            raise _linalg.NonFiniteError("the loss or a weight became non-finite")
        self._running = (float(total), int(correct))
        self.iteration += 1
        return _NO_SUMS, None

    def running_counts(self):
        """[summed loss, correct predictions] of the last sweep, each batch at the weights before its
        step (train_metrics="running"): what the compiled epoch computed on its way."""
        return self._running

    def compact_weights(self):
        return self.net.weights()

    def full_width(self, weights):
        return _full_width(self.initial, weights, self.active, self.intercept)

    def to_state(self):
        return None

    def from_state(self, state, weights):
        raise ValueError("gradient fits are not resumed")

    @staticmethod
    def check_state(state, weights):
        raise ValueError("gradient fits are not resumed")


_NO_SUMS = np.zeros(0)
