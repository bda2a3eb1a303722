"""Run under ``mpiexec -n K`` by test_mpi.py: distributed fits whose results rank 0 writes to a file.

    mpiexec -n 3 python tests/mpi_worker.py train OUT.npz   # every case of CASES, weights + history
    mpiexec -n 3 python tests/mpi_worker.py fail-callback    # rank 1 raises inside the fit
    mpiexec -n 2 python tests/mpi_worker.py fail-test-data   # rank 1 passes a NaN in X_test
    mpiexec -n 2 python tests/mpi_worker.py fail-seed        # each rank passes its own random_state
    mpiexec -n 3 python tests/mpi_worker.py minibatch OUT.npz DIR   # every case of MINI_CASES; a checkpoint in DIR

The data and the cases live here so that the test process builds the very same problem for its
one-process fit. mpi4py is imported only in main(), so test_mpi.py can import this module without it.
"""

from __future__ import annotations

import os
import sys

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

# Each case: loss, classes, initialization, how the rows are split. n is odd and prime so that no
# split is even; "skewed" gives rank r a share proportional to r + 1.
# The forward cases use init_scale=0.1: with the default 1e-3 this toy problem's last W grows to
# |W_3| ~ 2e4 and its iterates amplify rounding so much that one process alone moves by 0.7-2e-9
# (relative) when X is perturbed by one ulp or its rows are reversed; K ranks differ from one
# process by as much (up to 1.2e-9), which says nothing about the distribution.  At 0.1 the same
# controls move the weights by < 1e-13, so the 1e-9 test below has a wide margin.
CASES = {
    "mse-2-forward-even": dict(loss="mse", k=2, initialization="forward", init_scale=0.1, split="even"),
    "hinge-3-forward-skewed": dict(loss="hinge", k=3, initialization="forward", init_scale=0.1, split="skewed"),
    "mse-3-gaussian-skewed": dict(loss="mse", k=3, initialization="gaussian", split="skewed"),
    "hinge-2-gaussian-even": dict(loss="hinge", k=2, initialization="gaussian", split="even"),
}
N_TRAIN, N_TEST, N_FEATURES = 211, 67, 10
FIT = dict(hidden=(7, 5), max_iter=8, tol=0.0, warm_start_iter=3, random_state=5)

# Mini-batch ADMM (the default method): global batches of 21 rows, 10 per epoch.  The 30-unit layer
# takes the push-through W-update (21 rows < 31 inputs with the bias), the others the normal
# equations; k=2 classes with mse give one output unit (its defaults: no centring, no refit), k=3
# several (centring and the output refit on).  Batches of 4 over skewed shards leave rank 0 without
# rows in about half of them.
MINI_FIT = dict(hidden=(30, 8), dtype="float64", batch_size=21, random_state=5, tol=0.0)
MINI_CASES = {
    "several-defaults": dict(k=3, split="skewed"),
    "several-plain": dict(k=3, split="skewed", center_inputs=False, output_refit=0.0),
    "one-defaults": dict(k=2, split="skewed"),
    "one-centred-refit": dict(k=2, split="skewed", center_inputs=True, output_refit=1e-3),
    "gram-layerwise": dict(k=3, split="even", prox_metric="gram", sweep_order="layerwise"),
    "tiny-batches": dict(k=3, split="skewed", batch_size=4, sweep_order="targets_first", batch_sweeps=2),
    # no layer taken whole (shared.WHOLE_MACS = 0 on the ranks): W's rows split over the ranks in the
    # push-through form, the all-reduce of the normal equations
    "split-updates": dict(k=3, split="skewed", whole_macs=0),
}
MINI_EPOCHS = 3  # the accuracy comparison; the weights are compared after one epoch (10 batches)
# ADMMClassifier(comm=...) on the "several-defaults" case's shards
ESTIMATOR_PARAMS = dict(hidden_layer_sizes=(9,), max_iter=2, batch_size=21, dtype="float64", random_state=3)


def mini_kwargs(case: dict, epochs: int) -> dict:
    return dict(MINI_FIT, max_iter=epochs, **{k: v for k, v in case.items() if k not in ("k", "split", "whole_macs")})


def problem(k: int, seed: int = 11):
    """(X, y, X_test, y_test): k Gaussian blobs in float64, with input columns that are zero in every
    sample (2 of 10) and one that is non-zero only in the last 3 training rows, so that only the
    last rank sees it: the features left out must be agreed over all ranks."""
    rng = np.random.default_rng(seed + k)
    centers = rng.normal(0.0, 2.0, (k, N_FEATURES))

    def draw(n):
        y = rng.integers(0, k, n)
        X = centers[y] + rng.normal(size=(n, N_FEATURES))
        X[:, -3:] = 0.0
        return X, y

    X, y = draw(N_TRAIN)
    X[-3:, -1] = rng.normal(size=3)
    X_test, y_test = draw(N_TEST)
    return X, y, X_test, y_test


def bounds(n: int, size: int, split: str) -> list[int]:
    """Row boundaries of the `size` shards: [0, b_1, ..., n]."""
    if split == "even":
        from fastadmm.distributed import shard_rows

        return [0] + [shard_rows(n, r, size)[1] for r in range(size)]
    weights = np.arange(1, size + 1, dtype=float)
    cuts = np.floor(np.cumsum(weights) / weights.sum() * n).astype(int)
    return [0, *cuts.tolist()]


def fit_kwargs(case: dict) -> dict:
    # The full-batch method (the one that runs over MPI): the same in one process.
    kw = dict(FIT, loss=case["loss"], initialization=case["initialization"], batch_size=None)
    if "init_scale" in case:
        kw["init_scale"] = case["init_scale"]
    return kw


def _save(path: str, arrays: dict) -> None:
    tmp = f"{path}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _train(comm, out_path: str) -> None:
    from fastadmm.distributed import train_admm_distributed

    rank, size = comm.Get_rank(), comm.Get_size()
    arrays = {}
    for name, case in CASES.items():
        X, y, X_test, y_test = problem(case["k"])
        b = bounds(X.shape[0], size, case["split"])
        t = bounds(X_test.shape[0], size, "even")
        res = train_admm_distributed(
            X[b[rank] : b[rank + 1]], y[b[rank] : b[rank + 1]],
            X_test=X_test[t[rank] : t[rank + 1]], y_test=y_test[t[rank] : t[rank + 1]],
            comm=comm, **fit_kwargs(case),
        )
        # Every rank must hold the same weights: compare them on rank 0.
        gathered = comm.gather([np.asarray(W) for W in res.weights], root=0)
        if rank == 0:
            spread = max(
                float(np.max(np.abs(Wr - W0)) / max(np.max(np.abs(W0)), 1e-300))
                for other in gathered[1:] for Wr, W0 in zip(other, gathered[0])
            )
            arrays[f"{name}/cross_rank"] = np.array(spread)
            arrays[f"{name}/n_iter"] = np.array(res.n_iter)
            arrays[f"{name}/ranks"] = np.array(res.settings["ranks"])
            arrays[f"{name}/n_samples"] = np.array(res.settings["n_samples"])
            arrays[f"{name}/allreduce_seconds"] = np.array(res.timings["allreduce"])
            arrays[f"{name}/shard_sizes"] = np.diff(b)
            for l, W in enumerate(res.weights):
                arrays[f"{name}/W{l}"] = W
            for key in ("objective", "train_accuracy", "test_accuracy", "train_loss", "residual_z", "residual_a"):
                arrays[f"{name}/{key}"] = np.asarray(res.history[key], dtype=float)
    # random_state=None: rank 0 draws the seed and every rank starts from it.
    case = CASES["mse-2-forward-even"]
    X, y, _, _ = problem(case["k"])
    b = bounds(X.shape[0], size, "even")
    res = train_admm_distributed(X[b[rank] : b[rank + 1]], y[b[rank] : b[rank + 1]], comm=comm,
                                 **dict(fit_kwargs(case), random_state=None, max_iter=2))
    gathered = comm.gather((res.settings["random_state"], [np.asarray(W) for W in res.weights]), root=0)
    if rank == 0:
        seeds = {seed for seed, _ in gathered}
        arrays["seedless/n_seeds"] = np.array(len(seeds))
        arrays["seedless/seed_is_int"] = np.array(all(isinstance(seed, int) for seed in seeds))
        arrays["seedless/cross_rank"] = np.array(max(
            float(np.max(np.abs(Wr - W0))) for _, Ws in gathered[1:] for Wr, W0 in zip(Ws, gathered[0][1])))
        _save(out_path, arrays)


def _minibatch(comm, out_path: str, folder: str) -> None:
    """Each MINI_CASES fit for one epoch (weights) and MINI_EPOCHS epochs (accuracies); then a fit
    checkpointed after every epoch, resumed from rank 0's file for one epoch more."""
    from fastadmm import train_admm

    rank, size = comm.Get_rank(), comm.Get_size()
    arrays = {}
    from fastadmm.minibatch import shared

    default_whole = shared.WHOLE_MACS
    for name, case in MINI_CASES.items():
        shared.WHOLE_MACS = case.get("whole_macs", default_whole)
        X, y, X_test, y_test = problem(case["k"])
        b, t = bounds(X.shape[0], size, case["split"]), bounds(X_test.shape[0], size, "even")
        mine = dict(X=X[b[rank] : b[rank + 1]], y=y[b[rank] : b[rank + 1]], X_test=X_test[t[rank] : t[rank + 1]],
                    y_test=y_test[t[rank] : t[rank + 1]])
        for epochs in (1, MINI_EPOCHS):
            res = train_admm(mine["X"], mine["y"], X_test=mine["X_test"], y_test=mine["y_test"], comm=comm,
                             **mini_kwargs(case, epochs))
            gathered = comm.gather([np.asarray(W) for W in res.weights], root=0)
            if rank == 0:
                key = f"{name}/{epochs}"
                arrays[f"{key}/cross_rank"] = np.array(max(
                    float(np.max(np.abs(Wr - W0))) for other in gathered[1:] for Wr, W0 in zip(other, gathered[0])))
                arrays[f"{key}/shard_sizes"] = np.diff(b)
                arrays[f"{key}/ranks"] = np.array(res.settings["ranks"])
                for l, W in enumerate(res.weights):
                    arrays[f"{key}/W{l}"] = W
                for k in ("train_accuracy", "test_accuracy", "train_loss"):
                    arrays[f"{key}/{k}"] = np.asarray(res.history[k], dtype=float)
    shared.WHOLE_MACS = default_whole
    # Checkpoints: rank 0 writes the one file; every rank resumes from it.
    case = MINI_CASES["several-defaults"]
    X, y, _, _ = problem(case["k"])
    b = bounds(X.shape[0], size, case["split"])
    Xr, yr = X[b[rank] : b[rank + 1]], y[b[rank] : b[rank + 1]]
    path = os.path.join(folder, "fit.npz")
    train_admm(Xr, yr, comm=comm, checkpoint=path, checkpoint_every=1, **mini_kwargs(case, 2))
    comm.Barrier()
    import fastadmm

    resumed = train_admm(Xr, yr, comm=comm, init=fastadmm.load(path), **mini_kwargs(case, 1))
    whole = train_admm(Xr, yr, comm=comm, **mini_kwargs(case, 3))
    # The estimator with comm: one model over every rank's rows; clone keeps comm, pickle leaves it out
    import pickle

    from sklearn.base import clone

    est = fastadmm.ADMMClassifier(comm=comm, **ESTIMATOR_PARAMS).fit(Xr, yr)
    assert clone(est).get_params()["comm"] is comm
    saved = pickle.loads(pickle.dumps(est))
    assert saved.comm is None and np.array_equal(saved.predict(X), est.predict(X))
    coefs = comm.gather(est.coefs_, root=0)
    if rank == 0:
        for l, W in enumerate(est.coefs_):
            arrays[f"estimator/W{l}"] = W
        arrays["estimator/cross_rank"] = np.array(max(
            float(np.max(np.abs(Wr - W0))) for other in coefs[1:] for Wr, W0 in zip(other, coefs[0])))
    if rank == 0:
        arrays["checkpoint/files"] = np.array(sorted(os.listdir(folder)))
        arrays["checkpoint/n_iter"] = np.array(resumed.n_iter)
        arrays["checkpoint/rel"] = np.array(max(
            float(np.max(np.abs(a - w)) / np.max(np.abs(w))) for a, w in zip(resumed.weights, whole.weights)))
        _save(out_path, arrays)


def _fail_callback(comm) -> None:
    from fastadmm.distributed import train_admm_distributed

    case = CASES["mse-2-forward-even"]
    X, y, _, _ = problem(case["k"])
    b = bounds(X.shape[0], comm.Get_size(), "even")
    rank = comm.Get_rank()

    def callback(info):
        if rank == 1 and info["iteration"] == 2:
            raise RuntimeError("injected failure on rank 1 at iteration 2")

    train_admm_distributed(X[b[rank] : b[rank + 1]], y[b[rank] : b[rank + 1]], comm=comm, callback=callback,
                           **dict(fit_kwargs(case), max_iter=10_000))


def _fail_test_data(comm) -> None:
    from fastadmm.distributed import train_admm_distributed

    case = CASES["mse-2-forward-even"]
    X, y, X_test, y_test = problem(case["k"])
    rank, size = comm.Get_rank(), comm.Get_size()
    b, t = bounds(X.shape[0], size, "even"), bounds(X_test.shape[0], size, "even")
    X_test = X_test[t[rank] : t[rank + 1]].copy()
    if rank == 1:
        X_test[0, 0] = np.nan
    train_admm_distributed(X[b[rank] : b[rank + 1]], y[b[rank] : b[rank + 1]], X_test=X_test,
                           y_test=y_test[t[rank] : t[rank + 1]], comm=comm, **dict(fit_kwargs(case), max_iter=10_000))


def _fail_seed(comm) -> None:
    from fastadmm.distributed import train_admm_distributed

    X, y, _, _ = problem(2)
    rank, size = comm.Get_rank(), comm.Get_size()
    b = bounds(X.shape[0], size, "even")
    train_admm_distributed(X[b[rank] : b[rank + 1]], y[b[rank] : b[rank + 1]], comm=comm,
                           **dict(fit_kwargs(CASES["mse-2-forward-even"]), random_state=rank))


def _plain(comm, mode: str) -> None:
    """Plain ``train_admm(comm=...)`` (no abort guard) with one per-rank difference: every rank must
    end together, by the same error or the same stop, never by a hang."""
    from fastadmm import train_admm
    from fastadmm import admm as admm_module

    case = CASES["mse-2-forward-even"]
    X, y, _, _ = problem(case["k"])
    rank, size = comm.Get_rank(), comm.Get_size()
    b = bounds(X.shape[0], size, "even")
    kwargs = dict(fit_kwargs(case), max_iter=6)
    if mode == "differ-max-iter":
        kwargs["max_iter"] = 3 + rank
    elif mode == "differ-time-limit":
        kwargs["time_limit"] = 10.0 + rank
    elif mode == "differ-loss":
        kwargs["loss"] = "hinge" if rank == 1 else "mse"
    elif mode == "differ-hidden":
        kwargs["hidden"] = (6, 3) if rank == 1 else (6, 4)
    elif mode == "differ-generator":
        kwargs["random_state"] = np.random.default_rng(rank)
    elif mode == "differ-callback":
        kwargs["callback"] = lambda info: rank == 0 and info["iteration"] == 2
    elif mode == "raise-in-sweep":
        a_update = admm_module._Problem._a_update

        def failing(self, l):
            if rank == 1 and self.iteration == 2:
                raise RuntimeError("injected failure inside the sweep on rank 1")
            return a_update(self, l)

        admm_module._Problem._a_update = failing
    result = train_admm(X[b[rank] : b[rank + 1]], y[b[rank] : b[rank + 1]], comm=comm, **kwargs)
    print(f"rank {rank}: {result.status} {result.n_iter}", flush=True)


PLAIN_MODES = ("differ-max-iter", "differ-time-limit", "differ-loss", "differ-hidden", "differ-generator",
               "differ-callback", "raise-in-sweep")


def main(argv: list[str]) -> int:
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    mode = argv[0] if argv else ""
    if mode == "train" and len(argv) == 2:
        _train(comm, argv[1])
    elif mode == "minibatch" and len(argv) == 3:
        _minibatch(comm, argv[1], argv[2])
    elif mode == "fail-callback":
        _fail_callback(comm)
    elif mode == "fail-test-data":
        _fail_test_data(comm)
    elif mode == "fail-seed":
        _fail_seed(comm)
    elif mode in PLAIN_MODES:
        _plain(comm, mode)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
