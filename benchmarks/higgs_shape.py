"""Data-parallel mini-batch ADMM on a synthetic HIGGS-shaped set (10.5 M rows x 28 features, 28-300-1):
one epoch in one process and on K ranks, peak memory per rank against data + fit state, what the
collectives cost per batch step, and an alpha-beta projection to 8 ... 1,024 ranks.  Not a pytest
file: launcher and worker in one script.

    python benchmarks/higgs_shape.py fit --ranks 1 2 --out docs/scaling-data/2026-12-06-higgs.jsonl
    python benchmarks/higgs_shape.py calibrate --out docs/scaling-data/2026-12-06-higgs.jsonl
    python benchmarks/higgs_shape.py micro --out docs/scaling-data/2026-12-06-higgs.jsonl
    python benchmarks/higgs_shape.py project --out docs/scaling-data/2026-12-06-higgs.jsonl
    python benchmarks/higgs_shape.py fit --ranks 1 2 --n 200000 --n-test 20000 --out /tmp/h.jsonl   # a smoke run
    python benchmarks/higgs_shape.py check                      # the shards' union is the one-process set

* The data (``higgs_rows``): row block b (65,536 rows) of split s (0 training, 1 test) comes from
  ``np.random.default_rng([seed, s, b])`` alone, so a rank generates exactly the rows of its shard
  (``fastadmm.distributed.shard_rows``) and the shards concatenated are the one-process set.  28
  float32 features shaped like HIGGS's: 21 "low-level" (a lepton, the missing energy and 4 jets:
  log-normal transverse momenta, normal pseudorapidities, uniform angles, a 3-valued b-tag) and 7
  "high-level" invariant masses of pairs and triples of them (heavy right tails), each standardised
  by constants from a fixed calibration block.  Labels: a fixed random teacher, a 28-40-1 ReLU net
  of the standardised features plus Gaussian noise (sd 0.75 of the score's), thresholded at its
  median: the noiseless teacher's accuracy (about the best possible) is 79.5 % on the test rows.
* ``fit``: ``train_admm(X, y, X_test=, y_test=, hidden=(300,), max_iter=1, tol=0, random_state=0,
  comm=)`` with every default (one output unit: mini-batch ADMM, global batch 64, float32, one
  sweep per batch), K = 1 a plain process (no communicator), K > 1 one ``mpiexec -n K`` launch
  (the ``mpiexec`` beside ``sys.executable``), one BLAS / Numba / OpenMP thread per process.  Rank 0
  appends one JSON line: the epoch's training seconds (``history["elapsed"]``), the call's wall
  seconds, the test accuracy (each rank passes its shard of the test rows; the history holds the
  reduced accuracy), the data generation seconds (apart), and per rank the peak resident set
  (VmHWM, reset before the fit through /proc/self/clear_refs, after the generator's freed
  temporaries were handed back to the system, ``_measure.trim_heap``, so that the process holds
  what a file reader would leave; and per stage of the call: the
  argument checks, the step object's construction, the epoch with its evaluation), the rank's data
  bytes and the fit state's (``state_estimate``), their ratio, and the collectives (``_comm.MPIComm``:
  seconds, bytes received, calls) per batch step.
  ``--batch-size B``: another global batch (one epoch's accuracy at the batch that K ranks with
  64 rows each would use: a K-rank fit is the one-process fit with the same global batch).
* ``calibrate``: the seconds per batch step at several global batches on 2^19 rows, in one process
  and on 2 ranks (each rank's time inside the collectives apart), for the projection's split into
  the per-row and the repeated part; and the cost of the batch schedule
  (``fastadmm.minibatch.schedule.Schedule``: the permutation of all N rows, and per batch which
  rank holds each row) of N rows on K ranks, which every rank pays whole.
* ``micro``: under ``mpiexec -n 2``, Allgatherv and Allreduce (float32, IN_PLACE SUM) at a range of
  sizes and at the exact messages of one batch step of (a) 28-300-1, global batch 64 and (b) ten
  digits 784-300-10 (717 kept inputs), global batch 128, 2 sweeps; alpha and beta fitted per kind.
* ``project``: from the records in --out, the model of ``_minibatch_model.py`` projected to
  K = 8 ... 1,024 ranks with ``_scaling_model.NETWORK``'s cluster alpha and beta (assumed, not
  measured): seconds per epoch of 10.5 M rows at a global batch of 64 and of 64 rows per rank.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import proc_status_bytes, reset_hwm, trim_heap  # noqa: E402

HERE = Path(__file__).resolve()
MPIEXEC = Path(sys.executable).parent / "mpiexec"
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}

N_ROWS = 10_500_000  # HIGGS: 10.5 M training rows (the paper's set: 11 M, 500,000 of them held out)
N_TEST = 500_000
N_FEATURES = 28
BLOCK = 65_536  # rows per generator block
SEED = 2016
TRAIN, TEST, CALIBRATION = 0, 1, 2  # the splits: each a stream of blocks of its own
TEACHER_HIDDEN = 40
NOISE = 0.75  # the label noise's sd, relative to the teacher score's (robust) scale


# --------------------------------------------------------------------------------------------------
# The data, by row blocks


def _raw_block(seed: int, split: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Block b of `split`: the raw (unstandardised) features, float64 (BLOCK, 28), and the label noise."""
    rng = np.random.default_rng([seed, split, b])
    n = BLOCK
    F = np.empty((n, N_FEATURES))
    pt = [rng.lognormal(0.0, 0.55, n)]  # the lepton
    eta = [rng.normal(0.0, 1.0, n)]
    phi = [rng.uniform(-np.pi, np.pi, n)]
    F[:, 0], F[:, 1], F[:, 2] = pt[0], eta[0], phi[0]
    met, met_phi = rng.lognormal(-0.1, 0.65, n), rng.uniform(-np.pi, np.pi, n)  # the missing energy
    F[:, 3], F[:, 4] = met, met_phi
    for j in range(4):  # 4 jets: pT, eta, phi, b-tag
        pt.append(rng.lognormal(0.15 - 0.2 * j, 0.5, n))
        eta.append(rng.normal(0.0, 1.2, n))
        phi.append(rng.uniform(-np.pi, np.pi, n))
        c = 5 + 4 * j
        F[:, c], F[:, c + 1], F[:, c + 2] = pt[-1], eta[-1], phi[-1]
        F[:, c + 3] = rng.choice([0.0, 1.0, 2.0], size=n, p=[0.55, 0.2, 0.25])

    def mass2(i, k):  # the squared invariant mass of two massless objects
        return 2 * pt[i] * pt[k] * (np.cosh(eta[i] - eta[k]) - np.cos(phi[i] - phi[k]))

    lep_met = 2 * pt[0] * met * (1 - np.cos(phi[0] - met_phi))  # transverse mass of lepton + missing energy
    m_jj = mass2(1, 2)
    m_jjj = m_jj + mass2(1, 3) + mass2(2, 3)
    m_jlv = mass2(0, 1) + lep_met
    m_bb = mass2(3, 4)
    m_wbb = m_bb + mass2(2, 3) + mass2(2, 4)
    m_wwbb = m_wbb + lep_met + mass2(0, 3) + mass2(0, 4)
    for c, m2 in enumerate([m_jj, m_jjj, lep_met, m_jlv, m_bb, m_wbb, m_wwbb], start=21):
        F[:, c] = np.sqrt(m2)
    noise = rng.normal(0.0, 1.0, n)
    return F, noise


_CAL: dict = {}


def _calibration(seed: int) -> dict:
    """Fixed constants of the set (the same on every rank): the features' means and sds, the teacher's
    weights, and its score's median and scale, from the calibration block and the teacher's stream."""
    if seed not in _CAL:
        F, _ = _raw_block(seed, CALIBRATION, 0)
        mean, sd = F.mean(axis=0), F.std(axis=0)
        rng = np.random.default_rng([seed, 3])
        W1 = rng.normal(0.0, 1.0, (N_FEATURES, TEACHER_HIDDEN)) / math.sqrt(N_FEATURES)
        b1 = rng.normal(0.0, 0.5, TEACHER_HIDDEN)
        w2 = rng.normal(0.0, 1.0, TEACHER_HIDDEN) / math.sqrt(TEACHER_HIDDEN)
        cal = dict(mean=mean, sd=sd, W1=W1, b1=b1, w2=w2)
        s = _score(((F - mean) / sd).astype(np.float32), cal)
        q25, q50, q75 = np.percentile(s, [25, 50, 75])
        cal.update(median=float(q50), scale=float((q75 - q25) / 1.349))  # a normal's sd from its quartiles
        _CAL[seed] = cal
    return _CAL[seed]


def _score(X32: np.ndarray, cal: dict) -> np.ndarray:
    return np.maximum(X32.astype(np.float64) @ cal["W1"] + cal["b1"], 0.0) @ cal["w2"]


def _block(seed: int, split: int, b: int) -> tuple[np.ndarray, np.ndarray]:
    """Block b of `split`: standardised float32 features and int8 labels in {0, 1}."""
    cal = _calibration(seed)
    F, noise = _raw_block(seed, split, b)
    F -= cal["mean"]
    F /= cal["sd"]
    X = F.astype(np.float32)
    z = (_score(X, cal) - cal["median"]) / cal["scale"]
    y = (z + NOISE * noise > 0).astype(np.int8)
    return X, y


def higgs_rows(start: int, stop: int, seed: int = SEED, split: int = TRAIN) -> tuple[np.ndarray, np.ndarray]:
    """Rows [start, stop) of `split`: X (float32, C order) and y (int8), generated block by block
    (no array larger than the result and one block)."""
    X = np.empty((stop - start, N_FEATURES), np.float32)
    y = np.empty(stop - start, np.int8)
    if stop <= start:
        return X, y
    for b in range(start // BLOCK, (stop - 1) // BLOCK + 1):
        lo = b * BLOCK
        Xb, yb = _block(seed, split, b)
        s, e = max(start, lo), min(stop, lo + BLOCK)
        X[s - start : e - start] = Xb[s - lo : e - lo]
        y[s - start : e - start] = yb[s - lo : e - lo]
    return X, y


def teacher_accuracy(X: np.ndarray, y: np.ndarray, seed: int = SEED) -> float:
    """Accuracy of the noiseless teacher on (X, y): the best any classifier can expect on these rows."""
    cal = _calibration(seed)
    return float(np.mean((_score(X, cal) > cal["median"]) == (y == 1)))


# --------------------------------------------------------------------------------------------------
# Memory


def state_estimate(n_global: int, n_local: int, B: int, widths=(28, 300, 1), itemsize: int = 4, ranks: int = 1,
                   n_test_local: int = 0) -> dict:
    """Bytes of the fit's own arrays on one rank (fastadmm/minibatch/step.py, shared.py, schedule.py):

    * buffers: Xb (B x n_0), Tb, lam0 (B x n_L), per layer Z, R, M (B x n_l), per hidden layer A, H,
      A_new (B x n_l), the updates' scratch (the largest square system and product), layer 1's
      once-per-batch system and sums (first_layer.py: B x B and B x n_1), and over MPI
      SharedWUpdate's send / recv / square buffers and first_layer's gathers (the updates' square
      scratch as far as it is touched: ``square_allocated_untouched`` is the rest of its allocation);
    * weights: every W_l with its bias;
    * permutation: the epoch's permutation of all N rows (int32), drawn whole on every rank;
    * per_row: what the call keeps per training row of this rank besides X and y: the class index
      of each row (``_arrays.index_dtype``: int8 for two classes; the targets are looked up per
      batch, ``_losses.ClassTargets``).  Not counted as the fit's state (buffers + weights +
      permutation), listed apart."""
    from fastadmm._arrays import index_dtype

    index_itemsize = index_dtype(2).itemsize
    L = len(widths) - 1
    buffers = B * widths[0] + 2 * B * widths[L]
    buffers += sum(3 * B * widths[l] for l in range(1, L + 1)) + sum(3 * B * widths[l] for l in range(1, L))
    # The updates' square scratch: min(B, n_l)^2 for each W-update (B^2 in the push-through form, n_l^2
    # in the normal equations) or an a-update's n_{l+1}^2, the largest of them (step.py).
    allocated = max([min(B, w + 1) for w in widths[:L]] + list(widths[2:])) ** 2
    square = max(B * B if B < widths[l - 1] + 1 else (widths[l - 1] + 1) ** 2 for l in range(1, L + 1))
    h1_own = -(-widths[1] // ranks)  # the largest block of W_1's rows (Y's columns) a rank forms
    first = B * B + B * h1_own  # first_layer.FirstLayer: K and this rank's columns of Ytot
    product = max(max(widths[l] * (widths[l - 1] + 1), B * widths[l]) for l in range(1, L + 1))
    shared = 0
    if ranks > 1:
        pairs = [(widths[l - 1], widths[l]) for l in range(1, L + 1)]
        block = max(B * (m + h) for m, h in pairs)  # a batch's [A | R] or [A | Z]
        summed = max([(m + 1) * (m + 2 + h) for m, h in pairs if B >= m + 1] or [0])
        sq = max([B * B for m, h in pairs if B < m + 1] or [0])
        shared = max(block, max(h * (m + 1) for m, h in pairs)) + max(block, summed) + sq
        shared += B * max(m for m, h in pairs) + 2 * B * max(h for m, h in pairs)  # a whole update's batch
        m1, h1 = widths[0], widths[1]  # first_layer's gathered rows, residuals, send buffer, Y's blocks
        shared += B * m1 + B * h1 + max(B * max(m1, h1), h1 * (m1 + 1)) + B * h1_own + B * h1
    weights = sum(widths[l] * (widths[l - 1] + 1) for l in range(1, L + 1))
    out = dict(buffers=(buffers + square + product + first + shared) * itemsize, weights=weights * itemsize,
               permutation=4 * n_global, square_allocated_untouched=(allocated - square) * itemsize)
    out["state"] = out["buffers"] + out["weights"] + out["permutation"]
    out["per_row"] = n_local * index_itemsize  # the class index of each row (the targets are read per batch)
    out["test_per_row"] = n_test_local * index_itemsize  # the test labels' class index
    return out


# --------------------------------------------------------------------------------------------------
# Workers


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=HERE.parent).stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def _threadpools() -> list:
    import threadpoolctl

    return [{k: p.get(k) for k in ("internal_api", "num_threads", "version")} for p in threadpoolctl.threadpool_info()]


class _Stages:
    """Peak RSS per stage of one train_admm call: the wrapped constructor of the step object and the
    fit loop mark the stages' ends (VmHWM read and reset there)."""

    def __init__(self):
        import fastadmm.admm as admm_module
        from fastadmm import _fit

        self.peaks = {}
        self._admm, self._fit = admm_module, _fit
        self._orig_step, self._orig_run = admm_module.MiniBatchADMM, _fit.run
        stages = self

        def step(*a, **k):
            stages.mark("checks_and_targets")
            s = stages._orig_step(*a, **k)
            stages.mark("step_construction")
            return s

        def run(*a, **k):
            stages.mark("between")
            r = stages._orig_run(*a, **k)
            stages.mark("epoch_and_evaluation")
            return r

        admm_module.MiniBatchADMM, _fit.run = step, run

    def mark(self, name):
        self.peaks[name] = proc_status_bytes("VmHWM")
        self.peaks[name + "_rss_at_end"] = proc_status_bytes("VmRSS")
        reset_hwm()

    def restore(self):
        self._admm.MiniBatchADMM, self._fit.run = self._orig_step, self._orig_run


def worker_fit(args) -> None:
    import fastadmm
    from fastadmm.distributed import shard_rows

    comm, world, rank, size = None, None, 0, 1
    if args.mpi:
        from mpi4py import MPI

        from fastadmm import _comm

        world = MPI.COMM_WORLD
        comm = _comm.MPIComm(world)
        rank, size = comm.rank, comm.size
    # Everything the fit imports and compiles, before the data: a tiny fit on this process alone.
    Xw, yw = higgs_rows(0, 512, args.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fastadmm.train_admm(Xw, yw, hidden=(300,), max_iter=1, tol=0, random_state=0)
    del Xw, yw
    trimmed = [trim_heap()]  # the generator's freed temporaries (a file reader would leave none)
    rss_before_data = proc_status_bytes("VmRSS")
    t0 = time.perf_counter()
    start, stop = shard_rows(args.n, rank, size)
    X, y = higgs_rows(start, stop, args.seed, TRAIN)
    tstart, tstop = shard_rows(args.n_test, rank, size)
    Xt, yt = higgs_rows(tstart, tstop, args.seed, TEST)
    gen_seconds = time.perf_counter() - t0
    hwm_data = proc_status_bytes("VmHWM")
    trimmed.append(trim_heap())
    rss_after_data = proc_status_bytes("VmRSS")
    if world is not None:
        world.Barrier()
    reset_ok = reset_hwm()
    peak_before_fit = proc_status_bytes("VmHWM")
    stages = _Stages() if reset_ok else None
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = {} if args.batch_size is None else dict(batch_size=args.batch_size)
        r = fastadmm.train_admm(X, y, X_test=Xt, y_test=yt, hidden=(300,), max_iter=args.epochs, tol=0,
                                random_state=0, comm=comm, **batch)
    wall = time.perf_counter() - t0
    peak_after = proc_status_bytes("VmHWM")
    if stages is not None:
        stages.restore()
        peak_fit = max(v for k, v in stages.peaks.items() if not k.endswith("_rss_at_end"))
    else:
        peak_fit = peak_after
    B = int(r.settings["batch_size"])
    steps_per_epoch = max(1, args.n // B)
    steps = steps_per_epoch * r.n_iter
    est = state_estimate(args.n, X.shape[0], B, (N_FEATURES, 300, 1), np.dtype(r.settings["dtype"]).itemsize, size,
                         Xt.shape[0])
    data = X.nbytes + y.nbytes
    test = Xt.nbytes + yt.nbytes
    mine = dict(
        rank=rank, rows=int(X.shape[0]), test_rows=int(Xt.shape[0]), generate_seconds=gen_seconds,
        rss_before_data=rss_before_data, rss_after_data=rss_after_data, peak_during_generation=hwm_data,
        hwm_reset=reset_ok, peak_before_fit=peak_before_fit, peak_fit=peak_fit, heap_trimmed_bytes=trimmed,
        stage_peaks=None if stages is None else stages.peaks,
        data_bytes=data, test_data_bytes=test, state=est,
        ratio_peak_to_data_state=peak_fit / (data + est["state"]),
        ratio_peak_to_all_data_state=peak_fit / (data + test + est["state"]),
        ratio_above_baseline=(peak_fit - rss_before_data) / (data + test + est["state"]),
        timings={k: float(v) for k, v in r.timings.items()},
    )
    if comm is not None:
        mine.update(collective_seconds=comm.seconds, collective_bytes=comm.bytes, collective_calls=comm.calls,
                    collective_seconds_per_step=comm.seconds / steps, bytes_per_step=comm.bytes / steps,
                    calls_per_step=comm.calls / steps)
    per_rank = world.gather(mine, root=0) if world is not None else [mine]
    if rank != 0:
        return
    elapsed = r.history["elapsed"]
    record = dict(
        kind="fit", batch_size_asked=args.batch_size, ranks=size, n=args.n, n_test=args.n_test, seed=args.seed,
        epochs=r.n_iter,
        batch_size=B, dtype=r.settings["dtype"], batch_sweeps=r.settings.get("batch_sweeps"),
        steps_per_epoch=steps_per_epoch,
        epoch_seconds=elapsed[-1], train_seconds=elapsed, wall_seconds=wall,
        seconds_per_step=elapsed[-1] / steps_per_epoch if r.n_iter == 1 else None,
        test_accuracy=r.history["test_accuracy"][-1], train_accuracy_running=r.history["train_accuracy"][-1],
        status=str(r.status),
        generate_seconds_max=max(p["generate_seconds"] for p in per_rank), per_rank=per_rank,
        loadavg=os.getloadavg(), threadpools=_threadpools(),
    )
    if comm is not None:
        record.update(
            collective_share_rank0=per_rank[0]["collective_seconds"] / elapsed[-1],
            collective_share_mean=float(np.mean([p["collective_seconds"] for p in per_rank])) / elapsed[-1],
            bytes_per_step=per_rank[0]["bytes_per_step"], calls_per_step=per_rank[0]["calls_per_step"],
            collective_seconds_per_step_mean=float(np.mean([p["collective_seconds_per_step"] for p in per_rank])))
    if args.teacher:
        # The noiseless teacher on the whole test set (rank 0 regenerates it alone; outside the timing).
        Xa, ya = higgs_rows(0, args.n_test, args.seed, TEST)
        record["teacher_test_accuracy"] = teacher_accuracy(Xa, ya, args.seed)
        record["test_positive_share"] = float(np.mean(ya))
    Path(args.result).write_text(json.dumps(record))


def worker_micro(args) -> None:
    """Allgatherv / Allreduce (float32) at each size: median over reps, max over ranks."""
    from mpi4py import MPI

    from _minibatch_model import DIGITS_SHAPE, HIGGS_SHAPE, w_update_messages

    world = MPI.COMM_WORLD
    rank, size = world.Get_rank(), world.Get_size()

    def timed(fn):
        """(median seconds, calls, 10th percentile) of fn over as many calls as fit in about args.seconds
        (at least min_reps; the count decided on rank 0 from a first round and sent to all), each the
        maximum over ranks.  The percentile is the transfer with less of the other processes' noise."""
        for _ in range(args.warmup):
            fn()
        world.Barrier()
        times = []
        for _ in range(args.min_reps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        more = int(min(args.max_reps, args.seconds / max(float(np.median(times)), 1e-9))) - args.min_reps
        more = world.bcast(max(0, more), root=0)
        for _ in range(more):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        stats = np.array([np.median(times), np.percentile(times, 10)])
        worst = np.max(world.allgather(stats), axis=0)  # each statistic's maximum over the ranks
        return float(worst[0]), len(times), float(worst[1])

    def allreduce(entries):
        buf = np.ones(entries, np.float32)
        return timed(lambda: world.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM))

    def allgatherv(counts):
        counts = [int(c) for c in counts]
        send = np.ones(counts[rank], np.float32)
        recv = np.empty(sum(counts), np.float32)
        return timed(lambda: world.Allgatherv(send, [recv, counts]))

    out = dict(kind="micro", ranks=size, dtype="float32", sweep={"allreduce": {}, "allgatherv": {}}, shapes={})
    for entries in args.sizes:
        out["sweep"]["allreduce"][str(entries)] = allreduce(entries)
        out["sweep"]["allgatherv"][str(entries)] = allgatherv([entries // size + (r < entries % size)
                                                                for r in range(size)])
    for shape in (HIGGS_SHAPE, DIGITS_SHAPE):
        msgs = w_update_messages(shape["batch"], shape["widths"], shape["sweeps"], size)
        rows = []
        for m in msgs:
            t, reps, p10 = allreduce(m["entries"]) if m["kind"] == "allreduce" else allgatherv(m["counts"])
            rows.append(dict(m, seconds=t, reps=reps, p10_seconds=p10))
        out["shapes"][shape["name"]] = dict(batch=shape["batch"], sweeps=shape["sweeps"], widths=shape["widths"],
                                            messages=rows, step_seconds=sum(x["seconds"] for x in rows),
                                            step_p10_seconds=sum(x["p10_seconds"] for x in rows),
                                            step_bytes=4 * sum(x["entries"] for x in rows))
    if rank == 0:
        Path(args.result).write_text(json.dumps(out))


# --------------------------------------------------------------------------------------------------
# Launcher


def _cpu_busy_seconds() -> float:
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq = (fields + [0] * 7)[:7]
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def _launch(cmd: list[str], timeout: float) -> dict:
    """Run one command; its wall seconds and how many cores other processes kept busy meanwhile."""
    env = dict(os.environ, **ONE_THREAD)
    busy0, own0, t0 = _cpu_busy_seconds(), os.times(), time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    busy1, own1 = _cpu_busy_seconds(), os.times()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    own = (own1.children_user - own0.children_user) + (own1.children_system - own0.children_system)
    return dict(launch_wall_s=wall, other_cores=max(0.0, (busy1 - busy0 - own) / wall))


def _stamp(argv) -> dict:
    return dict(commit=_commit(), date=time.strftime("%Y-%m-%d"),
                command=" ".join(["python", "benchmarks/higgs_shape.py", *argv]),
                cores=len(os.sched_getaffinity(0)))


def _append(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def cmd_fit(args, argv) -> int:
    stamp = _stamp(argv)
    print("| ranks | s / epoch | wall s | test acc. | ms / step | peak / rank (MB) | data + state (MB) | ratio "
          "| collective share | bytes / step |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for K in args.ranks:
        with tempfile.TemporaryDirectory() as tmp:
            res = Path(tmp) / "r.json"
            common = ["--n", str(args.n), "--n-test", str(args.n_test), "--seed", str(args.seed), "--epochs",
                      str(args.epochs), "--result", str(res)] + (["--teacher"] if args.teacher else [])
            if args.batch_size is not None:
                common += ["--batch-size", str(args.batch_size)]
            if K == 1:
                cmd = ["nice", "-n", str(args.nice), sys.executable, str(HERE), "_fit", *common]
            else:
                cmd = ["nice", "-n", str(args.nice), str(MPIEXEC), "-n", str(K), sys.executable, str(HERE), "_fit",
                       "--mpi", *common]
            info = _launch(cmd, args.timeout)
            rec = dict(json.loads(res.read_text()), **info, **stamp)
        _append(args.out, rec)
        pr = rec["per_rank"]
        peaks = " / ".join(f"{q['peak_fit'] / 1e6:.0f}" for q in pr)
        budget = " / ".join(f"{(q['data_bytes'] + q['state']['state']) / 1e6:.0f}" for q in pr)
        ratios = " / ".join(f"{q['ratio_peak_to_data_state']:.2f}" for q in pr)
        print(f"| {K} | {rec['epoch_seconds']:.1f} | {rec['wall_seconds']:.1f} | {rec['test_accuracy']:.4f} | "
              f"{1e3 * rec['epoch_seconds'] / rec['steps_per_epoch']:.3f} | {peaks} | {budget} | {ratios} | "
              f"{rec.get('collective_share_rank0', 0.0):.1%} | {rec.get('bytes_per_step', 0.0):,.0f} |", flush=True)
    return 0


def _per_step(X, y, batch: int, repeats: int, comm=None) -> dict:
    """Training seconds per batch step at a global batch of `batch` rows (median of `repeats` one-epoch
    fits; X, y: this rank's rows) and, over MPI, this rank's seconds inside the collectives per step."""
    import fastadmm

    n = X.shape[0] if comm is None else sum(comm.allgather(int(X.shape[0])))
    steps = max(1, n // batch)
    out, inside = [], []
    for _ in range(repeats):
        before = 0.0 if comm is None else comm.seconds
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = fastadmm.train_admm(X, y, hidden=(300,), max_iter=1, tol=0, random_state=0, batch_size=batch,
                                    comm=comm)
        out.append(r.history["elapsed"][-1] / steps)
        inside.append(0.0 if comm is None else (comm.seconds - before) / steps)
    i = int(np.argsort(out)[len(out) // 2])  # the median run (odd repeats)
    return dict(batch=batch, step_s=out[i], inside_s=inside[i], all_s=out, all_inside_s=inside,
                timings={k: float(v) for k, v in r.timings.items()})


def _schedule_seconds(n: int, batch: int, ranks: int, repeats: int = 1) -> dict:
    """One epoch of the batch schedule of n rows on `ranks` ranks (rank 0's view; ranks=1: one process):
    the permutation and, per batch, this rank's rows and every rank's counts.  Seconds per epoch and step."""
    from fastadmm.distributed import shard_rows
    from fastadmm.minibatch.schedule import Schedule

    shards = None if ranks == 1 else [b - a for a, b in (shard_rows(n, r, ranks) for r in range(ranks))]
    best = math.inf
    for _ in range(repeats):
        sched = Schedule(n, batch, shards, 0)
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        for _rows, _counts in sched.epoch(rng):
            pass
        best = min(best, time.perf_counter() - t0)
    steps = max(1, n // batch)
    return dict(n=n, batch=batch, ranks=ranks, epoch_s=best, step_s=best / steps, steps=steps)


def worker_calibrate(args) -> None:
    """One process (no --mpi): the per-step times and the schedule's cost; --mpi: the per-step times of
    every rank, each on its shard of the same rows."""
    from fastadmm.distributed import shard_rows

    comm, world, rank, size = None, None, 0, 1
    if args.mpi:
        from mpi4py import MPI

        from fastadmm import _comm

        world = MPI.COMM_WORLD
        comm = _comm.MPIComm(world)
        rank, size = comm.rank, comm.size
    X, y = higgs_rows(*shard_rows(args.cal_n, rank, size), args.seed, TRAIN)
    warm = shard_rows(8192, rank, size)
    _per_step(X[: warm[1] - warm[0]], y[: warm[1] - warm[0]], 64, 1, comm)  # imports and compilation
    batches = list(args.push_batches) + list(args.normal_batches)
    steps = [_per_step(X, y, b, args.repeats, comm) for b in batches]
    if world is not None:
        per_rank = world.gather(steps, root=0)
        if rank == 0:
            rows = []
            for j, b in enumerate(batches):
                rows.append(dict(batch=b, step_s=per_rank[0][j]["step_s"],
                                 inside_s=[pr[j]["inside_s"] for pr in per_rank],
                                 outside_s=[pr[j]["step_s"] - pr[j]["inside_s"] for pr in per_rank],
                                 all_s=per_rank[0][j]["all_s"], timings=per_rank[0][j]["timings"]))
            Path(args.result).write_text(json.dumps(dict(ranks=size, steps=rows, loadavg=os.getloadavg())))
        return
    sched = []
    for batch in (64, None):
        for K in args.schedule_ranks:
            B = 64 if batch == 64 else 64 * K
            sched.append(_schedule_seconds(args.schedule_n, B, K))
    for K in (1, 2):  # the schedule inside the calibration fits (subtracted before the model is fitted)
        for b in batches:
            sched.append(dict(_schedule_seconds(args.cal_n, b, K), calibration=True))
    Path(args.result).write_text(json.dumps(dict(ranks=1, steps=steps, schedule=sched,
                                                 threadpools=_threadpools(), loadavg=os.getloadavg())))


def cmd_calibrate(args, argv) -> int:
    rec = dict(kind="calibrate", cal_n=args.cal_n, schedule_n=args.schedule_n, push_batches=args.push_batches,
               normal_batches=args.normal_batches)
    with tempfile.TemporaryDirectory() as tmp:
        for K in (1, 2):
            res = Path(tmp) / f"c{K}.json"
            cmd = [sys.executable, str(HERE), "_calibrate", "--result", str(res),
                   "--cal-n", str(args.cal_n), "--schedule-n", str(args.schedule_n), "--repeats", str(args.repeats),
                   "--seed", str(args.seed), "--push-batches", *map(str, args.push_batches),
                   "--normal-batches", *map(str, args.normal_batches), "--schedule-ranks",
                   *map(str, args.schedule_ranks)]
            if K > 1:
                cmd = [str(MPIEXEC), "-n", str(K), *cmd, "--mpi"]
            info = _launch(["nice", "-n", str(args.nice), *cmd], args.timeout)
            got = json.loads(res.read_text())
            if K == 1:
                rec.update(one_process=got["steps"], schedule=got["schedule"], threadpools=got["threadpools"],
                           launch_one_process=info)
            else:
                rec.update(two_ranks=got["steps"], launch_two_ranks=info)
    rec.update(_stamp(argv))
    _append(args.out, rec)
    for one, two in zip(rec["one_process"], rec["two_ranks"]):
        print(f"batch {one['batch']}: one process {1e6 * one['step_s']:.1f} us / step; 2 ranks "
              f"{1e6 * two['step_s']:.1f} us / step, outside the collectives "
              + " / ".join(f"{1e6 * t:.1f}" for t in two["outside_s"]) + " us")
    for row in rec["schedule"]:
        if not row.get("calibration"):
            print(f"schedule N={row['n']:,} B={row['batch']} K={row['ranks']}: {row['epoch_s']:.3f} s / epoch, "
                  f"{1e6 * row['step_s']:.2f} us / step")
    return 0


def cmd_micro(args, argv) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        res = Path(tmp) / "m.json"
        cmd = ["nice", "-n", str(args.nice), str(MPIEXEC), "-n", str(args.ranks_micro), sys.executable, str(HERE),
               "_micro", "--result", str(res), "--seconds", str(args.seconds), "--min-reps", str(args.min_reps),
               "--max-reps", str(args.max_reps), "--warmup", str(args.warmup), "--sizes", *map(str, args.sizes)]
        info = _launch(cmd, args.timeout)
        rec = dict(json.loads(res.read_text()), **info, **_stamp(argv))
    from _minibatch_model import fit_alpha_beta

    rec["fit"], rec["fit_p10"] = {}, {}
    for kind, table in rec["sweep"].items():
        sizes = [4 * int(s) for s in table]
        rec["fit"][kind] = fit_alpha_beta(sizes, [v[0] for v in table.values()])
        rec["fit_p10"][kind] = fit_alpha_beta(sizes, [v[2] for v in table.values()])
    _append(args.out, rec)
    for kind, table in rec["sweep"].items():
        print(f"{kind}: " + ", ".join(f"{int(s) * 4:,} B {1e6 * v[0]:.1f} us" for s, v in table.items()))
        print("  10th percentiles: " + ", ".join(f"{1e6 * v[2]:.1f}" for v in table.values()) + " us")
        for name in ("fit", "fit_p10"):
            f = rec[name][kind]
            print(f"  {name}: alpha {1e6 * f['alpha_s']:.2f} us, beta {1e9 * f['beta_s_per_byte']:.3f} ns/B "
                  f"({1 / max(f['beta_s_per_byte'], 1e-30) / 1e9:.2f} GB/s), max rel. error {f['max_rel_error']:.0%}")
    for name, shape in rec["shapes"].items():
        print(f"{name}: {1e6 * shape['step_seconds']:.1f} us per batch step (10th percentiles: "
              f"{1e6 * shape['step_p10_seconds']:.1f} us), {shape['step_bytes']:,} B: " + ", ".join(
            f"{m['kind']} {m['entries']:,} {1e6 * m['seconds']:.1f} us" for m in shape["messages"]))
    return 0


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def cmd_project(args, argv) -> int:
    """The projection from the last fit, calibrate and micro records of --out."""
    from _minibatch_model import (HIGGS_SHAPE, collective_seconds, fit_step_model, fit_whole_model, project_epoch,
                                  step_compute, w_update_messages)
    from _scaling_model import NETWORK

    last = {}
    for r in _read(args.out):
        if r.get("kind") == "fit":
            if r.get("batch_size_asked") is None:  # the default call (the --batch-size runs are apart)
                last[("fit", r["ranks"])] = r
        else:
            last[r.get("kind")] = r
    cal, micro = last["calibrate"], last["micro"]
    N, widths = args.n, HIGGS_SHAPE["widths"]
    n_in = widths[1] + 1  # the hidden layer's input width with the bias: push-through below, normal equations above
    sched = {(s["batch"], s["ranks"], s["n"]): s for s in cal["schedule"]}
    sn, cn = cal["schedule_n"], cal["cal_n"]

    def sched_step(B, K):
        """The schedule's seconds per step on K ranks for N rows (measured on schedule_n rows, scaled:
        its cost is linear in the rows)."""
        return sched[(B, K, sn)]["epoch_s"] * (N / sn) / max(1, N // B)

    from fastadmm.minibatch.shared import whole

    def all_whole(B):  # every layer's W-update taken whole on every rank at this global batch
        return all(whole(B, widths[l - 1], widths[l]) for l in range(1, len(widths)))

    models = {}
    for path, table, K in (("one_process", cal["one_process"], 1), ("mpi_2_ranks", cal["two_ranks"], 2)):
        for regime, batches in (("push", cal["push_batches"]), ("normal", cal["normal_batches"])):
            pts = [t for t in table if t["batch"] in batches]
            if K > 1 and regime == "push":
                # the batches where both layers are taken whole: their W-updates (rank 0's W clock less
                # its time in the collectives) are repeated work, the rest of the step this rank's rows
                pts = [t for t in pts if all_whole(t["batch"])]
                steps = [cn // t["batch"] for t in pts]
                w_secs = [t["timings"]["W"] / s - t["inside_s"][0] for t, s in zip(pts, steps)]
                rest = [max(t["outside_s"]) - w - sched[(t["batch"], K, cn)]["step_s"] for t, w in zip(pts, w_secs)]
                models[(path, regime)] = fit_whole_model([t["batch"] for t in pts], K, w_secs, rest)
                continue
            # the time outside the collectives (the slower rank's), less the schedule's own per-step cost
            secs = [(t["step_s"] if K == 1 else max(t["outside_s"])) - sched[(t["batch"], K, cn)]["step_s"]
                    for t in pts]
            models[(path, regime)] = fit_step_model([t["batch"] for t in pts], [t["batch"] / K for t in pts], secs,
                                                    quadratic=regime == "push")

    def model(path, B):
        return models[(path, "push" if B < n_in else "normal")]

    # The checks: the measured full-size epochs against the model's parts.
    fit_mem = micro["fit"]
    checks = {}
    if ("fit", 1) in last and last[("fit", 1)]["n"] == N:
        f1 = last[("fit", 1)]
        B = f1["batch_size"]
        c = step_compute(model("one_process", B), B, 1, sched_step(B, 1))
        checks["one_process"] = dict(batch=B, measured_step_s=f1["seconds_per_step"], model_step_s=c["compute_s"])
    if ("fit", 2) in last and last[("fit", 2)]["n"] == N:
        f2 = last[("fit", 2)]
        B = f2["batch_size"]
        msgs = w_update_messages(B, widths, 1, 2)
        comm2 = sum(collective_seconds(2, [m], 4, fit_mem[m["kind"]]["alpha_s"], fit_mem[m["kind"]]["beta_s_per_byte"])
                    for m in msgs)
        inside = [q["collective_seconds_per_step"] for q in f2["per_rank"]]
        c = step_compute(model("mpi_2_ranks", B), B, 2, sched_step(B, 2))
        checks["two_ranks"] = dict(
            batch=B, measured_step_s=f2["seconds_per_step"], inside_collectives_per_rank_s=inside,
            outside_collectives_per_rank_s=[f2["seconds_per_step"] - t for t in inside],
            micro_collectives_s=micro["shapes"][HIGGS_SHAPE["name"]]["step_seconds"], model_collectives_s=comm2,
            model_compute_s=c["compute_s"], model_step_s=c["compute_s"] + comm2)
    rows = {"global_batch_64": [], "64_rows_per_rank": []}
    for K in args.project_ranks:
        for key, B in (("global_batch_64", 64), ("64_rows_per_rank", 64 * K)):
            p = project_epoch(N, widths, B, K, model("mpi_2_ranks", B), sched_step(B, K), 4, 1, NETWORK)
            lean = project_epoch(N, widths, B, K, model("one_process", B), sched_step(B, K), 4, 1, NETWORK)
            p["epoch_s_one_process_path"] = lean["epoch_s"]
            rows[key].append(p)
    out = dict(kind="projection", n=N, network=NETWORK, models={f"{a}/{b}": m for (a, b), m in models.items()},
               shared_memory_fit=fit_mem, checks=checks, rows=rows, **_stamp(argv))
    _append(args.out, out)
    for (path, regime), m in models.items():
        print(f"{path}, {regime}: f {1e6 * m['f_s']:.1f} us + {1e9 * m['row_s']:.1f} ns / row + "
              f"{1e9 * m['quad_s']:.3f} ns B^2 + {1e9 * m.get('whole_row_s', 0.0):.1f} ns / global row taken whole "
              f"(batches {m['batches']}, max rel. error {m['max_rel_error']:.1%})")
    for name, chk in checks.items():
        print(f"check {name}: " + ", ".join(
            f"{k} " + (f"{v * 1e6:.1f} us" if isinstance(v, float) else
                       " / ".join(f"{x * 1e6:.1f}" for x in v) + " us" if isinstance(v, list) else str(v))
            for k, v in chk.items()))
    for key, table in rows.items():
        print(f"\nprojection ({key}), seconds per epoch of {N:,} rows (PROJECTED, not measured)")
        print("| K | global batch | rows / rank | steps | repeated us | of which schedule us | rows us "
              "| collectives us | s / epoch | collective share | s / epoch, one-process path |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for p in table:
            print(f"| {p['ranks']} | {p['global_batch']:,} | {p['rows_per_rank']:g} | {p['steps']:,} | "
                  f"{1e6 * p['repeated_s']:.1f} | {1e6 * p['schedule_s']:.1f} | {1e6 * p['rows_s']:.2f} | "
                  f"{1e6 * p['collectives_s']:.1f} | {p['epoch_s']:.3g} | {p['collective_share']:.0%} | "
                  f"{p['epoch_s_one_process_path']:.3g} |")
    return 0


def cmd_check(args, argv) -> int:
    """The union of the shards equals the one-process rows (and the test rows are other rows)."""
    from fastadmm.distributed import shard_rows

    X, y = higgs_rows(0, args.n, args.seed)
    for K in (2, 3, 7):
        parts = [higgs_rows(*shard_rows(args.n, r, K), args.seed) for r in range(K)]
        assert np.array_equal(np.concatenate([p[0] for p in parts]), X), K
        assert np.array_equal(np.concatenate([p[1] for p in parts]), y), K
    Xs, _ = higgs_rows(1000, 2000, args.seed)
    assert np.array_equal(Xs, X[1000:2000])
    Xt, yt = higgs_rows(0, min(args.n, 100_000), args.seed, TEST)
    assert not np.array_equal(Xt[:10], X[:10])
    q = np.percentile(X, [1, 50, 99], axis=0)
    print(f"ok: {args.n:,} rows, shards of 2, 3, 7 ranks equal the one-process rows; positives {y.mean():.3f}; "
          f"teacher accuracy on the test rows {teacher_accuracy(Xt, yt, args.seed):.4f}")
    print("feature mean / sd / 1 % / median / 99 %:")
    for c in range(N_FEATURES):
        print(f"  {c:2d}: {X[:, c].mean():+.2f} {X[:, c].std():.2f} {q[0, c]:+.2f} {q[1, c]:+.2f} {q[2, c]:+.2f}")
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(q):
        q.add_argument("--seed", type=int, default=SEED)
        q.add_argument("--nice", type=int, default=10)
        q.add_argument("--timeout", type=float, default=3600.0)

    f = sub.add_parser("fit", help="one epoch on K = 1 (a plain process) and K ranks")
    f.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    f.add_argument("--n", type=int, default=N_ROWS)
    f.add_argument("--n-test", type=int, default=N_TEST)
    f.add_argument("--epochs", type=int, default=1)
    f.add_argument("--teacher", action="store_true", help="also record the noiseless teacher's test accuracy")
    f.add_argument("--batch-size", type=int, default=None,
                   help="the global batch (default: train_admm's, 64 for this one-output net)")
    f.add_argument("--out", type=Path, required=True)
    common(f)
    c = sub.add_parser("calibrate", help="one process's seconds per step vs batch; the schedule's cost")
    c.add_argument("--cal-n", type=int, default=2**19)
    c.add_argument("--schedule-n", type=int, default=N_ROWS)
    c.add_argument("--repeats", type=int, default=3)
    c.add_argument("--push-batches", type=int, nargs="+", default=[32, 48, 64, 96, 128, 192, 256])
    c.add_argument("--normal-batches", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    c.add_argument("--schedule-ranks", type=int, nargs="+", default=[1, 2, 8, 16, 32, 64, 128, 256, 512, 1024])
    c.add_argument("--out", type=Path, required=True)
    common(c)
    m = sub.add_parser("micro", help="Allgatherv / Allreduce micro-benchmark under mpiexec")
    m.add_argument("--ranks-micro", type=int, default=2)
    m.add_argument("--sizes", type=int, nargs="+", default=[4**i for i in range(2, 11)])
    m.add_argument("--seconds", type=float, default=0.5)
    m.add_argument("--min-reps", type=int, default=64)
    m.add_argument("--max-reps", type=int, default=5000)
    m.add_argument("--warmup", type=int, default=20)
    m.add_argument("--out", type=Path, required=True)
    common(m)
    pr = sub.add_parser("project", help="the alpha-beta projection from the records of --out")
    pr.add_argument("--project-ranks", type=int, nargs="+", default=[2**i for i in range(3, 11)])
    pr.add_argument("--n", type=int, default=N_ROWS, help="training rows of the projected epoch")
    pr.add_argument("--out", type=Path, required=True)
    common(pr)
    ch = sub.add_parser("check", help="the shards' union is the one-process set")
    ch.add_argument("--n", type=int, default=300_000)
    common(ch)
    # the workers (started by the commands above)
    w = sub.add_parser("_fit")
    w.add_argument("--mpi", action="store_true")
    w.add_argument("--n", type=int, required=True)
    w.add_argument("--n-test", type=int, required=True)
    w.add_argument("--epochs", type=int, default=1)
    w.add_argument("--teacher", action="store_true")
    w.add_argument("--batch-size", type=int, default=None)
    w.add_argument("--result", required=True)
    w.add_argument("--seed", type=int, default=SEED)
    wc = sub.add_parser("_calibrate")
    wc.add_argument("--mpi", action="store_true")
    for name, kw in (("--result", dict(required=True)), ("--cal-n", dict(type=int)), ("--schedule-n", dict(type=int)),
                     ("--repeats", dict(type=int)), ("--seed", dict(type=int))):
        wc.add_argument(name, **kw)
    for name in ("--push-batches", "--normal-batches", "--schedule-ranks"):
        wc.add_argument(name, type=int, nargs="+")
    wm = sub.add_parser("_micro")
    wm.add_argument("--result", required=True)
    wm.add_argument("--sizes", type=int, nargs="+")
    for name in ("--min-reps", "--max-reps", "--warmup"):
        wm.add_argument(name, type=int)
    wm.add_argument("--seconds", type=float)
    args = p.parse_args(argv)
    if args.cmd == "_fit":
        worker_fit(args)
        return 0
    if args.cmd == "_calibrate":
        worker_calibrate(args)
        return 0
    if args.cmd == "_micro":
        worker_micro(args)
        return 0
    return dict(fit=cmd_fit, calibrate=cmd_calibrate, micro=cmd_micro, project=cmd_project, check=cmd_check)[args.cmd](
        args, argv)


if __name__ == "__main__":
    sys.exit(main())
