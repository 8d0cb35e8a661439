"""Speed of one training epoch: fastmlp against its NumPy twin, scikit-learn and PyTorch.

    python -m fastmlp.bench                                   # quick subset
    python -m fastmlp.bench --workload all --dtype both --threads 1
    python -m fastmlp.bench --layers 784,128,10 --output softmax --n 60000 --batch 128
    python -m fastmlp.bench --json > speed.json
    python -m fastmlp.bench --workload deep --threads 2 --scaling --impl fastmlp
    python -m fastmlp.bench --workload tiny-b32 --impl fastmlp --first-fit --cold-compile

Each workload is one epoch of plain mini-batch SGD (lr 0.01, no momentum, no L2,
shuffled) on synthetic data with a fixed seed. Every implementation trains one
warm-up epoch (numba compiles, scikit-learn initialises its weights), then the best
epoch of `--repeat` rounds is reported as samples/s, next to the achieved GFLOP/s and
its share of the GEMM peak measured in the same run (a 2048^3 numpy matmul). In each
round the implementations take turns (`time_interleaved`), so that a ratio compares
epochs run moments apart on a machine whose speed drifts.

FLOP per sample = 6 * sum(fan_in * fan_out) - 2 * fan_in * fan_out of the first layer:
forward, weight gradient and input gradient are 2 FLOP per weight each, and the first
layer needs no input gradient. Biases and activations are not counted.

scikit-learn and PyTorch are optional: an implementation that is not installed is
listed as skipped. `run`, `make_trainer`, `time_epochs`, `gemm_peak_gflops`,
`first_fit_seconds`, `cold_compile_seconds` and `thread_scaling` are what the tests and
the asv suite (asv_benchmarks/) reuse.
"""

import argparse
import dataclasses
import gc
import importlib.metadata
import importlib.util
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

import fastmlp


@dataclasses.dataclass(frozen=True)
class Case:
    """One workload at one batch size."""

    name: str
    layers: tuple
    output: str
    n: int
    batch: int
    activation: str = "relu"

    @property
    def label(self):
        return f"{self.name}-b{self.batch}"

    @property
    def shape(self):
        return "-".join(str(s) for s in self.layers)


def _cases(name, layers, output, n, batches):
    return [Case(name, layers, output, n, b) for b in batches]


# name -> its cases; a name stands for all its batch sizes, a label ("mnist-b32") for one.
WORKLOADS = {
    "tiny": _cases("tiny", (13, 8, 1), "sigmoid", 303, (1, 32)),
    "digits": _cases("digits", (64, 32, 10), "softmax", 1797, (32,)),
    "mnist": _cases("mnist", (784, 128, 10), "softmax", 60000, (128, 32)),
    "wide": _cases("wide", (1000, 100, 10), "identity", 6400, (64,)),
    "deep": _cases("deep", (784, 512, 512, 10), "softmax", 20000, (256,)),
}
CASES = {c.label: c for cases in WORKLOADS.values() for c in cases}
# About a minute on 2 cores with every implementation installed, most of it mnist's
# 60000 samples and PyTorch's import (about 8 s).
DEFAULT_WORKLOADS = ("tiny", "digits", "mnist-b128")

IMPLEMENTATIONS = ("fastmlp", "reference", "sklearn", "torch")
DTYPES = ("float64", "float32")
LEARNING_RATE = 0.01


def get_cases(names, n=None, batch=None):
    """Cases for workload names or labels ("all" for every one); n/batch override theirs."""
    cases = []
    for name in names:
        if isinstance(name, Case):
            found = [name]
        elif name == "all":
            found = list(CASES.values())
        elif name in WORKLOADS:
            found = WORKLOADS[name]
        elif name in CASES:
            found = [CASES[name]]
        else:
            known = ", ".join(["all", *WORKLOADS, *CASES])
            raise ValueError(f"unknown workload {name!r}; choose from {known}")
        cases += found
    if n is not None:
        cases = [dataclasses.replace(c, n=n) for c in cases]
    if batch is not None:
        cases = [dataclasses.replace(c, batch=batch) for c in cases]
    # "all" plus a name would list cases twice; keep the first of each
    unique = []
    for c in cases:
        if c not in unique:
            unique.append(c)
    return unique


def flop_per_sample(layers):
    """FLOP of one training step per sample (see the module docstring)."""
    weights = [fan_in * fan_out for fan_in, fan_out in itertools.pairwise(layers)]
    return 6 * sum(weights) - 2 * weights[0]


def make_data(case, dtype, seed=0):
    """Synthetic (X, y) for a case: y in the format fastmlp takes for the case's output."""
    rng = np.random.default_rng(seed)
    n_in, k = case.layers[0], case.layers[-1]
    # Rows of norm about 1 keep plain SGD at lr 0.01 stable on every workload even after
    # the thousands of epochs asv may run, and keep values far from subnormal numbers.
    X = (rng.standard_normal((case.n, n_in)) / np.sqrt(n_in)).astype(dtype)
    if case.output == "softmax":
        y = rng.integers(0, k, case.n)
    elif case.output == "sigmoid":
        y = rng.integers(0, 2, (case.n, k))
    elif case.output == "identity":
        y = rng.standard_normal((case.n, k)).astype(dtype)
    elif case.output == "exp":
        y = rng.poisson(1.0, (case.n, k)).astype(dtype)
    else:
        raise ValueError(f"unknown output {case.output!r}")
    if y.ndim == 2 and k == 1:
        y = y[:, 0]
    return X, y


# ------------------------------------------------------------------ implementations
class Unavailable(Exception):
    """This implementation is not installed or cannot train this case."""


def unavailable_reason(impl):
    """None when `impl` can run here, else why not."""
    if impl == "fastmlp":
        return None if hasattr(fastmlp, "MLP") else "fastmlp.MLP does not exist yet"
    if impl == "reference":
        return None
    if impl == "sklearn":
        return None if importlib.util.find_spec("sklearn") else "scikit-learn is not installed"
    if impl == "torch":
        return None if importlib.util.find_spec("torch") else "PyTorch is not installed"
    raise ValueError(f"unknown implementation {impl!r}; choose from {IMPLEMENTATIONS}")


class _TwinTrainer:
    """fastmlp.MLP or fastmlp.reference.MLP: one epoch is one partial_fit call."""

    def __init__(self, model_class, case, dtype, X, y, lr):
        self.model = model_class(case.layers, case.activation, case.output,
                                 dtype=dtype, random_state=0)
        self.X, self.y, self.batch, self.lr = X, y, case.batch, lr

    def epoch(self):
        self.model.partial_fit(self.X, self.y, batch_size=self.batch, lr=self.lr)

    def predict(self):
        return self.model.predict(self.X)


class _SklearnTrainer:
    """MLPClassifier / MLPRegressor; one epoch is one partial_fit call (solver 'sgd')."""

    def __init__(self, case, dtype, X, y, lr):
        from sklearn.neural_network import MLPClassifier, MLPRegressor

        k = case.layers[-1]
        if len(case.layers) < 3:
            raise Unavailable("scikit-learn needs at least one hidden layer")
        if case.output == "softmax" and k == 2:
            raise Unavailable("scikit-learn trains 2 classes with one logistic unit, not softmax")
        activation = {"sigmoid": "logistic"}.get(case.activation, case.activation)
        settings = {"hidden_layer_sizes": case.layers[1:-1], "activation": activation,
                    "solver": "sgd", "learning_rate_init": lr,
                    "batch_size": min(case.batch, case.n), "momentum": 0.0,
                    "nesterovs_momentum": False, "alpha": 0.0, "shuffle": True,
                    "random_state": 0}
        self.fit_kwargs = {}
        if case.output in ("softmax", "sigmoid"):
            # sigmoid with one output is binary, with k outputs multilabel: both use logistic
            self.model = MLPClassifier(**settings)
            self.fit_kwargs = {"classes": np.arange(max(k, 2))}
        else:
            loss = "poisson" if case.output == "exp" else "squared_error"
            self.model = MLPRegressor(loss=loss, **settings)
        self.X, self.y = X, y

    def epoch(self):
        # classes is needed on the first call only; passing it again is allowed
        self.model.partial_fit(self.X, self.y, **self.fit_kwargs)

    def predict(self):
        return self.model.predict(self.X)


class _TorchTrainer:
    """PyTorch eager: nn.Sequential + torch.optim.SGD, a Python loop over mini-batches."""

    def __init__(self, case, dtype, X, y, lr, threads=None):
        import torch
        from torch import nn

        if threads:
            torch.set_num_threads(threads)
        torch.manual_seed(0)
        tdtype = torch.float64 if np.dtype(dtype) == np.float64 else torch.float32
        activations = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "logistic": nn.Sigmoid,
                       "tanh": nn.Tanh, "identity": nn.Identity}
        modules = []
        pairs = list(zip(case.layers[:-1], case.layers[1:]))
        for i, (fan_in, fan_out) in enumerate(pairs):
            modules.append(nn.Linear(fan_in, fan_out, dtype=tdtype))
            if i < len(pairs) - 1:
                modules.append(activations[case.activation]())
        self.model = nn.Sequential(*modules)
        self.loss_fn = {"sigmoid": nn.BCEWithLogitsLoss(), "softmax": nn.CrossEntropyLoss(),
                        "identity": nn.MSELoss(),
                        "exp": nn.PoissonNLLLoss(log_input=True)}[case.output]
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr)
        self.torch, self.output, self.batch = torch, case.output, case.batch
        self.X = torch.from_numpy(X)
        if case.output == "softmax":
            self.y = torch.from_numpy(np.asarray(y, dtype=np.int64))
        else:
            # the losses want float targets shaped like the output
            self.y = torch.from_numpy(np.asarray(y, dtype=X.dtype).reshape(len(X), -1))

    def epoch(self):
        n = len(self.X)
        order = self.torch.randperm(n)
        for start in range(0, n, self.batch):
            rows = order[start:start + self.batch]
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss_fn(self.model(self.X[rows]), self.y[rows])
            loss.backward()
            self.optimizer.step()

    def predict(self):
        with self.torch.inference_mode():
            out = self.model(self.X)
        if self.output == "softmax":
            return out.argmax(dim=1).numpy()
        if self.output == "sigmoid":
            return (out > 0).to(self.torch.int64).numpy()
        return out.numpy()


def make_trainer(impl, case, dtype, lr=LEARNING_RATE, threads=None):
    """A model of `impl` with the case's data: `.epoch()` trains one epoch, `.predict()`
    predicts the training set. Raises Unavailable when `impl` cannot run the case."""
    reason = unavailable_reason(impl)
    if reason:
        raise Unavailable(reason)
    dtype = np.dtype(dtype)
    X, y = make_data(case, dtype)
    if impl == "fastmlp":
        return _TwinTrainer(fastmlp.MLP, case, dtype, X, y, lr)
    if impl == "reference":
        from fastmlp.reference import MLP
        return _TwinTrainer(MLP, case, dtype, X, y, lr)
    if impl == "sklearn":
        return _SklearnTrainer(case, dtype, X, y, lr)
    return _TorchTrainer(case, dtype, X, y, lr, threads)


def _seconds(fn):
    # as timeit does: no garbage collection pause inside the measurement
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start
    finally:
        if gc_was_enabled:
            gc.enable()


def time_epochs(trainer, repeat=3, warm_up=True):
    """Best time of `repeat` epochs, after one untimed warm-up epoch."""
    if warm_up:
        trainer.epoch()
    return time_interleaved({"": trainer}, repeat, turn_seconds=0)[""]


def time_interleaved(trainers, repeat=3, turn_seconds=0.01):
    """Best epoch time of each trainer (a dict by name, warmed up), timed in `repeat`
    rounds in which the trainers take turns: this shared machine's speed drifts over
    seconds, and the ratios then compare epochs run moments apart rather than one
    implementation's good minute with another's bad one. A turn runs epochs until
    it has lasted `turn_seconds`: an epoch of a tiny net (~0.1 ms) right after another
    library's runs with cold caches and is then 2-4x slower (measured), which a user's
    epoch loop never sees; the later epochs of the turn are warm."""
    best = {name: math.inf for name in trainers}
    for _ in range(max(repeat, 1)):
        for name, trainer in trainers.items():
            spent = 0.0
            while True:  # at least one epoch a turn
                seconds = _seconds(trainer.epoch)
                best[name] = min(best[name], seconds)
                spent += seconds
                if spent >= turn_seconds:
                    break
    return best


class _AtThreads:
    """A trainer whose epochs run with `threads` threads for fastmlp's kernels."""

    def __init__(self, trainer, threads):
        self.trainer, self.threads = trainer, threads

    def epoch(self):
        fastmlp.set_num_threads(self.threads)
        self.trainer.epoch()


def thread_scaling(case, dtype, threads, repeat=3, lr=LEARNING_RATE):
    """fastmlp's samples/s with `threads` threads over its samples/s with one, side by side.

    One model's epochs take turns at 1 and at `threads` threads (`time_interleaved`;
    numba's thread count is switched between turns), so the machine's drift does not
    enter the ratio as it does between two runs. At 1 thread the serial kernels run,
    as in a process started with one thread; the BLAS under the kernels is single-threaded
    either way. numba must have been started with at least `threads` threads."""
    import numba

    if not 2 <= threads <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"thread scaling needs 2 to {numba.config.NUMBA_NUM_THREADS} threads "
                         f"(NUMBA_NUM_THREADS); got {threads}")
    if isinstance(case, str):
        case = get_cases([case])[0]
    dtype = np.dtype(dtype).name
    trainer = make_trainer("fastmlp", case, dtype, lr)
    turns = {1: _AtThreads(trainer, 1), threads: _AtThreads(trainer, threads)}
    before = fastmlp.get_num_threads()
    try:
        for turn in turns.values():
            turn.epoch()  # warm-up: compiles the serial and the parallel kernels
        best = time_interleaved(turns, repeat)
    finally:
        fastmlp.set_num_threads(before)
    return {"workload": case.label, "dtype": dtype, "threads": threads,
            "samples_per_s_1_thread": case.n / best[1], "samples_per_s": case.n / best[threads],
            "scaling": best[1] / best[threads]}


def gemm_peak_gflops(dtype, size=2048, repeat=5):
    """Best GFLOP/s of a size^3 numpy matmul in `dtype` with the current thread settings."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size)).astype(dtype)
    b = rng.standard_normal((size, size)).astype(dtype)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)  # warm-up: starts the BLAS threads, touches the pages
    best = min(_seconds(lambda: np.matmul(a, b, out=out)) for _ in range(repeat))
    return 2.0 * size ** 3 / best / 1e9


# ------------------------------------------------------------------------ running
def run(workloads=DEFAULT_WORKLOADS, dtypes=("float64",), impls=IMPLEMENTATIONS, repeat=3,
        *, n=None, batch=None, baseline="fastmlp", lr=LEARNING_RATE, threads=None,
        peak_size=2048, progress=None):
    """Time every workload x dtype x implementation; one dict per row.

    A row's `speedup` is the baseline's samples/s divided by this row's (None when the
    baseline did not run); `skipped` holds the reason an implementation did not run,
    and then its numbers are None. `threads` only reaches PyTorch: BLAS and numba read
    their thread counts from the environment at import (the CLI's --threads sets it).
    """
    cases = get_cases(workloads, n=n, batch=batch)
    peaks = {}
    rows = []
    for case in cases:
        for dtype in dtypes:
            dtype = np.dtype(dtype).name
            if dtype not in peaks:
                if progress:
                    progress(f"GEMM peak {dtype} ({peak_size}^3 matmul)")
                peaks[dtype] = gemm_peak_gflops(dtype, peak_size)
            block, trainers = [], {}
            for impl in impls:
                if progress:
                    progress(f"{case.label} {case.shape} n={case.n} {dtype} {impl}")
                row = {"workload": case.label, "layers": case.shape,
                       "activation": case.activation, "output": case.output, "n": case.n,
                       "batch": case.batch, "dtype": dtype, "impl": impl, "repeat": repeat,
                       "seconds": None, "samples_per_s": None,
                       "flop_per_sample": flop_per_sample(case.layers), "gflops": None,
                       "peak_gflops": peaks[dtype], "fraction_of_peak": None,
                       "baseline": baseline, "speedup": None, "skipped": None}
                try:
                    trainers[impl] = make_trainer(impl, case, dtype, lr, threads)
                except Unavailable as e:
                    row["skipped"] = str(e)
                else:
                    trainers[impl].epoch()  # warm-up
                block.append(row)
            best = time_interleaved(trainers, repeat)
            del trainers  # free their data before the next case allocates
            for row in block:
                if row["impl"] in best:
                    row["seconds"] = best[row["impl"]]
                    row["samples_per_s"] = case.n / row["seconds"]
                    row["gflops"] = row["flop_per_sample"] * row["samples_per_s"] / 1e9
                    row["fraction_of_peak"] = row["gflops"] / row["peak_gflops"]
            base = next((r for r in block if r["impl"] == baseline and r["samples_per_s"]), None)
            for row in block:
                if base and row["samples_per_s"]:
                    row["speedup"] = base["samples_per_s"] / row["samples_per_s"]
            rows += block
    return rows


def _number(x, width, fmt):
    return f"{'-':>{width}}" if x is None else f"{x:>{width}{fmt}}"


def format_table(rows):
    """The rows as text: one block per workload x dtype, one line per implementation."""
    lines = []
    blocks = {}
    for row in rows:
        blocks.setdefault((row["workload"], row["layers"], row["n"], row["dtype"]), []).append(row)
    for block in blocks.values():
        first = block[0]
        lines.append(
            f"{first['workload']}  {first['layers']} {first['activation']}/{first['output']}"
            f"  n={first['n']}  batch={first['batch']}  {first['dtype']}"
            f"  ({first['flop_per_sample']:,} FLOP/sample,"
            f" GEMM peak {first['peak_gflops']:.1f} GFLOP/s)")
        lines.append(f"  {'implementation':<14}{'samples/s':>14}{first['baseline'] + '/impl':>14}"
                     f"{'GFLOP/s':>10}{'of peak':>9}")
        for row in block:
            if row["skipped"]:
                lines.append(f"  {row['impl']:<14}  skipped: {row['skipped']}")
                continue
            peak = row["fraction_of_peak"]
            lines.append(f"  {row['impl']:<14}{_number(row['samples_per_s'], 14, ',.0f')}"
                         f"{_number(row['speedup'], 14, '.2f')}"
                         f"{_number(row['gflops'], 10, '.2f')}"
                         f"{_number(None if peak is None else 100 * peak, 8, '.1f')}%")
        lines.append("")
    if rows:
        base = rows[0]["baseline"]
        lines.append(f"{base}/impl: {base}'s samples/s divided by the row's.")
        lines.append("GFLOP/s: 6 FLOP per weight and sample (4 in the first layer) times "
                     "samples/s; of peak: its share of the GEMM peak.")
    return "\n".join(lines)


def environment(threads=None):
    """Versions and thread settings, for the JSON output and the table's header."""
    env = {"python": platform.python_version(), "machine": platform.machine(),
           "cpu_count": os.cpu_count(), "threads": threads, "numpy": np.__version__,
           "fastmlp": fastmlp.__version__}
    # from the installed metadata: importing PyTorch only for its version takes seconds
    for key, distribution in (("numba", "numba"), ("sklearn", "scikit-learn"), ("torch", "torch")):
        try:
            env[key] = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            env[key] = None
    return env


# ---------------------------------------------------------------------- first fit
_FIRST_FIT_SCRIPT = """
import json, sys, time
import numpy as np
spec = json.loads(sys.argv[1])
X, y = np.load(spec["X"]), np.load(spec["y"])
start = time.perf_counter()
if spec["impl"] == "fastmlp":
    from fastmlp import MLP
else:
    from fastmlp.reference import MLP
model = MLP(spec["layers"], spec["activation"], spec["output"], dtype=spec["dtype"],
            random_state=0)
model.fit(X, y, epochs=1, batch_size=spec["batch"], lr=spec["lr"])
print(repr(time.perf_counter() - start))
"""


def first_fit_seconds(case, dtype="float64", impl="fastmlp", runs=2, lr=LEARNING_RATE):
    """Seconds a fresh Python process takes to `import fastmlp` and fit one epoch.

    The data is made beforehand and the clock starts at the import, so this is what a
    user's script waits for beyond its own work. The first of `runs` processes fills
    numba's cache (NUMBA_CACHE_DIR is inherited); the last one's time is returned.
    """
    return _fit_in_fresh_processes(case, dtype, impl, max(runs, 1), lr, cache_dir=None)


def cold_compile_seconds(case, dtype="float64", impl="fastmlp", lr=LEARNING_RATE):
    """As `first_fit_seconds`, but in one process with an empty numba cache of its own:
    import, compiling every kernel the fit runs, and the fit. numba compiles for the
    thread count the process starts with (the parallel kernels only from 2 threads)."""
    with tempfile.TemporaryDirectory() as cache_dir:
        return _fit_in_fresh_processes(case, dtype, impl, 1, lr, cache_dir=cache_dir)


def _fit_in_fresh_processes(case, dtype, impl, runs, lr, cache_dir):
    """The seconds of the last of `runs` processes that import and fit one epoch;
    with `cache_dir`, numba's cache is there (else the one this process uses)."""
    if impl not in ("fastmlp", "reference"):
        raise ValueError(f"a fit in a fresh process times fastmlp or reference, not {impl!r}")
    reason = unavailable_reason(impl)
    if reason:
        raise Unavailable(reason)
    if isinstance(case, str):
        case = get_cases([case])[0]
    X, y = make_data(case, dtype)
    env = dict(os.environ) if cache_dir is None else dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    with tempfile.TemporaryDirectory() as tmp:
        spec = {"X": os.path.join(tmp, "X.npy"), "y": os.path.join(tmp, "y.npy"),
                "impl": impl, "layers": list(case.layers), "activation": case.activation,
                "output": case.output, "dtype": np.dtype(dtype).name, "batch": case.batch,
                "lr": lr}
        np.save(spec["X"], X)
        np.save(spec["y"], y)
        for _ in range(runs):
            done = subprocess.run([sys.executable, "-c", _FIRST_FIT_SCRIPT, json.dumps(spec)],
                                  capture_output=True, text=True, check=False, env=env)
            if done.returncode != 0:
                raise RuntimeError(f"the first-fit process failed:\n{done.stderr}")
    return float(done.stdout.strip().splitlines()[-1])


# -------------------------------------------------------------------------- CLI
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "NUMBA_NUM_THREADS")


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m fastmlp.bench",
        description="Samples/s of one SGD training epoch: fastmlp, its NumPy twin "
                    "(reference), scikit-learn and PyTorch side by side.",
        epilog="workloads: " + "; ".join(
            f"{name}: {c[0].shape} {c[0].output} n={c[0].n} batch "
            + "/".join(str(x.batch) for x in c) for name, c in WORKLOADS.items())
        + f". Default: {' '.join(DEFAULT_WORKLOADS)}.")
    p.add_argument("--workload", action="append", metavar="NAME",
                   help="a workload name (all its batch sizes), a label such as mnist-b32, "
                        "or 'all'; repeatable")
    p.add_argument("--layers", help="your own network instead, e.g. 784,128,10")
    p.add_argument("--output", default="softmax", choices=("identity", "sigmoid", "softmax", "exp"),
                   help="output layer and loss of --layers (default softmax)")
    p.add_argument("--activation", default="relu", choices=("relu", "sigmoid", "tanh", "identity"),
                   help="hidden activation of --layers (default relu)")
    p.add_argument("--n", type=int, help="samples (default 10000 for --layers; "
                                         "with --workload, replaces each workload's n)")
    p.add_argument("--batch", type=int, help="batch size (default 32 for --layers; "
                                             "with --workload, replaces each workload's)")
    p.add_argument("--dtype", default="float64", choices=("float64", "float32", "both"))
    p.add_argument("--impl", action="append", metavar="NAME",
                   help=f"implementations, repeatable or comma-separated: "
                        f"{', '.join(IMPLEMENTATIONS)} (default all)")
    p.add_argument("--threads", type=int,
                   help="threads for BLAS, numba and PyTorch (restarts Python with the "
                        "*_NUM_THREADS variables set)")
    p.add_argument("--repeat", type=int, default=3,
                   help="timed epochs after the warm-up; the best counts (default 3)")
    p.add_argument("--baseline", default="fastmlp", choices=IMPLEMENTATIONS,
                   help="whose samples/s the speed-up column divides (default fastmlp)")
    p.add_argument("--peak-size", type=int, default=2048,
                   help="matrix size of the GEMM peak measurement (default 2048)")
    p.add_argument("--first-fit", action="store_true",
                   help="also time import + first 1-epoch fit of fastmlp in a fresh process")
    p.add_argument("--cold-compile", action="store_true",
                   help="also time the same in a fresh process with an empty numba cache "
                        "(every kernel the fit runs compiles)")
    p.add_argument("--scaling", action="store_true",
                   help="also time fastmlp at 1 thread and at --threads (2 or more) side by "
                        "side, taking turns in one process, and print the ratio")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    return p


def _restart_with_threads(threads, argv):
    """Run this command again in a child whose BLAS/OpenMP/numba read `threads` at import.

    numpy and numba are already imported (by fastmlp itself) when we get here, and
    their thread pools are sized at import, so the variables must be set in a new process.
    """
    env = dict(os.environ, **{name: str(threads) for name in THREAD_VARIABLES})
    done = subprocess.run([sys.executable, "-m", "fastmlp.bench", *argv], env=env, check=False)
    return done.returncode


def _for_each_case(what, cases, dtypes, progress, measure):
    """[measure(case, dtype) for every case and dtype], or [] when fastmlp cannot run."""
    if unavailable_reason("fastmlp"):
        print(f"  {what} skipped: {unavailable_reason('fastmlp')}", file=sys.stderr)
        return []
    results = []
    for case in cases:
        for dtype in dtypes:
            progress(f"{what} {case.label} {dtype}")
            results.append(measure(case, dtype))
    return results


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    args = parser.parse_args(argv)
    for option in ("threads", "repeat", "n", "batch", "peak_size"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option.replace('_', '-')} must be at least 1")
    if args.scaling and (args.threads or 1) < 2:
        parser.error("--scaling compares 1 thread with --threads: give --threads 2 or more")
    if args.threads and any(os.environ.get(v) != str(args.threads) for v in THREAD_VARIABLES):
        return _restart_with_threads(args.threads, argv)
    impls = []
    for item in args.impl or ["all"]:
        for name in item.split(","):
            impls += list(IMPLEMENTATIONS) if name == "all" else [name]
    for name in impls:
        if name not in IMPLEMENTATIONS:
            parser.error(f"unknown implementation {name!r}; "
                         f"choose from {', '.join(IMPLEMENTATIONS)}")
    dtypes = DTYPES if args.dtype == "both" else (args.dtype,)
    workloads = list(args.workload or [])
    if args.layers:
        try:
            layers = tuple(int(s) for s in args.layers.split(","))
        except ValueError:
            parser.error(f"--layers must be comma-separated integers; got {args.layers!r}")
        if len(layers) < 2 or min(layers) < 1:
            parser.error("--layers needs at least two positive sizes, e.g. 784,128,10")
        workloads.append(Case("custom", layers, args.output, args.n or 10000, args.batch or 32,
                              args.activation))
    elif not workloads:
        workloads = list(DEFAULT_WORKLOADS)
    try:
        # --n/--batch already shaped a --layers case; for named workloads they override
        named = [w for w in workloads if not isinstance(w, Case)]
        cases = get_cases(named, n=args.n, batch=args.batch)
        cases += [w for w in workloads if isinstance(w, Case)]
    except ValueError as e:
        parser.error(str(e))

    def progress(message):
        print(f"  timing {message} ...", file=sys.stderr, flush=True)

    rows = run(cases, dtypes, impls, args.repeat, baseline=args.baseline, threads=args.threads,
               peak_size=args.peak_size, progress=progress)
    first_fit, cold_compile, scaling = [], [], []
    if args.first_fit:
        first_fit = _for_each_case("first fit", cases, dtypes, progress, lambda case, dtype: {
            "workload": case.label, "dtype": dtype, "seconds": first_fit_seconds(case, dtype)})
    if args.cold_compile:
        cold_compile = _for_each_case("cold compile", cases, dtypes, progress, lambda case, dtype: {
            "workload": case.label, "dtype": dtype, "seconds": cold_compile_seconds(case, dtype)})
    if args.scaling:
        scaling = _for_each_case(
            f"thread scaling (1 against {args.threads})", cases, dtypes, progress,
            lambda case, dtype: thread_scaling(case, dtype, args.threads, args.repeat))
    env = environment(args.threads)
    if args.json:
        json.dump({"environment": env, "rows": rows, "first_fit": first_fit,
                   "cold_compile": cold_compile, "thread_scaling": scaling}, sys.stdout, indent=1)
        print()
        return 0
    threads = (f"{args.threads} (set via {', '.join(THREAD_VARIABLES)})" if args.threads
               else f"library defaults ({env['cpu_count']} CPUs)")
    versions = ", ".join(f"{k} {env[k]}" for k in ("python", "numpy", "numba", "sklearn",
                                                   "torch", "fastmlp") if env[k])
    print(f"One SGD epoch: the best after a warm-up, over {args.repeat} rounds in which the "
          f"implementations take turns (a turn: epochs for at least 10 ms). Threads: {threads}.")
    print(versions)
    print()
    print(format_table(rows))
    for item in first_fit:
        print(f"first fit (import fastmlp + 1 epoch, cache warm) {item['workload']} "
              f"{item['dtype']}: {item['seconds']:.2f} s")
    for item in cold_compile:
        print(f"cold compile (import fastmlp + 1 epoch, empty numba cache) {item['workload']} "
              f"{item['dtype']}: {item['seconds']:.2f} s")
    for item in scaling:
        print(f"thread scaling (fastmlp, {item['threads']} threads against 1, taking turns) "
              f"{item['workload']} {item['dtype']}: {item['samples_per_s_1_thread']:,.0f} -> "
              f"{item['samples_per_s']:,.0f} samples/s, {item['scaling']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
