"""Hidden-layer activations and their derivatives, in place over row blocks.

Legend:  m  units in the layer
    z[start:start + m]  one row of a flat buffer: pre-activations in, activations out

Derivatives are written in terms of the activation's output a = f(z), so only
post-activation buffers are kept: relu a>0, sigmoid a(1-a), tanh 1-a^2.
"""
import numpy as np

from ._config import index, inner_jit, jit

RELU, SIGMOID, TANH, IDENTITY = 0, 1, 2, 3


@inner_jit
def sigmoid_from(e, z):
    """sigmoid(z) given e = exp(-|z|): an exp of a non-positive number only, finite for
    any z, float32 or float64 (the sigmoid loss shares e with its log1p)."""
    return 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)


@inner_jit
def sigmoid(z):
    return sigmoid_from(np.exp(-abs(z)), z)


@jit(inline="always")
def activate(z, start, m, activation):
    """f(z) in place over z[start:start + m], one row; the code is tested once per row."""
    first, stop = index(start), index(start + m)
    if activation == RELU:
        for j in range(first, stop):
            if z[j] < 0:  # not max(): a NaN must stay NaN, as in NumPy
                z[j] = 0
    elif activation == SIGMOID:
        for j in range(first, stop):
            z[j] = sigmoid(z[j])
    elif activation == TANH:
        for j in range(first, stop):
            z[j] = np.tanh(z[j])


@inner_jit
def derivative_from_output(a, activation, one):
    """f'(z) from a = f(z), for one scalar; one = 1 in a's type (a float literal
    would make a float32 model's derivatives float64)."""
    if activation == RELU:
        return one if a > 0 else one - one
    if activation == SIGMOID:
        return a * (one - a)
    if activation == TANH:
        return one - a * a
    return one
