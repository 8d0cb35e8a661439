"""The four classic from-scratch NumPy setups, reproduced step by step.

Each test writes the tutorial's training loop in plain NumPy right here (no fastmlp
code inside the loop), starts it from the model's initial weights, feeds it the
same mini-batches (shuffle=False: batches are consecutive rows), and compares the
weights and the epoch loss after every epoch. It also checks that training works:
the loss goes down.
"""

import numpy as np
import pytest

import fastmlp
from fastmlp.reference import MLP as ReferenceMLP

IMPLEMENTATIONS = [ReferenceMLP] + ([fastmlp.MLP] if hasattr(fastmlp, "MLP") else [])
IDS = ["reference", "fastmlp"][: len(IMPLEMENTATIONS)]

TOL = 1e-10


@pytest.fixture(params=IMPLEMENTATIONS, ids=IDS)
def MLP(request):
    return request.param


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def batches(n, batch_size):
    return [slice(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


def copy_weights(model):
    return [W.copy() for W in model.coefs_], [b.copy() for b in model.intercepts_]


def assert_same_weights(model, Ws, bs, what):
    assert len(model.coefs_) == len(Ws)
    for l, (W, W_loop) in enumerate(zip(model.coefs_, Ws)):
        np.testing.assert_allclose(W, W_loop, rtol=TOL, atol=TOL, err_msg=f"{what}: W{l + 1}")
    assert len(model.intercepts_) == len(bs)
    for l, (b, b_loop) in enumerate(zip(model.intercepts_, bs)):
        np.testing.assert_allclose(b, b_loop, rtol=TOL, atol=TOL, err_msg=f"{what}: b{l + 1}")


# -------------------------------------------------------------------------------------
# a. 2 -> 4 sigmoid -> 1 sigmoid, binary cross-entropy, XOR, full-batch gradient descent
# -------------------------------------------------------------------------------------

def test_xor_sigmoid_bce_full_batch(MLP):
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([[0.0], [1.0], [1.0], [0.0]])
    lr, epochs, n = 2.0, 1000, len(X)
    model = MLP([2, 4, 1], activation="sigmoid", output="sigmoid", random_state=3)
    (W1, W2), (b1, b2) = copy_weights(model)
    loss_start = model.loss(X, y)

    loop_losses = []
    for epoch in range(epochs):
        # the tutorial loop: forward, BCE, backward, update
        h = sigmoid(X @ W1 + b1)
        p = sigmoid(h @ W2 + b2)
        loop_losses.append(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
        d_out = (p - y) / n                  # dBCE/dz for sigmoid output, mean over samples
        dW2 = h.T @ d_out
        db2 = d_out.sum(axis=0)
        d_hid = (d_out @ W2.T) * h * (1 - h)
        dW1 = X.T @ d_hid
        db1 = d_hid.sum(axis=0)
        W1 -= lr * dW1
        b1 -= lr * db1
        W2 -= lr * dW2
        b2 -= lr * db2

        model.partial_fit(X, y, batch_size=n, lr=lr, shuffle=False)
        assert_same_weights(model, [W1, W2], [b1, b2], f"epoch {epoch + 1}")
    np.testing.assert_allclose(model.loss_curve_, loop_losses, rtol=TOL)
    np.testing.assert_allclose(loop_losses[0], loss_start, rtol=TOL)

    # fit(epochs=...) from the same start walks the same path in one call
    again = MLP([2, 4, 1], activation="sigmoid", output="sigmoid", random_state=3)
    again.fit(X, y.ravel(), epochs=epochs, batch_size=n, lr=lr, shuffle=False)
    np.testing.assert_allclose(again.params, model.params, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(again.loss_curve_, loop_losses, rtol=TOL)

    # training works: XOR (not linearly separable) is learnt
    assert model.loss(X, y) < 0.05 * loss_start
    assert model.predict(X).tolist() == [0, 1, 1, 0]
    assert all(b <= a + 1e-12 for a, b in zip(loop_losses, loop_losses[1:]))


# -------------------------------------------------------------------------------------
# b. 13 -> 8 ReLU -> 1 sigmoid, binary cross-entropy, "heart disease" shaped data
#    (303 x 13, standardised), mini-batches of 32 (the last one has 15 rows)
# -------------------------------------------------------------------------------------

def heart_like_data():
    rng = np.random.default_rng(303)
    X = rng.normal(size=(303, 13))
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    logits = X @ rng.normal(size=13) + 0.3 * rng.normal(size=303)
    y = (logits > 0).astype(np.float64)
    return X, y


def test_heart_relu_sigmoid_bce_minibatch(MLP):
    X, y = heart_like_data()
    Y = y[:, None]
    n, batch_size, lr, epochs = len(X), 32, 0.1, 8
    model = MLP([13, 8, 1], activation="relu", output="sigmoid", random_state=7)
    (W1, W2), (b1, b2) = copy_weights(model)
    loss_start = model.loss(X, y)

    for epoch in range(epochs):
        epoch_loss = 0.0
        for rows in batches(n, batch_size):
            xb, yb = X[rows], Y[rows]
            m = len(xb)
            z1 = xb @ W1 + b1
            h = np.maximum(z1, 0)
            p = sigmoid(h @ W2 + b2)
            loss = -np.mean(yb * np.log(p) + (1 - yb) * np.log(1 - p))
            epoch_loss += loss * m
            d_out = (p - yb) / m
            dW2 = h.T @ d_out
            db2 = d_out.sum(axis=0)
            d_hid = (d_out @ W2.T) * (z1 > 0)
            dW1 = xb.T @ d_hid
            db1 = d_hid.sum(axis=0)
            W1 -= lr * dW1
            b1 -= lr * db1
            W2 -= lr * dW2
            b2 -= lr * db2

        model.partial_fit(X, y, batch_size=batch_size, lr=lr, shuffle=False)
        assert_same_weights(model, [W1, W2], [b1, b2], f"epoch {epoch + 1}")
        np.testing.assert_allclose(model.loss_curve_[-1], epoch_loss / n, rtol=TOL)

    # training works: lower loss, and better than chance on this separable-ish data
    assert model.loss(X, y) < 0.7 * loss_start
    assert model.loss_curve_[-1] < model.loss_curve_[0]
    assert np.mean(model.predict(X) == y) > 0.8


# -------------------------------------------------------------------------------------
# c. The PyTorch tutorial's NumPy network: 1000 -> 100 ReLU -> 10 linear, no biases,
#    loss = np.square(y_pred - y).sum(), grad_y_pred = 2 (y_pred - y), lr 1e-6,
#    batches of 64. fastmlp's squared error is HALF the sum of squares, so its
#    gradient is half the tutorial's and the identical update needs lr = 2e-6.
#    With reduction="sum" nothing is divided by the batch size, as in the tutorial.
# -------------------------------------------------------------------------------------

def test_pytorch_tutorial_numpy_net(MLP):
    rng = np.random.default_rng(0)
    N, D_in, H, D_out = 128, 1000, 100, 10   # two batches of 64
    x = rng.standard_normal((N, D_in))
    y = rng.standard_normal((N, D_out))
    model = MLP([D_in, H, D_out], activation="relu", output="linear", bias=False,
                reduction="sum", random_state=0)
    assert list(model.intercepts_) == []
    # the tutorial starts from standard-normal weights; give the model the same ones
    model.coefs_ = [rng.standard_normal((D_in, H)), rng.standard_normal((H, D_out))]
    w1, w2 = (W.copy() for W in model.coefs_)
    learning_rate = 1e-6
    fastmlp_lr = 2 * learning_rate          # fastmlp loss = 1/2 tutorial loss

    start_loss = np.square(np.maximum(x @ w1, 0) @ w2 - y).sum()
    first_loss = None
    for epoch in range(8):
        epoch_loss = 0.0
        for rows in batches(N, 64):
            xb, yb = x[rows], y[rows]
            h = xb.dot(w1)
            h_relu = np.maximum(h, 0)
            y_pred = h_relu.dot(w2)
            loss = np.square(y_pred - yb).sum()
            if first_loss is None:
                first_loss = loss
                # tutorial loss = 2 x fastmlp loss, and the gradients likewise
                np.testing.assert_allclose(loss, 2 * model.loss(xb, yb), rtol=1e-12)
            epoch_loss += loss
            grad_y_pred = 2.0 * (y_pred - yb)
            grad_w2 = h_relu.T.dot(grad_y_pred)
            grad_h_relu = grad_y_pred.dot(w2.T)
            grad_h = grad_h_relu.copy()
            grad_h[h < 0] = 0
            grad_w1 = xb.T.dot(grad_h)
            if epoch == 0 and rows.start == 0:
                _, grads = model.loss_and_grad(xb, yb)
                np.testing.assert_allclose(2 * grads.coefs[0], grad_w1, rtol=1e-10, atol=1e-6)
                np.testing.assert_allclose(2 * grads.coefs[1], grad_w2, rtol=1e-10, atol=1e-6)
            w1 -= learning_rate * grad_w1
            w2 -= learning_rate * grad_w2

        model.partial_fit(x, y, batch_size=64, lr=fastmlp_lr, shuffle=False)
        assert_same_weights(model, [w1, w2], [], f"epoch {epoch + 1}")
        # reduction="sum": the epoch loss is the sum of the batch losses
        np.testing.assert_allclose(2 * model.loss_curve_[-1], epoch_loss, rtol=TOL)

    # training works: 16 steps cut the tutorial's loss to well under a third
    final = np.square(np.maximum(x @ w1, 0) @ w2 - y).sum()
    np.testing.assert_allclose(final, 2 * model.loss(x, y), rtol=1e-10)
    assert final < 0.3 * start_loss


# -------------------------------------------------------------------------------------
# d. 20 -> 16 ReLU -> 4 softmax, mean categorical cross-entropy, mini-batch SGD
#    (105 samples, batches of 10: the last batch has 5 rows)
# -------------------------------------------------------------------------------------

def blobs(n=105, d=20, k=4, seed=4):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(k, d))
    labels = rng.integers(0, k, size=n)
    X = centres[labels] + rng.normal(size=(n, d))
    return X, labels


@pytest.mark.parametrize("one_hot", [False, True], ids=["labels", "one-hot"])
def test_relu_softmax_cce_minibatch(MLP, one_hot):
    X, labels = blobs()
    n, k, batch_size, lr, epochs = len(X), 4, 10, 0.05, 5
    Y = np.eye(k)[labels]
    model = MLP([20, 16, k], activation="relu", output="softmax", random_state=11)
    (W1, W2), (b1, b2) = copy_weights(model)
    target = Y if one_hot else labels
    loss_start = model.loss(X, target)

    for epoch in range(epochs):
        epoch_loss = 0.0
        for rows in batches(n, batch_size):
            xb, yb = X[rows], Y[rows]
            m = len(xb)
            z1 = xb @ W1 + b1
            h = np.maximum(z1, 0)
            logits = h @ W2 + b2
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            p = e / e.sum(axis=1, keepdims=True)
            epoch_loss += -np.sum(yb * np.log(p))          # = m * mean CCE
            d_out = (p - yb) / m
            dW2 = h.T @ d_out
            db2 = d_out.sum(axis=0)
            d_hid = (d_out @ W2.T) * (z1 > 0)
            dW1 = xb.T @ d_hid
            db1 = d_hid.sum(axis=0)
            W1 -= lr * dW1
            b1 -= lr * db1
            W2 -= lr * dW2
            b2 -= lr * db2

        model.partial_fit(X, target, batch_size=batch_size, lr=lr, shuffle=False)
        assert_same_weights(model, [W1, W2], [b1, b2], f"epoch {epoch + 1}")
        np.testing.assert_allclose(model.loss_curve_[-1], epoch_loss / n, rtol=TOL)

    # the same run as a single fit call
    again = MLP([20, 16, k], activation="relu", output="softmax", random_state=11)
    again.fit(X, target, epochs=epochs, batch_size=batch_size, lr=lr, shuffle=False)
    np.testing.assert_allclose(again.params, model.params, rtol=TOL, atol=TOL)

    # training works
    assert model.loss(X, target) < 0.5 * loss_start
    assert np.all(np.diff(model.loss_curve_) < 0)
    assert np.mean(model.predict(X) == labels) > 0.9
