"""A default train_admm call of this tree beside the same call of an earlier commit, interleaved.

    mkdir -p /tmp/before && git archive COMMIT fastadmm | tar -x -C /tmp/before \
        && mv /tmp/before/fastadmm /tmp/before/fastadmm_before
    FASTADMM_BENCH_MNIST=DIR OPENBLAS_NUM_THREADS=1 python benchmarks/before_after.py /tmp/before [--rounds 8]

The earlier package is imported as ``fastadmm_before`` (its compiled kernels are this tree's: they are
loaded by absolute name).  MNIST 0/1 of the folder (``--task ten300``: its ten digits with 784-300-10),
X / 255 in float64, with X_test, max_iter=3, seed 0;
the two run in turn (alternating which goes first) after one warm-up round each.  Prints the medians of
the call's wall seconds, setup, sweep and evaluation seconds per epoch, the median of the per-round
ratios this / before, and whether the final weights agree.
"""

import argparse
import sys
import time
import warnings

import numpy as np

import fastadmm
from _data import mnist_split


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", help="the folder holding fastadmm_before/")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--max-iter", type=int, default=3)
    p.add_argument("--task", choices=["01", "ten300"], default="01")
    args = p.parse_args()
    sys.path.insert(0, args.folder)
    import fastadmm_before

    X, y, X_test, y_test = mnist_split(classes=(0, 1) if args.task == "01" else None)
    net = {} if args.task == "01" else {"hidden": (300,)}
    mods = {"before": fastadmm_before, "this": fastadmm}
    rows = {name: [] for name in mods}
    weights, accuracy = {}, {}
    warnings.simplefilter("ignore")
    for r in range(args.rounds + 1):
        for name in (("before", "this") if r % 2 else ("this", "before")):
            t0 = time.perf_counter()
            res = mods[name].train_admm(X, y, X_test=X_test, y_test=y_test, max_iter=args.max_iter, random_state=0,
                                         **net)
            wall = time.perf_counter() - t0
            t, k = res.timings, res.n_iter
            if r:  # round 0 is the warm-up
                rows[name].append((wall, t["setup"], t["train"] / k, t["eval"] / k))
            weights[name] = res.weights
            accuracy[name] = res.history["test_accuracy"][-1]
    for name, v in rows.items():
        print(f"{name}: wall {np.median([x[0] for x in v]):.3f} s, setup {np.median([x[1] for x in v]):.4f} s, "
              f"sweep {np.median([x[2] for x in v]):.4f} s/epoch, evaluation {np.median([x[3] for x in v]):.4f} s/epoch")
    b, t = np.array(rows["before"]), np.array(rows["this"])
    ratio = np.median(t / b, axis=0)
    print(f"this / before (median of per-round ratios): wall {ratio[0]:.3f}, setup {ratio[1]:.3f}, "
          f"sweep {ratio[2]:.3f}, evaluation {ratio[3]:.3f}")
    print(f"test accuracy after {args.max_iter} epochs: " + ", ".join(f"{k} {v:.4f}" for k, v in accuracy.items()))
    diff = max(float(np.max(np.abs(a - c))) for a, c in zip(weights["this"], weights["before"]))
    print(f"largest weight difference: {diff:.3g}")


if __name__ == "__main__":
    main()
