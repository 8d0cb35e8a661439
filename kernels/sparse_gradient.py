"""Products with a relu layer's values as one operand, skipping their zeros: its weight
gradient C = alpha A.T @ D + beta C (sparse_gradient), the next layer's forward product
C = A @ W (sparse_product), and the input gradient through it C = D @ W.T
(sparse_product_at).

Behind a relu, about half of a hidden layer's activations and deltas are exactly zero
(each sample's dead units), and their terms add nothing. BLAS runs them all. Here each
element sums over the nonzero terms only, in order: the same sum as over all terms, less
terms that add a zero. In float64 that is OpenBLAS's dgemm's own sum (one fused
multiply-add per term, in order), and C = alpha sum + (beta C) its combination, so the
bits are the same, for sums of up to 384 terms: dgemm adds longer ones in blocks (measured:
deep's 512-term sums differ from its in the last bits).

All are one kernel: C's rows j (or columns, transposed) = G @ A, with G (n, rows) the
sparse operand, one row per j: the weight gradient's D transposed (each output's deltas in
a row), or the activations or deltas themselves. The work is laid out so the skipping costs
little. For a chunk of CH of A's columns, the sums of one j run in registers (V vectors of
L lanes) over that j's nonzero terms s, each a broadcast of G[j, s] and V loads of A's row
s. The terms come from a bit mask per j and block of SB rows of A (built once per call),
and a block keeps A's rows of the chunk in L1 (SB x CH elements, 16 KiB) while GROUP j
run; their sums wait in a tile on the stack between blocks. At the end the tile goes to
C's rows, or for the weight gradient is transposed L x L in registers into L columns of
C's rows (C is row-major, one row per input). NaN counts as nonzero; -0.0 is skipped (so
is an infinity in A where G is zero).

Legend (row-major, as _blas.gemm):
    A (rows, fan_in) at a_off, row length a_ld: the dense operand (X or an activation
      block for the weight gradient; W forward; for the input gradient W given as A.T,
      its blocks then transposed L x L in registers as they are copied)
    G (n, rows) at g_off, row length g_ld: the sparse operand
    C (fan_in, n) transposed, else (n, fan_in), at c_off, row length ldc: its columns
      i_start..i_stop-1 of G @ A are computed
    L  lanes of a vector: 64 bytes with 32 vector registers (small_gemm.WIDE), else 32
    CH = V L columns of A in a chunk;  SB  rows of A in a block (a mask's bits)
"""
import numpy as np
from llvmlite import ir
from numba import config, types
from numba.core import cgutils
from numba.extending import intrinsic

from ._config import jit
from .small_gemm import (WIDE, _extent, _first_lanes, _fmuladd, _masked, _min, _splat, _store,
                         array_at)

VECTOR_BYTES = 64 if WIDE else 32
V = 8  # vectors of sums per j: 8 chains of fused multiply-adds hide their latency
SB = 32  # rows in a block: one mask bit each
GROUP = 64  # j whose sums stay on the stack while a block runs (a multiple of L)
# masks on the stack: at most this many (n times the blocks: 64 KiB); the caller uses
# BLAS beyond (masks_fit)
MAX_MASKS = 1 << 13


def lanes_of(dtype):
    return VECTOR_BYTES // (dtype.bitwidth // 8)


def _transpose(builder, rows):
    """The L vectors `rows` of an L x L matrix, transposed: bit by bit of the lane
    index, rows r and r + h swap their lanes with bit h set and unset."""
    L, i32 = len(rows), ir.IntType(32)
    rows = list(rows)
    h = 1
    while h < L:
        low = [c if c & h == 0 else L + c - h for c in range(L)]
        high = [c + h if c & h == 0 else L + c for c in range(L)]
        for r in range(L):
            if r & h == 0:
                x, y = rows[r], rows[r + h]
                rows[r] = builder.shuffle_vector(x, y, ir.Constant(ir.VectorType(i32, L), low))
                rows[r + h] = builder.shuffle_vector(x, y, ir.Constant(ir.VectorType(i32, L), high))
        h *= 2
    return rows


def _define_pack_transposed(module, element, L):
    """An internal function of `module`: (A, a_off, a_ld, packed, i0, s0, in_block, width,
    count) copies A's rows s0.. (in_block of them; columns i0.., `width` of them, into
    `count` vectors a row, V apart) into packed, reading them from A.T's rows i0..: L of its
    rows and L columns at a time, each block transposed in registers. Lanes past the ends
    are zeros, not read. A vector at a time down L of A.T's rows (W's rows 4 KiB apart
    share a set of the L1 cache: across all the vectors' rows first, 256x512 @ 512x512.T
    took 2329 us, 1890 this way)."""
    name = f"fastmlp_sparse_pack_transposed_{element}_{L}"
    if name in module.globals:
        return module.globals[name]
    i64 = ir.IntType(64)
    vector = ir.VectorType(element, L)
    fnty = ir.FunctionType(ir.VoidType(), [element.as_pointer(), i64, i64, vector.as_pointer()]
                           + [i64] * 5)
    fn = ir.Function(module, fnty, name)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    A, a_off, a_ld, packed, i0, s0, in_block, width, count = fn.args
    zero = ir.Constant(vector, None)

    def clamp(value):  # 0 <= value <= L
        return _min(builder, builder.select(builder.icmp_signed("<", value, i64(0)), i64(0),
                                            value), i64(L))

    with cgutils.for_range(builder, count) as vectors:
        v = vectors.index
        first = builder.add(i0, builder.mul(v, i64(L)))  # A.T's row
        in_columns = clamp(builder.sub(width, builder.mul(v, i64(L))))
        with cgutils.for_range_slice(builder, i64(0), in_block, i64(L)) as (t, _):
            in_rows = clamp(builder.sub(in_block, t))
            at_row = builder.add(builder.add(a_off, builder.mul(first, a_ld)), builder.add(s0, t))
            block = []
            for r in range(L):
                there = builder.icmp_signed("<", i64(r), in_columns)
                lanes = _first_lanes(builder, builder.select(there, in_rows, i64(0)), L)
                at = builder.bitcast(builder.gep(A, [builder.add(
                    at_row, builder.mul(i64(r), a_ld))]), vector.as_pointer())
                block.append(_masked(builder, "load", vector, vector,
                                     [at, ir.IntType(32)(1), lanes, zero]))
            for r, row in enumerate(_transpose(builder, block)):
                builder.store(row, builder.gep(packed, [builder.add(
                    builder.mul(builder.add(t, i64(r)), i64(V)), v)]))
    builder.ret_void()
    return fn


def _define(module, element, L, transposed):
    """The kernel (see the module's docstring) as an internal function of `module`;
    transposed: C (fan_in, n) = the sums' transpose (the weight gradient), else C (n, fan_in),
    and its last argument, a_transposed, says A is given as A.T (fan_in, rows), row length
    a_ld (sparse_product_at; one function with sparse_product: their sums' code is the same,
    and the callback then compiles in 0.7 s, not 1.2)."""
    name = f"fastmlp_sparse_{'gradient' if transposed else 'product'}_{element}_{L}"
    if name in module.globals:
        return module.globals[name]
    i64, i1 = ir.IntType(64), ir.IntType(1)
    pointer = element.as_pointer()
    fnty = ir.FunctionType(ir.VoidType(), [pointer, i64, i64, pointer, i64, i64, pointer, i64, i64,
                                           i64, i64, i64, i64, element, element, i1])
    fn = ir.Function(module, fnty, name)
    fn.linkage = "internal"
    fn.attributes.add("noinline")
    builder = ir.IRBuilder(fn.append_basic_block("entry"))
    (A, a_off, a_ld, G, g_off, g_ld, C, c_off, ldc, i_start, i_stop, rows, n, alpha, beta,
     a_transposed) = fn.args
    pack_transposed = None if transposed else _define_pack_transposed(module, element, L)
    vector = ir.VectorType(element, L)
    zero = ir.Constant(vector, None)
    CH = V * L

    def at(data, offset):  # a vector's pointer at data[offset]
        return builder.bitcast(builder.gep(data, [offset]), vector.as_pointer())

    def load(data, offset, mask=None):
        if mask is None:
            return builder.load(at(data, offset), align=1)
        return _masked(builder, "load", vector, vector,
                       [at(data, offset), ir.IntType(32)(1), mask, zero])

    def clamp(count):  # 0 <= count <= L
        return _min(builder, builder.select(builder.icmp_signed("<", count, i64(0)), i64(0), count),
                    i64(L))

    blocks = builder.udiv(builder.add(rows, i64(SB - 1)), i64(SB))
    masks = builder.alloca(i64, size=builder.mul(n, blocks))
    tile = builder.alloca(vector, size=i64(GROUP * V))  # the sums of GROUP j, V vectors each
    column = builder.alloca(vector, size=i64(L))  # a transposed L x L block
    # forward, A is W, whose rows may lie 4 KiB apart (512 float64 outputs): a block's rows
    # would then share a few sets of the L1 cache. Copied, they lie one after the other:
    # 256x512 @ 512x512, half the activations zero, float64 2817 -> 1665 us (OpenBLAS 2684-2768),
    # float32 1095 -> 1017 (1238-1505). The weight gradient's A (X, a hidden layer with row
    # gaps) gained nothing (784x128 from 128 rows 343 us either way, 784x512 from 256 3261
    # in place, 3476 copied)
    packed = None if transposed else builder.alloca(vector, size=i64(SB * V))
    remaining = cgutils.alloca_once(builder, i64)
    sums = [cgutils.alloca_once(builder, vector) for _ in range(V)]
    cttz = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i64, [i64, i1]),
                                          "llvm.cttz.i64")

    # the masks: bit s - s0 of masks[b n + j] is G[j, s] != 0, for block b from row s0
    lane_bits = ir.IntType(L)
    with cgutils.for_range(builder, n) as columns:
        j = columns.index
        g_row = builder.add(g_off, builder.mul(j, g_ld))
        with cgutils.for_range_slice(builder, i64(0), rows, i64(SB)) as (s0, _):
            builder.store(i64(0), remaining)
            for q in range(SB // L):  # L rows at a time, the last ones masked
                first = builder.add(s0, i64(q * L))
                with builder.if_then(builder.icmp_signed("<", first, rows)):
                    in_rows = _min(builder, builder.sub(rows, first), i64(L))
                    lanes = _first_lanes(builder, in_rows, L)
                    g = load(G, builder.add(g_row, first), lanes)
                    nonzero = builder.bitcast(builder.fcmp_unordered("!=", g, zero), lane_bits)
                    builder.store(builder.or_(builder.load(remaining), builder.shl(
                        builder.zext(nonzero, i64), i64(q * L))), remaining)
            slot = builder.add(builder.mul(builder.udiv(s0, i64(SB)), n), j)
            builder.store(builder.load(remaining), builder.gep(masks, [slot]))

    def chunk(i0, width, count):
        """Columns i0.. of A (rows i0.. of C): `count` vectors of sums per j, all
        loads masked to the first `width` columns unless width is None."""
        vmasks = ([None] * count if width is None else
                  [_first_lanes(builder, clamp(builder.sub(width, i64(v * L))), L)
                   for v in range(count)])
        with cgutils.for_range_slice(builder, i64(0), n, i64(GROUP)) as (j0, _):
            in_group = _min(builder, builder.sub(n, j0), i64(GROUP))
            with cgutils.for_range_slice(builder, i64(0), rows, i64(SB)) as (s0, _):
                b = builder.udiv(s0, i64(SB))
                first = builder.icmp_unsigned("==", s0, i64(0))
                in_block = _min(builder, builder.sub(rows, s0), i64(SB))
                if packed is not None:
                    with builder.if_else(a_transposed) as (from_at, from_a):
                        with from_at:  # (its own function: its code once, not per chunk's)
                            builder.call(pack_transposed, [
                                A, a_off, a_ld, packed, i0, s0, in_block,
                                i64(CH) if width is None else width, i64(count)])
                        with from_a:  # the block's rows of the chunk, one after the other
                            with cgutils.for_range(builder, in_block) as copy:
                                a = builder.add(builder.add(a_off, builder.mul(
                                    builder.add(s0, copy.index), a_ld)), i0)
                                for v in range(count):
                                    builder.store(load(A, builder.add(a, i64(v * L)), vmasks[v]),
                                                  builder.gep(packed, [builder.add(
                                                      builder.mul(copy.index, i64(V)), i64(v))]))
                with cgutils.for_range(builder, in_group) as group:
                    jj = group.index
                    j = builder.add(j0, jj)
                    slots = [builder.gep(tile, [builder.add(builder.mul(jj, i64(V)), i64(v))])
                             for v in range(count)]
                    for v in range(count):
                        builder.store(builder.select(first, zero, builder.load(slots[v])), sums[v])
                    builder.store(builder.load(builder.gep(masks, [
                        builder.add(builder.mul(b, n), j)])), remaining)
                    test = builder.append_basic_block("samples")
                    body = builder.append_basic_block("sample")
                    done = builder.append_basic_block("samples_done")
                    builder.branch(test)
                    builder.position_at_end(test)
                    m = builder.load(remaining)
                    builder.cbranch(builder.icmp_unsigned("!=", m, i64(0)), body, done)
                    builder.position_at_end(body)
                    s = builder.add(s0, builder.call(cttz, [m, i1(1)]))
                    builder.store(builder.and_(m, builder.sub(m, i64(1))), remaining)
                    g = _splat(builder, vector, builder.load(builder.gep(G, [
                        builder.add(builder.add(g_off, builder.mul(j, g_ld)), s)])))
                    a = builder.add(builder.add(a_off, builder.mul(s, a_ld)), i0)
                    for v in range(count):
                        if packed is None:
                            x = load(A, builder.add(a, i64(v * L)), vmasks[v])
                        else:
                            x = builder.load(builder.gep(packed, [builder.add(
                                builder.mul(builder.sub(s, s0), i64(V)), i64(v))]))
                        builder.store(_fmuladd(builder, g, x, builder.load(sums[v])), sums[v])
                    builder.branch(test)
                    builder.position_at_end(done)
                    for v in range(count):
                        builder.store(builder.load(sums[v]), slots[v])
            # (a loop over the vectors, not one copy each: the callback compiled in 1.4 s, now 0.7)
            limit = i64(count * L) if width is None else width
            if transposed:  # C's columns j0.. in rows i0..: L x L blocks of the tile transposed
                with cgutils.for_range_slice(builder, i64(0), in_group, i64(L)) as (jg, _):
                    columns = _min(builder, builder.sub(in_group, jg), i64(L))
                    lanes = _first_lanes(builder, columns, L)
                    full = builder.icmp_unsigned("==", columns, i64(L))
                    single = builder.icmp_unsigned("==", columns, i64(1))
                    with cgutils.for_range(builder, i64(count)) as vectors:
                        v = vectors.index
                        in_rows = clamp(builder.sub(limit, builder.mul(v, i64(L))))
                        with builder.if_then(builder.icmp_signed(">", in_rows, i64(0))):
                            block = _transpose(builder, [builder.load(builder.gep(tile, [
                                builder.add(builder.mul(builder.add(jg, i64(t)), i64(V)), v)]))
                                for t in range(L)])
                            for r in range(L):
                                builder.store(block[r], builder.gep(column, [i64(r)]))
                            with cgutils.for_range(builder, in_rows) as loop:
                                r = loop.index
                                offset = builder.add(builder.add(c_off, builder.mul(builder.add(
                                    builder.add(i0, builder.mul(v, i64(L))), r), ldc)),
                                    builder.add(j0, jg))
                                result(offset, builder.load(builder.gep(column, [r])), lanes, full,
                                       single)
            else:  # C's rows j0.., columns i0..
                with cgutils.for_range(builder, in_group) as group:
                    row = builder.add(c_off, builder.mul(builder.add(j0, group.index), ldc))
                    with cgutils.for_range(builder, i64(count)) as vectors:
                        v = vectors.index
                        columns = clamp(builder.sub(limit, builder.mul(v, i64(L))))
                        with builder.if_then(builder.icmp_signed(">", columns, i64(0))):
                            sums_v = builder.load(builder.gep(tile, [
                                builder.add(builder.mul(group.index, i64(V)), v)]))
                            offset = builder.add(row, builder.add(i0, builder.mul(v, i64(L))))
                            result(offset, sums_v, _first_lanes(builder, columns, L),
                                   builder.icmp_unsigned("==", columns, i64(L)),
                                   builder.icmp_unsigned("==", columns, i64(1)))

    def result(offset, sums, lanes, full, single):
        """C's L elements at offset (its first lanes) = alpha sums + (beta C)."""
        scale = _splat(builder, vector, alpha)
        with builder.if_else(with_beta) as (add, overwrite):
            with add:  # alpha sum + (beta C), fused: as OpenBLAS's dgemm
                kept = builder.fmul(_splat(builder, vector, beta), load(C, offset, lanes))
                _store(builder, _fmuladd(builder, scale, sums, kept), C, offset, at, True, full,
                       single, lanes)
            with overwrite:  # C not read: (0 * NaN)
                _store(builder, builder.fmul(scale, sums), C, offset, at, True, full, single,
                       lanes)

    with_beta = builder.fcmp_unordered("!=", beta, element(0))
    with cgutils.for_range_slice(builder, i_start, i_stop, i64(CH)) as (i0, _):
        width = builder.sub(i_stop, i0)
        with builder.if_else(builder.icmp_signed(">=", width, i64(CH))) as (whole, part):
            with whole:
                chunk(i0, None, V)
            with part:
                with builder.if_else(builder.icmp_signed("<=", width, i64(2 * L))) as (few, more):
                    with few:
                        chunk(i0, width, 2)
                    with more:
                        chunk(i0, width, V)
    builder.ret_void()
    return fn


def _kernel(transposed, a_transposed=False):
    """The kernel as an intrinsic (see sparse_gradient, sparse_product and
    sparse_product_at)."""
    @intrinsic
    def kernel(typingctx, A, a_off, a_ld, G, g_off, g_ld, C, c_off, ldc, i_start, i_stop, rows, n,
               alpha, beta):
        if not (isinstance(A, types.Array) and isinstance(G, types.Array)
                and isinstance(C, types.Array) and A.dtype == G.dtype == C.dtype
                and C.dtype in (types.float32, types.float64)):
            return None
        sig = types.void(A, a_off, a_ld, G, g_off, g_ld, C, c_off, ldc, i_start, i_stop, rows, n,
                         alpha, beta)

        def codegen(context, builder, signature, args):
            dtype = signature.args[6].dtype
            integers = [context.cast(builder, args[i], signature.args[i], types.int64)
                        for i in (1, 2, 4, 5, 7, 8, 9, 10, 11, 12)]
            scalars = [context.cast(builder, args[i], signature.args[i], dtype) for i in (13, 14)]
            A_, G_, C_ = (context.make_array(signature.args[i])(context, builder, args[i]).data
                          for i in (0, 3, 6))
            fn = _define(builder.module, context.get_value_type(dtype), lanes_of(dtype),
                         transposed)
            a_off_, a_ld_, g_off_, g_ld_, c_off_, ldc_, start, stop, rows_, n_ = integers
            builder.call(fn, [A_, a_off_, a_ld_, G_, g_off_, g_ld_, C_, c_off_, ldc_, start, stop,
                              rows_, n_] + scalars + [ir.IntType(1)(a_transposed)])
            return context.get_dummy_value()
        return sig, codegen
    return kernel


# (A, a_off, a_ld, G, g_off, g_ld, C, c_off, ldc, i_start, i_stop, rows, n, alpha, beta):
# G (n, rows) at g_off with row length g_ld holds the sparse operand, one row per j;
# beta = 0 does not read C.
# C (fan_in, n)[i_start:i_stop] = alpha (G @ A).T + beta C: the weight gradient A.T @ D, D
# given transposed as G
sparse_gradient = _kernel(True)
# C (n, fan_in)[:, i_start:i_stop] = alpha G @ A + beta C: a layer's forward product, G the
# relu activations it takes (half of them zero) and A its W
sparse_product = _kernel(False)
# The same with A given as A.T (fan_in, rows) at a_off, row length a_ld, and its rows
# i_start.. used: the input gradient D @ W.T through a relu layer, G its deltas (half of
# them zero) and A.T its W
sparse_product_at = _kernel(False, True)


# The kernels behind BLAS's interface, as small_gemm.py's loops (and for the same reason:
# _blas.py compiles them once per dtype as a C callback, which kernels call through a cell;
# inside each kernel, their IR made a cold compile longer every time). Fortran's order, the
# first flag the product (GRADIENT: sparse_gradient, PRODUCT: sparse_product, PRODUCT_AT:
# sparse_product_at): _blas.sparse calls (mode, N, n, width, rows, alpha, G, g_ld, A, a_ld,
# beta, C, ldc), each matrix at the start of the part it works on.
GRADIENT, PRODUCT, PRODUCT_AT = np.int8(ord("G")), np.int8(ord("P")), np.int8(ord("T"))
NOT_TRANSPOSED = np.int8(ord("N"))


def from_fortran(mode, unused, n, width, rows, alpha, g, g_ld, a, a_ld, beta, c, ldc):
    G = array_at(g, _extent(n[0], rows[0], g_ld[0]))
    if mode[0] == GRADIENT:
        A = array_at(a, _extent(rows[0], width[0], a_ld[0]))
        C = array_at(c, _extent(width[0], n[0], ldc[0]))
        sparse_gradient(A, 0, a_ld[0], G, 0, g_ld[0], C, 0, ldc[0], 0, width[0], rows[0], n[0],
                        alpha[0], beta[0])
        return
    C = array_at(c, _extent(n[0], width[0], ldc[0]))
    if mode[0] == PRODUCT:
        A = array_at(a, _extent(rows[0], width[0], a_ld[0]))
        sparse_product(A, 0, a_ld[0], G, 0, g_ld[0], C, 0, ldc[0], 0, width[0], rows[0], n[0],
                       alpha[0], beta[0])
    else:
        A = array_at(a, _extent(width[0], rows[0], a_ld[0]))
        sparse_product_at(A, 0, a_ld[0], G, 0, g_ld[0], C, 0, ldc[0], 0, width[0], rows[0],
                          n[0], alpha[0], beta[0])


@jit(inline="always")
def chunk_columns(itemsize):
    """CH for elements of `itemsize` bytes."""
    return V * VECTOR_BYTES // itemsize


@jit(inline="always")
def masks_fit(rows, n):
    """Whether the masks of D (rows, n) fit on the stack (MAX_MASKS)."""
    return n * ((rows + SB - 1) // SB) <= MAX_MASKS


if config.DISABLE_JIT:  # kernels run as Python (coverage, tests that swap a helper)
    def _view(buffer, offset, r, c, ld):
        return np.lib.stride_tricks.as_strided(buffer[offset:], (r, c),
                                               (ld * buffer.itemsize, buffer.itemsize))

    def sparse_gradient(A, a_off, a_ld, G, g_off, g_ld, C, c_off, ldc, i_start, i_stop, rows, n,
                        alpha, beta):
        """The same product in NumPy, on views of the buffers."""
        a = _view(A, a_off + i_start, rows, i_stop - i_start, a_ld)
        target = _view(C, c_off + i_start * ldc, i_stop - i_start, n, ldc)
        target[...] = alpha * (a.T @ _view(G, g_off, n, rows, g_ld).T) + (beta * target if beta
                                                                           else 0)

    def sparse_product(A, a_off, a_ld, G, g_off, g_ld, C, c_off, ldc, i_start, i_stop, rows, n,
                       alpha, beta):
        """The same product in NumPy, on views of the buffers."""
        a = _view(A, a_off + i_start, rows, i_stop - i_start, a_ld)
        target = _view(C, c_off + i_start, n, i_stop - i_start, ldc)
        target[...] = alpha * (_view(G, g_off, n, rows, g_ld) @ a) + (beta * target if beta
                                                                       else 0)

    def sparse_product_at(A, a_off, a_ld, G, g_off, g_ld, C, c_off, ldc, i_start, i_stop, rows,
                          n, alpha, beta):
        """The same product in NumPy, on views of the buffers."""
        a = _view(A, a_off + i_start * a_ld, i_stop - i_start, rows, a_ld).T
        target = _view(C, c_off + i_start, n, i_stop - i_start, ldc)
        target[...] = alpha * (_view(G, g_off, n, rows, g_ld) @ a) + (beta * target if beta
                                                                       else 0)
