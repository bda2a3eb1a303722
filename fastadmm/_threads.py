"""BLAS thread limits for the duration of a fit, from one cached threadpoolctl controller.

``threadpoolctl.threadpool_limits`` scans the process's loaded libraries on every call (about 2 ms,
a noticeable share of a sub-second fit); the controller found at the first fit is reused instead.
A BLAS library loaded into the process after that first fit is not limited by later fits.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Optional

from threadpoolctl import ThreadpoolController


@functools.lru_cache(maxsize=1)
def _controller() -> ThreadpoolController:
    return ThreadpoolController()


def limit(threads: int):
    """Limit every BLAS/OpenMP pool to `threads` until the returned object's ``unregister()``."""
    return _controller().limit(limits=threads)


@contextlib.contextmanager
def limited(threads: Optional[int]):
    """Inside the block: every BLAS/OpenMP pool and, where numba is installed, Numba's threads
    limited to `threads` (Numba's at most its NUMBA_NUM_THREADS); None leaves them as they are."""
    if threads is None:
        yield
        return
    try:
        import numba
    except ImportError:
        numba = None
    previous = numba.get_num_threads() if numba is not None else None
    if numba is not None:
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    limits = limit(threads)
    try:
        yield
    finally:
        limits.unregister()
        if numba is not None:
            numba.set_num_threads(previous)
