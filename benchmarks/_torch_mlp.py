"""The PyTorch twin of fastadmm's gradient baseline: same net, data, loss, initial weights, batches.

Net 784-100-50-10-1 (or ``hidden=``): ReLU hidden layers, linear output, a bias on the first layer only (fastadmm's
``intercept=True``), loss = mean over the batch of the squared error (``sgd.py``'s objective).
The initial weights are ``fastadmm.sgd._initial_weights`` drawn from ``default_rng(seed)`` exactly
as ``train_sgd(random_state=seed)`` draws them, and the minibatch permutations come from the same
generator afterwards, so torch SGD with momentum follows the compiled SGD's trajectory (to
rounding) and only the implementation differs.

Timed per iteration (GD step or epoch): the permutation, the gathers, zero_grad, forward,
backward and the optimizer step.  The evaluation (test accuracy, ``torch.no_grad``) is outside
the timed part, as in fastadmm's ``history["elapsed"]``.  ``history["wall"]`` is the other clock: the
seconds since the call began (tensors, weights, optimizer and every evaluation included), at each
evaluation; with ``stop_at`` the fit returns at the first test accuracy >= stop_at, as a user would.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from fastadmm import sgd

from _measure import RUN_INFO


def one_thread():
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or inter-op work already started
        pass
    RUN_INFO["torch_threads"] = {"intra": torch.get_num_threads(), "interop": torch.get_num_interop_threads()}


class TorchMLP:
    """Parameters [W_1, b_1, W_2, ..., W_L] as leaf tensors, from fastadmm-layout weights."""

    def __init__(self, weights, dtype):
        tdt = getattr(torch, np.dtype(dtype).name)
        first = np.asarray(weights[0])
        self.params = [torch.tensor(first[:, :-1], dtype=tdt, requires_grad=True),
                       torch.tensor(first[:, -1], dtype=tdt, requires_grad=True)]
        self.params += [torch.tensor(np.asarray(W), dtype=tdt, requires_grad=True) for W in weights[1:]]

    def __call__(self, X):
        W1, b1, *rest = self.params
        h = torch.addmm(b1, X, W1.t()).relu()
        for W in rest[:-1]:
            h = (h @ W.t()).relu()
        return h @ rest[-1].t()

    def weights(self):
        """fastadmm layout (bias as W_1's last column), as numpy arrays."""
        W1, b1, *rest = [p.detach().numpy() for p in self.params]
        return [np.concatenate([W1, b1[:, None]], axis=1), *rest]


def mse(out, T):
    return ((out - T) ** 2).sum(dim=1).mean()


def make_optimizer(method, params, lr, momentum):
    if method == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=momentum)


def initial(sizes, dtype, seed):
    """(generator, initial weights) exactly as train_sgd(random_state=seed) starts."""
    rng = np.random.default_rng(seed)
    return rng, sgd._initial_weights(rng, sizes, None, True, np.dtype(dtype))


def predicted(out):
    """Class index of each row: output > 0.5 for one output unit, else the argmax."""
    return (out[:, 0] > 0.5).long() if out.shape[1] == 1 else out.argmax(dim=1)


def fit(X, T, X_test, y_test, *, method, iterations, lr, momentum=0.0, batch_size=None, seed=0,
        hidden=(100, 50, 10), stop_at=None):
    """Train; returns history dict(iteration, elapsed, wall, test_accuracy) with elapsed = training
    seconds and wall = seconds since the call began (see the module docstring)."""
    t_call = time.perf_counter()
    one_thread()
    dtype = X.dtype
    sizes = [X.shape[1], *hidden, T.shape[1]]
    rng, weights = initial(sizes, dtype, seed)
    net = TorchMLP(weights, dtype)
    opt = make_optimizer(method, net.params, lr, momentum)
    Xt, Tt, Xte = torch.from_numpy(X), torch.from_numpy(T), torch.from_numpy(X_test)
    yte = torch.from_numpy(np.asarray(y_test, dtype=np.int64))
    n = X.shape[0]
    history = {"iteration": [], "elapsed": [], "wall": [], "test_accuracy": []}
    elapsed = 0.0
    for it in range(1, iterations + 1):
        t0 = time.perf_counter()
        if batch_size is None:
            opt.zero_grad(set_to_none=True)
            mse(net(Xt), Tt).backward()
            opt.step()
        else:
            order = torch.from_numpy(rng.permutation(n).astype(np.int64))
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                opt.zero_grad(set_to_none=True)
                mse(net(Xt[idx]), Tt[idx]).backward()
                opt.step()
        elapsed += time.perf_counter() - t0
        with torch.no_grad():
            acc = float((predicted(net(Xte)) == yte).double().mean())
        history["iteration"].append(it)
        history["elapsed"].append(elapsed)
        history["wall"].append(time.perf_counter() - t_call)
        history["test_accuracy"].append(acc)
        if stop_at is not None and acc >= stop_at:
            break
    return history
