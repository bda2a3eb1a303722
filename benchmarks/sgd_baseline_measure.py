"""Compiled Adam / momentum SGD (fastadmm.train_sgd) beside PyTorch Adam, MNIST ten digits.

Usage: python benchmarks/sgd_baseline_measure.py table [seeds] [nets] [dtypes]  -> JSON lines (one per run) on stdout
       python benchmarks/sgd_baseline_measure.py lr      -> Adam lr sweep (ten digits and 0/1, batch 64)
       python benchmarks/sgd_baseline_measure.py gdlr    -> full-batch Adam lr sweep (MNIST 0/1)
       python benchmarks/sgd_baseline_measure.py none    -> loads the data only (a smoke check)
e.g. ``table 0 300 float32`` (one seed, 784-300-10, float32). Needs PyTorch (imported at the start).
Data: the folder in FASTADMM_BENCH_MNIST (22,699 train / 10,000 test), pixels / 255, one thread
(``_data.mnist_split``).
Same initial weights (fastadmm's He-uniform draw, first-layer bias 0) and the same numpy permutations
for PyTorch as for the compiled code; PyTorch's objective is the same mean over the batch
(mse: squared error summed over the 10 outputs; cross_entropy: F.cross_entropy).
"""
import os
for v in ("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[v] = "1"
import json, sys, time
import numpy as np
import torch
torch.set_num_threads(1)
from fastadmm.sgd import train_sgd, _initial_weights
from _data import mnist_split

XTR, YTR, XTE, YTE = mnist_split()


def torch_adam(Xtr, ytr, Xte, yte, hidden, loss, dtype, seed, epochs=10, lr=1e-3, batch=64):
    k = 10
    sizes = [784, *hidden, k]
    rng = np.random.default_rng(seed)
    init = _initial_weights(rng, sizes, None, True, dtype)  # same draw order as train_sgd
    tdt = torch.float32 if dtype == np.float32 else torch.float64
    layers = []
    for l, W in enumerate(init):
        lin = torch.nn.Linear(W.shape[1] - (l == 0), W.shape[0], bias=(l == 0), dtype=tdt)
        with torch.no_grad():
            if l == 0:
                lin.weight.copy_(torch.from_numpy(W[:, :-1])); lin.bias.copy_(torch.from_numpy(W[:, -1]))
            else:
                lin.weight.copy_(torch.from_numpy(W))
        layers += [lin, torch.nn.ReLU()]
    net = torch.nn.Sequential(*layers[:-1])
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    X = torch.from_numpy(Xtr.astype(dtype)); y = torch.from_numpy(ytr)
    T = torch.nn.functional.one_hot(y, k).to(tdt)
    t0 = time.perf_counter()
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(X)))
        for s in range(0, len(X), batch):
            idx = order[s:s + batch]
            opt.zero_grad(set_to_none=True)
            o = net(X[idx])
            if loss == "mse":
                f = ((o - T[idx]) ** 2).sum(dim=1).mean()
            else:
                f = torch.nn.functional.cross_entropy(o, y[idx])
            f.backward(); opt.step()
    sec = time.perf_counter() - t0
    with torch.no_grad():
        acc = float((net(torch.from_numpy(Xte.astype(dtype))).argmax(1).numpy() == yte).mean())
    return acc, sec / epochs


def compiled(Xtr, ytr, Xte, yte, hidden, loss, dtype, seed, optimizer, epochs=10, lr=None, batch=64):
    res = train_sgd(Xtr.astype(dtype), ytr, hidden=hidden, loss=loss, optimizer=optimizer, lr=lr,
                    batch_size=batch, epochs=epochs, random_state=seed, eval_every=0, threads=1,
                    X_test=Xte.astype(dtype), y_test=yte)
    return res.history["test_accuracy"][-1], res.timings["train"] / epochs


def table(seeds, nets, dtypes):
    for seed in seeds:
        for hidden in nets:
            for dt in dtypes:
                for loss in ("cross_entropy", "mse"):
                    runs = [("compiled adam", lambda: compiled(XTR, YTR, XTE, YTE, hidden, loss, dt, seed, "adam")),
                            ("torch adam", lambda: torch_adam(XTR, YTR, XTE, YTE, hidden, loss, dt, seed)),
                            ("compiled momentum", lambda: compiled(XTR, YTR, XTE, YTE, hidden, loss, dt, seed, "momentum"))]
                    for name, f in runs:
                        acc, spe = f()
                        print(json.dumps(dict(method=name, net="784-" + "-".join(map(str, hidden)) + "-10", loss=loss,
                                              dtype=np.dtype(dt).name, seed=seed, test_acc=round(acc, 4),
                                              s_per_epoch=round(spe, 4))), flush=True)


def lr_sweep():
    pair = (YTR <= 1), (YTE <= 1)
    for name, (tr, te) in (("0/1", pair), ("ten", (slice(None), slice(None)))):
        for loss in ("mse", "cross_entropy"):
            for lr in (3e-4, 1e-3, 3e-3, 1e-2):
                for seed in ((0, 1) if name == "0/1" else (0,)):
                    res = train_sgd(XTR[tr], YTR[tr], hidden=(100, 50, 10), loss=loss, optimizer="adam", lr=lr,
                                    batch_size=64, epochs=10, random_state=seed, threads=1, X_test=XTE[te], y_test=YTE[te])
                    acc = res.history["test_accuracy"]
                    print(json.dumps(dict(data=name, loss=loss, lr=lr, seed=seed, acc_epoch1=round(acc[0], 4),
                                          acc_epoch10=round(acc[-1], 4), best=round(max(acc), 4))), flush=True)


def gd_lr_sweep():
    """Full-batch Adam: lr sweep on MNIST 0/1 (default net, mse), 100 steps, test accuracy every 10 steps."""
    tr, te = (YTR <= 1), (YTE <= 1)
    for lr in (1e-3, 3e-3, 1e-2, 3e-2):
        for seed in (0, 1):
            res = train_sgd(XTR[tr], YTR[tr], hidden=(100, 50, 10), optimizer="adam", lr=lr, max_iter=100,
                            eval_every=10, random_state=seed, threads=1, X_test=XTE[te], y_test=YTE[te])
            print(json.dumps(dict(data="0/1 gd", lr=lr, seed=seed, acc_every10=[round(a, 4) for a in res.history["test_accuracy"]])), flush=True)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "help"
    if mode == "none":
        print(f"train {XTR.shape}, test {XTE.shape}")
    elif mode == "gdlr":
        gd_lr_sweep()
    elif mode == "lr":
        lr_sweep()
    elif mode == "table":
        seeds = [int(s) for s in (sys.argv[2] if len(sys.argv) > 2 else "0").split(",")]
        nets = [tuple(int(h) for h in n.split("-")) for n in (sys.argv[3] if len(sys.argv) > 3 else "300,100-50").split(",")]
        dtypes = [np.dtype(d).type for d in (sys.argv[4] if len(sys.argv) > 4 else "float32,float64").split(",")]
        table(seeds, nets, dtypes)
    else:
        sys.exit(__doc__)
