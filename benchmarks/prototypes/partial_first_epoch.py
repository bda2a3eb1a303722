"""Issue 12, tried and rejected: a first epoch that visits only a share of the rows.

A default train_admm call on MNIST 0/1 reaches 99 % test accuracy after its first epoch; a first
epoch over half the rows would halve that epoch's cost.  This script patches MiniBatchADMM.sweep (the
library has no such setting: it was rejected) so that the first epoch runs only the first
ceil(fraction x n_batches) batches of its shuffled rows, the same stream of shuffles, and counts the
one-epoch fits that reach 99 %: mse and hinge, X in float64 and float32, seeds 0-9 (40 fits a
fraction).

    FASTADMM_BENCH_MNIST=DIR OPENBLAS_NUM_THREADS=1 python benchmarks/prototypes/partial_first_epoch.py [0.5 1.0]
"""

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for _data

import fastadmm  # noqa: E402
from fastadmm import _minibatch  # noqa: E402
from _data import mnist_split  # noqa: E402

FRACTION = {"value": 1.0}
_full_sweep = _minibatch.MiniBatchADMM.sweep


def sweep(self, timings):
    """The library's sweep, with n_batches cut for the first epoch only."""
    if self.iteration > 0 or FRACTION["value"] >= 1.0:
        return _full_sweep(self, timings)
    N = self.X.shape[0]
    bounds = np.linspace(0, N, self.n_batches + 1).astype(np.intp)  # the full epoch's batches
    order = self.rng.permutation(N)
    sums = np.zeros(2 * self.L + 2)
    penalties = (list(self.beta), list(self.gamma))
    for i in range(max(1, int(np.ceil(FRACTION["value"] * self.n_batches)))):  # the first ones only
        self._batch(order[bounds[i] : bounds[i + 1]], sums, timings)
    if self.s.output_refit:
        self.refit_output()
    self.iteration += 1
    return sums, penalties


def main():
    _minibatch.MiniBatchADMM.sweep = sweep
    warnings.simplefilter("ignore")
    Xtr, ytr, Xte, yte = mnist_split(classes=(0, 1))
    for fraction in [float(v) for v in sys.argv[1:]] or [0.5, 1.0]:
        FRACTION["value"] = fraction
        accs = []
        for dtype in (np.float64, np.float32):
            for loss in ("mse", "hinge"):
                for seed in range(10):
                    r = fastadmm.train_admm(Xtr.astype(dtype), ytr, loss=loss, max_iter=1, X_test=Xte.astype(dtype),
                                            y_test=yte, random_state=seed)
                    accs.append(r.history["test_accuracy"][-1])
        accs = np.array(accs)
        print(f"first epoch over {fraction:g} of the rows: {int((accs >= 0.99).sum())} of {len(accs)} fits >= 99 % "
              f"after it (min {accs.min():.4f}, median {np.median(accs):.4f})")


if __name__ == "__main__":
    main()
