"""Hydra callback for sweeps: a parent run per multirun, every job nested under it.

Registered in conf/config.yaml:

    hydra:
      callbacks:
        mlflow:
          _target_: fnnbench.tracking.SweepCallback

on_multirun_start (launching process, before any job): prepare the store once (this is what
makes parallel first writers safe), replay the spool of runs an unreachable server missed and
end the runs dead processes left RUNNING (reaper.py; one line when it ended any), create the
parent run (tagged with the launching process: host, pid, start time) (tags fnnbench.parent=true,
fnnbench.sweep, fnnbench.claim, fnnbench.overrides, fnnbench.n_jobs) and hand it to the jobs
through FNNBENCH_PARENT_RUN_ID / FNNBENCH_TRACKING_URI / FNNBENCH_SWEEP_KEYS (joblib/loky
and submitit workers inherit the environment; on_job_start sets it again in a worker process
from this callback, which the launcher pickles with the job; MLFLOW_RUN_ID is never set).
With a submitit launcher it prints where the jobs' output goes. The parent stays RUNNING
while the jobs run.

on_multirun_end: replay the spool of jobs that ended while the server was down, count the
children from MLflow (FINISHED, FAILED, KILLED, diverged) and the
skipped jobs (parent tags fnnbench.skipped.*), tag the parent, print one summary line, set the
parent's status: KILLED if a job was killed, else FAILED if a job failed, else FINISHED.
Hydra skips on_multirun_end when the sweep raises (a failed job makes the basic sweeper raise
after the batch; Ctrl-C); an atexit hook then does the same, so no run is left RUNNING.
A prepare() failure prints one line to stderr and exits with status 2; an error at the sweep's
end is one line on stderr (never Hydra's multi-line warning).
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hydra.experimental.callback import Callback

from fnnbench.tracking import liveness, records
from fnnbench.tracking.names import (
    DIVERGED,
    ENV_LAUNCHER,
    ENV_PARENT,
    ENV_SPOOL_DIR,
    ENV_SWEEP_KEYS,
    ENV_URI,
    PARENT_COUNTS,
    STALE_SECONDS,
    TAG_CLAIM,
    TAG_ERROR,
    TAG_OUTCOME,
    TAG_OVERRIDES,
    TAG_PARENT,
    TAG_SKIPPED_PREFIX,
    TAG_SWEEP,
    TAG_SWEEP_SHA256,
    SweepCounts,
    count_tag,
    report_line,
    sweep_line,
    ui_line,
)
from fnnbench.tracking.run import enabled, sweep_sha256
from fnnbench.tracking.spool import spool_dir
from fnnbench.tracking.store import (
    TrackingError,
    experiment_id,
    experiment_name,
    prepare,
    with_retry,
)


@dataclass
class SweepSummary:
    """What became of a sweep's jobs, counted from MLflow."""

    n_finished: int = 0  # FINISHED children (diverged ones included)
    n_failed: int = 0
    n_killed: int = 0  # KILLED children, and children found still RUNNING at the end
    n_diverged: int = 0  # FINISHED children with fnnbench.outcome=diverged
    n_skipped: int = 0  # jobs that found an identical FINISHED run and trained nothing
    status: str = "FINISHED"  # the parent's final status

    @property
    def n_jobs(self) -> int:
        return self.n_finished + self.n_failed + self.n_killed + self.n_skipped

    def tags(self) -> dict[str, str]:
        return {count_tag(k): str(getattr(self, k)) for k in PARENT_COUNTS}

    def line(self, name: str, parent_run_id: str) -> str:
        counts = SweepCounts(self.n_jobs, self.n_finished, self.n_diverged, self.n_failed,
                             self.n_killed, self.n_skipped)
        return sweep_line(name, counts, parent_run_id, self.status)


def sweep_info(config: Mapping) -> dict[str, Any]:
    """name, claim, overrides, keys (what varies) and n_jobs (None if unknown) of a multirun."""
    hydra = config.get("hydra") or {}
    choices = (hydra.get("runtime") or {}).get("choices") or {}
    claim = config.get("claim")
    claim_id = claim.get("id") if isinstance(claim, Mapping) else None
    task = [str(o) for o in ((hydra.get("overrides") or {}).get("task") or [])]
    sweeper = hydra.get("sweeper") or {}
    params = sweeper.get("params") or {}
    args = [f"{k}={v}" for k, v in params.items()] + task  # as BasicSweeper combines them
    keys: list[str] = []
    n_jobs = None
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        parsed = OverridesParser.create().parse_overrides(args)
        keys = [o.get_key_element().lstrip("+~") for o in parsed if o.is_sweep_override()]
        if str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
            n_jobs = sum(len(b) for b in BasicSweeper.split_arguments(parsed, None))
    except Exception:  # another sweeper's syntax: names and counts come from the jobs
        pass
    sweep = choices.get("sweep")
    name = sweep or claim_id or ("multirun " + ",".join(keys) if keys else "multirun")
    return {"name": str(name), "sweep": sweep, "claim": claim_id, "overrides": task,
            "keys": keys, "n_jobs": n_jobs}


def summarize(client, experiment_id: str, parent_run_id: str) -> SweepSummary:
    """Count the parent's children by status (closing any still RUNNING as KILLED)."""
    summary = SweepSummary()
    page_token = None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'",
            max_results=1000, page_token=page_token)
        for run in page:
            status = run.info.status
            if status in ("RUNNING", "SCHEDULED"):
                with_retry(client.set_tag, run.info.run_id, TAG_ERROR,
                           "the job ended without closing its run")
                with_retry(client.set_terminated, run.info.run_id, "KILLED")
                status = "KILLED"
            if status == "FINISHED":
                summary.n_finished += 1
                summary.n_diverged += run.data.tags.get(TAG_OUTCOME) == DIVERGED
            elif status == "FAILED":
                summary.n_failed += 1
            else:
                summary.n_killed += 1
        page_token = page.token
        if not page_token:
            break
    parent = client.get_run(parent_run_id)
    summary.n_skipped = sum(k.startswith(TAG_SKIPPED_PREFIX) for k in parent.data.tags)
    summary.status = ("KILLED" if summary.n_killed else
                      "FAILED" if summary.n_failed else "FINISHED")
    return summary


def submitit_logs(config: Mapping) -> str | None:
    """'<sweep dir>/.submitit/<job id>/<job id>_<task>_log.out|err' for submitit launchers."""
    launcher = (config.get("hydra") or {}).get("launcher") or {}
    if "submitit" not in str(launcher.get("_target_", "")):
        return None
    try:
        folder = str(launcher.get("submitit_folder"))
    except Exception:  # an interpolation that does not resolve here
        return "<hydra.launcher.submitit_folder>/<job id>_0_log.out"
    return folder.replace("%j", "<job id>") + "/<job id>_0_log.out (and _log.err)"


def _prepare_or_exit(tracking_cfg: Mapping | None) -> str:
    try:
        return prepare(tracking_cfg)
    except TrackingError as exc:
        print(f"fnnbench: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def _replay(uri: str | None, directory: str | None) -> None:
    """Replay the spool of `uri` (one line on stderr per file that cannot be replayed yet)."""
    from fnnbench.tracking import spool

    if uri and spool.pending(directory or None, uri=uri):
        done = spool.replay(directory or None, uri=uri)
        if done:
            print(f"fnnbench: replayed the spool of {len(done)} run(s) to {uri}", flush=True)


def _recover(uri: str, exp_id: str, directory: str, stale_seconds: Any = None) -> None:
    """Before a sweep: replay spools, end the runs dead processes left RUNNING (reaper.py).
    Never stops the sweep: an error is one line on stderr."""
    from mlflow import MlflowClient

    from fnnbench.tracking.reaper import reap

    try:
        _replay(uri, directory)
        stale = float(stale_seconds) if stale_seconds else STALE_SECONDS
        orphans = reap(MlflowClient(uri), exp_id, fix=True, stale_seconds=stale)
    except Exception as exc:
        first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        print(f"fnnbench: could not check for runs left RUNNING: {type(exc).__name__}: "
              f"{first}", file=sys.stderr, flush=True)
        return
    if orphans:
        n_parents = sum(o.parent for o in orphans)
        print(f"fnnbench: ended {len(orphans) - n_parents} run(s) and {n_parents} sweep "
              f"parent run(s) left RUNNING by processes that are gone (KILLED, tag "
              f"fnnbench.reaped; their metrics are kept)", flush=True)


class SweepCallback(Callback):
    """Hydra callback: the parent run of a multirun; the store prepared before any job."""

    def __init__(self, **kwargs: Any) -> None:
        self.uri: str | None = None
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self.name = ""
        self.summary: SweepSummary | None = None
        self._saved_env: dict[str, str | None] = {}
        self._pid = os.getpid()
        self._keys = ""
        self._launcher = ""  # liveness.encode() of the launching process
        self._spool_dir = ""
        self.job_logs: str | None = None  # where a submitit launcher's jobs write their output
        # fnnbench.reproduce's pool: no lines printed, the jobs' environment passed per job
        # (job_env) instead of exported to this process (several sweeps are open at once)
        self.quiet = False
        self.export_env = True

    # -- single runs ------------------------------------------------------------------------
    def on_run_start(self, config, **kwargs: Any) -> None:
        if not enabled(config):
            return
        uri = _prepare_or_exit(config.get("tracking"))
        self._set_env({ENV_URI: uri, ENV_PARENT: None, ENV_SWEEP_KEYS: None,
                       ENV_SPOOL_DIR: str(spool_dir())})

    def on_run_end(self, config, **kwargs: Any) -> None:
        self._restore_env()

    # -- sweeps -----------------------------------------------------------------------------
    def on_multirun_start(self, config, **kwargs: Any) -> None:
        """start(); an error after the store is prepared is one line on stderr (never Hydra's
        multi-line warning) and the sweep runs without a parent run."""
        try:
            self.start(config)
        except Exception as exc:
            first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            print(f"fnnbench: could not create the sweep's parent run: "
                  f"{type(exc).__name__}: {first}", file=sys.stderr, flush=True)

    def start(self, config) -> None:
        """Prepare the store, recover from crashes, create the parent run (module docstring)."""
        if not enabled(config):
            return
        from mlflow import MlflowClient

        tcfg = config.get("tracking")
        uri = _prepare_or_exit(tcfg)
        exp_id = experiment_id(uri, experiment_name(tcfg))
        client = MlflowClient(uri)
        self._spool_dir = str(spool_dir())
        self._launcher = liveness.encode()
        _recover(uri, exp_id, self._spool_dir, (tcfg or {}).get("stale_seconds"))
        info = sweep_info(config)
        tags = records.context_tags()
        tags.update(liveness.identity())  # the launching process: see reaper.py
        tags.update({TAG_PARENT: "true",
                     TAG_OVERRIDES: records.clip_tag(" ".join(info["overrides"]))})
        if info["sweep"]:
            tags[TAG_SWEEP] = str(info["sweep"])
            searchpath = (config.get("hydra") or {}).get("searchpath") or ()
            digest = sweep_sha256(info["sweep"], searchpath)
            if digest:
                tags[TAG_SWEEP_SHA256] = digest
        if info["claim"]:
            tags[TAG_CLAIM] = str(info["claim"])
        if info["n_jobs"] is not None:
            tags[count_tag("n_jobs")] = str(info["n_jobs"])
        run = with_retry(client.create_run, exp_id, run_name=info["name"][:250], tags=tags)
        self.uri, self.experiment_id, self.name = uri, exp_id, info["name"]
        self.parent_run_id = run.info.run_id
        self.summary = None
        self._keys = ",".join(info["keys"])
        if self.export_env:
            self._set_env(self.job_env())
        self._pid = os.getpid()
        atexit.register(self._at_exit)
        if self.quiet:
            return
        n = "" if info["n_jobs"] is None else f"{info['n_jobs']} jobs, "
        print(f"fnnbench: sweep {self.name}: {n}parent run {self.parent_run_id} "
              f"(experiment {exp_id}) in {uri}", flush=True)
        self.job_logs = submitit_logs(config)
        if self.job_logs:
            print(f"fnnbench: job output (submitit): {self.job_logs}", flush=True)

    def on_job_start(self, config, **kwargs: Any) -> None:
        """In a worker process (submitit, joblib/loky), hand this sweep's parent run to the job.

        Launchers pickle this callback after on_multirun_start, so a worker gets the parent
        run id even when its environment was not inherited (sbatch --export=NONE, a reused
        loky worker started by an earlier sweep). In the launching process: nothing to do.
        """
        if self.parent_run_id is None or os.getpid() == self._pid:
            return
        os.environ.update(self.job_env())

    def job_env(self) -> dict[str, str]:
        """The environment a job of this sweep needs (store, parent run, swept keys, launching
        process, spool folder)."""
        return {ENV_URI: self.uri or "", ENV_PARENT: self.parent_run_id or "",
                ENV_SWEEP_KEYS: self._keys, ENV_LAUNCHER: self._launcher,
                ENV_SPOOL_DIR: self._spool_dir}

    def on_multirun_end(self, config, **kwargs: Any) -> None:
        """finish(); an error is one line on stderr (never Hydra's multi-line warning)."""
        try:
            self.finish()
        except Exception as exc:
            first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            print(f"fnnbench: could not close the sweep's parent run: "
                  f"{type(exc).__name__}: {first}", file=sys.stderr, flush=True)
        finally:
            self._restore_env()

    def finish(self, ended_early: str | None = None) -> SweepSummary | None:
        """Count the children, tag the parent, print the summary line, end the parent run.

        ended_early: None when the sweep returned, else why it did not ("KeyboardInterrupt"
        makes the parent KILLED, anything else at least FAILED).
        """
        if self.parent_run_id is None:
            return None
        from mlflow import MlflowClient
        from mlflow.entities import RunTag

        client = MlflowClient(self.uri)
        parent_id, self.parent_run_id = self.parent_run_id, None
        atexit.unregister(self._at_exit)
        self._restore_env()  # the sweep is over: its parent run is no job's parent any more
        _replay(self.uri, self._spool_dir)  # jobs that ended while the server was down
        summary = summarize(client, self.experiment_id, parent_id)
        if ended_early == "KeyboardInterrupt":
            summary.status = "KILLED"
        elif ended_early and summary.status == "FINISHED":
            summary.status = "FAILED"
        tags = [RunTag(k, v) for k, v in summary.tags().items()]
        if ended_early:
            tags.append(RunTag(TAG_ERROR, f"the sweep ended early ({ended_early})"))
        with_retry(client.log_batch, parent_id, tags=tags)
        with_retry(client.set_terminated, parent_id, summary.status)
        if not self.quiet:
            print(summary.line(self.name, parent_id), flush=True)
            print(report_line(parent_id), flush=True)  # after the line reproduce parses
            print(ui_line(self.uri or "", self.experiment_id or "", parent_id), flush=True)
        if self.job_logs and (summary.n_failed or summary.n_killed or ended_early):
            print(f"fnnbench: job output (submitit): {self.job_logs}", flush=True)
        self.summary = summary
        return summary

    def _at_exit(self) -> None:
        if os.getpid() != self._pid or self.parent_run_id is None:
            return
        last = getattr(sys, "last_value", None)
        try:
            self.finish(ended_early=type(last).__name__ if last is not None else "exit")
        except Exception as exc:
            first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            print(f"fnnbench: could not close the sweep's parent run: "
                  f"{type(exc).__name__}: {first}", file=sys.stderr, flush=True)
        finally:
            self._restore_env()

    # -- environment handed to the jobs -------------------------------------------------------
    def _set_env(self, values: dict[str, str | None]) -> None:
        for key, value in values.items():
            self._saved_env.setdefault(key, os.environ.get(key))
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

    def _restore_env(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env = {}
