"""Shared data loading for the pair experiments (MNIST sample, pixels /255, label 1 = larger digit)."""
import os
for k in ("OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(k, "1")
import numpy as np
from fastadmm.data import read_mnist_folder

_CACHE = {}
PAIRS = [(4, 9), (3, 5), (7, 9)]

def load_pair(a, b, dtype=np.float64):
    key = (a, b, np.dtype(dtype).str)
    if key not in _CACHE:
        m = read_mnist_folder(os.environ["FASTADMM_BENCH_MNIST"])
        out = []
        for X, y in ((m.X_train, m.y_train), (m.X_test, m.y_test)):
            mask = (y == a) | (y == b)
            out += [(X[mask] / 255.0).astype(dtype), (y[mask] == max(a, b)).astype(np.int64)]
        _CACHE[key] = tuple(out)
    return _CACHE[key]


def load_all(dtype=np.float64):
    """Ten-digit MNIST sample (pairs=-1--1 in mb.py)."""
    m = read_mnist_folder(os.environ["FASTADMM_BENCH_MNIST"])
    return ((m.X_train / 255.0).astype(dtype), m.y_train.astype(np.int64), (m.X_test / 255.0).astype(dtype), m.y_test.astype(np.int64))
