"""fastmlp.datasets: CSV, .npz, .npy, MNIST IDX (plain and gzipped) and the
bundled sets, and one-line errors that name the file, row and column."""
import gzip
import struct
import sys

import numpy as np
import pytest

from fastmlp import datasets
from fastmlp.datasets import DataError


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def error_of(call, *args, **kw):
    with pytest.raises(DataError) as info:
        call(*args, **kw)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_csv_numbers_and_text_target(tmp_path):
    path = write(tmp_path / "d.csv", "age,height,kind\n30,1.8,a\n41, 1.6 ,b\n\n52,1.7,a\n")
    ds = datasets.load(path)
    assert ds.X.tolist() == [[30, 1.8], [41, 1.6], [52, 1.7]]
    assert ds.feature_names == ["age", "height"] and ds.target_name == "kind"
    assert list(ds.y) == ["a", "b", "a"] and not ds.y_numeric
    assert list(ds.rows) == [2, 3, 5]
    assert error_of(datasets.load, path, target="age") == f"{path}: row 2, column 'kind': 'a' is not a number"


@pytest.mark.parametrize("text,match", [
    ("a,b,y\n1,2,3\n4,abc,5\n", "d.csv: row 3, column 'b': 'abc' is not a number"),
    ("a,b,y\n1,2,3\n4,,5\n", "d.csv: row 3, column 'b': is empty"),
    ("a,b,y\n1,nan,3\n", "d.csv: row 2, column 'b': 'nan' is not a finite number"),
    ("a,b,y\n1,2,3\n4,5\n", "d.csv: row 3 has 2 fields; the header \\(row 1\\) has 3"),
    ("a,b,y\n1,2,\n", "d.csv: row 2, column 'y': the target is empty"),
    ("a,a,y\n1,2,3\n", "column 'a' appears twice"),
    ("", "d.csv: empty file"),
    ("a,b,y\n", "d.csv: no data rows"),
    ("y\n1\n", "only one column"),
])
def test_csv_errors(tmp_path, text, match):
    path = write(tmp_path / "d.csv", text)
    assert pytest.raises(DataError, datasets.load, path).match(match)


def test_csv_named_columns(tmp_path):
    path = write(tmp_path / "d.csv", "y,b,a\n1,2,3\n4,5,6\n")
    assert error_of(datasets.load, path, target="price") == (
        f"{path}: no column 'price'; the columns are 'y', 'b', 'a'")
    ds = datasets.load(path, features=["a", "b"], need_target=False)
    assert ds.X.tolist() == [[3, 2], [6, 5]] and ds.y is None
    assert "no column 'c', which the model needs" in error_of(datasets.load, path, features=["a", "c"])
    ds = datasets.load(path, target="y")
    assert ds.y.tolist() == [1.0, 4.0] and ds.y_numeric


def test_csv_variants(tmp_path):
    bom = tmp_path / "bom.csv"
    bom.write_bytes("\ufeffx;z;label\n1;2;\"a, b\"\n".encode("utf-8"))
    ds = datasets.load(str(bom))
    assert ds.feature_names == ["x", "z"] and list(ds.y) == ["a, b"]
    gz = tmp_path / "d.csv.gz"
    with gzip.open(gz, "wt") as f:
        f.write("x,y\n1,0\n2,1\n")
    assert datasets.load(str(gz)).X.tolist() == [[1], [2]]
    latin = tmp_path / "latin.csv"
    latin.write_bytes("x,y\n1,caf\xe9\n".encode("latin-1"))
    assert "not UTF-8 text" in error_of(datasets.load, str(latin))
    assert "no such file" in error_of(datasets.load, str(tmp_path / "missing.csv"))
    assert "unknown kind of data" in error_of(datasets.load, str(tmp_path / "data.parquet"))
    assert "mnist:" in error_of(datasets.load, str(tmp_path))


def test_npz_and_npy(tmp_path):
    X = np.arange(12.0).reshape(4, 3)
    np.savez(tmp_path / "d.npz", X=X, y=np.array([0, 1, 0, 1]))
    ds = datasets.load(str(tmp_path / "d.npz"))
    assert np.array_equal(ds.X, X) and ds.y.tolist() == [0, 1, 0, 1]
    np.savez(tmp_path / "nox.npz", features=X, labels=np.array(list("abab")))
    assert list(datasets.load(str(tmp_path / "nox.npz")).y) == list("abab")
    bad = X.copy()
    bad[2, 1] = np.inf
    np.savez(tmp_path / "inf.npz", X=bad, y=np.zeros(4))
    assert error_of(datasets.load, str(tmp_path / "inf.npz")) == (
        f"{tmp_path / 'inf.npz'}: X[2, 1] is inf, not a finite number")
    np.savez(tmp_path / "short.npz", X=X, y=np.zeros(3))
    assert "y has shape (3,); 4 rows are needed" in error_of(datasets.load, str(tmp_path / "short.npz"))
    np.savez(tmp_path / "obj.npz", X=np.array([[{"a": 1}]], dtype=object), y=np.zeros(1))
    assert "pickled" in error_of(datasets.load, str(tmp_path / "obj.npz"))
    np.save(tmp_path / "d.npy", np.column_stack([X, [5, 6, 7, 8]]))
    ds = datasets.load(str(tmp_path / "d.npy"))
    assert np.array_equal(ds.X, X) and ds.y.tolist() == [5, 6, 7, 8]
    ds = datasets.load(str(tmp_path / "d.npy"), n_features=4, need_target=False)
    assert ds.X.shape == (4, 4) and ds.y is None
    ds = datasets.load(str(tmp_path / "d.npy"), target="0")
    assert ds.y.tolist() == [0, 3, 6, 9]


# ----------------------------------------------------------------- IDX
def idx_bytes(array, magic=None):
    array = np.asarray(array, dtype=np.uint8)
    magic = 0x800 + array.ndim if magic is None else magic
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_mnist(folder, prefix="train", n=12, gz=True, size=4, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, size, size))
    labels = rng.integers(0, 10, n)
    folder.mkdir(exist_ok=True)
    for name, array in ((f"{prefix}-images-idx3-ubyte", images), (f"{prefix}-labels-idx1-ubyte", labels)):
        data = idx_bytes(array)
        if gz:
            with gzip.open(folder / (name + ".gz"), "wb") as f:
                f.write(data)
        else:
            (folder / name).write_bytes(data)
    return images, labels


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "plain"])
def test_mnist_directory(tmp_path, gz):
    images, labels = write_mnist(tmp_path / "m", gz=gz)
    write_mnist(tmp_path / "m", "t10k", n=5, gz=not gz, seed=1)
    ds = datasets.load(f"mnist:{tmp_path / 'm'}")
    assert ds.X.shape == (12, 16) and np.allclose(ds.X * 255, images.reshape(12, 16))
    assert ds.y.tolist() == labels.tolist()
    assert datasets.load(f"mnist:{tmp_path / 'm'}", split="test").X.shape == (5, 16)
    one = tmp_path / "m" / ("t10k-images-idx3-ubyte" + ("" if gz else ".gz"))
    assert datasets.load(f"mnist:{one}").X.shape == (5, 16)


def test_mnist_errors(tmp_path):
    folder = tmp_path / "m"
    images, labels = write_mnist(folder, gz=False)
    img = folder / "train-images-idx3-ubyte"
    lab = folder / "train-labels-idx1-ubyte"
    good_img = img.read_bytes()
    img.write_bytes(idx_bytes(images, magic=0x801))
    assert "magic number 0x00000801 says 1 dimension(s); expected 3" in error_of(datasets.load, f"mnist:{folder}")
    img.write_bytes(b"\x12\x34\x56\x78" + good_img[4:])
    assert "is not an IDX header" in error_of(datasets.load, f"mnist:{folder}")
    img.write_bytes(good_img[:-5])
    assert "the file is truncated" in error_of(datasets.load, f"mnist:{folder}")
    img.write_bytes(good_img + b"x")
    assert "data bytes; the header's sizes" in error_of(datasets.load, f"mnist:{folder}")
    img.write_bytes(good_img)
    lab.write_bytes(idx_bytes(labels[:7]))
    assert "7 labels for the 12 images" in error_of(datasets.load, f"mnist:{folder}")
    lab.unlink()
    assert "no train-labels-idx1-ubyte" in error_of(datasets.load, f"mnist:{folder}")
    # a gzip file cut short
    with gzip.open(folder / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(idx_bytes(labels))
    gzdata = (folder / "train-labels-idx1-ubyte.gz").read_bytes()
    (folder / "train-labels-idx1-ubyte.gz").write_bytes(gzdata[:-12])
    assert "train-labels-idx1-ubyte.gz" in error_of(datasets.load, f"mnist:{folder}")


def test_bundled(monkeypatch):
    pytest.importorskip("sklearn")
    ds = datasets.load("iris")
    assert ds.X.shape == (150, 4) and set(ds.y) == {"setosa", "versicolor", "virginica"}
    assert ds.feature_names[0] == "sepal length (cm)"
    monkeypatch.setitem(sys.modules, "sklearn", None)  # as if not installed
    assert "comes with scikit-learn, which is not installed" in error_of(datasets.load, "wine")
