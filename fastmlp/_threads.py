"""Threads: fastmlp's kernels run their own (numba prange over fixed chunks),
so the BLAS they call must run single-threaded.

Left to itself, OpenBLAS splits a product across threads by their number, which
changes the result's last bits and, under fastmlp's own parallel chunks,
oversubscribes the cores. The kernels' BLAS is normally fastmlp's own two
instances of OpenBLAS (kernels/_openblas.py), set to one thread when they load.
Without the scipy-openblas wheels they call SciPy's, and the first time a kernel runs,
SciPy's BLAS library is set to one thread (NumPy's, a separate library in pip
installs, is left alone). That setting is process-wide: SciPy's own linear
algebra in the same process runs single-threaded afterwards.
"""

import os
import threading

import numba

from fastmlp.kernels import _openblas

_lock = threading.Lock()
# fastmlp's own OpenBLAS instances are set to one thread as they load
_done = all(source != "scipy" for source, _, _ in _openblas.GEMM.values())


def _scipy_blas_controllers():
    """threadpoolctl controllers of the BLAS libraries that SciPy (and so numba) calls."""
    import scipy
    import scipy.linalg.cython_blas  # noqa: F401  (loads the library)
    from threadpoolctl import ThreadpoolController

    blas = ThreadpoolController().select(user_api="blas")
    scipy_root = os.path.dirname(os.path.dirname(os.path.abspath(scipy.__file__)))
    folders = tuple(os.path.join(scipy_root, name, "") for name in ("scipy", "scipy.libs"))
    own = [c for c in blas.lib_controllers if os.path.abspath(c.filepath).startswith(folders)]
    # pip wheels keep SciPy's BLAS in site-packages/scipy.libs; a shared system
    # BLAS (conda, distro packages) serves NumPy and SciPy alike
    return own or blas.lib_controllers


def single_threaded_blas():
    """Make the BLAS under fastmlp's kernels single-threaded (once per process)."""
    global _done
    if _done:
        return
    with _lock:
        if not _done:
            for controller in _scipy_blas_controllers():
                controller.set_num_threads(1)
            _done = True


def set_num_threads(n):
    """Threads fastmlp's parallel kernels use (numba's setting for this thread)."""
    numba.set_num_threads(int(n))


def get_num_threads():
    return numba.get_num_threads()
