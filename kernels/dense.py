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
def dense_forward(Z, z_off, A, a_off, params, w_off, b_off, rows, fan_in, fan_out, has_bias,
                  activation):
    """Z = f(A @ W + bias)."""
    bias = params[b_off:b_off + fan_out]
    if use_blas(rows, fan_in, fan_out):
        np.dot(matrix(A, a_off, rows, fan_in), matrix(params, w_off, fan_in, fan_out),
               matrix(Z, z_off, rows, fan_out))
        for r in range(rows):
            z = row(Z, z_off, r, fan_out)
            if has_bias:
                for j in range(fan_out):
                    z[j] += bias[j]
            activate_row(z, activation)
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
        dbias = grads[b_off:b_off + fan_out]
        for j in range(fan_out):
            dbias[j] = 0
        for r in range(rows):
            d = row(D, d_off, r, fan_out)
            for j in range(fan_out):
                dbias[j] += d[j]


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
# Large layers: the same three products split into CHUNKS fixed pieces that run
# in parallel. Forward and input-gradient pieces are blocks of batch rows; the
# weight gradient sums over rows, so each piece writes a partial (piece 0 into
# dW, the others into `partials`) and the partials are added in a fixed order.
# ----------------------------------------------------------------------------


@jit
def use_chunks(rows, fan_in, fan_out):
    return rows * fan_in * fan_out >= PARALLEL_MIN_MACS


@jit
def chunk_rows(rows, c):
    return rows * c // CHUNKS, rows * (c + 1) // CHUNKS


@parallel_jit
def dense_forward_chunked(Z, z_off, A, a_off, params, w_off, b_off, rows, fan_in, fan_out, has_bias,
                          activation):
    """Z = f(A @ W + bias), CHUNKS blocks of rows in parallel."""
    W = matrix(params, w_off, fan_in, fan_out)
    bias = params[b_off:b_off + fan_out]
    for c in prange(CHUNKS):
        r0, r1 = chunk_rows(rows, c)
        if r1 > r0:
            np.dot(matrix(A, a_off + r0 * fan_in, r1 - r0, fan_in), W,
                   matrix(Z, z_off + r0 * fan_out, r1 - r0, fan_out))
            for r in range(r0, r1):
                z = row(Z, z_off, r, fan_out)
                if has_bias:
                    for j in range(fan_out):
                        z[j] += bias[j]
                activate_row(z, activation)


@parallel_jit
def dense_backward_input_chunked(dA, da_off, D, d_off, params, w_off, A, a_off, rows, fan_in,
                                 fan_out, activation):
    """dA = (D @ W.T) * f'(A), CHUNKS blocks of rows in parallel."""
    W = matrix(params, w_off, fan_in, fan_out)
    for c in prange(CHUNKS):
        r0, r1 = chunk_rows(rows, c)
        if r1 > r0:
            np.dot(matrix(D, d_off + r0 * fan_out, r1 - r0, fan_out), W.T,
                   matrix(dA, da_off + r0 * fan_in, r1 - r0, fan_in))
            if activation != IDENTITY:
                for r in range(r0, r1):
                    da, a = row(dA, da_off, r, fan_in), row(A, a_off, r, fan_in)
                    for k in range(fan_in):
                        da[k] *= derivative_from_output(a[k], activation)


@parallel_jit
def dense_backward_params_chunked(grads, partials, A, a_off, D, d_off, params, w_off, b_off, rows,
                                  fan_in, fan_out, decay, has_bias):
    """dW = A.T @ D + decay * W from per-chunk partials summed in chunk order."""
    size = fan_in * fan_out
    for c in prange(CHUNKS):
        r0, r1 = chunk_rows(rows, c)
        out = grads[w_off:w_off + size] if c == 0 else partials[(c - 1) * size:c * size]
        if r1 > r0:
            np.dot(matrix(A, a_off + r0 * fan_in, r1 - r0, fan_in).T,
                   matrix(D, d_off + r0 * fan_out, r1 - r0, fan_out), out.reshape((fan_in, fan_out)))
        else:
            out[:] = 0
    for p in prange(size):
        total = grads[w_off + p]
        for c in range(1, CHUNKS):
            total += partials[(c - 1) * size + p]
        grads[w_off + p] = total + decay * params[w_off + p]
    if has_bias:
        dbias = grads[b_off:b_off + fan_out]
        for j in range(fan_out):
            dbias[j] = 0
        for r in range(rows):
            d = row(D, d_off, r, fan_out)
            for j in range(fan_out):
                dbias[j] += d[j]
