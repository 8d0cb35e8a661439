"""Output layers fused with their losses: one pass per row turns logits into
outputs, adds the row's loss and writes delta = w * (out - y) * scale (a batch's
sigmoid outputs, and its softmax rows, run their exp over the whole batch first:
see SIGMOID_BLOCK_MIN, SOFTMAX_BLOCK_MIN).

Legend:  b  rows in the batch,  k  output units,  n  rows in the whole data set
    Z (b, k) at z_off   logits in; outputs out = f(Z) written over them (flat buffer)
    D (b, k) at d_off   output deltas (flat buffer)
    z[start:start + k]  one row of logits, for output_row
    rows (b,)           which data rows the batch holds (indices into the three below)
    labels (n,)         softmax class indices, for softmax_delta
    targets (n, k)      sigmoid/identity/exp targets, for target_delta
    weights (n,)        sample weights (empty: every weight is 1)

Losses, per row (canonical link, so delta = out - y for each):
    identity + squared error   1/2 sum (z - y)^2
    sigmoid  + binary CE       sum max(z,0) - z y + log1p(exp(-|z|))
    softmax  + categorical CE  logsumexp(z) - z_label   (row max subtracted)
    exp      + Poisson         sum y log y - y z - y + exp(z)
No one-hot matrices, no Jacobians, no temporaries.
"""
import numpy as np

from ._config import index, inner_jit, jit
from ._exp import exp
from ._log1p import log1p
from .activations import sigmoid, sigmoid_from

IDENTITY, SIGMOID, SOFTMAX, EXP = 0, 1, 2, 3

# From this many sigmoid outputs in a batch up, their exp and log1p run in one loop
# over the whole block, fastmlp's own (_exp, _log1p), which LLVM vectorises: 13-8-1 at
# batch 32 spent a quarter of its compiled time in the C library's exp and log1p, one
# at a time: 21.3 -> 19.3 us an epoch, side by side. A single one (a batch of one row)
# is ~20 ns faster in the C library's, whose latency is lower.
SIGMOID_BLOCK_MIN = 8


# Called, not inlined: it compiles once per dtype, and the epoch's compile does not
# carry log1p's inlined code. Measured side by side (13-8-1, batch 32): inlined, the
# epoch was 0.8 us faster but its compile ~1.5 s slower (8.9-9.6 s against 7.7-9.0).
@inner_jit
def sigmoid_block(Z, z_off, D, d_off, count):
    """Z = sigmoid(Z) over the `count` logits at z_off, each adding its loss's log term
    log1p(exp(-|z|)) into D at d_off. One exp for both; the loop vectorises."""
    for p in range(index(count)):
        zp = Z[index(z_off) + p]
        e = exp(-abs(zp))
        D[index(d_off) + p] += log1p(e)
        Z[index(z_off) + p] = sigmoid_from(e, zp)


# From this many rows up, a batch's softmax rows are shifted by their maxima first and
# their exp runs in one loop over the whole block (exp_block): the loop over one row of
# ten classes vectorises poorly (two vectors and two single ones). digits 64-32-10 at
# batch 32: batch loss 1254-1262 -> 807-829 ns, side by side; the same bits (each value
# still exp(z - max)).
SOFTMAX_BLOCK_MIN = 2


# Called, not inlined, as sigmoid_block
@inner_jit
def exp_block(Z, z_off, count):
    """Z = exp(Z) over the `count` values at z_off, in one loop that vectorises."""
    for p in range(index(count)):
        Z[index(z_off) + p] = exp(Z[index(z_off) + p])


@jit(inline="always")
def output_row(z, start, k, output):
    """Logits -> outputs in place over z[start:start + k], one row; returns
    log-sum-exp for softmax."""
    first, stop = index(start), index(start + k)
    if output == SIGMOID:
        for j in range(first, stop):
            z[j] = sigmoid(z[j])
    elif output == EXP:
        for j in range(first, stop):
            z[j] = np.exp(z[j])
    elif output == SOFTMAX:
        top, total = softmax_exp(z, first, stop)
        for j in range(first, stop):
            z[j] /= total
        return top + np.log(total)
    return 0.0


@jit(inline="always")
def softmax_exp(z, first, stop):
    """z[first:stop] = exp(z - max) in place; returns (max, sum): a softmax before
    its division."""
    top = z[first]
    for j in range(first + index(1), stop):
        top = max(top, z[j])
    # fastmlp's exp, apart from the sum, so that the loop vectorises (a softmax over 10
    # classes: 13% of a digits epoch in the C library's exp). One exp at a time, as in
    # a sigmoid output, is faster in the C library's: its latency is lower.
    for j in range(first, stop):
        z[j] = exp(z[j] - top)
    total = 0.0
    for j in range(first, stop):
        total += z[j]
    return top, total


@jit(inline="always")
def softmax_delta(D, d_off, Z, z_off, b, k, rows, labels, weights, scale):
    """Softmax outputs over Z, deltas into D; returns the weighted sum of the rows'
    cross-entropy losses."""
    total = 0.0
    n_out = index(k)
    in_block = k >= 2 and b >= SOFTMAX_BLOCK_MIN
    if in_block:
        # each row less its max; the max and the label's logit wait in the row's deltas
        # (k >= 2 of them, free until written below); then one exp over the block
        for r in range(b):
            z, d = index(z_off + r * k), index(d_off + r * k)
            top = Z[z]
            for j in range(index(1), n_out):
                top = max(top, Z[z + j])
            D[d] = top
            D[d + index(1)] = Z[z + index(labels[rows[r]])]
            for j in range(n_out):
                Z[z + j] -= top
        exp_block(Z, z_off, b * k)
    for r in range(b):
        i = rows[r]
        w = weights[i] if weights.shape[0] else 1.0
        z, d = index(z_off + r * k), index(d_off + r * k)
        label = index(labels[i])
        if in_block:
            top, logit = D[d], D[d + index(1)]
            exp_sum = 0.0
            for j in range(n_out):
                exp_sum += Z[z + j]
        else:
            logit = Z[z + label]
            top, exp_sum = softmax_exp(Z, z, z + n_out)
        for j in range(n_out):  # output_row's division and the deltas in one pass
            Z[z + j] /= exp_sum
            D[d + j] = w * scale * Z[z + j]
        D[d + label] -= w * scale
        total += w * (top + np.log(exp_sum) - logit)
    return total


# Called, not inlined into target_delta: see dense.bias_gradient
@inner_jit
def one_sigmoid_delta(D, d_off, Z, z_off, b, rows, targets, weights, scale):
    """target_delta's sigmoid block for one output (a binary classifier), its two
    passes as loops over the rows alone, not over one output in each row (13-8-1 at
    batch 32: 7% of the compiled epoch was those loops' setup). The same operations."""
    total = 0.0
    first, delta, zero = index(z_off), index(d_off), index(0)
    for r in range(index(b)):
        zr = Z[first + r]
        D[delta + r] = max(zr, 0.0) - zr * targets[index(rows[r]), zero]
    sigmoid_block(Z, z_off, D, d_off, b)
    for r in range(index(b)):
        i = index(rows[r])
        w = weights[i] if weights.shape[0] else 1.0
        total += w * (0.0 + D[delta + r])  # (in float64, as target_delta's row_loss)
        D[delta + r] = w * scale * (Z[first + r] - targets[i, zero])
    return total


@jit(inline="always")
def target_delta(D, d_off, Z, z_off, b, k, rows, targets, weights, output, scale):
    """Identity, sigmoid or exp outputs over Z, deltas into D; returns the weighted sum
    of the rows' losses."""
    total = 0.0
    n_out = index(k)
    in_block = output == SIGMOID and b * k >= SIGMOID_BLOCK_MIN
    if in_block and n_out == index(1):
        return one_sigmoid_delta(D, d_off, Z, z_off, b, rows, targets, weights, scale)
    if in_block:
        # each output's loss term into D, in two passes: the term of the logit and the
        # target while Z holds the logits, then the log term, as the outputs replace them
        for r in range(b):
            i = rows[r]
            z, d = index(z_off + r * k), index(d_off + r * k)
            for j in range(n_out):
                D[d + j] = max(Z[z + j], 0.0) - Z[z + j] * targets[i, j]
        sigmoid_block(Z, z_off, D, d_off, b * k)
    for r in range(b):
        i = rows[r]
        w = weights[i] if weights.shape[0] else 1.0
        z, d = index(z_off + r * k), index(d_off + r * k)
        row_loss = 0.0
        if in_block:  # the loss terms are in D: read each before its delta replaces it
            for j in range(n_out):
                row_loss += D[d + j]
                D[d + j] = w * scale * (Z[z + j] - targets[i, j])
            total += w * row_loss
            continue
        for j in range(n_out):
            zj, yj = Z[z + j], targets[i, j]
            if output == SIGMOID:
                e = np.exp(-abs(zj))  # one exp for the loss and the output
                row_loss += max(zj, 0.0) - zj * yj + np.log1p(e)
                Z[z + j] = sigmoid_from(e, zj)
            elif output == EXP:
                row_loss += np.exp(zj) - yj * zj - yj
                if yj > 0:
                    row_loss += yj * np.log(yj)
            else:
                row_loss += 0.5 * (zj - yj) ** 2
        if output == EXP:  # (identity: the logits are the outputs)
            for j in range(n_out):
                Z[z + j] = np.exp(Z[z + j])
        for j in range(n_out):
            D[d + j] = w * scale * (Z[z + j] - targets[i, j])
        total += w * row_loss
    return total
