"""The bench command's bookkeeping on tiny workloads. No timing is asserted: speed
lives in the bench output and asv, and this shared machine's timings vary."""

import json
import math
import os
import subprocess
import sys

import numba
import numpy as np
import pytest

import fastmlp
from fastmlp import bench

# a few hundred samples, a 13-8-1 net: each implementation trains in milliseconds
TINY = bench.get_cases(["tiny-b32"], n=96, batch=16)[0]
BASELINE = "reference" if bench.unavailable_reason("fastmlp") else "fastmlp"
# scikit-learn is in the test extras; PyTorch is left out here as it takes seconds to import
IMPLS = [i for i in ("fastmlp", "reference", "sklearn") if not bench.unavailable_reason(i)]


def test_flop_per_sample_counts_six_per_weight_but_four_in_the_first_layer():
    assert bench.flop_per_sample((13, 8, 1)) == 4 * 13 * 8 + 6 * 8 * 1
    assert bench.flop_per_sample((784, 512, 512, 10)) == (
        4 * 784 * 512 + 6 * 512 * 512 + 6 * 512 * 10)


def test_workload_names_expand_to_their_batch_sizes_and_accept_overrides():
    assert [c.label for c in bench.get_cases(["tiny", "mnist-b32"])] == [
        "tiny-b1", "tiny-b32", "mnist-b32"]
    assert len(bench.get_cases(["all", "digits"])) == len(bench.CASES)
    (case,) = bench.get_cases(["deep"], n=100, batch=10)
    assert (case.layers, case.n, case.batch) == ((784, 512, 512, 10), 100, 10)
    with pytest.raises(ValueError, match="unknown workload 'nope'"):
        bench.get_cases(["nope"])


def test_implementations_take_turns_and_each_keeps_its_best_epoch(monkeypatch):
    calls = []

    class Fake:
        def __init__(self, name, times):
            self.name, self.times = name, iter(times)

        def epoch(self):
            calls.append(self.name)

    trainers = {"a": Fake("a", [3.0, 1.0, 2.0]), "b": Fake("b", [5.0, 6.0, 4.0])}
    # the clock: each epoch "lasts" its trainer's next time
    monkeypatch.setattr(bench, "_seconds", lambda epoch: (epoch(), next(epoch.__self__.times))[1])
    assert bench.time_interleaved(trainers, repeat=3, turn_seconds=0.5) == {"a": 1.0, "b": 4.0}
    assert calls == ["a", "b"] * 3
    # short epochs: a turn goes on until it has lasted turn_seconds
    calls.clear()
    trainers = {"a": Fake("a", [0.2, 0.2, 0.1, 3.0]), "b": Fake("b", [1.0, 0.3, 0.3])}
    assert bench.time_interleaved(trainers, repeat=2, turn_seconds=0.5) == {"a": 0.1, "b": 0.3}
    assert calls == ["a", "a", "a", "b", "a", "b", "b"]
    # time_epochs (asv's): one trainer, exactly `repeat` epochs, however short
    calls.clear()
    assert bench.time_epochs(Fake("c", [0.3, 0.1, 0.2]), repeat=3, warm_up=False) == 0.1
    assert calls == ["c"] * 3


@pytest.mark.parametrize("output", ["sigmoid", "softmax", "identity", "exp"])
def test_synthetic_data_is_what_the_twins_accept(output):
    from fastmlp.reference import MLP

    case = bench.Case("t", (5, 4, 3), output, n=40, batch=8)
    X, y = bench.make_data(case, np.float32)
    assert X.shape == (40, 5) and X.dtype == np.float32
    X2, y2 = bench.make_data(case, np.float32)
    np.testing.assert_array_equal(X, X2)  # fixed seed
    np.testing.assert_array_equal(y, y2)
    model = MLP(case.layers, output=output, dtype=np.float32, random_state=0)
    model.partial_fit(X, y, batch_size=case.batch)
    assert np.isfinite(model.loss_curve_[-1])


def test_run_rows_are_consistent():
    rows = bench.run([TINY], ["float64", "float32"], IMPLS, repeat=1, baseline=BASELINE,
                     peak_size=64)
    assert [(r["dtype"], r["impl"]) for r in rows] == [
        (d, i) for d in ("float64", "float32") for i in IMPLS]
    for dtype in ("float64", "float32"):
        block = {r["impl"]: r for r in rows if r["dtype"] == dtype}
        base = block[BASELINE]
        assert base["speedup"] == 1.0
        for row in block.values():
            assert row["skipped"] is None
            assert (row["workload"], row["n"], row["batch"]) == ("tiny-b16", 96, 16)
            assert row["seconds"] > 0 and math.isfinite(row["seconds"])
            assert row["samples_per_s"] == pytest.approx(row["n"] / row["seconds"])
            assert row["speedup"] == pytest.approx(base["samples_per_s"] / row["samples_per_s"])
            assert row["flop_per_sample"] == bench.flop_per_sample(TINY.layers)
            assert row["gflops"] == pytest.approx(
                row["flop_per_sample"] * row["samples_per_s"] / 1e9)
            assert row["peak_gflops"] > 0
            assert row["fraction_of_peak"] == pytest.approx(row["gflops"] / row["peak_gflops"])
    table = bench.format_table(rows)
    assert table.count("tiny-b16  13-8-1") == 2
    for impl in IMPLS:
        assert impl in table


def test_missing_implementation_is_a_skipped_row(monkeypatch):
    monkeypatch.setattr(bench, "unavailable_reason",
                        lambda impl: "not here" if impl == "torch" else None)
    rows = bench.run([TINY], ["float64"], ["reference", "torch"], repeat=1,
                     baseline="reference", peak_size=64)
    skipped = rows[1]
    assert skipped["impl"] == "torch" and skipped["skipped"] == "not here"
    assert skipped["samples_per_s"] is None and skipped["speedup"] is None
    assert "torch" in bench.format_table(rows) and "skipped: not here" in bench.format_table(rows)


def test_trainers_predict_the_training_set():
    for impl in IMPLS:
        trainer = bench.make_trainer(impl, TINY, "float64")
        trainer.epoch()
        assert np.shape(trainer.predict())[0] == TINY.n


def test_command_line_json_with_threads():
    # --threads starts a second Python with the thread variables set
    env = dict(os.environ)
    for name in bench.THREAD_VARIABLES:
        env.pop(name, None)
    out = subprocess.run(
        [sys.executable, "-m", "fastmlp.bench", "--layers", "6,5,3", "--output", "softmax",
         "--n", "50", "--batch", "10", "--impl", "reference", "--repeat", "1",
         "--peak-size", "64", "--threads", "1", "--json"],
        capture_output=True, text=True, env=env, check=True)
    result = json.loads(out.stdout)
    assert result["environment"]["threads"] == 1
    (row,) = result["rows"]
    assert (row["workload"], row["layers"], row["impl"]) == ("custom-b10", "6-5-3", "reference")
    assert row["samples_per_s"] > 0


def test_first_fit_runs_in_a_fresh_process():
    seconds = bench.first_fit_seconds(TINY, "float64", "reference")
    assert 0 < seconds < 600


def test_cold_compile_runs_one_fresh_process_on_an_empty_cache_of_its_own(monkeypatch):
    started, run = [], subprocess.run

    def record(command, **kwargs):
        cache = kwargs["env"].get("NUMBA_CACHE_DIR")
        started.append((cache, os.listdir(cache) if cache else None))
        return run(command, **kwargs)

    monkeypatch.setattr(bench.subprocess, "run", record)
    seconds = bench.cold_compile_seconds(TINY, "float64", "reference")
    assert 0 < seconds < 600
    [(cache, contents)] = started
    assert contents == [] and cache != os.environ.get("NUMBA_CACHE_DIR")
    assert not os.path.exists(cache)  # removed afterwards
    started.clear()
    bench.first_fit_seconds(TINY, "float64", "reference", runs=2)
    assert [cache for cache, _ in started] == [os.environ.get("NUMBA_CACHE_DIR")] * 2


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba started with one thread")
def test_thread_scaling_takes_turns_at_one_thread_and_at_more(monkeypatch):
    seen = []

    class Fake:
        def epoch(self):
            seen.append(fastmlp.get_num_threads())

    times = iter([4.0, 3.0, 2.0, 1.0, 2.0, 1.5])  # the timed epochs: 1, 2, 1, 2, 1, 2 threads
    monkeypatch.setattr(bench, "make_trainer", lambda impl, case, dtype, lr: Fake())
    monkeypatch.setattr(bench, "_seconds", lambda epoch: (epoch(), next(times))[1])
    fastmlp.set_num_threads(2)
    result = bench.thread_scaling(TINY, "float32", 2, repeat=3)
    assert seen == [1, 2] * 4  # a warm-up epoch at each, then 3 rounds of turns
    assert result["scaling"] == 2.0 / 1.0
    assert result["samples_per_s"] == TINY.n / 1.0
    assert result["samples_per_s_1_thread"] == TINY.n / 2.0
    assert fastmlp.get_num_threads() == 2  # restored
    with pytest.raises(ValueError, match="NUMBA_NUM_THREADS"):
        bench.thread_scaling(TINY, "float32", numba.config.NUMBA_NUM_THREADS + 1)
    monkeypatch.undo()
    assert bench.thread_scaling(TINY, "float64", 2, repeat=1)["scaling"] > 0  # a real model


def test_scaling_option_needs_two_threads_or_more(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--workload", "tiny", "--scaling"])
    assert "--threads 2 or more" in capsys.readouterr().err


ASV_SUITE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         "asv_benchmarks")


def test_asv_suite_leaves_fastmlp_to_each_benchmark_process():
    """asv forks every benchmark from a process that imported the suite; fastmlp starts
    numba's threads as it loads, and a child forked after that runs the serial kernels
    only (under numba's omp layer). So importing the suite must not import fastmlp,
    and each benchmark's own import must find it."""
    script = ("import sys; sys.path.insert(0, sys.argv[1])\n"
              "from benchmarks import common, training\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] == 'fastmlp'))\n"
              "print(common.bench().__name__, common.get_case('mnist-b128-n6000').n)\n"
              "print(sorted(name for name in vars(training) if name.endswith('Scaling')))")
    out = subprocess.run([sys.executable, "-c", script, ASV_SUITE], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.splitlines() == ["[]", "fastmlp.bench 6000", "['ThreadScaling']"]
