"""Fully connected layers over flat buffers: forward with a fused bias +
activation epilogue, and the backward products.

Buffers are 1-D; each call takes the (rows, cols) matrices it needs as 2-D
views at given offsets, once per layer and batch (llm.c's named views), and
indexes them only with range() loop counters: numba's negative-index check
then folds away and the inner loops vectorise. Small products run as
hand-written loops; large ones call BLAS through np.dot(a, b, out), which
allocates nothing when given `out`. Which path runs is decided by size alone,
never by thread count.

Legend:  b  rows,  i  fan_in,  o  fan_out
    A (b, i)  layer input at a_off       W (i, o) at w_off,  bias (o,) at b_off (in params)
    Z (b, o)  layer output at z_off      D (b, o) deltas (dL/dZ) at d_off
    dW, dbias in grads at w_off, b_off   dA (b, i) at da_off
"""
import numpy as np

from ._config import BLAS_MIN_MACS, jit
from .activations import IDENTITY, RELU, activate_rows, derivative_from_output


@jit
def use_blas(rows, fan_in, fan_out):
    return rows * fan_in * fan_out >= BLAS_MIN_MACS


@jit
def matrix(buffer, offset, rows, cols):
    """The (rows, cols) C-ordered view at `offset` of a flat buffer."""
    return buffer[offset:offset + rows * cols].reshape((rows, cols))


@jit
def dense_forward(Z, z_off, A, a_off, params, w_off, b_off, rows, fan_in, fan_out, has_bias,
                  activation):
    """Z = f(A @ W + bias)."""
    Zm = matrix(Z, z_off, rows, fan_out)
    Am = matrix(A, a_off, rows, fan_in)
    W = matrix(params, w_off, fan_in, fan_out)
    bias = params[b_off:b_off + fan_out]
    if use_blas(rows, fan_in, fan_out):
        np.dot(Am, W, Zm)
        if has_bias:
            for r in range(rows):
                for j in range(fan_out):
                    Zm[r, j] += bias[j]
    else:
        for r in range(rows):
            for j in range(fan_out):
                Zm[r, j] = bias[j] if has_bias else 0
            for k in range(fan_in):
                ak = Am[r, k]
                for j in range(fan_out):
                    Zm[r, j] += ak * W[k, j]
    activate_rows(Zm, activation)


@jit
def dense_backward_params(grads, A, a_off, D, d_off, params, w_off, b_off, rows, fan_in, fan_out,
                          decay, has_bias):
    """dW = A.T @ D + decay * W;  dbias = column sums of D."""
    Am = matrix(A, a_off, rows, fan_in)
    Dm = matrix(D, d_off, rows, fan_out)
    W = matrix(params, w_off, fan_in, fan_out)
    dW = matrix(grads, w_off, fan_in, fan_out)
    if use_blas(rows, fan_in, fan_out):
        np.dot(Am.T, Dm, dW)
        if decay != 0:
            for k in range(fan_in):
                for j in range(fan_out):
                    dW[k, j] += decay * W[k, j]
    else:
        for k in range(fan_in):
            for j in range(fan_out):
                dW[k, j] = decay * W[k, j]
        for r in range(rows):
            for k in range(fan_in):
                ak = Am[r, k]
                for j in range(fan_out):
                    dW[k, j] += ak * Dm[r, j]
    if has_bias:
        dbias = grads[b_off:b_off + fan_out]
        for j in range(fan_out):
            dbias[j] = 0
        for r in range(rows):
            for j in range(fan_out):
                dbias[j] += Dm[r, j]


@jit
def dense_backward_input(dA, da_off, D, d_off, params, w_off, A, a_off, rows, fan_in, fan_out,
                         activation):
    """dA = (D @ W.T) * f'(A), where A = f(z) is the layer input (IDENTITY: no factor)."""
    dAm = matrix(dA, da_off, rows, fan_in)
    Dm = matrix(D, d_off, rows, fan_out)
    W = matrix(params, w_off, fan_in, fan_out)
    Am = matrix(A, a_off, rows, fan_in)
    if use_blas(rows, fan_in, fan_out):
        np.dot(Dm, W.T, dAm)
        if activation != IDENTITY:
            for r in range(rows):
                for k in range(fan_in):
                    dAm[r, k] *= derivative_from_output(Am[r, k], activation)
        return
    for r in range(rows):
        for k in range(fan_in):
            a = Am[r, k]
            if activation == RELU and a <= 0:
                dAm[r, k] = 0  # relu' = 0: skip the dot product
                continue
            s = 0.0
            for j in range(fan_out):
                s += Dm[r, j] * W[k, j]
            dAm[r, k] = s * derivative_from_output(a, activation)
