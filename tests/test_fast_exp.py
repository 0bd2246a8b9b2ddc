"""The CPU kernels' vectorisable exp, tanh, expm1 and log1p against NumPy's,
and the population kernel's chunking."""
import math

import numpy as np
import pytest
from numba import njit

from fastnet import engine
from fastnet.backends.cpu import FASTMATH
from fastnet.backends.fast_exp import (vectorisable_exp, vectorisable_expm1, vectorisable_log1p,
                                       vectorisable_tanh)


@njit(fastmath=FASTMATH)  # the kernels' flags, 'reassoc' included
def exp_all(x, out):
    for i in range(x.size):
        out[i] = vectorisable_exp(x[i])


@pytest.mark.parametrize("dtype,lowest,tolerance", [(np.float32, -87.0, 3e-7),
                                                    (np.float64, -708.0, 4e-16)])
def test_relative_error_over_the_whole_range(dtype, lowest, tolerance):
    x = np.concatenate([np.linspace(lowest, 0.0, 200_001), -np.logspace(-30, 0, 1001)])
    x = x.astype(dtype)
    out = np.empty_like(x)
    exp_all(x, out)
    exact = np.exp(x.astype(np.float64))
    assert out.dtype == dtype
    assert np.max(np.abs(out - exact) / exact) < tolerance


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(dtype):
    x = np.array([0.0, -0.0, -np.inf, np.nan, -1000.0], dtype)
    out = np.empty_like(x)
    exp_all(x, out)
    assert out[0] == 1.0 and out[1] == 1.0
    assert out[2] == 0.0 and np.isnan(out[3]) and out[4] == 0.0


def elementwise(function):
    """A compiled loop out[i] = function(x[i]), with the kernels' flags."""
    @njit(fastmath=FASTMATH)
    def apply(x, out):
        for i in range(x.size):
            out[i] = function(x[i])
    return apply


TANH, EXPM1, LOG1P = (elementwise(f) for f in (vectorisable_tanh, vectorisable_expm1,
                                               vectorisable_log1p))
MAGNITUDES = np.logspace(-45, 1.5, 200_001)
#: (compiled loop, NumPy's function, the C library's, float32 arguments tested)
FUNCTIONS = {
    "tanh": (TANH, np.tanh, math.tanh,
             [np.linspace(-20.0, 20.0, 400_001), MAGNITUDES, -MAGNITUDES,
              [0.0, 4.0e-4, -4.0e-4, 2.0 ** -12, 9.0, 1e30, -1e30]]),
    # x <= 0 (ELU's negative side), across the series / e^x - 1 switch at 2^-9
    "expm1": (EXPM1, np.expm1, math.expm1,
              [np.linspace(-100.0, 0.0, 400_001), -MAGNITUDES, [-2.0 ** -9, -np.inf]]),
    # x >= 0, up to float32's largest
    "log1p": (LOG1P, np.log1p, math.log1p,
              [np.logspace(-45, 38, 400_001), np.linspace(0.0, 20.0, 400_001),
               [0.0, 1e-7, 3e-8, 1.0, 3.4e38]]),
}
#: (argument, expected) pairs, the same in float32 and float64
SPECIAL_VALUES = {
    "tanh": [(np.inf, 1.0), (-np.inf, -1.0), (np.nan, np.nan), (0.0, 0.0)],
    "expm1": [(-np.inf, -1.0), (np.nan, np.nan), (0.0, 0.0)],
    "log1p": [(np.inf, np.inf), (np.nan, np.nan), (0.0, 0.0)],
}


@pytest.mark.parametrize("name", FUNCTIONS)
def test_float32_results_are_numpys_rounded(name):
    compiled, numpy_function, _, pieces = FUNCTIONS[name]
    x = np.concatenate(pieces).astype(np.float32)
    out = np.empty_like(x)
    compiled(x, out)
    np.testing.assert_array_equal(out, numpy_function(x.astype(np.float64)).astype(np.float32))


@pytest.mark.parametrize("name", FUNCTIONS)
def test_float64_results_are_the_c_librarys(name):
    compiled, _, library_function, pieces = FUNCTIONS[name]
    x = np.random.default_rng(0).choice(np.concatenate(pieces[:2]), 10_000).astype(np.float64)
    out = np.empty_like(x)
    compiled(x, out)
    np.testing.assert_array_equal(out, [library_function(value) for value in x])


@pytest.mark.parametrize("name", SPECIAL_VALUES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values_of_tanh_expm1_log1p(name, dtype):
    x, expected = np.array(SPECIAL_VALUES[name], dtype).T
    out = np.empty_like(x)
    FUNCTIONS[name][0](x, out)
    assert out.dtype == dtype
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("n_rows,threads", [(1797, 2), (1797, 1), (1797, 16), (60_000, 2),
                                            (5, 2), (1, 4), (384, 2), (385, 2)])
def test_population_chunks_are_balanced(n_rows, threads):
    n_chunks = engine.balanced_chunks(n_rows, threads)
    longest = -(-n_rows // n_chunks)
    assert 1 <= longest <= engine.POPULATION_CHUNK_ROWS
    assert n_chunks % threads == 0 or n_chunks == n_rows < threads * 2


def test_population_loss_cut_in_uneven_chunks_matches_one_member_at_a_time():
    """1797 rows in 10 chunks of 179 or 180 rows: every row counted once."""
    import fastnet
    rng = np.random.default_rng(5)
    net = fastnet.Network([16, 24, 5], activation="relu", output="softmax", dtype=np.float64)
    X, y = rng.standard_normal((1797, 16)), rng.integers(0, 5, 1797)
    thetas = net.params + 0.3 * rng.standard_normal((40, net.n_params))
    expected = [net.loss(X, y, params=theta) for theta in thetas]
    assert engine.balanced_chunks(1797, 2) == 10
    np.testing.assert_allclose(net.population_loss(thetas, X, y), expected, rtol=1e-12)
