"""curves.png: training loss and test accuracy against iterations and against training seconds; one
line per method for one seed, the median over seeds with a min-max band for several."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .._atomic import atomic_write

TIME_POINTS = 400  # grid of the against-seconds panels when several seeds are drawn


def by_iteration(histories: list, key: str):
    """(iterations, median, min, max) over runs at each iteration any run evaluated (NaN where none has it)."""
    its = np.array(sorted({int(i) for h in histories for i in h["iteration"]}), float)
    table = np.full((len(histories), its.size), np.nan)
    for r, h in enumerate(histories):
        pos = np.searchsorted(its, np.asarray(h["iteration"], float))
        table[r, pos] = np.asarray(h[key], float)
    return (its, *_band(table))


def by_time(histories: list, key: str, points: int = TIME_POINTS):
    """(seconds, median, min, max) on a common grid; each run holds its last evaluated value from the
    time it was evaluated on, and its final value after it ended (NaN before its first evaluation)."""
    ends = [h["elapsed"][-1] for h in histories if len(h["elapsed"])]
    if not ends:
        return np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0)
    grid = np.linspace(0.0, max(ends), points)
    table = np.full((len(histories), points), np.nan)
    for r, h in enumerate(histories):
        t, v = np.asarray(h["elapsed"], float), np.asarray(h[key], float)
        if not t.size:
            continue
        idx = np.searchsorted(t, grid, side="right") - 1
        ok = idx >= 0
        table[r, ok] = v[idx[ok]]
    return (grid, *_band(table))


def _band(table):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns
        return np.nanmedian(table, axis=0), np.nanmin(table, axis=0), np.nanmax(table, axis=0)


def plot_curves(path: Path, histories: dict, title: str, *, loss_name: str, loss_threshold: float, targets) -> Path:
    """``histories``: method label -> list of histories (one per seed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 8), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg backend, without touching pyplot's global state
    axes = fig.subplots(2, 2)
    colours = ["C0", "C1", "C2", "C3", "C4"]
    positive = True
    for k, (label, runs) in enumerate(histories.items()):
        colour = colours[k % len(colours)]
        for row, key in enumerate(("train_loss", "test_accuracy")):
            for col, along in enumerate((by_iteration, by_time)):
                ax = axes[row, col]
                x, med, lo, hi = along(runs, key)
                if row == 0:
                    positive &= bool(np.all(lo[np.isfinite(lo)] > 0))
                if len(runs) == 1:
                    ax.plot(x, med, marker="." if col == 0 else None, color=colour, label=label)
                else:
                    ax.plot(x, med, color=colour, lw=1.5, label=f"{label} (median of {len(runs)})")
                    ax.fill_between(x, lo, hi, color=colour, alpha=0.2, lw=0)
    for col, xlabel in enumerate(("iteration", "training seconds (evaluation and compilation excluded)")):
        axes[0, col].axhline(loss_threshold, color="grey", ls="--", lw=0.8, label=f"loss {loss_threshold:.3g}")
        for t in targets:
            axes[1, col].axhline(t, color="grey", ls=":", lw=0.8)
        axes[0, col].set_ylabel(f"training loss ({loss_name}, mean per image)")
        axes[1, col].set_ylabel("test accuracy (dotted: targets)")
        lows = [t for t in targets]
        if lows:
            axes[1, col].set_ylim(max(0.0, min(lows) - 0.1), 1.002)
        for row in (0, 1):
            axes[row, col].set_xlabel(xlabel)
            axes[row, col].grid(True, alpha=0.3)
            axes[row, col].legend(fontsize=8)
        if positive:
            axes[0, col].set_yscale("log")
    fig.suptitle(title, fontsize=10)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    return path
