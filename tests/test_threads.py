"""Results are bitwise identical for any thread count: large layers split into
fixed chunks (not by thread count) and the BLAS under them runs single-threaded."""
import os
import subprocess
import sys
import tempfile
import textwrap

import numba
import numpy as np
import pytest

import fastmlp
from conftest import product_in_blocks, serial_product

needs_two = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")

# sizes that take the chunked (parallel) path, at 256 rows with float32's forward
# product split by rows too (_config.FLOAT32_FORWARD_ROW_SPLIT_MIN_ROWS), and with a
# gap after each hidden row (4 KiB and 8 KiB wide: kernels/network.with_row_strides);
# the single-BLAS path and the loop path
CASES = [([784, 128, 10], 128), ([784, 256, 10], 256), ([64, 1024, 10], 64), ([300, 256, 10], 128),
         ([64, 32, 10], 32), ([13, 8, 1], 8)]


def train(sizes, batch, threads, dtype=np.float64):
    rng = np.random.default_rng(0)
    n = 4 * batch
    X = rng.normal(size=(n, sizes[0]))
    y = rng.integers(0, sizes[-1], n) if sizes[-1] > 1 else rng.integers(0, 2, n)
    output = "softmax" if sizes[-1] > 1 else "sigmoid"
    model = fastmlp.MLP(sizes, "relu", output, dtype=dtype, random_state=0)
    previous = fastmlp.get_num_threads()
    fastmlp.set_num_threads(threads)
    try:
        model.fit(X, y, epochs=2, batch_size=batch, lr=0.01, momentum=0.9)
        return model.params.copy(), model.forward(X), model.loss_and_grad(X, y)[1].flat
    finally:
        fastmlp.set_num_threads(previous)


@needs_two
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("sizes,batch", CASES, ids=["chunked", "chunked-256", "chunked-gaps", "blas", "digits", "tiny"])
def test_one_and_two_threads_give_identical_bits(sizes, batch, dtype):
    one, two = train(sizes, batch, 1, dtype), train(sizes, batch, 2, dtype)
    for a, b in zip(one, two):
        assert a.tobytes() == b.tobytes()


# In a process of its own: other tests call some of these helpers with other types.
_SHARED_HELPERS = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[1])  # this file's folder
    import numba
    from test_threads import train
    from fastmlp.kernels import _blas, dense, network
    train([300, 128, 128, 10], 128, 2)
    train([300, 128, 128, 10], 128, 1)
    for helper in (network.gather_rows, dense.gemm_block, dense.gemm_in_blocks, dense.product,
                   _blas.gemm, _blas.sparse, dense.sparse_w_product, dense.sparse_weight_gradient,
                   dense.input_gradient_product):
        # `parallel` is None for the serial kernels, a bool for the parallel ones: two
        # variants by design; any other difference is one too many
        parallel = {i for sig in helper.signatures for i, t in enumerate(sig)
                    if t == numba.types.none}
        variants = {tuple("parallel" if i in parallel else t for i, t in enumerate(sig))
                    for sig in helper.signatures}
        print(helper.__name__, len(variants), helper.signatures)
""")


@needs_two
def test_the_serial_and_parallel_epochs_compile_their_shared_helpers_once():
    # A helper called with a literal 0 in one place and an int64 in another, or with
    # prange's unsigned index and range's signed one, compiles twice: ~0.5 s of a cold
    # compile of the parallel epoch (784-512-512-10 at 2 threads). So does a product
    # whose A is read-only (the data, or activations typed with it) in one layer's call
    # and writable (the deltas) in another's: kernels/_memory.read_only. The model takes
    # every product: BLAS's, split and not, and the three that skip a relu layer's zeros.
    # (an empty cache: a kernel loaded from it never compiles its helpers)
    with tempfile.TemporaryDirectory() as cache:
        done = subprocess.run([sys.executable, "-c", _SHARED_HELPERS, os.path.dirname(__file__)],
                              capture_output=True, text=True, env=dict(os.environ,
                                                                       NUMBA_CACHE_DIR=cache))
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert len(lines) == 9 and all(line.split()[1] == "1" for line in lines), done.stdout


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_the_serial_products_have_the_bits_of_the_parallel_blocks(dtype):
    # Where OpenBLAS's cores allow it (_openblas.ROW_SPLIT_EXACT), the serial kernels
    # compute a product the parallel ones split by rows in one call: the same bits,
    # checked over random shapes from the split's threshold up, odd sizes and the
    # workloads' among them, every transposition, and the kernels' alpha and beta.
    from fastmlp.kernels._config import PARALLEL_MIN_MACS
    rng = np.random.default_rng(0)
    shapes = [(128, 128, 784), (784, 128, 128), (1000, 100, 64), (784, 512, 256), (256, 512, 512)]
    while len(shapes) < 40:
        m, n, k = (int(v) for v in rng.integers(1, 1100, 3))
        if m * n * k >= PARALLEL_MIN_MACS:
            shapes.append((m, n, k))
    for i, (m, n, k) in enumerate(shapes):
        trans_a, trans_b = bool(i % 2), bool(i // 2 % 2)
        alpha, beta = [(1.0, 0.0), (-0.01, 1.0), (-0.01, 0.999)][i % 3]
        A, B = rng.normal(size=m * k).astype(dtype), rng.normal(size=k * n).astype(dtype)
        lda, ldb = m if trans_a else k, k if trans_b else n
        C = rng.normal(size=m * n).astype(dtype)
        args = (np.bool_(False), np.bool_(trans_a), np.bool_(trans_b), m, n, k, np.float64(alpha),
                A, 0, lda, B, 0, ldb, np.float64(beta))
        serial, blocks = C.copy(), C.copy()
        serial_product(*args, serial, 0, n)
        product_in_blocks(*args, blocks, 0, n)
        assert serial.tobytes() == blocks.tobytes(), (m, n, k, trans_a, trans_b, alpha, beta)


SCRIPT = textwrap.dedent("""
    import hashlib, numpy as np, fastmlp
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(512, 784)), rng.integers(0, 10, 512)
    model = fastmlp.MLP([784, 128, 10], random_state=0).fit(X, y, epochs=2, batch_size=128)
    print(hashlib.sha256(model.params.tobytes()).hexdigest())
""")


@needs_two
def test_fresh_processes_with_different_thread_settings_agree():
    """Even with OpenBLAS told to use 2 threads, the weights do not change."""
    hashes = set()
    for numba_threads, blas_threads in (("1", "1"), ("2", "2"), ("2", "1")):
        env = dict(os.environ, NUMBA_NUM_THREADS=numba_threads, OPENBLAS_NUM_THREADS=blas_threads,
                   OMP_NUM_THREADS=blas_threads)
        out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stderr
        hashes.add(out.stdout.strip())
    assert len(hashes) == 1


def test_blas_under_the_kernels_is_single_threaded_and_scipys_is_left_alone():
    # (SciPy's BLAS under the kernels, without the scipy-openblas wheels: test_blas.py)
    from fastmlp._threads import _scipy_blas_controllers
    from fastmlp.kernels import _openblas
    scipy_threads = [c.num_threads for c in _scipy_blas_controllers()]
    fastmlp.MLP([3, 2]).forward(np.ones((1, 3)))
    assert _openblas.SMALL.scipy_openblas_get_num_threads() == 1
    assert _openblas.LARGE.scipy_openblas_get_num_threads64_() == 1
    assert [c.num_threads for c in _scipy_blas_controllers()] == scipy_threads


def test_the_compiling_process_and_the_cached_ones_agree(tmp_path):
    """The first process compiles the kernels, the next loads them from the cache:
    the same seed must give the same bits in both (fastmath without reassoc)."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    # with reassoc in fastmath, the momentum cases here differed between the two runs
    script = textwrap.dedent("""
        import hashlib, numpy as np, fastmlp
        rng = np.random.default_rng(0)
        X, y3, y1 = rng.normal(size=(600, 6)), rng.integers(0, 3, 600), rng.integers(0, 2, 600)
        for sizes, act, output, y, batch, kw in (
                ([6, 16, 1], "relu", "sigmoid", y1, 150, dict(momentum=0.9, nesterov=True, alpha=1e-4)),
                ([6, 16, 3], "tanh", "softmax", y3, 150, dict(alpha=1e-3)),
                ([6, 5, 4, 3], "relu", "softmax", y3, 1, dict(optimizer="adam")),
                ([6, 16, 3], "sigmoid", "identity", rng.normal(size=(600, 3)), 32, dict(momentum=0.9))):
            model = fastmlp.MLP(sizes, act, output, random_state=0)
            model.fit(X, y, epochs=3, batch_size=batch, lr=0.05, **kw)
            print(hashlib.sha256(model.params.tobytes()).hexdigest())
    """)
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                           timeout=600) for _ in range(2)]
    for run in runs:
        assert run.returncode == 0, run.stderr
    assert runs[0].stdout == runs[1].stdout


@needs_two
def test_a_nan_in_a_large_X_is_found_by_the_parallel_gather():
    # An X of X_CHECK_IN_EPOCH_MIN_BYTES or more is checked for NaN as the epoch gathers
    # its rows; at 2 threads a 784-128-10 model at batch 128 gathers in parallel blocks.
    from fastmlp._base import X_CHECK_IN_EPOCH_MIN_BYTES
    rng = np.random.default_rng(3)
    n = X_CHECK_IN_EPOCH_MIN_BYTES // (784 * 8) + 1
    X, y = rng.normal(size=(n, 784)), rng.integers(0, 10, n)
    kw = dict(batch_size=128, lr=0.01, momentum=0.9, shuffle=False)
    models = [fastmlp.MLP([784, 128, 10], random_state=0) for _ in range(2)]
    previous = fastmlp.get_num_threads()
    fastmlp.set_num_threads(2)
    try:
        for model in models:
            model.partial_fit(X, y, **kw)
        before = models[0].params.copy()
        for row in (0, 5 * 128 + 100, n - 1):  # the first block, the second, the last batch's
            X_bad = X.copy()
            X_bad[row, 400] = np.inf
            with pytest.raises(ValueError, match="X contains NaN or infinity"):
                models[0].partial_fit(X_bad, y, **kw)
            assert np.array_equal(models[0].params, before)
        for model in models:
            model.partial_fit(X, y, **kw)
    finally:
        fastmlp.set_num_threads(previous)
    assert np.array_equal(models[0].params, models[1].params)
    assert models[0].loss_curve_ == models[1].loss_curve_
