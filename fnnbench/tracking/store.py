"""Where runs go: resolve the tracking URI, create/upgrade the store, get the experiment.

`prepare(tracking_cfg) -> uri` is called once per process (cached): by the Hydra callback in
the launching process before any job starts, and by `job_run` when no launcher prepared the
store. Every failure becomes a `TrackingError` whose message is ONE line naming the URI and
the cause; the entry point prints it without a traceback and exits 2.

URI order: `tracking.uri` if set, else `MLFLOW_TRACKING_URI`, else `sqlite:///mlflow.db` in the
working directory. Relative sqlite paths are made absolute here, so jobs that change directory
(hydra.job.chdir) still write to the same database. For sqlite stores the artifacts of new
experiments go next to the database (`<db dir>/mlartifacts/<experiment id>`), like
`mlflow server --artifacts-destination`.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from fnnbench.tracking.names import (
    DEFAULT_EXPERIMENT,
    EXPERIMENT_KIND,
    TAG_EXPERIMENT_KIND,
    tracking_uri,
)

SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
HEALTH_TIMEOUT_S = 5.0  # seconds to wait for GET <server>/health before calling it unreachable

T = TypeVar("T")

# (uri, experiment name) -> experiment id, for this process
_EXPERIMENTS: dict[tuple[str, str], str] = {}
_PREPARED: set[str] = set()


class TrackingError(RuntimeError):
    """The tracking store cannot be used. `str(err)` is one line: the URI and the cause."""

    def __init__(self, uri: str, cause: str):
        self.uri = uri
        self.cause = " ".join(str(cause).split())  # one line, whatever the cause said
        super().__init__(f"MLflow tracking store {uri}: {self.cause}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


def _get(cfg: Mapping | None, key: str, default: Any = None) -> Any:
    if cfg is None:
        return default
    value = cfg.get(key, default)
    return default if value is None else value


def experiment_name(tracking_cfg: Mapping | None) -> str:
    return str(_get(tracking_cfg, "experiment", DEFAULT_EXPERIMENT))


def _sqlite_path(uri: str) -> str | None:
    """The database path of a sqlite URI ('' or ':memory:' for in-memory), None otherwise."""
    if not uri.startswith("sqlite:"):
        return None
    rest = uri[len("sqlite:"):]
    if not rest.startswith("//"):
        return None
    path = rest[2:].partition("?")[0]  # after 'sqlite://': '/rel.db' or '//abs.db' or ''
    return path[1:] if path.startswith("/") else path


def absolute_uri(uri: str) -> str:
    """Make a relative sqlite URI absolute (sqlite:///x.db -> sqlite:////cwd/x.db)."""
    path = _sqlite_path(uri)
    if path is None or path in ("", ":memory:") or os.path.isabs(path):
        return uri
    query = uri.partition("?")[2]
    return f"sqlite:///{os.path.abspath(path)}" + (f"?{query}" if query else "")


def resolve_uri(tracking_cfg: Mapping | None = None) -> str:
    """The store a job config writes to: tracking.uri, else MLFLOW_TRACKING_URI, else
    sqlite:///mlflow.db (:func:`fnnbench.tracking.names.tracking_uri`), made absolute."""
    return absolute_uri(str(tracking_uri(_get(tracking_cfg, "uri"))).strip())


def scheme_of(uri: str) -> str:
    """'sqlite', 'http', 'postgresql', ... ('' for plain paths; driver suffixes dropped)."""
    parts = urlsplit(uri)
    if len(parts.scheme) <= 1:  # '' or a Windows drive letter: a plain path
        return ""
    return parts.scheme.lower().split("+")[0]


def prepare(tracking_cfg: Mapping | None = None) -> str:
    """Resolve the URI, create/upgrade the store and the experiment once; return the URI.

    Raises TrackingError (one line naming the URI and the cause) when the store cannot be used:
    unknown scheme, unreachable server, unwritable directory, the file store MLflow 3 refuses.
    """
    uri = resolve_uri(tracking_cfg)
    name = experiment_name(tracking_cfg)
    if uri not in _PREPARED:
        scheme = scheme_of(uri)
        if scheme == "sqlite":
            _prepare_sqlite(uri)
        elif scheme in ("http", "https"):
            check_server(uri)
        elif scheme in ("", "file"):
            _check_file_store(uri)
        elif scheme not in SQL_SCHEMES and scheme != "databricks":
            raise TrackingError(
                uri, f"unsupported URI scheme '{scheme}' "
                "(use sqlite:///path/to/mlflow.db or http://host:port)")
        _PREPARED.add(uri)
    experiment_id(uri, name)
    return uri


def _writable_dir(path: Path) -> str | None:
    """None when a file can be created in `path`, else the reason (works as root too)."""
    try:
        with tempfile.TemporaryFile(dir=path):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


@contextlib.contextmanager
def _dir_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on a directory: first writers of a fresh sqlite store take turns."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, the launching process prepares first anyway
        yield
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def _prepare_sqlite(uri: str) -> None:
    path = _sqlite_path(uri)
    if path in (None, "", ":memory:"):
        return
    db = Path(path)
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrackingError(uri, f"cannot create directory {db.parent}: {exc.strerror}") from None
    if reason := _writable_dir(db.parent):
        raise TrackingError(uri, f"directory {db.parent} is not writable ({reason})")
    with _dir_lock(db.parent):
        if not db.exists():
            _copy_empty_store(db)
        _open_sql_store(uri, db)
        _use_wal(db)
    tune_sqlite(uri)


def _copy_empty_store(db: Path) -> None:
    """A new sqlite store as a copy of an empty one at this MLflow's schema.

    MLflow creates a store by running every one of its ~60 schema migrations (alembic): 3-10 s
    of CPU for each new mlflow.db. The first store of an MLflow version is made that way, in
    the cache folder (``fnnbench.data.cache_dir()``); later ones are copies of it (~10 ms),
    with the Default experiment's artifact location and times set as MLflow would set them.
    Any error: nothing is copied and MLflow creates the store itself.
    """
    import shutil
    import sqlite3

    try:
        template = _empty_store_template()
        tmp = db.with_name(f".{db.name}.{os.getpid()}.tmp")
        shutil.copyfile(template, tmp)
        now = int(time.time() * 1000)
        root = (db.parent.resolve() / "mlartifacts").as_uri()
        with contextlib.closing(sqlite3.connect(tmp)) as con:
            con.execute("UPDATE experiments SET artifact_location = ?, creation_time = ?, "
                        "last_update_time = ? WHERE experiment_id = 0", (f"{root}/0", now, now))
            con.commit()
        os.replace(tmp, db)
    except Exception:
        with contextlib.suppress(Exception):
            tmp.unlink()


def _empty_store_template() -> Path:
    """An empty sqlite store made by this MLflow version (cached, made once)."""
    import mlflow
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from fnnbench.data import cache_dir

    path = cache_dir() / f"mlflow-{mlflow.__version__}-empty.db"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".mlflow-empty-") as tmp:
        made = Path(tmp) / "empty.db"
        store = SqlAlchemyStore(f"sqlite:///{made}", (Path(tmp) / "mlartifacts").as_uri())
        store.engine.dispose()
        os.replace(made, path)  # atomic: parallel first makers are all right
    return path


def _use_wal(db: Path) -> None:
    """Switch the database to write-ahead logging (persistent, stored in the file), and index
    tag values.

    WAL lets readers (`mlflow ui`, the report) work while jobs write, and a commit costs one
    fsync instead of several; on filesystems without WAL support sqlite keeps its mode.
    """
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as con:
            con.execute("PRAGMA journal_mode=WAL")
            # skip-finished looks a job up by the value of its config-hash tag; MLflow indexes
            # tags by (key, run_uuid) only, so without this every lookup reads every run's tag
            # of that key (benchmarks/harness.py times the lookup with and without it).
            # Additive: nothing depends on it; a migration that rebuilds the table drops it
            # and the next prepare makes it again.
            con.execute(f"CREATE INDEX IF NOT EXISTS {TAG_VALUE_INDEX} ON tags (key, value)")
    except sqlite3.Error:
        pass


TAG_VALUE_INDEX = "fnnbench_tags_key_value"


_TUNED: set[str] = set()


def tune_sqlite(uri: str) -> None:
    """`PRAGMA synchronous=NORMAL` on this process's connections to a sqlite store (once).

    In WAL mode NORMAL never corrupts the database; a power cut may lose the last commits.
    It halves the cost of each MLflow write. Only a connection setting: when MLflow's engine
    cannot be reached (another MLflow version), nothing changes but speed.
    """
    if uri in _TUNED or scheme_of(uri) != "sqlite":
        return
    _TUNED.add(uri)
    try:
        import sqlalchemy
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        engine = SqlAlchemyStore._get_or_create_engine(uri)

        def _synchronous_normal(dbapi_connection, connection_record):
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")

        sqlalchemy.event.listen(engine, "connect", _synchronous_normal)
        engine.dispose()  # pooled connections were opened without the pragma
    except Exception:
        pass


def _open_sql_store(uri: str, db: Path | None = None):
    """Create the tables of a fresh database, upgrade an old schema, return the store."""
    from mlflow.exceptions import MlflowException
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    root = ((db.parent if db else Path.cwd()).resolve() / "mlartifacts").as_uri()
    try:
        return SqlAlchemyStore(uri, root)
    except MlflowException as exc:
        if "out-of-date database schema" not in str(exc):
            raise TrackingError(uri, _first_line(exc)) from None
    except Exception as exc:  # sqlalchemy / sqlite errors: locked, corrupt, not a database
        raise TrackingError(uri, _first_line(exc)) from None
    return _upgrade(uri, db, root)


def _upgrade(uri: str, db: Path | None, root: str):
    import shutil

    from mlflow.store.db.utils import _upgrade_db, create_sqlalchemy_engine_with_retry
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    try:
        if db is not None and db.exists():
            backup = db.with_name(db.name + ".pre-upgrade")
            shutil.copy2(db, backup)
            print(f"fnnbench: upgrading the MLflow schema of {uri} (backup: {backup})",
                  file=sys.stderr)
        _upgrade_db(create_sqlalchemy_engine_with_retry(uri))
        return SqlAlchemyStore(uri, root)
    except Exception as exc:
        raise TrackingError(uri, f"schema upgrade failed: {_first_line(exc)}") from None


def check_server(uri: str, timeout: float = HEALTH_TIMEOUT_S) -> None:
    """GET <uri>/health; TrackingError naming the URI when the server does not answer OK."""
    import urllib.error
    import urllib.request

    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(uri, f"cannot reach the MLflow server ({reason})") from None
    if status != 200:
        raise TrackingError(uri, f"the server answered HTTP {status} to GET /health")


def _check_file_store(uri: str) -> None:
    from mlflow.environment_variables import MLFLOW_ALLOW_FILE_STORE

    if not MLFLOW_ALLOW_FILE_STORE.get():
        raise TrackingError(
            uri, "MLflow 3 refuses the file store (./mlruns); use sqlite:///mlflow.db "
            "(`mlflow migrate-filestore` converts old runs) or set MLFLOW_ALLOW_FILE_STORE=true")


def experiment_id(uri: str, name: str) -> str:
    """Id of the active experiment `name` in the store at `uri`, created when missing (cached)."""
    key = (uri, name)
    if key in _EXPERIMENTS:
        return _EXPERIMENTS[key]
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(name)
        if exp is None:
            try:
                exp_id = _create_experiment(client, uri, name)
            except MlflowException as exc:  # another process created it first
                exp = client.get_experiment_by_name(name)
                if exp is None:
                    raise exc from None
            else:
                exp = client.get_experiment(exp_id)
    except TrackingError:
        raise
    except Exception as exc:
        cause = _first_line(exc)
        if "maintenance mode" in cause:  # the file store, refused by MLflow 3
            _check_file_store(uri)
        raise TrackingError(uri, cause) from None
    if exp.lifecycle_stage != "active":
        raise TrackingError(
            uri, f"experiment '{name}' is deleted; restore it (mlflow experiments restore "
            f"--experiment-id {exp.experiment_id}) or choose another tracking.experiment")
    _mark_model_training(client, exp)
    _EXPERIMENTS[key] = exp.experiment_id
    return exp.experiment_id


def _mark_model_training(client, exp) -> None:
    """Tag an experiment made before fnnbench tagged them as a model-training experiment
    (`mlflow.experimentKind`, names.EXPERIMENT_KIND). No store call when the tag is there (it
    comes with the experiment just read); a kind set by hand is kept; best effort: a store
    that refuses the write changes nothing else."""
    if TAG_EXPERIMENT_KIND in (exp.tags or {}):
        return
    try:
        client.set_experiment_tag(exp.experiment_id, TAG_EXPERIMENT_KIND, EXPERIMENT_KIND)
    except Exception:  # noqa: BLE001 - a UI hint never stops a sweep
        pass


def _create_experiment(client, uri: str, name: str) -> str:
    """Create the experiment, tagged as a model-training experiment for MLflow's UI."""
    path = _sqlite_path(uri)
    if path in (None, "", ":memory:"):
        return client.create_experiment(name, tags={TAG_EXPERIMENT_KIND: EXPERIMENT_KIND})
    from mlflow.entities import ExperimentTag

    # a sqlite store: the store object decides the artifact root (<db dir>/mlartifacts/<id>)
    return _open_sql_store(uri, Path(path)).create_experiment(
        name, tags=[ExperimentTag(TAG_EXPERIMENT_KIND, EXPERIMENT_KIND)])


def with_retry(fn: Callable[..., T], *args: Any, attempts: int = 6, **kwargs: Any) -> T:
    """Call fn; retry with backoff while sqlite says 'database is locked' (parallel jobs)."""
    from mlflow.exceptions import MlflowException

    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except MlflowException as exc:
            if "database is locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * 2**attempt + random.uniform(0, 0.05))
    raise AssertionError("unreachable")


def reset_cache() -> None:
    """Forget prepared stores and experiment ids (tests that delete stores use this)."""
    _EXPERIMENTS.clear()
    _PREPARED.clear()
    _TUNED.clear()


first_line = _first_line  # public names for the doctor command (fnnbench.tracking.__main__)
sqlite_path = _sqlite_path
