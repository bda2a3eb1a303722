"""train_admm: validate the arguments, build the step object of the method (full batch:
``_fullbatch.FullBatchADMM``, Algorithm 1 of Taylor et al. 2016; mini-batch: ``minibatch.MiniBatchADMM``),
run the fit loop (``_fit.run``) and return its Result.  docs/ALGORITHM.md describes both methods.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from . import _admm_core, _backend, _comm, _fit, _losses, _threads, _validation
from ._fit import CheckpointWarning, ConvergenceWarning, DivergenceWarning  # noqa: F401 - public names
from ._fullbatch import FullBatchADMM
from .minibatch import MiniBatchADMM
from ._result import Result
from ._settings import ADMMSettings, divergence_hint

__all__ = ["train_admm", "ADMMSettings", "CheckpointWarning", "ConvergenceWarning", "DivergenceWarning"]

_Problem = FullBatchADMM  # the name tests and benchmarks reach (tests/mpi_worker.py, benchmarks/)


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
        (beta, gamma, initialization, ridge, warm_start_iter, dtype, backend, threads, ...).  A field
        that only the other method uses (``_settings.FULL_BATCH_ONLY``, ``MINI_BATCH_ONLY``), given a
        value other than None or its default, is refused, naming the method it belongs to.
    init : a Result of an earlier fit (``fastadmm.load`` reads one back) to continue from, on the same
        data with the same settings: a setting that would change the method (any field but when the
        fit stops, what it measures and how it runs: ``_settings.RESUME_FREE``, i.e. tol,
        n_iter_no_change, eval_every, train_metrics, time_limit, backend, threads,
        divergence_factor; max_iter and verbose too) is refused, naming it and both values.
    comm : an mpi4py communicator for a data-parallel fit: each rank passes its own rows of X, y
        (and of X_test, y_test) and gets the same weights and history back (see
        ``fastadmm.distributed``).  Mini-batch ADMM (the default) draws its batches over all ranks'
        rows (the shards in rank order), each rank taking its rows of every batch: the fit is one
        process's on the shards concatenated, with the same batch_size and random_state, up to
        rounding.  None = one process.
    checkpoint : a path: every ``checkpoint_every`` iterations, and when the fit stops, the Result so
        far is saved there (atomically; see ``Result.save``).  In a distributed fit, mini-batch
        ADMM's state is the same on every rank and rank 0 saves it to ``path`` (resume it on the
        same number of ranks with the same shards); full-batch ADMM's state is per row, and each
        rank saves its own to ``<path>.rank<k>.npz``.
    checkpoint_every : iterations between two checkpoints.
    validation_fraction : None, or a share in (0, 1) of the training rows to hold out: of every class
        its last round(validation_fraction * n_class) rows (at least one; a class of one sample is
        not held out), so a shuffled X gives a stratified random hold-out.  Their accuracy
        (history "validation_accuracy") is measured at every evaluation; the fit stops ("converged")
        when it has not risen above its best by more than ``tol`` (relative) at ``n_iter_no_change``
        evaluations in a row, and, however it ends, returns the weights of the best one (then
        without the state to resume from, unless the best is the last).  The training-loss rule of
        mini-batch fits is off then.  With ``comm`` each rank holds out the last rows of every class
        of its own shard and the accuracy is over all ranks' held-out rows (so K ranks hold out
        other rows than one process would on the shards concatenated).
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
    a = _validation.check_admm(X, y, X_test=X_test, y_test=y_test, hidden=hidden, loss=loss, max_iter=max_iter,
                               random_state=random_state, callback=callback, settings=settings, overrides=overrides,
                               init=init, comm=comm, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
                               validation_fraction=validation_fraction, verbose=verbose)
    settings = a.settings
    with comm.abort_on_error(collective_through=True):  # a failure on one rank ends all ranks, never a hang
        kernels = _backend.get(settings.backend)

        timings = {k: 0.0 for k in ("setup", "compile", "W", "a", "z", "eval", "train", "total", "allreduce")}
        t_compile = time.perf_counter()
        if hasattr(kernels, "warmup"):
            kernels.warmup()
        timings["compile"] = time.perf_counter() - t_compile

        limits = _threads.limit(settings.threads) if settings.threads is not None else None
        try:
            if settings.batch_size is not None:  # targets read a batch at a time: no N-sized array
                T = _losses.ClassTargets(a.y_index, len(a.classes), a.dtype, a.loss)
                step = MiniBatchADMM(a.X, T, a.sizes, a.loss, settings, kernels, a.rng, init, comm, a.nonzero,
                                     a.y_index)
            else:
                T = _losses.targets(a.y_index, len(a.classes), a.dtype, a.loss)
                step = FullBatchADMM(a.X, T, a.sizes, a.loss, settings, kernels, a.rng, init, comm, a.row_offset,
                                     a.n_global, a.nonzero)
            timings["setup"] = time.perf_counter() - t_setup - timings["compile"]
            used = settings.as_dict()
            used["data_fingerprint"] = a.fingerprint
            used.update(
                hidden=list(a.hidden), loss=a.loss, max_iter=a.max_iter, dtype=a.dtype.name,
                n_samples=a.n_global, n_features=int(a.X.shape[1]), n_classes=int(len(a.classes)), ranks=comm.size,
                random_state=_validation.random_state_record(random_state),
                validation_fraction=None if a.X_val is None else float(validation_fraction),
                n_validation=0 if a.X_val is None else int(sum(comm.allgather(int(a.X_val.shape[0])))),
            )
            minibatch = settings.batch_size is not None
            plan = _fit.Plan(
                method="admm", max_iter=a.max_iter, eval_every=settings.eval_every, time_limit=settings.time_limit,
                train_metrics=settings.train_metrics,
                tol=settings.tol, stop_rule="train_loss" if minibatch else "objective",
                n_iter_no_change=settings.n_iter_no_change, verbose=a.verbose,
                iteration_name="epoch" if minibatch else "iteration",
                divergence_factor=settings.divergence_factor, progress=_admm_core.progress(step.L),
                progress_keys=_admm_core.PROGRESS_KEYS, callback=callback, checkpoint=a.checkpoint,
                checkpoint_every=checkpoint_every, divergence_hint=divergence_hint(settings.batch_size),
                result_fields=dict(classes=a.classes, loss=a.loss, settings=used, intercept=step.intercept),
            )
            data = _fit.Data(a.y_index, T, step.compact_test(a.X_test), a.y_test_index, a.X_val, a.y_val_index)
            return _fit.run(step, plan, data, timings, t_setup, resumed=init)
        finally:
            if limits is not None:
                limits.unregister()


_fit.show_settings_keywords(train_admm, ADMMSettings)  # help(train_admm) lists the keywords of **overrides
