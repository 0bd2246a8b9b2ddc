"""Gradient check: the backprop gradient against central differences."""
import numpy as np


def gradcheck(net, X, y, params=None, eps=1e-5, max_params=None, seed=0):
    """Max relative error between ``loss_and_grad`` and central differences.

    The check runs on a float64 copy of the network, so that the finite
    differences are accurate; ``max_params`` checks a random subset of
    coordinates for large networks. The error of a coordinate is
    |g - g_fd| / max(|g| + |g_fd|, floor): relative, except for coordinates
    whose gradient is below the noise of the differences themselves, judged
    against ``floor``. That noise is the rounding of the loss, ~1e-16 |L|,
    divided by eps: floor = max(1e-7, 1e-4 |L|) keeps it below 1e-6. eps =
    1e-5 balances truncation (~eps^2) against rounding (~1e-16 / eps).
    """
    net64 = net.copy(dtype=np.float64)
    theta = net64._vector("params", params).astype(np.float64).copy()
    loss, grad = net64.loss_and_grad(X, y, params=theta)
    floor = max(1e-7, 1e-4 * abs(loss))
    index = np.arange(net.n_params)
    if max_params is not None and max_params < net.n_params:
        index = np.random.default_rng(seed).choice(net.n_params, max_params, replace=False)
    worst = 0.0
    for i in index:
        saved = theta[i]
        theta[i] = saved + eps
        up = net64.loss(X, y, params=theta)
        theta[i] = saved - eps
        down = net64.loss(X, y, params=theta)
        theta[i] = saved
        numeric = (up - down) / (2 * eps)
        error = abs(grad[i] - numeric) / max(abs(grad[i]) + abs(numeric), floor)
        worst = max(worst, error)
    return worst
