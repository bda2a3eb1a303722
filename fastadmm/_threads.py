"""BLAS thread limits for the duration of a fit, from one cached threadpoolctl controller.

``threadpoolctl.threadpool_limits`` scans the process's loaded libraries on every call (about 2 ms,
a noticeable share of a sub-second fit); the controller found at the first fit is reused instead.
A BLAS library loaded into the process after that first fit is not limited by later fits.
"""

from __future__ import annotations

import functools

from threadpoolctl import ThreadpoolController


@functools.lru_cache(maxsize=1)
def _controller() -> ThreadpoolController:
    return ThreadpoolController()


def limit(threads: int):
    """Limit every BLAS/OpenMP pool to `threads` until the returned object's ``unregister()``."""
    return _controller().limit(limits=threads)
