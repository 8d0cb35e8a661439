"""`fastmlp.MLP`: the shared API of `fastmlp._base` over the compiled kernels.

Python does the checks, the random draws and the bookkeeping once per epoch;
each epoch of mini-batches is one call into `kernels.network.train_epoch`.
Workspaces (activations, deltas, gathered input rows) are allocated once per
batch-size capacity and reused, so training steps allocate nothing.
"""

import numpy as np

from fastmlp._base import OPTIMIZERS, OUTPUTS, HIDDEN_ACTIVATIONS, BaseMLP
from fastmlp._threads import single_threaded_blas
from fastmlp.kernels import network
from fastmlp.kernels._config import CHUNKS

PREDICT_ROWS = 1024  # rows per forward block in predict: bounds the workspace


class MLP(BaseMLP):
    __doc__ = BaseMLP.__doc__

    def _codes(self):
        return HIDDEN_ACTIVATIONS[self.activation], OUTPUTS[self.output]

    def _partials(self):
        """Scratch for the weight-gradient partials of chunked (large) layers."""
        largest = max(int(i * o) for i, o, _, _ in self._layout)
        return np.empty((CHUNKS - 1) * largest, self.dtype)

    def _workspace(self, cap):
        """(acts, deltas, partials, x_batch) for batches of up to `cap` rows, kept for reuse."""
        ws = getattr(self, "_ws", None)
        if ws is None or ws[0] != cap:
            units = sum(self.layer_sizes[1:])
            ws = (cap, np.empty(cap * units, self.dtype), np.empty(cap * units, self.dtype),
                  self._partials(), np.empty(cap * self.layer_sizes[0], self.dtype))
            self._ws = ws
        return ws[1:]

    def _train_epoch(self, data, order, batch_size, s, step):
        single_threaded_blas()
        acts, deltas, partials, x_batch = self._workspace(batch_size)
        if getattr(self, "_grads", None) is None or self._grads.shape != self.params.shape:
            self._grads = np.empty_like(self.params)
        activation, output = self._codes()
        cast = self.dtype.type
        return network.train_epoch(
            self.params, self._grads, self._velocity, self._adam_m, self._adam_v,
            acts, deltas, partials, x_batch, data.X.reshape(-1), data.labels, data.targets,
            data.sample_weight, order,
            self._layout, activation, output, self.bias, self.reduction == "mean",
            batch_size, OPTIMIZERS[s.name], cast(s.lr), cast(s.momentum), s.nesterov,
            cast(s.beta_1), cast(s.beta_2), cast(s.epsilon), cast(s.alpha), step)

    def _forward_rows(self, X):
        single_threaded_blas()
        cap = min(len(X), PREDICT_ROWS)
        units = sum(self.layer_sizes[1:])
        acts = np.empty(cap * units, self.dtype)
        out = np.empty((len(X), self.layer_sizes[-1]), self.dtype)
        activation, output = self._codes()
        network.predict_outputs(out, X.reshape(-1), self.params, self._layout, acts,
                                self._partials(), cap, activation, output, self.bias)
        return out

    def _loss_grad(self, data, alpha, want_grad, want_input_grad):
        single_threaded_blas()
        n = data.n_samples
        units = sum(self.layer_sizes[1:])
        acts = np.empty(n * units, self.dtype)
        deltas = np.empty(n * units, self.dtype)
        grads = np.empty_like(self.params)
        dx = np.empty((n if want_input_grad else 0, data.X.shape[1]), self.dtype)
        activation, output = self._codes()
        loss = network.loss_and_backward(
            grads, acts, deltas, self._partials(), data.X.reshape(-1), 0, np.arange(n, dtype=np.int64), data.labels,
            data.targets, data.sample_weight, self.params, self._layout, n, activation, output, self.bias,
            self.reduction == "mean", self.dtype.type(alpha), want_grad, dx.reshape(-1))
        return float(loss), grads if want_grad else None, dx if want_input_grad else None
