"""The population kernel's blocked cross-entropy against NumPy."""
import numpy as np
import pytest
from numba import njit

from fastnet.backends import cpu
from fastnet.losses import CROSS_ENTROPY


@njit(fastmath=cpu.FASTMATH, error_model="numpy", _nrt=False)  # as in the kernels
def blocked(Z, Y):
    return cpu.cross_entropy_rows(Z, Y)


@njit(fastmath=cpu.FASTMATH, error_model="numpy", _nrt=False)
def row_by_row(Z, Y):
    total = 0.0
    for i in range(Z.shape[0]):
        total += cpu.row_loss(Z[i], Z[i], Y[i], CROSS_ENTROPY)
    return total


def reference(Z, Y):
    Z, Y = Z.astype(np.float64), Y.astype(np.float64)
    top = Z.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(Z - top).sum(axis=1))
    return float((Y * (top - Z)).sum() + (Y.sum(axis=1) * log_sum).sum())


@pytest.mark.parametrize("dtype,tolerance", [(np.float32, 2e-6), (np.float64, 1e-13)])
@pytest.mark.parametrize("rows,classes", [(37, 10), (16, 2), (5, 3), (48, 32), (40, 33)])
def test_blocked_cross_entropy_matches_numpy(dtype, tolerance, rows, classes):
    rng = np.random.default_rng(rows * classes)
    Z = (rng.standard_normal((rows, classes)) * 4).astype(dtype)
    Z[1] = 0.5                         # every class tied for the maximum
    Z[2, : classes // 2 + 1] = Z[2].max()  # several tied
    Z[3] *= 1000                        # a confident row: the loss is near 0 or large
    Y = rng.dirichlet(np.ones(classes), rows).astype(dtype)   # soft labels
    Y[::3] = np.eye(classes, dtype=dtype)[rng.integers(0, classes, len(Y[::3]))]
    got = blocked(Z, Y)
    assert got == pytest.approx(reference(Z, Y), rel=tolerance)
    assert got == pytest.approx(row_by_row(Z, Y), rel=tolerance)


def test_blocked_cross_entropy_keeps_a_tiny_loss():
    # one row far ahead: the loss is about e^-20, which 1 + r would round away
    Z = np.zeros((32, 10), np.float32)
    Z[:, 3] = 20.0
    Y = np.zeros((32, 10), np.float32)
    Y[:, 3] = 1.0
    assert blocked(Z, Y) == pytest.approx(32 * 9 * np.exp(-20.0), rel=1e-5)


def test_blocked_cross_entropy_propagates_nan():
    Z = np.zeros((16, 4), np.float32)
    Z[7, 2] = np.nan
    assert np.isnan(blocked(Z, np.full((16, 4), 0.25, np.float32)))
