"""fastadmm._comm: the rules that keep ranks in step, with the one-process communicator and with a fake
communicator whose ranks are threads of this process (a barrier-based allgather), so that they are
tested without MPI."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from fastadmm import _comm


class ThreadRanks(_comm.Communicator):
    """Rank `rank` of `size` ranks that are threads sharing one `board` (a fake MPI communicator)."""

    distributed = True

    def __init__(self, rank, size, board):
        self.rank, self.size, self.board = rank, size, board
        self.aborted = None

    def allgather(self, obj):
        board = self.board
        board["slots"][self.rank] = obj
        board["barrier"].wait()
        out = list(board["slots"])
        board["barrier"].wait()  # nobody writes the next round's slot before everyone has read this one
        return out

    def allreduce(self, buf):
        total = sum(self.allgather(buf.copy()))
        buf[...] = total
        return buf

    def abort(self, code=1):
        self.aborted = code


def on_ranks(size, work):
    """Run `work(comm)` on `size` thread-ranks; returns each rank's ('ok', value) or ('raised', exception)."""
    board = {"slots": [None] * size, "barrier": threading.Barrier(size, timeout=20)}
    outcomes = [None] * size

    def run(rank):
        comm = ThreadRanks(rank, size, board)
        try:
            outcomes[rank] = ("ok", work(comm))
        except BaseException as exc:  # noqa: BLE001 - recorded for the test
            outcomes[rank] = ("raised", exc)

    threads = [threading.Thread(target=run, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads), "a rank was left waiting in a collective call"
    return outcomes


def test_allgatherv_over_thread_ranks_puts_each_part_in_its_place():
    counts = [2, 0, 3]  # entries each rank sends; a rank may send none

    def work(comm):
        r = comm.rank
        return comm.allgatherv(np.full(counts[r], float(r)), np.full(10, -1.0), counts).copy()

    for kind, gathered in on_ranks(3, work):
        assert kind == "ok"
        np.testing.assert_array_equal(gathered, [0.0, 0.0, 2.0, 2.0, 2.0])


# -- one process ------------------------------------------------------------------------------------


def test_single_process_has_every_method_and_each_is_the_plain_behaviour(tmp_path):
    comm = _comm.wrap(None)
    assert isinstance(comm, _comm.SingleProcess) and comm.root and comm.size == 1 and comm.comm is None
    buf = np.arange(3.0)
    assert comm.allreduce(buf) is buf and comm.allgather(5) == [5]
    np.testing.assert_array_equal(comm.allgatherv(buf, np.zeros(5), [3]), buf)
    assert comm.agree(lambda: 7, ValueError) == 7
    error = ValueError("bad value")
    with pytest.raises(ValueError) as caught:  # the original exception, not a copy
        comm.agree(lambda: (_ for _ in ()).throw(error), ValueError)
    assert caught.value is error and str(caught.value) == "bad value"
    with pytest.raises(KeyError):  # a type not agreed on propagates as well
        comm.agree(lambda: {}["x"], ValueError)
    comm.raise_agreed(None)
    with pytest.raises(TypeError, match="^no$"):
        comm.raise_agreed(TypeError("no"))
    comm.check_same({"max_iter": 3})
    assert comm.agreed_seed(None) is None and comm.agreed_seed(4) == 4
    assert comm.rank_path(tmp_path / "fit.npz") == tmp_path / "fit.npz"
    with pytest.raises(ZeroDivisionError):  # one process: nothing to abort, the error propagates
        with comm.abort_on_error():
            1 / 0
    assert _comm.wrap(comm) is comm


def test_rank_path_names_one_file_per_rank():
    assert _comm.rank_path("out/fit.npz", 1, 3) == Path("out/fit.rank1.npz")
    assert _comm.rank_path("out/fit", 2, 3) == Path("out/fit.rank2.npz")
    assert _comm.rank_path("out/fit.npz", 0, 1) == Path("out/fit.npz")


# -- several ranks (threads) ------------------------------------------------------------------------


def test_fake_ranks_reduce_and_gather():
    outcomes = on_ranks(3, lambda c: (c.allgather(c.rank), c.allreduce(np.array([c.rank + 1.0]))[0]))
    assert outcomes == [("ok", ([0, 1, 2], 6.0))] * 3


def test_a_step_raising_on_one_rank_only_is_raised_on_every_rank():
    """The defect the rule exists for: rank 1 alone fails; every rank must raise, none may go on."""

    def work(comm):
        def step():
            if comm.rank == 1:
                raise ValueError("X_test holds NaN")
            return "fine"

        return comm.agree(step, ValueError)

    outcomes = on_ranks(3, work)
    assert [kind for kind, _ in outcomes] == ["raised"] * 3
    for _, exc in outcomes:
        assert type(exc) is ValueError and str(exc) == "rank 1: X_test holds NaN"
        assert exc._fastadmm_collective
    assert isinstance(outcomes[1][1].__cause__, ValueError)  # the failing rank keeps the original


def test_agree_without_the_rank_keeps_the_message_and_type():
    class Usage(ValueError):
        pass

    def work(comm):
        def step():
            if comm.rank == 2:
                raise Usage("--resume: no checkpoint file")
            return comm.rank

        return comm.agree(step, Usage, name_rank=False)

    outcomes = on_ranks(3, work)
    # A class defined in a function cannot be sent to another rank: rebuilt as the agreed type.
    for _, exc in outcomes:
        assert isinstance(exc, Usage) and str(exc) == "--resume: no checkpoint file"
    assert on_ranks(2, lambda c: c.agree(lambda: c.rank * 10, ValueError)) == [("ok", 0), ("ok", 10)]


def test_the_first_failing_rank_wins():
    def work(comm):
        def step():
            if comm.rank in (1, 2):
                raise TypeError(f"bad on {comm.rank}")
            return "ok"

        return comm.agree(step, TypeError)

    outcomes = on_ranks(3, work)
    assert [(type(exc), str(exc)) for _, exc in outcomes] == [(TypeError, "rank 1: bad on 1")] * 3


def test_check_same_refuses_differing_arguments_on_every_rank():
    outcomes = on_ranks(2, lambda c: c.check_same({"loss": "mse", "max_iter": 3 + c.rank}, hint="pass the same"))
    for kind, exc in outcomes:
        assert kind == "raised" and isinstance(exc, ValueError)
        assert "every rank must pass the same max_iter (max_iter: rank 0 3, rank 1 4); pass the same" in str(exc)
    assert on_ranks(2, lambda c: c.check_same({"loss": "mse"})) == [("ok", None)] * 2


def test_agreed_seed_sends_rank_0s_seed_and_refuses_differing_generators():
    seeds = on_ranks(3, lambda c: c.agreed_seed(None))
    assert len({v for _, v in seeds}) == 1 and isinstance(seeds[0][1], int)
    assert on_ranks(2, lambda c: c.agreed_seed(5)) == [("ok", 5)] * 2
    outcomes = on_ranks(2, lambda c: c.agreed_seed(np.random.default_rng(c.rank)))  # different streams
    for kind, exc in outcomes:
        assert kind == "raised" and "random_state differs between ranks (rank 0 vs ranks [1])" in str(exc)


def test_rank_paths_differ_between_ranks(tmp_path):
    paths = on_ranks(2, lambda c: c.rank_path(tmp_path / "fit.npz"))
    assert [p for _, p in paths] == [tmp_path / "fit.rank0.npz", tmp_path / "fit.rank1.npz"]


def test_abort_on_error_aborts_for_one_rank_but_lets_agreed_errors_through(capsys):
    board = {"slots": [None], "barrier": threading.Barrier(1)}
    comm = ThreadRanks(1, 2, board)  # rank 1 of 2, called alone: no collective call is made
    with pytest.raises(RuntimeError):
        with comm.abort_on_error(code=3):
            raise RuntimeError("broke down")
    assert comm.aborted == 3
    assert "fastadmm: rank 1 of 2 failed: RuntimeError: broke down; aborting all ranks" in capsys.readouterr().err
    comm.aborted = None
    agreed = ValueError("every rank")
    agreed._fastadmm_collective = True
    with pytest.raises(ValueError):
        with comm.abort_on_error(collective_through=True):
            raise agreed
    with pytest.raises(LookupError):
        with comm.abort_on_error(agreed=(LookupError,)):
            raise KeyError("agreed type")
    with pytest.raises(SystemExit):
        with comm.abort_on_error():
            raise SystemExit(0)
    assert comm.aborted is None
