"""The scikit-learn estimators round-trip through model files: bitwise-equal
predictions, the right classes, and a tampered estimator section refused."""
import json
import warnings
import zipfile

import numpy as np
import pytest

import fastmlp

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_iris  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402

X, y = load_iris(return_X_y=True)
NAMES = np.array(["setosa", "versicolor", "virginica"])[y]
CASES = {
    "multiclass-strings": (fastmlp.MLPClassifier, {}, NAMES),
    "binary": (fastmlp.MLPClassifier, {}, (y == 1).astype(int)),
    "multilabel": (fastmlp.MLPClassifier, {}, np.eye(3, dtype=int)[y]),
    "lbfgs": (fastmlp.MLPClassifier, {"solver": "lbfgs"}, NAMES),
    "regression": (fastmlp.MLPRegressor, {}, X[:, 0]),
    "multi-output-early-stopping": (fastmlp.MLPRegressor, {"early_stopping": True}, X[:, :2]),
    "poisson-float32": (fastmlp.MLPRegressor, {"loss": "poisson"}, X[:, 3]),
}


def fitted(cls, kwargs, target, dtype=np.float64):
    est = cls(hidden_layer_sizes=(8,), max_iter=30, random_state=0, **kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X.astype(dtype), target)


@pytest.mark.parametrize("case", CASES)
def test_round_trip_gives_the_same_predictions(case, tmp_path):
    cls, kwargs, target = CASES[case]
    dtype = np.float32 if "float32" in case else np.float64
    est = fitted(cls, kwargs, target, dtype)
    path = tmp_path / "model.fmlp"
    est.save(path)
    back = fastmlp.load(path)
    assert type(back) is cls
    assert back.get_params() == est.get_params()
    Xd = X.astype(dtype)
    assert np.array_equal(back.predict(Xd), est.predict(Xd))
    if hasattr(est, "predict_proba"):
        assert np.array_equal(back.predict_proba(Xd), est.predict_proba(Xd))
        assert np.array_equal(back.classes_, est.classes_)
    assert back.score(Xd, target) == est.score(Xd, target)
    assert back.n_iter_ == est.n_iter_ and back.out_activation_ == est.out_activation_
    assert back.coefs_[0].dtype == dtype


def test_a_tampered_estimator_section_is_refused(tmp_path):
    est = fitted(fastmlp.MLPClassifier, {}, NAMES)
    good, bad = tmp_path / "good.fmlp", tmp_path / "bad.fmlp"
    est.save(good)
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "header.json":
                header = json.loads(data)
                header["estimator"]["params"]["exec_this"] = "import os"
                data = json.dumps(header).encode()
            dst.writestr(info.filename, data)
    with pytest.raises(fastmlp.ModelFileError, match="bad MLPClassifier section: unknown parameters"):
        fastmlp.load(bad)


def test_an_unfitted_estimator_is_not_saved(tmp_path):
    from sklearn.exceptions import NotFittedError
    with pytest.raises(NotFittedError):
        fastmlp.MLPClassifier().save(tmp_path / "m.fmlp")
    assert not (tmp_path / "m.fmlp").exists()
