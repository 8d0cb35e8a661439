"""kernels._blas.gemm (BLAS straight from the kernels) against NumPy: row-major
products on flat buffers with offsets, leading dimensions, transposes, alpha and
beta, in both dtypes; nothing outside C's block is touched. Also its NumPy
stand-in for NUMBA_DISABLE_JIT runs."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from fastmlp.kernels._blas import gemm

CHECK = textwrap.dedent("""
    import numpy as np
    from fastmlp.kernels._blas import gemm

    def check(dtype, seed, trials):
        rng = np.random.default_rng(seed)
        for _ in range(trials):
            m, n, k = (int(v) for v in rng.integers(1, 40, 3))
            ta, tb = (bool(v) for v in rng.integers(0, 2, 2))
            a_shape, b_shape = ((k, m) if ta else (m, k)), ((n, k) if tb else (k, n))
            lda, ldb, ldc = (int(s + e) for s, e in zip((a_shape[1], b_shape[1], n), rng.integers(0, 5, 3)))
            oa, ob, oc = (int(v) for v in rng.integers(0, 7, 3))
            A = rng.standard_normal(oa + a_shape[0] * lda).astype(dtype)
            B = rng.standard_normal(ob + b_shape[0] * ldb).astype(dtype)
            C = rng.standard_normal(oc + m * ldc).astype(dtype)
            a = A[oa:].reshape(a_shape[0], lda)[:, :a_shape[1]].astype(np.float64)
            b = B[ob:].reshape(b_shape[0], ldb)[:, :b_shape[1]].astype(np.float64)
            block = np.zeros_like(C, bool)
            block[oc:].reshape(m, ldc)[:, :n] = True
            alpha, beta = (float(v) for v in rng.choice([0.0, 1.0, -0.37, 2.5], 2))
            expected = alpha * ((a.T if ta else a) @ (b.T if tb else b))
            if beta != 0:  # beta 0 overwrites C, whatever it held
                expected += beta * C[block].reshape(m, n)
            before, As, Bs = C.copy(), A.copy(), B.copy()
            gemm(ta, tb, m, n, k, alpha, A, oa, lda, B, ob, ldb, beta, C, oc, ldc)
            tol = 1e-4 if dtype == np.float32 else 1e-12
            scale = max(1.0, np.abs(expected).max())
            assert np.abs(C[block].reshape(m, n) - expected).max() <= tol * scale * k
            assert np.array_equal(C[~block], before[~block])
            assert np.array_equal(A, As) and np.array_equal(B, Bs)
""")
exec(CHECK)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_gemm_matches_numpy_on_flat_buffers(dtype):
    check(dtype, seed=0, trials=300)


def test_gemm_beta_zero_ignores_nan_in_the_target():
    A, B = np.ones(6), np.ones(6)
    C = np.full(4, np.nan)
    gemm(False, False, 2, 2, 3, 1.0, A, 0, 3, B, 0, 2, 0.0, C, 0, 2)
    assert np.array_equal(C, np.full(4, 3.0))


def test_the_numpy_stand_in_when_jit_is_disabled():
    script = CHECK + "\ncheck(np.float64, 1, 60)\ncheck(np.float32, 2, 60)\nprint('checked')\n"
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "checked"


def test_the_kernels_call_their_own_openblas():
    from fastmlp.kernels import _blas
    assert _blas.SOURCE == "scipy-openblas32"  # a dependency: its absence is the fallback below
    assert _blas.OPENBLAS.scipy_openblas_get_num_threads() == 1


def test_without_scipy_openblas32_the_kernels_call_scipys_blas(tmp_path):
    # the wheel's import blocked: the same products through SciPy's cython_blas, which
    # is set to one thread once a kernel has run (and trains a BLAS-sized net as before)
    script = CHECK + textwrap.dedent("""
        import sys
        import fastmlp
        from fastmlp.kernels import _blas
        from fastmlp._threads import _scipy_blas_controllers
        assert _blas.SOURCE == "scipy" and _blas.OPENBLAS is None, _blas.SOURCE
        check(np.float64, 3, 60)
        check(np.float32, 4, 60)
        rng = np.random.default_rng(0)
        X, y = rng.normal(size=(256, 40)), rng.integers(0, 3, 256)
        model = fastmlp.MLP([40, 64, 3], random_state=0).fit(X, y, epochs=2, batch_size=64)
        assert all(c.num_threads == 1 for c in _scipy_blas_controllers())
        np.save(sys.argv[1], model.params)
    """)
    blocked = "import sys; sys.modules['scipy_openblas32'] = None\n"
    with_scipy = tmp_path / "params.npy"
    result = subprocess.run([sys.executable, "-c", blocked + script, str(with_scipy)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    import fastmlp
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(256, 40)), rng.integers(0, 3, 256)
    model = fastmlp.MLP([40, 64, 3], random_state=0).fit(X, y, epochs=2, batch_size=64)
    np.testing.assert_allclose(np.load(with_scipy), model.params, rtol=1e-12, atol=1e-14)
