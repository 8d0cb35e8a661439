"""Model files: exact round trips for both twins, training state that resumes
bit for bit, atomic writes, and a loader that refuses whatever is not a file we
wrote (truncated, bit-flipped, pickled, object arrays, huge shapes, compressed,
duplicate or extra members, unknown versions) with a ModelFileError."""
import io as stdio
import json
import os
import warnings
import zipfile

import numpy as np
import pytest

import fastmlp
import fastmlp.reference
from fastmlp import io
from fastmlp.io import ModelFileError

TWINS = {"fastmlp": fastmlp.MLP, "reference": fastmlp.reference.MLP}
X = np.random.default_rng(0).normal(size=(40, 5))
LABELS = np.arange(40) % 3


def trained(cls=fastmlp.MLP, output="softmax", dtype=np.float64, bias=True, random_state=1, **fit):
    k = {"softmax": 3, "sigmoid": 1, "identity": 2}[output]
    y = {"softmax": LABELS, "sigmoid": LABELS % 2, "identity": X[:, :2] * 2}[output]
    model = cls([5, 6, 4, k], "tanh", output, bias=bias, dtype=dtype, random_state=random_state)
    model.fit(X, y, epochs=3, batch_size=7, lr=0.05, **dict({"optimizer": "adam"}, **fit))
    return model, y


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("output,bias", [("softmax", True), ("sigmoid", True), ("identity", False)])
@pytest.mark.parametrize("twin", TWINS)
def test_round_trip_is_bitwise(tmp_path, twin, output, bias, dtype):
    model, _ = trained(TWINS[twin], output, dtype, bias)
    path = tmp_path / "m.fmlp"
    model.save(path)
    back = fastmlp.io.load(path, twin="saved")
    assert type(back) is TWINS[twin]
    assert back.dtype == dtype and back.layer_sizes == model.layer_sizes and back.bias == bias
    assert np.array_equal(back.params, model.params)
    assert np.array_equal(back.forward(X), model.forward(X))
    assert np.array_equal(back.predict(X), model.predict(X))
    assert back.loss_curve_ == model.loss_curve_ and back.n_iter_ == 3 and back.t_ == 120
    default = fastmlp.io.load(path)
    assert type(default) is fastmlp.MLP  # the compiled one unless asked otherwise
    with zipfile.ZipFile(path) as zf:
        header = json.loads(zf.read("header.json"))
        assert zf.namelist() == ["header.json", "params.npy", "loss_curve.npy"]
    assert header["format"] == "fastmlp-model" and header["version"] == 1 and header["kind"] == "MLP"
    assert header["twin"] == twin and header["dtype"] == np.dtype(dtype).name
    assert header["architecture"] == {"layer_sizes": [5, 6, 4, model.layer_sizes[-1]], "activation": "tanh",
                                      "output": output, "bias": bias, "reduction": "mean"}
    assert header["training"]["optimizer"] == "adam" and header["training"]["lr"] == 0.05


@pytest.mark.parametrize("rng", ["int", "generator"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_training_state_resumes_bit_for_bit(tmp_path, optimizer, rng):
    seed = 4 if rng == "int" else np.random.default_rng(4)
    kw = dict(optimizer=optimizer, momentum=0.9 if optimizer == "sgd" else 0.0)
    model, y = trained(random_state=seed, **kw)
    model.save(tmp_path / "c.fmlp", training_state=True)
    back = io.load(tmp_path / "c.fmlp")
    for m in (model, back):
        for _ in range(3):
            m.partial_fit(X, y, batch_size=7, lr=0.05, **kw)
    assert np.array_equal(model.params, back.params)
    assert model.loss_curve_ == back.loss_curve_ and model._adam_step == back._adam_step


def test_classes_and_feature_names_travel(tmp_path):
    model, _ = trained()
    model.classes_ = np.array(["cat", "dog", "émeu"])
    model.feature_names_in_ = np.array(list("abcde"), dtype=object)
    io.save(model, tmp_path / "m.fmlp")
    back = io.load(tmp_path / "m.fmlp")
    assert list(back.classes_) == ["cat", "dog", "émeu"]
    assert list(back.feature_names_in_) == list("abcde")


def test_same_model_same_bytes(tmp_path):
    model, _ = trained()
    model.save(tmp_path / "a.fmlp")
    model.save(tmp_path / "b.fmlp")
    assert (tmp_path / "a.fmlp").read_bytes() == (tmp_path / "b.fmlp").read_bytes()


def test_interrupted_save_leaves_the_old_file(tmp_path, monkeypatch):
    model, _ = trained()
    path = tmp_path / "m.fmlp"
    model.save(path)
    before = path.read_bytes()
    model.params[0] += 1.0

    def broken(zf, name, array):
        raise KeyboardInterrupt  # as if Ctrl-C hit in the middle of writing

    monkeypatch.setattr(io, "_write_npy", broken)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.fmlp"]  # no temporary file left behind


# ------------------------------------------------------------ refusals
@pytest.fixture(scope="module")
def good(tmp_path_factory):
    model, _ = trained()
    path = tmp_path_factory.mktemp("good") / "m.fmlp"
    model.save(path, training_state=True)
    return path.read_bytes()


def members(data):
    with zipfile.ZipFile(stdio.BytesIO(data)) as zf:
        return [(i.filename, zf.read(i)) for i in zf.infolist()]


def rebuild(items, compress=zipfile.ZIP_STORED):
    buf = stdio.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", compression=compress) as zf:
        warnings.simplefilter("ignore")  # "Duplicate name": wanted here
        for name, data in items:
            zf.writestr(name, data)
    return buf.getvalue()


def with_header(data, **changes):
    items = members(data)
    header = json.loads(items[0][1])
    for key, value in changes.items():
        header[key] = value
    return rebuild([("header.json", json.dumps(header).encode())] + items[1:])


def huge_npy_header():
    buf = stdio.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (10**11,)})
    return buf.getvalue()


def npy_bytes(array, allow_pickle=False):
    buf = stdio.BytesIO()
    np.lib.format.write_array(buf, array, allow_pickle=allow_pickle)
    return buf.getvalue()


def refuses(tmp_path, data, match):
    path = tmp_path / "bad.fmlp"
    path.write_bytes(data)
    with pytest.raises(ModelFileError, match=match):
        io.load(path)


def replace_member(data, name, payload):
    return rebuild([(n, payload if n == name else d) for n, d in members(data)])


def test_good_fixture_loads(tmp_path, good):
    path = tmp_path / "m.fmlp"
    path.write_bytes(good)
    assert io.load(path).n_iter_ == 3


@pytest.mark.parametrize("case,match", [
    ("empty", "not a valid model file"),
    ("text", "not a valid model file"),
    ("version", "version 2 is not supported.*newer"),
    ("format", "not a fastmlp model file"),
    ("kind", "unknown kind 'Pipeline'"),
    ("unknown field", r"unknown fields \['evil'\]"),
    ("missing field", r"missing \['dtype'\]"),
    ("bad activation", "architecture.activation"),
    ("negative size", "layer_sizes"),
    ("bool as int", "n_iter"),
    ("nan in header", "not valid JSON"),
    ("duplicate key", "duplicate keys"),
    ("header not first", "first member must be header.json"),
    ("extra member", r"unexpected members \['run.py'\]"),
    ("missing member", r"missing members \['adam_v.npy'\]"),
    ("duplicate member", "duplicate members"),
    ("compressed", "is compressed"),
    ("pickle", "params.npy (has|holds)"),
    ("object array", "holds object data"),
    ("wrong dtype", "expected <f8"),
    ("fortran", "Fortran order"),
    ("huge architecture", r"params.npy has \d+ bytes; an array of float64 with shape \(1000004000003,\)"),
    ("huge npy shape", "params.npy has .* bytes"),
    ("nan weights", "NaN or infinity"),
    ("bad rng", "rng"),
    ("classes count", "must list 3 class labels"),
])
def test_refuses(tmp_path, good, case, match):
    items = members(good)
    header = json.loads(items[0][1])
    params = dict(items)["params.npy"]
    p = header["architecture"]
    P = io.n_params(p["layer_sizes"], p["bias"])
    data = {
        "empty": lambda: b"",
        "text": lambda: b"hello, I am not a zip file\n" * 10,
        "version": lambda: with_header(good, version=2),
        "format": lambda: with_header(good, format="other"),
        "kind": lambda: with_header(good, kind="Pipeline"),
        "unknown field": lambda: with_header(good, evil="__import__('os')"),
        "missing field": lambda: rebuild([("header.json", json.dumps(
            {k: v for k, v in header.items() if k != "dtype"}).encode())] + items[1:]),
        "bad activation": lambda: with_header(good, architecture=dict(p, activation="os.system")),
        "negative size": lambda: with_header(good, architecture=dict(p, layer_sizes=[5, -6, 4, 3])),
        "bool as int": lambda: with_header(good, n_iter=True),
        "nan in header": lambda: rebuild([("header.json", items[0][1].replace(b'"t": 120', b'"t": NaN'))]
                                         + items[1:]),
        "duplicate key": lambda: rebuild([("header.json", items[0][1].replace(b'"t": 120', b'"t": 120, "t": 1'))]
                                         + items[1:]),
        "header not first": lambda: rebuild(items[1:2] + items[:1] + items[2:]),
        "extra member": lambda: rebuild(items + [("run.py", b"print('hi')")]),
        "missing member": lambda: rebuild(items[:-1]),
        "duplicate member": lambda: rebuild(items + items[1:2]),
        "compressed": lambda: rebuild(items, zipfile.ZIP_DEFLATED),
        "pickle": lambda: replace_member(good, "params.npy",
                                         npy_bytes(np.array([{"a": 1}] * P, dtype=object), True)),
        "object array": lambda: replace_member(good, "params.npy", params.replace(b"'<f8'", b"'|O' ")),
        "wrong dtype": lambda: replace_member(good, "params.npy", npy_bytes(np.zeros(P, "<i8"))),
        "fortran": lambda: replace_member(good, "params.npy",
                                          params.replace(b"'fortran_order': False", b"'fortran_order': True ")),
        "huge architecture": lambda: with_header(good, architecture=dict(p, layer_sizes=[10**6, 10**6, 3])),
        "huge npy shape": lambda: replace_member(good, "params.npy", huge_npy_header()),
        "nan weights": lambda: replace_member(good, "params.npy", npy_bytes(np.full(P, np.nan))),
        "bad rng": lambda: with_header(good, state=dict(header["state"], rng={"type": "RandomState",
                                                                             "state": {"bit_generator": "os"}})),
        "classes count": lambda: with_header(good, classes=["a", "b"]),
    }[case]()
    refuses(tmp_path, data, match)


def test_member_larger_than_the_file_is_refused_before_reading(tmp_path, good):
    # central directory edited to declare a 4 GB member: a classic zip bomb shape
    data = bytearray(good)
    start = data.find(b"PK\x01\x02")  # the first member's central directory entry
    for offset in (20, 24):  # its compressed and uncompressed sizes
        data[start + offset:start + offset + 4] = (2**32 - 2).to_bytes(4, "little")
    refuses(tmp_path, bytes(data), "reaches past the end of the file")


def test_truncated_files_are_refused(tmp_path, good):
    for cut in list(range(0, len(good), max(1, len(good) // 60))) + [len(good) - 1]:
        path = tmp_path / "t.fmlp"
        path.write_bytes(good[:cut])
        with pytest.raises(ModelFileError):
            io.load(path)


def test_bit_flips_are_refused_or_harmless(tmp_path, good):
    reference = io.load(_write(tmp_path / "ok.fmlp", good))
    rng = np.random.default_rng(0)
    refused = 0
    for position in rng.choice(len(good), 150, replace=False):
        data = bytearray(good)
        data[position] ^= 1 << int(rng.integers(8))
        path = _write(tmp_path / "f.fmlp", bytes(data))
        try:
            back = io.load(path)
        except ModelFileError:
            refused += 1
            continue
        # a flip the format does not cover (a timestamp, an attribute byte) changes nothing
        assert np.array_equal(back.params, reference.params)
        assert np.array_equal(back._adam_v, reference._adam_v)
    assert refused > 100


def _write(path, data):
    path.write_bytes(data)
    return path


def test_missing_and_directory_paths(tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        io.load(tmp_path / "nope.fmlp")
    with pytest.raises(ModelFileError, match="directory"):
        io.load(tmp_path)


def test_saving_bad_things(tmp_path):
    model, _ = trained()
    with pytest.raises(TypeError, match="not a fastmlp model"):
        io.save(object(), tmp_path / "x.fmlp")
    with pytest.raises(ModelFileError, match="extra array"):
        io.save(model, tmp_path / "x.fmlp", extra_arrays={"bad name": np.zeros(2)})
    with pytest.raises(ModelFileError, match="cannot store"):
        io.save(model, tmp_path / "x.fmlp", extra={"f": object()})
    assert not os.listdir(tmp_path)


def test_extra_arrays_and_json_round_trip(tmp_path):
    model, _ = trained()
    io.save(model, tmp_path / "x.fmlp", extra={"note": "hi", "n": [1, 2.5]},
            extra_arrays={"order": np.arange(5), "scale": np.ones((2, 3), np.float32)})
    mf = io.read(tmp_path / "x.fmlp")
    assert mf.extra == {"note": "hi", "n": [1, 2.5]}
    assert np.array_equal(mf.extra_array("order"), np.arange(5))
    assert mf.extra_array("scale").dtype == np.float32 and mf.extra_array("scale").shape == (2, 3)
