"""Fully connected layers over flat buffers: forward with a fused bias +
activation epilogue, and the backward products.

Buffers are 1-D and matrices are addressed by offset and row stride: M (r, c)
at `off` with stride ld (>= c) has row i at off + i*ld. Small products run as
hand-written loops indexed straight into the flat buffers (no views: see _config
for the unsigned indices that let them vectorise). The layer functions are inlined
into their callers, as a call passes each array as seven words on the stack. Larger
products call BLAS's gemm on the flat buffers (_blas.py), which needs no views and
takes alpha and beta: a plain SGD step lands in the weights straight from the
weight-gradient product.
Which path runs is decided by size alone, never by thread count.

Legend:  b  rows,  i  fan_in,  o  fan_out
    A (b, i)  layer input at a_off, stride a_ld      W (i, o) at w_off,  bias (o,) at b_off
    Z (b, o)  layer output at z_off, stride z_ld               (in params, stride o)
    D (b, o)  deltas (dL/dZ) at d_off, stride d_ld  dA (b, i) at da_off, stride da_ld
    dW, dbias in grads at w_off, b_off
    scratch   grads, whose layer part at w_off is free while the input gradient runs
    parallel  None: run large products' blocks one after the other (see product)
"""
import numpy as np
from numba import prange

from ._blas import gemm, sparse
from ._config import (BLAS_MIN_MACS, CHUNKS, FLOAT32_FORWARD_ROW_SPLIT_MIN_ROWS, PARALLEL_MIN_MACS,
                      SPARSE_MIN_MACS, TRANSPOSED_W_MAX_MACS, index, inner_jit, jit,
                      parallel_inner_jit)
from ._memory import read_only
from ._openblas import ROW_MULTIPLE_FLOAT32, ROW_MULTIPLE_FLOAT64, ROW_SPLIT_EXACT
from .activations import IDENTITY, RELU, activate, derivative_from_output
from .columns import add_bias_columns, dot_columns, sum_columns
from .sparse_gradient import GRADIENT, PRODUCT, PRODUCT_AT, SB, chunk_columns, masks_fit


@inner_jit
def use_blas(rows, fan_in, fan_out):
    return rows * fan_in * fan_out >= BLAS_MIN_MACS


DENSE = np.int8(0)  # gemm_block's mode for BLAS's products

# numba compiles a callee anew for each literal argument (a False here, a True
# there, a 0.0): the product path takes its flags and scalars as plain values,
# so it compiles once per dtype (measured: 4 specialisations cost ~2 s).
flag, scalar = np.bool_, np.float64


@inner_jit
def row_boundary(m, c, itemsize):
    """Where row block c of CHUNKS of C's m rows starts: at the multiple of
    ROW_MULTIPLE_FLOAT64 or _FLOAT32 nearest an even split (see the serial path in product)."""
    if c >= CHUNKS:
        return m
    multiple = ROW_MULTIPLE_FLOAT64 if itemsize == 8 else ROW_MULTIPLE_FLOAT32
    return min(m, (m * c // CHUNKS + multiple // 2) // multiple * multiple)


# Large products are split into CHUNKS fixed blocks of C, one single-threaded
# gemm each, run in parallel: blocks of rows (split_columns False) or of columns.
# Every element of C is then computed by the same call whatever the thread
# count (or, in the serial kernels, by one call for all of C where that changes no
# bit: see product), and no block sums into another's elements (the weight gradient
# splits by fan_in, not by batch rows). Which way is measured (1 thread, mnist, wide and
# deep shapes): by rows for the weight gradient and for float64 forward
# products, by columns for input gradients and float32 forward products of fewer
# than FLOAT32_FORWARD_ROW_SPLIT_MIN_ROWS rows (_config); the other way was 3-15% slower.
@inner_jit
def gemm_block(c, split_columns, mode, trans_a, trans_b, m, n, k, alpha, A, a_off, lda, B, b_off,
               ldb, beta, C, c_off, ldc):
    """Block c of CHUNKS of the product (see above). mode GRADIENT, PRODUCT or PRODUCT_AT:
    one of sparse_gradient.py's products instead, with B as its sparse operand G (n, k) and
    m of A's columns, split by those in chunks of CH (one parallel kernel serves them all:
    each compiles in ~1.4 s)."""
    if mode != DENSE:
        width = chunk_columns(C.itemsize)
        chunks = (m + width - 1) // width
        i0 = min(m, chunks * c // CHUNKS * width)
        i1 = min(m, chunks * (c + 1) // CHUNKS * width)
        sparse(mode, A, a_off, lda, B, b_off, ldb, C, c_off, ldc, i0, i1, k, n, alpha, beta)
    elif split_columns:  # columns c0.. of op(B) and C: columns of B, or rows if transposed
        c0, c1 = n * c // CHUNKS, n * (c + 1) // CHUNKS
        gemm(trans_a, trans_b, m, c1 - c0, k, alpha, A, a_off, lda, B,
             b_off + (c0 * ldb if trans_b else c0), ldb, beta, C, c_off + c0, ldc)
    else:  # rows r0.. of op(A) and C: rows of A, or columns if transposed
        r0, r1 = row_boundary(m, c, C.itemsize), row_boundary(m, c + 1, C.itemsize)
        gemm(trans_a, trans_b, r1 - r0, n, k, alpha, A, a_off + (r0 if trans_a else r0 * lda), lda,
             B, b_off, ldb, beta, C, c_off + r0 * ldc, ldc)


@parallel_inner_jit
def gemm_in_blocks(split_columns, mode, trans_a, trans_b, m, n, k, alpha, A, a_off, lda, B, b_off,
                   ldb, beta, C, c_off, ldc):
    for c in prange(CHUNKS):
        # prange's index is unsigned, range's (in product) signed: as int64 in both,
        # gemm_block compiles once, not twice (~0.15 s of a cold compile)
        gemm_block(np.int64(c), split_columns, mode, trans_a, trans_b, m, n, k, alpha, A, a_off,
                   lda, B, b_off, ldb, beta, C, c_off, ldc)


@inner_jit
def product(parallel, split_columns, trans_a, trans_b, m, n, k, alpha, A, a_off, lda, B, b_off,
            ldb, beta, C, c_off, ldc):
    """gemm (see _blas.py); from PARALLEL_MIN_MACS multiply-adds up in CHUNKS blocks, run
    in parallel, or one after the other when `parallel` is None. numba drops the branch
    a None rules out when it compiles, so the serial kernels never compile the
    parallel ones (which costs seconds) and give the same bits."""
    # (B read-only, as the sparse products' G: gemm, gemm_block and the one parallel kernel
    # compile once for both; tests/test_threads.py)
    B_ = read_only(B)
    if m * n * k < PARALLEL_MIN_MACS:
        gemm(trans_a, trans_b, m, n, k, alpha, A, a_off, lda, B_, b_off, ldb, beta, C, c_off, ldc)
    elif parallel is None and ROW_SPLIT_EXACT and not split_columns:
        # one call, with the bits of the row blocks (_openblas.ROW_SPLIT_EXACT), and
        # the shared operand copied into OpenBLAS's packed form once, not per block
        gemm(trans_a, trans_b, m, n, k, alpha, A, a_off, lda, B_, b_off, ldb, beta, C, c_off, ldc)
    elif parallel is None:
        for c in range(CHUNKS):
            gemm_block(c, split_columns, DENSE, trans_a, trans_b, m, n, k, alpha, A, a_off, lda, B_,
                       b_off, ldb, beta, C, c_off, ldc)
    else:
        gemm_in_blocks(split_columns, DENSE, trans_a, trans_b, m, n, k, alpha, A, a_off, lda, B_,
                       b_off, ldb, beta, C, c_off, ldc)


@jit(inline="always")
def dense_forward(Z, z_off, z_ld, A, a_off, a_ld, params, w_off, b_off, rows, fan_in, fan_out,
                  has_bias, activation, relu_input, parallel):
    """Z = f(A @ W + bias). relu_input: A is a relu layer's activations, about half of them
    zero, which sparse_w_product skips where the layer is large enough."""
    blas = use_blas(rows, fan_in, fan_out)
    if blas and relu_input and use_sparse(fan_in, fan_out, rows, Z.itemsize):
        # (G read-only from both callers, and i_start an int64 in both calls of sparse below:
        # each compiles once per dtype)
        sparse_w_product(PRODUCT, Z, z_off, z_ld, read_only(A), a_off, a_ld, params, w_off, rows,
                         fan_out, fan_in, parallel)
    elif blas:
        # float32 by rows only where that saves the serial kernels a call (_config)
        by_columns = Z.itemsize == 4 and (rows < FLOAT32_FORWARD_ROW_SPLIT_MIN_ROWS
                                          or not ROW_SPLIT_EXACT)
        product(parallel, flag(by_columns), flag(False), flag(False), rows, fan_out, fan_in,
                scalar(1.0), A, a_off, a_ld, params, w_off, fan_out, scalar(0.0), Z, z_off, z_ld)
    n_in, n_out, bias = index(fan_in), index(fan_out), index(b_off)
    zero = Z.dtype.type(0)
    # the first multiple of eight outputs: the loops below take those eight at a time
    eight = n_out // index(8) * index(8)
    # bias (+ relu) of a small layer after gemm: eight columns at a time down all the
    # rows, their biases in a vector (columns.py), not a short loop per row (13-8-1 at
    # batch 32: compiled epoch ~14.0 -> ~12.9 us as eight scalars, alternating
    # processes); a wide one's rows are long loops
    by_columns = (blas and has_bias and (activation == RELU or activation == IDENTITY)
                  and n_out < index(64))
    if by_columns:
        add_bias_columns(Z, z_off, z_ld, params, b_off, rows, eight, activation == RELU)
        if activation == IDENTITY:
            # the last few outputs with no activation (the logits): each bias down its
            # column, in one loop over the rows, not a short loop per row
            for j in range(eight, n_out):
                b = params[bias + j]
                for r in range(index(rows)):
                    Z[index(z_off) + r * index(z_ld) + j] += b
            return
        if eight == n_out:
            return
    for r in range(index(rows)):
        z = index(z_off) + r * index(z_ld)
        if not blas:
            # dot products summed in registers, eight outputs at a time: accumulating
            # into Z waited on a store per multiply-add, and one output at a time on
            # the previous multiply-add (measured, 13-8-1 at batch 1: 229 and 199 ns/sample
            # against 178; four at a time 202). The eight in one vector (columns.py), not
            # eight scalars: the compiled epoch 50.7-52.1 -> 48.8-49.3 us (median of six
            # code copies, 2 processes each)
            a = index(a_off) + r * index(a_ld)
            dot_columns(Z, z, A, a, params, w_off, n_in, n_out, eight)
            for j in range(eight, n_out):
                s = zero
                w = index(w_off) + j
                for k in range(n_in):
                    s += A[a + k] * params[w + k * n_out]
                Z[z + j] = s
        if has_bias and activation == RELU:
            # one pass for bias and relu, not two (a row of a small layer is a short loop;
            # a NaN stays NaN: NaN < 0 is False)
            for j in range(eight if by_columns else index(0), n_out):
                v = Z[z + j] + params[bias + j]
                Z[z + j] = zero if v < zero else v
            continue
        if has_bias:
            for j in range(n_out):
                Z[z + j] += params[bias + j]
        activate(Z, z, fan_out, activation)


# Called, not inlined into the backward pass: numba copies an inlined function's IR
# block by block with all its variables (network.py), and inlined (twice over: the
# backward pass is inlined in its turn) these loops made a cold compile ~1 s longer
# (13-8-1, alternating processes; with one_sigmoid_delta, losses.py).
@inner_jit
def bias_gradient(grads, D, d_off, d_ld, b_off, rows, fan_out):
    """dbias (at b_off in grads) = the column sums of D (rows, fan_out), each over the
    rows in order."""
    n_out, bias, zero = index(fan_out), index(b_off), D.dtype.type(0)
    if n_out < index(64):
        # up to 63 outputs: each sum in a register, not a store and a load per row and
        # output (backward pass of tiny 13-8-1 at batch 32 554-584 -> 398-432 ns, digits
        # 64-32-10 4020-4450 -> 3720-3800, side by side), eight sums side by side in a
        # vector (columns.py): one alone waits on its previous add at every row. Larger
        # layers vectorise over the outputs, below.
        eight = n_out // index(8) * index(8)
        sum_columns(grads, b_off, D, d_off, d_ld, rows, eight)
        for j in range(eight, n_out):
            total = zero
            for r in range(index(rows)):
                total += D[index(d_off) + r * index(d_ld) + j]
            grads[bias + j] = total
        return
    for j in range(n_out):
        grads[bias + j] = 0
    for r in range(index(rows)):
        d = index(d_off) + r * index(d_ld)
        for j in range(n_out):
            grads[bias + j] += D[d + j]


@inner_jit
def use_sparse(depth, columns, n, itemsize):
    """Whether a product with a relu layer's values as one operand skips their zeros
    (sparse_gradient.py): the deltas of the weight gradient (sums over depth = the rows, the
    other operand's columns = fan_in, n = fan_out) or the activations forward (over fan_in,
    W's fan_out columns, n = the rows). From SPARSE_MIN_MACS multiply-adds, a block (SB) of
    depth and two chunks (CH) of columns up. Below those, OpenBLAS ran as fast or faster
    (weight gradients, float64 8x128x128 6.1 against 8.3 us, 128x32x32 4.6 against 8.3,
    float32 64x200x100 23.6 against 28.1; 1x784x256 32.5 against 115)."""
    return (depth >= SB and depth * columns * n >= SPARSE_MIN_MACS
            and columns >= 2 * chunk_columns(itemsize) and masks_fit(depth, n))


@inner_jit
def sparse_weight_gradient(A, a_off, a_ld, D, d_off, d_ld, G, g_off, C, c_off, rows, fan_in,
                           fan_out, alpha, beta, parallel):
    """C (fan_in, fan_out) = alpha A.T @ D + beta C over D's nonzero terms
    (sparse_gradient.py), D first copied transposed into G (fan_out x rows at g_off).
    Each element's sum is the same whatever the split, so any thread count gives the
    same bits."""
    transpose(G, g_off, D, d_off, d_ld, rows, fan_out)
    # (the operands' types as in the other products': gemm_in_blocks compiles once)
    if parallel is None or rows * fan_in * fan_out < PARALLEL_MIN_MACS:
        sparse(GRADIENT, read_only(A), a_off, a_ld, read_only(G), g_off, rows, C, c_off, fan_out,
               np.int64(0), fan_in, rows, fan_out, alpha, beta)
    else:
        gemm_in_blocks(flag(False), GRADIENT, flag(True), flag(False), fan_in, fan_out, rows,
                       alpha, read_only(A), a_off, a_ld, read_only(G), g_off, rows, beta, C,
                       c_off, fan_out)


@inner_jit
def sparse_w_product(mode, C, c_off, ldc, G, g_off, g_ld, params, w_off, rows, width, depth,
                     parallel):
    """C (rows, width) = G @ W over G's nonzero terms, G (rows, depth): with mode PRODUCT,
    a relu layer's activations times the next layer's W (depth, width)
    (sparse_gradient.sparse_product); with PRODUCT_AT, a relu layer's deltas times its W.T,
    W (width, depth) (sparse_product_at: the input gradient). Split as
    sparse_weight_gradient, by C's columns."""
    w_ld = width if mode == PRODUCT else depth
    if parallel is None or rows * width * depth < PARALLEL_MIN_MACS:
        sparse(mode, read_only(params), w_off, w_ld, read_only(G), g_off, g_ld, C, c_off, ldc,
               np.int64(0), width, depth, rows, scalar(1.0), scalar(0.0))
    else:
        gemm_in_blocks(flag(False), mode, flag(False), flag(False), width, rows, depth,
                       scalar(1.0), read_only(params), w_off, w_ld, read_only(G), g_off, g_ld,
                       scalar(0.0), C, c_off, ldc)


@jit(inline="always")
def dense_backward_params(grads, A, a_off, a_ld, D, d_off, d_ld, params, w_off, b_off, rows,
                          fan_in, fan_out, decay, has_bias, lr, relu_deltas, free, f_off, parallel):
    """dW = A.T @ D + decay * W;  dbias = column sums of D.
    lr > 0: plain SGD instead, params -= lr * gradient, with no gradient buffer for
    the weights: W = (1 - lr decay) W - lr A.T @ D, in gemm or in the loops here
    (grads then holds the bias gradient only, for this layer).
    relu_deltas: D is a relu layer's deltas, about half of them zero, which
    sparse_weight_gradient skips where the layer is large enough (use_sparse); it then
    overwrites `free`'s rows x fan_out elements from f_off on."""
    n_in, n_out = index(fan_in), index(fan_out)
    weights = range(index(w_off), index(w_off + fan_in * fan_out))
    # (rows first: a plain comparison, where a small model's batch of one row ends)
    if relu_deltas and rows >= SB and use_sparse(rows, fan_in, fan_out, D.itemsize):
        if lr > 0:
            sparse_weight_gradient(A, a_off, a_ld, D, d_off, d_ld, free, f_off, params, w_off,
                                   rows, fan_in, fan_out, scalar(-lr), scalar(1.0 - lr * decay),
                                   parallel)
        else:
            sparse_weight_gradient(A, a_off, a_ld, D, d_off, d_ld, free, f_off, grads, w_off,
                                   rows, fan_in, fan_out, scalar(1.0), scalar(0.0), parallel)
            if decay != 0:
                for p in weights:
                    grads[p] += decay * params[p]
    elif use_blas(rows, fan_in, fan_out):
        if lr > 0:
            product(parallel, flag(False), flag(True), flag(False), fan_in, fan_out, rows,
                    scalar(-lr), A, a_off, a_ld, D, d_off, d_ld, scalar(1.0 - lr * decay),
                    params, w_off, fan_out)
        else:
            product(parallel, flag(False), flag(True), flag(False), fan_in, fan_out, rows,
                    scalar(1.0), A, a_off, a_ld, D, d_off, d_ld, scalar(0.0), grads, w_off,
                    fan_out)
            if decay != 0:
                for p in weights:
                    grads[p] += decay * params[p]
    elif lr > 0:
        if decay != 0:
            keep = 1.0 - lr * decay
            for p in weights:
                params[p] *= keep
        for r in range(index(rows)):
            a, d = index(a_off) + r * index(a_ld), index(d_off) + r * index(d_ld)
            if n_out < index(4):  # few outputs: the long loop runs over the inputs (same bits)
                for j in range(n_out):
                    dj, w = D[d + j], index(w_off) + j
                    for k in range(n_in):
                        params[w + k * n_out] += (-lr * A[a + k]) * dj
                continue
            for k in range(n_in):
                step, w = -lr * A[a + k], index(w_off) + k * n_out
                for j in range(n_out):
                    params[w + j] += step * D[d + j]
    else:
        for p in weights:
            grads[p] = decay * params[p]
        for r in range(index(rows)):
            a, d = index(a_off) + r * index(a_ld), index(d_off) + r * index(d_ld)
            for k in range(n_in):
                ak, g = A[a + k], index(w_off) + k * n_out
                for j in range(n_out):
                    grads[g + j] += ak * D[d + j]
    if has_bias:
        bias = index(b_off)
        if rows == 1:  # batch 1: each sum is 0 + the row's delta, as in bias_gradient (no call)
            for j in range(n_out):
                grads[bias + j] = D.dtype.type(0) + D[index(d_off) + j]
        else:
            bias_gradient(grads, D, d_off, d_ld, b_off, rows, fan_out)
        if lr > 0:
            for j in range(n_out):
                params[bias + j] -= lr * grads[bias + j]


# Called, not inlined into the backward pass, with the transposition inlined into it:
# of the ways tried, the one that added least to a cold compile (13-8-10, alternating
# processes, noisy: +0.3-0.7 s, against +0.7-1.5 s with both inlined into the backward
# pass, whose inlining dominates the epoch's compile).
@inner_jit
def input_gradient_product(dA, da_off, da_ld, D, d_off, d_ld, params, w_off, rows, fan_in, fan_out,
                           relu_deltas, scratch, parallel):
    """dA = D @ W.T in BLAS; small ones as D @ (W.T copied into scratch): see
    _config.TRANSPOSED_W_MAX_MACS (below PARALLEL_MIN_MACS: never split). relu_deltas: D is
    a relu layer's deltas, about half of them zero, which sparse_w_product skips where the
    layer is large enough (use_sparse)."""
    if relu_deltas and use_sparse(fan_out, fan_in, rows, D.itemsize):
        sparse_w_product(PRODUCT_AT, dA, da_off, da_ld, read_only(D), d_off, d_ld, params, w_off,
                         rows, fan_in, fan_out, parallel)
    elif rows * fan_in * fan_out < TRANSPOSED_W_MAX_MACS:
        transpose(scratch, w_off, params, w_off, fan_out, fan_in, fan_out)
        gemm(flag(False), flag(False), rows, fan_in, fan_out, scalar(1.0), read_only(D), d_off,
             d_ld, read_only(scratch), w_off, fan_in, scalar(0.0), dA, da_off, da_ld)
    else:
        # (read_only: the type of A in the other products, so the chain compiles once; _memory)
        product(parallel, flag(True), flag(False), flag(True), rows, fan_in, fan_out, scalar(1.0),
                read_only(D), d_off, d_ld, params, w_off, fan_out, scalar(0.0), dA, da_off, da_ld)


TILE = 16  # transpose's tiles: TILE rows of M, TILE columns


@jit(inline="always")
def transpose(T, t_off, M, m_off, m_ld, rows, cols):
    """T (cols, rows) at t_off = M (rows, cols) at m_off, row length m_ld, transposed, a
    tile at a time: each of M's cache lines is read once, not once per column. Read a
    column at a time, deep's 256x512 deltas took 292 us in float32 (rows 2 KiB apart, in
    two sets of the L1 cache) and 369 us in float64 with rows 4 KiB apart."""
    n_rows, n_cols, tile = index(rows), index(cols), index(TILE)
    for i0 in range(index(0), n_rows, tile):
        i1 = min(i0 + tile, n_rows)
        for j in range(n_cols):
            t = index(t_off) + j * n_rows
            for i in range(i0, i1):
                T[t + i] = M[index(m_off) + i * index(m_ld) + j]


@jit(inline="always")
def dense_backward_input(dA, da_off, da_ld, D, d_off, d_ld, params, w_off, A, a_off, a_ld, rows,
                         fan_in, fan_out, activation, relu_deltas, scratch, parallel):
    """dA = (D @ W.T) * f'(A), where A = f(z) is the layer input (IDENTITY: no factor).
    relu_deltas: D is a relu layer's deltas (see input_gradient_product).
    scratch[w_off:] (fan_in * fan_out elements) may be overwritten."""
    if use_blas(rows, fan_in, fan_out):
        input_gradient_product(dA, da_off, da_ld, D, d_off, d_ld, params, w_off, rows, fan_in,
                               fan_out, relu_deltas, scratch, parallel)
    else:
        n_in, n_out = index(fan_in), index(fan_out)
        for r in range(index(rows)):
            d, da = index(d_off) + r * index(d_ld), index(da_off) + r * index(da_ld)
            # D's row times W.T, one output at a time: each input's sum runs over the
            # outputs in order, as a dot product per input would, but the loops run over
            # the inputs and vectorise (13-8-1 at batch 1, where each dot product had one
            # term and relu skipped the dead units': 170 against 183 ns/sample, side by side)
            for k in range(n_in):
                dA[da + k] = 0
            for j in range(n_out):
                dj, w = D[d + j], index(w_off) + j
                for k in range(n_in):
                    dA[da + k] += dj * params[w + k * n_out]
    if activation != IDENTITY:
        one = dA.dtype.type(1)
        # row by row where the rows have gaps; else as one row, one loop
        gaps = da_ld != fan_in or a_ld != fan_in
        n_rows, length = (index(rows), index(fan_in)) if gaps else (index(1), index(rows * fan_in))
        for r in range(n_rows):
            da, a = index(da_off) + r * index(da_ld), index(a_off) + r * index(a_ld)
            for p in range(length):
                dA[da + p] *= derivative_from_output(A[a + p], activation, one)
