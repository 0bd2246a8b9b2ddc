"""Optimiser update rules for one element, shared by every target.

PyTorch's rules (see ``optim``): clip by value, then L2 decay added to the
gradient or decoupled decay (AdamW), then SGD (momentum, Nesterov), RMSprop
or Adam. Plain Python, compiled per target by ``backends._maths``; each
backend's driver loops over the flat vector and handles the global-norm
clipping coefficient and Adam's bias corrections, which depend on the step.
"""
import math

import numpy as np

SGD, RMSPROP, ADAM = range(3)
#: indices into the ``hyper`` vector of settings (in a training run the
#: dropout rate of each hidden layer follows at N_HYPER + l)
(H_MOMENTUM, H_NESTEROV, H_BETA1, H_BETA2, H_EPS, H_WEIGHT_DECAY,
 H_DECOUPLED, H_CLIP_NORM, H_CLIP_VALUE, H_ALPHA, H_LR, N_HYPER) = range(12)

ZERO = np.float32(0.0)
ONE = np.float32(1.0)


def update_rules(hyper, lr, step_size, sqrt_bias2):
    """The settings ``updated`` needs, as a tuple of scalars read once per
    step: read from ``hyper`` inside the loop instead, they would be loaded
    again for every element (the compiler cannot prove that the parameters
    do not alias them), which stops vectorisation (measured 5x slower)."""
    return (lr, hyper[H_CLIP_VALUE], hyper[H_WEIGHT_DECAY], hyper[H_DECOUPLED],
            hyper[H_MOMENTUM], hyper[H_NESTEROV], hyper[H_ALPHA], hyper[H_BETA1],
            hyper[H_BETA2], hyper[H_EPS], step_size, sqrt_bias2)


def updated(p, g, m, v, kind, rules):
    """(p, m, v) after one step on one element, with ``rules`` from ``update_rules``.

    ``step_size`` and ``sqrt_bias2`` are Adam's bias corrections
    lr / (1 - beta1^t) and sqrt(1 - beta2^t) (lr and 1 for the others).
    """
    (lr, clip_value, decay, decoupled, momentum, nesterov, alpha, beta1, beta2, eps,
     step_size, sqrt_bias2) = rules
    if clip_value > ZERO:
        g = min(max(g, -clip_value), clip_value)
    if decoupled > ZERO:
        p = p * (ONE - lr * decay)
    else:
        g = g + decay * p
    if kind == SGD:
        if momentum > ZERO:
            m = momentum * m + g
            g = g + momentum * m if nesterov > ZERO else m
        p = p - lr * g
    elif kind == RMSPROP:
        v = alpha * v + (ONE - alpha) * g * g
        p = p - lr * g / (math.sqrt(v) + eps)
    elif kind == ADAM:
        m = beta1 * m + (ONE - beta1) * g
        v = beta2 * v + (ONE - beta2) * g * g
        p = p - step_size * m / (math.sqrt(v) / sqrt_bias2 + eps)
    return p, m, v
