"""Signals to the command, in real subprocesses: whatever the signal, what was computed is written.

Each test starts ``python -m fastadmm.mnist`` on a small generated IDX folder, waits until a fit is
running (or compiling), sends signals, and checks the exit status, results.json and curves.png.
Every wait is bounded; a hang fails the test instead of blocking the suite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_cli import ONE_THREAD, PNG_MAGIC, offline_env, write_folder

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
LONG = ["--hidden", "20", "--iterations", "1000000", "--gd-iterations", "1000000", "--quiet"]


def start(argv, tmp_path: Path, **env) -> subprocess.Popen:
    full_env = dict(os.environ, **ONE_THREAD, **offline_env(tmp_path), **env)
    full_env.pop("FASTADMM_DATA", None)
    return subprocess.Popen([sys.executable, "-m", "fastadmm.mnist", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full_env, cwd=tmp_path)


def wait_for(proc: subprocess.Popen, ready, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"not ready (exit {proc.returncode}):\n{out}\n{err}")
        time.sleep(0.05)


def finish(proc: subprocess.Popen, seconds: float = 90):
    try:
        return proc.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"no exit within {seconds} s after the signal:\n{out}\n{err}")


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


@pytest.fixture
def folder(tmp_path) -> Path:
    return write_folder(tmp_path / "idx")


@pytest.mark.parametrize("gap", [0.0, 1.5])
def test_two_ctrl_c_still_write_the_results(gap, folder, tmp_path):
    """The second Ctrl-C at once (during the fit) or later (while or after the files are written)."""
    out = tmp_path / "out"
    proc = start(["--data-dir", str(folder), *LONG, "--checkpoint-every", "1", "--out", str(out)], tmp_path)
    wait_for(proc, lambda: (out / "admm-checkpoint.npz").exists())  # ADMM's loop is running
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    time.sleep(gap)
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)  # the second one: reported (or ignored while writing), never fatal
    stdout, stderr = finish(proc)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    r = results(out)
    assert r["status"] == "interrupted" and r["signal"] == "SIGINT"
    admm = next(x for x in r["runs"] if x["method"] == "admm")
    assert admm["status"] == "interrupted" and admm["iterations"] >= 1
    assert admm["message"].startswith("stopped by SIGINT after iteration")
    assert [x["method"] for x in r["runs"]] == ["admm"]  # GD did not start after the signal
    assert "status" in stdout and (out / "curves.png").read_bytes()[:8] == PNG_MAGIC


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_sigterm_and_sighup_write_what_was_computed(sig, code, folder, tmp_path):
    out = tmp_path / "out"
    proc = start(["--data-dir", str(folder), *LONG, "--methods", "gd", "admm", "--seeds", "0", "1",
                  "--out", str(out)], tmp_path)
    wait_for(proc, lambda: _line_seen(proc))
    time.sleep(1.5)
    proc.send_signal(sig)
    stdout, stderr = finish(proc)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    r = results(out)
    assert r["status"] == "interrupted" and r["signal"] == signal.Signals(sig).name
    assert [x["method"] for x in r["runs"]] == ["gd"]  # stopped in the first fit; nothing else started
    assert r["runs"][0]["status"] == "interrupted" and len(r["runs"][0]["history"]["iteration"]) >= 1
    assert "gd seed 1 not run: interrupted" in r["notes"]
    assert (out / "curves.png").read_bytes()[:8] == PNG_MAGIC


def _line_seen(proc) -> bool:
    """True once the command printed its data line (read without blocking past it)."""
    import select

    if select.select([proc.stdout], [], [], 0)[0]:
        line = proc.stdout.readline()
        proc._seen = getattr(proc, "_seen", "") + line
    return "data: " in getattr(proc, "_seen", "")


def test_ctrl_c_during_the_first_numba_compile_is_interrupted_not_raised(folder, tmp_path):
    """A fresh Numba cache: the gradient-descent kernels compile for seconds before the first step."""
    out = tmp_path / "out"
    proc = start(["--data-dir", str(folder), *LONG, "--methods", "gd", "--out", str(out)], tmp_path,
                 NUMBA_CACHE_DIR=str(tmp_path / "numba-cache"))
    wait_for(proc, lambda: _line_seen(proc))
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = finish(proc, 180)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    r = results(out)
    gd = r["runs"][0]
    assert r["status"] == "interrupted" and gd["status"] == "interrupted"
    assert gd["compile_seconds"] > 0.3  # the signal came while compiling ...
    assert gd["iterations"] == 1  # ... and the fit stopped after its first step


def test_a_signal_while_loading_ends_at_once_with_nothing_to_write(tmp_path):
    """Before any fit, a signal stops at once, and with nothing computed the files of an earlier run
    in --out stay as they were."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"earlier": true}')
    slow = tmp_path / "slow.py"
    slow.write_text(
        "import sys, time\n"
        "from fastadmm.cli import digits\n"
        "def load(args):\n"
        "    print('loading', flush=True)\n"
        "    time.sleep(60)\n"
        "import fastadmm.cli.experiment as e\n"
        "e.load_digits = load\n"
        "from fastadmm import mnist\n"
        "sys.exit(mnist.main(sys.argv[1:]))\n")
    env = dict(os.environ, **ONE_THREAD, **offline_env(tmp_path))
    proc = subprocess.Popen([sys.executable, str(slow), "--quiet", "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    assert proc.stdout.readline().strip() == "loading"
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = finish(proc, 30)
    assert proc.returncode == 143 and "Traceback" not in stderr
    assert "nothing was computed" in stderr
    assert json.loads((out / "results.json").read_text()) == {"earlier": True}


def test_signal_counting_in_process():
    """The handler's rule: loading -> stop at once; training -> 1st asks to stop, 2nd reported, 3rd
    abandons the fit; writing -> ignored. The exit status follows the first signal."""
    from fastadmm.cli.experiment import Signals

    s = Signals()
    with pytest.raises(KeyboardInterrupt):
        s.handler(signal.SIGTERM, None)  # while loading
    assert s.exit_code() == 143
    s = Signals()
    s.mode = "train"
    s.handler(signal.SIGINT, None)
    s.handler(signal.SIGTERM, None)
    assert s.received == [signal.SIGINT, signal.SIGTERM] and s.exit_code() == 130
    with pytest.raises(KeyboardInterrupt):
        s.handler(signal.SIGINT, None)
    s.mode = "write"
    s.handler(signal.SIGINT, None)  # no exception while the files are written
    s = Signals()
    s.mode = "train"
    s.handler(signal.SIGHUP, None)
    assert s.exit_code() == 129
