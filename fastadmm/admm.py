"""The ADMM driver: validate once, allocate once, loop over sweeps, stop, return a Result.

One sweep is Algorithm 1 of Taylor et al. (2016), see docs/ALGORITHM.md, section 3::

    for l = 1 .. L-1:
        W_l <- z_l a_{l-1}^+                          (ridge-regularised least squares)
        a_l <- (beta W_{l+1}^T W_{l+1} + gamma I)^-1 (beta W_{l+1}^T z_{l+1} + gamma h(z_l))
        z_l <- argmin_z gamma ||a_l - h(z)||^2 + beta ||z - W_l a_{l-1}||^2
    W_L <- z_L a_{L-1}^+
    z_L <- argmin_z loss(z, y) + <z, lam> + beta ||z - W_L a_{L-1}||^2
    lam <- lam + beta (z_L - W_L a_{L-1})             (after the warm start)

Arrays hold one sample per row (A[l] is a_l^T, shape (N, n_l)); the elementwise steps are the
compiled kernels of ``_backend``, the products are BLAS-3 calls with preallocated outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import tempfile
import time
import warnings
from typing import Callable, Optional

import numpy as np
from threadpoolctl import threadpool_limits

from . import _backend, _comm, _inputs, _linalg, _losses, _validation
from ._interrupt import deferred_sigint
from ._minibatch import MiniBatchADMM, layer_penalties
from ._result import Result
from ._settings import FULL_BATCH, MINI_BATCH, ADMMSettings

_LOSS_CODE = {"mse": 0, "hinge": 1}
_EVAL_CHUNK = 8192  # rows per block of the evaluation forward pass (bounds its scratch memory)


class ConvergenceWarning(UserWarning):
    """The fit stopped at max_iter (or the time limit) before meeting the tolerance."""


class DivergenceWarning(RuntimeWarning):
    """The iterates became non-finite or blew up; the last finite weights were kept."""


class CheckpointWarning(RuntimeWarning):
    """A checkpoint could not be written; the fit went on and its Result was still returned."""


def _layer_sizes(n_features, hidden, n_out):
    return [n_features, *hidden, n_out]


class _Problem:
    """The iterates and buffers of one fit (this rank's rows of them), and the steps of a sweep."""

    def __init__(self, X, T, sizes, loss, settings: ADMMSettings, kernels, rng, init, comm, row_offset, n_global):
        self.comm = comm
        self.intercept = settings.intercept
        # Features that are zero in every sample (over all ranks) drop out of every product with X.
        self.n_features = X.shape[1]
        self.active = self._active_inputs(X) if settings.skip_zero_inputs else None
        if self.active is not None:
            X = np.ascontiguousarray(X[:, self.active])
        self.X = X
        self.T = T
        self.sizes = sizes
        self.L = L = len(sizes) - 1
        self.s = settings
        self.k = kernels
        self.loss = loss
        dt = X.dtype
        N = X.shape[0]
        self.beta, self.gamma = layer_penalties(settings.beta, settings.gamma, settings.depth_decay, L)
        # Buffers, allocated once.  Z[l] also receives W_l a_{l-1} before the in-place z-kernel.
        self.Z = [None] + [np.empty((N, sizes[l]), dt) for l in range(1, L + 1)]
        self.A = [X] + [np.empty((N, sizes[l]), dt) for l in range(1, L)]
        self.H = [None] + [np.empty((N, sizes[l]), dt) for l in range(1, L)]  # h(z_l)
        self.lam = np.zeros((N, sizes[L]), dt)
        # One packed buffer per layer for the sums of the W-update, so that a distributed fit
        # exchanges them in one all-reduce: [a a^T (l > 1) | z a^T | z 1 (intercept, l = 1)].
        self.packed = [None]
        for l in range(1, L + 1):
            n_in = X.shape[1] if l == 1 else sizes[l - 1]
            size = (0 if l == 1 else n_in * n_in) + sizes[l] * n_in + (sizes[l] if l == 1 and self.intercept else 0)
            self.packed.append(np.empty(size, dt))
        self.W = [None] * (L + 1)
        self.iteration = 0
        if init is not None:
            self._load_state(init)
        else:
            self._initialise(rng, row_offset, n_global)
        # The input's Gram never changes: sum it over ranks and invert it once per fit.
        try:
            self.G0_inv = _linalg.gram_inverse(self._input_gram(), settings.ridge, sizes[0]).astype(dt)
        except _linalg.NonFiniteError:
            raise ValueError(
                "X is too large in magnitude: its Gram matrix a_0 a_0^T overflows; scale X, e.g. X / np.abs(X).max()"
            ) from None
        if init is None and (not all(np.isfinite(W).all() for W in self.W[1:]) or not np.isfinite(self.Z[L]).all()):
            raise ValueError(
                f"init_scale={settings.init_scale!r} makes the initial values overflow; use a smaller init_scale "
                "(the default 1e-3 was measured best)"
            )
        if init is None and settings.initialization == "gaussian":
            # The paper leaves the W_{l+1} of the first a_l-update unspecified: fit every W to the
            # initial z and a by the same least squares as the W-update.
            for l in range(1, L + 1):
                self._w_update(l)

    # -- the input layer, with the constant feature of `intercept` handled analytically ------
    def _active_inputs(self, X):
        """The features kept (non-zero in some sample of some rank), or None to use X as it is."""
        return _inputs.kept_features(self.comm.allreduce(_inputs.nonzero_features(X)))

    def _compact(self, W1):
        return _inputs.take_columns(W1, self.active, self.intercept)

    def _expand(self, W1):
        """W_1 at the user's width: zeros for the features left out."""
        full = np.zeros((W1.shape[0], self.sizes[0]), W1.dtype)
        return _inputs.put_columns(full, W1, self.active, self.intercept)

    def compact_test(self, X_test):
        """X_test with the same features left out (for evaluating with the compact weights)."""
        if self.active is None or X_test is None:
            return X_test
        return np.ascontiguousarray(X_test[:, self.active])

    def _input_gram(self):
        """a_0 a_0^T in float64 (row blocks, so float32 X is never copied whole), summed over ranks."""
        return self.comm.allreduce(_inputs.input_gram(self.X, self.intercept, _EVAL_CHUNK))

    # -- initialisation -------------------------------------------------------------------
    def _initialise(self, rng, row_offset, n_global):
        L, sizes, dt = self.L, self.sizes, self.X.dtype
        N = self.X.shape[0]
        if self.s.initialization == "forward":
            for l in range(1, L + 1):
                W = rng.normal(0.0, self.s.init_scale, (sizes[l], sizes[l - 1]))
                self.W[l] = (self._compact(W) if l == 1 else W).astype(dt)
                self._linear(l)
                if l < L:
                    np.maximum(self.Z[l], 0, out=self.A[l])
                    self.H[l][...] = self.A[l]
        else:  # "gaussian": the paper's unit Gaussians for every z_l and a_l
            rows = slice(row_offset, row_offset + N)  # this rank's rows of the one-process draw
            for l in range(1, L + 1):
                _gaussian_rows(rng, n_global, rows, out=self.Z[l])
                if l < L:
                    _gaussian_rows(rng, n_global, rows, out=self.A[l])
                    np.maximum(self.Z[l], 0, out=self.H[l])
            for l in range(1, L + 1):
                self.W[l] = np.zeros((sizes[l], self.packed_width(l)), dt)

    def _load_state(self, init: Result):
        st = init.state
        L = self.L
        for l in range(1, L + 1):
            W = np.array(init.weights[l - 1], dtype=self.X.dtype)
            self.W[l] = self._compact(W) if l == 1 else W
            self.Z[l][...] = st["Z"][l - 1]
        for l in range(1, L):
            self.A[l][...] = st["A"][l - 1]
            np.maximum(self.Z[l], 0, out=self.H[l])
        self.lam[...] = st["lam"]
        self.beta = [float(b) for b in st["beta"]]
        self.gamma = [float(g) for g in st["gamma"]]
        self.iteration = int(st["iteration"])

    def state(self) -> dict:
        """The iterates needed to resume (the buffers themselves: call once, after the loop)."""
        return {
            "Z": self.Z[1:],
            "A": self.A[1:],
            "lam": self.lam,
            "beta": list(self.beta),
            "gamma": list(self.gamma),
            "iteration": self.iteration,
        }

    # -- the steps of a sweep -------------------------------------------------------------
    def _linear(self, l):
        """Z[l] <- W_l a_{l-1} (one sample per row)."""
        if l == 1:
            _losses.first_layer(self.W[1], self.X, self.intercept, out=self.Z[1])
        else:
            np.matmul(self.A[l - 1], self.W[l].T, out=self.Z[l])

    def _w_update(self, l):
        """W_l <- z_l a_{l-1}^T (a_{l-1} a_{l-1}^T + r I)^-1, the sums all-reduced in one buffer."""
        A_prev, Z, buf = self.A[l - 1], self.Z[l], self.packed[l]
        n_out, n_in = Z.shape[1], A_prev.shape[1]
        if l == 1:
            C = buf[: n_out * n_in].reshape(n_out, n_in)
            np.matmul(Z.T, A_prev, out=C)  # z_1 a_0^T
            if self.intercept:
                Z.sum(axis=0, out=buf[n_out * n_in:])  # z_1 1^T: the constant input's column
            self.comm.allreduce(buf)
            if not np.isfinite(buf).all():
                raise _linalg.NonFiniteError("the cross product z_1 a_0^T holds NaN or infinity")
            if self.intercept:
                C = np.concatenate([C, buf[n_out * n_in:, None]], axis=1)
            self.W[1] = C @ self.G0_inv
        else:
            G = buf[: n_in * n_in].reshape(n_in, n_in)
            C = buf[n_in * n_in:].reshape(n_out, n_in)
            np.matmul(A_prev.T, A_prev, out=G)  # a_{l-1} a_{l-1}^T (numpy calls syrk for this form)
            np.matmul(Z.T, A_prev, out=C)  # z_l a_{l-1}^T
            self.comm.allreduce(buf)
            self.W[l] = _linalg.solve_weights(C, G, self.s.ridge).astype(A_prev.dtype)

    def _a_update(self, l):
        Pt, Q = _linalg.a_update_operators(self.W[l + 1], self.beta[l + 1], self.gamma[l])
        dt = self.A[l].dtype
        np.matmul(self.H[l], Q.astype(dt), out=self.A[l])  # gamma h(z_l) M^-1
        _linalg.gemm_accumulate(self.A[l], self.Z[l + 1], Pt)  # + beta z_{l+1}^T W_{l+1} M^-1

    def _z_update(self, l):
        self._linear(l)  # m = W_l a_{l-1}, into z's buffer
        Zf = self.Z[l].reshape(-1)
        return self.k.relu_z_update(
            self.A[l].reshape(-1), Zf, self.beta[l], self.gamma[l], Zf, self.H[l].reshape(-1)
        )

    def _output_update(self, lam_step):
        L = self.L
        self._linear(L)
        if self.loss == "cross_entropy":  # a K-dimensional solve per sample (row)
            return self.k.softmax_z_update(self.T, self.Z[L], self.lam, self.beta[L], lam_step, self.Z[L])
        Zf = self.Z[L].reshape(-1)
        return self.k.output_z_update(
            self.T.reshape(-1), Zf, self.lam.reshape(-1), self.beta[L], _LOSS_CODE[self.loss], lam_step, Zf
        )

    def sweep(self, timings):
        """One iteration of Algorithm 1.

        Returns this rank's sums [rz_1 .. rz_L, ra_1 .. ra_{L-1}, loss, <lam, z_L>, ||z_L||^2]
        (rz_l = ||z_l - W_l a_{l-1}||^2, ra_l = ||a_l - h(z_l)||^2) and the penalties used.
        """
        L = self.L
        sums = np.zeros(2 * L + 2)
        penalties = (list(self.beta), list(self.gamma))
        for l in range(1, L):
            t0 = time.perf_counter()
            self._w_update(l)
            t1 = time.perf_counter()
            self._a_update(l)
            t2 = time.perf_counter()
            sums[l - 1], sums[L + l - 1] = self._z_update(l)
            t3 = time.perf_counter()
            timings["W"] += t1 - t0
            timings["a"] += t2 - t1
            timings["z"] += t3 - t2
        t0 = time.perf_counter()
        self._w_update(L)
        t1 = time.perf_counter()
        lam_step = self.s.multiplier and self.iteration >= self.s.warm_start_iter
        loss_sum, lam_dot_z, sums[L - 1] = self._output_update(lam_step)
        sums[2 * L - 1], sums[2 * L] = loss_sum, lam_dot_z
        zL = self.Z[L].reshape(-1)
        sums[2 * L + 1] = float(np.dot(zL, zL))
        t2 = time.perf_counter()
        timings["W"] += t1 - t0
        timings["z"] += t2 - t1
        self.iteration += 1
        if self.s.penalty_growth != 1.0 and self.iteration % self.s.penalty_every == 0:
            cap = self.s.penalty_max
            self.beta = [min(b * self.s.penalty_growth, cap) for b in self.beta]
            self.gamma = [min(g * self.s.penalty_growth, cap) for g in self.gamma]
        return sums, penalties

    def packed_width(self, l):
        """Columns of the W_l held during the fit (W_1: kept features + intercept)."""
        return self.X.shape[1] + int(self.intercept) if l == 1 else self.sizes[l - 1]

    def compact_weights(self):
        # Every W-update binds a new array, so references are a consistent snapshot.
        return list(self.W[1:])

    def full_width(self, weights):
        """Compact weights (from compact_weights) at the user's input width."""
        return [self._expand(weights[0]), *weights[1:]]


def _gaussian_rows(rng, n_global, rows, out):
    """out <- rows `rows` of rng.standard_normal((n_global, out.shape[1])), drawn in blocks of
    _EVAL_CHUNK rows (the same stream, so the same numbers), never holding all n_global rows."""
    for start in range(0, n_global, _EVAL_CHUNK):
        block = rng.standard_normal((min(_EVAL_CHUNK, n_global - start), out.shape[1]))
        lo, hi = max(start, rows.start), min(start + block.shape[0], rows.stop)
        if lo < hi:
            out[lo - rows.start : hi - rows.start] = block[lo - start : hi - start]


def _objective(sums, L, penalties):
    """The augmented Lagrangian (docs/ALGORITHM.md, section 1) from the global sums of a sweep."""
    beta, gamma = penalties
    obj = sum(gamma[l] * sums[L + l - 1] + beta[l] * sums[l - 1] for l in range(1, L))
    return float(obj + sums[2 * L - 1] + sums[2 * L] + beta[L] * sums[L - 1])


def _evaluate(weights, X, y_index, T, loss, intercept):
    """(summed loss, number correct) of an ordinary forward pass over this rank's rows, in blocks."""
    total, correct = 0.0, 0
    for start in range(0, X.shape[0], _EVAL_CHUNK):
        out = _losses.forward(weights, X[start : start + _EVAL_CHUNK], intercept)
        correct += int(np.sum(_losses.predict_index(out) == y_index[start : start + _EVAL_CHUNK]))
        if T is not None:
            total += _losses.loss_sum(out, T[start : start + _EVAL_CHUNK], loss)
    return total, correct


def _history_template(resumed: Optional[Result]):
    keys = (
        "iteration", "elapsed", "objective", "residual_z", "residual_a", "train_loss",
        "train_accuracy", "test_accuracy", "beta", "gamma",
    )
    if resumed is not None:
        return {k: list(resumed.history.get(k, [])) for k in keys}
    return {k: [] for k in keys}


def _check_magnitude(X):
    """X whose Gram sums (N max|X|^2) could overflow its dtype is refused, naming the fix."""
    big = float(max(abs(float(X.max())), abs(float(X.min()))))
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
              checkpoint_every=10):
    """All boundary checks; in a distributed fit every rank raises the same error together."""
    error = None
    try:
        loss = _validation.check_loss(loss)
        max_iter = _validation.check_max_iter(max_iter)
        hidden = _validation.check_hidden(hidden)
        if callback is not None and not callable(callback):
            raise TypeError("callback must be callable (or None)")
        min_samples, min_classes = (1, 1) if comm.distributed else (2, 2)
        X, y_index, classes = _validation.check_Xy(X, y, settings.dtype, min_samples, min_classes)
        _check_magnitude(X)
        rng = _validation.check_random_state(random_state)
    except (TypeError, ValueError) as exc:
        error = exc
    if comm.distributed:
        # Agree on the outcome (and on the classes, the union of every rank's labels).
        _agree(comm, error)
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
        rng = _agreed_rng(comm, random_state, rng)
    elif error is not None:
        raise error
    else:
        row_offset, n_global = 0, X.shape[0]
    minibatch = settings.batch_size is not None
    sizes = _layer_sizes(X.shape[1] + int(settings.intercept or minibatch), hidden,
                         _losses.n_outputs(len(classes), loss))
    error = None
    try:  # checks of one rank's own arguments: they too must fail on every rank together
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
    if comm.distributed:
        _agree(comm, error)
        _agree_arguments(comm, dict(
            settings=settings.as_dict(), hidden=tuple(hidden), loss=loss, max_iter=max_iter,
            callback=callback is not None, init=init is not None, checkpoint_every=checkpoint_every,
            init_iteration=None if init is None else init.state["iteration"],
        ))
    elif error is not None:
        raise error
    return X, y_index, classes, X_test, y_test_index, hidden, loss, max_iter, rng, sizes, row_offset, n_global


def _agree(comm, error):
    """Raise on every rank the first rank's error (naming that rank), or return if none failed."""
    gathered = comm.allgather(None if error is None else (type(error), f"rank {comm.rank}: {error}"))
    failed = [g for g in gathered if g is not None]
    if failed:
        raise failed[0][0](failed[0][1])


def _agreed_rng(comm, random_state, rng):
    """The same initial stream on every rank: rank 0's seed for None; a seed or a Generator must be
    the same (same state) everywhere."""
    if random_state is None:
        seed = comm.allgather(int(np.random.SeedSequence().entropy) if comm.rank == 0 else None)[0]
        return np.random.default_rng(seed)
    keys = comm.allgather(_comm.random_state_key(random_state))
    differ = [r for r, k in enumerate(keys) if k != keys[0]]
    if differ:
        raise ValueError(
            f"random_state differs between ranks (rank 0 vs ranks {differ[:5]}); pass the same int seed on every "
            "rank so that all start from the same initial values"
        )
    return rng


def _agree_arguments(comm, arguments: dict):
    """Raise on every rank if any argument that decides the iterations or the stop differs between ranks
    (a rank that stopped first would leave the others waiting forever in a reduction)."""
    mine = {k: repr(v) for k, v in arguments.items()}
    gathered = comm.allgather(mine)
    differ = sorted({k for other in gathered for k in mine if other.get(k) != mine[k]})
    if differ:
        detail = "; ".join(f"{k}: " + ", ".join(f"rank {r} {g[k]}" for r, g in enumerate(gathered[:4])) for k in differ[:4])
        raise ValueError(
            f"every rank must pass the same {', '.join(differ)} ({detail}); only X, y, X_test and y_test differ between ranks"
        )


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
    init: Optional[Result] = None,
    callback: Optional[Callable[[dict], Optional[bool]]] = None,
    settings: Optional[ADMMSettings] = None,
    comm=None,
    checkpoint=None,
    checkpoint_every: int = 10,
    **kwargs,
) -> Result:
    """Train a fully connected ReLU network by ADMM (Taylor et al., 2016).

    Parameters
    ----------
    X : array (n_samples, n_features); float32 X trains in float32, anything else in float64.
    y : class labels (n_samples,).  Two classes give one output unit, K > 2 give K (one-hot).
    hidden : hidden layer sizes, e.g. (100, 50, 10); () is a linear model.
    loss : "mse" (squared error) or "hinge", applied per output entry to 0/1 targets, or
        "cross_entropy" (softmax over one output per class).
    max_iter : iterations: epochs of mini-batch ADMM (default batch_size), or sweeps of Algorithm 1
        (batch_size=None); a resumed fit runs this many more.  None = the method's measured default
        (``fastadmm.ADMMSettings`` module: MINI_BATCH / FULL_BATCH).
    X_test, y_test : optional held-out set, evaluated every ``eval_every`` iterations.
    random_state : None, an int seed or a numpy Generator.
    init : a Result of an earlier fit (``fastadmm.load`` reads one back) to continue from.
    callback : called after every iteration with a dict (iteration, objective, accuracies, ...);
        returning True stops the fit with status "interrupted".  In a distributed fit it runs on
        every rank with the same dict and must answer the same on every rank.
    settings : an ADMMSettings; any keyword in **kwargs overrides one of its fields
        (beta, gamma, initialization, ridge, warm_start_iter, dtype, backend, threads, ...).
    comm : an mpi4py communicator for a data-parallel fit: each rank passes its own rows of X, y
        (and of X_test, y_test) and gets the same weights and history back (see
        ``fastadmm.distributed``).  None = one process.
    checkpoint : a path: every ``checkpoint_every`` iterations, and when the fit stops, the Result so
        far is saved there (atomically; see ``Result.save``).  In a distributed fit each rank saves
        its own rows' state to ``<path>.rank<k>.npz``.
    checkpoint_every : iterations between two checkpoints.

    Returns
    -------
    Result
    """
    t_setup = time.perf_counter()
    comm = _comm.wrap(comm)
    error = None
    try:  # every rank raises together, or none does
        settings = _settings_from(settings, kwargs).resolved(distributed=comm.distributed)
        if max_iter is None:
            max_iter = (FULL_BATCH if settings.batch_size is None else MINI_BATCH)["max_iter"]
        checkpoint = _checkpoint_path(checkpoint, checkpoint_every, comm)
    except (TypeError, ValueError) as exc:
        error = exc
    if comm.distributed:
        _agree(comm, error)
    elif error is not None:
        raise error
    (X, y_index, classes, X_test, y_test_index, hidden, loss, max_iter, rng, sizes, row_offset,
     n_global) = _validate(X, y, X_test, y_test, hidden, loss, max_iter, random_state, callback, settings, init, comm,
                           checkpoint_every)
    with _abort_on_local_error(comm):  # a failure on one rank ends all ranks, never a hang
        kernels = _backend.get(settings.backend)

        timings = {k: 0.0 for k in ("setup", "compile", "W", "a", "z", "eval", "train", "total", "allreduce")}
        t_compile = time.perf_counter()
        if hasattr(kernels, "warmup"):
            kernels.warmup()
        timings["compile"] = time.perf_counter() - t_compile

        limits = threadpool_limits(settings.threads) if settings.threads is not None else None
        try:
            T = _losses.targets(y_index, len(classes), X.dtype, loss)
            if settings.batch_size is not None:
                problem = MiniBatchADMM(X, T, sizes, loss, settings, kernels, rng, init, comm)
            else:
                problem = _Problem(X, T, sizes, loss, settings, kernels, rng, init, comm, row_offset, n_global)
            timings["setup"] = time.perf_counter() - t_setup - timings["compile"]
            history = _history_template(init)
            used = settings.as_dict()
            used["data_fingerprint"] = _fingerprint(X, y_index)
            used.update(
                hidden=list(hidden), loss=loss, max_iter=max_iter, dtype=X.dtype.name,
                n_samples=n_global, n_features=int(X.shape[1]), n_classes=int(len(classes)), ranks=comm.size,
                random_state=_validation.random_state_record(random_state),
            )

            def make_result(status, message, final=True):
                if final:
                    timings["allreduce"] = getattr(comm, "seconds", 0.0)
                    timings["total"] = time.perf_counter() - t_setup
                return Result(
                    status=status,
                    n_iter=problem.iteration,
                    weights=problem.full_width(problem.last_good_weights),
                    classes=classes,
                    loss=loss,
                    method="admm",
                    history=history if final else {k: list(v) for k, v in history.items()},
                    timings=dict(timings),
                    settings=used,
                    state=problem.state() if status != "diverged" else None,
                    message=message,
                    intercept=problem.intercept,
                )

            status, message = _loop(problem, max_iter, X, y_index, T, problem.compact_test(X_test), y_test_index, loss, history,
                                    timings, callback, checkpoint, checkpoint_every, make_result)
        finally:
            if limits is not None:
                limits.unregister()
        result = make_result(status, message)
        if checkpoint is not None and status != "diverged":
            reason = _save_checkpoint(result, checkpoint)
            if reason is not None:
                result.message += f"; {reason}"
        return result


def _checkpoint_path(checkpoint, every, comm):
    if checkpoint is None:
        return None
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"checkpoint_every must be an integer >= 1, got {every!r}")
    from pathlib import Path

    path = Path(checkpoint)
    if comm.size > 1:
        path = path.with_name(f"{path.name.removesuffix('.npz')}.rank{comm.rank}.npz")
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


def _save_checkpoint(result, path) -> Optional[str]:
    """Save `result` to `path`; on failure warn and return the reason (the fit is never lost)."""
    try:
        result.save(path)
    except OSError as exc:
        reason = f"the checkpoint could not be written to {path} ({type(exc).__name__}: {exc})"
        warnings.warn(reason + "; the fit goes on and its Result is returned", CheckpointWarning, stacklevel=4)
        return reason
    return None


def _callback_answer(comm, callback, record) -> Optional[str]:
    """Call the callback; return why the fit stops (None: it goes on), the same on every rank.

    A KeyboardInterrupt raised inside it stops the fit like Ctrl-C (the Result is kept).  In a
    distributed fit the ranks agree on the answer, and an exception on any rank is raised on every
    rank (never one rank leaving while the others wait in the next reduction).
    """
    answer, error = None, None
    try:
        if callback(record):
            answer = "stopped the fit"
    except KeyboardInterrupt:
        answer = "was interrupted (KeyboardInterrupt)"
    except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
        if not comm.distributed:
            raise
        error = exc
    if not comm.distributed:
        return answer
    gathered = comm.allgather((answer, None if error is None else f"{type(error).__name__}: {error}"))
    failed = [(r, e) for r, (_, e) in enumerate(gathered) if e is not None]
    if failed:
        if error is not None:
            error._fastadmm_collective = True
            raise error
        exc = RuntimeError(f"the callback raised on rank {failed[0][0]}: {failed[0][1]}")
        exc._fastadmm_collective = True
        raise exc
    answers = [a for a, _ in gathered if a]
    return answers[0] + ("" if answer else " on another rank") if answers else None


@contextlib.contextmanager
def _abort_on_local_error(comm):
    """In a distributed fit, an exception raised on one rank only (outside the collective checks) ends
    every rank with a message (MPI_Abort) instead of leaving the others waiting forever."""
    if not comm.distributed:
        yield
        return
    from .distributed import abort_on_error

    with abort_on_error(comm.comm, collective_through=True):
        yield


def _loop(problem, max_iter, X, y_index, T, X_test, y_test_index, loss, history, timings, callback,
          checkpoint=None, checkpoint_every=10, make_result=None):
    """Sweep until a stopping rule holds; every decision uses globally reduced numbers only."""
    s, L, comm = problem.s, problem.L, problem.comm
    start_iteration = problem.iteration
    problem.last_good_weights = problem.compact_weights()  # expanded only when a Result is made
    elapsed0 = history["elapsed"][-1] if history["elapsed"] else 0.0
    previous_objective = history["objective"][-1] if history["objective"] else None
    first_objective = None
    train_time = 0.0
    n_test = 0 if X_test is None else X_test.shape[0]
    status, message = "max_iter", f"stopped at max_iter={max_iter}"
    with deferred_sigint() as interrupted:
        for _ in range(max_iter):
            t0 = time.perf_counter()
            try:
                with np.errstate(over="ignore", invalid="ignore"):
                    sums, penalties = problem.sweep(timings)
            except (_linalg.NonFiniteError, np.linalg.LinAlgError) as exc:
                # Raised only on globally reduced (identical) quantities: every rank breaks here.
                status, message = "diverged", f"iteration {problem.iteration + 1}: {exc}"
                break
            train_time += time.perf_counter() - t0
            weights = problem.compact_weights()
            # Evaluation (an ordinary forward pass) is timed apart from training.
            t_eval = time.perf_counter()
            evaluate = bool(s.eval_every) and (problem.iteration - start_iteration) % s.eval_every == 0
            train_loss_sum = train_correct = test_correct = 0.0
            if evaluate:
                with np.errstate(over="ignore", invalid="ignore"):
                    train_loss_sum, train_correct = _evaluate(weights, problem.X, y_index, T, loss, s.intercept)
                    if X_test is not None:
                        test_correct = _evaluate(weights, X_test, y_test_index, None, loss, s.intercept)[1]
            timings["eval"] += time.perf_counter() - t_eval
            # One reduction per iteration: the sweep's sums, evaluation counts, clocks and flags.
            extra = np.array([train_loss_sum, train_correct, X.shape[0], test_correct, n_test,
                              train_time, float(bool(interrupted))])
            total = comm.allreduce(np.concatenate([sums, extra]))
            sums, (train_loss_sum, train_correct, n_train, test_correct, n_test_all, mean_time,
                   any_interrupt) = total[: sums.shape[0]], total[sums.shape[0]:]
            mean_time /= comm.size
            objective = _objective(sums, L, penalties)
            if not math.isfinite(objective):
                status, message = "diverged", f"iteration {problem.iteration}: the objective is {objective}"
                break
            if first_objective is None:
                first_objective = abs(objective) if objective != 0 else 1.0
            elif abs(objective) > s.divergence_factor * first_objective:
                status = "diverged"
                message = (f"iteration {problem.iteration}: the objective grew from {first_objective:.3g} "
                           f"to {objective:.3g}")
                break
            if not all(np.isfinite(W).all() for W in weights):
                status, message = "diverged", f"iteration {problem.iteration}: a weight became NaN or infinite"
                break
            problem.last_good_weights = weights
            nan = float("nan")
            record = dict(
                iteration=problem.iteration, elapsed=elapsed0 + mean_time, objective=objective,
                residual_z=[math.sqrt(v) for v in sums[:L]], residual_a=[math.sqrt(v) for v in sums[L : 2 * L - 1]],
                train_loss=train_loss_sum / n_train if evaluate else nan,
                train_accuracy=train_correct / n_train if evaluate else nan,
                test_accuracy=test_correct / n_test_all if evaluate and n_test_all else nan,
                beta=penalties[0][1], gamma=penalties[1][1],
            )
            for key, value in record.items():
                history[key].append(value)
            if checkpoint is not None and (problem.iteration - start_iteration) % checkpoint_every == 0:
                _save_checkpoint(make_result("interrupted", f"checkpoint at iteration {problem.iteration}", final=False),
                                 checkpoint)
            if callback is not None:
                view = dict(record)
                view["weights"] = lambda w=weights: [np.array(W) for W in problem.full_width(w)]
                answer = _callback_answer(comm, callback, view)
                if answer:
                    status, message = "interrupted", f"the callback {answer} at iteration {problem.iteration}"
                    break
            if any_interrupt or (not comm.distributed and interrupted):
                status, message = "interrupted", f"interrupted (Ctrl-C) after iteration {problem.iteration}"
                break
            if s.time_limit is not None and mean_time >= s.time_limit:
                status, message = "time_limit", f"time_limit={s.time_limit} s reached after iteration {problem.iteration}"
                break
            if s.tol > 0 and previous_objective is not None:
                change = abs(objective - previous_objective) / max(abs(objective), 1e-30)
                primal = math.sqrt(sums[L - 1] / max(sums[2 * L + 1], 1e-300))
                if change < s.tol and primal < s.tol:
                    status = "converged"
                    message = f"converged at iteration {problem.iteration} (objective change {change:.2e}, residual {primal:.2e})"
                    break
            previous_objective = objective
    timings["train"] += train_time
    if status == "diverged":
        warnings.warn(
            f"ADMM diverged ({message}); the last finite weights are kept. Try a larger ridge, "
            "smaller beta/gamma ratio or initialization='forward' with a small init_scale.",
            DivergenceWarning,
            stacklevel=3,
        )
    elif status in ("max_iter", "time_limit") and s.tol > 0:
        warnings.warn(f"ADMM {message} before reaching tol={s.tol}", ConvergenceWarning, stacklevel=3)
    return status, message
