"""kernels.columns (eight columns at a time as LLVM vectors) against plain NumPy, bit for
bit: bias and relu down the rows (NaN stays NaN, -0.0 stays -0.0), and column sums
over the rows in order, at offsets and row lengths past the columns used, in both
dtypes; nothing outside the block is written. A row's dot products with W's columns
against the scalar loop they replace, compiled with the kernels' options (fastmath's
contract fuses its multiply-adds), and against NumPy to rounding."""
import numba
import numpy as np
import pytest

from fastmlp.kernels._config import OPTIONS
from fastmlp.kernels.columns import add_bias_columns, dot_columns, sum_columns


@numba.njit
def _add_bias(Z, z_off, z_ld, params, b_off, rows, eight, relu):
    add_bias_columns(Z, z_off, z_ld, params, b_off, rows, eight, relu)


@numba.njit
def _sum(grads, g_off, D, d_off, d_ld, rows, eight):
    sum_columns(grads, g_off, D, d_off, d_ld, rows, eight)


def _block(buffer, offset, rows, cols, ld):
    return np.lib.stride_tricks.as_strided(buffer[offset:], (rows, cols),
                                           (ld * buffer.itemsize, buffer.itemsize))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("relu", [False, True])
def test_add_bias_columns_is_numpys_bias_and_relu(dtype, relu):
    rng = np.random.default_rng(0)
    for rows, eight, extra, z_off, b_off in ((1, 8, 0, 0, 0), (32, 32, 3, 5, 2), (7, 16, 9, 1, 7),
                                             (5, 0, 2, 3, 0), (64, 56, 1, 0, 4)):
        z_ld = eight + extra
        Z = rng.standard_normal(z_off + rows * z_ld + 3).astype(dtype)
        Z[z_off::7] = np.nan
        Z[z_off::z_ld] = -0.0  # column 0 of each row: with its bias -0.0, -0.0 + -0.0
        Z[z_off + 1::11] = -0.0
        params = rng.standard_normal(b_off + eight + 2).astype(dtype)
        if eight:
            params[b_off], params[b_off + 1] = -0.0, 0.0  # (-0.0 + 0.0 is 0.0)
        expected = Z.copy()
        block = _block(expected, z_off, rows, eight, z_ld)
        value = block + params[b_off:b_off + eight]
        block[...] = np.where(value < 0, dtype(0), value) if relu else value
        _add_bias(Z, z_off, z_ld, params, b_off, rows, eight, relu)
        assert np.array_equal(Z.view(np.uint8), expected.view(np.uint8)), (rows, eight)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sum_columns_sums_the_rows_in_order(dtype):
    rng = np.random.default_rng(1)
    for rows, eight, extra, d_off, g_off in ((1, 8, 0, 0, 0), (32, 32, 3, 5, 2), (300, 16, 9, 1, 7),
                                             (5, 0, 2, 3, 1), (64, 56, 1, 0, 4)):
        d_ld = eight + extra
        D = (rng.standard_normal(d_off + rows * d_ld) * 10.0 ** rng.integers(-6, 7)).astype(dtype)
        grads = rng.standard_normal(g_off + eight + 3).astype(dtype)
        expected = grads.copy()
        total = np.zeros(eight, dtype)
        for row in _block(D, d_off, rows, eight, d_ld):  # the rows in order, as the kernels
            total = total + row
        expected[g_off:g_off + eight] = total
        _sum(grads, g_off, D, d_off, d_ld, rows, eight)
        assert np.array_equal(grads.view(np.uint8), expected.view(np.uint8)), (rows, eight)


@numba.njit
def _dot(Z, z, A, a, params, w_off, n_in, n_out, eight):
    dot_columns(Z, z, A, a, params, w_off, n_in, n_out, eight)


@numba.njit(**OPTIONS)
def _dot_scalar(Z, z, A, a, params, w_off, n_in, n_out, eight):
    for j in range(eight):
        s = Z.dtype.type(0)
        for k in range(n_in):
            s += A[a + k] * params[w_off + k * n_out + j]
        Z[z + j] = s


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dot_columns_is_the_scalar_loop_it_replaces(dtype):
    rng = np.random.default_rng(2)
    for n_in, n_out, eight, z, a, w_off in ((13, 8, 8, 0, 0, 0), (64, 32, 32, 3, 5, 7),
                                            (5, 17, 16, 1, 2, 3), (1, 8, 8, 0, 0, 1),
                                            (9, 3, 0, 2, 0, 0)):
        A = rng.standard_normal(a + n_in + 2).astype(dtype)
        params = rng.standard_normal(w_off + n_in * n_out + 2).astype(dtype)
        Z, expected = (np.full(z + n_out + 2, np.nan, dtype) for _ in range(2))
        _dot(Z, z, A, a, params, w_off, n_in, n_out, eight)
        _dot_scalar(expected, z, A, a, params, w_off, n_in, n_out, eight)
        assert np.array_equal(Z, expected, equal_nan=True), (n_in, n_out, eight)
        W = params[w_off:w_off + n_in * n_out].reshape(n_in, n_out)[:, :eight]
        exact = A[a:a + n_in].astype(np.float64) @ W.astype(np.float64)
        tol = 1e-5 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(Z[z:z + eight], exact, rtol=tol, atol=tol)
