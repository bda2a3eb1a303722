"""Data-parallel mini-batch ADMM against one process: seconds per epoch, time to a test accuracy, the
accuracy reached, and what the collectives cost per step.  Not a pytest file.

    FASTADMM_BENCH_MNIST=DIR python benchmarks/minibatch_mpi.py --ranks 1 2 --epochs 8 --rounds 2 \\
        --out docs/scaling-data/minibatch-mpi.jsonl

The task is ten digits with 784-300-10 and train_admm's defaults (its global batch of 128 rows):
``--batch-size`` sets another global batch (e.g. 256: 128 rows per rank on 2 ranks).  The task is
``ten300-shift`` (default; the MNIST training images of DIR and their one-pixel shifts up, down,
left and right, 113,495 rows, shuffled with a fixed seed) or ``ten300`` (the images alone), tested
on DIR's test images.  K = 1 is the plain one-process call (no communicator); K > 1 is one
``mpiexec -n K`` launch (the ``mpiexec`` beside ``sys.executable``) in which each rank holds a
contiguous shard of the rows and of the test images.  Every process runs one BLAS / Numba / OpenMP
thread.  Rounds go K = 1, 2, ..., 1, 2, ... so that each K sees the same background load.

Each run appends one JSON line: the test accuracy after every epoch, the training seconds after
every epoch (``Result.history["elapsed"]``: the fit's own clock, evaluations excluded), the wall
seconds of the whole call (setup and evaluations included), the first epoch at or above each
``--targets`` accuracy and its training seconds, and for K > 1 what rank 0 counted in its
collectives (``_comm.MPIComm``: seconds, bytes received, calls), per batch step.  The load average
and ``threadpoolctl.threadpool_info()`` are recorded beside.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _data import mnist_split, one_pixel_shifts  # noqa: E402

HERE = Path(__file__).resolve()
MPIEXEC = Path(sys.executable).parent / "mpiexec"


def task_data(task: str):
    X, y, Xt, yt = mnist_split(dtype="float32")
    if task == "ten300-shift":
        X, y = one_pixel_shifts(X, y)
    return np.ascontiguousarray(X, dtype=np.float32), y, Xt, yt


def shard(n: int, rank: int, size: int) -> slice:
    from fastadmm.distributed import shard_rows

    start, stop = shard_rows(n, rank, size)
    return slice(start, stop)


def world(worker: bool):
    """(comm, rank, size): the MPI world as fastadmm's communicator in a ``--worker`` rank, else
    (None, 0, 1), one process."""
    if not worker:
        return None, 0, 1
    from mpi4py import MPI

    from fastadmm import _comm

    comm = _comm.MPIComm(MPI.COMM_WORLD)
    return comm, comm.rank, comm.size


def fit(args) -> dict:
    """One fit on this process's rows (all of them without MPI); the record, on rank 0."""
    import threadpoolctl

    import fastadmm

    comm, rank, size = world(args.worker)
    X, y, Xt, yt = task_data(args.task)
    rows, test = shard(X.shape[0], rank, size), shard(Xt.shape[0], rank, size)
    X, y, Xt, yt = np.ascontiguousarray(X[rows]), y[rows], Xt[test], yt[test]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = {} if args.batch_size is None else dict(batch_size=args.batch_size)
        r = fastadmm.train_admm(X, y, X_test=Xt, y_test=yt, hidden=(300,), max_iter=args.epochs, tol=0,
                                random_state=args.seed, comm=comm, **batch)
    wall = time.perf_counter() - t0
    if rank != 0:
        return {}
    acc, elapsed = r.history["test_accuracy"], r.history["elapsed"]
    n_rows = r.settings["n_samples"]
    steps = r.n_iter * max(1, n_rows // r.settings["batch_size"])
    record = dict(
        task=args.task, ranks=size, seed=args.seed, epochs=r.n_iter, batch_size=r.settings["batch_size"],
        n_train=n_rows, test_accuracy=acc, train_seconds=elapsed, wall_seconds=round(wall, 2),
        seconds_per_epoch_median=float(np.median(np.diff([0.0, *elapsed]))),
        steps_per_epoch=steps // max(r.n_iter, 1),
        targets={f"{t:g}": next(({"epoch": i + 1, "train_seconds": elapsed[i]} for i, a in enumerate(acc) if a >= t),
                                None) for t in args.targets},
        load_average=os.getloadavg(), threadpools=[
            {k: p.get(k) for k in ("internal_api", "num_threads", "version")} for p in threadpoolctl.threadpool_info()],
    )
    if comm is not None:
        record.update(collective_seconds=comm.seconds, collective_bytes=comm.bytes, collective_calls=comm.calls,
                      collective_share=comm.seconds / max(elapsed[-1], 1e-12),
                      bytes_per_step=comm.bytes / steps, calls_per_step=comm.calls / steps,
                      collective_seconds_per_step=comm.seconds / steps)
    return record


def launch(args, K: int) -> dict:
    """One run with K processes; its record (rank 0's), read back from a temporary file."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "record.json"
        common = ["--task", args.task, "--epochs", str(args.epochs), "--seed", str(args.seed), "--result", str(out),
                  "--targets", *map(str, args.targets)]
        if args.batch_size is not None:
            common += ["--batch-size", str(args.batch_size)]
        run_script(HERE, K, common)
        return json.loads(out.read_text())


def run_script(script: Path, K: int, args: list) -> str:
    """`script` with `args` as one plain process (``--single``, K = 1) or under ``mpiexec -n K``
    (``--worker``); its standard output.  RuntimeError with both outputs if it fails."""
    if K == 1:
        cmd = [sys.executable, str(script), "--single", *args]
    else:
        cmd = [str(MPIEXEC), "-n", str(K), sys.executable, str(script), "--worker", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=HERE.parent).stdout.strip()
    except OSError:
        return "unknown"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=["ten300-shift", "ten300"], default="ten300-shift")
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="the global batch (default: train_admm's, 128 for ten digits)")
    parser.add_argument("--targets", nargs="+", type=float, default=[0.97])
    parser.add_argument("--out", type=Path, default=Path("minibatch-mpi.jsonl"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker or args.single:
        record = fit(args)
        if record:
            args.result.write_text(json.dumps(record))
        return 0
    stamp = dict(commit=commit(), date=time.strftime("%Y-%m-%d"), command=" ".join(sys.argv))
    print("| ranks | round | s / epoch (median) | test acc. (last) | epoch, train s to 97 % | wall s | "
          "collective share | bytes / step |")
    print("|---|---|---|---|---|---|---|---|")
    for rnd in range(args.rounds):
        for K in args.ranks:
            rec = dict(launch(args, K), round=rnd, **stamp)
            with args.out.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            hit = rec["targets"].get("0.97")
            reached = "-" if hit is None else "{}, {:.1f}".format(hit["epoch"], hit["train_seconds"])
            print(f"| {K} | {rnd} | {rec['seconds_per_epoch_median']:.2f} | {rec['test_accuracy'][-1]:.4f} | "
                  f"{reached} | {rec['wall_seconds']:.1f} | "
                  f"{rec.get('collective_share', 0.0):.1%} | {rec.get('bytes_per_step', 0.0):,.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
