"""Data-parallel ADMM over MPI: K ranks against one process, errors on one rank, and the shard helpers.

The MPI tests start ``mpiexec -n 2`` and ``-n 3`` (more ranks than this machine's 2 cores) with the
``mpiexec`` beside ``sys.executable`` and one BLAS/Numba thread per rank; each launch runs every
case of ``mpi_worker.CASES`` so that the tests pay for only a few process starts.
"""

from __future__ import annotations

import gzip
import importlib
import os
import re
import signal
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastadmm
import fastadmm.distributed as dist
from fastadmm import train_admm
from fastadmm.data import read_mnist_folder

import mpi_worker

WORKER = Path(__file__).with_name("mpi_worker.py")
MPIEXEC = Path(sys.executable).parent / "mpiexec"
LAUNCH_TIMEOUT = 60  # seconds; a hang (a rank left waiting in a collective) runs into it
RTOL = 1e-9


def _mpi_missing() -> str | None:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return f"mpi4py is not installed ({dist.MPI_INSTALL_HINT})"
    if not MPIEXEC.exists():
        return f"no mpiexec beside sys.executable ({MPIEXEC}); {dist.MPI_INSTALL_HINT} installs one"
    return None


needs_mpi = pytest.mark.skipif(_mpi_missing() is not None, reason=str(_mpi_missing()))


def _mpiexec(n: int, *args: str, script: Path = WORKER) -> subprocess.CompletedProcess:
    """Run `script` under mpiexec -n n; on a hang, kill the whole job (its own session) and fail."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1")
    cmd = [str(MPIEXEC), "-n", str(n), sys.executable, str(script), *args]
    with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=LAUNCH_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # mpiexec, its proxies and every rank
            out, err = proc.communicate()
            pytest.fail(f"{' '.join(cmd)} hung for {LAUNCH_TIMEOUT} s and was killed:\n{out}\n{err}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture(scope="module", params=[2, 3], ids=lambda n: f"{n}ranks")
def distributed_run(request, tmp_path_factory):
    n = request.param
    out = tmp_path_factory.mktemp(f"mpi{n}") / "result.npz"
    proc = _mpiexec(n, "train", str(out))
    assert proc.returncode == 0, f"mpiexec -n {n} failed:\n{proc.stdout}\n{proc.stderr}"
    with np.load(out) as f:
        return n, {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def single_runs():
    runs = {}
    for name, case in mpi_worker.CASES.items():
        X, y, X_test, y_test = mpi_worker.problem(case["k"])
        runs[name] = train_admm(X, y, X_test=X_test, y_test=y_test, **mpi_worker.fit_kwargs(case))
    return runs


def _rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


@needs_mpi
@pytest.mark.parametrize("name", list(mpi_worker.CASES))
def test_ranks_give_the_weights_of_one_process(distributed_run, single_runs, name):
    n, got = distributed_run
    ref = single_runs[name]
    assert int(got[f"{name}/ranks"]) == n
    assert int(got[f"{name}/n_samples"]) == mpi_worker.N_TRAIN
    sizes = got[f"{name}/shard_sizes"]
    assert sizes.sum() == mpi_worker.N_TRAIN and len(set(sizes.tolist())) > 1  # uneven shards
    assert int(got[f"{name}/n_iter"]) == ref.n_iter == mpi_worker.FIT["max_iter"]
    assert float(got[f"{name}/cross_rank"]) == 0.0  # every rank solved for the same W
    for l, W in enumerate(ref.weights):
        assert got[f"{name}/W{l}"].shape == W.shape
        assert _rel(got[f"{name}/W{l}"], W) <= RTOL, f"layer {l + 1}"


@needs_mpi
@pytest.mark.parametrize("name", list(mpi_worker.CASES))
def test_ranks_reduce_the_history_of_one_process(distributed_run, single_runs, name):
    _, got = distributed_run
    h = single_runs[name].history
    # Accuracies are counts summed over ranks: exactly those of one process.
    np.testing.assert_array_equal(got[f"{name}/train_accuracy"], h["train_accuracy"])
    np.testing.assert_array_equal(got[f"{name}/test_accuracy"], h["test_accuracy"])
    for key in ("objective", "train_loss", "residual_z", "residual_a"):
        np.testing.assert_allclose(got[f"{name}/{key}"], np.asarray(h[key], float), rtol=RTOL, atol=0, err_msg=key)
    assert float(got[f"{name}/allreduce_seconds"]) > 0.0


@pytest.fixture(scope="module", params=[2, 3], ids=lambda n: f"{n}ranks")
def minibatch_run(request, tmp_path_factory):
    n = request.param
    folder = tmp_path_factory.mktemp(f"mb{n}")
    (folder / "checkpoints").mkdir()
    proc = _mpiexec(n, "minibatch", str(folder / "result.npz"), str(folder / "checkpoints"))
    assert proc.returncode == 0, f"mpiexec -n {n} failed:\n{proc.stdout}\n{proc.stderr}"
    with np.load(folder / "result.npz") as f:
        return n, {k: f[k] for k in f.files}, folder / "checkpoints" / "fit.npz"


@pytest.fixture(scope="module")
def minibatch_single_runs():
    runs = {}
    for name, case in mpi_worker.MINI_CASES.items():
        X, y, X_test, y_test = mpi_worker.problem(case["k"])
        for epochs in (1, mpi_worker.MINI_EPOCHS):
            runs[name, epochs] = train_admm(X, y, X_test=X_test, y_test=y_test, **mpi_worker.mini_kwargs(case, epochs))
    return runs


@needs_mpi
@pytest.mark.parametrize("name", list(mpi_worker.MINI_CASES))
def test_minibatch_ranks_take_the_steps_of_one_process_with_the_global_batch(minibatch_run, minibatch_single_runs,
                                                                             name):
    n, got, _ = minibatch_run
    ref = minibatch_single_runs[name, 1]
    key = f"{name}/1"
    assert int(got[f"{key}/ranks"]) == n
    sizes = got[f"{key}/shard_sizes"]
    assert sizes.sum() == mpi_worker.N_TRAIN and (name == "gram-layerwise" or len(set(sizes.tolist())) > 1)
    assert float(got[f"{key}/cross_rank"]) == 0.0  # every rank holds the same W
    for l, W in enumerate(ref.weights):
        assert got[f"{key}/W{l}"].shape == W.shape
        assert _rel(got[f"{key}/W{l}"], W) <= RTOL, f"layer {l + 1}"
    # the running metrics of the epoch are counts over every rank's rows
    np.testing.assert_allclose(got[f"{key}/train_loss"], ref.history["train_loss"], rtol=RTOL)


@needs_mpi
@pytest.mark.parametrize("name", list(mpi_worker.MINI_CASES))
def test_minibatch_ranks_reach_the_accuracy_of_one_process(minibatch_run, minibatch_single_runs, name):
    _, got, _ = minibatch_run
    ref = minibatch_single_runs[name, mpi_worker.MINI_EPOCHS]
    key = f"{name}/{mpi_worker.MINI_EPOCHS}"
    assert float(got[f"{key}/cross_rank"]) == 0.0
    np.testing.assert_allclose(got[f"{key}/test_accuracy"], ref.history["test_accuracy"], atol=5e-4, rtol=0)
    np.testing.assert_allclose(got[f"{key}/train_accuracy"], ref.history["train_accuracy"], atol=5e-4, rtol=0)


@needs_mpi
def test_minibatch_checkpoint_is_one_file_that_resumes_on_as_many_ranks(minibatch_run):
    n, got, path = minibatch_run
    assert got["checkpoint/files"].tolist() == ["fit.npz"]  # rank 0's, no per-rank files
    assert int(got["checkpoint/n_iter"]) == 3
    assert float(got["checkpoint/rel"]) <= RTOL  # 2 epochs + 1 resumed = 3 uninterrupted
    case = mpi_worker.MINI_CASES["several-defaults"]
    X, y, _, _ = mpi_worker.problem(case["k"])
    with pytest.raises(ValueError, match=f"init was trained on {n} rank\\(s\\), this call runs on 1; resume it on {n}"):
        train_admm(X, y, init=fastadmm.load(path), **mpi_worker.mini_kwargs(case, 1))


@needs_mpi
def test_the_estimator_with_comm_trains_one_model_over_the_ranks(minibatch_run):
    _, got, _ = minibatch_run
    X, y, _, _ = mpi_worker.problem(mpi_worker.MINI_CASES["several-defaults"]["k"])
    ref = fastadmm.ADMMClassifier(**mpi_worker.ESTIMATOR_PARAMS).fit(X, y)
    assert float(got["estimator/cross_rank"]) == 0.0
    for l, W in enumerate(ref.coefs_):
        np.testing.assert_allclose(got[f"estimator/W{l}"], W, rtol=RTOL, atol=RTOL * np.abs(W).max())


@needs_mpi
def test_without_a_seed_every_rank_starts_from_rank_0s(distributed_run):
    _, got = distributed_run
    assert int(got["seedless/n_seeds"]) == 1 and bool(got["seedless/seed_is_int"])
    assert float(got["seedless/cross_rank"]) == 0.0


@needs_mpi
@pytest.mark.parametrize(
    "n, mode, pattern",
    [
        # Only rank 1's callback raises: the other ranks would wait in the next all-reduce.
        (3, "fail-callback", r"fastadmm: rank 1 of 3 failed: RuntimeError: injected failure on rank 1 at iteration 2"),
        # Only rank 1's X_test holds a NaN. The driver checks X_test after the ranks agree on X and y,
        # so rank 1 alone raises (or, if that check becomes collective, every rank raises naming rank 1).
        (2, "fail-test-data", r"fastadmm: rank (1 of 2 failed: ValueError: |\d of 2 failed: ValueError: rank 1: )"
                              r"X_test contains NaN or infinity"),
        # Ranks that would start from different initial weights: every rank refuses.
        (2, "fail-seed", r"fastadmm: rank \d of 2 failed: ValueError: random_state differs between ranks"),
    ],
)
def test_an_error_on_one_rank_stops_every_rank(n, mode, pattern):
    proc = _mpiexec(n, mode)
    assert proc.returncode != 0
    assert re.search(pattern, proc.stderr), proc.stderr
    assert "aborting all ranks (MPI_Abort)" in proc.stderr


@needs_mpi
@pytest.mark.parametrize(
    "mode, pattern",
    [
        ("differ-max-iter", r"every rank must pass the same max_iter"),
        ("differ-time-limit", r"every rank must pass the same settings"),
        ("differ-loss", r"every rank must pass the same loss"),
        ("differ-hidden", r"every rank must pass the same hidden"),
        ("differ-generator", r"random_state differs between ranks"),
    ],
)
def test_plain_train_admm_refuses_arguments_that_differ_between_ranks(mode, pattern):
    """Before the fix, the rank with the smaller max_iter left and the other waited forever;
    a different loss trained silently; a different net ended in MPICH's "Message truncated"."""
    proc = _mpiexec(2, mode)
    assert proc.returncode != 0
    assert len(re.findall(pattern, proc.stderr)) == 2, proc.stderr  # raised on both ranks


@needs_mpi
def test_plain_train_admm_ranks_agree_on_the_callbacks_stop():
    proc = _mpiexec(2, "differ-callback")
    assert proc.returncode == 0, proc.stderr
    # the ranks' lines may interleave on the shared stdout: match them, not whole lines
    found = sorted(re.findall(r"rank (\d): (\w+) (\d+)", proc.stdout))
    assert found == [("0", "interrupted", "2"), ("1", "interrupted", "2")], proc.stdout


@needs_mpi
def test_plain_train_admm_error_on_one_rank_aborts_all():
    proc = _mpiexec(2, "raise-in-sweep")
    assert proc.returncode != 0
    assert "fastadmm: rank 1 of 2 failed: RuntimeError: injected failure inside the sweep" in proc.stderr, proc.stderr
    assert "aborting all ranks (MPI_Abort)" in proc.stderr


# -- without MPI ------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, size", [(1, 1), (7, 1), (7, 3), (10, 3), (11, 4), (5, 5), (1000, 7)])
def test_shard_rows_cover_every_row_once_in_order(n, size):
    shards = [dist.shard_rows(n, r, size) for r in range(size)]
    assert shards[0][0] == 0 and shards[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(shards, shards[1:]))
    lengths = [stop - start for start, stop in shards]
    assert min(lengths) >= 1 and max(lengths) - min(lengths) <= 1
    assert lengths == sorted(lengths, reverse=True)


def test_shard_rows_rejects_bad_arguments():
    with pytest.raises(ValueError, match="cannot split 2 rows over 3 ranks.*at most 2 ranks"):
        dist.shard_rows(2, 0, 3)
    with pytest.raises(ValueError, match="rank must be in 0 .. size-1 = 2"):
        dist.shard_rows(10, 3, 3)
    with pytest.raises(ValueError, match="size must be an integer >= 1, got 0"):
        dist.shard_rows(10, 0, 0)
    with pytest.raises(TypeError, match="rank must be an integer"):
        dist.shard_rows(10, 1.0, 3)


def test_shard_splits_arrays_alike():
    X, y = np.arange(20).reshape(10, 2), np.arange(10)
    parts = [dist.shard(r, 3, X, y) for r in range(3)]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), X)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), y)
    np.testing.assert_array_equal(dist.shard(2, 3, y), [7, 8, 9])
    with pytest.raises(ValueError, match="array 1 has 9 rows but array 0 has 10"):
        dist.shard(0, 2, X, y[:9])


def _write_idx(path: Path, array: np.ndarray) -> None:
    body = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    body += np.ascontiguousarray(array, np.uint8).tobytes()
    path.write_bytes(gzip.compress(body) if path.suffix == ".gz" else body)


@pytest.fixture
def idx_folder(tmp_path):
    """A tiny MNIST-layout folder: raw training files (read by seeking), gzipped test files."""
    rng = np.random.default_rng(0)
    names = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 23),
             "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 13)}
    for images, labels, n in names.values():
        _write_idx(tmp_path / images, rng.integers(0, 256, (n, 4, 3)))
        _write_idx(tmp_path / labels, rng.permutation(np.arange(n) % 4))
    return tmp_path


@pytest.mark.parametrize("classes", [None, (1, 3)])
@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_mnist_shards_concatenate_to_the_whole(idx_folder, size, classes):
    whole = read_mnist_folder(idx_folder)
    if classes is not None:
        whole = whole.select(classes)
    shards = [dist.load_mnist_shard(idx_folder, r, size, classes=classes) for r in range(size)]
    for split in ("train", "test"):
        X = np.concatenate([getattr(s.data, f"X_{split}") for s in shards])
        y = np.concatenate([getattr(s.data, f"y_{split}") for s in shards])
        np.testing.assert_array_equal(X, getattr(whole, f"X_{split}"))
        np.testing.assert_array_equal(y, getattr(whole, f"y_{split}"))
        assert all(getattr(s, f"n_{split}") == len(y) for s in shards)
    assert [s.train_rows for s in shards] == [dist.shard_rows(len(whole.y_train), r, size) for r in range(size)]
    assert f"{size} ranks of" in shards[0].describe()


def test_read_idx_shard_and_length(idx_folder):
    path = idx_folder / "t10k-images-idx3-ubyte.gz"
    assert dist.idx_length(path) == 13
    parts = [dist.read_idx_shard(path, r, 4) for r in range(4)]
    assert [p.shape[0] for p in parts] == [4, 3, 3, 3]
    np.testing.assert_array_equal(np.concatenate(parts), read_mnist_folder(idx_folder).X_test.reshape(13, 4, 3))


def test_mnist_shard_errors_name_the_problem(idx_folder):
    with pytest.raises(ValueError, match=r"cannot split 13 samples of t10k-labels-idx1-ubyte.gz over 14 ranks"):
        dist.load_mnist_shard(idx_folder, 0, 14)
    with pytest.raises(ValueError, match=r"holds no example of label\(s\) \[7\]"):
        dist.load_mnist_shard(idx_folder, 0, 2, classes=(1, 7))
    (idx_folder / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match="lacks train-labels-idx1-ubyte"):
        dist.load_mnist_shard(idx_folder, 0, 2)


def test_without_mpi4py_the_module_imports_and_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # makes `import mpi4py` raise ImportError
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)
    module = importlib.reload(dist)
    try:
        assert module.shard_rows(5, 1, 2) == (3, 5)
        for call in (module.world, lambda: module.run_or_abort(len, [1]),
                     lambda: module.train_admm_distributed(np.eye(2), [0, 1])):
            with pytest.raises(ImportError, match=r"pip install 'fastadmm\[mpi\]'"):
                call()
    finally:
        monkeypatch.undo()
        importlib.reload(dist)


@needs_mpi
def test_with_one_rank_errors_propagate_and_comm_is_passed_on():
    from mpi4py import MPI

    comm = MPI.COMM_SELF
    with pytest.raises(ZeroDivisionError):
        dist.run_or_abort(lambda: 1 / 0, comm=comm)
    assert dist.run_or_abort(lambda x, comm=None: (x, comm), 3, comm=comm) == (3, comm)
    assert dist.run_or_abort(len, [1, 2], comm=comm) == 2
    with pytest.raises(TypeError, match="comm must be an mpi4py communicator"):
        dist.run_or_abort(len, [1], comm="world")
    X, y, _, _ = mpi_worker.problem(2)
    res = dist.train_admm_distributed(X, y, comm=comm, max_iter=2, tol=0, random_state=1)
    ref = train_admm(X, y, max_iter=2, tol=0, random_state=1)  # one rank: one process's mini-batch fit
    for W, W_ref in zip(res.weights, ref.weights):
        np.testing.assert_array_equal(W, W_ref)
    seeded = dist.train_admm_distributed(X, y, comm=comm, max_iter=1, tol=0)
    assert isinstance(seeded.settings["random_state"], int)  # the seed rank 0 drew, recorded
