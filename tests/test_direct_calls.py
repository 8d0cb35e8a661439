"""fastmlp.MLP calls the compiled epoch's code directly once numba has dispatched a call
with the same buffers and settings (core._entry_point). This checks that the code it
calls is the code numba's dispatch would pick, whatever the user passes: every input
reaches the kernels in the model's dtype, C-contiguous and read-only (numba's types of
arrays; it does not type alignment)."""
import numpy as np
import pytest

import fastmlp
from fastmlp.kernels import network


def _data(output, dtype, rng, n=70, k=3):
    X = rng.standard_normal((n, 5)).astype(dtype)
    if output == "softmax":
        y = rng.integers(0, k, n)
    elif output == "sigmoid":
        y = rng.integers(0, 2, (n, k))
    else:
        y = rng.standard_normal((n, k)).astype(dtype)
    return X, y, rng.random(n).astype(dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("output", ["softmax", "sigmoid", "identity"])
def test_direct_calls_give_what_dispatched_calls_give(dtype, output):
    # one model calls the compiled epoch directly where it can, the other is made to go
    # through numba's dispatch on every call; a sequence of calls that changes what can
    # change between calls (inputs of other dtypes and layouts, weights, orders, batch
    # sizes, optimizers and their settings) leaves both with the same bits
    rng = np.random.default_rng(1)
    X, y, w = _data(output, dtype, rng)
    other = "float32" if dtype == "float64" else "float64"
    calls = [
        dict(),
        dict(sample_weight=w),
        dict(X=X.astype(other)),
        dict(X=np.asfortranarray(X), lr=0.05),
        dict(X=X.tolist(), batch_size=7),
        dict(order=rng.permutation(len(X))[:50]),
        dict(optimizer="sgd", momentum=0.9),
        dict(optimizer="sgd", momentum=0.9, nesterov=True, sample_weight=w),
        dict(optimizer="adam", lr=0.003),
        dict(optimizer="adam", lr=0.003, batch_size=1),
        dict(),
    ]
    direct, dispatched = (fastmlp.MLP([5, 7, 3], "relu", output, dtype=dtype, random_state=2)
                          for _ in range(2))
    read_only = X.copy()
    read_only.setflags(write=False)
    for call in calls + [dict(X=read_only)]:
        call = dict(call)
        inputs = call.pop("X", X)
        for _ in range(2):
            direct.partial_fit(inputs, y, **call)
            dispatched._kernel_entry = None
            dispatched.partial_fit(inputs, y, **call)
        # (the second call of each went straight to the compiled code)
        assert not isinstance(direct._kernel_entry[2], type(network.train_epoch))
    assert np.array_equal(direct.params, dispatched.params)
    assert direct.loss_curve_ == dispatched.loss_curve_
