"""Mini-batch gradient-free ADMM/BCD prototype for fastadmm (row layout: one sample per row).

Every step is closed form (least squares, elementwise ReLU prox) or a tiny per-sample convex solve
(softmax CE output, Newton). No gradients of a loss w.r.t. weights are ever formed.

Layout: A[l] is (B, n_l + 1) with a trailing column of ones (bias handled as a constant input);
W[l] is (n_l, n_{l-1} + 1), its last column is the bias.  Z[l] = A[l-1] @ W[l].T.

Usage: FASTADMM_BENCH_MNIST=DIR python ten_layerwise.py '{"hidden":[300],"epochs":10,"seed":0, ...}'   (JSON of Config fields)
"""
import json
import os
import sys
import time
from dataclasses import dataclass, field, asdict

import numpy as np
import scipy.linalg as sla

HERE = os.path.dirname(os.path.abspath(__file__))


@dataclass
class Config:
    hidden: list = field(default_factory=lambda: [300])
    seed: int = 0
    epochs: int = 10
    batch: int = 500
    sweeps: int = 1            # k backward sweeps per batch
    dtype: str = "float64"
    init_scale: str = "he"     # "he" (std sqrt(2/n_in)) or a float std
    loss: str = "mse"          # "mse" (to one-hot) or "ce" (softmax cross-entropy, Newton)
    beta: float = 0.1          # output penalty beta_L (and beta_l unless beta_h given)
    beta_h: float = -1.0       # hidden linear-constraint penalty (-1: = beta)
    gamma_ratio: float = 1.0   # gamma_l = gamma_ratio * beta_{l+1}
    metric: str = "identity"   # W prox metric: "identity", "gram" (EMA of a a^T), "rls" (forgetting sums)
    prox: float = 30.0         # identity: alpha/beta per sample-batch; gram: mu/beta (times B S)
    ema: float = 0.9           # gram: S <- ema S + (1-ema) A^T A / B ; rls: forgetting factor
    ridge: float = 1e-3        # ridge on the metric (times mean diag)
    order: str = "W_first"     # within the backward pass: "W_first" or "a_first"
    growth: float = 1.0        # penalty continuation: beta, gamma *= growth per epoch
    growth_cap: float = 1e3
    prox_decay: float = 1.0    # prox *= prox_decay per epoch (a step-size schedule), floored
    prox_min: float = 0.0
    refit: bool = False        # final convex refit of the last layer on forward features
    refit_ridge: float = 1e-3
    lowrank1: bool = True      # layer-1 W-update by Woodbury (B x B solve) with a fixed metric
    shrink: float = 0.0        # decoupled weight decay: W (not bias) *= 1 - shrink after each batch
    eval_every: int = 1
    time_limit: float = 1e9


# ----------------------------------------------------------------------------------------------
def load_data(dtype):
    """The ten-digit sample of FASTADMM_BENCH_MNIST, pixels / 255, from the benchmarks' one loader (benchmarks/_data.py)."""
    sys.path.insert(0, os.path.dirname(HERE))  # benchmarks/
    from _data import mnist_split
    return mnist_split(dtype=dtype)


def augment(X):
    """[X, 1]: the constant input that carries the bias."""
    return np.concatenate([X, np.ones((X.shape[0], 1), X.dtype)], axis=1)


def forward(W, X1):
    """Pre-activations Z[1..L] and augmented activations A[0..L-1] of an ordinary forward pass."""
    L = len(W) - 1
    A, Z = [X1], [None]
    for l in range(1, L + 1):
        Z.append(A[l - 1] @ W[l].T)
        if l < L:
            A.append(augment(np.maximum(Z[l], 0)))
    return Z, A


def accuracy(W, X1, y):
    Z, _ = forward(W, X1)
    return float(np.mean(Z[-1].argmax(1) == y))


# ---------------------------------------------------------------- the update steps -------------
def relu_z_update(a, m, beta, gamma):
    """argmin_z gamma (a - relu(z))^2 + beta (z - m)^2, elementwise (ALGORITHM.md closed form)."""
    zp = np.maximum(0, (gamma * a + beta * m) / (gamma + beta))
    zn = np.minimum(0, m)
    cp = gamma * (a - zp) ** 2 + beta * (zp - m) ** 2
    cn = gamma * a ** 2 + beta * (zn - m) ** 2
    return np.where(cp <= cn, zp, zn)


def output_z_update_mse(m, T, beta):
    """argmin_z ||z - T||^2 + beta ||z - m||^2 (no multiplier)."""
    return (T + beta * m) / (1.0 + beta)


def output_z_update_ce(m, T, beta, newton=4):
    """argmin_z CE(softmax(z), T) + beta ||z - m||^2 per sample, by Newton on the K x K Hessian."""
    z = m.copy()
    B, K = m.shape
    eye = np.eye(K)
    for _ in range(newton):
        s = z - z.max(1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(1, keepdims=True)
        g = p - T + 2 * beta * (z - m)
        H = -p[:, :, None] * p[:, None, :]
        H[:, np.arange(K), np.arange(K)] += p + 2 * beta
        z -= np.linalg.solve(H, g[:, :, None])[:, :, 0]
    return z


def a_update(Wn, Zn, H, beta_n, gamma):
    """argmin_a beta ||z_{l+1} - W a - b||^2 + gamma ||a - h(z_l)||^2, one sample per row.

    Wn = [W | b] of layer l+1. Returns the new a_l (B, n_l) without the ones column.
    """
    W, b = Wn[:, :-1], Wn[:, -1]
    M = beta_n * (W.T @ W)
    M.flat[:: M.shape[0] + 1] += gamma
    rhs = beta_n * ((Zn - b) @ W) + gamma * H
    c = sla.cho_factor(M, lower=True, check_finite=False)
    return sla.cho_solve(c, rhs.T, check_finite=False).T


def w_update_prox(Wp, A, Z, P):
    """W = W_prev + (Z - A W_prev^T)^T A (A^T A + P)^-1  (row layout: solve for W^T).

    P is the proximal metric (n_in x n_in, SPD): alpha/beta I (identity prox) or mu/beta B S (Gram).
    """
    R = Z - A @ Wp.T
    G = A.T @ A + P
    c = sla.cho_factor(G, lower=True, check_finite=False)
    return Wp + sla.cho_solve(c, A.T @ R, check_finite=False).T


# ---------------------------------------------------------------- the driver -------------------
def w_update_prox_lowrank(Wp, A, Z, Pinv):
    """Same as w_update_prox for a fixed metric P with known inverse, by Woodbury (B x B solve):
    (A^T A + P)^-1 A^T R = Pinv A^T (I + A Pinv A^T)^-1 R.  Cheap when B < n_in (layer 1)."""
    R = Z - A @ Wp.T
    U = A @ Pinv
    K = U @ A.T
    K.flat[:: K.shape[0] + 1] += 1.0
    c = sla.cho_factor(K, lower=True, check_finite=False)
    return Wp + (U.T @ sla.cho_solve(c, R, check_finite=False)).T


def init_weights(sizes, cfg, rng, dt):
    W = [None]
    for l in range(1, len(sizes)):
        n_in = sizes[l - 1]
        std = np.sqrt(2.0 / n_in) if cfg.init_scale == "he" else float(cfg.init_scale)
        Wl = np.zeros((sizes[l], n_in + 1), dt)
        Wl[:, :-1] = rng.normal(0, std, (sizes[l], n_in))
        W.append(Wl)
    return W


def w_update(l, Wp, A, Z, state, cfg, prox):
    if l == 1 and cfg.lowrank1:
        if cfg.metric == "identity":
            Pinv = state.setdefault(("Pinv", prox), np.eye(A.shape[1], dtype=A.dtype) / prox)
        else:  # Gram metric of layer 1: the full-data input Gram (a_0 never changes)
            key = ("Pinv", prox)
            if key not in state:
                S0 = state["S0"]
                n = S0.shape[0]
                P = prox * cfg.batch * S0
                P.flat[:: n + 1] += cfg.ridge * cfg.batch * np.trace(S0) / n
                state[key] = np.linalg.inv(P).astype(A.dtype)
            Pinv = state[key]
        return w_update_prox_lowrank(Wp, A, Z, Pinv)
    return w_update_prox(Wp, A, Z, metric(l, A, state, cfg, prox))


def metric(l, A, state, cfg, prox):
    """The proximal matrix P for layer l's W-update (updates the running Gram in `state`)."""
    n = A.shape[1]
    B = A.shape[0]
    if cfg.metric == "identity":
        return prox * np.eye(n, dtype=A.dtype)
    G = A.T @ A / B
    S = state.get(l)
    S = G if S is None else cfg.ema * S + (1 - cfg.ema) * G
    state[l] = S
    P = prox * B * S
    P.flat[:: n + 1] += cfg.ridge * B * max(np.trace(S) / n, 1e-12)
    return P


def batch_step(W, X1, T, cfg, beta, gamma, prox, state):
    L = len(W) - 1
    Z, A = forward(W, X1)
    H = [None] + [A[l][:, :-1].copy() for l in range(1, L)]  # h(z_l)
    for sweep in range(cfg.sweeps):
        if sweep > 0:
            Z[L] = A[L - 1] @ W[L].T  # m_L with the new weights and activations
        m_L = Z[L]
        Z[L] = output_z_update_ce(m_L, T, beta[L]) if cfg.loss == "ce" else output_z_update_mse(m_L, T, beta[L])
        for l in range(L, 0, -1):
            if cfg.order == "W_first":
                W[l] = w_update(l, W[l], A[l - 1], Z[l], state, cfg, prox)
            if l > 1:
                a = a_update(W[l], Z[l], H[l - 1], beta[l], gamma[l - 1])
                if cfg.order == "a_first":
                    W[l] = w_update(l, W[l], A[l - 1], Z[l], state, cfg, prox)
                A[l - 1][:, :-1] = a
                m = A[l - 2] @ W[l - 1].T
                Z[l - 1] = relu_z_update(a, m, beta[l - 1], gamma[l - 1])
                H[l - 1] = np.maximum(Z[l - 1], 0)
            elif cfg.order == "a_first":
                W[l] = w_update(l, W[l], A[l - 1], Z[l], state, cfg, prox)


def refit_last(W, X1, y, K, ridge):
    """Convex refit of W_L: least squares of one-hot targets on the forward features (full train set)."""
    Z, A = forward(W, X1)
    F = A[-1]
    T = np.eye(K)[y]
    G = F.T @ F
    G.flat[:: G.shape[0] + 1] += ridge * np.trace(G) / G.shape[0]
    W[-1] = sla.solve(G, F.T @ T, assume_a="pos").T.astype(W[-1].dtype)


def fit(cfg: Config, data=None, log=print):
    dt = np.dtype(cfg.dtype)
    Xtr, ytr, Xte, yte = data if data is not None else load_data(dt)
    t_start = time.process_time()
    rng = np.random.default_rng(cfg.seed)
    K = 10
    X1, Xt1 = augment(Xtr), augment(Xte)
    Ttr = np.eye(K, dtype=dt)[ytr]
    sizes = [Xtr.shape[1], *cfg.hidden, K]
    L = len(sizes) - 1
    W = init_weights(sizes, cfg, rng, dt)
    bh = cfg.beta if cfg.beta_h < 0 else cfg.beta_h
    beta = [None] + [bh] * (L - 1) + [cfg.beta]
    gamma = [None] + [cfg.gamma_ratio * beta[l + 1] for l in range(1, L)] + [None]
    prox = cfg.prox
    state = {"S0": (X1.T.astype(np.float64) @ X1) / X1.shape[0]}
    hist = []
    N = X1.shape[0]
    t_eval = 0.0
    for ep in range(cfg.epochs):
        perm = rng.permutation(N)
        for s in range(0, N, cfg.batch):
            idx = perm[s : s + cfg.batch]
            if len(idx) < cfg.batch // 2:
                continue
            batch_step(W, X1[idx], Ttr[idx], cfg, beta, gamma, prox, state)
            if cfg.shrink:
                for l in range(1, L + 1):
                    W[l][:, :-1] *= 1.0 - cfg.shrink
        if not all(np.isfinite(w).all() for w in W[1:]):
            log(json.dumps({"epoch": ep + 1, "diverged": True}))
            break
        beta = [None] + [min(b * cfg.growth, cfg.growth_cap) for b in beta[1:]]
        gamma = [None] + [min(g * cfg.growth, cfg.growth_cap) for g in gamma[1:-1]] + [None]
        prox = max(prox * cfg.prox_decay, cfg.prox_min)
        if (ep + 1) % cfg.eval_every == 0 or ep + 1 == cfg.epochs:
            te0 = time.process_time()
            rec = {"epoch": ep + 1, "train": accuracy(W, X1, ytr), "test": accuracy(W, Xt1, yte),
                   "t": round(te0 - t_start - t_eval, 2)}
            t_eval += time.process_time() - te0
            hist.append(rec)
            log(json.dumps(rec))
        if time.process_time() - t_start - t_eval > cfg.time_limit:
            break
    train_time = time.process_time() - t_start - t_eval
    out = {"train": accuracy(W, X1, ytr), "test": accuracy(W, Xt1, yte)}
    if cfg.refit:
        refit_last(W, X1, ytr, K, cfg.refit_ridge)
        out["refit_train"] = accuracy(W, X1, ytr)
        out["refit_test"] = accuracy(W, Xt1, yte)
    out["train_time_s"] = round(train_time, 2)
    out["wall_s"] = round(time.process_time() - t_start, 2)
    return out, hist


if __name__ == "__main__":
    cfg = Config(**json.loads(sys.argv[1] if len(sys.argv) > 1 else "{}"))
    res, hist = fit(cfg)
    print("RESULT", json.dumps({"cfg": asdict(cfg), **res}))
