"""The README's Python example runs as printed, offline (it once crashed at X_test / 255.0)."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_example() -> str:
    text = README.read_text()
    section = text[text.index("## Using it from Python"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_python_example_runs_offline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # no MNIST cache
    monkeypatch.setenv("FASTADMM_MNIST_MIRRORS", "http://127.0.0.1:9/")  # a mirror that refuses at once
    monkeypatch.delenv("FASTADMM_DATA", raising=False)
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(python_example(), str(README), "exec"), namespace)  # noqa: S102 - our own README
    assert "embedded" in namespace["mnist"].describe()
    assert namespace["result"].history["test_accuracy"][-1] >= 0.99  # MNIST 0 vs 1, 200 held-out digits
    assert (tmp_path / "model.npz").is_file()
