"""The names fnnbench writes to MLflow and prints, in one place.

Tag keys, the run outcomes, the default store, the environment variables a sweep passes to its
jobs, and the one-line job summary that a job prints and ``reproduce`` reads back. Everything
that writes or reads these names imports them from here (docs/internals.md, "MLflow names").
This module imports nothing heavy: no MLflow, no Hydra.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from fnnbench.train import CONVERGED, DIVERGED, MAX_EPOCHS, OUTCOMES, REACHED_TARGET

__all__ = [
    "CONVERGED", "DIVERGED", "MAX_EPOCHS", "OUTCOMES", "REACHED_TARGET",
]

# ---------------------------------------------------------------- the store
DEFAULT_URI = "sqlite:///mlflow.db"  # the embedded store in the working directory
DEFAULT_EXPERIMENT = "fnnbench"
ENV_MLFLOW_URI = "MLFLOW_TRACKING_URI"  # MLflow's own variable: wins over the default
ENV_URI = "FNNBENCH_TRACKING_URI"  # set by the launching process: the URI every job uses
ENV_PARENT = "FNNBENCH_PARENT_RUN_ID"  # parent run of the sweep (set by SweepCallback)
ENV_SWEEP_KEYS = "FNNBENCH_SWEEP_KEYS"  # comma-separated keys the sweep varies (run names)
ENV_LAUNCHER = "FNNBENCH_LAUNCHER"  # "<host> <pid> <start>" of the sweep's launching process
ENV_SPOOL_DIR = "FNNBENCH_SPOOL_DIR"  # where jobs spool what an unreachable server missed
DEFAULT_SPOOL_DIR = ".fnnbench-spool"  # in the launching process's working directory
HEARTBEAT_SECONDS = 30.0  # a running job refreshes TAG_HEARTBEAT at most this often
STALE_SECONDS = 900.0  # a run on another host without a heartbeat for this long is dead


def tracking_uri(explicit: str | None = None) -> str:
    """The store to use: ``explicit`` if given, else ``$MLFLOW_TRACKING_URI``, else
    :data:`DEFAULT_URI` (as written: relative sqlite paths stay relative)."""
    return explicit or os.environ.get(ENV_MLFLOW_URI) or DEFAULT_URI


# ---------------------------------------------------------------- tags
TAG_OUTCOME = "fnnbench.outcome"  # one of OUTCOMES
TAG_SWEEP = "fnnbench.sweep"  # the claim sweep's file name (sweep=<id>)
TAG_CLAIM = "fnnbench.claim"  # the claim id of a claim sweep
TAG_SWEEP_SHA256 = "fnnbench.sweep_sha256"  # sha256 of the claim file the run was made with
TAG_OVERRIDES = "fnnbench.overrides"  # the job's (or the sweep's) override string
TAG_CONFIG_HASH = "fnnbench.config_hash"  # sha256 of the resolved config (skip-finished key)
TAG_ERROR = "fnnbench.error"  # why a run FAILED / was KILLED
TAG_HOST = "fnnbench.host"
TAG_VERSIONS = "fnnbench.versions"
TAG_PARENT = "fnnbench.parent"  # "true" on a sweep's parent run
TAG_PID = "fnnbench.pid"  # the process that writes the run (job: the worker; parent: launcher)
TAG_PID_START = "fnnbench.pid_start"  # that process's start time (/proc/<pid>/stat starttime)
TAG_HEARTBEAT = "fnnbench.heartbeat"  # unix seconds of the writer's last sign of life
TAG_REAPED = "fnnbench.reaped"  # why a run left RUNNING by a dead process was ended KILLED
TAG_SKIPPED_PREFIX = "fnnbench.skipped."  # + config hash prefix: a parent's record of a skip
TAG_GIT_COMMIT = "mlflow.source.git.commit"
PARENT_COUNTS = ("n_jobs", "n_finished", "n_failed", "n_killed", "n_diverged", "n_skipped")


def count_tag(count: str) -> str:
    """Tag key of one of a parent run's counts (:data:`PARENT_COUNTS`)."""
    return f"fnnbench.{count}"


def column(tag: str) -> str:
    """The tag's column in an ``mlflow.search_runs`` DataFrame."""
    return f"tags.{tag}"


# ---------------------------------------------------------------- the job summary line
SUMMARY_PREFIX = "fnnbench: "
_NAME_FALLBACK = "job"


@dataclass(frozen=True)
class JobLine:
    """What one job printed when it ended: ``kind`` is an outcome, ``skipped`` or ``failed``."""

    name: str
    kind: str

    @property
    def diverged(self) -> bool:
        return self.kind == DIVERGED


def summary_line(name: str | None, outcome: str, summary: Mapping[str, float]) -> str:
    """The line a finished job prints: its name, outcome and headline numbers."""
    ttt = summary.get("epochs_to_target")
    return (
        f"{SUMMARY_PREFIX}{name or _NAME_FALLBACK}: {outcome}, "
        f"epochs={int(summary['epochs_run'])}, "
        f"train_loss={summary['final_train_loss']:.4g}, "
        f"train_acc={summary['final_train_acc']:.4f}, "
        f"test_acc={summary.get('final_test_acc', float('nan')):.4f}, "
        f"epochs_to_target={'-' if ttt is None else int(ttt)}, "
        f"train_seconds={summary['train_seconds']:.2f}"
    )


def skipped_line(name: str | None, run_id: str, experiment_id: str) -> str:
    """The line a job prints when an identical config already has a FINISHED run."""
    return (f"{SUMMARY_PREFIX}skipped {name or _NAME_FALLBACK}: identical config already "
            f"FINISHED as run {run_id} (experiment {experiment_id})")


def failed_line(name: str | None, err: BaseException) -> str:
    """The line a failed job of a sweep prints (stderr) before the sweep goes on."""
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    return f"{SUMMARY_PREFIX}job {name or '?'} failed: {type(err).__name__}: {first}"


_OUTCOME_RE = "|".join(OUTCOMES)
_LINE = re.compile(
    rf"^fnnbench: (?:skipped (?P<skipped>.*?): identical config already FINISHED"
    rf"|job (?P<failed>.*) failed: "
    rf"|(?P<name>.*): (?P<outcome>{_OUTCOME_RE}), epochs=)"
)


def parse_job_line(line: str) -> JobLine | None:
    """The inverse of :func:`summary_line` / :func:`skipped_line` / :func:`failed_line`;
    None for any other line."""
    m = _LINE.match(line)
    if m is None:
        return None
    if m["skipped"] is not None:
        return JobLine(m["skipped"], "skipped")
    if m["failed"] is not None:
        return JobLine(m["failed"], "failed")
    return JobLine(m["name"], m["outcome"])


# ---------------------------------------------------------------- the sweep summary line
@dataclass(frozen=True)
class SweepCounts:
    """What became of a sweep's jobs, as its launching process counted them from MLflow."""

    n_jobs: int
    n_finished: int
    n_diverged: int
    n_failed: int
    n_killed: int
    n_skipped: int


def sweep_line(name: str, counts: SweepCounts, parent_run_id: str, status: str) -> str:
    """The line a sweep prints when it ends (counts from MLflow, not from its jobs' output)."""
    c = counts
    return (f"{SUMMARY_PREFIX}sweep {name}: {c.n_jobs} jobs: {c.n_finished} finished "
            f"({c.n_diverged} diverged), {c.n_failed} failed, {c.n_killed} killed, "
            f"{c.n_skipped} skipped; parent run {parent_run_id} {status}")


_SWEEP_LINE = re.compile(
    r"^fnnbench: sweep .*: (?P<n_jobs>\d+) jobs: (?P<n_finished>\d+) finished "
    r"\((?P<n_diverged>\d+) diverged\), (?P<n_failed>\d+) failed, (?P<n_killed>\d+) killed, "
    r"(?P<n_skipped>\d+) skipped; parent run \S+ \w+$"
)


def parse_sweep_line(line: str) -> SweepCounts | None:
    """The inverse of :func:`sweep_line`; None for any other line."""
    m = _SWEEP_LINE.match(line)
    return None if m is None else SweepCounts(**{k: int(v) for k, v in m.groupdict().items()})


# ---------------------------------------------------------------- the MLflow UI and the report
# MLflow 3.17's UI opens an experiment on the GenAI "Overview" page unless the URL says
# `workflowType=machine_learning` (its sidebar switch "GenAI | Model training"; the choice is
# the URL's, else the browser's last one, else GenAI). The experiment tag below is the kind
# the UI's own selector writes for "Machine learning"; 3.17.2 routes by the URL parameter
# (its workflow-type switch is on), UIs without that switch by the tag, so fnnbench sets both.
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"  # the UI's "Machine learning" / "Model training"
UI_URL = "http://127.0.0.1:5000"  # where `mlflow ui` listens by default
WORKFLOW_QUERY = "workflowType=machine_learning"
TAG_VERDICT = "fnnbench.verdict"  # a sweep parent's claim-level verdict (set by the report)
TAG_REPORT = "fnnbench.report"  # artifact path of the report page logged to a parent run
REPORT_ARTIFACTS = "report"  # the parent run's artifact folder of its report page + img/
_SLUG_MAX = 80


def slug(text: str) -> str:
    """A tag-key-safe slug: lower case, runs of other characters than [a-z0-9] -> '_'."""
    s = re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")[:_SLUG_MAX].rstrip("_")
    return s or "comparison"


def verdict_tag(comparison: str | None = None) -> str:
    """``fnnbench.verdict`` (the claim's word), or ``fnnbench.verdict.<slug>`` of one
    comparison label (one tag per primary comparison of a claim with several)."""
    return TAG_VERDICT if comparison is None else f"{TAG_VERDICT}.{slug(comparison)}"


def _is_http(uri: str | None) -> bool:
    return str(uri or "").lower().startswith(("http://", "https://"))


def ui_base(uri: str | None) -> str:
    """Where the UI of the store ``uri`` answers: an MLflow server serves its own UI; any
    other store is browsed with ``mlflow ui`` (:data:`UI_URL`)."""
    return str(uri).rstrip("/") if _is_http(uri) else UI_URL


def ui_command(uri: str | None) -> str | None:
    """The command that starts a UI on the store ``uri`` (None: a server is its own UI)."""
    if _is_http(uri):
        return None
    return f"mlflow ui --backend-store-uri {shlex.quote(str(uri or DEFAULT_URI))}"


def runs_url(experiment_id: str, parent_run_id: str | None = None, base: str = UI_URL) -> str:
    """The runs table of an experiment in the MLflow UI (model-training view); with
    ``parent_run_id``, searched for that sweep: its jobs, nested under the parent run."""
    url = f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?{WORKFLOW_QUERY}"
    if parent_run_id:
        search = f"tags.mlflow.parentRunId = '{parent_run_id}'"
        url += "&searchFilter=" + quote(search, safe="")
    return url


def run_url(experiment_id: str, run_id: str, tab: str | None = None, base: str = UI_URL) -> str:
    """One run's page in the MLflow UI (model-training view); ``tab``: e.g. ``artifacts``."""
    path = f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return path + (f"/{tab}" if tab else "") + f"?{WORKFLOW_QUERY}"


def report_line(parent_run_id: str) -> str:
    """The line a sweep prints after its summary: the command that reports it."""
    return f"{SUMMARY_PREFIX}report: python -m fnnbench.report --sweep {parent_run_id}"


def ui_line(uri: str, experiment_id: str, parent_run_id: str) -> str:
    """The line a sweep prints after its summary: its runs in the MLflow UI (and how to start
    the UI when the store is not a server)."""
    url = runs_url(experiment_id, parent_run_id, ui_base(uri))
    cmd = ui_command(uri)
    return f"{SUMMARY_PREFIX}runs: {url}" + (f" (start the UI: {cmd})" if cmd else "")
