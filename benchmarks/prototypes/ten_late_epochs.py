"""Issue 12, tried and rejected: two ways to lift ten-digit ADMM past its 96.7-96.8 % plateau.

784-300-10 with ADMMClassifier's defaults (train_admm, mini-batch, batch 128, 20 epochs, output refit)
levels off from about epoch 12.  Two cheap remedies, each a patch of this script (the library has
neither):

* ``average``: the hidden weights averaged over the epochs from E/2, 3E/4 or E-3 to the end (as
  stochastic weight averaging does for SGD), then the output layer refitted by the same ridge least
  squares as the library's output refit (ridge 1e-3 of the mean Gram diagonal), or the averaged
  output layer kept;
* ``prox``: the proximal weight of the W-update (the inverse of its step) multiplied by ``growth``
  every epoch from epoch ``start`` (growth > 1 anneals the step as SGD's learning-rate decay does;
  < 1 enlarges it); ``settings`` adds any other train_admm keyword (e.g. '{"weight_decay": 0.001}').

    FASTADMM_BENCH_MNIST=DIR python ten_late_epochs.py average SEED [EPOCHS]
    FASTADMM_BENCH_MNIST=DIR python ten_late_epochs.py prox SEED START GROWTH ['{"settings": ...}']

Prints one JSON line: the test accuracy after every epoch and what the variant gave.
"""

import dataclasses
import json
import os
import sys
import time
import warnings
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for _data

import fastadmm  # noqa: E402
from fastadmm import _minibatch  # noqa: E402
from _data import mnist_split  # noqa: E402

HIDDEN = (300,)


def hidden_features(weights, X):
    a = X
    for W in weights:
        a = np.maximum(a @ W[:, :-1].T + W[:, -1], 0)
    return a


def refit_output(weights, X, y, ridge=1e-3):
    F = hidden_features(weights, X)
    F = np.hstack([F, np.ones((F.shape[0], 1))])
    G = F.T @ F
    n = G.shape[0]
    G[np.diag_indices(n)] += ridge * np.trace(G) / n
    return np.linalg.solve(G, F.T @ np.eye(10)[y]).T


def accuracy(weights, W_out, X, y):
    out = hidden_features(weights, X) @ W_out[:, :-1].T + W_out[:, -1]
    return float(np.mean(np.argmax(out, axis=1) == y))


def average(seed, epochs=20):
    X, y, Xt, yt = mnist_split()
    snapshots = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fastadmm.train_admm(X, y, hidden=HIDDEN, X_test=Xt, y_test=yt, max_iter=epochs, random_state=seed,
                                  callback=lambda r: snapshots.append([W.astype(np.float64) for W in r["weights"]()]))
    out = dict(variant="average", seed=seed, epochs=epochs, test=[round(a, 4) for a in res.history["test_accuracy"]])
    for start in (epochs // 2, 3 * epochs // 4, epochs - 3):
        avg = [np.mean([s[l] for s in snapshots[start:]], axis=0) for l in range(len(snapshots[0]))]
        out[f"from_{start}_refit"] = accuracy(avg[:-1], refit_output(avg[:-1], X, y), Xt, yt)
        out[f"from_{start}_averaged_output"] = accuracy(avg[:-1], avg[-1], Xt, yt)
    return out


def prox_schedule(seed, start, growth, settings=None, epochs=20):
    X, y, Xt, yt = mnist_split()
    plain = _minibatch.MiniBatchADMM.sweep

    def sweep(self, timings):
        if not hasattr(self, "_prox0"):
            self._prox0 = self.s.prox
        self.s = dataclasses.replace(self.s, prox=self._prox0 * growth ** max(0, self.iteration - start))
        return plain(self, timings)

    _minibatch.MiniBatchADMM.sweep = sweep
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = fastadmm.train_admm(X, y, hidden=HIDDEN, X_test=Xt, y_test=yt, max_iter=epochs, random_state=seed,
                                  **(settings or {}))
    return dict(variant="prox", seed=seed, start=start, growth=growth, settings=settings or {},
                seconds=round(time.perf_counter() - t0, 1), test=[round(a, 4) for a in res.history["test_accuracy"]],
                train_last=round(res.history["train_accuracy"][-1], 4))


if __name__ == "__main__":
    kind, seed = sys.argv[1], int(sys.argv[2])
    if kind == "average":
        print(json.dumps(average(seed, *(int(a) for a in sys.argv[3:4]))))
    else:
        extra = json.loads(sys.argv[5]) if len(sys.argv) > 5 else None
        print(json.dumps(prox_schedule(seed, int(sys.argv[3]), float(sys.argv[4]), extra)))
