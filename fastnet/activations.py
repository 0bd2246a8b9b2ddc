"""Activations: each one's function and derivative side by side.

The per-element mathematics is written once, as plain Python, and compiled
for every target by the backends (``njit(inline="always")`` for the CPU,
``cuda.jit(device=True)`` for the GPU). Activations are small integer ids so
that one compiled kernel serves every network.

Constants are float32 scalars: in a float32 kernel they keep the arithmetic
in float32 (a Python float literal would promote it to float64), and in a
float64 kernel they promote exactly, since 0, 0.5, 1 are representable.

``step`` (the Heaviside unit of the perceptron) has a zero derivative almost
everywhere, so backprop through it learns nothing. Its ``derivative`` is a
*surrogate*: the fast-sigmoid derivative 1 / (1 + |z|)^2 of SuperSpike
(F. Zenke and S. Ganguli, "SuperSpike: supervised learning in multilayer
spiking neural networks", Neural Computation 30(6):1514-1541, 2018, eq. 3
with beta = 1), the derivative of z / (1 + |z|), a smooth stand-in for the step. A
finite-difference gradient check cannot pass for such an activation: it is
listed in ``SURROGATE_ACTIVATIONS``, which gradient tests leave out.
"""
import math

import numpy as np

IDENTITY, SIGMOID, TANH, RELU, LEAKY_RELU, ELU, SOFTPLUS, SOFTMAX, STEP = range(9)

#: name -> id; softmax is only valid on the output layer (it is not elementwise).
ACTIVATIONS = {
    "identity": IDENTITY,
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "relu": RELU,
    "leaky_relu": LEAKY_RELU,
    "elu": ELU,
    "softplus": SOFTPLUS,
    "softmax": SOFTMAX,
    "step": STEP,
}
ALIASES = {"linear": "identity", "logistic": "sigmoid", "heaviside": "step"}
HIDDEN_ACTIVATIONS = tuple(name for name in ACTIVATIONS if name != "softmax")
#: activations whose ``derivative`` is a surrogate, not f' (no gradient check holds)
SURROGATE_ACTIVATIONS = ("step",)

ZERO = np.float32(0.0)
ONE = np.float32(1.0)
# PyTorch's default negative_slope, 0.01, applied as a division by 100: 100
# is exact in float32, so a float64 kernel computes z / 100 exactly rounded,
# where a float32 constant 0.01 would be 0.0099999998 there.
LEAKY_DIVISOR = np.float32(100.0)
ELU_ALPHA = ONE                 # PyTorch's default alpha


def exp_nonpositive(x):
    """exp(x) where x <= 0 (the stable forms below and the softmax's
    exponentials after subtracting the maximum). The CPU backend compiles a
    vectorisable version instead (``fastnet.backends.fast_exp``)."""
    return math.exp(x)


def tanh(x):
    """tanh(x). The CPU backend compiles a vectorisable version for float32
    (``fastnet.backends.fast_exp``), as for ``expm1`` and ``log1p_nonnegative``."""
    return math.tanh(x)


def expm1(x):
    """e^x - 1 without cancellation near 0."""
    return math.expm1(x)


def log1p_nonnegative(x):
    """log(1 + x) where x >= 0 (softplus, and the losses' logarithms)."""
    return math.log1p(x)


def sigmoid(z):
    """1 / (1 + e^-z) from e = e^-|z|, which never overflows; one expression
    for both signs, so that a loop over it vectorises."""
    e = exp_nonpositive(-abs(z))
    return (ONE if z >= ZERO else e) / (ONE + e)


# Each activation's derivative takes z and a = f(z), and uses whichever is cheaper.
def sigmoid_derivative(z, a):
    return a * (ONE - a)


def tanh_derivative(z, a):
    return ONE - a * a


def relu(z):
    return ZERO if z <= ZERO else z  # so that NaN passes through, as in PyTorch


def relu_derivative(z, a):
    return ONE if z > ZERO else ZERO


def leaky_relu(z):
    return z if z > ZERO else z / LEAKY_DIVISOR


def leaky_relu_derivative(z, a):
    # (1 + 0 * z) carries z's dtype, so the slope is 0.01 rounded in that dtype
    return ONE if z > ZERO else (ONE + ZERO * z) / LEAKY_DIVISOR


def elu(z):
    return z if z > ZERO else ELU_ALPHA * expm1(z)


def elu_derivative(z, a):
    return ONE if z > ZERO else a + ELU_ALPHA


def softplus(z):
    """log(1 + e^z) = max(z, 0) + log1p(e^-|z|), stable for any z."""
    return (z if z > ZERO else ZERO) + log1p_nonnegative(exp_nonpositive(-abs(z)))


def softplus_derivative(z, a):
    return sigmoid(z)


def heaviside(z):
    if z > ZERO:
        return ONE
    return ZERO if z <= ZERO else z  # so that NaN passes through


def heaviside_derivative(z, a):
    """The surrogate: the fast sigmoid's derivative (Zenke and Ganguli 2018), not 0."""
    near = ONE + abs(z)
    return ONE / (near * near)


def activate(z, kind):
    """f(z) for one element."""
    if kind == SIGMOID:
        return sigmoid(z)
    if kind == TANH:
        return tanh(z)
    if kind == RELU:
        return relu(z)
    if kind == LEAKY_RELU:
        return leaky_relu(z)
    if kind == ELU:
        return elu(z)
    if kind == SOFTPLUS:
        return softplus(z)
    if kind == STEP:
        return heaviside(z)
    return z


def derivative(z, a, kind):
    """f'(z) for one element, given z and a = f(z)."""
    if kind == SIGMOID:
        return sigmoid_derivative(z, a)
    if kind == TANH:
        return tanh_derivative(z, a)
    if kind == RELU:
        return relu_derivative(z, a)
    if kind == LEAKY_RELU:
        return leaky_relu_derivative(z, a)
    if kind == ELU:
        return elu_derivative(z, a)
    if kind == SOFTPLUS:
        return softplus_derivative(z, a)
    if kind == STEP:
        return heaviside_derivative(z, a)
    return ONE


# One loop per activation, each calling that activation's own function: the
# compiler then vectorises it, which a loop that dispatches on ``kind`` per
# element defeats (measured: population evaluation 1.6x faster with ReLU
# hidden layers). The CPU inlines these small functions; called instead as
# ``activate(z, RELU)``, each constant kind was a separate compilation of
# ``activate`` (0.1 s each in a cold start), and softplus' was left a call
# per element, which made its population evaluation 4x slower (33 against
# 7.8 ms, 64-32-10 on digits, P = 50).
def activate_row(z, a, kind):
    """a[j] = f(z[j]) over one row."""
    if kind == SIGMOID:
        for j in range(z.size):
            a[j] = sigmoid(z[j])
    elif kind == TANH:
        for j in range(z.size):
            a[j] = tanh(z[j])
    elif kind == RELU:
        for j in range(z.size):
            a[j] = relu(z[j])
    elif kind == LEAKY_RELU:
        for j in range(z.size):
            a[j] = leaky_relu(z[j])
    elif kind == ELU:
        for j in range(z.size):
            a[j] = elu(z[j])
    elif kind == SOFTPLUS:
        for j in range(z.size):
            a[j] = softplus(z[j])
    elif kind == STEP:
        for j in range(z.size):
            a[j] = heaviside(z[j])
    else:
        for j in range(z.size):
            a[j] = z[j]


# Unsigned positions: with signed ones, Numba's code for negative indices
# (j + size when j < 0) stayed in these loops inside ``backward_rows``, which
# LLVM then left scalar (measured: ReLU's loop one element at a time; the
# backward pass of 64-128-128-10 on 64 rows 73.5 -> 71.2-72.6 us).
def scale_by_derivative_row(d, z, a, kind):
    """d[j] *= f'(z[j]) over one row."""
    positions = np.uint64(z.size)
    if kind == SIGMOID:
        for j in range(positions):
            d[j] *= sigmoid_derivative(z[j], a[j])
    elif kind == TANH:
        for j in range(positions):
            d[j] *= tanh_derivative(z[j], a[j])
    elif kind == RELU:
        for j in range(positions):
            d[j] *= relu_derivative(z[j], a[j])
    elif kind == LEAKY_RELU:
        for j in range(positions):
            d[j] *= leaky_relu_derivative(z[j], a[j])
    elif kind == ELU:
        for j in range(positions):
            d[j] *= elu_derivative(z[j], a[j])
    elif kind == SOFTPLUS:
        for j in range(positions):
            d[j] *= softplus_derivative(z[j], a[j])
    elif kind == STEP:
        for j in range(positions):
            d[j] *= heaviside_derivative(z[j], a[j])
