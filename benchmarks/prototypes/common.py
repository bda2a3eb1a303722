"""Shared data loading for the pair experiments (MNIST sample, pixels /255, label 1 = larger digit).

The data come from the benchmarks' one loader, ``benchmarks/_data.py`` (the folder named by FASTADMM_BENCH_MNIST).
"""
import os
import sys
from pathlib import Path
for k in ("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(k, "1")
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/, for _data
from _data import mnist_split  # noqa: E402

_CACHE = {}
PAIRS = [(4, 9), (3, 5), (7, 9)]

def load_pair(a, b, dtype=np.float64):
    key = (a, b, np.dtype(dtype).str)
    if key not in _CACHE:
        Xtr, ytr, Xte, yte = mnist_split(classes=(a, b), dtype=dtype)
        _CACHE[key] = (Xtr, (ytr == max(a, b)).astype(np.int64), Xte, (yte == max(a, b)).astype(np.int64))
    return _CACHE[key]


def load_all(dtype=np.float64):
    """Ten-digit MNIST sample (pairs=-1--1 in mb.py)."""
    return mnist_split(dtype=dtype)
