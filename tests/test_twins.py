"""fastmlp.MLP against its NumPy twin over every activation x output x bias x
reduction x batch size x dtype: forward, loss, every gradient view, dL/dX and
5-epoch training trajectories."""
import numpy as np
import pytest

import fastmlp
import fastmlp.reference
from conftest import ACTIVATIONS, OUTPUTS, make_targets
from fastmlp.kernels import network
from fastmlp.kernels._config import ALIASED_ROW_BYTES, BLAS_MIN_MACS, TRANSPOSED_W_MAX_MACS

N, SIZES = 23, [5, 7, 4, 3]
TOLERANCE = {np.float64: 1e-10, np.float32: 1e-4}


def rel_err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)


def twins(**kw):
    return fastmlp.MLP(SIZES, **kw), fastmlp.reference.MLP(SIZES, **kw)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_forward_loss_and_gradients_match(activation, output, bias, reduction, dtype):
    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(N, SIZES[0])), make_targets(output, N, SIZES[-1], rng)
    sw = rng.random(N) + 0.5
    fast, ref = twins(activation=activation, output=output, bias=bias, reduction=reduction,
                      dtype=dtype, random_state=3)
    assert np.array_equal(fast.params, ref.params)  # identical initial draws
    tol = TOLERANCE[dtype]
    out = fast.forward(X)
    assert out.dtype == dtype
    assert rel_err(out, ref.forward(X)) < tol
    for weights in (None, sw):
        loss_f, grads_f = fast.loss_and_grad(X, y, sample_weight=weights, alpha=0.3)
        loss_r, grads_r = ref.loss_and_grad(X, y, sample_weight=weights, alpha=0.3)
        assert abs(loss_f - loss_r) <= tol * abs(loss_r)
        assert loss_f == pytest.approx(fast.loss(X, y, sample_weight=weights, alpha=0.3), rel=1e-12)
        assert grads_f.flat.dtype == dtype
        for view_f, view_r in zip(grads_f.coefs + grads_f.intercepts, grads_r.coefs + grads_r.intercepts):
            assert view_f.shape == view_r.shape
            assert rel_err(view_f, view_r) < tol
        assert rel_err(fast.input_grad(X, y, sample_weight=weights), ref.input_grad(X, y, sample_weight=weights)) < tol


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("batch_size", [1, 6, N], ids=["batch1", "batch6", "batchN"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_five_epoch_trajectories_match(activation, output, bias, reduction, batch_size, dtype):
    rng = np.random.default_rng(11)
    X, y = rng.normal(size=(N, SIZES[0])), make_targets(output, N, SIZES[-1], rng)
    fast, ref = twins(activation=activation, output=output, bias=bias, reduction=reduction,
                      dtype=dtype, random_state=5)
    lr = 0.01 if reduction == "mean" else 0.01 / N
    for model in (fast, ref):
        model.fit(X, y, epochs=5, batch_size=batch_size, lr=lr, momentum=0.5, nesterov=True, alpha=1e-3)
        model.partial_fit(X, y, batch_size=batch_size, lr=lr, optimizer="adam")
        model.partial_fit(X, y, batch_size=batch_size, lr=lr, optimizer="adam")
    tol = TOLERANCE[dtype]
    assert fast.params.dtype == dtype
    assert rel_err(fast.params, ref.params) < tol
    assert rel_err(fast.loss_curve_, ref.loss_curve_) < tol
    assert len(fast.loss_curve_) == 7


# Layers of 19 and 9 units: the hand-written forward loops sum outputs eight at a
# time and then one by one; at batch 1 and 2 every product here is small enough for
# them (kernels._config.BLAS_MIN_MACS), at N some run in BLAS.
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("momentum", [0.0, 0.9], ids=["sgd", "momentum"])
def test_input_gradients_both_ways_match(momentum, dtype):
    """A layer's input gradient D @ W.T runs through a transposed copy of W (in the
    layer's part of grads) below TRANSPOSED_W_MAX_MACS and straight from W at and above
    it. Here the output layer's takes the copy and the first layer's dL/dX the straight
    way; neither may spoil the weight gradients written into grads afterwards."""
    rows = 64
    fan_in = TRANSPOSED_W_MAX_MACS // (rows * rows)  # the first layer: rows x fan_in x rows
    sizes = [fan_in, rows, 10]
    assert BLAS_MIN_MACS <= rows * rows * 10 < TRANSPOSED_W_MAX_MACS <= rows * fan_in * rows
    rng = np.random.default_rng(21)
    X, y = rng.normal(size=(rows, fan_in)), rng.integers(0, 10, rows)
    fast, ref = (Impl(sizes, dtype=dtype, random_state=4) for Impl in (fastmlp.MLP, fastmlp.reference.MLP))
    tol = TOLERANCE[dtype]
    assert rel_err(fast.input_grad(X, y), ref.input_grad(X, y)) < tol
    loss_f, grads_f = fast.loss_and_grad(X, y, alpha=0.1)
    loss_r, grads_r = ref.loss_and_grad(X, y, alpha=0.1)
    assert rel_err(grads_f.flat, grads_r.flat) < tol
    for model in (fast, ref):
        model.fit(X, y, epochs=3, batch_size=rows, lr=0.01, momentum=momentum)
    assert rel_err(fast.params, ref.params) < tol


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("batch_size", [1, 2, N], ids=["batch1", "batch2", "batchN"])
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_layers_wider_than_eight_match(activation, output, batch_size, dtype):
    sizes = [6, 19, 9, 3]
    rng = np.random.default_rng(13)
    X, y = rng.normal(size=(N, sizes[0])), make_targets(output, N, sizes[-1], rng)
    fast, ref = (Impl(sizes, activation=activation, output=output, dtype=dtype, random_state=2)
                 for Impl in (fastmlp.MLP, fastmlp.reference.MLP))
    tol = TOLERANCE[dtype]
    assert rel_err(fast.forward(X), ref.forward(X)) < tol
    for model in (fast, ref):
        model.fit(X, y, epochs=3, batch_size=batch_size, lr=0.01)
    assert rel_err(fast.params, ref.params) < tol
    assert rel_err(fast.loss_curve_, ref.loss_curve_) < tol


@pytest.fixture
def one_thread():
    """The serial kernels, also on a machine with more cores: at 2 threads large layers
    would compile the parallel kernels for each output and dtype (~120 s of the suite);
    tests/test_threads.py checks those give the serial kernels' bits, gaps included."""
    previous = fastmlp.get_num_threads()
    fastmlp.set_num_threads(1)
    yield
    fastmlp.set_num_threads(previous)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("output", OUTPUTS)
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_hidden_rows_with_gaps_match(activation, output, dtype, one_thread):
    """Hidden layers 4 KiB wide lie in the kernels' buffers with a gap after each row
    (kernels/network.with_row_strides); the gaps must not leak into forward, loss, gradients,
    dL/dX or training, in one call for all rows and in mini-batches."""
    width = ALIASED_ROW_BYTES // np.dtype(dtype).itemsize
    sizes = [6, width, width, 3]
    rng = np.random.default_rng(17)
    X, y = rng.normal(size=(N, sizes[0])), make_targets(output, N, sizes[-1], rng)
    fast, ref = (Impl(sizes, activation=activation, output=output, dtype=dtype, random_state=6)
                 for Impl in (fastmlp.MLP, fastmlp.reference.MLP))
    strides = network.with_row_strides(fast._layout, np.dtype(dtype).itemsize)[:, 4]
    assert strides[0] > width and strides[1] > width and strides[2] == 3
    tol = TOLERANCE[dtype]
    assert rel_err(fast.forward(X), ref.forward(X)) < tol
    (loss_f, grads_f), (loss_r, grads_r) = fast.loss_and_grad(X, y), ref.loss_and_grad(X, y)
    assert abs(loss_f - loss_r) <= tol * abs(loss_r)
    assert rel_err(grads_f.flat, grads_r.flat) < tol
    assert rel_err(fast.input_grad(X, y), ref.input_grad(X, y)) < tol
    for model in (fast, ref):
        model.fit(X, y, epochs=2, batch_size=1, lr=1e-3)
        model.fit(X, y, epochs=2, batch_size=8, lr=1e-3, momentum=0.5)
    assert rel_err(fast.params, ref.params) < tol
    assert rel_err(fast.loss_curve_, ref.loss_curve_) < tol


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("batch_size", [1, N], ids=["batch1", "batchN"])
@pytest.mark.parametrize("alpha", [0.0, 1e-2], ids=["noL2", "L2"])
@pytest.mark.parametrize("output", OUTPUTS)
def test_plain_sgd_steps_inside_the_backward_pass_match(output, alpha, batch_size, dtype):
    """Plain SGD (no momentum) is taken inside the backward pass, in the weight-gradient
    gemm on larger layers (batch N) and after the loops on small ones (batch 1)."""
    rng = np.random.default_rng(13)
    X, y = rng.normal(size=(N, SIZES[0])), make_targets(output, N, SIZES[-1], rng)
    sw = rng.random(N) + 0.5
    fast, ref = twins(output=output, dtype=dtype, random_state=2)
    for model in (fast, ref):
        model.fit(X, y, epochs=6, batch_size=batch_size, lr=0.05, alpha=alpha, sample_weight=sw)
    tol = TOLERANCE[dtype]
    assert rel_err(fast.params, ref.params) < tol
    assert rel_err(fast.loss_curve_, ref.loss_curve_) < tol
    assert not np.array_equal(fast.params, twins(output=output, dtype=dtype, random_state=2)[0].params)


def test_views_are_the_flat_parameters():
    model = fastmlp.MLP([3, 4, 2], random_state=0)
    model.coefs_[0][1, 2] = 5.0
    model.intercepts_[1][:] = -1.0
    W0 = model.coefs_[0]
    assert model.params[1 * 4 + 2] == 5.0
    assert np.all(model.params[3 * 4 + 4 + 4 * 2:] == -1.0)
    model.fit(np.ones((4, 3)), [0, 1, 0, 1], epochs=1)
    assert W0 is model.coefs_[0] and np.shares_memory(W0, model.params)  # updated in place


def test_training_starts_from_weights_the_user_set():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(30, 4)), rng.integers(0, 3, 30)
    a = fastmlp.MLP([4, 5, 3], random_state=1)
    b = fastmlp.reference.MLP([4, 5, 3], random_state=2)
    b.coefs_ = [W.copy() for W in a.coefs_]
    b.intercepts_ = [v.copy() for v in a.intercepts_]
    a.fit(X, y, epochs=3, shuffle=False)
    b.fit(X, y, epochs=3, shuffle=False)
    assert rel_err(a.params, b.params) < 1e-12


def test_float32_model_keeps_float32_everywhere():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 6)), rng.integers(0, 3, 40)
    model = fastmlp.MLP([6, 8, 3], dtype=np.float32, random_state=0).fit(X, y, epochs=2)
    assert model.params.dtype == np.float32
    assert all(W.dtype == np.float32 for W in model.coefs_ + model.intercepts_)
    assert model.forward(X).dtype == np.float32
    assert model.predict_proba(X).dtype == np.float32
    assert model.loss_and_grad(X, y)[1].flat.dtype == np.float32


@pytest.mark.parametrize("momentum", [0.0, 0.5], ids=["fused", "velocity"])
def test_float32_sgd_step_rounds_in_float32(momentum):
    """One SGD step of a float32 model, worked by hand: the forward pass and the
    deltas are small integers (exact in float32), so the step is the only rounding,
    and each weight must be float32 arithmetic: w + fl32(-lr a) d, with or without
    a fused multiply-add. (A float64 lr once made the fused step compute in float64.)"""
    model = fastmlp.MLP([2, 4, 1], activation="relu", output="identity", dtype=np.float32,
                        random_state=0)
    model.coefs_ = [np.array([[1, 0, 2, -1], [0, 1, 0, 0]], np.float32),
                    np.array([[1], [3], [-2], [1]], np.float32)]
    model.intercepts_ = [np.zeros(4, np.float32), np.zeros(1, np.float32)]
    x, y = np.array([[3.0, 5.0]]), np.array([-1.0])
    hidden = np.array([3, 5, 6, 0], np.float32)  # relu(x @ W1): the last unit is off
    d_out = np.float32(6 - -1)  # z = 3 + 15 - 12 = 6, squared error: z - y
    d_hidden = d_out * np.array([1, 3, -2, 0], np.float32)  # times W2, zero where relu is off
    lr = np.float32(0.1)
    before = [W.astype(np.float32) for W in model.coefs_]
    model.partial_fit(x, y, batch_size=1, lr=0.1, momentum=momentum, shuffle=False)

    def candidates(W, a, d):
        """W + s d with s = fl32(-lr a), rounded after each operation or with the
        last multiply-add fused (velocity: W + fl32(-lr g), g = a d exact); and the
        fused step in float64 arithmetic, which must differ from both."""
        W, a, d = W.astype(np.float32), a[:, None].astype(np.float32), d[None, :].astype(np.float32)
        if momentum:
            step = (-lr) * (a * d)
            return [W + step], None
        s = (-lr) * a
        fused = (W.astype(np.float64) + s.astype(np.float64) * d).astype(np.float32)
        in_float64 = (W.astype(np.float64) - np.float64(lr) * a * d).astype(np.float32)
        return [W + s * d, fused], in_float64

    for W, W0, a, d in [(model.coefs_[0], before[0], x[0], d_hidden),
                        (model.coefs_[1], before[1], hidden, np.array([d_out]))]:
        allowed, in_float64 = candidates(W0, a, d)
        assert np.logical_or.reduce([W == c for c in allowed]).all(), (W, allowed)
        if in_float64 is not None:  # the test can tell float64 arithmetic apart
            assert not np.logical_or.reduce([in_float64 == c for c in allowed]).all()


def test_extreme_logits_stay_finite():
    """Logits of +-1e4 in both dtypes: finite losses, outputs and gradients."""
    for dtype in (np.float32, np.float64):
        for output, y in (("sigmoid", np.array([[0.0], [1.0], [1.0], [0.0]])), ("softmax", np.array([0, 1, 1, 0]))):
            k = 1 if output == "sigmoid" else 2
            for Impl in (fastmlp.MLP, fastmlp.reference.MLP):
                model = Impl([1, k], "identity", output, dtype=dtype, random_state=0)
                model.coefs_ = [np.full((1, k), 1.0, dtype) * np.arange(1, k + 1, dtype=dtype)]
                model.intercepts_ = [np.zeros(k, dtype)]
                X = np.array([[1e4], [1e4], [-1e4], [-1e4]])
                loss, grads = model.loss_and_grad(X, y)
                assert np.isfinite(loss) and np.isfinite(grads.flat).all()
                assert np.isfinite(model.forward(X)).all()
                # the wrong-side rows pay a loss of ~|logit gap| = 1e4: stable, not inf
                assert 1e3 < loss < 1e5


@pytest.mark.parametrize("Impl", [fastmlp.MLP, fastmlp.reference.MLP], ids=["fastmlp", "reference"])
def test_batch_of_zero_weight_has_no_loss_and_no_gradient(Impl):
    """scikit-learn divides 0 by 0 here; fastmlp gives such a batch loss 0 and gradient 0."""
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(4, 3)), rng.integers(0, 2, 4)
    model = Impl([3, 4, 2], random_state=0)
    before = model.params.copy()
    with pytest.raises(ValueError, match="sample_weight must not sum to zero"):
        model.loss_and_grad(X[:2], y[:2], sample_weight=[0.0, 0.0])  # the whole data set: refused
    model.fit(X, y, epochs=1, batch_size=2, shuffle=False, sample_weight=[0.0, 0.0, 1.0, 1.0])
    # only the second batch moved the weights: the same as training on it alone
    alone = Impl([3, 4, 2], random_state=0)
    alone.fit(X[2:], y[2:], epochs=1, batch_size=2, shuffle=False)
    assert not np.array_equal(model.params, before)
    np.testing.assert_allclose(model.params, alone.params, rtol=1e-14)
    assert model.loss_curve_[0] == pytest.approx(alone.loss_curve_[0] / 2)


@pytest.mark.parametrize("Impl", [fastmlp.MLP, fastmlp.reference.MLP], ids=["fastmlp", "reference"])
def test_a_given_order_is_the_order_of_the_mini_batches(Impl):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(10, 3)), rng.integers(0, 2, 10)
    order = np.array([7, 2, 2, 9, 0])  # any rows, repeats allowed
    model = Impl([3, 4, 2], random_state=0)
    by_hand = Impl([3, 4, 2], random_state=0)
    model.partial_fit(X, y, batch_size=2, lr=0.1, order=order)
    for rows in (order[0:2], order[2:4], order[4:5]):
        by_hand.partial_fit(X[rows], y[rows], batch_size=2, lr=0.1, shuffle=False)
    np.testing.assert_allclose(model.params, by_hand.params, rtol=1e-14)
    assert model.t_ == 5
    with pytest.raises(ValueError, match="order holds row indices outside 0..9"):
        model.partial_fit(X, y, order=[0, 10])


def test_reset_optimizer_forgets_the_momentum():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(10, 3)), rng.integers(0, 2, 10)
    a, b = fastmlp.MLP([3, 2], random_state=0), fastmlp.MLP([3, 2], random_state=0)
    for model in (a, b):
        model.partial_fit(X, y, momentum=0.9, shuffle=False)
    b.reset_optimizer()
    fresh = fastmlp.MLP([3, 2], random_state=0)
    fresh.coefs_ = [W.copy() for W in a.coefs_]
    fresh.intercepts_ = [v.copy() for v in a.intercepts_]
    for model in (a, b, fresh):
        model.partial_fit(X, y, momentum=0.9, shuffle=False)
    assert not np.array_equal(a.params, b.params)
    np.testing.assert_array_equal(b.params, fresh.params)


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_parameters_and_kernel_buffers_start_on_a_cache_line(dtype, one_thread):
    """The products' operands start on a cache line (fastmlp._base.ALIGNMENT), also
    after a pickle or a copy: arrays this large NumPy starts 16 bytes past one."""
    import copy
    import pickle
    from fastmlp._base import ALIGNMENT
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(64, 784)), rng.integers(0, 10, 64)
    model = fastmlp.MLP([784, 512, 10], dtype=dtype, random_state=0)
    model.partial_fit(X, y, batch_size=32)
    buffers = [model.params, model._grads, *model._workspace(32)]
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        np.testing.assert_array_equal(clone.params, model.params)
        buffers.append(clone.params)
    assert [b.ctypes.data % ALIGNMENT for b in buffers] == [0] * len(buffers)


@pytest.mark.parametrize("Impl", [fastmlp.MLP, fastmlp.reference.MLP], ids=["fastmlp", "reference"])
def test_pickle_and_deepcopy_keep_views_and_training_state(Impl):
    import copy
    import pickle
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 3)), rng.integers(0, 2, 20)
    model = Impl([3, 4, 2], random_state=0)
    model.partial_fit(X, y, momentum=0.9)
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert np.shares_memory(clone.coefs_[0], clone.params)
        np.testing.assert_array_equal(clone.forward(X), model.forward(X))
        clone.partial_fit(X, y, momentum=0.9)
    model.partial_fit(X, y, momentum=0.9)
    np.testing.assert_array_equal(clone.params, model.params)  # velocity and RNG carried over
