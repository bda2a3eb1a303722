"""The method's ablation (issue 11): each idea on and off, beside compiled SGD and Adam, on MNIST.

    FASTADMM_BENCH_MNIST=DIR OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 \\
        python benchmarks/ablation.py --tasks ten300 ten100 4-9 3-5 7-9 --seeds 0 1 2 --out ablation.jsonl

Tasks: ``ten300`` (ten digits, 784-300-10, hidden_layer_sizes=(300,), through ADMMClassifier as a
user calls it), ``ten100-50`` (ten digits, 784-100-50-10, hidden (100, 50)), ``ten100`` (ten digits,
hidden (100, 50, 10): the net 784-100-50-10-10 that issue 11's first table names "784-100-50-10"),
and digit pairs such as ``4-9`` (784-100-50-10-1 through train_admm).
Variants (``--variants``): ``default`` (every default), ``full_batch`` (batch_size=None: the paper's
algorithm with today's full-batch defaults, 50 iterations), ``equal_penalties`` (depth_decay=1),
``batch_500``, ``sweeps_2``, ``gram_metric``, ``cross_entropy``, ``float32``, and the baselines
``sgd`` (compiled SGD with momentum, 10 epochs) and ``adam`` (compiled Adam, 10 epochs, lr 1e-3), with
mse, and ``sgd_ce`` / ``adam_ce`` the same with softmax cross-entropy.
Each fit is a fresh call with its defaults; its wall time includes setup and the default evaluation.
Every run appends one JSON line (task, variant, seed, train and test accuracy, iterations, seconds);
``--table`` prints the median and range over seeds of what a file holds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info

import fastadmm
from fastadmm._settings import MINI_BATCH, MINI_BATCH_ONE_OUTPUT
from fastadmm.data import read_mnist_folder

sys.path.insert(0, str(Path(__file__).parent))
from _data import mnist_dir  # noqa: E402

TASKS = {"ten300": ((300,), None), "ten100": ((100, 50, 10), None), "ten100-50": ((100, 50), None)}
VARIANTS = {
    "default": {},
    "full_batch": {"batch_size": None},
    "equal_penalties": {"depth_decay": 1.0},
    "batch_500": {"batch_size": 500},
    "sweeps_2": {"batch_sweeps": 2},
    "gram_metric": {"prox_metric": "gram", "prox": 1.0},
    "cross_entropy": {"loss": "cross_entropy"},
    "float32": {"dtype": "float32"},
    "epochs_40": {"max_iter": 40},
    "beta_1": {"beta": 1.0},
    "prox_3": {"prox": 3.0},
    "wd_1e-4": {"weight_decay": 1e-4},
    "wd_2.5e-4": {"weight_decay": 2.5e-4},
    "no_weight_decay": {"weight_decay": 0.0},
    "depth_decay_0.1": {"depth_decay": 0.1},
    "gamma_0.03": {"gamma": 0.03},
    "no_weight_decay_20": {"weight_decay": 0.0, "max_iter": 20},
    "epochs_20": {"max_iter": 20},
    "epochs_60": {"max_iter": 60},
    "batch_32": {"batch_size": 32},
    # the ideas behind the several-output defaults, each switched back (MINI_BATCH in _settings.py)
    "targets_first": {"sweep_order": "targets_first"},
    "uniform_init": {"initialization": "uniform"},
    "batch_64": {"batch_size": 64},
    "no_refit": {"output_refit": 0.0},
    "no_center": {"center_inputs": False},
    "center": {"center_inputs": True},
    "prox_1.5": {"prox": 1.5},
    # weaker propagation of the targets (beta = gamma = 0.1, depth_decay 0.3 / 0.2 / 0.15)
    "penalties_0.1_0.1_0.3": {"beta": 0.1, "gamma": 0.1, "depth_decay": 0.3},
    "penalties_0.1_0.1_0.2": {"beta": 0.1, "gamma": 0.1, "depth_decay": 0.2},
    "penalties_0.1_0.1_0.15": {"beta": 0.1, "gamma": 0.1, "depth_decay": 0.15},
    # each output width's defaults on the other's tasks (why there are two)
    "multi_defaults": {k: v for k, v in MINI_BATCH.items()},
    "one_output_defaults": {k: v for k, v in MINI_BATCH_ONE_OUTPUT.items()},
}
BASELINES = {
    "sgd": dict(batch_size=64, max_iter=10),
    "adam": dict(batch_size=64, max_iter=10, optimizer="adam", lr=1e-3),
    "sgd_ce": dict(batch_size=64, max_iter=10, loss="cross_entropy"),
    "adam_ce": dict(batch_size=64, max_iter=10, optimizer="adam", lr=1e-3, loss="cross_entropy"),
}


def load(task: str):
    m = read_mnist_folder(mnist_dir())
    if task in TASKS:
        hidden, pair = TASKS[task]
    else:
        hidden, pair = (100, 50, 10), tuple(int(d) for d in task.split("-"))
        m = m.select(pair)
    X = m.X_train.reshape(len(m.X_train), -1) / 255.0
    Xt = m.X_test.reshape(len(m.X_test), -1) / 255.0
    return hidden, X, m.y_train, Xt, m.y_test


def run(task: str, variant: str, seed: int, data) -> dict:
    hidden, X, y, Xt, yt = data
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if variant in BASELINES:
            result = fastadmm.train_sgd(X, y, hidden=hidden, random_state=seed, eval_every=0, **BASELINES[variant])
        elif task in TASKS:  # as a user of the estimator calls it
            kw = dict(VARIANTS[variant])
            clf = fastadmm.ADMMClassifier(hidden_layer_sizes=hidden, random_state=seed, **kw).fit(X, y)
            result = clf.result_
        else:
            result = fastadmm.train_admm(X, y, hidden=hidden, random_state=seed, **VARIANTS[variant])
    seconds = time.perf_counter() - t0
    return dict(task=task, variant=variant, seed=seed, train=result.score(X, y), test=result.score(Xt, yt),
                iterations=result.n_iter, seconds=round(seconds, 2),
                settings={k: result.settings.get(k) for k in ("batch_size", "beta", "gamma", "depth_decay",
                                                                "loss", "dtype", "max_iter", "lr", "optimizer")})


def table(path: Path) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["task"], r["variant"]), []).append(r)

    def cell(values, fmt):
        values = sorted(values)
        med = statistics.median(values)
        return f"{med:{fmt}} ({values[0]:{fmt}}-{values[-1]:{fmt}})" if len(values) > 1 else f"{med:{fmt}}"

    out = ["| task | variant | seeds | train accuracy | test accuracy | iterations | seconds |",
           "|---|---|---|---|---|---|---|"]
    for (task, variant), rs in groups.items():
        out.append(f"| {task} | {variant} | {len(rs)} | {cell([r['train'] for r in rs], '.4f')} | "
                   f"{cell([r['test'] for r in rs], '.4f')} | {cell([r['iterations'] for r in rs], 'g')} | "
                   f"{cell([r['seconds'] for r in rs], '.1f')} |")
    return "\n".join(out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["ten300", "ten100", "4-9", "3-5", "7-9"])
    parser.add_argument("--variants", nargs="+", default=["default", *[v for v in VARIANTS if v != "default"],
                                                          *BASELINES])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("ablation.jsonl"))
    parser.add_argument("--table", action="store_true", help="print the table of --out and stop")
    parser.add_argument("--custom", nargs="+", default=[], metavar="NAME=JSON",
                        help='extra variants, e.g. \'lw={"sweep_order": "layerwise"}\' (then list NAME in --variants)')
    args = parser.parse_args(argv)
    for spec in args.custom:
        name, _, settings = spec.partition("=")
        VARIANTS[name] = json.loads(settings)
    if args.table:
        print(table(args.out))
        return 0
    if mnist_dir() is None:
        parser.error("set FASTADMM_BENCH_MNIST to a folder of the four MNIST IDX files")
    print(json.dumps({"threadpools": [(i["internal_api"], i["num_threads"]) for i in threadpool_info()]}),
          file=sys.stderr)
    for task in args.tasks:
        data = load(task)
        for variant in args.variants:
            for seed in args.seeds:
                row = run(task, variant, seed, data)
                print(json.dumps(row), flush=True)
                with args.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
