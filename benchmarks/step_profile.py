"""Where the seconds of a mini-batch ADMM epoch go, in one process or on each of K MPI ranks: a
cProfile of ``train_admm`` on ten digits (784-300-10, the defaults).  Not a pytest file.

    FASTADMM_BENCH_MNIST=DIR python benchmarks/step_profile.py --ranks 1 2 --epochs 3

The rows are DIR's training images (``--task ten300``) or those and their one-pixel shifts
(``ten300-shift``); K = 1 is a plain process, K > 1 one ``mpiexec -n K`` launch in which each rank
holds a contiguous shard.  One warm-up epoch runs first (compilation, first touches), then the
profiled fit of ``--epochs`` epochs.  Rank 0 prints the epoch seconds (the fit's own clock) and the
functions with the most time of their own, in seconds per epoch: what every rank repeats whole
(the B x B factors and solves, the small layers' whole updates, the collectives) against what
splits over the ranks (the forward pass, the products of W's rows, the output refit).  cProfile
adds its own cost per Python call, so the epoch seconds here are a few percent above an
unprofiled fit's.  One BLAS / Numba / OpenMP thread per process.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import pstats  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from minibatch_mpi import commit, run_script, shard, task_data, world  # noqa: E402

HERE = Path(__file__).resolve()


def profile(args) -> None:
    import fastadmm

    comm, rank, size = world(args.worker)
    X, y, _, _ = task_data(args.task)
    rows = shard(X.shape[0], rank, size)
    X, y = np.ascontiguousarray(X[rows]), y[rows]
    kw = dict(hidden=(300,), tol=0, random_state=0, comm=comm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fastadmm.train_admm(X, y, max_iter=1, **kw)  # warm-up
        prof = cProfile.Profile()
        prof.enable()
        r = fastadmm.train_admm(X, y, max_iter=args.epochs, **kw)
        prof.disable()
    if rank:
        return
    epochs = r.n_iter
    print(f"{size} process(es), {args.task}, {r.settings['n_samples']} rows, global batch {r.settings['batch_size']}: "
          f"{r.history['elapsed'][-1] / epochs:.3f} s per epoch (median of the epochs "
          f"{float(np.median(np.diff([0.0, *r.history['elapsed']]))):.3f}), commit {commit()}")
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    print(f"{'s / epoch':>10} {'calls / epoch':>14}  function (own time)")
    entries = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[: args.top]
    for (path, line, name), (_, calls, own, _, _) in entries:
        where = f"{Path(path).parent.name}/{Path(path).name}:{line}" if path != "~" else ""
        print(f"{own / epochs:10.4f} {calls / epochs:14.0f}  {where}({name})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=["ten300", "ten300-shift"], default="ten300")
    parser.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--single", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker or args.single:
        profile(args)
        return 0
    common = ["--task", args.task, "--epochs", str(args.epochs), "--top", str(args.top)]
    for K in args.ranks:
        print(run_script(HERE, K, common), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
