"""kernels.small_gemm (register-blocked vector loops) against NumPy in both dtypes: random
shapes across the block sizes (4 rows x 4, 3 or 2 vectors, leftover rows and columns),
both op(A), alpha and beta (beta = 0 never reads C: NaN there stays out), offsets
and leading dimensions; nothing outside C's block is written, nothing past a
buffer's end is read (B and C end where the product does)."""
import numpy as np
import pytest

from conftest import GUARD_PAGES, gemm
from fastmlp.kernels.small_gemm import small_gemm


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("seed", range(4))
def test_small_gemm_matches_numpy(dtype, seed):
    rng = np.random.default_rng(seed)
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for _ in range(60):
        m, n, k = (int(v) for v in rng.integers(1, 40, 3))
        trans_a = bool(rng.integers(2))
        alpha, beta = float(rng.choice([1.0, -0.3])), float(rng.choice([0.0, 1.0, 0.7]))
        a_rows, a_cols = (k, m) if trans_a else (m, k)
        lda, ldb, ldc = (int(c + e) for c, e in zip((a_cols, n, n), rng.integers(0, 3, 3)))
        oa, ob, oc = (int(v) for v in rng.integers(0, 5, 3))
        A = rng.standard_normal(oa + a_rows * lda).astype(dtype)
        B = rng.standard_normal(ob + (k - 1) * ldb + n).astype(dtype)  # ends with the product
        C = rng.standard_normal(oc + (m - 1) * ldc + n).astype(dtype)
        if beta == 0:
            C[...] = np.nan  # never read: each element of the block is overwritten
        before = C.copy()
        small_gemm(np.bool_(trans_a), m, n, k, alpha, A, oa, lda, B, ob, ldb, beta, C, oc, ldc)
        stored_a = A[oa:].reshape(a_rows, lda)[:, :a_cols].astype(np.float64)
        op_a = stored_a.T if trans_a else stored_a
        b = np.lib.stride_tricks.as_strided(B[ob:], (k, n), (ldb * B.itemsize, B.itemsize))
        block = np.lib.stride_tricks.as_strided(before[oc:], (m, n), (ldc * C.itemsize, C.itemsize))
        expected = before.astype(np.float64)
        target = np.lib.stride_tricks.as_strided(expected[oc:], (m, n),
                                                 (ldc * expected.itemsize, expected.itemsize))
        target[...] = alpha * op_a @ b.astype(np.float64) + (beta * block if beta else 0)
        outside = np.isnan(expected)
        assert np.array_equal(np.isnan(C), outside), (m, n, k, trans_a, beta)
        np.testing.assert_allclose(C[~outside], expected[~outside], **tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_blas_gemm_runs_small_products_in_these_loops(dtype):
    # _blas.gemm sends products below SMALL_GEMM_MAX_MACS with B as stored here (through
    # a C callback, once loaded), so both give the same bits; OpenBLAS's sums differ in
    # the last ones
    from fastmlp.kernels._blas import load_loops
    load_loops(dtype)
    rng = np.random.default_rng(0)
    # (8 x 1 from A.T: one contiguous column, run as the row C.T = B.T @ A: the same sums)
    for m, n, k, trans_a in ((32, 8, 13, False), (13, 8, 32, True), (32, 10, 32, False),
                             (8, 1, 32, True), (13, 1, 5, True), (32, 1, 8, False)):
        via_gemm, via_loops = _through_gemm_and_loops(m, n, k, trans_a, dtype, rng)
        assert np.array_equal(via_gemm, via_loops)


def _through_gemm_and_loops(m, n, k, trans_a, dtype, rng):
    """C = op(A) @ B for random A and B, through _blas.gemm and through small_gemm."""
    A = rng.standard_normal(m * k).astype(dtype)
    B = rng.standard_normal(k * n).astype(dtype)
    lda = m if trans_a else k
    via_gemm, via_loops = np.zeros(m * n, dtype), np.zeros(m * n, dtype)
    gemm(trans_a, False, m, n, k, 1.0, A, 0, lda, B, 0, n, 0.0, via_gemm, 0, n)
    small_gemm(np.bool_(trans_a), m, n, k, 1.0, A, 0, lda, B, 0, n, 0.0, via_loops, 0, n)
    return via_gemm, via_loops


def test_blas_gemm_runs_larger_float64_products_with_a_small_w_in_these_loops():
    # _config.LOOPS_MAX_B_FLOAT64: with 32 vector registers, a float64 product with A as
    # stored and B of up to that many elements runs in the loops whatever its size (the
    # same bits as small_gemm's); A.T, float32 and larger B stay in OpenBLAS
    from fastmlp.kernels import small_gemm as module
    from fastmlp.kernels._blas import load_loops
    from fastmlp.kernels._config import LOOPS_MAX_B_FLOAT64, SMALL_GEMM_MAX_MACS
    rng = np.random.default_rng(4)
    for dtype in (np.float64, np.float32):
        load_loops(dtype)
        for m, n, k, trans_a in ((64, 100, 1000, False), (32, 128, 784, False),
                                 (64, 100, 1000, True), (40, 600, 300, False)):
            assert m * n * k >= SMALL_GEMM_MAX_MACS
            via_gemm, via_loops = _through_gemm_and_loops(m, n, k, trans_a, dtype, rng)
            in_loops = (module.WIDE and dtype == np.float64 and not trans_a
                        and k * n <= LOOPS_MAX_B_FLOAT64)
            assert np.array_equal(via_gemm, via_loops) == in_loops, (m, n, k, trans_a, dtype)
            np.testing.assert_allclose(via_gemm, via_loops, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_block_shapes_do_not_change_the_bits(dtype):
    # each element of C is one sum over k in order, whichever block computes it: a product
    # of up to 70 columns (blocks of 4 x 4, 4 x 3, 4 x 2 and 8 x 1 vectors) is bitwise the
    # same as its columns computed 1, 3, 5 or 7 at a time (other blocks, other lanes)
    rng = np.random.default_rng(3)
    for m, n, k in ((32, 32, 64), (13, 70, 9), (5, 17, 32), (64, 48, 3)):
        for trans_a in (False, True):
            lda = m if trans_a else k
            A = rng.standard_normal(m * k).astype(dtype)
            B = rng.standard_normal(k * n).astype(dtype)
            whole = np.full(m * n, np.nan, dtype)
            small_gemm(np.bool_(trans_a), m, n, k, -0.3, A, 0, lda, B, 0, n, 0.0, whole, 0, n)
            assert not np.isnan(whole).any()
            for width in (1, 3, 5, 7):
                pieces = np.full(m * n, np.nan, dtype)
                for j in range(0, n, width):
                    small_gemm(np.bool_(trans_a), m, min(width, n - j), k, -0.3, A, 0, lda, B, j,
                               n, 0.0, pieces, j, n)
                assert np.array_equal(pieces, whole), (m, n, k, trans_a, width)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_one_column_gives_the_bits_of_a_vector_block(dtype):
    # one column of C from A as stored runs in scalar blocks of its own; each element is
    # still one sum over k in order, so it is bitwise the first column of a two-column
    # product (a vector block) with the same A
    rng = np.random.default_rng(7)
    for m in (1, 3, 8, 9, 17, 32):
        for k in (1, 2, 8, 13):
            for alpha, beta in ((1.0, 0.0), (-0.3, 0.7)):
                lda = k + 2
                A = rng.standard_normal(1 + m * lda).astype(dtype)
                B2 = rng.standard_normal((k, 2)).astype(dtype)
                B1 = np.ascontiguousarray(B2[:, 0])
                C2 = rng.standard_normal((m, 2)).astype(dtype)
                C1 = np.ascontiguousarray(C2[:, 0])
                if beta == 0:
                    C1[...] = C2[...] = np.nan
                small_gemm(np.bool_(False), m, 1, k, alpha, A, 1, lda, B1, 0, 1, beta, C1, 0, 1)
                small_gemm(np.bool_(False), m, 2, k, alpha, A, 1, lda, B2.reshape(-1), 0, 2, beta,
                           C2.reshape(-1), 0, 2)
                assert np.array_equal(C1, C2[:, 0]), (m, k, alpha, beta)
                assert not np.isnan(C1).any()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_one_term_products_are_numpys_bits(dtype):
    # k = 1 runs as an outer product: each element alpha * (a b), plus C when beta = 1,
    # rounded as NumPy rounds those two or three operations (beta = 0: C is not read)
    rng = np.random.default_rng(11)
    for m in (1, 3, 8, 32):
        for n in (1, 3, 4, 8, 9, 13):
            for trans_a in (False, True):
                for beta in (0.0, 1.0):
                    lda, ldc = (m + 1, n + 2) if trans_a else (3, n + 2)
                    A = rng.standard_normal(2 + m * lda).astype(dtype)
                    B = rng.standard_normal(n).astype(dtype)
                    C = rng.standard_normal(m * ldc).astype(dtype)
                    if beta == 0:
                        C[...] = np.nan
                    expected = C.copy().reshape(m, ldc)
                    a = A[2:2 + m] if trans_a else A[2::lda][:m]  # op(A)'s one column
                    product = dtype(-0.3) * (a[:, None] * B[None, :])
                    expected[:, :n] = product + expected[:, :n] if beta else product
                    small_gemm(np.bool_(trans_a), m, n, 1, -0.3, A, 2, lda, B, 0, n, beta, C, 0,
                               ldc)
                    assert np.array_equal(C.reshape(m, ldc), expected, equal_nan=True), \
                        (m, n, trans_a, beta)


# Run in a process of its own (conftest.GUARD_PAGES): a read or write past a guard page
# kills the process, and the test then fails with its output rather than taking pytest down.
_GUARDED = GUARD_PAGES + r'''
from fastmlp.kernels.small_gemm import small_gemm

dtype = np.dtype(sys.argv[1])
rng = np.random.default_rng(5)
for m, n, k in ((9, 10, 7), (5, 3, 6), (8, 11, 2), (4, 19, 5), (13, 9, 4), (6, 2, 3)):
    for trans_a in (False, True):
        for guarded in "ABC":
            for beta in (0.0, 0.5):
                a_rows, a_cols = (k, m) if trans_a else (m, k)
                A, B, C = operands({"A": a_rows * a_cols, "B": k * n, "C": m * n}, guarded, dtype,
                                   rng.standard_normal)
                before = C.copy()
                small_gemm(np.bool_(trans_a), m, n, k, -0.3, A, 0, a_cols, B, 0, n, beta, C, 0, n)
                op_a = A.reshape(a_rows, a_cols).astype(np.float64)
                op_a = op_a.T if trans_a else op_a
                expected = (-0.3 * op_a @ B.reshape(k, n).astype(np.float64)
                            + beta * before.reshape(m, n))
                assert np.allclose(C.reshape(m, n), expected, rtol=1e-5, atol=1e-5), (m, n, k)
print("ok")
'''


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_nothing_is_read_or_written_past_the_operands(dtype):
    # each operand in turn ends where a page begins that no one may read or write: a
    # partial last vector's loads may read whole vectors of B past the strip's columns
    # (into B's next row), but never past B's end, and stores leave C's end alone
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", _GUARDED, dtype], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
