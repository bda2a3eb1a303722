"""The experiment's digits: which data, how they are split into training and test images, and the
one line that says so; under ``--distributed`` each MPI rank's shard (the ranks themselves are a
:class:`fastadmm._comm.Communicator`: :func:`world`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from .._comm import Communicator, MPIComm, message_line
from ..data import stratified_split
from .args import DEFAULT_CLASSES, UsageError

FULL_TRAIN = 60_000  # images in the official training set
REPORT_TRAIN, REPORT_TOTAL = 10_000, 12_665  # the report's split of the 0/1 training images
EMBEDDED_TEST_FRACTION = 0.2


@dataclass
class Digits:
    """The training and test images of the experiment (this rank's rows under --distributed)."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    line: str  # the one short line printed about the data (no URLs)
    info: dict = field(default_factory=dict)  # for results.json (the whole story)
    split: str = ""  # "report", "files" or "stratified"


def digits_text(classes) -> str:
    return "all ten digits" if len(classes) == 10 else "digits " + ", ".join(map(str, classes))


def source_text(mnist) -> str:
    """Where the data came from, short: no URLs (those are in results.json)."""
    if mnist.source == "embedded":
        reason = mnist.fallback_reason or ""
        why = ("download failed" if "download failed" in reason else
               "no cache, downloads off" if "download=False" in reason else "fallback")
        n = len(mnist.y_train) + (0 if mnist.y_test is None else len(mnist.y_test))
        return f"embedded {n:,} MNIST digits (offline: {why})"
    where = {"data_dir": f"MNIST folder {mnist.location}", "cache": "MNIST cache",
             "download": "MNIST downloaded"}.get(mnist.source, f"MNIST ({mnist.source})")
    return where


def split(mnist, classes, seed: int):
    """(X_train, y_train, X_test, y_test, how, kind) for the experiment:

    * the full 60,000-image training set with digits 0 and 1: its 12,665 such images, shuffled with
      ``seed``, 10,000 train / 2,665 test, as in the report (kind "report");
    * data with a test set: the files' own train and test sets (kind "files");
    * data without one (the embedded digits): a stratified 80 / 20 split shuffled with ``seed``.
    """
    selected = mnist.select(classes)  # ValueError naming a digit the data lacks
    X, y = selected.X_train, selected.y_train
    what = digits_text(classes)
    if mnist.has_test and len(mnist.y_train) == FULL_TRAIN and tuple(classes) == DEFAULT_CLASSES:
        n = y.shape[0]
        n_train = int(round(n * REPORT_TRAIN / REPORT_TOTAL))
        order = np.random.default_rng(seed).permutation(n)
        tr, te = order[:n_train], order[n_train:]
        how = (f"{what}: the report's split of the {n:,} such training images, {n_train:,} train / "
               f"{n - n_train:,} test (shuffled, seed {seed})")
        return X[tr], y[tr], X[te], y[te], how, "report"
    if selected.has_test:
        own = "its held-out split" if mnist.source == "embedded" else "the files' own split"
        how = f"{what}: {len(y):,} train / {len(selected.y_test):,} test images ({own})"
        return X, y, selected.X_test, selected.y_test, how, "files"
    tr, te = stratified_split(y, EMBEDDED_TEST_FRACTION, seed)
    pct = int(round(100 * EMBEDDED_TEST_FRACTION))
    how = f"{what}: {len(tr):,} train / {len(te):,} test images (stratified {100 - pct}/{pct} split, seed {seed})"
    return X[tr], y[tr], X[te], y[te], how, "stratified"


def scale(X: np.ndarray, dtype: str) -> np.ndarray:
    """Pixels 0..255 to [0, 1] in ``dtype``."""
    out = np.asarray(X, dtype=dtype)
    out /= 255.0
    return out


def named_folder(args) -> Optional[str]:
    return args.data_dir if args.data_dir is not None else (os.environ.get("FASTADMM_DATA") or None)


def data_error(args, exc: Exception) -> UsageError:
    if args.data_dir is not None:
        where = "--data-dir"
    elif os.environ.get("FASTADMM_DATA"):
        where = "FASTADMM_DATA"
    else:
        where = "data"
    return UsageError(f"{where}: {message_line(exc)}")


def _load(args, download: bool):
    import warnings

    from .. import data

    try:
        with warnings.catch_warnings():  # the data line says it fell back, and why (in short)
            warnings.simplefilter("ignore", data.DataFallbackWarning)
            return data.load_mnist(args.data_dir, download=download, progress=not args.quiet)
    except (OSError, data.DataError, ModuleNotFoundError, MemoryError) as exc:
        raise data_error(args, exc) from None


def _split(args, mnist):
    from .. import data

    try:
        return split(mnist, args.classes, args.seeds[0])
    except data.DataError as exc:
        raise data_error(args, exc) from None
    except ValueError as exc:
        raise UsageError(f"--classes: {message_line(exc)}") from None


def _check_widths(args, mnist, X_tr, X_te) -> None:
    if X_te.shape[1:] != X_tr.shape[1:]:
        files = mnist.files or {}
        raise data_error(args, ValueError(
            f"the test images have {X_te.shape[1]} pixels, the training images {X_tr.shape[1]} "
            f"({files.get('test_images', 'test set')} vs {files.get('train_images', 'training set')})"))


def load_digits(args) -> Digits:
    """The experiment's digits in one process."""
    mnist = _load(args, download=not args.no_download)
    X_tr, y_tr, X_te, y_te, how, kind = _split(args, mnist)
    _check_widths(args, mnist, X_tr, X_te)
    info = data_info(mnist, args, how, len(y_tr), len(y_te))
    return Digits(scale(X_tr, args.dtype), y_tr, scale(X_te, args.dtype), y_te,
                  f"data: {source_text(mnist)}; {how}", info, kind)


def data_info(mnist, args, how, n_train, n_test) -> dict:
    return {
        "source": mnist.source, "location": mnist.location, "fallback_reason": mnist.fallback_reason,
        "description": mnist.describe(), "split": how, "classes": list(args.classes),
        "n_train": n_train, "n_test": n_test, "files": dict(mnist.files),
        "available": {"train": len(mnist.y_train), "test": 0 if mnist.y_test is None else len(mnist.y_test)},
        "pixels": "scaled to [0, 1]", "dtype": args.dtype,
    }


# --------------------------------------------------------------------------------------------------
# MPI (--distributed)


def world() -> Communicator:
    """fastadmm.distributed.world() as a :class:`fastadmm._comm.Communicator` (UsageError, naming the
    install, without mpi4py)."""
    from .. import distributed

    try:
        return MPIComm(distributed.world())
    except ImportError as exc:
        raise UsageError(f"--distributed: {message_line(exc)}") from None


def agree(ranks: Communicator, step: Callable):
    """``step()`` on every rank; a UsageError on any rank is raised on every rank (its message as it
    is), so that decisions which end the run early are taken together."""
    return ranks.agree(step, UsageError, name_rank=False)


def load_digits_distributed(args, ranks: Communicator) -> Digits:
    """This rank's contiguous shard of the experiment's training and test images.

    A named folder whose training set is not the full 60,000 images is read shard by shard
    (:func:`fastadmm.distributed.load_mnist_shard`: each rank reads only the image rows it holds).
    Otherwise (the report's shuffled split, the cache, a download or the embedded digits) rank 0
    loads first (it alone downloads), then the other ranks load the same source, every rank splits
    it the same way and keeps its shard.
    """
    from .. import distributed as dist

    folder = named_folder(args)
    if agree(ranks, lambda: folder is not None and _training_length(args, folder) != FULL_TRAIN):
        return agree(ranks, lambda: _load_shard(args, ranks, folder, dist))
    return _load_all_then_shard(args, ranks, dist)


def _load_shard(args, ranks: Communicator, folder, dist) -> Digits:
    try:
        shard = dist.load_mnist_shard(folder, ranks.rank, ranks.size, classes=args.classes)
    except (OSError, ValueError) as exc:
        raise data_error(args, exc) from None
    d = shard.data
    how = (f"{digits_text(args.classes)}: {shard.n_train:,} train / {shard.n_test:,} test images (the files' own "
           f"split); {ranks.size} ranks, each reading only its rows")
    info = data_info(d, args, how, shard.n_train, shard.n_test)
    info.update(description=shard.describe(), available=None, shard_train_rows=list(shard.train_rows),
                shard_test_rows=list(shard.test_rows))
    line = f"data: {source_text(d)}; {how}"
    return Digits(scale(d.X_train, args.dtype), d.y_train, scale(d.X_test, args.dtype), d.y_test, line, info,
                  "files")


def _training_length(args, folder) -> Optional[int]:
    from .. import data
    from ..distributed import idx_length

    try:
        return idx_length(data.mnist_files(folder)["train_images"])
    except (OSError, data.DataError) as exc:
        raise data_error(args, exc) from None


def _load_all_then_shard(args, ranks: Communicator, dist) -> Digits:
    mnist = agree(ranks, lambda: _load(args, download=not args.no_download) if ranks.root else None)
    # Rank 0 alone downloads; the others then read what it left in the cache (or the same fallback).
    mnist = agree(ranks, lambda: mnist if ranks.root else _load(args, download=False))
    sources = ranks.allgather((mnist.source, len(mnist.y_train)))
    if len(set(sources)) != 1:
        raise UsageError(f"the ranks loaded different data: {sorted(set(sources))}")

    def split_and_shard():
        X_tr, y_tr, X_te, y_te, how, kind = _split(args, mnist)
        if len(y_te) < ranks.size or len(y_tr) < ranks.size:
            raise UsageError(f"--classes: {len(y_tr)} train / {len(y_te)} test images are too few for "
                             f"{ranks.size} ranks")
        return X_tr, y_tr, X_te, y_te, how, kind

    X_tr, y_tr, X_te, y_te, how, kind = agree(ranks, split_and_shard)
    info = data_info(mnist, args, how, len(y_tr), len(y_te))
    X_tr, y_tr = dist.shard(ranks.rank, ranks.size, X_tr, y_tr)
    X_te, y_te = dist.shard(ranks.rank, ranks.size, X_te, y_te)
    line = f"data: {source_text(mnist)}; {how}; {ranks.size} ranks, each holding a contiguous shard"
    return Digits(scale(X_tr, args.dtype), y_tr, scale(X_te, args.dtype), y_te, line, info, kind)
