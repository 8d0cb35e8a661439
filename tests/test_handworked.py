"""Tiny networks worked out by hand, every number written out.

Each case fixes the weights by hand, pushes one or two samples through, and checks
forward(), loss(), loss_and_grad(), input_grad() and one or two steps of fit()
against numbers derived in the comments. The derivations follow the conventions in
the docstring of fastmlp/_base.py:

    loss = (sum_i w_i l_i + alpha/2 sum_l ||W_l||^2) / N,  N = sum_i w_i ("mean") or 1 ("sum")
    output delta_i = w_i (out_i - y_i) / N,  hidden delta = (delta @ W.T) * f'(a)
    dL/dW_l = A_{l-1}.T @ delta_l + alpha/N W_l,  dL/db_l = sum_i delta_l,i

Transcendental values (sigmoid, exp, log) were evaluated once at 50 significant
digits (mpmath) and rounded to 17; the ReLU/identity cases use dyadic numbers only,
so every intermediate value is exact in binary floating point.
Weight matrices are fan_in x fan_out (forward: A @ W + b).
"""

import numpy as np
import pytest

import fastmlp
from fastmlp.reference import MLP as ReferenceMLP

IMPLEMENTATIONS = [ReferenceMLP] + ([fastmlp.MLP] if hasattr(fastmlp, "MLP") else [])
IDS = ["reference", "fastmlp"][: len(IMPLEMENTATIONS)]

RTOL = 1e-12
ATOL = 1e-15


@pytest.fixture(params=IMPLEMENTATIONS, ids=IDS)
def MLP(request):
    return request.param


def close(actual, expected, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64),
                               np.asarray(expected, dtype=np.float64), rtol=rtol, atol=atol)


def build(MLP, sizes, activation, output, coefs, intercepts=None, dtype=np.float64, **kw):
    model = MLP(sizes, activation, output, dtype=dtype, random_state=0, **kw)
    model.coefs_ = [np.array(W, dtype=dtype) for W in coefs]
    if intercepts is not None:
        model.intercepts_ = [np.array(b, dtype=dtype) for b in intercepts]
    for W, want in zip(model.coefs_, coefs):  # the setter really wrote the weights
        assert np.array_equal(W, np.array(want, dtype=dtype))
    return model


def check_grads(grads, model, coefs, intercepts, rtol=RTOL, atol=ATOL):
    """Every gradient view, and the flat vector in the layout W_1, b_1, W_2, b_2, ..."""
    assert grads.flat.shape == model.params.shape
    assert len(grads.coefs) == len(coefs) and len(grads.intercepts) == len(intercepts)
    for g, want in zip(grads.coefs, coefs):
        assert g.shape == np.shape(want)
        close(g, want, rtol, atol)
    for g, want in zip(grads.intercepts, intercepts):
        assert g.shape == np.shape(want)
        close(g, want, rtol, atol)
    pieces = []
    for l, W in enumerate(coefs):
        pieces.append(np.ravel(W))
        if intercepts:
            pieces.append(np.ravel(intercepts[l]))
    close(grads.flat, np.concatenate(pieces), rtol, atol)


def check_params(model, coefs, intercepts, rtol=RTOL, atol=ATOL):
    for W, want in zip(model.coefs_, coefs):
        close(W, want, rtol, atol)
    for b, want in zip(model.intercepts_, intercepts):
        close(b, want, rtol, atol)


# =====================================================================================
# Case A: 2 -> 2 sigmoid -> 1 sigmoid, binary cross-entropy.
# The first sample and the weights are Matt Mazur's well-known backprop walk-through
# (inputs 0.05, 0.10; w1..w4 = .15 .20 .25 .30; b1 = .35; w5, w6 = .40 .45; b2 = .60),
# whose published values out_h1 = 0.593269992, out_h2 = 0.596884378 and
# out_o1 = 0.75136507 are reproduced below.
#
#   W1 = [[0.15, 0.25],     b1 = [0.35, 0.35]     W2 = [[0.40],    b2 = [0.60]
#         [0.20, 0.30]]                                 [0.45]]
#   x1 = (0.05, 0.10), y1 = 0.01          x2 = (-1, 2), y2 = 1
#
# Sample 1
#   z1 = (0.05*0.15 + 0.10*0.20 + 0.35, 0.05*0.25 + 0.10*0.30 + 0.35) = (0.3775, 0.3925)
#   h  = sigmoid(z1) = (0.59326999210718726, 0.59688437825976706)
#   zo = 0.40*0.59326999210718726 + 0.45*0.59688437825976706 + 0.60 = 1.1059059670597701
#   p  = sigmoid(zo) = 0.75136506955231571
#   l  = -(0.01 ln p + 0.99 ln(1 - p)) = 1.3807105414662267;   p - y = 0.74136506955231571
# Sample 2
#   z1 = (-0.15 + 0.40 + 0.35, -0.25 + 0.60 + 0.35) = (0.6, 0.7)
#   h  = (0.64565630622579545, 0.66818777216816611)
#   zo = 0.40*0.64565630622579545 + 0.45*0.66818777216816611 + 0.60 = 1.1589470199659929
#   p  = 0.76114133023526325
#   l  = -ln p = 0.27293622189152673;                         p - y = -0.23885866976473675
# Mean (N = 2)
#   loss = (1.3807105414662267 + 0.27293622189152673) / 2 = 0.82682338167887669
#   delta_out = (p - y)/2 = (0.37068253477615785, -0.11942933488236838)
#   dz1_i = delta_out_i * W2.T * h_i (1 - h_i):
#       sample 1: (0.035778383318748991, 0.040136036133192107)
#       sample 2: (-0.010929419867722566, -0.011915559446514673)
#   dW2 = sum_i h_i.T delta_out_i = (0.14280452126576982, 0.14145339309504589)
#   db2 = sum_i delta_out_i = 0.25125319989378948
#   dW1 = sum_i x_i.T dz1_i = [[ 0.012718339033660016,  0.013922361253174278],
#                              [-0.018281001403570234, -0.019817515279710135]]
#   db1 = sum_i dz1_i = (0.024848963451026425, 0.028220476686677434)
#   dL/dx_i = dz1_i @ W1.T: (0.015400766531110375, 0.01919648750370743),
#                           (-0.0046183028417870532, -0.0057605518074989151)
# Sum (N = 1): loss and every gradient are exactly twice the mean ones.
# Sample weights (1, 3), mean (N = 4):
#   loss = (1.3807105414662267 + 3*0.27293622189152673) / 4 = 0.54987980178520171
#   delta_out = (0.74136506955231571/4, 3*(-0.23885866976473675)/4), gradients below.
# =====================================================================================

A_W = [[[0.15, 0.25], [0.20, 0.30]], [[0.40], [0.45]]]
A_B = [[0.35, 0.35], [0.60]]
A_X = np.array([[0.05, 0.10], [-1.0, 2.0]])
A_Y = np.array([0.01, 1.0])
A_Z1 = [[0.3775, 0.3925], [0.6, 0.7]]
A_H = [[0.59326999210718726, 0.59688437825976706], [0.64565630622579545, 0.66818777216816611]]
A_P = [0.75136506955231571, 0.76114133023526325]
A_LOSS_MEAN = 0.82682338167887669
A_GRAD_MEAN = dict(
    coefs=[[[0.012718339033660016, 0.013922361253174278],
            [-0.018281001403570234, -0.019817515279710135]],
           [[0.14280452126576982], [0.14145339309504589]]],
    intercepts=[[0.024848963451026425, 0.028220476686677434], [0.25125319989378948]])
A_DX_MEAN = [[0.015400766531110375, 0.01919648750370743],
             [-0.0046183028417870532, -0.0057605518074989151]]
# weights (1, 3), mean: N = 4
A_LOSS_W13 = 0.54987980178520171
A_GRAD_W13 = dict(
    coefs=[[[0.017288589384552574, 0.018876740073101812],
            [-0.030999340437230249, -0.033739876532884413]],
           [[-0.005708042582268598], [-0.0090745246590526291]]],
    intercepts=[[0.001495061857790646, 0.0021946788968240443], [0.0061972650645263641]])
A_DX_W13 = [[0.0077003832655551877, 0.0095982437518537151],
            [-0.0069274542626805797, -0.0086408277112483727]]


def test_sigmoid_bce_forward(MLP):
    # pre-activations of the hidden layer: the first layer alone with an identity output
    first = build(MLP, [2, 2], "sigmoid", "identity", A_W[:1], A_B[:1])
    close(first.forward(A_X), A_Z1)
    # activations of the hidden layer: the first layer alone with a sigmoid output
    first = build(MLP, [2, 2], "sigmoid", "sigmoid", A_W[:1], A_B[:1])
    close(first.forward(A_X), A_H)
    model = build(MLP, [2, 2, 1], "sigmoid", "sigmoid", A_W, A_B)
    out = model.forward(A_X)
    assert out.shape == (2, 1)
    close(out[:, 0], A_P)
    close(model.predict_proba(A_X), [[1 - A_P[0], A_P[0]], [1 - A_P[1], A_P[1]]])
    assert model.predict(A_X).tolist() == [1, 1]  # both p > 0.5


@pytest.mark.parametrize("y", [A_Y, A_Y[:, None]], ids=["y(n,)", "y(n,1)"])
def test_sigmoid_bce_loss_and_grad_mean(MLP, y):
    model = build(MLP, [2, 2, 1], "sigmoid", "sigmoid", A_W, A_B)
    close(model.loss(A_X, y), A_LOSS_MEAN)
    loss, grads = model.loss_and_grad(A_X, y)
    close(loss, A_LOSS_MEAN)
    check_grads(grads, model, **A_GRAD_MEAN)
    dX = model.input_grad(A_X, y)
    assert dX.shape == A_X.shape
    close(dX, A_DX_MEAN)


def test_sigmoid_bce_sum_is_twice_mean(MLP):
    model = build(MLP, [2, 2, 1], "sigmoid", "sigmoid", A_W, A_B, reduction="sum")
    # sum: N = 1 instead of 2, so every number doubles
    close(model.loss(A_X, A_Y), 1.6536467633577534)
    loss, grads = model.loss_and_grad(A_X, A_Y)
    close(loss, 1.6536467633577534)
    check_grads(grads, model,
                coefs=[[[0.025436678067320032, 0.027844722506348556],
                        [-0.036562002807140467, -0.03963503055942027]],
                       [[0.28560904253153965], [0.28290678619009178]]],
                intercepts=[[0.049697926902052849, 0.056440953373354868], [0.50250639978757896]])
    close(model.input_grad(A_X, A_Y), [[0.030801533062220751, 0.038392975007414861],
                                       [-0.0092366056835741063, -0.01152110361499783]])


def test_sigmoid_bce_sample_weight(MLP):
    model = build(MLP, [2, 2, 1], "sigmoid", "sigmoid", A_W, A_B)
    sw = np.array([1.0, 3.0])
    close(model.loss(A_X, A_Y, sample_weight=sw), A_LOSS_W13)
    loss, grads = model.loss_and_grad(A_X, A_Y, sample_weight=sw)
    close(loss, A_LOSS_W13)
    check_grads(grads, model, **A_GRAD_W13)
    close(model.input_grad(A_X, A_Y, sample_weight=sw), A_DX_W13)
    # weights (1, 3) mean the same as repeating sample 2 three times
    X4, y4 = A_X[[0, 1, 1, 1]], A_Y[[0, 1, 1, 1]]
    close(model.loss(X4, y4), A_LOSS_W13)
    # sum reduction with weights (1, 3): N = 1, so four times the weighted mean
    summed = build(MLP, [2, 2, 1], "sigmoid", "sigmoid", A_W, A_B, reduction="sum")
    close(summed.loss(A_X, A_Y, sample_weight=sw), 4 * A_LOSS_W13)


def test_sigmoid_bce_one_sgd_step(MLP):
    model = build(MLP, [2, 2, 1], "sigmoid", "sigmoid", A_W, A_B)
    model.fit(A_X, A_Y, epochs=1, batch_size=2, shuffle=False, lr=0.5)
    # new = old - 0.5 * gradient (mean), e.g. W1[0,0] = 0.15 - 0.5*0.012718339033660016
    check_params(model,
                 coefs=[[[0.14364083048316999, 0.24303881937341286],
                         [0.20914050070178512, 0.30990875763985507]],
                        [[0.32859773936711509], [0.37927330345247706]]],
                 intercepts=[[0.33757551827448679, 0.33588976165666128], [0.47437340005310526]])
    # the epoch loss is the loss before the step
    assert len(model.loss_curve_) == 1
    close(model.loss_curve_[0], A_LOSS_MEAN)
    assert model.n_iter_ == 1


# =====================================================================================
# Case B: 2 -> 2 ReLU -> 2 softmax, categorical cross-entropy. Each sample has one
# dead hidden unit, so the ReLU derivative is exercised both ways.
#
#   W1 = [[0.5, -1.0],     b1 = [0.1, -0.2]     W2 = [[1.0, -0.5],    b2 = [0.2, -0.1]
#         [0.25, 0.5]]                                [0.5, 0.25]]
#   x1 = (1, 2), label 1          x2 = (-1, 1), label 0
#
# Sample 1
#   z1 = (0.5 + 0.5 + 0.1, -1.0 + 1.0 - 0.2) = (1.1, -0.2)   h = relu(z1) = (1.1, 0)
#   zo = (1.1*1.0 + 0.2, 1.1*(-0.5) - 0.1) = (1.3, -0.65)
#   p  = softmax(zo) = (0.87544664181258358, 0.12455335818741642)
#   l  = -ln p[1] = 2.0830210750728672
# Sample 2
#   z1 = (-0.5 + 0.25 + 0.1, 1.0 + 0.5 - 0.2) = (-0.15, 1.3)  h = (0, 1.3)
#   zo = (1.3*0.5 + 0.2, 1.3*0.25 - 0.1) = (0.85, 0.225)
#   p  = (0.65135486466605424, 0.34864513533394576)
#   l  = -ln p[0] = 0.42870067827651864
# Mean (N = 2): loss = (2.0830210750728672 + 0.42870067827651864)/2 = 1.2558608766746929
#   delta_out = (p - onehot)/2: s1 (0.43772332090629179, -0.43772332090629179)
#                               s2 (-0.17432256766697288, 0.17432256766697288)
#   dW2 = h1.T d1 + h2.T d2 = [[1.1*0.43772332090629179, -1.1*0.43772332090629179],
#                              [1.3*(-0.17432256766697288), 1.3*0.17432256766697288]]
#   db2 = d1 + d2 = (0.26340075323931891, -0.26340075323931891)
#   dz1 = (d @ W2.T) * (z1 > 0):
#       s1: (0.43772332090629179*(1.0 + 0.5), dead) = (0.65658498135943768, 0)
#       s2: (dead, -0.17432256766697288*0.5 + 0.17432256766697288*0.25) = (0, -0.04358064191674322)
#   dW1 = x1.T dz1_1 + x2.T dz1_2 = [[0.65658498135943768, 0.04358064191674322],
#                                    [1.3131699627188754, -0.04358064191674322]]
#   db1 = (0.65658498135943768, -0.04358064191674322)
#   dL/dx = dz1 @ W1.T: s1 (0.65658498135943768*0.5, 0.65658498135943768*0.25)
#                       s2 (-0.04358064191674322*(-1.0), -0.04358064191674322*0.5)
# =====================================================================================

B_W = [[[0.5, -1.0], [0.25, 0.5]], [[1.0, -0.5], [0.5, 0.25]]]
B_B = [[0.1, -0.2], [0.2, -0.1]]
B_X = np.array([[1.0, 2.0], [-1.0, 1.0]])
B_LABELS = np.array([1, 0])
B_ONEHOT = np.array([[0.0, 1.0], [1.0, 0.0]])
B_P = [[0.87544664181258358, 0.12455335818741642], [0.65135486466605424, 0.34864513533394576]]
B_LOSS_MEAN = 1.2558608766746929
B_GRAD_MEAN = dict(
    coefs=[[[0.65658498135943768, 0.04358064191674322],
            [1.3131699627188754, -0.04358064191674322]],
           [[0.48149565299692097, -0.48149565299692097],
            [-0.22661933796706474, 0.22661933796706474]]],
    intercepts=[[0.65658498135943768, -0.04358064191674322],
                [0.26340075323931891, -0.26340075323931891]])
B_DX_MEAN = [[0.32829249067971884, 0.16414624533985942],
             [0.04358064191674322, -0.02179032095837161]]


def test_relu_softmax_forward(MLP):
    first = build(MLP, [2, 2], "relu", "identity", B_W[:1], B_B[:1])
    close(first.forward(B_X), [[1.1, -0.2], [-0.15, 1.3]])
    # hidden activations: identity second layer with W2 = I, b2 = 0 passes h through
    relu_only = build(MLP, [2, 2, 2], "relu", "identity", [B_W[0], np.eye(2)], [B_B[0], [0.0, 0.0]])
    close(relu_only.forward(B_X), [[1.1, 0.0], [0.0, 1.3]])
    logits = build(MLP, [2, 2, 2], "relu", "identity", B_W, B_B)
    close(logits.forward(B_X), [[1.3, -0.65], [0.85, 0.225]])
    model = build(MLP, [2, 2, 2], "relu", "softmax", B_W, B_B)
    close(model.forward(B_X), B_P)
    close(model.predict_proba(B_X), B_P)
    assert model.predict(B_X).tolist() == [0, 0]


@pytest.mark.parametrize("y", [B_LABELS, B_LABELS.astype(float), B_ONEHOT],
                         ids=["labels", "float-labels", "one-hot"])
def test_relu_softmax_loss_and_grad(MLP, y):
    model = build(MLP, [2, 2, 2], "relu", "softmax", B_W, B_B)
    close(model.loss(B_X, y), B_LOSS_MEAN)
    loss, grads = model.loss_and_grad(B_X, y)
    close(loss, B_LOSS_MEAN)
    check_grads(grads, model, **B_GRAD_MEAN)
    close(model.input_grad(B_X, y), B_DX_MEAN)


def test_relu_softmax_sum(MLP):
    model = build(MLP, [2, 2, 2], "relu", "softmax", B_W, B_B, reduction="sum")
    loss, grads = model.loss_and_grad(B_X, B_LABELS)
    close(loss, 2.5117217533493859)  # 2.0830210750728672 + 0.42870067827651864
    check_grads(grads, model,
                coefs=[[[1.3131699627188754, 0.087161283833486439],
                        [2.6263399254377507, -0.087161283833486439]],
                       [[0.96299130599384194, -0.96299130599384194],
                        [-0.45323867593412948, 0.45323867593412948]]],
                intercepts=[[1.3131699627188754, -0.087161283833486439],
                            [0.52680150647863782, -0.52680150647863782]])
    close(model.input_grad(B_X, B_LABELS), [[0.65658498135943768, 0.32829249067971884],
                                            [0.087161283833486439, -0.04358064191674322]])


def test_relu_softmax_one_sgd_step(MLP):
    model = build(MLP, [2, 2, 2], "relu", "softmax", B_W, B_B)
    model.fit(B_X, B_LABELS, epochs=1, batch_size=2, shuffle=False, lr=0.1)
    # new = old - 0.1 * gradient
    check_params(model,
                 coefs=[[[0.43434150186405623, -1.0043580641916743],
                         [0.11868300372811246, 0.50435806419167432]],
                        [[0.9518504347003079, -0.4518504347003079],
                         [0.52266193379670647, 0.22733806620329353]]],
                 intercepts=[[0.034341501864056232, -0.19564193580832568],
                             [0.17365992467606811, -0.073659924676068109]])
    close(model.loss_curve_, [B_LOSS_MEAN])


# =====================================================================================
# Case C: 2 -> 2 ReLU -> 1 identity, squared error l = 1/2 (out - y)^2. Dyadic
# numbers only: every value below is exact in binary floating point (and in float32).
#
#   W1 = [[0.5, -0.25],     b1 = [0.25, -0.5]     W2 = [[2],     b2 = [0.5]
#         [0.75, 1.0]]                                  [-1]]
#   x1 = (1, 2), y1 = 3          x2 = (2, -1), y2 = 2
#
# Sample 1: z1 = (0.5 + 1.5 + 0.25, -0.25 + 2 - 0.5) = (2.25, 1.25), h = (2.25, 1.25)
#           out = 4.5 - 1.25 + 0.5 = 3.75, err = 0.75, l = 0.28125
# Sample 2: z1 = (1 - 0.75 + 0.25, -0.5 - 1 - 0.5) = (0.5, -2), h = (0.5, 0)
#           out = 1 + 0.5 = 1.5, err = -0.5, l = 0.125
# Mean (N = 2): loss = 0.203125; delta_out = (0.375, -0.25)
#   dW2 = 0.375*(2.25, 1.25) - 0.25*(0.5, 0) = (0.71875, 0.46875); db2 = 0.125
#   dz1: s1 = 0.375*(2, -1) = (0.75, -0.375); s2 = -0.25*(2, dead) = (-0.5, 0)
#   dW1 = (1, 2).T (0.75, -0.375) + (2, -1).T (-0.5, 0) = [[-0.25, -0.375], [2.0, -0.75]]
#   db1 = (0.25, -0.375)
#   dL/dx: s1 = (0.75*0.5 - 0.375*(-0.25), 0.75*0.75 - 0.375*1) = (0.46875, 0.1875)
#          s2 = (-0.5*0.5, -0.5*0.75) = (-0.25, -0.375)
# =====================================================================================

C_W = [[[0.5, -0.25], [0.75, 1.0]], [[2.0], [-1.0]]]
C_B = [[0.25, -0.5], [0.5]]
C_X = np.array([[1.0, 2.0], [2.0, -1.0]])
C_Y = np.array([3.0, 2.0])
C_GRAD_MEAN = dict(coefs=[[[-0.25, -0.375], [2.0, -0.75]], [[0.71875], [0.46875]]],
                   intercepts=[[0.25, -0.375], [0.125]])
C_DX_MEAN = [[0.46875, 0.1875], [-0.25, -0.375]]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_relu_identity_forward_loss_grad(MLP, dtype):
    model = build(MLP, [2, 2, 1], "relu", "identity", C_W, C_B, dtype=dtype)
    out = model.forward(C_X.astype(dtype))
    assert out.dtype == dtype and out.shape == (2, 1)
    close(out, [[3.75], [1.5]])
    assert model.predict(C_X).tolist() == [3.75, 1.5]
    close(model.loss(C_X, C_Y), 0.203125)
    loss, grads = model.loss_and_grad(C_X, C_Y)
    assert grads.flat.dtype == dtype
    close(loss, 0.203125)
    check_grads(grads, model, **C_GRAD_MEAN)
    dX = model.input_grad(C_X, C_Y)
    assert dX.dtype == dtype
    close(dX, C_DX_MEAN)


def test_relu_identity_sum_and_sample_weight(MLP):
    mean = build(MLP, [2, 2, 1], "relu", "identity", C_W, C_B)
    summed = build(MLP, [2, 2, 1], "relu", "identity", C_W, C_B, reduction="sum")
    # sum (N = 1): loss 0.28125 + 0.125, every gradient doubles
    loss, grads = summed.loss_and_grad(C_X, C_Y)
    close(loss, 0.40625)
    check_grads(grads, summed, coefs=[[[-0.5, -0.75], [4.0, -1.5]], [[1.4375], [0.9375]]],
                intercepts=[[0.5, -0.75], [0.25]])
    close(summed.input_grad(C_X, C_Y), [[0.9375, 0.375], [-0.5, -0.75]])
    # weights (1, 3), mean (N = 4): loss = (0.28125 + 3*0.125)/4 = 0.1640625
    # delta_out = (0.75/4, 3*(-0.5)/4) = (0.1875, -0.375)
    # dW2 = 0.1875*(2.25, 1.25) - 0.375*(0.5, 0) = (0.234375, 0.234375); db2 = -0.1875
    # dz1: s1 = 0.1875*(2, -1) = (0.375, -0.1875); s2 = -0.375*(2, dead) = (-0.75, 0)
    # dW1 = (1, 2).T s1 + (2, -1).T s2 = [[-1.125, -0.1875], [1.5, -0.375]]; db1 = (-0.375, -0.1875)
    sw = np.array([1.0, 3.0])
    loss, grads = mean.loss_and_grad(C_X, C_Y, sample_weight=sw)
    close(loss, 0.1640625)
    check_grads(grads, mean, coefs=[[[-1.125, -0.1875], [1.5, -0.375]], [[0.234375], [0.234375]]],
                intercepts=[[-0.375, -0.1875], [-0.1875]])
    close(mean.input_grad(C_X, C_Y, sample_weight=sw), [[0.234375, 0.09375], [-0.375, -0.5625]])
    # weights (1, 3), sum (N = 1): four times the weighted mean
    loss, grads = summed.loss_and_grad(C_X, C_Y, sample_weight=sw)
    close(loss, 0.65625)
    check_grads(grads, summed, coefs=[[[-4.5, -0.75], [6.0, -1.5]], [[0.9375], [0.9375]]],
                intercepts=[[-1.5, -0.75], [-0.75]])
    # integer weights equal repeated rows
    close(mean.loss(C_X[[0, 1, 1, 1]], C_Y[[0, 1, 1, 1]]), 0.1640625)


def test_relu_identity_l2_penalty(MLP):
    model = build(MLP, [2, 2, 1], "relu", "identity", C_W, C_B)
    # alpha = 0.5: penalty = 0.5/2 * (0.25 + 0.0625 + 0.5625 + 1 + 4 + 1) = 1.71875 on weights only
    # loss = (0.40625 + 1.71875) / 2 = 1.0625; dW += (0.5/2) W, biases unchanged
    close(model.loss(C_X, C_Y, alpha=0.5), 1.0625)
    loss, grads = model.loss_and_grad(C_X, C_Y, alpha=0.5)
    close(loss, 1.0625)
    check_grads(grads, model,
                coefs=[[[-0.25 + 0.125, -0.375 - 0.0625], [2.0 + 0.1875, -0.75 + 0.25]],
                       [[0.71875 + 0.5], [0.46875 - 0.25]]],
                intercepts=[[0.25, -0.375], [0.125]])
    # the input gradient does not see the penalty
    close(model.input_grad(C_X, C_Y), C_DX_MEAN)
    # fit with alpha: new = old - 1/8 * (gradient with penalty)
    model.fit(C_X, C_Y, epochs=1, batch_size=2, shuffle=False, lr=0.125, alpha=0.5)
    check_params(model, coefs=[[[0.515625, -0.1953125], [0.4765625, 1.0625]],
                               [[1.84765625], [-1.02734375]]],
                 intercepts=[[0.21875, -0.453125], [0.484375]])
    close(model.loss_curve_, [1.0625])


def test_relu_identity_full_batch_step(MLP):
    model = build(MLP, [2, 2, 1], "relu", "identity", C_W, C_B)
    model.fit(C_X, C_Y, epochs=1, batch_size=2, shuffle=False, lr=0.125)
    # new = old - 1/8 * gradient, e.g. W2 = (2 - 0.71875/8, -1 - 0.46875/8)
    check_params(model, coefs=[[[0.53125, -0.203125], [0.5, 1.09375]],
                               [[1.91015625], [-1.05859375]]],
                 intercepts=[[0.21875, -0.453125], [0.484375]])
    close(model.loss_curve_, [0.203125])
    # batch_size larger than the data is one full batch as well
    again = build(MLP, [2, 2, 1], "relu", "identity", C_W, C_B)
    again.fit(C_X, C_Y, epochs=1, batch_size=100, shuffle=False, lr=0.125)
    np.testing.assert_array_equal(again.params, model.params)


def test_relu_identity_two_single_sample_steps(MLP):
    # batch_size = 1, no shuffling: sample 1 then sample 2, each its own step (N = 1)
    # Step 1 (sample 1 alone, loss 0.28125): delta_out = 0.75; dz1 = 0.75*(2, -1) = (1.5, -0.75)
    #   dW1 = [[1.5, -0.75], [3, -1.5]], db1 = (1.5, -0.75), dW2 = 0.75*(2.25, 1.25), db2 = 0.75
    #   W1 = [[0.3125, -0.15625], [0.375, 1.1875]], b1 = (0.0625, -0.40625)
    #   W2 = (1.7890625, -1.1171875), b2 = 0.40625
    # Step 2 (sample 2 at the new weights):
    #   z1 = (0.625 - 0.375 + 0.0625, -0.3125 - 1.1875 - 0.40625) = (0.3125, -1.90625)
    #   h = (0.3125, 0)
    #   out = 0.3125*1.7890625 + 0.40625 = 0.96533203125, err = -1.03466796875
    #   l = err^2/2 = 0.5352689027786255
    #   dW2 = (0.3125*err, 0) = (-0.323333740234375, 0), db2 = err
    #   dz1 = (err*1.7890625, dead) = (-1.8510856628417969, 0)
    #   dW1 = (2, -1).T dz1 = [[-3.7021713256835938, 0], [1.8510856628417969, 0]]
    #   W1 = [[0.3125 + 3.7021713256835938/8, -0.15625], [0.375 - 1.8510856628417969/8, 1.1875]]
    # Epoch loss = mean of the two batch losses (each before its step) = 0.40825945138931274
    model = build(MLP, [2, 2, 1], "relu", "identity", C_W, C_B)
    model.fit(C_X, C_Y, epochs=1, batch_size=1, shuffle=False, lr=0.125)
    check_params(model, coefs=[[[0.7752714157104492, -0.15625], [0.1436142921447754, 1.1875]],
                               [[1.8294792175292969], [-1.1171875]]],
                 intercepts=[[0.2938857078552246, -0.40625], [0.53558349609375]])
    close(model.loss_curve_, [0.40825945138931274])
    # the same two steps through partial_fit on one sample at a time
    stepwise = build(MLP, [2, 2, 1], "relu", "identity", C_W, C_B)
    stepwise.partial_fit(C_X[:1], C_Y[:1], batch_size=1, shuffle=False, lr=0.125)
    check_params(stepwise,
                 coefs=[[[0.3125, -0.15625], [0.375, 1.1875]], [[1.7890625], [-1.1171875]]],
                 intercepts=[[0.0625, -0.40625], [0.40625]])
    stepwise.partial_fit(C_X[1:], C_Y[1:], batch_size=1, shuffle=False, lr=0.125)
    np.testing.assert_allclose(stepwise.params, model.params, rtol=1e-15, atol=0)
    close(stepwise.loss_curve_, [0.28125, 0.5352689027786255])


def test_identity_without_bias(MLP):
    # bias=False: z1 = x @ W1 only.
    # s1: z1 = (0.5 + 1.5, -0.25 + 2) = (2, 1.75), out = 4 - 1.75 = 2.25, err = -0.75, l = 0.28125
    # s2: z1 = (1 - 0.75, -0.5 - 1) = (0.25, -1.5), h = (0.25, 0), out = 0.5, err = -1.5, l = 1.125
    # mean: loss = 0.703125, delta_out = (-0.375, -0.75)
    # dW2 = -0.375*(2, 1.75) - 0.75*(0.25, 0) = (-0.9375, -0.65625)
    # dz1: s1 = -0.375*(2, -1) = (-0.75, 0.375); s2 = -0.75*(2, dead) = (-1.5, 0)
    # dW1 = (1, 2).T s1 + (2, -1).T s2 = [[-3.75, 0.375], [0, 0.75]]
    model = build(MLP, [2, 2, 1], "relu", "identity", C_W, None, bias=False)
    assert list(model.intercepts_) == []
    assert model.params.size == 4 + 2
    close(model.forward(C_X), [[2.25], [0.5]])
    loss, grads = model.loss_and_grad(C_X, C_Y)
    close(loss, 0.703125)
    check_grads(grads, model, coefs=[[[-3.75, 0.375], [0.0, 0.75]], [[-0.9375], [-0.65625]]],
                intercepts=[])
    close(model.input_grad(C_X, C_Y), [[-0.46875, -0.1875], [-0.75, -1.125]])
    model.fit(C_X, C_Y, epochs=1, batch_size=2, shuffle=False, lr=0.125)
    check_params(model, coefs=[[[0.96875, -0.296875], [0.75, 0.90625]],
                               [[2.1171875], [-0.91796875]]], intercepts=[])


# =====================================================================================
# Case E: 1 -> 1 exp output (Poisson), l = y ln(y/mu) - y + mu with y ln y = 0 at y = 0.
#   w = 0.5, b = 0;  x1 = 2, y1 = 2;  x2 = 0, y2 = 0
#   s1: z = 1, mu = e = 2.7182818284590452, l = 2 ln(2/e) - 2 + e = 2 ln 2 - 4 + e
#       = 0.10457618957893585, mu - y = 0.71828182845904524
#   s2: z = 0, mu = 1, l = 1, mu - y = 1
#   mean: loss = 0.55228809478946793; dw = (2*0.71828182845904524 + 0)/2 = 0.71828182845904524
#         db = (0.71828182845904524 + 1)/2 = 0.85914091422952262
#         dL/dx = w (mu - y)/2 = (0.17957045711476131, 0.25)
# =====================================================================================

def test_exp_output_poisson(MLP):
    model = build(MLP, [1, 1], "relu", "exp", [[[0.5]]], [[0.0]])
    X, y = np.array([[2.0], [0.0]]), np.array([2.0, 0.0])
    close(model.forward(X), [[2.7182818284590452], [1.0]])
    loss, grads = model.loss_and_grad(X, y)
    close(loss, 0.55228809478946793)
    check_grads(grads, model, coefs=[[[0.71828182845904524]]], intercepts=[[0.85914091422952262]])
    close(model.input_grad(X, y), [[0.17957045711476131], [0.25]])
    with pytest.raises(ValueError, match="predict_proba"):
        model.predict_proba(X)


# =====================================================================================
# Optimizers on the smallest model: 1 -> 1 identity, w = 0.5, b = 0.25, x = 2, y = 1.
#   out = 2w + b, err = out - 1, l = err^2/2, dw = 2 err, db = err
#   at (0.5, 0.25): err = 0.25, l = 0.03125, g = (0.5, 0.25)
# scikit-learn's rules: v = mu v - lr g; plain: p += v; Nesterov: p += mu v - lr g;
# Adam: m = b1 m + (1-b1) g, v = b2 v + (1-b2) g^2,
#       p -= lr sqrt(1 - b2^t)/(1 - b1^t) * m / (sqrt(v) + eps)
# =====================================================================================

O_X, O_Y = np.array([[2.0]]), np.array([1.0])


def tiny(MLP):
    return build(MLP, [1, 1], "relu", "identity", [[[0.5]]], [[0.25]])


def wb(model):
    return [model.coefs_[0][0, 0], model.intercepts_[0][0]]


def test_momentum_two_steps(MLP):
    # lr 1/4, momentum 1/2
    # step 1: v = -(0.125, 0.0625), p = (0.375, 0.1875)
    # step 2: err = 0.75 + 0.1875 - 1 = -0.0625, l = 0.001953125, g = (-0.125, -0.0625)
    #         v = 0.5*(-0.125, -0.0625) + 0.25*(0.125, 0.0625) = (-0.03125, -0.015625)
    #         p = (0.34375, 0.171875)
    model = tiny(MLP)
    model.fit(O_X, O_Y, epochs=2, batch_size=1, shuffle=False, lr=0.25, momentum=0.5)
    close(wb(model), [0.34375, 0.171875])
    close(model.loss_curve_, [0.03125, 0.001953125])
    # partial_fit keeps the velocity between calls: same two steps
    model = tiny(MLP)
    for _ in range(2):
        model.partial_fit(O_X, O_Y, batch_size=1, shuffle=False, lr=0.25, momentum=0.5)
    close(wb(model), [0.34375, 0.171875])
    # fit starts the velocity afresh: step 2 is then p - lr g = (0.375 + 0.03125, 0.1875 + 0.015625)
    model = tiny(MLP)
    for _ in range(2):
        model.fit(O_X, O_Y, epochs=1, batch_size=1, shuffle=False, lr=0.25, momentum=0.5)
    close(wb(model), [0.40625, 0.203125])


def test_nesterov_two_steps(MLP):
    # step 1: v = -(0.125, 0.0625); p += 0.5 v - 0.25 g = -(0.1875, 0.09375) -> (0.3125, 0.15625)
    # step 2: err = 0.625 + 0.15625 - 1 = -0.21875, l = 0.02392578125, g = (-0.4375, -0.21875)
    #         v = 0.5*(-0.125, -0.0625) + 0.25*(0.4375, 0.21875) = (0.046875, 0.0234375)
    #         p += 0.5 v - 0.25 g = (0.1328125, 0.06640625) -> (0.4453125, 0.22265625)
    model = tiny(MLP)
    model.fit(O_X, O_Y, epochs=2, batch_size=1, shuffle=False, lr=0.25, momentum=0.5, nesterov=True)
    close(wb(model), [0.4453125, 0.22265625])
    close(model.loss_curve_, [0.03125, 0.02392578125])


def test_adam_two_steps(MLP):
    # lr 0.1, beta_1 0.9, beta_2 0.999, eps 1e-8
    # t=1: m = (0.05, 0.025), v = (0.00025, 0.0000625)
    #      lr_t = 0.1 sqrt(0.001)/0.1 = 0.031622776601683793
    #      p -= lr_t m/(sqrt v + eps) -> (0.4000000632455132, 0.15000012649094641)
    # t=2: err = -0.049999747018027186, g = (-0.099999494036054373, -0.049999747018027186)
    #      m = (0.035000050596394563, 0.017500025298197281)
    #      v = (0.00025974989880746687, 0.000064937474701866719)
    #      lr_t = 0.1 sqrt(1 - 0.999^2)/(1 - 0.9^2) = 0.023531672532745429
    #      p -> (0.348897403406242, 0.098897498359414069)
    model = tiny(MLP)
    model.fit(O_X, O_Y, epochs=2, batch_size=1, shuffle=False, lr=0.1, optimizer="adam")
    close(wb(model), [0.348897403406242, 0.098897498359414069])
    close(model.loss_curve_[0], 0.03125)
    # partial_fit continues Adam's moments and step count
    model = tiny(MLP)
    model.partial_fit(O_X, O_Y, batch_size=1, shuffle=False, lr=0.1, optimizer="adam")
    close(wb(model), [0.4000000632455132, 0.15000012649094641])
    model.partial_fit(O_X, O_Y, batch_size=1, shuffle=False, lr=0.1, optimizer="adam")
    close(wb(model), [0.348897403406242, 0.098897498359414069])
