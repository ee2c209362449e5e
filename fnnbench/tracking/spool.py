"""What a job could not write to an unreachable tracking server, kept in a local file.

A job whose tracking server stops answering (GET /health fails after MLflow's own retries)
goes on training and appends what it would have written -- metrics, params, tags, artifacts,
the final status -- to ``<spool dir>/<run id>.jsonl`` (one JSON object a line, fsynced);
artifacts go to ``<spool dir>/<run id>.artifacts/``. The spool dir is FNNBENCH_SPOOL_DIR
(set by the sweep's callback to ``./.fnnbench-spool`` of the launching process), else
``./.fnnbench-spool``. :func:`replay` sends a spool file to its server once the server answers
again (the sweep's end and ``python -m fnnbench.tracking doctor`` call it), ends the run with
the status the job recorded, and deletes the file. Files of a writer that is still alive and
has not ended its run are left alone.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from fnnbench.tracking import liveness, records
from fnnbench.tracking.names import DEFAULT_SPOOL_DIR, ENV_SPOOL_DIR, TAG_ERROR, TAG_REAPED


def spool_dir(explicit: str | os.PathLike | None = None) -> Path:
    return Path(explicit or os.environ.get(ENV_SPOOL_DIR) or DEFAULT_SPOOL_DIR).absolute()


class Spool:
    """The spool file of one run (created on the first record)."""

    def __init__(self, uri: str, run_id: str, directory: str | os.PathLike | None = None):
        self.uri, self.run_id = uri, run_id
        self.dir = spool_dir(directory)
        self.path = self.dir / f"{run_id}.jsonl"

    @property
    def artifact_dir(self) -> Path:
        return self.dir / f"{self.run_id}.artifacts"

    def _append(self, record: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        with open(self.path, "a") as f:
            if new:
                f.write(json.dumps({"uri": self.uri, "run_id": self.run_id,
                                    "writer": liveness.encode()}) + "\n")
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def batch(self, metrics: Iterable = (), params: Iterable = (), tags: Iterable = ()) -> None:
        self._append({
            "metrics": [[m.key, m.value, m.timestamp, m.step] for m in metrics],
            "params": [[p.key, p.value] for p in params],
            "tags": [[t.key, t.value] for t in tags]})

    def artifacts(self) -> None:
        self._append({"artifacts": str(self.artifact_dir)})

    def end(self, status: str) -> None:
        self._append({"end": status, "end_time": int(time.time() * 1000)})


def _read(path: Path) -> tuple[dict, list[dict]]:
    lines = []
    with open(path) as f:
        for line in f:
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a crash mid-write: the last one
                break
    return (lines[0] if lines else {}), lines[1:]


def pending(directory: str | os.PathLike | None = None, uri: str | None = None) -> list[Path]:
    """Spool files (of runs in the store at `uri`, when given), oldest first."""
    d = spool_dir(directory)
    files = sorted(d.glob("*.jsonl"), key=lambda p: p.stat().st_mtime) if d.is_dir() else []
    return [p for p in files if uri is None or _read(p)[0].get("uri") == uri]


def replay(directory: str | os.PathLike | None = None, uri: str | None = None,
           quiet: bool = False) -> list[tuple[str, str]]:
    """Send every replayable spool file to its store; (run id, final status or '') replayed.

    A file is replayed when its writer process is gone or the run's end is recorded; a file
    whose server still does not answer stays for the next replay (one line on stderr).
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    from fnnbench.tracking.store import check_server, scheme_of, with_retry

    done = []
    for path in pending(directory, uri):
        head, recs = _read(path)
        run_id, target = head.get("run_id"), head.get("uri")
        if not run_id or not target:
            continue
        ended = next((r["end"] for r in recs if "end" in r), None)
        writer = liveness.decode(head.get("writer"))
        if ended is None and writer and writer[0] == liveness.host() and liveness.pid_alive(
                writer[1], writer[2]):
            continue  # the job is still running and spooling
        try:
            if scheme_of(target) in ("http", "https"):
                check_server(target, timeout=5.0)
            client = MlflowClient(target)
            for rec in recs:
                if "metrics" in rec:
                    metrics = [Metric(k, float(v), int(t), int(s)) for k, v, t, s in
                               rec["metrics"]]
                    params = [Param(k, v) for k, v in rec.get("params", [])]
                    tags = [RunTag(k, v) for k, v in rec.get("tags", [])]
                    for chunk in records.chunks(metrics, records.METRICS_PER_BATCH):
                        with_retry(client.log_batch, run_id, metrics=chunk)
                    for chunk in records.chunks(params, records.PARAMS_PER_BATCH):
                        with_retry(client.log_batch, run_id, params=chunk)
                    for chunk in records.chunks(tags, records.PARAMS_PER_BATCH):
                        with_retry(client.log_batch, run_id, tags=chunk)
                elif "artifacts" in rec and Path(rec["artifacts"]).is_dir():
                    with_retry(client.log_artifacts, run_id, rec["artifacts"])
            if ended is not None:
                end = next(r for r in recs if "end" in r)
                run = client.get_run(run_id)
                if TAG_REAPED in run.data.tags:  # reaped before the spool came back: undo
                    client.delete_tag(run_id, TAG_REAPED)
                    if ended != "FAILED" and TAG_ERROR in run.data.tags:
                        client.delete_tag(run_id, TAG_ERROR)
                with_retry(client.set_terminated, run_id, ended, end.get("end_time"))
        except Exception as exc:  # TrackingError: the server still does not answer
            if not quiet:
                first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
                print(f"fnnbench: spool {path} not replayed yet: {first}", file=sys.stderr)
            continue
        shutil.rmtree(path.with_suffix(".artifacts"), ignore_errors=True)
        path.unlink(missing_ok=True)
        done.append((run_id, ended or ""))
    return done
