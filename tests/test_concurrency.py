"""Determinism and concurrency: the same seed gives the same bits across runs,
processes, thread counts, and fits run concurrently in Python threads; numba's
workqueue layer never aborts under concurrent parallel kernels; a forked child
can predict and train after its parent trained (with the serial kernels, same bits).

tests/test_threads.py covers 1 vs 2 numba threads for SGD with momentum over
four layer shapes; this file adds Adam, epochs split into several calls, and
concurrency. Threading-layer and fork cases run in subprocesses."""
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading

import numba
import numpy as np
import pytest

import fastmlp
import fastmlp.reference

TWINS = {"fastmlp": fastmlp.MLP, "reference": fastmlp.reference.MLP}
needs_two = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
LARGE = ([784, 128, 10], 128)  # takes the parallel (chunked) kernels at batch 128
SMALL = ([64, 32, 10], 32)


def data(sizes, n, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, sizes[0])).astype(dtype), rng.integers(0, sizes[-1], n)


def digest(model):
    h = hashlib.sha256()
    for a in (model.params, model._velocity, model._adam_m, model._adam_v):
        h.update(a.tobytes())
    h.update(np.asarray(model.loss_curve_).tobytes())
    return h.hexdigest()


FITS = {  # name -> fit keywords
    "sgd": dict(lr=0.05),
    "momentum": dict(lr=0.02, momentum=0.9, nesterov=True, alpha=1e-3),
    "adam": dict(lr=1e-3, optimizer="adam"),
}


def fit_one(cls, sizes, batch, seed, fit, n, dtype=np.float64, random_state=None,
            batches_per_call=None):
    X, y = data(sizes, n, seed, dtype)
    rs = seed if random_state is None else random_state
    model = cls(sizes, dtype=dtype, random_state=rs)
    if batches_per_call is not None:
        model._batches_per_call = lambda batch_size: batches_per_call
    model.fit(X, y, epochs=2, batch_size=batch, **fit)
    return model


@pytest.mark.parametrize("fit", list(FITS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("twin", list(TWINS))
def test_same_seed_same_bits(twin, dtype, fit):
    cls = TWINS[twin]
    runs = [digest(fit_one(cls, *SMALL, 1, FITS[fit], 200, dtype)) for _ in range(2)]
    gen = [digest(fit_one(cls, *SMALL, 1, FITS[fit], 200, dtype, np.random.default_rng(7)))
           for _ in range(2)]
    assert runs[0] == runs[1] and gen[0] == gen[1] and runs[0] != gen[0]


FRESH_SCRIPT = textwrap.dedent("""
    import hashlib, json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from test_concurrency import FITS, LARGE, SMALL, digest, fit_one
    import fastmlp
    out = {"small-adam": digest(fit_one(fastmlp.MLP, *SMALL, 3, FITS["adam"], 500)),
           "large-f32-momentum": digest(fit_one(fastmlp.MLP, *LARGE, 4, FITS["momentum"], 640, np.float32))}
    print(json.dumps(out))
""")


def test_same_bits_in_a_fresh_process():
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-c", FRESH_SCRIPT, os.path.dirname(__file__)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    there = json.loads(out.stdout)
    assert there["small-adam"] == digest(fit_one(fastmlp.MLP, *SMALL, 3, FITS["adam"], 500))
    assert there["large-f32-momentum"] == digest(
        fit_one(fastmlp.MLP, *LARGE, 4, FITS["momentum"], 640, np.float32))


@needs_two
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
def test_adam_over_split_epochs_on_one_and_two_threads(dtype):
    """The parallel path with Adam, each epoch of 5 batches in 3 calls."""
    results = []
    previous = fastmlp.get_num_threads()
    try:
        for threads in (1, 2):
            fastmlp.set_num_threads(threads)
            model = fit_one(fastmlp.MLP, *LARGE, 5, FITS["adam"], 640, dtype, batches_per_call=2)
            results.append((digest(model), model.forward(data(LARGE[0], 50, 9)[0]).tobytes()))
    finally:
        fastmlp.set_num_threads(previous)
    assert results[0] == results[1]


def run_in_threads(jobs):
    """Run the callables at once, one Python thread each; re-raise their errors."""
    results, errors = [None] * len(jobs), []
    barrier = threading.Barrier(len(jobs))

    def work(i):
        try:
            barrier.wait()
            results[i] = jobs[i]()
        except BaseException as e:  # noqa: BLE001 -- reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads)
    if errors:
        raise errors[0]
    return results


def summary(model, X, y):
    loss, grads = model.loss_and_grad(X, y)
    return digest(model), model.forward(X).tobytes(), loss, grads.flat.tobytes()


@pytest.mark.parametrize("shape", ["small", "large"])
@pytest.mark.parametrize("twin", list(TWINS))
def test_four_concurrent_fits_match_sequential_ones(twin, shape):
    """Four models trained at once in four Python threads (the kernels release the
    GIL, so they really overlap) give the bits of the same four trained one by one."""
    cls = TWINS[twin]
    sizes, batch = SMALL if shape == "small" else LARGE
    n = 400 if shape == "small" else 384
    if twin == "reference" and shape == "large":
        n = 256

    def job(seed):
        def run():
            fit = list(FITS.values())[seed % 3]
            model = fit_one(cls, sizes, batch, seed, fit, n)
            X, y = data(sizes, 130, seed + 100)
            return summary(model, X, y)
        return run

    concurrent = run_in_threads([job(seed) for seed in range(4)])
    sequential = [job(seed)() for seed in range(4)]
    assert concurrent == sequential
    assert len({c[0] for c in concurrent}) == 4  # four different models


WORKQUEUE_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from test_concurrency import FITS, LARGE, data, fit_one, run_in_threads, summary
    import numba, fastmlp

    def job(seed):
        def run():
            model = fit_one(fastmlp.MLP, *LARGE, seed, list(FITS.values())[seed % 3], 384)
            X, y = data(LARGE[0], 300, seed + 100)  # 300 rows: predict and loss go parallel too
            return summary(model, X, y)
        return run

    concurrent = run_in_threads([job(seed) for seed in range(4)])  # before any parallel run
    again = run_in_threads([job(seed) for seed in range(4)])       # the layer is known now
    sequential = [job(seed)() for seed in range(4)]
    print(json.dumps({"layer": numba.threading_layer(),
                      "same": concurrent == sequential and again == sequential}))
""")


def test_workqueue_layer_survives_concurrent_parallel_kernels():
    """numba's workqueue layer aborts the process when two threads enter parallel
    kernels at once; fastmlp serialises those calls, so this finishes, with the
    same bits as sequential fits."""
    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    out = subprocess.run([sys.executable, "-c", WORKQUEUE_SCRIPT, os.path.dirname(__file__)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"exit {out.returncode}: {out.stderr[-2000:]}"
    result = json.loads(out.stdout)
    assert result == {"layer": "workqueue", "same": True}


# a fork script's helper (needs json and os): task() in a forked child, its answer
# reported through a pipe; a child that dies never takes the parent with it
IN_CHILD = textwrap.dedent("""
    def in_child(task):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                answer = task()
            except BaseException as e:
                answer = {"error": type(e).__name__, "message": str(e)}
            os.write(w, json.dumps(answer).encode())
            os._exit(0)
        os.close(w)
        chunks = []
        while True:
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        _, status = os.waitpid(pid, 0)
        return {"status": status, "answer": json.loads(b"".join(chunks) or b"null")}
""")

FORK_SCRIPT = IN_CHILD + textwrap.dedent("""
    import json, multiprocessing, os, sys
    import numpy as np
    import numba, fastmlp

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(600, 784)), rng.integers(0, 10, 600)
    model = fastmlp.MLP([784, 128, 10], random_state=0).fit(X, y, epochs=1, batch_size=128)
    small = fastmlp.MLP([20, 8, 3], random_state=0)
    parent_out = model.forward(X)
    result = {"layer": numba.threading_layer(), "parent_loss": model.loss(X, y)}

    def predict():
        out = model.forward(X)
        return {"bitwise": out.tobytes() == parent_out.tobytes(),
                "max_diff": float(np.abs(out - parent_out).max()),
                "labels": bool((out.argmax(1) == parent_out.argmax(1)).all())}

    def train_large():
        model.fit(X, y, epochs=1, batch_size=128)
        return {"trained": True, "finite": bool(np.isfinite(model.params).all())}

    def train_small():
        small.fit(rng.normal(size=(50, 20)), rng.integers(0, 3, 50), epochs=2, batch_size=10)
        return {"trained": True, "finite": bool(np.isfinite(small.params).all())}

    def loss_large():
        return {"loss": model.loss(X, y)}

    def pool_predict(rows):
        return model.predict(X[rows])

    result["predict"] = in_child(predict)
    result["train_large"] = in_child(train_large)
    result["train_small"] = in_child(train_small)
    result["loss_large"] = in_child(loss_large)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        try:  # a killed worker is replaced and its task never ends: wait a bounded time
            labels = pool.map_async(pool_predict, [slice(0, 300), slice(300, 600)]).get(timeout=60)
            result["pool"] = bool((np.concatenate(labels) == parent_out.argmax(1)).all())
        except multiprocessing.TimeoutError:
            result["pool"] = "timed out"
    result["parent_still_works"] = bool(np.array_equal(model.forward(X), parent_out))
    print(json.dumps(result))
""")


@pytest.fixture(scope="module")
def fork_results():
    """The fork script under the default (omp) layer and under workqueue."""
    results = {}
    for layer in ("default", "workqueue"):
        env = dict(os.environ)
        if layer == "workqueue":
            env["NUMBA_THREADING_LAYER"] = "workqueue"
        out = subprocess.run([sys.executable, "-c", FORK_SCRIPT], env=env, capture_output=True, text=True,
                             timeout=180)
        assert out.returncode == 0, f"{layer}: exit {out.returncode}: {out.stderr[-2000:]}"
        results[layer] = json.loads(out.stdout)
    return results


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_predicts_after_a_parallel_fit_in_the_parent(fork_results):
    for layer, r in fork_results.items():
        assert r["predict"]["status"] == 0, (layer, r)  # not killed (SIGTERM is status 15)
        assert r["predict"]["answer"]["labels"] and r["predict"]["answer"]["max_diff"] < 1e-12, (layer, r)
        assert r["pool"] is True and r["parent_still_works"], (layer, r)
        assert r["train_small"]["answer"] == {"trained": True, "finite": True}, (layer, r)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_trains_large_models_with_the_serial_kernels(fork_results):
    """Under omp a forked child must not enter the parallel kernels: it runs the serial
    variant, which gives the parent's parallel results bit for bit."""
    for layer, r in fork_results.items():
        for task in ("train_large", "loss_large"):
            assert r[task]["status"] == 0, (layer, task, r[task])  # not killed
        assert r["train_large"]["answer"] == {"trained": True, "finite": True}, (layer, r)
        assert r["loss_large"]["answer"]["loss"] == r["parent_loss"], (layer, r)


CLEAN_PARENT_SCRIPT = IN_CHILD + textwrap.dedent("""
    import hashlib, json, os
    import numpy as np
    import numba  # but not fastmlp: the children import it

    def fit(threads):
        import fastmlp
        from fastmlp import core

        fastmlp.set_num_threads(threads)
        rng = np.random.default_rng(0)
        X, y = rng.normal(size=(600, 784)), rng.integers(0, 10, 600)
        model = fastmlp.MLP([784, 128, 10], random_state=0).fit(X, y, epochs=1, batch_size=128)
        return {"parallel": core._kernel_mode(128 * 784 * 128)[1] is True,
                "params": hashlib.sha256(model.params.tobytes()).hexdigest()}

    print(json.dumps({threads: in_child(lambda: fit(threads)) for threads in (2, 1)}))
""")


@pytest.mark.skipif(not hasattr(os, "fork") or numba.config.NUMBA_NUM_THREADS < 2,
                    reason="needs fork and 2 threads")
def test_child_forked_before_fastmlp_is_imported_runs_the_parallel_kernels():
    """A child that imports fastmlp itself starts numba's threads itself, so it may run
    the parallel kernels (the asv suite forks its benchmarks so): they run, and give the
    serial kernels' bits."""
    out = subprocess.run([sys.executable, "-c", CLEAN_PARENT_SCRIPT], capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    two, one = json.loads(out.stdout).values()
    assert two["status"] == 0 and one["status"] == 0, (two, one)  # not killed
    assert two["answer"]["parallel"] is True and one["answer"]["parallel"] is False, (two, one)
    assert two["answer"]["params"] == one["answer"]["params"]


CACHE_STEPS = [  # three processes sharing one fresh kernel cache
    "fastmlp.MLP([4, 5, 3], 'tanh', random_state=0).loss(np.zeros((2, 4)), [0, 1])",
    "fastmlp.MLP([4, 5, 3], 'tanh', random_state=0).forward(np.zeros((1, 4)))\n"
    "fastmlp.MLP([4, 3, 2], 'relu', 'identity', random_state=0, dtype=np.float32).forward(np.zeros((1, 4)))",
    "fastmlp.MLP([4, 5, 3], 'tanh', random_state=0).forward(np.zeros((1, 4)))",
]


@pytest.mark.skipif(os.environ.get("FASTMLP_SLOW") != "1", reason="compiles from scratch (~30 s); "
                                                                   "FASTMLP_SLOW=1 runs it")
def test_processes_sharing_a_fresh_kernel_cache_do_not_crash(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    for step in CACHE_STEPS:
        out = subprocess.run([sys.executable, "-c", "import numpy as np, fastmlp\n" + step], env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, f"exit {out.returncode} in:\n{step}\n{out.stderr[-1500:]}"
