"""End the runs a dead process left RUNNING (kill -9, preemption, OOM, a lost node).

`reap(client, experiment_id, fix=True)` looks at every RUNNING run of the experiment:

- a job run whose writer is gone (:func:`fnnbench.tracking.liveness.why_dead`: same host, pid
  gone or reused; another host, no heartbeat for `stale_seconds`) is ended KILLED with tags
  `fnnbench.reaped` and `fnnbench.error` saying why; its metrics are kept;
- a sweep's parent run whose launching process is gone and whose children have all ended is
  ended too (tagged with the counts, like a sweep's end): KILLED if a child was reaped or
  killed or the sweep did not launch all its jobs, else FAILED if a child failed, else FINISHED.

With fix=False nothing is written: the list says what would be ended. Called by the sweep
callback in the launching process before each sweep, by ``python -m fnnbench.reproduce`` and
by ``python -m fnnbench.tracking doctor``. The spool of an unreachable server is replayed first
(see :mod:`fnnbench.tracking.spool`), so a job that ended while the server was down gets its
true status rather than KILLED.
"""

from __future__ import annotations

from dataclasses import dataclass

from fnnbench.tracking import liveness
from fnnbench.tracking.names import (
    DIVERGED,
    STALE_SECONDS,
    TAG_ERROR,
    TAG_HEARTBEAT,
    TAG_OUTCOME,
    TAG_PARENT,
    TAG_REAPED,
    TAG_SKIPPED_PREFIX,
    count_tag,
)
from fnnbench.tracking.store import with_retry


@dataclass(frozen=True)
class Orphan:
    """A RUNNING run whose process is gone: `status` is what it is (or would be) ended as."""

    run_id: str
    name: str
    parent: bool
    why: str
    status: str = "KILLED"

    def line(self, fixed: bool) -> str:
        kind = "sweep parent run" if self.parent else "run"
        verb = f"ended {self.status}" if fixed else f"RUNNING (would end {self.status})"
        return f"fnnbench: {kind} {self.run_id} ({self.name}): {verb}: {self.why}"


def _search(client, exp_id: str, filter_string: str) -> list:
    out, token = [], None
    while True:
        page = client.search_runs([exp_id], filter_string=filter_string, max_results=1000,
                                  page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def reap(client, experiment_id: str, *, fix: bool = True,
         stale_seconds: float = STALE_SECONDS) -> list[Orphan]:
    """End (fix=True) or list the orphaned RUNNING runs of one experiment (module docstring)."""
    running = _search(client, experiment_id, "attributes.status = 'RUNNING'")
    found: list[Orphan] = []
    reaped_ids: set[str] = set()
    for run in running:
        if run.data.tags.get(TAG_PARENT) == "true":
            continue
        why = liveness.why_dead(run.data.tags, run.info.start_time, stale_seconds)
        if why is None:
            continue
        found.append(Orphan(run.info.run_id, run.info.run_name or "", False, why))
        reaped_ids.add(run.info.run_id)
        if fix:
            _end(client, run.info.run_id, "KILLED", why)
    for run in running:
        if run.data.tags.get(TAG_PARENT) != "true":
            continue
        kids = _search(client, experiment_id,
                       f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
        # a sweep's sign of life (another host) is its jobs': their heartbeats and ends
        beats = [_num(run.data.tags.get(TAG_HEARTBEAT))]
        for k in kids:
            beats.append((k.info.end_time or k.info.start_time or 0) / 1000.0)
            beats.append(_num(k.data.tags.get(TAG_HEARTBEAT)))
        tags = {**run.data.tags, TAG_HEARTBEAT: str(max(beats))}
        why = liveness.why_dead(tags, run.info.start_time, stale_seconds)
        if why is None:
            continue
        statuses = ["KILLED" if k.info.run_id in reaped_ids else k.info.status for k in kids]
        if any(s in ("RUNNING", "SCHEDULED") for s in statuses):
            continue  # jobs of the sweep still run (another host): their parent waits
        counts = {
            "n_finished": statuses.count("FINISHED"),
            "n_failed": statuses.count("FAILED"),
            "n_killed": statuses.count("KILLED"),
            "n_diverged": sum(s == "FINISHED" and k.data.tags.get(TAG_OUTCOME) == DIVERGED
                              for s, k in zip(statuses, kids, strict=True)),
            "n_skipped": sum(k.startswith(TAG_SKIPPED_PREFIX) for k in run.data.tags),
        }
        launched = counts["n_finished"] + counts["n_failed"] + counts["n_killed"] + counts[
            "n_skipped"]
        planned = run.data.tags.get(count_tag("n_jobs"), "")
        short = planned.isdigit() and launched < int(planned)
        status = ("KILLED" if counts["n_killed"] or short or not kids else
                  "FAILED" if counts["n_failed"] else "FINISHED")
        why_parent = f"the sweep's launching process is gone: {why.removeprefix('its ')}"
        found.append(Orphan(run.info.run_id, run.info.run_name or "", True, why_parent,
                            status))
        if fix:
            tags = {count_tag(k): str(v) for k, v in counts.items()}
            if not planned:
                tags[count_tag("n_jobs")] = str(launched)
            for key, value in tags.items():
                with_retry(client.set_tag, run.info.run_id, key, value)
            _end(client, run.info.run_id, status, why_parent)
    return found


def _num(text: str | None) -> float:
    try:
        return float(text or 0)
    except ValueError:
        return 0.0


def _end(client, run_id: str, status: str, why: str) -> None:
    from fnnbench.tracking.records import clip_tag

    with_retry(client.set_tag, run_id, TAG_REAPED, clip_tag(why))
    if status != "FINISHED":
        with_retry(client.set_tag, run_id, TAG_ERROR, clip_tag(f"reaped: {why}"))
    with_retry(client.set_terminated, run_id, status)


def recover(uri: str, experiment_id: str, *, fix: bool = True,
            stale_seconds: float = STALE_SECONDS, spool_dir=None,
            quiet: bool = False) -> tuple[list[tuple[str, str]], list[Orphan]]:
    """Replay the spool of `uri` (fix only), then reap: (replayed runs, orphans)."""
    from mlflow import MlflowClient

    from fnnbench.tracking import spool

    replayed = spool.replay(spool_dir, uri=uri, quiet=quiet) if fix else []
    return replayed, reap(MlflowClient(uri), experiment_id, fix=fix,
                          stale_seconds=stale_seconds)


def experiments(client, name: str | None = None) -> list:
    """The active experiment `name` (empty list when missing), or every active experiment."""
    if name:
        exp = client.get_experiment_by_name(name)
        return [exp] if exp is not None and exp.lifecycle_stage == "active" else []
    return list(client.search_experiments())


def recover_store(uri: str | None = None, experiment: str | None = None,
                  stale_seconds: float = STALE_SECONDS) -> str | None:
    """Replay spools and reap experiment `experiment` (default: every experiment) of the store
    at `uri` (default: MLFLOW_TRACKING_URI, else ./mlflow.db); nothing when the store does not
    exist yet. Returns one line saying what was done, or None when nothing was."""
    from pathlib import Path

    from mlflow import MlflowClient

    from fnnbench.tracking.store import resolve_uri, scheme_of, sqlite_path

    uri = resolve_uri({"uri": uri} if uri else None)
    path = sqlite_path(uri)
    if scheme_of(uri) == "sqlite" and path not in (None, "", ":memory:") and not Path(
            path).is_file():
        return None
    n_replayed, orphans = 0, []
    for exp in experiments(MlflowClient(uri), experiment):
        replayed, found = recover(uri, exp.experiment_id, stale_seconds=stale_seconds)
        n_replayed += len(replayed)
        orphans += found
    if not n_replayed and not orphans:
        return None
    n_parents = sum(o.parent for o in orphans)
    return (f"fnnbench: {uri}: replayed {n_replayed} spooled run(s); ended "
            f"{len(orphans) - n_parents} run(s) and {n_parents} sweep parent run(s) left "
            "RUNNING by processes that are gone (KILLED, tag fnnbench.reaped)")
