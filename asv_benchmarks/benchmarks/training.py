"""Training and prediction speed: fastmlp, its NumPy twin, scikit-learn, PyTorch."""

import numba

from .common import DTYPES, WORKLOADS, Benchmark, bench, get_case, warm_trainer

# Epochs whose best time the track_ benchmarks report (after setup's warm-up epoch).
REPEAT = 3


class Epoch(Benchmark):
    """Wall time of one epoch of plain mini-batch SGD, and of predicting the training set."""

    def setup(self, workload, dtype, impl):
        self.trainer = warm_trainer(impl, workload, dtype)
        self.trainer.predict()  # fastmlp compiles its forward kernel on the first call

    def time_epoch(self, workload, dtype, impl):
        self.trainer.epoch()

    def time_predict(self, workload, dtype, impl):
        self.trainer.predict()


class Throughput(Benchmark):
    """Samples/s of the best of a few epochs, and that work's share of the GEMM peak."""

    def setup_cache(self):
        # Measured once per asv run, in the run's thread settings, for both dtypes.
        try:
            module = bench()
        except NotImplementedError:
            return {}  # setup skips every benchmark of the class
        return {dtype: module.gemm_peak_gflops(dtype) for dtype in DTYPES}

    def setup(self, peaks, workload, dtype, impl):
        self.case = get_case(workload)
        trainer = warm_trainer(impl, workload, dtype)
        self.samples_per_s = self.case.n / bench().time_epochs(trainer, REPEAT, warm_up=False)

    def track_samples_per_second(self, peaks, workload, dtype, impl):
        return self.samples_per_s

    track_samples_per_second.unit = "samples/s"

    def track_fraction_of_gemm_peak(self, peaks, workload, dtype, impl):
        gflops = bench().flop_per_sample(self.case.layers) * self.samples_per_s / 1e9
        return gflops / peaks[dtype]

    track_fraction_of_gemm_peak.unit = "fraction"


class GemmPeak(Benchmark):
    """The GEMM peak itself (a 2048^3 numpy matmul): tells a slower machine from a slower
    fastmlp."""

    params = DTYPES
    param_names = ("dtype",)

    def setup(self, dtype):
        bench()

    def track_gemm_peak_gflops(self, dtype):
        return bench().gemm_peak_gflops(dtype)

    track_gemm_peak_gflops.unit = "GFLOP/s"


class Speedup(Benchmark):
    """How many times more samples/s fastmlp trains than its NumPy twin."""

    params = (list(WORKLOADS), DTYPES)
    param_names = ("workload", "dtype")

    def setup(self, workload, dtype):
        seconds = {}
        for impl in ("fastmlp", "reference"):
            trainer = warm_trainer(impl, workload, dtype)
            seconds[impl] = bench().time_epochs(trainer, REPEAT, warm_up=False)
        self.speedup = seconds["reference"] / seconds["fastmlp"]

    def track_speedup_vs_reference(self, workload, dtype):
        return self.speedup

    track_speedup_vs_reference.unit = "x"


class FirstFit(Benchmark):
    """Seconds from `import fastmlp` to a model fitted for one epoch, in a fresh process
    with numba's cache warm: what a user's script waits for at start-up; and the same
    with an empty cache, every kernel the fit runs compiling (a cold compile)."""

    params = (["tiny-b32", "mnist-b128-n6000"], DTYPES)
    param_names = ("workload", "dtype")

    def setup(self, workload, dtype):
        reason = bench().unavailable_reason("fastmlp")
        if reason:
            raise NotImplementedError(reason)

    def track_first_fit_seconds(self, workload, dtype):
        return bench().first_fit_seconds(get_case(workload), dtype, "fastmlp")

    track_first_fit_seconds.unit = "seconds"

    def track_cold_compile_seconds(self, workload, dtype):
        module = bench()
        if not hasattr(module, "cold_compile_seconds"):
            raise NotImplementedError("this commit's fastmlp.bench has no cold_compile_seconds")
        return module.cold_compile_seconds(get_case(workload), dtype, "fastmlp")

    track_cold_compile_seconds.unit = "seconds"


class ThreadScaling(Benchmark):
    """fastmlp's samples/s at 2 threads over its samples/s at 1, one model's epochs taking
    turns at each (`python -m fastmlp.bench --scaling`): the parallel kernels' gain on the
    workloads large enough to run them."""

    params = (["mnist-b128-n6000", "deep-b256-n2560"], DTYPES)
    param_names = ("workload", "dtype")

    def setup(self, workload, dtype):
        module = bench()
        if not hasattr(module, "thread_scaling"):
            raise NotImplementedError("this commit's fastmlp.bench has no thread_scaling")
        if numba.config.NUMBA_NUM_THREADS < 2:
            raise NotImplementedError("numba runs 1 thread here (NUMBA_NUM_THREADS)")
        self.scaling = module.thread_scaling(get_case(workload), dtype, 2, REPEAT)["scaling"]

    def track_two_thread_speedup(self, workload, dtype):
        return self.scaling

    track_two_thread_speedup.unit = "x"
