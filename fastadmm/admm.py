"""train_admm: validate the arguments, build the step object of the method (full batch:
``_fullbatch.FullBatchADMM``, Algorithm 1 of Taylor et al. 2016; mini-batch: ``_minibatch.MiniBatchADMM``),
run the fit loop (``_fit.run``) and return its Result.  docs/ALGORITHM.md describes both methods.
"""

from __future__ import annotations

import hashlib
import math
import tempfile
import time
from typing import Callable, Optional

import numpy as np

from . import _backend, _comm, _fit, _losses, _threads, _validation
from ._fit import CheckpointWarning, ConvergenceWarning, DivergenceWarning  # noqa: F401 - public names
from ._fullbatch import FullBatchADMM
from ._minibatch import MiniBatchADMM
from ._result import Result
from ._settings import ADMMSettings, method_defaults

__all__ = ["train_admm", "ADMMSettings", "CheckpointWarning", "ConvergenceWarning", "DivergenceWarning"]

_Problem = FullBatchADMM  # the name tests and benchmarks reach (tests/mpi_worker.py, benchmarks/)


def _layer_sizes(n_features, hidden, n_out):
    return [n_features, *hidden, n_out]


def _objective(sums, L, penalties):
    """The augmented Lagrangian (docs/ALGORITHM.md, section 1) from the global sums of a sweep."""
    beta, gamma = penalties
    obj = sum(gamma[l] * sums[L + l - 1] + beta[l] * sums[l - 1] for l in range(1, L))
    return float(obj + sums[2 * L - 1] + sums[2 * L] + beta[L] * sums[L - 1])


PROGRESS_KEYS = ("objective", "residual_z", "residual_a", "beta", "gamma")


def _progress(L):
    """What the fit loop records and judges after a sweep of either ADMM step object, from the sums
    [rz_1 .. rz_L, ra_1 .. ra_{L-1}, loss, <lam, z_L>, ||z_L||^2] summed over ranks."""

    def progress(sums, penalties):
        objective = _objective(sums, L, penalties)
        fields = dict(objective=objective, residual_z=[math.sqrt(v) for v in sums[:L]],
                      residual_a=[math.sqrt(v) for v in sums[L : 2 * L - 1]], beta=penalties[0][1],
                      gamma=penalties[1][1])
        residual = math.sqrt(sums[L - 1] / max(sums[2 * L + 1], 1e-300))  # ||z_L - W_L a_{L-1}|| / ||z_L||
        return _fit.Progress(fields, objective, residual)

    return progress


def _check_magnitude(X, scan):
    """X whose Gram sums (N max|X|^2) could overflow its dtype is refused, naming the fix."""
    big = max(abs(scan.high), abs(scan.low))
    limit = math.sqrt(float(np.finfo(X.dtype).max) / (4.0 * X.shape[0]))
    if big > limit:
        raise ValueError(
            f"X is too large in magnitude (max |X| = {big:.3g}; above {limit:.3g} its Gram matrix a_0 a_0^T "
            f"can overflow {X.dtype.name}); scale X, e.g. X / np.abs(X).max()"
        )


def _fingerprint(X, y_index) -> str:
    """A cheap digest of this rank's training rows (shape, labels, every 64th-or-so row), kept with a
    Result so that resuming on other data of the same size is refused."""
    step = max(1, X.shape[0] // 64)
    h = hashlib.blake2b(digest_size=12)
    h.update(repr((X.shape, X.dtype.str)).encode())
    h.update(np.ascontiguousarray(y_index, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(X[::step]).tobytes())
    return h.hexdigest()


def _check_init(init, sizes, loss, classes, intercept, X=None, y_index=None, minibatch=False):
    if init is None:
        return
    if isinstance(init, Result) and init.state is not None and ("S" in init.state) != minibatch:
        kind = "mini-batch (batch_size set)" if "S" in init.state else "full-batch (batch_size=None)"
        raise ValueError(f"init is a {kind} fit; resume it with the same batch_size")
    stored = init.settings.get("data_fingerprint") if isinstance(init, Result) and isinstance(init.settings, dict) else None
    if stored is not None and X is not None and stored != _fingerprint(X, y_index):
        raise ValueError(
            "init was trained on other data than X, y (its data fingerprint differs); resume on the same training "
            "set, in the same order and dtype"
        )
    if not isinstance(init, Result) or init.method != "admm" or init.state is None:
        raise TypeError("init must be a Result of train_admm (with its state), e.g. one loaded by fastadmm.load")
    shapes = [W.shape for W in init.weights]
    expected = [(sizes[l], sizes[l - 1] + int(minibatch and l > 1)) for l in range(1, len(sizes))]
    if shapes != expected:
        raise ValueError(f"init has layer shapes {shapes}, but X, y and hidden give {expected}")
    if init.intercept != intercept:
        raise ValueError(f"init was trained with intercept={init.intercept}; pass the same setting to resume")
    if init.loss != loss:
        raise ValueError(f"init was trained with loss={init.loss!r}; pass the same loss to resume")
    if not np.array_equal(np.asarray(init.classes), classes):
        raise ValueError("init was trained on other classes than y holds; resume on the same data")
    if not minibatch and init.state["lam"].shape[0] != init.state["Z"][0].shape[0]:
        raise ValueError("init's state is inconsistent (corrupt checkpoint?)")


def _settings_from(settings, kwargs) -> ADMMSettings:
    if settings is None:
        return ADMMSettings.from_kwargs(**kwargs)
    if not isinstance(settings, ADMMSettings):
        raise TypeError(f"settings must be an ADMMSettings, got {type(settings).__name__}")
    if kwargs:
        ADMMSettings.from_kwargs(**kwargs)  # raises naming any unknown keyword
        return ADMMSettings(**{**settings.as_dict(), **kwargs})
    return settings


def _validate(X, y, X_test, y_test, hidden, loss, max_iter, random_state, callback, settings, init, comm,
              checkpoint_every=10, validation_fraction=None):
    """All boundary checks; in a distributed fit every rank raises the same error together.  With
    `validation_fraction`, the validation rows are split off X, y here (every later check, and the
    fit, sees the training rows only)."""
    error = None
    X_val = y_val_index = None
    try:
        validation_fraction = _validation.check_validation_fraction(validation_fraction, settings.eval_every)
        if validation_fraction is not None and comm.distributed:
            raise ValueError(f"validation_fraction={validation_fraction} is not supported with comm= yet; hold out "
                             "rows yourself and pass them as X_test, y_test (or fit in one process)")
        loss = _validation.check_loss(loss)
        max_iter = None if max_iter is None else _validation.check_max_iter(max_iter)
        hidden = _validation.check_hidden(hidden)
        if callback is not None and not callable(callback):
            raise TypeError("callback must be callable (or None)")
        min_samples, min_classes = (1, 1) if comm.distributed else (2, 2)
        # Mini-batch ADMM casts each batch to its dtype: a float X is kept as given (no whole copy).
        keep = settings.batch_size is not None and getattr(X, "dtype", None) is not None and X.dtype.kind == "f"
        # One scan of X (its column minima and maxima) serves every check below and the zero features.
        X, y_index, classes, scan = _validation.check_Xy(X, y, None if keep else settings.dtype, min_samples,
                                                         min_classes, with_scan=True)
        if keep:
            _validation.check_fits(X, "X", settings.dtype, scan)
        _check_magnitude(X, scan)
        rng = _validation.check_random_state(random_state)
        if validation_fraction is not None:  # the last rows of every class (X is copied: the rest)
            train_rows, val_rows = _validation.validation_rows(y_index, validation_fraction)
            X, X_val, y_val_index = X[train_rows], X[val_rows], y_index[val_rows]
            y_index = y_index[train_rows]
    except (TypeError, ValueError) as exc:
        error = exc
    if comm.distributed:
        # Agree on the outcome (and on the classes, the union of every rank's labels).
        comm.raise_agreed(error)
        local = comm.allgather((classes, X.shape[1], X.dtype.str, X.shape[0]))
        if len({(n, d) for _, n, d, _ in local}) != 1:
            raise ValueError(f"every rank must hold the same number of features and dtype, got {[(n, d) for _, n, d, _ in local]}")
        all_classes = np.unique(np.concatenate([c for c, _, _, _ in local]))
        if all_classes.shape[0] < 2:
            raise ValueError("y has a single class over all ranks; training needs samples of at least two classes")
        y_index = np.searchsorted(all_classes, classes)[y_index]
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
    n_out = _losses.n_outputs(len(classes), loss)
    sizes = _layer_sizes(X.shape[1] + int(settings.intercept or minibatch), hidden, n_out)
    error = None
    try:  # checks of one rank's own arguments: they too must fail on every rank together
        # The method's measured defaults depend on the output layer's width (_settings.method_defaults).
        settings = settings.resolved(comm.distributed, n_out, loss)
        if max_iter is None:
            max_iter = method_defaults(settings.batch_size, n_out)["max_iter"]
        X_test, y_test_index = _validation.check_test(X_test, y_test, classes, X.shape[1], X.dtype)
        if minibatch and comm.distributed:
            raise ValueError("batch_size is not supported with comm= yet; run mini-batch ADMM in one process "
                             "(or the full-batch method, batch_size=None, over MPI)")
        if minibatch and not settings.intercept:
            raise ValueError("batch_size gives every layer a bias; it needs intercept=True")
        _check_init(init, sizes, loss, classes, settings.intercept or minibatch, X, y_index, minibatch)
        if init is not None and not minibatch and init.state["lam"].shape[0] != X.shape[0]:
            raise ValueError(
                f"init holds the state of {init.state['lam'].shape[0]} samples but X has {X.shape[0]}; "
                "resume on the same training set"
            )
    except (TypeError, ValueError) as exc:
        error = exc
    comm.raise_agreed(error)
    comm.check_same(dict(
        settings=settings.as_dict(), hidden=tuple(hidden), loss=loss, max_iter=max_iter,
        callback=callback is not None, init=init is not None, checkpoint_every=checkpoint_every,
        init_iteration=None if init is None else init.state["iteration"],
    ), hint="only X, y, X_test and y_test differ between ranks")
    return (X, y_index, classes, X_test, y_test_index, hidden, loss, max_iter, rng, sizes, row_offset, n_global,
            settings, scan.nonzero(), X_val, y_val_index)


def train_admm(
    X,
    y,
    *,
    hidden=(100, 50, 10),
    loss: str = "mse",
    max_iter: Optional[int] = None,
    X_test=None,
    y_test=None,
    random_state=None,
    callback: Optional[Callable[[dict], Optional[bool]]] = None,
    settings: Optional[ADMMSettings] = None,
    init: Optional[Result] = None,
    comm=None,
    checkpoint=None,
    checkpoint_every: int = 10,
    validation_fraction: Optional[float] = None,
    verbose=0,
    **overrides,
) -> Result:
    """Train a fully connected ReLU network by ADMM (Taylor et al., 2016).

    Parameters
    ----------
    X : array (n_samples, n_features), of any real dtype; the fit computes in ``dtype`` (a setting:
        None = float32 for mini-batch ADMM; for full batch float32 if X is float32, else float64),
        whatever X's (mini-batch ADMM casts each batch as it gathers it).
    y : class labels (n_samples,).  Two classes give one output unit, K > 2 give K (one-hot).
    hidden : hidden layer sizes, e.g. (100, 50, 10); () is a linear model.
    loss : "mse" (squared error) or "hinge", applied per output entry to 0/1 targets, or
        "cross_entropy" (softmax over one output per class).
    max_iter : iterations: epochs of mini-batch ADMM (default batch_size), or sweeps of Algorithm 1
        (batch_size=None); a resumed fit runs this many more.  None = the method's measured default
        (``fastadmm._settings``: MINI_BATCH, MINI_BATCH_ONE_OUTPUT, FULL_BATCH).
    X_test, y_test : optional held-out set, evaluated every ``eval_every`` iterations (a forward
        pass; the training metrics come from one too, or, with ``train_metrics="running"``, the
        default of mini-batch fits without output refit, from the epoch's batches).
    random_state : None, an int seed or a numpy Generator.
    callback : called after every iteration with a dict (iteration, objective, accuracies, ...,
        and "weights", a function returning copies of the current weights); returning True stops
        the fit with status "interrupted" (a KeyboardInterrupt raised in it too, keeping the fit).
        In a distributed fit it runs on every rank with the same dict and must answer the same on
        every rank.
    settings : an ADMMSettings; any keyword in **overrides overrides one of its fields
        (beta, gamma, initialization, ridge, warm_start_iter, dtype, backend, threads, ...).
    init : a Result of an earlier fit (``fastadmm.load`` reads one back) to continue from.
    comm : an mpi4py communicator for a data-parallel fit: each rank passes its own rows of X, y
        (and of X_test, y_test) and gets the same weights and history back (see
        ``fastadmm.distributed``).  None = one process.
    checkpoint : a path: every ``checkpoint_every`` iterations, and when the fit stops, the Result so
        far is saved there (atomically; see ``Result.save``).  In a distributed fit each rank saves
        its own rows' state to ``<path>.rank<k>.npz``.
    checkpoint_every : iterations between two checkpoints.
    validation_fraction : None, or a share in (0, 1) of the training rows to hold out: of every class
        its last round(validation_fraction * n_class) rows (at least one; a class of one sample is
        not held out), so a shuffled X gives a stratified random hold-out.  Their accuracy
        (history "validation_accuracy") is measured at every evaluation; the fit stops ("converged")
        when it has not risen above its best by more than ``tol`` (relative) at ``n_iter_no_change``
        evaluations in a row, and, however it ends, returns the weights of the best one (then
        without the state to resume from, unless the best is the last).  The training-loss rule of
        mini-batch fits is off then.  Not with ``comm``.
    verbose : 0 (default) prints nothing; 1 (or True) prints one line per iteration (epoch with
        mini-batches): training loss, training accuracy, validation and test accuracy where there
        are such rows, and the iteration's seconds (training and evaluation); then the stop message.

    Stop rules (``tol``, ``n_iter_no_change``; see :class:`ADMMSettings`): full-batch ADMM stops
    ("converged") when the objective's relative change and the output residual are below ``tol``
    (1e-6), and warns (ConvergenceWarning) when max_iter comes first.  Mini-batch ADMM stops
    ("converged") when the epoch's training loss has not fallen below its best by more than ``tol``
    (1e-4, relative) for ``n_iter_no_change`` (10) epochs in a row; reaching max_iter epochs is its
    ordinary end, without a warning (status "max_iter").

    Returns
    -------
    Result
    """
    t_setup = time.perf_counter()
    comm = _comm.wrap(comm)
    error = None
    try:  # every rank raises together, or none does
        settings = _settings_from(settings, overrides).for_comm(comm.distributed)  # resolved in _validate
        checkpoint = _checkpoint_path(checkpoint, checkpoint_every, comm)
    except (TypeError, ValueError) as exc:
        error = exc
    comm.raise_agreed(error)
    error = None
    try:
        verbose = _validation.check_verbose(verbose)
    except (TypeError, ValueError) as exc:
        error = exc
    comm.raise_agreed(error)
    (X, y_index, classes, X_test, y_test_index, hidden, loss, max_iter, rng, sizes, row_offset,
     n_global, settings, nonzero, X_val, y_val_index) = _validate(X, y, X_test, y_test, hidden, loss, max_iter,
                                                                  random_state, callback, settings, init, comm,
                                                                  checkpoint_every, validation_fraction)
    with comm.abort_on_error(collective_through=True):  # a failure on one rank ends all ranks, never a hang
        kernels = _backend.get(settings.backend)

        timings = {k: 0.0 for k in ("setup", "compile", "W", "a", "z", "eval", "train", "total", "allreduce")}
        t_compile = time.perf_counter()
        if hasattr(kernels, "warmup"):
            kernels.warmup()
        timings["compile"] = time.perf_counter() - t_compile

        limits = _threads.limit(settings.threads) if settings.threads is not None else None
        try:
            fit_dtype = np.dtype(settings.dtype) if settings.dtype else X.dtype
            T = _losses.targets(y_index, len(classes), fit_dtype, loss)
            if settings.batch_size is not None:
                step = MiniBatchADMM(X, T, sizes, loss, settings, kernels, rng, init, comm, nonzero)
            else:
                step = FullBatchADMM(X, T, sizes, loss, settings, kernels, rng, init, comm, row_offset, n_global,
                                     nonzero)
            timings["setup"] = time.perf_counter() - t_setup - timings["compile"]
            used = settings.as_dict()
            used["data_fingerprint"] = _fingerprint(X, y_index)
            used.update(
                hidden=list(hidden), loss=loss, max_iter=max_iter, dtype=fit_dtype.name,
                n_samples=n_global, n_features=int(X.shape[1]), n_classes=int(len(classes)), ranks=comm.size,
                random_state=_validation.random_state_record(random_state),
                validation_fraction=None if X_val is None else float(validation_fraction), n_validation=0 if X_val is None else int(X_val.shape[0]),
            )
            minibatch = settings.batch_size is not None
            plan = _fit.Plan(
                method="admm", max_iter=max_iter, eval_every=settings.eval_every, time_limit=settings.time_limit,
                train_metrics=settings.train_metrics,
                tol=settings.tol, stop_rule="train_loss" if minibatch else "objective",
                n_iter_no_change=settings.n_iter_no_change, verbose=verbose,
                iteration_name="epoch" if minibatch else "iteration",
                divergence_factor=settings.divergence_factor, progress=_progress(step.L),
                progress_keys=PROGRESS_KEYS, callback=callback, checkpoint=checkpoint,
                checkpoint_every=checkpoint_every, divergence_hint=_DIVERGENCE_HINT,
                result_fields=dict(classes=classes, loss=loss, settings=used, intercept=step.intercept),
            )
            data = _fit.Data(y_index, T, step.compact_test(X_test), y_test_index, X_val, y_val_index)
            return _fit.run(step, plan, data, timings, t_setup, resumed=init)
        finally:
            if limits is not None:
                limits.unregister()


_fit.show_settings_keywords(train_admm, ADMMSettings)  # help(train_admm) lists the keywords of **overrides


_DIVERGENCE_HINT = ("Try a larger ridge, smaller beta/gamma ratio or initialization='forward' with a small "
                    "init_scale.")


def _checkpoint_path(checkpoint, every, comm):
    if checkpoint is None:
        return None
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"checkpoint_every must be an integer >= 1, got {every!r}")
    from pathlib import Path

    path = comm.rank_path(Path(checkpoint))
    if path.is_dir():
        raise ValueError(f"checkpoint {path} is a folder; pass a file path such as {path / 'fit.npz'}")
    if not path.parent.is_dir():
        raise ValueError(f"checkpoint folder {path.parent} does not exist; create it or pass another path")
    # Found out now, not after the whole fit: the folder must take a new file (the save writes a
    # temporary file there and renames it into place).
    try:
        with tempfile.TemporaryFile(dir=path.parent):
            pass
    except OSError as exc:
        raise ValueError(
            f"checkpoint folder {path.parent} is not writable ({exc.strerror or exc}); pass a path in a writable folder"
        ) from None
    return path
