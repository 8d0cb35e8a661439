"""scikit-learn estimators over `fastmlp.MLP`: `MLPClassifier` and `MLPRegressor`.

Drop-ins for scikit-learn's estimators of the same names: the same parameters,
defaults, fitted attributes and, with the same `random_state`, the same numbers.
They draw the initial weights, the early-stopping split and every epoch's shuffle
from scikit-learn's random stream in scikit-learn's order, then hand each epoch to
one compiled call (`MLP.partial_fit(order=...)`). Python runs once per epoch:
schedules, early stopping, convergence checks and verbose output.

Differences from scikit-learn, each deliberate (see the README and
tests/test_estimators.py, which pins each one):

- multi-output squared error: scikit-learn reports half the squared error
  averaged over outputs but descends the gradient of half the sum over outputs
  (scikit-learn issue 8349). Here the reported loss is the one the gradient
  belongs to (half the sum over outputs): `sgd`/`adam` weights are identical,
  `loss_curve_` of a k-output regressor is k times scikit-learn's (without L2),
  and `lbfgs` minimises a consistent objective.
- log-loss is the exact, stable value; scikit-learn clips probabilities at the
  dtype's eps, which changes the reported loss only for saturated outputs.
- `MLPRegressor.partial_fit` exists only for `sgd`/`adam`, as for the classifier.
- `loss="poisson"` rejects negative `y`; negative sample weights are rejected.
- Training diverging (non-finite loss) stops at once with scikit-learn's
  "non-finite parameter weights" error, rather than after `max_iter` epochs.
- Sparse `X` is accepted and densified (the compiled core works on dense rows).
- `coefs_` / `intercepts_` are views into the model's one flat parameter vector
  (tuples of arrays; item assignment copies into the model).
"""

import numbers
import warnings

import numpy as np
import scipy
import scipy.optimize
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state, column_or_1d, shuffle
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels
from sklearn.utils.optimize import _check_optimize_result
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from fastmlp._base import LayerViews

_STOCHASTIC_SOLVERS = ("sgd", "adam")
_OUTPUTS = {"identity": "identity", "exp": "exp", "softmax": "softmax", "logistic": "sigmoid"}
_SPARSE_ROWS = 1024  # rows densified at a time when predicting from sparse X
_NON_FINITE = ("Solver produced non-finite parameter weights. The input data may"
               " contain large values and need to be preprocessed.")


def _mlp_class(backend):
    if backend == "numpy":
        from fastmlp.reference import MLP
    else:
        from fastmlp.core import MLP
    return MLP


def _scipy_before(major, minor):
    version = tuple(int(part) for part in scipy.__version__.split(".")[:2])
    return version < (major, minor)


# ------------------------------------------------------------------- pickling
def _restore_mlp(cls, state):
    mlp = cls.__new__(cls)
    mlp.__dict__.update(state)
    coefs, intercepts = mlp.unpack(mlp.params)
    mlp._coefs = LayerViews(coefs, "coefs_", mlp.dtype)
    mlp._intercepts = LayerViews(intercepts, "intercepts_", mlp.dtype)
    return mlp


class _PickledMLP:
    """Pickles an MLP as its attributes without the per-layer views (rebuilt on
    load, so they stay views of `params`) and without scratch workspaces.
    A stopgap while `fastmlp.MLP` cannot be pickled itself."""

    def __init__(self, mlp):
        self.mlp = mlp

    def __reduce__(self):
        state = {k: v for k, v in vars(self.mlp).items()
                 if not isinstance(v, LayerViews) and k not in ("_ws", "_grads")}
        return _restore_mlp, (type(self.mlp), state)


def _picklable(mlp):
    cls = type(mlp)
    if any(getattr(cls, name) is not getattr(object, name)
           for name in ("__getstate__", "__reduce__", "__reduce_ex__")):
        return mlp  # the model knows how to pickle itself
    return _PickledMLP(mlp)


# ----------------------------------------------------------------- optimizers
class _Optimizer:
    """The per-epoch half of scikit-learn's SGDOptimizer / AdamOptimizer: learning
    rate schedule and stopping decision. The per-step updates run in the kernels.
    Like scikit-learn's, it keeps the hyperparameters it was created with."""

    def __init__(self, solver, learning_rate_init, lr_schedule, momentum, nesterov, power_t,
                 beta_1, beta_2, epsilon):
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.learning_rate = float(learning_rate_init)
        self.lr_schedule = lr_schedule if solver == "sgd" else "constant"
        self.momentum = momentum
        self.nesterov = nesterov
        self.power_t = power_t
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def epoch_kwargs(self, alpha):
        """Keyword arguments of `MLP.partial_fit` for the next epoch."""
        kwargs = dict(optimizer=self.solver, lr=self.learning_rate, alpha=float(alpha))
        if self.solver == "sgd":
            kwargs.update(momentum=float(self.momentum), nesterov=bool(self.nesterov))
        else:
            # Adam's bias-corrected step size is computed per step in the kernels
            kwargs.update(lr=float(self.learning_rate_init), beta_1=float(self.beta_1),
                          beta_2=float(self.beta_2), epsilon=float(self.epsilon))
        return kwargs

    def iteration_ends(self, time_step):
        if self.lr_schedule == "invscaling":
            self.learning_rate = float(self.learning_rate_init) / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg, verbose):
        if self.lr_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False


# ----------------------------------------------------------------- estimators
class _BaseMLPEstimator(BaseEstimator):
    """What MLPClassifier and MLPRegressor share; not for direct use."""

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(numbers.Integral, 1, None, closed="left")],
        "activation": [StrOptions({"identity", "logistic", "tanh", "relu"})],
        "solver": [StrOptions({"lbfgs", "sgd", "adam"})],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "batch_size": [StrOptions({"auto"}), Interval(numbers.Integral, 1, None, closed="left")],
        "learning_rate": [StrOptions({"constant", "invscaling", "adaptive"})],
        "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
        "power_t": [Interval(numbers.Real, 0, None, closed="left")],
        "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
        "momentum": [Interval(numbers.Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_1": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_2": [Interval(numbers.Real, 0, 1, closed="left")],
        "epsilon": [Interval(numbers.Real, 0, None, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left"),
                             Options(numbers.Real, {np.inf})],
        "max_fun": [Interval(numbers.Integral, 1, None, closed="left")],
        "backend": [StrOptions({"numba", "numpy"})],
    }

    # ------------------------------------------------------ fitted weights
    # Views into the MLP's flat parameters: in-place edits reach the model.
    @property
    def coefs_(self):
        mlp = self.__dict__.get("_mlp")
        if mlp is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute 'coefs_'")
        return mlp.coefs_

    @coefs_.setter
    def coefs_(self, arrays):
        self._mlp.coefs_ = [np.asarray(a, dtype=self._mlp.dtype) for a in arrays]

    @property
    def intercepts_(self):
        mlp = self.__dict__.get("_mlp")
        if mlp is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute 'intercepts_'")
        return mlp.intercepts_

    @intercepts_.setter
    def intercepts_(self, arrays):
        self._mlp.intercepts_ = [np.asarray(a, dtype=self._mlp.dtype) for a in arrays]

    def __getstate__(self):
        state = dict(super().__getstate__())
        if state.get("_mlp") is not None:
            state["_mlp"] = _picklable(state["_mlp"])
        return state

    # ------------------------------------------------------------- fitting
    def _initialize(self, y, layer_units, dtype):
        self.n_iter_ = 0
        self.t_ = 0
        self.n_outputs_ = y.shape[1]
        self.n_layers_ = len(layer_units)
        if not is_classifier(self):
            self.out_activation_ = "exp" if self.loss == "poisson" else "identity"
        elif self._label_binarizer.y_type_ == "multiclass":
            self.out_activation_ = "softmax"
        else:
            self.out_activation_ = "logistic"
        # The MLP draws scikit-learn's Glorot-uniform weights from the same stream.
        self._mlp = _mlp_class(self.backend)(
            layer_units, activation=self.activation, output=_OUTPUTS[self.out_activation_],
            dtype=dtype, random_state=self._random_state)
        self._best_coefs = [c.copy() for c in self.coefs_]
        self._best_intercepts = [i.copy() for i in self.intercepts_]
        if self.solver in _STOCHASTIC_SOLVERS:
            self.loss_curve_ = []
            self._no_improvement_count = 0
            if self.early_stopping:
                self.validation_scores_ = []
                self.best_validation_score_ = -np.inf
                self.best_loss_ = None
            else:
                self.best_loss_ = np.inf
                self.validation_scores_ = None
                self.best_validation_score_ = None

    def _fit(self, X, y, sample_weight=None, incremental=False):
        hidden_layer_sizes = self.hidden_layer_sizes
        if not hasattr(hidden_layer_sizes, "__iter__"):
            hidden_layer_sizes = [hidden_layer_sizes]
        hidden_layer_sizes = list(hidden_layer_sizes)
        if np.any(np.array(hidden_layer_sizes) <= 0):
            raise ValueError("hidden_layer_sizes must be > 0, got %s." % hidden_layer_sizes)
        first_pass = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)

        X, y = self._validate_input(X, y, incremental, reset=first_pass)
        if sample_weight is not None:
            # negative weights: rejected here (the core would refuse them too)
            sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype,
                                                 ensure_non_negative=True)
        if sp.issparse(X):
            X = X.toarray()
        if y.ndim == 1:
            y = y.reshape((-1, 1))
        self.n_outputs_ = y.shape[1]
        layer_units = [X.shape[1]] + hidden_layer_sizes + [self.n_outputs_]

        self._random_state = check_random_state(self.random_state)
        if first_pass:
            self._initialize(y, layer_units, X.dtype)
        # C order in the model's dtype once, so the per-epoch calls copy nothing
        # (the dtype differs on a warm start or partial_fit with other data)
        X = np.ascontiguousarray(X, dtype=self._mlp.dtype)
        if sample_weight is not None:
            sample_weight = np.ascontiguousarray(sample_weight, dtype=self._mlp.dtype)

        try:
            if self.solver in _STOCHASTIC_SOLVERS:
                self._fit_stochastic(X, y, sample_weight, incremental)
            else:
                self._fit_lbfgs(X, y, sample_weight)
        except ValueError as error:
            if "diverged" in str(error):  # the core stopped at a non-finite loss
                raise ValueError(_NON_FINITE) from error
            raise
        if not np.isfinite(self._mlp.params).all():
            raise ValueError(_NON_FINITE)
        return self

    def _mlp_targets(self, y):
        """y (n, k) as the MLP takes it: class indices for softmax, else floats."""
        if self.out_activation_ == "softmax":
            return np.ascontiguousarray(y.argmax(axis=1), dtype=np.int64)
        return np.ascontiguousarray(y, dtype=self._mlp.dtype)

    def _fit_lbfgs(self, X, y, sample_weight):
        mlp = self._mlp
        targets = self._mlp_targets(y)
        # scikit-learn packs all weight matrices, then all biases; the MLP packs
        # layer by layer. Hand SciPy the vector in scikit-learn's order.
        index = np.arange(mlp.params.size)
        coefs, intercepts = mlp.unpack(index)
        to_sklearn = np.concatenate([c.ravel() for c in coefs] + list(intercepts))
        to_mlp = np.argsort(to_sklearn)

        def loss_and_grad(packed):
            if not np.isfinite(packed).all():
                return np.inf, np.zeros_like(packed)
            mlp.set_params_vector(packed[to_mlp].astype(mlp.dtype, copy=False))
            loss, grads = mlp.loss_and_grad(X, targets, alpha=self.alpha,
                                            sample_weight=sample_weight)
            return loss, grads.flat[to_sklearn].astype(np.float64)

        options = {"maxfun": self.max_fun, "maxiter": self.max_iter, "gtol": self.tol}
        if _scipy_before(1, 15):  # later SciPy dropped iprint (scikit-learn passes none)
            options["iprint"] = 1 if (self.verbose is True or self.verbose >= 1) else -1
        opt_res = scipy.optimize.minimize(loss_and_grad, mlp.params[to_sklearn].astype(np.float64),
                                          method="L-BFGS-B", jac=True, options=options)
        self.n_iter_ = _check_optimize_result("lbfgs", opt_res, self.max_iter)
        self.loss_ = opt_res.fun
        if np.isfinite(opt_res.x).all():
            mlp.set_params_vector(opt_res.x[to_mlp].astype(mlp.dtype))
        else:
            mlp.params[...] = opt_res.x[to_mlp]  # caught by the finite check in _fit

    def _fit_stochastic(self, X, y, sample_weight, incremental):
        mlp = self._mlp
        if not incremental or not hasattr(self, "_optimizer"):
            self._optimizer = _Optimizer(
                self.solver, self.learning_rate_init, self.learning_rate, self.momentum,
                self.nesterovs_momentum, self.power_t, self.beta_1, self.beta_2, self.epsilon)
            mlp.reset_optimizer()  # scikit-learn starts a new optimizer, warm start too
        optimizer = self._optimizer

        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        early_stopping = self.early_stopping
        if early_stopping:
            # don't stratify in multilabel classification
            should_stratify = is_classifier(self) and self.n_outputs_ == 1
            stratify = y if should_stratify else None
            if sample_weight is None:
                X_train, X_val, y_train, y_val = train_test_split(
                    X, y, random_state=self._random_state,
                    test_size=self.validation_fraction, stratify=stratify)
                sample_weight_train = sample_weight_val = None
            else:
                X_train, X_val, y_train, y_val, sample_weight_train, sample_weight_val = (
                    train_test_split(X, y, sample_weight, random_state=self._random_state,
                                     test_size=self.validation_fraction, stratify=stratify))
            if X_val.shape[0] < 2:
                raise ValueError(
                    "The validation set is too small. Increase 'validation_fraction' "
                    "or the size of your dataset.")
            if is_classifier(self):
                y_val = self._label_binarizer.inverse_transform(y_val)
        else:
            X_train, y_train, sample_weight_train = X, y, sample_weight
            X_val = y_val = sample_weight_val = None

        n_samples = X_train.shape[0]
        targets = self._mlp_targets(y_train)
        sample_idx = np.arange(n_samples, dtype=int)
        if self.batch_size == "auto":
            batch_size = min(200, n_samples)
        else:
            if self.batch_size > n_samples:
                warnings.warn("Got `batch_size` less than 1 or larger than "
                              "sample size. It is going to be clipped")
            batch_size = int(np.clip(self.batch_size, 1, n_samples))

        try:
            self.n_iter_ = 0
            for _ in range(self.max_iter):
                if self.shuffle:
                    sample_idx = shuffle(sample_idx, random_state=self._random_state)
                # one compiled call: every mini-batch of the epoch, in this order
                mlp.partial_fit(X_train, targets, order=sample_idx, shuffle=False,
                                batch_size=batch_size, sample_weight=sample_weight_train,
                                **optimizer.epoch_kwargs(self.alpha))
                self.n_iter_ += 1
                self.loss_ = mlp.loss_curve_[-1]
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print("Iteration %d, loss = %.8f" % (self.n_iter_, self.loss_))

                self._update_no_improvement_count(early_stopping, X_val, y_val, sample_weight_val)
                optimizer.iteration_ends(self.t_)

                if self._no_improvement_count > self.n_iter_no_change:
                    what = "Validation score" if early_stopping else "Training loss"
                    msg = ("%s did not improve more than tol=%f for %d consecutive epochs."
                           % (what, self.tol, self.n_iter_no_change))
                    if optimizer.trigger_stopping(msg, self.verbose):
                        break
                    self._no_improvement_count = 0

                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(
                        "Stochastic Optimizer: Maximum iterations (%d) "
                        "reached and the optimization hasn't converged yet." % self.max_iter,
                        ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")

        if early_stopping:
            self.coefs_ = self._best_coefs
            self.intercepts_ = self._best_intercepts

    def _update_no_improvement_count(self, early_stopping, X, y, sample_weight):
        if early_stopping:
            val_score = self._score(X, y, sample_weight=sample_weight)
            self.validation_scores_.append(val_score)
            if self.verbose:
                print("Validation score: %f" % self.validation_scores_[-1])
            last_valid_score = self.validation_scores_[-1]
            if last_valid_score < (self.best_validation_score_ + self.tol):
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if last_valid_score > self.best_validation_score_:
                self.best_validation_score_ = last_valid_score
                self._best_coefs = [c.copy() for c in self.coefs_]
                self._best_intercepts = [i.copy() for i in self.intercepts_]
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the model to X and y (class labels or real targets), optionally weighted.
        Starts afresh unless `warm_start`; returns self."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def _check_solver(self):
        if self.solver not in _STOCHASTIC_SOLVERS:
            raise AttributeError("partial_fit is only available for stochastic"
                                 " optimizers. %s is not stochastic." % self.solver)
        return True

    # ----------------------------------------------------------- inference
    def _forward_pass_fast(self, X, check_input=True):
        """Output activations of the network."""
        if check_input:
            X = validate_data(self, X, accept_sparse=["csr", "csc"],
                              dtype=(np.float64, np.float32), reset=False)
        if not sp.issparse(X):
            return self._mlp.forward(X)
        X = X.tocsr()
        return np.concatenate([self._mlp.forward(X[i:i + _SPARSE_ROWS].toarray())
                               for i in range(0, X.shape[0], _SPARSE_ROWS)])

    def _score_with_function(self, X, y, sample_weight, score_function):
        y_pred = self._predict(X, check_input=False)
        if np.issubdtype(y_pred.dtype, np.floating) and not np.isfinite(y_pred).all():
            return np.nan
        return score_function(y, y_pred, sample_weight=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLPEstimator):
    """Multi-layer perceptron classifier: scikit-learn's `MLPClassifier`
    (same parameters, attributes and numbers) trained by fastmlp's compiled core.

    Binary and multiclass targets (any labels) train a softmax or logistic output
    with log-loss; multilabel indicator targets train independent logistic outputs.
    `backend="numpy"` trains the same estimator on the NumPy twin
    (`fastmlp.reference.MLP`). float32 `X` keeps float32 weights and outputs.
    See scikit-learn's documentation for the parameters and attributes.
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 backend="numba"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend

    loss = "log_loss"  # scikit-learn's classifier has this fixed attribute, not a parameter

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if (not hasattr(self, "classes_")) or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start:
                if set(classes) != set(self.classes_):
                    raise ValueError(
                        "warm_start can only be used where `y` has the same "
                        "classes as in the previous call to fit. Previously "
                        f"got {self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError("`y` has classes not in `self.classes_`. "
                                 f"`self.classes_` has {self.classes_}. 'y' has {classes}.")
        y = self._label_binarizer.transform(y).astype(bool)
        return X, y

    def predict(self, X):
        """Predicted class labels (n_samples,), or an indicator matrix for multilabel."""
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        return self._label_binarizer.inverse_transform(y_pred)

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, accuracy_score)

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y), continuing the optimizer state. `classes` (all
        labels of the stream) is required on the first call."""
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def predict_log_proba(self, X):
        """Log of `predict_proba(X)`."""
        y_prob = self.predict_proba(X)
        return np.log(y_prob, out=y_prob)

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), ordered as `classes_`."""
        check_is_fitted(self)
        y_pred = self._forward_pass_fast(X)
        if self.n_outputs_ == 1:
            y_pred = y_pred.ravel()
        if y_pred.ndim == 1:
            return np.vstack([1 - y_pred, y_pred]).T
        return y_pred

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLPEstimator):
    """Multi-layer perceptron regressor: scikit-learn's `MLPRegressor` (same
    parameters, attributes and numbers) trained by fastmlp's compiled core.

    `loss="squared_error"` trains an identity output on half the squared error
    (one or several outputs), `loss="poisson"` an exp output on half the Poisson
    deviance (y >= 0). `backend="numpy"` trains on the NumPy twin. See
    scikit-learn's documentation for the parameters and attributes.
    """

    _parameter_constraints: dict = {
        **_BaseMLPEstimator._parameter_constraints,
        "loss": [StrOptions({"squared_error", "poisson"})],
    }

    def __init__(self, loss="squared_error", hidden_layer_sizes=(100,), activation="relu", *,
                 solver="adam", alpha=0.0001, batch_size="auto", learning_rate="constant",
                 learning_rate_init=0.001, power_t=0.5, max_iter=200, shuffle=True,
                 random_state=None, tol=1e-4, verbose=False, warm_start=False, momentum=0.9,
                 nesterovs_momentum=True, early_stopping=False, validation_fraction=0.1,
                 beta_1=0.9, beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, max_fun=15000,
                 backend="numba"):
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.backend = backend

    def predict(self, X):
        """Predicted values: (n_samples,) for one output, else (n_samples, n_outputs)."""
        check_is_fitted(self)
        return self._predict(X)

    def _predict(self, X, check_input=True):
        y_pred = self._forward_pass_fast(X, check_input=check_input)
        if y_pred.shape[1] == 1:
            return y_pred.ravel()
        return y_pred

    def _score(self, X, y, sample_weight=None):
        return self._score_with_function(X, y, sample_weight, r2_score)

    def _validate_input(self, X, y, incremental, reset):
        X, y = validate_data(self, X, y, accept_sparse=["csr", "csc"], multi_output=True,
                             y_numeric=True, dtype=(np.float64, np.float32), reset=reset)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and (y < 0).any():
            raise ValueError("Some value(s) of y are negative which is not allowed "
                             "for Poisson regression.")
        return X, y

    @available_if(lambda est: est._check_solver())
    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing the optimizer state."""
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)


# ---------------------------------------------------------------- model files
# An estimator is saved as its network (fastmlp.io's arrays and header) plus a
# JSON section: scikit-learn's constructor parameters and the fitted scalars
# that predict and score need. Loading checks the section and rebuilds the
# estimator around the network; the label binarizer is refitted from classes_.
_FITTED_SCALARS = ("n_iter_", "t_", "n_outputs_", "n_layers_", "out_activation_", "loss_",
                   "best_loss_", "best_validation_score_", "n_features_in_")
_FITTED_LISTS = ("loss_curve_", "validation_scores_")


def _json_float(value):
    """Floats as JSON numbers; inf and NaN (which JSON lacks) as their names."""
    if value is None or isinstance(value, str):
        return value
    value = float(value)
    return value if np.isfinite(value) else repr(value)


def _from_json_float(value):
    return value if value is None else float(value)


def _estimator_to_parts(est):
    check_is_fitted(est)
    fitted = {}
    for name in _FITTED_SCALARS:
        value = getattr(est, name, None)
        fitted[name] = value if isinstance(value, (str, int, type(None))) else _json_float(value)
    for name in _FITTED_LISTS:
        value = getattr(est, name, None)
        fitted[name] = None if value is None else [_json_float(v) for v in value]
    if is_classifier(est):
        fitted["y_type"] = est._label_binarizer.y_type_
    params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in est.get_params().items()}
    if not isinstance(params.get("random_state"), (int, type(None))):
        params["random_state"] = None  # a RandomState object does not go into a file
    return est._mlp, {"params": params, "fitted": fitted}


def _estimator_from_parts(cls, net, section):
    if set(section) != {"params", "fitted"}:
        raise ValueError(f"expected the keys params and fitted; got {sorted(section)}")
    params, fitted = section["params"], section["fitted"]
    allowed = set(cls().get_params())
    if not isinstance(params, dict) or not set(params) <= allowed:
        raise ValueError(f"unknown parameters {sorted(set(params) - allowed)}")
    if isinstance(params.get("hidden_layer_sizes"), list):
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    est = cls(**params)
    expected = set(_FITTED_SCALARS) | set(_FITTED_LISTS) | ({"y_type"} if is_classifier(est) else set())
    if not isinstance(fitted, dict) or set(fitted) != expected:
        raise ValueError(f"fitted attributes must be {sorted(expected)}")
    if list(net.layer_sizes[1:-1]) != list(np.atleast_1d(est.hidden_layer_sizes)):
        raise ValueError("hidden_layer_sizes does not match the saved network")
    for name in ("n_iter_", "t_", "n_outputs_", "n_layers_", "out_activation_", "n_features_in_"):
        setattr(est, name, fitted[name])
    for name in ("loss_", "best_loss_", "best_validation_score_"):
        setattr(est, name, _from_json_float(fitted[name]))
    for name in _FITTED_LISTS:
        if fitted[name] is not None:
            setattr(est, name, [float(v) for v in fitted[name]])
    if est.n_features_in_ != net.layer_sizes[0] or est.n_outputs_ != net.layer_sizes[-1] and not (
            is_classifier(est) and fitted["y_type"] == "binary"):
        raise ValueError("n_features_in_ / n_outputs_ do not match the saved network")
    if getattr(net, "feature_names_in_", None) is not None:
        est.feature_names_in_ = net.feature_names_in_
    if is_classifier(est):
        classes = getattr(net, "classes_", None)
        if classes is None:
            raise ValueError("a saved classifier needs its classes")
        est._label_binarizer = LabelBinarizer()
        if fitted["y_type"] == "multilabel-indicator":
            est._label_binarizer.fit(np.eye(len(classes), dtype=int))
        elif fitted["y_type"] in ("binary", "multiclass"):
            est._label_binarizer.fit(classes)
        else:
            raise ValueError(f"unknown target type {fitted['y_type']!r}")
        est.classes_ = est._label_binarizer.classes_
    est._mlp = net
    return est


def _register_model_files():
    from fastmlp import io

    for cls in (MLPClassifier, MLPRegressor):
        io.register_kind(cls.__name__, cls, _estimator_to_parts,
                         lambda net, section, cls=cls: _estimator_from_parts(cls, net, section))


def _save(self, path):
    """Write the fitted estimator to `path`; `fastmlp.load(path)` gives it back
    (bitwise-equal predictions). The optimizer state is not kept."""
    from fastmlp import io

    return io.save(self, path)


MLPClassifier.save = _save
MLPRegressor.save = _save
_register_model_files()
