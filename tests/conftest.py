import numba
import numpy as np
import pytest

from fastmlp.kernels import _blas, dense
from fastmlp.kernels._memory import read_only

ACTIVATIONS = ["relu", "sigmoid", "tanh", "identity"]
OUTPUTS = ["identity", "sigmoid", "softmax", "exp"]


def make_targets(output, n, k, rng):
    """Targets of the right kind for each output, k units."""
    if output == "softmax":
        return rng.integers(0, k, n)
    if output == "sigmoid":
        return (rng.random((n, k)) > 0.5).astype(np.float64)
    if output == "exp":
        return rng.poisson(2.0, (n, k)).astype(np.float64)
    return rng.normal(size=(n, k))


# The kernels' gemm and products are inner_jit kernels (kernels/_config.py): only
# compiled code can call them. A and B are passed read-only, as the kernels pass them
# (_memory.read_only): the tests run the variant the kernels compile.
@numba.njit
def gemm(trans_a, trans_b, m, n, k, alpha, A, a_off, lda, B, b_off, ldb, beta, C, c_off, ldc):
    _blas.gemm(trans_a, trans_b, m, n, k, alpha, read_only(A), a_off, lda, read_only(B), b_off, ldb,
               beta, C, c_off, ldc)


@numba.njit
def serial_product(split_columns, trans_a, trans_b, m, n, k, alpha, A, a_off, lda, B, b_off, ldb,
                   beta, C, c_off, ldc):
    """dense.product as the serial kernels run it."""
    dense.product(None, split_columns, trans_a, trans_b, m, n, k, alpha, read_only(A), a_off, lda,
                  B, b_off, ldb, beta, C, c_off, ldc)


@numba.njit
def product_in_blocks(split_columns, trans_a, trans_b, m, n, k, alpha, A, a_off, lda, B, b_off, ldb,
                      beta, C, c_off, ldc):
    """The product's blocks as the parallel kernels run them (dense.gemm_in_blocks)."""
    dense.gemm_in_blocks(split_columns, dense.DENSE, trans_a, trans_b, m, n, k, alpha, read_only(A),
                         a_off, lda, read_only(B), b_off, ldb, beta, C, c_off, ldc)


# The start of a script that checks a kernel's reads and writes stay within its operands:
# operands() makes a kernel's arrays, one of them ending where a page no one may touch begins.
GUARD_PAGES = r'''
import ctypes, mmap, sys
import numpy as np

PAGE = mmap.PAGESIZE
libc = ctypes.CDLL(None, use_errno=True)
libc.mprotect.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


def before_guard(size, dtype):
    """A new array of `size` elements that ends where a page no one may touch begins."""
    pages = -(-size * np.dtype(dtype).itemsize // PAGE)
    buffer = mmap.mmap(-1, (pages + 1) * PAGE)
    start = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
    assert libc.mprotect(start + pages * PAGE, PAGE, 0) == 0  # PROT_NONE
    whole = np.frombuffer(buffer, dtype, (pages * PAGE) // np.dtype(dtype).itemsize)
    return whole[whole.size - size:], buffer


KEPT = []  # the guarded pages' buffers, alive to the end


def operands(sizes, guarded, dtype, fill):
    """Arrays of `sizes` (name: size) filled by fill(size); the one named `guarded` ends
    where a guard page begins, the others are plain arrays."""
    made = {}
    for name, size in sizes.items():
        if name == guarded:
            made[name], buffer = before_guard(size, dtype)
            KEPT.append(buffer)
        else:
            made[name] = np.empty(size, dtype)
        made[name][...] = fill(size)
    return [made[name] for name in sizes]
'''


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# hypothesis: no deadline (the first call of a kernel compiles or loads it), and
# in CI (CI=true) a derandomised profile, so every run tries the same examples
try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:  # the property tests skip themselves without hypothesis
    pass
else:
    import os as _os

    _hypothesis_settings.register_profile("dev", deadline=None)
    _hypothesis_settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
    _hypothesis_settings.load_profile("ci" if _os.environ.get("CI", "").lower() == "true" else "dev")
