"""Timing helpers and the register of performance targets shared by the benchmark modules.

Every benchmark is timed by pytest-benchmark (``benchmark.pedantic`` with warm-up rounds, so no
JIT compilation or first-touch page fault lands in a timed round).  The same-run references a
target compares against (``np.copyto``, a numpy matmul, the numpy kernel, PyTorch) are timed in
the same test, right after it, on the same arrays, by :func:`best_of`.

A target is recorded with :func:`record_target`: into the benchmark's ``extra_info["targets"]``
(and so into the ``--benchmark-json`` file), into the summary table printed at the end of the run,
and into the JSON's ``fastadmm_targets`` list.  A missed target does not fail the run unless
``FASTADMM_BENCH_STRICT=1``: the suite measures, the table says met or not.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Optional

STRICT = os.environ.get("FASTADMM_BENCH_STRICT", "") == "1"

# name -> record, in the order they were measured (for the summary and the JSON).
TARGETS: dict[str, dict] = {}
# Figures one test leaves for another (e.g. the float64 iteration time for the float32 ratio).
MEASURED: dict[tuple, float] = {}
# Facts about the run for machine_info (thread pools, torch threads).
RUN_INFO: dict = {}


@dataclass(frozen=True)
class Timing:
    """Seconds per call over the timed rounds of one benchmark."""

    min: float
    median: float
    rounds: int


def pedantic(benchmark, fn: Callable, *, rounds: int, warmup_rounds: int = 1, setup: Optional[Callable] = None,
             group: Optional[str] = None):
    """Run `fn` under ``benchmark.pedantic``; returns (last result, Timing or None when disabled).

    `setup` (untimed) runs before every round, warm-up rounds included.
    """
    if group is not None:
        benchmark.group = group
    result = benchmark.pedantic(fn, setup=setup, rounds=rounds, warmup_rounds=warmup_rounds, iterations=1)
    stats = getattr(benchmark, "stats", None)
    if not stats:  # --benchmark-disable: fn ran once, untimed
        return result, None
    s = stats.stats
    return result, Timing(min=float(s.min), median=float(s.median), rounds=int(s.rounds))


def best_of(fn: Callable, repeat: int, setup: Optional[Callable] = None, warmup: int = 1) -> float:
    """The fastest of `repeat` timed calls of `fn` (after `warmup` untimed ones); `setup` untimed."""
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    best = math.inf
    for _ in range(repeat):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def interleaved_min(fns: dict, repeat: int, setups: Optional[dict] = None, warmup: int = 1) -> dict:
    """{name: fastest time} of the callables in `fns`, called in turn `repeat` times (after `warmup`
    untimed turns).  On a shared machine a slow spell then hits every contender alike, so the
    ratio of two minima is a fair side-by-side figure.  `setups[name]` runs untimed before each call."""
    setups = setups or {}
    best = {name: math.inf for name in fns}
    for turn in range(warmup + repeat):
        for name, fn in fns.items():
            if name in setups:
                setups[name]()
            t0 = time.perf_counter()
            fn()
            elapsed = time.perf_counter() - t0
            if turn >= warmup:
                best[name] = min(best[name], elapsed)
    return best


def record_target(benchmark, name: str, value: Optional[float], target: float, *, at_least: bool = True,
                  unit: str = "", detail: str = "") -> bool:
    """Record `value` against `target` (value >= target if at_least, else value <= target).

    value None means "not measured / not reached" and counts as missed.  Returns whether met;
    with FASTADMM_BENCH_STRICT=1 a miss fails the calling test (after it is recorded).
    """
    met = value is not None and math.isfinite(value) and (value >= target if at_least else value <= target)
    rec = {
        "name": name,
        "value": None if value is None else float(value),
        "target": f"{'>=' if at_least else '<='} {target:g}{unit}",
        "met": bool(met),
        "detail": detail,
        "test": getattr(benchmark, "name", ""),
    }
    TARGETS[name] = rec
    if benchmark is not None:
        benchmark.extra_info.setdefault("targets", {})[name] = {k: rec[k] for k in ("value", "target", "met", "detail")}
    if STRICT:
        assert met, f"target missed: {name} = {value} (target {rec['target']}) {detail}"
    return met


def fmt_value(value: Optional[float]) -> str:
    if value is None:
        return "n/a"
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.1f}"
    return f"{value:.3e}"


# -- this process's memory, from /proc (Linux) ------------------------------------------------------


def proc_status_bytes(key: str) -> Optional[int]:
    """A /proc/self/status field given in kB (VmHWM, VmRSS, ...) in bytes, or None where /proc is not
    available.  VmHWM is this process image's resident-set high-water mark: not inherited over
    fork + exec, unlike ru_maxrss."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def trim_heap() -> Optional[int]:
    """Hand the C heap's freed memory back to the operating system (glibc's ``malloc_trim(0)``);
    the bytes the resident set fell by, or None where there is no glibc.  Freed blocks of a few MB
    can stay resident in glibc's heap after their arrays are gone (e.g. a data generator's
    temporaries): trimmed, the resident set is what the process still holds."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    before = proc_status_bytes("VmRSS")
    trim(0)
    after = proc_status_bytes("VmRSS")
    return None if before is None or after is None else before - after


def reset_hwm() -> bool:
    """VmHWM <- the current resident set (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False
