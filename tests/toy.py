"""Small generated problems shared by the test modules."""

import numpy as np


def blobs(n=240, d=12, k=2, seed=0, spread=1.0):
    """k Gaussian clusters in d dimensions, labels 0..k-1 (a separable toy problem)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3.0, (k, d))
    y = rng.integers(0, k, n)
    X = centers[y] + spread * rng.normal(size=(n, d))
    return X, y
