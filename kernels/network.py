"""The whole network over flat buffers, and the fused training epoch.

Legend:  L  layers,  b  rows in a batch,  cap  rows the workspace holds,
         n  rows in the data set,  s  the layers' row strides summed (see layout)
    params, grads (p,)        every W_l (fan_in x fan_out, C order) then b_l, by layer
    layout (L, 5) int64       per layer: fan_in, fan_out, weight offset, bias offset, and
                              the row stride of its blocks below (from with_row_strides)
    acts, deltas (cap * s,)   layer l's (cap, fan_out) block, its rows `row stride` apart,
                              starts at cap * (the strides of the layers before l); a batch
                              of b rows uses a block's first b rows
    x_batch (cap * n_in,)     the batch's input rows, gathered in epoch order
    X (n * n_in,)             the data, row-major;  order (n,)  this epoch's row order
    check_x                   check X's rows for NaN and infinity as they are read
    labels (n,), targets (n, k)  as in losses.py; the one the output does not use is None
    parallel                  None: serial kernels only, same results (see dense.product)

One compiled call runs a whole epoch: for each mini-batch, gather (a batch of
one row is read in place), forward, fused output + loss + delta, backward,
optimizer step (plain SGD inside the backward pass); at the end, whether the weights
and optimizer state are finite (the divergence check). Nothing is allocated per
mini-batch. The loss and the backward pass are inlined into the epoch, so a batch
makes no call with its dozen arrays (see dense.py; called instead, they made 13-8-1 at
batch 1 ~28% slower); forward is not: inlined, it added ~1.5 s to the cold compile for ~6%.
"""
import numpy as np
from numba import prange

from ._config import (ALIASED_ROW_BYTES, CHUNKS, PARALLEL_MIN_MACS, PREFETCH_MIN_BYTES,
                      PREFETCH_ROWS_AHEAD, ROW_PAD_BYTES, inner_jit, jit, parallel_inner_jit)
from ._memory import copy, prefetch, read_only
from .activations import IDENTITY, RELU
from .checks import all_finite
from .dense import dense_backward_input, dense_backward_params, dense_forward
from .losses import output_row, softmax_delta, target_delta
from .optimizers import adam_step, sgd_step


def with_row_strides(layout, itemsize):
    """The parameter layout (L, 4) with the kernels' fifth column: elements from one
    row of a layer's block to the next in buffers of `itemsize` elements. That is
    the layer's width, plus a gap where the width's bytes are a multiple of
    ALIASED_ROW_BYTES (_config), but never in the output layer, which the losses and
    predictions read as dense rows. (In the table, not worked out in the kernels:
    there, a few integer operations per layer and batch made 13-8-1 at batch 1 16%
    slower.)"""
    strides = [fan_out + ROW_PAD_BYTES // itemsize
               if l < len(layout) - 1 and fan_out * itemsize % ALIASED_ROW_BYTES == 0 else fan_out
               for l, fan_out in enumerate(layout[:, 1])]
    return np.ascontiguousarray(np.column_stack([layout, strides]), dtype=np.int64)


@inner_jit
def block_offset(layout, l, cap):
    """Where layer l's block starts in an activation or delta buffer; with l = L,
    the buffer's length."""
    units = 0
    for k in range(l):
        units += layout[k, 4]
    return cap * units


@inner_jit
def forward(acts, x, x_off, params, layout, cap, rows, activation, has_bias, parallel):
    """Every layer's activations for `rows` rows of x at x_off; returns the logits' offset."""
    n_layers = layout.shape[0]
    inputs, in_off, in_ld = x, x_off, layout[0, 0]
    for l in range(n_layers):
        out_off, out_ld = block_offset(layout, l, cap), layout[l, 4]
        f = activation if l < n_layers - 1 else IDENTITY
        dense_forward(acts, out_off, out_ld, inputs, in_off, in_ld, params, layout[l, 2],
                      layout[l, 3], rows, layout[l, 0], layout[l, 1], has_bias, f,
                      l > 0 and activation == RELU, parallel)
        inputs, in_off, in_ld = acts, out_off, out_ld
    return in_off


@inner_jit
def l2_penalty(params, layout):
    """1/2 sum of squared weights (biases excluded)."""
    total = 0.0
    for l in range(layout.shape[0]):
        w_off = layout[l, 2]
        for p in range(w_off, w_off + layout[l, 0] * layout[l, 1]):
            total += params[p] * params[p]
    return 0.5 * total


# The loss of a batch is inverse_normaliser, softmax_delta or target_delta, and
# with_penalty, each inlined where it is used, with no function around them: numba copies
# an inlined function's IR block by block, each block with every variable of the function
# (numba issue 8989), so a wrapper inlined in its turn copied the loss's IR twice over
# (13-8-10, cold compile: inlining 1.9-2.2 -> 1.4-1.5 s, first fit 8.7-10.4 -> 8.1-9.3 s,
# alternating processes). The choice between the two losses is written out in each
# caller, not in a function of its own: numba drops a branch that a None argument rules
# out only in the function that takes the argument (and before it inlines).
@jit(inline="always")
def inverse_normaliser(rows, sample_weight, mean):
    """1 / the batch's normaliser (the rows' weight for mean, else 1); 0 for a batch
    of zero weight: no loss, no gradient."""
    norm = 1.0
    if mean:
        if sample_weight.shape[0]:
            norm = 0.0
            for r in range(rows.shape[0]):
                norm += sample_weight[rows[r]]
        else:
            norm = rows.shape[0]
    return 1.0 / norm if norm > 0 else 0.0


@jit(inline="always")
def with_penalty(total, params, layout, alpha):
    """The batch's summed loss plus its L2 penalty."""
    if alpha != 0:
        total += alpha * l2_penalty(params, layout)
    return total


@jit(inline="always")
def backward(grads, acts, deltas, x, x_off, b, params, layout, cap, activation, has_bias, decay,
             want_grad, dx, step_lr, parallel):
    """From the output deltas back to the first layer: (want_grad) the gradients into
    grads, and dL/dx into dx (rows x n_in, flat) unless it is empty. step_lr > 0 (with
    want_grad): take the plain SGD step params -= step_lr * gradient layer by layer as
    the gradients come (grads is then scratch)."""
    for l in range(layout.shape[0] - 1, -1, -1):
        fan_in, fan_out, w_off, b_off = layout[l, 0], layout[l, 1], layout[l, 2], layout[l, 3]
        d_off, d_ld = block_offset(layout, l, cap), layout[l, 4]
        # the layer's input: the previous block, or x (rows fan_in apart) for the first layer
        inputs, a_off, a_ld = ((acts, block_offset(layout, l - 1, cap), layout[l - 1, 4])
                               if l > 0 else (x, x_off, fan_in))
        # a relu layer's deltas are half zeros, which the large products skip
        relu_deltas = l < layout.shape[0] - 1 and activation == RELU
        if l > 0 or dx.shape[0]:
            # the input's delta (before a step changes W): into the previous block, or into
            # dx (no activation there)
            target, t_off, f = (deltas, a_off, activation) if l > 0 else (dx, 0, IDENTITY)
            # (grads' weights of this layer are free until dense_backward_params writes them)
            dense_backward_input(target, t_off, a_ld, deltas, d_off, d_ld, params, w_off, inputs,
                                 a_off, a_ld, b, fan_in, fan_out, f, relu_deltas, grads, parallel)
        if want_grad:
            # (the layer's own activations are free by now: the layer above has taken their
            # derivative and its weight gradient)
            dense_backward_params(grads, inputs, a_off, a_ld, deltas, d_off, d_ld, params, w_off,
                                  b_off, b, fan_in, fan_out, decay, has_bias, step_lr,
                                  relu_deltas, acts, d_off, parallel)


# The epoch inlines the loss and backward one by one, not this function holding both:
# numba copies an inlined function's IR block by block, each block with every variable
# of the function, so the copy grows with blocks x variables (inlining this whole took
# ~1.9 s of a ~9 s cold compile).
@jit
def loss_and_backward(grads, acts, deltas, x, x_off, rows, labels, targets, sample_weight, params,
                      layout, cap, activation, output, has_bias, mean, alpha, want_grad, dx,
                      parallel):
    """Forward, fused output loss, and (want_grad) backward into grads for the rows
    rows[:] whose inputs sit at x_off; dx (rows x n_in, flat; may be empty) receives
    dL/dx. Returns the batch loss with its L2 penalty, divided by the normaliser."""
    b = rows.shape[0]
    logits = forward(acts, x, x_off, params, layout, cap, b, activation, has_bias, parallel)
    inv_norm = inverse_normaliser(rows, sample_weight, mean)
    last = layout.shape[0] - 1
    d_last, k, scale = block_offset(layout, last, cap), layout[last, 1], params.dtype.type(inv_norm)
    total = 0.0
    if labels is not None:  # softmax; only one of the two compiles (see train_epoch)
        total = softmax_delta(deltas, d_last, acts, logits, b, k, rows, labels, sample_weight, scale)
    if targets is not None:
        total = target_delta(deltas, d_last, acts, logits, b, k, rows, targets, sample_weight, output,
                             scale)
    loss = with_penalty(total, params, layout, alpha) * inv_norm
    if want_grad or dx.shape[0]:
        backward(grads, acts, deltas, x, x_off, b, params, layout, cap, activation, has_bias,
                 params.dtype.type(alpha * inv_norm), want_grad, dx, params.dtype.type(0), parallel)
    return loss


@inner_jit
def gather_rows(x_batch, X, order, start, stop, n_in, first, last, check):
    """Rows first..last-1 of the batch: x_batch row r = X row order[start + r], prefetching
    a few rows ahead when X is large (see PREFETCH_MIN_BYTES). Returns False if `check`
    and a copied row holds a NaN or infinity (checked in the cache, just copied)."""
    bad = False
    line = max(1, 64 // X.itemsize)  # elements per 64-byte cache line
    limit = order.shape[0] if X.shape[0] * X.itemsize >= PREFETCH_MIN_BYTES else 0
    for r in range(first, last):
        ahead = start + r + PREFETCH_ROWS_AHEAD  # may be in the next batch
        if ahead < limit:
            nxt = order[ahead] * n_in
            for j in range(0, n_in, line):
                prefetch(X, nxt + j)
        src = order[start + r] * n_in
        copy(x_batch, r * n_in, X, src, n_in)  # a memcpy: 1.5x an element loop at 784
        if check:  # (the row just copied, in the cache: an element loop copying and
            # checking at once ran no faster)
            bad |= not all_finite(read_only(x_batch), r * n_in, (r + 1) * n_in)
    return not bad


@parallel_inner_jit
def gather_rows_in_blocks(x_batch, X, order, start, stop, n_in, check, verdicts):
    """The batch's rows in CHUNKS blocks, copied in parallel (a copy: any split gives
    the same bits); block c leaves gather_rows' answer in verdicts[c] (1: finite), as a
    reduction over prange would allocate."""
    b = stop - start
    for c in prange(CHUNKS):
        verdicts[c] = gather_rows(x_batch, X, order, start, stop, n_in, b * c // CHUNKS,
                                  b * (c + 1) // CHUNKS, check)


@inner_jit
def gather_batch(x_batch, X, order, start, stop, n_in, fan_out, check, scratch, parallel):
    """x_batch = the rows order[start:stop] of X (row-major, flat); in parallel blocks
    when the first layer's products run in them (so no other size turns parallel).
    Returns False if `check` and a row holds a NaN or infinity. scratch: CHUNKS free
    elements (the parallel blocks' answers)."""
    if parallel is not None:  # a plain `is None` test: numba drops the branch for None
        if (stop - start) * n_in * fan_out >= PARALLEL_MIN_MACS:
            gather_rows_in_blocks(x_batch, X, order, start, stop, n_in, check, scratch)
            finite = True
            for c in range(CHUNKS):
                finite = finite and scratch[c] == 1
            return finite
    # np.int64(0), not 0: a literal 0 would compile gather_rows a second time
    return gather_rows(x_batch, X, order, start, stop, n_in, np.int64(0), stop - start, check)


@jit
def train_epoch(params, grads, velocity, adam_m, adam_v, acts, deltas, x_batch,
                X, check_x, labels, targets, sample_weight, order, layout, activation, output,
                has_bias, mean, batch_size, lr, momentum, nesterov, beta_1, beta_2, epsilon, alpha,
                step, parallel):
    """One epoch of mini-batch descent over X in `order`; returns the epoch loss
    (scikit-learn's: mean of batch losses weighted by batch rows, or their sum),
    whether the weights and the optimizer state the next step uses are all finite, and
    True. With check_x, each mini-batch's rows of X are checked for NaN and infinity as
    they are gathered (X is not checked before, fastmlp._base.X_CHECK_IN_EPOCH_MIN_BYTES):
    at the first batch with one, the epoch stops before its step and returns False last.

    The optimizer is told by its state: adam_m and adam_v for Adam, velocity for SGD
    with momentum, each None when unused (so plain SGD has all three None). numba drops
    the branches a None rules out, so a cold compile builds only the step it runs
    (13-8-10: train_epoch 7.1-8.2 -> 6.9-7.2 s, alternating processes), and each
    optimizer has its own compiled epoch. Likewise the loss: labels is None for
    outputs other than softmax, targets None for softmax, and an epoch compiles only
    its own (a 13-8-10 softmax model's cold compile 9.7-10.1 -> 7.4-7.8 s)."""
    n = order.shape[0]
    n_in = layout[0, 0]
    no_dx = x_batch[:0]
    # plain SGD steps inside the backward pass (see dense_backward_params). The 0 is in
    # the model's dtype: `lr * 0` was float64 in numba, and a float32 model's steps then
    # ran in float64 arithmetic with conversions (tests/test_twins.py checks the rounding)
    fused_lr = params.dtype.type(0)
    if adam_m is None:  # (plain `is None` tests: the ones numba prunes)
        if velocity is None:
            fused_lr = lr
    epoch_loss = 0.0
    rows_finite = True
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        rows = order[start:stop]
        if stop - start == 1:  # one row: read in place, no copy
            x, x_off = X, order[start] * n_in
            if check_x:
                rows_finite = all_finite(X, x_off, x_off + n_in)
        else:  # (deltas: free until the loss writes them)
            rows_finite = gather_batch(x_batch, X, order, start, stop, n_in, layout[0, 1],
                                       check_x, deltas, parallel)
            x, x_off = x_batch, np.int64(0)
        # a NaN or infinity in X: stop before this batch's step (a flag and a break, not
        # a return in the loop: tiny's compiled epoch at batch 1 ran ~7% slower with that)
        if not rows_finite:
            break
        logits = forward(acts, x, x_off, params, layout, batch_size, stop - start, activation,
                         has_bias, parallel)
        inv_norm = inverse_normaliser(rows, sample_weight, mean)
        last = layout.shape[0] - 1
        d_last, k, b = block_offset(layout, last, batch_size), layout[last, 1], stop - start
        scale = params.dtype.type(inv_norm)
        total = 0.0
        if labels is not None:  # softmax; only one of the two compiles (see the docstring)
            total = softmax_delta(deltas, d_last, acts, logits, b, k, rows, labels, sample_weight,
                                  scale)
        if targets is not None:
            total = target_delta(deltas, d_last, acts, logits, b, k, rows, targets, sample_weight,
                                 output, scale)
        loss = with_penalty(total, params, layout, alpha) * inv_norm
        backward(grads, acts, deltas, x, x_off, stop - start, params, layout, batch_size,
                 activation, has_bias, params.dtype.type(alpha * inv_norm), True, no_dx, fused_lr,
                 parallel)
        epoch_loss += loss * (stop - start) if mean else loss
        step += 1
        if adam_m is not None:
            adam_step(params, grads, adam_m, adam_v, lr, beta_1, beta_2, epsilon, step)
        elif velocity is not None:
            sgd_step(params, grads, velocity, lr, momentum, nesterov)
    if not rows_finite:
        return epoch_loss, True, False
    # the check the caller would make next, here: a compiled call from Python fewer
    # (a literal 0 would compile all_finite again, and so would a writable array: X is not)
    p, zero = params.shape[0], np.int64(0)
    finite = all_finite(read_only(params), zero, p)
    if adam_m is not None:
        finite = (finite and all_finite(read_only(adam_m), zero, p)
                  and all_finite(read_only(adam_v), zero, p))
    elif velocity is not None:
        finite = finite and all_finite(read_only(velocity), zero, p)
    return (epoch_loss / n if mean else epoch_loss), finite, True


@jit
def predict_outputs(out, X, params, layout, acts, cap, activation, output, has_bias, parallel):
    """Outputs for every row of X (flat, row-major), cap rows at a time, into out (n, k)."""
    n_in, k = layout[0, 0], layout[layout.shape[0] - 1, 1]
    n = X.shape[0] // n_in
    for start in range(0, n, cap):
        rows = min(start + cap, n) - start
        logits = forward(acts, X, start * n_in, params, layout, cap, rows, activation,
                         has_bias, parallel)
        for r in range(rows):
            z = logits + r * k
            output_row(acts, z, k, output)
            for j in range(k):
                out[start + r, j] = acts[z + j]
