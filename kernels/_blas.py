"""General matrix products straight from BLAS: C = alpha op(A) op(B) + beta C.

numba's np.dot needs 2-D arrays (a reshape costs 16-40 ns inside njit, more than
a small product takes), knows neither alpha nor beta, and cannot address a
block of columns. Calling BLAS's gemm on flat buffers with offsets and leading
dimensions can: products accumulate into their target (beta = 1), an SGD step
lands in the weights without a gradient buffer (alpha = -lr), and a layer
splits into column blocks without copies.

The libraries are fastmlp's own two instances of OpenBLAS (_openblas.py): one for
products of up to SMALL_MAX_MACS multiply-adds, one for the larger ones, each
single-threaded. Their gemm's addresses are given to LLVM under fixed symbol
names, so compiled kernels refer to the name, not to an address, and numba's
on-disk cache stays valid across processes: every process registers the names
when this module is imported, before any kernel loads.

Below _config.SMALL_GEMM_MAX_MACS, products with B as stored run in small_gemm.py's
vector loops instead (and larger float64 ones with A as stored too, where the machine
has 32 vector registers and B is small: _config.LOOPS_MAX_B_FLOAT64), called the same
way: a C callback per dtype with gemm's interface. Its code then compiles once, not again
in every kernel above it (numba re-optimises a jitted callee inside each caller: 2.3-2.6 s
more of a cold compile).
Kernels call it through a cell: a pointer under a symbol of its own, read at each
call. The callback loads on import when numba's cache has it; else it compiles only
when Python is about to call a kernel that may run a product that small (load_loops),
so a model whose products are all larger never builds it: ~0.8 s of a cold compile
(784-512-512-10 at 2 threads: 9.2-9.6 -> 8.3-8.9 s, alternating processes). Until
then the cell holds the small instance's gemm, which takes the same arguments and
gives the same product in other last bits.
sparse_gradient.py's products that skip a relu layer's zeros are a second C callback per
dtype behind the same interface, with a cell of their own (sparse, load), which holds
nothing until Python loads them before a call that may run one.

Legend (row-major, as everywhere in fastmlp):
    op(A) (m, k) and op(B) (k, n) and C (m, n), each at an offset of a flat buffer;
    lda, ldb, ldc: the row lengths of A, B, C as stored (>= their used columns);
    trans_a: op(A) = A.T, A stored (k, m); trans_b likewise.
"""
import ctypes
import threading
import types as pytypes

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import config, types
from numba.core import cgutils
from numba.core.ccallback import CFunc
from numba.extending import intrinsic
from numba.np import numpy_support

from . import small_gemm, sparse_gradient
from .small_gemm import WIDE
from ._config import LOOPS_MAX_B_FLOAT64, OPTIONS, SMALL_GEMM_MAX_MACS, inner_jit
from ._openblas import GEMM, SMALL_MAX_MACS

_NAMES = {types.float64: "dgemm", types.float32: "sgemm"}
_DTYPES = {"dgemm": types.float64, "sgemm": types.float32}
LOOPS = "loops"  # the kind of small_gemm.py's loops, beside False (small) and True (large)
SPARSE = "sparse"  # the kind of sparse_gradient.py's products


def _symbol(name, kind):
    return f"fastmlp_blas_{name}{'' if kind is False else '_large' if kind is True else '_' + kind}"


for (_name, _large), (_source, _address, _bits) in GEMM.items():
    llvm.add_symbol(_symbol(_name, _large), _address)


def _callback(name, kind):
    """The kernels of `kind` (LOOPS: small_gemm.py's loops; SPARSE: sparse_gradient.py's)
    for `name` as a C callback with gemm's interface and the small instance's integers,
    cached on disk as the kernels are (not yet compiled)."""
    integer = types.CPointer(types.int64 if GEMM[name, False][2] == 64 else types.int32)
    value, flag = types.CPointer(_DTYPES[name]), types.CPointer(types.int8)
    signature = types.void(flag, flag, integer, integer, integer, value, value, integer, value,
                           integer, value, value, integer)
    # a copy of the function per dtype, under a name of its own: each gets a cache index
    # of its own, which processes compiling the other dtype at the same time do not rewrite
    entry = small_gemm._from_fortran if kind == LOOPS else sparse_gradient.from_fortran
    entry = pytypes.FunctionType(entry.__code__, entry.__globals__, f"fortran_{name}")
    entry.__qualname__ = entry.__name__
    callback = CFunc(entry, (signature.args, signature.return_type), {}, OPTIONS)
    callback.enable_caching()
    return callback


def _load_cached(callback):
    """CFunc.compile when the callback is in numba's cache; False (and nothing compiled)
    when it is not."""
    try:
        cres = callback._cache.load_overload(callback._sig, callback._targetdescr.target_context)
    except AttributeError:  # numba's internals moved: load_loops compiles or loads it
        return False
    if cres is None:
        return False
    callback._library = cres.library
    callback._wrapper_name = cres.fndesc.llvm_cfunc_wrapper_name
    callback._wrapper_address = cres.library.get_pointer_to_function(callback._wrapper_name)
    return True


_CALLBACKS = {(name, kind): _callback(name, kind) for name in _DTYPES for kind in (LOOPS, SPARSE)}
# the cells the kernels call the callbacks through: the loops' holds the small instance's
# gemm until they load; the sparse kernels' nothing (core loads them before any call)
_CELLS = {(name, kind): ctypes.c_void_p(GEMM[name, False][1] if kind == LOOPS else None)
          for name, kind in _CALLBACKS}
for (_name, _kind), _cell in _CELLS.items():
    llvm.add_symbol(_symbol(_name, _kind), ctypes.addressof(_cell))
_loading = threading.Lock()


def load(dtype, kind):
    """Load the callback of `kind` (LOOPS or SPARSE) for `dtype` from numba's cache, or
    compile it (~0.6 s, ~0.7 s). Call it before a kernel that may run it: until then the
    loops' cell holds the small OpenBLAS instance's gemm (the same products in other last
    bits), the sparse products' no function."""
    key = (_name_of(dtype), kind)
    if _CALLBACKS[key].address is None and not config.DISABLE_JIT:
        with _loading:
            if _CALLBACKS[key].address is None:
                _CALLBACKS[key].compile()
                _CELLS[key].value = _CALLBACKS[key].address


def load_loops(dtype):
    """load(dtype, LOOPS): from now on the kernels of `dtype` run their products below
    SMALL_GEMM_MAX_MACS in small_gemm.py's loops."""
    load(dtype, LOOPS)


def _load_from_cache(key):
    """Load the callback `key` if numba's cache has it; whether it is loaded."""
    callback = _CALLBACKS[key]
    if callback.address is None and not config.DISABLE_JIT:
        with _loading:
            if callback.address is None and _load_cached(callback):
                _CELLS[key].value = callback.address
    return callback.address is not None or config.DISABLE_JIT


def load_cached(dtype, kind):
    """Load the callback of `kind` for `dtype` if numba's cache has it (another process may
    have compiled it since this one started); whether it is loaded. Compiles nothing."""
    return _load_from_cache((_name_of(dtype), kind))


# Callbacks already in numba's cache load on import, as before the cell: loaded at their
# first use instead (after other kernels' code), tiny at batch 32 ran ~2% slower
# (37.8-38.1 -> 38.6-39.1 us a partial_fit call, medians of 3 runs of 6-8 alternating
# rounds), from where their code then lies in memory.
for _key in _CALLBACKS:
    _load_from_cache(_key)


def loops_loaded(dtype):
    """Whether kernels of `dtype` run small products in the loops in this process
    (loaded on import, or by load_loops)."""
    return _CALLBACKS[_name_of(dtype), LOOPS].address is not None


def _name_of(dtype):
    return _NAMES[numpy_support.from_dtype(np.dtype(dtype))]


def _fortran_gemm_of(kind):
    """BLAS ?gemm as Fortran sees it (column-major), every argument by pointer, from
    the instance for small (kind False) or for large (True) products, or small_gemm.py's
    loops (LOOPS: through their cell, see load_loops)."""
    @intrinsic
    def fortran_gemm(typingctx, trans_a, trans_b, m, n, k, alpha, a, a_off, lda, b, b_off, ldb,
                     beta, c, c_off, ldc):
        dtype = c.dtype
        if not (isinstance(a, types.Array) and isinstance(b, types.Array)
                and isinstance(c, types.Array) and a.dtype == b.dtype == dtype
                and dtype in _NAMES):
            return None
        sig = types.void(trans_a, trans_b, m, n, k, alpha, a, a_off, lda, b, b_off, ldb, beta, c,
                         c_off, ldc)
        name = _NAMES[dtype]
        bits = GEMM[name, kind is True][2]
        integer_numba = types.int64 if bits == 64 else types.int32

        def codegen(context, builder, signature, args):
            argtys = signature.args
            value_type = context.get_value_type(dtype)
            integer_type, char = ir.IntType(bits), ir.IntType(8)

            def by_pointer(value, from_type, ll_type, to_type):
                slot = cgutils.alloca_once(builder, ll_type)
                builder.store(context.cast(builder, value, from_type, to_type), slot)
                return slot

            def integer(i):
                return by_pointer(args[i], argtys[i], integer_type, integer_numba)

            def scalar(i):
                return by_pointer(args[i], argtys[i], value_type, dtype)

            def flag(i):
                slot = cgutils.alloca_once(builder, char)
                if isinstance(argtys[i], types.Integer):  # a character itself (SPARSE's modes)
                    builder.store(context.cast(builder, args[i], argtys[i], types.int8), slot)
                    return slot
                transposed = context.cast(builder, args[i], argtys[i], types.boolean)
                builder.store(builder.select(transposed, char(ord("T")), char(ord("N"))), slot)
                return slot

            def data(i, offset):
                array = context.make_array(argtys[i])(context, builder, args[i])
                off = context.cast(builder, args[offset], argtys[offset], types.intp)
                return builder.gep(array.data, [off])

            integer_p, value_p = integer_type.as_pointer(), value_type.as_pointer()
            fnty = ir.FunctionType(ir.VoidType(), [char.as_pointer()] * 2 + [integer_p] * 3
                                   + [value_p, value_p, integer_p, value_p, integer_p, value_p,
                                      value_p, integer_p])
            if kind in (LOOPS, SPARSE):  # the function the cell holds when the call runs
                cell = builder.module.globals.get(_symbol(name, kind))
                if cell is None:  # declared, not defined: the symbol names it when linked
                    cell = ir.GlobalVariable(builder.module, fnty.as_pointer(), _symbol(name, kind))
                fn = builder.load(cell)
            else:
                fn = cgutils.get_or_insert_function(builder.module, fnty, _symbol(name, kind))
            builder.call(fn, [flag(0), flag(1), integer(2), integer(3), integer(4), scalar(5),
                              data(6, 7), integer(8), data(9, 10), integer(11), scalar(12),
                              data(13, 14), integer(15)])
            return context.get_dummy_value()

        return sig, codegen
    return fortran_gemm


_fortran_gemm, _fortran_gemm_large = _fortran_gemm_of(False), _fortran_gemm_of(True)
_fortran_loops, _fortran_sparse = _fortran_gemm_of(LOOPS), _fortran_gemm_of(SPARSE)


@inner_jit
def gemm(trans_a, trans_b, m, n, k, alpha, A, a_off, lda, B, b_off, ldb, beta, C, c_off, ldc):
    """C (m, n) = alpha op(A) op(B) + beta C, row-major, on flat buffers (see the legend).

    Row-major C is column-major C.T = op(B).T op(A).T: the same call with the
    operands swapped. beta = 0 overwrites C (what it held is not used, NaN or not)."""
    if m == 0 or n == 0:
        return
    if not trans_b and (m * n * k < SMALL_GEMM_MAX_MACS or (
            WIDE and C.itemsize == 8 and not trans_a and k * n <= LOOPS_MAX_B_FLOAT64)):
        _fortran_loops(trans_b, trans_a, n, m, k, alpha, B, b_off, ldb, A, a_off, lda, beta, C,
                       c_off, ldc)
    elif m * n * k <= SMALL_MAX_MACS:
        _fortran_gemm(trans_b, trans_a, n, m, k, alpha, B, b_off, ldb, A, a_off, lda, beta, C,
                      c_off, ldc)
    else:
        _fortran_gemm_large(trans_b, trans_a, n, m, k, alpha, B, b_off, ldb, A, a_off, lda, beta,
                            C, c_off, ldc)


@inner_jit
def sparse(mode, A, a_off, a_ld, G, g_off, g_ld, C, c_off, ldc, i_start, i_stop, rows, n, alpha,
           beta):
    """sparse_gradient.sparse_gradient (mode GRADIENT), sparse_product (PRODUCT) or
    sparse_product_at (PRODUCT_AT), with their arguments, through their C callback: compiled
    once per dtype, not again inside every kernel above (its IR is large: inside the kernels
    it made the test suite's compiles ~1.3x slower)."""
    if i_stop <= i_start or n == 0:
        return
    # Fortran's order, as sparse_gradient.from_fortran takes it: G is the first matrix
    a_at = a_off + (i_start * a_ld if mode == sparse_gradient.PRODUCT_AT else i_start)
    c_at = c_off + (i_start * ldc if mode == sparse_gradient.GRADIENT else i_start)
    _fortran_sparse(mode, sparse_gradient.NOT_TRANSPOSED, n, i_stop - i_start, rows, alpha, G,
                    g_off, g_ld, A, a_at, a_ld, beta, C, c_at, ldc)


if config.DISABLE_JIT:  # kernels run as Python (coverage, tests that swap a helper)
    def sparse(mode, A, a_off, a_ld, G, g_off, g_ld, C, c_off, ldc, i_start, i_stop, rows, n,
               alpha, beta):
        """The same products in NumPy (sparse_gradient.py's fallbacks)."""
        kernel = {sparse_gradient.GRADIENT: sparse_gradient.sparse_gradient,
                  sparse_gradient.PRODUCT: sparse_gradient.sparse_product,
                  sparse_gradient.PRODUCT_AT: sparse_gradient.sparse_product_at}[mode]
        kernel(A, a_off, a_ld, G, g_off, g_ld, C, c_off, ldc, i_start, i_stop, rows, n, alpha,
               beta)

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

    _fortran_gemm_large = _fortran_loops = _fortran_gemm
