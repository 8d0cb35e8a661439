"""Finite differences agree with both twins' analytic gradients on every
combination, and catch a broken derivative in either twin."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastmlp
import fastmlp.reference
from conftest import ACTIVATIONS, OUTPUTS, make_targets
from fastmlp import gradcheck

IMPLEMENTATIONS = [fastmlp.MLP, fastmlp.reference.MLP]


@pytest.mark.parametrize("Impl", IMPLEMENTATIONS, ids=["fastmlp", "reference"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradients_match_finite_differences(Impl, activation, output, bias, reduction):
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(15, 4)), make_targets(output, 15, 3, rng)
    model = Impl([4, 5, 4, 3], activation, output, bias=bias, reduction=reduction, random_state=1)
    before = model.params.copy()
    error, details = gradcheck(model, X, y, sample_weight=rng.random(15) + 0.5, alpha=0.1,
                               return_details=True)
    assert error < 1e-7
    assert np.array_equal(model.params, before)  # left as it was
    # kinks are only ReLU's, and rare
    if activation != "relu":
        assert len(details["kinks"]) == 0
    assert len(details["kinks"]) <= 0.1 * model.params.size


def test_random_subset_for_big_models():
    rng = np.random.default_rng(0)
    model = fastmlp.MLP([30, 40, 5], "tanh", "softmax", random_state=0)
    X, y = rng.normal(size=(10, 30)), rng.integers(0, 5, 10)
    error, details = gradcheck(model, X, y, max_checks=50, return_details=True)
    assert len(details["index"]) == 50 and len(set(details["index"])) == 50
    assert error < 1e-7


def test_catches_a_broken_reference_derivative(monkeypatch):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(12, 3)), rng.integers(0, 2, 12)
    model = fastmlp.reference.MLP([3, 4, 2], "tanh", "softmax", random_state=0)
    assert gradcheck(model, X, y) < 1e-7
    broken = lambda a, name: 1 - a  # tanh' is 1 - a^2
    monkeypatch.setattr(fastmlp.reference, "_activation_derivative", broken)
    assert gradcheck(model, X, y) > 1e-2


BROKEN_KERNEL = textwrap.dedent("""
    import numpy as np, fastmlp
    from fastmlp import gradcheck
    import fastmlp.kernels.dense as dense
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(12, 3)), rng.integers(0, 2, 12)
    model = fastmlp.MLP([3, 4, 2], "sigmoid", "softmax", random_state=0)
    good = gradcheck(model, X, y)
    right = dense.derivative_from_output
    dense.derivative_from_output = lambda a, code, one: 1.01 * right(a, code, one)  # 1% off
    print(good, gradcheck(model, X, y))
""")


def test_catches_a_broken_kernel_derivative():
    """The kernels run as plain Python (NUMBA_DISABLE_JIT) so one derivative can be swapped."""
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    result = subprocess.run([sys.executable, "-c", BROKEN_KERNEL], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    good, broken = map(float, result.stdout.split())
    assert good < 1e-7
    assert broken > 1e-3
