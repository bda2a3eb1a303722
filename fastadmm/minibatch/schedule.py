"""The batches of an epoch: the rows reshuffled by the fit's stream, in equal batches of about
``batch_size`` rows (the remainder spread over them).

Over MPI the batches are global: every rank draws the same permutation of all ranks' rows (the
ranks' shards concatenated in rank order, as one process would hold them) and takes the rows of
each batch that it holds, so that K ranks visit the batches of one process with the same rows and
stream.  A rank may hold none of a batch's rows (it still takes part in the batch's W-updates).
"""

from __future__ import annotations

import numpy as np


class Schedule:
    """`n_rows`: every rank's rows together; `shards`: each rank's number of rows, in rank order
    (None for one process); `rank`: this rank."""

    def __init__(self, n_rows: int, batch_size: int, shards=None, rank: int = 0):
        self.n_rows = n_rows
        self.n_batches = max(1, n_rows // min(int(batch_size), n_rows))
        self.largest = -(-n_rows // self.n_batches)  # rows of the largest (global) batch
        self.starts = None if shards is None else np.cumsum([0, *shards]).astype(np.intp)
        self.rank = rank

    def epoch(self, rng):
        """(rows, counts) of each batch of one epoch, from one permutation drawn from `rng`: this
        rank's rows of the batch (indices into its own rows, in the permutation's order) and every
        rank's number of rows in it (None for one process)."""
        # int32 indices where they fit (half the memory of a permutation of a large set; the same
        # permutation and stream as rng.permutation(n_rows), shuffled in place without its copy)
        order = np.arange(self.n_rows, dtype=np.int32 if self.n_rows < 2**31 else np.intp)
        rng.shuffle(order)
        bounds = np.linspace(0, self.n_rows, self.n_batches + 1).astype(np.intp)
        for i in range(self.n_batches):
            rows = order[bounds[i] : bounds[i + 1]].astype(np.intp)
            if self.starts is None:
                yield rows, None
                continue
            owner = np.searchsorted(self.starts[1:], rows, side="right")
            counts = np.bincount(owner, minlength=self.starts.shape[0] - 1)
            yield rows[owner == self.rank] - self.starts[self.rank], counts
