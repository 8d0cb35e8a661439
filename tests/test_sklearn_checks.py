"""scikit-learn's own estimator checks (`parametrize_with_checks`) on fastmlp's estimators."""
import pytest

pytest.importorskip("sklearn", minversion="1.6")

from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from fastmlp.estimators import MLPClassifier, MLPRegressor  # noqa: E402

# Small networks keep the checks fast; random_state keeps them deterministic. The
# default solver (adam) and lbfgs each run every check; backend="numpy" shares all
# estimator code and is compared number for number in test_estimators.py.
ESTIMATORS = [
    MLPClassifier(hidden_layer_sizes=(20,), max_iter=100, random_state=0),
    MLPRegressor(hidden_layer_sizes=(20,), max_iter=100, random_state=0),
    MLPClassifier(hidden_layer_sizes=(20,), solver="lbfgs", max_iter=100, random_state=0),
    MLPRegressor(hidden_layer_sizes=(20,), solver="lbfgs", max_iter=100, random_state=0),
]


def expected_failed_checks(estimator):
    return {}  # none: every check passes


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible(estimator, check):
    check(estimator)
