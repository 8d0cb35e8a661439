"""The kernels' exp (kernels/_exp.py) against NumPy's, which calls the C library's."""
import numpy as np
from numba import njit

from fastmlp.kernels._exp import exp


@njit
def exp_all(a, out):
    for i in range(a.shape[0]):
        out[i] = exp(a[i])


def test_within_one_ulp_of_numpy_over_the_whole_range():
    rng = np.random.default_rng(0)
    a = np.concatenate([rng.uniform(-750, 712, 200_000), rng.uniform(-40, 40, 200_000),
                        rng.normal(size=100_000), np.arange(-745, 710, 0.125)])
    out = np.empty_like(a)
    exp_all(a, out)
    with np.errstate(over="ignore"):
        ref = np.exp(a)
    normal = np.isfinite(ref) & (ref >= np.finfo(np.float64).tiny)
    ulps = np.abs(out[normal] - ref[normal]) / np.spacing(ref[normal])
    assert ulps.max() <= 1
    assert (ulps == 0).mean() > 0.85
    assert np.array_equal(np.isinf(out), np.isinf(ref))
    small = np.isfinite(ref) & ~normal  # subnormal results and zeros: within one step of the grid
    assert np.abs(out[small] - ref[small]).max() <= np.finfo(np.float64).smallest_subnormal


def test_special_values():
    a = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 709.78, 709.79, -745.13, -745.14, 1e-300])
    out = np.empty_like(a)
    exp_all(a, out)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(out, np.exp(a))


def test_float32_arguments_within_one_float32_ulp():
    a = np.random.default_rng(1).uniform(-100, 88, 100_000).astype(np.float32)
    out = np.empty_like(a)
    exp_all(a, out)
    exact = np.exp(a.astype(np.float64))  # the float32 result's best value
    assert (np.abs(out - exact) / np.spacing(out)).max() <= 1
