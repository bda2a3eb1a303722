"""The checks of the training functions' arguments: the scalar ones that train_admm, train_sgd and
the estimator share (hidden, loss, max_iter, random_state, verbose, validation_fraction and the
validation rows it holds out), and train_admm's whole boundary (:func:`check_admm`: settings,
checkpoint, init, data fingerprint, magnitude of X), each raising an error that names the argument
and the fix.  The arrays (X, y, X_test, y_test) are checked and converted in :mod:`fastadmm._arrays`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import numbers
from pathlib import Path
from typing import Optional

import numpy as np

from . import _arrays, _losses, _memory, _settings
from ._arrays import check_fits, check_test, check_Xy
# The scalar checkers live with the settings' constraints (which use them); importable from here too.
from ._constraints import as_bool, as_int, as_real  # noqa: F401
from ._fullbatch import FullBatchADMM
from ._result import Result
from .minibatch import MiniBatchADMM


def check_hidden(hidden, name="hidden"):
    """Return the hidden layer sizes as a tuple of positive ints (numpy integers accepted)."""
    if isinstance(hidden, numbers.Integral) and not isinstance(hidden, (bool, np.bool_)):
        hidden = (hidden,)
    if isinstance(hidden, (str, bytes)):
        raise TypeError(f"{name} must be a sequence of layer sizes such as (100, 50, 10), got {hidden!r}")
    try:
        sizes = tuple(hidden)
    except TypeError:
        raise TypeError(f"{name} must be a sequence of layer sizes such as (100, 50, 10), got {hidden!r}") from None
    for s in sizes:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, numbers.Integral):
            raise TypeError(f"{name} must hold integers, got {s!r} in {hidden!r}")
        if s < 1:
            raise ValueError(f"{name} sizes must be >= 1, got {s} in {hidden!r}")
    return tuple(int(s) for s in sizes)


def check_max_iter(max_iter, name="max_iter"):
    return as_int(name, max_iter, 1)


def check_loss(loss):
    from ._losses import LOSSES

    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    return loss


def check_random_state(random_state, name="random_state"):
    """A numpy Generator from None, an int seed >= 0 (numpy integers too), a SeedSequence, a
    Generator (used as is) or a legacy RandomState (a seed drawn from it)."""
    if isinstance(random_state, (bool, np.bool_)):
        raise TypeError(f"{name} must be None, an int >= 0 or a numpy Generator, got {random_state!r}")
    if isinstance(random_state, numbers.Integral):
        if random_state < 0:
            raise ValueError(f"{name} must be None, an int >= 0 or a numpy Generator, got {random_state}")
        return np.random.default_rng(int(random_state))
    if random_state is None or isinstance(random_state, np.random.SeedSequence):
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(2**31 - 1))
    raise TypeError(f"{name} must be None, an int >= 0 or a numpy Generator, got {random_state!r}")


def random_state_record(random_state):
    """How a Result's settings record `random_state`: the int seed (numpy integers as Python int,
    so that np.int64(0) is saved as 0), None, or the repr of a Generator / RandomState."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, (bool, np.bool_)):
        return int(random_state)
    return None if random_state is None else repr(random_state)


def check_verbose(verbose):
    """`verbose` as an int >= 0 (True = 1, False = 0); TypeError/ValueError naming it."""
    if isinstance(verbose, (bool, np.bool_)):
        return int(verbose)
    if not isinstance(verbose, numbers.Integral) or verbose < 0:
        raise (TypeError if not isinstance(verbose, numbers.Integral) else ValueError)(
            f"verbose must be True, False or an integer >= 0 (0 = silent, 1 = a line per iteration), got {verbose!r}")
    return int(verbose)


def check_validation_fraction(fraction, eval_every):
    """`fraction` as a float in (0, 1), or None (no validation rows); ValueError/TypeError naming it."""
    if fraction is None:
        return None
    fraction = as_real("validation_fraction", fraction, 0, 1, low_open=True, high_open=True)
    if eval_every == 0:
        raise ValueError(f"validation_fraction={fraction} needs the validation accuracy at every evaluation, and "
                         "eval_every=0 evaluates never: set eval_every >= 1 (1 = every iteration) or "
                         "validation_fraction=None")
    return fraction


def validation_rows(y_index, fraction, allow_none=False):
    """(training rows, validation rows), each in increasing order: of every class, its last
    round(fraction * n_c) rows are held out (stratified; at least one, and never all: a class of
    one sample stays whole in the training rows).  ValueError when no row can be held out, unless
    `allow_none` (a rank's shard, whose ranks together hold some out): then no validation rows."""
    y_index = np.asarray(y_index)
    held = []
    for c in np.unique(y_index):
        rows = np.flatnonzero(y_index == c)
        n_val = min(rows.shape[0] - 1, max(1, math.floor(fraction * rows.shape[0] + 0.5)))
        if n_val > 0:
            held.append(rows[-n_val:])
    if not held and not allow_none:
        raise ValueError(no_validation_rows(fraction))
    val = np.sort(np.concatenate(held)) if held else np.zeros(0, np.intp)
    keep = np.ones(y_index.shape[0], bool)
    keep[val] = False
    return np.flatnonzero(keep), val


def no_validation_rows(fraction) -> str:
    return (f"validation_fraction={fraction} holds out rows of every class but the training rows of each class "
            "must keep one, and every class has a single sample: give more samples, or pass validation_fraction=None")


# --------------------------------------------------------------------------------------------------
# train_admm's boundary: every check of its arguments, in one call


@dataclasses.dataclass
class ADMMInputs:
    """train_admm's arguments as checked by :func:`check_admm`: what the fit may assume."""

    X: np.ndarray  # this rank's training rows (mini-batch ADMM: a float X as given, cast per batch)
    y_index: np.ndarray  # class index per training row
    classes: np.ndarray  # sorted class labels (over every rank)
    X_test: Optional[np.ndarray]
    y_test_index: Optional[np.ndarray]
    hidden: tuple
    loss: str
    max_iter: int
    rng: np.random.Generator
    sizes: list  # layer widths: inputs (with the bias input), hidden..., outputs
    row_offset: int  # the first global row of this rank's rows
    n_global: int  # training rows over every rank
    settings: "_settings.ADMMSettings"  # resolved: no None / "auto" left
    dtype: np.dtype  # the fit's floating type
    nonzero: np.ndarray  # the features that are not zero in every training row
    X_val: Optional[np.ndarray] = None  # validation rows held out of X (validation_fraction)
    y_val_index: Optional[np.ndarray] = None
    verbose: int = 0
    checkpoint: Optional[Path] = None  # this rank's checkpoint file (None on the ranks that write none)
    fingerprint: str = ""  # of the training rows (of every rank's, over MPI): kept with the Result


def settings_from(settings, overrides) -> "_settings.ADMMSettings":
    """An ADMMSettings from `settings` (or the defaults) and keyword `overrides` of its fields."""
    cls = _settings.ADMMSettings
    if settings is None:
        return cls.from_kwargs(**overrides)
    if not isinstance(settings, cls):
        raise TypeError(f"settings must be an ADMMSettings, got {type(settings).__name__}")
    if overrides:
        cls.from_kwargs(**overrides)  # raises naming any unknown keyword
        return cls(**{**settings.as_dict(), **overrides})
    return settings


def check_checkpoint(checkpoint, every, comm, shared: bool = False) -> Optional[Path]:
    """This rank's checkpoint file, in a folder that exists and takes a new file; None for None.
    `shared`: the state is the same on every rank (mini-batch ADMM), so rank 0 writes the one file
    `checkpoint` and the other ranks none (None); else each rank its own (comm.rank_path)."""
    if checkpoint is None:
        return None
    if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
        raise ValueError(f"checkpoint_every must be an integer >= 1, got {every!r}")
    import tempfile

    path = Path(checkpoint) if shared else comm.rank_path(Path(checkpoint))
    if path.is_dir():
        raise ValueError(f"checkpoint {path} is a folder; pass a file path such as {path / 'fit.npz'}")
    if not path.parent.is_dir():
        raise ValueError(f"checkpoint folder {path.parent} does not exist; create it or pass another path")
    try:  # the save writes a temporary file there and renames it into place: found out now, not after the fit
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        raise ValueError(f"checkpoint folder {path.parent} is not writable ({exc.strerror or exc}); pass a path "
                         "in a writable folder") from None
    return None if shared and not comm.root else path


def check_magnitude(X, scan, dtype) -> None:
    """X whose Gram sums (N max|X|^2) could overflow the fit's `dtype` is refused, naming the fix."""
    big = max(abs(scan.high), abs(scan.low))
    limit = math.sqrt(float(np.finfo(dtype).max) / (4.0 * X.shape[0]))
    if big > limit:
        wider = " or pass dtype='float64'" if np.dtype(dtype) == np.float32 else ""
        raise ValueError(f"X is too large in magnitude (max |X| = {big:.3g}; above {limit:.3g} its Gram matrix "
                         f"a_0 a_0^T can overflow {np.dtype(dtype).name}, the fit's dtype); scale X, e.g. "
                         f"X / np.abs(X).max(){wider}")


def agreed_fingerprint(X, y_index, comm) -> str:
    """fingerprint of this process's rows; over several ranks, a digest of every rank's, in rank order."""
    mine = fingerprint(X, y_index)
    if comm.size == 1:
        return mine
    return hashlib.blake2b("|".join(comm.allgather(mine)).encode(), digest_size=12).hexdigest()


def fingerprint(X, y_index) -> str:
    """A cheap digest of this rank's training rows (shape, labels, every 64th-or-so row), kept with a
    Result so that resuming on other data of the same size is refused."""
    step = max(1, X.shape[0] // 64)
    h = hashlib.blake2b(digest_size=12)
    h.update(repr((X.shape, X.dtype.str)).encode())
    for start in range(0, y_index.shape[0], _arrays.PIECE):  # as int64, in pieces (the same digest)
        h.update(np.ascontiguousarray(y_index[start : start + _arrays.PIECE], dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(X[::step]).tobytes())
    return h.hexdigest()


def check_init(init, sizes, loss, classes, settings, dtype, n_rows, data_fingerprint, ranks) -> None:
    """Refuse an `init` that this call cannot continue: another method, data, net or loss, or
    settings that change the method (_settings.resume_changes; when and how the fit stops and
    runs may change)."""
    if init is None:
        return
    minibatch = settings.batch_size is not None
    kinds = {FullBatchADMM.kind: False, MiniBatchADMM.kind: True}  # the state kind -> mini-batch?
    if isinstance(init, Result) and init.state is not None and init.state.get("kind") in kinds \
            and kinds[init.state["kind"]] != minibatch:
        kind = "mini-batch (batch_size set)" if minibatch is False else "full-batch (batch_size=None)"
        raise ValueError(f"init is a {kind} fit; resume it with the same batch_size")
    recorded = init.settings if isinstance(init, Result) and isinstance(init.settings, dict) else {}
    if minibatch and recorded.get("ranks", ranks) != ranks:
        raise ValueError(f"init was trained on {recorded['ranks']} rank(s), this call runs on {ranks}; resume it on "
                         f"{recorded['ranks']} (the global batches are drawn over the ranks' rows as they were split)")
    stored = recorded.get("data_fingerprint")
    if stored is not None and stored != data_fingerprint:
        raise ValueError("init was trained on other data than X, y (its data fingerprint differs); resume on the "
                         "same training set, in the same order and dtype")
    if not isinstance(init, Result) or init.method != "admm" or init.state is None:
        raise TypeError("init must be a Result of train_admm (with its state), e.g. one loaded by fastadmm.load")
    shapes = [W.shape for W in init.weights]
    expected = [(sizes[l], sizes[l - 1] + int(minibatch and l > 1)) for l in range(1, len(sizes))]
    if shapes != expected:
        raise ValueError(f"init has layer shapes {shapes}, but X, y and hidden give {expected}")
    if init.intercept != (settings.intercept or minibatch):
        raise ValueError(f"init was trained with intercept={init.intercept}; pass the same setting to resume")
    if init.loss != loss:
        raise ValueError(f"init was trained with loss={init.loss!r}; pass the same loss to resume")
    if not np.array_equal(np.asarray(init.classes), classes):
        raise ValueError("init was trained on other classes than y holds; resume on the same data")
    if not minibatch and init.state["lam"].shape[0] != init.state["Z"][0].shape[0]:
        raise ValueError("init's state is inconsistent (corrupt checkpoint?)")
    if not minibatch and init.state["lam"].shape[0] != n_rows:
        raise ValueError(f"init holds the state of {init.state['lam'].shape[0]} samples but X has {n_rows}; "
                         "resume on the same training set")
    changed = _settings.resume_changes(recorded, settings, np.dtype(dtype).name)
    if changed:
        raise ValueError(f"init was trained with other settings than this call's ({'; '.join(changed)}): they "
                         "change the method, and a resumed fit would match neither the uninterrupted fit nor a "
                         "fresh one; pass init's values (Result.settings) to resume, or fit afresh without init")


def check_admm(X, y, *, X_test, y_test, hidden, loss, max_iter, random_state, callback, settings, overrides, init,
               comm, checkpoint=None, checkpoint_every=10, validation_fraction=None, verbose=0) -> ADMMInputs:
    """Every check of train_admm's arguments, before anything of the fit is allocated; in a
    distributed fit every rank raises the same error together.  With `validation_fraction`, the
    validation rows are split off X, y here (every later check, and the fit, sees the training rows)."""
    error = X_val = y_val_index = None
    try:
        settings = settings_from(settings, overrides).with_dtype()  # resolved below
        checkpoint = check_checkpoint(checkpoint, checkpoint_every, comm, shared=settings.batch_size is not None)
        verbose = check_verbose(verbose)
        validation_fraction = check_validation_fraction(validation_fraction, settings.eval_every)
        loss = check_loss(loss)
        max_iter = None if max_iter is None else check_max_iter(max_iter)
        hidden = check_hidden(hidden)
        if callback is not None and not callable(callback):
            raise TypeError("callback must be callable (or None)")
        min_samples, min_classes = (1, 1) if comm.distributed else (2, 2)
        # Mini-batch ADMM casts each batch to its dtype: a float X is kept as given (no whole copy).
        keep = settings.batch_size is not None and getattr(X, "dtype", None) is not None and X.dtype.kind == "f"
        # One scan of X (its column minima and maxima) serves every check below and the zero features.
        X, y_index, classes, scan = check_Xy(X, y, None if keep else settings.dtype, min_samples, min_classes,
                                             with_scan=True)
        dtype = np.dtype(settings.dtype) if settings.dtype else X.dtype
        if keep:
            check_fits(X, "X", dtype, scan)
        check_magnitude(X, scan, dtype)
        rng = check_random_state(random_state)
        if validation_fraction is not None:  # the last rows of every class (X is copied: the rest)
            # over MPI each rank holds out the last rows of every class of its own shard
            train_rows, val_rows = validation_rows(y_index, validation_fraction, allow_none=comm.distributed)
            X, X_val, y_val_index = X[train_rows], X[val_rows], y_index[val_rows]
            y_index = y_index[train_rows]
    except (TypeError, ValueError) as exc:
        error = exc
    if comm.distributed:
        # Agree on the outcome (and on the classes, the union of every rank's labels).
        comm.raise_agreed(error)
        local = comm.allgather((classes, X.shape[1], X.dtype.str, X.shape[0],
                                0 if X_val is None else X_val.shape[0]))
        if validation_fraction is not None and sum(v for *_, v in local) == 0:
            raise ValueError(no_validation_rows(validation_fraction))
        local = [entry[:4] for entry in local]
        if len({(n, d) for _, n, d, _ in local}) != 1:
            raise ValueError(f"every rank must hold the same number of features and dtype, got {[(n, d) for _, n, d, _ in local]}")
        all_classes = np.unique(np.concatenate([c for c, _, _, _ in local]))
        if all_classes.shape[0] < 2:
            raise ValueError("y has a single class over all ranks; training needs samples of at least two classes")
        to_global = np.searchsorted(all_classes, classes).astype(_arrays.index_dtype(all_classes.shape[0]))
        y_index = to_global[y_index]
        if y_val_index is not None:
            y_val_index = to_global[y_val_index]
        classes = all_classes
        counts = [n for _, _, _, n in local]
        row_offset, n_global = int(sum(counts[: comm.rank])), int(sum(counts))
        seed = comm.agreed_seed(random_state)  # rank 0's for None; ValueError on every rank if they differ
        rng = rng if random_state is not None else np.random.default_rng(seed)
    elif error is not None:
        raise error
    else:
        row_offset, n_global = 0, X.shape[0]
    minibatch = settings.batch_size is not None
    data_fingerprint = agreed_fingerprint(X, y_index, comm)
    n_out = _losses.n_outputs(len(classes), loss)
    sizes = [X.shape[1] + int(settings.intercept or minibatch), *hidden, n_out]
    error = None
    try:  # checks of one rank's own arguments: they too must fail on every rank together
        # The method's measured defaults depend on the output layer's width (_settings.method_defaults).
        settings = settings.resolved(n_out, loss)
        if max_iter is None:
            max_iter = _settings.method_defaults(settings.batch_size, n_out)["max_iter"]
        X_test, y_test_index = check_test(X_test, y_test, classes, X.shape[1], X.dtype)
        n_test = 0 if X_test is None else X_test.shape[0]
        _memory.check_fit(sizes, X.shape[0], n_test, dtype, settings.batch_size, hidden)
        check_init(init, sizes, loss, classes, settings, dtype, X.shape[0], data_fingerprint, comm.size)
    except (TypeError, ValueError) as exc:
        error = exc
    comm.raise_agreed(error)
    comm.check_same(dict(
        settings=settings.as_dict(), hidden=tuple(hidden), loss=loss, max_iter=max_iter,
        callback=callback is not None, init=init is not None, checkpoint_every=checkpoint_every,
        init_iteration=None if init is None else init.state["iteration"],
    ), hint="only X, y, X_test and y_test differ between ranks")
    return ADMMInputs(X, y_index, classes, X_test, y_test_index, hidden, loss, max_iter, rng, sizes, row_offset,
                      n_global, settings, dtype, scan.nonzero(), X_val, y_val_index, verbose, checkpoint,
                      data_fingerprint)
