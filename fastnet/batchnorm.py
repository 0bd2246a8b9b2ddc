"""Batch normalisation (Ioffe & Szegedy 2015) between dense layers.

A hidden layer with batch normalisation computes z = x W + b, then
y = gamma * (z - mean) / sqrt(var + eps) + beta, then its activation f(y).
Training normalises with the statistics of the batch and updates running
statistics as PyTorch's ``BatchNorm1d`` does (eps = 1e-5, momentum 0.1,
running variance unbiased, starting at mean 0 and variance 1).

Parameter layout: layer l stores W_l, b_l, then, if it normalises, gamma_l
(starting at 1) and beta_l (starting at 0), all in the one flat vector. The
running statistics are state, not parameters: ``Network.running_stats``
holds, for each normalising layer in order, its running mean then its
running variance.

Inference (predict, loss, score, population_loss, on every backend) uses
the running statistics, where batch normalisation is an affine map per unit;
``Layout.fold`` folds it exactly into the layer's weights,
W' = W * s and b' = (b - mean) * s + beta with s = gamma / sqrt(var + eps),
so that the plain network's kernels run unchanged.
"""
import numpy as np

from fastnet import updates
from fastnet.backends import cpu
from fastnet.engine import CpuEpochRunner

EPS = cpu.BN_EPS
MOMENTUM = 0.1


def check_batch_norm(batch_norm, n_hidden):
    """One flag per hidden layer, from True / False or a list of them."""
    if isinstance(batch_norm, (bool, np.bool_)):
        return (bool(batch_norm),) * n_hidden
    if not isinstance(batch_norm, (list, tuple)):
        raise TypeError(f"batch_norm must be True, False or a list of {n_hidden} of them (one "
                        f"per hidden layer), got {batch_norm!r}")
    if len(batch_norm) != n_hidden:
        raise ValueError(f"batch_norm must be True, False or a list of {n_hidden} of them (one "
                         f"per hidden layer), got {len(batch_norm)}: {batch_norm!r}")
    for i, flag in enumerate(batch_norm):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"batch_norm[{i}] must be True or False, got {flag!r}")
    return tuple(bool(flag) for flag in batch_norm)


def check_batch_rows(argument, rows):
    """ValueError for a training batch of one row: its variance is 0, so every
    normalised unit would be beta whatever the input (PyTorch refuses it too)."""
    if rows < 2:
        raise ValueError(f"{argument} has {rows} row; batch normalisation in training "
                         "needs batches of at least 2 samples (a batch's variance)")


class Layout:
    """Where each layer's W, b, gamma, beta lie in the flat vector, and the
    maps between a network with batch normalisation and its folded plain twin."""

    def __init__(self, sizes, batch_norm):
        self.sizes = tuple(sizes)
        self.batch_norm = tuple(batch_norm)
        self.flags = np.array(list(batch_norm) + [False], np.int64)   # per layer
        self.layers = []      # per layer: slices W, b, gamma, beta (None without BN)
        self.plain = []       # per layer: slices of W', b' in the folded vector
        offset = plain = 0
        for fan_in, fan_out, normalised in zip(sizes[:-1], sizes[1:], self.flags):
            weights = slice(offset, offset + fan_in * fan_out)
            bias = slice(weights.stop, weights.stop + fan_out)
            gamma = slice(bias.stop, bias.stop + fan_out) if normalised else None
            beta = slice(gamma.stop, gamma.stop + fan_out) if normalised else None
            self.layers.append((weights, bias, gamma, beta))
            offset = beta.stop if normalised else bias.stop
            self.plain.append((slice(plain, plain + fan_in * fan_out),
                               slice(plain + fan_in * fan_out, plain + (fan_in + 1) * fan_out)))
            plain += (fan_in + 1) * fan_out
        self.n_params = offset
        self.n_plain = plain
        self.n_stats = 2 * sum(w for w, on in zip(sizes[1:], self.flags) if on)

    @property
    def any(self):
        return any(self.batch_norm)

    def unflatten(self, vector):
        """Per layer (W, b), or (W, b, gamma, beta) where it normalises: views."""
        views = []
        for (weights, bias, gamma, beta), fan_in, fan_out in zip(
                self.layers, self.sizes[:-1], self.sizes[1:]):
            layer = (vector[weights].reshape(fan_in, fan_out), vector[bias])
            views.append(layer + ((vector[gamma], vector[beta]) if gamma else ()))
        return views

    def with_scales(self, plain_vector):
        """The full vector from a plain-layout one: gamma = 1, beta = 0 inserted."""
        full = np.zeros(self.n_params, plain_vector.dtype)
        for (weights, bias, gamma, _), (plain_w, plain_b) in zip(self.layers, self.plain):
            full[weights] = plain_vector[plain_w]
            full[bias] = plain_vector[plain_b]
            if gamma:
                full[gamma] = 1
        return full

    def initial_stats(self, dtype):
        """Running statistics before any training: mean 0, variance 1 (as PyTorch)."""
        stats = np.zeros(self.n_stats, dtype)
        for _, var in self.stats_views(stats):
            var[:] = 1
        return stats

    def stats_views(self, stats):
        """(running mean, running variance) views, one pair per normalising layer."""
        views, offset = [], 0
        for width, normalised in zip(self.sizes[1:], self.flags):
            if normalised:
                views.append((stats[offset:offset + width],
                              stats[offset + width:offset + 2 * width]))
                offset += 2 * width
        return views

    def _scales(self, stats):
        """Per normalising layer: (running mean, 1 / sqrt(running var + eps)), float64."""
        return [(mean.astype(np.float64), 1 / np.sqrt(var.astype(np.float64) + EPS))
                for mean, var in self.stats_views(stats)]

    def fold(self, thetas, stats):
        """Plain-layout rows equivalent, at inference, to each row of ``thetas``
        (P x n_params) with the running statistics ``stats``: one vectorised
        pass over the population, computed in float64."""
        P = thetas.shape[0]
        folded = np.empty((P, self.n_plain), np.float64)
        scales = iter(self._scales(stats))
        for (weights, bias, gamma, beta), (plain_w, plain_b), fan_in, fan_out in zip(
                self.layers, self.plain, self.sizes[:-1], self.sizes[1:]):
            W = thetas[:, weights].reshape(P, fan_in, fan_out)
            b = thetas[:, bias]
            if gamma:
                mean, inv_std = next(scales)
                s = thetas[:, gamma] * inv_std                    # (P, fan_out)
                W = W * s[:, None, :]
                b = (b - mean) * s + thetas[:, beta]
            folded[:, plain_w] = W.reshape(P, -1)
            folded[:, plain_b] = b
        return folded.astype(thetas.dtype)

    def unfold_gradient(self, params, plain_grad, stats):
        """The gradient w.r.t. ``params`` from the gradient w.r.t. the folded
        vector (the chain rule through ``fold``): g_W = g_W' s, g_b = g_b' s,
        g_gamma = (sum_i g_W'[i] W[i] + g_b' (b - mean)) / sqrt(var + eps),
        g_beta = g_b'."""
        grad = np.empty(self.n_params, np.float64)
        scales = iter(self._scales(stats))
        for (weights, bias, gamma, beta), (plain_w, plain_b), fan_in, fan_out in zip(
                self.layers, self.plain, self.sizes[:-1], self.sizes[1:]):
            g_W = plain_grad[plain_w].reshape(fan_in, fan_out).astype(np.float64)
            g_b = plain_grad[plain_b].astype(np.float64)
            if gamma:
                mean, inv_std = next(scales)
                W = params[weights].reshape(fan_in, fan_out)
                grad[gamma] = ((g_W * W).sum(0) + g_b * (params[bias] - mean)) * inv_std
                grad[beta] = g_b
                s = params[gamma] * inv_std
                g_W, g_b = g_W * s, g_b * s
            grad[weights] = g_W.ravel()
            grad[bias] = g_b
        return grad.astype(params.dtype)


class BatchNormRunner(CpuEpochRunner):
    """The CPU epoch runner for a network with batch normalisation: the same
    contract, on ``cpu.bn_fit_epoch`` / ``bn_fit_step``; the running
    statistics are trained in place in ``stats`` and are part of the
    snapshot (early stopping puts back the statistics that go with the best
    parameters) and of the checkpoint state."""

    def __init__(self, net, X, Y, batch_size, optimizer, dropout, seed):
        if len(X):
            last = len(X) % min(batch_size, len(X))
            if min(batch_size, len(X)) < 2 or last == 1:
                raise ValueError(
                    f"batch normalisation needs batches of at least 2 samples: "
                    f"{len(X)} training samples with batch_size={batch_size} make a batch of "
                    "1; choose another batch_size")
        self.layout_bn = net.layout
        self.stats = net.running_stats
        super().__init__(net.engine, net.params, X, Y, batch_size, optimizer, dropout, seed)
        self.layout = np.concatenate([self.layout, net.layout.flags])

    def _work_length(self, batch):
        units = self.engine.units
        return super()._work_length(batch) + batch * units + 3 * units

    def run_epoch(self, order, lr):
        self.hyper[updates.H_LR] = lr
        loss, correct, finite = cpu.bn_fit_epoch(self.params, self.stats, self.work,
                                                 self.layout, self.hyper, self.X, self.Y,
                                                 order, MOMENTUM)
        return float(loss), int(correct), bool(finite)

    def step(self, X, Y, lr):
        check_batch_rows("the batch X", X.shape[0])
        self._grow(X.shape[0])
        self.hyper[updates.H_LR] = lr
        return cpu.bn_fit_step(self.params, self.stats, self.work, self.layout, self.hyper,
                               X, Y, MOMENTUM)

    def state(self):
        return {**super().state(), "running_stats": self.stats.copy()}

    def load_state(self, state):
        stats = np.asarray(state["running_stats"])
        if stats.shape != self.stats.shape or stats.dtype.kind != "f":
            raise ValueError(f"state['running_stats'] must be a float vector of shape "
                             f"{self.stats.shape}, got {stats.dtype} {stats.shape}")
        super().load_state(state)
        self.stats[:] = stats

    def snapshot(self):
        """Parameters and running statistics, in one vector."""
        return np.concatenate([self.params, self.stats])

    def restore(self, snapshot):
        self.params[:] = snapshot[:self.params.size]
        self.stats[:] = snapshot[self.params.size:]

    def evaluate(self, X, Y):
        folded = self.layout_bn.fold(self.params[None], self.stats)[0]
        return self.engine.loss(folded, X, Y), self.engine.forward(folded, X)
