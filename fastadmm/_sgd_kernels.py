"""Numba kernels of the gradient baseline (:mod:`fastadmm.sgd`): forward/backward pass and updates.

Parameters live in one flat buffer: W_1, ..., W_L (row-major, W_l at w_off[l-1]:w_off[l], shape
(sizes[l], sizes[l-1])), then the first layer's bias (sizes[1] entries at bias_off) when
bias_off >= 0.  Activations and back-propagated errors of layer l (1..L) live in flat buffers as
(b, sizes[l]) row-major blocks, b = the current batch's rows.  Every buffer is allocated by the
caller once per fit; nothing here allocates inside its loops.

Loss codes (LOSS_CODE): 0 = squared error, 1 = hinge, 2 = softmax cross-entropy.
Optimizer codes (OPTIMIZER_CODE): 0 = heavy-ball momentum (torch.optim.SGD), 1 = Adam (torch.optim.Adam).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._losses import LOSS_CODE  # noqa: F401 - the one declaration, re-exported for the callers
OPTIMIZER_CODE = {"momentum": 0, "adam": 1}


@njit(cache=True, nogil=True)
def layer_offsets(sizes, rows):
    L = sizes.shape[0] - 1
    off = np.zeros(L + 2, dtype=np.int64)
    for l in range(1, L + 1):
        off[l + 1] = off[l] + rows * sizes[l]
    return off


@njit(cache=True, nogil=True)
def forward_backward(Xb, Tb, params, grad, w_off, sizes, bias_off, loss_code, act, delta, a_off):
    """Loss sum of the batch (Xb, Tb) and the gradient of its MEAN loss into `grad`."""
    L = sizes.shape[0] - 1
    b = Xb.shape[0]
    # Forward: Z_l = A_{l-1} W_l^T (+ bias), A_l = relu(Z_l) in place for l < L.
    prev = Xb
    for l in range(1, L + 1):
        n_out, n_in = sizes[l], sizes[l - 1]
        W = params[w_off[l - 1] : w_off[l]].reshape((n_out, n_in))
        Z = act[a_off[l] : a_off[l] + b * n_out].reshape((b, n_out))
        np.dot(prev, W.T, Z)
        if l == 1 and bias_off >= 0:
            for i in range(b):
                for j in range(n_out):
                    Z[i, j] += params[bias_off + j]
        if l < L:
            for i in range(b):
                for j in range(n_out):
                    if Z[i, j] < 0:
                        Z[i, j] = 0
        prev = Z
    # Loss and d(mean loss)/d(output).
    n_out = sizes[L]
    O = act[a_off[L] : a_off[L] + b * n_out].reshape((b, n_out))
    D = delta[a_off[L] : a_off[L] + b * n_out].reshape((b, n_out))
    scale = 1.0 / b
    total = 0.0
    if loss_code == 2:
        # Softmax cross-entropy: loss_i = logsumexp(o_i) - <t_i, o_i>, whose gradient is exactly
        # softmax(o_i) - t_i (for any targets).  The row maximum is subtracted before exp.
        for i in range(b):
            top = O[i, 0]
            for k in range(1, n_out):
                if O[i, k] > top:
                    top = O[i, k]
            s = 0.0
            for k in range(n_out):
                e = math.exp(O[i, k] - top)
                D[i, k] = e
                s += e
            total += top + math.log(s)
            for k in range(n_out):
                t = Tb[i, k]
                total -= t * O[i, k]
                D[i, k] = scale * (D[i, k] / s - t)
    else:
        for i in range(b):
            for k in range(n_out):
                o = O[i, k]
                t = Tb[i, k]
                if loss_code == 0:
                    d = o - t
                    total += d * d
                    D[i, k] = 2.0 * scale * d
                elif t > 0.5:
                    if o < 1:
                        total += 1.0 - o
                        D[i, k] = -scale
                    else:
                        D[i, k] = 0
                else:
                    if o > 0:
                        total += o
                        D[i, k] = scale
                    else:
                        D[i, k] = 0
    # Backward: grad W_l = D_l^T A_{l-1};  D_{l-1} = (D_l W_l) * [A_{l-1} > 0].
    for l in range(L, 0, -1):
        n_out, n_in = sizes[l], sizes[l - 1]
        D = delta[a_off[l] : a_off[l] + b * n_out].reshape((b, n_out))
        G = grad[w_off[l - 1] : w_off[l]].reshape((n_out, n_in))
        if l == 1:
            np.dot(D.T, Xb, G)
            if bias_off >= 0:
                for j in range(n_out):
                    grad[bias_off + j] = 0
                for i in range(b):
                    for j in range(n_out):
                        grad[bias_off + j] += D[i, j]
        else:
            A = act[a_off[l - 1] : a_off[l - 1] + b * n_in].reshape((b, n_in))
            np.dot(D.T, A, G)
            W = params[w_off[l - 1] : w_off[l]].reshape((n_out, n_in))
            Dp = delta[a_off[l - 1] : a_off[l - 1] + b * n_in].reshape((b, n_in))
            np.dot(D, W, Dp)
            for i in range(b):
                for j in range(n_in):
                    if A[i, j] <= 0:
                        Dp[i, j] = 0
    return total


@njit(cache=True, nogil=True)
def count_correct(O, Tb):
    """Rows of the outputs O whose predicted class is their target's: with one output, o > 0.5 against
    t > 0.5; else the first largest output against the first largest target (_losses.predict_index)."""
    b, n_out = O.shape
    correct = 0
    for i in range(b):
        if n_out == 1:
            correct += (O[i, 0] > 0.5) == (Tb[i, 0] > 0.5)
            continue
        p, q = 0, 0
        for k in range(1, n_out):
            if O[i, k] > O[i, p]:
                p = k
            if Tb[i, k] > Tb[i, q]:
                q = k
        correct += p == q
    return correct


@njit(cache=True, nogil=True)
def momentum_update(params, velocity, grad, lr, momentum, nesterov):
    """torch.optim.SGD (dampening 0): v <- momentum v + g; W <- W - lr v (Nesterov: W - lr (g + momentum v))."""
    n = params.shape[0]
    if momentum == 0.0:
        for i in range(n):
            params[i] -= lr * grad[i]
    elif nesterov:
        for i in range(n):
            v = momentum * velocity[i] + grad[i]
            velocity[i] = v
            params[i] -= lr * (grad[i] + momentum * v)
    else:
        for i in range(n):
            v = momentum * velocity[i] + grad[i]
            velocity[i] = v
            params[i] -= lr * v


# error_model="numpy": IEEE division (the denominator is >= eps > 0 anyway) without Numba's
# zero-divisor check, which kept the loop scalar; measured 4x faster (238,510 parameters).
@njit(cache=True, nogil=True, error_model="numpy")
def adam_update(params, m, v, grad, lr, beta1, beta2, eps, step, coef):
    """Step number `step` (1, 2, ...) of torch.optim.Adam (no weight decay, amsgrad off)::

        m <- m + (1 - beta1) (g - m);   v <- beta2 v + (1 - beta2) g^2
        W <- W - lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)

    in the order of torch's single-tensor implementation: the bias corrections in float64, then
    (through `coef`, a scratch array of params' dtype with at least 6 entries) every per-entry
    operation in the parameters' dtype, as torch does for float32 tensors.
    """
    coef[0] = lr / (1.0 - beta1**step)
    coef[1] = math.sqrt(1.0 - beta2**step)
    coef[2] = 1.0 - beta1
    coef[3] = 1.0 - beta2
    coef[4] = beta2
    coef[5] = eps
    step_size, bias2_sqrt, c1, c2, b2, e = coef[0], coef[1], coef[2], coef[3], coef[4], coef[5]
    for i in range(params.shape[0]):
        g = grad[i]
        mi = m[i] + c1 * (g - m[i])
        vi = b2 * v[i] + c2 * g * g
        m[i] = mi
        v[i] = vi
        params[i] -= step_size * mi / (math.sqrt(vi) / bias2_sqrt + e)


@njit(cache=True, nogil=True)
def epoch(X, T, order, params, state1, state2, grad, w_off, sizes, bias_off, batch_size, optimizer_code, lr,
          momentum, nesterov, beta1, beta2, eps, step, loss_code, act, delta, xbuf, tbuf):
    """One pass over the data: minibatches of `batch_size` rows, each a gradient step.

    `order` is the row permutation to visit; an empty `order` means the rows in their order,
    taken as contiguous slices of X without copying (the full-batch gradient-descent step).
    The optimizer state: `state1` is the momentum buffer (or Adam's first moment), `state2`
    Adam's second moment (unused by momentum), `step[0]` the number of Adam steps taken so far
    (incremented here).  Returns (the sum over all samples of their loss, the number of them
    classified correctly), both at the weights before their batch's step.
    """
    n, n_in = X.shape
    n_out = T.shape[1]
    L = sizes.shape[0] - 1
    a_off = layer_offsets(sizes, batch_size)
    coef = np.empty(6, params.dtype)  # Adam's scalars in the parameters' dtype (once per epoch)
    total = 0.0
    correct = 0
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        b = stop - start
        if order.shape[0] == 0:
            Xb = X[start:stop]
            Tb = T[start:stop]
        else:
            Xb = xbuf[: b * n_in].reshape((b, n_in))
            Tb = tbuf[: b * n_out].reshape((b, n_out))
            for i in range(b):
                r = order[start + i]
                Xb[i, :] = X[r, :]
                Tb[i, :] = T[r, :]
        total += forward_backward(Xb, Tb, params, grad, w_off, sizes, bias_off, loss_code, act, delta, a_off)
        correct += count_correct(act[a_off[L] : a_off[L] + b * n_out].reshape((b, n_out)), Tb)
        if optimizer_code == 1:
            step[0] += 1
            adam_update(params, state1, state2, grad, lr, beta1, beta2, eps, step[0], coef)
        else:
            momentum_update(params, state1, grad, lr, momentum, nesterov)
    return total, correct


@njit(cache=True, nogil=True)
def loss_and_gradient(X, T, params, grad, w_off, sizes, bias_off, loss_code, act, delta):
    """Summed loss of (X, T) and the gradient of the MEAN loss into `grad` (for the tests)."""
    a_off = layer_offsets(sizes, X.shape[0])
    return forward_backward(X, T, params, grad, w_off, sizes, bias_off, loss_code, act, delta, a_off)
