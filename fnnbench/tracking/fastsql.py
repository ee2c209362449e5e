"""Bulk writes for SQL stores: the rows `log_batch` and `set_terminated` would write, 10x cheaper.

MLflow's SQL store builds one ORM object per metric value (~0.1-0.3 ms each, as much as a
digits training epoch costs for 14 metrics), and `log_batch` opens a session for its params,
another for its metrics and another for its tags. Here metrics, params, tags and the final
status go in one transaction, after MLflow's own run-is-active check: rows with SQLAlchemy
Core `INSERT ... executemany` into MLflow's own tables, `latest_metrics` updated by MLflow's
own method with one candidate per key, a param never changed once logged (as MLflow refuses),
a tag inserted or updated, the status and end time set as `update_run_info` sets them. Values
are sanitised by MLflow's own `sanitize_metric_value` (NaN stored as NaN, +-inf clamped), keys
and values validated by MLflow's own validators.

It leans on SqlAlchemyStore internals, so it is used only with the MLflow versions in
TESTED_MLFLOW (tests/test_tracking.py checks it writes exactly what log_batch writes); any
other version, a non-SQL store, `tracking.fast_metrics: false`, or any error in a batch falls
back to `MlflowClient.log_batch`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

TESTED_MLFLOW = ("3.17.",)  # version prefixes whose SqlAlchemyStore internals this matches


def writer(client) -> Callable[..., None] | None:
    """A function ``write(run_id, metrics=(), params=(), tags=(), status=None, end_time=None)``
    for the client's SQL store, or None if unusable: one transaction for what
    ``log_batch`` + ``set_terminated`` write in several."""
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
                     "sanitize_metric_value", "_update_latest_metrics_if_necessary"):
            if not hasattr(store, name):
                return None
    except Exception:
        return None

    from mlflow.entities import RunStatus
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
    from mlflow.store.tracking.dbmodels.models import SqlMetric, SqlParam, SqlTag
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME
    from mlflow.utils.validation import _validate_metric, _validate_param, _validate_tag
    from sqlalchemy import insert, select, update

    validated: set[str] = set()

    def write(run_id: str, metrics: Sequence = (), params: Sequence = (), tags: Sequence = (),
              status: str | None = None, end_time: int | None = None) -> None:
        rows = []
        latest: dict[str, dict] = {}
        for m in metrics:
            if m.key not in validated:
                _validate_metric(m.key, m.value, m.timestamp, m.step)
                validated.add(m.key)
            is_nan, value = store.sanitize_metric_value(float(m.value))
            row = {"key": m.key, "value": value, "timestamp": int(m.timestamp),
                   "step": int(m.step), "is_nan": is_nan, "run_uuid": run_id}
            rows.append(row)
            best = latest.get(m.key)
            if best is None or ((row["step"], row["timestamp"], row["value"])
                                > (best["step"], best["timestamp"], best["value"])):
                latest[m.key] = row
        params = {p.key: _validate_param(p.key, p.value).value for p in params}
        tag_values: dict[str, str] = {}
        for t in tags:
            if t.key == MLFLOW_RUN_NAME:  # MLflow renames the run too: leave it to MLflow
                raise ValueError("fastsql does not set the run name")
            tag_values[t.key] = _validate_tag(t.key, t.value).value  # a later value wins
        if not (rows or params or tag_values or status):
            return
        with store.ManagedSessionMaker(read_only=False) as session:
            run = store._get_run(run_uuid=run_id, session=session)
            store._check_run_is_active(run)
            if rows:
                _insert_metrics(session, rows)
                store._update_latest_metrics_if_necessary(
                    [SqlMetric(**row) for row in latest.values()], session)
            if params:  # as SqlAlchemyStore._log_params: never change a logged value
                old = dict(session.execute(select(SqlParam.key, SqlParam.value).where(
                    SqlParam.run_uuid == run_id, SqlParam.key.in_(list(params)))).all())
                changed = {k: (old[k], v) for k, v in params.items() if k in old and old[k] != v}
                if changed:
                    raise MlflowException(
                        f"Changing param values is not allowed: {changed} for run ID="
                        f"'{run_id}'", INVALID_PARAMETER_VALUE)
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
                values = {"status": RunStatus.to_string(RunStatus.from_string(status))}
                if end_time is not None:
                    values["end_time"] = int(end_time)
                session.execute(update(type(run)).where(
                    type(run).run_uuid == run_id).values(**values))

    def _insert_metrics(session, rows: list[dict]) -> None:
        """sqlite: the DB-API's executemany (one prepared statement, ~1 us a row); other
        databases: SQLAlchemy Core's executemany."""
        conn = session.connection()
        if conn.dialect.name != "sqlite":
            session.execute(insert(SqlMetric), rows)
            return
        cols = ("key", "value", "timestamp", "step", "is_nan", "run_uuid")
        table = SqlMetric.__table__.name
        conn.connection.driver_connection.executemany(
            f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            [tuple(r[c] for c in cols) for r in rows])

    return write
