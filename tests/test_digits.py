"""Real data: scikit-learn's bundled digits reach >= 97% test accuracy."""
import numpy as np
import pytest

import fastmlp

sklearn = pytest.importorskip("sklearn")
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_digits_accuracy(dtype):
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16.0, y, test_size=0.25, random_state=0,
                                                        stratify=y)
    model = fastmlp.MLP([64, 128, 10], "relu", "softmax", dtype=dtype, random_state=0)
    model.fit(X_train, y_train, epochs=30, batch_size=32, lr=0.003, optimizer="adam", alpha=1e-4)
    accuracy = (model.predict(X_test) == y_test).mean()
    assert accuracy >= 0.97
    assert model.loss_curve_[-1] < 0.1 * model.loss_curve_[0]


def test_demo_runs_and_reports(capsys):
    from fastmlp import demo
    accuracy = demo.main(["--epochs", "30"])
    text = capsys.readouterr().out
    assert accuracy >= 0.97
    assert "test accuracy" in text and "samples/s" in text and "speed-up" in text
