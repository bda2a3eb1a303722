"""The batches of an epoch: the rows reshuffled by the fit's stream, in equal batches of about
``batch_size`` rows (the remainder spread over them)."""

from __future__ import annotations

import numpy as np


class Schedule:
    def __init__(self, n_rows: int, batch_size: int):
        self.n_rows = n_rows
        self.n_batches = max(1, n_rows // min(int(batch_size), n_rows))
        self.largest = -(-n_rows // self.n_batches)  # rows of the largest batch

    def epoch(self, rng):
        """The row indices of each batch of one epoch, from one permutation drawn from `rng`."""
        order = rng.permutation(self.n_rows)
        bounds = np.linspace(0, self.n_rows, self.n_batches + 1).astype(np.intp)
        for i in range(self.n_batches):
            yield order[bounds[i] : bounds[i + 1]]
