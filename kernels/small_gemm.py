"""Small products as register-blocked loops over 256-bit vectors, in place of BLAS's
gemm below _config.SMALL_GEMM_MAX_MACS multiply-adds (_blas.gemm picks).

Below ~10^5 multiply-adds a BLAS call costs more than its arithmetic: OpenBLAS's
AVX2 build packs both operands and runs its general driver for every shape (its
small-matrix kernels are AVX-512 only). These loops read the operands where they
lie: a block of C stays in registers while k runs, each step one load of B's row
per vector and one broadcast of op(A) per row. Measured against OpenBLAS side by
side (Zen 3, 1 thread, ns per product, float64): 13-8-1 at batch 32's five
products 1290 -> 860 (~700 with the one-column and one-term paths), digits
64-32-10's 10.5 -> 8.3 us (32x64->32 at 45 GFLOP/s, the machine's peak). From
~1.5e5 multiply-adds up (mnist's 784-wide layers) BLAS's cache blocking wins, and
it keeps those.

numba has no vector type, and LLVM left numba loops with scalar accumulators
scalar (4-5 GFLOP/s on that machine). So a block's loop over k is written here as
LLVM IR (`_strip`) on <L x dtype> values: one instruction per operation
(vbroadcastsd, vfmadd231pd). Written as numba code over vector intrinsics it ran
as fast, but numba's typing and inlining of their hundreds of calls took 1.5 s to
compile a dtype; this compiles in 0.6 s.

Each element of C is one sum over k in order, so the result does not depend on
where a block falls; it differs from BLAS's in the last bits only.

Legend (row-major, as _blas.gemm):  C (m, n) = alpha op(A) @ B + beta C
    op(A) (m, k): A (m, k) with row length lda, or A.T for A stored (k, m) (trans_a)
    B (k, n) row length ldb;  C (m, n) row length ldc;  each at an offset of a flat buffer
    L  lanes of a vector (4 float64, 8 float32); a block is ROWS x VECTORS of C:
       4 x 4 full vectors where the machine has 32 vector registers (AVX-512: WIDE), then
       4 x 3 full vectors (WIDE: the last one may be partial), else 4 x 2, or 8 x 1 where
       at most one vector's columns are left;
       a single column of C from A as stored (a one-output layer's forward) in 8 x 1
       scalar blocks: in a vector block, 3 of 4 lanes would compute nothing; a product of
       one term (k = 1) as an outer product, B's row held over all of C's rows
beta = 0 overwrites C: what C held is not used (as BLAS, a NaN there stays out).
"""
import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import config, types
from numba.core import cgutils
from numba.extending import intrinsic
from numba.np.arrayobj import populate_array

from ._config import index, jit

VECTOR_BYTES = 32


def lanes_of(dtype):
    return VECTOR_BYTES // (dtype.bitwidth // 8)


def _masked(builder, operation, vector, returns, arguments):
    # the typed-pointer name (p0v4f64): LLVM from 15 on reads it as the opaque `p0` one
    element = f"v{vector.count}{vector.element.intrinsic_name}"
    name = f"llvm.masked.{operation}.{element}.p0{element}"
    fnty = ir.FunctionType(returns, [a.type for a in arguments])
    return builder.call(cgutils.get_or_insert_function(builder.module, fnty, name), arguments)


def _first_lanes(builder, count, lanes):
    """<lanes x i1>: lane < count."""
    i32 = ir.IntType(32)
    one = _splat(builder, ir.VectorType(i32, lanes), builder.trunc(count, i32))
    return builder.icmp_unsigned("<", ir.Constant(one.type, list(range(lanes))), one)


def _min(builder, x, y):
    return builder.select(builder.icmp_signed("<", x, y), x, y)


def _splat(builder, vector, x):
    i32 = ir.IntType(32)
    one = builder.insert_element(ir.Constant(vector, ir.Undefined), x, i32(0))
    return builder.shuffle_vector(one, ir.Constant(vector, ir.Undefined),
                                  ir.Constant(ir.VectorType(i32, vector.count), None))


def _intrinsic(define):
    """An intrinsic calling define(module, element, lanes), a function of the strips'
    signature (_signature) defined in the caller's module on first use."""
    @intrinsic
    def call(typingctx, A, a, row, step, B, b, ldb, k, count, C, c, ldc, alpha, beta, rows):
        sig = types.void(A, a, row, step, B, b, ldb, k, count, C, c, ldc, alpha, beta, rows)

        def codegen(context, builder, signature, args):
            dtype = signature.args[9].dtype
            integers = [context.cast(builder, args[i], signature.args[i], types.int64)
                        for i in (1, 2, 3, 5, 6, 7, 8, 10, 11, 14)]
            alpha, beta = (context.cast(builder, args[i], signature.args[i], dtype) for i in (12, 13))
            A, B, C = (context.make_array(signature.args[i])(context, builder, args[i]).data
                       for i in (0, 4, 9))
            fn = define(builder.module, context.get_value_type(dtype), lanes_of(dtype))
            a, row, step, b, ldb, k, count, c, ldc, rows = integers
            builder.call(fn, [A, a, row, step, B, b, ldb, k, count, C, c, ldc, alpha, beta, rows])
            return context.get_dummy_value()
        return sig, codegen
    return call


def _signature(element):
    """(A, a, row, step, B, b, ldb, k, count, C, c, ldc, alpha, beta, rows)"""
    i64, pointer = ir.IntType(64), element.as_pointer()
    return ir.FunctionType(ir.VoidType(), [pointer, i64, i64, i64, pointer, i64, i64, i64, i64,
                                           pointer, i64, i64, element, element, i64])


# Each strip kind is a function of its own in the callback's module, called, not
# inlined: inlined into one function, every kind's addresses shared its registers
# (spilled to the stack), and its entry computed them all on every call. Called:
# the callback's fixed cost 46 -> 37 ns, its compile 0.66 -> 0.60 s (Zen 3, float64).
def _new_function(module, name, element):
    """(function, builder at its entry) for a new internal function `name` of the strips'
    signature in `module`; (function, None) if the module has it already."""
    if name in module.globals:
        return module.globals[name], None
    fn = ir.Function(module, _signature(element), name)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    return fn, ir.IRBuilder(fn.append_basic_block("entry"))


def _strip(ROWS, VECTORS, partial=True, scalar=False):
    """An intrinsic: a strip of C, VECTORS vectors wide from C[c] on, its last vector's
    first `count` columns only (1 <= count <= L; L unless partial), over all `rows`
    rows of C in blocks of ROWS rows; the last block's rows past C's end repeat the
    last row's reads of A and are not stored. scalar: one column, L = 1, for A as
    stored only (op(A)'s step along k is 1)."""
    return _intrinsic(lambda module, element, lanes: _strip_function(
        module, element, lanes, ROWS, VECTORS, partial, scalar))


def _strip_function(module, element, lanes, ROWS, VECTORS, partial, scalar):
    """The strip's loops (see _strip), defined in `module` on first use."""
    name = (f"fastmlp_strip_{ROWS}x{VECTORS}{'_partial' if partial else ''}"
            f"{'_scalar' if scalar else ''}_{element}")
    fn, builder = _new_function(module, name, element)
    if builder is None:
        return fn
    A, a, row, step, B, b, ldb, k, count, C, c, ldc, alpha, beta, m = fn.args
    i64 = ir.IntType(64)
    if scalar:  # a constant step: each row's address is one register, not one per unrolled p
        step = i64(1)
    L = 1 if scalar else lanes
    vector = ir.VectorType(element, L)
    mask = _first_lanes(builder, count, L)
    full = builder.icmp_unsigned("==", count, i64(L))
    with_beta = builder.fcmp_unordered("!=", beta, element(0))
    single = builder.icmp_unsigned("==", count, i64(1))
    # B's rows p < unmasked hold a whole last vector before B's end: (k - 1 - p) ldb
    # elements follow row p's last column, and the vector needs L - count of them
    short_rows = builder.udiv(builder.add(builder.sub(i64(L), count), builder.sub(ldb, i64(1))),
                              ldb)
    unmasked = builder.select(builder.icmp_unsigned(">", k, short_rows), builder.sub(k, short_rows),
                              i64(0))

    def at(data, offset):  # a vector's pointer at data[offset]
        return builder.bitcast(builder.gep(data, [offset]), vector.as_pointer())

    def load(data, offset, masked):
        if not masked:
            return builder.load(at(data, offset), align=1)
        return _masked(builder, "load", vector, vector,
                       [at(data, offset), ir.IntType(32)(1), mask, ir.Constant(vector, None)])

    with cgutils.for_range_slice(builder, i64(0), m, i64(ROWS)) as (i, _):
        rows = builder.sub(m, i)  # C's rows from the block's first on
        last_row = builder.sub(rows, i64(1))
        a_block, c_block = builder.add(a, builder.mul(i, row)), builder.add(c, builder.mul(i, ldc))
        a_rows = [builder.add(a_block, builder.mul(_min(builder, i64(r), last_row), row))
                  for r in range(ROWS)]
        # the sums in stack slots, which LLVM turns into registers (mem2reg)
        sums = [[cgutils.alloca_once_value(builder, ir.Constant(vector, None))
                 for _ in range(VECTORS)] for _ in range(ROWS)]

        def over_k(masked, start, stop):  # p from start to stop, the last vector masked or not
            with cgutils.for_range_slice(builder, start, stop, i64(1)) as (p, _):
                b_row = builder.add(b, builder.mul(p, ldb))
                bs = [load(B, builder.add(b_row, i64(v * L)), masked and v == VECTORS - 1)
                      for v in range(VECTORS)]
                step_p = builder.mul(p, step)
                for r in range(ROWS):
                    x = _splat(builder, vector, builder.load(builder.gep(A, [builder.add(
                        a_rows[r], step_p)])))
                    for v in range(VECTORS):
                        builder.store(_fmuladd(builder, x, bs[v], builder.load(sums[r][v])),
                                      sums[r][v])

        # a mask takes a register, and a masked load is slower: only where it must be
        # (4 x 3 vectors and a mask spill: 16 registers in AVX2). The last vector's
        # loads read whole vectors of B's rows up to `unmasked`, past the strip's last
        # column into the row after (lanes whose sums are never stored), and masked
        # only in the last rows, where a whole vector would read past B's end.
        if partial:
            with builder.if_else(full) as (all_lanes, some):
                with all_lanes:
                    over_k(False, i64(0), k)
                with some:
                    over_k(False, i64(0), unmasked)
                    over_k(True, unmasked, k)
        else:
            over_k(False, i64(0), k)

        for r in range(ROWS):
            with builder.if_then(builder.icmp_signed("<", i64(r), rows)):
                c_row = builder.add(c_block, builder.mul(i64(r), ldc))
                for v in range(VECTORS):
                    offset = builder.add(c_row, i64(v * L))
                    total = builder.fmul(_splat(builder, vector, alpha), builder.load(sums[r][v]))
                    last = v == VECTORS - 1
                    with builder.if_else(with_beta) as (add, overwrite):
                        with add:
                            updated = _fmuladd(builder, _splat(builder, vector, beta),
                                               load(C, offset, last), total)
                            _store(builder, updated, C, offset, at, last, full, single, mask)
                        with overwrite:  # C not read: (0 * NaN)
                            _store(builder, total, C, offset, at, last, full, single, mask)
    builder.ret_void()
    return fn


def _outer_function(module, element, lanes):
    """A product of one term (k = 1): C[i, j] = op(A)[i, 0] B[0, j], as a block's sum of
    one term, fmuladd(a, b, 0). `count` is here C's column count. A vector of B's row
    stays in a register over all m rows, and no block is set up for every few rows."""
    fn, builder = _new_function(module, f"fastmlp_outer_{element}", element)
    if builder is None:
        return fn
    A, a, row, step, B, b, ldb, k, n, C, c, ldc, alpha, beta, m = fn.args
    i64 = ir.IntType(64)
    L = lanes
    vector = ir.VectorType(element, L)
    with_beta = builder.fcmp_unordered("!=", beta, element(0))

    def at(data, offset):
        return builder.bitcast(builder.gep(data, [offset]), vector.as_pointer())

    with cgutils.for_range_slice(builder, i64(0), n, i64(L)) as (j, _):
        count = _min(builder, builder.sub(n, j), i64(L))
        mask = _first_lanes(builder, count, L)
        full = builder.icmp_unsigned("==", count, i64(L))
        single = builder.icmp_unsigned("==", count, i64(1))

        def load(data, offset):
            return _masked(builder, "load", vector, vector,
                           [at(data, offset), ir.IntType(32)(1), mask, ir.Constant(vector, None)])

        b_row = load(B, builder.add(b, j))
        with cgutils.for_range(builder, m) as loop:
            i = loop.index
            x = _splat(builder, vector,
                       builder.load(builder.gep(A, [builder.add(a, builder.mul(i, row))])))
            total = builder.fmul(_splat(builder, vector, alpha),
                                 _fmuladd(builder, x, b_row, ir.Constant(vector, None)))
            offset = builder.add(builder.add(c, builder.mul(i, ldc)), j)
            updated = _fmuladd(builder, _splat(builder, vector, beta), load(C, offset), total)
            _store(builder, builder.select(with_beta, updated, total), C, offset, at, True, full,
                   single, mask)
    builder.ret_void()
    return fn


def _fmuladd(builder, x, y, z):
    """x * y + z lane by lane, fused where the machine has FMA (as fastmath's contract)."""
    name = f"llvm.fmuladd.v{x.type.count}{x.type.element.intrinsic_name}"
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(x.type, [x.type] * 3),
                                        name)
    return builder.call(fn, [x, y, z])


def _store(builder, value, data, offset, at, last, full, single, mask):
    """data[offset:offset + L] = value; the last vector only its first `count` lanes: a
    plain store when all, else a scalar store per lane. A masked store is microcoded
    on AMD's Zen in AVX2 (vmaskmovpd), and on Zen 4 AVX-512's (vmovupd with a mask
    register) still cost: 32x10x8 in float32 (4 x 2 vectors, 2 lanes of the second
    stored) 328 -> 208 ns with scalar stores, 32x16x8 (all lanes) 154 ns."""
    if not last:
        builder.store(value, at(data, offset), align=1)
        return
    with builder.if_else(full) as (all_lanes, some):
        with all_lanes:
            builder.store(value, at(data, offset), align=1)
        with some:
            with builder.if_else(single) as (one, several):
                with one:
                    builder.store(builder.extract_element(value, ir.IntType(32)(0)),
                                  builder.gep(data, [offset]))
                with several:  # lane by lane: count < L
                    i32, i64 = ir.IntType(32), ir.IntType(64)
                    for lane in range(value.type.count - 1):
                        with builder.if_then(builder.extract_element(mask, i32(lane))):
                            builder.store(builder.extract_element(value, i32(lane)),
                                          builder.gep(data, [builder.add(offset, i64(lane))]))


# With 32 vector registers (AVX-512's ymm0-31; numba compiles for the host's features,
# or NUMBA_CPU_FEATURES), a block of 4 x 4 vectors keeps its 16 sums, 4 of B's vectors
# and a broadcast in registers: one broadcast per 4 fused multiply-adds, not per 3, and
# a third fewer blocks (each with its setup and stores). Measured (Zen 4, 1 thread,
# digits 64-32-10 at batch 32, alternating processes): its five products 7.10-7.32 ->
# 6.65-6.68 us in float64, 4.34-4.38 -> 3.76-3.78 us in float32; the epoch 573-583 ->
# 549-560 us and 392-401 -> 355-359 us a partial_fit call. With 16 registers the sums
# would spill. There too, 4 x 3 vectors with a partial last one, not 4 x 2 then 8 x 1,
# take 9-11 columns (10 outputs, float64): 32x10x32 640 -> 521 ns, as fast as 12
# columns, with the last vector's loads of B and its stores to C unmasked where they
# can be (see _strip_function and _store). 8 x 2 in place of 4 x 2 ran slower.
def _vector_registers():
    """32 where numba compiles for AVX-512 (xmm/ymm 0-31), else 16."""
    features = config.CPU_FEATURES
    if features is None:
        features = llvm.get_host_cpu_features().flatten()
    return 32 if "+avx512vl" in features.split(",") else 16


WIDE = _vector_registers() == 32
rows4_vectors4 = _strip(4, 4, partial=False)
rows4_vectors3, rows4_vectors2 = _strip(4, 3, partial=WIDE), _strip(4, 2)
rows8_vector = _strip(8, 1)
rows8_column = _strip(8, 1, partial=False, scalar=True)
outer_product = _intrinsic(_outer_function)


@intrinsic
def lanes(typingctx, array):
    """Lanes in a vector of array's dtype (a constant)."""
    count = lanes_of(array.dtype)

    def codegen(context, builder, signature, args):
        return context.get_constant(types.intp, count)
    return types.intp(array), codegen


@jit(inline="always")
def small_gemm(trans_a, m, n, k, alpha, A, a_off, lda, B, b_off, ldb, beta, C, c_off, ldc):
    """C (m, n) = alpha op(A) @ B + beta C on flat buffers (see the legend)."""
    L = index(lanes(C))
    rows, cols, depth = index(m), index(n), index(k)
    # op(A) (i, p) is A[a_off + i * row + p * step]
    row, step = (index(1), index(lda)) if trans_a else (index(lda), index(1))
    ldb_, ldc_ = index(ldb), index(ldc)
    if depth == index(1):
        outer_product(A, index(a_off), row, step, B, index(b_off), ldb_, depth, cols, C,
                      index(c_off), ldc_, alpha, beta, rows)
        return
    if cols == index(1) and not trans_a:  # (32 rows of 8, Zen 3: 159 -> 112 ns in float64)
        rows8_column(A, index(a_off), row, step, B, index(b_off), ldb_, depth, index(1), C,
                     index(c_off), ldc_, alpha, beta, rows)
        return
    j = index(0)
    while j < cols:
        left = cols - j
        b, c = index(b_off) + j, index(c_off) + j
        if WIDE and left >= L + L + L + L:
            rows4_vectors4(A, index(a_off), row, step, B, b, ldb_, depth, L, C, c, ldc_, alpha,
                           beta, rows)
            j += L + L + L + L
        elif left >= L + L + L or (WIDE and left > L + L):
            rows4_vectors3(A, index(a_off), row, step, B, b, ldb_, depth, min(L, left - L - L), C,
                           c, ldc_, alpha, beta, rows)
            j += L + L + L
        elif left > L:
            rows4_vectors2(A, index(a_off), row, step, B, b, ldb_, depth, min(L, left - L), C, c,
                           ldc_, alpha, beta, rows)
            j += L + L
        else:
            rows8_vector(A, index(a_off), row, step, B, b, ldb_, depth, left, C, c, ldc_, alpha,
                         beta, rows)
            j += L


@intrinsic
def array_at(typingctx, pointer, size):
    """A 1-D array of `size` elements at `pointer`, owned by no one (numba's carray,
    which the kernels cannot use: it returns a new array, and they compile without
    numba's reference counting)."""
    if not isinstance(pointer, types.CPointer):
        return None
    array_type = types.Array(pointer.dtype, 1, "C")

    def codegen(context, builder, signature, args):
        array = context.make_array(array_type)(context, builder)
        intp = context.get_value_type(types.intp)
        itemsize = intp(context.get_abi_sizeof(context.get_data_type(pointer.dtype)))
        count = context.cast(builder, args[1], signature.args[1], types.intp)
        populate_array(array, data=args[0], shape=[count], strides=[itemsize], itemsize=itemsize,
                       meminfo=None)
        return array._getvalue()
    return array_type(pointer, size), codegen


# The loops behind BLAS's own interface, so kernels call them as they call OpenBLAS:
# through an external symbol (_blas.py), not by linking their code in. numba links a
# jitted callee's code into every caller's module and optimises it again there,
# which would compile these loops again in each kernel above them; as a C callback
# (_blas.py compiles one per dtype) they compile once.
# Fortran's gemm is column-major with every argument by pointer: the row-major C =
# op(A) @ B arrives as C.T = B.T op(A).T, so its first matrix is B and its second A.
# Only B as stored (the first flag 'N') comes here. _blas.py compiles a copy of
# _from_fortran per dtype (not inlined into one: numba's inlining copies the IR, 0.1 s).

@jit(inline="always")
def _extent(rows, cols, ld):
    """Elements a (rows, cols) matrix with row length ld spans."""
    return (rows - 1) * ld + cols if rows > 0 else 0


def _from_fortran(trans_b, trans_a, n, m, k, alpha, b, ldb, a, lda, beta, c, ldc):
    rows, cols, depth = m[0], n[0], k[0]
    transposed = trans_a[0] == 84 or trans_a[0] == 116  # 'T' or 't'
    a_rows, a_cols = (depth, rows) if transposed else (rows, depth)
    A = array_at(a, _extent(a_rows, a_cols, lda[0]))
    B = array_at(b, _extent(depth, cols, ldb[0]))
    C = array_at(c, _extent(rows, cols, ldc[0]))
    # One column of C stored contiguous, from A.T (a one-output layer's weight gradient):
    # its elements would each fill one lane of a vector. Computed instead as the row
    # C.T = B.T @ A with A as stored, whose rows fill the vectors; each element is the
    # same sum over k in order. 8 x 1 over 32 rows, through _blas.gemm, side by side
    # (Zen 3): float64 114 -> 77-82 ns, float32 113 -> 101.
    row = cols == 1 and transposed and ldc[0] == 1
    first, first_ld, second, second_ld = (B, ldb[0], A, lda[0]) if row else (A, lda[0], B, ldb[0])
    small_gemm(transposed, 1 if row else rows, rows if row else cols, depth, alpha[0], first, 0,
               first_ld, second, 0, second_ld, beta[0], C, 0, rows if row else ldc[0])


if config.DISABLE_JIT:  # kernels run as Python (coverage, tests that swap a helper)
    def small_gemm(trans_a, m, n, k, alpha, A, a_off, lda, B, b_off, ldb, beta, C, c_off, ldc):
        """The same product in NumPy, on views of the buffers."""
        def view(buffer, offset, rows, cols, ld):
            return np.lib.stride_tricks.as_strided(buffer[offset:], (rows, cols),
                                                   (ld * buffer.itemsize, buffer.itemsize))
        op_a = view(A, a_off, k, m, lda).T if trans_a else view(A, a_off, m, k, lda)
        target = view(C, c_off, m, n, ldc)
        target[...] = alpha * (op_a @ view(B, b_off, k, n, ldb)) + (beta * target if beta else 0)
