"""e**x without a library call, so that LLVM can vectorise a loop of it (the softmax's).

numba compiles np.exp to a call of the C library's scalar exp (~9 ns, and the loop
around it stays scalar): in a softmax over 10 classes that was 13% of a digits
epoch. This one is straight-line arithmetic: x = k ln2 + r with |r| <= ln2/2
(Cody and Waite's two-part ln2, so k ln2 is exact), e**r by its Taylor series to
r**13 (truncation error < 1e-17 relative), times 2**k built from its bits in two
factors so that results in the subnormal range round once. Against np.exp over
millions of arguments it is within 1 ulp, and equal in ~92% of them (tests/test_exp.py);
a vectorised loop of it runs ~7x faster. One call at a time it is slower than the
library's (a 13-step chain of multiply-adds): scalar uses keep np.exp. float32
arguments are computed in float64.

Legend: x a scalar (float64 or float32); returns float64.
"""
import math

import numpy as np
from llvmlite import ir
from numba import config, types
from numba.extending import intrinsic

from ._config import inner_jit

LOG2E = 1.4426950408889634
LN2_HI = 6.93147180369123816490e-01  # its last 21 bits are 0: k * LN2_HI is exact for |k| < 2**21
LN2_LO = 1.90821492927058770002e-10
C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13 = (1.0 / math.factorial(i) for i in range(14))


@intrinsic
def _float_from_bits(typingctx, bits):
    """The float64 whose IEEE bits are the int64 `bits`."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


if config.DISABLE_JIT:  # kernels run as Python (coverage, tests that swap a helper)
    def _float_from_bits(bits):
        return np.array(bits, np.int64).view(np.float64)[()]


# A called kernel: LLVM inlines it where it is used. inline="always" (numba's own inlining)
# gave the same speed but ~5 s more cold compile.
@inner_jit
def exp(x):
    # clamped, so that k is a finite integer: below -746 the result rounds to 0, above
    # 710 it is inf (NaN, which passes neither test, is given back at the end)
    xc = np.float64(x) if x > -746.0 else -746.0
    xc = xc if xc < 710.0 else 710.0
    k = np.floor(xc * LOG2E + 0.5)
    r = (xc - k * LN2_HI) - k * LN2_LO
    p = ((((((((((((C13 * r + C12) * r + C11) * r + C10) * r + C9) * r + C8) * r + C7) * r + C6)
                * r + C5) * r + C4) * r + C3) * r + C2) * r + C1) * r + C0
    k_int = np.int64(k)
    half = k_int >> 1
    y = p * _float_from_bits((half + 1023) << 52) * _float_from_bits((k_int - half + 1023) << 52)
    return x if x != x else y
