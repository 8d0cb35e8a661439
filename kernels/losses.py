"""Output layers fused with their losses: one pass per row turns logits into
outputs, adds the row's loss and writes delta = w * (out - y) * scale.

Legend:  b  rows in the batch,  k  output units,  n  rows in the whole data set
    Z (b, k) at z_off   logits in; outputs out = f(Z) written over them (flat buffer)
    D (b, k) at d_off   output deltas (flat buffer)
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
def output_row(z, output):
    """Logits -> outputs in place over one row z (k,); returns log-sum-exp for softmax."""
    k = z.shape[0]
    if output == SIGMOID:
        for j in range(k):
            z[j] = sigmoid(z[j])
    elif output == EXP:
        for j in range(k):
            z[j] = np.exp(z[j])
    elif output == SOFTMAX:
        top = z[0]
        for j in range(1, k):
            top = max(top, z[j])
        total = 0.0
        for j in range(k):
            z[j] = np.exp(z[j] - top)
            total += z[j]
        for j in range(k):
            z[j] /= total
        return top + np.log(total)
    return 0.0


@jit
def output_delta(D, d_off, Z, z_off, b, k, rows, labels, targets, weights, output, scale):
    """Outputs over Z, deltas into D; returns the weighted sum of the rows' losses."""
    total = 0.0
    for r in range(b):
        i = rows[r]
        w = weights[i] if weights.shape[0] else 1.0
        z = Z[z_off + r * k:z_off + (r + 1) * k]
        d = D[d_off + r * k:d_off + (r + 1) * k]
        if output == SOFTMAX:
            label = labels[i]
            logit = z[label]
            total += w * (output_row(z, output) - logit)
            for j in range(k):
                d[j] = w * scale * z[j]
            d[label] -= w * scale
            continue
        y = targets[i]
        row_loss = 0.0
        for j in range(k):
            zj, yj = z[j], y[j]
            if output == SIGMOID:
                row_loss += max(zj, 0.0) - zj * yj + np.log1p(np.exp(-abs(zj)))
            elif output == EXP:
                row_loss += np.exp(zj) - yj * zj - yj
                if yj > 0:
                    row_loss += yj * np.log(yj)
            else:
                row_loss += 0.5 * (zj - yj) ** 2
        output_row(z, output)
        for j in range(k):
            d[j] = w * scale * (z[j] - y[j])
        total += w * row_loss
    return total
