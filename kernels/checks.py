"""Predicates over whole arrays, one compiled pass each, for the input and
state checks of fastmlp._base (which raises the errors: these only answer).

On the arrays of a small model a NumPy reduction such as np.isfinite(a).all()
costs ~1.5-3 us (a temporary, a ufunc and a reduction), a call here ~0.3 us,
and partial_fit runs several per call. The loops OR comparisons together
without branching, so LLVM vectorises them: on large arrays they read the data
once, allocate nothing and run faster than NumPy (an early exit at the first
bad value would stop the vectorisation, and only rejected input gains from it).
"""
import numpy as np

from ._config import index, jit


@jit
def all_finite(a, start, stop):
    """No NaN or infinity in a[start:stop] (a 1-D float array)."""
    bad = False
    for i in range(index(start), index(stop)):
        bad |= not (np.abs(a[i]) < np.inf)  # False for NaN and +-inf
    return not bad


@jit
def finite_within(a, low, high):
    """(no NaN or infinity, every value in [low, high]) for the 1-D float array a."""
    bad = False
    outside = False
    for i in range(a.shape[0]):
        v = a[i]
        bad |= not (np.abs(v) < np.inf)
        outside |= (v < low) | (v > high)
    return not bad, not outside


@jit
def cast_within(a, out, low, high):
    """out = a, cast to out's float dtype, for the 1-D integer (or bool) array a;
    returns whether every value of out lies in [low, high] (a cast integer is finite)."""
    outside = False
    for i in range(a.shape[0]):
        out[i] = a[i]
        outside |= (out[i] < low) | (out[i] > high)
    return not outside


@jit
def all_in_range(a, stop):
    """Every value of the 1-D int64 array a in 0..stop-1 (class labels, row indices)."""
    outside = False
    for i in range(a.shape[0]):
        outside |= (a[i] < 0) | (a[i] >= stop)
    return not outside
