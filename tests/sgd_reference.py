"""A plain NumPy gradient descent / SGD with momentum or Adam, in the paper's column layout, for the tests.

Written from the definitions in fastadmm/sgd.py's docstring with no attempt at speed: back
propagation by the chain rule on one column per sample, the objective the mean over the batch of
the per-sample loss (summed over the outputs; softmax cross-entropy for "cross_entropy"),
heavy-ball momentum in PyTorch's form, Adam as in Kingma & Ba with torch's eps placement.  It shares no
code with fastadmm except the documented initialisation and permutation draws (re-implemented).
"""

from __future__ import annotations

import math

import numpy as np


def targets(y, k, loss="mse"):
    """(n_outputs, n) 0/1 targets: one row for two classes, one-hot rows for k > 2 (and for
    cross_entropy, also for two classes)."""
    if k == 2 and loss != "cross_entropy":
        return y[None, :].astype(float)
    return np.eye(k)[y].T


def initial_weights(rng, sizes, init_scale=None, intercept=False):
    """He-uniform (bound sqrt(6/fan_in), sqrt(3/fan_in) for the output layer) or N(0, init_scale^2)."""
    L = len(sizes) - 1
    W = []
    for l in range(1, L + 1):
        shape = (sizes[l], sizes[l - 1])
        if init_scale is None:
            b = math.sqrt((6.0 if l < L else 3.0) / sizes[l - 1])
            Wl = rng.uniform(-b, b, shape)
        else:
            Wl = rng.normal(0.0, init_scale, shape)
        if l == 1 and intercept:
            Wl = np.hstack([Wl, np.zeros((sizes[1], 1))])
        W.append(Wl)
    return W


def loss_and_gradient(W, a0, t, loss, intercept=False):
    """Mean loss over the columns of a0 and its gradient w.r.t. every W (list, same shapes)."""
    n = a0.shape[1]
    if intercept:
        a0 = np.vstack([a0, np.ones((1, n))])
    a, z = [a0], [None]
    for l, Wl in enumerate(W, start=1):
        z.append(Wl @ a[-1])
        if l < len(W):
            a.append(np.maximum(z[-1], 0.0))
    o = z[-1]
    if loss == "mse":
        value = np.sum((o - t) ** 2)
        d = 2.0 * (o - t)
    elif loss == "cross_entropy":
        # -sum_k t_k log p_k with p = exp(o) / sum exp(o) per column; d/do = p - t (one-hot t)
        p = np.exp(o) / np.sum(np.exp(o), axis=0)
        value = -np.sum(t * np.log(p))
        d = p - t
    else:
        pos = t > 0.5
        value = np.sum(np.where(pos, np.maximum(1 - o, 0), np.maximum(o, 0)))
        d = np.where(pos, -(o < 1).astype(float), (o > 0).astype(float))
    d = d / n
    grads = [None] * len(W)
    for l in range(len(W), 0, -1):
        grads[l - 1] = d @ a[l - 1].T
        if l > 1:
            d = (W[l - 1].T @ d) * (z[l - 1] > 0)
    return value / n, grads


def momentum_step(W, V, G, lr, momentum, nesterov=False):
    """v <- momentum v + g;  W <- W - lr v  (or W - lr (g + momentum v) with Nesterov)."""
    newW, newV = [], []
    for Wl, Vl, Gl in zip(W, V, G):
        v = momentum * Vl + Gl
        step = Gl + momentum * v if nesterov else v
        newW.append(Wl - lr * step)
        newV.append(v)
    return newW, newV


def adam_step(W, M, V, G, t, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    """Adam step t (1-based): bias-corrected moments, eps added to sqrt of the corrected v (torch's form)."""
    newW, newM, newV = [], [], []
    for Wl, Ml, Vl, Gl in zip(W, M, V, G):
        m = beta1 * Ml + (1 - beta1) * Gl
        v = beta2 * Vl + (1 - beta2) * Gl**2
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        newW.append(Wl - lr * m_hat / (np.sqrt(v_hat) + eps))
        newM.append(m)
        newV.append(v)
    return newW, newM, newV


def batches(rng, n, batch_size):
    """Row index sets of one GD step (all rows in order) or one SGD epoch (a fresh permutation)."""
    if batch_size is None:
        return [np.arange(n)]
    order = rng.permutation(n)
    return [order[s : s + batch_size] for s in range(0, n, batch_size)]


def predicted_class(W, a0, intercept=False):
    """Class index of each column of a0 by a plain forward pass: output > 0.5 for one output, else
    the largest output."""
    a = np.vstack([a0, np.ones((1, a0.shape[1]))]) if intercept else a0
    for l, Wl in enumerate(W, start=1):
        a = Wl @ a
        if l < len(W):
            a = np.maximum(a, 0.0)
    return (a[0] > 0.5).astype(int) if a.shape[0] == 1 else np.argmax(a, axis=0)


def train(X, y, sizes, *, lr, momentum=0.0, iterations, batch_size=None, loss="mse", seed=0, init_scale=None,
          nesterov=False, intercept=True, optimizer="momentum", running=None):
    """Weights after `iterations` GD steps (batch_size None) or SGD epochs over rows X (n, d).

    `running`, a list: gets (mean loss, accuracy) per iteration over its batches, each batch's
    taken at the weights before its step."""
    rng = np.random.default_rng(seed)
    W = initial_weights(rng, sizes, init_scale, intercept)
    V = [np.zeros_like(Wl) for Wl in W]
    M = [np.zeros_like(Wl) for Wl in W]
    t = 0
    k = len(np.unique(y))
    n = X.shape[0]
    for _ in range(iterations):
        loss_sum, correct = 0.0, 0
        for rows in batches(rng, n, batch_size):
            value, G = loss_and_gradient(W, X[rows].T, targets(y[rows], k, loss), loss, intercept)
            loss_sum += value * len(rows)
            correct += int(np.sum(predicted_class(W, X[rows].T, intercept) == y[rows]))
            if optimizer == "adam":
                t += 1
                W, M, V = adam_step(W, M, V, G, t, lr)
            else:
                W, V = momentum_step(W, V, G, lr, momentum, nesterov)
        if running is not None:
            running.append((loss_sum / n, correct / n))
    return W
