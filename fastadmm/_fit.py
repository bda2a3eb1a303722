"""The fit loop of train_admm and train_sgd: evaluation, history, stop rules, status, Ctrl-C, time
limit, callback, checkpoints and warnings, written once.

A method is a *step object* (``_step.Step``), its buffers and update steps (no validation, no
loop); :func:`run` checks a step against that protocol, drives it and returns the Result, whose
state is the step's own ``to_state()`` with its ``kind``.

:func:`run` drives one and returns the Result.  In a distributed fit every stop decision is taken on
globally reduced numbers (one all-reduce per iteration: the sweep's sums, the evaluation counts, the
clock and the Ctrl-C flags), so all ranks stop together.

The stop rules (besides max_iter, time_limit, Ctrl-C and the callback):

* ``Plan.stop_rule="objective"`` (full-batch ADMM): converged when the objective's relative change
  and the output residual are both below ``tol`` at one iteration; stopping at max_iter (or the time
  limit) before that issues a :class:`ConvergenceWarning`.
* ``Plan.stop_rule="train_loss"`` (mini-batch ADMM, SGD, GD), the rule of scikit-learn's MLP with
  a relative ``tol``: converged when the training loss the history records (the epoch's running loss
  by default) has not fallen below ``best * (1 - tol)``, best the lowest so far, at
  ``n_iter_no_change`` evaluations in a row (Keras' ``patience``; scikit-learn's MLP waits for one
  more).  Reaching max_iter epochs is an ordinary end: no warning.
* With validation rows (``Data.X_val``), instead of the training-loss rule: converged when their
  accuracy has not risen above ``best * (1 + tol)`` at ``n_iter_no_change`` evaluations in a row;
  whatever ends the fit, the Result holds the weights of the evaluation of the best validation
  accuracy (the first of equals), as scikit-learn's MLP with ``early_stopping`` and Keras'
  ``restore_best_weights`` keep them.

``Plan.verbose`` prints one line per iteration (rank 0 only) and one with the message at the end.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from . import _comm, _linalg, _losses
from ._step import Step, missing_members, state_of
from ._interrupt import deferred_sigint
from ._result import Result, Status

HISTORY_KEYS = ("iteration", "elapsed", "train_loss", "train_accuracy", "test_accuracy")
VALIDATION_KEY = "validation_accuracy"  # in the history of a fit with validation rows, after test_accuracy
STOP_RULES = ("objective", "train_loss")


class ConvergenceWarning(UserWarning):
    """The fit stopped at max_iter (or the time limit) before meeting the tolerance."""


class DivergenceWarning(RuntimeWarning):
    """The iterates became non-finite or blew up; the last finite weights were kept."""


class CheckpointWarning(RuntimeWarning):
    """A checkpoint could not be written; the fit went on and its Result was still returned."""


@dataclass(frozen=True)
class Progress:
    """What a method reports after an iteration, from the reduced sums of its sweep."""

    fields: dict  # this iteration's history entries (e.g. objective, residuals, penalties)
    objective: Optional[float] = None  # judged by the divergence and convergence rules (None: no such rule)
    residual: Optional[float] = None  # a relative residual that must also be below tol to converge


@dataclass
class Plan:
    """How to run a step object: the schedule, the stop rules and what the Result says."""

    method: str  # Result.method: "admm", "sgd" or "gd"
    max_iter: int  # iterations in this call (a resumed fit runs this many more)
    eval_every: int  # evaluate every this many iterations; 0 = never (unless eval_last)
    result_fields: dict  # the Result's fixed fields: classes, loss, settings, intercept
    eval_last: bool = False  # also evaluate the last iteration and the one a stop ends on
    # "full": the training metrics from a forward pass over X with the iteration's final weights;
    # "running": the step's running_counts() (the mean over the sweep's batches, no extra pass)
    train_metrics: str = "full"
    time_limit: Optional[float] = None  # seconds of training (evaluation excluded)
    tol: float = 0.0  # the stop rule's tolerance (see stop_rule); 0 = no rule (validation: any gain counts)
    # "objective": converged when the objective's relative change and the residual are below tol (a
    # ConvergenceWarning at max_iter); "train_loss": converged when the training loss has not improved
    # on its best by more than tol (relative) at n_iter_no_change evaluations in a row (no warning)
    stop_rule: str = "objective"
    n_iter_no_change: int = 10  # evaluations without improvement that stop the fit (train_loss, validation)
    verbose: int = 0  # > 0: print a line per iteration (rank 0)
    iteration_name: str = "iteration"  # what the verbose lines call an iteration ("epoch" for mini-batches)
    divergence_factor: float = math.inf  # diverged when |objective| exceeds its first value this many times
    progress: Optional[Callable[[np.ndarray, object], Progress]] = None  # (reduced sums, info) -> Progress
    progress_keys: tuple = ()  # the history keys Progress.fields fills
    callback: Optional[Callable[[dict], Optional[bool]]] = None
    checkpoint: Optional[Path] = None
    checkpoint_every: int = 10
    divergence_hint: str = ""  # advice appended to the DivergenceWarning


@dataclass
class Data:
    """This rank's labels, targets and test rows (the training rows are the step object's X)."""

    y_index: np.ndarray
    T: np.ndarray
    X_test: Optional[np.ndarray] = None
    y_test_index: Optional[np.ndarray] = None
    # Validation rows held out of the training set (at the user's width and any float dtype): their
    # accuracy is measured at every evaluation with the full-width weights, judged by the validation
    # rule, and the weights of its best are the Result's.
    X_val: Optional[np.ndarray] = None
    y_val_index: Optional[np.ndarray] = None


def new_history(plan: Plan, resumed: Optional[Result] = None, validation: bool = False) -> dict:
    keys = (*HISTORY_KEYS[:2], *plan.progress_keys, *HISTORY_KEYS[2:], *((VALIDATION_KEY,) if validation else ()))
    if resumed is not None:
        n = len(resumed.history.get("iteration", []))
        # a key the resumed fit did not record (validation_accuracy) is NaN for its iterations
        return {k: list(resumed.history.get(k, [math.nan] * n)) for k in keys}
    return {k: [] for k in keys}


def run(step, plan: Plan, data: Data, timings: dict, t_start: float, resumed: Optional[Result] = None) -> Result:
    """Iterate `step` until a stop rule holds; return the Result (saved to plan.checkpoint, if any)."""
    if not isinstance(step, Step):
        raise TypeError(f"{type(step).__name__} is not a fit step object: it lacks {missing_members(step)}")
    return _Fit(step, plan, data, timings, t_start, resumed).run()


@dataclass
class _Stop:
    status: Status
    message: str
    warn: bool = False  # a UserWarning says so (Ctrl-C or a KeyboardInterrupt)


class _Fit:
    def __init__(self, step, plan, data, timings, t_start, resumed):
        self.step, self.plan, self.data, self.timings, self.t_start = step, plan, data, timings, t_start
        self.comm = step.comm
        self.validation = data.X_val is not None
        self.history = new_history(plan, resumed, self.validation)
        h = self.history
        self.elapsed0 = h["elapsed"][-1] if h["elapsed"] else 0.0
        self.previous_objective = h["objective"][-1] if h.get("objective") else None
        self.first_objective = None
        self.start = step.iteration
        self.good = (step.iteration, step.compact_weights())  # the last finite weights and their iteration
        self.train_time = 0.0
        self.consistent = True  # False while a sweep runs: its state is half updated
        self.stop = _Stop(Status.MAX_ITER, f"stopped at max_iter={plan.max_iter}")
        # The training-loss and validation rules: the best value so far, evaluations since it improved
        # by more than tol, and (validation) the iteration and weights of the best accuracy.
        self.best_loss, self.loss_no_change = math.inf, 0
        self.best_score, self.score_no_change, self.best = -math.inf, 0, None

    # -- the loop ---------------------------------------------------------------------------------
    def run(self) -> Result:
        try:
            with deferred_sigint() as flag:
                for _ in range(self.plan.max_iter):
                    stop = self._iterate(flag)
                    if stop is not None:
                        self.stop = stop
                        break
        except KeyboardInterrupt:  # a second Ctrl-C: keep the fit (one process; ranks cannot agree here)
            if self.comm.distributed:
                raise
            self.stop = _Stop(Status.INTERRUPTED, f"interrupted (KeyboardInterrupt) after iteration {self.good[0]}",
                              warn=True)
            shortest = min(len(v) for v in self.history.values())
            for v in self.history.values():
                del v[shortest:]
        self.timings["train"] += self.train_time
        self._warn()
        result = self._result(final=True)
        if self.plan.checkpoint is not None and result.state is not None:
            reason = _save_checkpoint(result, self.plan.checkpoint)
            if reason is not None:
                result = dataclasses.replace(result, message=f"{result.message}; {reason}")
        if self.best is not None:
            result = self._keep_best(result)
        if self.plan.verbose and self.comm.root:
            print(f"{self.plan.method.upper()}: {result.message}", flush=True)
        return result

    def _keep_best(self, result: Result) -> Result:
        """The Result with the weights of the best validation accuracy (the checkpoint, if any, keeps
        the last iteration's, with its state)."""
        k, weights = self.best
        name = self.plan.iteration_name
        if k == result.n_iter:
            return dataclasses.replace(
                result, message=f"{result.message}; the last {name}'s weights have the best validation accuracy "
                                f"({self.best_score:.4f})")
        return dataclasses.replace(
            result, weights=self.step.full_width(weights), state=None,
            message=(f"{result.message}; kept the weights of {name} {k}, the best validation accuracy "
                     f"({self.best_score:.4f}); no state to resume from (it belongs to {name} {result.n_iter})"))

    def _iterate(self, flag) -> Optional[_Stop]:
        """One iteration: sweep, reduce, judge, record, call back; a _Stop when the fit ends here."""
        step, plan = self.step, self.plan
        t0 = t_iteration = time.perf_counter()
        self.consistent = False
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                sums, info = step.sweep(self.timings)
        except (_linalg.NonFiniteError, np.linalg.LinAlgError) as exc:
            # Raised only on globally reduced (identical) quantities: every rank stops here.
            self.consistent = True
            return _Stop(Status.DIVERGED, f"iteration {step.iteration + 1}: {exc}")
        self.consistent = True
        self.train_time += time.perf_counter() - t0
        k, done = step.iteration, step.iteration - self.start
        weights = step.compact_weights()
        evaluate = (bool(plan.eval_every) and done % plan.eval_every == 0) or (plan.eval_last and done == plan.max_iter)
        counts = self._evaluate(weights) if evaluate else self._no_counts()
        # One reduction per iteration: the sweep's sums, the evaluation counts, the clock and the flags.
        sums = np.asarray(sums, dtype=np.float64)
        total = self.comm.allreduce(np.concatenate([sums, counts, [self.train_time, float(bool(flag))]]))
        sums, counts, (seconds, flags) = total[: sums.size], total[sums.size : -2], total[-2:]
        seconds /= self.comm.size
        progress = plan.progress(sums, info) if plan.progress is not None else None
        why = self._divergence(progress, weights)
        if why:
            return _Stop(Status.DIVERGED, f"iteration {k}: {why}")
        time_over = plan.time_limit is not None and seconds >= plan.time_limit
        converged = self._converged(progress, k)
        if plan.eval_last and not evaluate and (flags or time_over or converged):
            counts, evaluate = self.comm.allreduce(self._evaluate(weights)), True  # once, at the end
        if evaluate and not math.isfinite(counts[0]):
            return _Stop(Status.DIVERGED, f"iteration {k}: the training loss is {counts[0] / counts[2]}")
        self.good = (k, weights)
        record = None
        if progress is not None or evaluate:
            record = self._record(k, self.elapsed0 + seconds, progress, counts if evaluate else None)
        plateau = self._plateau(record, k, weights) if evaluate else None
        if plan.verbose and self.comm.root:
            self._print(k, record if evaluate else None, time.perf_counter() - t_iteration)
        if plan.checkpoint is not None and done % plan.checkpoint_every == 0:
            _save_checkpoint(self._result(final=False, stop=_Stop(Status.INTERRUPTED, f"checkpoint at iteration {k}")),
                             plan.checkpoint)
        if plan.callback is not None and record is not None:
            view = dict(record)
            view["weights"] = lambda w=weights: [np.array(W) for W in step.full_width(w)]
            answer, keyboard = _comm.callback_answer(self.comm, plan.callback, view)
            if answer:
                return _Stop(Status.INTERRUPTED, f"the callback {answer} at iteration {k}", warn=keyboard)
        if flags or (not self.comm.distributed and flag):
            return _Stop(Status.INTERRUPTED, f"interrupted (Ctrl-C) after iteration {k}", warn=True)
        if time_over:
            return _Stop(Status.TIME_LIMIT, f"time_limit={plan.time_limit} s reached after iteration {k}")
        if converged:
            return _Stop(Status.CONVERGED, converged)
        if plateau:
            return _Stop(Status.CONVERGED, plateau)
        if progress is not None:
            self.previous_objective = progress.objective
        return None

    # -- evaluation -------------------------------------------------------------------------------
    def _no_counts(self):
        X_test, X_val = self.data.X_test, self.data.X_val
        return np.array([0.0, 0.0, self.step.X.shape[0], 0.0, 0 if X_test is None else X_test.shape[0], 0.0,
                         0 if X_val is None else X_val.shape[0]])

    def _evaluate(self, weights) -> np.ndarray:
        """[summed loss, correct, rows] on this rank's training rows, [correct, rows] on its test rows and
        [correct, rows] on its validation rows."""
        t0 = time.perf_counter()
        step, data, loss = self.step, self.data, self.plan.result_fields["loss"]
        loss_sum, correct = 0.0, 0
        if self.plan.train_metrics == "running":
            loss_sum, correct = step.running_counts()
            blocks = ()
        else:
            blocks = step.train_outputs(weights)
        with np.errstate(over="ignore", invalid="ignore"):
            for rows, out in blocks:
                correct += int(np.sum(_losses.predict_index(out) == data.y_index[rows]))
                loss_sum += _losses.loss_sum(out, data.T[rows], loss)
            test_correct, n_test = 0, 0
            if data.X_test is not None:
                n_test = data.X_test.shape[0]
                for rows, out in step.test_outputs(weights, data.X_test):
                    test_correct += int(np.sum(_losses.predict_index(out) == data.y_test_index[rows]))
            val_correct, n_val = 0, 0
            if data.X_val is not None and data.X_val.shape[0]:  # what Result.predict would answer for these weights
                n_val = data.X_val.shape[0]
                full = step.full_width(weights)
                dt = np.float32 if full[0].dtype == np.float32 and data.X_val.dtype == np.float32 else np.float64
                full = [np.asarray(W, dtype=dt) for W in full]
                for rows, out in _losses.forward_blocks(full, np.asarray(data.X_val, dtype=dt), step.intercept):
                    val_correct += int(np.sum(_losses.predict_index(out) == data.y_val_index[rows]))
        self.timings["eval"] += time.perf_counter() - t0
        return np.array([loss_sum, correct, step.X.shape[0], test_correct, n_test, val_correct, n_val],
                        dtype=np.float64)

    def _record(self, k, elapsed, progress, counts) -> dict:
        nan = float("nan")
        record = dict(iteration=k, elapsed=elapsed)
        if progress is not None:
            record.update(progress.fields)
        loss_sum, correct, n, test_correct, n_test, val_correct, n_val = counts if counts is not None else (nan,) * 7
        record.update(train_loss=loss_sum / n, train_accuracy=correct / n,
                      test_accuracy=test_correct / n_test if counts is not None and n_test else nan)
        if self.validation:
            record[VALIDATION_KEY] = val_correct / n_val if counts is not None and n_val else nan
        for key, column in self.history.items():
            column.append(record[key])
        return record

    # -- the stop rules ---------------------------------------------------------------------------
    def _divergence(self, progress, weights) -> Optional[str]:
        if progress is not None and progress.objective is not None:
            objective = progress.objective
            if not math.isfinite(objective):
                return f"the objective is {objective}"
            if self.first_objective is None:
                self.first_objective = abs(objective) if objective != 0 else 1.0
            elif abs(objective) > self.plan.divergence_factor * self.first_objective:
                return f"the objective grew from {self.first_objective:.3g} to {objective:.3g}"
        if not all(np.isfinite(W).all() for W in weights):
            return "a weight became NaN or infinite"
        return None

    def _converged(self, progress, k) -> Optional[str]:
        """The message when the objective's relative change and the residual are both below tol
        (plan.stop_rule "objective")."""
        tol = self.plan.tol
        if self.plan.stop_rule != "objective" or tol <= 0 or progress is None or progress.objective is None or self.previous_objective is None:
            return None
        objective = progress.objective
        change = abs(objective - self.previous_objective) / max(abs(objective), 1e-30)
        residual = progress.residual if progress.residual is not None else 0.0
        if change < tol and residual < tol:
            return f"converged at iteration {k} (objective change {change:.2e}, residual {residual:.2e})"
        return None

    def _plateau(self, record, k, weights) -> Optional[str]:
        """The training-loss rule (plan.stop_rule "train_loss", without validation rows) or the
        validation rule, judged at an evaluation: the message when it stops the fit, else None.  Keeps
        the weights of the best validation accuracy."""
        plan, name = self.plan, self.plan.iteration_name
        tol, patience = plan.tol, plan.n_iter_no_change
        if self.validation:
            score = record[VALIDATION_KEY]
            if not math.isfinite(score):
                return None
            improved = score > self.best_score + tol * abs(self.best_score) if self.best is not None else True
            if self.best is None or score > self.best_score:
                self.best_score, self.best = score, (k, weights)
            self.score_no_change = 0 if improved else self.score_no_change + 1
            if self.score_no_change >= patience:
                return (f"converged at {name} {k}: the validation accuracy has not risen above its best "
                        f"({self.best_score:.4f}) by more than tol={tol:g} (relative) for {patience} {name}s")
            return None
        if plan.stop_rule != "train_loss":
            return None
        loss = record["train_loss"]
        if not math.isfinite(loss):
            return None
        improved = loss < self.best_loss - tol * abs(self.best_loss) if math.isfinite(self.best_loss) else True
        self.best_loss = min(self.best_loss, loss)
        self.loss_no_change = 0 if improved else self.loss_no_change + 1
        if tol > 0 and self.loss_no_change >= patience:
            return (f"converged at {name} {k}: the training loss has not fallen below its best ({self.best_loss:.6g}) "
                    f"by more than tol={tol:g} (relative) for {patience} {name}s")
        return None

    def _print(self, k, record, seconds) -> None:
        """One line of verbose output: the iteration, what its evaluation measured, and its seconds
        (training and evaluation)."""
        parts = [f"{self.plan.iteration_name} {k:>{len(str(self.start + self.plan.max_iter))}}"]
        if record is not None:
            for key, label, fmt in (("train_loss", "loss", ".5g"), ("train_accuracy", "accuracy", ".4f"),
                                    (VALIDATION_KEY, "validation accuracy", ".4f"),
                                    ("test_accuracy", "test accuracy", ".4f")):
                value = record.get(key, math.nan)
                if math.isfinite(value):
                    parts.append(f"{label} {value:{fmt}}")
        parts.append(f"{seconds:.2f} s")
        print(", ".join(parts), flush=True)

    # -- the Result -------------------------------------------------------------------------------
    def _result(self, final: bool, stop: Optional[_Stop] = None) -> Result:
        stop = stop or self.stop
        if final:
            if "allreduce" in self.timings:
                self.timings["allreduce"] = getattr(self.comm, "seconds", 0.0)
            self.timings["total"] = time.perf_counter() - self.t_start
        n_iter, weights = self.good
        # The state must be that of the weights kept: not a diverged one, nor a sweep left half done.
        keep_state = stop.status != Status.DIVERGED and self.consistent and self.step.iteration == n_iter
        return Result(
            status=stop.status, n_iter=n_iter, weights=self.step.full_width(weights), method=self.plan.method,
            history=self.history if final else {k: list(v) for k, v in self.history.items()},
            timings=dict(self.timings), state=state_of(self.step) if keep_state else None, message=stop.message,
            **self.plan.result_fields,
        )

    def _warn(self) -> None:
        stop, plan, label = self.stop, self.plan, self.plan.method.upper()
        if stop.status == Status.DIVERGED:
            warnings.warn(f"{label} diverged ({stop.message}); the last finite weights are kept. {plan.divergence_hint}",
                          DivergenceWarning, stacklevel=5)
        elif stop.status in (Status.MAX_ITER, Status.TIME_LIMIT) and plan.tol > 0 and plan.stop_rule == "objective":
            warnings.warn(f"{label} {stop.message} before reaching tol={plan.tol}", ConvergenceWarning, stacklevel=5)
        elif stop.status == Status.INTERRUPTED and stop.warn:
            warnings.warn(f"{label} {stop.message}; returning the weights so far", UserWarning, stacklevel=5)


def show_settings_keywords(train, settings_class) -> None:
    """Make ``inspect.signature(train)`` (and help()) list each field of `settings_class` as the
    keyword-only parameter that ``**overrides`` accepts, with its default."""
    sig = inspect.signature(train)
    params = [p for p in sig.parameters.values() if p.kind != p.VAR_KEYWORD]
    taken = {p.name for p in params}
    for f in dataclasses.fields(settings_class):
        if f.name not in taken:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default))
    train.__signature__ = sig.replace(parameters=params)


def _save_checkpoint(result: Result, path) -> Optional[str]:
    """Save `result` to `path`; on failure warn and return the reason (the fit is never lost)."""
    try:
        result.save(path)
    except OSError as exc:
        reason = f"the checkpoint could not be written to {path} ({type(exc).__name__}: {exc})"
        warnings.warn(reason + "; the fit goes on and its Result is returned", CheckpointWarning, stacklevel=5)
        return reason
    return None
