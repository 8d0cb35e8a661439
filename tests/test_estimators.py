"""fastmlp.MLPClassifier / MLPRegressor against scikit-learn's own estimators:
same random_state, same weights, loss curves, validation scores, messages; plus
the scikit-learn tooling (Pipeline, GridSearchCV, clone, pickle) and the pinned
differences (each "quirk" test names what differs and why)."""
import contextlib
import copy
import io
import pickle
import re
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", minversion="1.7")  # 1.7: sample_weight, poisson

import scipy.sparse as sp  # noqa: E402
from sklearn import neural_network as sk  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from fastmlp.estimators import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

RTOL = 1e-9
BACKENDS = ["numba", "numpy"]


def make_data(kind, n=90, d=5, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, d)
    if kind == "binary":
        y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    elif kind == "multiclass":
        y = np.digitize(X[:, 0] + 0.3 * X[:, 2], [-0.6, 0.0, 0.6])  # 4 classes
    elif kind == "multilabel":
        y = (X[:, :3] + 0.3 * X[:, 3:4] > 0).astype(int)
    elif kind == "regression":
        y = X[:, 0] - 2 * X[:, 1] + 0.1 * rng.randn(n)
    elif kind == "multioutput":
        y = np.column_stack([X[:, 0] - X[:, 1], 0.5 * X[:, 2], X[:, 3] * X[:, 4]])
    elif kind == "poisson":
        y = rng.poisson(np.exp(0.3 * X[:, 0])).astype(float)
    return X, y


def estimators(kind, **params):
    """(scikit-learn's, fastmlp's) estimator for a target kind, same parameters."""
    backend = params.pop("backend", "numba")
    if kind in ("binary", "multiclass", "multilabel"):
        return sk.MLPClassifier(**params), MLPClassifier(**params, backend=backend)
    if kind == "poisson":
        params = dict(params, loss="poisson")
    return sk.MLPRegressor(**params), MLPRegressor(**params, backend=backend)


def assert_rel(actual, expected, rtol=RTOL):
    """Every array within rtol of the largest entry of its reference."""
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        a, e = np.asarray(a), np.asarray(e)
        assert a.shape == e.shape
        scale = max(np.max(np.abs(e)), 1e-300)
        assert np.max(np.abs(a - e)) <= rtol * scale, np.max(np.abs(a - e)) / scale


def assert_same_fit(ours, theirs, rtol=RTOL, loss_factor=1.0):
    assert_rel(ours.coefs_, theirs.coefs_, rtol)
    assert_rel(ours.intercepts_, theirs.intercepts_, rtol)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.t_ == theirs.t_
    assert ours.n_layers_ == theirs.n_layers_ and ours.n_outputs_ == theirs.n_outputs_
    assert ours.out_activation_ == theirs.out_activation_
    if hasattr(theirs, "loss_curve_"):
        assert_rel([ours.loss_curve_], [np.multiply(theirs.loss_curve_, loss_factor)], rtol)
    np.testing.assert_allclose(ours.loss_, theirs.loss_ * loss_factor, rtol=rtol)


def fit_both(kind, X=None, y=None, sample_weight=None, **params):
    if X is None:
        X, y = make_data(kind)
    theirs, ours = estimators(kind, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs.fit(X, y, sample_weight=sample_weight)
        ours.fit(X, y, sample_weight=sample_weight)
    return ours, theirs


BASE = dict(hidden_layer_sizes=(8, 6), max_iter=5, batch_size=16, random_state=3,
            learning_rate_init=0.01)
SOLVERS = {
    "sgd": dict(solver="sgd", momentum=0.0),
    "sgd-momentum": dict(solver="sgd", momentum=0.9, nesterovs_momentum=False),
    "sgd-nesterov": dict(solver="sgd", momentum=0.9, nesterovs_momentum=True),
    "adam": dict(solver="adam"),
}


# ------------------------------------------------------------ same numbers
@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel", "regression", "poisson"])
@pytest.mark.parametrize("solver", list(SOLVERS))
def test_five_epochs_match_sklearn(kind, solver):
    ours, theirs = fit_both(kind, **BASE, **SOLVERS[solver], activation="tanh")
    assert_same_fit(ours, theirs)
    assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=RTOL)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_backends_match_sklearn(kind, backend):
    ours, theirs = fit_both(kind, **BASE, solver="sgd", backend=backend)
    assert_same_fit(ours, theirs)
    X, _ = make_data(kind)
    assert_rel([ours.predict_proba(X) if kind != "regression" else ours.predict(X)],
               [theirs.predict_proba(X) if kind != "regression" else theirs.predict(X)])


@pytest.mark.parametrize("solver", ["sgd-nesterov", "adam"])
@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_sample_weight_matches_sklearn(kind, solver):
    X, y = make_data(kind)
    w = np.random.RandomState(1).uniform(0.1, 3.0, len(y))
    ours, theirs = fit_both(kind, X, y, sample_weight=w, **BASE, **SOLVERS[solver], alpha=0.01)
    assert_same_fit(ours, theirs)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel", "regression"])
def test_early_stopping_matches_sklearn(kind):
    # tol high enough that training stops early and the best weights are restored
    params = dict(BASE, solver="sgd", max_iter=30, early_stopping=True, validation_fraction=0.2,
                  n_iter_no_change=3, tol=0.05, learning_rate_init=0.05)
    ours, theirs = fit_both(kind, **params)
    assert theirs.n_iter_ < 30  # the scenario does stop early
    assert_same_fit(ours, theirs)
    assert_rel([ours.validation_scores_], [theirs.validation_scores_])
    assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_, rel=RTOL)
    assert ours.best_loss_ is None and theirs.best_loss_ is None


def test_early_stopping_with_sample_weight_matches_sklearn():
    X, y = make_data("multiclass", n=120)
    w = np.random.RandomState(2).uniform(0.5, 2.0, len(y))
    ours, theirs = fit_both("multiclass", X, y, sample_weight=w, **dict(
        BASE, solver="adam", max_iter=8, early_stopping=True))
    assert_same_fit(ours, theirs)
    assert_rel([ours.validation_scores_], [theirs.validation_scores_])


@pytest.mark.parametrize("schedule", ["adaptive", "invscaling"])
def test_learning_rate_schedules_match_sklearn(schedule):
    # a large tol makes 'adaptive' divide the rate by 5 several times
    params = dict(BASE, solver="sgd", learning_rate=schedule, max_iter=25, tol=0.05,
                  n_iter_no_change=2, power_t=0.3)
    ours, theirs = fit_both("multiclass", **params)
    assert_same_fit(ours, theirs)
    assert ours._optimizer.learning_rate == pytest.approx(theirs._optimizer.learning_rate, rel=RTOL)
    if schedule == "adaptive":
        assert theirs._optimizer.learning_rate < params["learning_rate_init"] / 5


def test_tol_stopping_matches_sklearn():
    ours, theirs = fit_both("binary", **dict(BASE, solver="adam", max_iter=200, tol=1e-2,
                                             n_iter_no_change=2))
    assert theirs.n_iter_ < 200
    assert_same_fit(ours, theirs)


@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_warm_start_matches_sklearn(kind):
    X, y = make_data(kind)
    theirs, ours = estimators(kind, **BASE, solver="sgd", warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for est in (theirs, ours):
            est.fit(X, y)
            est.set_params(max_iter=3, learning_rate_init=0.02)
            est.fit(X[:60], y[:60])
    assert_same_fit(ours, theirs)
    assert len(ours.loss_curve_) == 8


def test_partial_fit_with_classes_matches_sklearn():
    X, y = make_data("multiclass", n=120)
    labels = np.array(["a", "b", "c", "d"])[y]
    classes = np.array(["a", "b", "c", "d", "e"])  # "e" never appears
    theirs, ours = estimators("multiclass", **BASE, solver="sgd")
    for est in (theirs, ours):
        est.partial_fit(X[:30], labels[:30], classes=classes)
        for start in range(30, 120, 30):
            est.partial_fit(X[start:start + 30], labels[start:start + 30])
    assert_same_fit(ours, theirs)
    np.testing.assert_array_equal(ours.classes_, theirs.classes_)
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))


@pytest.mark.parametrize("kind", ["regression", "multilabel"])
def test_partial_fit_matches_sklearn(kind):
    X, y = make_data(kind)
    theirs, ours = estimators(kind, **BASE, solver="adam")
    for est in (theirs, ours):
        for _ in range(3):
            if kind == "multilabel":
                est.partial_fit(X, y, classes=[0, 1, 2])
            else:
                est.partial_fit(X, y)
    assert_same_fit(ours, theirs)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
def test_lbfgs_matches_sklearn(kind):
    ours, theirs = fit_both(kind, hidden_layer_sizes=(6,), solver="lbfgs", max_iter=15,
                            random_state=0, alpha=0.01)
    # same objective, gradient and SciPy call; only the last bits of the sums differ
    assert ours.n_iter_ == theirs.n_iter_
    assert_rel(ours.coefs_, theirs.coefs_, 1e-6)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)
    assert not hasattr(ours, "loss_curve_") and not hasattr(theirs, "loss_curve_")


def test_float32_keeps_float32():
    X, y = make_data("multiclass")
    X32 = X.astype(np.float32)
    ours = MLPClassifier(**BASE, solver="adam").fit(X32, y)
    assert all(c.dtype == np.float32 for c in ours.coefs_ + ours.intercepts_)
    assert ours.predict_proba(X32).dtype == np.float32
    reg = MLPRegressor(**BASE).fit(X32, X[:, 0])
    assert reg.predict(X32).dtype == np.float32
    # scikit-learn's float32 training, to float32 precision
    theirs = sk.MLPClassifier(**BASE, solver="adam").fit(X32, y)
    assert all(c.dtype == np.float32 for c in theirs.coefs_)
    assert_rel(ours.coefs_, theirs.coefs_, 1e-5)
    assert_rel([ours.loss_curve_], [theirs.loss_curve_], 1e-5)


# ---------------------------------------------------------- targets and API
def test_string_labels_and_probabilities():
    X, y = make_data("multiclass")
    names = np.array(["ant", "bee", "cat", "dog"], dtype=object)[y]
    clf = MLPClassifier(**BASE).fit(X, names)
    np.testing.assert_array_equal(clf.classes_, ["ant", "bee", "cat", "dog"])
    assert set(clf.predict(X)) <= set(names)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba))
    assert clf.predict(X).tolist() == clf.classes_[proba.argmax(axis=1)].tolist()
    binary = MLPClassifier(**BASE).fit(X, np.where(y > 1, "yes", "no"))
    assert binary.predict_proba(X).shape == (len(X), 2) and binary.n_outputs_ == 1


def test_multilabel_and_multioutput_shapes():
    X, Y = make_data("multilabel")
    clf = MLPClassifier(**BASE).fit(X, Y)
    assert clf.out_activation_ == "logistic"
    assert clf.predict(X).shape == Y.shape and clf.predict_proba(X).shape == Y.shape
    X, Y = make_data("multioutput")
    reg = MLPRegressor(**BASE).fit(X, Y)
    assert reg.predict(X).shape == Y.shape and reg.n_outputs_ == 3


def test_sparse_input_gives_dense_results():
    X, y = make_data("multiclass")
    X[np.abs(X) < 0.8] = 0
    dense = MLPClassifier(**BASE).fit(X, y)
    sparse = MLPClassifier(**BASE).fit(sp.csr_matrix(X), y)
    assert_rel(sparse.coefs_, dense.coefs_, 1e-12)
    np.testing.assert_allclose(sparse.predict_proba(sp.csc_matrix(X)), dense.predict_proba(X))


def test_coefs_are_views_of_the_model():
    X, y = make_data("regression")
    reg = MLPRegressor(**BASE).fit(X, y)
    before = reg.predict(X)
    reg.intercepts_[-1][...] += 1.0  # in place, as with scikit-learn's lists
    np.testing.assert_allclose(reg.predict(X), before + 1.0)
    reg.coefs_ = [np.zeros_like(c) for c in reg.coefs_]
    np.testing.assert_allclose(reg.predict(X), reg.intercepts_[-1][0])


def test_verbose_output_and_warnings_match_sklearn():
    params = dict(BASE, solver="sgd", learning_rate="adaptive", early_stopping=True, max_iter=12,
                  tol=0.05, n_iter_no_change=2, verbose=True)
    X, y = make_data("multiclass")
    outputs, messages = [], []
    for est in estimators("multiclass", **params):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est.fit(X, y)
        outputs.append(buffer.getvalue())
        messages.append([str(w.message) for w in caught])
    assert "Iteration 1, loss = " in outputs[0] and "Setting learning rate to" in outputs[0]
    assert outputs[1] == outputs[0]
    assert messages[1] == messages[0]
    assert any("Maximum iterations (12)" in m for m in messages[0])


def test_validation_messages_are_sklearns():
    X, y = make_data("binary")
    for est in (MLPClassifier(**BASE), sk.MLPClassifier(**BASE)):
        with pytest.raises(NotFittedError):
            est.predict(X)
        bad = X.copy()
        bad[0, 0] = np.nan
        with pytest.raises(ValueError, match="Input X contains NaN"):
            est.fit(bad, y)
        with pytest.raises(ValueError, match=re.escape("Found input variables with inconsistent")):
            est.fit(X, y[:-1])
        est.fit(X, y)
        with pytest.raises(ValueError, match="X has 4 features, but MLPClassifier is expecting 5"):
            est.predict(X[:, :4])
        with pytest.raises(ValueError, match="hidden_layer_sizes must be > 0"):
            clone(est).set_params(hidden_layer_sizes=(3, 0)).fit(X, y)
        with pytest.raises(ValueError, match="'solver' parameter of MLPClassifier must be"):
            clone(est).set_params(solver="newton").fit(X, y)
        with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
            early = clone(est).set_params(early_stopping=True, solver="sgd")
            early.partial_fit(X, y, classes=[0, 1])


# ------------------------------------------------------------ sklearn tooling
def test_pipeline_grid_search_and_cross_val_score():
    X, y = make_data("multiclass", n=120)
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(10,), max_iter=50,
                                                         random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-1],
                               "mlpclassifier__solver": ["adam", "lbfgs"]}, cv=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        grid.fit(X, y)
        scores = cross_val_score(MLPRegressor(hidden_layer_sizes=(10,), solver="lbfgs",
                                              max_iter=50, random_state=0),
                                 *make_data("regression", n=120), cv=3)
    assert grid.best_score_ > 0.6
    assert scores.mean() > 0.8


@pytest.mark.parametrize("backend", BACKENDS)
def test_pickle_and_deepcopy_keep_training_state(backend):
    X, y = make_data("multiclass")
    clf = MLPClassifier(**BASE, solver="sgd", backend=backend)
    clf.partial_fit(X, y, classes=[0, 1, 2, 3])
    restored = pickle.loads(pickle.dumps(clf))
    copied = copy.deepcopy(clf)
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    # the momentum velocity survived: one more epoch gives the same weights
    for est in (clf, restored, copied):
        est.partial_fit(X, y)
    assert_rel(restored.coefs_, clf.coefs_, 0)
    assert_rel(copied.coefs_, clf.coefs_, 0)
    # and the restored weights are still views of one parameter vector
    restored.coefs_[0][...] = 0
    assert not np.array_equal(restored.predict_proba(X), clf.predict_proba(X))


def test_clone_is_unfitted_with_same_params():
    clf = MLPClassifier(**BASE, backend="numpy").fit(*make_data("binary"))
    twin = clone(clf)
    assert twin.get_params() == clf.get_params()
    assert not hasattr(twin, "coefs_")


# ---------------------------------------------------- deliberate differences
def test_quirk_multioutput_squared_error_reports_the_loss_it_descends():
    """scikit-learn issue 8349: its squared error averages over outputs but its
    gradient is that of the sum. fastmlp reports the sum's loss (fixed): the same
    weights, and a loss n_outputs times scikit-learn's (alpha=0)."""
    ours, theirs = fit_both("multioutput", **dict(BASE, solver="sgd", alpha=0.0))
    assert_rel(ours.coefs_, theirs.coefs_)
    assert_rel([ours.loss_curve_], [3 * np.array(theirs.loss_curve_)])
    # lbfgs descends a consistent objective, so it finds a lower half-sum-of-squares
    X, Y = make_data("multioutput")
    ours, theirs = fit_both("multioutput", hidden_layer_sizes=(8,), solver="lbfgs",
                            max_iter=100, random_state=0, alpha=0.0)
    half_sse = [0.5 * ((est.predict(X) - Y) ** 2).sum(axis=1).mean() for est in (ours, theirs)]
    assert ours.loss_ == pytest.approx(half_sse[0], rel=1e-9)
    assert half_sse[0] < half_sse[1]


def test_quirk_log_loss_is_exact_not_clipped():
    """scikit-learn clips probabilities at eps in the reported log-loss (never more
    than -log(eps) = 36.04 per sample in float64); fastmlp reports the exact loss.
    Gradients, and so weights, are the same."""
    X, y = make_data("binary")
    theirs, ours = estimators("binary", **dict(BASE, solver="sgd", learning_rate_init=1e-12,
                                                    alpha=0.0))
    for est in (theirs, ours):
        est.partial_fit(X, y, classes=[0, 1])
        est.coefs_[-1][...] = 0
        est.intercepts_[-1][...] = 60.0  # every logit is 60: label 1 for sure
        est.partial_fit(X, y)
    wrong = (y == 0).mean()
    assert theirs.loss_ == pytest.approx(wrong * -np.log(np.finfo(float).eps), rel=1e-6)
    assert ours.loss_ == pytest.approx(wrong * 60.0, rel=1e-6)


def test_quirk_regressor_partial_fit_needs_a_stochastic_solver():
    """scikit-learn's MLPRegressor(solver='lbfgs') has partial_fit (a typo in its
    availability check) and runs a full lbfgs fit; fastmlp's has none, like the
    classifier's."""
    assert hasattr(sk.MLPRegressor(solver="lbfgs"), "partial_fit")
    assert not hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")
    assert not hasattr(MLPClassifier(solver="lbfgs"), "partial_fit")
    assert hasattr(MLPRegressor(solver="sgd"), "partial_fit")


def test_quirk_invalid_targets_and_weights_are_rejected():
    """scikit-learn trains on negative Poisson targets and negative sample weights
    (NaN losses, or minimising a non-loss); fastmlp rejects them up front."""
    X, y = make_data("poisson")
    with pytest.raises(ValueError, match="negative which is not allowed for Poisson"):
        MLPRegressor(loss="poisson", **BASE).fit(X, y - 1)
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        MLPRegressor(**BASE).fit(X, y, sample_weight=np.r_[-1.0, np.ones(len(y) - 1)])


def test_quirk_divergence_stops_at_once_with_sklearns_message():
    """scikit-learn runs all max_iter epochs on NaN weights, then raises; fastmlp
    stops at the first non-finite epoch loss with the same message."""
    X, y = make_data("regression")
    reg = MLPRegressor(**dict(BASE, solver="sgd", learning_rate_init=10.0, max_iter=50))
    with pytest.raises(ValueError, match="Solver produced non-finite parameter weights"):
        reg.fit(X * 1e3, y * 1e3)
