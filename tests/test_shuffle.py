"""The compiled shuffle (kernels/shuffle.py) against NumPy's own shuffle: the same
order and the generator left in the same state, for every kind of generator."""
import gc
import pickle

import numpy as np
import pytest

import fastmlp
from fastmlp import core, reference
from fastmlp.kernels.shuffle import shuffle_order

GENERATORS = {
    "RandomState": np.random.RandomState,
    "PCG64": lambda seed: np.random.Generator(np.random.PCG64(seed)),
    "PCG64DXSM": lambda seed: np.random.Generator(np.random.PCG64DXSM(seed)),
    "MT19937": lambda seed: np.random.Generator(np.random.MT19937(seed)),
    "Philox": lambda seed: np.random.Generator(np.random.Philox(seed)),
    "SFC64": lambda seed: np.random.Generator(np.random.SFC64(seed)),
}


def _draws(rng):
    return core._draw_addresses(core._bit_generator(rng))


def _draw_uint32(rng):
    if isinstance(rng, np.random.RandomState):
        return rng.randint(0, 2**32, dtype=np.uint32)
    return rng.integers(0, 2**32, dtype=np.uint32)


@pytest.mark.parametrize("kind", GENERATORS)
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_same_orders_and_state_as_numpy(kind, seed):
    ours, numpys = GENERATORS[kind](seed), GENERATORS[kind](seed)
    for n in [0, 1, 2, 3, 7, 8, 9, 16, 17, 303, 1797, 65537]:
        order, expected = np.empty(n, np.int64), np.arange(n, dtype=np.int64)
        shuffle_order(order, True, *_draws(ours))
        numpys.shuffle(expected)
        assert np.array_equal(order, expected), n
        for _ in range(2):  # each epoch shuffles the last one's order again
            shuffle_order(order, False, *_draws(ours))
            numpys.shuffle(expected)
            assert np.array_equal(order, expected), n
        # a 32-bit draw in between: generators that keep the other half of a 64-bit
        # draw for the next 32-bit one must have kept the same half
        assert _draw_uint32(ours) == _draw_uint32(numpys)
    assert ours.random() == numpys.random()


def test_order_is_a_permutation_of_the_given_order():
    rng = np.random.RandomState(3)
    order = np.array([5, 9, 2, 7, 7, 1], dtype=np.int64)  # shuffled as given, not reset
    shuffle_order(order, False, *_draws(rng))
    assert sorted(order) == [1, 2, 5, 7, 7, 9]


def test_mt19937_draws_keep_their_generator_alive():
    """The MT19937 state is drawn from in place, through an array over the generator's
    memory: the array alone must keep the generator (and so that memory) alive."""
    draws = _draws(np.random.RandomState(11))  # no other reference to this generator
    gc.collect()
    churn = [np.random.RandomState(i) for i in range(50)]  # would reuse freed memory
    order, expected = np.empty(2000, np.int64), np.arange(2000, dtype=np.int64)
    shuffle_order(order, True, *draws)
    np.random.RandomState(11).shuffle(expected)
    assert np.array_equal(order, expected) and len(churn) == 50


def test_model_draws_what_the_reference_draws():
    """fastmlp.MLP shuffles with the kernel, the reference with NumPy: their epochs
    see the same orders, and both generators end in the same state."""
    X = np.random.default_rng(0).normal(size=(101, 4))
    y = (X[:, 0] > 0).astype(float)
    for make in GENERATORS.values():
        models = [cls([4, 5, 1], output="sigmoid", random_state=make(7))
                  for cls in (fastmlp.MLP, reference.MLP)]
        for model in models:
            model.fit(X, y, epochs=3, batch_size=10, lr=0.1)
        fast, ref = models
        assert core._compiled_draws(fast._rng) is not None
        np.testing.assert_allclose(fast.loss_curve_, ref.loss_curve_, rtol=1e-12)
        assert fast._rng.random() == ref._rng.random()


def test_large_models_draw_with_numpys_shuffle_what_the_reference_draws():
    """Models of COMPILED_SHUFFLE_MAX_MACS multiply-adds a row or more shuffle with
    NumPy's shuffle (the compiled one would only add its compile): the same orders."""
    sizes = [128, 128, 10]
    assert 128 * 128 + 128 * 10 >= core.COMPILED_SHUFFLE_MAX_MACS > 4 * 5 + 5
    X = np.random.default_rng(0).normal(size=(101, 128))
    y = np.random.default_rng(1).integers(0, 10, 101)
    models = [cls(sizes, random_state=7) for cls in (fastmlp.MLP, reference.MLP)]
    for model in models:
        model.fit(X, y, epochs=3, batch_size=10, lr=0.1)
    fast, ref = models
    assert getattr(fast, "_kernel_draws", None) is None
    np.testing.assert_allclose(fast.loss_curve_, ref.loss_curve_, rtol=1e-12)
    assert fast._rng.random() == ref._rng.random()


def test_pickled_model_draws_from_its_own_generator():
    X = np.random.default_rng(1).normal(size=(50, 3))
    y = X.sum(axis=1)
    model = fastmlp.MLP([3, 4, 1], output="identity", random_state=5)
    model.fit(X, y, epochs=1, batch_size=8)
    copy = pickle.loads(pickle.dumps(model))
    assert "_kernel_draws" not in copy.__getstate__()
    model.partial_fit(X, y, batch_size=8)
    copy.partial_fit(X, y, batch_size=8)
    np.testing.assert_array_equal(model.params, copy.params)
    assert copy._kernel_draws[0] is copy._rng and copy._rng is not model._rng


def test_falls_back_to_numpy_without_a_bit_generator():
    class Draws:  # a generator-like object fastmlp cannot reach into
        def __init__(self):
            self.calls = 0
            self._rng = np.random.RandomState(0)

        def shuffle(self, order):
            self.calls += 1
            self._rng.shuffle(order)

    model = fastmlp.MLP([2, 3, 1], output="identity", random_state=0)
    model._rng = Draws()
    order = model._next_order(None, 10, True)
    assert model._rng.calls == 1 and sorted(order) == list(range(10))
