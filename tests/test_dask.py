"""Past one machine: fastmlp's estimators on a dask.distributed cluster of worker
processes (started here, on this machine, as a LocalCluster).

- a hyperparameter search through joblib's dask backend runs its fits on the
  workers and gives the same results as a search in this process;
- dask-ml's Incremental trains on a dask array of several blocks by calling
  partial_fit once per block in tasks on the workers; the estimator travels
  pickled (weights and optimizer state) between this process and the workers,
  and the result equals partial_fit over the same blocks in this process.
"""
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn", minversion="1.6")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
joblib = pytest.importorskip("joblib")

from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402

from fastmlp.estimators import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

TIMEOUT = 60  # seconds for any single wait on the cluster


def make_data(n=400, d=6, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, d)
    y = (X[:, 0] - X[:, 1] + 0.3 * rng.randn(n) > 0).astype(int)
    return X, y


@pytest.fixture(scope="module")
def client():
    # Compile (or load from the numba cache) the kernels here first, so that the two
    # worker processes find them cached instead of both compiling at once.
    X, y = make_data(40)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, solver="sgd").fit(X, y)
        MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, solver="lbfgs").fit(X, y)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=40,
                                       death_timeout=TIMEOUT)
    client = distributed.Client(cluster, timeout=TIMEOUT)
    try:
        client.wait_for_workers(2, timeout=TIMEOUT)
        yield client
    finally:
        client.close(timeout=TIMEOUT)
        cluster.close(timeout=TIMEOUT)


def test_grid_search_on_the_cluster_through_joblib(client):
    X, y = make_data()
    search = GridSearchCV(
        MLPClassifier(hidden_layer_sizes=(16,), max_iter=30, random_state=0),
        {"alpha": [1e-4, 1e-1], "solver": ["adam", "sgd", "lbfgs"]}, cv=3, n_jobs=-1)
    with distributed.get_task_stream(client) as tasks:
        with joblib.parallel_backend("dask", wait_for_workers_timeout=TIMEOUT):
            search.fit(X, y)
    workers = {task["worker"] for task in tasks.data}
    assert len(tasks.data) >= 18 and workers == set(client.scheduler_info()["workers"])

    local = GridSearchCV(search.estimator, search.param_grid, cv=3).fit(X, y)
    np.testing.assert_allclose(search.cv_results_["mean_test_score"],
                               local.cv_results_["mean_test_score"], rtol=1e-12)
    assert search.best_params_ == local.best_params_
    assert search.best_score_ > 0.85


def test_incremental_partial_fit_over_dask_blocks(client):
    wrappers = pytest.importorskip("dask_ml.wrappers")
    X, y = make_data(n=600)
    blocks = 150
    dX = da.from_array(X, chunks=(blocks, X.shape[1]))
    dy = da.from_array(y, chunks=blocks)
    assert dX.numblocks[0] == 4

    model = MLPClassifier(hidden_layer_sizes=(16,), solver="sgd", learning_rate_init=0.05,
                          random_state=0)
    inc = wrappers.Incremental(model, scoring="accuracy", shuffle_blocks=False)
    with distributed.get_task_stream(client) as tasks:
        for _ in range(3):  # three passes over the four blocks
            inc.partial_fit(dX, dy, classes=[0, 1])
    # dask-ml names each partial_fit task ("fit-<token>", block): 4 blocks x 3 passes
    fit_tasks = [task for task in tasks.data
                 if isinstance(task["key"], tuple) and str(task["key"][0]).startswith("fit-")]
    assert len(fit_tasks) >= 12

    local = MLPClassifier(**model.get_params())
    for _ in range(3):
        for start in range(0, len(y), blocks):
            local.partial_fit(X[start:start + blocks], y[start:start + blocks], classes=[0, 1])
    fitted = inc.estimator_
    assert fitted.n_iter_ == 1 and fitted.t_ == local.t_ == 3 * len(y)
    # Not bit for bit: a process that compiled the kernels itself and one that loaded
    # them from numba's cache can differ in the last bits.
    for ours, theirs in zip(fitted.coefs_ + fitted.intercepts_, local.coefs_ + local.intercepts_):
        np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    assert inc.score(dX, dy) > 0.85
    predicted = inc.predict(dX)
    assert isinstance(predicted, da.Array)
    np.testing.assert_array_equal(predicted.compute(), local.predict(X))


def test_regressor_search_on_the_cluster(client):
    X, _ = make_data()
    y = X[:, 0] - 2 * X[:, 1]
    search = GridSearchCV(MLPRegressor(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=50,
                                       random_state=0),
                          {"alpha": [1e-3, 1.0]}, cv=2, n_jobs=-1)
    with joblib.parallel_backend("dask", wait_for_workers_timeout=TIMEOUT):
        search.fit(X, y)
    assert search.best_score_ > 0.9
