"""MLflow tracking: one run per job, a parent run per sweep, batched logging, statuses.

Public API (the entry point and the tests use exactly these):

    uri = tracking.prepare(cfg.tracking)       # resolve URI, create/upgrade store + experiment
    tracking.enabled(cfg)                      # cfg.tracking.enabled (false: no MLflow at all)
    with tracking.job_run(cfg, overrides=[...], job_name="activation=relu,seed=3") as job:
        if job.skipped: ...                    # identical config already FINISHED
        fit(..., callbacks=[job])              # job.on_epoch_end / job.on_train_end
    tracking.SweepCallback                     # Hydra callback: parent run of a multirun
    tracking.TrackingError                     # one line: the URI and the cause

Modules: `store` (URI, store, experiment), `records` (params, hash, tags), `job` (the run of a
job), `sweep` (the Hydra callback), `model` (the pyfunc model), `bench` (overhead benchmark).
MLflow is imported lazily: with tracking disabled nothing of it is loaded.
"""

from fnnbench.tracking.job import ENV_PARENT, ENV_SWEEP_KEYS, Job, enabled, job_run, run_name
from fnnbench.tracking.records import config_hash, flatten
from fnnbench.tracking.store import ENV_URI, TrackingError, prepare, resolve_uri
from fnnbench.tracking.sweep import SweepCallback, SweepSummary

__all__ = [
    "ENV_PARENT",
    "ENV_SWEEP_KEYS",
    "ENV_URI",
    "Job",
    "SweepCallback",
    "SweepSummary",
    "TrackingError",
    "config_hash",
    "enabled",
    "flatten",
    "job_run",
    "prepare",
    "resolve_uri",
    "run_name",
]
