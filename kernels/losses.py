"""Output layers fused with their losses: one pass per row turns logits into
outputs, adds the row's loss and writes delta = w * (out - y) * scale.

Legend:  b  rows in the batch,  k  output units,  n  rows in the whole data set
    Z (b, k)            logits in; outputs out = f(Z) written over them
    D (b, k)            output deltas
    rows (b,)           which data rows the batch holds (indices into the three below)
    labels (n,)         softmax class indices (empty for other outputs)
    targets (n, k)      sigmoid/identity/exp targets (empty for softmax)
    weights (n,)        sample weights (empty: every weight is 1)

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
def output_row(Z, r, output):
    """Logits -> outputs in place over row r of Z; returns log-sum-exp for softmax."""
    k = Z.shape[1]
    if output == SIGMOID:
        for j in range(k):
            Z[r, j] = sigmoid(Z[r, j])
    elif output == EXP:
        for j in range(k):
            Z[r, j] = np.exp(Z[r, j])
    elif output == SOFTMAX:
        top = Z[r, 0]
        for j in range(1, k):
            top = max(top, Z[r, j])
        total = 0.0
        for j in range(k):
            Z[r, j] = np.exp(Z[r, j] - top)
            total += Z[r, j]
        for j in range(k):
            Z[r, j] /= total
        return top + np.log(total)
    return 0.0


@jit
def output_delta(D, Z, rows, labels, targets, weights, output, scale):
    """Outputs over Z, deltas into D; returns the weighted sum of the rows' losses."""
    b, k = Z.shape
    total = 0.0
    for r in range(b):
        i = rows[r]
        w = weights[i] if weights.shape[0] else 1.0
        if output == SOFTMAX:
            label = labels[i]
            logit = Z[r, label]
            total += w * (output_row(Z, r, output) - logit)
            for j in range(k):
                D[r, j] = w * scale * Z[r, j]
            D[r, label] -= w * scale
            continue
        row_loss = 0.0
        for j in range(k):
            z, y = Z[r, j], targets[i, j]
            if output == SIGMOID:
                row_loss += max(z, 0.0) - z * y + np.log1p(np.exp(-abs(z)))
            elif output == EXP:
                row_loss += np.exp(z) - y * z - y
                if y > 0:
                    row_loss += y * np.log(y)
            else:
                row_loss += 0.5 * (z - y) ** 2
        output_row(Z, r, output)
        for j in range(k):
            D[r, j] = w * scale * (Z[r, j] - targets[i, j])
        total += w * row_loss
    return total
