"""The sweep orders of a mini-batch ADMM batch (``sweep_order``), peers over the step object's
updates.  Each runs ``batch_sweeps`` sweeps on the batch's first B rows, after its forward pass, and
adds the residuals to the iteration's ``_admm_core.Sums``.  Every sweep first moves the output's
target z_L towards the labels (the output update against W_L a_{L-1}), then:

* ``targets_first``: the targets top down with the current weights (for l = L-1 .. 1 the a-update
  against W_{l+1}, z_{l+1} and the ReLU z-update), then every W_l refitted to z_l from its updated
  input a_{l-1};
* ``layerwise``: for l = L .. 1, the a-update of a_{l-1} against the old W_l, then W_l refitted to
  z_l from the forward activations a_{l-1}, then z_{l-1} against the new a_{l-1};
* ``residual``: as layerwise, but W_l first, so that a_{l-1} receives what W_l's step left of z_l.

The layerwise orders start each later sweep from a fresh forward pass.
"""

from __future__ import annotations

import time


def _output_target(step, B, sums, timings):
    t0 = time.perf_counter()
    step.output_target(B, sums)
    timings["z"] += time.perf_counter() - t0


def targets_first(step, B, sums, timings):
    L = step.L
    for _ in range(step.s.batch_sweeps):
        _output_target(step, B, sums, timings)
        for l in range(L - 1, 0, -1):  # the targets, top down, with the current weights
            t0 = time.perf_counter()
            step._a_update(l, B)
            t1 = time.perf_counter()
            rz, ra = step._z_update(l, B)
            sums.rz[l - 1] += rz
            sums.ra[l - 1] += ra
            step.A[l], step.A_new[l] = step.A_new[l], step.A[l]
            step.m_valid[l + 1] = False  # its input a_l has changed
            timings["a"] += t1 - t0
            timings["z"] += time.perf_counter() - t1
        t0 = time.perf_counter()
        for l in range(1, L + 1):  # then every W_l, fitted to its target from its updated input
            step._w_update(l, B)
        timings["W"] += time.perf_counter() - t0


def _down(step, B, sums, timings, w_first):
    """One layerwise sweep, top down; `w_first`: W_l before the a-update of a_{l-1} (residual)."""
    _output_target(step, B, sums, timings)
    for l in range(step.L, 0, -1):
        if w_first:
            t0 = time.perf_counter()
            step._w_update(l, B)
            timings["W"] += time.perf_counter() - t0
        if l > 1:
            t0 = time.perf_counter()
            step._a_update(l - 1, B)
            timings["a"] += time.perf_counter() - t0
        if not w_first:
            t0 = time.perf_counter()
            step._w_update(l, B)
            timings["W"] += time.perf_counter() - t0
        if l > 1:
            t0 = time.perf_counter()
            rz, ra = step._z_update(l - 1, B)
            sums.rz[l - 2] += rz
            sums.ra[l - 2] += ra
            timings["z"] += time.perf_counter() - t0


def _sweeps_down(step, B, sums, timings, w_first):
    for sweep in range(step.s.batch_sweeps):
        if sweep:
            step._forward(B)
        _down(step, B, sums, timings, w_first)


def layerwise(step, B, sums, timings):
    _sweeps_down(step, B, sums, timings, w_first=False)


def residual(step, B, sums, timings):
    _sweeps_down(step, B, sums, timings, w_first=True)


SWEEPS = {"residual": residual, "layerwise": layerwise, "targets_first": targets_first}
