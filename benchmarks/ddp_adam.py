"""The data-parallel baseline: PyTorch DistributedDataParallel (gloo, CPU) training an MLP with Adam at a
GLOBAL batch size split over K ranks, timed per epoch, beside data-parallel mini-batch ADMM.

    FASTADMM_BENCH_MNIST=DIR OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \\
        python benchmarks/ddp_adam.py --ranks 1 2 --epochs 5 --global-batch 128 --task ten300-shift \\
        --out /tmp/ddp.jsonl
    quickest run: --task ten300 --epochs 1 --ranks 1 2  (22,699 images, a few seconds an epoch)

Data: ``ablation.load(task, split)`` (the same rows as benchmarks/ablation.py): ``ten300`` = the ten digits
of the MNIST folder, 784-300-10; ``ten300-shift`` = the training images and their one-pixel shifts (113,495
rows for the shared sample); ``--split test`` (default) trains on every training row and evaluates on the
test set, ``validation`` on the last 10 % of the training rows.  Pixels / 255 in ``--dtype`` (float32).

Model and loss as the project's compiled Adam baseline (``fastadmm.train_sgd(optimizer="adam")``): ReLU
hidden layers, linear output, a bias on the first layer only, fastadmm's He-uniform initial weights from
``default_rng(seed)`` (``_torch_mlp.initial``, the same on every rank; DDP broadcasts rank 0's anyway);
loss "mse" = squared error against one-hot 0/1 targets summed over the outputs, or "cross_entropy" (softmax),
either as the mean over the global batch; ``torch.optim.Adam`` with its defaults and lr
``fastadmm.sgd.DEFAULT_ADAM_LR`` (1e-3).

Sampling (no DistributedSampler): rank k holds the contiguous rows ``np.array_split(range(N), K)[k]``
(``fastadmm.distributed.shard_rows``) and every rank continues the generator that drew the weights, so all
draw the same permutations.  ``--sampling global`` (default): data-parallel mini-batch ADMM's own batches
(``fastadmm.minibatch.schedule.Schedule``): each epoch one permutation of all N rows, N // B batches of
about B rows, and each rank takes the rows of each batch that it holds (B / K on average, not exactly:
the busiest rank sets the pace); the K-rank fit is the one-process fit.  ``--sampling even``: each epoch
one permutation p_j of each shard, and for the batch covering positions [a, b) of the epoch rank k
takes ``p_k[n_k * a // N : n_k * b // N]`` (B / K rows of its own shard, within one row: a balanced split,
as DistributedSampler gives, but the batches depend on K).  Both agree for K = 1.  Each rank's loss is
its rows' summed loss * K / G (G the rows of the global batch), so after DDP's mean of the gradients the
step is that of the mean loss over the global batch.

Per epoch (rank 0): the training seconds (``dist.barrier()`` before and after; the permutations, gathers,
forward, backward, all-reduce and Adam step), then, untimed, the test accuracy (rank 0, the whole set) and with
``--train-accuracy`` the training accuracy (every rank its shard, summed).  One JSON line per (K, seed) is
appended to ``--out``: the curves, the median epoch seconds, time to ``--target`` (cumulative training seconds
at the first epoch whose test accuracy >= target; null if never), the final test accuracy, the versions,
thread pools, git commit, date and every argument.  Only 127.0.0.1 (gloo on the loopback device).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

try:
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp
    from torch.nn.parallel import DistributedDataParallel
except ImportError:  # the script says it is skipped
    torch = None

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
TASKS = ("ten300", "ten300-shift", "ten100-50", "ten100-50-shift")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def git_commit() -> dict:
    def git(*cmd):
        r = subprocess.run(["git", *cmd], cwd=HERE, capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": git("rev-parse", "--short", "HEAD"), "dirty": None if status is None else bool(status)}


def shard_sizes(n: int, k: int) -> list:
    """Rows of each rank, as np.array_split (the first n % k ranks one more)."""
    return [n // k + (r < n % k) for r in range(k)]


def epoch_batches(sampling, rng, n, batch, sizes, rank, schedule):
    """(this rank's rows of each global batch of one epoch, as indices into its shard; K / rows of the batch)."""
    k = len(sizes)
    if sampling == "global":  # mini-batch ADMM's own schedule
        for rows, counts in schedule.epoch(rng):
            yield rows, k / (len(rows) if counts is None else int(counts.sum()))
        return
    perms = [rng.permutation(m) for m in sizes]  # "even": the same draws on every rank
    bounds = np.linspace(0, n, max(1, n // batch) + 1).astype(np.int64)
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        g = sum(m * b // n - m * a // n for m in sizes)
        yield perms[rank][sizes[rank] * a // n : sizes[rank] * b // n], k / g


def build_net(weights, tdt):
    """nn.Sequential of fastadmm-layout weights (bias = W_1's last column; later layers without bias)."""
    layers = []
    for l, W in enumerate(weights):
        W = torch.from_numpy(np.asarray(W))
        lin = torch.nn.Linear(W.shape[1] - (l == 0), W.shape[0], bias=(l == 0), dtype=tdt)
        with torch.no_grad():
            lin.weight.copy_(W[:, :-1] if l == 0 else W)
            if l == 0:
                lin.bias.copy_(W[:, -1])
        layers += [lin, torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1])


def worker(rank: int, k: int, port: int, data: dict, cfg: dict, result_path: str) -> None:
    """One rank: its shard, DDP, Adam; rank 0 writes the per-epoch figures to result_path."""
    from fastadmm.minibatch.schedule import Schedule

    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    os.environ["GLOO_SOCKET_IFNAME"] = "lo0" if sys.platform == "darwin" else "lo"  # loopback only
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=k)
    try:
        n = data["y"].shape[0]
        sizes = shard_sizes(n, k)
        start = sum(sizes[:rank])
        X = data["X"][start : start + sizes[rank]].clone()
        y = data["y"][start : start + sizes[rank]].clone()
        tdt = X.dtype
        mse = cfg["loss"] == "mse"
        T = torch.nn.functional.one_hot(y, cfg["n_classes"]).to(tdt) if mse else y
        torch.manual_seed(cfg["seed"])
        net = build_net(cfg["weights"], tdt)
        model = DistributedDataParallel(net)
        opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
        rng = cfg["rng"]  # every rank its copy of the same generator
        schedule = Schedule(n, cfg["global_batch"], sizes if k > 1 else None, rank)
        seconds, test_curve, train_curve = [], [], []
        for _ in range(cfg["epochs"]):
            dist.barrier()
            t0 = time.perf_counter()
            for rows, weight in epoch_batches(cfg["sampling"], rng, n, cfg["global_batch"], sizes, rank, schedule):
                idx = torch.from_numpy(rows)
                opt.zero_grad(set_to_none=True)
                out = model(X[idx])
                if mse:
                    loss = ((out - T[idx]) ** 2).sum()
                else:
                    loss = torch.nn.functional.cross_entropy(out, T[idx], reduction="sum")
                (loss * weight).backward()
                opt.step()
            dist.barrier()
            seconds.append(time.perf_counter() - t0)
            with torch.no_grad():
                if cfg["train_accuracy"]:
                    hits = torch.tensor([float((net(X).argmax(1) == y).sum()), float(len(y))], dtype=torch.float64)
                    dist.all_reduce(hits)
                    train_curve.append(float(hits[0] / hits[1]))
                if rank == 0:
                    test_curve.append(float((net(data["X_test"]).argmax(1) == data["y_test"]).double().mean()))
        if rank == 0:
            from threadpoolctl import threadpool_info

            pools = [(i["internal_api"], i["num_threads"], i.get("version")) for i in threadpool_info()]
            Path(result_path).write_text(json.dumps(dict(
                epoch_seconds=seconds, test_curve=test_curve, train_curve=train_curve, threadpools=pools,
                torch_threads=[torch.get_num_threads(), torch.get_num_interop_threads()])))
    finally:
        dist.destroy_process_group()


def run(k: int, seed: int, args, data: dict, hidden) -> dict:
    from _torch_mlp import initial

    n_classes = int(data["y"].max()) + 1
    rng, weights = initial([data["X"].shape[1], *hidden, n_classes], args.dtype, seed)
    cfg = dict(seed=seed, sampling=args.sampling, loss=args.loss, lr=args.lr, epochs=args.epochs,
               global_batch=args.global_batch, train_accuracy=args.train_accuracy, n_classes=n_classes,
               weights=weights, rng=rng)
    with tempfile.TemporaryDirectory(prefix="ddp_adam-") as tmp:
        path = Path(tmp) / "rank0.json"
        mp.spawn(worker, args=(k, free_port(), data, cfg, str(path)), nprocs=k, join=True)
        r = json.loads(path.read_text())
    secs, acc = r["epoch_seconds"], r["test_curve"]
    hit = next((i for i, a in enumerate(acc) if a >= args.target), None)
    return dict(
        script="ddp_adam", task=args.task, split=args.split, ranks=k, seed=seed, global_batch=args.global_batch,
        sampling=args.sampling, net=[data["X"].shape[1], *hidden, n_classes], loss=args.loss,
        lr=args.lr, dtype=args.dtype, epochs=args.epochs, n_train=int(data["y"].shape[0]),
        n_test=int(data["y_test"].shape[0]), epoch_seconds=[round(s, 4) for s in secs],
        epoch_seconds_median=round(statistics.median(secs), 4), target=args.target,
        time_to_target=None if hit is None else round(sum(secs[: hit + 1]), 4),
        epochs_to_target=None if hit is None else hit + 1, final_test_accuracy=acc[-1],
        test_curve=[round(a, 5) for a in acc], train_curve=[round(a, 5) for a in r["train_curve"]],
        torch=torch.__version__, numpy=np.__version__, threadpools=r["threadpools"],
        torch_threads=r["torch_threads"], cpu_count=os.cpu_count(), git=git_commit(),
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        args={**vars(args), "out": str(args.out)}, argv=sys.argv[1:])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--global-batch", type=int, default=128)
    parser.add_argument("--task", choices=TASKS, default="ten300-shift")
    parser.add_argument("--split", choices=("test", "validation"), default="test")
    parser.add_argument("--sampling", choices=("global", "even"), default="global",
                        help="global: mini-batch ADMM's batches (default); even: about B / K rows of every shard")
    parser.add_argument("--loss", choices=("mse", "cross_entropy"), default="mse")
    parser.add_argument("--lr", type=float, default=None, help="Adam's step; default fastadmm.sgd.DEFAULT_ADAM_LR")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--target", type=float, default=0.97, help="test accuracy of time_to_target")
    parser.add_argument("--train-accuracy", action="store_true", help="also the training accuracy each epoch")
    parser.add_argument("--out", type=Path, default=Path("ddp-adam.jsonl"))
    args = parser.parse_args(argv)
    if torch is None:
        print("ddp_adam: torch is not importable; benchmark skipped")
        return 0
    from ablation import load
    from fastadmm.sgd import DEFAULT_ADAM_LR
    from _data import require_mnist_dir

    require_mnist_dir()
    if args.lr is None:
        args.lr = DEFAULT_ADAM_LR["sgd"]
    hidden, X, y, Xt, yt = load(args.task, args.split)
    if args.epochs < 1 or min(args.ranks) < 1 or not max(args.ranks) <= args.global_batch <= len(y):
        parser.error(f"need epochs >= 1 and 1 <= ranks <= global batch <= training rows ({len(y)})")
    arrays = {"X": X.astype(args.dtype), "y": y, "X_test": Xt.astype(args.dtype), "y_test": yt}
    del X, Xt
    data = {name: torch.from_numpy(a).share_memory_() for name, a in arrays.items()}  # the ranks' shared copy
    del arrays
    rows = []
    for k in args.ranks:
        for seed in args.seeds:
            row = run(k, seed, args, data, hidden)
            rows.append(row)
            with args.out.open("a") as f:
                f.write(json.dumps(row) + "\n")
    print(f"DDP Adam, {args.task} ({rows[0]['n_train']:,} rows, {args.split}), global batch {args.global_batch}, "
          f"{args.loss}, lr {args.lr:g}, {args.dtype}, torch {torch.__version__}")
    print("| K | seed | s/epoch (median) | s/epoch (each) | test accuracy (last) | time to "
          f"{args.target:.0%} (epochs) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        reach = "-" if r["time_to_target"] is None else f"{r['time_to_target']:.2f} s ({r['epochs_to_target']})"
        each = " ".join(f"{s:.2f}" for s in r["epoch_seconds"])
        print(f"| {r['ranks']} | {r['seed']} | {r['epoch_seconds_median']:.3f} | {each} | "
              f"{r['final_test_accuracy']:.4f} | {reach} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
