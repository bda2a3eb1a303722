"""One fit of one method for one seed, as the command runs it: progress bar, warnings collected,
thread limits, and the memory a fit would need, checked before anything is allocated."""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import warnings
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .args import DEFAULT_BATCH, UsageError
from .._comm import Communicator
from .digits import Digits, one_line
from .report import finite


class Progress:
    """A tqdm bar advanced by a trainer's callback (one call per evaluation); the callback answers
    True (stop the fit) once ``stop()`` says so, e.g. after a signal."""

    def __init__(self, label: str, total: int, enabled: bool, stop: Callable[[], bool] = lambda: False):
        from tqdm import tqdm

        self.stop = stop
        self.bar = tqdm(total=total, desc=f"{label:<4}", unit="it", disable=not enabled, leave=True,
                        dynamic_ncols=True, file=sys.stderr)

    def __call__(self, record: dict) -> Optional[bool]:
        self.bar.update(1)
        postfix = {}
        if finite(record.get("train_loss")):
            postfix["loss"] = f"{record['train_loss']:.4f}"
        if finite(record.get("test_accuracy")):
            postfix["test_acc"] = f"{record['test_accuracy']:.4f}"
        self.bar.set_postfix(postfix, refresh=False)
        return True if self.stop() else None

    def close(self) -> None:
        self.bar.close()


@contextlib.contextmanager
def record_warnings(sink: list):
    """Collect the trainers' warnings, every one of them, printed once after the bars (a
    ConvergenceWarning comes from full-batch ADMM only: mini-batch and gradient fits end at their
    --iterations, or earlier by their stop rule, without one)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            sink.extend(f"{w.category.__name__}: {w.message}" for w in caught)


@contextlib.contextmanager
def thread_limits(threads: Optional[int]):
    """BLAS threads (threadpoolctl) and Numba threads for the whole run, when --threads is given."""
    if threads is None:
        yield
        return
    import numba
    from threadpoolctl import threadpool_limits

    previous = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        numba.set_num_threads(previous)


# --------------------------------------------------------------------------------------------------
# Memory, before allocating


def fit_bytes(method: str, n_train: int, n_test: int, sizes, itemsize: int, batch: Optional[int] = None) -> int:
    """A lower bound of the bytes one fit's arrays take (``sizes``: inputs, hidden..., outputs).

    ADMM (ALGORITHM.md): the weights W_l, a_l and z_l for every layer and training image, the
    multipliers lam of the output layer, and per layer the Gram matrix of its input and its inverse.
    Gradient methods: weights, gradient and velocity (Adam: two moments), and the activations and
    back-propagated errors of a batch (the full training set for gd). Both evaluate the test set.
    """
    weights = sum(sizes[l] * (sizes[l - 1] + 1) for l in range(1, len(sizes)))
    units = sum(sizes[1:])
    widest = max(sizes)
    if method == "admm":  # batch: mini-batch ADMM keeps a, z and lam for its batch only
        rows = n_train if batch is None else batch
        count = weights + rows * (2 * units + sizes[-1]) + 2 * sum(s * s for s in sizes[:-1])
    else:
        rows = n_train if batch is None else batch
        count = 4 * weights + 2 * rows * units
    count += min(n_test, 8192) * widest * 2  # evaluation in blocks of at most 8,192 rows
    return count * itemsize


def n_outputs(args) -> int:
    """Output units of the net: one per class, except one for two classes with mse or hinge."""
    n = len(args.classes)
    return n if args.loss == "cross_entropy" or n > 2 else 1


def available_bytes() -> Optional[int]:
    """Memory the system can give now (MemAvailable), else the physical memory; None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def gib(n: float) -> str:
    """Bytes in the largest binary unit up to PiB that keeps the number >= 1."""
    for power, unit in ((50, "PiB"), (40, "TiB"), (30, "GiB")):
        if n >= 2**power:
            return f"{n / 2**power:,.1f} {unit}"
    return f"{n / 2**20:,.0f} MiB"


def check_memory(args, digits: Digits, ranks: Communicator) -> None:
    """UsageError naming --hidden when the largest fit would not fit in memory (before any allocation)."""
    sizes = [digits.X_train.shape[1], *args.hidden, n_outputs(args)]
    itemsize = np.dtype(args.dtype).itemsize
    batch = args.batch_size or DEFAULT_BATCH
    admm_batch = args.admm_batch_size if isinstance(args.admm_batch_size, int) else None
    need = max(fit_bytes(m, digits.X_train.shape[0], digits.X_test.shape[0], sizes, itemsize,
                         admm_batch if m == "admm" else None if m == "gd" else batch) for m in args.methods)
    have = available_bytes()
    if have is not None and need > have:
        raise UsageError(
            f"--hidden {' '.join(map(str, args.hidden))}: one fit needs at least {gib(need)} of memory "
            f"({digits.X_train.shape[0]:,} training images, {args.dtype}); {gib(have)} is available"
            + (" on this rank" if ranks.size > 1 else "") + ": give smaller layers")


# --------------------------------------------------------------------------------------------------
# The fits


def admm_has_batches() -> bool:
    """Whether this fastadmm's train_admm has mini-batch ADMM (ADMMSettings.batch_size)."""
    import dataclasses

    from .. import ADMMSettings

    return "batch_size" in {f.name for f in dataclasses.fields(ADMMSettings)}


def adam_available() -> bool:
    """Whether this fastadmm's train_sgd has optimizer="adam" (added alongside this command)."""
    from .. import train_sgd

    return "optimizer" in inspect.signature(train_sgd).parameters


def iterations(args, method: str) -> int:
    from ..sgd import DEFAULT_MAX_ITER

    if method == "admm":
        return args.iterations
    if method == "gd":
        return args.gd_iterations or DEFAULT_MAX_ITER["gd"]
    return args.epochs or DEFAULT_MAX_ITER.get(method, DEFAULT_MAX_ITER["sgd"])


def checkpoint_path(args, out: Path, seed: int) -> Optional[Path]:
    if not args.checkpoint_every:
        return None
    from .args import CHECKPOINT_NAME

    if len(args.seeds) == 1:
        return out / CHECKPOINT_NAME
    return out / CHECKPOINT_NAME.replace(".npz", f"-seed{seed}.npz")


def train_admm_run(args, digits: Digits, ranks: Communicator, out: Path, init, notes: list, seed: int,
                   stop: Callable[[], bool] = lambda: False):
    from .. import train_admm

    label = "ADMM" if len(args.seeds) == 1 else f"ADMM s{seed}"
    progress = Progress(label, args.iterations, enabled=ranks.root and not args.quiet, stop=stop)
    extra = {name: value for name, value in (("beta", args.beta), ("gamma", args.gamma)) if value is not None}
    if args.admm_batch_size != "full":
        extra["batch_size"] = args.admm_batch_size
    elif admm_has_batches():
        extra["batch_size"] = None  # full batch, as in the paper and the report
    try:
        with record_warnings(notes):
            return train_admm(
                digits.X_train, digits.y_train, hidden=tuple(args.hidden), loss=args.loss,
                max_iter=args.iterations, X_test=digits.X_test, y_test=digits.y_test, random_state=seed,
                init=init, callback=progress, comm=ranks.comm, checkpoint=checkpoint_path(args, out, seed),
                checkpoint_every=args.checkpoint_every or 10, backend=args.backend, dtype=args.dtype,
                threads=args.threads, train_metrics="full", **extra,
            )
    finally:
        progress.close()


def train_gradient_run(method: str, args, digits: Digits, notes: list, seed: int,
                       stop: Callable[[], bool] = lambda: False):
    """gd, sgd or adam: :func:`fastadmm.train_sgd` (adam: ``optimizer="adam"``)."""
    from .. import train_sgd

    extra = {}
    if method == "adam":
        if not adam_available():
            raise RuntimeError("adam needs train_sgd(optimizer='adam'), which this fastadmm does not have yet")
        extra["optimizer"] = "adam"
    batch = None if method == "gd" else (args.batch_size or DEFAULT_BATCH)
    total = iterations(args, method)
    label = method.upper() if len(args.seeds) == 1 else f"{method.upper()} s{seed}"
    progress = Progress(label, total, enabled=not args.quiet, stop=stop)
    try:
        with record_warnings(notes):
            return train_sgd(
                digits.X_train, digits.y_train, hidden=tuple(args.hidden), loss=args.loss, lr=args.lr,
                batch_size=batch, max_iter=total, random_state=seed, X_test=digits.X_test,
                y_test=digits.y_test, dtype=args.dtype, threads=args.threads, callback=progress,
                train_metrics="full", **extra,
            )
    finally:
        progress.close()


def load_init(args, ranks: Communicator):
    """The Result to resume from (--resume); under MPI rank k reads <name>.rank<k>.npz when it exists."""
    if args.resume is None:
        return None
    from .._checkpoint import CheckpointError
    from .._result import load

    path = Path(args.resume).expanduser()
    if ranks.rank_path(path).is_file():
        path = ranks.rank_path(path)
    try:
        init = load(path)
    except (OSError, CheckpointError) as exc:
        raise UsageError(f"--resume: {one_line(exc)}") from None
    if init.method != "admm" or init.state is None:
        raise UsageError(f"--resume: {path} is not an ADMM checkpoint with its state (method {init.method!r})")
    return init
