"""Seconds per ADMM iteration, per SGD epoch (batch 64) and per GD step on MNIST 0/1, with the test accuracy
reached, float64 and float32.  Run: FASTADMM_BENCH_MNIST=~/mnist OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1
python benchmarks/seconds_per_iteration.py"""
import numpy as np, warnings
import fastadmm
from _data import mnist_split
warnings.simplefilter("ignore")
X, y, Xt, yt = mnist_split(classes=(0, 1))
for dt in (np.float64, np.float32):
    for batch_size in ("auto", None):  # the default mini-batch epoch, the full-batch sweep of Algorithm 1
        r = fastadmm.train_admm(X.astype(dt), y, max_iter=20, X_test=Xt.astype(dt), y_test=yt, random_state=0,
                                batch_size=batch_size)
        print("admm", r.settings["batch_size"], dt.__name__, "s/iter median",
              round(float(np.median(np.diff(r.history["elapsed"]))), 4), "acc", r.history["test_accuracy"][-1])
    s = fastadmm.train_sgd(X.astype(dt), y, batch_size=64, epochs=5, X_test=Xt.astype(dt), y_test=yt, random_state=0)
    print("sgd b64", dt.__name__, "s/epoch median", round(float(np.median(np.diff([0.0] + s.history["elapsed"]))), 4), "acc", s.history["test_accuracy"][-1])
    g = fastadmm.train_sgd(X.astype(dt), y, max_iter=20, X_test=Xt.astype(dt), y_test=yt, random_state=0)
    print("gd", dt.__name__, "s/step median", round(float(np.median(np.diff(g.history["elapsed"]))), 4), "acc", g.history["test_accuracy"][-1])
