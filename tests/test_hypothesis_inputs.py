"""Property tests of bad (and oddly packaged good) input, with hypothesis.

Whatever X, y, sample_weight or order a caller passes -- any shape, any dtype
(float16..64, ints, bool, complex, object, strings, datetimes), NaN/inf, empty
arrays, nested lists, pandas frames, read-only, Fortran-ordered, strided or
reversed arrays -- every public method either

- succeeds, and then gives bitwise what it gives for the same values as a
  C-contiguous array in the model's dtype, or
- raises ValueError (the only exception these methods document) with a message,
  and leaves the model exactly as it was (weights, optimizer state, counters,
  loss curve, random generator);

and the caller's objects are never modified. For X there is an exact oracle of
what is valid. tests/test_bad_input.py pins the individual messages.

In CI (CI=true) conftest.py loads a derandomised hypothesis profile.
"""
import warnings

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402

import fastmlp  # noqa: E402
import fastmlp.reference  # noqa: E402

try:
    import pandas as pd
except ImportError:  # frames are left out of the forms
    pd = None

TWINS = {"fastmlp": fastmlp.MLP, "reference": fastmlp.reference.MLP}
N_FEATURES, N_CLASSES = 3, 3
EXAMPLES = 120
SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])

DTYPES = ["float64", "float32", "float16", "int64", "int32", "int8", "uint8", "uint64", "bool",
          "complex128", "object", "U4", "datetime64[s]"]
FORMS = ["C", "F", "strided", "reversed", "read-only", "list", "tuple"] + (["frame"] if pd else [])


# ------------------------------------------------------------------ strategies

def elements(dtype):
    """Element strategies; floats are drawn as float64 and cast (see `arrays`)."""
    if dtype.startswith("float"):
        extreme = st.sampled_from([0.0, -0.0, 1e-300, 1e-40, 1e30, -1e30, 3e38, 1e300, -1e300, 65504.0])
        finite = st.floats(-1e6, 1e6)
        special = st.sampled_from([np.nan, np.inf, -np.inf])
        return st.one_of(finite, finite, finite, extreme, special)
    if dtype == "complex128":
        return st.complex_numbers(max_magnitude=1e6, allow_nan=False)
    if dtype == "object":
        return st.one_of(st.floats(-10, 10), st.integers(-5, 5), st.none(), st.text(max_size=2))
    if dtype == "U4":
        return st.sampled_from(["1", "2.5", "nan", "a"])
    if dtype.startswith("datetime"):
        return st.integers(0, 10**9).map(lambda s: np.datetime64(s, "s"))
    return None  # integers and bool: hypothesis's defaults over the whole range


@st.composite
def arrays(draw, n_features=N_FEATURES, rows=None):
    """(array, form name): mostly 2-D arrays with about the right width."""
    dtype = draw(st.sampled_from(DTYPES))
    ndim = draw(st.sampled_from([2, 2, 2, 2, 2, 1, 0, 3]))
    if ndim == 2:
        n = rows if rows is not None else draw(st.integers(0, 6))
        d = draw(st.sampled_from([n_features] * 4 + [0, 1, n_features + 1]))
        shape = (n, d)
    else:
        shape = draw(hnp.array_shapes(min_dims=ndim, max_dims=ndim, min_side=0, max_side=4)) if ndim else ()
    drawn = "float64" if dtype.startswith("float") else dtype
    array = draw(hnp.arrays(np.dtype(drawn), shape, elements=elements(dtype)))
    with np.errstate(all="ignore"):  # 1e300 as float16 is inf: a value a caller can have
        array = array.astype(dtype)
    return array, draw(st.sampled_from(FORMS))


def packaged(array, form):
    """The same values, packaged as `form`."""
    if form == "F":
        return np.asfortranarray(array)
    if form == "strided" and array.ndim >= 1:
        big = np.zeros(tuple(2 * s for s in array.shape), dtype=array.dtype)
        view = big[tuple(slice(None, None, 2) for _ in array.shape)]
        view[...] = array
        return view
    if form == "reversed" and array.ndim >= 1:
        return array[::-1].copy()[::-1]  # a negative-stride view of the same values
    if form == "read-only":
        array = array.copy()
        array.setflags(write=False)
        return array
    if form == "list":
        return array.tolist()
    if form == "tuple" and array.ndim >= 1:
        return tuple(array.tolist())
    if form == "frame" and array.ndim == 2:
        return pd.DataFrame(array)
    return array


def fingerprint(obj):
    """What the caller holds, to check nothing wrote into it."""
    if pd is not None and isinstance(obj, pd.DataFrame):
        return ("frame", repr(obj.dtypes.tolist()), repr(obj.to_numpy().tolist()))
    if isinstance(obj, np.ndarray):
        body = repr(obj.tolist()) if obj.dtype.kind in "OUM" else obj.tobytes()
        return ("array", obj.dtype.str, obj.shape, obj.strides, obj.flags.writeable, body)
    return ("other", repr(obj))


def valid_X(X, dtype, n_features=N_FEATURES):
    """The oracle: what the methods must accept as X."""
    a = np.asarray(X)
    if a.dtype.kind not in "biuf" or a.ndim != 2 or a.shape[0] == 0 or a.shape[1] != n_features:
        return False
    with np.errstate(all="ignore"):
        return bool(np.isfinite(a.astype(dtype)).all())


# ------------------------------------------------------------------- the model

def make_model(twin, dtype=np.float64, output="softmax"):
    k = N_CLASSES if output == "softmax" else 2
    model = TWINS[twin]([N_FEATURES, 4, k], "tanh", output, dtype=dtype, random_state=0)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(6, N_FEATURES))
    y = rng.integers(0, k, 6) if output == "softmax" else rng.normal(size=(6, k))
    model.fit(X, y, epochs=1, batch_size=4, lr=0.1, momentum=0.9)
    return model


def model_state(model):
    rng = model._rng
    rng_state = repr(rng.get_state(legacy=False) if hasattr(rng, "get_state") else rng.bit_generator.state)
    return (model.params.tobytes(), model._velocity.tobytes(), model._adam_m.tobytes(),
            model._adam_v.tobytes(), model._adam_step, tuple(model.loss_curve_), model.n_iter_, model.t_,
            rng_state)


def as_bytes(result):
    """A method's result, comparable bitwise (NaN included)."""
    if isinstance(result, tuple):  # loss_and_grad
        return (np.float64(result[0]).tobytes(), result[1].flat.tobytes())
    if isinstance(result, fastmlp.MLP.__mro__[1]):  # fit / partial_fit return the model
        return model_state(result)
    return np.asarray(result).tobytes() + str(np.asarray(result).dtype).encode()


X_METHODS = ["forward", "predict", "predict_proba"]
DATA_METHODS = ["loss", "loss_and_grad", "input_grad", "fit", "partial_fit"]


def call(model, method, X, y=None, **kw):
    if method in X_METHODS:
        return getattr(model, method)(X)
    if method == "fit":
        return model.fit(X, y, epochs=2, batch_size=4, lr=0.05, **kw)
    if method == "partial_fit":
        return model.partial_fit(X, y, batch_size=4, lr=0.05, **kw)
    return getattr(model, method)(X, y, **kw)


def outcome(model, method, *args, **kw):
    """('ok', result bytes) or ('ValueError', message); any other exception fails.
    A rejected call leaves the model as it was and warns about nothing."""
    before = model_state(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with np.errstate(all="ignore"):  # valid but extreme values may overflow inside
                result = call(model, method, *args, **kw)
        except ValueError as e:
            assert str(e), "an error without a message"
            if "diverged" in str(e):
                # valid but extreme data: training stopped; the epochs completed
                # before stay, the weights are finite
                assert np.isfinite(model.params).all() and len(model.loss_curve_) == model.n_iter_
                return ("diverged", str(e), model_state(model))
            assert model_state(model) == before, f"{method} changed the model before refusing"
            assert not caught, [str(w.message) for w in caught]
            return ("ValueError", str(e))
    return ("ok", as_bytes(result))


# ----------------------------------------------------------------------- tests

@pytest.mark.parametrize("twin", list(TWINS))
@SETTINGS
@given(data=st.data())
def test_any_X(twin, data):
    """Every method on an arbitrary X (and matching, valid y): valid X (by the
    oracle) gives the canonical array's result, invalid X a ValueError about X."""
    dtype = data.draw(st.sampled_from([np.float64, np.float32]))
    method = data.draw(st.sampled_from(X_METHODS + DATA_METHODS))
    array, form = data.draw(arrays())
    X = packaged(array, form)
    rows = np.asarray(X).shape[0] if np.ndim(X) >= 1 else 1
    y = np.arange(max(rows, 1)) % N_CLASSES
    before = fingerprint(X), fingerprint(y)
    got = outcome(make_model(twin, dtype), method, X, y[:rows] if np.ndim(X) >= 1 else y)
    assert (fingerprint(X), fingerprint(y)) == before, "the caller's arrays were modified"
    hypothesis.event(f"X {'valid' if valid_X(X, dtype) else 'invalid'}: {got[0]}")
    if valid_X(X, dtype):
        canonical = np.ascontiguousarray(np.asarray(X), dtype=dtype)
        assert got == outcome(make_model(twin, dtype), method, canonical, y[:rows])
        # (or, should forward refuse outputs that overflow, a ValueError saying so)
        assert got[0] in ("ok", "diverged") or "overflow" in got[1], got
    else:
        assert got[0] == "ValueError" and "X" in got[1], got


Y_KINDS = ["labels", "one-hot", "floats", "any"]


@st.composite
def ys(draw, n, output):
    kind = draw(st.sampled_from(["good", "good"] + Y_KINDS))
    if kind == "good":  # valid for the output, in some dtype and packaging
        if output == "softmax":
            y = draw(hnp.arrays(draw(st.sampled_from(["int64", "uint8", "float32", "float64"])), (n,),
                                elements=st.sampled_from([0, 1, 2])))
        else:
            y = draw(hnp.arrays(draw(st.sampled_from(["float64", "float32", "int32"])), (n, 2),
                                elements=st.integers(-10, 10)))
    elif kind == "labels":
        dtype = draw(st.sampled_from(["int64", "int8", "uint8", "float64", "float32", "bool"]))
        shape = draw(st.sampled_from([(n,), (n,), (n,), (n - 1,), (n, 1)]))
        good = [0, 1, 2] if dtype != "bool" else [False, True]
        bad = {"f": [3, -1, 1.5, np.nan, np.inf], "b": []}.get(
            np.dtype(dtype).kind, [3, 100] + ([-1] if dtype != "uint8" else []))
        values = good if draw(st.booleans()) else good + bad
        y = draw(hnp.arrays(dtype, shape, elements=st.sampled_from(values)))
    elif kind == "one-hot":
        labels = draw(hnp.arrays("int64", (n,), elements=st.integers(0, N_CLASSES - 1)))
        y = np.eye(N_CLASSES)[labels]
        if draw(st.booleans()):
            y[draw(st.integers(0, n - 1)), draw(st.integers(0, N_CLASSES - 1))] = draw(
                st.sampled_from([0.5, 2.0, np.nan, 1.0]))
    elif kind == "floats":
        y = draw(hnp.arrays("float64", draw(st.sampled_from([(n,), (n, 2), (n, 2), (n, 3)])),
                            elements=st.one_of(st.floats(-10, 10), elements("float64"))))
    else:
        y = draw(arrays(n_features=N_CLASSES, rows=n))[0]
    return packaged(y, draw(st.sampled_from(FORMS)))


@pytest.mark.parametrize("output", ["softmax", "identity"])
@pytest.mark.parametrize("twin", list(TWINS))
@SETTINGS
@given(data=st.data())
def test_any_y_sample_weight_and_order(twin, output, data):
    """Valid X with arbitrary y, sample_weight and (partial_fit) order: success
    as for the canonical arrays, or a ValueError that changes nothing."""
    n = 6
    X = np.linspace(-1, 1, n * N_FEATURES).reshape(n, N_FEATURES)
    method = data.draw(st.sampled_from(DATA_METHODS))
    y = data.draw(ys(n, output))
    kw = {}
    sw_kind = data.draw(st.sampled_from(["none", "none", "good", "any"]))
    if sw_kind != "none":
        good = sw_kind == "good"
        sw, form = data.draw(st.one_of(
            st.tuples(hnp.arrays("float64", (n,) if good else st.sampled_from([(n,), (n - 1,), (n, 1)]),
                                 elements=st.sampled_from([0.0, 0.5, 1.0, 2.0] + ([] if good else
                                                                                   [-1.0, np.nan, np.inf]))),
                      st.sampled_from(FORMS)),
            *([] if good else [arrays(n_features=1, rows=n)])))
        kw["sample_weight"] = packaged(sw, form)
    if method == "partial_fit" and data.draw(st.booleans()):
        dtype = data.draw(st.sampled_from(["int64", "int32", "uint8", "float64"]))
        good = data.draw(st.booleans())
        order = data.draw(hnp.arrays(dtype, (n,) if good else st.sampled_from([(n,), (3,), (0,), (2, 2)]),
                                     elements=st.integers(0 if good or dtype == "uint8" else -1,
                                                          n - 1 if good else n)))
        kw["order"] = packaged(order, data.draw(st.sampled_from(FORMS)))
    before = [fingerprint(v) for v in (X, y, *kw.values())]
    got = outcome(make_model(twin, output=output), method, X, y, **kw)
    assert [fingerprint(v) for v in (X, y, *kw.values())] == before, "the caller's arrays were modified"
    hypothesis.event(f"{method}: {got[0]}")
    if got[0] != "ValueError":  # the same values as plain arrays give the same bits
        canonical = {k: np.array(np.asarray(v)) for k, v in kw.items()}
        assert got == outcome(make_model(twin, output=output), method, X, np.array(np.asarray(y)),
                              **canonical)


@pytest.mark.parametrize("twin", list(TWINS))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=hnp.arrays("float64", (7, N_FEATURES), elements=st.floats(-5, 5)),
       dtype=st.sampled_from(["float64", "float32", "int64", "bool", "uint8"]),
       model_dtype=st.sampled_from([np.float64, np.float32]))
def test_valid_X_in_every_form_gives_identical_results(twin, values, dtype, model_dtype):
    """The same valid values in every packaging: bitwise equal results from every
    method, fits included."""
    array = values.astype(dtype)
    y = np.arange(7) % N_CLASSES
    canonical = np.ascontiguousarray(array, dtype=model_dtype)
    for method in X_METHODS + DATA_METHODS:
        want = outcome(make_model(twin, model_dtype), method, canonical, y)
        assert want[0] == "ok"
        for form in FORMS:
            X = packaged(array, form)
            assert outcome(make_model(twin, model_dtype), method, X, y) == want, (method, form)


def test_wrong_feature_counts_at_predict_name_both_counts():
    for twin in TWINS:
        model = make_model(twin)
        for d in (0, 1, 2, 4, 50):
            with pytest.raises(ValueError, match=rf"X has {d} features; this model takes 3"):
                model.predict(np.zeros((2, d)))


@pytest.mark.skipif(pd is None, reason="needs pandas")
def test_pandas_frames_and_series():
    """Numeric frames (one dtype or mixed ints and floats) are read as their
    values; a Series works as y and as sample_weight; frames with non-numeric
    columns are refused with a ValueError."""
    X = pd.DataFrame({"a": [1.0, 2.0, 3.0, 4.0], "b": [1, 2, 3, 4], "c": np.float32([0.5, 0, 1, 2])})
    y = pd.Series([0, 1, 2, 1])
    sw = pd.Series([1.0, 2.0, 1.0, 0.5])
    for twin in TWINS:
        a, b = make_model(twin), make_model(twin)
        a.fit(X, y, epochs=2, batch_size=2, sample_weight=sw)
        b.fit(X.to_numpy(dtype=np.float64), y.to_numpy(), epochs=2, batch_size=2, sample_weight=sw.to_numpy())
        assert model_state(a) == model_state(b)
        assert np.array_equal(a.predict_proba(X), b.predict_proba(X.to_numpy()))
        with pytest.raises(ValueError, match="X must hold real numbers"):
            a.predict(X.assign(c=["x", "y", "z", "w"]))
