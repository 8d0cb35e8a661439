"""kernels.columns (eight columns at a time as LLVM vectors) against plain NumPy, bit for
bit: bias and relu down the rows (NaN stays NaN, -0.0 stays -0.0), and column sums
over the rows in order, at offsets and row lengths past the columns used, in both
dtypes; nothing outside the block is written."""
import numba
import numpy as np
import pytest

from fastmlp.kernels.columns import add_bias_columns, sum_columns


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
