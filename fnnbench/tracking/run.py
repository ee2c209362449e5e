"""One MLflow run per training job: `job_run(cfg, overrides, job_name)` and the `JobRun` callback.

    with job_run(cfg, overrides=["activation=relu", "seed=3"], job_name="activation=relu") as job:
        if job.skipped:                  # identical config already FINISHED (skip_finished)
            return None
        result = fit(net, opt, data, cfg.train, rng, callbacks=[job])

Statuses: FINISHED when the block ends normally (diverged runs too: see tag fnnbench.outcome),
FAILED plus tag `fnnbench.error` on an exception, KILLED on KeyboardInterrupt (and any other
BaseException); the exception is re-raised, metrics logged so far are kept, and the run never
stays RUNNING (SIGINT/SIGTERM arriving while the run is being closed are delivered after).

An error while closing the run on an exception is one line on stderr and never replaces that
exception (an interrupt stays an interrupt: KILLED, exit 130).

Per-epoch metrics are buffered and written with `MlflowClient.log_batch` (<= 1000 metrics a
call) every `tracking.flush_every` epochs or `tracking.flush_seconds`, whichever comes first,
and at the end. Summary metrics are logged once at the step of the last epoch (a summary key
that is also a per-epoch metric of that epoch, train_seconds, keeps the per-epoch value).

Crash consistency: the run is tagged with its process (host, pid, start time) and a heartbeat
refreshed with the flushes (liveness.py), so `reaper.py` can end it KILLED if the process dies
without closing it; in a sweep worker on the launching host the job stops (KILLED) once the
launching process is gone; when an http(s) tracking server stops answering, the rest of the
run goes to a local spool file replayed later (spool.py).

Non-finite values are logged as they are: MLflow stores NaN as NaN, and SQL stores clamp +-inf
to +-1.7976931348623157e308.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from fnnbench.tracking import liveness, records
from fnnbench.tracking.names import (
    ENV_LAUNCHER,
    ENV_PARENT,
    ENV_SWEEP_KEYS,
    ENV_URI,
    HEARTBEAT_SECONDS,
    TAG_CLAIM,
    TAG_CONFIG_HASH,
    TAG_ERROR,
    TAG_HEARTBEAT,
    TAG_OUTCOME,
    TAG_OVERRIDES,
    TAG_PARENT,
    TAG_SKIPPED_PREFIX,
    TAG_SWEEP,
    TAG_SWEEP_SHA256,
    skipped_line,
)
from fnnbench.tracking.store import (
    check_server,
    experiment_id,
    experiment_name,
    prepare,
    scheme_of,
    tune_sqlite,
    with_retry,
)

MAX_RUN_NAME = 250


def enabled(cfg: Mapping) -> bool:
    """cfg.tracking.enabled (default true); false means no MLflow at all."""
    tcfg = cfg.get("tracking") or {}
    value = tcfg.get("enabled", True)
    return True if value is None else bool(value)


def _hydra():
    """The HydraConfig of this job, or None outside a Hydra job."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return HydraConfig.get() if HydraConfig.initialized() else None
    except Exception:
        return None


def _is_multirun(hc) -> bool:
    if os.environ.get(ENV_PARENT):
        return True
    try:
        return hc is not None and getattr(hc.mode, "name", str(hc.mode)) == "MULTIRUN"
    except Exception:
        return False


def run_name(overrides: Sequence[str], sweep_keys: Sequence[str] | None = None) -> str:
    """'activation=relu,seed=3': the overrides whose key the sweep varies (all when unknown).

    `sweep_keys` defaults to FNNBENCH_SWEEP_KEYS, set by SweepCallback in the launching process.
    """
    if sweep_keys is None:
        env = os.environ.get(ENV_SWEEP_KEYS, "")
        sweep_keys = [k for k in env.split(",") if k]
    items = [o for o in overrides if not sweep_keys or _override_key(o) in sweep_keys]
    return ",".join(items or overrides)[:MAX_RUN_NAME] or "run"


def _override_key(override: str) -> str:
    return override.partition("=")[0].lstrip("+~")


class JobRun:
    """The MLflow side of one job; also the trainer's callback.

    Attributes: `run_id` (None when tracking is disabled or the job was skipped), `skipped`,
    `finished_run_id` (the FINISHED run a skipped job matched), `experiment_id`, `uri`, `name`,
    `result` (the TrainResult given to on_train_end).
    """

    def __init__(self, client=None, run_id: str | None = None, *, uri: str | None = None,
                 experiment_id: str | None = None, name: str = "", cfg: Mapping | None = None,
                 skipped: bool = False, finished_run_id: str | None = None,
                 artifact_uri: str | None = None, fast=None, resolved: Mapping | None = None):
        self.client = client
        self.artifact_uri = artifact_uri
        self.run_id = run_id
        self.uri = uri
        self.experiment_id = experiment_id
        self.name = name
        self.skipped = skipped
        self.finished_run_id = finished_run_id
        self.result = None
        self._cfg = cfg
        tcfg = (cfg or {}).get("tracking") or {}
        self.flush_every = max(1, int(tcfg.get("flush_every") or 100))
        self.flush_seconds = float(tcfg.get("flush_seconds") or 10.0)
        self.log_artifacts = bool(tcfg.get("log_artifacts", True))
        self.log_model = bool(tcfg.get("log_model", True))
        self.heartbeat_seconds = float(tcfg.get("heartbeat_seconds") or HEARTBEAT_SECONDS)
        self._last_beat = time.time()
        self._launcher = liveness.decode(os.environ.get(ENV_LAUNCHER))
        self._launcher_checked = time.monotonic()
        self.spool = None  # a spool.Spool once the tracking server stopped answering
        self._stop_reason = ""  # why the job stopped itself (tag fnnbench.error of KILLED)
        self._buffer: list = []
        self._last_step = 0  # the step (epoch) of the last on_epoch_end
        self._last_keys: set[str] = set()  # the metrics of that epoch
        self._epochs_buffered = 0
        self._last_flush = time.monotonic()
        self.n_metrics_logged = 0
        self._resolved = resolved  # the config with interpolations resolved (config.yaml)
        self._final_tags: list = []  # written with the final status (fastsql)
        self._fast = fast
        if (fast is None and client is not None and run_id is not None
                and tcfg.get("fast_metrics", True)):
            from fnnbench.tracking import fastsql

            self._fast = fastsql.writer(client)

    @property
    def active(self) -> bool:
        return self.run_id is not None

    # -- trainer callback -------------------------------------------------------------------
    def on_epoch_end(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Buffer one epoch of metrics (step = epoch); flush every flush_every epochs."""
        if self.run_id is None:
            return
        from mlflow.entities import Metric

        self._check_launcher()
        timestamp = int(time.time() * 1000)
        step = int(epoch)
        self._last_step, self._last_keys = step, set(metrics)
        for key, value in metrics.items():
            try:
                x = float(value)
            except (TypeError, ValueError):
                continue
            self._buffer.append(Metric(key, x, timestamp, step))
        self._epochs_buffered += 1
        if (self._epochs_buffered >= self.flush_every
                or len(self._buffer) >= records.METRICS_PER_BATCH
                or time.monotonic() - self._last_flush >= self.flush_seconds):
            self.flush()

    def on_train_end(self, result) -> None:
        """Log summary metrics and the outcome tag, then the artifacts and the model. With
        fastsql the metrics and the tag wait for the final status (one transaction at the
        end of the run, also when the artifacts fail: the run ends FAILED with them);
        otherwise they are flushed before the artifacts."""
        self.result = result
        if self.run_id is None:
            return
        from mlflow.entities import Metric, RunTag

        timestamp = int(time.time() * 1000)
        # summary metrics at the step of the last epoch (their latest value is the summary);
        # a summary key that is also a per-epoch metric of that epoch (train_seconds) keeps
        # the per-epoch value: one value per (key, step)
        self._buffer.extend(
            Metric(k, float(v), timestamp, self._last_step)
            for k, v in (getattr(result, "summary", None) or {}).items()
            if _is_number(v) and k not in self._last_keys)
        outcome = RunTag(TAG_OUTCOME, str(getattr(result, "outcome", "unknown")))
        if self._fast is not None and self.spool is None:
            self._final_tags.append(outcome)
        else:  # the last epochs, the summary and the outcome: one log_batch call for short jobs
            self.flush(tags=[outcome])
        if self.log_artifacts:
            self._log_artifacts(result)

    def flush(self, tags: Sequence = ()) -> None:
        """Write buffered metrics (and `tags`) with log_batch, at most 1000 metrics a call;
        with a heartbeat tag at most every `heartbeat_seconds`. When the tracking server
        stops answering, what is left goes to the run's spool file (spool.py)."""
        if self.run_id is None:
            return
        from mlflow.entities import RunTag

        tags = list(tags)
        if time.time() - self._last_beat >= self.heartbeat_seconds:
            self._last_beat = time.time()
            tags.append(RunTag(TAG_HEARTBEAT, str(int(self._last_beat))))
        if self.spool is not None:
            self.spool.batch(metrics=self._buffer, tags=tags)
            self._reset_buffer()
            return
        if self._fast is not None and self._write_fast(metrics=self._buffer, tags=tags):
            self._reset_buffer()
            return
        batches = list(records.chunks(self._buffer, records.METRICS_PER_BATCH))
        if not batches and tags:
            batches = [[]]  # tags only
        done = 0  # batches written
        try:
            for i, metrics in enumerate(batches):
                last = i == len(batches) - 1
                with_retry(self.client.log_batch, self.run_id, metrics=metrics,
                           tags=tags if last else [])
                self.n_metrics_logged += len(metrics)
                done += 1
        except Exception as exc:
            if not self._start_spooling(exc):
                raise
            self.spool.batch(metrics=[m for b in batches[done:] for m in b], tags=tags)
        self._reset_buffer()

    def _reset_buffer(self) -> None:
        self._buffer = []
        self._epochs_buffered = 0
        self._last_flush = time.monotonic()

    def _start_spooling(self, exc: BaseException) -> bool:
        """True (and spooling from now on) when `exc` came from a tracking server that no
        longer answers GET /health; False for any other error (the caller raises it)."""
        if self.spool is not None:
            return True
        if scheme_of(self.uri or "") not in ("http", "https"):
            return False
        try:
            check_server(self.uri, timeout=5.0)
        except Exception:
            from fnnbench.tracking.spool import Spool

            self.spool = Spool(self.uri, self.run_id)
            first = (str(exc).strip() or type(exc).__name__).splitlines()[0][:200]
            print(f"fnnbench: tracking server {self.uri} unreachable ({first}); run "
                  f"{self.run_id} is spooled to {self.spool.path} and replayed when the "
                  "server is back", file=sys.stderr, flush=True)
            return True
        return False

    def _check_launcher(self) -> None:
        """In a worker process of a sweep on this host: stop (KeyboardInterrupt, the run ends
        KILLED) once the sweep's launching process is gone (kill -9, OOM). Checked at most once
        a second."""
        launcher = self._launcher
        if launcher is None or launcher[1] == os.getpid() or launcher[0] != liveness.host():
            return
        if time.monotonic() - self._launcher_checked < 1.0:
            return
        self._launcher_checked = time.monotonic()
        if not liveness.pid_alive(launcher[1], launcher[2]):
            self._launcher = None
            self._stop_reason = f"the sweep's launching process {launcher[1]} is gone"
            raise KeyboardInterrupt(self._stop_reason)

    def _write_fast(self, metrics: Sequence = (), **rest: Any) -> bool:
        """One transaction (fastsql: metrics, params, tags, status); False after any error,
        and the rest of this run takes MLflow's own calls (the failed transaction wrote
        nothing)."""
        try:
            with_retry(self._fast, self.run_id, metrics=metrics, **rest)
        except Exception:
            self._fast = None
            return False
        self.n_metrics_logged += len(metrics)
        return True

    # -- artifacts --------------------------------------------------------------------------
    def _log_artifacts(self, result) -> None:
        """config.yaml, history.csv, params.npz and model/: written in place when the run's
        artifact store is a local directory, else in a temp dir uploaded with log_artifacts."""
        if self.spool is not None:
            self._spool_artifacts(result)
            return
        local = _local_dir(self.artifact_uri)
        if local is not None:
            local.mkdir(parents=True, exist_ok=True)
            self._write_artifacts(result, local)
            return
        with tempfile.TemporaryDirectory(prefix="fnnbench-") as tmp:
            self._write_artifacts(result, Path(tmp))
            try:
                with_retry(self.client.log_artifacts, self.run_id, tmp)
            except Exception as exc:
                if not self._start_spooling(exc):
                    raise
                self._spool_artifacts(result)

    def _spool_artifacts(self, result) -> None:
        out = self.spool.artifact_dir
        out.mkdir(parents=True, exist_ok=True)
        self._write_artifacts(result, out)
        self.spool.artifacts()

    def _write_artifacts(self, result, out: Path) -> None:
        import yaml

        if self._cfg is not None:
            dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml: 10x faster
            resolved = self._resolved if self._resolved is not None else records.resolved(
                self._cfg)
            text = yaml.dump(resolved, Dumper=dumper, sort_keys=False)
            (out / "config.yaml").write_text(text)
        history = getattr(result, "history", None)
        if history:
            write_history_csv(history, out / "history.csv")
        net = getattr(result, "net", None)
        if net is not None and hasattr(net, "save"):
            params = out / "params.npz"
            net.save(params)
            if self.log_model:
                from fnnbench.tracking.model import save_pyfunc

                save_pyfunc(out / "model", params, net)

    # -- end of run -------------------------------------------------------------------------
    def _end(self, status: str, exc: BaseException | None = None) -> None:
        """Flush what is buffered, tag the error, set the final status (never left RUNNING)."""
        if self.run_id is None:
            return
        with _deferred_signals():
            if self.spool is None and self._fast is not None and self._end_fast(status, exc):
                return
            try:
                self.flush(tags=self._final_tags)
                self._final_tags = []
            except Exception as flush_exc:
                print(f"fnnbench: could not write buffered metrics of run {self.run_id}: "
                      f"{records.clip_tag(flush_exc).splitlines()[0]}", file=sys.stderr)
            if self.spool is None and exc is not None and status == "FAILED":
                self._log_error(exc)
            if self.spool is None and status == "KILLED" and self._stop_reason:
                with_retry(self.client.set_tag, self.run_id, TAG_ERROR, self._stop_reason)
            if self.spool is None:
                try:
                    with_retry(self.client.set_terminated, self.run_id, status)
                    return
                except Exception as end_exc:
                    if not self._start_spooling(end_exc):
                        raise
            if exc is not None and status == "FAILED":
                from mlflow.entities import RunTag

                message = records.clip_tag(f"{type(exc).__name__}: {exc}")
                self.spool.batch(tags=[RunTag(TAG_ERROR, message)])
            self.spool.end(status)

    def _end_fast(self, status: str, exc: BaseException | None) -> bool:
        """The buffered metrics, the stop reason and the final status in one transaction
        (the error of a FAILED run first, as `_end` logs it); False: use `_end`'s way."""
        from mlflow.entities import RunTag

        if exc is not None and status == "FAILED":
            self._log_error(exc)
        tags = list(self._final_tags)
        if status == "KILLED" and self._stop_reason:
            tags.append(RunTag(TAG_ERROR, self._stop_reason))
        if not self._write_fast(metrics=self._buffer, tags=tags, status=status,
                                end_time=int(time.time() * 1000)):
            return False
        self._reset_buffer()
        self._final_tags = []
        return True

    def _end_quietly(self, status: str, exc: BaseException) -> None:
        """`_end` on the way out of an exception: an error while closing the run is one
        line on stderr and never replaces the exception being raised (an interrupt stays an
        interrupt: KILLED, exit 130)."""
        try:
            self._end(status, exc)
        except Exception as end_exc:
            first = (str(end_exc).strip() or type(end_exc).__name__).splitlines()[0]
            print(f"fnnbench: could not close run {self.run_id} as {status}: "
                  f"{type(end_exc).__name__}: {first}", file=sys.stderr, flush=True)

    def _log_error(self, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        try:
            with_retry(self.client.set_tag, self.run_id, TAG_ERROR,
                       records.clip_tag(message))
            if self.log_artifacts:
                text = "".join(traceback.format_exception(exc))
                self.client.log_text(self.run_id, text, "error.txt")
        except Exception as log_exc:
            print(f"fnnbench: could not record the error of run {self.run_id}: {log_exc}",
                  file=sys.stderr)


def _local_dir(artifact_uri: str | None) -> Path | None:
    """The directory of a file:// (or plain path) artifact URI; None for remote stores."""
    if not artifact_uri:
        return None
    parts = urlsplit(artifact_uri)
    if parts.scheme == "file" and parts.netloc in ("", "localhost"):
        return Path(url2pathname(parts.path))
    if parts.scheme == "" and os.path.isabs(artifact_uri):
        return Path(artifact_uri)
    return None


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return not isinstance(value, str | bool)


def write_history_csv(history: Sequence[Mapping[str, float]], path: str | Path) -> None:
    """One row per epoch, columns `epoch` then every metric (first-seen order); blanks missing."""
    keys: dict[str, None] = {}
    for row in history:
        keys.update(dict.fromkeys(k for k in row if k != "epoch"))
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", *keys])
        for epoch, row in enumerate(history):
            writer.writerow([row.get("epoch", epoch), *(_csv_value(row.get(k)) for k in keys)])


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # nan, inf, -inf: pandas.read_csv reads them back
    return repr(float(value)) if _is_number(value) else str(value)


@contextlib.contextmanager
def _deferred_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM while a run is being closed; deliver them right after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[tuple[int, Any]] = []
    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            saved[sig] = signal.signal(sig, lambda s, f: pending.append((s, f)))
        except (ValueError, OSError):
            continue
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
        for sig, frame in pending[:1]:
            handler = saved.get(sig)
            if callable(handler):
                handler(sig, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(sig)


def _skip_lookup(client, exp_id: str, config_hash: str, fast=None) -> str | None:
    """Run id of a FINISHED, non-parent run with this config hash in the experiment, or None
    (fastsql's one indexed query on sqlite, else MLflow's search)."""
    if fast is not None:
        try:
            found = with_retry(fast.find_finished, exp_id, TAG_CONFIG_HASH, config_hash,
                               TAG_PARENT)
            if found is not NotImplemented:
                return found
        except Exception:
            pass
    runs = client.search_runs(
        [exp_id],
        filter_string=(f"tags.`{TAG_CONFIG_HASH}` = '{config_hash}' "
                       "and attributes.status = 'FINISHED'"),
        max_results=10,
        order_by=["attributes.start_time DESC"],
    )
    for run in runs:
        if run.data.tags.get(TAG_PARENT) != "true":
            return run.info.run_id
    return None


@contextlib.contextmanager
def job_run(cfg: Mapping, overrides: Sequence[str] | None = None,
            job_name: str | None = None, sweep: str | None = None,
            searchpath: Sequence[str] = ()) -> Iterator[JobRun]:
    """Open the MLflow run of one job (see the module docstring); yields a `JobRun`.

    cfg: the job's composed config (needs `tracking`; `claim.id` tags the claim).
    overrides: the job's override strings (default: Hydra's task overrides of this job).
    job_name: the run name (default: the overrides the sweep varies, see `run_name`).
    sweep: the claim sweep the job belongs to (default: Hydra's choice of `sweep`).
    searchpath: Hydra's search path, where an external claim file's copy is (default:
    Hydra's `hydra.searchpath` of this job).
    With cfg.tracking.enabled false this yields a no-op JobRun and touches no MLflow code.
    """
    if not enabled(cfg):
        yield JobRun(cfg=cfg)
        return
    from mlflow import MlflowClient
    from mlflow.entities import Param

    tcfg = cfg.get("tracking") or {}
    uri = os.environ.get(ENV_URI) or prepare(tcfg)
    tune_sqlite(uri)
    exp_id = experiment_id(uri, experiment_name(tcfg))
    client = MlflowClient(uri)
    hc = _hydra()
    if overrides is None:
        overrides = list(hc.overrides.task) if hc is not None else []
    overrides = [str(o) for o in overrides]
    name = (job_name or run_name(overrides))[:MAX_RUN_NAME]
    resolved = records.resolved(cfg)
    chash = records.config_hash(resolved)  # the same hash as of cfg (a copy of resolved)
    parent_id = os.environ.get(ENV_PARENT) or None

    skip = tcfg.get("skip_finished")
    if skip is None:
        skip = _is_multirun(hc)
    fast = None
    if tcfg.get("fast_metrics", True):
        from fnnbench.tracking import fastsql

        fast = fastsql.writer(client)
    if skip:
        finished = _skip_lookup(client, exp_id, chash, fast)
        if finished is not None:
            print(skipped_line(name, finished, exp_id), flush=True)
            if parent_id:
                with_retry(client.set_tag, parent_id, TAG_SKIPPED_PREFIX + chash[:16], finished)
            yield JobRun(uri=uri, experiment_id=exp_id, name=name, cfg=cfg, skipped=True,
                      finished_run_id=finished)
            return

    tags = records.context_tags()
    tags.update({
        TAG_CONFIG_HASH: chash,
        TAG_OVERRIDES: records.clip_tag(" ".join(overrides)),
    })
    claim_cfg = cfg.get("claim")
    claim = claim_cfg.get("id") if isinstance(claim_cfg, Mapping) else None
    sweep = sweep or _sweep_choice(hc)
    if claim:
        tags[TAG_CLAIM] = str(claim)
    if sweep:
        tags[TAG_SWEEP] = str(sweep)
        digest = sweep_sha256(sweep, list(searchpath) or _searchpath(hc))
        if digest:
            tags[TAG_SWEEP_SHA256] = digest
    if parent_id:
        tags["mlflow.parentRunId"] = parent_id
    tags.update(liveness.identity())  # host, pid, start time, heartbeat: see reaper.py
    params = [Param(k, v) for k, v in records.flatten(resolved).items()]
    created = None
    if fast is not None:  # the run, its tags and its params in one transaction
        try:
            created = with_retry(fast.create_run, exp_id, name, tags, params)
        except Exception:  # nothing was written: MLflow's own calls below
            fast = None
    if created is None:
        run = with_retry(client.create_run, exp_id, run_name=name, tags=tags)
        created = (run.info.run_id, run.info.artifact_uri)
    job = JobRun(client, created[0], uri=uri, experiment_id=exp_id, name=name, cfg=cfg,
                 artifact_uri=created[1], fast=fast, resolved=resolved)
    try:
        try:
            if fast is None and (job._fast is None or not job._write_fast(params=params)):
                _log_params(client, job.run_id, params)
        except Exception as exc:
            if not job._start_spooling(exc):
                raise
            job.spool.batch(params=params)
        yield job
    except KeyboardInterrupt as exc:
        job._end_quietly("KILLED", exc)
        raise
    except Exception as exc:
        job._end_quietly("FAILED", exc)
        raise
    except BaseException as exc:  # SystemExit, GeneratorExit: the job was stopped
        job._end_quietly("KILLED", exc)
        raise
    else:
        job._end("FINISHED")


def sweep_sha256(sweep: str | None, searchpath: Sequence[str] = ()) -> str | None:
    """sha256 of the claim file ``sweep=<sweep>`` composed: ``sweeps/<sweep>.yaml``, or the
    copy of an external claim file on Hydra's search path (``fnnbench.paths.sweep_file``);
    None when there is no such file."""
    from fnnbench.paths import file_sha256, sweep_file

    path = sweep_file(sweep, searchpath)
    return file_sha256(path) if path is not None else None


def _searchpath(hc) -> list[str]:
    try:
        return [str(p) for p in (hc.searchpath or [])] if hc is not None else []
    except Exception:
        return []


def _sweep_choice(hc) -> str | None:
    if hc is None:
        return None
    try:
        return hc.runtime.choices.get("sweep")
    except Exception:
        return None


def _log_params(client, run_id: str, params: Sequence) -> None:
    for batch in records.chunks(params, records.PARAMS_PER_BATCH):
        with_retry(client.log_batch, run_id, params=batch)
