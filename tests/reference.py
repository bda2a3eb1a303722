"""The slow, obvious twin of the elementwise kernels, for the tests.

Written straight from docs/ALGORITHM.md ("Closed forms"), one entry at a time with plain Python
floats (IEEE double), no NumPy arithmetic and no cleverness.  Also a brute-force 1-D minimiser that
knows nothing of the closed forms, only the objective.

Objectives (per entry; the paper's squared norms without 1/2):

* ReLU layer:  gamma*(a - relu(z))^2 + beta*(z - m)^2
* output:      loss(z, y) + lam*z + beta*(z - m)^2,  loss "mse" = (z - y)^2,
               loss "hinge" = max(1 - z, 0) if y = 1, max(z, 0) if y = 0
"""

from __future__ import annotations

import math

import numpy as np

MSE = 0
HINGE = 1


# ------------------------------------------------------------------------------------------------
# objectives (scalar, Python floats)
# ------------------------------------------------------------------------------------------------
def relu(z):
    return z if z > 0.0 else 0.0


def relu_objective(z, a, m, beta, gamma):
    """gamma*(a - relu(z))^2 + beta*(z - m)^2 for one entry."""
    return gamma * (a - relu(z)) ** 2 + beta * (z - m) ** 2


def loss_value(z, y, loss):
    """loss(z, y) for one entry; y is 0 or 1 for the hinge loss."""
    if loss == MSE:
        return (z - y) ** 2
    if y == 1:
        return max(1.0 - z, 0.0)
    return max(z, 0.0)


def output_objective(z, y, m, lam, beta, loss):
    """loss(z, y) + lam*z + beta*(z - m)^2 for one entry."""
    return loss_value(z, y, loss) + lam * z + beta * (z - m) ** 2


# ------------------------------------------------------------------------------------------------
# closed forms (scalar)
# ------------------------------------------------------------------------------------------------
def relu_candidates(a, m, beta, gamma):
    """(zp, zn): the minimiser over z >= 0 and over z <= 0."""
    zp = max(0.0, (gamma * a + beta * m) / (gamma + beta))
    zn = min(0.0, m)
    return zp, zn


def relu_z_one(a, m, beta, gamma):
    """argmin_z gamma*(a - relu(z))^2 + beta*(z - m)^2; ties go to zp."""
    zp, zn = relu_candidates(a, m, beta, gamma)
    fp = relu_objective(zp, a, m, beta, gamma)
    fn = relu_objective(zn, a, m, beta, gamma)
    if fp <= fn:
        return zp
    return zn


def output_z_one(y, m, lam, beta, loss):
    """argmin_z loss(z, y) + lam*z + beta*(z - m)^2."""
    if loss == MSE:
        return (y - lam / 2.0 + beta * m) / (1.0 + beta)
    t = m - lam / (2.0 * beta)
    if y == 1:
        return max(t, min(1.0, t + 1.0 / (2.0 * beta)))
    return min(t, max(0.0, t - 1.0 / (2.0 * beta)))


# ------------------------------------------------------------------------------------------------
# whole updates (lists in, Python floats out), mirroring the kernel contract
# ------------------------------------------------------------------------------------------------
def relu_z_update(a, m, beta, gamma):
    """Returns (z, hz, rz, ra): lists z and relu(z), sum (z - m)^2 and sum (a - relu(z))^2."""
    n = len(a)
    z = [0.0] * n
    hz = [0.0] * n
    rz = 0.0
    ra = 0.0
    for i in range(n):
        ai = float(a[i])
        mi = float(m[i])
        z[i] = relu_z_one(ai, mi, beta, gamma)
        hz[i] = relu(z[i])
        rz += (z[i] - mi) ** 2
        ra += (ai - hz[i]) ** 2
    return z, hz, rz, ra


def output_z_update(y, m, lam, beta, loss, lam_step):
    """Returns (z, lam_new, loss_sum, lam_dot_z, rz); lam_new = lam + beta*(z - m) if lam_step."""
    n = len(m)
    z = [0.0] * n
    lam_new = [0.0] * n
    loss_sum = 0.0
    lam_dot_z = 0.0
    rz = 0.0
    for i in range(n):
        yi = float(y[i])
        mi = float(m[i])
        li = float(lam[i])
        z[i] = output_z_one(yi, mi, li, beta, loss)
        loss_sum += loss_value(z[i], yi, loss)
        lam_dot_z += li * z[i]
        rz += (z[i] - mi) ** 2
        if lam_step:
            lam_new[i] = li + beta * (z[i] - mi)
        else:
            lam_new[i] = li
    return z, lam_new, loss_sum, lam_dot_z, rz


# ------------------------------------------------------------------------------------------------
# brute force
# ------------------------------------------------------------------------------------------------
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def relu_objective_vec(z, a, m, beta, gamma):
    """relu_objective at every point of the float64 array z (for the brute-force grids)."""
    return gamma * (a - np.maximum(z, 0.0)) ** 2 + beta * (z - m) ** 2


def output_objective_vec(z, y, m, lam, beta, loss):
    """output_objective at every point of the float64 array z (for the brute-force grids)."""
    if loss == MSE:
        lv = (z - y) ** 2
    elif y == 1:
        lv = np.maximum(1.0 - z, 0.0)
    else:
        lv = np.maximum(z, 0.0)
    return lv + lam * z + beta * (z - m) ** 2


def brute_grid(points, n_wide=4001, n_local=101):
    """The search grid of brute_minimise: sorted float64 points (see there)."""
    pts = [float(p) for p in points]
    lo, hi = min(pts), max(pts)
    width = max(hi - lo, 1.0, abs(lo), abs(hi))
    parts = [np.linspace(lo - width, hi + width, n_wide), np.array(pts)]
    for p in pts:
        for rel in (1e-1, 1e-2, 1e-3, 1e-4, 1e-6, 1e-8, 1e-10):
            h = rel * max(abs(p), width)
            parts.append(np.linspace(p - h, p + h, n_local))
    return np.unique(np.concatenate(parts))


def brute_minimise(f, points, n_golden=200):
    """Minimise a 1-D function by search, knowing nothing of its form; returns (z_best, f_best).

    `f` maps a float64 array of points to their values.  `points` are places worth looking at (the
    inputs, the kinks of the objective).  The search range is their span widened on both sides by
    the span itself (and by at least 1 and by the largest magnitude); f is evaluated on a uniform
    grid of 4001 points over that range and on fine grids (relative half-widths 1e-1 ... 1e-10)
    around each given point; the best grid point is then refined by golden-section search between
    its grid neighbours (f is smooth and convex between neighbouring grid points unless a kink
    falls between them, and the kinks are among the points).  Golden-section on a unimodal bracket
    converges to the bracket's minimiser, so the result is exact up to the rounding of f.
    """
    grid = brute_grid(points)
    values = f(grid)
    i = int(np.argmin(values))
    best_z, best_f = float(grid[i]), float(values[i])
    # the bracket: the nearest grid points on either side that are not (near-)copies of grid[i]
    tiny = 1e-13 * max(abs(best_z), 1e-300)
    left = float(grid[max(int(np.searchsorted(grid, best_z - tiny)) - 1, 0)])
    right = float(grid[min(int(np.searchsorted(grid, best_z + tiny, side="right")), len(grid) - 1)])

    def f1(z):
        return float(f(np.array([z]))[0])

    c = right - _GOLDEN * (right - left)
    d = left + _GOLDEN * (right - left)
    fc, fd = f1(c), f1(d)
    for _ in range(n_golden):
        if right - left <= 4e-16 * max(abs(left), abs(right)):
            break
        if fc < fd:
            right, d, fd = d, c, fc
            c = right - _GOLDEN * (right - left)
            fc = f1(c)
        else:
            left, c, fc = c, d, fd
            d = left + _GOLDEN * (right - left)
            fd = f1(d)
    for z, fz in ((c, fc), (d, fd)):
        if fz < best_f:
            best_z, best_f = z, fz
    return best_z, best_f


def relu_brute(a, m, beta, gamma):
    """Brute-force argmin of the ReLU-layer objective of one entry: (z, objective).

    Looks around a, m and the kink 0.
    """
    return brute_minimise(lambda z: relu_objective_vec(z, a, m, beta, gamma), [a, m, 0.0])


def output_brute(y, m, lam, beta, loss):
    """Brute-force argmin of the output objective of one entry: (z, objective).

    Looks around y, m, the kinks 0 and 1 and m - lam/(2 beta), the minimiser of the smooth part
    lam*z + beta*(z - m)^2 alone (the range must reach it when beta is tiny).
    """
    return brute_minimise(
        lambda z: output_objective_vec(z, y, m, lam, beta, loss), [y, m, 0.0, 1.0, m - lam / (2.0 * beta)]
    )


# ------------------------------------------------------------------------------------------------
# softmax cross-entropy output update (one sample = one row of K values)
#
#   f(z) = CE(z, y) + <lam, z> + beta ||z - m||^2,   CE(z, y) = logsumexp(z) - <y, z>
#
# The reference solves it by a route that shares nothing with the kernels' Newton method: at the
# minimiser, p - y + lam + 2 beta (z - m) = 0 with p = softmax(z) = exp(z - s), s = logsumexp(z).
# With c = 2 beta and t = m + (y - lam)/c this reads z = t - p/c, and w = p/c solves
# w exp(w) = exp(t - s)/c, i.e. w_k = omega(t_k - log c - s) with omega the Wright omega function
# (omega + log omega = x; scipy.special.wrightomega).  The one unknown s is the root of the
# decreasing function phi(s) = c sum_k omega(t_k - log c - s) - 1 (sum p = 1), bracketed by
# s_lo = max t - 1/c (phi >= 0: omega >= 1/c for the largest t) and s_hi = max t + log K - 1/(cK)
# (phi <= 0: every omega <= 1/(cK)), found by Brent's method.
# ------------------------------------------------------------------------------------------------
def logsumexp(z):
    """log(sum(exp(z))) of a list of floats, shifted by the maximum (no overflow)."""
    mx = max(z)
    return mx + math.log(math.fsum(math.exp(v - mx) for v in z))


def softmax_list(z):
    mx = max(z)
    e = [math.exp(v - mx) for v in z]
    s = math.fsum(e)
    return [v / s for v in e]


def cross_entropy(z, y):
    """logsumexp(z) - <y, z> for one sample, written stably: log(sum exp(z - mx)) - <y, z - mx> + mx (1 - sum y)."""
    mx = max(z)
    return (
        math.log(math.fsum(math.exp(v - mx) for v in z))
        - math.fsum(yk * (zk - mx) for yk, zk in zip(y, z))
        + mx * (1.0 - math.fsum(y))
    )


def softmax_objective(z, y, m, lam, beta):
    """CE(z, y) + <lam, z> + beta ||z - m||^2 for one sample (lists of floats)."""
    return (
        cross_entropy(z, y)
        + math.fsum(lk * zk for lk, zk in zip(lam, z))
        + beta * math.fsum((zk - mk) ** 2 for zk, mk in zip(z, m))
    )


def softmax_gradient(z, y, m, lam, beta):
    """The gradient p - y + lam + 2 beta (z - m) of softmax_objective (list of floats)."""
    p = softmax_list(z)
    return [pk - yk + lk + 2.0 * beta * (zk - mk) for pk, yk, lk, zk, mk in zip(p, y, lam, z, m)]


def softmax_z_one(y, m, lam, beta):
    """argmin_z softmax_objective (the Wright-omega route described above); a list of floats."""
    from scipy.optimize import brentq
    from scipy.special import wrightomega

    y, m, lam = ([float(v) for v in a] for a in (y, m, lam))
    K = len(m)
    c = 2.0 * beta
    t = [mk + (yk - lk) / c for mk, yk, lk in zip(m, y, lam)]
    lc = math.log(c)
    tmax = max(t)

    def phi(s):
        return c * math.fsum(float(wrightomega(tk - lc - s)) for tk in t) - 1.0

    lo = tmax - 1.0 / c - 1.0
    hi = tmax + math.log(K) - 1.0 / (c * K) + 1.0
    assert phi(lo) >= 0.0 >= phi(hi)
    s = brentq(phi, lo, hi, xtol=1e-300, rtol=4 * 2.0**-52, maxiter=2000)
    return [tk - float(wrightomega(tk - lc - s)) for tk in t]


def softmax_z_update(Y, M, lam, beta, lam_step):
    """Returns (Z, lam_new, loss_sum, lam_dot_z, rz) as lists of rows and Python floats; the sums
    are taken at Z as computed here (float64), lam_new = lam + beta (z - m) if lam_step."""
    Z, lam_new = [], []
    loss_sum = lam_dot_z = rz = 0.0
    for y, m, lm in zip(Y, M, lam):
        y, m, lm = ([float(v) for v in a] for a in (y, m, lm))
        z = softmax_z_one(y, m, lm, beta)
        Z.append(z)
        loss_sum += cross_entropy(z, y)
        lam_dot_z += math.fsum(a * b for a, b in zip(lm, z))
        rz += math.fsum((a - b) ** 2 for a, b in zip(z, m))
        lam_new.append([a + beta * (b - c) for a, b, c in zip(lm, z, m)] if lam_step else lm)
    return Z, lam_new, loss_sum, lam_dot_z, rz


def softmax_brute_k2(y, m, lam, beta):
    """Brute-force argmin for K = 2, knowing only the objective: (z, objective).

    With u = z1 + z2 and v = z1 - z2, logsumexp(z) = u/2 + logsumexp(v/2, -v/2) and the other terms
    are linear or quadratic in (u, v) with no cross term (||z - m||^2 = ((u - um)^2 + (v - vm)^2)/2),
    so f(z) = F(u) + G(v): each part is minimised on its own by brute_minimise (1-D search).
    """
    y1, y2 = float(y[0]), float(y[1])
    m1, m2 = float(m[0]), float(m[1])
    l1, l2 = float(lam[0]), float(lam[1])
    um, vm = m1 + m2, m1 - m2

    def F(u):  # the terms in u: u/2 - (y1 + y2) u/2 + (l1 + l2) u/2 + beta (u - um)^2 / 2
        return u / 2 - (y1 + y2) * u / 2 + (l1 + l2) * u / 2 + beta * (u - um) ** 2 / 2

    def G(v):  # lse(v/2, -v/2) - (y1 - y2) v/2 + (l1 - l2) v/2 + beta (v - vm)^2 / 2
        a = np.abs(v) / 2
        return a + np.log1p(np.exp(-2 * a)) - (y1 - y2) * v / 2 + (l1 - l2) * v / 2 + beta * (v - vm) ** 2 / 2

    c = 2.0 * beta
    u_pts = [um, um - (1 - y1 - y2 + l1 + l2) / c, 0.0]
    v_pts = [vm, 0.0] + [vm + (s - (l1 - l2) + (y1 - y2)) / c for s in (-1.0, 0.0, 1.0)]
    u, _ = brute_minimise(F, u_pts)
    v, _ = brute_minimise(G, v_pts)
    z = [(u + v) / 2, (u - v) / 2]
    return z, softmax_objective(z, [y1, y2], [m1, m2], [l1, l2], beta)
