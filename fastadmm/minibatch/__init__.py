"""Mini-batch ADMM, the step object of ``train_admm(..., batch_size=B)`` (docs/ALGORITHM.md, section 6),
split by job: ``step`` (the step object: weights, buffers, a batch's steps, state), ``schedule`` (the
epoch's batches), ``sweeps`` (the sweep orders), ``updates`` (the W- and a-updates, compiled or
NumPy, chosen once), ``refit`` (the exact output refit) and ``inputs`` (the kept columns, the
centring and the passes over X)."""

from .step import MiniBatchADMM

__all__ = ["MiniBatchADMM"]
