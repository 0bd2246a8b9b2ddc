"""The CPU kernels' direct BLAS products and buffer views against NumPy."""
import numpy as np
import pytest
from numba import njit

from fastnet.backends.blas import gemm_nn, gemm_nt, gemm_tn, gemm_tn_add
from fastnet.backends.views import contiguous_view


@njit(_nrt=False)  # as the training kernels are compiled
def products(A, B, C, nn, tn, nt):
    gemm_nn(A, B, nn)
    gemm_tn(A, C, tn)
    gemm_nt(A, A, nt)


@njit(_nrt=False)
def accumulate(A, B, out, alpha, beta):
    gemm_tn_add(A, B, out, alpha, beta)


@njit
def block(buffer, start, rows, cols):
    return contiguous_view(buffer, start, (rows, cols))


@njit(_nrt=False)
def scale_block(buffer, start, rows, cols, factor):
    view = contiguous_view(buffer, start, (rows, cols))
    for i in range(rows):
        for j in range(cols):
            view[i, j] *= factor * (i + 1)


@pytest.mark.parametrize("dtype,tolerance", [(np.float32, 1e-5), (np.float64, 1e-13)])
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (4, 2, 8), (3, 7, 1), (1, 5, 9), (33, 17, 10),
                                   (64, 128, 130)])
def test_products_match_numpy(dtype, tolerance, m, k, n):
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    A = rng.standard_normal((m, k)).astype(dtype)
    B = rng.standard_normal((k, n)).astype(dtype)
    C = rng.standard_normal((m, n)).astype(dtype)
    # filled with NaN: BLAS must overwrite them, not add to them (beta = 0)
    nn, tn, nt = (np.full(shape, np.nan, dtype) for shape in [(m, n), (k, n), (m, m)])
    products(A, B, C, nn, tn, nt)
    exact = [A.astype(np.float64) @ B, A.T.astype(np.float64) @ C, A.astype(np.float64) @ A.T]
    for got, want in zip((nn, tn, nt), exact):
        assert got.dtype == dtype
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance * k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_accumulating_product_scales_both_terms(dtype):
    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((6, 4)).astype(dtype), rng.standard_normal((6, 3)).astype(dtype)
    out = rng.standard_normal((4, 3)).astype(dtype)
    expected = -0.25 * (A.T.astype(np.float64) @ B) + 0.5 * out
    accumulate(A, B, out, -0.25, 0.5)
    np.testing.assert_allclose(out, expected, rtol=1e-5 if dtype == np.float32 else 1e-13)


def test_products_read_views_inside_a_buffer():
    rng = np.random.default_rng(0)
    buffer = rng.standard_normal(200).astype(np.float32)
    out = np.empty((3, 4), np.float32)
    A = block(buffer, 7, 3, 5)
    B = block(buffer, 50, 5, 4)
    products(A, B, np.empty((3, 4), np.float32), out, np.empty((5, 4), np.float32),
             np.empty((3, 3), np.float32))
    np.testing.assert_allclose(out, buffer[7:22].reshape(3, 5) @ buffer[50:70].reshape(5, 4),
                               rtol=1e-6)


def test_view_is_the_reshaped_slice_and_shares_memory():
    buffer = np.arange(30, dtype=np.float64)
    view = block(buffer, 4, 3, 5)
    assert view.shape == (3, 5) and view.flags.c_contiguous
    np.testing.assert_array_equal(view, buffer[4:19].reshape(3, 5))
    scale_block(buffer, 4, 3, 5, 2.0)
    expected = np.arange(30, dtype=np.float64)
    expected[4:19] *= np.repeat([2.0, 4.0, 6.0], 5)
    np.testing.assert_array_equal(buffer, expected)


def test_view_keeps_its_buffer_alive():
    view = block(np.arange(12, dtype=np.float32), 2, 2, 5)
    np.testing.assert_array_equal(view, np.arange(2, 12, dtype=np.float32).reshape(2, 5))
