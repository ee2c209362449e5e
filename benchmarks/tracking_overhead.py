"""Tracking overhead: wall time of the same job with tracking on vs off, in one process.

    python -m benchmarks.tracking_overhead [--repeats 5] [--blas-threads 1] [overrides ...]

Composes the default config (a digits job) plus the overrides, runs one warm-up job each way
(the one-off costs, importing mlflow and creating the sqlite store, are paid per process,
not per job), then alternates on/off `repeats` times and prints the medians and their ratio
(goal: <= 1.05), the median of the ratios of adjacent pairs (robust to a machine whose speed
drifts) and the ratio of the fastest runs (less sensitive to a busy machine). The
store is a fresh sqlite database in a temporary directory. BLAS runs on one thread by
default (`--blas-threads`): on a shared 2-core machine multithreaded BLAS makes the same
job vary 5x. `measure_overhead()` returns the numbers (tests/test_tracking_cli.py runs it).
Each job is `fnnbench.job.run_job(cfg)`, what `python -m fnnbench` runs for every job.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Overhead:
    """Seconds per job (median over repeats) with tracking off and on, and their ratio."""

    off: float
    on: float
    first_on: float  # the first tracked job of the process: mlflow import + store creation
    times_off: list[float] = field(default_factory=list)
    times_on: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.on / self.off

    @property
    def ratio_best(self) -> float:
        return min(self.times_on) / min(self.times_off)

    @property
    def ratio_paired(self) -> float:
        """Median of on_i / off_i over the alternating pairs: each tracked job is compared
        with the untracked one run just before it, so a machine whose speed drifts during
        the measurement (shared cores) moves both alike."""
        return statistics.median(a / b for a, b in zip(self.times_on, self.times_off,
                                                       strict=True))

    def line(self) -> str:
        return (f"tracking overhead: {self.on:.3f} s/job on vs {self.off:.3f} s/job off "
                f"(median of {len(self.times_on)}), ratio {self.ratio:.3f} (goal <= 1.05), "
                f"paired ratio {self.ratio_paired:.3f}, fastest-run ratio {self.ratio_best:.3f}; "
                f"first tracked job of the process {self.first_on:.2f} s")


def measure_overhead(overrides: Sequence[str] = (), repeats: int = 5,
                     store_dir: str | Path | None = None,
                     blas_threads: int | None = 1) -> Overhead:
    """Run the job of `overrides` with tracking off/on, alternating; return the timings."""
    from hydra import compose, initialize_config_dir

    from fnnbench.job import run_job
    from fnnbench.paths import CONF_DIR

    with contextlib.ExitStack() as stack:
        if blas_threads:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(limits=blas_threads, user_api="blas"))
        if store_dir is None:
            store_dir = stack.enter_context(tempfile.TemporaryDirectory(prefix="fnnbench-"))
        uri = f"sqlite:///{Path(store_dir).resolve()}/bench.db"
        with initialize_config_dir(str(CONF_DIR), version_base=None):
            cfg = compose("config", overrides=[*overrides, f"tracking.uri={uri}",
                                               "tracking.skip_finished=false"])

        def job(enabled: bool) -> float:
            cfg.tracking.enabled = enabled
            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                run_job(cfg)
            return time.perf_counter() - t0

        job(False)  # warm-up: data loading, numpy, caches
        first_on = job(True)
        times_off, times_on = [], []
        for _ in range(repeats):
            times_off.append(job(False))
            times_on.append(job(True))
    return Overhead(off=statistics.median(times_off), on=statistics.median(times_on),
                    first_on=first_on, times_off=times_off, times_on=times_on)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.tracking_overhead", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--repeats", type=int, default=5, help="on/off pairs (default 5)")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="BLAS threads during the measurement (0: leave as is)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the job")
    args = parser.parse_args(argv)
    result = measure_overhead(args.overrides, repeats=args.repeats,
                              blas_threads=args.blas_threads or None)
    print(result.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
