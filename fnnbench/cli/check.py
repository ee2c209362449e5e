"""``python -m fnnbench.claims check FILE ...``: is this claim file ready to run?

For each file, without training anything and without touching MLflow:

1. the file and its ``claim:`` section (:func:`fnnbench.claims.schema.claim_file_problems`:
   every problem, one line each, as the loader words them);
2. the sweep composes with Hydra and every swept value is valid, in the full profile and in
   the quick one (:func:`fnnbench.cli.preflight.preflight` on ``sweep=<file>`` with tracking
   off: the same checks as ``python -m fnnbench``, including the ``hydra`` node);
3. every arm's keys and values exist in the jobs the sweep makes
   (:func:`fnnbench.claims.schema.arm_problems` on the configs preflight composed).

A problem is one line ``<file>: <key> ...: <why>`` on stderr and the exit code is 2. Otherwise
it prints the jobs of each profile and an estimate of their time on this machine:

    each distinct data / network / optimizer setting of the sweep is built and trained here
    for one epoch (:data:`TIMING_BUDGET` seconds at most, one BLAS thread as the workers of
    ``fnnbench.reproduce``); a job costs its epoch budget x that time (an upper bound: jobs
    that stop at the target end earlier) + :data:`JOB_OVERHEAD` (its MLflow run, Hydra);
    the sum is divided by the workers (``--workers``, default the cores) and the start-up
    of a sweep (:data:`SWEEP_STARTUP`) added.

The sum over the grid is exact for the product of the axes when a job's cost is the product of
one factor per axis (what varies the cost -- the data, the widths, the batch size -- changes one
axis at a time in the probes preflight composes: the base setting and one probe per other value).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from fnnbench.claims.schema import Claim, arm_problems, claim_file_problems, load_claim
from fnnbench.cli.preflight import expand, external_sweep_args, preflight, split_args
from fnnbench.job.schema import ConfigError
from fnnbench.paths import sweep_override

EXIT_PROBLEMS = 2
TIMING_BUDGET = 4.0  # seconds of training spent timing settings, at most (one per setting)
JOB_OVERHEAD = 0.3  # seconds per job besides training: its MLflow run, Hydra (measured here)
SWEEP_STARTUP = 10.0  # seconds to start a sweep: imports, preflight, the store, the workers
# what makes an epoch cost more or less (the other keys -- seed, lr, target -- do not)
COST_KEYS = ("dataset.", "model.", "activation.", "loss.", "regularizer.name",
             "optimizer.rule", "optimizer.batch_size", "train.diagnostics_every",
             "train.target_check_every", "train.eval_test")


def flat_params(cfg: Mapping, prefix: str = "") -> dict[str, Any]:
    """A job config as the params MLflow logs: dotted keys, lists kept as lists."""
    out: dict[str, Any] = {}
    for k, v in cfg.items():
        if isinstance(v, Mapping) and v:
            out.update(flat_params(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _job_params(job: DictConfig) -> dict[str, Any]:
    data = OmegaConf.to_container(job, resolve=True)
    assert isinstance(data, dict)
    data.pop("claim", None)
    return flat_params(data)


def sweep_values(jobs: Sequence[DictConfig]) -> dict[str, list[Any]]:
    """Each param key -> the distinct values it takes over the jobs."""
    values: dict[str, list[Any]] = {}
    for job in jobs:
        for k, v in _job_params(job).items():
            seen = values.setdefault(k, [])
            if v not in seen:
                seen.append(v)
    return values


class Profile:
    """One profile of a claim sweep: its overrides, the configs preflight checked, its size."""

    def __init__(self, name: str, args: list[str], jobs: list[DictConfig], sweep_params: dict):
        self.name = name
        self.jobs = jobs
        _, overrides = split_args(args)
        self.expansion = expand(overrides, sweep_params)
        assert len(self.expansion.probes) == len(jobs), (len(self.expansion.probes), len(jobs))

    @property
    def n_jobs(self) -> int:
        return self.expansion.n_jobs


def _cost_key(job: DictConfig) -> str:
    params = _job_params(job)
    return repr(sorted((k, repr(v)) for k, v in params.items() if k.startswith(COST_KEYS)))


def time_epoch(job: DictConfig) -> float:
    """Seconds to build nothing and train one epoch of ``job`` here (fit, tracking off)."""
    from fnnbench.job import build
    from fnnbench.train import TrainSettings, fit

    parts = build(job)
    train = OmegaConf.to_container(job.train, resolve=True)
    assert isinstance(train, dict)
    train.update(epochs=1, stop_at_target=False)
    settings = TrainSettings.from_cfg(train)
    t0 = time.perf_counter()
    fit(parts.net, parts.opt, parts.data, settings, parts.rng, parts.batch_size)
    return time.perf_counter() - t0


class Timer:
    """Seconds per epoch of each distinct cost setting, timed once, within a budget."""

    def __init__(self, budget: float = TIMING_BUDGET, one_thread: bool = True):
        self.budget = budget
        self.one_thread = one_thread
        self.seconds: dict[str, float] = {}
        self.spent = 0.0
        self.untimed = 0

    def epoch_seconds(self, job: DictConfig, fallback: float | None) -> float:
        key = _cost_key(job)
        if key in self.seconds:
            return self.seconds[key]
        if self.spent >= self.budget and fallback is not None:
            self.untimed += 1
            return fallback
        t = self._time(job)
        self.spent += t
        self.seconds[key] = t
        return t

    def _time(self, job: DictConfig) -> float:
        if not self.one_thread:
            return time_epoch(job)
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - scikit-learn brings it
            return time_epoch(job)
        with threadpool_limits(1):
            return time_epoch(job)


def train_seconds(profile: Profile, timer: Timer) -> float:
    """Training seconds of every job of the profile, summed (see the module docstring)."""
    exp, jobs = profile.expansion, profile.jobs
    base_job = jobs[0]
    base = base_job.train.epochs * timer.epoch_seconds(base_job, None)
    if base <= 0:
        return 0.0
    factors = [1.0] * len(exp.base)  # per axis: sum over its values of cost / base cost
    for probe, job in zip(exp.probes[1:], jobs[1:], strict=True):
        axis = next(i for i, (p, b) in enumerate(zip(probe, exp.base, strict=True)) if p != b)
        cost = job.train.epochs * timer.epoch_seconds(job, fallback=base / base_job.train.epochs)
        factors[axis] += cost / base
    return base * math.prod(factors)


def estimate(profile: Profile, timer: Timer, workers: int) -> tuple[float, float]:
    """(wall seconds on ``workers`` workers, seconds of job time)."""
    job_time = train_seconds(profile, timer) + profile.n_jobs * JOB_OVERHEAD
    used = max(1, min(workers, profile.n_jobs))
    return SWEEP_STARTUP + job_time / used, job_time


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def check_file(path: Path, workers: int, timing: bool = True) -> tuple[list[str], list[str]]:
    """(problems, report lines) of one claim file."""
    problems = claim_file_problems(path)
    if problems:
        return problems, []
    try:
        claim = load_claim(path)
    except ValueError as err:  # claim_file_problems should have said it
        return [str(err).splitlines()[0]], []
    profiles: dict[str, Profile] = {}
    for name, extra in (("full", []), ("quick", claim.quick)):
        args = ["-m", sweep_override(path), "tracking.enabled=false", *extra]
        try:
            args = external_sweep_args(args)
            jobs = preflight(args)
        except ConfigError as err:
            where = "" if name == "full" else f"claim key 'quick' = {claim.quick!r}: "
            problems.append(f"{path}: {where}{err}")
            continue
        profiles[name] = Profile(name, args, jobs, claim.sweep_params)
    if "full" in profiles:
        problems += arm_problems(claim, sweep_values(profiles["full"].jobs))
    if problems:
        return problems, []
    return [], _report(path, claim, profiles, workers, timing)


def _report(path: Path, claim: Claim, profiles: dict[str, Profile], workers: int,
            timing: bool) -> list[str]:
    primary = sum(c.primary for c in claim.comparisons)
    lines = [f"{path}: ok: claim {claim.id}: {primary} primary and "
             f"{len(claim.comparisons) - primary} secondary comparison(s)"]
    quick_values = sweep_values(profiles["quick"].jobs)
    from fnnbench.claims.select import match_value

    empty = [i for i, c in enumerate(claim.comparisons)
             if any(not any(match_value(v, want) for v in quick_values.get(k, []))
                    for k, want in {**c.where, **c.a, **c.b}.items())]
    timer = Timer(one_thread=workers > 1)
    t0 = time.perf_counter()
    for name in ("full", "quick"):
        p = profiles[name]
        line = f"  {name + ' profile:':<15}{p.n_jobs:>5} jobs"
        if timing:
            wall, job_time = estimate(p, timer, workers)
            line += (f", ~{_duration(wall)} on {workers} worker(s) "
                     f"(~{_duration(job_time)} of job time)")
        lines.append(line)
    if empty:
        lines.append("  the quick profile has no runs for comparisons "
                     + ", ".join(f"[{i}]" for i in empty) + " (NO DATA there; the full "
                     "profile judges them)")
    if timing:
        untimed = f", {timer.untimed} more assumed like the base" if timer.untimed else ""
        lines.append(
            f"  estimate: {len(timer.seconds)} distinct data/network/optimizer setting(s) "
            f"trained here for 1 epoch ({time.perf_counter() - t0:.1f} s{untimed}); a job = "
            f"its epoch budget x that time (an upper bound: jobs that stop at the target end "
            f"earlier) + {JOB_OVERHEAD:g} s (MLflow run, Hydra); summed over the grid, / "
            f"{workers} worker(s), + {SWEEP_STARTUP:g} s start-up")
    lines.append(f"  run it: python -m fnnbench {sweep_override(path)}"
                 + (f"   quick: ... {' '.join(claim.quick)}" if claim.quick else ""))
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m fnnbench.claims",
        description="Tools for claim files (docs/claims.md).")
    sub = ap.add_subparsers(dest="command", required=True)
    c = sub.add_parser(
        "check", help="validate claim files; print their jobs and time on this machine",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("files", nargs="+", type=Path, help="claim files (sweeps/<id>.yaml)")
    c.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="parallel workers the estimate assumes (default: cores, as "
                        "python -m fnnbench.reproduce --jobs)")
    c.add_argument("--no-timing", action="store_true",
                   help="skip the time estimate (no training at all)")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error(f"--workers={args.workers}: must be >= 1")
    bad = False
    for path in args.files:
        try:
            problems, report = check_file(path, args.workers, timing=not args.no_timing)
        except ConfigError as err:  # e.g. the data of a probe cannot be loaded
            problems, report = [f"{path}: {err}"], []
        for line in problems:
            print(line, file=sys.stderr)
        for line in report:
            print(line)
        bad = bad or bool(problems)
    return EXIT_PROBLEMS if bad else 0
