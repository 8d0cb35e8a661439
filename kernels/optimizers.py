"""Optimizer steps over flat vectors in the parameter layout (scikit-learn's rules).

Legend:  p  number of parameters
    params, grads, velocity, m, v  (p,)  all in one layout, so a step knows no layers

SGD:   v = momentum v - lr g;  params += v   (Nesterov: params += momentum v - lr g)
Adam:  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
       params -= lr sqrt(1-b2^t)/(1-b1^t) m / (sqrt(v) + eps)
"""
import numpy as np

from ._config import inner_jit


@inner_jit
def sgd_step(params, grads, velocity, lr, momentum, nesterov):
    if momentum == 0:
        for i in range(params.shape[0]):
            params[i] -= lr * grads[i]
        return
    for i in range(params.shape[0]):
        v = momentum * velocity[i] - lr * grads[i]
        velocity[i] = v
        params[i] += momentum * v - lr * grads[i] if nesterov else v


@inner_jit
def adam_step(params, grads, m, v, lr, beta_1, beta_2, epsilon, step):
    step_lr = lr * np.sqrt(1 - beta_2 ** step) / (1 - beta_1 ** step)
    for i in range(params.shape[0]):
        g = grads[i]
        m[i] = beta_1 * m[i] + (1 - beta_1) * g
        v[i] = beta_2 * v[i] + (1 - beta_2) * g * g
        params[i] -= step_lr * m[i] / (np.sqrt(v[i]) + epsilon)
