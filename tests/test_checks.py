"""The compiled whole-array predicates behind the input checks, against NumPy."""
import numpy as np
import pytest

from fastmlp.kernels import checks

SPECIAL = [np.nan, np.inf, -np.inf]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [0, 1, 7, 64, 1001])
def test_all_finite_and_finite_within_match_numpy(n, dtype):
    rng = np.random.default_rng(n)
    for trial in range(40):
        a = (rng.normal(size=n) * 3).astype(dtype)
        if n and trial % 2:
            a[rng.integers(n)] = SPECIAL[trial % 3]
        low, high = sorted(rng.normal(size=2) * 4)
        finite = bool(np.isfinite(a).all())
        assert checks.all_finite(a) == finite
        got_finite, got_within = checks.finite_within(a, low, high)
        assert got_finite == finite
        with np.errstate(invalid="ignore"):
            assert got_within == bool(not ((a < low) | (a > high)).any())


@pytest.mark.parametrize("n", [0, 1, 9, 300])
def test_all_in_range_matches_numpy(n):
    rng = np.random.default_rng(n)
    for stop in (1, 2, 5, 300):
        a = rng.integers(-2, stop + 2, size=n)
        assert checks.all_in_range(a, stop) == bool(((a >= 0) & (a < stop)).all())
        a = rng.integers(0, stop, size=n)
        assert checks.all_in_range(a, stop)
