"""The `fastmlp` command end to end: real files written here, `python -m fastmlp`
in subprocesses for the user's path (exit codes, stdout, stderr), and `cli.main`
in-process for the many smaller cases (same parser, same code, no startup cost)."""
import csv
import gzip
import importlib.util
import io as stdio
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

import fastmlp
from fastmlp import cli, io

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None


def run(*args, cwd):
    """`python -m fastmlp ARGS` as a user runs it."""
    env = dict(os.environ)
    env.setdefault("NUMBA_CACHE_DIR", str(cwd / ".numba_cache"))
    done = subprocess.run([sys.executable, "-m", "fastmlp", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout, done.stderr


def main(capsys, *args):
    code = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def write_classes_csv(path, n=150, seed=0):
    """Three animal kinds from two measurements and a noisy one; text labels."""
    rng = np.random.default_rng(seed)
    kinds = np.array(["cat", "dog", "horse"])
    k = rng.integers(0, 3, n)
    weight = np.array([4.0, 20.0, 500.0])[k] * rng.uniform(0.8, 1.2, n)
    height = np.array([25.0, 55.0, 160.0])[k] * rng.uniform(0.85, 1.15, n)
    noise = rng.normal(size=n)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["weight", "height", "noise", "kind"])
        for row in zip(weight.round(3), height.round(2), noise.round(4), kinds[k]):
            w.writerow(row)
    return path


def write_regression_csv(path, n=120, seed=1):
    rng = np.random.default_rng(seed)
    area = rng.uniform(30, 200, n)
    rooms = rng.integers(1, 7, n)
    price = 3000 * area + 10000 * rooms + rng.normal(0, 5000, n)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["area", "rooms", "price"])
        for row in zip(area.round(1), rooms, price.round(2)):
            w.writerow(row)
    return path


def read_csv(text):
    rows = list(csv.reader(stdio.StringIO(text)))
    return rows[0], rows[1:]


# --------------------------------------------------------- as a user would
@pytest.fixture(scope="module")
def flow(tmp_path_factory):
    """`fastmlp train` on a CSV with a plot and checkpoints, in a subprocess."""
    d = tmp_path_factory.mktemp("flow")
    write_classes_csv(d / "animals.csv")
    args = ["train", "animals.csv", "--target", "kind", "--hidden", "16,8", "--epochs", "6", "--lr", "0.03",
            "--checkpoint-every", "2", "--out", "animals.fmlp"]
    if HAVE_MPL:
        args += ["--plot", "curve.png"]
    code, out, err = run(*args, cwd=d)
    return d, code, out, err


def test_train_writes_model_checkpoint_and_plot(flow):
    d, code, out, err = flow
    assert code == 0, err
    assert "classification (the target is text), 3 classes" in out
    assert "saved animals.fmlp (checkpoint animals.fmlp.ckpt)" in out
    assert "epoch 6/6" in err and "val accuracy" in err and "samples/s" in err  # not a tty: lines
    model = io.load(d / "animals.fmlp")
    assert model.layer_sizes == (3, 16, 8, 3) and model.n_iter_ == 6
    assert list(model.classes_) == ["cat", "dog", "horse"]
    assert list(model.feature_names_in_) == ["weight", "height", "noise"]
    ckpt = io.read(d / "animals.fmlp.ckpt")
    assert ckpt.header["state"] is not None and ckpt.header["n_iter"] == 6
    if HAVE_MPL:
        assert (d / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_predict_matches_python_bit_for_bit(flow):
    d, code, _, _ = flow
    assert code == 0
    code, out, err = run("predict", "animals.fmlp", "animals.csv", "--proba", "--out", "pred.csv", cwd=d)
    assert code == 0, err
    header, rows = read_csv((d / "pred.csv").read_text())
    assert header == ["prediction", "proba_cat", "proba_dog", "proba_horse"]
    model = io.load(d / "animals.fmlp")
    X = np.loadtxt(d / "animals.csv", delimiter=",", skiprows=1, usecols=(0, 1, 2))
    assert [r[0] for r in rows] == list(model.classes_[model.predict(X)])
    assert np.array_equal(np.array([r[1:] for r in rows], dtype=float), model.predict_proba(X))
    assert (np.array([r[0] for r in rows]) == np.loadtxt(d / "animals.csv", delimiter=",", skiprows=1,
                                                         usecols=3, dtype=str)).mean() > 0.8


def test_evaluate_prints_metrics_and_confusion_matrix(flow, capsys):
    d, code, _, _ = flow
    assert code == 0
    args = ["evaluate", d / "animals.fmlp", d / "animals.csv"] + (["--plot", d / "cm.png"] if HAVE_MPL else [])
    code, out, err = main(capsys, *args)  # in-process: the subprocess path is covered above
    assert code == 0, err
    assert "accuracy" in out and "log-loss" in out and "confusion matrix" in out
    matrix = [line.split() for line in out.splitlines()[-3 - HAVE_MPL:len(out.splitlines()) - HAVE_MPL]]
    assert [row[0] for row in matrix] == ["cat", "dog", "horse"]
    assert sum(int(v) for row in matrix for v in row[1:]) == 150
    if HAVE_MPL:
        assert (d / "cm.png").stat().st_size > 1000


def test_bad_data_is_one_line_exit_2(tmp_path):
    (tmp_path / "data.csv").write_text("age,income,y\n30,1000,0\n" + "40,2000,1\n" * 14 + "41,abc,1\n")
    code, out, err = run("train", "data.csv", cwd=tmp_path)
    assert code == 2
    assert err == "fastmlp train: data.csv: row 17, column 'income': 'abc' is not a number\n"
    assert out == "" and not (tmp_path / "model.fmlp").exists()


def write_idx(path, array):
    array = np.asarray(array, dtype=np.uint8)
    data = struct.pack(">I", 0x800 + array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def test_mnist_idx_train_and_evaluate(tmp_path, capsys):
    rng = np.random.default_rng(3)
    folder = tmp_path / "mnist"
    folder.mkdir()
    for prefix, n, gz in (("train", 200, ".gz"), ("t10k", 50, "")):
        labels = rng.integers(0, 3, n)
        images = np.zeros((n, 6, 6), dtype=np.uint8)
        for i, c in enumerate(labels):  # class c lights row 2c: learnable in a few epochs
            images[i, 2 * c] = 200
        images += rng.integers(0, 40, images.shape).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{gz}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{gz}", labels)
    code, out, err = run("train", f"mnist:{folder}", "--hidden", "8", "--epochs", "5", "--lr", "0.02",
                         "--out", "m.fmlp", "--quiet", cwd=tmp_path)
    assert code == 0, err
    assert out == "" and err == ""
    code, out, err = main(capsys, "evaluate", tmp_path / "m.fmlp", f"mnist:{folder}")
    assert code == 0, err
    assert f"{folder}/t10k-labels-idx1-ubyte: 50 rows" in out
    assert float(out.split("accuracy")[1].split()[0]) > 0.9
    (folder / "t10k-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 5)
    code, _, err = main(capsys, "evaluate", tmp_path / "m.fmlp", f"mnist:{folder}")
    assert code == 2 and "t10k-images-idx3-ubyte: truncated in its header" in err


def test_resume_in_a_new_process_continues_exactly(tmp_path, capsys):
    write_classes_csv(tmp_path / "a.csv", n=90)
    common = ["--hidden", "6", "--optimizer", "sgd", "--momentum", "0.9", "--lr", "0.05", "--batch-size", "8"]
    code, _, err = main(capsys, "train", tmp_path / "a.csv", *common, "--epochs", "5",
                        "--out", tmp_path / "full.fmlp", "-q")
    assert code == 0, err
    code, _, err = main(capsys, "train", tmp_path / "a.csv", *common, "--epochs", "2", "--checkpoint-every", "2",
                        "--out", tmp_path / "part.fmlp", "-q")
    assert code == 0, err
    code, out, err = run("train", "--resume", "part.fmlp.ckpt", "--epochs", "5", "--out", "resumed.fmlp",
                         cwd=tmp_path)
    assert code == 0, err
    assert "resuming at epoch 3 of 5" in out
    full, resumed = io.load(tmp_path / "full.fmlp"), io.load(tmp_path / "resumed.fmlp")
    assert np.array_equal(full.params, resumed.params)
    assert full.loss_curve_ == resumed.loss_curve_


# ------------------------------------------------------------- in-process
def test_interrupted_training_resumes_bit_for_bit(tmp_path, capsys, monkeypatch):
    data = write_classes_csv(tmp_path / "a.csv", n=120)
    common = [data, "--hidden", "7", "--epochs", "6", "--val-fraction", "0.25", "--seed", "5"]
    assert main(capsys, "train", *common, "--out", tmp_path / "full.fmlp", "-q")[0] == 0

    calls = {"n": 0}
    original = fastmlp.MLP.partial_fit

    def interrupt_in_epoch_5(self, *args, **kw):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(self, *args, **kw)

    monkeypatch.setattr(fastmlp.MLP, "partial_fit", interrupt_in_epoch_5)
    code, _, err = main(capsys, "train", *common, "--checkpoint-every", "2", "--out", tmp_path / "b.fmlp")
    assert code == 130
    assert f"interrupted in epoch 5; the checkpoint {tmp_path / 'b.fmlp.ckpt'} holds epoch 4" in err
    assert not (tmp_path / "b.fmlp").exists()
    monkeypatch.undo()
    code, out, err = main(capsys, "train", "--resume", tmp_path / "b.fmlp.ckpt", "--out", tmp_path / "b.fmlp")
    assert code == 0, err
    assert "resuming at epoch 5 of 6" in out and "epoch 5/6" in err and "epoch 1/6" not in err
    full, resumed = io.load(tmp_path / "full.fmlp"), io.load(tmp_path / "b.fmlp")
    assert np.array_equal(full.params, resumed.params)
    assert full.loss_curve_ == resumed.loss_curve_
    assert io.read(tmp_path / "full.fmlp").extra["cli"]["val_curve"] == \
        io.read(tmp_path / "b.fmlp").extra["cli"]["val_curve"]

    code, _, err = main(capsys, "train", "--resume", tmp_path / "b.fmlp.ckpt", "--hidden", "9")
    assert code == 2 and "--hidden 9 differs from the checkpoint's '7'" in err
    other = write_classes_csv(tmp_path / "other.csv", n=120, seed=9)
    code, _, err = main(capsys, "train", other, "--resume", tmp_path / "b.fmlp.ckpt", "--epochs", "8")
    assert code == 2 and "not the data the checkpoint" in err
    code, _, err = main(capsys, "train", "--resume", tmp_path / "full.fmlp")
    assert code == 2 and "not a checkpoint" in err


def test_regression_csv(tmp_path, capsys):
    data = write_regression_csv(tmp_path / "houses.csv")
    code, out, err = main(capsys, "train", data, "--epochs", "40", "--hidden", "16", "--lr", "0.01",
                          "--out", tmp_path / "h.fmlp")
    assert code == 0, err
    assert "regression (the target has non-integer values)" in out and "val R²" in err
    code, out, err = main(capsys, "evaluate", tmp_path / "h.fmlp", data)
    assert code == 0 and float(out.split("R²")[1].split()[0]) > 0.9
    code, out, err = main(capsys, "predict", tmp_path / "h.fmlp", data)
    assert code == 0
    header, rows = read_csv(out)
    model = io.load(tmp_path / "h.fmlp")
    X = np.loadtxt(data, delimiter=",", skiprows=1, usecols=(0, 1))
    assert header == ["prediction"]
    assert np.array_equal(np.array(rows, dtype=float)[:, 0], model.predict(X))  # raw units, folded scaling
    code, _, err = main(capsys, "predict", tmp_path / "h.fmlp", data, "--proba")
    assert code == 2 and "--proba needs a classifier" in err
    code, _, err = main(capsys, "gradcheck", tmp_path / "h.fmlp", data)
    assert code == 0, err


def test_task_inference_and_override(tmp_path, capsys):
    data = write_classes_csv(tmp_path / "a.csv", n=60)
    code, _, err = main(capsys, "train", data, "--task", "regression", "--out", tmp_path / "x.fmlp")
    assert code == 2
    first = data.read_text().splitlines()[1].split(",")[-1]
    assert err == f"fastmlp train: {data}: row 2, column 'kind': '{first}' is not a number, and --task " \
                  "regression needs numeric targets\n"
    (tmp_path / "ints.csv").write_text("x,y\n" + "".join(f"{i / 10},{i % 4 * 10}\n" for i in range(40)))
    code, out, _ = main(capsys, "train", tmp_path / "ints.csv", "--epochs", "1", "--out", tmp_path / "i.fmlp", "-q")
    assert code == 0 and list(io.load(tmp_path / "i.fmlp").classes_) == [0, 10, 20, 30]
    code, out, _ = main(capsys, "train", tmp_path / "ints.csv", "--epochs", "1", "--task", "regression",
                        "--out", tmp_path / "r.fmlp")
    assert code == 0 and "regression (--task regression)" in out
    assert io.load(tmp_path / "r.fmlp").output == "identity"


def test_use_errors_are_one_line(tmp_path, capsys):
    data = write_classes_csv(tmp_path / "a.csv", n=60)
    assert main(capsys, "train", data, "--epochs", "2", "--out", tmp_path / "m.fmlp", "-q")[0] == 0
    (tmp_path / "zebra.csv").write_text("weight,height,noise,kind\n4,25,0,cat\n300,150,0,zebra\n")
    code, _, err = main(capsys, "evaluate", tmp_path / "m.fmlp", tmp_path / "zebra.csv")
    assert code == 2 and err == (f"fastmlp evaluate: {tmp_path / 'zebra.csv'}: row 3, column 'kind': 'zebra' is "
                                 "not one of the model's classes (cat, dog, horse)\n")
    (tmp_path / "nocol.csv").write_text("weight,noise\n4,0\n")
    code, _, err = main(capsys, "predict", tmp_path / "m.fmlp", tmp_path / "nocol.csv")
    assert code == 2 and "no column 'height', which the model needs" in err
    (tmp_path / "reordered.csv").write_text("noise,height,weight\n0,25,4\n0,150,480\n")
    code, out, err = main(capsys, "predict", tmp_path / "m.fmlp", tmp_path / "reordered.csv")
    assert code == 0 and out.splitlines()[0] == "prediction"  # found by name, target not needed
    (tmp_path / "junk.fmlp").write_bytes(b"PK\x03\x04 not really")
    code, _, err = main(capsys, "predict", tmp_path / "junk.fmlp", data)
    assert code == 2 and "junk.fmlp: not a valid model file" in err and err.count("\n") == 1
    code, _, err = main(capsys, "train", data, "--out", tmp_path / "nowhere" / "m.fmlp")
    assert code == 2 and "does not exist" in err
    code, _, err = main(capsys, "gradcheck", tmp_path / "m.fmlp", data)
    assert code == 0


def test_npz_data(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    np.savez(tmp_path / "d.npz", X=X, y=(X[:, 0] > 0).astype(int))
    code, out, err = main(capsys, "train", tmp_path / "d.npz", "--epochs", "3", "--out", tmp_path / "m.fmlp")
    assert code == 0, err
    assert "2 classes" in out
    np.save(tmp_path / "x.npy", X)
    code, out, err = main(capsys, "predict", tmp_path / "m.fmlp", tmp_path / "x.npy")
    assert code == 0 and len(out.splitlines()) == 81


def test_plot_without_matplotlib_fails_before_training(tmp_path, capsys, monkeypatch):
    data = write_classes_csv(tmp_path / "a.csv", n=30)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, out, err = main(capsys, "train", data, "--plot", tmp_path / "c.png", "--out", tmp_path / "m.fmlp")
    assert code == 2 and "--plot needs matplotlib, which is not installed" in err
    assert out == "" and not (tmp_path / "m.fmlp").exists()


def test_help_and_usage(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for option in ("--hidden", "--checkpoint-every", "--resume", "--val-fraction", "--threads", "--plot", "--task"):
        assert option in text
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = capsys.readouterr().out
    assert all(c in text for c in ("train", "predict", "evaluate", "bench", "gradcheck"))
    assert cli.main([]) == 2
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "x.csv", "--epochs", "0"])
    assert e.value.code == 2 and "must be at least 1" in capsys.readouterr().err


def test_threads(tmp_path, capsys):
    data = write_classes_csv(tmp_path / "a.csv", n=30)
    before = fastmlp.get_num_threads()
    try:
        code, _, err = main(capsys, "train", data, "--epochs", "1", "--threads", "1", "--out", tmp_path / "m.fmlp")
        assert code == 0, err
        assert fastmlp.get_num_threads() == 1
    finally:
        fastmlp.set_num_threads(before)
    code, _, err = main(capsys, "train", data, "--threads", "100000")
    assert code == 2 and "--threads 100000: at most" in err


def test_bench_delegates(monkeypatch, capsys):
    import fastmlp.bench

    seen = []
    monkeypatch.setattr(fastmlp.bench, "main", lambda argv: seen.append(argv) or 0)
    assert cli.main(["bench", "--workload", "digits", "--json"]) == 0
    assert seen == [["--workload", "digits", "--json"]]
    monkeypatch.setitem(sys.modules, "fastmlp.bench", None)
    assert cli.main(["bench"]) == 2
    assert "not available" in capsys.readouterr().err


# ---------------------------------------------------------------- progress
def test_fit_verbose_prints_one_line_per_epoch(capsys):
    X = np.random.default_rng(0).normal(size=(20, 3))
    model = fastmlp.MLP([3, 4, 2], random_state=0)
    model.fit(X, X[:, 0] > 0, epochs=3, verbose=True)
    model.partial_fit(X, X[:, 0] > 0, verbose=True)
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == "" and len(lines) == 4
    assert lines[0].startswith("epoch 1/3  loss ") and "samples/s" in lines[0] and "ETA" in lines[0]
    assert lines[3].startswith("epoch    4  loss ")


def test_progress_bar_and_fallback(monkeypatch):
    from fastmlp import _progress

    pytest.importorskip("tqdm")
    stream = stdio.StringIO()
    bar = _progress.EpochProgress(3, 1000, stream=stream, mode="bar")
    for epoch in (1, 2, 3):
        bar.update(epoch, 0.5 / epoch, 0.01, score=0.9, score_name="val accuracy")
    bar.close()
    text = stream.getvalue()
    assert "3/3" in text and "loss=0.16667" in text and "val accuracy=0.9000" in text and "samples/s=100,000" in text

    class Terminal(stdio.StringIO):
        def isatty(self):
            return True

    assert _progress.choose_mode(Terminal()) == "bar"
    monkeypatch.setitem(sys.modules, "tqdm", None)
    term = Terminal()
    assert _progress.choose_mode(term) == "lines"
    p = _progress.EpochProgress(2, 10, stream=term)
    p.update(1, 1.0, 0.5)
    assert term.getvalue().startswith("epoch 1/2  loss 1  20 samples/s")
