"""The writes of a job's run on SQL stores, several times cheaper than MLflow's own calls.

MLflow's SQL store builds one ORM object per metric value (~0.1-0.3 ms each, as much as a
digits training epoch costs for 14 metrics), `log_batch` opens a session for its params,
another for its metrics and another for its tags, and `create_run` reads the experiment with
its tags and the new run back. Here a job's run takes two transactions for a short job: the
run with its tags and params (`Writer.create_run`), then the metrics, the last tags and the
final status (`Writer.__call__`), plus one per periodic flush. The rows are MLflow's own:
metrics into its tables, `latest_metrics` updated as MLflow updates it (the newest
(step, timestamp, value) wins), a param never changed once logged (as MLflow refuses), a tag
inserted or updated, the status and end time set as `update_run_info` sets them, a new run's
row as `SqlAlchemyStore.create_run` fills it. Values are sanitised by MLflow's own
`sanitize_metric_value` (NaN stored as NaN, +-inf clamped), keys and values validated by
MLflow's own validators, and a run or experiment that is not active refused with MLflow's
errors.

On sqlite (the embedded store) a new run and the skip-finished lookup
(`Writer.find_finished`, one query on the tags (key, value) index) are plain SQL through the
DB-API connection of MLflow's own engine; the batches of a running job go through MLflow's
sessions and models on every database (and other databases create runs with MLflow's own
`create_run`).

It leans on SqlAlchemyStore internals, so it is used only with the MLflow versions in
TESTED_MLFLOW (tests/test_tracking.py checks it writes exactly what MLflow's calls write); any
other version, a non-SQL store, `tracking.fast_metrics: false`, or any error in a batch falls
back to `MlflowClient`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

TESTED_MLFLOW = ("3.17.",)  # version prefixes whose SqlAlchemyStore internals this matches
T = TypeVar("T")


def writer(client) -> Writer | None:
    """The :class:`Writer` of the client's SQL store, or None if unusable (not a SQL store,
    an untested MLflow version, a subclass of the store)."""
    try:
        import sys

        import mlflow

        # A SQL store's client has imported its module already; an HTTP client has not, and
        # importing it here would cost seconds of CPU per job for nothing.
        if "mlflow.store.tracking.sqlalchemy_store" not in sys.modules:
            return None
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        if not mlflow.__version__.startswith(TESTED_MLFLOW):
            return None
        store = client._tracking_client.store
        if type(store) is not SqlAlchemyStore:  # subclasses (workspaces) may behave otherwise
            return None
        for name in ("ManagedSessionMaker", "_get_run", "_check_run_is_active",
                     "sanitize_metric_value", "_update_latest_metrics_if_necessary", "engine"):
            if not hasattr(store, name):
                return None
        if store.engine.dialect.name == "sqlite":
            return SqliteWriter(store)
        return Writer(store)
    except Exception:
        return None


class Writer:
    """One transaction for what ``log_batch`` + ``set_terminated`` write in several:
    ``writer(run_id, metrics=(), params=(), tags=(), status=None, end_time=None)``.

    This class writes through MLflow's sessions and models (any SQL database);
    :class:`SqliteWriter` writes plain SQL and also creates runs and finds finished ones.
    """

    def __init__(self, store) -> None:
        self.store = store
        self._validated: set[str] = set()

    # -- what both ways share: MLflow's validation and sanitising ----------------------------
    def _prepare(self, run_id: str, metrics: Sequence, params: Sequence, tags: Sequence):
        """(metric rows, the newest row per key, params {key: value}, tags {key: value})."""
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME
        from mlflow.utils.validation import _validate_metric, _validate_param, _validate_tag

        rows: list[dict] = []
        latest: dict[str, dict] = {}
        for m in metrics:
            if m.key not in self._validated:
                _validate_metric(m.key, m.value, m.timestamp, m.step)
                self._validated.add(m.key)
            is_nan, value = self.store.sanitize_metric_value(float(m.value))
            row = {"key": m.key, "value": value, "timestamp": int(m.timestamp),
                   "step": int(m.step), "is_nan": is_nan, "run_uuid": run_id}
            rows.append(row)
            best = latest.get(m.key)
            if best is None or ((row["step"], row["timestamp"], row["value"])
                                > (best["step"], best["timestamp"], best["value"])):
                latest[m.key] = row
        param_values = {p.key: _validate_param(p.key, p.value).value for p in params}
        tag_values: dict[str, str] = {}
        for t in tags:
            if t.key == MLFLOW_RUN_NAME:  # MLflow renames the run too: leave it to MLflow
                raise ValueError("fastsql does not set the run name")
            tag_values[t.key] = _validate_tag(t.key, t.value).value  # a later value wins
        return rows, latest, param_values, tag_values

    @staticmethod
    def _status(status: str) -> str:
        from mlflow.entities import RunStatus

        return RunStatus.to_string(RunStatus.from_string(status))

    @staticmethod
    def _changed_params(run_id: str, params: Mapping[str, str], old: Mapping[str, str]) -> None:
        """MLflow's refusal to change a logged param."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

        changed = {k: (old[k], v) for k, v in params.items() if k in old and old[k] != v}
        if changed:
            raise MlflowException(
                f"Changing param values is not allowed: {changed} for run ID='{run_id}'",
                INVALID_PARAMETER_VALUE)

    # -- the interface ------------------------------------------------------------------------
    def __call__(self, run_id: str, metrics: Sequence = (), params: Sequence = (),
                 tags: Sequence = (), status: str | None = None,
                 end_time: int | None = None) -> None:
        rows, latest, params_, tags_ = self._prepare(run_id, metrics, params, tags)
        if rows or params_ or tags_ or status:
            self._write(run_id, rows, latest, params_, tags_, status, end_time)

    def create_run(self, experiment_id: str, run_name: str, tags: Mapping[str, str],
                   params: Sequence = ()) -> tuple[str, str] | None:
        """``(run_id, artifact_uri)`` of a new RUNNING run with ``tags`` and ``params``, made
        in one transaction; None here: MLflow's own ``create_run`` does it."""
        return None

    def find_finished(self, experiment_id: str, tag_key: str, tag_value: str,
                      parent_tag: str) -> str | None:
        """The newest FINISHED active run of the experiment whose tag ``tag_key`` is
        ``tag_value`` and whose ``parent_tag`` is not "true"; NotImplemented here."""
        return NotImplemented

    # -- SQLAlchemy ---------------------------------------------------------------------------
    def _write(self, run_id, rows, latest, params, tag_values, status, end_time) -> None:
        from mlflow.store.tracking.dbmodels.models import SqlMetric, SqlParam, SqlTag
        from sqlalchemy import insert, select, update

        store = self.store
        with store.ManagedSessionMaker(read_only=False) as session:
            run = store._get_run(run_uuid=run_id, session=session)
            store._check_run_is_active(run)
            if rows:
                session.execute(insert(SqlMetric), rows)
                store._update_latest_metrics_if_necessary(
                    [SqlMetric(**row) for row in latest.values()], session)
            if params:  # as SqlAlchemyStore._log_params: never change a logged value
                old = dict(session.execute(select(SqlParam.key, SqlParam.value).where(
                    SqlParam.run_uuid == run_id, SqlParam.key.in_(list(params)))).all())
                self._changed_params(run_id, params, old)
                new = [{"key": k, "value": v, "run_uuid": run_id}
                       for k, v in params.items() if k not in old]
                if new:
                    session.execute(insert(SqlParam), new)
            if tag_values:  # as SqlAlchemyStore._set_tags: insert, or update the value
                old_tags = set(session.execute(select(SqlTag.key).where(
                    SqlTag.run_uuid == run_id, SqlTag.key.in_(list(tag_values)))).scalars())
                for k in old_tags:
                    session.execute(update(SqlTag).where(
                        SqlTag.run_uuid == run_id, SqlTag.key == k).values(value=tag_values[k]))
                new_tags = [{"key": k, "value": v, "run_uuid": run_id}
                            for k, v in tag_values.items() if k not in old_tags]
                if new_tags:
                    session.execute(insert(SqlTag), new_tags)
            if status is not None:  # as update_run_info
                values = {"status": self._status(status)}
                if end_time is not None:
                    values["end_time"] = int(end_time)
                session.execute(update(type(run)).where(
                    type(run).run_uuid == run_id).values(**values))


class SqliteWriter(Writer):
    """:class:`Writer` for sqlite: a new run with its tags and params (``create_run``) and
    the skip-finished lookup (``find_finished``) in plain SQL through the DB-API connection of
    MLflow's engine (its pool, its ``connect`` listeners: ``tune_sqlite``'s
    synchronous=NORMAL), the pragmas MLflow's sessions set, one transaction per call (writes:
    ``BEGIN IMMEDIATE``, the write lock taken first). The batches of a running job (metrics,
    tags, the final status) go through MLflow's sessions as in :class:`Writer` while a hang
    of an interrupted job's close in full test runs is not understood (it also happened with
    them on MLflow's sessions; see the README's performance section)."""

    def __init__(self, store) -> None:
        super().__init__(store)
        from mlflow.store.tracking.dbmodels import models as m

        self._engine = store.engine
        self.t_runs, self.t_exps = m.SqlRun.__tablename__, m.SqlExperiment.__tablename__
        self.t_params, self.t_tags = m.SqlParam.__tablename__, m.SqlTag.__tablename__

    def _transaction(self, work: Callable[[Any], T], write: bool = True) -> T:
        """``work(connection)`` inside one transaction (``write``: ``BEGIN IMMEDIATE``, else a
        read transaction): committed after it, rolled back on any exception, a
        KeyboardInterrupt included, wherever it lands: the write lock is never held outside
        this call (a generator context manager could be left suspended inside its
        transaction by an interrupt between its ``__enter__`` and the ``with`` body, holding
        the lock while the run is being closed). sqlite's errors are re-raised as MLflow
        raises them (a locked database: TEMPORARILY_UNAVAILABLE, "database is locked", which
        ``store.with_retry`` retries)."""
        import sqlite3

        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import BAD_REQUEST, TEMPORARILY_UNAVAILABLE

        pooled = self._engine.raw_connection()
        try:
            con = pooled.driver_connection
            try:
                con.execute("PRAGMA foreign_keys = ON")  # as MLflow's ManagedSessionMaker
                con.execute("PRAGMA busy_timeout = 20000")
                try:
                    con.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                    result = work(con)
                    con.commit()
                except BaseException:
                    if con.in_transaction:
                        con.rollback()
                    raise
            except sqlite3.OperationalError as exc:
                raise MlflowException(str(exc), TEMPORARILY_UNAVAILABLE) from exc
            except sqlite3.Error as exc:
                raise MlflowException(str(exc), BAD_REQUEST) from exc
        finally:
            pooled.close()
        return result

    def _active(self, con, table: str, id_column: str, value, what: str) -> tuple:
        """The row of an active run / experiment, else MLflow's error for it."""
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import (
            INVALID_PARAMETER_VALUE,
            RESOURCE_DOES_NOT_EXIST,
        )

        cols = "lifecycle_stage, artifact_location" if what == "Experiment" else "lifecycle_stage"
        row = con.execute(f"SELECT {cols} FROM {table} WHERE {id_column} = ?",
                          (value,)).fetchone()
        if row is None:
            name = "No Experiment with id={} exists" if what == "Experiment" else (
                "Run with id={} not found")
            raise MlflowException(name.format(value), RESOURCE_DOES_NOT_EXIST)
        if row[0] != "active":
            raise MlflowException(
                f"The {what.lower()} {value} must be in the 'active' state. "
                f"Current state is {row[0]}.", INVALID_PARAMETER_VALUE)
        return row

    def create_run(self, experiment_id: str, run_name: str, tags: Mapping[str, str],
                   params: Sequence = ()) -> tuple[str, str]:
        """As ``MlflowClient.create_run(experiment_id, run_name=run_name, tags=tags)`` (the
        same row: status RUNNING, source type UNKNOWN, user from the mlflow.user tag, the
        run name also as the mlflow.runName tag, artifact URI under the experiment's) plus
        the params, in one transaction."""
        import time

        from mlflow.entities import LifecycleStage, RunStatus, SourceType
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME, MLFLOW_USER
        from mlflow.utils.uri import append_to_uri_path

        tags = dict(tags)
        if tags.get(MLFLOW_RUN_NAME, run_name) != run_name or not run_name:
            raise ValueError("fastsql creates runs with one non-empty name")
        _, _, params_, tags_ = self._prepare("", (), params, [_Tag(k, v) for k, v in
                                                              tags.items()])
        tags_[MLFLOW_RUN_NAME] = run_name
        run_id = uuid.uuid4().hex
        start = int(time.time() * 1000)

        def work(con) -> str:
            _, location = self._active(con, self.t_exps, "experiment_id", int(experiment_id),
                                       "Experiment")
            artifact_uri = append_to_uri_path(location, run_id, "artifacts")
            con.execute(
                f"INSERT INTO {self.t_runs} (run_uuid, name, source_type, source_name, "
                "entry_point_name, user_id, status, start_time, end_time, deleted_time, "
                "source_version, lifecycle_stage, artifact_uri, experiment_id) "
                "VALUES (?, ?, ?, '', '', ?, ?, ?, NULL, NULL, '', ?, ?, ?)",
                (run_id, run_name, SourceType.to_string(SourceType.UNKNOWN),
                 tags.get(MLFLOW_USER, "unknown"), RunStatus.to_string(RunStatus.RUNNING),
                 start, LifecycleStage.ACTIVE, artifact_uri, int(experiment_id)))
            # a new run id: no param or tag of it exists yet
            con.executemany(f"INSERT INTO {self.t_params} (key, value, run_uuid) "
                            "VALUES (?, ?, ?)", [(k, v, run_id) for k, v in params_.items()])
            con.executemany(f"INSERT INTO {self.t_tags} (key, value, run_uuid) VALUES (?, ?, ?)",
                            [(k, v, run_id) for k, v in tags_.items()])
            return artifact_uri
        return run_id, self._transaction(work)

    def find_finished(self, experiment_id: str, tag_key: str, tag_value: str,
                      parent_tag: str) -> str | None:
        """One query on the tags (key, value) index: as ``search_runs`` with ``tags.`key` =
        'value' and attributes.status = 'FINISHED'`` over active runs, newest first (ties by
        run id), parent runs left out."""
        def work(con):
            return con.execute(
                f"SELECT r.run_uuid FROM {self.t_runs} r JOIN {self.t_tags} t "
                "ON t.run_uuid = r.run_uuid AND t.key = ? AND t.value = ? "
                "WHERE r.experiment_id = ? AND r.status = 'FINISHED' "
                "AND r.lifecycle_stage = 'active' AND NOT EXISTS ("
                f"SELECT 1 FROM {self.t_tags} p WHERE p.run_uuid = r.run_uuid "
                "AND p.key = ? AND p.value = 'true') "
                "ORDER BY r.start_time DESC, r.run_uuid LIMIT 1",
                (tag_key, tag_value, int(experiment_id), parent_tag)).fetchone()
        row = self._transaction(work, write=False)
        return row[0] if row else None


class _Tag:
    __slots__ = ("key", "value")

    def __init__(self, key: str, value: str) -> None:
        self.key, self.value = key, value
