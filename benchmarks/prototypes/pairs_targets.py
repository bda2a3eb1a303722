"""Mini-batch gradient-free ADMM / penalty training of a ReLU net (row layout: one sample per row).

Variables per batch (B rows): A[0] = [X_B, 1] (input plus constant column), Z[l] (B, n_l),
A[l] = a_l (B, n_l) for l < L.  W[l] has shape (n_l, n_{l-1} + 1); its last column is the bias.
Usage: see run() / the __main__ block (key=value overrides of CFG).
"""
import sys, time, json
import common
import numpy as np
import scipy.linalg as sla

CFG = dict(
    hidden=(100, 50, 10), loss="mse",
    batch=500, epochs=10, sweeps=1,          # outer loop: batches per epoch reshuffled, k sweeps per batch
    beta=1.0, gamma=1.0,                     # penalties of z = W a and a = h(z) (output layer: beta)
    q=1.0,                                   # per-layer penalties: beta_l = beta * q^(L-l), gamma_l = gamma * beta_{l+1}/beta (q=1: all equal)
    metric="gram", rho=1.0,                  # proximal W metric: "gram" (EMA of batch Grams) or "identity"
    ema=0.9,                                 # forgetting factor of the Gram EMA S <- ema S + (1-ema) G_B
    alpha_growth=1.0,                        # alpha *= alpha_growth after every epoch (a decaying step size)
    alpha=30.0,                              # identity metric: W = (alpha W_prev + beta z a^T)(alpha I + beta a a^T)^-1 (alpha in units of beta)
    ridge=1e-4,                              # ridge relative to mean diag of the metric matrix
    order="backward",                        # "backward": z_L, then a_l/z_l for l=L-1..1, then all W; "taylor": Algorithm 1 order
    init="torch", init_scale=1.0,            # W init: U(+-scale/sqrt(fan_in)) ("torch"), or N(0, scale^2) ("normal")
    w_input="updated",                       # W_l is fit on a_{l-1} from the a-update ("updated") or from the forward pass ("forward")
    refit=False,                             # final convex refit of W_L on forward features (ridge LS)
    full_sweeps=0,                           # extra full-batch sweeps after the epochs (same update rules, batch = N)
    seed=0, eval_every=1,
)


def relu(x):
    return np.maximum(x, 0)


def with_one(A):
    return np.concatenate([A, np.ones((A.shape[0], 1), A.dtype)], axis=1)


def init_weights(sizes, cfg, rng):
    W = [None]
    for l in range(1, len(sizes)):
        fan = sizes[l - 1]
        if cfg["init"] == "torch":
            b = cfg["init_scale"] / np.sqrt(fan)
            W.append(rng.uniform(-b, b, (sizes[l], fan + 1)))
        else:
            W.append(rng.normal(0, cfg["init_scale"], (sizes[l], fan + 1)))
    return W


def forward(W, X):
    a = X
    for l in range(1, len(W)):
        z = a @ W[l][:, :-1].T + W[l][:, -1]
        a = relu(z) if l < len(W) - 1 else z
    return a


def predict(out):
    return (out[:, 0] > 0.5).astype(np.int64) if out.shape[1] == 1 else np.argmax(out, axis=1)


def accuracy(W, X, y):
    return float(np.mean(predict(forward(W, X)) == y))


# ---- the update steps (row layout) -----------------------------------------------------------
def output_z_update(T, M, beta, loss):
    """z_L = argmin loss(z, T) + beta (z - M)^2 (no multiplier)."""
    if loss == "mse":
        return (T + beta * M) / (1.0 + beta)
    s = 1.0 / (2.0 * beta)
    return np.where(T > 0.5, np.maximum(M, np.minimum(1.0, M + s)), np.minimum(M, np.maximum(0.0, M - s)))


def relu_z_update(A, M, beta, gamma):
    """z = argmin gamma (a - relu(z))^2 + beta (z - m)^2, entrywise closed form."""
    zp = np.maximum((gamma * A + beta * M) / (gamma + beta), 0.0)
    zn = np.minimum(M, 0.0)
    fp = gamma * (A - zp) ** 2 + beta * (zp - M) ** 2
    fn = gamma * A ** 2 + beta * (zn - M) ** 2
    return np.where(fp <= fn, zp, zn)


def a_update(W_next, Z_next, Hz, beta, gamma):
    """a_l = (beta W'^T W' + gamma I)^-1 (beta W'^T (z_{l+1} - b_{l+1}) + gamma h(z_l)), row layout."""
    Wp, b = W_next[:, :-1], W_next[:, -1]
    n = Wp.shape[1]
    Mx = beta * (Wp.T @ Wp)
    Mx.flat[:: n + 1] += gamma
    rhs = beta * (Z_next - b) @ Wp + gamma * Hz
    return sla.cho_solve(sla.cho_factor(Mx, lower=True, check_finite=False), rhs.T, check_finite=False).T


def w_update(W_prev, Z, Ab, S, cfg):
    """Proximal least squares for W (n_out, n_in+1), Ab = [a_{l-1}, 1] (B, n_in+1).
    gram:     W = (z a^T + rho W_prev S)(a a^T + rho S)^-1 = W_prev + (z - W_prev a) a^T (a a^T + rho S)^-1
    identity: W = (alpha W_prev + z a^T)(alpha I + a a^T)^-1  (alpha relative to mean diag of a a^T)."""
    R = Z - Ab @ W_prev.T
    B, n = Ab.shape
    if cfg["metric"] == "identity" and B < n:
        # Woodbury: R^T A (c I_n + A^T A)^-1 = ((c I_B + A A^T)^-1 R)^T A, a B x B solve instead of n x n
        K = Ab @ Ab.T
        c = cfg["alpha"] * np.trace(K) / n
        c += cfg["ridge"] * (np.trace(K) / n + c) + 1e-12
        K.flat[:: B + 1] += c
        Y = sla.cho_solve(sla.cho_factor(K, lower=True, check_finite=False), R, check_finite=False)
        return W_prev + Y.T @ Ab
    G = Ab.T @ Ab
    C = R.T @ Ab
    if cfg["metric"] == "gram":
        M = G + cfg["rho"] * S
    else:
        M = G.copy()
        M.flat[:: n + 1] += cfg["alpha"] * np.trace(G) / n
    M.flat[:: n + 1] += cfg["ridge"] * np.trace(M) / n + 1e-12
    step = sla.cho_solve(sla.cho_factor(M, lower=True, check_finite=False), C.T, check_finite=False).T
    return W_prev + step


def batch_step(W, S, Xb, Tb, cfg, first_batch):
    L = len(W) - 1
    bl = [cfg["beta"] * cfg["q"] ** (L - l) for l in range(L + 1)]          # beta_l
    gl = [cfg["gamma"] * bl[min(l + 1, L)] / cfg["beta"] for l in range(L + 1)]  # gamma_l
    # forward pass initialises z, a
    A = [with_one(Xb)]
    Z = [None]
    for l in range(1, L + 1):
        Z.append(A[l - 1] @ W[l].T)
        if l < L:
            A.append(with_one(relu(Z[l])))
    # update the Gram EMAs with this batch's forward activations
    if cfg["metric"] == "gram":
        for l in range(1, L + 1):
            G = A[l - 1].T @ A[l - 1]
            S[l] = G if first_batch else cfg["ema"] * S[l] + (1 - cfg["ema"]) * G
    Afwd = list(A)
    for _ in range(cfg["sweeps"]):
        if cfg["order"] == "backward":
            Z[L] = output_z_update(Tb, A[L - 1] @ W[L].T, bl[L], cfg["loss"])
            for l in range(L - 1, 0, -1):
                a = a_update(W[l + 1], Z[l + 1], relu(Z[l]), bl[l + 1], gl[l])
                Z[l] = relu_z_update(a, A[l - 1] @ W[l].T, bl[l], gl[l])
                A[l] = with_one(a)
            Ain = A if cfg["w_input"] == "updated" else Afwd
            for l in range(1, L + 1):
                W[l] = w_update(W[l], Z[l], Ain[l - 1], S[l], cfg)
        else:  # taylor
            for l in range(1, L):
                W[l] = w_update(W[l], Z[l], A[l - 1], S[l], cfg)
                a = a_update(W[l + 1], Z[l + 1], relu(Z[l]), bl[l + 1], gl[l])
                A[l] = with_one(a)
                Z[l] = relu_z_update(a, A[l - 1] @ W[l].T, bl[l], gl[l])
            W[L] = w_update(W[L], Z[L], A[L - 1], S[L], cfg)
            Z[L] = output_z_update(Tb, A[L - 1] @ W[L].T, bl[L], cfg["loss"])


def refit_last(W, X, T, ridge=1e-4):
    a = X
    for l in range(1, len(W) - 1):
        a = relu(a @ W[l][:, :-1].T + W[l][:, -1])
    Ab = with_one(a)
    G = Ab.T @ Ab
    n = G.shape[0]
    G.flat[:: n + 1] += ridge * np.trace(G) / n + 1e-12
    W[-1] = sla.solve(G, Ab.T @ T, assume_a="pos").T


def fit(Xtr, ytr, Xte, yte, cfg, log=None):
    rng = np.random.default_rng(cfg["seed"])
    K = int(ytr.max()) + 1
    sizes = [Xtr.shape[1], *cfg["hidden"], 1 if K == 2 else K]
    W = init_weights(sizes, cfg, rng)
    S = [None] * len(W)
    T = ytr[:, None].astype(np.float64) if K == 2 else np.eye(K)[ytr]
    cfg = dict(cfg)
    N = Xtr.shape[0]
    hist = []
    t_train = 0.0
    first = True
    for ep in range(1, cfg["epochs"] + cfg["full_sweeps"] + 1):
        t0 = time.perf_counter()
        if ep <= cfg["epochs"]:
            perm = rng.permutation(N)
            B = cfg["batch"]
            for i in range(0, N, B):
                idx = perm[i:i + B]
                if len(idx) < B // 2 and i > 0:
                    continue
                batch_step(W, S, Xtr[idx], T[idx], cfg, first)
                first = False
        else:
            batch_step(W, S, Xtr, T, cfg, first)
        cfg["alpha"] *= cfg["alpha_growth"]
        t_train += time.perf_counter() - t0
        last = ep == cfg["epochs"] + cfg["full_sweeps"]
        if cfg["eval_every"] and (ep % cfg["eval_every"] == 0 or last):
            rec = dict(epoch=ep, train=accuracy(W, Xtr, ytr), test=accuracy(W, Xte, yte), sec=round(t_train, 2))
            hist.append(rec)
            if log:
                log(rec)
    if cfg["refit"]:
        t0 = time.perf_counter()
        refit_last(W, Xtr, T)
        t_train += time.perf_counter() - t0
        hist.append(dict(epoch="refit", train=accuracy(W, Xtr, ytr), test=accuracy(W, Xte, yte), sec=round(t_train, 2)))
    return W, hist, t_train


def parse(argv):
    cfg = dict(CFG)
    pairs, seeds, verbose = "4-9", "0", False
    for arg in argv:
        k, v = arg.split("=", 1)
        if k == "pairs": pairs = v; continue
        if k == "seeds": seeds = v; continue
        if k == "verbose": verbose = v == "1"; continue
        if k not in cfg: raise SystemExit(f"unknown key {k}")
        d = CFG[k]
        cfg[k] = tuple(int(x) for x in v.split(",")) if isinstance(d, tuple) else (v == "1" or v == "True") if isinstance(d, bool) else type(d)(v)
    return cfg, [(-1, -1) if p == "all" else tuple(map(int, p.split("-"))) for p in pairs.split(",")], [int(s) for s in seeds.split(",")], verbose


if __name__ == "__main__":
    cfg, pairs, seeds, verbose = parse(sys.argv[1:])
    tag = " ".join(a for a in sys.argv[1:] if not a.startswith(("pairs=", "seeds=", "verbose=")))
    for a, b in pairs:
        Xtr, ytr, Xte, yte = common.load_pair(a, b) if a >= 0 else common.load_all()
        for s in seeds:
            cfg["seed"] = s
            log = (lambda r: print("   ", r, flush=True)) if verbose else None
            W, hist, t = fit(Xtr, ytr, Xte, yte, cfg, log)
            h = hist[-1]
            best = max(hist, key=lambda r: r["test"])
            print(json.dumps(dict(cfg=tag, pair="all" if a < 0 else f"{a}-{b}", seed=s, train=round(h["train"], 4), test=round(h["test"], 4),
                                  sec=round(t, 2), first99=next((r["epoch"] for r in hist if r["test"] >= 0.99), None))), flush=True)
