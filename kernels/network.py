"""The whole network over flat buffers, and the fused training epoch.

Legend:  L  layers,  b  rows in a batch,  cap  rows the workspace holds,
         n  rows in the data set,  u  units summed over all layers but the input
    params, grads (p,)        every W_l (fan_in x fan_out, C order) then b_l, by layer
    layout (L, 4) int64       per layer: fan_in, fan_out, weight offset, bias offset
    acts, deltas (cap * u,)   per layer a (cap, fan_out) block; a batch of b rows
                              uses the first b rows of each block
    x_batch (cap * n_in,)     the batch's input rows, gathered in epoch order
    X (n, n_in), order (n,)   data and this epoch's row order

One compiled call runs a whole epoch: for each mini-batch, gather, forward,
fused output + loss + delta, backward, optimizer step. Nothing is allocated
per mini-batch: every array below is a view of a buffer passed in.
"""
from ._config import jit
from .dense import dense_backward_input, dense_backward_params, dense_forward
from .activations import IDENTITY
from .losses import output_delta, output_rows
from .optimizers import ADAM, adam_step, sgd_step


@jit
def layer_weights(params, layout, l):
    fan_in, fan_out, w_off, _ = layout[l]
    return params[w_off:w_off + fan_in * fan_out].reshape((fan_in, fan_out))


@jit
def layer_biases(params, layout, l):
    fan_out, b_off = layout[l, 1], layout[l, 3]
    return params[b_off:b_off + fan_out]


@jit
def block(buffer, layout, l, cap, rows):
    """Layer l's (rows, fan_out) block of an activation or delta buffer."""
    start = 0
    for k in range(l):
        start += cap * layout[k, 1]
    return buffer[start:start + rows * layout[l, 1]].reshape((rows, layout[l, 1]))


@jit
def forward(acts, x, params, layout, cap, activation, has_bias):
    """Every layer's activations for the rows of x; the last block holds logits."""
    rows = x.shape[0]
    n_layers = layout.shape[0]
    inputs = x
    for l in range(n_layers):
        out = block(acts, layout, l, cap, rows)
        f = activation if l < n_layers - 1 else IDENTITY
        dense_forward(out, inputs, layer_weights(params, layout, l), layer_biases(params, layout, l), has_bias, f)
        inputs = out
    return inputs


@jit
def l2_penalty(params, layout):
    """1/2 sum of squared weights (biases excluded)."""
    total = 0.0
    for l in range(layout.shape[0]):
        fan_in, fan_out, w_off, _ = layout[l]
        for i in range(w_off, w_off + fan_in * fan_out):
            total += params[i] * params[i]
    return 0.5 * total


@jit
def loss_and_backward(grads, acts, deltas, x, rows, labels, targets, sample_weight, params, layout,
                      cap, activation, output, has_bias, mean, alpha, want_grad, dx):
    """Forward, fused output loss, and (want_grad) backward into grads; dx (rows x n_in,
    may be empty) receives dL/dx. Returns the batch loss with its L2 penalty."""
    b = x.shape[0]
    n_layers = layout.shape[0]
    logits = forward(acts, x, params, layout, cap, activation, has_bias)
    norm = 1.0
    if mean:
        if sample_weight.shape[0]:
            norm = 0.0
            for r in range(b):
                norm += sample_weight[rows[r]]
        else:
            norm = b
    scale = params.dtype.type(1.0 / norm)
    last = n_layers - 1
    total = output_delta(block(deltas, layout, last, cap, b), logits, rows, labels, targets,
                         sample_weight, output, scale)
    if alpha != 0:
        total += alpha * l2_penalty(params, layout)
    if not want_grad and dx.shape[0] == 0:
        return total / norm
    decay = params.dtype.type(alpha / norm)
    for l in range(last, -1, -1):
        D = block(deltas, layout, l, cap, b)
        A = x if l == 0 else block(acts, layout, l - 1, cap, b)
        W = layer_weights(params, layout, l)
        if want_grad:
            dense_backward_params(layer_weights(grads, layout, l), layer_biases(grads, layout, l), A, D, W,
                                  decay, has_bias)
        if l > 0:
            dense_backward_input(block(deltas, layout, l - 1, cap, b), D, W, A, activation)
        elif dx.shape[0]:
            dense_backward_input(dx, D, W, A, IDENTITY)
    return total / norm


@jit
def train_epoch(params, grads, velocity, adam_m, adam_v, acts, deltas, x_batch,
                X, labels, targets, sample_weight, order, layout, activation, output, has_bias, mean,
                batch_size, optimizer, lr, momentum, nesterov, beta_1, beta_2, epsilon, alpha,
                step):
    """One epoch of mini-batch descent over X in `order`; returns the epoch loss
    (scikit-learn's: mean of batch losses weighted by batch rows, or their sum)."""
    n, n_in = X.shape
    no_dx = x_batch[:0].reshape((0, n_in))
    epoch_loss = 0.0
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        b = stop - start
        rows = order[start:stop]
        x = x_batch[:b * n_in].reshape((b, n_in))
        for r in range(b):
            x[r, :] = X[rows[r]]
        loss = loss_and_backward(grads, acts, deltas, x, rows, labels, targets, sample_weight, params,
                                 layout, batch_size, activation, output, has_bias, mean, alpha,
                                 True, no_dx)
        epoch_loss += loss * b if mean else loss
        step += 1
        if optimizer == ADAM:
            adam_step(params, grads, adam_m, adam_v, lr, beta_1, beta_2, epsilon, step)
        else:
            sgd_step(params, grads, velocity, lr, momentum, nesterov)
    return epoch_loss / n if mean else epoch_loss


@jit
def predict_outputs(out, X, params, layout, acts, cap, activation, output, has_bias):
    """Outputs for every row of X, cap rows at a time, into out (n, k)."""
    n = X.shape[0]
    for start in range(0, n, cap):
        stop = min(start + cap, n)
        logits = forward(acts, X[start:stop], params, layout, cap, activation, has_bias)
        output_rows(logits, output)
        out[start:stop] = logits
