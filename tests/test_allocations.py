"""After warm-up a training step allocates nothing: numba's NRT allocation
counters move by the same amount for an epoch of few steps and one of many."""
import numpy as np
import pytest
from numba.core.runtime import _nrt_python, rtsys

import fastmlp


def nrt_allocations():
    stats = rtsys.get_allocation_stats()
    return stats.alloc, stats.mi_alloc


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("sizes,output,batch", [
    ([13, 8, 1], "sigmoid", 16), ([64, 32, 10], "softmax", 16), ([300, 200, 10], "identity", 16),
    ([10, 9, 8, 7, 3], "softmax", 16),
    ([784, 128, 10], "softmax", 128),  # large enough for the chunked, parallel path
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_training_step_allocates_nothing(sizes, output, batch, optimizer, dtype):
    _nrt_python.memsys_enable_stats()
    rng = np.random.default_rng(0)
    k = sizes[-1]
    model = fastmlp.MLP(sizes, "relu", output, dtype=dtype, random_state=0)
    model._batches_per_call = lambda batch_size: 10**6  # one compiled call per epoch here

    def data(n):
        X = rng.normal(size=(n, sizes[0]))
        y = rng.integers(0, k, n) if output == "softmax" else rng.random((n, k)).round()
        return X, y

    small, large = data(3 * batch), data(40 * batch)
    kwargs = dict(batch_size=batch, lr=1e-3, optimizer=optimizer, momentum=0.9 if optimizer == "sgd" else 0.0,
                  alpha=1e-4)
    model.partial_fit(*large, **kwargs)  # warm-up: compile, allocate workspaces
    deltas = []
    for X, y in (small, large, small):
        before = nrt_allocations()
        model.partial_fit(X, y, **kwargs)
        after = nrt_allocations()
        deltas.append((after[0] - before[0], after[1] - before[1]))
    assert deltas[0] == deltas[1] == deltas[2]
    assert deltas[0][0] < 40  # a fixed cost per call (array arguments), not per step
