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
        assert checks.all_finite(a, 0, n) == finite
        if n:  # a part of a: the special value inside it or outside
            start, stop = sorted(rng.integers(0, n + 1, 2))
            assert checks.all_finite(a, start, stop) == bool(np.isfinite(a[start:stop]).all())
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


@pytest.mark.parametrize("out_dtype", [np.float64, np.float32])
@pytest.mark.parametrize("in_dtype", [np.bool_, np.int8, np.int32, np.int64, np.uint64])
def test_cast_within_gives_numpys_cast_and_range_check(in_dtype, out_dtype):
    rng = np.random.default_rng(3)
    info = np.iinfo(in_dtype) if in_dtype is not np.bool_ else None
    for n in (0, 1, 5, 300):
        # small values, and values near the type's ends (whose casts round, in float32)
        if info is None:
            small, big = rng.integers(0, 2, size=n), []
        else:
            small = rng.integers(max(info.min, -3), 4, size=n)
            big = rng.integers(info.max // 2, info.max, size=n, endpoint=True, dtype=in_dtype)
        for a in (np.asarray(small).astype(in_dtype), np.asarray(big, dtype=in_dtype)):
            for low, high in ((0.0, 1.0), (-np.inf, np.inf), (0.0, np.inf), (-2.5, 2.0)):
                out = np.full(len(a), np.nan, out_dtype)
                within = checks.cast_within(a, out, low, high)
                expected = a.astype(out_dtype)
                assert out.tobytes() == expected.tobytes()
                assert within == bool(((expected >= low) & (expected <= high)).all())
