"""Output layers fused with their losses: one pass per row turns logits into
outputs, adds the row's loss and writes delta = w * (out - y) * scale.

Legend:  b  rows in the batch,  k  output units,  n  rows in the whole data set
    Z (b, k)        logits in; outputs out = f(Z) written over them
    D (b, k)        output deltas
    rows (b,)       which data rows the batch holds (indices into labels/targets/weights)
    labels (n,)     softmax class indices (empty for other outputs)
    targets (n, k)  sigmoid/identity/exp targets (empty for softmax)
    weights (n,)    sample weights (empty: every weight is 1)

Losses, per row (canonical link, so delta = out - y for each):
    identity + squared error   1/2 sum (z - y)^2
    sigmoid  + binary CE       sum max(z,0) - z y + log1p(exp(-|z|))
    softmax  + categorical CE  logsumexp(z) - z_label   (row max subtracted)
    exp      + Poisson         sum y log y - y z - y + exp(z)
No one-hot matrices, no Jacobians, no temporaries.
"""
import numpy as np

from ._config import jit
from .activations import sigmoid

IDENTITY, SIGMOID, SOFTMAX, EXP = 0, 1, 2, 3


@jit
def output_row(z, output):
    """Logits -> outputs in place for one row z (k,); returns log-sum-exp for softmax."""
    if output == SIGMOID:
        for j in range(z.shape[0]):
            z[j] = sigmoid(z[j])
    elif output == EXP:
        for j in range(z.shape[0]):
            z[j] = np.exp(z[j])
    elif output == SOFTMAX:
        top = z[0]
        for j in range(1, z.shape[0]):
            top = max(top, z[j])
        total = 0.0
        for j in range(z.shape[0]):
            z[j] = np.exp(z[j] - top)
            total += z[j]
        for j in range(z.shape[0]):
            z[j] /= total
        return top + np.log(total)
    return 0.0


@jit
def output_rows(Z, output):
    for r in range(Z.shape[0]):
        output_row(Z[r], output)


@jit
def output_delta(D, Z, rows, labels, targets, weights, output, scale):
    """Outputs over Z, deltas into D; returns the weighted sum of row losses."""
    total = 0.0
    for r in range(Z.shape[0]):
        i = rows[r]
        w = weights[i] if weights.shape[0] else 1.0
        z = Z[r]
        if output == SOFTMAX:
            label = labels[i]
            logit = z[label]
            log_sum_exp = output_row(z, output)
            total += w * (log_sum_exp - logit)
            for j in range(z.shape[0]):
                D[r, j] = w * scale * z[j]
            D[r, label] -= w * scale
            continue
        row_loss = 0.0
        y = targets[i]
        for j in range(z.shape[0]):
            zj = z[j]
            if output == SIGMOID:
                row_loss += max(zj, 0.0) - zj * y[j] + np.log1p(np.exp(-abs(zj)))
            elif output == EXP:
                row_loss += np.exp(zj) - y[j] * zj - y[j]
                if y[j] > 0:
                    row_loss += y[j] * np.log(y[j])
            else:
                row_loss += 0.5 * (zj - y[j]) ** 2
        output_row(z, output)
        for j in range(z.shape[0]):
            D[r, j] = w * scale * (z[j] - y[j])
        total += w * row_loss
    return total
