"""``python -m fnnbench [overrides]``: one training job; ``-m`` (or a claim sweep) sweeps.

Before Hydra launches anything, :func:`fnnbench.cli.preflight.preflight` composes and validates
the config of every value of every swept key and prepares the MLflow store, so a user mistake
is one line on stderr, exit code 2, and nothing written to MLflow. ``@hydra.main`` then runs
:func:`fnnbench.job.run_job` for every job; a job that fails in a sweep is reported in one line
and the sweep goes on.
"""

from __future__ import annotations

import sys
from typing import Any

import hydra
from omegaconf import DictConfig

from fnnbench.data import DataError
from fnnbench.job import ConfigError, run_job
from fnnbench.job.run import job_overrides
from fnnbench.job.signals import install_signal_handlers
from fnnbench.paths import CONF_DIR
from fnnbench.tracking.names import failed_line

EXIT_USAGE = 2
EXIT_FAILED_JOBS = 1
EXIT_INTERRUPTED = 130


# Jobs of this process that failed in a sweep (basic launcher; a joblib or submitit worker's
# failures are counted by the sweep's parent run instead). Hydra hands no task-function
# results back to the caller, so the task function records them here.
_failed_jobs: list[str] = []


def _job_failed(err: BaseException) -> None:
    _, name = job_overrides()
    print(failed_line(name, err), file=sys.stderr)
    _failed_jobs.append(name or "?")


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="config")
def hydra_main(cfg: DictConfig) -> Any:
    """Hydra's task function: one job (in every worker process of a sweep)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    install_signal_handlers()  # again in worker processes (joblib, submitit)
    try:
        run_job(cfg, multirun=multirun)
    except (ConfigError, DataError) as err:
        if not multirun:
            print(f"fnnbench: error: {err}", file=sys.stderr)
            sys.exit(EXIT_USAGE)
        _job_failed(err)
    except Exception as err:  # a crash: the MLflow run is FAILED already; keep the sweep going
        if not multirun:
            raise
        _job_failed(err)
    return None


def main(argv: list[str] | None = None) -> int:
    """The command line: preflight, then Hydra. Returns the exit code."""
    from fnnbench.cli.preflight import external_sweep_args, preflight

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        args = external_sweep_args(args)  # sweep=<file>.yaml: see preflight.external_sweep_args
        preflight(args)
    except ConfigError as err:
        print(f"fnnbench: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    install_signal_handlers()
    sys.argv = [sys.argv[0], *args]
    try:
        hydra_main()
    except KeyboardInterrupt as exc:
        # as for an uncaught exception: the sweep callback's exit hook reads sys.last_value
        # to close the parent run as KILLED (not FAILED) when no job was running
        sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, exc.__traceback__
        print("fnnbench: interrupted; runs so far are marked KILLED and keep their metrics",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if _failed_jobs:
        print(f"fnnbench: {len(_failed_jobs)} job(s) failed: {', '.join(_failed_jobs)}",
              file=sys.stderr)
        return EXIT_FAILED_JOBS
    return 0
