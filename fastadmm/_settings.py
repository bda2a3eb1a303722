"""Every setting of an ADMM fit, with its default and the reason for it.

The defaults are the ones measured to work (docs/ABLATION.md); ``ADMMSettings.paper()`` gives the
algorithm exactly as Taylor et al. (2016) published it.  Per-method resolution (``resolved``) and the
rules across settings live here: which fields each method uses (FULL_BATCH_ONLY, MINI_BATCH_ONLY),
which a resumed fit may change (RESUME_FREE), and the divergence advice of each method.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Union

from ._constraints import boolean, check_fields, choice, integer, real

INITS = ("forward", "gaussian", "uniform", "he")
SWEEP_ORDERS = ("residual", "layerwise", "targets_first")
BACKENDS = ("cython", "numba", "numpy")
DTYPES = ("float32", "float64")
PROX_METRICS = ("gram", "identity")
TRAIN_METRICS = ("running", "full")


# The measured defaults of each method, used where a setting is None (docs/ALGORITHM.md, section 6,
# and docs/ABLATION.md for the measurements).
# Mini-batch-only fields, as a full-batch fit records them (they do not apply there).
FIELD_FALLBACK = dict(sweep_order="targets_first", prox=1.0, output_prox=1.0, prox_batch=1, batch_sweeps=1,
                      output_refit=0.0, weight_decay=0.0, center_inputs=False)
FULL_BATCH = dict(
    beta=1.0,  # the paper's penalties, equal in every layer
    gamma=10.0,
    depth_decay=1.0,
    weight_decay=0.0,  # (mini-batch only)
    initialization="forward",
    max_iter=50,  # MNIST 0/1: 99 % test accuracy after 5-9 iterations
)
# Mini-batch ADMM with several output units (multi-class).  Chosen on validation rows (the last 10 % of
# the training rows; never the test images) of ten-digit MNIST (the shared sample, 784-300-10 and
# 784-100-50-10) and MNIST-1D (50,000 samples, 40-100-100-10), seeds 0-2, medians; checked on the
# sample with its one-pixel shifts (113,495 rows).  benchmarks/ablation.py, docs/ABLATION.md.
MINI_BATCH = dict(
    batch_size=128,  # 64 and 256 fit MNIST-1D worse (fewer or noisier steps)
    # W_l first, then a_{l-1} against the new W_l: each layer receives the part of the target the
    # layers above did not take.  "layerwise" (a_{l-1} against the old W_l) lets every layer take the
    # whole target in the same step: it collapses on MNIST-1D for prox < 1 and stalls near 0.65.
    sweep_order="residual",
    initialization="he",
    beta=0.3,  # the output's pull towards the targets: z_L - m = (y - m) / (1 + beta)
    # a-update weight beta_{l+1} / gamma_l = beta / gamma = 10, z-update weight gamma_l / beta_l =
    # gamma / (beta depth_decay) = 1.7: MNIST-1D 0.809 against 0.779 (gamma 0.06) and 0.790 (0.015).
    gamma=0.03,
    depth_decay=0.06,
    prox=0.3,  # the hidden layers' steps: MNIST-1D 0.78 against 0.75 with 1 and 0.69 with 2.5
    output_prox=3.0,  # W_L moves slowly between the epoch's exact refits (0.3: MNIST-1D 0.74)
    prox_batch=128,  # batches of 32 at prox 0.3: MNIST-1D falls 1.7-2.9 points from its best (0.78-0.84 at 1.2)
    batch_sweeps=2,  # MNIST-1D 0.809 against 0.779 with 1; 784-300-10 0.968 against 0.963 (1.6x the epoch)
    weight_decay=1e-4,  # 784-100-50-10 0.9555 against 0.9463 without; MNIST-1D 0.809 against 0.812
    output_refit=1e-3,
    center_inputs=True,
    max_iter=40,  # epochs (MNIST-1D: 0.77 at 20, 0.81 at 40; the stop rule may end a fit sooner)
)
# Mini-batch ADMM with one output unit (two classes, mse or hinge): measured on the MNIST pairs 4-9,
# 3-5 and 7-9 with 784-100-50-10-1 (docs/ABLATION.md), where the multi-class defaults above fall
# a point short (3 vs 5, seed 0: 0.9769, where these give 0.9879-0.9905 over seeds 0-2).
MINI_BATCH_ONE_OUTPUT = dict(
    batch_size=64,  # 64 beat 128, 250 and 500 (smaller batches fit better)
    sweep_order="targets_first",  # "layerwise" with the same settings: 3-5 0.9805 against 0.9900
    initialization="uniform",
    beta=0.3,
    gamma=0.01,  # each constraint 100x weaker than the one above it (gamma 0.1 or 1: 1-2 points worse)
    depth_decay=0.01,
    prox=1.0,  # 1 and 3 equal within noise (7-9, seeds 0-2, 10 epochs), 10 worse
    output_prox=1.0,
    prox_batch=64,  # the batch prox was chosen at
    batch_sweeps=1,
    weight_decay=1e-4,  # 0 and 3e-4 equal within the validation rows' noise
    output_refit=0.0,
    center_inputs=False,  # the pairs 4-9 / 3-5 / 7-9 with it: 0.9854 / 0.9879 / 0.9892 against 0.9859 / 0.9900 / 0.9892
    max_iter=40,  # epochs
)
# Mini-batch ADMM computes in float32 unless dtype is given: measured on every task of docs/ABLATION.md
# (ten digits 784-300-10, 784-100-50-10, 784-100-50-10-10 and the pairs 4-9, 3-5, 7-9; seeds 0-2) the
# same test accuracy as float64 within 0.05 points (medians), at 1.5-1.7x the speed.
MINI_BATCH_DTYPE = "float32"
# The stop rule's tolerance where tol is None (see the tol field).  Full batch: the relative change of
# the objective and the relative output residual (MNIST 0/1 reaches 99 % test accuracy in 5-9 of its
# max_iter=50 sweeps; 1e-6 leaves the rest to run).  Mini-batch: the relative gain of the epoch's
# training loss on its best, scikit-learn's MLP default (1e-4, there an absolute gain), so that a fit
# ends early once n_iter_no_change epochs in a row gain less; a default fit that keeps improving
# runs its max_iter epochs.
FULL_BATCH_TOL = 1e-6
MINI_BATCH_TOL = 1e-4
# The settings each method fills in where a field is None (or batch_size is "auto").
PRESET_FIELDS = ("batch_size", "sweep_order", "initialization", "beta", "gamma", "depth_decay", "prox", "output_prox",
                 "prox_batch", "batch_sweeps", "weight_decay", "output_refit", "center_inputs")

# Fields that one method only uses.  Given to the other method, a value other than None, the field's
# declared default or (for full batch) the value a full-batch fit records for it (FIELD_FALLBACK), they
# are refused, naming the method they belong to (check_method_fields).
FULL_BATCH_ONLY = ("init_scale", "ridge", "warm_start_iter", "multiplier")
MINI_BATCH_ONLY = ("sweep_order", "prox", "output_prox", "prox_batch", "prox_metric", "batch_sweeps", "output_refit", "gram_decay",
                   "weight_decay", "center_inputs")
# Fields a resumed fit may change: when the fit stops, what it measures and how it runs (the iterates
# stay those of the uninterrupted fit).  Every other field, and the fit's dtype, changes the method: a
# resume refuses values other than those its init was trained with (resume_changes).
RESUME_FREE = ("tol", "n_iter_no_change", "eval_every", "train_metrics", "time_limit", "backend", "threads",
               "divergence_factor")


# Advice of the DivergenceWarning: settings of each method that make its steps smaller.
DIVERGENCE_HINTS = {
    "full": "Try a larger ridge, a smaller beta/gamma ratio or initialization='forward' with a small init_scale.",
    "mini": "Try X scaled to about [0, 1], a larger prox and output_prox, a larger weight_decay or dtype='float64'.",
}


def divergence_hint(batch_size) -> str:
    """The DivergenceWarning's advice for the method of `batch_size` (None: full batch)."""
    return DIVERGENCE_HINTS["full" if batch_size is None else "mini"]


def method_name(batch_size) -> str:
    """How messages name the method of `batch_size` (None: full batch)."""
    return "full-batch ADMM (batch_size=None)" if batch_size is None else "mini-batch ADMM (batch_size set)"


def check_method_fields(settings, batch_size) -> None:
    """ValueError naming every field of `settings` given (see FULL_BATCH_ONLY) that the method of
    `batch_size` does not use, and the method it belongs to."""
    other, owner = (MINI_BATCH_ONLY, "mini-batch ADMM") if batch_size is None else (FULL_BATCH_ONLY, "full-batch ADMM")
    declared = {f.name: f.default for f in dataclasses.fields(settings)}
    given = []
    for name in other:
        value = getattr(settings, name)
        if value is None or value == declared[name]:
            continue
        if batch_size is None and name in FIELD_FALLBACK and value == FIELD_FALLBACK[name]:
            continue
        given.append(f"{name}={value!r}")
    if given:
        fix = ("pass a batch_size (or leave it at its default, 'auto') to fit by mini-batches" if batch_size is None
               else "pass batch_size=None for full-batch ADMM")
        raise ValueError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to {owner} only, which "
                         f"{method_name(batch_size)} is not: leave {'it' if len(given) == 1 else 'them'} out, or {fix}")


def resume_changes(recorded: dict, settings, dtype: str) -> list:
    """The settings (as "name: recorded -> now") that differ between a resumed fit's `recorded`
    settings (``Result.settings``) and this call's resolved `settings` computing in `dtype`, other
    than RESUME_FREE; fields the record lacks are not compared."""
    now = {**settings.as_dict(), "dtype": dtype}
    return [f"{name}: {recorded[name]!r} -> {value!r}" for name, value in now.items()
            if name not in RESUME_FREE and name in recorded and recorded[name] != value]


def method_defaults(batch_size, n_outputs: int) -> dict:
    """The measured defaults of full-batch ADMM (batch_size None) or of mini-batch ADMM for a net
    with `n_outputs` output units."""
    if batch_size is None:
        return FULL_BATCH
    return MINI_BATCH_ONE_OUTPUT if n_outputs == 1 else MINI_BATCH


# What each field of ADMMSettings may hold, in field order: checked in one place
# (fastadmm._constraints.check_fields); none=True: None is allowed (the method's measured default).
ADMM_CONSTRAINTS = (
    real("beta", 0, low_open=True, none=True),
    real("gamma", 0, low_open=True, none=True),
    boolean("intercept"),
    choice("initialization", INITS, none=True),
    real("init_scale", 0, low_open=True),
    real("ridge", 0),
    integer("warm_start_iter", 0),
    boolean("multiplier"),
    real("penalty_growth", 1),
    integer("penalty_every", 1),
    real("penalty_max", 0, low_open=True),
    real("tol", 0, none=True),
    integer("n_iter_no_change", 1),
    integer("eval_every", 0),
    choice("train_metrics", TRAIN_METRICS, none=True),
    real("time_limit", 0, low_open=True, none=True),
    choice("dtype", DTYPES, none=True),
    boolean("skip_zero_inputs"),
    choice("backend", BACKENDS),
    integer("threads", 1, none=True),
    real("divergence_factor", 0, low_open=True),
    integer("batch_size", 1, none=True, literals=("auto",)),
    integer("batch_sweeps", 1, none=True),
    real("prox", 0, low_open=True, none=True),
    real("output_prox", 0, low_open=True, none=True),
    integer("prox_batch", 1, none=True),
    choice("prox_metric", PROX_METRICS),
    choice("sweep_order", SWEEP_ORDERS, none=True),
    real("output_refit", 0, none=True),
    real("gram_decay", 0, 1, high_open=True),
    real("depth_decay", 0, low_open=True, none=True),
    real("weight_decay", 0, none=True),
    boolean("center_inputs", none=True),
)


@dataclass
class ADMMSettings:
    """Settings of :func:`fastadmm.train_admm` (pass any field as a keyword)."""

    # Penalty on the linear constraints z_l = W_l a_{l-1} (the output layer's; see depth_decay for
    # the others).  None = the method's measured default (FULL_BATCH / MINI_BATCH below); the paper
    # uses 1 for every layer.
    beta: Optional[float] = None
    # Penalty on the activation constraints a_l = h(z_l) (the last hidden layer's; see depth_decay).
    # None = the method's measured default; the paper uses 10 for every layer.
    gamma: Optional[float] = None
    # Give the first layer a bias: a constant input 1 appended to every sample (its weight is the
    # last column of W_1; later layers carry it through ReLU units).  The paper has no biases
    # (False).  Measured: without it a net cannot put its 0.5 threshold off the origin (a toy
    # problem with boundary x0 + x1 = 0 stalls at 85 % training accuracy, 95 % with it); on MNIST
    # 0/1 the two agree within one test image.
    intercept: bool = True
    # How the fit starts.  Full batch: "forward" = z and a from a forward pass of small random
    # weights (measured: fits MNIST 0/1 to 99 % test accuracy in 5-9 iterations); "gaussian" = unit
    # Gaussian z and a, as in the paper (measured: does not learn MNIST 0/1 within 40 iterations).
    # Mini-batch: "uniform" = PyTorch's default weights and biases U(-1/sqrt(n_in), 1/sqrt(n_in));
    # "he" = N(0, 2/n_in) weights and zero biases.  None = the method's default (FULL_BATCH /
    # MINI_BATCH below).
    initialization: Optional[str] = None
    # Standard deviation of the random weights of initialization="forward".  1e-3 measured best of
    # 1e-4 .. 1e-1 on MNIST 0/1; 1e-2 already fails one seed in three, 5e-2 all three.
    init_scale: float = 1e-3
    # Ridge in every W-update, relative to the mean diagonal of the Gram a a^T:
    # W = z a^T (a a^T + ridge * mean(diag(a a^T)) I)^-1.  0 = the paper's least squares
    # (a pseudo-inverse when the Gram is singular).  1e-2 measured best of 1e-3 .. 1e-1:
    # without it the last layers grow ill-conditioned and the forward pass classifies at chance.
    ridge: float = 1e-2
    # Iterations before the multiplier lam starts to move (the paper's "warm start").
    # Measured: with least squares, updating lam from the first iteration stalls at 97 % test
    # accuracy on MNIST 0/1; after 5 warm iterations it reaches 99.6-99.8 %.
    warm_start_iter: int = 5
    # Update the multiplier lam at all (False = the penalty method without a multiplier).
    multiplier: bool = True
    # Multiply beta and gamma by this factor every `penalty_every` iterations (1 = fixed penalties,
    # as in the paper).  Measured on MNIST 0/1: growth of 1.5 every 2 iterations hurt (97 %).
    penalty_growth: float = 1.0
    # Iterations between two penalty growths.
    penalty_every: int = 10
    # Upper bound of beta and gamma under growth.
    penalty_max: float = 1e4
    # The stop rule (status "converged").  Full batch: the relative change of the objective and the
    # relative output-constraint residual ||z_L - W_L a_{L-1}|| / ||z_L|| are both below tol at one
    # iteration; a fit that reaches max_iter first ends with a ConvergenceWarning.  Mini-batch: the
    # epoch's training loss (history "train_loss") has not fallen below best * (1 - tol), best the
    # lowest so far, at n_iter_no_change evaluations in a row (scikit-learn MLP's rule, with a relative
    # tol); max_iter epochs is an ordinary end (no warning).  With train_admm's validation_fraction the
    # validation accuracy is judged instead: it has not risen above best * (1 + tol).  None = the
    # method's default (FULL_BATCH_TOL, MINI_BATCH_TOL); 0 disables the rule (the fit then runs to
    # max_iter; with validation rows any gain counts as one).
    tol: Optional[float] = None
    # Evaluations (epochs with eval_every=1) without improvement that stop a mini-batch fit, or any
    # fit with validation rows (see tol): 10 as in scikit-learn's MLP (Keras' patience).
    n_iter_no_change: int = 10
    # Compute train/test accuracy every this many iterations (not counted in the training time);
    # 0 = never.
    eval_every: int = 1
    # What the history's train_loss and train_accuracy measure.  "full": a forward pass over the whole
    # training set with the iteration's final weights.  "running" (mini-batch only): the epoch's mean
    # over its batches of each batch's loss and accuracy, from the forward pass that starts the
    # batch's step (the weights before its update), as Keras and scikit-learn's MLP report them: no
    # extra pass (MNIST 0/1: a default call's epoch with its evaluation went from 1.33x to 1.09x the
    # epoch alone, benchmarks/test_bench_time_to_accuracy.py).  None = "full" where it costs no forward pass of its own (full batch; mini-batch with
    # output_refit, whose pass gives the features), else "running".  The test accuracy is always a
    # full pass over X_test.
    train_metrics: Optional[str] = None
    # Wall-clock limit of the iteration loop in seconds (status "time_limit"); None = none.
    time_limit: Optional[float] = None
    # Floating type of every array.  None = mini-batch ADMM: float32 (MINI_BATCH_DTYPE: the same
    # accuracy as float64, measured, at 1.5-1.7x the speed); full batch: float32 if X is float32,
    # else float64.  The Result's weights have this type.
    dtype: Optional[str] = None
    # Leave out input features that are zero in every training sample (MNIST 0/1: 212 of 784
    # pixels) from the two big first-layer products, when at least 10 % of them are: exact (their
    # weights are 0 either way; the ridge keeps its absolute value), at the cost of one compacted
    # copy of X.  Measured on MNIST 0/1: 0.064 -> 0.050 s per float64 iteration; peak memory of a
    # fit at N = 60,000 rises from 1.19x to 1.75x (ADMM state + data).  False = use X as given.
    skip_zero_inputs: bool = True
    # Elementwise kernels: "cython" (compiled at install), "numba" (compiled at first use) or
    # "numpy" (the vectorised reference).
    backend: str = "cython"
    # BLAS threads during the fit (threadpoolctl); None = leave them as they are.  1 by default:
    # OpenBLAS threads spin-wait for cores, so on a machine with other work running more threads
    # are far slower (measured, benchmarks/threads_default.py, 2 cores with other processes busy,
    # MNIST 0/1 embedded digits, 10 iterations: None 7.1-8.1 s, 2 threads 7.3-9.3 s, 1 thread
    # 0.48-0.98 s).  Pass threads=k (or run k MPI ranks) to use k cores on an otherwise idle machine.
    threads: Optional[int] = 1
    # Stop with status "diverged" when the objective exceeds its first finite value by this factor.
    divergence_factor: float = 1e12
    # Rows per mini-batch (docs/ALGORITHM.md, section 6): an iteration is then one epoch over shuffled
    # batches, each started by a forward pass and updated by `batch_sweeps` sweeps (see sweep_order);
    # every layer gets a bias (init_scale, ridge, multiplier and warm_start_iter do not apply).  None =
    # the full-batch algorithm (Algorithm 1), exactly as before this setting existed.  "auto" =
    # mini-batch (MINI_BATCH["batch_size"], or MINI_BATCH_ONE_OUTPUT's for a net with one output
    # unit).  See MINI_BATCH for what measurement decided.  Over MPI (comm=) it is the global batch:
    # each rank takes its rows of every batch of all ranks' rows (about batch_size / ranks), and the
    # fit is one process's on the same rows, up to rounding.
    batch_size: Union[int, str, None] = "auto"
    # Sweeps per batch (mini-batch only), each started by a forward pass of the weights the previous
    # one left.  None = the method's measured default (MINI_BATCH: 2; MINI_BATCH_ONE_OUTPUT: 1).
    batch_sweeps: Optional[int] = None
    # Weight of the proximal term of the mini-batch W-update, relative to the batch's activations:
    # prox_metric="identity": P = prox * mean(diag(a a^T)) * I; "gram": P = prox * batch * S.
    # None = the method's measured default (MINI_BATCH / MINI_BATCH_ONE_OUTPUT).
    prox: Optional[float] = None
    # The same weight for the output layer's W_L (None = the method's measured default).  With
    # output_refit the output layer is refitted exactly after every epoch, and a W_L that moves slowly
    # between refits leaves the hidden layers the part of each batch's target it does not take itself
    # (sweep_order="residual").
    output_prox: Optional[float] = None
    # The batch size prox is set for: a smaller batch (batch_size < prox_batch) damps the hidden
    # layers' steps as if it had prox_batch rows, prox times prox_batch / batch_size (the
    # least-squares fit of a small batch is noisy, and an epoch takes more of its steps); a larger
    # batch keeps prox (longer steps for larger batches measured no better: docs/SCALING.md);
    # output_prox is kept (scaling it too measured worse, docs/ABLATION.md).  1 = prox as given for
    # every batch size; None = the method's default batch (128 with several outputs, 64 with one),
    # so that the defaults are unchanged.
    prox_batch: Optional[int] = None
    # Metric of the proximal term: "gram" = the running mean S of the layer's input Gram (for layer 1
    # the whole training set's), "identity" = the BCD papers' alpha ||W - W_prev||^2.
    prox_metric: str = "identity"
    # Order of the updates inside a mini-batch sweep: "residual" = after the output's target, for
    # l = L .. 1: W_l refitted to z_l from the forward activations a_{l-1}, then a_{l-1} against the
    # new W_l (it receives the part of z_l that W_l's step did not take), then z_{l-1};
    # "layerwise" = the same with a_{l-1} against the old W_l (every layer takes the whole target);
    # "targets_first" = every target top down (output, then a- and z-updates), then every W refitted
    # to its target from its updated input.  None = the method's measured default.
    sweep_order: Optional[str] = None
    # Mini-batch only: after every epoch, refit the output layer W_L exactly, by ridge least squares of
    # the targets on the forward features [a_{L-1}, 1] of the whole training set (loss="mse"; one
    # extra forward pass per epoch).  The value is the ridge relative to the mean diagonal of the
    # features' Gram; 0 = off; None = the method's measured default.
    output_refit: Optional[float] = None
    # Decay of the running Gram S <- gram_decay S + (1 - gram_decay) (batch Gram / batch).
    gram_decay: float = 0.9
    # Per-layer penalties: beta_l = beta * depth_decay^(L-l), gamma_l = gamma * depth_decay^(L-1-l),
    # each constraint weighted depth_decay times less than the one above it.  None = the method's
    # measured default; 1 = the paper's equal penalties.
    depth_decay: Optional[float] = None
    # Mini-batch only: a ridge r ||W_l||^2 in every W-update (weights and biases), r = weight_decay *
    # mean(diag(a a^T)) of the batch, the same relative scale as prox: a batch of B rows adds B times
    # the per-row ridge to B rows' squared errors, so its meaning does not depend on the batch size
    # or the number of rows, and the fit's fixed point is the ridge-regularised one (a shrink after
    # the step would instead pull harder the more batches an epoch has).  None = the method's
    # measured default (1e-4); 0 = none.
    weight_decay: Optional[float] = None
    # Mini-batch only: train on the inputs minus their training-set means (column by column; the
    # features left out stay 0), the means folded into W_1's bias in every weight handed out, so the
    # model takes raw inputs like any other.  The same model class; what changes is the fit: the
    # proximal W-update and the weight decay act on centred inputs, whose Gram has no dominant
    # mean direction.  None = the method's measured default (MINI_BATCH: on; MINI_BATCH_ONE_OUTPUT: off).
    center_inputs: Optional[bool] = None

    def with_dtype(self) -> "ADMMSettings":
        """dtype None becomes "float32" for mini-batch ADMM (see the dtype field); every other field
        as given."""
        if self.dtype is None and self.batch_size is not None:
            return dataclasses.replace(self, dtype=MINI_BATCH_DTYPE)
        return self

    def resolved(self, n_outputs: int = 10, loss: str = "mse") -> "ADMMSettings":
        """A copy with every None / "auto" replaced by the chosen method's measured default for a net
        with `n_outputs` output units and this loss (see method_defaults).  ValueError for settings
        that do not go together: a field of the other method (check_method_fields), mini-batches
        without intercept, output_refit with another loss than mse, train_metrics
        "running" or an initialization of the other method."""
        values = self.with_dtype().as_dict()
        batch_size = values["batch_size"]
        defaults = method_defaults(batch_size, n_outputs)
        if batch_size == "auto":
            values["batch_size"] = defaults["batch_size"]
        check_method_fields(self, batch_size)
        if batch_size is not None and not self.intercept:
            raise ValueError("batch_size gives every layer a bias; it needs intercept=True")
        for name in PRESET_FIELDS[1:]:  # batch_size is done above
            if values[name] is None:
                values[name] = defaults.get(name, FIELD_FALLBACK.get(name))
        if loss != "mse":
            if self.output_refit:
                raise ValueError(f"output_refit={self.output_refit!r} refits the output by least squares, which is "
                                 f"the minimiser of loss='mse' only; pass output_refit=0 with loss={loss!r}")
            values["output_refit"] = 0.0
        if values["tol"] is None:
            values["tol"] = FULL_BATCH_TOL if batch_size is None else MINI_BATCH_TOL
        if values["train_metrics"] is None:
            values["train_metrics"] = "full" if batch_size is None or values["output_refit"] else "running"
        elif values["train_metrics"] == "running" and batch_size is None:
            raise ValueError("train_metrics='running' averages the metrics of the batches of an epoch, which "
                             "full-batch ADMM (batch_size=None) does not have; pass train_metrics='full' or None")
        allowed = ("forward", "gaussian") if batch_size is None else ("uniform", "he")
        if values["initialization"] not in allowed:
            method = "full-batch ADMM (batch_size=None)" if batch_size is None else "mini-batch ADMM"
            raise ValueError(f"initialization={values['initialization']!r} does not apply to {method}; "
                             f"use one of {allowed} (or None for its default)")
        return type(self)(**values)

    @classmethod
    def paper(cls, **overrides) -> "ADMMSettings":
        """Taylor et al. (2016) as published: Gaussian z and a, no ridge, fixed penalties."""
        values = dict(initialization="gaussian", intercept=False, ridge=0.0, beta=1.0, gamma=10.0, warm_start_iter=5,
                      batch_size=None, depth_decay=1.0)
        values.update(overrides)
        return cls(**values)

    @classmethod
    def from_kwargs(cls, **kwargs) -> "ADMMSettings":
        """Build settings from keywords, naming any keyword that is not a setting."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - names)
        if unknown:
            raise TypeError(
                f"unknown setting(s) {', '.join(map(repr, unknown))}; "
                f"valid settings are: {', '.join(sorted(names))}"
            )
        return cls(**kwargs)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError/TypeError naming the first field that is not usable (ADMM_CONSTRAINTS, in
        field order); numbers are stored as Python float/int/bool (numpy scalars such as np.float32(1)
        are accepted)."""
        check_fields(self, ADMM_CONSTRAINTS)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

