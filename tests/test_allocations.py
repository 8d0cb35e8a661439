"""After warm-up a training step allocates nothing: numba's NRT allocation
counters move by the same amount for an epoch of few steps and one of many; and
the resident memory of a process training 100 epochs stays flat."""
import os

import numpy as np
import pytest
from numba.core.runtime import _nrt_python, rtsys

import fastmlp


def nrt_allocations():
    stats = rtsys.get_allocation_stats()
    return stats.alloc, stats.mi_alloc


# each optimizer has its own compiled epoch (network.train_epoch): plain SGD (its step
# inside the backward pass), SGD with momentum, Adam
@pytest.mark.parametrize("optimizer,momentum", [("sgd", 0.0), ("sgd", 0.9), ("adam", 0.0)],
                         ids=["sgd", "momentum", "adam"])
@pytest.mark.parametrize("sizes,output,batch", [
    ([13, 8, 1], "sigmoid", 16), ([64, 32, 10], "softmax", 16), ([300, 200, 10], "identity", 16),
    ([10, 9, 8, 7, 3], "softmax", 16),
    ([784, 128, 10], "softmax", 128),  # large enough for the chunked, parallel path
])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_training_step_allocates_nothing(sizes, output, batch, optimizer, momentum, dtype):
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
    kwargs = dict(batch_size=batch, lr=1e-3, optimizer=optimizer, momentum=momentum, alpha=1e-4)
    model.partial_fit(*large, **kwargs)  # warm-up: compile, allocate workspaces
    deltas = []
    for X, y in (small, large, small):
        before = nrt_allocations()
        model.partial_fit(X, y, **kwargs)
        after = nrt_allocations()
        deltas.append((after[0] - before[0], after[1] - before[1]))
    assert deltas[0] == deltas[1] == deltas[2]
    assert deltas[0][0] < 40  # a fixed cost per call (array arguments), not per step


def resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="reads Linux's /proc")
@pytest.mark.parametrize("sizes,batch,optimizer", [([784, 128, 10], 128, "sgd"), ([64, 32, 10], 1, "adam")])
def test_resident_memory_stays_flat_over_100_epochs(sizes, batch, optimizer):
    """Whole epochs through the public API (checks, shuffles, loss curve included):
    the process's resident memory does not grow from epoch 10 to epoch 100."""
    rng = np.random.default_rng(0)
    X = rng.random((1200, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], len(X))
    model = fastmlp.MLP(sizes, dtype=np.float32, random_state=0)
    for _ in range(10):
        model.partial_fit(X, y, batch_size=batch, optimizer=optimizer, lr=1e-3)
    start = resident_mb()
    for _ in range(90):
        model.partial_fit(X, y, batch_size=batch, optimizer=optimizer, lr=1e-3)
    assert len(model.loss_curve_) == 100
    # keeping one mini-batch of inputs (400 KB) per epoch would add 36 MB
    assert resident_mb() - start < 1.0
