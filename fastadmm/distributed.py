"""Data-parallel ADMM over MPI (mpi4py): shard the samples, train, stop every rank on any error.

The driver itself is :func:`fastadmm.train_admm` with ``comm=`` an mpi4py communicator: each rank
passes only its own rows of ``X, y`` (and of ``X_test, y_test``); per layer and iteration the ranks
all-reduce the Gram ``a a^T`` and the cross product ``z a^T`` in one packed buffer, every rank solves
for the same ``W``, and the a-, z- and lam-updates stay local (docs/ALGORITHM.md, section 5).
Every rank gets back the same Result (weights, history, reduced accuracies).

This module adds what a script around that call needs::

    # mpiexec -n 4 python train.py
    from fastadmm.distributed import load_mnist_shard, train_admm_distributed, world

    comm = world()
    shard = load_mnist_shard("/data/mnist", comm.rank, comm.size, classes=(0, 1))
    d = shard.data
    result = train_admm_distributed(d.X_train / 255.0, d.y_train, X_test=d.X_test / 255.0,
                                    y_test=d.y_test, random_state=0, comm=comm)
    if comm.rank == 0:
        print(result.message)

* :func:`shard_rows` splits ``n`` rows into contiguous shards, one per rank (sizes differ by at
  most one); :func:`shard` applies it to in-memory arrays;
* :func:`read_idx_shard` / :func:`load_mnist_shard` read only a rank's rows of IDX files;
* :func:`abort_on_error` / :func:`run_or_abort` / :func:`train_admm_distributed` turn an
  exception on any one rank into a one-line message naming the rank and ``MPI_Abort``, so that
  the other ranks never wait forever in a collective call (the rule itself, and the other rules
  that keep ranks in step, are :class:`fastadmm._comm.Communicator`'s).

mpi4py is imported only when a function needs it: without it this module imports, the shard
helpers work, and the functions that need MPI raise ImportError saying how to install it.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
import numpy as np

from . import _comm, _dataset, _idx, _mnist_sources
from ._validation import as_int

__all__ = [
    "MPI_INSTALL_HINT",
    "MNISTShard",
    "abort_on_error",
    "idx_length",
    "load_mnist_shard",
    "read_idx_shard",
    "run_or_abort",
    "shard",
    "shard_rows",
    "train_admm_distributed",
    "world",
]

MPI_INSTALL_HINT = "pip install 'fastadmm[mpi]'"


# --------------------------------------------------------------------------------------------------
# MPI, imported lazily


def _mpi():
    """mpi4py's MPI module, or ImportError naming the extra that installs it."""
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(
            f"fastadmm.distributed needs mpi4py and an MPI library ({exc}); install them with "
            f"`{MPI_INSTALL_HINT}` (mpi4py + the MPICH wheel) and start the script with `mpiexec -n K python ...`"
        ) from exc
    return MPI


def world():
    """``MPI.COMM_WORLD`` (ImportError with the install command if mpi4py is missing)."""
    return _mpi().COMM_WORLD


def _comm_or_world(comm):
    if comm is None:
        return world()
    MPI = _mpi()
    if not isinstance(comm, MPI.Comm):
        raise TypeError(f"comm must be an mpi4py communicator such as MPI.COMM_WORLD, got {type(comm).__name__}")
    return comm


# --------------------------------------------------------------------------------------------------
# Shards


def shard_rows(n: int, rank: int, size: int, *, what: str = "rows") -> tuple[int, int]:
    """The contiguous rows ``[start, stop)`` of ``n`` that rank ``rank`` of ``size`` holds.

    The first ``n % size`` ranks hold one row more than the others, so shards differ by at most one
    row and, concatenated in rank order, give the rows ``0 .. n-1`` in order (a distributed fit then
    sees the samples in the order a one-process fit does). Every rank gets at least one row:
    ``n < size`` raises ValueError (run fewer ranks, or use more data).
    """
    n = as_int("n", n, 0)
    size = as_int("size", size, 1)
    rank = as_int("rank", rank, 0)
    if rank >= size:
        raise ValueError(f"rank must be in 0 .. size-1 = {size - 1}, got {rank}")
    if n < size:
        raise ValueError(
            f"cannot split {n} {what} over {size} ranks with at least one each; run at most {n} ranks "
            "(mpiexec -n) or use more samples"
        )
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def shard(rank: int, size: int, *arrays):
    """This rank's rows of each array (all of the same length), as views; one array gives one view."""
    if not arrays:
        raise TypeError("shard needs at least one array, e.g. shard(rank, size, X, y)")
    n = len(arrays[0])
    for i, a in enumerate(arrays[1:], 1):
        if len(a) != n:
            raise ValueError(f"shard: array {i} has {len(a)} rows but array 0 has {n}; pass arrays of equal length")
    start, stop = shard_rows(n, rank, size)
    views = tuple(a[start:stop] for a in arrays)
    return views[0] if len(views) == 1 else views


def idx_length(path: str | os.PathLike) -> int:
    """The number of rows (first dimension) of an IDX file, read from its header only (a DataError
    naming the file for a corrupt header or gzip stream)."""
    return int(_idx.idx_dims(path)[0])


def read_idx_shard(path: str | os.PathLike, rank: int, size: int) -> np.ndarray:
    """Rank ``rank``'s rows (:func:`shard_rows`) of an IDX file, reading only those rows.

    A raw file is read with one seek; a ``.gz`` file is streamed (see :func:`fastadmm.data.read_idx`).
    """
    start, stop = shard_rows(idx_length(path), rank, size, what=f"rows of {path}")
    return _idx.read_idx(path, start, stop)


@dataclass(frozen=True)
class MNISTShard:
    """One rank's part of MNIST: ``data`` holds only this rank's rows (train and test).

    ``train_rows`` / ``test_rows`` are its ``[start, stop)`` among the selected samples, whose
    totals are ``n_train`` / ``n_test``.
    """

    data: _dataset.MNIST
    rank: int
    size: int
    train_rows: tuple[int, int]
    test_rows: tuple[int, int]
    n_train: int
    n_test: int

    def describe(self) -> str:
        """One line for rank 0 to print: the whole data set and how it is split."""
        base, extra = divmod(self.n_train, self.size)
        sizes = f"{base:,}" if extra == 0 else f"{base:,}-{base + 1:,}"
        return (
            f"MNIST from {self.data.location} (train {self.n_train:,}, test {self.n_test:,} images), "
            f"{self.size} ranks of {sizes} training samples each"
        )


def _read_split_shard(images_path: Path, labels_path: Path, rank, size, classes, like=None):
    """(X, y, (start, stop), n) of one split: the labels whole (one byte a sample), then, of the
    images, only the range of rows that holds this rank's samples (:func:`fastadmm._idx.read_images`).
    ``like``: (path, dims) of the training images, whose image size a test split must have."""
    labels = _idx.read_labels(labels_path)
    if classes is None:
        rows = np.arange(labels.shape[0])
    else:
        rows = _dataset.class_rows(labels, classes, source=str(labels_path))
    start, stop = shard_rows(rows.shape[0], rank, size, what=f"samples of {labels_path.name}")
    mine = rows[start:stop]
    X = _idx.read_images(images_path, (labels_path, labels.shape[0]), mine, like=like)
    return X, labels[mine], (start, stop), int(rows.shape[0])


def load_mnist_shard(data_dir: str | os.PathLike, rank: int, size: int, *, classes=None) -> MNISTShard:
    """Rank ``rank``'s shard of the MNIST IDX files in ``data_dir`` (raw or ``.gz``), train and test.

    With ``classes`` (e.g. ``(0, 1)``) the samples of those digits are selected first (from the
    label files, which every rank reads whole: one byte a sample) and then split by
    :func:`shard_rows`; each rank reads only the image rows that hold its samples. Concatenated in
    rank order the shards are exactly ``read_mnist_folder(data_dir).select(classes)``, so K ranks
    train on the same samples in the same order as one process.
    """
    folder = Path(data_dir).expanduser()
    files = _mnist_sources.mnist_files(folder)
    X_train, y_train, train_rows, n_train = _read_split_shard(
        files["train_images"], files["train_labels"], rank, size, classes)
    X_test, y_test, test_rows, n_test = _read_split_shard(
        files["test_images"], files["test_labels"], rank, size, classes,
        like=(files["train_images"], _idx.idx_dims(files["train_images"])))
    mnist = _dataset.MNIST(X_train, y_train, X_test, y_test, source="data_dir", location=str(folder),
                        files={role: str(p) for role, p in files.items()})
    return MNISTShard(mnist, rank, size, train_rows, test_rows, n_train, n_test)


# --------------------------------------------------------------------------------------------------
# Errors: stop every rank


@contextlib.contextmanager
def abort_on_error(comm=None, *, code: int = 1, traceback: bool = False, collective_through: bool = False):
    """Run the block; if it raises on any rank, print one line naming the rank and ``MPI_Abort``.

    Without this, an exception on one rank leaves the others waiting forever in their next
    collective call. The line goes to stderr as
    ``fastadmm: rank 1 of 4 failed: ValueError: ...; aborting all ranks (MPI_Abort)``
    (``traceback=True`` prints the traceback after it), then ``comm.Abort(code)`` ends every rank
    of ``comm`` (default ``MPI.COMM_WORLD``) and ``mpiexec`` exits non-zero. KeyboardInterrupt
    and SystemExit with a non-zero code abort too. With a single rank nothing is aborted: the
    exception propagates as usual (its traceback is the clearer message then).

    ``collective_through=True`` lets an error that every rank raises together (marked by the driver)
    propagate instead of aborting: train_admm uses it inside; this guard around it still aborts.
    The rule is :meth:`fastadmm._comm.Communicator.abort_on_error`'s.

    Yields the (mpi4py) communicator.
    """
    comm = _comm_or_world(comm)
    with _comm.MPIComm(comm).abort_on_error(code=code, traceback=traceback, collective_through=collective_through):
        yield comm


def _takes_comm(fn) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # builtins without a signature
        return False
    return "comm" in params


def run_or_abort(fn, *args, comm=None, **kwargs):
    """``fn(*args, **kwargs)`` under :func:`abort_on_error`: any rank's exception aborts all ranks.

    ``comm`` (default ``MPI.COMM_WORLD``) is the communicator to abort; it is also passed on to
    ``fn`` as ``comm=`` when ``fn`` has a ``comm`` parameter (as :func:`fastadmm.train_admm` has),
    so ``run_or_abort(train_admm, X, y, comm=comm)`` trains on all ranks together.
    """
    with abort_on_error(comm) as comm:
        if _takes_comm(fn):
            kwargs["comm"] = comm
        return fn(*args, **kwargs)


def train_admm_distributed(X, y, *, comm=None, **kwargs):
    """:func:`fastadmm.train_admm` over ``comm`` (default ``MPI.COMM_WORLD``), aborting every rank if
    one fails.

    Each rank passes its own rows of ``X, y`` (and of ``X_test, y_test``), e.g. from
    :func:`shard` or :func:`load_mnist_shard`; shards may differ in size but every rank needs at
    least one sample. ``random_state`` (it seeds the initial weights, or the initial a and z) must
    be the same on every rank, which is checked; None draws a seed on rank 0 and sends it to all.
    All other keywords are those of ``train_admm``. Every rank returns the same Result. With
    ``checkpoint=path`` each rank writes ``<path>.rank<k>.npz``.
    """
    from .admm import train_admm

    with abort_on_error(comm) as comm:
        kwargs["random_state"] = _comm.MPIComm(comm).agreed_seed(kwargs.get("random_state"))
        return train_admm(X, y, comm=comm, **kwargs)

