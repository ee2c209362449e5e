"""MLflow tracking: one run per job, a parent run per sweep, batched logging, statuses.

Public API (the job layer and the tests use exactly these):

    uri = tracking.prepare(cfg.tracking)       # resolve URI, create/upgrade store + experiment
    tracking.enabled(cfg)                      # cfg.tracking.enabled (false: no MLflow at all)
    with tracking.job_run(cfg, overrides=[...], job_name="activation=relu,seed=3") as job:
        if job.skipped: ...                    # identical config already FINISHED
        fit(..., callbacks=[job])              # job.on_epoch_end / job.on_train_end
    tracking.SweepCallback                     # Hydra callback: parent run of a multirun
    tracking.TrackingError                     # one line: the URI and the cause

Modules: `names` (tag keys, outcomes, default URI, the job summary line), `store` (URI, store,
experiment), `records` (params, hash, tags), `run` (the run of a job), `sweep` (the Hydra
callback, parent runs), `model` (the pyfunc model), `fastsql` (bulk metric insert on SQL),
`liveness` (which process writes a run, is it alive), `reaper` (end runs dead processes left
RUNNING), `spool` (what an unreachable server missed, replayed later); ``python -m
fnnbench.tracking doctor [--fix]`` lists and ends orphaned runs.
The names above are loaded on first use (PEP 562), so ``from fnnbench.tracking import names``
loads neither Hydra nor MLflow; MLflow itself is imported only when a run is opened.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ENV_PARENT": "names", "ENV_SWEEP_KEYS": "names", "ENV_URI": "names",
    "config_hash": "records", "flatten": "records",
    "JobRun": "run", "enabled": "run", "job_run": "run", "run_name": "run",
    "TrackingError": "store", "prepare": "store", "resolve_uri": "store",
    "SweepCallback": "sweep", "SweepSummary": "sweep",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


_MODULES = ("names", "store", "records", "run", "sweep", "model", "fastsql", "liveness",
            "reaper", "spool")


def __getattr__(name: str) -> Any:
    if name in _MODULES:  # tracking.run, tracking.store, ... as after `import` of them
        return importlib.import_module(f"fnnbench.tracking.{name}")
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fnnbench.tracking' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"fnnbench.tracking.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
