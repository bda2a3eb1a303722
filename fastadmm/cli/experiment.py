"""The run of the command: signals, the experiment (every method once per seed on the same data),
the files written at the end whatever happened, and ``main``; ``run`` is the same from Python."""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np

from . import training
from .args import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, PROG, UsageError, build_parser, check_args,
                   n_outputs, to_argv)
from .. import _threads
from .._comm import Communicator, SingleProcess, message_line
from .digits import Digits, agree, load_digits, load_digits_distributed, world
from .plots import plot_curves
from .report import (aggregate, definitions, footer, format_table, jsonable, summarize, write_results,
                     zero_output_loss)

SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


class Signals:
    """SIGINT, SIGTERM and SIGHUP for the whole run, so that what was computed is always written.

    While loading: the first signal stops at once (nothing computed yet). While training: the first
    asks the fit to stop after its current iteration (the progress callback answers True) and no
    further fit starts; the second is only reported; the third abandons the current fit
    (KeyboardInterrupt). While writing: ignored (the files are written atomically anyway).
    """

    def __init__(self):
        self.received: list = []
        self.mode = "load"
        self.previous: dict = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in SIGNALS:
            with contextlib.suppress(ValueError, OSError):
                self.previous[sig] = signal.signal(sig, self.handler)

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            with contextlib.suppress(ValueError, OSError, TypeError):
                signal.signal(sig, handler)
        self.previous.clear()

    def reclaim(self) -> None:
        """Take SIGINT back from a trainer's own handler (called from the progress callback)."""
        if signal.SIGINT in self.previous and threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError, OSError):
                if signal.getsignal(signal.SIGINT) is not self.handler:
                    signal.signal(signal.SIGINT, self.handler)

    def handler(self, signum, frame) -> None:
        self.received.append(signum)
        name = signal.Signals(signum).name
        if self.mode == "write":
            return
        if self.mode == "load":
            raise KeyboardInterrupt
        count = len(self.received)
        if count == 1:
            print(f"\n{name}: stopping after the current iteration, then writing the results", file=sys.stderr,
                  flush=True)
        elif count == 2:
            print(f"\n{name}: still stopping; a third signal abandons the current fit", file=sys.stderr, flush=True)
        else:
            raise KeyboardInterrupt

    @property
    def first(self) -> Optional[int]:
        return self.received[0] if self.received else None

    def exit_code(self) -> int:
        return EXIT_INTERRUPTED if self.first in (None, signal.SIGINT) else 128 + int(self.first)


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


def _versions() -> dict:
    """The versions of this fastadmm (its own __version__), Python and the installed dependencies."""
    from .. import __version__

    names = ("numpy", "scipy", "numba", "Cython", "threadpoolctl", "matplotlib", "tqdm", "mlxtend", "pooch", "mpi4py")
    out = {"python": platform.python_version(), "platform": platform.platform(), "fastadmm": __version__}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _threadpools() -> list:
    from threadpoolctl import threadpool_info

    return threadpool_info()


class Experiment:
    """One run of the command: what it has so far, so that a signal can still write it."""

    def __init__(self, args, argv, ranks: Communicator, signals: Optional[Signals] = None, write: bool = True):
        self.args, self.ranks, self.signals, self.write = args, ranks, signals or Signals(), write
        self.out: Optional[Path] = None
        self.digits: Optional[Digits] = None
        self.runs: list = []  # (method, seed, Result)
        self.notes: list = []
        self.skipped: dict = {}  # method -> why (a method none of whose seeds ran)
        self.init = None
        self.zero_loss: Optional[float] = None
        self.report = {"command": [PROG, *argv], "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                       "settings": {"cli": {k: jsonable(v) for k, v in vars(args).items()}}}

    def say(self, text: str = "", err: bool = False) -> None:
        if self.ranks.root:
            print(text, file=sys.stderr if err else sys.stdout, flush=True)

    def prepare(self) -> None:
        args, ranks = self.args, self.ranks
        if self.write:
            self.out = agree(ranks, lambda: prepare_out(args.out) if ranks.root else Path(args.out).expanduser())
        self.digits = load_digits_distributed(args, ranks) if args.distributed else load_digits(args)
        self.report["data"] = dict(self.digits.info, split_kind=self.digits.split)
        agree(ranks, lambda: training.check_memory(args, self.digits, ranks))
        self.init = agree(ranks, lambda: training.load_init(args, ranks))
        self.say(self.digits.line)
        self.zero_loss = self._zero_loss()

    def _zero_loss(self) -> float:
        classes = np.asarray(self.args.classes)
        y = np.searchsorted(classes, self.digits.y_train)
        ones, n = int(np.sum(y == 1)), int(y.shape[0])
        counts = self.ranks.allgather((ones, n))
        ones, n = sum(c[0] for c in counts), sum(c[1] for c in counts)
        return zero_output_loss(self.args.loss, np.r_[np.ones(ones), np.zeros(n - ones)], len(classes))

    @property
    def loss_threshold(self) -> float:
        return self.args.loss_fraction * self.zero_loss

    def _stop(self) -> bool:
        """Stop the current fit? (a signal; under MPI every rank answers the same)."""
        self.signals.reclaim()
        return any(self.ranks.allgather(bool(self.signals.received)))

    def train(self) -> None:
        args = self.args
        methods = list(args.methods)
        if args.distributed:
            for m in methods[:]:
                if m != "admm":
                    self.skipped[m] = "not run: --distributed trains ADMM only (run without it for the comparison)"
                    methods.remove(m)
        self.signals.mode = "train"
        with _threads.limited(args.threads):
            for seed in args.seeds:
                for method in methods:
                    if self.stopping:
                        self.notes.append(f"{method} seed {seed} not run: interrupted")
                        continue
                    self.runs.append((method, seed, self._guarded(lambda: self._fit(method, seed))))

    def _fit(self, method: str, seed: int):
        if method == "admm":
            return training.train_admm_run(self.args, self.digits, self.ranks, self.out, self.init, self.notes,
                                            seed, stop=self._stop)
        return training.train_gradient_run(method, self.args, self.digits, self.notes, seed, stop=self._stop)

    @property
    def stopping(self) -> bool:
        return bool(self.signals.received) or any(str(r.status) == "interrupted" for _, _, r in self.runs)

    def _guarded(self, step):
        """A trainer's ValueError/TypeError/MemoryError is a usage error (one line). Not under MPI: there an
        error raised on one rank only must abort every rank (see _main: ranks.abort_on_error)."""
        if self.ranks.size > 1:
            return step()
        try:
            return step()
        except (ValueError, TypeError, ImportError) as exc:
            raise UsageError(message_line(exc)) from None
        except MemoryError:
            raise UsageError(f"--hidden {' '.join(map(str, self.args.hidden))}: out of memory during the fit; "
                             "give smaller layers") from None

    def finish(self, status: str) -> int:
        """Print the table (rank 0), write the files, return the exit status."""
        self.signals.mode = "write"
        interrupted = status == "interrupted"
        code = self.signals.exit_code() if interrupted else EXIT_OK
        if not self.ranks.root:
            return code
        args = self.args
        n_test = int(self.report.get("data", {}).get("n_test") or 0)
        runs = []
        if self.zero_loss is not None:
            runs = [summarize(r, targets=args.accuracy_targets, loss_threshold=self.loss_threshold, n_test=n_test,
                              seed=seed, label=method) for method, seed, r in self.runs]
        if self.signals.received:
            name = signal.Signals(self.signals.first).name
            for s in runs:
                if s["status"] == "interrupted":
                    s["message"] = f"stopped by {name} after iteration {s['iterations']}"
        summary = aggregate(runs)
        for note in self.notes:
            self.say(f"note: {note}", err=True)
        if runs or self.skipped:
            self.say(format_table(summary, self.skipped, targets=args.accuracy_targets, loss_name=args.loss,
                                  loss_threshold=self.loss_threshold if self.zero_loss is not None else float("nan"),
                                  n_test=n_test, n_seeds=len(args.seeds)))
        if runs:
            self.say(footer(loss_name=args.loss, zero_loss=self.zero_loss, fraction=args.loss_fraction,
                            n_test=n_test, n_seeds=len(args.seeds)))
        for method, why in self.skipped.items():
            self.say(f"{method.upper()}: {why}")
        if interrupted:
            what = signal.Signals(self.signals.first).name if self.signals.received else "Ctrl-C"
            self.say(f"interrupted ({what}): writing what there is; exit status {code}", err=True)
        self.report.update(
            status=status, signal=signal.Signals(self.signals.first).name if self.signals.received else None,
            finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            definitions=definitions(loss_name=args.loss, zero_loss=self.zero_loss, fraction=args.loss_fraction,
                                    targets=args.accuracy_targets),
            summary=summary, skipped=self.skipped, notes=self.notes,
            runs=[dict(s, history=r.history, timings=r.timings, settings=r.settings)
                  for s, (_, _, r) in zip(runs, self.runs)],
            environment={"versions": _versions(), "threadpools": _threadpools(), "ranks": self.ranks.size},
        )
        if self.out is None:
            return code
        if interrupted and not self.runs:
            self.say(f"nothing was computed: nothing written (files already in {self.out} are left as they were)",
                     err=True)
            return code
        try:
            written = []
            if self.runs:
                histories: dict = {}
                for method, _, r in self.runs:
                    histories.setdefault(method.upper(), []).append(r.history)
                written.append(plot_curves(self.out / "curves.png", histories, self._title(),
                                           loss_name=args.loss, loss_threshold=self.loss_threshold,
                                           targets=args.accuracy_targets))
            written.append(write_results(self.out, self.report))
        except OSError as exc:
            print(f"{PROG}: error: could not write the results to {self.out}: {message_line(exc)}", file=sys.stderr)
            return EXIT_FAILED
        if args.checkpoint_every:
            written += sorted({training.checkpoint_path(args, self.out, s) for _, s, _ in self.runs})
        self.say("wrote " + ", ".join(str(p) for p in written))
        return code

    def _title(self) -> str:
        d, args = self.report.get("data", {}), self.args
        what = "all ten digits" if len(args.classes) == 10 else "digits " + " ".join(map(str, args.classes))
        seeds = (f"seed {args.seeds[0]}" if len(args.seeds) == 1 else
                 f"{len(args.seeds)} seeds: median, band min-max")
        net = "-".join(map(str, [self.digits.X_train.shape[1], *args.hidden, n_outputs(args)]))
        return (f"MNIST {what}, {d.get('n_train', 0):,} train / {d.get('n_test', 0):,} test, {net}, {args.loss}, "
                f"{seeds}")


def main(argv=None) -> int:
    """Run the experiment; returns the exit status: 0 done (whatever the statuses in the table), 1 the
    results could not be written, 2 a bad argument, unusable data or an error raised by a trainer (one
    line, no traceback), 130 Ctrl-C, 143 SIGTERM, 129 SIGHUP (after writing what there is)."""
    command = argv is None  # the command itself: a late signal must not kill it after the files are written
    argv = list(sys.argv[1:] if argv is None else argv)
    signals = Signals()
    signals.install()
    try:
        return _main(argv, signals)
    finally:
        if command:  # ignored (SIG_IGN survives the interpreter's shutdown) until it exits with our status
            for sig in SIGNALS:
                with contextlib.suppress(ValueError, OSError):
                    signal.signal(sig, signal.SIG_IGN)
        else:
            signals.restore()


def _main(argv, signals: Signals) -> int:
    from ..data import DataError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or an argument argparse rejected (2, message printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        return signals.exit_code()
    try:
        check_args(args)
        ranks = world() if args.distributed else SingleProcess()
    except UsageError as exc:
        return _usage(exc)
    experiment = Experiment(args, argv, ranks, signals)
    try:
        # Under MPI any exception but an agreed UsageError ends every rank (one line naming the rank).
        with ranks.abort_on_error(agreed=(UsageError,)):
            experiment.prepare()
            experiment.train()
    except UsageError as exc:
        return _usage(exc) if ranks.root else EXIT_USAGE
    except DataError as exc:  # raised outside the loaders' own handling: still a data problem
        return _usage(UsageError(f"data: {message_line(exc)}")) if ranks.root else EXIT_USAGE
    except KeyboardInterrupt:  # loading, a trainer's own second Ctrl-C, or a third signal
        return experiment.finish("interrupted")
    return experiment.finish("interrupted" if experiment.stopping else "done")


def _usage(exc: UsageError) -> int:
    """One line 'error: ...' on stderr (argparse's own errors also print the usage); exit status 2."""
    print(f"{PROG}: error: {exc}", file=sys.stderr)
    return EXIT_USAGE


def run(*, out=None, quiet: bool = True, **options) -> dict:
    """The experiment from Python: ``run(seeds=[0, 1, 2], data_dir="~/mnist", methods=["admm", "gd"])``.

    Keyword arguments are the command's options (``seeds=`` for ``--seeds``, ``hidden=(100, 50, 10)``,
    ``no_download=True``, ...). Returns what results.json holds (a dict: ``runs`` one entry per seed and
    method, ``summary`` the median and range per method, ``definitions``); ``out`` = a folder also gets
    results.json and curves.png, None writes nothing. Bad arguments or data raise UsageError (a
    ValueError); ``distributed`` is for the command only.
    """
    if options.get("distributed"):
        raise UsageError("distributed: start the command under mpiexec instead")
    argv = to_argv(dict(options, quiet=quiet, out=out))
    parser = build_parser()
    parser.raise_errors = True
    args = parser.parse_args(argv)
    check_args(args)
    experiment = Experiment(args, argv, SingleProcess(), write=out is not None)
    experiment.prepare()
    try:
        experiment.train()
    except KeyboardInterrupt:
        experiment.finish("interrupted")
        raise
    code = experiment.finish("interrupted" if experiment.stopping else "done")
    if code == EXIT_FAILED:
        raise OSError(f"could not write the results to {out}")
    return experiment.report
