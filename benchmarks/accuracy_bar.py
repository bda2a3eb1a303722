"""The core accuracy bar: defaults, 784-100-50-10-1, MNIST 0/1, mse and hinge, seeds 0-2, float64 and float32.

Run: OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python benchmarks/accuracy_bar.py [out.json]
(the MNIST IDX folder is named by FASTADMM_BENCH_MNIST)."""
import json, sys, warnings
import numpy as np
import fastadmm
from _data import mnist_split
warnings.simplefilter("ignore")
Xtr, ytr, Xte, yte = mnist_split(classes=(0, 1))
print(Xtr.shape, Xte.shape)
rows = []
for dtype in (np.float64, np.float32):
    for loss in ("mse", "hinge"):
        for seed in (0, 1, 2):
            r = fastadmm.train_admm(Xtr.astype(dtype), ytr, loss=loss, max_iter=20, X_test=Xte.astype(dtype), y_test=yte, random_state=seed)
            acc = np.array(r.history["test_accuracy"]); el = np.array(r.history["elapsed"])
            first = int(np.argmax(acc >= 0.99)) + 1 if (acc >= 0.99).any() else None
            spi = float(np.median(np.diff(el)))
            rows.append(dict(dtype=np.dtype(dtype).name, loss=loss, seed=seed, first99=first, sec_to99=None if first is None else float(el[first-1]),
                             acc20=float(acc[-1]), s_per_iter=spi, compile=r.timings.get("compile")))
            print(rows[-1], flush=True)
json.dump(rows, open(sys.argv[1] if len(sys.argv) > 1 else "accuracy_bar.json", "w"), indent=1)
