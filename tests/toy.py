"""Small generated problems and a toy step object shared by the test modules."""

import numpy as np

from fastadmm import _step


def blobs(n=240, d=12, k=2, seed=0, spread=1.0):
    """k Gaussian clusters in d dimensions, labels 0..k-1 (a separable toy problem)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 3.0, (k, d))
    y = rng.integers(0, k, n)
    X = centers[y] + spread * rng.normal(size=(n, d))
    return X, y


class WeightListStep(_step.ForwardOutputs):
    """What a toy step object of the fit loop needs besides its sweep: weights kept as a list ``W`` (no
    left-out columns), no running metrics, and a state of its iteration count alone."""

    intercept = False

    def compact_weights(self):
        return list(self.W)

    def full_width(self, weights):
        return [W.copy() for W in weights]

    def running_counts(self):
        return 0.0, 0

    def to_state(self):
        return {"iteration": self.iteration}

    def from_state(self, state, weights):
        self.iteration, self.W = state["iteration"], list(weights)

    @staticmethod
    def check_state(state, weights):
        pass
