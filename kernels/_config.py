"""One place for the decorator options every kernel uses.

fastmath leaves out nnan/ninf: with those, np.isnan/np.isinf compile to False
and a diverging loss could not be seen. It also leaves out reassoc: with it,
LLVM may vectorise a sum one way when it compiles a kernel and another way in
the code it caches, so the process that compiled would get other last bits
than every later one (measured; tests/test_threads.py checks it). The heavy
products run in BLAS, which reassociation does not touch. error_model="numpy" makes x/0 give inf, not
raise, as NumPy does.
"""
import functools

import numba
import numpy as np

from ._cache import drop_stale_cache

drop_stale_cache()  # before any kernel module loads its cached machine code

# Cached kernels that call parallel ones refer to symbols of numba's threading
# layer (allocate_sched, ...). Loaded from the cache before that layer has
# started, they fail to link and the process dies (numba issues 8578, 10128):
# start it first.
from numba.np.ufunc import parallel as _parallel  # noqa: E402

_parallel._launch_threads()

FASTMATH = {"nsz", "arcp", "contract", "afn"}

# _nrt=False: the kernels run without numba's reference counting. They allocate
# nothing (tests/test_allocations.py), so it has nothing to free; with it, every
# array argument and slice gets an atomic incref/decref pair that numba's pruning
# pass leaves in place across branches and loops (numba issue 2350). Those pairs
# were ~20% of a 13-8-1 network's epoch at batch 1 (measured with perf).
OPTIONS = dict(nogil=True, fastmath=FASTMATH, error_model="numpy", _nrt=False)

# numba builds two wrappers around every function it compiles, each converting every
# argument, and optimises and compiles them with it: one to call it from Python, one
# to call it as a C callback. No kernel is called as a C callback (the small-product
# loops are a CFunc of their own, kernels/_blas.py), and a kernel that only other
# kernels call (inner_jit, parallel_inner_jit) needs neither. Without them, a cold
# compile was 1.2-3.2 s shorter (13-8-10 at 1 thread 10.2-10.7 against 11.5-11.9 s,
# alternating processes, the epochs as fast as before; 784-512-512-10 at 2 threads
# 10.7-11.4 against 12.5-13.2 s, and ~0.5 s less again without the parallel kernels').
# Calling an inner_jit kernel from Python crashes the process (numba has no entry point
# to check the call against): tests call them through a jit function of their own.
jit = functools.partial(numba.njit, cache=True, no_cfunc_wrapper=True, **OPTIONS)
inner_jit = functools.partial(jit, no_cpython_wrapper=True)
parallel_inner_jit = functools.partial(inner_jit, parallel=True)

# Below this many multiply-adds (rows x fan_in x fan_out) a layer's products use
# the hand-written loops; at or above it, BLAS's gemm (_blas.py), whose call
# costs ~50 ns. Measured (1 thread, one SGD epoch, side by side): tiny 13-8-1 at
# batch 32 ran 113 ns/sample at 1<<8 against 161 at 1<<9 (its 32x8x1 layer then
# runs in gemm); at batch 1 a 1x13x8 layer is faster in the loops (1<<6: 609
# against 577 ns/sample).
BLAS_MIN_MACS = 1 << 8

# From BLAS_MIN_MACS up to below this many multiply-adds, a product whose B is not
# transposed runs in small_gemm.py's vector loops, not in OpenBLAS (_blas.gemm).
# Measured (Zen 3, 1 thread, ns per product, side by side): up to digits' 65k they
# ran 1.0-1.9x as fast as OpenBLAS's AVX2 build; mnist's 32x784x128 (3.2M) 0.7x.
SMALL_GEMM_MAX_MACS = 1 << 17

# From SMALL_GEMM_MAX_MACS up too, on a machine with 32 vector registers (small_gemm.WIDE)
# a float64 product with A as stored (a layer's forward product; its input gradient
# through W.T's copy) runs in the loops when B (W) holds at most this many elements
# (1 MiB, within Zen 4's L2): they read B where it lies, where OpenBLAS packs it again
# for every call. Measured (Zen 4, 1 thread, side by side, ns per product): 64x1000 @
# 1000x100 (wide) 271 -> 236-253 us, 32x784 @ 784x128 147 -> 124 us, 128x784 @ 784x128
# 514 -> 483-498 us; an epoch, alternating processes: wide 61.4-61.9 -> 56.2-56.8 ms,
# mnist at batch 128 541-548 -> 511 ms, at batch 32 625-626 -> 526-534 ms, deep (W of
# 2 MiB, in OpenBLAS: the loops ran its 256x512 @ 512x512 at 73% of the peak against
# 93%) alike. In float32 OpenBLAS was as fast or faster at these shapes; the weight
# gradient (A.T) ran faster in OpenBLAS too (784x128 @ 128x128: 492 against 537 us).
LOOPS_MAX_B_FLOAT64 = 1 << 17

# Below this many multiply-adds, a layer's input gradient D @ W.T runs as W.T copied
# into scratch and a plain product: OpenBLAS takes D @ W.T with few outputs (K < 32
# in its column-major terms) off its small-matrix kernels, onto its general path,
# which packs both operands. Measured (1 thread, float64, ns per product, side by
# side): 32x8 from 1 output 169 -> 58, 32x32 from 10 765 -> 505, 64x100 from 10
# 3878 -> 2966; 256x512 from 10 (1.3M) 97k -> 108k.
TRANSPOSED_W_MAX_MACS = 1 << 18

# From this many multiply-adds up, a layer's products are split into CHUNKS
# fixed pieces, each a single-threaded BLAS call, run under prange (or one after
# the other in the serial kernels: dense.product). The split
# depends on sizes only, so results are bitwise the same for any thread count
# (BLAS's own threading splits by thread count, and its results then differ).
PARALLEL_MIN_MACS = 1 << 20

# From this many multiply-adds up, a relu layer's weight gradient skips its zero deltas
# (dense.sparse_weight_gradient).
SPARSE_MIN_MACS = 1 << 17
assert TRANSPOSED_W_MAX_MACS <= PARALLEL_MIN_MACS  # dense.input_gradient_product never splits those
CHUNKS = 2

# A float32 forward product splits by rows from this many batch rows up, by columns
# below (dense.dense_forward), where OpenBLAS's kernels give the serial kernels one
# call for a row split (_openblas.ROW_SPLIT_EXACT); elsewhere by columns at any size.
# Its row blocks start at a multiple of 12 (_openblas.ROW_MULTIPLE_FLOAT32), which
# leaves them 12% apart at 64 rows, 6% at 128 and 3% at 256; by columns they are
# even, but each block packs all of A again, and at 1 thread the blocks then run as
# two calls, not one (dense.product). Measured (epochs side by side, alternating
# processes; Zen 3): by rows, 1 thread / 2 threads, wide 64 rows 1.055 / 0.954,
# mnist 128 rows 1.030 / 0.981, deep 256 rows 1.015-1.019 / 0.995.
FLOAT32_FORWARD_ROW_SPLIT_MIN_ROWS = 256

# A hidden layer's rows in the activation and delta buffers lie ROW_PAD_BYTES apart
# more than its width when that width is a multiple of ALIASED_ROW_BYTES (network.
# with_row_strides): rows 4 KiB apart fall in one set of Zen 3's 8-way L1 cache, and
# OpenBLAS's float64 kernel stores C in tiles 8 rows high. Measured (1 thread, side
# by side): the deep workload's five 256-row float64 products 20.1 -> 19.5 ms, its
# epoch 1709 -> 1660 ms (1.030, alternating processes); float32's tiles span 4 rows,
# and its products ran alike.
ALIASED_ROW_BYTES = 4096
ROW_PAD_BYTES = 64

# Rows a mini-batch gather prefetches ahead (network.gather_rows): 4-16 measured
# alike for 784 features. Only for data sets of PREFETCH_MIN_BYTES and up (beyond
# the 512 KiB L2 of the Zen 3 it was measured on): rows of a smaller one are in the
# cache after its first epoch, and there the prefetches only cost (a 32-row batch
# of 13 float64 features gathered in 105 -> 61 ns).
PREFETCH_ROWS_AHEAD = 8
PREFETCH_MIN_BYTES = 1 << 20

# Offsets into the flat buffers, and the loop counters added to them, are
# unsigned in the hand-written loops: numba then leaves out its negative-index
# wraparound, a select on every access that keeps LLVM from vectorising a loop
# whose start is only known at run time. (Mixing it with a signed int gives a
# float in numba: convert every term.)
index = np.uint64
