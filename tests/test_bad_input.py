"""Bad input raises ValueError naming the problem, and changes nothing.

For every rejected call we check the message, that the model's parameters,
loss_curve_, n_iter_ and t_ are exactly as before, that the caller's arrays were
not touched, and (separately) that hidden state -- the optimizer's velocity and the
shuffling random generator -- was not advanced either.
"""

import numpy as np
import pytest

import fastmlp
from fastmlp.reference import MLP as ReferenceMLP

# (implementation, whether training checks X for NaN/inf in its first epoch, as fastmlp
# does for a large X: fastmlp._base.X_CHECK_IN_EPOCH_MIN_BYTES, here lowered to 0)
IMPLEMENTATIONS = {"reference": (ReferenceMLP, False), "fastmlp": (fastmlp.MLP, False),
                   "fastmlp-X-in-epoch": (fastmlp.MLP, True)}


@pytest.fixture(params=list(IMPLEMENTATIONS))
def MLP(request, monkeypatch):
    cls, in_epoch = IMPLEMENTATIONS[request.param]
    if in_epoch:
        monkeypatch.setattr(fastmlp._base, "X_CHECK_IN_EPOCH_MIN_BYTES", 0)
    return cls


N, D = 6, 3
CONFIGS = {  # output -> (layer sizes, valid y)
    "softmax": ([D, 4, 3], np.array([0, 1, 2, 0, 1, 2])),
    "sigmoid": ([D, 4, 1], np.array([0.0, 1.0, 1.0, 0.0, 0.5, 1.0])),
    "identity": ([D, 4, 2], np.arange(2.0 * N).reshape(N, 2) / 7),
    "exp": ([D, 4, 1], np.array([0.0, 1.0, 2.0, 0.0, 3.0, 1.0])),
}


def valid_X():
    return np.linspace(-1.0, 1.0, N * D).reshape(N, D)


def trained(MLP, output="softmax", **kw):
    """A model with some history, so an unchanged loss_curve_ means something."""
    sizes, y = CONFIGS[output]
    model = MLP(sizes, "relu", output, random_state=0, **kw)
    model.fit(valid_X(), y, epochs=2, batch_size=4, lr=0.1, momentum=0.9)
    return model, valid_X(), y.copy()


def snapshot(model):
    return dict(params=model.params.copy(),
                coefs=[W.copy() for W in model.coefs_],
                intercepts=[b.copy() for b in model.intercepts_],
                loss_curve=list(model.loss_curve_), n_iter=model.n_iter_, t=model.t_)


def assert_unchanged(model, snap):
    np.testing.assert_array_equal(model.params, snap["params"])
    for W, W0 in zip(model.coefs_, snap["coefs"], strict=True):
        np.testing.assert_array_equal(W, W0)
    for b, b0 in zip(model.intercepts_, snap["intercepts"], strict=True):
        np.testing.assert_array_equal(b, b0)
    assert model.loss_curve_ == snap["loss_curve"]
    assert model.n_iter_ == snap["n_iter"] and model.t_ == snap["t"]


def copies(*arrays):
    return [a.copy() if isinstance(a, np.ndarray) else a for a in arrays]


def assert_same_arrays(before, after):
    for a, b in zip(before, after):
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)


# the public methods that take (X, y); kw carries sample_weight, alpha or settings
DATA_METHODS = {
    "fit": lambda m, X, y, **kw: m.fit(X, y, **{"epochs": 2, "batch_size": 4, "lr": 0.1, **kw}),
    "partial_fit": lambda m, X, y, **kw: m.partial_fit(X, y, **{"batch_size": 4, "lr": 0.1, **kw}),
    "loss": lambda m, X, y, **kw: m.loss(X, y, **kw),
    "loss_and_grad": lambda m, X, y, **kw: m.loss_and_grad(X, y, **kw),
    "input_grad": lambda m, X, y, **kw: m.input_grad(X, y, **kw),
}
X_METHODS = {
    "forward": lambda m, X: m.forward(X),
    "predict": lambda m, X: m.predict(X),
    "predict_proba": lambda m, X: m.predict_proba(X),
}


def bind(method, model):
    return lambda *arrays: method(model, *arrays)


def rejects(model, call, match, *arrays):
    """`call(*arrays)` must raise ValueError matching `match` and change nothing."""
    snap = snapshot(model)
    originals = copies(*arrays)
    with pytest.raises(ValueError, match=match):
        call(*arrays)
    assert_unchanged(model, snap)
    assert_same_arrays(originals, arrays)


# ----------------------------------------------------------------------------- X

def with_nan(X):
    X = X.copy()
    X[2, 1] = np.nan
    return X


def with_value(X, v):
    X = X.copy()
    X[4, 0] = v
    return X


BAD_X = {  # name -> (X, y rows to use, message)
    "1-D": (lambda X: X[:, 0].copy(), N, r"X must be 2-D"),
    "3-D": (lambda X: X[:, :, None].copy(), N, r"X must be 2-D"),
    "too few features": (lambda X: X[:, :-1].copy(), N, r"X has 2 features; this model takes 3"),
    "too many features": (lambda X: np.hstack([X, X]), N, r"X has 6 features; this model takes 3"),
    "NaN": (with_nan, N, r"X contains NaN"),
    "inf": (lambda X: with_value(X, np.inf), N, r"X contains .*infinity"),
    "-inf": (lambda X: with_value(X, -np.inf), N, r"X contains .*infinity"),
    "empty": (lambda X: X[:0].copy(), 0, r"X is empty"),
    "complex": (lambda X: X.astype(complex), N, r"X must hold real numbers.*complex"),
    "object": (lambda X: X.astype(object), N, r"X must hold real numbers.*object"),
    "string": (lambda X: X.astype(str), N, r"X must hold real numbers"),
    "scalar": (lambda X: np.float64(1.0), N, r"X must be 2-D"),
}


@pytest.mark.parametrize("method", list(DATA_METHODS))
@pytest.mark.parametrize("case", list(BAD_X))
def test_bad_X_data_methods(MLP, method, case):
    model, X, y = trained(MLP)
    make, rows, match = BAD_X[case]
    rejects(model, bind(DATA_METHODS[method], model), match, make(X), y[:rows].copy())


@pytest.mark.parametrize("method", list(X_METHODS))
@pytest.mark.parametrize("case", list(BAD_X))
def test_bad_X_prediction_methods(MLP, method, case):
    model, X, _ = trained(MLP)
    make, _, match = BAD_X[case]
    rejects(model, bind(X_METHODS[method], model), match, make(X))


@pytest.mark.parametrize("output", ["sigmoid", "identity", "exp"])
@pytest.mark.parametrize("case", ["NaN", "inf", "-inf"])
def test_non_finite_X_with_targets(MLP, output, case):
    # X is reported whatever the targets: valid ones, integer ones (converted to the
    # model's dtype), and ones that are bad as well
    model, X, y = trained(MLP, output)
    make, _, match = BAD_X[case]
    if output == "sigmoid":
        y_int = np.array([0, 1, 1, 0, 0, 1])
        y_bad = y + 1  # outside [0, 1]
    elif output == "exp":
        y_int, y_bad = y.astype(np.int64), -y - 1
    else:
        y_int, y_bad = (y * 7).astype(np.int64), y.copy()
        y_bad[0, 0] = np.nan
    for targets in (y, y_int, y_bad):
        for method in DATA_METHODS.values():
            rejects(model, bind(method, model), match, make(X), targets)


def test_X_overflowing_float32_is_rejected(MLP):
    # finite in float64 but infinite once converted to the model's float32
    model, X, y = trained(MLP, dtype=np.float32)
    big = with_value(X, 1e300)
    with np.errstate(over="ignore"):
        for call in list(DATA_METHODS.values()):
            rejects(model, bind(call, model), r"X contains NaN or infinity", big, y)
        rejects(model, bind(X_METHODS["forward"], model), r"X contains NaN or infinity", big)


def test_y_overflowing_float32_is_rejected(MLP):
    model, X, y = trained(MLP, "identity", dtype=np.float32)
    big = y.copy()
    big[1, 0] = 1e300
    with np.errstate(all="ignore"):
        rejects(model, bind(DATA_METHODS["loss"], model), r"y contains NaN or infinity", X, big)


# ----------------------------------------------------------------------------- y

def set_at(y, index, value):
    y = y.astype(np.float64) if not np.issubdtype(type(value), np.integer) else y.copy()
    y[index] = value
    return y


BAD_Y = [  # (output, name, make y from the valid y, message)
    # every output
    *[(out, "too short", lambda y: y[:-1].copy(), r"X has 6 samples but y has 5 rows")
      for out in CONFIGS],
    *[(out, "too long", lambda y: np.concatenate([y, y[:1]]), r"X has 6 samples but y has 7 rows")
      for out in CONFIGS],
    *[(out, "scalar", lambda y: np.float64(1.0), r"X has 6 samples but y has no rows")
      for out in CONFIGS],
    *[(out, "NaN", lambda y: set_at(y, 1, np.nan), r"y contains NaN") for out in CONFIGS],
    *[(out, "inf", lambda y: set_at(y, 2, np.inf), r"y contains .*infinity") for out in CONFIGS],
    *[(out, "string", lambda y: y.astype(str), r"y must hold numbers") for out in CONFIGS],
    *[(out, "complex", lambda y: y.astype(complex), r"y must hold numbers") for out in CONFIGS],
    # softmax (3 classes)
    ("softmax", "label too big", lambda y: set_at(y, 0, 3), r"labels must lie in 0\.\.2"),
    ("softmax", "negative label", lambda y: set_at(y, 0, -1), r"labels must lie in 0\.\.2"),
    ("softmax", "fractional label", lambda y: set_at(y, 0, 1.5), r"labels must be whole numbers"),
    ("softmax", "two ones in a row", lambda y: np.array(
        [[1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]]), r"one-hot"),
    ("softmax", "soft targets", lambda y: np.full((N, 3), 1 / 3), r"one-hot"),
    ("softmax", "one-hot with a 2", lambda y: 2 * np.eye(3)[y], r"one-hot"),
    ("softmax", "all-zero row", lambda y: np.eye(3)[y] * (np.arange(N) != 3)[:, None], r"one-hot"),
    ("softmax", "one-hot with 2 columns", lambda y: np.eye(2)[y % 2],
     r"one-hot y must have 3 columns"),
    ("softmax", "3-D", lambda y: np.eye(3)[y][:, :, None], r"labels \(n,\) or one-hot"),
    # sigmoid (1 output)
    ("sigmoid", "above 1", lambda y: set_at(y, 3, 2.0), r"sigmoid output must lie in \[0, 1\]"),
    ("sigmoid", "negative", lambda y: set_at(y, 3, -0.5), r"sigmoid output must lie in \[0, 1\]"),
    ("sigmoid", "too many columns", lambda y: np.stack([y, y], axis=1), r"y must have shape"),
    # identity (2 outputs)
    ("identity", "1-D for 2 outputs", lambda y: y[:, 0].copy(),
     r"y must have shape \(6,\) or \(6, 2\)"),
    ("identity", "3 columns", lambda y: np.hstack([y, y[:, :1]]), r"y must have shape"),
    # exp (Poisson)
    ("exp", "negative count", lambda y: set_at(y, 1, -1.0), r"non-negative"),
]


@pytest.mark.parametrize("method", list(DATA_METHODS))
@pytest.mark.parametrize("output, name, make, match", BAD_Y,
                         ids=[f"{o}-{n}" for o, n, _, _ in BAD_Y])
def test_bad_y(MLP, method, output, name, make, match):
    model, X, y = trained(MLP, output)
    rejects(model, bind(DATA_METHODS[method], model), match, X, make(y))


# ----------------------------------------------------------------- sample_weight

BAD_SW = {
    "too short": (np.ones(N - 1), r"sample_weight must have shape \(6,\)"),
    "2-D": (np.ones((N, 1)), r"sample_weight must have shape \(6,\)"),
    "scalar": (np.float64(2.0), r"sample_weight must have shape \(6,\)"),
    "negative": (np.array([1.0, 1.0, -0.5, 1.0, 1.0, 1.0]), r"sample_weight must be non-negative"),
    "all zero": (np.zeros(N), r"sample_weight must not sum to zero"),
    "NaN": (np.array([1.0, np.nan, 1.0, 1.0, 1.0, 1.0]), r"sample_weight contains NaN"),
    "inf": (np.array([1.0, np.inf, 1.0, 1.0, 1.0, 1.0]), r"sample_weight contains .*infinity"),
    "string": (np.array(["1"] * N), r"sample_weight must hold real numbers"),
}


@pytest.mark.parametrize("method", list(DATA_METHODS))
@pytest.mark.parametrize("case", list(BAD_SW))
def test_bad_sample_weight(MLP, method, case):
    model, X, y = trained(MLP)
    sw, match = BAD_SW[case]
    sw = sw.copy()
    originals = copies(X, y, sw)
    snap = snapshot(model)
    with pytest.raises(ValueError, match=match):
        DATA_METHODS[method](model, X, y, sample_weight=sw)
    assert_unchanged(model, snap)
    assert_same_arrays(originals, (X, y, sw))


# -------------------------------------------------------------- training settings

BAD_SETTINGS = [  # (keyword, value, message)
    ("batch_size", 0, r"batch_size must be an integer >= 1"),
    ("batch_size", -3, r"batch_size must be an integer >= 1"),
    ("batch_size", 2.5, r"batch_size must be an integer"),
    ("batch_size", 4.0, r"batch_size must be an integer"),
    ("batch_size", None, r"batch_size must be an integer"),
    ("batch_size", True, r"batch_size must be an integer"),
    ("lr", 0.0, r"lr must be in \(0"),
    ("lr", -0.1, r"lr must be in \(0"),
    ("lr", np.nan, r"lr must be in"),
    ("lr", np.inf, r"lr must be in"),
    ("lr", "0.1", r"lr must be a real number"),
    ("lr", None, r"lr must be a real number"),
    ("lr", np.array(0.1), r"lr must be a real number"),  # unhashable: not from the settings cache
    ("momentum", 1.0, r"momentum must be in \[0.0, 1.0\)"),
    ("momentum", 1.5, r"momentum must be in"),
    ("momentum", -0.1, r"momentum must be in"),
    ("momentum", np.nan, r"momentum must be in"),
    ("alpha", -1.0, r"alpha must be in \[0"),
    ("alpha", np.nan, r"alpha must be in"),
    ("optimizer", "rmsprop", r"unknown optimizer 'rmsprop'"),
    ("optimizer", "SGD", r"unknown optimizer 'SGD'"),
    ("beta_1", 1.0, r"beta_1 must be in"),
    ("beta_2", -0.1, r"beta_2 must be in"),
    ("epsilon", 0.0, r"epsilon must be in"),
]


@pytest.mark.parametrize("method", ["fit", "partial_fit"])
@pytest.mark.parametrize("key, value, match", BAD_SETTINGS,
                         ids=[f"{k}={v!r}" for k, v, _ in BAD_SETTINGS])
def test_bad_training_settings(MLP, method, key, value, match):
    model, X, y = trained(MLP)
    rejects(model, lambda X, y: DATA_METHODS[method](model, X, y, **{key: value}), match, X, y)


def test_settings_that_change_between_calls_are_checked_and_used():
    # checked settings are remembered by value and type: a new value, 1 after 1.0, or
    # True after 1 is checked again, and each call trains with its own lr as the twin does
    X, y = valid_X(), CONFIGS["softmax"][1]
    runs = []
    for MLP in (fastmlp.MLP, ReferenceMLP):
        model = MLP(CONFIGS["softmax"][0], "relu", "softmax", random_state=0)
        for lr in (0.1, 0.1, 0.3, 1, 1.0, np.float32(0.05)):
            model.partial_fit(X, y, batch_size=4, lr=lr, momentum=0.5)
        model.partial_fit(X, y, batch_size=4, lr=1, momentum=0.5)
        with pytest.raises(ValueError, match="lr must be a real number"):  # True == 1, but a bool
            model.partial_fit(X, y, batch_size=4, lr=True, momentum=0.5)
        runs.append(model.params)
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("epochs", [0, -1, 1.5, 2.0, None, True])
def test_bad_epochs(MLP, epochs):
    model, X, y = trained(MLP)
    rejects(model, lambda X, y: model.fit(X, y, epochs=epochs, batch_size=4, lr=0.1),
            r"epochs must be an integer >= 1", X, y)


@pytest.mark.parametrize("method", ["loss", "loss_and_grad"])
@pytest.mark.parametrize("alpha", [-1.0, np.nan, np.inf, "1"])
def test_bad_alpha_in_loss(MLP, method, alpha):
    model, X, y = trained(MLP)
    rejects(model, lambda X, y: DATA_METHODS[method](model, X, y, alpha=alpha),
            r"alpha must be", X, y)


def test_rejected_adam_call_leaves_its_moments_and_step_count_alone(MLP):
    """As above for Adam, whose step count sets the size of its next steps; the NaN is
    in the second mini-batch, so a step was taken before it is found in the epoch."""
    X, y = valid_X(), CONFIGS["softmax"][1]
    nan_last = X.copy()
    nan_last[-1, 0] = np.nan
    kw = dict(batch_size=4, lr=0.1, optimizer="adam", shuffle=False)
    models = [MLP(CONFIGS["softmax"][0], "relu", "softmax", random_state=5) for _ in range(2)]
    for model in models:
        model._batches_per_call = lambda batch_size: 1  # the step count grows between calls
        model.partial_fit(X, y, **kw)
    with pytest.raises(ValueError, match="X contains NaN"):
        models[0].partial_fit(nan_last, y, **kw)
    for model in models:
        for _ in range(3):
            model.partial_fit(X, y, **kw)
    np.testing.assert_array_equal(models[0].params, models[1].params)
    assert models[0].loss_curve_ == models[1].loss_curve_


def test_rejected_call_leaves_hidden_state_alone(MLP):
    """A rejected partial_fit neither resets the momentum velocity nor draws from the
    random generator: the next good calls continue exactly as if it never happened."""
    X, y = valid_X(), CONFIGS["softmax"][1]
    sizes = CONFIGS["softmax"][0]
    models = [MLP(sizes, "relu", "softmax", random_state=5) for _ in range(2)]
    for model in models:
        model.partial_fit(X, y, batch_size=4, lr=0.1, momentum=0.9)  # shuffles, builds velocity
    bad_calls = [
        dict(lr=-1.0), dict(momentum=1.0), dict(optimizer="adam", lr=np.nan),
        dict(batch_size=0), dict(sample_weight=np.zeros(N)), dict(alpha=-1.0),
    ]
    for kw in bad_calls:
        with pytest.raises(ValueError):
            models[0].partial_fit(X, y, **{"batch_size": 4, "lr": 0.1, "momentum": 0.9, **kw})
    with pytest.raises(ValueError):
        models[0].partial_fit(X, np.full(N, 7), batch_size=4, lr=0.1, momentum=0.9)
    # a NaN in X, also where it is found in the epoch (after steps, and after the Adam
    # call reset the optimizer state, or fit did)
    nan_last = X.copy()
    nan_last[-1, 0] = np.nan  # in the second mini-batch, unshuffled
    for X_bad, kw in ((with_nan(X), {}), (with_nan(X), dict(batch_size=1)),
                      (with_nan(X), dict(optimizer="adam")), (nan_last, dict(shuffle=False))):
        with pytest.raises(ValueError, match="X contains NaN"):
            models[0].partial_fit(X_bad, y, **{"batch_size": 4, "lr": 0.1, "momentum": 0.9, **kw})
    with pytest.raises(ValueError, match="X contains NaN"):
        models[0].fit(with_nan(X), y, epochs=2, batch_size=4, lr=0.1, momentum=0.9)
    for model in models:
        model.partial_fit(X, y, batch_size=4, lr=0.1, momentum=0.9)  # continues the velocity
    np.testing.assert_array_equal(models[0].params, models[1].params)
    # control: the velocity matters here -- restarting it (fit) gives other weights
    control = MLP(sizes, "relu", "softmax", random_state=5)
    control.partial_fit(X, y, batch_size=4, lr=0.1, momentum=0.9)
    control.fit(X, y, epochs=1, batch_size=4, lr=0.1, momentum=0.9)  # same draws, fresh velocity
    assert not np.allclose(control.params, models[1].params, rtol=1e-6, atol=1e-9)
    # and the generator is where it should be: further shuffled epochs agree too
    for model in models:
        model.fit(X, y, epochs=2, batch_size=4, lr=0.1)
    np.testing.assert_array_equal(models[0].params, models[1].params)
    assert models[0].loss_curve_ == models[1].loss_curve_


def test_divergence_restores_previous_epoch(MLP):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(8, 2)), rng.normal(size=8)
    model = MLP([2, 3, 1], "relu", "identity", random_state=0)
    with np.errstate(all="ignore"), pytest.raises(ValueError, match=r"diverged.*restored"):
        model.fit(X, y, epochs=50, batch_size=8, lr=50.0, shuffle=False)
    assert np.isfinite(model.params).all()
    good_epochs = len(model.loss_curve_)
    assert 1 <= good_epochs < 50 and model.n_iter_ == good_epochs
    assert np.isfinite(model.loss_curve_).all()
    twin = MLP([2, 3, 1], "relu", "identity", random_state=0)
    with np.errstate(all="ignore"):
        twin.fit(X, y, epochs=good_epochs, batch_size=8, lr=50.0, shuffle=False)
    np.testing.assert_array_equal(model.params, twin.params)
    assert model.loss_curve_ == twin.loss_curve_


# ------------------------------------------------------------------- constructor

BAD_CONSTRUCTOR = [  # (args, kwargs, message)
    (([3],), {}, r"layer_sizes must list at least an input and an output size"),
    (([],), {}, r"layer_sizes must list at least"),
    ((5,), {}, r"layer_sizes must list at least"),
    ((None,), {}, r"layer_sizes must list at least"),
    (([3, 0, 2],), {}, r"every layer size must be an integer >= 1; got 0"),
    (([3, -4, 2],), {}, r"every layer size must be an integer >= 1"),
    (([3, 2.5, 2],), {}, r"every layer size must be an integer"),
    (([3, 4.0, 2],), {}, r"every layer size must be an integer"),
    (([3, True, 2],), {}, r"every layer size must be an integer"),
    (("abc",), {}, r"every layer size must be an integer"),
    (([3, 4, 2], "gelu"), {}, r"unknown activation 'gelu'"),
    (([3, 4, 2], "softmax"), {}, r"unknown activation 'softmax'"),
    (([3, 4, 2], "relu", "tanh"), {}, r"unknown output 'tanh'"),
    (([3, 4, 2], "relu", None), {}, r"unknown output"),
    (([3, 4, 1], "relu", "softmax"), {}, r"softmax output needs at least 2 units"),
    (([3, 4, 2],), {"reduction": "max"}, r"unknown reduction 'max'"),
    (([3, 4, 2],), {"reduction": None}, r"unknown reduction"),
    (([3, 4, 2],), {"dtype": np.int32}, r"dtype must be float32 or float64"),
    (([3, 4, 2],), {"dtype": np.float16}, r"dtype must be float32 or float64"),
    (([3, 4, 2],), {"dtype": np.complex128}, r"dtype must be float32 or float64"),
    (([3, 4, 2],), {"dtype": "nonsense"}, r"dtype must be float32 or float64"),
    (([3, 4, 2],), {"dtype": object}, r"dtype must be float32 or float64"),
    (([3, 4, 2],), {"random_state": "seed"}, r"random_state must be"),
    (([3, 4, 2],), {"random_state": 1.5}, r"random_state must be"),
]


@pytest.mark.parametrize("args, kwargs, match", BAD_CONSTRUCTOR,
                         ids=[f"{a}-{k}" for a, k, _ in BAD_CONSTRUCTOR])
def test_bad_constructor(MLP, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        MLP(*args, **kwargs)


# ------------------------------------------------------------ weight assignment

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bad_coefs_assignment(MLP, dtype):
    model, _, _ = trained(MLP, dtype=dtype)
    other = np.float32 if dtype == np.float64 else np.float64
    good = [np.full(W.shape, 0.5, dtype=dtype) for W in model.coefs_]
    cases = [  # (arrays, message); the first array is always valid when present
        ([good[0], good[1].astype(other)], r"coefs_\[1\] has dtype"),
        ([good[0], good[1].astype(int)], r"coefs_\[1\] has dtype"),
        ([good[0], good[1].T.copy()], r"coefs_\[1\] has shape \(3, 4\); expected \(4, 3\)"),
        ([good[0], good[1][:, :1].copy()], r"coefs_\[1\] has shape"),
        ([good[0], np.where(np.eye(4, 3) > 0, np.nan, good[1]).astype(dtype)],
         r"coefs_\[1\] contains NaN"),
        ([good[0], np.full_like(good[1], np.inf)], r"coefs_\[1\] contains .*infinity"),
        ([good[0]], r"coefs_ needs 2 arrays; got 1"),
        ([good[0], good[1], good[1]], r"coefs_ needs 2 arrays; got 3"),
        ([good[0].astype(other), good[1]], r"coefs_\[0\] has dtype"),
    ]
    for arrays, match in cases:
        snap = snapshot(model)
        before = copies(*arrays)

        def assign(arrays=arrays):
            model.coefs_ = arrays

        with pytest.raises(ValueError, match=match):
            assign()
        assert_unchanged(model, snap)  # in particular coefs_[0] was not written
        assert_same_arrays(before, arrays)
    # the same valid list is accepted and written
    model.coefs_ = good
    for W, want in zip(model.coefs_, good):
        np.testing.assert_array_equal(W, want)


def test_bad_intercepts_assignment(MLP):
    model, _, _ = trained(MLP)
    good = [np.full(b.shape, 0.25) for b in model.intercepts_]
    cases = [
        ([good[0], good[1].astype(np.float32)], r"intercepts_\[1\] has dtype"),
        ([good[0], good[1][:2].copy()], r"intercepts_\[1\] has shape \(2,\); expected \(3,\)"),
        ([good[0], good[1][None, :].copy()], r"intercepts_\[1\] has shape"),
        ([good[0], np.array([0.0, np.nan, 0.0])], r"intercepts_\[1\] contains NaN"),
        ([good[0]], r"intercepts_ needs 2 arrays; got 1"),
    ]
    for arrays, match in cases:
        snap = snapshot(model)
        with pytest.raises(ValueError, match=match):
            model.intercepts_ = arrays
        assert_unchanged(model, snap)
    model.intercepts_ = good
    for b, want in zip(model.intercepts_, good):
        np.testing.assert_array_equal(b, want)


def test_item_assignment_to_coefs_either_raises_or_writes_through(MLP):
    model, X, y = trained(MLP)
    new = np.full(model.coefs_[0].shape, 0.125)
    try:
        model.coefs_[0] = new
    except TypeError:
        return  # an immutable sequence is a fine answer
    # otherwise the assignment must reach the parameters the model trains
    np.testing.assert_array_equal(model.params[: new.size], new.ravel())
    model.fit(X, y, epochs=1, batch_size=6, lr=0.5)
    np.testing.assert_array_equal(model.coefs_[0].ravel(), model.params[: new.size])


def test_intercepts_of_model_without_bias(MLP):
    model = MLP([3, 4, 2], "relu", "identity", bias=False, random_state=0)
    snap = snapshot(model)
    with pytest.raises(ValueError, match=r"bias=False"):
        model.intercepts_ = [np.zeros(4), np.zeros(2)]
    with pytest.raises(ValueError, match=r"bias=False"):
        model.intercepts_ = []
    assert_unchanged(model, snap)


def test_bad_params_vector(MLP):
    model, _, _ = trained(MLP)
    snap = snapshot(model)
    size = model.params.size
    for flat, match in [(np.zeros(size - 1), r"params\[0\] has shape"),
                        (np.zeros((size, 1)), r"params\[0\] has shape"),
                        (np.zeros(size, dtype=np.float32), r"params\[0\] has dtype"),
                        (np.full(size, np.nan), r"params\[0\] contains NaN")]:
        with pytest.raises(ValueError, match=match):
            model.set_params_vector(flat)
        assert_unchanged(model, snap)
    model.set_params_vector(np.arange(size, dtype=np.float64))
    np.testing.assert_array_equal(model.params, np.arange(size))
    np.testing.assert_array_equal(model.coefs_[0].ravel(), np.arange(model.coefs_[0].size))


# ------------------------------------------------------------------ predict_proba

@pytest.mark.parametrize("output", ["identity", "exp"])
def test_predict_proba_needs_probabilities(MLP, output):
    model, X, _ = trained(MLP, output)
    rejects(model, bind(X_METHODS["predict_proba"], model),
            r"predict_proba needs a sigmoid or softmax output", X)


# ---------------------------------------------- good calls leave inputs untouched

@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("output", list(CONFIGS))
def test_good_calls_do_not_modify_inputs(MLP, output, dtype):
    # arrays already in the model's dtype and C order could be used without a copy:
    # make sure nothing writes into them
    sizes, y = CONFIGS[output]
    model = MLP(sizes, "relu", output, dtype=dtype, random_state=0)
    X = valid_X().astype(dtype)
    y = y.astype(dtype) if output != "softmax" else y.copy()
    sw = np.linspace(0.5, 2.0, N).astype(dtype)
    originals = copies(X, y, sw)
    for method, call in DATA_METHODS.items():
        call(model, X, y, sample_weight=sw)
        assert_same_arrays(originals, (X, y, sw))
    for method, call in X_METHODS.items():
        if output in ("sigmoid", "softmax") or method != "predict_proba":
            call(model, X)
            assert_same_arrays(originals, (X, y, sw))
