"""fastmlp: multilayer perceptrons trained by a Numba-compiled core."""
from fastmlp._base import Gradients

__version__ = "0.1.0"
__all__ = ["Gradients", "__version__"]
