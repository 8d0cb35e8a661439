"""`fastmlp.MLP`: the shared API of `fastmlp._base` over the compiled kernels.

Python does the checks, the random draws and the bookkeeping once per epoch;
each epoch of mini-batches is one call into `kernels.network.train_epoch`.
Workspaces (activations, deltas, gathered input rows) are allocated once per
batch-size capacity and reused, so training steps allocate nothing.

Every kernel comes in two variants that give the same bits: a serial one
(`parallel=None`: large products still split into their fixed blocks, run one
after the other) and a parallel one (the blocks run under numba's threads).
`_kernel_mode` picks the parallel variant only where it can help: a layer
product of PARALLEL_MIN_MACS multiply-adds or more and more than one thread.
So small models, and any model at one thread, never compile the parallel
kernels (seconds of compile time) nor pay their thread launches. And:
- numba's workqueue threading layer aborts the process when parallel kernels
  are entered from two Python threads at once, so there they take a lock (also
  the first time, before numba has chosen its layer);
- numba stops a child that enters a parallel region under the omp layer (GNU
  OpenMP, which does not survive fork) once its parent has started that layer,
  and fastmlp starts it as it loads (kernels/_config.py): a child forked after
  `import fastmlp` runs the serial variant.
"""

import contextlib
import ctypes
import functools
import os
import subprocess
import sys
import threading

import numba
import numpy as np

from fastmlp._base import (OUTPUTS, HIDDEN_ACTIVATIONS, BaseMLP, NonFiniteRows, aligned_empty,
                           layer_shapes)
from fastmlp._threads import single_threaded_blas
from fastmlp.kernels import _blas, network, small_gemm, sparse_gradient
from fastmlp.kernels._config import LOOPS_MAX_B_FLOAT64, PARALLEL_MIN_MACS, SMALL_GEMM_MAX_MACS
from fastmlp.kernels.shuffle import MAX_POSITION, MT_WORDS, shuffle_order

PREDICT_ROWS = 1024  # rows per forward block in predict: bounds the workspace
# Models with fewer multiply-adds per row than this shuffle with the compiled shuffle
# (kernels/shuffle.py), the others with NumPy's (the same orders). It saves ~5 ns a row
# (303 rows 3.5 -> 1.5 us, 60000 rows 502 -> 179 us), under 0.5% of an epoch whose rows
# take 16k multiply-adds or more; there it would only add its compile to a cold start
# (~0.2 s of 784-512-512-10's).
COMPILED_SHUFFLE_MAX_MACS = 1 << 14

_parallel_lock = threading.Lock()
_no_lock = contextlib.nullcontext()  # reusable: holds no state
_SERIAL = (_no_lock, None)  # (context, parallel) of the serial kernels
_forked_after_omp = False


def _threading_layer():
    """numba's threading layer, or None before the first parallel kernel ran."""
    try:
        return numba.threading_layer()
    except ValueError:
        return None


def _after_fork_in_child():
    global _forked_after_omp
    if _threading_layer() == "omp":
        try:
            from numba.np.ufunc import omppool
            vendor = getattr(omppool, "openmp_vendor", "GNU")
        except ImportError:
            vendor = "GNU"
        if vendor == "GNU":  # Intel's OpenMP survives fork
            _forked_after_omp = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _kernel_mode(macs):
    """(context, parallel) to call a kernel whose largest layer product is `macs`
    multiply-adds in: parallel=None selects the serial variant (see the module
    docstring); the context is the lock under workqueue (or while the layer is
    unknown) for the parallel one, else nothing."""
    if macs < PARALLEL_MIN_MACS or numba.get_num_threads() < 2 or _forked_after_omp:
        return _SERIAL
    layer = _threading_layer()
    return (_parallel_lock if layer in (None, "workqueue") else _no_lock), True


def _entry_point(dispatcher, args):
    """The compiled code numba's `dispatcher` runs for `args` (after a call with them),
    as the function its dispatch ends in: called directly, it skips the dispatch's
    typing of every argument (~34 ns each: train_epoch's 29 take 1.1 us, 0.4 us without;
    a tiny partial_fit call is ~25 us). Only for arguments of the same types again.
    The dispatcher itself if numba keeps its compiled code otherwise."""
    try:
        return dispatcher.overloads[tuple(map(dispatcher.typeof_pyval, args))].entry_point
    except (AttributeError, KeyError, TypeError):
        return dispatcher


@functools.lru_cache(maxsize=256)  # sizes never change after __init__; ~0.1 us a call, not ~0.8
def _largest_product(layer_sizes):
    """fan_in * fan_out of the largest layer: a product over r rows costs r times it."""
    return max(i * o for i, o in layer_shapes(layer_sizes))


@functools.lru_cache(maxsize=256)
def _smallest_product(layer_sizes):
    return min(i * o for i, o in layer_shapes(layer_sizes))


@functools.lru_cache(maxsize=256)
def _products_per_row(layer_sizes):
    return sum(i * o for i, o in layer_shapes(layer_sizes))


_loaded = set()  # (dtype, kind) of the C callbacks this process has loaded (kernels/_blas.py)

# A cold start compiles the C callbacks a model needs (the small products' loops, ~0.6 s, and
# the products that skip a relu layer's zeros, ~0.7 s) in a helper process, on another core,
# while this one compiles the epoch: they then load from numba's cache (or compile here if the
# helper could not: another cache, an error). 784-512-512-10's cold compile at 2 threads lost
# 0.5-1.0 s with its callback cached beforehand (three rounds).
COMPILE_CALLBACKS_IN_HELPER = True
_HELPER = "import sys; from fastmlp.kernels import _blas; [_blas.load(sys.argv[1], kind) " \
          "for kind in sys.argv[2:]]"


def _callbacks_for(model, rows):
    """The C callbacks (kernels/_blas.py) a kernel call whose batches have `rows` rows or
    more may run, and this process has not loaded: small_gemm's loops (LOOPS) if one of its
    products may run in them: smaller than SMALL_GEMM_MAX_MACS multiply-adds, or a float64
    product with a W of at most LOOPS_MAX_B_FLOAT64 elements (without them the kernels run
    those in OpenBLAS, in other last bits; a model whose products never do never builds
    them: ~0.8 s of its cold compile). And sparse_gradient.py's products (SPARSE), whose cell
    holds nothing until they load, if a call may run one (kernels/dense.py's use_sparse,
    whatever the rows): a relu layer's weight gradient over two chunks of fan_in (and so
    its input gradient, which takes a block of fan_out too), or a forward product from a
    relu layer over a block of fan_in into two chunks of fan_out."""
    kinds = []
    smallest = _smallest_product(model.layer_sizes)  # a layer's fan_in * fan_out: W's size
    if (model.dtype, _blas.LOOPS) not in _loaded and (rows * smallest < SMALL_GEMM_MAX_MACS or (
            small_gemm.WIDE and model.dtype == np.float64 and smallest <= LOOPS_MAX_B_FLOAT64)):
        kinds.append(_blas.LOOPS)
    if (model.dtype, _blas.SPARSE) not in _loaded and model.activation == "relu":
        chunks = 2 * sparse_gradient.chunk_columns(np.dtype(model.dtype).itemsize)
        shapes = list(layer_shapes(model.layer_sizes))
        if (any(fan_in >= chunks for fan_in, _ in shapes[:-1])
                or any(fan_in >= sparse_gradient.SB and fan_out >= chunks
                       for fan_in, fan_out in shapes[1:])):
            kinds.append(_blas.SPARSE)
    return kinds


def _load_callbacks_for(model, rows):
    """Before a kernel call whose batches have `rows` rows or more: load (or compile) the
    callbacks it may run (_callbacks_for)."""
    for kind in _callbacks_for(model, rows):
        _blas.load(model.dtype, kind)
        _loaded.add((model.dtype, kind))


def _compile_with_callbacks(dispatcher, args, model, rows):
    """The first call of `dispatcher` with `args` is next: compile it (or load it from
    numba's cache) while a helper process compiles the callbacks it may run that numba's
    cache lacks (COMPILE_CALLBACKS_IN_HELPER), then load them."""
    missing = [kind for kind in _callbacks_for(model, rows)
               if not _blas.load_cached(model.dtype, kind)]
    helper = None
    if missing and COMPILE_CALLBACKS_IN_HELPER and sys.executable:
        try:
            # (this process's import path: the helper imports the same fastmlp)
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
            helper = subprocess.Popen(
                [sys.executable, "-c", _HELPER, np.dtype(model.dtype).name, *missing], env=env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError:  # no process to be had: they compile here
            pass
    if helper is not None:
        try:
            # (the types numba's dispatch gives these arguments: the call finds this code)
            dispatcher.compile(tuple(dispatcher.typeof_pyval(a) for a in args))
        finally:
            try:
                helper.wait(timeout=600)
            except subprocess.TimeoutExpired:
                helper.kill()
                helper.wait()
    _load_callbacks_for(model, rows)


def _bit_generator(rng):
    """The BitGenerator behind a Generator or a RandomState (None if not found)."""
    if isinstance(rng, np.random.Generator):
        return rng.bit_generator
    found = getattr(rng, "_bit_generator", None)  # RandomState's: private, but there since NumPy 1.17
    return found if isinstance(found, np.random.BitGenerator) else None


def _draw_addresses(bit_generator):
    """(next_uint32, state, mt19937): what kernels/shuffle.py draws with. mt19937 is
    an MT19937's state as an array over the generator's own memory (the array keeps
    the generator alive), or None for other bit generators."""
    interface = bit_generator.ctypes
    mt19937 = None
    if type(bit_generator) is np.random.MT19937:
        words = (ctypes.c_uint32 * (MT_WORDS + 1)).from_address(interface.state_address)
        words.bit_generator = bit_generator
        mt19937 = np.ctypeslib.as_array(words)
    return ctypes.cast(interface.next_uint32, ctypes.c_void_p).value, interface.state_address, mt19937


@functools.cache
def _compiled_shuffle_agrees(reads_mt19937):
    """Once per process and kind of draws (MT19937's words read in the kernel, or
    draws through the bit generator's function): the compiled shuffle gives NumPy's
    order and leaves the generator where NumPy's shuffle does (tests/test_shuffle.py
    checks it at length; this guards against a NumPy whose shuffle draws otherwise).
    Only the kind asked for is compiled."""
    make = np.random.RandomState if reads_mt19937 else np.random.default_rng
    ours, numpys = make(20261123), make(20261123)
    order, expected = np.empty(1000, np.int64), np.arange(1000, dtype=np.int64)  # (MT19937: 1000 > 624 draws)
    shuffle_order(order, True, *_draw_addresses(_bit_generator(ours)))
    numpys.shuffle(expected)
    return bool(np.array_equal(order, expected) and ours.random() == numpys.random())


def _compiled_draws(rng):
    """(lock, next_uint32, state, mt19937) of rng's bit generator for the compiled
    shuffle (see _draw_addresses); None when the shuffle must be NumPy's."""
    bit_generator = _bit_generator(rng)
    if bit_generator is None:
        return None
    addresses = _draw_addresses(bit_generator)
    if not _compiled_shuffle_agrees(addresses[2] is not None):
        return None
    return (bit_generator.lock, *addresses)


class MLP(BaseMLP):
    __doc__ = BaseMLP.__doc__
    _CHECKS_X_IN_EPOCH = True  # network.train_epoch's check_x
    _kernel_entry = None  # (arrays, parallel, train_epoch's compiled code for them): _train_epoch

    def _codes(self):
        return HIDDEN_ACTIVATIONS[self.activation], OUTPUTS[self.output]

    def _workspace(self, cap):
        """(acts, deltas, x_batch) for batches of up to `cap` rows, kept for reuse."""
        ws = getattr(self, "_ws", None)
        if ws is None or ws[0] != cap:
            size = self._layer_buffer_size(cap)
            ws = (cap, aligned_empty(size, self.dtype), aligned_empty(size, self.dtype),
                  aligned_empty(cap * self.layer_sizes[0], self.dtype))
            self._ws = ws
        return ws[1:]

    def _kernel_layout(self):
        """The parameter layout with the kernels' row strides (kernels/network.py), kept."""
        kept = getattr(self, "_kernel_table", None)
        if kept is None or kept[0] is not self._layout:
            kept = (self._layout, network.with_row_strides(self._layout, self.dtype.itemsize))
            self._kernel_table = kept
        return kept[1]

    def _layer_buffer_size(self, cap):
        """Elements of an activation or delta buffer for `cap` rows (kernels/network.py)."""
        return cap * int(self._kernel_layout()[:, 4].sum())

    def _largest_product(self):
        return _largest_product(self.layer_sizes)

    def _train_epoch(self, data, order, batch_size, s, step):
        arrays, settings, serial = self._epoch_arguments(batch_size, s)
        # serial: even a full batch's products are below PARALLEL_MIN_MACS, so whatever the
        # thread count _kernel_mode picks the serial kernels (~0.3 us a call less)
        context, parallel = _SERIAL if serial else _kernel_mode(
            min(batch_size, len(order)) * self._largest_product())
        args = (*arrays, data.X.ravel(), data.X_unchecked, *self._loss_data(data),
                data.sample_weight, order, *settings, step, parallel)
        # The epoch's compiled code, called directly from the second call with these
        # buffers and settings on (_entry_point): the other arguments' numba types are
        # fixed by the model (TrainingData's arrays are in its dtype, C-contiguous and
        # read-only; the order is int64 and C-contiguous; the step an int;
        # tests/test_direct_calls.py).
        kept = self._kernel_entry
        epoch = kept[2] if kept is not None and kept[0] is arrays and kept[1] is parallel else None
        if epoch is None or (self.dtype, _blas.LOOPS) not in _loaded:  # (~0.1 us a call)
            rows = len(order) % batch_size or min(batch_size, len(order))  # the last batch's
            if epoch is None:
                _compile_with_callbacks(network.train_epoch, args, self, rows)
            else:  # a smaller last batch may take the loops
                _load_callbacks_for(self, rows)
        if context is _no_lock:  # (a with block costs ~0.2 us, a small epoch's 0.5%)
            loss, finite, rows_finite = epoch(*args) if epoch else network.train_epoch(*args)
        else:
            with context:
                loss, finite, rows_finite = epoch(*args) if epoch else network.train_epoch(*args)
        if epoch is None:
            self._kernel_entry = (arrays, parallel, _entry_point(network.train_epoch, args))
        if not rows_finite:
            raise NonFiniteRows
        return loss, finite

    def _loss_data(self, data):
        """(labels, targets) for the kernels: the softmax's labels and None, or None and
        the other outputs' targets. numba compiles only the loss the None leaves in
        (kernels/network.py: a 13-8-10 softmax model's cold compile ~2 s shorter)."""
        return (data.labels, None) if self.output == "softmax" else (None, data.targets)

    def _epoch_arguments(self, batch_size, s):
        """train_epoch's arguments before the data and after the order: the model's
        buffers, and its codes and optimizer settings in the model's dtype, and
        whether its batches' products all run serial (see _kernel_mode). Kept for
        the next call with the same batch size and settings (checked settings are shared
        objects: _base._checked_optimizer), so a partial_fit loop builds them once; the
        buffers are never replaced once made (LayerViews writes into params in place)."""
        kept = getattr(self, "_kernel_arguments", None)
        if kept is not None and kept[0] == batch_size and kept[1] is s:
            return kept[2]
        single_threaded_blas()
        acts, deltas, x_batch = self._workspace(batch_size)
        if getattr(self, "_grads", None) is None or self._grads.shape != self.params.shape:
            self._grads = aligned_empty(len(self.params), self.dtype)
        activation, output = self._codes()
        # float64 settings as Python floats: numba types them as float64 too (the same
        # compiled epoch), and reads them ~0.05 us faster each than NumPy scalars
        cast = float if self.dtype == np.float64 else self.dtype.type
        adam = s.name == "adam"
        velocity = self._velocity if not adam and s.momentum != 0 else None
        adam_m, adam_v = (self._adam_m, self._adam_v) if adam else (None, None)
        arguments = (
            (self.params, self._grads, velocity, adam_m, adam_v, acts, deltas, x_batch),
            (self._kernel_layout(), activation, output, self.bias, self.reduction == "mean",
             batch_size, cast(s.lr), cast(s.momentum), s.nesterov, cast(s.beta_1),
             cast(s.beta_2), cast(s.epsilon), cast(s.alpha)),
            batch_size * self._largest_product() < PARALLEL_MIN_MACS)
        self._kernel_arguments = (batch_size, s, arguments)
        return arguments

    def _next_order(self, order, n, shuffle):
        """As BaseMLP's, with the shuffle compiled for small models (NumPy's draws, in
        ~1.3 us at 303 rows, not 3.7-5.3; see kernels/shuffle.py and
        COMPILED_SHUFFLE_MAX_MACS)."""
        if _products_per_row(self.layer_sizes) >= COMPILED_SHUFFLE_MAX_MACS:
            return super()._next_order(order, n, shuffle)
        kept = getattr(self, "_kernel_draws", None)
        if kept is None or kept[0] is not self._rng:
            kept = (self._rng, _compiled_draws(self._rng), None)
            self._kernel_draws = kept
        draws = kept[1]
        if not shuffle or draws is None or n - 1 > MAX_POSITION:
            return super()._next_order(order, n, shuffle)
        lock, function, state, mt19937 = draws  # (not `lock, *rest`: a list a call)
        restart = order is None
        if restart:
            order = np.empty(n, np.int64)
        # the compiled code, called directly once dispatched (_entry_point: 0.27 us of
        # ~1.9 at 303 rows): its arguments' types are fixed by the generator's kind
        with lock:  # as NumPy's shuffle: one thread draws from a generator at a time
            if kept[2]:
                kept[2](order, restart, function, state, mt19937)
            else:
                shuffle_order(order, restart, function, state, mt19937)
        if kept[2] is None:
            self._kernel_draws = (*kept[:2], _entry_point(shuffle_order, (order, restart, function,
                                                                         state, mt19937)))
        return order

    def _forward_rows(self, X):
        single_threaded_blas()
        cap = min(len(X), PREDICT_ROWS)
        acts = aligned_empty(self._layer_buffer_size(cap), self.dtype)
        out = np.empty((len(X), self.layer_sizes[-1]), self.dtype)
        activation, output = self._codes()
        _load_callbacks_for(self, len(X) % PREDICT_ROWS or cap)  # the last block's rows
        context, parallel = _kernel_mode(cap * self._largest_product())
        with context:
            network.predict_outputs(out, X.ravel(), self.params, self._kernel_layout(), acts,
                                    cap, activation, output, self.bias, parallel)
        return out

    def _loss_grad(self, data, alpha, want_grad, want_input_grad):
        single_threaded_blas()
        n = data.n_samples
        acts = aligned_empty(self._layer_buffer_size(n), self.dtype)
        deltas = aligned_empty(len(acts), self.dtype)
        grads = aligned_empty(len(self.params), self.dtype)
        dx = np.empty((n if want_input_grad else 0, data.X.shape[1]), self.dtype)
        activation, output = self._codes()
        _load_callbacks_for(self, n)
        context, parallel = _kernel_mode(n * self._largest_product())
        with context:
            loss = network.loss_and_backward(
                grads, acts, deltas, data.X.ravel(), 0, np.arange(n, dtype=np.int64),
                *self._loss_data(data), data.sample_weight, self.params, self._kernel_layout(), n,
                activation, output, self.bias, self.reduction == "mean", self.dtype.type(alpha),
                want_grad, dx.reshape(-1), parallel)
        return float(loss), grads if want_grad else None, dx if want_input_grad else None
