import numpy as np
import pytest

ACTIVATIONS = ["relu", "sigmoid", "tanh", "identity"]
OUTPUTS = ["identity", "sigmoid", "softmax", "exp"]


def make_targets(output, n, k, rng):
    """Targets of the right kind for each output, k units."""
    if output == "softmax":
        return rng.integers(0, k, n)
    if output == "sigmoid":
        return (rng.random((n, k)) > 0.5).astype(np.float64)
    if output == "exp":
        return rng.poisson(2.0, (n, k)).astype(np.float64)
    return rng.normal(size=(n, k))


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
