"""Memory a fit needs, and memory the system has: a fit that cannot fit is refused before it allocates."""

from __future__ import annotations

import os
from typing import Optional

import numpy as np


def fit_bytes(method: str, n_train: int, n_test: int, sizes, itemsize: int, batch: Optional[int] = None) -> int:
    """A lower bound of the bytes one fit's arrays take (``sizes``: inputs, hidden..., outputs).

    ADMM (docs/ALGORITHM.md): the weights W_l, a_l and z_l for every layer and training row (mini-batch
    ADMM: for a batch of `batch` rows), the multipliers lam of the output layer, and per layer the Gram
    matrix of its input and its inverse.  Gradient methods ("gd", "sgd", "adam"): weights, gradient
    and velocity (Adam: two moments), and the activations and back-propagated errors of a batch (the
    whole training set for `batch` None).  Both evaluate the test set in blocks of 8,192 rows.
    """
    weights = sum(sizes[l] * (sizes[l - 1] + 1) for l in range(1, len(sizes)))
    units = sum(sizes[1:])
    rows = n_train if batch is None else min(batch, n_train)
    if method == "admm":
        count = weights + rows * (2 * units + sizes[-1]) + 2 * sum(s * s for s in sizes[:-1])
    else:
        count = 4 * weights + 2 * rows * units
    count += min(n_test, 8192) * max(sizes) * 2
    return count * itemsize


def available_bytes() -> Optional[int]:
    """Memory the system can give now (MemAvailable), else the physical memory; None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def gib(n: float) -> str:
    """Bytes in the largest binary unit up to PiB that keeps the number >= 1."""
    for power, unit in ((50, "PiB"), (40, "TiB"), (30, "GiB")):
        if n >= 2**power:
            return f"{n / 2**power:,.1f} {unit}"
    return f"{n / 2**20:,.0f} MiB"


def check_fit(sizes, n_rows, n_test, dtype, batch_size, hidden) -> None:
    """ValueError naming `hidden` when an ADMM fit's arrays (fit_bytes) cannot fit in the memory
    available now; nothing is refused where that is unknown."""
    need = fit_bytes("admm", n_rows, n_test, sizes, np.dtype(dtype).itemsize, batch_size)
    have = available_bytes()
    if have is not None and need > have:
        net = "-".join(map(str, sizes))
        raise ValueError(f"hidden={hidden!r}: the fit needs at least {gib(need)} of memory (weights and state of "
                         f"{net} units, {np.dtype(dtype).name}); {gib(have)} is available: give smaller layers")
