"""Reliability: divergence never leaves a NaN model, an epoch split into several
compiled calls gives bitwise the weights of one call, Ctrl-C stops training
within a slice and keeps a consistent model, an interrupted save keeps the old
file, and numerical extremes give finite results or a clear error.

Crash-prone and signal tests run in subprocesses with timeouts."""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

import fastmlp
import fastmlp.reference
from fastmlp import _base

TWINS = {"fastmlp": fastmlp.MLP, "reference": fastmlp.reference.MLP}
DTYPES = {"f64": np.float64, "f32": np.float32}


@pytest.fixture(params=list(TWINS))
def MLP(request):
    return TWINS[request.param]


@pytest.fixture(params=list(DTYPES))
def dtype(request):
    return DTYPES[request.param]


def state(model):
    """Everything training changes, as bytes."""
    return dict(params=model.params.tobytes(), velocity=model._velocity.tobytes(),
                adam_m=model._adam_m.tobytes(), adam_v=model._adam_v.tobytes(),
                adam_step=model._adam_step, n_iter=model.n_iter_, t=model.t_)


def slices_of(model, batches):
    """Make `model` run each epoch as compiled calls of `batches` mini-batches."""
    model._batches_per_call = lambda batch_size: batches
    return model


def count_calls(model, after=None):
    """Wrap the model's per-slice hook; after(k) runs after the k-th call returns."""
    original = model._train_epoch
    calls = []

    def hook(data, order, batch_size, settings, step):
        result = original(data, order, batch_size, settings, step)  # (loss, state finite)
        calls.append((len(order), step))
        if after is not None:
            after(len(calls))
        return result

    model._train_epoch = hook
    return calls


# ------------------------------------------------------------------ divergence

def overflowing_problem(dtype):
    """One SGD step from these makes the weights overflow while the loss it
    reports (taken before the step) is still finite."""
    big = 1e19 if dtype == np.float32 else 1e154
    return np.full((4, 2), big), np.full(4, big)


def test_finite_loss_with_overflowing_weights_is_divergence(MLP, dtype):
    X, y = overflowing_problem(dtype)
    model = MLP([2, 3, 1], "relu", "identity", dtype=dtype, random_state=0)
    before = model.params.copy()
    with np.errstate(all="ignore"), pytest.raises(ValueError, match=r"diverged: the weights or the "
                                                                     r"optimizer state became NaN.*restored"):
        model.fit(X, y, epochs=1, batch_size=4, lr=10.0, shuffle=False)
    assert np.array_equal(model.params, before)  # the weights from before the epoch
    assert model.loss_curve_ == [] and model.n_iter_ == 0 and model.t_ == 0
    assert not model._velocity.any() and model._adam_step == 0  # optimizer reset
    # and the model still works: a sane fit from there is finite
    rng = np.random.default_rng(0)
    model.fit(rng.normal(size=(8, 2)), rng.normal(size=8), epochs=2, batch_size=4, lr=0.01)
    assert np.isfinite(model.params).all()


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_nan_reached_mid_epoch_is_caught_although_the_loss_is_finite(MLP, dtype, optimizer):
    """An infinity that reaches the optimizer state inside a compiled call whose loss
    looks finite (SGD's momentum then carries it into the weights; Adam's second
    moment keeps it): the check at the end of each call catches it, and the weights
    from the start of the epoch come back, not those of the last slice."""
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 3, 40)
    kw = dict(batch_size=8, lr=0.05, optimizer=optimizer,
              momentum=0.9 if optimizer == "sgd" else 0.0)
    model = slices_of(MLP([3, 5, 3], dtype=dtype, random_state=0), 1)
    model.fit(X, y, epochs=1, **kw)
    epoch_start = model.params.copy()
    state = model._adam_v if optimizer == "adam" else model._velocity
    original = model._train_epoch
    calls = []

    def poison_then_train(data, order, batch_size, settings, step):
        calls.append(step)
        if len(calls) == 3:  # the third call (one mini-batch) of the second epoch
            state[7] = np.inf
        return original(data, order, batch_size, settings, step)

    model._train_epoch = poison_then_train
    with pytest.raises(ValueError,
                       match=r"diverged.*became NaN or infinite.*loss was still.*epoch 2.*restored"):
        model.partial_fit(X, y, shuffle=False, **kw)
    assert len(calls) == 3  # stopped at once
    assert np.array_equal(model.params, epoch_start)
    assert all(np.isfinite(s).all() for s in (model._adam_v, model._adam_m, model._velocity))
    assert len(model.loss_curve_) == 1 and model.n_iter_ == 1


def test_nan_loss_in_a_later_slice_restores_the_epoch_start(MLP, dtype):
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(30, 2)), rng.normal(size=30)
    model = slices_of(MLP([2, 4, 1], "tanh", "identity", dtype=dtype, random_state=0), 1)
    model.fit(X, y, epochs=2, batch_size=5, lr=0.01, momentum=0.9)
    epoch_start = model.params.copy()
    original = model._train_epoch
    calls = []

    def nan_in_fourth(data, order, batch_size, settings, step):
        loss, finite = original(data, order, batch_size, settings, step)
        calls.append(step)
        return (float("nan"), finite) if len(calls) == 4 else (loss, finite)

    model._train_epoch = nan_in_fourth
    with pytest.raises(ValueError, match=r"diverged: the loss became nan in epoch 3"):
        model.partial_fit(X, y, batch_size=5, lr=0.01, momentum=0.9)
    assert len(calls) == 4  # stopped at once, not at the end of the epoch
    assert np.array_equal(model.params, epoch_start)
    assert model.loss_curve_ == model.loss_curve_[:2] and model.n_iter_ == 2


@pytest.mark.parametrize("lr", [50.0, 1e6])
def test_divergence_never_leaves_non_finite_weights(MLP, dtype, lr):
    """Whatever the lr, the model after fit (raising or not) is finite."""
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(16, 3)) * 100, rng.normal(size=(16, 2)) * 100
    for optimizer, momentum in (("sgd", 0.0), ("sgd", 0.9), ("adam", 0.0)):
        model = MLP([3, 6, 2], "relu", "identity", dtype=dtype, random_state=0)
        with np.errstate(all="ignore"):
            try:
                model.fit(X, y, epochs=30, batch_size=4, lr=lr, optimizer=optimizer, momentum=momentum)
            except ValueError as e:
                assert "diverged" in str(e)
        assert np.isfinite(model.params).all()
        assert np.isfinite(model.loss_curve_).all() and len(model.loss_curve_) == model.n_iter_
        # (the restored weights are finite but can be huge: their outputs may overflow)


# ------------------------------------------------------- epochs in several calls

CONFIGS = {  # name -> (fit keywords, reduction, with sample weights)
    "sgd": (dict(lr=0.05), "mean", False),
    "nesterov-sum": (dict(lr=0.002, momentum=0.9, nesterov=True, alpha=1e-3), "sum", False),
    "adam-weighted": (dict(lr=0.01, optimizer="adam", alpha=1e-2), "mean", True),
}


@pytest.mark.parametrize("config", list(CONFIGS))
def test_an_epoch_in_slices_is_bitwise_one_call(MLP, dtype, config):
    fit, reduction, weighted = CONFIGS[config]
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(53, 4)), rng.integers(0, 3, 53)  # 53 = 7 batches of 7 + 4
    sw = rng.random(53) + 0.5 if weighted else None
    runs = {}
    for batches in (1, 3, 1000):
        model = slices_of(MLP([4, 6, 3], "tanh", reduction=reduction, dtype=dtype, random_state=0),
                          batches)
        calls = count_calls(model)
        model.fit(X, y, epochs=3, batch_size=7, sample_weight=sw, **fit)
        model.partial_fit(X, y, batch_size=7, sample_weight=sw, **fit)
        runs[batches] = model
        # 8 mini-batches per epoch; each call starts where the previous one stopped
        per_epoch = -(-8 // batches)
        steps = [8 * e + j * batches for e in range(4) for j in range(per_epoch)]
        assert [step for _, step in calls] == steps
        assert sum(rows for rows, _ in calls) == 4 * 53
    one = runs[1000]
    for batches in (1, 3):
        assert state(runs[batches]) == state(one)
        np.testing.assert_allclose(runs[batches].loss_curve_, one.loss_curve_, rtol=1e-12)


def test_slices_on_the_parallel_path_are_bitwise_one_call():
    """[784, 128, 10] at batch 128 takes the chunked (parallel) kernels and, by the
    default estimate, several calls per epoch of 10 batches."""
    rng = np.random.default_rng(5)
    X, y = rng.normal(size=(1280, 784)), rng.integers(0, 10, 1280)
    default = fastmlp.MLP([784, 128, 10], random_state=0)
    assert default._batches_per_call(128) < 10
    calls = count_calls(default)
    default.fit(X, y, epochs=1, batch_size=128, optimizer="adam", lr=1e-3)
    assert len(calls) > 1
    single = slices_of(fastmlp.MLP([784, 128, 10], random_state=0), 1000)
    single.fit(X, y, epochs=1, batch_size=128, optimizer="adam", lr=1e-3)
    assert state(default) == state(single)


def test_slice_size_depends_on_sizes_only():
    """Deterministic: a function of the layer sizes and batch size, whole batches,
    and about CALL_SECONDS of work at the pessimistic assumed speed."""
    for sizes, batch in (([784, 128, 10], 128), ([64, 32, 10], 32), ([13, 8, 2], 1), ([2000, 2000, 10], 64)):
        a, b = fastmlp.MLP(sizes), fastmlp.reference.MLP(sizes, dtype=np.float32)
        k = a._batches_per_call(batch)
        assert k == b._batches_per_call(batch) >= 1
        macs = 3 * batch * sum(i * o for i, o in zip(sizes[:-1], sizes[1:]))
        seconds = k * (macs / _base.ASSUMED_MACS_PER_SECOND + _base.ASSUMED_SECONDS_PER_BATCH)
        assert seconds <= _base.CALL_SECONDS or k == 1


# ------------------------------------------------------------------ interruption

def ctrl_c_after(k):
    """A hook that delivers SIGINT to this process after the k-th compiled call,
    as a Ctrl-C pressed while that call ran would be seen."""
    def after(calls):
        if calls == k:
            signal.raise_signal(signal.SIGINT)
    return after


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_ctrl_c_in_fit_keeps_the_last_completed_step(MLP, optimizer):
    rng = np.random.default_rng(6)
    X, y = rng.normal(size=(48, 3)), rng.integers(0, 3, 48)
    kw = dict(batch_size=4, lr=0.05, optimizer=optimizer, momentum=0.9 if optimizer == "sgd" else 0.0)
    model = slices_of(MLP([3, 5, 3], random_state=0), 2)  # 6 calls per epoch
    calls = count_calls(model, ctrl_c_after(9))  # Ctrl-C during the 3rd call of epoch 2
    with pytest.warns(UserWarning, match=r"Training interrupted by user: stopped after 6 of 12 "
                                         r"mini-batches of epoch 2"):
        assert model.fit(X, y, epochs=5, shuffle=False, **kw) is model
    assert len(calls) == 9  # the call under way finished, no further call started
    assert model.n_iter_ == 1 and len(model.loss_curve_) == 1 and model.t_ == 48
    assert model._adam_step == 18  # 12 + 6 mini-batches are in the weights
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    # the same steps without interruption: one epoch, then the first 24 rows
    twin = MLP([3, 5, 3], random_state=0)
    twin.fit(X, y, epochs=1, shuffle=False, **kw)
    twin.partial_fit(X, y, order=np.arange(24), shuffle=False, **kw)
    assert model.params.tobytes() == twin.params.tobytes()
    assert model._velocity.tobytes() == twin._velocity.tobytes()
    assert model._adam_v.tobytes() == twin._adam_v.tobytes()
    # usable: predicts and trains on
    assert np.isfinite(model.forward(X)).all()
    model.fit(X, y, epochs=1, **kw)
    assert model.n_iter_ == 2


def test_ctrl_c_in_partial_fit_raises_after_a_clean_stop(MLP):
    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 3, 40)
    model = slices_of(MLP([3, 5, 3], random_state=0), 1)
    model.partial_fit(X, y, batch_size=5, lr=0.1, momentum=0.5)
    count_calls(model, ctrl_c_after(2))
    with pytest.raises(KeyboardInterrupt), warnings.catch_warnings():
        warnings.simplefilter("error")  # partial_fit raises; it does not warn
        model.partial_fit(X, y, batch_size=5, lr=0.1, momentum=0.5)
    assert model.n_iter_ == 1 and len(model.loss_curve_) == 1 and model._adam_step == 10
    assert np.isfinite(model.params).all()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_between_epochs_and_after_the_last_call(MLP):
    rng = np.random.default_rng(8)
    X, y = rng.normal(size=(12, 3)), rng.integers(0, 3, 12)
    model = MLP([3, 4, 3], random_state=0)  # one call per epoch
    count_calls(model, ctrl_c_after(2))
    with pytest.warns(UserWarning, match=r"interrupted by user: stopped after epoch 2"):
        model.fit(X, y, epochs=10, batch_size=4)
    assert model.n_iter_ == 2 and len(model.loss_curve_) == 2
    model = MLP([3, 4, 3], random_state=0)
    count_calls(model, ctrl_c_after(3))  # during the last call: training is complete
    with pytest.warns(UserWarning, match=r"stopped after epoch 3"):
        model.fit(X, y, epochs=3, batch_size=4)
    assert model.n_iter_ == 3


def test_a_callers_own_sigint_handler_is_left_alone(MLP):
    """With a handler of the caller's installed, fastmlp does not replace it; a
    KeyboardInterrupt it raises still ends fit with the warning and whole steps."""
    rng = np.random.default_rng(9)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 3, 40)
    seen = []

    def handler(signum, frame):
        seen.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        model = slices_of(MLP([3, 5, 3], random_state=0), 1)
        count_calls(model, ctrl_c_after(3))
        with pytest.warns(UserWarning, match=r"Training interrupted by user"):
            model.fit(X, y, epochs=3, batch_size=5, lr=0.1)
        assert seen == [signal.SIGINT] and signal.getsignal(signal.SIGINT) is handler
    finally:
        signal.signal(signal.SIGINT, previous)
    assert model.n_iter_ == 0 and np.isfinite(model.params).all()


def test_training_in_another_thread_leaves_the_sigint_handler_alone(MLP):
    """Only the main thread receives signals (and may set a handler): a fit run in
    another thread trains to the end and never installs fastmlp's handler."""
    import threading

    rng = np.random.default_rng(10)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 3, 40)
    model = slices_of(MLP([3, 5, 3], random_state=0), 1)
    seen, errors = [], []
    count_calls(model, lambda calls: seen.append(signal.getsignal(signal.SIGINT)))

    def work():
        try:
            model.fit(X, y, epochs=2, batch_size=5, lr=0.1)
        except BaseException as e:  # noqa: BLE001 -- reported below
            errors.append(e)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=300)
    assert not errors and model.n_iter_ == 2
    assert len(seen) == 16 and all(h is signal.default_int_handler for h in seen)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_handler_is_restored_after_errors(MLP):
    model = MLP([2, 2])
    with pytest.raises(ValueError):
        model.fit(np.ones((3, 2)), [0, 1, 5])
    X, y = overflowing_problem(np.float64)
    with np.errstate(all="ignore"), pytest.raises(ValueError, match="diverged"):
        MLP([2, 3, 1], "relu", "identity", random_state=0).fit(X, y, epochs=2, batch_size=4, lr=10.0)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_in_an_estimator_fit_warns_once_and_keeps_a_usable_model(monkeypatch):
    """The estimators loop over MLP.partial_fit; its KeyboardInterrupt ends their
    loop, and they warn as scikit-learn does."""
    pytest.importorskip("sklearn")
    from fastmlp.estimators import MLPClassifier

    original = fastmlp.MLP._train_epoch
    calls = []

    def hook(self, *args):
        result = original(self, *args)
        calls.append(1)
        if len(calls) == 4:
            signal.raise_signal(signal.SIGINT)
        return result

    monkeypatch.setattr(fastmlp.MLP, "_train_epoch", hook)
    rng = np.random.default_rng(13)
    X, y = rng.normal(size=(60, 4)), rng.integers(0, 3, 60)
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=50, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit(X, y)
    messages = [str(w.message) for w in caught if "interrupted" in str(w.message).lower()]
    assert messages == ["Training interrupted by user."]
    assert len(calls) == 4 and clf.n_iter_ == 3
    assert np.isfinite(clf.predict_proba(X)).all()


SIGINT_SCRIPT = textwrap.dedent("""
    import json, sys, time, warnings
    import numpy as np
    import fastmlp, fastmlp.reference
    cls = fastmlp.MLP if sys.argv[1] == "fastmlp" else fastmlp.reference.MLP
    rng = np.random.default_rng(0)
    n = 8192  # one epoch: 1.4e11 multiply-adds, 3-4 s on an idle 2-core machine, far more when busy
    X = rng.normal(size=(n, 784)).astype(np.float32)
    y = rng.integers(0, 10, n)
    model = cls([784, 2048, 2048, 10], dtype=np.float32, random_state=0)
    model.fit(X[:256], y[:256], epochs=1, batch_size=128)  # compiles (or loads the cache)
    print("ready", flush=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        returned = model.fit(X, y, epochs=1000, batch_size=128, lr=0.01)
    print("returned", flush=True)
    ok = returned is model and bool(np.isfinite(model.params).all())
    proba = model.predict_proba(X[:100])
    model.fit(X[:512], y[:512], epochs=1, batch_size=128)  # trains on afterwards
    print(json.dumps({"ok": ok, "warnings": [str(w.message) for w in caught],
                      "n_iter": model.n_iter_, "finite_proba": bool(np.isfinite(proba).all()),
                      "rows_sum_to_1": bool(np.allclose(proba.sum(axis=1), 1, atol=1e-5))}), flush=True)
""")


@pytest.mark.parametrize("twin", list(TWINS))
def test_sigint_during_a_long_fit_returns_within_a_second_or_two(twin):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", SIGINT_SCRIPT, twin], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        time.sleep(1.0)  # well inside the first epoch
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        line = proc.stdout.readline().strip()
        waited = time.monotonic() - sent
        assert line == "returned", proc.stderr.read()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    # one compiled call (one mini-batch here) takes ~0.05-0.5 s; an epoch in one call
    # would take seconds: 2 s tells the two apart and leaves room for a busy machine
    assert waited < 2.0, f"fit returned {waited:.2f} s after SIGINT"
    assert result["ok"] and result["finite_proba"] and result["rows_sum_to_1"]
    assert len(result["warnings"]) == 1 and "Training interrupted by user" in result["warnings"][0]
    stopped = re.search(r"stopped after \d+ of 64 mini-batches of epoch (\d+)", result["warnings"][0])
    assert stopped, result["warnings"][0]  # inside an epoch, not at its end
    # the interrupted epoch was not counted; the one of the later fit was
    assert result["n_iter"] == int(stopped.group(1))


# ------------------------------------------------------------- interrupted saves

SAVE_SCRIPT = textwrap.dedent("""
    import os, sys
    import numpy as np
    import fastmlp
    path = sys.argv[1]
    model = fastmlp.MLP([1000, 1000, 10], random_state=0)  # ~8 MB of float64
    done = 0  # the last version whose save returned
    model.params[:] = done
    model.save(path)
    print("saved", flush=True)
    while True:
        try:
            while True:
                model.params[:] = done + 1
                model.save(path)
                done += 1
        except KeyboardInterrupt:
            print("interrupted", done, flush=True)
            sys.stdin.readline()  # the parent looks at the file, then lets us go on
""")


def test_signals_during_saves_never_leave_a_broken_file(tmp_path):
    """Ctrl-C (10 times, at random moments of back-to-back saves) and then kill -9:
    the file always loads, and holds one whole version of the weights."""
    path = tmp_path / "m.fmlp"
    proc = subprocess.Popen([sys.executable, "-c", SAVE_SCRIPT, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rng = np.random.default_rng(0)
    interrupted = []
    try:
        assert proc.stdout.readline().strip() == "saved", proc.stderr.read()
        for delay in rng.uniform(0.01, 0.15, 10):
            time.sleep(delay)
            proc.send_signal(signal.SIGINT)
            line = proc.stdout.readline().split()
            assert line[:1] == ["interrupted"], proc.stderr.read()
            interrupted.append(int(line[1]))
            # the file is whole: the last version saved, or the one under way if the
            # signal came after its rename but before save returned
            back = fastmlp.load(path)
            values = np.unique(back.params)
            assert len(values) == 1 and values[0] in (interrupted[-1], interrupted[-1] + 1)
            leftovers = [p for p in os.listdir(tmp_path) if p != "m.fmlp"]
            assert not leftovers  # the temporary file of the interrupted save was removed
            proc.stdin.write("go on\n")
            proc.stdin.flush()
        time.sleep(0.05)
        proc.kill()  # SIGKILL: no clean-up code runs at all
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    back = fastmlp.load(path)
    assert len(np.unique(back.params)) == 1 and np.unique(back.params)[0] >= interrupted[-1]
    # a kill -9 mid-save may leave the temporary file (never the target) behind
    assert all(p == "m.fmlp" or (p.startswith(".m.fmlp.") and p.endswith(".tmp"))
               for p in os.listdir(tmp_path))


# zipfile's ZipFile.__del__ retries the close that failed and reports it as unraisable
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("where", ["creating the temporary file", "inside a member's write",
                                   "at the rename"])
def test_ctrl_c_at_the_awkward_moments_of_a_save(tmp_path, monkeypatch, where):
    """Ctrl-C where clean-up is hardest: just after the temporary file is created
    (before its name could be returned), inside zipfile's member writer (whose
    clean-up turns the interrupt into a ValueError), at the rename. The caller
    sees a KeyboardInterrupt, the old file is intact, no temporary file is left."""
    from fastmlp import io

    model = fastmlp.MLP([3, 4, 2], random_state=0)
    path = tmp_path / "m.fmlp"
    model.save(path)
    before, weights = path.read_bytes(), model.params.copy()
    model.params[:] = 1.0
    if where == "creating the temporary file":
        real_open = os.open

        def interrupted_open(name, *args, **kwargs):
            fd = real_open(name, *args, **kwargs)
            if str(name).endswith(".tmp"):
                os.close(fd)
                raise KeyboardInterrupt
            return fd

        monkeypatch.setattr(io.os, "open", interrupted_open)
    elif where == "inside a member's write":
        import zipfile

        def interrupted_close(self):
            # Ctrl-C as the member's writer starts to close: the writer stays
            # open, and zipfile's ZipFile.close then raises a ValueError
            monkeypatch.undo()
            raise KeyboardInterrupt

        monkeypatch.setattr(zipfile._ZipWriteFile, "close", interrupted_close)
    else:
        def interrupted_replace(src, dst):
            raise KeyboardInterrupt

        monkeypatch.setattr(io.os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        model.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.fmlp"]
    assert np.array_equal(fastmlp.load(path).params, weights)


# ------------------------------------------------------------ numerical extremes

OUTPUT_CASES = {  # output -> (output units, y for 4 rows)
    "softmax": (3, np.array([0, 1, 2, 1])),
    "sigmoid": (2, np.array([[0, 1], [1, 0], [1, 1], [0, 0]], float)),
    "identity": (2, np.ones((4, 2))),
    "exp": (2, np.ones((4, 2))),
}


def finite_or_clear_error(call, match="diverged"):
    """Run call(); it returns something finite or raises a ValueError matching `match`."""
    with np.errstate(all="ignore"):
        try:
            result = call()
        except ValueError as e:
            assert re.search(match, str(e)), str(e)
            return None
    return result


@pytest.mark.parametrize("sign", [1, -1], ids=["+", "-"])
@pytest.mark.parametrize("output", ["softmax", "sigmoid", "identity"])
def test_logits_of_1e4(MLP, dtype, output, sign):
    k, y = OUTPUT_CASES[output]
    model = MLP([3, 4, k], "relu", output, dtype=dtype, random_state=0)
    model.coefs_[1][...] = 0
    model.intercepts_[1][...] = sign * np.array([1e4, -1e4, 0][:k], dtype=dtype)
    X = np.ones((4, 3))
    out = model.forward(X)
    assert out.dtype == dtype and np.isfinite(out).all()
    if output in ("softmax", "sigmoid"):
        assert ((out >= 0) & (out <= 1)).all()
        proba = model.predict_proba(X)
        assert np.isfinite(proba).all()
    if output == "softmax":
        np.testing.assert_allclose(out.sum(axis=1), 1, rtol=1e-6)
    loss, grads = model.loss_and_grad(X, y)
    assert np.isfinite(loss) and np.isfinite(grads.flat).all()
    assert np.isfinite(model.input_grad(X, y)).all()
    if output != "identity":  # a wrong class at 1e4 costs 1e4 (or 2e4), not inf
        assert 1e3 < loss < 1e5
    model.fit(X, y, epochs=3, batch_size=2, lr=1e-3)
    assert np.isfinite(model.params).all() and np.isfinite(model.loss_curve_).all()


def test_exp_output_overflow_is_a_clear_error_in_training(MLP, dtype):
    """exp(1e4) is infinite in any float: training stops with the divergence
    error and finite weights; a logit of -1e4 is fine (exp -> 0)."""
    k, y = OUTPUT_CASES["exp"]
    model = MLP([3, 4, k], "relu", "exp", dtype=dtype, random_state=0)
    model.coefs_[1][...] = 0
    model.intercepts_[1][...] = np.array([1e4, -1e4], dtype=dtype)
    before = model.params.copy()
    with np.errstate(all="ignore"), pytest.raises(ValueError, match="diverged"):
        model.fit(np.ones((4, 3)), y, epochs=2, batch_size=2, lr=1e-3)
    assert np.array_equal(model.params, before)


def trained_on_1e30(MLP, dtype, output, value):
    k, _ = OUTPUT_CASES[output]
    rng = np.random.default_rng(10)
    X = rng.normal(size=(8, 4)) * value
    y = {"softmax": rng.integers(0, 3, 8), "sigmoid": rng.integers(0, 2, (8, k)).astype(float),
         "identity": rng.normal(size=(8, k)), "exp": rng.poisson(2.0, (8, k)).astype(float)}[output]
    model = MLP([4, 5, k], "relu", output, dtype=dtype, random_state=0)
    return model, finite_or_clear_error(lambda: model.fit(X, y, epochs=3, batch_size=4, lr=0.01))


@pytest.mark.parametrize("value", [1e30, -1e30])
@pytest.mark.parametrize("output", list(OUTPUT_CASES))
def test_inputs_of_1e30(MLP, dtype, output, value):
    """Training on inputs of 1e30 ends with finite weights and loss curve, or
    with the divergence error (and the finite weights of the previous epoch)."""
    model, fitted = trained_on_1e30(MLP, dtype, output, value)
    if fitted is not None:
        assert np.isfinite(model.loss_curve_).all() and len(model.loss_curve_) == 3
    assert np.isfinite(model.params).all()
    assert len(model.loss_curve_) == model.n_iter_


@pytest.mark.parametrize("case", ["exp-logit-1e4", "trained-on-1e30"])
def test_overflowing_outputs_in_prediction_are_a_clear_error(MLP, case):
    """Finite weights whose outputs overflow: an exp output at a logit of 1e4, or
    a model trained on inputs of 1e30 (huge finite weights) predicting ordinary rows."""
    if case == "exp-logit-1e4":
        model = MLP([3, 4, 2], "relu", "exp", random_state=0)
        model.intercepts_[1][...] = np.array([1e4, -1e4])
        X = np.ones((4, 3))
    else:
        model, _ = trained_on_1e30(MLP, np.float64, "softmax", 1e30)
        X = np.random.default_rng(0).normal(size=(3, 4))
    with np.errstate(all="ignore"):
        try:
            out = model.forward(X)
        except ValueError as e:
            assert "overflow" in str(e)
            return
    assert np.isfinite(out).all()


def test_constant_features(MLP, dtype):
    X = np.full((20, 4), 3.0)
    y = np.arange(20) % 3
    model = MLP([4, 5, 3], dtype=dtype, random_state=0).fit(X, y, epochs=20, batch_size=6, lr=0.1)
    out = model.forward(X)
    assert np.isfinite(model.params).all() and np.isfinite(out).all()
    assert np.array_equal(out, np.broadcast_to(out[:1], out.shape))  # same input, same output
    # it learns the class frequencies: 7, 7, 6 of 20
    np.testing.assert_allclose(out[0], [7 / 20, 7 / 20, 6 / 20], atol=0.05)


@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
def test_a_single_class(MLP, dtype, output):
    rng = np.random.default_rng(11)
    X = rng.normal(size=(30, 3))
    y = np.zeros(30, int) if output == "softmax" else np.ones(30)
    model = MLP([3, 4, 3 if output == "softmax" else 1], "relu", output, dtype=dtype, random_state=0)
    model.fit(X, y, epochs=30, batch_size=10, lr=0.5)
    assert np.isfinite(model.params).all()
    assert model.loss_curve_[-1] < model.loss_curve_[0] and np.isfinite(model.loss_curve_).all()
    assert (model.predict(X) == y).all()


def test_a_single_sample_and_batches_larger_than_the_data(MLP, dtype):
    rng = np.random.default_rng(12)
    X, y = rng.normal(size=(1, 3)), np.array([2])
    model = MLP([3, 4, 3], dtype=dtype, random_state=0)
    model.fit(X, y, epochs=5, batch_size=32, lr=0.1, optimizer="adam")
    model.partial_fit(X, y, batch_size=1, lr=0.1, optimizer="adam", sample_weight=[2.0])
    assert model.n_iter_ == 6 and np.isfinite(model.params).all()
    assert model.predict(X)[0] == 2
    # batch_size > n is the whole data in one batch: bitwise the same as batch_size = n
    X, y = rng.normal(size=(7, 3)), rng.integers(0, 3, 7)
    a = MLP([3, 4, 3], dtype=dtype, random_state=1).fit(X, y, epochs=3, batch_size=1000, momentum=0.9)
    b = MLP([3, 4, 3], dtype=dtype, random_state=1).fit(X, y, epochs=3, batch_size=7, momentum=0.9)
    assert state(a) == state(b) and a.loss_curve_ == b.loss_curve_


def test_extreme_but_finite_float32_inputs(MLP):
    """Values near float32's limits: finite in float32 is accepted, overflow to
    inf on conversion is refused, subnormals and zeros train normally."""
    model = MLP([2, 3, 2], dtype=np.float32, random_state=0)
    y = np.array([0, 1, 0, 1])
    tiny = np.array([[1e-45, 0.0], [0.0, -1e-45], [1e-40, 1e-40], [0.0, 0.0]])
    model.fit(tiny, y, epochs=2, batch_size=2)
    assert np.isfinite(model.params).all()
    big = np.array([[3e38, -3e38], [1.0, 2.0], [0.0, 0.0], [1.0, 1.0]])
    finite_or_clear_error(lambda: model.fit(big, y, epochs=2, batch_size=2))
    assert np.isfinite(model.params).all()
    with np.errstate(over="ignore"), pytest.raises(ValueError, match="NaN or infinity"):
        model.fit(big * 10, y, epochs=1)
