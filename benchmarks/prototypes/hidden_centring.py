"""Issue 12, tried and not kept: centred coordinates for the W-updates of the hidden layers too.

``center_inputs`` centres layer 1's inputs on their training means.  The later layers' inputs are
ReLU activations, whose Gram also has a large mean direction; this script (a patch of
MiniBatchADMM._w_update, the library has no such setting) runs the W-update of every layer from
``FROM`` on in coordinates centred at the batch's mean activation m: the bias becomes b + W m, the
inputs a - m, and after the update b <- b' - W' m (the same model; only the proximal term, which
damps the change of the layer's output at the batch mean instead of at a = 0, differs).  Every
other setting is train_admm's default (ten digits: centred inputs, output refit).

    FASTADMM_BENCH_MNIST=DIR python hidden_centring.py HIDDEN SEEDS FROM ['{"task": "3-5"}']

e.g. ``300 0,1,2 2`` (ten digits, 784-300-10) or ``100 0,1,2 2 '{"task": "4-9"}'`` (a pair, with the
pairs' net 784-100-50-10-1).  Prints the final test accuracies and their median.
"""

import json
import os
import sys
import warnings
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for _data

import fastadmm  # noqa: E402
from fastadmm import _minibatch  # noqa: E402
from _data import mnist_split  # noqa: E402


def main():
    hidden = tuple(int(h) for h in sys.argv[1].split(","))
    seeds = [int(s) for s in sys.argv[2].split(",")]
    first = int(sys.argv[3])
    extra = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    task = extra.pop("task", "ten")
    plain = _minibatch.MiniBatchADMM._w_update

    def w_update(self, l, B):
        if l < first:
            return plain(self, l, B)
        A = self.A[l - 1][:B]
        m = A.mean(axis=0)
        saved = A.copy()
        A -= m
        self.W[l][:, -1] += self.W[l][:, :-1] @ m
        try:
            plain(self, l, B)
        finally:
            self.W[l][:, -1] -= self.W[l][:, :-1] @ m
            A[...] = saved

    _minibatch.MiniBatchADMM._w_update = w_update
    if task == "ten":
        X, y, Xt, yt = mnist_split()
    else:
        a, b = (int(v) for v in task.split("-"))
        X, y, Xt, yt = mnist_split(classes=(a, b))
        y, yt = (y == b).astype(int), (yt == b).astype(int)
        hidden = (100, 50, 10)
    accuracies = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in seeds:
            res = fastadmm.train_admm(X, y, hidden=hidden, X_test=Xt, y_test=yt, random_state=seed, **extra)
            accuracies.append(round(res.history["test_accuracy"][-1], 4))
    print(json.dumps({"task": task, "hidden": hidden, "from": first, "test": accuracies,
                      "median": float(np.median(accuracies))}))


if __name__ == "__main__":
    main()
