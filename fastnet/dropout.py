"""Dropout masks from a counter-based hash, the same on every target.

Whether a unit survives depends only on (seed, step, layer, index), never on
a generator's state: a run resumes bit for bit from a checkpoint, and the
CPU and the GPU draw identical masks, so their trajectories can be compared.
Compiled per target like ``activations`` (see ``backends._maths``).
"""
import math

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
TWO_24 = np.float32(16777216.0)  # 2^24: a unit keeps if its 24 random bits >= rate * 2^24


def splitmix64(x):
    """SplitMix64 finaliser (Steele, Lea & Flood 2014)."""
    x = x + GOLDEN
    x = (x ^ (x >> np.uint64(30))) * MIX1
    x = (x ^ (x >> np.uint64(27))) * MIX2
    return x ^ (x >> np.uint64(31))


def dropout_keeps(seed, step, layer, index, rate):
    """Whether unit ``index`` (row * width + column) of ``layer`` survives at ``step``."""
    key = splitmix64(np.uint64(seed) ^ splitmix64(np.uint64(step) * np.uint64(64)
                                                  + np.uint64(layer)))
    bits = splitmix64(key + np.uint64(index)) >> np.uint64(40)
    # bits / 2^24 >= rate, compared in integers: rate * 2^24 is exact in
    # float32, and no float64 enters a float32 kernel.
    return bits >= np.uint64(math.ceil(rate * TWO_24))
