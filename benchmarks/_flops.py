"""The one FLOP model of the benchmarks: what an ADMM sweep and the yardstick matmuls cost.

Used by the pytest suite (``test_bench_iteration.py``: GFLOP/s of a sweep against a same-run matmul)
and by the scripts (``mpi_scaling.py`` and its ``_scaling_model.py``: GFLOP/s per rank, the GEMM
calibration, the cluster projection).  The count is analytic, from Algorithm 1: the same
whatever the implementation does (the driver leaves all-zero input pixels out, for one; pass the
kept width as ``sizes[0]`` to count what it multiplies).
"""

from __future__ import annotations

from typing import Sequence

# The MNIST-shaped net of every benchmark: 784-100-50-10-1.
N_PIXELS = 784
HIDDEN = (100, 50, 10)


def mlp_sizes(n_features: int = N_PIXELS, hidden: Sequence[int] = HIDDEN, n_out: int = 1) -> list[int]:
    """[n_0, n_1, ..., n_L] of the benchmark net (n_0 = input features as the sweep sees them)."""
    return [n_features, *hidden, n_out]


def admm_sweep_flops(sizes: Sequence[int], n: int) -> float:
    """FLOPs of one ADMM sweep (one iteration of Algorithm 1) over n samples, 2 per multiply-add.

    sizes = [n_0, n_1, ..., n_L].  Per layer l: 2 n_l n_{l-1} N for W a (z-update) and again for
    z a^T (W-update), plus n_{l-1}^2 N for the Gram a a^T (one triangle, syrk) except the input's,
    which is formed once per fit; per hidden layer l < L: 2 n_l n_{l+1} N for W^T z and 2 n_l^2 N
    for the a-update's two triangular solves.  1.86 GFLOP for 784-100-50-10-1 at N = 4,839.
    """
    L = len(sizes) - 1
    per_sample = 0
    for l in range(1, L + 1):
        per_sample += 2 * 2 * sizes[l] * sizes[l - 1]
        if l > 1:
            per_sample += sizes[l - 1] ** 2
        if l < L:
            per_sample += 2 * sizes[l] * sizes[l + 1] + 2 * sizes[l] ** 2
    return float(per_sample) * n


def matmul_flops(m: int, k: int, n: int) -> float:
    """FLOPs of an (m x k) @ (k x n) product, 2 per multiply-add."""
    return 2.0 * m * k * n
