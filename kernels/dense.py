"""Fully connected layers over flat buffers: forward with a fused bias +
activation epilogue, and the backward products.

Buffers are 1-D and matrices are addressed by offset: M (r, c) at `off` has
row i at off + i*c. Small products run as hand-written loops over 1-D row
slices, indexed only by range() counters: a slice costs ~1 ns (numba's
reshape ~16-40 ns, which dominated a one-row mini-batch), and range counters
let the negative-index check fold away so the inner loops vectorise. Large
products call BLAS through np.dot(a, b, out) on 2-D views, which allocates
nothing when given `out`. Which path runs is decided by size alone, never by
thread count.

Legend:  b  rows,  i  fan_in,  o  fan_out
    A (b, i)  layer input at a_off       W (i, o) at w_off,  bias (o,) at b_off (in params)
    Z (b, o)  layer output at z_off      D (b, o) deltas (dL/dZ) at d_off
    dW, dbias in grads at w_off, b_off   dA (b, i) at da_off
"""
import numpy as np
from numba import prange

from ._config import BLAS_MIN_MACS, CHUNKS, PARALLEL_MIN_MACS, jit, parallel_jit
from .activations import IDENTITY, RELU, activate_row, derivative_from_output


@jit
def use_blas(rows, fan_in, fan_out):
    return rows * fan_in * fan_out >= BLAS_MIN_MACS


@jit
def matrix(buffer, offset, rows, cols):
    """The (rows, cols) C-ordered view at `offset` of a flat buffer (BLAS path)."""
    return buffer[offset:offset + rows * cols].reshape((rows, cols))


@jit
def row(buffer, offset, i, cols):
    """Row i of the (?, cols) matrix at `offset` of a flat buffer."""
    start = offset + i * cols
    return buffer[start:start + cols]


@jit
def add_bias_and_activate(Z, z_off, params, b_off, rows, fan_out, has_bias, activation):
    """The epilogue after a BLAS product: Z = f(Z + bias), row by row."""
    bias = params[b_off:b_off + fan_out]
    for r in range(rows):
        z = row(Z, z_off, r, fan_out)
        if has_bias:
            for j in range(fan_out):
                z[j] += bias[j]
        activate_row(z, activation)


@jit
def bias_grad(grads, b_off, D, d_off, rows, fan_out):
    """dbias = column sums of D (rows, fan_out)."""
    dbias = grads[b_off:b_off + fan_out]
    for j in range(fan_out):
        dbias[j] = 0
    for r in range(rows):
        d = row(D, d_off, r, fan_out)
        for j in range(fan_out):
            dbias[j] += d[j]


@jit
def dense_forward(Z, z_off, A, a_off, params, w_off, b_off, rows, fan_in, fan_out, has_bias,
                  activation):
    """Z = f(A @ W + bias)."""
    bias = params[b_off:b_off + fan_out]
    if use_blas(rows, fan_in, fan_out):
        np.dot(matrix(A, a_off, rows, fan_in), matrix(params, w_off, fan_in, fan_out),
               matrix(Z, z_off, rows, fan_out))
        add_bias_and_activate(Z, z_off, params, b_off, rows, fan_out, has_bias, activation)
        return
    for r in range(rows):
        z = row(Z, z_off, r, fan_out)
        a = row(A, a_off, r, fan_in)
        for j in range(fan_out):
            z[j] = bias[j] if has_bias else 0
        for k in range(fan_in):
            ak = a[k]
            w = row(params, w_off, k, fan_out)
            for j in range(fan_out):
                z[j] += ak * w[j]
        activate_row(z, activation)


@jit
def dense_backward_params(grads, A, a_off, D, d_off, params, w_off, b_off, rows, fan_in, fan_out,
                          decay, has_bias):
    """dW = A.T @ D + decay * W;  dbias = column sums of D."""
    size = fan_in * fan_out
    W, dW = params[w_off:w_off + size], grads[w_off:w_off + size]
    if use_blas(rows, fan_in, fan_out):
        np.dot(matrix(A, a_off, rows, fan_in).T, matrix(D, d_off, rows, fan_out),
               matrix(grads, w_off, fan_in, fan_out))
        if decay != 0:
            for p in range(size):
                dW[p] += decay * W[p]
    else:
        for p in range(size):
            dW[p] = decay * W[p]
        for r in range(rows):
            a = row(A, a_off, r, fan_in)
            d = row(D, d_off, r, fan_out)
            for k in range(fan_in):
                ak = a[k]
                g = row(grads, w_off, k, fan_out)
                for j in range(fan_out):
                    g[j] += ak * d[j]
    if has_bias:
        bias_grad(grads, b_off, D, d_off, rows, fan_out)


@jit
def dense_backward_input(dA, da_off, D, d_off, params, w_off, A, a_off, rows, fan_in, fan_out,
                         activation):
    """dA = (D @ W.T) * f'(A), where A = f(z) is the layer input (IDENTITY: no factor)."""
    if use_blas(rows, fan_in, fan_out):
        np.dot(matrix(D, d_off, rows, fan_out), matrix(params, w_off, fan_in, fan_out).T,
               matrix(dA, da_off, rows, fan_in))
        if activation != IDENTITY:
            da, a = dA[da_off:da_off + rows * fan_in], A[a_off:a_off + rows * fan_in]
            for p in range(rows * fan_in):
                da[p] *= derivative_from_output(a[p], activation)
        return
    for r in range(rows):
        d = row(D, d_off, r, fan_out)
        a = row(A, a_off, r, fan_in)
        da = row(dA, da_off, r, fan_in)
        for k in range(fan_in):
            if activation == RELU and a[k] <= 0:
                da[k] = 0  # relu' = 0: skip the dot product
                continue
            w = row(params, w_off, k, fan_out)
            s = 0.0
            for j in range(fan_out):
                s += d[j] * w[j]
            da[k] = s * derivative_from_output(a[k], activation)


# ----------------------------------------------------------------------------
# Large layers: each product split into CHUNKS fixed blocks of batch rows that
# run in parallel, one single-threaded BLAS call each. The weight gradient sums
# over rows, so each block writes a partial (block 0 into dW, the others into
# `partials`), added in block order afterwards. The bias, activation and
# derivative epilogues run serially: they cost a few percent of these layers.
# One parallel function serves the three products.
# ----------------------------------------------------------------------------
FORWARD, INPUT_GRAD, WEIGHT_GRAD = 0, 1, 2


@jit
def use_chunks(rows, fan_in, fan_out):
    return rows * fan_in * fan_out >= PARALLEL_MIN_MACS


@jit
def product_block(product, c, out, o_off, left, l_off, params, w_off, partials, rows, fan_in,
                  fan_out):
    """Block c of one of the three products (see chunked_product)."""
    r0, r1 = rows * c // CHUNKS, rows * (c + 1) // CHUNKS
    n = r1 - r0
    if product == FORWARD:
        if n > 0:
            np.dot(matrix(left, l_off + r0 * fan_in, n, fan_in), matrix(params, w_off, fan_in, fan_out),
                   matrix(out, o_off + r0 * fan_out, n, fan_out))
    elif product == INPUT_GRAD:
        if n > 0:
            np.dot(matrix(left, l_off + r0 * fan_out, n, fan_out),
                   matrix(params, w_off, fan_in, fan_out).T,
                   matrix(out, o_off + r0 * fan_in, n, fan_in))
    else:
        size = fan_in * fan_out
        target = out[o_off:o_off + size] if c == 0 else partials[(c - 1) * size:c * size]
        if n > 0:
            np.dot(matrix(params, w_off + r0 * fan_in, n, fan_in).T,
                   matrix(left, l_off + r0 * fan_out, n, fan_out), target.reshape((fan_in, fan_out)))
        else:
            target[:] = 0


@parallel_jit
def chunked_product(product, out, o_off, left, l_off, params, w_off, partials, rows, fan_in,
                    fan_out):
    """FORWARD:     out (rows, o)  = left (rows, i) @ W
       INPUT_GRAD:  out (rows, i)  = left (rows, o) @ W.T
       WEIGHT_GRAD: out (i, o) at o_off (and partials) = partial sums of X.T @ left (rows, o),
                    X being `params` at w_off here: the layer input (rows, i)."""
    for c in prange(CHUNKS):
        product_block(product, c, out, o_off, left, l_off, params, w_off, partials, rows, fan_in,
                      fan_out)


@jit
def dense_forward_chunked(Z, z_off, A, a_off, params, w_off, b_off, rows, fan_in, fan_out, has_bias,
                          activation, partials):
    """Z = f(A @ W + bias), the product in parallel blocks of rows."""
    chunked_product(FORWARD, Z, z_off, A, a_off, params, w_off, partials, rows, fan_in, fan_out)
    add_bias_and_activate(Z, z_off, params, b_off, rows, fan_out, has_bias, activation)


@jit
def dense_backward_input_chunked(dA, da_off, D, d_off, params, w_off, A, a_off, rows, fan_in,
                                 fan_out, activation, partials):
    """dA = (D @ W.T) * f'(A), the product in parallel blocks of rows."""
    chunked_product(INPUT_GRAD, dA, da_off, D, d_off, params, w_off, partials, rows, fan_in, fan_out)
    if activation != IDENTITY:
        da, a = dA[da_off:da_off + rows * fan_in], A[a_off:a_off + rows * fan_in]
        for p in range(rows * fan_in):
            da[p] *= derivative_from_output(a[p], activation)


@jit
def dense_backward_params_chunked(grads, partials, A, a_off, D, d_off, params, w_off, b_off, rows,
                                  fan_in, fan_out, decay, has_bias):
    """dW = A.T @ D + decay * W from per-block partials summed in block order."""
    size = fan_in * fan_out
    # the layer input A stands where the product expects W: see chunked_product
    chunked_product(WEIGHT_GRAD, grads, w_off, D, d_off, A, a_off, partials, rows, fan_in, fan_out)
    dW, W = grads[w_off:w_off + size], params[w_off:w_off + size]
    for p in range(size):
        total = dW[p]
        for c in range(1, CHUNKS):
            total += partials[(c - 1) * size + p]
        dW[p] = total + decay * W[p]
    if has_bias:
        bias_grad(grads, b_off, D, d_off, rows, fan_out)
