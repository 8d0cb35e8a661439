"""An epoch's row order, shuffled in compiled code with the draws NumPy's own
shuffle would make.

Every epoch shuffles its row order with the model's random generator, as
scikit-learn does (RandomState.shuffle or Generator.shuffle). For a small data
set that call is a large share of an epoch: 3.7-5.3 us of a ~34 us epoch at
303 rows. NumPy's shuffle is Fisher-Yates from the last position down, each
position's partner drawn by `random_interval`: 32-bit draws from the bit
generator, masked to the smallest all-ones mask >= the position, until one is
<= it. This module makes the same draws, one loop turn each, with no branch on
whether a draw is kept (see shuffle_order), so the generator ends
in the state NumPy's shuffle leaves it in and the order is NumPy's to the last
element (tests/test_shuffle.py checks both against NumPy for every kind of
generator, and fastmlp/core.py checks once per process that they agree before
using this). The draws come from
- MT19937 (RandomState's, so scikit-learn's and fastmlp's default): its words
  read and tempered here, over the generator's own state in place, with the
  position in a register; NumPy's function draws only when the words are used
  up, and renews them. The compiled shuffle of 303 rows: 3.1-3.2 -> 2.5-2.7 us,
  side by side;
- any other bit generator: its own C function (`next_uint32` in its ctypes
  interface), called through its address with its state's address.

Legend:  n  rows in the epoch
    order (n,) int64          the row order, shuffled in place
    function, state           addresses of the bit generator's next_uint32 function
                              and of the state it takes (never 0: the caller checks)
    mt19937 (625,) uint32     None, or an MT19937's state in place: its 624 words,
                              then the position of the next one (NumPy's
                              mt19937_state: uint32_t key[624]; int pos)
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


# MT19937's words in its state, and its tempering constants (Matsumoto and Nishimura
# 1998, as NumPy's mt19937.c), unsigned so that the arithmetic on the state's uint32
# words stays unsigned
MT_WORDS = 624
MT_TEMPER_B, MT_TEMPER_C = np.uint64(0x9D2C5680), np.uint64(0xEFC60000)
U7, U11, U15, U18 = (np.uint64(k) for k in (7, 11, 15, 18))


@jit(inline="always")
def mt19937_temper(word):
    """An MT19937 draw (32 bits, as uint64) from its state's word (uint32)."""
    y = word ^ (word >> U11)
    y ^= (y << U7) & MT_TEMPER_B
    y ^= (y << U15) & MT_TEMPER_C
    return y ^ (y >> U18)


@jit
def shuffle_order(order, restart, function, state, mt19937):
    """Shuffle order in place as NumPy's shuffle does with the same bit generator;
    restart: set order to 0..n-1 first."""
    n = order.shape[0]
    if restart:
        for i in range(n):
            order[i] = i
    # MT19937's position is kept in a register and stored once at the end, not
    # loaded and stored for every draw
    position = np.int64(0) if mt19937 is None else np.int64(mt19937[MT_WORDS])
    # A uniform draw from 0..i, as NumPy's random_interval: 32-bit draws masked to the
    # smallest all-ones mask >= i, until one is <= i. One loop turn per draw, without
    # a branch on the draw: a rejected one swaps position i with itself and leaves i
    # (the accept/reject branch was mispredicted a quarter of the time or so: 303 rows
    # 2.4 -> 1.3 us, 60000 rows 488 -> 268 us, side by side; the same draws).
    i = np.int64(n - 1)
    mask = np.uint32(max(i, 0))
    for shift in (1, 2, 4, 8, 16):
        mask |= mask >> np.uint32(shift)
    while i > 0:
        # The mask serves every i above its lower half; i falls by at most one a turn, so
        # the inner loop ends at i = mask >> 1, whose mask is half this one. (A loop per
        # mask, not a mask worked out from i each turn: that put the mask on the chain
        # from one draw's test to the next; RandomState, 303 rows 1.40 -> 1.25 us.)
        lower = np.int64(mask >> np.uint32(1))
        while i > lower:
            if mt19937 is None:  # (a plain `is None` test: numba drops the other branch)
                value = next_uint32(function, state) & mask
            elif position < MT_WORDS:
                value = mt19937_temper(mt19937[position]) & mask  # (< 2**32: mask is)
                position += 1
            else:  # the state's words are used up: NumPy's own draw renews them (in C)
                mt19937[MT_WORDS] = position
                value = next_uint32(function, state) & mask
                position = np.int64(mt19937[MT_WORDS])
            accept = np.int64(value) <= i
            j = np.int64(value) if accept else i
            a, b = order[i], order[j]
            order[i] = b
            order[j] = a
            i -= np.int64(accept)
        mask >>= np.uint32(1)
    if mt19937 is not None:
        mt19937[MT_WORDS] = position


if config.DISABLE_JIT:  # kernels run as Python (coverage, tests that swap a helper)
    def next_uint32(function, state):
        return np.uint32(ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p)(function)(state))
