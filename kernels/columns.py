"""A small layer's per-column loops, eight columns at a time, as LLVM vectors.

After a small product, the bias (and relu) go down all the rows of a block of eight
columns, the eight biases held in one vector; the bias gradient sums a block of eight
columns over the rows in one vector. numba compiled these, written as eight scalars
side by side, to scalar instructions (vaddsd, vmaxsd), which LLVM's SLP vectoriser did
not join; here each row of the block is one vector load, operation and store. Each
element gets the same operations in the same order as the scalar code (per column, rows
in order), so the same bits. Measured (Zen 4, 1 thread, a partial_fit call, alternating
processes, against the eight scalars): digits 64-32-10 float64 534-540 -> 509-514 us,
float32 342-345 -> 312-318 us; 13-8-1 at batch 32 float32 23.3-23.8 -> 21.9-22.7 us. The
logits of 8 to 63 outputs (digits' 10) go down their columns here too, not a row at a
time; a cold compile came out 0.3-0.8 s shorter.

Legend:  rows  rows of the block;  eight  columns, a multiple of 8 (the caller runs the
    rest);  a matrix M (rows, >= eight) at m_off with row length m_ld in a flat buffer
    Z  a layer's outputs;  params  its biases at b_off;  D  its deltas;  grads  the bias
    gradient at g_off
"""
import numpy as np
from llvmlite import ir
from numba import config, types
from numba.core import cgutils
from numba.extending import intrinsic

from .small_gemm import _fmuladd, _splat

WIDTH = 8  # columns a vector holds


def _pointers(context, builder, signature, args, arrays):
    return [context.make_array(signature.args[i])(context, builder, args[i]).data for i in arrays]


def _integers(context, builder, signature, args, which):
    return [context.cast(builder, args[i], signature.args[i], types.int64) for i in which]


def _vector_at(builder, data, offset, vector):
    return builder.bitcast(builder.gep(data, [offset]), vector.as_pointer())


@intrinsic
def add_bias_columns(typingctx, Z, z_off, z_ld, params, b_off, rows, eight, relu):
    """Z[r, j] += bias[j], then relu (Z < 0 becomes 0; NaN stays: NaN < 0 is False) if
    relu, for the first `eight` columns."""
    sig = types.void(Z, z_off, z_ld, params, b_off, rows, eight, relu)

    def codegen(context, builder, signature, args):
        Z_data, p_data = _pointers(context, builder, signature, args, (0, 3))
        z_off, z_ld, b_off, rows, eight = _integers(context, builder, signature, args,
                                                    (1, 2, 4, 5, 6))
        with_relu = context.cast(builder, args[7], signature.args[7], types.boolean)
        element = context.get_value_type(signature.args[0].dtype)
        vector = ir.VectorType(element, WIDTH)
        i64 = ir.IntType(64)
        zero = ir.Constant(vector, None)
        with cgutils.for_range_slice(builder, i64(0), eight, i64(WIDTH)) as (j, _):
            bias = builder.load(_vector_at(builder, p_data, builder.add(b_off, j), vector),
                                align=1)
            start = builder.add(z_off, j)

            def down_the_rows(relu):
                with cgutils.for_range(builder, rows) as loop:
                    at = _vector_at(builder, Z_data,
                                    builder.add(start, builder.mul(loop.index, z_ld)), vector)
                    value = builder.fadd(builder.load(at, align=1), bias)
                    if relu:
                        value = builder.select(builder.fcmp_ordered("<", value, zero), zero, value)
                    builder.store(value, at, align=1)

            with builder.if_else(with_relu) as (relu, identity):
                with relu:
                    down_the_rows(True)
                with identity:
                    down_the_rows(False)
        return context.get_dummy_value()
    return sig, codegen


@intrinsic
def sum_columns(typingctx, grads, g_off, D, d_off, d_ld, rows, eight):
    """grads[g_off + j] = 0 + D[0, j] + D[1, j] + ... (rows in order) for the first
    `eight` columns."""
    sig = types.void(grads, g_off, D, d_off, d_ld, rows, eight)

    def codegen(context, builder, signature, args):
        g_data, D_data = _pointers(context, builder, signature, args, (0, 2))
        g_off, d_off, d_ld, rows, eight = _integers(context, builder, signature, args,
                                                    (1, 3, 4, 5, 6))
        element = context.get_value_type(signature.args[0].dtype)
        vector = ir.VectorType(element, WIDTH)
        i64 = ir.IntType(64)
        with cgutils.for_range_slice(builder, i64(0), eight, i64(WIDTH)) as (j, _):
            total = cgutils.alloca_once_value(builder, ir.Constant(vector, None))
            start = builder.add(d_off, j)
            with cgutils.for_range(builder, rows) as loop:
                at = _vector_at(builder, D_data, builder.add(start, builder.mul(loop.index, d_ld)),
                                vector)
                builder.store(builder.fadd(builder.load(total), builder.load(at, align=1)), total)
            builder.store(builder.load(total),
                          _vector_at(builder, g_data, builder.add(g_off, j), vector), align=1)
        return context.get_dummy_value()
    return sig, codegen


@intrinsic
def dot_columns(typingctx, Z, z, A, a, params, w_off, n_in, n_out, eight):
    """Z[z + j] = A[a:a + n_in] @ W[:, j] for the first `eight` columns of W (n_in, n_out)
    at w_off in params: each a sum over k in order of fused multiply-adds from 0, as the
    scalar loop `s += A[a + k] * W[k, j]` compiles (fastmath's contract), eight sums in
    one vector, each step one broadcast of A[a + k] and one load of W's row."""
    sig = types.void(Z, z, A, a, params, w_off, n_in, n_out, eight)

    def codegen(context, builder, signature, args):
        Z_data, A_data, p_data = _pointers(context, builder, signature, args, (0, 2, 4))
        z, a, w_off, n_in, n_out, eight = _integers(context, builder, signature, args,
                                                    (1, 3, 5, 6, 7, 8))
        element = context.get_value_type(signature.args[0].dtype)
        vector = ir.VectorType(element, WIDTH)
        i64 = ir.IntType(64)
        with cgutils.for_range_slice(builder, i64(0), eight, i64(WIDTH)) as (j, _):
            total = cgutils.alloca_once_value(builder, ir.Constant(vector, None))
            first = builder.add(w_off, j)
            with cgutils.for_range(builder, n_in) as loop:
                k = loop.index
                xs = _splat(builder, vector, builder.load(builder.gep(A_data, [builder.add(a, k)])))
                w = builder.load(_vector_at(builder, p_data,
                                            builder.add(first, builder.mul(k, n_out)), vector),
                                 align=1)
                builder.store(_fmuladd(builder, xs, w, builder.load(total)), total)
            builder.store(builder.load(total),
                          _vector_at(builder, Z_data, builder.add(z, j), vector), align=1)
        return context.get_dummy_value()
    return sig, codegen


if config.DISABLE_JIT:  # kernels run as Python (coverage, tests that swap a helper)
    def add_bias_columns(Z, z_off, z_ld, params, b_off, rows, eight, relu):
        """The same loops in NumPy, a row at a time."""
        z_off, z_ld, b_off, rows, eight = (int(v) for v in (z_off, z_ld, b_off, rows, eight))
        for r in range(rows):
            z = z_off + r * z_ld
            value = Z[z:z + eight] + params[b_off:b_off + eight]
            Z[z:z + eight] = np.where(value < 0, 0, value) if relu else value

    def sum_columns(grads, g_off, D, d_off, d_ld, rows, eight):
        """The same sums in NumPy, the rows in order."""
        g_off, d_off, d_ld, rows, eight = (int(v) for v in (g_off, d_off, d_ld, rows, eight))
        total = np.zeros(eight, D.dtype)
        for r in range(rows):
            total += D[d_off + r * d_ld:d_off + r * d_ld + eight]
        grads[g_off:g_off + eight] = total

    def dot_columns(Z, z, A, a, params, w_off, n_in, n_out, eight):
        """The same products in NumPy (not fused: other last bits)."""
        z, a, w_off, n_in, n_out, eight = (int(v) for v in (z, a, w_off, n_in, n_out, eight))
        W = params[w_off:w_off + n_in * n_out].reshape(n_in, n_out)[:, :eight]
        Z[z:z + eight] = A[a:a + n_in] @ W
