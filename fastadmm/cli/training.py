"""One fit of one method for one seed, as the command runs it: progress bar, warnings collected, and
the memory a fit would need (fastadmm._memory), checked before anything is allocated."""

from __future__ import annotations

import contextlib
import sys
import warnings
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .args import DEFAULT_BATCH, UsageError, admm_settings, n_outputs
from .. import _memory
from .._comm import Communicator, message_line
from .digits import Digits
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


# --------------------------------------------------------------------------------------------------
# Memory, before allocating


def check_memory(args, digits: Digits, ranks: Communicator) -> None:
    """UsageError naming --hidden when the largest fit would not fit in memory (before any allocation)."""
    sizes = [digits.X_train.shape[1], *args.hidden, n_outputs(args)]
    itemsize = np.dtype(args.dtype).itemsize
    batch = args.batch_size or DEFAULT_BATCH
    admm_batch = args.admm_batch_size if isinstance(args.admm_batch_size, int) else None
    need = max(_memory.fit_bytes(m, digits.X_train.shape[0], digits.X_test.shape[0], sizes, itemsize,
                                 admm_batch if m == "admm" else None if m == "gd" else batch) for m in args.methods)
    have = _memory.available_bytes()
    if have is not None and need > have:
        raise UsageError(
            f"--hidden {' '.join(map(str, args.hidden))}: one fit needs at least {_memory.gib(need)} of memory "
            f"({digits.X_train.shape[0]:,} training images, {args.dtype}); {_memory.gib(have)} is available"
            + (" on this rank" if ranks.size > 1 else "") + ": give smaller layers")


# --------------------------------------------------------------------------------------------------
# The fits


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
    try:
        with record_warnings(notes):
            return train_admm(
                digits.X_train, digits.y_train, hidden=tuple(args.hidden), loss=args.loss,
                max_iter=args.iterations, X_test=digits.X_test, y_test=digits.y_test, random_state=seed,
                init=init, callback=progress, comm=ranks.comm, checkpoint=checkpoint_path(args, out, seed),
                checkpoint_every=args.checkpoint_every or 10, settings=admm_settings(args),
            )
    finally:
        progress.close()


def train_gradient_run(method: str, args, digits: Digits, notes: list, seed: int,
                       stop: Callable[[], bool] = lambda: False):
    """gd, sgd or adam: :func:`fastadmm.train_sgd` (adam: ``optimizer="adam"``)."""
    from .. import train_sgd

    extra = {}
    if method == "adam":
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
        raise UsageError(f"--resume: {message_line(exc)}") from None
    if init.method != "admm" or init.state is None:
        raise UsageError(f"--resume: {path} is not an ADMM checkpoint with its state (method {init.method!r})")
    return init
