"""Weight initialisers. Biases start at zero.

xavier/glorot: Glorot & Bengio 2010, Var(W) = 2 / (fan_in + fan_out).
he/kaiming:    He et al. 2015,       Var(W) = 2 / fan_in (for ReLU-like units).
lecun:         LeCun et al. 1998,    Var(W) = 1 / fan_in.
standard:      U(-1/sqrt(fan_in), 1/sqrt(fan_in)), Var(W) = 1 / (3 fan_in): the
               "commonly used heuristic" of Glorot & Bengio 2010, eq. (1), and
               PyTorch's nn.Linear default; too small for deep sigmoid networks
               (their gradients vanish), kept to show it.
A uniform U(-a, a) has variance a^2 / 3, hence the sqrt(3 Var) bounds.
"""
import math

import numpy as np


def _variance(scheme, fan_in, fan_out):
    if scheme == "xavier":
        return 2.0 / (fan_in + fan_out)
    if scheme == "he":
        return 2.0 / fan_in
    if scheme == "standard":
        return 1.0 / (3.0 * fan_in)
    return 1.0 / fan_in


def _draw(scheme, distribution):
    def draw(rng, fan_in, fan_out):
        std = math.sqrt(_variance(scheme, fan_in, fan_out))
        if distribution == "normal":
            return rng.normal(0.0, std, size=(fan_in, fan_out))
        bound = math.sqrt(3.0) * std
        return rng.uniform(-bound, bound, size=(fan_in, fan_out))
    draw.__name__ = f"{scheme}_{distribution}"
    return draw


INITIALIZERS = {f"{scheme}_{dist}": _draw(scheme, dist)
                for scheme in ("xavier", "he", "lecun") for dist in ("uniform", "normal")}
INITIALIZERS["standard_uniform"] = _draw("standard", "uniform")
ALIASES = {"glorot_uniform": "xavier_uniform", "glorot_normal": "xavier_normal",
           "kaiming_uniform": "he_uniform", "kaiming_normal": "he_normal",
           "xavier": "xavier_uniform", "glorot": "xavier_uniform", "he": "he_normal",
           "kaiming": "he_normal", "lecun": "lecun_normal", "standard": "standard_uniform"}

#: the sensible default for a layer, by its activation
DEFAULT_FOR_ACTIVATION = {"relu": "he_normal", "leaky_relu": "he_normal", "elu": "he_normal"}


def default_init(activation):
    return DEFAULT_FOR_ACTIVATION.get(activation, "xavier_uniform")


def initialize(sizes, inits, rng, dtype):
    """A flat parameter vector with each layer's W drawn by its initialiser, b = 0."""
    blocks = []
    for fan_in, fan_out, name in zip(sizes[:-1], sizes[1:], inits):
        blocks.append(INITIALIZERS[name](rng, fan_in, fan_out).ravel())
        blocks.append(np.zeros(fan_out))
    return np.ascontiguousarray(np.concatenate(blocks), dtype=dtype)
