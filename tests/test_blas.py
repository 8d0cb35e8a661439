"""kernels._blas.gemm (BLAS straight from the kernels) against NumPy: row-major
products on flat buffers with offsets, leading dimensions, transposes, alpha and
beta, in both dtypes, small and large (the two OpenBLAS instances of
kernels/_openblas.py); nothing outside C's block is touched. Also its NumPy
stand-in for NUMBA_DISABLE_JIT runs, and the libraries' fallbacks."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

CHECK = textwrap.dedent("""
    import numpy as np
    from conftest import gemm  # (through a jit function: _blas.gemm is an inner_jit kernel)

    def check(dtype, seed, trials, large=0):
        # `large` more trials of 101-180 rows, columns and depth: above SMALL_MAX_MACS
        rng = np.random.default_rng(seed)
        for trial in range(trials + large):
            m, n, k = (int(v) for v in rng.integers(*((1, 40) if trial < trials else (101, 180)), 3))
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


def check_env(**settings):
    """os.environ with `settings`, for a process that runs CHECK: conftest's folder on its path."""
    path = [os.path.dirname(os.path.abspath(__file__)), os.environ.get("PYTHONPATH")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, path)), **settings)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_gemm_matches_numpy_on_flat_buffers(dtype):
    check(dtype, seed=0, trials=300, large=20)


def test_gemm_beta_zero_ignores_nan_in_the_target():
    A, B = np.ones(6), np.ones(6)
    C = np.full(4, np.nan)
    gemm(False, False, 2, 2, 3, 1.0, A, 0, 3, B, 0, 2, 0.0, C, 0, 2)
    assert np.array_equal(C, np.full(4, 3.0))


def test_the_numpy_stand_in_when_jit_is_disabled():
    script = CHECK + "\ncheck(np.float64, 1, 60, 4)\ncheck(np.float32, 2, 60, 4)\nprint('checked')\n"
    env = check_env(NUMBA_DISABLE_JIT="1")
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "checked"


def test_the_kernels_call_their_own_two_openblas_instances():
    from fastmlp.kernels import _openblas
    # both wheels are dependencies: their absence is the fallback below
    assert {key: source for key, (source, _, _) in _openblas.GEMM.items()} == {
        ("dgemm", False): "scipy-openblas32", ("sgemm", False): "scipy-openblas32",
        ("dgemm", True): "scipy-openblas64", ("sgemm", True): "scipy-openblas64"}
    assert _openblas.SMALL.scipy_openblas_get_num_threads() == 1
    assert _openblas.LARGE.scipy_openblas_get_num_threads64_() == 1
    small, large = _openblas.corename(_openblas.SMALL), _openblas.corename(_openblas.LARGE, "64_")
    assert large == (_openblas.LARGE_CORETYPE or small)


@pytest.mark.parametrize("vendor,family,small_core,expected", [
    ("AuthenticAMD", 25, "SkylakeX", "Haswell"),      # Zen 4
    ("AuthenticAMD", 25, "Cooperlake", "Haswell"),
    ("AuthenticAMD", 25, "Zen", None),                # Zen 3: OpenBLAS picks AVX2 kernels itself
    ("AuthenticAMD", 26, "SkylakeX", None),           # Zen 5: not measured, OpenBLAS's choice
    ("GenuineIntel", 6, "SkylakeX", None),
    (None, None, "SkylakeX", None),                   # no /proc/cpuinfo
])
def test_the_large_instance_runs_avx2_kernels_on_zen4_only(vendor, family, small_core, expected):
    from fastmlp.kernels._openblas import large_coretype
    assert large_coretype(vendor, family, small_core) == expected


def run(script, env=None):
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True,
                            text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_openblas_coretype_set_by_the_user_serves_both_instances_and_stays_set():
    out = run("""
        import os
        from fastmlp.kernels import _openblas as o
        print(o.LARGE_CORETYPE, o.corename(o.SMALL), o.corename(o.LARGE, "64_"),
              os.environ["OPENBLAS_CORETYPE"])
    """, dict(os.environ, OPENBLAS_CORETYPE="Haswell"))
    assert out.split() == ["None", "Haswell", "Haswell", "Haswell"]


def test_loading_the_instances_leaves_the_environment_and_the_global_symbols_alone():
    # loaded RTLD_LOCAL: scipy_dgemm_ and scipy_dgemm_64_, names SciPy's and NumPy's
    # libraries also export, stay out of the process's global symbol table
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    out = run("""
        import ctypes, os
        import fastmlp
        process = ctypes.CDLL(None)
        print("OPENBLAS_CORETYPE" in os.environ, hasattr(process, "scipy_dgemm_"),
              hasattr(process, "scipy_dgemm_64_"))
    """, env)
    assert out.split() == ["False", "False", "False"]


FIT = textwrap.dedent("""
    import sys
    import numpy as np
    import fastmlp
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(256, 400)), rng.integers(0, 3, 256)
    model = fastmlp.MLP([400, 64, 3], random_state=0).fit(X, y, epochs=2, batch_size=64)
""")


@pytest.mark.parametrize("blocked,small,large", [
    (["scipy_openblas32"], "scipy", "scipy-openblas64"),
    (["scipy_openblas64"], "scipy-openblas32", "scipy-openblas32"),
    (["scipy_openblas32", "scipy_openblas64"], "scipy", "scipy"),
], ids=["no32", "no64", "neither"])
def test_without_a_wheel_its_products_go_elsewhere(tmp_path, blocked, small, large):
    # a wheel's import blocked: its products through the other instance, or SciPy's
    # cython_blas, which is set to one thread once a kernel has run; the same products
    # and the same training (a 64x400x64 product is a large one)
    script = "import sys\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in blocked)
    script += CHECK + FIT + textwrap.dedent(f"""
        from fastmlp.kernels import _openblas
        from fastmlp._threads import _scipy_blas_controllers
        sources = {{large: source for (name, large), (source, _, _) in _openblas.GEMM.items()}}
        assert sources == {{False: {small!r}, True: {large!r}}}, sources
        check(np.float64, 3, 40, 4)
        check(np.float32, 4, 40, 4)
        if "scipy" in sources.values():
            assert all(c.num_threads == 1 for c in _scipy_blas_controllers())
        np.save(sys.argv[1], model.params)
    """)
    saved = tmp_path / "params.npy"
    # a cache of its own: another library changes the kernel cache's stamp (_cache.py)
    env = check_env(NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, "-c", script, str(saved)], capture_output=True,
                            text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr
    namespace = {}
    exec(FIT, namespace)
    np.testing.assert_allclose(np.load(saved), namespace["model"].params, rtol=1e-12, atol=1e-14)
