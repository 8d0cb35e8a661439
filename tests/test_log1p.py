"""The kernels' log1p (kernels/_log1p.py) against NumPy's, which calls the C library's."""
import numpy as np

from fastmlp.kernels._config import jit
from fastmlp.kernels._log1p import log1p


@jit  # the kernels' options: log1p is inlined into its caller, error model and all
def log1p_all(a, out):
    for i in range(a.shape[0]):
        out[i] = log1p(a[i])


def ulps_from_numpy(a):
    out = np.empty_like(a)
    log1p_all(a, out)
    ref = np.log1p(a)
    return np.abs(out - ref) / np.spacing(np.abs(ref))


def test_within_one_ulp_of_numpy_over_the_whole_range():
    rng = np.random.default_rng(0)
    a = np.concatenate([
        np.exp(-rng.uniform(0, 40, 300_000)),  # exp(-|z|): what the sigmoid loss asks
        rng.uniform(-1, 1, 200_000), rng.uniform(-0.3, 0.42, 100_000),  # both sides of the reduction
        10.0 ** rng.uniform(-300, 300, 200_000), -(10.0 ** rng.uniform(-300, 0, 100_000)) * 0.999999,
        np.arange(-0.99, 50, 0.001), 2.0 ** np.arange(-1074, 1024.0)])
    ulps = ulps_from_numpy(a)
    assert ulps.max() <= 1
    assert (ulps == 0).mean() > 0.9


def test_around_the_bounds_of_its_branches():
    # k = 0 against k = 1 or -1 (sqrt(2)/2 - 1 and sqrt(2) - 1); k = 2 and 54 (the
    # correction's two forms and its end); 2**53 and 2**54, where 1 + x stops being exact
    bounds = [np.sqrt(0.5) - 1, np.sqrt(2) - 1, 3.0, 2.0 ** 53, 2.0 ** 54, 1e-300, -1e-300]
    a = np.concatenate([b + np.spacing(b) * np.arange(-2000, 2000) for b in bounds])
    assert ulps_from_numpy(a).max() <= 1


def test_special_values():
    a = np.array([0.0, -0.0, np.inf, -1.0, -np.inf, -1.5, np.nan, 5e-324, -5e-324,
                  np.finfo(np.float64).max])
    out = np.empty_like(a)
    log1p_all(a, out)
    with np.errstate(divide="ignore", invalid="ignore"):
        np.testing.assert_array_equal(out, np.log1p(a))  # (-0.0 as 0.0: the kernels ignore zeros' signs)


def test_float32_arguments_within_one_float32_ulp():
    a = np.exp(-np.random.default_rng(1).uniform(0, 80, 100_000)).astype(np.float32)
    out = np.empty(a.shape, np.float64)
    log1p_all(a, out)
    exact = np.log1p(a.astype(np.float64))
    assert (np.abs(out - exact) / np.spacing(exact)).max() <= 1
