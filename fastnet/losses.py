"""Losses, each paired with the output activation it is computed from.

Conventions follow PyTorch's defaults so that results can be compared:

* ``mse``: mean over all elements of (yhat - y)^2; any elementwise output.
* ``bce``: binary cross-entropy with a sigmoid output, mean over all elements,
  computed from the pre-activation z: max(z, 0) - z*y + log(1 + e^-|z|).
* ``cross_entropy``: softmax cross-entropy, mean over samples, computed with
  the log-sum-exp trick; targets are one-hot rows (or class probabilities).

For the canonical pairs the gradient with respect to z is fused with the
output activation: dL/dz = (a - y) / n, which never divides by a or 1 - a.

Like ``activations``, these are plain Python functions compiled per target.
"""
import numpy as np

from fastnet.activations import (ONE, SOFTMAX, ZERO, activate_row, derivative, exp_nonpositive,
                                 log1p_nonnegative)

MSE, BCE, CROSS_ENTROPY = range(3)

LOSSES = {"mse": MSE, "bce": BCE, "cross_entropy": CROSS_ENTROPY}
ALIASES = {"binary_cross_entropy": "bce", "ce": "cross_entropy", "nll": "cross_entropy"}
#: the output activation each loss is fused with (mse accepts any elementwise one)
CANONICAL_OUTPUT = {"mse": "identity", "bce": "sigmoid", "cross_entropy": "softmax"}
TWO = np.float32(2.0)
HALF = np.float32(0.5)


def denominator(n_rows, n_out, loss):
    """What the summed loss is divided by: samples for cross-entropy, elements otherwise."""
    return n_rows if loss == CROSS_ENTROPY else n_rows * n_out


def row_max(z):
    top = z[0]
    for j in range(1, z.size):
        if z[j] > top:
            top = z[j]
    return top


def softmax_row(z, a):
    """a = softmax(z) for one row, shifted by max(z) so that exp never overflows."""
    top = row_max(z)
    total = ZERO
    for j in range(z.size):
        a[j] = exp_nonpositive(z[j] - top)
        total += a[j]
    for j in range(z.size):
        a[j] = a[j] / total


def output_activate(z, a, kind):
    """a = f(z) for one output row."""
    if kind == SOFTMAX:
        softmax_row(z, a)
    else:
        activate_row(z, a, kind)


def row_loss(z, a, y, loss):
    """Summed loss of one row (divide by ``denominator`` for the mean)."""
    total = ZERO
    if loss == CROSS_ENTROPY:
        # -sum_j y_j log softmax(z)_j = sum_j y_j (top - z_j) + sum(y) log(s), with
        # top = max z and s = sum_j e^(z_j - top) = ties + r: log1p(r + ties - 1)
        # keeps a loss near 0 to its last digits, where 1 + r in float32 would
        # round away most of an r near 1e-6 (float64 is slow on GPUs).
        top = row_max(z)
        others = ZERO
        ties = ZERO
        sum_y = ZERO
        for j in range(z.size):
            if z[j] < top:
                others += exp_nonpositive(z[j] - top)
            else:
                ties += ONE
            sum_y += y[j]
            total += y[j] * (top - z[j])
        total += log1p_nonnegative(others + (ties - ONE)) * sum_y
    elif loss == BCE:
        for j in range(z.size):
            zj = z[j]
            total += ((zj if zj > ZERO else ZERO) - zj * y[j]
                      + log1p_nonnegative(exp_nonpositive(-abs(zj))))
    else:
        for j in range(z.size):
            diff = a[j] - y[j]
            total += diff * diff
    return total


def softmax_row_loss(z, a, y):
    """``row_loss`` for cross-entropy when a = softmax(z) is already known:
    its r is sum_{z_j < top} a_j / max(a), one logarithm per row instead of
    an exponential per class."""
    top = row_max(z)
    largest = row_max(a)
    others = ZERO
    ties = ZERO
    sum_y = ZERO
    total = ZERO
    for j in range(z.size):
        if z[j] < top:
            others += a[j]
        else:
            ties += ONE
        sum_y += y[j]
        total += y[j] * (top - z[j])
    return total + log1p_nonnegative(others / largest + (ties - ONE)) * sum_y


def row_delta(z, a, y, loss, kind, scale, d):
    """d = scale * dL/dz for one row (scale = 1 / denominator)."""
    if loss == CROSS_ENTROPY:
        sum_y = ZERO
        for j in range(z.size):
            sum_y += y[j]
        for j in range(z.size):
            d[j] = (a[j] * sum_y - y[j]) * scale
    elif loss == BCE:
        for j in range(z.size):
            d[j] = (a[j] - y[j]) * scale
    else:
        for j in range(z.size):
            d[j] = TWO * (a[j] - y[j]) * derivative(z[j], a[j], kind) * scale


def row_correct(a, y, loss):
    """Correct predictions in one output row: cross_entropy, 1 when the first
    maxima of output and target coincide; bce, the outputs on the same side
    of 0.5 as their targets; mse, 0."""
    if loss == CROSS_ENTROPY:
        best_a, best_y = 0, 0
        for j in range(1, a.size):
            if a[j] > a[best_a]:
                best_a = j
            if y[j] > y[best_y]:
                best_y = j
        return 1 if best_a == best_y else 0
    hits = 0
    if loss == BCE:
        for j in range(a.size):
            if (a[j] > HALF) == (y[j] > HALF):
                hits += 1
    return hits
