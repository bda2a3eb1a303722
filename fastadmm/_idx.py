"""The IDX file format (MNIST's): read a uint8 IDX file whole or by rows, and check what it holds.

:func:`read_idx` reads one file, or only the rows ``[start, stop)`` of it (seeking in a raw file,
streaming through a ``.gz`` one), so that MPI ranks can each load their own shard. Headers are checked
against the file before anything is allocated: a raw file's size must match its header exactly; a ``.gz``
file's header may not announce more than deflate can expand its size to, and the buffer grows only as
decompressed data arrives (its ISIZE trailer, the uncompressed size mod 2**32, sizes it when it agrees).

:func:`read_labels` and :func:`read_images` read one split of a labelled image set (a label file and
an image file) with every check between the two: whole, or only the image rows a caller picks from the
labels (a class selection, an MPI rank's shard). Every error is a :class:`DataError` naming the file.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, Sequence

import numpy as np

__all__ = [
    "DataError",
    "IMAGES_MAGIC",
    "LABELS_MAGIC",
    "N_LABELS",
    "check_image_dims",
    "check_labels",
    "idx_dims",
    "read_idx",
    "read_images",
    "read_labels",
]

LABELS_MAGIC = 0x00000801  # uint8, 1-D
IMAGES_MAGIC = 0x00000803  # uint8, 3-D
_UINT8_CODE = 0x08
_CHUNK = 1 << 20  # bytes decompressed at a time when skipping through a .gz file
# Deflate expands one input byte to at most 1032 output bytes (zlib's technical notes, "maximum compression
# factor"); the slack covers the gzip header and trailer. A .gz header announcing more is rejected unread.
_DEFLATE_MAX_RATIO = 1032
_DEFLATE_SLACK = 1 << 16
N_LABELS = 10  # labels are the digits 0..9


class DataError(ValueError):
    """A data file is truncated, corrupt or not in the expected IDX/CSV layout; the message names it."""


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
# One split: labels, then the images that go with them


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """The labels of a 1-D IDX label file, checked to be a non-empty array of the digits 0..9."""
    labels = _read_checked(Path(path), 1, LABELS_MAGIC)
    check_labels(path, labels)
    return labels


def read_images(path: str | os.PathLike, labels: tuple[str | os.PathLike, int],
                rows: np.ndarray | None = None,
                like: tuple[str | os.PathLike, Sequence[int]] | None = None) -> np.ndarray:
    """The images of a 3-D IDX image file as ``(k, pixels)`` rows: all of them, or the rows ``rows``.

    ``labels`` is ``(label_path, n_labels)``: the file must hold one image per label. ``rows``, sorted
    indices (e.g. a class selection or a rank's shard), is read as the one range of rows that holds
    them, so a rank reads only the part of the file where its samples lie. ``like``, ``(path, dims)``
    of the training images, is the image size a test split must have. Header and counts are checked
    before a byte of pixels is read.
    """
    path = Path(path)
    dims = idx_dims(path)
    check_image_dims(path, dims, like)
    label_path, n_labels = labels
    if dims[0] != n_labels:
        raise DataError(f"{path} holds {dims[0]:,} images but {label_path} holds {n_labels:,} labels")
    if rows is None:
        images = _read_checked(path, 3, IMAGES_MAGIC)
        return images.reshape(images.shape[0], -1)
    rows = np.asarray(rows, dtype=np.intp)
    if rows.shape[0] == 0:
        return np.zeros((0, math.prod(dims[1:])), np.uint8)
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    images = read_idx(path, lo, hi)
    X = images.reshape(images.shape[0], -1)
    return X if rows.shape[0] == hi - lo else X[rows - lo]
