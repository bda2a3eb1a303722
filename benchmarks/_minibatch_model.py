"""The alpha-beta model of data-parallel mini-batch ADMM over MPI, fitted by ``higgs_shape.py``.

Pure functions of the measurements: no MPI, no timing here.

Per global batch of B rows on K ranks, every rank runs the whole step loop (a rank that holds none
of the batch's rows still takes part in every W-update), so the seconds per step are

    t_step(K, B) = repeated(B, K)  +  row * B / K  +  collectives(K, B)

* ``row``: the seconds per batch row of the work that stays on a rank's rows (gather, forward pass,
  output, a- and z-updates, the local sums and residuals of the W-updates);
* ``repeated``: what every rank does whole, whatever K: the Python step loop and the solves of the
  W-updates (push-through, B < n: the B x B system of the gathered block, ~2 m B^2 + B^3 / 3 flops;
  normal equations, B >= n: the n x n system), fitted as t(B) = f + q B^2 + r B / K (push-through)
  or f + r B / K (normal equations) over several B, on one process (K = 1, the compiled step) and
  on 2 ranks (the MPI path: the time outside the collectives, the slower rank's); on the MPI path
  at the batches where every layer is taken whole (``shared.whole``) the W-updates' own seconds are
  repeated work that grows with the global batch, f_W + w B, and only the rest is fitted as
  f_o + r B / K (``fit_whole_model``); plus the
  schedule's own cost on K ranks (the permutation of all N rows each epoch and, per batch, which
  rank holds each row), measured directly on ``fastadmm.minibatch.schedule.Schedule`` and taken
  out of the calibration times before the fit;
* ``collectives``: per layer and W-update (``fastadmm/minibatch/shared.py``) an Allgatherv of the
  batch's [A | Z] rows, B (m + h) entries, for a layer taken whole; else an Allgatherv of [A | R],
  B (m + h), and one of W's rows, h (m + 1), if B < m + 1, or one Allreduce of n (n + h) entries,
  n = m + 1; layer 1 in the push-through form gathers its input and assembles W_1 once per batch
  and gathers the residuals and Y's column blocks every sweep (``first_layer.py``,
  ``w_update_messages``).  Allgatherv of S
  bytes in total: recursive doubling / ring, ceil(log2 K) alpha + (K - 1) / K S beta; Allreduce:
  ``_scaling_model.allreduce_seconds`` (recursive doubling below 2 kB, Rabenseifner above).
"""

from __future__ import annotations

import math

import numpy as np

from _scaling_model import NETWORK, allreduce_seconds

# The shapes of the projection: widths [inputs (kept), hidden..., outputs], global batch, sweeps per batch.
HIGGS_SHAPE = dict(name="higgs 28-300-1", widths=(28, 300, 1), batch=64, sweeps=1, n=10_500_000)
DIGITS_SHAPE = dict(name="ten digits 784-300-10 (717 kept)", widths=(717, 300, 10), batch=128, sweeps=2, n=60_000)


def w_update_messages(B: int, widths, sweeps: int = 1, ranks: int = 2) -> list[dict]:
    """The collectives of one batch step: kind ("allgatherv" / "allreduce"), entries received per rank
    (the gathered total, or the reduced length) and each rank's counts of the gather on `ranks` ranks.

    Layer 1 in the push-through form (B < n; ``first_layer.FirstLayer``: its input does not change
    within a batch): the batch's rows once per batch, B m; every sweep the residuals, B h, and but
    in the last the ranks' column blocks of Y = K^-1 R, B h; W_1's rows once per batch, h n.  Every other W-update
    (``shared.SharedWUpdate``), every sweep: a layer taken whole (``shared.whole``) gathers [A | Z],
    B (m + h); otherwise B < n: [A | R] rows, B (m + h), then W's rows, h n; else the all-reduce of
    n (n + h)."""
    from fastadmm.minibatch.shared import whole

    out = []
    for sweep in range(sweeps):
        for l in range(1, len(widths)):
            m, h = widths[l - 1], widths[l]
            n = m + 1
            rows = _even(B, ranks)
            if l == 1 and B < n:
                if sweep == 0:
                    out.append(dict(layer=l, kind="allgatherv", what="A rows (once per batch)", entries=B * m,
                                    counts=[c * m for c in rows]))
                out.append(dict(layer=l, kind="allgatherv", what="R rows", entries=B * h,
                                counts=[c * h for c in rows]))
                if sweep < sweeps - 1:  # the batch's last update keeps no product
                    out.append(dict(layer=l, kind="allgatherv", what="Y column blocks", entries=B * h,
                                    counts=[B * c for c in _even(h, ranks)]))
                if sweep == sweeps - 1:
                    out.append(dict(layer=l, kind="allgatherv", what="W rows (once per batch)", entries=h * n,
                                    counts=[c * n for c in _even(h, ranks)]))
            elif whole(B, m, h):
                out.append(dict(layer=l, kind="allgatherv", what="[A | Z] rows (taken whole)", entries=B * (m + h),
                                counts=[c * (m + h) for c in rows]))
            elif B >= n:
                out.append(dict(layer=l, kind="allreduce", what="[G | rhs]", entries=n * (n + h)))
            else:
                out.append(dict(layer=l, kind="allgatherv", what="[A | R] rows", entries=B * (m + h),
                                counts=[c * (m + h) for c in rows]))
                out.append(dict(layer=l, kind="allgatherv", what="W rows", entries=h * n,
                                counts=[c * n for c in _even(h, ranks)]))
    return out


def _even(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (r < extra) for r in range(parts)]


def allgatherv_seconds(k: int, total_bytes: float, alpha: float, beta: float) -> float:
    """An Allgatherv that leaves total_bytes on every rank: ceil(log2 k) alpha + (k - 1) / k S beta
    (recursive doubling, or a ring's bandwidth term with the doubling's latency)."""
    if k == 1:
        return 0.0
    return math.ceil(math.log2(k)) * alpha + (k - 1) / k * total_bytes * beta


def collective_seconds(k: int, messages: list[dict], itemsize: int, alpha: float, beta: float) -> float:
    total = 0.0
    for msg in messages:
        nbytes = msg["entries"] * itemsize
        if msg["kind"] == "allgatherv":
            total += allgatherv_seconds(k, nbytes, alpha, beta)
        else:
            total += allreduce_seconds(k, nbytes, alpha, beta)
    return total


def fit_alpha_beta(sizes_bytes, seconds) -> dict:
    """t(S) = alpha + beta S by non-negative least squares on relative errors (each point divided by
    its own time), as _scaling_model.fit_model does for the full-batch all-reduce."""
    from scipy.optimize import nnls

    s = np.asarray(sizes_bytes, float)
    t = np.asarray(seconds, float)
    (alpha, beta), _ = nnls(np.column_stack([1 / t, s / t]), np.ones_like(t))
    pred = alpha + beta * s
    return dict(alpha_s=float(alpha), beta_s_per_byte=float(beta),
                max_rel_error=float(np.max(np.abs(pred - t) / t)), points=len(t))


def fit_step_model(batches, rows, step_seconds, quadratic: bool) -> dict:
    """Seconds per step (the schedule's own cost taken out) t(B) = f + r rows (+ q B^2), rows = the
    rank's rows of the global batch B: non-negative least squares on relative errors.  f and q B^2 are
    what every rank repeats (the loop, the solves, the push-through's B x B system), r per row."""
    from scipy.optimize import nnls

    B = np.asarray(batches, float)
    R = np.asarray(rows, float)
    t = np.asarray(step_seconds, float)
    cols = [np.ones_like(B), R] + ([B * B] if quadratic else [])
    coef, _ = nnls(np.column_stack(cols) / t[:, None], np.ones_like(t))
    f, r = coef[0], coef[1]
    q = coef[2] if quadratic else 0.0
    pred = f + r * R + q * B * B
    return dict(f_s=float(f), row_s=float(r), quad_s=float(q), batches=B.astype(int).tolist(), rows=R.tolist(),
                measured_s=t.tolist(), fitted_s=pred.tolist(), max_rel_error=float(np.max(np.abs(pred - t) / t)))


def fit_whole_model(batches, k: int, w_seconds, rest_seconds) -> dict:
    """The step model of the MPI path where every layer is taken whole (``shared.whole``): the
    W-updates' seconds outside the collectives, which every rank spends on the whole global batch,
    t_W(B) = f_W + w B (repeated, ``whole_row_s``), and the rest of the step, t_o(B) = f_o + r B / k
    (this rank's rows); each by non-negative least squares on relative errors."""
    from scipy.optimize import nnls

    B = np.asarray(batches, float)
    parts = {}
    for name, secs, x in (("whole", w_seconds, B), ("rest", rest_seconds, B / k)):
        t = np.asarray(secs, float)
        (f, r), _ = nnls(np.column_stack([np.ones_like(x), x]) / t[:, None], np.ones_like(t))
        parts[name] = (f, r, f + r * x, t)
    measured = parts["whole"][3] + parts["rest"][3]
    pred = parts["whole"][2] + parts["rest"][2]
    return dict(f_s=float(parts["whole"][0] + parts["rest"][0]), row_s=float(parts["rest"][1]), quad_s=0.0,
                whole_row_s=float(parts["whole"][1]), batches=B.astype(int).tolist(), rows=(B / k).tolist(),
                measured_s=measured.tolist(), fitted_s=pred.tolist(),
                max_rel_error=float(np.max(np.abs(pred - measured) / measured)))


def step_compute(model: dict, B: int, k: int, schedule_step_s: float) -> dict:
    """Per-rank compute seconds of one step on k ranks: repeated (f + q B^2 + w B for the W-updates
    taken whole on every rank + the schedule's cost per step on k ranks) and rows (r B / k)."""
    repeated = model["f_s"] + model["quad_s"] * B * B + model.get("whole_row_s", 0.0) * B + schedule_step_s
    rows = model["row_s"] * B / k
    return dict(repeated_s=repeated, rows_s=rows, compute_s=repeated + rows)


def project_epoch(n: int, widths, B: int, k: int, step_model: dict, schedule_step_s: float, itemsize: int = 4,
                  sweeps: int = 1, network=NETWORK) -> dict:
    """Projected seconds of one epoch on k ranks (one per core) with a global batch of B rows:
    steps * (compute + collectives), collectives at `network`'s alpha, beta."""
    steps = max(1, n // B)
    c = step_compute(step_model, B, k, schedule_step_s)
    msgs = w_update_messages(B, widths, sweeps, k)
    comm = collective_seconds(k, msgs, itemsize, network["alpha_s"], network["beta_s_per_byte"])
    per_step = c["compute_s"] + comm
    return dict(ranks=k, global_batch=B, rows_per_rank=B / k, steps=steps, step_s=per_step,
                repeated_s=c["repeated_s"], rows_s=c["rows_s"], schedule_s=schedule_step_s, collectives_s=comm,
                epoch_s=steps * per_step, collective_share=comm / per_step,
                bytes_per_step=sum(m["entries"] for m in msgs) * itemsize,
                messages=[(m["kind"], m["entries"]) for m in msgs])
