"""fastmlp: multilayer perceptrons trained by a Numba-compiled core.

    from fastmlp import MLP            # the compiled trainer
    from fastmlp.reference import MLP  # its plain NumPy twin, same API and numbers
    from fastmlp import MLPClassifier  # scikit-learn's estimators (needs scikit-learn)
"""
from fastmlp._base import Gradients
from fastmlp._gradcheck import gradcheck
from fastmlp._threads import get_num_threads, set_num_threads
from fastmlp.core import MLP
from fastmlp.io import ModelFileError, load, save

__version__ = "0.1.0"
__all__ = ["MLP", "Gradients", "ModelFileError", "gradcheck", "get_num_threads", "load", "save",
           "set_num_threads", "__version__"]


def __getattr__(name):
    # The estimators load scikit-learn, so they are imported on first use:
    # `import fastmlp` and fastmlp.MLP work without scikit-learn installed.
    if name in ("MLPClassifier", "MLPRegressor"):
        try:
            from fastmlp import estimators
        except ImportError as e:
            raise ImportError(f"fastmlp.{name} needs scikit-learn: pip install 'fastmlp[sklearn]'") from e
        return getattr(estimators, name)
    raise AttributeError(f"module 'fastmlp' has no attribute {name!r}")
