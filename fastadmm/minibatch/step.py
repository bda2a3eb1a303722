"""The step object of mini-batch ADMM (docs/ALGORITHM.md, section 6).

One call of :meth:`MiniBatchADMM.sweep` is one epoch: the rows are reshuffled and visited in batches
of about ``batch_size`` (``schedule``).  Row layout (one sample per row); every layer has a bias, the
last column of its ``W_l`` (a constant input 1, never stored).  For each batch:

1. ``z_l``, ``a_l = h(z_l)`` from an ordinary forward pass of the current weights.
2. ``batch_sweeps`` sweeps in the order ``sweep_order`` (``sweeps``) of: the output update
   ``z_L <- argmin_z loss(z, y) + beta_L ||z - W_L a_{L-1}||^2`` (the full-batch kernels with
   ``lam = 0``), the paper's a-updates and ReLU z-updates, and every ``W_l`` refitted to its target
   ``z_l`` from its input ``a_{l-1}`` by a proximal least-squares step,
   ``W_l = W_prev + (z_l - W_prev a_{l-1}) a_{l-1}^T (a_{l-1} a_{l-1}^T + P_l)^-1``, where
   ``P_l = prox * mean(diag(a a^T)) * I`` (``prox_metric="identity"``) or ``prox * B * S_l`` with
   ``S_l`` the running mean input Gram (``"gram"``).
The batch's forward pass is also the network's prediction on it with the weights before its update:
its loss and correct predictions are summed over the epoch (``running_counts``).  Penalties are per
layer (``_admm_core.layer_penalties``); no multiplier is kept.  Every product over a batch is one
BLAS-3 call into a buffer allocated once; the W- and a-updates and the layer products are one
backend object (``updates``), compiled or NumPy, chosen once.

Over MPI (``comm``) each rank holds its rows of the training set and takes its share of every
global batch (``schedule``); the forward pass, the output, a- and z-updates stay on its rows, and
each W-update is the global batch's step (``shared``), the same W on every rank.  The kept features,
centring means and output refit are agreed (``inputs``, ``refit``).
"""

from __future__ import annotations

import time

import numpy as np

from .. import _admm_core, _backend, _comm, _losses, _step
from . import sweeps, updates
from .first_layer import FirstLayer
from .inputs import InputMap
from .refit import OutputRefit
from .schedule import Schedule
from .shared import SharedWUpdate


@_step.register_step
class MiniBatchADMM:
    """The weights, buffers and update steps of a mini-batch fit (one process, or one rank's rows)."""

    kind = "admm-minibatch"
    intercept = True  # every layer has a bias (the last column of each W_l)

    def __init__(self, X, T, sizes, loss, settings, kernels, rng, init, comm, nonzero=None, y_index=None):
        """`T`: the targets of X's rows, an array or a _losses.ClassTargets (read a batch at a time);
        `nonzero`: _inputs.nonzero_features(X) if the caller has it (from the boundary's scan of X);
        `comm`: a _comm.Communicator (None: one process); `y_index`: each row's class index, if the
        caller has it (else it is read from T's 0/1 targets)."""
        self.comm = comm = _comm.wrap(comm)
        self.s = settings
        self.k = kernels
        self.loss = loss
        self.X, self.T = X, T
        self.sizes = sizes  # [n_0 + 1 (the bias), n_1, ..., n_L]
        self.L = L = len(sizes) - 1
        # The fit's floating type (settings.dtype, float32 by default); X keeps its own: each batch is
        # cast as it is gathered, so a float64 X is never copied whole.
        dt = np.dtype(settings.dtype) if settings.dtype else X.dtype
        self.dtype = dt
        # Over MPI: every rank's number of rows (the global batches are drawn over all of them).
        shards = comm.allgather(int(X.shape[0])) if comm.distributed else None
        self.n_rows = X.shape[0] if shards is None else int(sum(shards))
        self.schedule = Schedule(self.n_rows, settings.batch_size, shards, comm.rank)
        self.B = B = self.schedule.largest  # a rank may hold every row of a batch
        self.counts = None  # every rank's rows of the current batch (over MPI)
        # The compiled updates (one call each) unless the NumPy backend is asked for (or they are not built).
        compiled = None if settings.backend == "numpy" else _backend.updates()
        self.inputs = InputMap(X, settings, dt, compiled, B, nonzero, comm, self.n_rows)
        self.active = self.inputs.active
        widths = [self.inputs.width] + list(sizes[1:])
        # The W- and a-updates, with their scratch: the square systems (B x B, n x n, n_{l+1} x n_{l+1})
        # and the products of a W- or a-update.
        square = max([min(B, w + 1) for w in widths[:L]] + widths[2:])  # B x B, n x n, or an a-update's
        product = max(max(widths[l] * (widths[l - 1] + 1), B * widths[l]) for l in range(1, L + 1))
        self.updates = updates.get(compiled, dt, square * square, product)
        self.shared = SharedWUpdate(comm, dt, B, widths, self.updates) if comm.size > 1 else None
        # Layer 1's updates of a batch formed once per batch (first_layer), in the push-through form.
        self.first = FirstLayer(comm, dt, B, widths[0], widths[1]) if settings.prox_metric == "identity" else None
        # The class index of each training row (from its 0/1 targets), and the running metrics of the
        # current sweep: [summed loss, correct predictions] of each batch's forward pass (running_counts).
        self.y_index = None
        if settings.train_metrics == "running":
            if y_index is None:
                y_index = T.y_index if isinstance(T, _losses.ClassTargets) else _losses.predict_index(T)
            self.y_index = y_index
        self._running = [0.0, 0]
        # Batch buffers, allocated once: Xb holds the batch's rows of X; Z[l], A[l], H[l] its z_l, a_l,
        # h(z_l); A_new[l] receives the a-update before it replaces A[l]; R[l] is scratch of z_l's width.
        self.Xb = np.empty((B, widths[0]), dt)
        self.Tb = np.empty((B, widths[L]), dt)
        self.Z = [None] + [np.empty((B, widths[l]), dt) for l in range(1, L + 1)]
        self.A = [self.Xb] + [np.empty((B, widths[l]), dt) for l in range(1, L)]
        self.H = [None] + [np.empty((B, widths[l]), dt) for l in range(1, L)]
        self.A_new = [None] + [np.empty((B, widths[l]), dt) for l in range(1, L)]
        self.R = [None] + [np.empty((B, widths[l]), dt) for l in range(1, L + 1)]
        # M[l] = W_l [a_{l-1}; 1] of the batch's forward pass, reused while neither W_l nor a_{l-1} has
        # changed since (m_valid[l]): the z-updates and W-update residuals need the same product.
        self.M = [None] + [np.empty((B, widths[l]), dt) for l in range(1, L + 1)]
        self.m_valid = [False] * (L + 1)
        self.lam0 = np.zeros((B, widths[L]), dt)  # the output update's multiplier: always 0 here
        self.beta, self.gamma = _admm_core.layer_penalties(settings.beta, settings.gamma, settings.depth_decay, L)
        # Each layer's proximal weight p_l (prox; output_prox for W_L) and the ridge r = weight_decay, both
        # relative to the batch Gram's mean diagonal: the step min ||z - W a||^2 + p ||W - W_prev||^2 +
        # r ||W||^2 is the proximal step of weight p + r anchored at W_prev p / (p + r) (_w_update).
        # A batch smaller than prox_batch is damped as if it had prox_batch rows (the settings' comment).
        self.prox_scale = max(1.0, settings.prox_batch / settings.batch_size)
        p = [0.0] + [settings.prox * self.prox_scale] * (L - 1) + [settings.output_prox]
        self._prox = [q + settings.weight_decay for q in p]
        self._shrink = [1.0] + [p[l] / self._prox[l] for l in range(1, L + 1)]
        self._sweep = sweeps.SWEEPS[settings.sweep_order]
        self.refit = OutputRefit(self.inputs, T, settings.output_refit) if settings.output_refit else None
        self._handed = None  # the weights compact_weights last handed out
        self.iteration = 0
        self.S = [None] * (L + 1)  # running input Grams (with the bias) of prox_metric="gram", float64
        if init is not None:
            self.from_state(init.state, init.weights)
        else:
            self.rng = rng
            self.W = [None]
            for l in range(1, L + 1):
                n_in = sizes[l - 1] - 1 if l == 1 else sizes[l - 1]
                if settings.initialization == "he":  # N(0, 2 / n_in) weights, zero biases
                    W = np.zeros((sizes[l], n_in + 1))
                    W[:, :-1] = rng.normal(0.0, np.sqrt(2.0 / n_in), (sizes[l], n_in))
                else:  # "uniform", PyTorch's default: weights and bias ~ U(-1/sqrt(n_in), 1/sqrt(n_in))
                    bound = 1.0 / np.sqrt(n_in)
                    W = rng.uniform(-bound, bound, (sizes[l], n_in + 1))
                self.W.append((self.inputs.compact(W) if l == 1 else W).astype(dt))
        if settings.prox_metric == "gram" and self.S[1] is None:
            # Layer 1's input never changes: its metric is the whole training set's mean Gram.
            self.S[1] = self.inputs.mean_gram()

    # -- the state --------------------------------------------------------------------------------
    def to_state(self) -> dict:
        """What a resumed fit needs: running Grams, penalties, epoch count and the shuffling stream."""
        return {
            "S": [np.zeros((0, 0)) if S is None else S for S in self.S[1:]],
            **_admm_core.penalty_state(self.beta, self.gamma),
            "iteration": self.iteration,
            "rng": self.rng.bit_generator.state,
            # center_inputs: W_1's bias for the centred inputs (unfolding the Result's would round)
            "bias_1": np.zeros(0) if self.inputs.mu64 is None else self.W[1][:, -1].copy(),
        }

    def from_state(self, state, weights):
        """Continue from a Result's state and weights (full width, W_1 for raw inputs)."""
        self.check_state(state, weights)
        self.W = [None] + [np.array(W, dtype=self.dtype) for W in weights]
        self.W[1] = self.inputs.compact(self.W[1])
        if self.inputs.mu64 is not None and np.size(state["bias_1"]):  # W_1's bias for centred inputs, as left
            self.W[1][:, -1] = state["bias_1"]
        else:
            self.inputs.unfold(self.W[1])
        for l, S in enumerate(state["S"], start=1):
            self.S[l] = None if np.size(S) == 0 else np.array(S, dtype=np.float64)
        self.beta, self.gamma = _admm_core.penalties_from_state(state)
        self.iteration = int(state["iteration"])
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = state["rng"]

    @staticmethod
    def check_state(state, weights):
        L = len(weights)
        _admm_core.check_penalties(state, L)
        _step.require(state, {"rng": (lambda v: isinstance(v, dict), "an object (a numpy bit generator's state)"),
                               "S": (_step.is_array_list, "a list of arrays"),
                               "bias_1": (lambda v: isinstance(v, np.ndarray), "an array")})
        if len(state["S"]) != L:
            raise ValueError(f"the mini-batch state of a {L}-layer network needs {L} Grams, got {len(state['S'])}")
        for i, (S, W) in enumerate(zip(state["S"], weights)):
            # W_1's Gram is over its kept columns: at most W_1's width
            ok = S.ndim == 2 and (S.shape == (0, 0) or (S.shape[0] == S.shape[1] and (
                S.shape[0] <= W.shape[1] if i == 0 else S.shape[0] == W.shape[1])))
            if S.dtype != np.float64 or not ok:
                raise ValueError(f"state array S{i} has shape {S.shape} and dtype {S.dtype}; W{i} requires float64 "
                                 f"of shape {(W.shape[1], W.shape[1])} (or (0, 0))")
        try:
            np.random.default_rng().bit_generator.state = state["rng"]
        except (TypeError, ValueError, KeyError) as exc:
            raise ValueError(f"the state's 'rng' is not a numpy PCG64 state ({exc})") from None
        bias_1 = state["bias_1"]
        if bias_1.size and (bias_1.ndim != 1 or bias_1.shape[0] != weights[0].shape[0] or bias_1.dtype.kind != "f"):
            raise ValueError(f"state array bias_1 has shape {bias_1.shape} and dtype {bias_1.dtype}; W0 requires "
                             f"a float vector of {weights[0].shape[0]} entries")

    # -- the weights handed out -------------------------------------------------------------------
    def compact_weights(self):
        """Copies (the sweeps update the weights in place), W_1 for raw inputs."""
        self._handed = [self.inputs.fold(self.W[1]), *(W.copy() for W in self.W[2:])]
        return self._handed

    def full_width(self, weights):
        return [self.inputs.expand(weights[0]), *weights[1:]]

    def compact_test(self, X_test):
        return self.inputs.compact_test(X_test)

    def train_outputs(self, weights):
        """(rows, outputs) blocks of a forward pass over the training rows for `weights` (from
        compact_weights).  For the weights handed out right after an output refit that kept the last
        hidden features, the outputs are those features times W_L: the refit's pass already computed
        them with these hidden weights, so no forward pass is made (the same numbers)."""
        if self.refit is not None and self.refit.valid and weights is self._handed:
            return self.refit.outputs(weights[-1])
        return self.test_outputs(weights, self.X)

    def test_outputs(self, weights, X_test):
        """(rows, outputs) blocks of a forward pass over the rows of X_test (at the user's width, any
        float dtype, or compact_test's copy), in the fit's dtype, for compact `weights`."""
        for rows, z1 in self.inputs.first_layer_blocks(weights[0], X=X_test):
            yield rows, _losses.later_layers(z1, weights[1:], overwrite=True)

    def running_counts(self):
        """[summed loss, correct predictions] of the last sweep's batches, each from the forward pass
        that began its step (train_metrics="running")."""
        return self._running[0], self._running[1]

    # -- an epoch ---------------------------------------------------------------------------------
    def sweep(self, timings):
        """One epoch over shuffled batches; returns the epoch's summed residuals and the penalties used."""
        sums = _admm_core.Sums(self.L)
        penalties = (list(self.beta), list(self.gamma))
        self._running = [0.0, 0]
        for rows, counts in self.schedule.epoch(self.rng):
            self.counts = counts
            self._batch(rows, sums, timings)
        if self.refit is not None:
            self.refit.fit(self.W)
        self.iteration += 1
        self.beta, self.gamma = _admm_core.grown_penalties(self.beta, self.gamma, self.s, self.iteration)
        return sums.values, penalties

    def _batch(self, rows, sums, timings):
        B, L = rows.shape[0], self.L
        if self.refit is not None:
            self.refit.valid = False  # the batch changes the weights the kept features belong to
        self.inputs.gather(rows, self.Xb)
        np.take(self.T, rows, axis=0, out=self.Tb[:B], mode="clip")
        t0 = time.perf_counter()
        self._forward(B)
        if self.y_index is not None and B:  # the network's outputs on the batch, before its update
            out = self.M[L][:B]
            self._running[0] += _losses.loss_sum(out, self.Tb[:B], self.loss)
            self._running[1] += int(np.count_nonzero(_losses.predict_index(out) == self.y_index[rows]))
        timings["z"] += time.perf_counter() - t0
        self._sweep(self, B, sums, timings)
        if self.first is not None and self.first.pending:
            t0 = time.perf_counter()
            self.first.finish(self.W[1])
            timings["W"] += time.perf_counter() - t0

    # -- the steps of a batch ---------------------------------------------------------------------
    def _linear(self, l, B, out):
        """out <- W_l [a_{l-1}; 1] for the batch's B rows."""
        return self.updates.linear(self.A[l - 1][:B], self.W[l], out)

    def _forward(self, B):
        """z_l = W_l [a_{l-1}; 1] (kept in M[l]), a_l = h(z_l) and a copy of it in H[l]."""
        self.m_valid = [False] + [True] * self.L
        if B == 0:  # this rank holds none of the batch's rows (over MPI)
            return
        # W_1 with updates of this batch not yet formed (first_layer): M[1] holds its product already
        pending = self.first is not None and self.first.pending
        for l in range(1, self.L):
            if l == 1 and pending:
                np.maximum(self.M[1][:B], 0, out=self.A[1][:B])
                self.H[1][:B] = self.A[1][:B]
                continue
            self.updates.hidden(self.A[l - 1][:B], self.W[l], self.M[l][:B], self.A[l][:B], self.H[l][:B])
        if not (self.L == 1 and pending):
            self._linear(self.L, B, self.M[self.L][:B])

    def _pre(self, l, B, out):
        """out <- W_l [a_{l-1}; 1]: the forward pass's product while it is still current."""
        if self.m_valid[l]:
            np.copyto(out, self.M[l][:B])
            return out
        if l == 1 and self.first is not None and self.first.pending:  # W_1 not formed: its product is M[1]'s
            raise RuntimeError("W_1's product was read after the batch's last W_1-update, which does not keep it")
        return self._linear(l, B, out)

    def output_target(self, B, sums):
        """z_L <- the output update against W_L a_{L-1} (lam = 0); its sums into `sums`."""
        L = self.L
        if B == 0:
            return
        m = self._pre(L, B, self.Z[L][:B])
        sums.add_output(*_admm_core.output_update(self.k, self.loss, self.Tb[:B], m, self.lam0[:B], self.beta[L],
                                                  False, m), m)

    def _a_update(self, l, B):
        """A_new[l] <- (beta W^T W + gamma I)^-1 (beta W^T (z_{l+1} - b) + gamma h(z_l)), W = W_{l+1}."""
        if B == 0:
            return
        self.updates.a_update(l + 1, self.W[l + 1], self.Z[l + 1][:B], self.H[l][:B], self.beta[l + 1],
                              self.gamma[l], self.A_new[l][:B], self.R[l + 1][:B])

    def _z_update(self, l, B):
        if B == 0:
            return 0.0, 0.0
        m = self._pre(l, B, self.Z[l][:B])
        zf = m.reshape(-1)
        return self.k.relu_z_update(self.A_new[l][:B].reshape(-1), zf, self.beta[l], self.gamma[l], zf,
                                    self.H[l][:B].reshape(-1))

    def _w_update(self, l, B):
        """W_l <- W_prev + (z_l - W_prev a) a^T (a a^T + P)^-1 with a = [a_{l-1}; 1] (module docstring),
        the ridge r = weight_decay * mean(diag(a a^T)) taken as a shrink of W_prev by p / (p + r) first."""
        A, Wp = self.A[l - 1][:B], self.W[l]
        R = self.R[l][:B]
        Z = self.Z[l][:B]
        M = self.M[l][:B] if self.m_valid[l] else None  # W_prev a_{l-1}, when still current
        n_rows = B if self.counts is None else int(self.counts.sum())  # of the (global) batch
        if l == 1 and self.first is not None and FirstLayer.applies(n_rows, Wp.shape[1]):
            # M[1] is W_1's current product (the batch's forward pass made it, each such update keeps
            # it) and becomes the product after the update; W_1 itself is formed when the batch ends.
            # Every sweep updates W_1 once, last in its order: after the batch's last, nothing reads M[1].
            keep = self.first.updates + 1 < self.s.batch_sweeps
            self.first.update(1, A, Z, self.M[1][:B], R, self._prox[1], self._shrink[1], self.counts, product=keep)
            self.m_valid[1] = keep
            return
        self.m_valid[l] = False  # W_l changes below, in place (compact_weights hands out copies)
        if self.s.prox_metric == "gram":
            if M is None:
                M = self._linear(l, B, R) if B else R
            np.subtract(Z, M, out=R)  # z_l - W_prev a_{l-1}
            G, rhs = updates.gram_system(l, A, R, check=self.shared is None)
            if self.shared is not None:  # the sums of every rank's rows, then the same checks on each
                B = int(self.counts.sum())
                packed = self.comm.allreduce(np.concatenate([G.reshape(-1), rhs.reshape(-1)]))
                G, rhs = packed[: G.size].reshape(G.shape), packed[G.size :].reshape(rhs.shape)
                updates._check_finite(l, float(np.trace(G)), rhs)
            if l > 1:
                decay = self.s.gram_decay
                self.S[l] = G / B if self.S[l] is None else decay * self.S[l] + (1.0 - decay) * (G / B)
            prox = self.s.output_prox if l == self.L else self.s.prox * self.prox_scale
            self.W[l] = updates.solve_gram(G, rhs, Wp, self.S[l], prox, self.s.weight_decay, B)
            return
        if self.shared is not None:  # the global batch's step, from this rank's rows
            self.shared.w_update(l, A, Z, M, R, Wp, self._prox[l], self._shrink[l], self.counts)
            return
        # The ridge: min ||Z - W a||^2 + p ||W - W_prev||^2 + r ||W||^2 is the proximal step of weight
        # p + r anchored at W_prev p / (p + r) (exact).
        self.updates.w_update(l, A, Z, M, R, Wp, self._prox[l], self._shrink[l])
