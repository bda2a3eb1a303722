"""Issue 12: what a mini-batch ADMM batch costs beyond its arithmetic (the case for fusing its calls).

One epoch of train_admm (batch 64, its one-output defaults, compiled updates, float32, one thread)
on 4,864 rows of 3 random features, so that every layer is tiny and the seconds per batch are the
calls' fixed costs (Python glue, the Cython entries and their typed memoryviews, BLAS's per-call
overhead); beside it the default net 100-50-10 on the same rows, and then the cost of each step of a
batch, called on its own in a loop (``timeit``, best of 3).

    python batch_overhead.py
"""

import os
import timeit
import warnings

for _var in ("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

import fastadmm  # noqa: E402
from fastadmm._minibatch import MiniBatchADMM  # noqa: E402


def per_batch_seconds(X, y, hidden, rounds=8):
    seconds = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(rounds):
            res = fastadmm.train_admm(X, y, hidden=hidden, max_iter=1, eval_every=0, skip_zero_inputs=False)
            seconds.append(res.timings["train"])
    return float(np.median(seconds)) / (X.shape[0] // 64)


def main():
    rng = np.random.default_rng(0)
    X = rng.random((4864, 3))
    y = (X[:, 0] > 0.5).astype(int)
    for hidden in ((4, 3, 2), (100, 50, 10)):
        print(f"hidden {hidden}: {per_batch_seconds(X, y, hidden) * 1e6:.0f} us per batch")
    captured = {}
    plain = MiniBatchADMM.sweep

    def keep(self, timings):
        captured["step"] = self
        return plain(self, timings)

    MiniBatchADMM.sweep = keep
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fastadmm.train_admm(X, y, hidden=(4, 3, 2), max_iter=1, eval_every=0, skip_zero_inputs=False)
    MiniBatchADMM.sweep = plain
    s = captured["step"]
    B, rows = s.B, np.arange(s.B, dtype=np.intp)
    timings, sums = {"W": 0.0, "a": 0.0, "z": 0.0}, np.zeros(2 * s.L + 2)
    steps = {
        "whole batch": lambda: s._batch(rows, sums, timings),
        "forward pass (4 layers)": lambda: s._forward(B),
        "output update": lambda: s._output_target(B, sums),
        "a-update (one layer)": lambda: s._a_update(1, B),
        "z-update (one layer)": lambda: s._z_update(1, B),
        "W-update (one layer)": lambda: s._w_update(1, B),
    }
    for name, fn in steps.items():
        fn()
        best = min(timeit.repeat(fn, number=2000, repeat=3)) / 2000
        print(f"{name}: {best * 1e6:.1f} us")


if __name__ == "__main__":
    main()
