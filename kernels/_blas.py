"""General matrix products straight from BLAS: C = alpha op(A) op(B) + beta C.

numba's np.dot needs 2-D arrays (a reshape costs 16-40 ns inside njit, more than
a small product takes), knows neither alpha nor beta, and cannot address a
block of columns. Calling BLAS's gemm on flat buffers with offsets and leading
dimensions can: products accumulate into their target (beta = 1), an SGD step
lands in the weights without a gradient buffer (alpha = -lr), and a layer
splits into column blocks without copies.

The library is the OpenBLAS of the scipy-openblas32 wheel (a dependency), loaded
here as fastmlp's own copy: set to one thread (fastmlp's threads split the large
products; see fastmlp/_threads.py), which changes nothing for NumPy or SciPy,
each with its own copy. Its float32 products at fastmlp's shapes ran 8-10%
faster than SciPy's OpenBLAS 0.3.30 (as fast as NumPy's 0.3.31), float64 alike.
Without that wheel, the functions come from scipy.linalg.cython_blas, SciPy's
documented table of BLAS functions (SOURCE says which). Their addresses are
given to LLVM under fixed symbol names, so compiled kernels refer to the name,
not to an address, and numba's on-disk cache stays valid across processes: every
process registers the names when this module is imported, before any kernel
loads.

Legend (row-major, as everywhere in fastmlp):
    op(A) (m, k) and op(B) (k, n) and C (m, n), each at an offset of a flat buffer;
    lda, ldb, ldc: the row lengths of A, B, C as stored (>= their used columns);
    trans_a: op(A) = A.T, A stored (k, m); trans_b likewise.
"""
import ctypes
import os

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import config, types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic

from ._config import jit


def _own_openblas():
    """The scipy-openblas32 wheel's OpenBLAS, loaded (None when it is not installed)."""
    try:
        import scipy_openblas32
    except ImportError:
        return None
    lib_dir = scipy_openblas32.get_lib_dir()
    names = sorted(name for name in os.listdir(lib_dir) if name.startswith("libscipy_openblas")
                   and name.endswith((".so", ".dylib", ".dll")))
    return ctypes.CDLL(os.path.join(lib_dir, names[0])) if names else None


OPENBLAS = _own_openblas()
if OPENBLAS is not None:
    OPENBLAS.scipy_openblas_set_num_threads(1)
    SOURCE = "scipy-openblas32"

    def _address(name):
        return ctypes.cast(getattr(OPENBLAS, f"scipy_{name}_"), ctypes.c_void_p).value
else:
    SOURCE = "scipy"

    def _address(name):
        return get_cython_function_address("scipy.linalg.cython_blas", name)


_SYMBOLS = {types.float32: "fastmlp_blas_sgemm", types.float64: "fastmlp_blas_dgemm"}
for _symbol in _SYMBOLS.values():
    llvm.add_symbol(_symbol, _address(_symbol[-5:]))


@intrinsic
def _fortran_gemm(typingctx, trans_a, trans_b, m, n, k, alpha, a, a_off, lda, b, b_off, ldb,
                  beta, c, c_off, ldc):
    """BLAS ?gemm as Fortran sees it (column-major): every argument by pointer."""
    dtype = c.dtype
    if not (isinstance(a, types.Array) and isinstance(b, types.Array)
            and isinstance(c, types.Array) and a.dtype == b.dtype == dtype
            and dtype in _SYMBOLS):
        return None
    sig = types.void(trans_a, trans_b, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta, c,
                     c_off, ldc)

    def codegen(context, builder, signature, args):
        argtys = signature.args
        value_type = context.get_value_type(dtype)
        int32, char = ir.IntType(32), ir.IntType(8)

        def by_pointer(value, from_type, ll_type, to_type):
            slot = cgutils.alloca_once(builder, ll_type)
            builder.store(context.cast(builder, value, from_type, to_type), slot)
            return slot

        def integer(i):
            return by_pointer(args[i], argtys[i], int32, types.int32)

        def scalar(i):
            return by_pointer(args[i], argtys[i], value_type, dtype)

        def flag(i):
            slot = cgutils.alloca_once(builder, char)
            transposed = context.cast(builder, args[i], argtys[i], types.boolean)
            builder.store(builder.select(transposed, char(ord("T")), char(ord("N"))), slot)
            return slot

        def data(i, offset):
            array = context.make_array(argtys[i])(context, builder, args[i])
            off = context.cast(builder, args[offset], argtys[offset], types.intp)
            return builder.gep(array.data, [off])

        fnty = ir.FunctionType(ir.VoidType(), [char.as_pointer()] * 2 + [int32.as_pointer()] * 3
                               + [value_type.as_pointer(), value_type.as_pointer(),
                                  int32.as_pointer(), value_type.as_pointer(),
                                  int32.as_pointer(), value_type.as_pointer(),
                                  value_type.as_pointer(), int32.as_pointer()])
        fn = cgutils.get_or_insert_function(builder.module, fnty, _SYMBOLS[dtype])
        builder.call(fn, [flag(0), flag(1), integer(2), integer(3), integer(4), scalar(5),
                          data(6, 7), integer(8), data(9, 10), integer(11), scalar(12),
                          data(13, 14), integer(15)])
        return context.get_dummy_value()

    return sig, codegen


@jit
def gemm(trans_a, trans_b, m, n, k, alpha, A, a_off, lda, B, b_off, ldb, beta, C, c_off, ldc):
    """C (m, n) = alpha op(A) op(B) + beta C, row-major, on flat buffers (see the legend).

    Row-major C is column-major C.T = op(B).T op(A).T: the same call with the
    operands swapped. beta = 0 overwrites C (BLAS never reads it then)."""
    if m == 0 or n == 0:
        return
    _fortran_gemm(trans_b, trans_a, n, m, k, alpha, B, b_off, ldb, A, a_off, lda, beta, C, c_off,
                  ldc)


if config.DISABLE_JIT:  # kernels run as Python (coverage, tests that swap a helper)
    def _fortran_gemm(trans_a, trans_b, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta, c,
                      c_off, ldc):
        """The same column-major product in NumPy (Fortran-order views of the buffers)."""
        def op(buffer, offset, rows, cols, ld, transposed):
            stored = (cols, rows) if transposed else (rows, cols)
            view = np.lib.stride_tricks.as_strided(
                buffer[offset:], stored, (buffer.itemsize, ld * buffer.itemsize))
            return view.T if transposed else view
        target = op(c, c_off, m, n, ldc, False)
        product = op(a, a_off, m, k, lda, trans_a) @ op(b, b_off, k, n, ldb, trans_b)
        target[...] = alpha * product + (beta * target if beta != 0 else 0)
