"""Newton steps of the softmax output update per sample (the figure in the comment of _kernel_api.SOFTMAX_MAX_ITER).

Run: NUMBA_NUM_THREADS=1 python benchmarks/softmax_newton_steps.py   (K = 2, 10, 100; beta 1e-8 .. 1e8; |m| up to 1e6)
"""
import numpy as np, time
from fastadmm._kernels_numba import _softmax_row
def run(Y, M, L, beta, tol=1e-10):
    N, K = M.shape
    z = np.empty(K); e = np.empty(K); d = np.empty(K); et = np.empty(K)
    its = np.empty(N, int); Z = np.empty((N, K))
    for i in range(N):
        its[i], _, _ = _softmax_row(Y[i], M[i], L[i], beta, 2*beta, tol, z, e, d, et)
        Z[i] = z
    return its, Z
rng = np.random.default_rng(0)
for K in (2, 10, 100):
  for beta in (1e-8, 1e-3, 0.1, 1, 10, 1e8):
    for mscale, lscale in ((1, 0), (3, 1), (1e6, 1), (1, 1e3), (0, 0)):
        N = 2000
        Y = np.eye(K)[rng.integers(0, K, N)]
        M = rng.standard_normal((N, K)) * mscale
        L = rng.standard_normal((N, K)) * lscale
        its, Z = run(Y, M, L, beta)
        P = np.exp(Z - Z.max(1, keepdims=True)); P /= P.sum(1, keepdims=True)
        G = P - Y + L + 2*beta*(Z - M)
        print(f"K={K} beta={beta:g} m~{mscale:g} lam~{lscale:g}: iters mean {its.mean():.2f} max {its.max()} fails(-1) {(its<0).sum()} cap {(its==100).sum()}  max|g| {np.abs(G).max():.2e}")
