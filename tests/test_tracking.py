"""fnnbench.tracking against a real sqlite MLflow store in tmp_path (no Hydra entry point)."""

from __future__ import annotations

import math
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from omegaconf import OmegaConf

from fnnbench import tracking
from fnnbench.tracking import records, store

REPO = Path(__file__).resolve().parent.parent
ENV_KEYS = ("FNNBENCH_TRACKING_URI", "FNNBENCH_PARENT_RUN_ID", "FNNBENCH_SWEEP_KEYS",
            "MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME")


@pytest.fixture(scope="session")
def template_db(tmp_path_factory) -> Path:
    """An empty, fully migrated MLflow database (creating one takes seconds; copying, not)."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{path}", (path.parent / "mlartifacts").as_uri())
    return path


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path, template_db):
    """No tracking variables from outside; tmp_path/mlflow.db starts as an empty store."""
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    shutil.copy(template_db, tmp_path / "mlflow.db")
    store.reset_cache()
    yield
    store.reset_cache()
    for key in ENV_KEYS:  # what a test's callback set must not reach the next test
        os.environ.pop(key, None)


def make_cfg(tmp_path: Path, seed: int = 0, **tracking_kw) -> OmegaConf:
    tcfg = {"uri": f"sqlite:///{tmp_path}/mlflow.db", "experiment": "test", "enabled": True,
            "log_model": True, "log_artifacts": True, "skip_finished": None,
            "flush_every": 20, "flush_seconds": 3600.0, "fast_metrics": True}
    tcfg.update(tracking_kw)
    return OmegaConf.create({
        "seed": seed,
        "model": {"hidden_sizes": [8], "init": None},
        "activation": {"name": "tanh"},
        "optimizer": {"name": "gd", "lr": 0.1, "batch_size": "full"},
        "train": {"epochs": 5, "target": None, "lr_scale": "${optimizer.lr}"},
        "claim": {"id": "demo", "statement": "words"},
        "tracking": tcfg,
    })


def tiny_net():
    from fnnbench.nn import MLP

    return MLP([4, 8, 3], activation="tanh", loss="cross_entropy", seed=0)


def fake_fit(net, epochs, callbacks, *, fail_at=None, interrupt_at=None, diverge_at=None):
    """The trainer's callback protocol with made-up metrics (epoch 0 = before training)."""
    history = []
    for epoch in range(epochs + 1):
        m = {"train_loss": 1.0 / (1 + epoch), "train_acc": epoch / max(epochs, 1),
             "test_acc": 0.5 + 0.01 * epoch, "grad_norm/layer1": 0.1 * epoch,
             "dead_frac/layer1": 0.0}
        if diverge_at is not None and epoch >= diverge_at:
            m["train_loss"] = math.inf if epoch == diverge_at else math.nan
        history.append(m)
        for cb in callbacks:
            cb.on_epoch_end(epoch, m)
        if fail_at == epoch:
            raise RuntimeError(f"boom at epoch {epoch}")
        if interrupt_at == epoch:
            raise KeyboardInterrupt
    outcome = "diverged" if diverge_at is not None else "max_epochs"
    result = SimpleNamespace(history=history, outcome=outcome, net=net,
                             summary={"final_train_loss": history[-1]["train_loss"],
                                      "epochs_run": float(epochs), "train_seconds": 0.01})
    for cb in callbacks:
        cb.on_train_end(result)
    return result


def client_for(tmp_path):
    from mlflow import MlflowClient

    return MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")


def runs_of(tmp_path, experiment="test"):
    client = client_for(tmp_path)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], max_results=1000)


# -- unit: flattening, chunking, hash, URIs ---------------------------------------------------

def test_flatten_dots_json_lists_and_limits():
    flat = records.flatten({
        "optimizer": {"lr": 0.1, "betas": [0.9, 0.999]},
        "model": {"hidden_sizes": [64, 64], "empty": [], "init": None, "extra": {}},
        "flag": True,
        "long": "x" * 7000,
        "nested": {"a": {"b": {"c": 1}}},
    })
    assert flat["optimizer.lr"] == "0.1"
    assert flat["optimizer.betas"] == "[0.9, 0.999]"
    assert flat["model.hidden_sizes"] == "[64, 64]"
    assert flat["model.empty"] == "[]"
    assert flat["model.extra"] == "{}"
    assert flat["model.init"] == "None"
    assert flat["flag"] == "True"
    assert flat["nested.a.b.c"] == "1"
    assert len(flat["long"]) == records.MAX_PARAM_CHARS == 6000
    assert all(isinstance(v, str) for v in flat.values())


def test_resolved_drops_hydra_and_resolves_interpolations(tmp_path):
    cfg = make_cfg(tmp_path)
    cfg.hydra = {"job": {"name": "x"}}
    data = records.resolved(cfg)
    assert "hydra" not in data
    assert data["train"]["lr_scale"] == 0.1


def test_chunks_sizes():
    assert [len(c) for c in records.chunks(range(250), 100)] == [100, 100, 50]
    assert [len(c) for c in records.chunks(range(1000), 1000)] == [1000]
    assert list(records.chunks([], 100)) == []
    with pytest.raises(ValueError):
        list(records.chunks([1], 0))


def test_config_hash_canonical(tmp_path):
    a = make_cfg(tmp_path)
    b = OmegaConf.create({k: a[k] for k in reversed(list(a.keys()))})  # other key order
    assert records.config_hash(a) == records.config_hash(b)
    assert len(records.config_hash(a)) == 64
    # tracking keys, hydra and the claim's prose do not count ...
    c = make_cfg(tmp_path / "elsewhere", log_model=False)
    c.claim.statement = "other words"
    c.hydra = {"job": {"num": 3}}
    assert records.config_hash(c) == records.config_hash(a)
    # ... the seed, any training key and the claim id do
    assert records.config_hash(make_cfg(tmp_path, seed=1)) != records.config_hash(a)
    d = make_cfg(tmp_path)
    d.optimizer.lr = 0.2
    assert records.config_hash(d) != records.config_hash(a)
    e = make_cfg(tmp_path)
    e.claim.id = "other"
    assert records.config_hash(e) != records.config_hash(a)


def test_resolve_uri_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert store.resolve_uri({}) == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    assert store.resolve_uri({"uri": None}) == "http://127.0.0.1:9"
    assert store.resolve_uri({"uri": "sqlite:///rel/x.db"}) == f"sqlite:///{tmp_path}/rel/x.db"
    assert store.resolve_uri({"uri": "sqlite:////abs/x.db"}) == "sqlite:////abs/x.db"


def test_run_name_keeps_the_swept_keys(monkeypatch):
    overrides = ["train.epochs=2", "activation=relu", "seed=3"]
    assert tracking.run_name(overrides, ["activation", "seed"]) == "activation=relu,seed=3"
    monkeypatch.setenv(tracking.ENV_SWEEP_KEYS, "seed")
    assert tracking.run_name(overrides) == "seed=3"
    monkeypatch.delenv(tracking.ENV_SWEEP_KEYS)
    assert tracking.run_name(overrides) == "train.epochs=2,activation=relu,seed=3"
    assert tracking.run_name([]) == "run"


def test_history_csv_round_trip(tmp_path):
    import pandas as pd

    history = [{"train_loss": 1.0}, {"train_loss": math.nan, "val_acc": 0.5},
               {"train_loss": math.inf, "val_acc": 0.75}]
    tracking.run.write_history_csv(history, tmp_path / "h.csv")
    df = pd.read_csv(tmp_path / "h.csv")
    assert list(df.columns) == ["epoch", "train_loss", "val_acc"]
    assert df["epoch"].tolist() == [0, 1, 2]
    assert math.isnan(df["train_loss"][1]) and df["train_loss"][2] == math.inf
    assert math.isnan(df["val_acc"][0]) and df["val_acc"][2] == 0.75


# -- prepare(): the store, the experiment, one-line errors -------------------------------------

def test_prepare_default_store_in_cwd(tmp_path, monkeypatch):
    tmp_path = tmp_path / "fresh"  # no database yet
    tmp_path.mkdir()
    monkeypatch.chdir(tmp_path)
    uri = tracking.prepare({"experiment": "exp1"})
    assert uri == f"sqlite:///{tmp_path}/mlflow.db"
    assert (tmp_path / "mlflow.db").is_file()
    exp = client_for(tmp_path).get_experiment_by_name("exp1")
    assert exp is not None and exp.lifecycle_stage == "active"
    # artifacts of new experiments go next to the database
    assert exp.artifact_location == (tmp_path / "mlartifacts" / exp.experiment_id).as_uri()
    assert tracking.prepare({"experiment": "exp1"}) == uri  # idempotent


def _one_line_naming(err: tracking.TrackingError, uri: str) -> str:
    text = str(err)
    assert "\n" not in text
    assert uri in text
    return text


def test_prepare_rejects_unknown_scheme(tmp_path):
    with pytest.raises(tracking.TrackingError) as info:
        tracking.prepare({"uri": "foo://bar/baz"})
    text = _one_line_naming(info.value, "foo://bar/baz")
    assert "unsupported URI scheme 'foo'" in text


def test_prepare_read_only_directory(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if store._writable_dir(ro) is None:  # root ignores permission bits: use a read-only fs
        ro = Path("/sys")
        if store._writable_dir(ro) is None:
            pytest.skip("no read-only directory available to this user")
    uri = f"sqlite:///{ro}/mlflow.db"
    with pytest.raises(tracking.TrackingError) as info:
        tracking.prepare({"uri": uri})
    text = _one_line_naming(info.value, uri)
    assert f"directory {ro} is not writable" in text
    assert not (ro / "mlflow.db").exists()


def test_prepare_unreachable_server():
    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{s.getsockname()[1]}"
        t0 = time.monotonic()
        with pytest.raises(tracking.TrackingError) as info:
            tracking.prepare({"uri": uri})
        assert time.monotonic() - t0 < 60  # no minutes of HTTP retries
    text = _one_line_naming(info.value, uri)
    assert "cannot reach the MLflow server" in text


def test_prepare_refuses_file_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    uri = (tmp_path / "mlruns").as_uri()
    with pytest.raises(tracking.TrackingError) as info:
        tracking.prepare({"uri": uri})
    text = _one_line_naming(info.value, uri)
    assert "file store" in text and "sqlite:///mlflow.db" in text


def test_prepare_not_a_database(tmp_path):
    (tmp_path / "mlflow.db").write_bytes(b"this is not sqlite" * 100)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(tracking.TrackingError) as info:
        tracking.prepare({"uri": uri})
    _one_line_naming(info.value, uri)


# -- job_run: one run per job --------------------------------------------------------------------

@pytest.mark.parametrize("fast_metrics", [True, False])
def test_job_run_logs_everything(tmp_path, monkeypatch, fast_metrics):
    from mlflow import MlflowClient

    from fnnbench.tracking import fastsql

    calls = {"log_batch": 0, "log_metric": 0, "fast": 0, "create": 0}
    real_log_batch = MlflowClient.log_batch
    real_writer = fastsql.writer

    def counting_log_batch(self, *args, **kwargs):
        calls["log_batch"] += 1
        assert len(kwargs.get("metrics") or []) <= 1000
        assert len(kwargs.get("params") or []) <= 100
        return real_log_batch(self, *args, **kwargs)

    def no_log_metric(self, *args, **kwargs):
        calls["log_metric"] += 1
        raise AssertionError("one log_metric call per value")

    def counting_writer(client):
        write = real_writer(client)
        assert write is not None, "fastsql is not usable with this MLflow"

        class Counted(type(write)):
            def __call__(self, run_id, metrics=(), **rest):
                calls["fast"] += 1
                return super().__call__(run_id, metrics, **rest)

            def create_run(self, *args, **kwargs):
                calls["create"] += 1
                return super().create_run(*args, **kwargs)
        return Counted(write.store)

    monkeypatch.setattr(MlflowClient, "log_batch", counting_log_batch)
    monkeypatch.setattr(MlflowClient, "log_metric", no_log_metric)
    monkeypatch.setattr(fastsql, "writer", counting_writer)

    cfg = make_cfg(tmp_path, fast_metrics=fast_metrics)
    net = tiny_net()
    epochs = 45
    with tracking.job_run(cfg, overrides=["activation=tanh", "seed=0"],
                          job_name="activation=tanh") as job:
        assert not job.skipped and job.active
        fake_fit(net, epochs, [job])
    # metrics: flushes after 20 and 40 epochs, then the last 6 epochs with the summary metrics
    # and the outcome tag. fastsql: the run with its tags and params in one transaction, the
    # last metrics with the outcome tag and the final status in one more; MLflow's calls:
    # params in one log_batch, the final status by set_terminated
    if fast_metrics:
        assert calls == {"log_batch": 0, "log_metric": 0, "fast": 3, "create": 1}
    else:
        assert calls == {"log_batch": 4, "log_metric": 0, "fast": 0, "create": 0}

    client = client_for(tmp_path)
    run = client.get_run(job.run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "activation=tanh"
    for key in ("train_loss", "train_acc", "test_acc", "grad_norm/layer1", "dead_frac/layer1"):
        hist = client.get_metric_history(job.run_id, key)
        assert sorted(m.step for m in hist) == list(range(epochs + 1)), key
    loss = {m.step: m.value for m in client.get_metric_history(job.run_id, "train_loss")}
    assert loss[9] == pytest.approx(0.1, abs=1e-12)
    assert run.data.metrics["epochs_run"] == epochs
    assert run.data.metrics["final_train_loss"] == pytest.approx(1 / 46, abs=1e-12)

    p = run.data.params
    assert p["model.hidden_sizes"] == "[8]"
    assert p["optimizer.lr"] == "0.1"
    assert p["train.lr_scale"] == "0.1"  # resolved interpolation
    assert p["tracking.experiment"] == "test"
    t = run.data.tags
    assert t["fnnbench.outcome"] == "max_epochs"
    assert t["fnnbench.claim"] == "demo"
    assert t["fnnbench.overrides"] == "activation=tanh seed=0"
    assert t["fnnbench.config_hash"] == records.config_hash(cfg)
    assert t["fnnbench.host"] == socket.gethostname()
    assert "numpy=" in t["fnnbench.versions"] and "mlflow=" in t["fnnbench.versions"]
    assert "mlflow.parentRunId" not in t
    if records.git_commit():
        assert t["mlflow.source.git.commit"] == records.git_commit()

    names = {a.path for a in client.list_artifacts(job.run_id)}
    assert {"config.yaml", "history.csv", "params.npz", "model"} <= names
    local = Path(client.download_artifacts(job.run_id, "", str(tmp_path / "dl")))
    assert OmegaConf.load(local / "config.yaml").optimizer.lr == 0.1
    import pandas as pd

    hist = pd.read_csv(local / "history.csv")
    assert len(hist) == epochs + 1 and "grad_norm/layer1" in hist.columns
    with np.load(local / "params.npz", allow_pickle=False) as f:
        np.testing.assert_array_equal(f["W1"], net.params["W1"])
    # models from code: no pickled python object in the model directory
    model_files = {p.name for p in (local / "model").rglob("*")}
    assert "MLmodel" in model_files and "_model_code.py" in model_files
    assert not any(name.endswith((".pkl", ".pickle")) for name in model_files)


def fast_writer(client, kind: str):
    """fastsql's writer of the client's (sqlite) store: "sqlite" (plain SQL, what sqlite
    stores get) or "orm" (MLflow's sessions and models, what other databases get)."""
    from fnnbench.tracking import fastsql

    write = fastsql.writer(client)
    assert write is not None, "fastsql does not support this MLflow version"
    assert type(write) is fastsql.SqliteWriter
    return write if kind == "sqlite" else fastsql.Writer(write.store)


@pytest.mark.parametrize("kind", ["sqlite", "orm"])
def test_fastsql_writes_exactly_what_log_batch_writes(tmp_path, kind):
    from mlflow.entities import Metric

    client = client_for(tmp_path)
    exp = client.create_experiment("eq")
    a, b = (client.create_run(exp).info.run_id for _ in range(2))
    write = fast_writer(client, kind)
    batches = [
        [Metric("loss", 1.0, 1000, 0), Metric("loss", 0.5, 1001, 1),
         Metric("acc", 0.1, 1000, 0), Metric("acc", math.nan, 1001, 1)],
        [Metric("loss", math.inf, 2000, 2), Metric("loss", 0.25, 1500, 1),
         Metric("acc", -math.inf, 2000, 2), Metric("acc", 0.9, 2000, 3),
         Metric("grad_norm/layer1", 3.0, 2000, 0), Metric("epochs_to_target", 7, 2000, 0)],
        [Metric("loss", 9.0, 3000, 0)],  # an older step later: the latest value stays
    ]
    for batch in batches:
        write(a, batch)
        client.log_batch(b, metrics=batch)

    def history(run_id, key):
        return sorted((m.step, m.timestamp, repr(m.value))
                      for m in client.get_metric_history(run_id, key))

    for key in ("loss", "acc", "grad_norm/layer1", "epochs_to_target"):
        assert history(a, key) == history(b, key), key
    latest_a = sorted((k, repr(v)) for k, v in client.get_run(a).data.metrics.items())
    latest_b = sorted((k, repr(v)) for k, v in client.get_run(b).data.metrics.items())
    assert latest_a == latest_b
    assert dict(latest_a)["acc"] == "0.9" and dict(latest_a)["loss"] == repr(1.7976931348623157e308)
    found = {r.info.run_id for r in client.search_runs([exp], "metrics.acc > 0.5")}
    assert found == {a, b}


@pytest.mark.parametrize("kind", ["sqlite", "orm"])
def test_fastsql_params_tags_and_status_as_mlflow_writes_them(tmp_path, kind):
    from mlflow.entities import Param, RunTag
    from mlflow.exceptions import MlflowException

    client = client_for(tmp_path)
    exp = client.create_experiment("eq2")
    a, b = (client.create_run(exp, tags={"t0": "x"}).info.run_id for _ in range(2))
    write = fast_writer(client, kind)
    params = [Param("optimizer.lr", "0.1"), Param("model.hidden_sizes", "[64, 64]")]
    tags = [RunTag("t0", "y"), RunTag("t1", "z"), RunTag("t1", "last wins")]
    write(a, params=params, tags=tags)
    client.log_batch(b, params=params, tags=tags[:2])
    client.set_tag(b, "t1", "last wins")
    write(a, params=params[:1])  # the same value again: allowed, as in MLflow
    with pytest.raises(MlflowException, match="Changing param values is not allowed"):
        write(a, params=[Param("optimizer.lr", "0.2")])
    write(a, status="KILLED", end_time=1234)
    client.set_terminated(b, "KILLED", end_time=1234)
    ra, rb = client.get_run(a), client.get_run(b)
    assert ra.data.params == rb.data.params == {p.key: p.value for p in params}
    strip = {"mlflow.runName", "mlflow.user", "mlflow.source.name", "mlflow.source.type",
             "mlflow.source.git.commit"}
    assert {k: v for k, v in ra.data.tags.items() if k not in strip} == {
        k: v for k, v in rb.data.tags.items() if k not in strip} == {"t0": "y",
                                                                    "t1": "last wins"}
    assert (ra.info.status, ra.info.end_time) == (rb.info.status, rb.info.end_time) == (
        "KILLED", 1234)
    # MLflow's check is on the lifecycle (deleted runs), not the status: a late tag is taken
    write(a, tags=[RunTag("t2", "late")])
    client.set_tag(b, "t2", "late")
    assert client.get_run(a).data.tags["t2"] == client.get_run(b).data.tags["t2"] == "late"
    client.delete_run(a)
    with pytest.raises(MlflowException):  # ... and a deleted run takes nothing, as in MLflow
        write(a, tags=[RunTag("t3", "deleted")])


def _rows(db: Path, sql: str, *args) -> list[tuple]:
    import sqlite3

    con = sqlite3.connect(db)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def test_fastsql_creates_the_run_mlflow_creates(tmp_path):
    """The runs row, the tags and the params of SqliteWriter.create_run are those of
    MlflowClient.create_run + log_batch(params), column by column."""
    from mlflow.entities import Param
    from mlflow.exceptions import MlflowException

    client = client_for(tmp_path)
    exp = client.create_experiment("create")
    write = fast_writer(client, "sqlite")
    tags = {"mlflow.user": "someone", "fnnbench.config_hash": "abc", "long": "x" * 5000,
            "mlflow.parentRunId": "p" * 32}
    params = [Param("optimizer.lr", "0.1"), Param("model.hidden_sizes", "[64, 64]")]
    a, uri_a = write.create_run(exp, "activation=relu,seed=0", tags, params)
    b_run = client.create_run(exp, run_name="activation=relu,seed=0", tags=tags)
    b = b_run.info.run_id
    client.log_batch(b, params=params)
    db = tmp_path / "mlflow.db"
    cols = [c[1] for c in _rows(db, "PRAGMA table_info(runs)")]
    row_a, row_b = (dict(zip(cols, _rows(db, "SELECT * FROM runs WHERE run_uuid = ?", r)[0],
                             strict=True)) for r in (a, b))
    assert uri_a == row_a["artifact_uri"] and b_run.info.artifact_uri == row_b["artifact_uri"]
    assert row_a["artifact_uri"] == row_b["artifact_uri"].replace(b, a)
    assert abs(row_a["start_time"] - row_b["start_time"]) < 60_000
    for key in ("run_uuid", "artifact_uri", "start_time"):
        row_a.pop(key), row_b.pop(key)
    assert row_a == row_b and row_a["status"] == "RUNNING" and row_a["user_id"] == "someone"
    for table in ("tags", "params"):
        got = [_rows(db, f"SELECT key, value FROM {table} WHERE run_uuid = ? ORDER BY key", r)
               for r in (a, b)]
        assert got[0] == got[1] and got[0], table
    ra = client.get_run(a)
    assert ra.info.run_name == "activation=relu,seed=0" and ra.info.lifecycle_stage == "active"
    assert ra.data.params == {p.key: p.value for p in params}
    # an experiment that is not active, or none: MLflow's errors, and no row written
    n_runs = len(_rows(db, "SELECT run_uuid FROM runs"))
    client.delete_experiment(exp)
    with pytest.raises(MlflowException, match="must be in the 'active' state"):
        write.create_run(exp, "x", {}, params)
    with pytest.raises(MlflowException, match="No Experiment with id=424242 exists"):
        write.create_run("424242", "x", {}, params)
    with pytest.raises(ValueError):  # a run name tag other than the name: left to MLflow
        write.create_run(exp, "x", {"mlflow.runName": "y"})
    assert len(_rows(db, "SELECT run_uuid FROM runs")) == n_runs


def test_fastsql_finds_the_finished_run_search_runs_finds(tmp_path):
    """find_finished (one query) against the skip-finished lookup by MLflow's search_runs,
    over the runs it must leave out: running, failed, deleted, parent runs, other
    experiments, other hashes."""
    import time as time_

    from fnnbench.tracking import names
    from fnnbench.tracking import run as trun

    client = client_for(tmp_path)
    exp, other = client.create_experiment("find"), client.create_experiment("other")
    write = fast_writer(client, "sqlite")
    key = names.TAG_CONFIG_HASH

    def lookups(h):
        return (write.find_finished(exp, key, h, names.TAG_PARENT),
                trun._skip_lookup(client, exp, h, None))

    def run(h, status="FINISHED", experiment=None, **tags):
        r = client.create_run(experiment or exp, tags={key: h, **tags}).info.run_id
        if status != "RUNNING":
            client.set_terminated(r, status)
        time_.sleep(0.002)  # distinct start times
        return r

    assert lookups("h") == (None, None)
    run("h", status="RUNNING")
    run("h", status="FAILED")
    run("h", experiment=other)
    run("h", **{names.TAG_PARENT: "true"})
    client.delete_run(run("h"))
    run("h2")
    assert lookups("h") == (None, None)
    old = run("h")
    assert lookups("h") == (old, old)
    new = run("h", **{names.TAG_PARENT: "false"})
    assert lookups("h") == (new, new)
    assert lookups("h2")[0] == lookups("h2")[1] is not None


def test_fastsql_never_leaves_the_write_lock_held(tmp_path):
    """An exception or a KeyboardInterrupt anywhere inside a transaction rolls it back: the
    next writer (another connection, no busy wait) gets the lock at once, and what the
    interrupted transaction wrote is gone."""
    import sqlite3

    client = client_for(tmp_path)
    exp = client.create_experiment("lock")
    write = fast_writer(client, "sqlite")
    run_id, _ = write.create_run(exp, "r", {})

    def interrupted(con):
        con.execute(f"INSERT INTO tags (key, value, run_uuid) VALUES ('half', 'x', '{run_id}')")
        raise KeyboardInterrupt

    for exc, work in [(KeyboardInterrupt, interrupted),
                      (ZeroDivisionError, lambda con: 1 / 0)]:
        with pytest.raises(exc):
            write._transaction(work)
        other = sqlite3.connect(tmp_path / "mlflow.db", timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # "database is locked" if the lock were held
            other.execute("ROLLBACK")
        finally:
            other.close()
    assert "half" not in client.get_run(run_id).data.tags


def test_fastsql_falls_back_to_log_batch(tmp_path):
    from mlflow.entities import Metric

    cfg = make_cfg(tmp_path, log_artifacts=False)
    with tracking.job_run(cfg, overrides=[]) as job:
        assert job._fast is not None
        same = [Metric("train_loss", 0.5, 1000, 0)]
        assert job._write_fast(same)
        # a duplicate row: the transaction fails and writes nothing, log_batch dedups it
        assert not job._write_fast(same)
        assert job._fast is None
        job.flush()
        job._buffer = list(same)
        job.flush()
        job.on_epoch_end(1, {"train_loss": 0.25})
    client = client_for(tmp_path)
    assert sorted(m.step for m in client.get_metric_history(job.run_id, "train_loss")) == [0, 1]
    assert client.get_run(job.run_id).info.status == "FINISHED"


def test_pyfunc_model_predicts_like_the_net(tmp_path):
    import mlflow

    cfg = make_cfg(tmp_path)
    net = tiny_net()
    with tracking.job_run(cfg, overrides=[]) as job:
        fake_fit(net, 2, [job])
    local = mlflow.artifacts.download_artifacts(
        run_id=job.run_id, artifact_path="model", tracking_uri=cfg.tracking.uri,
        dst_path=str(tmp_path / "model_dl"))
    model = mlflow.pyfunc.load_model(local)
    X = np.random.default_rng(1).normal(size=(7, 4))
    proba = np.asarray(model.predict(X))
    assert proba.shape == (7, 3)
    np.testing.assert_allclose(proba, net.predict_proba(X), rtol=0, atol=1e-12)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)


def test_every_job_gets_its_own_model(tmp_path):
    """Models after the first of a shape are copies of it with their own params and uuid."""
    import mlflow
    from mlflow.models import Model

    from fnnbench.nn import MLP

    cfg = make_cfg(tmp_path)
    X = np.random.default_rng(2).normal(size=(5, 4))
    loaded = []
    for seed in (1, 2, 3):
        net = MLP([4, 8, 3], activation="tanh", loss="cross_entropy", seed=seed)
        with tracking.job_run(cfg, overrides=[]) as job:
            fake_fit(net, 1, [job])
        local = mlflow.artifacts.download_artifacts(
            run_id=job.run_id, artifact_path="model", tracking_uri=cfg.tracking.uri,
            dst_path=str(tmp_path / f"dl{seed}"))
        proba = np.asarray(mlflow.pyfunc.load_model(local).predict(X))
        np.testing.assert_allclose(proba, net.predict_proba(X), rtol=0, atol=1e-12)
        meta = Model.load(local)
        size = sum(p.stat().st_size for p in Path(local).rglob("*")
                   if p.is_file() and p.name in ("params.npz", "_model_code.py"))
        assert meta.model_size_bytes >= size
        # the MLmodel is the text MLflow's Model.save writes for it
        assert (Path(local) / "MLmodel").read_text() == meta.to_yaml()
        files = sorted(str(p.relative_to(local)) for p in Path(local).rglob("*") if p.is_file())
        loaded.append((meta.model_uuid, proba, files))
    assert len({uuid for uuid, _, _ in loaded}) == 3
    assert loaded[0][2] == loaded[1][2] == loaded[2][2]
    assert {"MLmodel", "artifacts/params.npz", "_model_code.py"} <= set(loaded[0][2])
    assert not np.allclose(loaded[0][1], loaded[1][1])


def test_many_params_are_chunked(tmp_path):
    cfg = make_cfg(tmp_path, log_artifacts=False)
    cfg.extra = {f"k{i:03d}": i for i in range(250)}
    with tracking.job_run(cfg, overrides=[]) as job:
        pass
    params = client_for(tmp_path).get_run(job.run_id).data.params
    assert sum(k.startswith("extra.") for k in params) == 250
    assert params["extra.k249"] == "249"


def test_diverged_run_logs_nonfinite_values(tmp_path):
    cfg = make_cfg(tmp_path, log_model=False)
    with tracking.job_run(cfg, overrides=[]) as job:
        fake_fit(tiny_net(), 6, [job], diverge_at=3)
    client = client_for(tmp_path)
    run = client.get_run(job.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["fnnbench.outcome"] == "diverged"
    loss = {m.step: m.value for m in client.get_metric_history(job.run_id, "train_loss")}
    assert sorted(loss) == list(range(7))
    assert loss[2] == pytest.approx(1 / 3)
    assert loss[3] >= 1e308  # +inf: SQL stores clamp it to the largest float
    assert all(math.isnan(loss[e]) for e in (4, 5, 6))
    assert math.isnan(run.data.metrics["final_train_loss"])


def test_exception_marks_failed_and_keeps_metrics(tmp_path):
    cfg = make_cfg(tmp_path, flush_every=1000)  # nothing flushed before the failure
    with pytest.raises(RuntimeError, match="boom"):
        with tracking.job_run(cfg, overrides=[]) as job:
            fake_fit(tiny_net(), 10, [job], fail_at=3)
    client = client_for(tmp_path)
    run = client.get_run(job.run_id)
    assert run.info.status == "FAILED"
    assert run.info.end_time is not None
    assert run.data.tags["fnnbench.error"] == "RuntimeError: boom at epoch 3"
    assert "fnnbench.outcome" not in run.data.tags
    steps = [m.step for m in client.get_metric_history(job.run_id, "train_acc")]
    assert sorted(steps) == [0, 1, 2, 3]
    assert "error.txt" in {a.path for a in client.list_artifacts(job.run_id)}


def test_keyboard_interrupt_marks_killed(tmp_path):
    cfg = make_cfg(tmp_path, flush_every=1000)
    with pytest.raises(KeyboardInterrupt):
        with tracking.job_run(cfg, overrides=[]) as job:
            fake_fit(tiny_net(), 10, [job], interrupt_at=2)
    client = client_for(tmp_path)
    run = client.get_run(job.run_id)
    assert run.info.status == "KILLED"
    assert len(client.get_metric_history(job.run_id, "train_loss")) == 3


def test_skip_finished(tmp_path, capsys):
    cfg = make_cfg(tmp_path, skip_finished=True, log_model=False)
    with tracking.job_run(cfg, overrides=["seed=0"]) as first:
        assert not first.skipped
        fake_fit(tiny_net(), 2, [first])
    capsys.readouterr()
    with tracking.job_run(cfg, overrides=["seed=0"]) as second:
        assert second.skipped and not second.active
        assert second.finished_run_id == first.run_id
        fake_fit(tiny_net(), 2, [second])  # callbacks of a skipped job are no-ops
    assert "skipped" in capsys.readouterr().out
    assert len(runs_of(tmp_path)) == 1
    # off: a new run even with the same config; another seed: never skipped
    with tracking.job_run(make_cfg(tmp_path, skip_finished=False), overrides=[]) as third:
        assert not third.skipped
    with tracking.job_run(make_cfg(tmp_path, seed=1, skip_finished=True), overrides=[]) as fourth:
        assert not fourth.skipped
    assert len(runs_of(tmp_path)) == 3


def test_skip_finished_ignores_failed_runs(tmp_path):
    cfg = make_cfg(tmp_path, skip_finished=True, log_artifacts=False)
    with pytest.raises(RuntimeError):
        with tracking.job_run(cfg, overrides=[]) as job:
            fake_fit(tiny_net(), 3, [job], fail_at=1)
    with tracking.job_run(cfg, overrides=[]) as again:
        assert not again.skipped
        fake_fit(tiny_net(), 3, [again])
    assert sorted(r.info.status for r in runs_of(tmp_path)) == ["FAILED", "FINISHED"]


def test_skip_finished_defaults_off_for_single_runs(tmp_path):
    cfg = make_cfg(tmp_path, log_artifacts=False)  # skip_finished: null
    for _ in range(2):
        with tracking.job_run(cfg, overrides=[]) as job:
            assert not job.skipped
            fake_fit(None, 1, [job])
    assert len(runs_of(tmp_path)) == 2


def test_disabled_tracking_imports_no_mlflow(tmp_path):
    tmp_path = tmp_path / "fresh"
    tmp_path.mkdir()
    code = textwrap.dedent(f"""
        import sys
        from omegaconf import OmegaConf
        from fnnbench import tracking
        cfg = OmegaConf.create({{"seed": 0, "tracking": {{"enabled": False,
                                "uri": "sqlite:///{tmp_path}/mlflow.db"}}}})
        assert not tracking.enabled(cfg)
        with tracking.job_run(cfg, overrides=["seed=0"]) as job:
            assert not job.skipped and not job.active
            job.on_epoch_end(0, {{"train_loss": 1.0}})
            job.on_train_end(None)
        assert "mlflow" not in sys.modules, "mlflow was imported"
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
    assert not (tmp_path / "mlflow.db").exists()


# -- SweepCallback in process: parent run, nesting, counts ------------------------------------

def sweep_config(tmp_path, task=("seed=0,1,2",), sweep="demo"):
    cfg = make_cfg(tmp_path, log_model=False)
    cfg.hydra = {
        "overrides": {"task": list(task)},
        "runtime": {"choices": {"sweep": sweep}},
        "sweeper": {"_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                    "max_batch_size": None, "params": None},
    }
    return cfg


def test_sweep_callback_parent_children_and_summary(tmp_path, capsys):
    cfg = sweep_config(tmp_path)
    cb = tracking.SweepCallback()
    cb.on_multirun_start(cfg)
    parent_id = cb.parent_run_id
    assert os.environ[tracking.ENV_PARENT] == parent_id
    assert os.environ[tracking.ENV_URI] == cfg.tracking.uri
    assert os.environ[tracking.ENV_SWEEP_KEYS] == "seed"
    assert "MLFLOW_RUN_ID" not in os.environ
    outcomes = {0: {}, 1: {"diverge_at": 1}, 2: {"fail_at": 1}}
    for seed, kw in outcomes.items():
        job_cfg = make_cfg(tmp_path, seed=seed, log_model=False)
        try:
            with tracking.job_run(job_cfg, overrides=["train.epochs=3", f"seed={seed}"]) as job:
                fake_fit(tiny_net(), 3, [job], **kw)
        except RuntimeError:
            pass
    cb.on_multirun_end(cfg)
    for key in (tracking.ENV_PARENT, tracking.ENV_URI, tracking.ENV_SWEEP_KEYS):
        assert key not in os.environ

    client = client_for(tmp_path)
    parent = client.get_run(parent_id)
    assert parent.info.status == "FAILED"  # one job failed
    t = parent.data.tags
    assert t["fnnbench.parent"] == "true" and t["fnnbench.sweep"] == "demo"
    assert t["fnnbench.claim"] == "demo" and t["fnnbench.overrides"] == "seed=0,1,2"
    assert (t["fnnbench.n_jobs"], t["fnnbench.n_finished"], t["fnnbench.n_failed"],
            t["fnnbench.n_diverged"], t["fnnbench.n_killed"], t["fnnbench.n_skipped"]) == \
        ("3", "2", "1", "1", "0", "0")
    children = [r for r in runs_of(tmp_path) if r.info.run_id != parent_id]
    assert len(children) == 3
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent_id}
    assert sorted(r.info.run_name for r in children) == ["seed=0", "seed=1", "seed=2"]
    out = capsys.readouterr().out
    assert ("sweep demo: 3 jobs: 2 finished (1 diverged), 1 failed, 0 killed, 0 skipped; "
            f"parent run {parent_id} FAILED") in out

    # the same sweep again: FINISHED jobs are skipped (sweeps skip by default), the failed one
    # trains again
    cb2 = tracking.SweepCallback()
    cb2.on_multirun_start(cfg)
    parent2_id = cb2.parent_run_id
    trained = []
    for seed in range(3):
        with tracking.job_run(make_cfg(tmp_path, seed=seed, log_model=False),
                              overrides=[f"seed={seed}"]) as job:
            if job.skipped:
                continue
            trained.append(seed)
            fake_fit(tiny_net(), 3, [job])
    summary = cb2.finish()
    assert tracking.ENV_PARENT not in os.environ
    assert trained == [2]
    assert (summary.n_jobs, summary.n_finished, summary.n_skipped, summary.status) == \
        (3, 1, 2, "FINISHED")
    parent2 = client.get_run(parent2_id)
    assert parent2.info.status == "FINISHED"
    assert parent2.data.tags["fnnbench.n_skipped"] == "2"
    assert len(runs_of(tmp_path)) == 2 + 4  # two parents, four trained jobs


def test_claim_sweep_runs_carry_the_claim_file_sha256(tmp_path, monkeypatch):
    from fnnbench.paths import SWEEPS_DIR, file_sha256
    from fnnbench.tracking import run as run_mod

    digest = file_sha256(SWEEPS_DIR / "dying_relu.yaml")
    assert len(digest) == 64 and tracking.names.TAG_SWEEP_SHA256 == "fnnbench.sweep_sha256"
    cfg = sweep_config(tmp_path, sweep="dying_relu")
    cb = tracking.SweepCallback()
    cb.on_multirun_start(cfg)
    hc = SimpleNamespace(runtime=SimpleNamespace(choices={"sweep": "dying_relu"}),
                         overrides=SimpleNamespace(task=["seed=0"]))
    monkeypatch.setattr(run_mod, "_hydra", lambda: hc)
    with tracking.job_run(make_cfg(tmp_path, log_model=False), overrides=["seed=0"]) as job:
        fake_fit(tiny_net(), 2, [job])
    cb.on_multirun_end(cfg)
    runs = runs_of(tmp_path)
    assert len(runs) == 2  # the parent and its job
    for r in runs:
        assert r.data.tags["fnnbench.sweep"] == "dying_relu"
        assert r.data.tags["fnnbench.sweep_sha256"] == digest
    # an ad-hoc multirun (no claim file of that name) carries no hash
    assert run_mod.sweep_sha256("demo") is None and run_mod.sweep_sha256(None) is None


def test_sweep_end_closes_children_left_running(tmp_path):
    cfg = sweep_config(tmp_path, task=["seed=0,1"])
    cb = tracking.SweepCallback()
    cb.on_multirun_start(cfg)
    client = client_for(tmp_path)
    exp_id = client.get_run(cb.parent_run_id).info.experiment_id
    orphan = client.create_run(exp_id, tags={"mlflow.parentRunId": cb.parent_run_id})
    summary = cb.finish(ended_early="KeyboardInterrupt")
    assert client.get_run(orphan.info.run_id).info.status == "KILLED"
    assert summary.n_killed == 1 and summary.status == "KILLED"
    assert client.get_run(orphan.info.run_id).data.tags["mlflow.parentRunId"]
    cb._restore_env()


def test_callback_disabled_does_nothing(tmp_path):
    tmp_path = tmp_path / "fresh"
    tmp_path.mkdir()
    cfg = sweep_config(tmp_path)
    cfg.tracking.enabled = False
    cb = tracking.SweepCallback()
    cb.on_multirun_start(cfg)
    cb.on_multirun_end(cfg)
    assert cb.parent_run_id is None and tracking.ENV_PARENT not in os.environ
    assert not (tmp_path / "mlflow.db").exists()


def test_callback_bad_store_exits_2_with_one_line(tmp_path, capsys):
    cfg = sweep_config(tmp_path)
    cfg.tracking.uri = "foo://nowhere"
    with pytest.raises(SystemExit) as info:
        tracking.SweepCallback().on_multirun_start(cfg)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "foo://nowhere" in err


# -- a real SIGINT ----------------------------------------------------------------------------

@pytest.mark.slow
def test_sigint_marks_killed(tmp_path):
    import signal

    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_tracking import make_cfg
        from pathlib import Path
        from fnnbench import tracking
        cfg = make_cfg(Path({str(tmp_path)!r}), flush_every=1, log_model=False)
        with tracking.job_run(cfg, overrides=["seed=0"]) as job:
            for epoch in range(100000):
                job.on_epoch_end(epoch, {{"train_loss": 1.0 / (1 + epoch)}})
                if epoch == 3:
                    print("READY", job.run_id, flush=True)
                time.sleep(0.02)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        line = proc.stdout.readline()
        assert line.startswith("READY"), proc.stderr.read()
        run_id = line.split()[1]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0 and "KeyboardInterrupt" in err
    client = client_for(tmp_path)
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert len(client.get_metric_history(run_id, "train_loss")) >= 4


def test_a_new_sqlite_store_is_a_copy_of_an_empty_one_with_mlflows_schema(tmp_path, monkeypatch):
    """prepare() copies a cached empty store instead of running MLflow's migrations again;
    the copy has the schema, the alembic version and the Default experiment MLflow makes."""
    import sqlite3

    from mlflow import MlflowClient
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    monkeypatch.setenv("FNNBENCH_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "mlflow_made").mkdir()
    ref = tmp_path / "mlflow_made" / "mlflow.db"
    SqlAlchemyStore(f"sqlite:///{ref}", (ref.parent / "mlartifacts").as_uri()).engine.dispose()
    (tmp_path / "first").mkdir()
    (tmp_path / "copied").mkdir()
    store.prepare({"uri": f"sqlite:///{tmp_path}/first/mlflow.db"})  # makes the template
    assert list((tmp_path / "cache").glob("mlflow-*-empty.db"))
    copied = tmp_path / "copied" / "mlflow.db"
    store.prepare({"uri": f"sqlite:///{copied}"})

    def schema(db):  # tables and indexes with their columns (the SQL text's layout can vary)
        with sqlite3.connect(db) as con:
            names = sorted(con.execute("SELECT type, name, tbl_name FROM sqlite_master "
                                       "WHERE name NOT LIKE 'fnnbench_%'"))
            tables = [(kind, name, sorted(tuple(c[1:]) for c in con.execute(
                f"PRAGMA {'table' if kind == 'table' else 'index'}_info('{name}')")))
                      for kind, name, _ in names]
            version = con.execute("SELECT * FROM alembic_version").fetchall()
            default = con.execute("SELECT name, artifact_location, lifecycle_stage FROM "
                                  "experiments WHERE experiment_id = 0").fetchone()
        return tables, version, default

    t_ref, v_ref, d_ref = schema(ref)
    t_new, v_new, d_new = schema(copied)
    assert t_new == t_ref and v_new == v_ref
    assert d_ref[0] == d_new[0] == "Default" and d_new[2] == "active"
    assert d_new[1] == (copied.parent.resolve() / "mlartifacts").as_uri() + "/0"
    client = MlflowClient(f"sqlite:///{copied}")
    run = client.create_run("0")
    client.set_terminated(run.info.run_id)
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    assert not list(copied.parent.glob(".*.tmp"))
