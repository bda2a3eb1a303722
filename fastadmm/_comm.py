"""The one communication primitive ADMM needs, for one process or for MPI ranks.

Samples are split across ranks by rows; per layer and iteration the only exchange is a sum of
``a a^T`` and ``z a^T`` (docs/ALGORITHM.md, section 5).  Without a communicator every
reduction is the identity, so the single-process driver pays nothing for it.
"""

from __future__ import annotations

import numpy as np


class SingleProcess:
    """No communication: rank 0 of 1."""

    rank = 0
    size = 1
    distributed = False

    def allreduce(self, buf: np.ndarray) -> np.ndarray:
        return buf

    def allgather(self, obj):
        return [obj]

    def abort(self, code: int = 1) -> None:  # pragma: no cover - nothing to abort
        raise SystemExit(code)


class MPIComm:
    """An mpi4py communicator seen through the same three calls."""

    distributed = True

    def __init__(self, comm):
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.seconds = 0.0  # time spent in reductions (for the timings)

    def allreduce(self, buf: np.ndarray) -> np.ndarray:
        """Sum `buf` (a contiguous array) over all ranks, in place."""
        import time

        t0 = time.perf_counter()
        self.comm.Allreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)
        self.seconds += time.perf_counter() - t0
        return buf

    def allgather(self, obj):
        return self.comm.allgather(obj)

    def abort(self, code: int = 1) -> None:
        self.comm.Abort(code)


def wrap(comm):
    """SingleProcess for None, MPIComm for an mpi4py communicator; errors name the fix."""
    if comm is None:
        return SingleProcess()
    if isinstance(comm, (SingleProcess, MPIComm)):
        return comm
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError(
            f"comm= needs mpi4py ({exc}); install it with `pip install 'fastadmm[mpi]'`"
        ) from exc
    if not isinstance(comm, MPI.Comm):
        raise TypeError(f"comm must be an mpi4py communicator such as MPI.COMM_WORLD, got {type(comm).__name__}")
    return MPIComm(comm)


def random_state_key(random_state) -> str:
    """A text that is equal on two ranks exactly when their random_state gives the same stream."""
    if isinstance(random_state, np.random.Generator):
        return repr(random_state.bit_generator.state)
    if isinstance(random_state, np.random.RandomState):
        return repr(random_state.get_state(legacy=False))
    return repr(random_state)
