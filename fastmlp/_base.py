"""What both twins share: the constructor, input checks, initial weights, the
flat parameter layout and the per-epoch loop. Nothing numeric beyond that.

`fastmlp.MLP` (kernels) and `fastmlp.reference.MLP` (plain NumPy) subclass
`BaseMLP` and supply the three numeric hooks:

    _train_epoch(data, order, batch_size, settings, step) -> (epoch loss, state finite)
                 (with _CHECKS_X_IN_EPOCH: raises NonFiniteRows, see TrainingData.X_unchecked)
    _forward_rows(X)                             -> output activations
    _loss_grad(data, want_grad, want_input_grad) -> (loss, flat grad, dL/dX)

Conventions shared by the twins (and by scikit-learn, whose numbers we match):
    loss  = (sum_i w_i * l_i + alpha/2 * sum_l ||W_l||^2) / N
            N = sum_i w_i for reduction="mean", N = 1 for reduction="sum"
    l_i   = squared error: 1/2 sum_k (out_ik - y_ik)^2
            sigmoid:       binary cross-entropy summed over outputs
            softmax:       categorical cross-entropy
            exp:           Poisson deviance / 2 (scikit-learn's poisson loss)
    output delta = w_i (out_i - y_i) / N; the L2 term touches weights, not biases.
    A mini-batch whose weights sum to 0 has loss 0 and gradient 0 (scikit-learn
    would divide 0 by 0).
    Each mini-batch has its own N. The epoch loss is, as in scikit-learn,
    sum_b loss_b * n_b / n for "mean" and sum_b loss_b for "sum", where loss_b is
    taken before the batch's update.
"""

import _signal
import functools
import math
import numbers
import signal
import time
import warnings
from dataclasses import dataclass

import numpy as np

from fastmlp import _progress
from fastmlp.kernels import checks

HIDDEN_ACTIVATIONS = {"relu": 0, "sigmoid": 1, "logistic": 1, "tanh": 2, "identity": 3}
OUTPUTS = {"identity": 0, "sigmoid": 1, "softmax": 2, "exp": 3}
OUTPUT_ALIASES = {"linear": "identity", "logistic": "sigmoid"}
REDUCTIONS = ("mean", "sum")
OPTIMIZERS = ("sgd", "adam")  # the kernels tell them apart by their state (network.train_epoch)
DTYPES = (np.float32, np.float64)
# Per non-softmax output: the interval its targets must lie in, and the error if they do not
TARGET_RANGES = {"identity": (-np.inf, np.inf), "sigmoid": (0.0, 1.0), "exp": (0.0, np.inf)}
TARGET_RANGE_ERRORS = {"sigmoid": "y for a sigmoid output must lie in [0, 1]",
                       "exp": "y for an exp (Poisson) output must be non-negative"}

# An epoch runs as consecutive slices of whole mini-batches, one compiled call
# each, sized from the model's multiply-adds so that a call takes at most about
# CALL_SECONDS: Ctrl-C is seen between calls (a kernel releases the GIL and
# cannot be interrupted). The estimate is pessimistic -- measured here, fastmlp
# runs 2.4-40 G multiply-adds/s and ~1-35 us per mini-batch (busy to idle
# machine), the NumPy twin 1-5 G/s and ~75-150 us -- and depends on sizes
# only, never on timings, so the slices, and with them every result, are the
# same on every run. A call costs ~10 us of dispatch: 0.1-0.5% of a slice.
CALL_SECONDS = 0.25
ASSUMED_MACS_PER_SECOND = 1e9
ASSUMED_SECONDS_PER_BATCH = 1e-4


# Byte boundary the model's parameter vector and the kernels' buffers start on: a
# cache line. NumPy's large arrays start 16 bytes past one (the allocator's header), so
# half of OpenBLAS's 32-byte float64 loads and stores of them straddled two lines.
# Measured (1 thread, float64): the deep workload's five 256-row products 19.6 ->
# 19.2-19.3 ms side by side (float32's: no change); epochs 0.6% (deep), 0.7-1.8% (mnist) and
# 2.4% (wide) faster (alternating processes).
ALIGNMENT = 64

# Training data X of this many bytes or more is checked for NaN and infinity inside the
# first epoch's compiled calls, each mini-batch's rows as they are gathered, not in a
# pass over X before them. That pass read X once more per call, from memory: 3.5% of
# an mnist epoch, 4.8% of wide's (float64, 1 thread); checked in the gather, epochs ran
# 2.1-2.5% (mnist) and 5.3-6.0% (wide) faster, side by side in one process. A bad row stops
# the epoch before its mini-batch, and the call gives the model back its state from
# before (BaseMLP._state_to_give_back), which costs up to ~40 us (a RandomState's state)
# plus copies of the optimizer state the call writes: worth it from about this size up.
X_CHECK_IN_EPOCH_MIN_BYTES = 1 << 23


class NonFiniteRows(Exception):
    """Raised by a `_train_epoch` hook whose rows of a `TrainingData.X_unchecked` X hold
    a NaN or infinity; it stopped before training on them."""


def aligned_empty(size, dtype):
    """An uninitialised vector of `size` elements whose data starts on an ALIGNMENT
    boundary (a view into a slightly longer one)."""
    dtype = np.dtype(dtype)
    raw = np.empty(size + ALIGNMENT // dtype.itemsize, dtype)
    start = -raw.ctypes.data % ALIGNMENT // dtype.itemsize
    return raw[start:start + size]


@dataclass(frozen=True)
class Gradients:
    """Gradients in the model's layout: `flat` is shaped like `params`;
    `coefs` and `intercepts` are views into it shaped like `coefs_` / `intercepts_`."""

    flat: np.ndarray
    coefs: list
    intercepts: list


# TrainingData is not frozen: it is built on every partial_fit call, and frozen=True's
# per-field object.__setattr__ costs ~0.4-0.7 us each. Nothing assigns to its fields.
@dataclass
class TrainingData:
    """Validated training inputs in the model's dtype. Exactly one of `labels`
    (softmax: int64 class indices) and `targets` (other outputs: n x k) is non-empty;
    `sample_weight` is empty when every sample weighs 1."""

    X: np.ndarray
    labels: np.ndarray
    targets: np.ndarray
    sample_weight: np.ndarray
    X_unchecked: bool = False  # X's NaN/inf check is left to the epoch (X_CHECK_IN_EPOCH_MIN_BYTES)

    @property
    def n_samples(self):
        return self.X.shape[0]


def _read_only(a):
    """`a`, or a view of it, that cannot be written through. The kernels take every
    input array read-only, writable or not: numba compiles a kernel for each set of
    argument types, and a read-only input (a memmap, joblib's shared arrays,
    np.load(mmap_mode="r")) would otherwise compile each kernel it reaches again
    (the training epoch: ~7-10 s cold). Costs ~0.5 us a writable array."""
    if a.flags.writeable:
        a = a.view()
        a.setflags(write=False)
    return a


# The empty fields of TrainingData, shared by every call (an empty array holds nothing to
# change). The kernels get None for the unused one of labels and targets (core._loss_data)
_NO_LABELS = np.zeros(0, dtype=np.int64)
_NO_WEIGHTS = {np.dtype(dtype): _read_only(np.zeros(0, dtype=dtype)) for dtype in DTYPES}


@dataclass(frozen=True)  # one instance serves every call with the same arguments (see below)
class OptimizerSettings:
    name: str
    lr: float
    momentum: float
    nesterov: bool
    alpha: float
    beta_1: float
    beta_2: float
    epsilon: float


class LayerViews(tuple):
    """Per-layer views into the flat parameters. `views[l] = array` checks the
    array and copies it into the view; the view itself is never replaced, so
    `params` and every layer stay one buffer."""

    def __new__(cls, views, name, dtype):
        self = super().__new__(cls, views)
        self._name, self._dtype = name, dtype
        return self

    def __setitem__(self, l, array):
        if not isinstance(l, (numbers.Integral, np.integer)):
            raise TypeError(f"{self._name} takes one layer index at a time; got {l!r}")
        view = self[l]
        view[...] = _checked_weights(f"{self._name}[{l}]", array, view, self._dtype)


def _checked_weights(name, array, view, dtype):
    array = np.asarray(array)
    if array.dtype != dtype:
        raise ValueError(f"{name} has dtype {array.dtype}; this model holds {dtype}")
    if array.shape != view.shape:
        raise ValueError(f"{name} has shape {array.shape}; expected {view.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return array


def _check_random_state(seed):
    if seed is None or isinstance(seed, (numbers.Integral, np.integer)):
        return np.random.RandomState(seed)
    if isinstance(seed, (np.random.RandomState, np.random.Generator)):
        return seed
    raise ValueError(f"random_state must be None, an int, a RandomState or a Generator; got {seed!r}")


def _positive_int(name, value, minimum=1):
    if type(value) is int and value >= minimum:  # the common case, without ABC checks
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Integral, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value}")
    return int(value)


def _real(name, value, low, high=np.inf, low_open=False, high_open=True):
    if type(value) in (float, int) and (low < value if low_open else low <= value) and (
            value < high if high_open else value <= high):
        return float(value)  # the common case, without ABC checks (NaN fails the comparisons)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise ValueError(f"{name} must be a real number; got {value!r}")
    value = float(value)
    too_low = value <= low if low_open else value < low
    too_high = value >= high if high_open else value > high
    if not np.isfinite(value) or too_low or too_high:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"{name} must be in {lo}{low}, {high}{hi}; got {value!r}")
    return value


def _as_array(name, a):
    """np.asarray(a), with numpy's errors for ragged or unconvertible input as a
    ValueError that names the argument."""
    try:
        return np.asarray(a)
    except (ValueError, TypeError, OverflowError, RecursionError) as e:
        raise ValueError(f"{name} cannot be read as an array of numbers: {e}") from None


def _contiguous(arr, dtype):
    """np.ascontiguousarray(arr, dtype=dtype). Only a cast from another float type
    can overflow (1e300 is inf in float32), and the callers report the inf, so only
    then are NumPy's cast warnings silenced: np.errstate costs ~1.5 us a call."""
    if arr.dtype.kind == "f" and arr.dtype != dtype:
        with np.errstate(over="ignore", invalid="ignore"):
            return np.ascontiguousarray(arr, dtype=dtype)
    return np.ascontiguousarray(arr, dtype=dtype)


def _numeric_array(name, a, dtype, check_finite=True):
    """A C-contiguous copy-or-view of `a` in the float `dtype`; rejects what cannot be a
    number, and (check_finite) NaN and infinity."""
    if type(a) is np.ndarray and a.dtype == dtype and a.flags.c_contiguous:
        arr = a  # already what the kernels take (the common case: ~0.3 us of checks less)
    else:
        arr = _as_array(name, a)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} must hold real numbers; got dtype {arr.dtype}")
        arr = _contiguous(arr, dtype)
    arr = _read_only(arr)  # (before the check: it then compiles for read-only arrays alone)
    if check_finite:
        _check_finite(name, arr)
    return arr


def _all_finite(a):
    """No NaN or infinity in the float array a (C-contiguous)."""
    return checks.all_finite(a.ravel(), 0, a.size)


def _check_finite(name, arr):
    if not _all_finite(arr):  # after a cast: overflow to inf is reported
        raise ValueError(f"{name} contains NaN or infinity")


@functools.lru_cache(maxsize=64, typed=True)
def _checked_optimizer(optimizer, lr, momentum, nesterov, alpha, beta_1, beta_2, epsilon):
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; choose from {sorted(OPTIMIZERS)}")
    return OptimizerSettings(
        name=optimizer,
        lr=_real("lr", lr, 0.0, low_open=True),
        momentum=_real("momentum", momentum, 0.0, 1.0),
        nesterov=bool(nesterov),
        alpha=_real("alpha", alpha, 0.0),
        beta_1=_real("beta_1", beta_1, 0.0, 1.0),
        beta_2=_real("beta_2", beta_2, 0.0, 1.0),
        epsilon=_real("epsilon", epsilon, 0.0, low_open=True),
    )


class _DeferredInterrupt:
    """While training, Ctrl-C sets `pressed` instead of raising KeyboardInterrupt
    at whatever bytecode runs next (which could split the weights from their
    step count); the loop checks it between compiled calls. Installed only over
    Python's default SIGINT handler and only in the main thread (the only thread
    that receives signals); otherwise a KeyboardInterrupt is left to be raised."""

    # class attributes, not an __init__: one Python call less on every partial_fit
    pressed = False
    _previous = None

    def _handler(self, signum, frame):
        self.pressed = True

    # _signal is the C core of the signal module: signal.signal's enum conversions
    # cost ~10 us a call, a tenth of a small model's epoch. Outside the main thread
    # (or interpreter) _signal.signal raises ValueError: asking it is the thread check.
    def __enter__(self):
        try:
            if _signal.getsignal(_signal.SIGINT) is signal.default_int_handler:
                self._previous = _signal.signal(_signal.SIGINT, self._handler)
        except (ValueError, OSError):  # not the main thread or interpreter, or no signals here
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            _signal.signal(_signal.SIGINT, self._previous)
            self._previous = None
        return False


def layer_shapes(layer_sizes):
    """(fan_in, fan_out) per layer, as Python ints."""
    return zip(layer_sizes[:-1], layer_sizes[1:])


@functools.lru_cache(maxsize=256)  # a function of sizes only: cached, it costs ~0.1 us a call, not ~1
def _batches_per_call(layer_sizes, batch_size):
    """Mini-batches per compiled call: a pessimistic estimate of CALL_SECONDS
    of work (3 products per layer and row, plus a fixed cost per batch)."""
    macs = 3 * batch_size * sum(i * o for i, o in layer_shapes(layer_sizes))
    seconds = macs / ASSUMED_MACS_PER_SECOND + ASSUMED_SECONDS_PER_BATCH
    return max(1, int(CALL_SECONDS / seconds))


class BaseMLP:
    """A fully connected network: layer_sizes = (n_inputs, hidden..., n_outputs)."""

    # Whether _train_epoch checks the rows of a TrainingData.X_unchecked X (raising
    # NonFiniteRows), so that _train may leave a large X's check to it
    _CHECKS_X_IN_EPOCH = False

    def __init__(self, layer_sizes, activation="relu", output="softmax", *, bias=True,
                 reduction="mean", dtype=np.float64, random_state=None):
        sizes = tuple(layer_sizes) if np.iterable(layer_sizes) else None
        if sizes is None or len(sizes) < 2:
            raise ValueError(f"layer_sizes must list at least an input and an output size; got {layer_sizes!r}")
        sizes = tuple(_positive_int("every layer size", s) for s in sizes)
        if activation not in HIDDEN_ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(HIDDEN_ACTIVATIONS)}")
        output = OUTPUT_ALIASES.get(output, output)
        if output not in OUTPUTS:
            raise ValueError(f"unknown output {output!r}; choose from {sorted(OUTPUTS)}")
        if output == "softmax" and sizes[-1] < 2:
            raise ValueError("a softmax output needs at least 2 units; use output='sigmoid' for one")
        if reduction not in REDUCTIONS:
            raise ValueError(f"unknown reduction {reduction!r}; choose from {REDUCTIONS}")
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise ValueError(f"dtype must be float32 or float64; got {dtype!r}") from None
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be float32 or float64; got {dtype}")
        self.layer_sizes = sizes
        self.activation = activation
        self.output = output
        self.bias = bool(bias)
        self.reduction = reduction
        self.dtype = dtype
        self.random_state = random_state
        self._rng = _check_random_state(random_state)
        self._make_layout()
        self._init_weights()
        self.loss_curve_ = []
        self.n_iter_ = 0
        self.t_ = 0
        self._reset_optimizer()

    # ----------------------------------------------------------------- layout
    def _layer_shapes(self):
        return layer_shapes(self.layer_sizes)

    def _make_layout(self):
        """One flat vector; layer l is W_l (fan_in x fan_out, C order) then b_l."""
        rows, offset = [], 0
        for fan_in, fan_out in self._layer_shapes():
            w_off = offset
            offset += fan_in * fan_out
            b_off = offset
            if self.bias:
                offset += fan_out
            rows.append((fan_in, fan_out, w_off, b_off))
        # int64 table read by the kernels: fan_in, fan_out, weight offset, bias offset
        self._layout = np.array(rows, dtype=np.int64)
        self.params = aligned_empty(offset, self.dtype)
        self.params.fill(0)
        coefs, intercepts = self.unpack(self.params)
        self._coefs = LayerViews(coefs, "coefs_", self.dtype)
        self._intercepts = LayerViews(intercepts, "intercepts_", self.dtype)

    def __getstate__(self):
        # the per-layer views are rebuilt on load (so they stay views of params);
        # workspaces and scratch are not worth keeping
        state = self.__dict__.copy()
        for key in ("_coefs", "_intercepts", "_ws", "_grads", "_kernel_arguments",
                    "_kernel_draws", "_kernel_table", "_kernel_entry"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        params = aligned_empty(len(self.params), self.params.dtype)  # (a pickle keeps no alignment)
        params[:] = self.params
        self.params = params
        coefs, intercepts = self.unpack(self.params)
        self._coefs = LayerViews(coefs, "coefs_", self.dtype)
        self._intercepts = LayerViews(intercepts, "intercepts_", self.dtype)

    def unpack(self, flat):
        """Views of a vector in the parameter layout: (list of W_l, list of b_l)."""
        coefs = [flat[w:w + i * o].reshape(i, o) for i, o, w, _ in self._layout]
        intercepts = [flat[b:b + o] for _, o, _, b in self._layout] if self.bias else []
        return coefs, intercepts

    def _init_weights(self):
        # scikit-learn's Glorot-uniform: per layer, W then b from one uniform draw each.
        factor = 2.0 if self.activation in ("sigmoid", "logistic") else 6.0
        for l, (fan_in, fan_out) in enumerate(self._layer_shapes()):
            bound = np.sqrt(factor / (fan_in + fan_out))
            self._coefs[l][...] = self._rng.uniform(-bound, bound, (fan_in, fan_out))
            b = self._rng.uniform(-bound, bound, fan_out)
            if self.bias:
                self._intercepts[l][...] = b

    @property
    def n_layers(self):
        return len(self.layer_sizes) - 1

    # writable views; assigning a whole list checks every array before writing any
    @property
    def coefs_(self):
        return self._coefs

    @coefs_.setter
    def coefs_(self, arrays):
        self._assign("coefs_", arrays, self._coefs)

    @property
    def intercepts_(self):
        return self._intercepts

    @intercepts_.setter
    def intercepts_(self, arrays):
        if not self.bias:
            raise ValueError("this model has bias=False: it has no intercepts to assign")
        self._assign("intercepts_", arrays, self._intercepts)

    def set_params_vector(self, flat):
        """Copy a flat vector (shaped like `params`, same dtype) into the parameters."""
        self._assign("params", [flat], [self.params])
        # (a one-element list: the same all-or-nothing checks as coefs_ and intercepts_)

    def _assign(self, name, arrays, views):
        arrays = list(arrays)
        if len(arrays) != len(views):
            raise ValueError(f"{name} needs {len(views)} arrays; got {len(arrays)}")
        checked = [_checked_weights(f"{name}[{l}]", a, v, self.dtype)
                   for l, (a, v) in enumerate(zip(arrays, views))]
        for a, v in zip(checked, views):
            v[...] = a

    # ------------------------------------------------------------ validation
    def _check_X(self, X, check_finite=True):
        X = _numeric_array("X", X, self.dtype, check_finite)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_samples, n_features); got shape {X.shape}")
        if X.shape[0] == 0:
            raise ValueError("X is empty: it has 0 samples")
        if X.shape[1] != self.layer_sizes[0]:
            raise ValueError(f"X has {X.shape[1]} features; this model takes {self.layer_sizes[0]}")
        return X

    def _check_data(self, X, y, sample_weight=None, X_check_in_epoch=False):
        """TrainingData from checked X, y and sample_weight. X_check_in_epoch: an X of
        X_CHECK_IN_EPOCH_MIN_BYTES or more is not checked for NaN and infinity here
        (X_unchecked), unless another check fails: its error comes first, as for a smaller X."""
        X = self._check_X(X, check_finite=False)
        X_unchecked = X_check_in_epoch and X.nbytes >= X_CHECK_IN_EPOCH_MIN_BYTES
        if not X_unchecked:
            _check_finite("X", X)
        try:
            return self._checked_targets(X, y, sample_weight, X_unchecked)
        except ValueError:
            if X_unchecked:
                _check_finite("X", X)
            raise

    def _checked_targets(self, X, y, sample_weight, X_unchecked):
        n, k = X.shape[0], self.layer_sizes[-1]
        y = _as_array("y", y)
        if y.shape[:1] != (n,):
            raise ValueError(f"X has {n} samples but y has {y.shape[0] if y.ndim else 'no'} rows")
        if y.dtype.kind not in "biuf":
            raise ValueError(f"y must hold numbers; got dtype {y.dtype}")
        if self.output == "softmax":
            labels = self._softmax_labels(y, k)
            targets = np.zeros((0, k), dtype=self.dtype)
        else:
            labels = _NO_LABELS
            if y.ndim == 1 and k == 1:
                shape = (n, 1)  # (a view y[:, None] would cost ~0.2 us more a call)
            elif y.ndim == 2 and y.shape[1] == k:
                shape = y.shape
            else:
                raise ValueError(f"y must have shape ({n},) or ({n}, {k}) for this model; got {y.shape}")
            low, high = TARGET_RANGES[self.output]
            if y.dtype.kind in "biu" and y.flags.c_contiguous:
                # integer targets (class labels, counts), the common case: cast and
                # checked in one compiled pass, not a NumPy cast and then a second pass
                targets, finite = np.empty(shape, self.dtype), True
                within = checks.cast_within(y if y.ndim == 1 else y.ravel(), targets.ravel(), low, high)
                targets.setflags(write=False)
            else:
                targets = _read_only(_contiguous(y, self.dtype).reshape(shape))
                # one pass for both checks; after the cast: 1e300 is inf in float32
                finite, within = checks.finite_within(targets.ravel(), low, high)
            if not finite:
                raise ValueError(f"y contains NaN or infinity (in {self.dtype})")
            if not within:
                raise ValueError(TARGET_RANGE_ERRORS[self.output])
        if sample_weight is None:
            sw = _NO_WEIGHTS[self.dtype]
        else:
            sw = _numeric_array("sample_weight", sample_weight, self.dtype)
            if sw.shape != (n,):
                raise ValueError(f"sample_weight must have shape ({n},); got {sw.shape}")
            if not checks.finite_within(sw, 0.0, np.inf)[1]:  # (finite: checked just above)
                raise ValueError("sample_weight must be non-negative")
            if not sw.sum() > 0:
                raise ValueError("sample_weight must not sum to zero")
        return TrainingData(X, labels, targets, sw, X_unchecked)

    @staticmethod
    def _softmax_labels(y, k):
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise ValueError("y contains NaN or infinity")
        if y.ndim == 2:
            if y.shape[1] != k:
                raise ValueError(f"one-hot y must have {k} columns; got {y.shape[1]}")
            one_hot = ((y == 0) | (y == 1)).all() and (y.sum(axis=1) == 1).all()
            if not one_hot:
                raise ValueError("2-D y for a softmax output must be one-hot (one 1 per row, zeros elsewhere)")
            return _read_only(np.ascontiguousarray(y.argmax(axis=1), dtype=np.int64))
        if y.ndim != 1:
            raise ValueError(f"y for a softmax output must be labels (n,) or one-hot (n, {k}); got {y.shape}")
        if y.dtype.kind == "f":
            if (y != np.round(y)).any():
                raise ValueError("class labels must be whole numbers")
            in_range = not ((y < 0).any() or (y >= k).any())  # before the cast: 1e20 has no int64
            labels = _read_only(np.ascontiguousarray(y, dtype=np.int64)) if in_range else None
        else:
            # integer labels, the common case: one compiled pass over their int64
            # copy-or-view (uint64 labels of 2**63 and up wrap to negative: out of range either way)
            labels = _read_only(np.ascontiguousarray(y, dtype=np.int64))
            in_range = checks.all_in_range(labels, k)
        if not in_range:
            raise ValueError(f"class labels must lie in 0..{k - 1}; got values from {y.min()} to {y.max()}")
        return labels

    @staticmethod
    def _check_optimizer(optimizer, lr, momentum, nesterov, alpha, beta_1, beta_2, epsilon):
        """The checked OptimizerSettings. A partial_fit loop repeats its arguments, so
        checked ones are remembered, by type and value (~0.3 us a call, not ~2.3)."""
        args = (optimizer, lr, momentum, nesterov, alpha, beta_1, beta_2, epsilon)
        try:
            return _checked_optimizer(*args)
        except TypeError:  # an unhashable argument, such as a 0-d array: checked afresh
            return _checked_optimizer.__wrapped__(*args)

    # --------------------------------------------------------------- training
    def reset_optimizer(self):
        """Forget momentum velocity, Adam moments and Adam's step count."""
        self._reset_optimizer()

    def _reset_optimizer(self):
        """Momentum velocity, Adam moments and Adam's step count, in the params layout."""
        if getattr(self, "_velocity", None) is None:
            self._velocity = np.zeros_like(self.params)
            self._adam_m = np.zeros_like(self.params)
            self._adam_v = np.zeros_like(self.params)
            self._last_good = np.empty_like(self.params)  # weights before the current epoch
        else:
            for state in (self._velocity, self._adam_m, self._adam_v):
                state.fill(0)
        self._adam_step = 0

    def fit(self, X, y, *, epochs=10, batch_size=32, lr=0.01, optimizer="sgd", momentum=0.0,
            nesterov=False, alpha=0.0, beta_1=0.9, beta_2=0.999, epsilon=1e-8, shuffle=True,
            sample_weight=None, verbose=False):
        """Train from the current weights for `epochs` passes of mini-batch descent.
        Optimizer state (velocity, Adam moments) starts afresh; `partial_fit` keeps it."""
        epochs = _positive_int("epochs", epochs)
        return self._train(X, y, epochs, batch_size, lr, optimizer, momentum, nesterov, alpha,
                           beta_1, beta_2, epsilon, shuffle, sample_weight, verbose, fresh=True)

    def partial_fit(self, X, y, *, batch_size=32, lr=0.01, optimizer="sgd", momentum=0.0,
                    nesterov=False, alpha=0.0, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                    shuffle=True, sample_weight=None, verbose=False, order=None):
        """One epoch over (X, y), continuing the optimizer state of earlier calls.

        `order`, if given, lists the rows to visit, in that order (mini-batches are
        its consecutive slices); it replaces shuffling, so a caller can draw the
        order itself, e.g. to reproduce another library's shuffles."""
        return self._train(X, y, 1, batch_size, lr, optimizer, momentum, nesterov, alpha,
                           beta_1, beta_2, epsilon, shuffle, sample_weight, verbose, fresh=False,
                           order=order)

    @staticmethod
    def _check_order(order, n):
        order = np.asarray(order)
        if order.ndim != 1 or order.size == 0 or order.dtype.kind not in "iu":
            raise ValueError(f"order must be a non-empty 1-D array of row indices; got {order.dtype} "
                             f"of shape {order.shape}")
        copy = np.array(order, dtype=np.int64)  # a copy: the kernels never see the caller's array
        if not checks.all_in_range(copy, n):  # (uint64 indices of 2**63 and up wrap to negative ones)
            raise ValueError(f"order holds row indices outside 0..{n - 1}")
        return copy

    def _batches_per_call(self, batch_size):
        """Mini-batches per compiled call (the module-level _batches_per_call)."""
        return _batches_per_call(self.layer_sizes, batch_size)

    def _state_is_finite(self, settings):
        """Weights, and the optimizer state the next step will use, hold no NaN/inf
        (the reference's check after each call; the compiled epoch makes its own)."""
        for array in (self.params, *self._optimizer_state(settings)):
            if not _all_finite(array):
                return False
        return True

    def _optimizer_state(self, settings):
        """The optimizer state arrays that steps with these settings read and write."""
        if settings.name == "adam":
            return self._adam_m, self._adam_v
        return (self._velocity,) if settings.momentum != 0 else ()

    def _train(self, X, y, epochs, batch_size, lr, optimizer, momentum, nesterov, alpha,
               beta_1, beta_2, epsilon, shuffle, sample_weight, verbose, fresh, order=None):
        """The epoch loop of fit (fresh=True) and partial_fit.

        Each epoch runs as slices of whole mini-batches, one `_train_epoch` call
        each (`_batches_per_call`); the weights, optimizer state and Adam's step
        count continue from slice to slice, so the result is bitwise that of one
        call over the whole epoch, and the epoch loss is combined from the
        slices' losses (equal up to the last bits).

        Divergence: after every slice the loss, the weights and the optimizer
        state must be finite; if not, the weights from before the epoch are
        restored, the optimizer state is reset and a ValueError is raised.

        Ctrl-C (SIGINT) while training: the slice under way finishes, then
        training stops with the weights and optimizer state of the last
        completed mini-batch (Adam's step count included). The unfinished epoch
        is not recorded: loss_curve_, n_iter_ and t_ count whole epochs only.
        fit then warns ("Training interrupted by user ...") and returns the
        model; partial_fit raises KeyboardInterrupt, so that loops calling it
        (a user's, the estimators', the CLI's) stop at the first Ctrl-C."""
        # Check everything before touching the model: a rejected call changes nothing.
        # (Except the NaN/inf check of an X of X_CHECK_IN_EPOCH_MIN_BYTES or more, which the
        # first epoch makes after every other check has passed: if a row fails it, the
        # model gets back its state from before the call.)
        batch_size = _positive_int("batch_size", batch_size)
        settings = self._check_optimizer(optimizer, lr, momentum, nesterov, alpha, beta_1, beta_2, epsilon)
        data = self._check_data(X, y, sample_weight, self._CHECKS_X_IN_EPOCH and order is None)
        n_samples = data.n_samples
        given_order = None if order is None else self._check_order(order, n_samples)
        batch_size = min(batch_size, n_samples)
        resets = fresh or getattr(self, "_optimizer_name", None) != settings.name
        before = self._state_to_give_back(settings, resets) if data.X_unchecked else None
        if resets:
            self._reset_optimizer()
        self._optimizer_name = settings.name
        self._settings = settings
        n = n_samples if given_order is None else len(given_order)  # rows an epoch visits
        per_call = self._batches_per_call(batch_size) * batch_size  # rows per compiled call
        last_good = self._last_good
        order = given_order
        progress = _progress.for_fit(verbose, epochs, n, self.n_iter_) if verbose else None
        rows_done = 0  # rows of the epoch under way whose steps are in the weights
        interrupt = None
        try:
            with _DeferredInterrupt() as ctrl_c:
                for _ in range(epochs):
                    if ctrl_c.pressed:
                        break
                    if given_order is None:
                        order = self._next_order(order, n, shuffle)
                    last_good[...] = self.params  # (np.copyto: ~0.15 us more)
                    start = time.perf_counter() if progress is not None else 0.0
                    rows_done = 0
                    losses = []
                    while rows_done < n and not ctrl_c.pressed:
                        rows = min(per_call, n - rows_done)
                        rows_order = order if rows == n else order[rows_done:rows_done + rows]
                        try:
                            loss, finite = self._train_epoch(data, rows_order, batch_size, settings,
                                                             self._adam_step)
                        except NonFiniteRows:
                            self._give_back(before)
                            raise ValueError("X contains NaN or infinity") from None
                        self._adam_step += -(-rows // batch_size)
                        rows_done += rows
                        if not math.isfinite(loss) or not finite:
                            self._diverged(loss, last_good)
                        losses.append((loss, rows))
                    if rows_done < n:
                        break  # Ctrl-C between two slices
                    data.X_unchecked = False  # the epoch read every row of X
                    epoch_loss = self._epoch_loss(losses, n)
                    self.loss_curve_.append(epoch_loss)
                    self.n_iter_ += 1
                    self.t_ += n
                    if progress is not None:
                        progress.update(self.n_iter_, epoch_loss, time.perf_counter() - start)
            if ctrl_c.pressed:
                interrupt = KeyboardInterrupt()
        except KeyboardInterrupt as e:
            # raised, not deferred: by a SIGINT handler of the caller's (ours is only
            # installed over Python's default one, in the main thread). The weights
            # hold whole steps (a kernel cannot stop mid-step), but a slice that ended
            # just before the exception may be missing from Adam's step count.
            interrupt = e
        finally:
            if progress is not None:
                progress.close()
        if interrupt is not None:
            if not fresh:
                raise interrupt
            n_batches = -(-n // batch_size)
            where = (f"after {-(-rows_done // batch_size)} of {n_batches} mini-batches of epoch "
                     f"{self.n_iter_ + 1}" if 0 < rows_done < n else f"after epoch {self.n_iter_}")
            warnings.warn(f"Training interrupted by user: stopped {where}. The model keeps the weights "
                          "of the last completed mini-batch; loss_curve_, n_iter_ and t_ count whole "
                          "epochs only.", UserWarning, stacklevel=3)
        return self

    def _state_to_give_back(self, settings, resets):
        """What a call to _train changes before its first epoch has checked X (its
        weights are last_good then): the optimizer's name and settings, Adam's step
        count, the random generator's state, and copies of the optimizer state arrays
        the call writes (all of them if it resets them)."""
        rng = self._rng
        rng_state = rng.bit_generator.state if isinstance(rng, np.random.Generator) else rng.get_state()
        arrays = ()
        if getattr(self, "_velocity", None) is not None:  # (else the reset makes them)
            arrays = ((self._velocity, self._adam_m, self._adam_v) if resets
                      else self._optimizer_state(settings))
        attributes = {name: getattr(self, name, None) for name in ("_optimizer_name", "_settings")}
        return attributes, getattr(self, "_adam_step", 0), rng_state, [(a, a.copy()) for a in arrays]

    def _give_back(self, before):
        attributes, adam_step, rng_state, arrays = before
        np.copyto(self.params, self._last_good)
        for name, value in attributes.items():
            setattr(self, name, value)
        self._adam_step = adam_step
        if isinstance(self._rng, np.random.Generator):
            self._rng.bit_generator.state = rng_state
        else:
            self._rng.set_state(rng_state)
        for array, saved in arrays:
            np.copyto(array, saved)

    def _next_order(self, order, n, shuffle):
        """This epoch's row order: as scikit-learn, the previous epoch's (None: the
        first, 0..n-1) shuffled again with the model's generator if shuffle."""
        if order is None:
            order = np.arange(n, dtype=np.int64)
        if shuffle:
            self._rng.shuffle(order)
        return order

    def _epoch_loss(self, losses, n):
        """The epoch loss from its slices' (loss, rows), as one call over the whole
        epoch gives it: the row-weighted mean for reduction='mean', else the sum."""
        if len(losses) == 1:
            return float(losses[0][0])
        if self.reduction == "mean":
            return float(sum(float(loss) * rows for loss, rows in losses) / n)
        return float(sum(float(loss) for loss, _ in losses))

    def _diverged(self, loss, last_good):
        np.copyto(self.params, last_good)
        self._reset_optimizer()
        if np.isfinite(loss):
            what = ("the weights or the optimizer state became NaN or infinite "
                    f"(the loss was still {loss:.6g})")
        else:
            what = f"the loss became {loss}"
        raise ValueError(
            f"training diverged: {what} in epoch {self.n_iter_ + 1}; the weights of the previous epoch "
            "were restored. Try a smaller lr or scale the inputs.")

    def save(self, path, *, training_state=False):
        """Write the model to `path` (see `fastmlp.io`); `fastmlp.load(path)` reads it back.
        training_state=True also keeps the optimizer and random-generator state, so
        training continues after loading exactly as without the save."""
        from fastmlp import io

        return io.save(self, path, training_state=training_state)

    # -------------------------------------------------------------- inference
    def forward(self, X):
        """Output activations: probabilities for sigmoid/softmax, values otherwise."""
        out = self._forward_rows(self._check_X(X))
        if not np.isfinite(out).all():
            raise ValueError("the model's outputs overflowed to NaN or infinity for some rows: the "
                             "inputs are too large for its weights (scale them), or the weights are")
        return out

    def predict(self, X):
        out = self.forward(X)
        if self.output == "softmax":
            return out.argmax(axis=1)
        if self.output == "sigmoid":
            labels = (out > 0.5).astype(np.int64)
            return labels[:, 0] if labels.shape[1] == 1 else labels
        return out[:, 0] if out.shape[1] == 1 else out

    def predict_proba(self, X):
        """Class probabilities: (n, C) for softmax, (n, 2) for one sigmoid output,
        (n, k) independent probabilities for k sigmoid outputs."""
        if self.output not in ("softmax", "sigmoid"):
            raise ValueError(f"predict_proba needs a sigmoid or softmax output; this model's is {self.output!r}")
        out = self.forward(X)
        if self.output == "sigmoid" and out.shape[1] == 1:
            return np.hstack([1 - out, out])
        return out

    def loss(self, X, y, *, sample_weight=None, alpha=0.0):
        """Loss on (X, y) under the model's reduction, with optional L2 penalty alpha."""
        data = self._check_data(X, y, sample_weight)
        return self._loss_grad(data, _real("alpha", alpha, 0.0), False, False)[0]

    def loss_and_grad(self, X, y, *, sample_weight=None, alpha=0.0):
        """(loss, Gradients): gradients of `loss(X, y)` for every parameter."""
        data = self._check_data(X, y, sample_weight)
        loss, flat, _ = self._loss_grad(data, _real("alpha", alpha, 0.0), True, False)
        coefs, intercepts = self.unpack(flat)
        return loss, Gradients(flat, coefs, intercepts)

    def input_grad(self, X, y, *, sample_weight=None):
        """dL/dX, shaped like X."""
        data = self._check_data(X, y, sample_weight)
        return self._loss_grad(data, 0.0, False, True)[2]

    def _normaliser(self, data):
        if self.reduction == "sum":
            return 1.0
        return float(data.sample_weight.sum()) if data.sample_weight.size else float(data.n_samples)

    def __repr__(self):
        return (f"{type(self).__module__}.{type(self).__name__}({list(self.layer_sizes)}, "
                f"activation={self.activation!r}, output={self.output!r}, bias={self.bias}, "
                f"reduction={self.reduction!r}, dtype={self.dtype.name})")
