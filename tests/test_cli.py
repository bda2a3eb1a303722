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
from fastadmm._atomic import atomic_write
from fastadmm.cli import args as cli_args
from fastadmm.cli import digits as cli_digits
from fastadmm.cli import report as cli_report
from fastadmm.cli import experiment as cli_run
from fastadmm.cli import training as cli_training

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


def run_of(r: dict, method: str, seed: int = 0) -> dict:
    """The entry of results.json's runs for one method and seed."""
    found = [x for x in r["runs"] if x["method"] == method and x["seed"] == seed]
    assert len(found) == 1, [(x["method"], x["seed"]) for x in r["runs"]]
    return found[0]


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
    assert line.startswith("data: embedded 5,000 MNIST digits (offline: download failed); ")
    # The embedded digits: a stratified 80/20 split made here, or the held-out split fastadmm.data gives them.
    assert line.endswith(("digits 0, 1: 800 train / 200 test images (stratified 80/20 split, seed 0)",
                          "digits 0, 1: 800 train / 200 test images (its held-out split)"))
    assert len(line) < 140 and "http" not in line  # one short line; the URLs are in results.json
    assert "Traceback" not in stderr


def test_embedded_run_prints_the_table(embedded_run):
    _, stdout, _, _ = embedded_run
    for row in ("test accuracy (200 test images)", "test errors", "95% interval (Wilson)",
                "final training loss (mse)", "iterations to 99% test accuracy", "seconds to 99% test accuracy",
                "iterations to 99.5% test accuracy", "iterations to training loss < 0.25",
                "seconds to training loss < 0.25", "test accuracy drops (smoothness)", "loss variation / decrease",
                "seconds per iteration", "compile seconds (apart)", "status"):
        assert any(line.startswith(row) for line in stdout.splitlines()), row
    assert "training loss < 0.5" not in stdout  # the report's threshold, met at chance on this scale
    text = " ".join(stdout.split())  # the footer is wrapped
    assert "training loss (mse) = mean over the training images of (output - target)^2" in text
    assert "0.5 x the zero-output loss 0.5 " in text  # 400 of the 800 training images are ones
    header = next(line for line in stdout.splitlines() if line.strip().startswith("ADMM"))
    assert header.split() == ["ADMM", "GD"]
    status = next(line for line in stdout.splitlines() if line.startswith("status"))
    assert status.split()[1:] == ["max_iter", "max_iter"]


def test_embedded_run_writes_results_json(embedded_run):
    _, _, _, out = embedded_run
    r = results(out)
    assert r["status"] == "done" and r["signal"] is None
    assert r["data"]["source"] == "embedded" and r["data"]["n_train"] == 800 and r["data"]["n_test"] == 200
    assert r["data"]["classes"] == [0, 1] and r["data"]["split_kind"] in ("stratified", "files")
    assert "download failed" in r["data"]["fallback_reason"]  # the whole story is in the file
    assert r["settings"]["cli"]["hidden"] == [20] and r["settings"]["cli"]["iterations"] == 3
    assert run_of(r, "admm")["settings"]["hidden"] == [20] and run_of(r, "admm")["settings"]["n_samples"] == 800
    assert run_of(r, "gd")["settings"]["method"] == "gd" and run_of(r, "gd")["settings"]["max_iter"] == 3
    d = r["definitions"]
    assert d["zero_output_loss"] == 0.5 and d["loss_threshold"] == 0.25 and d["accuracy_targets"] == [0.99, 0.995]
    assert d["loss"].startswith("mean over the training images of (output - target)^2")
    assert set(d["smoothness"]) == {"accuracy_drops", "largest_accuracy_drop", "loss_variation_ratio"}
    assert len(r["runs"]) == 2
    for method in ("admm", "gd"):
        run = run_of(r, method)
        h = run["history"]
        assert h["iteration"] == [1, 2, 3]
        for key in ("elapsed", "train_loss", "train_accuracy", "test_accuracy"):
            assert len(h[key]) == 3 and all(isinstance(v, float) for v in h[key]), (method, key)
        assert np.all(np.diff(h["elapsed"]) > 0)
        assert run["iterations"] == 3 and run["status"] == "max_iter"
        assert run["test_accuracy"] == h["test_accuracy"][-1] and run["train_loss"] == h["train_loss"][-1]
        assert run["test_size"] == 200 and run["test_errors"] == round((1 - run["test_accuracy"]) * 200)
        lo, hi = run["test_accuracy_wilson95"]
        assert lo <= run["test_accuracy"] <= hi
        assert run["seconds_per_iteration"] == pytest.approx(h["elapsed"][-1] / 3)
        assert run["compile_seconds"] is not None
        assert run["smoothness"] == cli_report.smoothness(h)
        s = r["summary"][method]
        assert s["seeds"] == [0] and s["measures"]["test_accuracy"]["median"] == run["test_accuracy"]
    assert len(run_of(r, "admm")["history"]["objective"]) == 3
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
    assert (f"data: MNIST folder {folder}; digits 0, 1: 80 train / 20 test images "
            "(the files' own split)") in captured.out.splitlines()
    r = results(out)
    assert r["data"]["source"] == "data_dir" and (r["data"]["n_train"], r["data"]["n_test"]) == (80, 20)
    assert run_of(r, "admm")["test_accuracy"] >= 0.9  # the generated digits are easy
    assert_valid_png(out / "curves.png")


def test_sgd_baseline_and_three_classes(folder, tmp_path, capsys):
    out = tmp_path / "out"
    code = cli.main(["--data-dir", str(folder), "--classes", "0", "1", "2", "--methods", "admm", "sgd", "--batch-size",
                     "16", "--epochs", "2", "--iterations", "2", "--hidden", "8", "--quiet",
                     "--dtype", "float32", "--threads", "1", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    r = results(out)
    assert run_of(r, "sgd")["settings"]["method"] == "sgd" and run_of(r, "sgd")["settings"]["batch_size"] == 16
    assert run_of(r, "admm")["settings"]["n_classes"] == 3 and run_of(r, "admm")["settings"]["dtype"] == "float32"
    assert len(run_of(r, "sgd")["history"]["iteration"]) == 2 and len(run_of(r, "admm")["history"]["iteration"]) == 2
    assert r["definitions"]["accuracy_targets"] == [0.95, 0.98] and r["definitions"]["zero_output_loss"] == 1.0
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
    X_tr, y_tr, X_te, y_te, how, kind = cli_digits.split(mnist, (0, 1), seed=3)
    assert (len(y_tr), len(y_te)) == (10_000, 2_665) and kind == "report"
    assert "the report's split of the 12,665 such training images, 10,000 train / 2,665 test" in how
    rows = np.concatenate([X_tr[:, 0], X_te[:, 0]])
    assert sorted(rows.tolist()) == np.flatnonzero(y <= 1).tolist()  # every 0/1 training image once
    np.testing.assert_array_equal(y[X_tr[:, 0]], y_tr)
    np.testing.assert_array_equal(cli_digits.split(mnist, (0, 1), seed=3)[0], X_tr)  # seeded
    assert not np.array_equal(cli_digits.split(mnist, (0, 1), seed=4)[0], X_tr)
    # Other digits keep the official test set.
    _, _, X_te2, y_te2, how2, _ = cli_digits.split(mnist, (0, 1, 2), seed=3)
    assert len(y_te2) == 30 and "the files' own split" in how2


def test_embedded_split_is_stratified():
    y = np.repeat(np.arange(3), [50, 30, 20])
    tr, te = cli_digits.stratified_split(y, 0.2, seed=0)
    assert np.bincount(y[te]).tolist() == [10, 6, 4]
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(100))


# --------------------------------------------------------------------------------------------------
# Bad arguments: exit 2, one line naming the problem, before any training


def _bad_cases(tmp_path: Path, folder: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = write_folder(tmp_path / "corrupt")
    (corrupt / NAMES["train_images"]).write_bytes(b"not an IDX file at all")
    narrow = write_folder(tmp_path / "narrow")
    write_idx(narrow / NAMES["test_images"], np.zeros((30, 28, 27), np.uint8))
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
        "batch size with gd": ([*d, "--batch-size", "8"], "--batch-size applies to sgd and adam"),
        "missing checkpoint": ([*d, "--resume", str(tmp_path / "none.npz")], "--resume"),
        "unknown method": ([*d, "--methods", "admm", "lbfgs"], "argument --methods"),
        "seed twice": ([*d, "--seeds", "3", "3"], "each seed once"),
        "hidden 100000000": ([*d, "--hidden", "100000000"], "--hidden 100000000: one fit needs at least"),
        "test images 28x27": (["--data-dir", str(narrow)], "t10k-images-idx3-ubyte"),
    }


CASES = ["missing folder", "folder without MNIST files", "corrupt file", "out under a regular file", "out is a file",
         "hidden 0", "iterations 0", "gd-iterations -3", "classes 11", "one class", "absent class", "beta -1",
         "gamma 0", "lr nan", "unknown loss", "batch size with gd", "missing checkpoint", "unknown method",
         "seed twice", "hidden 100000000", "test images 28x27"]


@pytest.mark.parametrize("case", CASES)
def test_bad_arguments_exit_2_with_a_message(case, folder, tmp_path, capsys, monkeypatch):
    argv, message = _bad_cases(tmp_path, folder)[case]
    if "--out" not in argv:
        argv = [*argv, "--out", str(tmp_path / "out")]

    def no_training(*args, **kwargs):
        raise AssertionError("training started despite a bad argument")

    monkeypatch.setattr(cli_training, "train_admm_run", no_training)
    monkeypatch.setattr(cli_training, "train_gradient_run", no_training)
    assert cli.main([*argv, "--quiet"]) == 2
    captured = capsys.readouterr()
    assert message in captured.err, captured.err
    error_lines = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(error_lines) == 1 and "Traceback" not in captured.err
    assert "data: " not in captured.out


def test_a_trainer_error_is_one_line(folder, tmp_path, capsys):
    """A ValueError raised by train_sgd (batch larger than the data) becomes 'error: ...' and exit 2."""
    argv = ["--data-dir", str(folder), "--iterations", "1", "--hidden", "5", "--methods", "admm", "sgd",
            "--batch-size", "1000", "--quiet", "--out", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "error: batch_size must be at most the number of samples (80)" in err
    assert "Traceback" not in err


def test_without_mpi4py_distributed_says_how_to_install(folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # import mpi4py now raises ImportError
    assert cli.main(["--distributed", "--data-dir", str(folder), "--out", str(tmp_path / "out")]) == 2
    from fastadmm.distributed import MPI_INSTALL_HINT

    err = capsys.readouterr().err
    assert "--distributed" in err and MPI_INSTALL_HINT in err  # the library's install hint


def test_help_in_a_subprocess(tmp_path):
    # cwd: `python -m` puts the working folder first on sys.path; run from the project folder it would
    # import the source tree (without the compiled kernels of a non-editable install) instead of the
    # installed package.  Every subprocess here runs in a scratch folder for that reason.
    proc = subprocess.run([sys.executable, "-m", "fastadmm.mnist", "--help"], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for option in ("--data-dir", "--classes", "--hidden", "--loss", "--iterations", "--gd-iterations", "--methods",
                   "--epochs", "--batch-size", "--lr", "--beta", "--gamma", "--seeds", "--dtype", "--backend",
                   "--threads", "--out", "--quiet", "--checkpoint-every", "--resume", "--distributed", "--no-download",
                   "--accuracy-targets", "--loss-fraction"):
        assert option in proc.stdout, option
    assert "exit status" in proc.stdout
    text = " ".join(proc.stdout.split())
    assert "'test accuracy drops' counts the evaluated iterations whose test accuracy is below the previous one" in text
    assert "divided by its decrease L(first) - L(last)" in text and "zero output" in text


# --------------------------------------------------------------------------------------------------
# Files, checkpoints, Ctrl-C


def test_jsonable_makes_plain_json():
    value = {"a": np.float32(1.5), "b": [np.nan, np.inf, -np.inf, 2.0], "c": np.arange(3), 4: (np.int64(7),),
             "p": Path("x/y"), "n": None, "t": True}
    plain = cli_report.jsonable(value)
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
        atomic_write(target, fail)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
    atomic_write(target, lambda f: f.write(b"new"))
    assert target.read_text() == "new" and not leftovers(tmp_path)


def test_checkpoint_every_then_resume_continues(folder, tmp_path, capsys):
    common = ["--data-dir", str(folder), "--hidden", "20", "--gd-iterations", "1", "--quiet", "--threads", "1"]
    first, resumed, straight = tmp_path / "first", tmp_path / "resumed", tmp_path / "straight"
    assert cli.main([*common, "--iterations", "2", "--checkpoint-every", "1", "--out", str(first)]) == 0
    checkpoint = first / cli_args.CHECKPOINT_NAME
    assert checkpoint.is_file()
    assert cli.main([*common, "--iterations", "2", "--resume", str(checkpoint), "--out", str(resumed)]) == 0
    assert cli.main([*common, "--iterations", "4", "--out", str(straight)]) == 0
    capsys.readouterr()
    h_resumed, h_straight = run_of(results(resumed), "admm")["history"], run_of(results(straight), "admm")["history"]
    assert h_resumed["iteration"] == [1, 2, 3, 4]
    assert run_of(results(resumed), "admm")["iterations"] == 4
    np.testing.assert_allclose(h_resumed["objective"], h_straight["objective"], rtol=1e-9)
    assert h_resumed["test_accuracy"] == h_straight["test_accuracy"]


def test_resume_with_another_net_is_a_one_line_error(folder, tmp_path, capsys):
    common = ["--data-dir", str(folder), "--gd-iterations", "1", "--quiet", "--iterations", "1"]
    assert cli.main([*common, "--hidden", "20", "--checkpoint-every", "1", "--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    checkpoint = tmp_path / "a" / cli_args.CHECKPOINT_NAME
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
        while not (out / cli_args.CHECKPOINT_NAME).exists():  # ADMM's loop is running
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
    statuses = {x["method"]: x["status"] for x in r["runs"]}
    assert "interrupted" in statuses.values()
    interrupted = next(m for m, s in statuses.items() if s == "interrupted")
    assert len(run_of(r, interrupted)["history"]["iteration"]) >= 1
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
@pytest.mark.parametrize("classes, method", [(["0", "1"], "full"), (["0", "1", "2"], "mini-batch")])
def test_distributed_prints_and_writes_once_and_matches_one_process(folder, tmp_path, capsys, classes, method):
    """Two digits: the full-batch method (the command's default for them); three: mini-batch ADMM."""
    out = tmp_path / "mpi"
    args = ["--data-dir", str(folder), "--hidden", "20", "--iterations", "3", "--quiet", "--threads", "1",
            "--classes", *classes]
    env = dict(os.environ, **ONE_THREAD)
    proc = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, "-m", "fastadmm.mnist", "--distributed", *args,
                           "--out", str(out)], capture_output=True, text=True, timeout=120, env=env,
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data_lines = [line for line in proc.stdout.splitlines() if line.startswith("data: ")]
    assert len(data_lines) == 1 and "2 ranks" in data_lines[0]
    assert proc.stdout.count("wrote ") == 1
    r = results(out)
    assert r["environment"]["ranks"] == 2 and "gd" in r["skipped"] and len(r["runs"]) == 1
    settings = run_of(r, "admm")["settings"]
    assert settings["ranks"] == 2 and r["data"]["n_train"] == 40 * len(classes)
    assert (settings["batch_size"] is None) == (method == "full")
    assert cli.main([*args, "--gd-iterations", "1", "--out", str(tmp_path / "one")]) == 0
    capsys.readouterr()
    one = run_of(results(tmp_path / "one"), "admm")["history"]
    key = "objective" if method == "full" else "train_loss"
    np.testing.assert_allclose(run_of(r, "admm")["history"][key], one[key], rtol=1e-9)
    assert run_of(r, "admm")["history"]["test_accuracy"] == one["test_accuracy"]


ONE_RANK_FAILS = """
import sys
from fastadmm import mnist as cli
from fastadmm.cli import training

real = training.train_admm_run


def fail_on_rank_1(args, digits, ranks, *rest, **kwargs):
    if ranks.rank == 1:
        raise RuntimeError("rank 1 broke down")
    return real(args, digits, ranks, *rest, **kwargs)


training.train_admm_run = fail_on_rank_1
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


def test_an_out_folder_that_refuses_files_is_caught_before_training(folder, tmp_path, capsys, monkeypatch):
    """A read-only --out (simulated: root may write anywhere) fails at once, not after training."""
    real_mkstemp = cli_run.tempfile.mkstemp

    def read_only(*args, **kwargs):
        if str(kwargs.get("dir", "")) == str(tmp_path / "ro"):
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(cli_run.tempfile, "mkstemp", read_only)
    monkeypatch.setattr(cli_training, "train_admm_run", lambda *a, **k: pytest.fail("training started"))
    assert cli.main(["--data-dir", str(folder), "--out", str(tmp_path / "ro"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--out {tmp_path / 'ro'}: cannot write in the folder (Permission denied)" in err


# --------------------------------------------------------------------------------------------------
# Several seeds, methods, losses


def test_several_seeds_from_python_and_the_command(folder, tmp_path, capsys):
    """run(seeds=...) returns one entry per seed and method and the median and range per method; the
    command prints 'median [min-max]' cells and draws bands."""
    report = cli.run(data_dir=str(folder), seeds=[0, 1, 2], iterations=3, gd_iterations=4, hidden=[20])
    assert [(x["method"], x["seed"]) for x in report["runs"]] == [
        ("admm", 0), ("gd", 0), ("admm", 1), ("gd", 1), ("admm", 2), ("gd", 2)]
    for method in ("admm", "gd"):
        acc = [x["test_accuracy"] for x in report["runs"] if x["method"] == method]
        m = report["summary"][method]["measures"]["test_accuracy"]
        assert report["summary"][method]["seeds"] == [0, 1, 2]
        assert (m["median"], m["min"], m["max"]) == (float(np.median(acc)), min(acc), max(acc))
    # The same data for every seed, different initial weights.
    first = [x["history"]["train_loss"][0] for x in report["runs"] if x["method"] == "gd"]
    assert len(set(first)) == 3
    assert capsys.readouterr().out.count("data: ") == 1
    out = tmp_path / "out"
    assert cli.main(["--data-dir", str(folder), "--seeds", "0", "1", "2", *SMALL, "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    row = next(line for line in stdout.splitlines() if line.startswith("test accuracy ("))
    assert row.count("[") == 2 and "median [min-max] over 3 seeds" in " ".join(stdout.split())
    assert len(results(out)["runs"]) == 6
    assert_valid_png(out / "curves.png")
    with pytest.raises(cli.UsageError, match="each seed once"):
        cli.run(data_dir=str(folder), seeds=[1, 1])
    with pytest.raises(cli.UsageError, match="--hidden"):
        cli.run(data_dir=str(folder), hidden=[0])


def test_hinge_is_described_as_hinge(folder, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["--data-dir", str(folder), *SMALL, "--loss", "hinge", "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert "final training loss (hinge)" in stdout and "(output - target)^2" not in stdout
    assert "training loss (hinge) = mean over the training images of the hinge loss" in " ".join(stdout.split())
    assert "0.000e+00" not in stdout
    r = results(out)
    assert r["definitions"]["loss"].startswith("mean over the training images of the hinge loss")
    assert r["definitions"]["zero_output_loss"] == pytest.approx(40 / 80)  # 40 of the 80 images are ones


def test_methods_side_by_side_with_adam_when_available(folder, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--data-dir", str(folder), "--methods", "sgd", "adam", "gd", "--epochs", "2", "--gd-iterations", "2",
            "--hidden", "8", "--quiet", "--out", str(out)]
    assert cli.main(argv) == 0
    stdout = capsys.readouterr().out
    header = next(line for line in stdout.splitlines() if line.strip().startswith("SGD"))
    assert header.split() == ["SGD", "ADAM", "GD"]
    r = results(out)
    assert run_of(r, "adam")["iterations"] == 2
    assert {x["method"] for x in r["runs"]} >= {"sgd", "gd"}


def test_a_data_error_anywhere_exits_2(folder, tmp_path, capsys, monkeypatch):
    def corrupt(*args, **kwargs):
        raise D.DataError("t10k-images-idx3-ubyte.gz: truncated")

    monkeypatch.setattr(cli_digits, "split", corrupt)
    assert cli.main(["--data-dir", str(folder), "--quiet", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "error: --data-dir: t10k-images-idx3-ubyte.gz: truncated" in err and "Traceback" not in err


def test_admm_is_full_batch_unless_asked(folder, tmp_path, capsys):
    """The report's ADMM (the whole training set every iteration) by default; --admm-batch-size N runs
    mini-batch ADMM where train_admm has it."""
    out = tmp_path / "full"
    assert cli.main(["--data-dir", str(folder), "--iterations", "3", "--hidden", "20", "--quiet", "--methods", "admm", "--out", str(out)]) == 0
    settings = run_of(results(out), "admm")["settings"]
    assert settings.get("batch_size") is None and settings["beta"] == 1.0 and settings["gamma"] == 10.0
    argv = ["--data-dir", str(folder), "--iterations", "3", "--hidden", "20", "--quiet", "--methods", "admm", "--admm-batch-size", "16", "--out",
            str(tmp_path / "mini")]
    assert cli.main(argv) == 0
    assert run_of(results(tmp_path / "mini"), "admm")["settings"]["batch_size"] == 16
    assert cli.main([*argv[:-1], str(tmp_path / "bad"), "--admm-batch-size", "x"]) == 2
    assert "expected 'full', 'auto' or an integer >= 1" in capsys.readouterr().err
