"""The BLAS libraries behind the kernels' products, loaded before any kernel.

fastmlp loads two instances of OpenBLAS of its own, from two wheels (both
dependencies), each set to one thread (fastmlp's threads split the large
products; see fastmlp/_threads.py):
    small  scipy-openblas32 (32-bit integers): products of up to SMALL_MAX_MACS
           multiply-adds, where OpenBLAS's AVX-512 ("SkylakeX") build has its
           small-matrix kernels, which need no packing;
    large  scipy-openblas64 (64-bit integers): the larger products.
An instance picks its kernels for the CPU when it loads, or as OPENBLAS_CORETYPE
says. On AMD Zen 4 (family 25 with AVX-512) OpenBLAS picks its AVX-512 kernels,
and Zen 4 runs each 512-bit operation as two 256-bit halves: at fastmlp's large
shapes its AVX2 ("Haswell") kernels ran 5-8% faster there, while at the small
shapes the AVX-512 build's small-matrix kernels were 1.1-2x faster (measured,
1 thread, float64 and float32; see the README). So on Zen 4 the large instance
loads with the Haswell kernels, unless OPENBLAS_CORETYPE is set; elsewhere
both instances run the kernels OpenBLAS picks, and the split changes nothing.

The libraries are loaded by path, with RTLD_LOCAL, not by importing the wheels'
packages, which load them RTLD_GLOBAL: their exported symbols (scipy_dgemm_, ...)
are also SciPy's and NumPy's, and must not stand in for those in later loads.

Without a wheel, its products go to SciPy's BLAS (scipy.linalg.cython_blas, 32-bit
integers), which fastmlp/_threads.py sets to one thread. CONFIGURATION names what
compiled kernels depend on (which library, how wide its integers), so the kernel
cache is dropped when it changes (_cache.py).
"""
import ctypes
import importlib.util
import os

# OpenBLAS's SkylakeX small-matrix kernels serve products of up to 100^3 multiply-adds
SMALL_MAX_MACS = 100 ** 3

AVX512_CORES = ("SkylakeX", "Cooperlake", "SapphireRapids")


def large_coretype(cpu_vendor, cpu_family, small_core):
    """The kernels to load the large instance with: Haswell on Zen 4 (see above), else
    None (OpenBLAS's own choice)."""
    if cpu_vendor == "AuthenticAMD" and cpu_family == 25 and small_core in AVX512_CORES:
        return "Haswell"
    return None


def cpu_vendor_and_family():
    """(vendor_id, cpu family) from /proc/cpuinfo; (None, None) where there is none."""
    vendor = family = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key, value = key.strip(), value.strip()
                if key == "vendor_id":
                    vendor = value
                elif key == "cpu family":
                    family = int(value)
                if vendor is not None and family is not None:
                    break
    except (OSError, ValueError):
        pass
    return vendor, family


def _load(package, coretype=None):
    """The wheel's OpenBLAS, loaded with `coretype`'s kernels (None: OpenBLAS's choice);
    None when the wheel is not installed."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    lib_dir = os.path.join(spec.submodule_search_locations[0], "lib")
    names = sorted(name for name in os.listdir(lib_dir) if name.startswith("libscipy_openblas")
                   and name.endswith((".so", ".dylib", ".dll"))) if os.path.isdir(lib_dir) else []
    if not names:
        return None
    before = os.environ.get("OPENBLAS_CORETYPE")
    if coretype is not None:
        os.environ["OPENBLAS_CORETYPE"] = coretype  # read once, as the library loads
    try:
        return ctypes.CDLL(os.path.join(lib_dir, names[0]))
    finally:
        if coretype is not None:
            if before is None:
                del os.environ["OPENBLAS_CORETYPE"]
            else:
                os.environ["OPENBLAS_CORETYPE"] = before


def _function(library, name, suffix=""):
    return getattr(library, f"scipy_{name}{suffix}")


def corename(library, suffix=""):
    """The kernels an instance runs (OpenBLAS's name for them: 'Haswell', 'SkylakeX', ...)."""
    get = _function(library, "openblas_get_corename", suffix)
    get.restype = ctypes.c_char_p
    return get().decode()


# the wheels' names: scipy_dgemm_ and scipy_openblas_get_corename in the 32-bit one,
# scipy_dgemm_64_ and scipy_openblas_get_corename64_ in the 64-bit one
SMALL = _load("scipy_openblas32")
if SMALL is not None:
    _function(SMALL, "openblas_set_num_threads")(1)
LARGE_CORETYPE = None
if SMALL is not None and "OPENBLAS_CORETYPE" not in os.environ:
    LARGE_CORETYPE = large_coretype(*cpu_vendor_and_family(), corename(SMALL))
LARGE = _load("scipy_openblas64", LARGE_CORETYPE)
if LARGE is not None:
    _function(LARGE, "openblas_set_num_threads", "64_")(1)


# Cores whose gemm gives every element of C the same bits whether C is computed in one
# call or in blocks of its rows (row-major; of its columns in OpenBLAS's column-major
# terms) that start at a multiple of ROW_MULTIPLE_FLOAT64 or _FLOAT32 rows: the
# kernels compute each strip of those columns alike. Not so for blocks of the columns
# (row-major), at any multiple tried, nor for row blocks that start elsewhere in float32.
# Measured on scipy-openblas 0.3.34's Haswell kernels, each instance against both, over
# ~1,700 random shapes from 2^19 multiply-adds up and all four transpositions;
# tests/test_threads.py checks the instances loaded. With such a core in both
# instances, the serial kernels compute a product the parallel ones split by rows in
# one call (dense.product): the same bits, without the second call's copy of the shared
# operand into OpenBLAS's packed form (an epoch at 1 thread, float64, side by side:
# wide 4.3%, mnist 2.2%, deep 2.1% faster).
ROW_MULTIPLE_FLOAT64, ROW_MULTIPLE_FLOAT32 = 4, 12
EXACT_ROW_SPLIT_CORES = ("Haswell",)


def _gemm(name, large):
    """(source, address, integer bits) of `name` ('dgemm', 'sgemm') for small or large
    products: without the 64-bit wheel the large ones go where the small ones do."""
    if large and LARGE is not None:
        source, function, bits = "scipy-openblas64", _function(LARGE, name, "_64_"), 64
    elif SMALL is not None:
        source, function, bits = "scipy-openblas32", _function(SMALL, name, "_"), 32
    else:
        from numba.extending import get_cython_function_address
        return "scipy", get_cython_function_address("scipy.linalg.cython_blas", name), 32
    return source, ctypes.cast(function, ctypes.c_void_p).value, bits


# (name, large) -> (source, address, integer bits)
GEMM = {(name, large): _gemm(name, large) for name in ("dgemm", "sgemm") for large in (False, True)}
ROW_SPLIT_EXACT = (SMALL is not None and LARGE is not None
                   and corename(SMALL) in EXACT_ROW_SPLIT_CORES
                   and corename(LARGE, "64_") in EXACT_ROW_SPLIT_CORES)
CONFIGURATION = " ".join(f"{'large' if large else 'small'}:{source}:{bits}"
                         for (name, large), (source, _, bits) in GEMM.items() if name == "dgemm")
CONFIGURATION += " exact-row-split" if ROW_SPLIT_EXACT else ""
