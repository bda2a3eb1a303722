"""Strong scaling of data-parallel ADMM over MPI: seconds per iteration for K ranks, the all-reduce's
share of an iteration, a micro-benchmark of the packed Allreduce, and the fitted scaling model of
docs/SCALING.md. Not a pytest file. This is the launcher; what each rank runs is ``_mpi_worker.py``,
the model ``_scaling_model.py``, the rows ``_data.py`` and the FLOP count ``_flops.py``.

    python benchmarks/mpi_scaling.py                         # K = 1 2 3 4, 3 rounds, N = 60,000
    python benchmarks/mpi_scaling.py --ranks 1 2 --rounds 5 --out /tmp/mpi_scaling.json
    python benchmarks/mpi_scaling.py --data synthetic        # without MNIST files
    python benchmarks/mpi_scaling.py --ranks 1 2 --rounds 1 --n 2000 --iters 2 --warmup 1 --micro-reps 20 \
        --micro-warmup 2 --gemm-seconds 0.2 --retry-busy 0 --out /tmp/s.json   # a quick check that it runs

The net is MNIST-shaped, 784-100-50-10-1 (binary task: odd vs even digit), float64, N training
samples: the MNIST training images of ``--data`` (a folder of IDX files; default
$FASTADMM_BENCH_MNIST, else $FASTADMM_DATA, else synthetic) tiled to N rows, or synthetic pixels
with an all-zero border as in MNIST. Each configuration is one ``mpiexec -n K`` launch (the
``mpiexec`` beside ``sys.executable``) with one BLAS / Numba / OpenMP thread per rank. Rounds go 1, 2, 3, 4, 1, 2, ... so that every K sees the same background; a launch records how
many cores other processes kept busy meanwhile (from /proc/stat), is repeated up to
``--retry-busy`` times while that is >= QUIET, and the JSON reports medians over all launches and
over the quiet ones (each launch counts with its median over the timed iterations; the first
``--warmup`` iterations of a fit are left out). Ranks beyond the machine's cores are
oversubscribed: they time-share the cores and MPICH's waiting ranks spin.

Per iteration a rank records the wall time (rank 0's clock between two callbacks) and the seconds
inside its all-reduces (``comm.seconds``: the transfer plus the wait for the slowest rank). Besides:
the Allreduce(IN_PLACE, SUM) micro-benchmark at the sizes this net packs per layer and at 100 x 100;
a GEMM calibration (what 2 single-thread processes get against 1 at this moment); the serial
per-iteration cost every rank pays whole (one process, tiny N, extrapolated to N = 0); and a
control for the correctness check: one process on the same rows in reverse order, whose weights
differ from the forward-order fit by rounding alone.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _data import active_features, scaling_data_default
from _flops import HIDDEN
from _mpi_worker import atomic_json
from _scaling_model import fit_model, flops_per_iteration, packed_sizes, predict, project

WORKER = Path(__file__).resolve().with_name("_mpi_worker.py")
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


# --------------------------------------------------------------------------------------------------
# Launching one mpiexec


def _mpiexec() -> Path:
    path = Path(sys.executable).parent / "mpiexec"
    if not path.exists():
        sys.exit(f"no mpiexec beside {sys.executable}; install it with `pip install 'fastadmm[mpi]'`")
    return path


def _cpu_busy_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, from /proc/stat (0, 0 elsewhere)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0, 0.0
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / hz, steal / hz


def _launch(k: int, worker_args: list[str], timeout: float) -> dict:
    """Run one mpiexec; returns its wall time and how many cores other processes kept busy meanwhile
    (machine-wide busy CPU time minus that of mpiexec and its ranks, over the wall time)."""
    env = dict(os.environ, **ONE_THREAD)
    cmd = [str(_mpiexec()), "-n", str(k), sys.executable, str(WORKER), *worker_args]
    busy0, steal0 = _cpu_busy_seconds()
    own0, t0 = os.times(), time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    busy1, steal1 = _cpu_busy_seconds()
    own1 = os.times()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    own = (own1.children_user - own0.children_user) + (own1.children_system - own0.children_system)
    return dict(wall_s=wall, other_cores=max(0.0, (busy1 - busy0 - own) / wall), steal_cores=(steal1 - steal0) / wall)


QUIET = 0.2  # a launch during which other processes kept fewer cores than this busy counts as quiet


def _summarise_fits(runs: list[dict]) -> dict:
    """Medians over launches of each launch's median over its timed iterations."""
    it = [statistics.median(run["iteration_seconds"]) for run in runs]
    red = [statistics.median(float(np.mean(col)) for col in zip(*run["allreduce_seconds"])) for run in runs]
    red_max = [statistics.median(float(np.max(col)) for col in zip(*run["allreduce_seconds"])) for run in runs]
    return dict(iteration_s=statistics.median(it), allreduce_s=statistics.median(red),
                allreduce_max_rank_s=statistics.median(red_max),
                allreduce_share=statistics.median(red) / statistics.median(it),
                launches=len(runs), per_launch_iteration_s=it, per_launch_allreduce_s=red,
                other_cores=[run["other_cores"] for run in runs])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3, 4])
    p.add_argument("--rounds", type=int, default=3, help="launches per K (medians over rounds)")
    p.add_argument("--n", type=int, default=60_000, help="training samples (all ranks together)")
    p.add_argument("--iters", type=int, default=6, help="timed iterations per fit")
    p.add_argument("--warmup", type=int, default=2, help="iterations per fit left out of the timing")
    p.add_argument("--data", default=scaling_data_default(),
                   help="folder of MNIST IDX files, or 'synthetic' (default: $FASTADMM_BENCH_MNIST, else "
                        "$FASTADMM_DATA, else synthetic)")
    p.add_argument("--micro-reps", type=int, default=2000)
    p.add_argument("--micro-warmup", type=int, default=100)
    p.add_argument("--gemm-seconds", type=float, default=2.0, help="per launch of the GEMM calibration (0: skip)")
    p.add_argument("--out", default="mpi_scaling.json")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per mpiexec launch")
    p.add_argument("--retry-busy", type=int, default=2,
                   help="relaunch a configuration up to this many times while other processes keep the machine busy")
    args = p.parse_args(argv)
    if args.warmup < 1 or args.iters < 1:
        p.error("--warmup and --iters must be >= 1 (the first iteration has no start stamp)")

    cores = len(os.sched_getaffinity(0))
    n_active = active_features(args.data)
    sizes = sorted(set(packed_sizes(n_active)) | {100 * 100})
    fits = {k: [] for k in args.ranks}
    micro = {k: [] for k in args.ranks if k > 1}
    gemm = {1: [], 2: []}
    diffs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            if args.gemm_seconds > 0:
                for _ in range(1 + args.retry_busy):
                    pair = []
                    for k in gemm:
                        res = Path(tmp) / f"gemm{k}_{r}.json"
                        info = _launch(k, ["gemm", "--result", str(res), "--gemm-seconds",
                                           str(args.gemm_seconds)], args.timeout)
                        pair.append(dict(json.loads(res.read_text()), **info))
                    for k, run in zip(gemm, pair):
                        gemm[k].append(run)
                    if max(run["other_cores"] for run in pair) < QUIET:
                        break
            for k in args.ranks:
                for attempt in range(1 + args.retry_busy):
                    res, wts = Path(tmp) / f"fit{k}_{r}_{attempt}.json", Path(tmp) / f"W{k}.npz"
                    extra = ["--weights", str(wts)] if r == 0 and attempt == 0 else []
                    info = _launch(k, ["fit", "--result", str(res), "--data", args.data, "--n",
                                       str(args.n), "--iters", str(args.iters), "--warmup", str(args.warmup), *extra],
                                   args.timeout)
                    fits[k].append(dict(json.loads(res.read_text()), **info))
                    print(f"round {r} K={k}: {statistics.median(fits[k][-1]['iteration_seconds']):.3f} s/iteration "
                          f"(other processes kept {info['other_cores']:.2f} cores busy)", flush=True)
                    if info["other_cores"] < QUIET:
                        break
            for k in micro:
                res = Path(tmp) / f"micro{k}_{r}.json"
                info = _launch(k, ["micro", "--result", str(res), "--micro-reps", str(args.micro_reps),
                                   "--micro-warmup", str(args.micro_warmup), "--sizes", *map(str, sizes)], args.timeout)
                micro[k].append(dict(json.loads(res.read_text())["median_seconds"], other_cores=info["other_cores"]))
        _launch(1, ["serial", "--result", str(Path(tmp) / "serial.json"), "--n-active", str(n_active)],
                args.timeout)
        serial = json.loads((Path(tmp) / "serial.json").read_text())
        if 1 in args.ranks:
            # How far rounding alone moves this fit: one process on the same rows in reverse order.
            _launch(1, ["fit", "--result", str(Path(tmp) / "control.json"), "--data", args.data,
                        "--n", str(args.n), "--iters", str(args.iters), "--warmup", str(args.warmup), "--reverse",
                        "--weights", str(Path(tmp) / "Wcontrol.npz")], args.timeout)
            with np.load(Path(tmp) / "W1.npz") as f:
                ref = [f[key] for key in sorted(f.files)]
            for k in [*args.ranks, "control"]:
                with np.load(Path(tmp) / f"W{k}.npz") as f:
                    got = [f[key] for key in sorted(f.files)]
                diffs[k] = max(float(np.max(np.abs(a - b)) / np.max(np.abs(b))) for a, b in zip(got, ref))

    points, quiet = {}, {}
    for k, runs in fits.items():
        points[k] = dict(_summarise_fits(runs), train_accuracy=runs[0]["train_accuracy"], rows_per_rank=runs[0]["rows"],
                         setup_s=statistics.median(run["setup_seconds"] for run in runs),
                         weights_rel_diff_vs_1_rank=diffs.get(k))
        calm = [run for run in runs if run["other_cores"] < QUIET]
        if calm:
            quiet[k] = _summarise_fits(calm)
    micro_med = {k: {s: statistics.median(run[s] for run in runs) for s in map(str, sizes)}
                 for k, runs in micro.items()}
    flops = flops_per_iteration(n_active, args.n)
    out = dict(
        command=" ".join([Path(sys.executable).name, *sys.argv]), data=args.data, n=args.n, hidden=list(HIDDEN),
        n_active_features=n_active, dtype="float64", cores=cores, rounds=args.rounds, iters=args.iters,
        warmup=args.warmup, packed_float64_sizes=packed_sizes(n_active), flops_per_iteration=flops,
        points={str(k): v for k, v in points.items()}, quiet_threshold_cores=QUIET,
        quiet_points={str(k): v for k, v in quiet.items()},
        micro_allreduce_median_s={str(k): v for k, v in micro_med.items()},
        micro_allreduce_per_round_s={str(k): v for k, v in micro.items()},
        allreduce_transfer_per_iteration_s={str(k): sum(m[str(s)] for s in packed_sizes(n_active))
                                             for k, m in micro_med.items()},
        weights_rel_diff_1_rank_reversed_rows=diffs.get("control"),
        serial_per_iteration=serial,
    )
    if all(gemm.values()):
        ratio = [sum(two["gflops"]) / one["gflops"][0] for one, two in zip(gemm[1], gemm[2])]
        busy = [max(one["other_cores"], two["other_cores"]) for one, two in zip(gemm[1], gemm[2])]
        calm = [q for q, b in zip(ratio, busy) if b < QUIET]
        out["gemm_calibration"] = dict(gflops_1=[g["gflops"] for g in gemm[1]], gflops_2=[g["gflops"] for g in gemm[2]],
                                       other_cores=busy,
                                       aggregate_ratio_2_vs_1=ratio, median_ratio=statistics.median(calm or ratio),
                                       quiet_pairs=len(calm))
    for table in (points, quiet):
        if 1 in table:
            for k in table:
                table[k]["speedup_vs_1"] = table[1]["iteration_s"] / table[k]["iteration_s"]
    if 1 in points:
        out["gflops_1_rank"] = flops / points[1]["iteration_s"] / 1e9
        if 2 in micro_med:
            base = quiet if 1 in quiet else points
            throughput = out["gemm_calibration"]["median_ratio"] / min(2, cores) if "gemm_calibration" in out else 1.0
            model = fit_model(base[1], serial["mnist"]["serial_s"], micro_med[2], cores, min(1.0, throughput))
            msg = [8.0 * s for s in packed_sizes(n_active)]
            model["predicted"] = {str(k): predict(model, k, msg) for k in points}
            out["model"] = model
            out["projection"] = project(flops / model["parallel_s"] / 1e9, serial, n_active)
    atomic_json(args.out, out)
    for name, table in (("all launches", points), (f"quiet launches (others < {QUIET} cores)", quiet)):
        print(name)
        for k, pt in table.items():
            print(f"  K={k}: {pt['iteration_s']:.4f} s/iteration, speedup {pt.get('speedup_vs_1', float('nan')):.2f}x, "
                  f"all-reduce {pt['allreduce_s'] * 1e3:.2f} ms ({100 * pt['allreduce_share']:.1f} %), "
                  f"{pt['launches']} launches")
    for k, pt in points.items():
        print(f"K={k}: weights vs 1 rank, max relative difference {pt['weights_rel_diff_vs_1_rank']}")
    if "control" in diffs:
        print(f"control: 1 rank, rows reversed: max relative difference {diffs['control']}")
    for k, m in micro_med.items():
        print(f"micro K={k}: " + ", ".join(f"{s} x f64 {v * 1e6:.1f} us" for s, v in m.items())
              + f"; this net's all-reduces per iteration: "
              f"{out['allreduce_transfer_per_iteration_s'][str(k)] * 1e3:.2f} ms")
    if "model" in out:
        m = out["model"]
        print(f"model: parallel {m['parallel_s']:.4f} s, serial {m['serial_s'] * 1e3:.2f} ms, "
              f"alpha {m['alpha_s'] * 1e6:.1f} us, "
              f"beta {m['beta_s_per_byte'] * 1e9:.3f} ns/byte, core throughput {m['core_throughput']:.3f}; predicted "
              + ", ".join(f"K={k}: {v['total_s']:.4f} s" for k, v in m["predicted"].items()))
        for name, w in out["projection"]["workloads"].items():
            print(f"projection {name}: " + ", ".join(
                f"K={k}: {r['total_s'] * 1e3:.3g} ms ({100 * r['efficiency']:.0f} %)" for k, r in w["ranks"].items()))
    if "gemm_calibration" in out:
        print(f"GEMM calibration: 2 processes give {out['gemm_calibration']['median_ratio']:.2f}x the throughput of 1")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
