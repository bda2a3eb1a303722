"""The package's import structure: no import circle among fastadmm's modules, and the core imports
with only its own dependencies (numpy, scipy, numba, threadpoolctl).

The import graph is read from the source (ast): an edge for every import that runs when a module is
imported (at module level, in ``if``/``try`` blocks too), none for the imports inside functions, which run
only when called. ``from . import name`` is an edge to the submodule ``name`` where there is one, else
to the package itself.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


PACKAGE = Path(__file__).resolve().parent.parent / "fastadmm"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _top_level_imports(tree: ast.Module):
    """The Import / ImportFrom nodes that run at import time: not inside a function or a class body's
    methods (a class body itself runs at import time)."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        todo.extend(ast.iter_child_nodes(node))


def import_graph() -> dict[str, set[str]]:
    """Module -> the fastadmm modules it imports at import time."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = graph.setdefault(name, set())
        for node in _top_level_imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
                continue
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target not in modules:
                continue
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
            edges.update(subs)
            if len(subs) < len(node.names):  # names defined in the module (or package) itself
                edges.add(target)
        edges.discard(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None (depth-first search, colouring modules)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_graph_sees_the_modules_and_their_imports():
    graph = import_graph()
    assert "fastadmm._settings" in graph and "fastadmm.cli.experiment" in graph
    assert "fastadmm._constraints" in graph["fastadmm._settings"]
    assert "fastadmm.cli.args" in graph["fastadmm.cli"]  # `from .args import UsageError`
    assert "fastadmm.kernels" in graph["fastadmm"]  # `from . import kernels`


def test_find_cycle_finds_a_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_circle_in_the_package():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


CORE_ONLY = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = {"sklearn", "tqdm", "matplotlib", "mlxtend", "pooch", "requests", "pandas"}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)", name=name)
            return None

    sys.meta_path.insert(0, Block())
    import numpy as np
    import fastadmm
    from fastadmm import data, distributed

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] > 0).astype(int)
    result = fastadmm.train_admm(X, y, hidden=(8,), max_iter=3, random_state=0)
    assert result.weights, result
    for attempt in ("fastadmm.ADMMClassifier", "import fastadmm.mnist"):
        try:
            exec(attempt if attempt.startswith("import") else f"{attempt}")
        except ImportError as exc:
            print(f"{attempt}: {exc}")
        else:
            raise SystemExit(f"{attempt} worked without its extra")
    """
)


def test_core_works_without_the_extras():
    """With scikit-learn, tqdm, matplotlib, mlxtend and pooch unimportable: ``import fastadmm`` and
    ``train_admm`` work, and the estimator and the command raise ImportError naming the extra and the
    pip command that installs it."""
    run = subprocess.run([sys.executable, "-c", CORE_ONLY], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.strip().splitlines()
    assert len(lines) == 2, run.stdout
    assert lines[0].startswith("fastadmm.ADMMClassifier:") and 'pip install "fastadmm[sklearn]"' in lines[0]
    assert lines[1].startswith("import fastadmm.mnist:") and 'pip install "fastadmm[mnist]"' in lines[1]



def test_the_extras_named_in_errors_are_pyproject_s():
    """The requirements that the ImportErrors quote are the extras pyproject.toml declares."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    from fastadmm import _extras

    pyproject = PACKAGE.parent / "pyproject.toml"
    if not pyproject.is_file():
        pytest.skip("run from an installed copy: no pyproject.toml beside the package")
    declared = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    for extra, requirements in _extras.EXTRAS.items():
        assert [req for req, _ in requirements] == declared[extra]


def test_an_admm_fit_on_the_compiled_kernels_does_not_import_numba():
    # Numba (~35 MB resident) comes with the gradient baseline only; the names stay reachable
    code = (
        "import sys, numpy as np, fastadmm; "
        "X = np.random.default_rng(0).uniform(size=(60, 5)); y = np.arange(60) % 3; "
        "fastadmm.train_admm(X, y, hidden=(4,), max_iter=1, tol=0, backend='cython'); "
        "assert 'numba' not in sys.modules, 'numba was imported'; "
        "from fastadmm import SGDSettings, train_sgd; "
        "assert train_sgd.__module__ == 'fastadmm.sgd' and 'numba' in sys.modules; "
        "assert {'train_sgd', 'SGDSettings', 'ADMMClassifier'} <= set(dir(fastadmm))"
    )
    subprocess.run([sys.executable, "-W", "ignore", "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
