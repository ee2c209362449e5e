"""One job: a composed config -> objects -> ``fit`` under its MLflow run -> a summary line.

``run_job(cfg)`` is what ``python -m fnnbench`` runs for every job (``@hydra.main`` in
:mod:`fnnbench.cli.main` only calls it), and what notebooks, tests and benchmarks call with a
config composed by Hydra's compose API.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from omegaconf import DictConfig

from fnnbench import tracking
from fnnbench.job.build import build
from fnnbench.tracking import names
from fnnbench.train import TrainResult, TrainSettings, fit


def hydra_choice(group: str) -> str | None:
    """The option Hydra chose for ``group`` in this job (None outside a Hydra job)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().runtime.choices.get(group)


def job_overrides() -> tuple[list[str], str | None]:
    """This job's override strings and its run name (the keys the sweep varies)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return [], None
    overrides = list(HydraConfig.get().overrides.task)
    return overrides, tracking.run_name(overrides) if overrides else None


@dataclass(frozen=True)
class JobContext:
    """What a job knows of the sweep around it: its overrides, run name, claim sweep, and
    whether it runs beside others. Inside a Hydra job it is read from Hydra
    (:meth:`from_hydra`); a launcher that composes configs itself (``fnnbench.reproduce``'s
    pool) passes it."""

    overrides: tuple[str, ...] = ()
    name: str | None = None  # the run name (the overrides the sweep varies)
    sweep: str | None = None  # the claim sweep (sweep=<id>), if any
    parallel: bool = False  # other jobs run at the same time (no progress bar)
    searchpath: tuple[str, ...] = ()  # hydra.searchpath (where an external claim file is)

    @classmethod
    def from_hydra(cls, multirun: bool) -> JobContext:
        from hydra.core.hydra_config import HydraConfig

        overrides, name = job_overrides()
        parallel = multirun and "joblib" in str(hydra_choice("hydra/launcher") or "")
        searchpath: tuple[str, ...] = ()
        if HydraConfig.initialized():
            searchpath = tuple(str(p) for p in (HydraConfig.get().searchpath or []))
        return cls(tuple(overrides), name, hydra_choice("sweep"), parallel, searchpath)


def show_progress(cfg: DictConfig, parallel: bool) -> bool:
    """train.progress: ``auto`` shows a bar only on a terminal, never in parallel workers."""
    mode = cfg.train.progress
    if mode == "auto":
        return sys.stderr.isatty() and not parallel and os.environ.get("CI") != "true"
    return bool(mode)


def run_job(cfg: DictConfig, *, multirun: bool = False,
            context: JobContext | None = None) -> TrainResult | None:
    """Run one job from a composed config: validate, build, fit under MLflow tracking.

    Returns the :class:`fnnbench.train.TrainResult`, or None when tracking skipped the job
    because an identical config already has a FINISHED run. Raises ConfigError /
    DataError (one line) before anything is logged when the config or the data are bad.
    Prints the job's summary line (:func:`fnnbench.tracking.names.summary_line`).
    ``context``: the job's overrides, name and sweep (default: read from Hydra).
    """
    ctx = context if context is not None else JobContext.from_hydra(multirun)
    parts = build(cfg)
    settings = TrainSettings.from_cfg(cfg.train, progress=show_progress(cfg, ctx.parallel))
    job_name = ctx.name
    with tracking.job_run(cfg, overrides=list(ctx.overrides), job_name=job_name,
                          sweep=ctx.sweep, searchpath=ctx.searchpath) as run:
        if run.skipped:  # tracking.job_run printed the one "fnnbench: skipped ..." line
            return None
        result = fit(parts.net, parts.opt, parts.data, settings, parts.rng, parts.batch_size,
                     callbacks=[run])
    print(names.summary_line(job_name, result.outcome, result.summary), flush=True)
    return result
