"""pytest-benchmark suite of fastadmm.  Run it from the project folder with

    python -m pytest benchmarks --benchmark-only --benchmark-json /tmp/bench.json

(see benchmarks/README.md).  It is not collected by a plain ``pytest`` (pyproject's testpaths is
``tests``).  One thread everywhere: the thread variables are set here, before numpy, numba or
torch are imported, and every test runs inside ``threadpoolctl.threadpool_limits(1)``.
"""

from __future__ import annotations

import os
import sys

# Before any numerical library is imported (pytest imports this file before the test modules).
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
PRELOADED = sorted(m for m in ("numpy", "scipy", "numba", "torch") if m in sys.modules)
for _var in THREAD_VARS:
    os.environ[_var] = "1"

import platform  # noqa: E402

import pytest  # noqa: E402
from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

import _measure  # noqa: E402

_RUN_INFO = _measure.RUN_INFO


def pytest_configure(config):
    config.addinivalue_line("markers", "heavy: N = 60,000 problems and the memory probe (deselect with -m 'not heavy')")


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    """Every BLAS/OpenMP pool limited to one thread for the whole run; record what was found."""
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401  (loads scipy's own OpenBLAS, so threadpoolctl sees it)

    import fastadmm  # noqa: F401

    with threadpool_limits(limits=1):
        _RUN_INFO["threadpool_info"] = threadpool_info()
        _RUN_INFO["thread_env"] = {v: os.environ.get(v) for v in THREAD_VARS}
        _RUN_INFO["imported_before_conftest"] = PRELOADED
        yield


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("numpy", "scipy", "numba", "Cython", "threadpoolctl", "torch", "fastadmm"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        out[name] = getattr(module, "__version__", "?")
    return out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["fastadmm_bench"] = {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "versions": _versions(),
        # At the start of the run (inside the limit), and at its end (torch's OpenMP pool loaded by then).
        "threadpool_info": _RUN_INFO.get("threadpool_info"),
        "threadpool_info_at_end": threadpool_info(),
        "thread_env": _RUN_INFO.get("thread_env", {v: os.environ.get(v) for v in THREAD_VARS}),
        "imported_before_conftest": _RUN_INFO.get("imported_before_conftest", PRELOADED),
        "torch_threads": _RUN_INFO.get("torch_threads"),
    }


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["fastadmm_targets"] = list(_measure.TARGETS.values())


def pytest_terminal_summary(terminalreporter):
    if not _measure.TARGETS:
        return
    tr = terminalreporter
    tr.section("fastadmm performance targets (same run, one thread)")
    if PRELOADED:
        tr.write_line(f"warning: {PRELOADED} were imported before the thread variables were set")
    width = max(len(r["name"]) for r in _measure.TARGETS.values())
    for r in _measure.TARGETS.values():
        mark = "met " if r["met"] else "MISS"
        tr.write_line(f"{mark}  {r['name']:<{width}}  {_measure.fmt_value(r['value']):>9}  (target {r['target']})"
                      + (f"  {r['detail']}" if r["detail"] else ""))
    n_met = sum(r["met"] for r in _measure.TARGETS.values())
    tr.write_line(f"{n_met} of {len(_measure.TARGETS)} targets met")
