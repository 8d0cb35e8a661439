"""log(1 + x) without a library call, so that LLVM can vectorise a loop of it (the
sigmoid loss's log1p(exp(-|z|)) over a batch's outputs).

numba compiles np.log1p to a call of the C library's scalar log1p, ~16 ns here: with
its exp, a quarter of the compiled time of a 13-8-1 sigmoid network's epoch at batch 32.
This is fdlibm's log1p (Sun Microsystems, 1993; the algorithm of most C libraries)
with its branches turned into selects:
    1 + x = 2**k (1 + f), 1 + f in [sqrt(2)/2, sqrt(2)); when 1 + x is already there,
        k = 0 and f = x exactly, else 1 + x is rounded and c = the rounding's
        correction, log(1 + x) - log(fl(1 + x)) ~ (x - (fl(1 + x) - 1)) / fl(1 + x)
    log(1 + f) = f - s (f - R) with s = f / (2 + f), R a minimax polynomial in s**2
        (|error| < 2**-58.45), written as f - (hfsq - s (hfsq + R)), hfsq = f**2 / 2
    log(1 + x) = k ln2_hi + (f - (hfsq - (s (hfsq + R) + (k ln2_lo + c))))
Against np.log1p over millions of arguments it is within 1 ulp (tests/test_log1p.py).
float32 arguments are computed in float64.

Legend: x a scalar (float64 or float32); returns float64.
"""
import numpy as np
from llvmlite import ir
from numba import config, types
from numba.extending import intrinsic

from ._config import jit
from ._exp import LN2_HI, LN2_LO, _float_from_bits

LG1, LG2, LG3, LG4 = 6.666666666666735130e-01, 3.999999999940941908e-01, 2.857142874366239149e-01, 2.222219843214978396e-01
LG5, LG6, LG7 = 1.818357216161805012e-01, 1.531383769920937332e-01, 1.479819860511658591e-01
SQRT2_HALF_HIGH = 0x3FE6A09E  # high 32 bits of sqrt(2)/2: the reduced 1 + f starts here
SMALL_LOW, SMALL_HIGH = -0.2928932188134524, 0.41421356237309503  # sqrt(2)/2 - 1, sqrt(2) - 1
TWO_53 = 9007199254740992.0  # from here on fl(1 + x) - x is no correction worth adding


@intrinsic
def _bits_from_float(typingctx, x):
    """The IEEE bits of the float64 `x`, as an int64."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


if config.DISABLE_JIT:  # kernels run as Python (coverage, tests that swap a helper)
    def _bits_from_float(x):
        return np.array(x, np.float64).view(np.int64)[()]


@jit(inline="always")
def log1p(x):
    xd = np.float64(x)
    u = 1.0 + xd
    # 1 + x = 2**k * (1 + f): moving the high word by 1 - sqrt(2)/2 makes the exponent
    # field k and leaves 1 + f in [sqrt(2)/2, sqrt(2)) (u > 0 here; others are selected away)
    bits = _bits_from_float(u)
    high = (bits >> 32) + (0x3FF00000 - SQRT2_HALF_HIGH)
    k = (high >> 20) - 1023
    reduced = _float_from_bits((((high & 0x000FFFFF) + SQRT2_HALF_HIGH) << 32) | (bits & 0xFFFFFFFF))
    dk = np.float64(k)
    c = (1.0 - (u - xd) if k >= 2 else xd - (u - 1.0)) / u
    c = c if xd < TWO_53 else 0.0
    small = (xd > SMALL_LOW) & (xd < SMALL_HIGH)  # then f = x exactly and k = 0
    f = xd if small else reduced - 1.0
    c = 0.0 if small else c
    dk = 0.0 if small else dk
    hfsq = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    R = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7))) + w * (LG2 + w * (LG4 + w * LG6))
    y = dk * LN2_HI + (f - (hfsq - (s * (hfsq + R) + (dk * LN2_LO + c))))
    # x = inf gives inf; x = -1 gives -inf; x < -1 and NaN give NaN, as the C library's
    y = xd if xd == np.inf else y
    y = -np.inf if xd == -1.0 else y
    return y if xd > -1.0 else (np.nan if xd != -1.0 else y)
