"""Statistical efficiency of mini-batch ADMM against the batch size, in one process (the global batch a
data-parallel fit would take).

    FASTADMM_BENCH_MNIST=DIR OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \\
        python benchmarks/batch_scaling.py --batches 128 512 2048 4096 --out batch-scaling.jsonl

Ten digits of the MNIST folder, 784-300-10, the defaults but ``batch_size`` and ``prox`` under two
rules for the proximal weight as the batch grows: ``same`` (prox as at batch 128: the step takes the
same fraction of each batch's least-squares fit, so an epoch takes B/128 times fewer such steps) and
``sqrt`` (prox * sqrt(128 / B): larger batches, whose least-squares fits are less noisy, take longer
steps).  Each run records the test accuracy after every epoch, the first epoch at or above 97 %, and
the seconds.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path

import fastadmm
from fastadmm._settings import MINI_BATCH

sys.path.insert(0, str(Path(__file__).parent))
from _data import mnist_split  # noqa: E402

RULES = {"same": lambda B: MINI_BATCH["prox"], "sqrt": lambda B: MINI_BATCH["prox"] * math.sqrt(128 / B)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", nargs="+", type=int, default=[128, 512, 2048, 4096])
    parser.add_argument("--rules", nargs="+", choices=sorted(RULES), default=["same", "sqrt"])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("batch-scaling.jsonl"))
    args = parser.parse_args(argv)
    X, y, Xt, yt = mnist_split()
    print("| batch | prox rule | prox | test accuracy (last) | best | epochs to 97 % | seconds |")
    print("|---|---|---|---|---|---|---|")
    for B in args.batches:
        for rule in args.rules:
            if B == 128 and rule != args.rules[0]:
                continue  # the two rules agree at 128
            prox = RULES[rule](B)
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = fastadmm.train_admm(X, y, X_test=Xt, y_test=yt, hidden=(300,), batch_size=B, prox=prox,
                                        max_iter=args.epochs, tol=0, random_state=args.seed)
            seconds = time.perf_counter() - t0
            acc = r.history["test_accuracy"]
            to97 = next((i + 1 for i, a in enumerate(acc) if a >= 0.97), None)
            row = dict(batch=B, rule=rule, prox=prox, seed=args.seed, test_curve=acc, epochs_to_97=to97,
                       seconds=round(seconds, 1))
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"| {B} | {rule} | {prox:.3g} | {acc[-1]:.4f} | {max(acc):.4f} | {to97 or '-'} | {seconds:.0f} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
