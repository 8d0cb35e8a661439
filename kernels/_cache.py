"""Keep numba's on-disk cache of these kernels honest.

numba checks a cached function against its own source file only: when a helper
it calls from another kernel file changes, the stale machine code is loaded
anyway (numba issue 1833), and it can even fail to link. Nor does it know which
BLAS library a product calls, with how wide integers (_openblas.py). So on import
a digest of every kernel source and of that choice is compared with a stamp kept
beside the cache; when they differ (an edit, an upgrade, a wheel installed or
removed), this folder's cache files are removed and numba compiles afresh.
"""
import hashlib
import os

from numba.core import caching

from ._openblas import CONFIGURATION

HERE = os.path.dirname(os.path.abspath(__file__))
STAMP = "fastmlp-kernels.stamp"


def _kernel_modules():
    return sorted(f[:-3] for f in os.listdir(HERE) if f.endswith(".py"))


def source_digest():
    digest = hashlib.sha256()
    for module in _kernel_modules():
        digest.update(module.encode())
        with open(os.path.join(HERE, module + ".py"), "rb") as f:
            digest.update(f.read())
    digest.update(CONFIGURATION.encode())
    return digest.hexdigest()


def cache_dir():
    """The folder numba caches this package's kernels in (its first usable locator)."""
    impl = getattr(caching, "CacheImpl", None) or getattr(caching, "_CacheImpl")
    for locator_class in impl._locator_classes:
        locator = locator_class.from_function(source_digest, __file__)
        if locator is not None:
            return locator.get_cache_path()
    return None


def drop_stale_cache():
    try:
        folder = cache_dir()
        if folder is None or not os.path.isdir(folder):
            return
        digest = source_digest()
        stamp = os.path.join(folder, STAMP)
        try:
            with open(stamp) as f:
                if f.read() == digest:
                    return
        except OSError:
            pass
        modules = set(_kernel_modules())
        for name in os.listdir(folder):
            if name.endswith((".nbi", ".nbc")) and name.split(".", 1)[0] in modules:
                try:
                    os.remove(os.path.join(folder, name))
                except OSError:
                    pass  # another process removed it first
        temporary = f"{stamp}.{os.getpid()}"
        with open(temporary, "w") as f:
            f.write(digest)
        os.replace(temporary, stamp)
    except OSError:
        pass  # a read-only cache folder: numba will not write there either
    except AttributeError:
        pass  # numba's cache internals moved: the stamp is a safeguard, not a requirement
