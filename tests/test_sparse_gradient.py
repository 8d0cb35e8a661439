"""kernels.sparse_gradient (the products of a relu layer's values that skip their zeros)
against a scalar loop that sums every term in order, compiled with the kernels' own
options (so its multiply-adds fuse as the kernel's do): the same bits, as a zero term
adds nothing to a sum. Shapes cross the kernel's chunks of A's columns (whole, short
and shorter than two vectors), its blocks of rows, its groups of outputs (partial, and
more than one), offsets, row lengths, alpha and beta (beta = 0 never reads C), and a
range of C's rows; nothing outside that range is written, and nothing past an
operand's end is read. Then through a model: a relu layer large enough to take the
kernels, against the NumPy twin."""
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

import fastmlp
import fastmlp.reference
from conftest import GUARD_PAGES
from fastmlp.kernels import dense
from fastmlp.kernels._config import OPTIONS, SPARSE_MIN_MACS
from fastmlp.kernels.sparse_gradient import (GROUP, SB, chunk_columns, masks_fit, sparse_gradient,
                                             sparse_product, sparse_product_at)

MODES = ["gradient", "product", "product_at"]  # the kernels, by the name the tests give them


@numba.njit
def sparse(mode, A, a_off, a_ld, G, g_off, g_ld, C, c_off, ldc, i_start, i_stop, rows, n, alpha,
           beta):
    if mode == "gradient":
        sparse_gradient(A, a_off, a_ld, G, g_off, g_ld, C, c_off, ldc, i_start, i_stop, rows, n,
                        alpha, beta)
    elif mode == "product":
        sparse_product(A, a_off, a_ld, G, g_off, g_ld, C, c_off, ldc, i_start, i_stop, rows, n,
                       alpha, beta)
    else:
        sparse_product_at(A, a_off, a_ld, G, g_off, g_ld, C, c_off, ldc, i_start, i_stop, rows, n,
                          alpha, beta)


@numba.njit(**OPTIONS)
def every_term(mode, A, a_off, a_ld, G, g_off, g_ld, C, c_off, ldc, i_start, i_stop, rows, n,
               alpha, beta):
    """The oracle: each sum over all rows in order, zero terms included; then
    alpha sum + beta C with beta C rounded first (as OpenBLAS's dgemm: C scaled by beta,
    then alpha sum added in one fused multiply-add)."""
    transposed, a_step, s_step = mode == "gradient", 1, a_ld  # A[s, i] at a_off + s s_step + i
    if mode == "product_at":  # A.T stored: A[s, i] at a_off + i a_ld + s
        a_step, s_step = a_ld, 1
    for i in range(i_start, i_stop):
        for j in range(n):
            total = A.dtype.type(0)
            for s in range(rows):
                total += A[a_off + s * s_step + i * a_step] * G[g_off + j * g_ld + s]
            p = c_off + i * ldc + j if transposed else c_off + j * ldc + i
            if beta != 0:
                C[p] *= beta  # (a statement of its own: not fused into the next line)
                C[p] = alpha * total + C[p]
            else:
                C[p] = alpha * total


def case(rng, dtype, mode, rows, fan_in, n, density):
    """(arguments, C's length) for a random product: G (n, rows) with zeros at random."""
    transposed, a_rows, a_cols = mode == "gradient", rows, fan_in
    if mode == "product_at":
        a_rows, a_cols = fan_in, rows
    a_ld, g_ld = a_cols + int(rng.integers(0, 3)), rows + int(rng.integers(0, 3))
    ldc = (n if transposed else fan_in) + int(rng.integers(0, 3))
    a_off, g_off, c_off = (int(v) for v in rng.integers(0, 4, 3))
    A = rng.standard_normal(a_off + a_rows * a_ld).astype(dtype)
    G = np.ones(g_off + n * g_ld)
    G[g_off:].reshape(n, g_ld)[:, :rows] = (rng.standard_normal((n, rows))
                                            * (rng.random((n, rows)) < density))
    G = G.astype(dtype)
    i_start = int(rng.integers(0, fan_in))
    i_stop = int(rng.integers(i_start + 1, fan_in + 1))
    alpha = float(rng.choice([1.0, -0.3]))
    beta = float(rng.choice([0.0, 1.0, 0.7]))
    size = c_off + (fan_in if transposed else n) * ldc
    return (A, a_off, a_ld, G, g_off, g_ld, c_off, ldc, i_start, i_stop, alpha, beta), size


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("mode", MODES)
def test_the_sparse_kernels_have_the_bits_of_the_sum_over_every_term(mode, dtype):
    rng = np.random.default_rng(3)
    CH = chunk_columns(np.dtype(dtype).itemsize)
    shapes = [(1, 1, 1), (SB, CH, GROUP), (SB + 1, CH + 1, GROUP + 1), (70, 3 * CH + 5, 13),
              (2 * SB, 2 * CH - 3, 2 * GROUP + 9), (5, CH // 4, 7), (100, CH - 1, 9)]
    shapes += [tuple(int(v) for v in rng.integers(1, (130, 3 * CH, 140))) for _ in range(25)]
    for rows, fan_in, n in shapes:
        for density in (0.0, 0.5, 1.0):
            (A, a_off, a_ld, G, g_off, g_ld, c_off, ldc, i_start, i_stop, alpha,
             beta), size = case(rng, dtype, mode, rows, fan_in, n, density)
            C = rng.standard_normal(size).astype(dtype)
            if beta == 0:
                C[...] = np.nan  # never read: the block is overwritten, the rest stays NaN
            expected = C.copy()
            # (alpha and beta in the dtype, as the kernel takes them: float32 products)
            every_term(mode, A, a_off, a_ld, G, g_off, g_ld, expected, c_off, ldc, i_start,
                       i_stop, rows, n, dtype(alpha), dtype(beta))
            sparse(mode, A, a_off, a_ld, G, g_off, g_ld, C, c_off, ldc, i_start, i_stop, rows, n,
                   alpha, beta)
            assert C.tobytes() == expected.tobytes(), (rows, fan_in, n, density, i_start, i_stop)


@numba.njit
def transpose(T, t_off, M, m_off, m_ld, rows, cols):
    dense.transpose(T, t_off, M, m_off, m_ld, rows, cols)


def test_the_deltas_transpose_tile_by_tile_to_numpys_transpose():
    # (the weight gradient's deltas are transposed first: dense.transpose, in tiles of TILE)
    rng = np.random.default_rng(2)
    tile = dense.TILE
    for rows, cols in ((1, 1), (tile, tile), (tile + 1, 3), (70, 2 * tile + 5), (256, 100)):
        m_ld, m_off, t_off = cols + int(rng.integers(0, 9)), int(rng.integers(0, 5)), 3
        M = rng.standard_normal(m_off + rows * m_ld)
        T = np.full(t_off + rows * cols + 4, np.nan)
        transpose(T, t_off, M, m_off, m_ld, rows, cols)
        expected = M[m_off:].reshape(rows, m_ld)[:, :cols].T.ravel()
        assert np.array_equal(T[t_off:t_off + rows * cols], expected), (rows, cols)
        assert np.isnan(T[:t_off]).all() and np.isnan(T[t_off + rows * cols:]).all()


def test_nan_deltas_count_and_negative_zeros_do_not():
    rows, fan_in, n = 40, 20, 3
    A = np.ones(rows * fan_in)
    A[7 * fan_in + 4] = np.inf  # row 7: its delta for output 1 is -0.0, so the term is skipped
    D = np.zeros((rows, n))
    D[3, 0], D[7, 1], D[9, 2] = np.nan, -0.0, 2.0
    C = np.empty(fan_in * n)
    sparse("gradient", A, 0, fan_in, np.ascontiguousarray(D.T).ravel(), 0, rows, C, 0, n, 0, fan_in,
           rows, n, 1.0, 0.0)
    C = C.reshape(fan_in, n)
    assert np.isnan(C[:, 0]).all()
    assert (C[:, 1] == 0).all() and (C[:, 2] == 2.0).all()


# Run in a process of its own (conftest.GUARD_PAGES), as test_small_gemm's guard-page test.
_GUARDED = GUARD_PAGES + r'''
sys.path.insert(0, sys.argv[2])  # this file's folder
from test_sparse_gradient import MODES, chunk_columns, sparse

dtype = np.dtype(sys.argv[1])
CH = chunk_columns(dtype.itemsize)
rng = np.random.default_rng(5)
for rows, fan_in, n in ((9, CH + 3, 10), (33, 2 * CH, 3), (12, 2 * CH - 3, 5), (5, CH // 4 + 1, 17),
                      (40, 5, 9)):
    for mode in MODES:
        transposed, at = mode == "gradient", mode == "product_at"
        for guarded in "AGC":
            for beta in (0.0, 0.5):
                sizes = {"A": rows * fan_in, "G": n * rows, "C": fan_in * n}
                A, G, C = operands(sizes, guarded, dtype,
                                   lambda k: rng.standard_normal(k) * (rng.random(k) < 0.5))
                before = C.copy()
                sparse(mode, A, 0, rows if at else fan_in, G, 0, rows, C, 0,
                       n if transposed else fan_in, 0, fan_in, rows, n, -0.3, beta)
                dense = A.reshape(fan_in, rows).T if at else A.reshape(rows, fan_in)
                sums = G.reshape(n, rows).astype(np.float64) @ dense
                expected = -0.3 * (sums.T.ravel() if transposed else sums.ravel()) + beta * before
                assert np.allclose(C, expected, rtol=1e-5, atol=1e-5)
print("ok")
'''


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_nothing_is_read_or_written_past_the_operands(dtype):
    done = subprocess.run([sys.executable, "-c", _GUARDED, dtype, os.path.dirname(__file__)],
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("momentum", [0.0, 0.9], ids=["sgd", "momentum"])
def test_relu_layers_large_enough_for_the_kernels_match_the_twin(momentum, dtype):
    """Their weight gradients into grads (momentum, loss_and_grad) and as plain SGD steps
    into the weights, with L2, the second layer's forward product from the first's
    activations (in float64 with a gap after each row), and the input gradient through the
    second (its deltas times W.T); batches of 2 blocks of rows and a short one."""
    rows, sizes = 2 * SB + 5, [300, 512, 256, 10]
    CH = chunk_columns(np.dtype(dtype).itemsize)
    for count in (rows, 3 * rows):  # a batch, and loss_and_grad's one call for all rows
        # the two weight gradients, the forward product and the input gradient take the
        # kernels (dense.use_sparse)
        for depth, columns, n in ((count, 300, 512), (count, 512, 256), (512, 256, count),
                                  (256, 512, count)):
            assert depth >= SB and depth * columns * n >= SPARSE_MIN_MACS
            assert columns >= 2 * CH and masks_fit(depth, n)
    rng = np.random.default_rng(8)
    X, y = rng.normal(size=(3 * rows, sizes[0])), rng.integers(0, 10, 3 * rows)
    fast, ref = (Impl(sizes, dtype=dtype, random_state=4)
                 for Impl in (fastmlp.MLP, fastmlp.reference.MLP))
    tol = 1e-10 if dtype == np.float64 else 2e-4
    grads_f, grads_r = fast.loss_and_grad(X, y, alpha=0.1)[1], ref.loss_and_grad(X, y, alpha=0.1)[1]
    assert np.abs(grads_f.flat - grads_r.flat).max() <= tol * np.abs(grads_r.flat).max()
    for model in (fast, ref):
        model.fit(X, y, epochs=3, batch_size=rows, lr=0.01, momentum=momentum, alpha=1e-3)
    assert np.abs(fast.params - ref.params).max() <= tol * np.abs(ref.params).max()
