"""Fully connected layers: forward with a fused bias + activation epilogue, and
the backward products. Small products run as hand-written loops (no call
overhead, vectorised inner loops); large ones call BLAS via np.dot(a, b, out),
which allocates nothing when given `out`. Which one is decided by size alone,
never by thread count, so results do not depend on the machine's threads.

Legend:  b  rows in the block,  i  fan_in,  o  fan_out
    A (b, i)   layer input      W (i, o)   weights      bias (o,)
    Z (b, o)   layer output     D (b, o)   deltas at the output (dL/dZ)
    dW (i, o), dbias (o,), dA (b, i)   gradients
"""
import numpy as np

from ._config import BLAS_MIN_MACS, jit
from .activations import IDENTITY, activate_row, derivative_from_output


@jit
def use_blas(rows, fan_in, fan_out):
    return rows * fan_in * fan_out >= BLAS_MIN_MACS


@jit
def dense_forward(Z, A, W, bias, has_bias, activation):
    """Z = f(A @ W + bias)."""
    rows, fan_in = A.shape
    fan_out = W.shape[1]
    if use_blas(rows, fan_in, fan_out):
        np.dot(A, W, Z)
        for r in range(rows):
            z = Z[r]
            if has_bias:
                for j in range(fan_out):
                    z[j] += bias[j]
            activate_row(z, activation)
        return
    for r in range(rows):
        z = Z[r]
        if has_bias:
            for j in range(fan_out):
                z[j] = bias[j]
        else:
            z[:] = 0
        a = A[r]
        for k in range(fan_in):
            ak = a[k]
            w = W[k]
            for j in range(fan_out):
                z[j] += ak * w[j]
        activate_row(z, activation)


@jit
def dense_backward_params(dW, dbias, A, D, W, decay, has_bias):
    """dW = A.T @ D + decay * W;  dbias = column sums of D."""
    rows, fan_in = A.shape
    fan_out = D.shape[1]
    if use_blas(rows, fan_in, fan_out):
        np.dot(A.T, D, dW)
        if decay != 0:
            for k in range(fan_in):
                for j in range(fan_out):
                    dW[k, j] += decay * W[k, j]
    else:
        for k in range(fan_in):
            for j in range(fan_out):
                dW[k, j] = decay * W[k, j]
        for r in range(rows):
            a = A[r]
            d = D[r]
            for k in range(fan_in):
                ak = a[k]
                g = dW[k]
                for j in range(fan_out):
                    g[j] += ak * d[j]
    if has_bias:
        dbias[:] = 0
        for r in range(rows):
            d = D[r]
            for j in range(fan_out):
                dbias[j] += d[j]


@jit
def dense_backward_input(dA, D, W, A, activation):
    """dA = (D @ W.T) * f'(A), where A = f(z) is the layer input (IDENTITY: no factor)."""
    rows, fan_in = dA.shape
    fan_out = D.shape[1]
    if use_blas(rows, fan_in, fan_out):
        np.dot(D, W.T, dA)
        if activation != IDENTITY:
            for r in range(rows):
                for k in range(fan_in):
                    dA[r, k] *= derivative_from_output(A[r, k], activation)
        return
    for r in range(rows):
        d = D[r]
        for k in range(fan_in):
            w = W[k]
            s = 0.0
            for j in range(fan_out):
                s += d[j] * w[j]
            dA[r, k] = s * derivative_from_output(A[r, k], activation)
