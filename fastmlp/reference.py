"""The NumPy twin of `fastmlp.MLP`: the from-scratch tutorial code, kept plain.

Per-layer arrays, one `@` per layer and mini-batch, in-place updates. It is the
oracle the kernels are tested against and the baseline they are timed against,
so it must stay obviously right and idiomatically vectorised. It shares the
constructor, input checks, initial weights and epoch loop with `fastmlp.MLP`
(`fastmlp._base`), and none of the numerics.

    from fastmlp.reference import MLP   # swap for `from fastmlp import MLP`
"""

import numpy as np

from fastmlp._base import BaseMLP


def _activate(z, name):
    if name == "relu":
        np.maximum(z, 0, out=z)
    elif name in ("sigmoid", "logistic"):
        z[...] = _sigmoid(z)
    elif name == "tanh":
        np.tanh(z, out=z)
    return z


def _activation_derivative(a, name):
    """f'(z) written in terms of the output a = f(z)."""
    if name == "relu":
        return (a > 0).astype(a.dtype)
    if name in ("sigmoid", "logistic"):
        return a * (1 - a)
    if name == "tanh":
        return 1 - a * a
    return np.ones_like(a)


def _sigmoid(z):
    # exp of a non-positive number only, so no overflow at |z| = 1e4
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _output(z, output):
    if output == "sigmoid":
        return _sigmoid(z)
    if output == "softmax":
        return _softmax(z)
    if output == "exp":
        return np.exp(z)
    return z


def _losses(z, out, output, labels, targets):
    """Each sample's loss, from the logits z and the outputs out = f(z)."""
    if output == "identity":
        return 0.5 * ((out - targets) ** 2).sum(axis=1)
    if output == "sigmoid":
        # binary cross-entropy as max(z,0) - z*y + log(1 + exp(-|z|)): no log(0)
        return (np.maximum(z, 0) - z * targets + np.log1p(np.exp(-np.abs(z)))).sum(axis=1)
    if output == "softmax":
        shifted = z - z.max(axis=1, keepdims=True)
        return np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(z)), labels]
    # exp output, Poisson loss y log(y / p) - y + p, with y log y = 0 at y = 0
    y_log_y = targets * np.log(np.where(targets > 0, targets, 1))
    return (y_log_y - targets * z - targets + out).sum(axis=1)


def _target_matrix(out, output, labels, targets):
    if output == "softmax":
        y = np.zeros_like(out)
        y[np.arange(len(out)), labels] = 1
        return y
    return targets


class MLP(BaseMLP):
    __doc__ = BaseMLP.__doc__

    def _forward_all(self, X):
        """Activations of every layer, the input included; the last holds logits."""
        acts = [X]
        for l, W in enumerate(self.coefs_):
            z = acts[-1] @ W
            if self.bias:
                z += self.intercepts_[l]
            if l < self.n_layers - 1:
                _activate(z, self.activation)
            acts.append(z)
        return acts

    def _forward_rows(self, X):
        return _output(self._forward_all(X)[-1], self.output)

    def _backprop(self, X, labels, targets, sample_weight, alpha, want_input_grad=False):
        """Loss and per-layer gradients of one batch, with scikit-learn's normalisation."""
        acts = self._forward_all(X)
        out = _output(acts[-1], self.output)
        losses = _losses(acts[-1], out, self.output, labels, targets)
        delta = out - _target_matrix(out, self.output, labels, targets)
        if sample_weight.size:
            losses = losses * sample_weight
            delta *= sample_weight[:, None]
            norm = sample_weight.sum() if self.reduction == "mean" else 1.0
        else:
            norm = len(X) if self.reduction == "mean" else 1.0
        penalty = 0.5 * alpha * sum((W * W).sum() for W in self.coefs_)
        inv_norm = 1.0 / norm if norm > 0 else 0.0  # a batch of zero weight: no loss, no gradient
        loss = (losses.sum() + penalty) * inv_norm
        delta *= inv_norm

        coef_grads = [None] * self.n_layers
        intercept_grads = [None] * self.n_layers
        for l in range(self.n_layers - 1, -1, -1):
            W = self.coefs_[l]
            coef_grads[l] = acts[l].T @ delta + (alpha * inv_norm) * W
            intercept_grads[l] = delta.sum(axis=0)
            if l > 0 or want_input_grad:
                delta = delta @ W.T
                if l > 0:
                    delta *= _activation_derivative(acts[l], self.activation)
        return float(loss), coef_grads, intercept_grads, delta

    def _flatten(self, coef_grads, intercept_grads):
        flat = np.empty_like(self.params)
        coefs, intercepts = self.unpack(flat)
        for view, g in zip(coefs + intercepts, coef_grads + intercept_grads):
            view[...] = g
        return flat

    def _loss_grad(self, data, alpha, want_grad, want_input_grad):
        loss, coef_grads, intercept_grads, dX = self._backprop(
            data.X, data.labels, data.targets, data.sample_weight, alpha, want_input_grad)
        flat = self._flatten(coef_grads, intercept_grads[:len(self.intercepts_)]) if want_grad else None
        return loss, flat, dX if want_input_grad else None

    def _train_epoch(self, data, order, batch_size, settings, step):
        n = len(order)
        epoch_loss = 0.0
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            sw = data.sample_weight[rows] if data.sample_weight.size else data.sample_weight
            labels = data.labels[rows] if data.labels.size else data.labels
            targets = data.targets[rows] if data.targets.size else data.targets
            loss, coef_grads, intercept_grads, _ = self._backprop(
                data.X[rows], labels, targets, sw, settings.alpha)
            epoch_loss += loss * len(rows) if self.reduction == "mean" else loss
            grad = self._flatten(coef_grads, intercept_grads[:len(self.intercepts_)])
            step += 1
            self._update(grad, settings, step)
        return (epoch_loss / n if self.reduction == "mean" else epoch_loss,
                self._state_is_finite(settings))

    def _update(self, grad, s, step):
        """scikit-learn's SGD (momentum, Nesterov) and Adam on the flat vectors."""
        if s.name == "sgd":
            self._velocity *= s.momentum
            self._velocity -= s.lr * grad
            if s.nesterov:
                self.params += s.momentum * self._velocity - s.lr * grad
            else:
                self.params += self._velocity
        else:
            self._adam_m *= s.beta_1
            self._adam_m += (1 - s.beta_1) * grad
            self._adam_v *= s.beta_2
            self._adam_v += (1 - s.beta_2) * grad * grad
            lr = s.lr * np.sqrt(1 - s.beta_2 ** step) / (1 - s.beta_1 ** step)
            self.params -= lr * self._adam_m / (np.sqrt(self._adam_v) + s.epsilon)
