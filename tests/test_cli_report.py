"""The command's numbers on constructed curves: time to a target, smoothness, the median and range
over seeds, the Wilson interval, the zero-output loss, the table; and the task-dependent defaults."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from fastadmm.cli import args as cli_args
from fastadmm.cli import report, training
from fastadmm.cli.plots import by_iteration, by_time


def fake_result(acc, loss, elapsed=None, status="max_iter", method="gd"):
    n = len(acc)
    history = {"iteration": list(range(1, n + 1)), "elapsed": list(elapsed or [0.1 * (i + 1) for i in range(n)]),
               "test_accuracy": list(acc), "train_loss": list(loss), "train_accuracy": list(acc)}
    return SimpleNamespace(history=history, n_iter=n, status=status, message="", method=method,
                           timings={"compile": 0.5, "eval": 0.1, "total": 1.0})


def test_time_to_a_target_counts_from_where_it_holds_until_the_end():
    h = {"iteration": [1, 2, 3, 4, 5], "elapsed": [0.1, 0.2, 0.3, 0.4, 0.5],
         "test_accuracy": [0.5, 0.995, 0.98, 0.991, 0.999]}
    assert report.first_from_then_on(h, "test_accuracy", lambda v: v >= 0.99) == (4, 0.4)
    assert report.first_from_then_on(h, "test_accuracy", lambda v: v >= 0.9995) == (None, None)
    h["test_accuracy"][3] = float("nan")  # not evaluated at iteration 4: skipped
    assert report.first_from_then_on(h, "test_accuracy", lambda v: v >= 0.99) == (5, 0.5)


def test_smoothness_of_constructed_curves():
    # A loss that only falls: variation / decrease = 1; an accuracy that only rises: no drops.
    s = report.smoothness({"test_accuracy": [0.5, 0.9, 0.9, 0.99], "train_loss": [1.0, 0.5, 0.25, 0.2]})
    assert s == {"accuracy_drops": 0, "largest_accuracy_drop": 0.0, "loss_variation_ratio": pytest.approx(1.0)}
    # Loss 1 -> 0.2 -> 0.6 -> 0.1: variation 0.8 + 0.4 + 0.5 = 1.7 over a decrease of 0.9.
    # Accuracy 0.5, 0.9, 0.7, 0.95, 0.94: two drops, the largest 0.2.
    s = report.smoothness({"test_accuracy": [0.5, 0.9, 0.7, 0.95, 0.94], "train_loss": [1.0, 0.2, 0.6, 0.1]})
    assert s["accuracy_drops"] == 2
    assert s["largest_accuracy_drop"] == pytest.approx(0.2)
    assert s["loss_variation_ratio"] == pytest.approx(1.7 / 0.9)
    # NaN (not evaluated) entries are skipped; a loss that did not fall has no ratio.
    s = report.smoothness({"test_accuracy": [0.9, float("nan"), 0.8], "train_loss": [0.5, 0.6]})
    assert s["accuracy_drops"] == 1 and s["loss_variation_ratio"] is None


def test_spread_counts_a_target_not_reached_as_infinitely_late():
    assert report.spread([5, 3, 9]) == {"median": 5.0, "min": 3.0, "max": 9.0, "n": 3, "of": 3}
    s = report.spread([5, None, 3], missing_is_inf=True)
    assert (s["median"], s["min"], s["max"], s["n"], s["of"]) == (5.0, 3.0, math.inf, 2, 3)
    s = report.spread([None, None, 3], missing_is_inf=True)
    assert s["median"] == math.inf and s["n"] == 1
    assert report.spread([None, None])["median"] is None  # a measure without values (not a time)


def test_aggregate_over_seeds():
    runs = []
    # Three seeds of one method: final accuracy 0.99 / 0.995 / 1.0, the 0.99 target at iteration 2, 3, never.
    curves = [[0.5, 0.99, 0.99, 0.99], [0.5, 0.9, 0.995, 0.995], [0.5, 0.9, 0.95, 0.98]]
    for seed, acc in enumerate(curves):
        r = fake_result(acc, [0.6, 0.3, 0.2, 0.1 + seed / 100])
        runs.append(report.summarize(r, targets=[0.99], loss_threshold=0.25, n_test=200, seed=seed, label="gd"))
    r = fake_result([0.6, 0.99], [0.5, 0.1], status="interrupted", method="admm")
    runs.append(report.summarize(r, targets=[0.99], loss_threshold=0.25, n_test=200, seed=0, label="admm"))
    agg = report.aggregate(runs)
    assert list(agg) == ["gd", "admm"]
    gd = agg["gd"]
    assert gd["seeds"] == [0, 1, 2] and gd["statuses"] == {"max_iter": 3}
    m = gd["measures"]
    assert (m["test_accuracy"]["median"], m["test_accuracy"]["min"], m["test_accuracy"]["max"]) == (0.99, 0.98, 0.995)
    assert m["test_errors"]["median"] == 2 and m["test_errors"]["max"] == 4  # 0.98 of 200 = 4 errors
    t = m["iterations_to_accuracy_0.99"]
    assert (t["median"], t["min"], t["max"], t["n"]) == (3.0, 2.0, math.inf, 2)
    assert m["seconds_to_accuracy_0.99"]["median"] == pytest.approx(0.3)
    assert m["iterations_to_loss"]["median"] == 3  # loss < 0.25 from iteration 3 in every seed
    assert m["train_loss"]["min"] == pytest.approx(0.1) and m["train_loss"]["max"] == pytest.approx(0.12)
    assert m["accuracy_drops"]["max"] == 0
    assert agg["admm"]["statuses"] == {"interrupted": 1} and agg["admm"]["wilson"] is not None
    table = report.format_table(agg, {"adam": "not run"}, targets=[0.99], loss_name="mse", loss_threshold=0.25,
                                n_test=200, n_seeds=3)
    lines = table.splitlines()
    assert lines[0].split() == ["GD", "ADMM", "ADAM"]
    row = next(line for line in lines if line.startswith("iterations to 99% test accuracy"))
    assert "3 [2-n.r.]" in row
    assert next(line for line in lines if line.startswith("status")).split()[1:] == [
        "max_iter", "x3", "interrupted", "x1", "not", "run"]
    json_ready = report.jsonable(agg)
    assert json_ready["gd"]["measures"]["iterations_to_accuracy_0.99"]["max"] is None  # inf -> null


def test_wilson_interval():
    lo, hi = report.wilson(199, 200)
    assert lo < 0.995 < hi and lo == pytest.approx(0.9722, abs=1e-4) and hi == pytest.approx(0.9991, abs=1e-4)
    lo, hi = report.wilson(200, 200)
    assert hi == 1.0 and lo == pytest.approx(0.9812, abs=1e-4)


def test_zero_output_loss_and_loss_format():
    y = np.array([0, 1, 1, 1])
    assert report.zero_output_loss("mse", y, 2) == 0.75
    assert report.zero_output_loss("hinge", y, 2) == 0.75
    assert report.zero_output_loss("mse", y, 10) == 1.0
    assert report.zero_output_loss("cross_entropy", y, 10) == pytest.approx(math.log(10))
    assert report.zero_output_loss("cross_entropy", y, 2) == pytest.approx(math.log(2))
    assert report.fmt_loss(0.0) == "0"  # hinge with every margin met, not 0.000e+00
    assert report.fmt_loss(1.5e-5) == "1.50e-05" and report.fmt_loss(0.25) == "0.2500"


def test_single_seed_table_has_the_wilson_row_and_values():
    r = fake_result([0.5, 0.995], [0.5, 0.2])
    runs = [report.summarize(r, targets=[0.99], loss_threshold=0.25, n_test=200, seed=0, label="gd")]
    table = report.format_table(report.aggregate(runs), {}, targets=[0.99], loss_name="hinge", loss_threshold=0.25,
                                n_test=200, n_seeds=1)
    assert "test accuracy (200 test images)" in table and "95% interval (Wilson)" in table
    assert next(line for line in table.splitlines() if line.startswith("test errors")).split()[-1] == "1"
    assert "[" not in table


def test_bands_over_seeds():
    h1 = {"iteration": [1, 2, 3], "elapsed": [1.0, 2.0, 3.0], "x": [1.0, 2.0, 3.0]}
    h2 = {"iteration": [1, 2], "elapsed": [0.5, 1.0], "x": [3.0, 5.0]}
    its, med, lo, hi = by_iteration([h1, h2], "x")
    assert its.tolist() == [1, 2, 3]
    assert med.tolist() == [2.0, 3.5, 3.0] and lo.tolist() == [1.0, 2.0, 3.0] and hi.tolist() == [3.0, 5.0, 3.0]
    t, med, lo, hi = by_time([h1, h2], "x", points=7)  # grid 0, 0.5, ..., 3
    assert t.tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert np.isnan(med[0])  # nobody evaluated yet
    assert med[1] == 3.0 and med[2] == 3.0  # h2 only at 0.5; at 1.0: h1 = 1, h2 = 5
    assert (lo[2], hi[2]) == (1.0, 5.0)
    assert med[4] == 3.5 and hi[6] == 5.0  # h2 ended at 1.0 and stays at its final value 5


def parsed(*argv):
    a = cli_args.build_parser().parse_args(list(argv))
    cli_args.check_args(a)
    return a


def test_defaults_follow_the_task():
    a = parsed()
    assert a.methods == ["admm", "gd"] and a.accuracy_targets == [0.99, 0.995] and a.seeds == [0]
    a = parsed("--classes", "all")
    assert a.methods == ["admm", "sgd", "adam"] and a.accuracy_targets == [0.90, 0.95, 0.97]
    a = parsed("--classes", "3", "5", "8", "--methods", "gd", "admm", "gd", "--seed", "4")
    assert a.methods == ["gd", "admm"] and a.accuracy_targets == [0.95, 0.98] and a.seeds == [4]
    assert parsed("--accuracy-target", "0.9").accuracy_targets == [0.9]  # the old singular option still works


@pytest.mark.parametrize("argv, message", [
    (["--seeds", "1", "1"], "each seed once"),
    (["--batch-size", "8"], "--batch-size applies to sgd and adam"),
    (["--epochs", "3"], "--epochs applies to sgd and adam"),
    (["--methods", "sgd", "--gd-iterations", "3"], "--gd-iterations applies to gd"),
    (["--seeds", "0", "1", "--resume", "x.npz"], "give one seed"),
    (["--methods", "gd", "--distributed"], "keep admm in --methods"),
])
def test_inconsistent_arguments(argv, message):
    with pytest.raises(cli_args.UsageError, match=message):
        parsed(*argv)


def test_to_argv():
    assert cli_args.to_argv({"seeds": [0, 1], "no_download": True, "quiet": False, "out": None, "hidden": (5,),
                             "loss": "mse"}) == ["--seeds", "0", "1", "--no-download", "--hidden", "5", "--loss", "mse"]


def test_fit_bytes_counts_the_big_arrays():
    from fastadmm import _memory

    sizes = [784, 100, 1]
    w = 100 * 785 + 1 * 101
    admm = _memory.fit_bytes("admm", 1000, 10, sizes, 8)
    assert admm == 8 * (w + 1000 * (2 * 101 + 1) + 2 * (784**2 + 100**2) + 10 * 784 * 2)
    gd = _memory.fit_bytes("gd", 1000, 10, sizes, 4)
    assert gd == 4 * (4 * w + 2 * 1000 * 101 + 10 * 784 * 2)
    assert _memory.fit_bytes("sgd", 1000, 10, sizes, 4, batch=10) < gd
    huge = _memory.fit_bytes("admm", 4839, 2115, [784, 100_000_000, 1], 8)
    assert huge > 2**50  # petabytes: refused before allocating
