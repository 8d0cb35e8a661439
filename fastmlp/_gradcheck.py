"""Central finite differences against a model's analytic gradient.

Works on any object with the twins' API: a writable flat `params`, `loss` and
`loss_and_grad`. Each checked parameter gets the fourth-order central stencil

    numeric = (-L(+2h) + 8 L(+h) - 8 L(-h) + L(-2h)) / 12h

whose truncation error is O(h^4), so h can be large enough (1e-4 in float64)
that rounding in L, divided by h, stays near 1e-10 in absolute terms. Its
relative error is

    |analytic - numeric| / max(|analytic|, |numeric|, floor * max(|L|, 1))

Below that floor the absolute noise would turn into a large ratio, so such
gradients are judged on the absolute scale. It is proportional to the loss, as
the noise is, so scaling the loss (reduction="sum" vs "mean") changes nothing.

A ReLU kink within 2h of a parameter's value makes any stencil wrong there.
Such parameters are recognised from the loss values alone: the same stencil
at h/2 disagrees with the one at h by more than KINK_GAP * max(|L|, 1), where
smooth losses stay below 2e-11 (measured over every activation and output).
They are left out of the maximum and reported in the details. The analytic
gradient plays no part in that test, so a wrong derivative cannot hide behind it.
"""

import numpy as np

KINK_GAP = 1e-9


def _stencil(down2, down1, up1, up2, h):
    return (-up2 + 8 * up1 - 8 * down1 + down2) / (12 * h)


def gradcheck(model, X, y, *, sample_weight=None, alpha=0.0, eps=None, max_checks=1000,
              floor=1e-3, random_state=0, return_details=False):
    """Max relative error between `model.loss_and_grad` and central differences.

    Checks every parameter, or `max_checks` of them drawn at random for big models.
    `eps` (the step h) defaults to 1e-4 for float64 models and 1e-2 for float32.
    The model is left as it was. With `return_details`, also returns a dict of the
    checked indices, both gradients, the errors and the indices skipped as kinks.
    """
    params = model.params
    if eps is None:
        eps = 1e-4 if params.dtype == np.float64 else 1e-2
    if not eps > 0:
        raise ValueError(f"eps must be positive; got {eps!r}")
    loss, grads = model.loss_and_grad(X, y, sample_weight=sample_weight, alpha=alpha)
    if params.size <= max_checks:
        index = np.arange(params.size)
    else:
        rng = np.random.default_rng(random_state)
        index = np.sort(rng.choice(params.size, max_checks, replace=False))
    numeric = np.empty(len(index))
    kink = np.zeros(len(index), dtype=bool)
    saved = params.copy()

    def loss_at(i, value):
        params[i] = value
        return model.loss(X, y, sample_weight=sample_weight, alpha=alpha)

    try:
        for n, i in enumerate(index):
            x = float(saved[i])
            f = {s: loss_at(i, x + s * eps) for s in (-2, -1, -0.5, 0.5, 1, 2)}
            params[i] = saved[i]
            numeric[n] = _stencil(f[-2], f[-1], f[1], f[2], eps)
            half = _stencil(f[-1], f[-0.5], f[0.5], f[1], eps / 2)
            kink[n] = abs(numeric[n] - half) > KINK_GAP * max(abs(loss), 1.0)
    finally:
        np.copyto(params, saved)
    analytic = grads.flat[index].astype(np.float64)
    scale = np.maximum(np.maximum(np.abs(analytic), np.abs(numeric)), floor * max(abs(loss), 1.0))
    errors = np.abs(analytic - numeric) / scale
    smooth = ~kink
    worst = float(errors[smooth].max()) if smooth.any() else 0.0
    if return_details:
        return worst, {"index": index, "analytic": analytic, "numeric": numeric,
                       "errors": errors, "kinks": index[kink]}
    return worst
