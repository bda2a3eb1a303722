"""What the table and results.json say: each run's summary (time to each target, smoothness), the
median and range over seeds, the table, and the definitions written beside them."""

from __future__ import annotations

import math
import textwrap
from collections import Counter
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from .._json import plain, to_json

from .._atomic import atomic_write

LOSS_DEFINITIONS = {
    "mse": "mean over the training images of (output - target)^2 summed over the outputs, 0/1 targets "
           "(one output for two digits: the report's squared error per image)",
    "hinge": "mean over the training images of the hinge loss summed over the outputs: max(1 - output, 0) "
             "where the target is 1, max(output, 0) where it is 0; exactly 0 when every training image is "
             "beyond its margin (then the gradient is 0 too and gradient descent stands still)",
    "cross_entropy": "mean over the training images of the softmax cross-entropy logsumexp(o) - <t, o>, one "
                     "output per class (two for two digits), one-hot targets, in nats",
}
SMOOTHNESS = {
    "accuracy_drops": "number of evaluated iterations whose test accuracy is below that of the previous one",
    "largest_accuracy_drop": "the largest fall of the test accuracy from one evaluated iteration to the next",
    "loss_variation_ratio": "total variation of the training-loss curve, sum |L(k+1) - L(k)| over the evaluated "
                            "iterations, divided by its decrease L(first) - L(last): 1 for a curve that only "
                            "falls, larger the more it goes up and down; null when the loss did not decrease",
}
REACHED = "the first evaluated iteration from which the criterion holds until the end of the run"
SECONDS = "training time (history 'elapsed'): evaluation and compilation excluded"
Z95 = 1.959963984540054


def jsonable(value):
    """Plain JSON values for results.json: the library's one JSON codec (fastadmm._json), with NaN and
    infinities as null (strict JSON) and anything else as its str."""
    return plain(value, strict=True, fallback=str)


def finite(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value)


# --------------------------------------------------------------------------------------------------
# One run


def zero_output_loss(loss: str, y_index: np.ndarray, n_classes: int) -> float:
    """The training loss of a net whose outputs are all 0 (one that has learned nothing): the scale the
    loss threshold is set on. mse and hinge: the mean number of target-1 entries per image (the share
    of the second digit for two digits, 1 for one-hot targets); cross-entropy (a softmax over one output
    per class): log K."""
    if loss == "cross_entropy":
        return math.log(n_classes)
    return float(np.mean(np.asarray(y_index) == 1)) if n_classes == 2 else 1.0


def first_from_then_on(history: dict, key: str, holds: Callable[[float], bool]):
    """(iteration, training seconds) of the first evaluated iteration from which ``holds(value)`` is
    true until the end of the run, or (None, None)."""
    rows = [(i, t, v) for i, t, v in zip(history.get("iteration", []), history.get("elapsed", []),
                                         history.get(key, [])) if finite(v)]
    found = (None, None)
    for i, t, v in reversed(rows):
        if not holds(v):
            break
        found = (int(i), float(t))
    return found


def smoothness(history: dict) -> dict:
    """The smoothness of one run's curves (definitions in SMOOTHNESS)."""
    acc = np.array([v for v in history.get("test_accuracy", []) if finite(v)], float)
    loss = np.array([v for v in history.get("train_loss", []) if finite(v)], float)
    falls = -np.diff(acc)
    drops = int(np.sum(falls > 0)) if acc.size > 1 else 0
    largest = float(max(falls.max(), 0.0)) if acc.size > 1 else 0.0
    ratio = None
    if loss.size > 1 and loss[0] > loss[-1]:
        ratio = float(np.abs(np.diff(loss)).sum() / (loss[0] - loss[-1]))
    return {"accuracy_drops": drops, "largest_accuracy_drop": largest, "loss_variation_ratio": ratio}


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (95 % by default)."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarize(result, *, targets, loss_threshold: float, n_test: int, seed=None, label=None) -> dict:
    """One run (one method, one seed): the numbers of the table and of results.json."""
    h = result.history
    n = len(h.get("iteration", []))

    def last(key):
        return h[key][-1] if n and key in h and finite(h[key][-1]) else None

    acc = last("test_accuracy")
    errors = int(round((1 - acc) * n_test)) if acc is not None and n_test else None
    to_accuracy = {}
    for target in targets:
        it, s = first_from_then_on(h, "test_accuracy", lambda v, t=target: v >= t)
        to_accuracy[f"{target:g}"] = {"iterations": it, "seconds": s}
    it_loss, s_loss = first_from_then_on(h, "train_loss", lambda v: v < loss_threshold)
    return {
        "method": label or result.method, "seed": seed, "status": str(result.status), "message": result.message,
        "iterations": int(result.n_iter), "test_accuracy": acc, "test_size": n_test, "test_errors": errors,
        "test_accuracy_wilson95": list(wilson(n_test - errors, n_test)) if errors is not None else None,
        "train_accuracy": last("train_accuracy"), "train_loss": last("train_loss"),
        "first_train_loss": h["train_loss"][0] if n and finite(h["train_loss"][0]) else None,
        "to_accuracy": to_accuracy,
        "to_loss": {"threshold": loss_threshold, "iterations": it_loss, "seconds": s_loss},
        "smoothness": smoothness(h),
        "seconds_per_iteration": h["elapsed"][-1] / h["iteration"][-1] if n and h["iteration"][-1] else None,
        "train_seconds": h["elapsed"][-1] if n else None,
        "compile_seconds": result.timings.get("compile"), "eval_seconds": result.timings.get("eval"),
        "total_seconds": result.timings.get("total"),
    }


# --------------------------------------------------------------------------------------------------
# Over seeds


def spread(values, missing_is_inf: bool = False) -> dict:
    """Median, min and max of one measure over seeds. ``missing_is_inf``: None (not reached) counts
    as infinitely late, so the median is 'not reached' when more than half did not reach it; JSON
    writes infinity as null, and ``n`` counts the seeds with a value."""
    vals = [float(v) if finite(v) else (math.inf if missing_is_inf and v is None else None) for v in values]
    have = sorted(v for v in vals if v is not None)
    if not have:
        return {"median": None, "min": None, "max": None, "n": 0, "of": len(values)}
    return {"median": float(np.median(have)), "min": have[0], "max": have[-1],
            "n": sum(math.isfinite(v) for v in have), "of": len(values)}


MEASURES = {  # name -> (getter on a run summary, not-reached counts as infinite)
    "test_accuracy": (lambda s: s["test_accuracy"], False),
    "test_errors": (lambda s: s["test_errors"], False),
    "train_loss": (lambda s: s["train_loss"], False),
    "iterations_to_loss": (lambda s: s["to_loss"]["iterations"], True),
    "seconds_to_loss": (lambda s: s["to_loss"]["seconds"], True),
    "accuracy_drops": (lambda s: s["smoothness"]["accuracy_drops"], False),
    "largest_accuracy_drop": (lambda s: s["smoothness"]["largest_accuracy_drop"], False),
    "loss_variation_ratio": (lambda s: s["smoothness"]["loss_variation_ratio"], True),
    "seconds_per_iteration": (lambda s: s["seconds_per_iteration"], False),
    "iterations": (lambda s: s["iterations"], False),
    "compile_seconds": (lambda s: s["compile_seconds"], False),
}


def aggregate(runs: list) -> dict:
    """Per method: the median and range over its seeds of every measure (``runs``: run summaries)."""
    out = {}
    for method in dict.fromkeys(r["method"] for r in runs):
        mine = [r for r in runs if r["method"] == method]
        measures = {name: spread([get(r) for r in mine], inf) for name, (get, inf) in MEASURES.items()}
        for target in mine[0]["to_accuracy"]:
            for unit in ("iterations", "seconds"):
                measures[f"{unit}_to_accuracy_{target}"] = spread([r["to_accuracy"][target][unit] for r in mine],
                                                                  True)
        out[method] = {"seeds": [r["seed"] for r in mine], "measures": measures,
                       "statuses": dict(Counter(r["status"] for r in mine))}
        if len(mine) == 1:
            out[method]["wilson"] = mine[0]["test_accuracy_wilson95"]
    return out


# --------------------------------------------------------------------------------------------------
# The table


def fmt_loss(value) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"  # exactly: hinge with every margin met (LOSS_DEFINITIONS)
    return format(value, ".4f") if abs(value) >= 1e-3 else format(value, ".2e")


def _num(spec):
    def f(v):
        if v is None:
            return "-"
        if math.isinf(v):
            return "n.r."
        if spec == "int":
            return format(v, ".0f") if float(v).is_integer() else format(v, ".1f")
        return format(v, spec)
    return f


def _cell(stat: dict, f, single: bool) -> str:
    if single or stat["median"] is None:
        return f(stat["median"])
    return f"{f(stat['median'])} [{f(stat['min'])}-{f(stat['max'])}]"


def format_table(aggregates: dict, skipped: dict, *, targets, loss_name: str, loss_threshold: float,
                 n_test: int, n_seeds: int) -> str:
    """One column per method, one row per measure; several seeds: 'median [min-max]'."""
    single = n_seeds == 1
    rows = [(f"test accuracy ({n_test:,} test images)", "test_accuracy", _num(".4f")),
            ("test errors", "test_errors", _num("int"))]
    for t in targets:
        pct = f"{100 * t:g}%"
        rows += [(f"iterations to {pct} test accuracy", f"iterations_to_accuracy_{t:g}", _num("int")),
                 (f"seconds to {pct} test accuracy", f"seconds_to_accuracy_{t:g}", _num(".3f"))]
    rows += [(f"final training loss ({loss_name})", "train_loss", fmt_loss),
             (f"iterations to training loss < {loss_threshold:.3g}", "iterations_to_loss", _num("int")),
             (f"seconds to training loss < {loss_threshold:.3g}", "seconds_to_loss", _num(".3f")),
             ("test accuracy drops (smoothness)", "accuracy_drops", _num("int")),
             ("loss variation / decrease", "loss_variation_ratio", _num(".3f")),
             ("seconds per iteration", "seconds_per_iteration", _num(".4f")),
             ("iterations run", "iterations", _num("int")),
             ("compile seconds (apart)", "compile_seconds", _num(".3f"))]
    methods = list(aggregates) + [m for m in skipped if m not in aggregates]
    cells = []
    for name, key, f in rows:
        cells.append([name] + [_cell(aggregates[m]["measures"][key], f, single) if m in aggregates else "-"
                               for m in methods])
    if single:
        wil = []
        for m in methods:
            w = aggregates[m].get("wilson") if m in aggregates else None
            wil.append(f"{w[0]:.4f}-{w[1]:.4f}" if w else "-")
        cells.insert(2, ["95% interval (Wilson)"] + wil)
    status = []
    for m in methods:
        if m not in aggregates:
            status.append("not run")
        elif single:
            status.append(next(iter(aggregates[m]["statuses"])))
        else:
            status.append(", ".join(f"{s} x{k}" for s, k in aggregates[m]["statuses"].items()))
    cells.append(["status"] + status)
    labels = [m.upper() for m in methods]
    width0 = max(len(r[0]) for r in cells)
    widths = [max(len(labels[j]), *(len(r[j + 1]) for r in cells)) for j in range(len(labels))]
    lines = [" " * width0 + "".join(f"  {lab:>{w}}" for lab, w in zip(labels, widths))]
    lines += [f"{r[0]:<{width0}}" + "".join(f"  {c:>{w}}" for c, w in zip(r[1:], widths)) for r in cells]
    return "\n".join(lines)


def footer(*, loss_name: str, zero_loss: float, fraction: float, n_test: int, n_seeds: int) -> str:
    parts = [f"training loss ({loss_name}) = {LOSS_DEFINITIONS.get(loss_name, loss_name)}, by a forward pass over "
             "them after each iteration, for every method alike (train_metrics='full').",
             f"Loss threshold = {fraction:g} x the zero-output loss {zero_loss:.4g} (a net that has learned nothing).",
             f"One test image = {100 / max(n_test, 1):.3g}% accuracy.",
             "Seconds exclude evaluation and compilation; 'to' = from that iteration on until the end; "
             "n.r. = not reached.",
             "Test accuracy drops: evaluated iterations whose test accuracy fell; loss variation / decrease: "
             "total variation of the loss curve over its decrease (1 = only falls)."]
    if n_seeds > 1:
        parts.append(f"Cells: median [min-max] over {n_seeds} seeds.")
    return textwrap.fill(" ".join(parts), 100)


def write_results(out: Path, report: dict) -> Path:
    text = to_json(report, indent=1, strict=True, fallback=str)
    return atomic_write(out / "results.json", lambda f: f.write(text.encode("utf-8")))


def definitions(*, loss_name: str, zero_loss: Optional[float], fraction: float, targets) -> dict:
    """The definitions written into results.json beside the numbers."""
    return {
        "loss": LOSS_DEFINITIONS.get(loss_name, loss_name), "zero_output_loss": zero_loss,
        "loss_threshold": None if zero_loss is None else fraction * zero_loss,
        "loss_threshold_rule": f"{fraction:g} x the training loss of the all-zero output (zero_output_loss)",
        "accuracy_targets": list(targets), "reached": REACHED, "seconds": SECONDS, "smoothness": SMOOTHNESS,
        "test_errors": "misclassified test images of the final weights; test_accuracy_wilson95 is the Wilson "
                       "score 95 % interval of the test accuracy",
        "summary": "per method, median / min / max over the seeds; for times to a target, a seed that did not "
                   "reach it counts as infinitely late (null in JSON) and n counts the seeds that did",
    }
