"""Small fits of every ADMM code path with fixed seeds, for bitwise comparisons across refactors.

``python tests/bitwise_cases.py record PATH`` writes their weights and training losses to PATH (.npz);
``python tests/bitwise_cases.py compare PATH`` runs them again and lists every array that is not
bitwise equal to PATH's.  BLAS results depend on the machine and its thread count, so a recording is
compared on the machine (and environment) that made it: a refactor's check, not a test of the suite."""

from __future__ import annotations

import sys

import numpy as np


def _data(n_classes, n=90, d=7, seed=0, zero_column=True):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    if zero_column:
        X[:, 2] = 0.0  # a left-out (all-zero) feature: the kept-column paths run
    y = (np.arange(n) % n_classes)
    X[:, 0] += y
    return X, y


CASES = {
    "mb3_default": dict(classes=3, kw=dict()),
    "mb2_default": dict(classes=2, kw=dict()),
    "mb3_layerwise": dict(classes=3, kw=dict(sweep_order="layerwise")),
    "mb3_targets_first": dict(classes=3, kw=dict(sweep_order="targets_first")),
    "mb3_residual_gram": dict(classes=3, kw=dict(sweep_order="residual", prox_metric="gram")),
    "mb3_gram_dense": dict(classes=3, dense=True, kw=dict(prox_metric="gram")),
    "mb3_targets_gram": dict(classes=3, kw=dict(sweep_order="targets_first", prox_metric="gram")),
    "mb3_nocenter": dict(classes=3, kw=dict(center_inputs=False)),
    "mb3_center_refit": dict(classes=3, kw=dict(center_inputs=True, output_refit=1e-2)),
    "mb2_refit_center": dict(classes=2, kw=dict(output_refit=1e-3, center_inputs=True)),
    "mb3_hinge": dict(classes=3, kw=dict(loss="hinge")),
    "mb3_ce": dict(classes=3, kw=dict(loss="cross_entropy")),
    "mb3_f64": dict(classes=3, kw=dict(dtype="float64")),
    "mb3_f64_gram": dict(classes=3, kw=dict(dtype="float64", prox_metric="gram")),
    "mb3_numpy": dict(classes=3, kw=dict(backend="numpy")),
    "mb3_numpy_f64_layerwise": dict(classes=3, kw=dict(backend="numpy", dtype="float64", sweep_order="layerwise")),
    "mb3_linear": dict(classes=3, kw=dict(hidden=())),
    "mb3_linear_refit": dict(classes=3, kw=dict(hidden=(), output_refit=1e-2)),
    "mb3_growth": dict(classes=3, kw=dict(penalty_growth=1.5, penalty_every=2)),
    "mb3_full_metrics": dict(classes=3, kw=dict(train_metrics="full")),
    "mb3_noskip": dict(classes=3, kw=dict(skip_zero_inputs=False)),
    "fb3": dict(classes=3, kw=dict(batch_size=None)),
    "fb2": dict(classes=2, kw=dict(batch_size=None)),
    "fb3_f32": dict(classes=3, kw=dict(batch_size=None, dtype="float32")),
    "fb3_hinge": dict(classes=3, kw=dict(batch_size=None, loss="hinge")),
    "fb3_ce": dict(classes=3, kw=dict(batch_size=None, loss="cross_entropy")),
    "fb3_gaussian": dict(classes=3, kw=dict(batch_size=None, initialization="gaussian")),
    "fb3_growth": dict(classes=3, kw=dict(batch_size=None, penalty_growth=1.5, penalty_every=2)),
    "fb3_nointercept": dict(classes=3, kw=dict(batch_size=None, intercept=False)),
}


def run_case(name):
    from fastadmm import train_admm

    case = CASES[name]
    kw = dict(hidden=(6, 5), max_iter=4, random_state=3, tol=0.0)
    kw.update(case["kw"])
    X, y = _data(case["classes"], zero_column=not case.get("dense", False))
    res = train_admm(X, y, X_test=X[:20], y_test=y[:20], **kw)
    return res


RESUMED = ("mb3_default", "mb3_gram_dense", "mb3_nocenter", "mb3_ce", "fb3", "mb3_linear_refit")


def run_resumed(name, folder):
    """The case's fit for 2 iterations, saved, loaded and resumed for 2 more."""
    import fastadmm
    from fastadmm import train_admm

    case = CASES[name]
    kw = dict(hidden=(6, 5), max_iter=2, random_state=3, tol=0.0)
    kw.update(case["kw"])
    X, y = _data(case["classes"], zero_column=not case.get("dense", False))
    first = train_admm(X, y, X_test=X[:20], y_test=y[:20], **kw)
    back = fastadmm.load(first.save(f"{folder}/{name}.npz"))
    kw.pop("random_state")
    return train_admm(X, y, X_test=X[:20], y_test=y[:20], init=back, **kw)


def flatten(res):
    """The Result's weights, history losses and state arrays as named arrays."""
    out = {f"W{i}": W for i, W in enumerate(res.weights)}
    out["train_loss"] = np.asarray(res.history["train_loss"], dtype=np.float64)
    out["objective"] = np.asarray(res.history["objective"], dtype=np.float64)
    return out


def all_arrays(folder):
    arrays = {}
    for name in CASES:
        for key, value in flatten(run_case(name)).items():
            arrays[f"{name}/{key}"] = value
    for name in RESUMED:
        for key, value in flatten(run_resumed(name, folder)).items():
            arrays[f"{name}+resumed/{key}"] = value
    return arrays


def record(path):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        np.savez(path, **all_arrays(folder))


def compare(path):
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        now = all_arrays(folder)
    with np.load(path) as before:
        keys = set(before.files) | set(now)
        differ = sorted(k for k in keys if k not in now or k not in before.files
                        or not np.array_equal(before[k], now[k], equal_nan=True))
    print(f"{len(keys) - len(differ)} of {len(keys)} arrays bitwise equal")
    for key in differ:
        print("differs:", key)
    return not differ


if __name__ == "__main__":
    if sys.argv[1] == "record":
        record(sys.argv[2])
    elif not compare(sys.argv[2]):
        sys.exit(1)
