"""What the two ADMM step objects share: the per-layer penalties and their growth, the kept columns
of W_1 (compact and full width), the output update's dispatch, the dense a-update, and the named
sums of an iteration.

Layers are numbered 1 .. L; lists indexed by layer hold an unused entry 0 (and ``gamma`` an unused
entry L), so that ``beta[l]`` is layer l's penalty.  States store ``beta[1:]`` and ``gamma[1:L]``.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from . import _fit, _inputs, _linalg, _losses, _step

PROGRESS_KEYS = ("objective", "residual_z", "residual_a", "beta", "gamma")


def layer_penalties(beta, gamma, depth_decay, L):
    """[_, beta_1 .. beta_L] and [_, gamma_1 .. gamma_{L-1}, _] from the output's beta and the decay:
    ``beta_l = beta * depth_decay^(L-l)``, ``gamma_l = gamma * depth_decay^(L-1-l)``."""
    betas = [0.0] + [beta * depth_decay ** (L - l) for l in range(1, L + 1)]
    gammas = [0.0] + [gamma * depth_decay ** (L - 1 - l) for l in range(1, L)] + [0.0]
    return betas, gammas


def grown_penalties(beta, gamma, settings, iteration):
    """The penalties after `iteration` iterations: every ``penalty_every`` iterations each is
    multiplied by ``penalty_growth``, up to ``penalty_max``."""
    if settings.penalty_growth != 1.0 and iteration % settings.penalty_every == 0:
        cap = settings.penalty_max
        beta = [min(b * settings.penalty_growth, cap) for b in beta]
        gamma = [min(g * settings.penalty_growth, cap) for g in gamma]
    return beta, gamma


def penalty_state(beta, gamma) -> dict:
    """The penalties as a state stores them: beta_1 .. beta_L and gamma_1 .. gamma_{L-1}."""
    return {"beta": [float(b) for b in beta[1:]], "gamma": [float(g) for g in gamma[1:-1]]}


def penalties_from_state(state):
    """[_, beta_1 .. beta_L], [_, gamma_1 .. gamma_{L-1}, _] from a state's penalties."""
    return [0.0] + [float(b) for b in state["beta"]], [0.0] + [float(g) for g in state["gamma"]] + [0.0]


PENALTY_TYPES = {
    "beta": (_step.is_number_list, "a list of numbers"),
    "gamma": (_step.is_number_list, "a list of numbers"),
    "iteration": (lambda v: _step.is_int(v) and v >= 0, "an integer >= 0"),
}


def check_penalties(state, L) -> None:
    """ValueError unless the state holds L beta and L - 1 gamma values and an iteration count."""
    _step.require(state, PENALTY_TYPES)
    if len(state["beta"]) != L or len(state["gamma"]) != L - 1:
        raise ValueError(f"state['beta'] and state['gamma'] hold {len(state['beta'])} and {len(state['gamma'])} "
                         f"values; a network of {L} layers has {L} and {L - 1}")


class InputColumns:
    """The features W_1 meets: all of them, or the kept ones (``active``), with the bias column last
    when ``intercept``.  ``n_columns`` is W_1's width at the user's input width."""

    def __init__(self, active: Optional[np.ndarray], intercept: bool, n_columns: int):
        self.active, self.intercept, self.n_columns = active, intercept, n_columns

    def compact(self, W1):
        """W_1's columns of the kept features (and the bias's)."""
        return _inputs.take_columns(W1, self.active, self.intercept)

    def expand(self, W1):
        """W_1 at the user's width: zeros for the features left out."""
        full = np.zeros((W1.shape[0], self.n_columns), W1.dtype)
        return _inputs.put_columns(full, W1, self.active, self.intercept)


def output_update(kernels, loss, T, m, lam, beta, lam_step, out):
    """z_L <- argmin_z loss(z, T) + <z, lam> + beta ||z - m||^2 into `out` (may be `m`), the multiplier
    stepped when `lam_step`; returns the kernel's sums (loss, <lam, z>, ||z - m||^2)."""
    if loss == "cross_entropy":  # a K-dimensional solve per sample (row)
        return kernels.softmax_z_update(T, m, lam, beta, lam_step, out)
    return kernels.output_z_update(T.reshape(-1), m.reshape(-1), lam.reshape(-1), beta, _losses.LOSS_CODE[loss],
                                   lam_step, out.reshape(-1))


def a_update_dense(H, R, W, beta, gamma, out):
    """out <- (gamma h(z_l) + beta R W) (beta W^T W + gamma I)^-1 (one sample per row): the a-update
    with R = z_{l+1} minus W_{l+1}'s bias, H = h(z_l)."""
    Pt, Q = _linalg.a_update_operators(W, beta, gamma)
    np.matmul(H, Q.astype(out.dtype), out=out)
    _linalg.gemm_accumulate(out, R, Pt)


class Sums:
    """An iteration's sums, summed over ranks as one float64 array (``values``), by name:
    ``rz[l-1]`` = ||z_l - W_l a_{l-1}||^2 (l = 1 .. L), ``ra[l-1]`` = ||a_l - h(z_l)||^2
    (l = 1 .. L-1), then the loss, <lam, z_L> and ||z_L||^2."""

    def __init__(self, L: int, values: Optional[np.ndarray] = None):
        self.L = L
        self.values = np.zeros(2 * L + 2) if values is None else values
        self.rz = self.values[:L]
        self.ra = self.values[L : 2 * L - 1]

    LOSS, LAM_Z, ZZ = -3, -2, -1  # offsets from the end of values

    def add_output(self, loss_sum, lam_dot_z, rz, zL):
        """The output update's sums and ||z_L||^2."""
        v = self.values
        v[self.L - 1] += rz
        v[self.LOSS] += loss_sum
        v[self.LAM_Z] += lam_dot_z
        zf = zL.reshape(-1)
        v[self.ZZ] += float(np.dot(zf, zf))

    def objective(self, beta, gamma) -> float:
        """The augmented Lagrangian (docs/ALGORITHM.md, section 1) for the penalties the sums were made with."""
        L, v = self.L, self.values
        obj = sum(gamma[l] * self.ra[l - 1] + beta[l] * self.rz[l - 1] for l in range(1, L))
        return float(obj + v[self.LOSS] + v[self.LAM_Z] + beta[L] * self.rz[L - 1])


def progress(L):
    """The fit loop's reading of a sweep of either ADMM step object: (reduced sums, penalties used) ->
    Progress with the objective, the residuals per layer and the output's relative residual."""

    def read(values, penalties):
        sums = Sums(L, values)
        beta, gamma = penalties
        objective = sums.objective(beta, gamma)
        fields = dict(objective=objective, residual_z=[math.sqrt(v) for v in sums.rz],
                      residual_a=[math.sqrt(v) for v in sums.ra], beta=beta[1], gamma=gamma[1])
        residual = math.sqrt(sums.rz[L - 1] / max(values[Sums.ZZ], 1e-300))  # ||z_L - W_L a_{L-1}|| / ||z_L||
        return _fit.Progress(fields, objective, residual)

    return read
