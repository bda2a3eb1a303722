"""The communicator: one process or MPI ranks, seen through the same methods.

Samples are split across ranks by rows; per layer and iteration the only exchange is a sum of
``a a^T`` and ``z a^T`` (docs/ALGORITHM.md, section 5).  Without a communicator every
reduction is the identity, so the single-process driver pays nothing for it.

This module is the one place of the rules that keep ranks in step (the driver, the command line
and :mod:`fastadmm.distributed` all call them):

* :meth:`Communicator.allreduce` / :meth:`Communicator.allgather` / :meth:`Communicator.allgatherv`:
  the collective calls (the last concatenates arrays of different lengths, in rank order);
* :meth:`Communicator.agree` (run a step on every rank; if it raises on any rank, raise on every
  rank) and :meth:`Communicator.raise_agreed` (the same for an error caught already);
* :meth:`Communicator.check_same`: refuse on every rank arguments that differ between ranks;
* :meth:`Communicator.agreed_seed`: the same random_state on every rank;
* :meth:`Communicator.rank_path`: each rank's own checkpoint file, ``<name>.rank<k>.npz``;
* :meth:`Communicator.abort_on_error`: an error on one rank only ends every rank (MPI_Abort)
  instead of leaving the others waiting forever in their next collective call.

With one process (:class:`SingleProcess`, or MPI with one rank) each of these is the plain
single-process behaviour: an error propagates as it was raised, the path is the one given.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Callable, Optional, Type

import numpy as np

_ABORT_PAUSE = 0.2  # seconds between the error line and MPI_Abort (see MPIComm.abort)


def message_line(exc: BaseException) -> str:
    """An exception's message on one line (its lines joined by spaces), or its type's name if it has none."""
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def one_line(exc: BaseException) -> str:
    """``Type: message`` of an exception on one line."""
    text = " | ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def rank_path(path, rank: int, size: int) -> Path:
    """Rank ``rank``'s own file for ``path``: ``<name>.rank<k>.npz`` when there are several ranks
    (``fit.npz`` and ``fit`` both give ``fit.rank1.npz``), ``path`` itself for one."""
    path = Path(path)
    if size == 1:
        return path
    return path.with_name(f"{path.name.removesuffix('.npz')}.rank{rank}.npz")


def random_state_key(random_state) -> str:
    """A text that is equal on two ranks exactly when their random_state gives the same stream."""
    if isinstance(random_state, np.random.Generator):
        return repr(random_state.bit_generator.state)
    if isinstance(random_state, np.random.RandomState):
        return repr(random_state.get_state(legacy=False))
    return repr(random_state)


def _portable(kind: type):
    """``kind`` if it can be sent to another rank (pickled by reference), else None."""
    try:
        pickle.dumps(kind)
    except Exception:  # noqa: BLE001 - a class defined in a function, and the like
        return None
    return kind


def _rebuild(kind, message: str, fallback: type) -> BaseException:
    """``kind(message)``, or ``fallback`` naming ``kind`` when that class cannot be built so."""
    if kind is not None:
        try:
            exc = kind(message)
            if isinstance(exc, fallback):
                return exc
        except Exception:  # noqa: BLE001 - constructors that take other arguments
            pass
    return fallback(message if kind is None or kind is fallback else f"{kind.__name__}: {message}")


class Communicator:
    """What every communicator offers; subclasses give ``rank``, ``size``, ``allreduce``, ``allgather``
    and ``abort``, the rules below are built on them alone."""

    rank: int = 0
    size: int = 1
    distributed: bool = False
    comm = None  # the mpi4py communicator underneath, None for one process

    @property
    def root(self) -> bool:
        """Whether this is rank 0 (the one that prints and writes)."""
        return self.rank == 0

    # A communicator is a handle on the ranks of a running job: a copy (scikit-learn's clone deep-
    # copies an estimator's parameters) is the same communicator.
    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def allreduce(self, buf: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def allgather(self, obj) -> list:  # pragma: no cover - abstract
        raise NotImplementedError

    def allgatherv(self, send: np.ndarray, recv: np.ndarray, counts) -> np.ndarray:
        """recv[:sum(counts)] <- every rank's `send` (a contiguous 1-d array of counts[k] entries on
        rank k) concatenated in rank order; returns that part of recv.  This version goes through
        allgather with a copy of `send` (a communicator that passes objects by reference must not see
        the buffer change afterwards); MPIComm sends the buffers themselves."""
        total = int(sum(counts))
        out = recv[:total]
        np.concatenate(self.allgather(np.array(send, copy=True)), out=out)
        return out

    def abort(self, code: int = 1) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- the rules -------------------------------------------------------------------------------

    def raise_agreed(self, error, *, name_rank: bool = True, fallback: Type[BaseException] = Exception) -> None:
        """Return if no rank failed; else raise on every rank the first failing rank's error.

        ``error`` is this rank's exception (or None). With one rank it is raised as it is. With
        several, every rank raises an exception of the first failing rank's type and message (the
        message prefixed ``rank <k>: `` with ``name_rank``), chained to the original on that rank;
        it is marked as raised by every rank together (see :meth:`abort_on_error`).
        """
        if self.size == 1:
            if error is not None:
                raise error
            return
        mine = None if error is None else (_portable(type(error)), str(error))
        failed = [(r, g) for r, g in enumerate(self.allgather(mine)) if g is not None]
        if not failed:
            return
        rank, (kind, text) = failed[0]
        exc = _rebuild(kind, f"rank {rank}: {text}" if name_rank else text, fallback)
        exc._fastadmm_collective = True
        raise exc from (error if rank == self.rank else None)

    def agree(self, step: Callable, error: Type[BaseException] = Exception, *, name_rank: bool = True):
        """Run ``step()`` on every rank and return its value; if it raises ``error`` on any rank,
        raise it on every rank (:meth:`raise_agreed`), so that decisions which end a run are taken
        together and no rank is left waiting in a collective call. Other exceptions propagate
        (on their rank only: see :meth:`abort_on_error`)."""
        failure, value = None, None
        try:
            value = step()
        except error as exc:
            failure = exc
        self.raise_agreed(failure, name_rank=name_rank, fallback=error)
        return value

    def check_same(self, values: dict, hint: str = "") -> None:
        """ValueError on every rank if any of ``values`` (name -> value, compared by repr) differs
        between ranks, naming the values and what each of the first ranks passed."""
        if self.size == 1:
            return
        mine = {k: repr(v) for k, v in values.items()}
        gathered = self.allgather(mine)
        differ = sorted({k for other in gathered for k in mine if other.get(k) != mine[k]})
        if differ:
            detail = "; ".join(f"{k}: " + ", ".join(f"rank {r} {g.get(k)}" for r, g in enumerate(gathered[:4]))
                               for k in differ[:4])
            raise ValueError(f"every rank must pass the same {', '.join(differ)} ({detail})" + (f"; {hint}" if hint else ""))

    def agreed_seed(self, random_state):
        """``random_state``, the same on every rank: None becomes a seed drawn on rank 0 and sent to
        every rank (so that an MPI fit records it, even on one rank; SingleProcess: None stays None);
        anything else must give the same stream on every rank (an int seed, a Generator in the same
        state), else ValueError on every rank."""
        if not self.distributed:
            return random_state
        if random_state is None:
            return self.allgather(int(np.random.SeedSequence().entropy) if self.rank == 0 else None)[0]
        keys = self.allgather(random_state_key(random_state))
        differ = [r for r, k in enumerate(keys) if k != keys[0]]
        if differ:
            raise ValueError(
                f"random_state differs between ranks (rank 0 vs ranks {differ[:5]}); pass the same int seed on every "
                "rank so that all start from the same initial values"
            )
        return random_state

    def rank_path(self, path) -> Path:
        """This rank's own checkpoint file for ``path`` (:func:`rank_path`)."""
        return rank_path(path, self.rank, self.size)

    @contextlib.contextmanager
    def abort_on_error(self, *, code: int = 1, traceback: bool = False, collective_through: bool = False,
                       agreed: tuple = ()):
        """Run the block; if it raises on one rank of several, print one line naming the rank and
        abort every rank (:meth:`abort`), never a hang.

        The line goes to stderr as ``fastadmm: rank 1 of 4 failed: ValueError: ...; aborting all
        ranks (MPI_Abort)`` (``traceback=True`` prints the traceback first). KeyboardInterrupt and
        SystemExit with a non-zero code abort too. With one rank the exception propagates as usual.
        Errors that every rank raises together propagate instead: those marked by
        :meth:`raise_agreed` with ``collective_through=True``, and instances of the ``agreed`` types.
        Yields the communicator.
        """
        try:
            yield self
        except BaseException as exc:
            if isinstance(exc, SystemExit) and exc.code in (0, None):
                raise
            if (self.size == 1 or (agreed and isinstance(exc, agreed))
                    or (collective_through and getattr(exc, "_fastadmm_collective", False))):
                raise
            if traceback:
                import traceback as tb

                tb.print_exc(file=sys.stderr)
            print(f"fastadmm: rank {self.rank} of {self.size} failed: {one_line(exc)}; aborting all ranks (MPI_Abort)",
                  file=sys.stderr, flush=True)
            self.abort(code)
            raise


class SingleProcess(Communicator):
    """No communication: rank 0 of 1."""

    rank = 0
    size = 1
    distributed = False
    comm = None

    def allreduce(self, buf: np.ndarray) -> np.ndarray:
        return buf

    def allgather(self, obj):
        return [obj]

    def allgatherv(self, send, recv, counts):
        out = recv[: send.shape[0]]
        out[...] = send
        return out

    def abort(self, code: int = 1) -> None:  # pragma: no cover - nothing to abort
        raise SystemExit(code)


class MPIComm(Communicator):
    """An mpi4py communicator seen through the same methods."""

    distributed = True

    def __init__(self, comm):
        from mpi4py import MPI

        self._MPI = MPI
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.seconds = 0.0  # time spent in the array collectives (allreduce, allgatherv), for the timings
        self.bytes = 0  # bytes this rank received from them (the reduced or gathered arrays)
        self.calls = 0  # how many there were

    def allreduce(self, buf: np.ndarray) -> np.ndarray:
        """Sum `buf` (a contiguous array) over all ranks, in place."""
        t0 = time.perf_counter()
        self.comm.Allreduce(self._MPI.IN_PLACE, buf, op=self._MPI.SUM)
        self.seconds += time.perf_counter() - t0
        self.bytes += buf.nbytes
        self.calls += 1
        return buf

    def allgatherv(self, send, recv, counts):
        total = int(sum(counts))
        out = recv[:total]
        t0 = time.perf_counter()
        self.comm.Allgatherv(send, [out, list(map(int, counts))])
        self.seconds += time.perf_counter() - t0
        self.bytes += out.nbytes
        self.calls += 1
        return out

    def allgather(self, obj):
        return self.comm.allgather(obj)

    def abort(self, code: int = 1) -> None:
        """MPI_Abort, then leave at once.

        mpiexec (MPICH's hydra) forwards a rank's stderr through a pipe that it stops reading when
        it tears the job down: a short pause first lets the message out (measured with 2 ranks:
        without it the line was lost in 2 of 56 runs, with 0.2 s in none of 96). MPICH's MPI_Abort
        may return before the job is killed; os._exit then skips Python's exit handlers (among them
        mpi4py's MPI_Finalize, which would wait for the ranks being killed).
        """
        time.sleep(_ABORT_PAUSE)
        try:
            self.comm.Abort(code)
        finally:
            os._exit(code)


def wrap(comm) -> Communicator:
    """SingleProcess for None, MPIComm for an mpi4py communicator, a Communicator as it is; errors
    name the fix."""
    if comm is None:
        return SingleProcess()
    if isinstance(comm, Communicator):
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


def callback_answer(comm, callback, record) -> tuple[Optional[str], bool]:
    """Call the callback; return (why the fit stops, or None; whether a KeyboardInterrupt said so),
    the same on every rank.

    A KeyboardInterrupt raised inside it stops the fit like Ctrl-C (the Result is kept).  In a
    distributed fit the ranks agree on the answer, and an exception on any rank is raised on every
    rank (never one rank leaving while the others wait in the next reduction).
    """
    answer, error = None, None
    try:
        if callback(record):
            answer = "stopped the fit"
    except KeyboardInterrupt:
        answer = "was interrupted (KeyboardInterrupt)"
    except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
        if not comm.distributed:
            raise
        error = exc
    if not comm.distributed:
        return answer, answer is not None and "KeyboardInterrupt" in answer
    gathered = comm.allgather((answer, None if error is None else f"{type(error).__name__}: {error}"))
    failed = [(r, e) for r, (_, e) in enumerate(gathered) if e is not None]
    if failed:
        if error is not None:
            error._fastadmm_collective = True
            raise error
        exc = RuntimeError(f"the callback raised on rank {failed[0][0]}: {failed[0][1]}")
        exc._fastadmm_collective = True
        raise exc
    answers = [a for a, _ in gathered if a]
    if not answers:
        return None, False
    text = answers[0] + ("" if answer else " on another rank")
    return text, "KeyboardInterrupt" in answers[0]
