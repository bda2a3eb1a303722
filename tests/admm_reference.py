"""A plain NumPy implementation of Algorithm 1, in the paper's column layout, for the tests.

Written straight from docs/ALGORITHM.md (section 3) with no attempt at speed: every solve is np.linalg.solve on the
textbook formula, every z-update the two-candidate rule applied entry by entry.  It shares no code
with fastadmm except the documented initialisation procedure (which it re-implements).
"""

from __future__ import annotations

import numpy as np


def relu(x):
    return np.maximum(x, 0.0)


def relu_z(a, m, beta, gamma):
    z = np.empty_like(m)
    for idx in np.ndindex(m.shape):
        ai, mi = a[idx], m[idx]
        zp = max(0.0, (gamma * ai + beta * mi) / (gamma + beta))
        zn = min(0.0, mi)
        fp = gamma * (ai - zp) ** 2 + beta * (zp - mi) ** 2
        fn = gamma * ai**2 + beta * (zn - mi) ** 2
        z[idx] = zp if fp <= fn else zn
    return z


def output_z(y, m, lam, beta, loss):
    if loss == "mse":
        return (y - lam / 2 + beta * m) / (1 + beta)
    z = np.empty_like(m)
    for idx in np.ndindex(m.shape):
        t = m[idx] - lam[idx] / (2 * beta)
        if y[idx] == 1:
            z[idx] = max(t, min(1.0, t + 1 / (2 * beta)))
        else:
            z[idx] = min(t, max(0.0, t - 1 / (2 * beta)))
    return z


def least_squares(z, a, ridge):
    """W = z a^T (a a^T + r I)^-1 with r = ridge * mean(diag(a a^T)); ridge 0 = z a^+."""
    G = a @ a.T
    if ridge == 0:
        return z @ np.linalg.pinv(a)
    r = ridge * np.trace(G) / G.shape[0]
    return np.linalg.solve(G + r * np.eye(G.shape[0]), a @ z.T).T


def forward_init(a0, sizes, scale, seed):
    """fastadmm's initialization='forward': W_l ~ N(0, scale^2), z_l = W_l a_{l-1}, a_l = h(z_l)."""
    rng = np.random.default_rng(seed)
    L = len(sizes) - 1
    W, z, a = [None], [None], [a0]
    for l in range(1, L + 1):
        W.append(rng.normal(0.0, scale, (sizes[l], sizes[l - 1])))
        z.append(W[l] @ a[l - 1])
        if l < L:
            a.append(relu(z[l]))
    return W, z, a


def admm(a0, y, sizes, iterations, *, beta, gamma, ridge, warm, multiplier, loss, W, z, a, lam=None):
    """Run `iterations` sweeps of Algorithm 1 from (W, z, a); returns (W, z, a, lam) lists (index 1..L)."""
    L = len(sizes) - 1
    W, z, a = list(W), list(z), list(a)
    lam = np.zeros_like(z[L]) if lam is None else lam.copy()
    for it in range(iterations):
        for l in range(1, L):
            W[l] = least_squares(z[l], a[l - 1], ridge)
            Mx = beta * W[l + 1].T @ W[l + 1] + gamma * np.eye(sizes[l])
            a[l] = np.linalg.solve(Mx, beta * W[l + 1].T @ z[l + 1] + gamma * relu(z[l]))
            z[l] = relu_z(a[l], W[l] @ a[l - 1], beta, gamma)
        W[L] = least_squares(z[L], a[L - 1], ridge)
        m = W[L] @ a[L - 1]
        z[L] = output_z(y, m, lam, beta, loss)
        if multiplier and it >= warm:
            lam = lam + beta * (z[L] - m)
    return W, z, a, lam
