"""The NumPy backend: vectorised twins of the compiled kernels (same names, same arguments).

Kernel contract (shared by ``_kernels.pyx`` and ``_kernels_numba.py``):

* every array argument is 1-D, C-contiguous, of one floating dtype (float32 or float64), and all
  have the same length; scalars are Python floats; nothing is validated here (the caller does);
* outputs are written into the ``*_out`` arrays; ``z_out`` may be the same array as ``m``
  (each entry is read before it is written);
* sums are accumulated and returned in float64.

``relu_z_update(a, m, beta, gamma, z_out, hz_out) -> (rz, ra)``
    For each entry, z = argmin_z gamma*(a - relu(z))^2 + beta*(z - m)^2 (ALGORITHM.md):
    candidates zp = max(0, (gamma*a + beta*m)/(gamma + beta)) and zn = min(0, m); zp is kept when
    its objective is <= that of zn (ties go to zp).  Writes z to z_out and relu(z) to hz_out.
    Returns rz = sum (z - m)^2 and ra = sum (a - relu(z))^2, so the layer's objective term is
    gamma*ra + beta*rz.

``output_z_update(y, m, lam, beta, loss, lam_step, z_out) -> (loss_sum, lam_dot_z, rz)``
    z = argmin_z loss(z, y) + lam*z + beta*(z - m)^2 entrywise, loss 0 = squared error (z - y)^2,
    1 = hinge for 0/1 targets.  Then, when lam_step is true, lam += beta*(z - m) in place.
    Returns loss_sum = sum loss(z, y), lam_dot_z = sum lam_old*z and rz = sum (z - m)^2.
"""

from __future__ import annotations

import numpy as np

MSE = 0
HINGE = 1


def relu_z_update(a, m, beta, gamma, z_out, hz_out):
    dt = m.dtype.type
    beta, gamma = dt(beta), dt(gamma)
    zp = np.maximum((gamma * a + beta * m) / (gamma + beta), dt(0))
    zn = np.minimum(m, dt(0))
    fp = gamma * (a - zp) ** 2 + beta * (zp - m) ** 2
    fn = gamma * a**2 + beta * (zn - m) ** 2
    keep_p = fp <= fn
    rz = np.where(keep_p, zp - m, zn - m)
    z_out[...] = np.where(keep_p, zp, zn)
    hz_out[...] = np.where(keep_p, zp, dt(0))
    ra = a - hz_out
    return float(np.dot(rz.astype(np.float64), rz)), float(np.dot(ra.astype(np.float64), ra))


def _output_z(y, m, lam, beta, loss):
    dt = m.dtype.type
    beta = dt(beta)
    if loss == MSE:
        return (y - lam / dt(2) + beta * m) / (dt(1) + beta)
    t = m - lam / (dt(2) * beta)
    s = dt(1) / (dt(2) * beta)
    return np.where(
        y > dt(0.5),
        np.maximum(t, np.minimum(dt(1), t + s)),
        np.minimum(t, np.maximum(dt(0), t - s)),
    )


def _loss_values(z, y, loss):
    if loss == MSE:
        return (z - y) ** 2
    return np.where(y > 0.5, np.maximum(1 - z, 0), np.maximum(z, 0))


def output_z_update(y, m, lam, beta, loss, lam_step, z_out):
    z = _output_z(y, m, lam, beta, loss)
    r = (z - m).astype(np.float64)
    loss_sum = float(_loss_values(z.astype(np.float64), y.astype(np.float64), loss).sum())
    lam_dot_z = float(np.dot(lam.astype(np.float64), z.astype(np.float64)))
    if lam_step:
        lam += (m.dtype.type(beta) * (z - m)).astype(lam.dtype)
    z_out[...] = z
    return loss_sum, lam_dot_z, float(np.dot(r, r))
