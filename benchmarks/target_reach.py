"""How much of the output's target reaches the first layer, per sweep order (mini-batch ADMM).

    OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/target_reach.py --epochs 10

On MNIST-1D (50,000 samples, the ``mnist1d`` package's generator; 40-100-100-10), for each sweep
order, one fit with the defaults but the order and one sweep per batch; after every epoch it prints

* the target displacement of each layer, ``||z_l - W_l a_{l-1}||`` summed over the epoch's batches
  (the history's ``residual_z``: how far the layer is asked to move), as a share of the output's;
* each layer's relative weight change over the epoch, ``||W_l(e) - W_l(e-1)|| / ||W_l(e-1)||``
  (how far it did move);
* the training and validation accuracy (validation: the last 10 % of the training rows).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

import fastadmm

sys.path.insert(0, str(Path(__file__).parent))
from _data import mnist1d_split  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--orders", nargs="+", default=["layerwise", "residual"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    X, y, _, _ = mnist1d_split()
    k = int(round(0.9 * len(y)))
    X, y, Xv, yv = X[:k], y[:k], X[k:], y[k:]
    for order in args.orders:
        weights = []

        def keep(record):
            weights.append(record["weights"]())

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = fastadmm.train_admm(X, y, X_test=Xv, y_test=yv, hidden=(100, 100), random_state=args.seed,
                                    sweep_order=order, batch_sweeps=1, max_iter=args.epochs, tol=0, callback=keep)
        h = r.history
        print(f"sweep_order={order!r}")
        print("epoch | target share layer 1, 2, 3 | weight change layer 1, 2, 3 | train | validation")
        for e, rz in enumerate(h["residual_z"]):
            share = [v / rz[-1] for v in rz]
            change = ([np.linalg.norm(w - p) / np.linalg.norm(p) for w, p in zip(weights[e], weights[e - 1])]
                      if e else [float("nan")] * len(rz))
            print(f"{e + 1:5d} | {', '.join(f'{v:.3f}' for v in share)} | {', '.join(f'{v:.4f}' for v in change)} | "
                  f"{h['train_accuracy'][e]:.4f} | {h['test_accuracy'][e]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
