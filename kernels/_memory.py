"""Three memory operations numba does not offer as plain calls: a software prefetch
and a copy between flat buffers, both straight LLVM intrinsics, and a read-only view.

Prefetch. Rows of a shuffled epoch sit at random places in memory: copying one
waits on the memory for each new row. Asking for the rows a few ahead to be
brought into the L2 cache (llvm.prefetch: read, locality 2) overlaps those
waits: the gather of a 128-row batch of 784 float32 features went from ~95 to
~65 us (measured on this project's 2-core machine). A prefetch never faults.

Copy. A row copy as a slice assignment (dst[a:b] = src[c:d]) is a memcpy, 1.5x
faster than an element loop at 784 features, but numba compiles a shape-check
with its error message along with it: ~3 s of a kernel's 13 s cold compile.
llvm.memcpy is the memcpy alone; the caller guarantees bounds (as for any
index in these kernels) and that the two ranges do not overlap.

Read-only view. numba compiles a kernel once for each set of argument types, and
a read-only array is a type of its own. The data reaches the kernels read-only
(fastmlp._base), so a product whose first operand is the data, or a layer's
activations unified with it, compiles for a read-only A; the input gradient's A is
the deltas, writable. Passed as read_only(deltas), it is the same type: the product
chain (gemm, its blocks and the parallel kernel) compiles once per dtype, not twice.
The view is the same array, no copy; only numba's typing changes.
"""
from llvmlite import ir
from numba import config, types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic


def _address(context, builder, array_type, array, index_type, index):
    data = context.make_array(array_type)(context, builder, array).data
    offset = context.cast(builder, index, index_type, types.intp)
    return builder.gep(data, [offset])


@intrinsic
def prefetch(typingctx, array, index):
    """Hint that array[index] will be read soon (no effect on results)."""
    if not isinstance(array, types.Array):
        return None
    sig = types.void(array, index)

    def codegen(context, builder, signature, args):
        address = _address(context, builder, signature.args[0], args[0], signature.args[1], args[1])
        byte_pointer = builder.bitcast(address, ir.IntType(8).as_pointer())
        int32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [byte_pointer.type, int32, int32, int32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        builder.call(fn, [byte_pointer, int32(0), int32(2), int32(1)])  # read, L2, data
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def copy(typingctx, dst, dst_off, src, src_off, count):
    """dst[dst_off:dst_off + count] = src[src_off:src_off + count] (same dtype, no overlap)."""
    if not (isinstance(dst, types.Array) and isinstance(src, types.Array) and dst.dtype == src.dtype):
        return None
    sig = types.void(dst, dst_off, src, src_off, count)

    def codegen(context, builder, signature, args):
        argtys = signature.args
        target = _address(context, builder, argtys[0], args[0], argtys[1], args[1])
        source = _address(context, builder, argtys[2], args[2], argtys[3], args[3])
        item = context.get_abi_sizeof(context.get_data_type(argtys[0].dtype))
        n = context.cast(builder, args[4], argtys[4], types.intp)
        cgutils.raw_memcpy(builder, target, source, n, item)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def read_only(typingctx, array):
    """array, typed read-only (the same memory: no copy)."""
    if not isinstance(array, types.Array):
        return None

    def codegen(context, builder, signature, args):
        # the same value (read-only and writable arrays share numba's data model), and a
        # reference of its own where numba counts references (not in the kernels: _nrt=False)
        return impl_ret_borrowed(context, builder, signature.return_type, args[0])

    return array.copy(readonly=True)(array), codegen


if config.DISABLE_JIT:  # kernels run as Python (coverage, tests that swap a helper)
    def prefetch(array, index):
        pass

    def copy(dst, dst_off, src, src_off, count):
        dst[dst_off:dst_off + count] = src[src_off:src_off + count]

    def read_only(array):
        return array
