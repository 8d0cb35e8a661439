"""An epoch's row order, shuffled in compiled code with the draws NumPy's own
shuffle would make.

Every epoch shuffles its row order with the model's random generator, as
scikit-learn does (RandomState.shuffle or Generator.shuffle). For a small data
set that call is a large share of an epoch: 3.7-5.3 us of a ~34 us epoch at
303 rows. NumPy's shuffle is Fisher-Yates from the last position down, each
position's partner drawn by `random_interval`: 32-bit draws from the bit
generator, masked to the smallest all-ones mask >= the position, until one is
<= it. This module runs the same loop over the same draws: the bit generator's
own C function (`next_uint32` in its ctypes interface), called through its
address with its state's address, so the generator ends in the state NumPy's
shuffle leaves it in and the order is NumPy's to the last element (tests/
test_shuffle.py checks both against NumPy for every kind of generator, and
fastmlp/core.py checks once per process that they agree before using this).

Legend:  n  rows in the epoch
    order (n,) int64          the row order, shuffled in place
    function, state           addresses of the bit generator's next_uint32 function
                              and of the state it takes (never 0: the caller checks)
"""
import ctypes

import numpy as np
from llvmlite import ir
from numba import config, types
from numba.extending import intrinsic

from ._config import jit

# Above this, NumPy's random_interval draws 64 bits at a time; the caller shuffles such
# orders (over 4e9 rows) with NumPy.
MAX_POSITION = 0xFFFFFFFF


@intrinsic
def next_uint32(typingctx, function, state):
    """The bit generator's next 32-bit draw: function(state), both given as addresses."""
    if not (isinstance(function, types.Integer) and isinstance(state, types.Integer)):
        return None
    sig = types.uint32(function, state)

    def codegen(context, builder, signature, args):
        byte_pointer = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.IntType(32), [byte_pointer])
        address, state_address = (context.cast(builder, value, ty, types.intp)
                                  for value, ty in zip(args, signature.args))
        fn = builder.inttoptr(address, fnty.as_pointer())
        return builder.call(fn, [builder.inttoptr(state_address, byte_pointer)])

    return sig, codegen


@jit
def random_interval(function, state, high):
    """A uniform draw from 0..high (high <= MAX_POSITION), as NumPy's random_interval."""
    top = np.uint32(high)
    mask = top
    for shift in (1, 2, 4, 8, 16):
        mask |= mask >> np.uint32(shift)
    while True:
        value = next_uint32(function, state) & mask
        if value <= top:
            return value


@jit
def shuffle_order(order, restart, function, state):
    """Shuffle order in place as NumPy's shuffle does with the same bit generator;
    restart: set order to 0..n-1 first."""
    n = order.shape[0]
    if restart:
        for i in range(n):
            order[i] = i
    for i in range(n - 1, 0, -1):
        j = random_interval(function, state, i)
        order[i], order[j] = order[j], order[i]


if config.DISABLE_JIT:  # kernels run as Python (coverage, tests that swap a helper)
    def next_uint32(function, state):
        return np.uint32(ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p)(function)(state))
