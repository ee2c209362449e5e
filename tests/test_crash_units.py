"""Crash consistency, in process: the interrupt path, liveness tags, the reaper, the spool and
`python -m fnnbench.tracking doctor` against a real sqlite store in tmp_path."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from fnnbench import tracking
from fnnbench.tracking import liveness, names, reaper, spool
from tests.test_tracking import (  # noqa: F401 - fixtures
    clean_env,
    client_for,
    fake_fit,
    make_cfg,
    runs_of,
    sweep_config,
    template_db,
    tiny_net,
)

REPO = Path(__file__).resolve().parent.parent


def dead_pid() -> tuple[int, str]:
    """The pid and start time of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    start = liveness.start_time(proc.pid)
    proc.wait()
    return proc.pid, start


# -- 2. the interrupt path ------------------------------------------------------------------

@pytest.mark.parametrize("fast_metrics", [True, False])
def test_an_error_closing_the_run_never_hides_the_interrupt(tmp_path, monkeypatch, capsys,
                                                             fast_metrics):
    from mlflow import MlflowClient

    def broken(self, *args, **kwargs):
        raise RuntimeError("store gone\nsecond line")

    cfg = make_cfg(tmp_path, log_model=False, fast_metrics=fast_metrics)
    with pytest.raises(KeyboardInterrupt):
        with tracking.job_run(cfg, overrides=["seed=0"]) as job:
            monkeypatch.setattr(MlflowClient, "set_terminated", broken)
            if fast_metrics:  # the one-transaction end fails too: MLflow's calls are next
                assert job._fast is not None
                job._fast = lambda *a, **k: broken(None)
            fake_fit(tiny_net(), 3, [job], interrupt_at=1)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"fnnbench: could not close run {job.run_id} as KILLED: RuntimeError: "
                   "store gone"]


def test_sweep_end_errors_are_one_line_not_hydras_warning(tmp_path, monkeypatch, capsys):
    from hydra._internal.callbacks import Callbacks

    cfg = sweep_config(tmp_path)
    cb = tracking.SweepCallback()
    cb.on_multirun_start(cfg)
    monkeypatch.setattr(tracking.sweep, "summarize",
                        lambda *a: (_ for _ in ()).throw(OSError("disk full\nmore")))
    hydra_cbs = Callbacks.__new__(Callbacks)
    hydra_cbs.callbacks = [cb]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Hydra turns a callback's exception into a warning
        hydra_cbs.on_multirun_end(config=cfg)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["fnnbench: could not close the sweep's parent run: OSError: disk full"]
    assert tracking.ENV_PARENT not in os.environ


# -- 3. liveness and the reaper ------------------------------------------------------------

def test_liveness_of_this_process_a_dead_one_and_a_reused_pid():
    me = liveness.identity()
    assert me[names.TAG_PID] == str(os.getpid()) and me[names.TAG_HOST] == liveness.host()
    assert liveness.why_dead(me, int(time.time() * 1000), 60) is None
    pid, start = dead_pid()
    gone = {**me, names.TAG_PID: str(pid), names.TAG_PID_START: start}
    assert "is gone" in liveness.why_dead(gone, None, 60)
    reused = {**me, names.TAG_PID_START: str(int(me[names.TAG_PID_START]) + 1)}
    assert "pid reused" in liveness.why_dead(reused, None, 60)
    other = {names.TAG_HOST: "elsewhere", names.TAG_PID: "1",
             names.TAG_HEARTBEAT: str(int(time.time()) - 100)}
    assert liveness.why_dead(other, None, 600) is None
    assert "no heartbeat" in liveness.why_dead(other, None, 60)


def test_job_runs_carry_liveness_tags_and_a_heartbeat(tmp_path):
    with tracking.job_run(make_cfg(tmp_path, log_model=False, flush_every=1,
                                   heartbeat_seconds=0.001),
                          overrides=["seed=0"]) as job:
        before = client_for(tmp_path).get_run(job.run_id).data.tags[names.TAG_HEARTBEAT]
        time.sleep(1.1)
        fake_fit(tiny_net(), 2, [job])
    tags = client_for(tmp_path).get_run(job.run_id).data.tags
    assert tags[names.TAG_PID] == str(os.getpid())
    assert tags[names.TAG_PID_START] == liveness.start_time(os.getpid())
    assert int(tags[names.TAG_HEARTBEAT]) > int(before)


def _orphans(tmp_path):
    """A parent run and two children left RUNNING by a dead process, one FINISHED child."""
    client = client_for(tmp_path)
    exp_id = tracking.store.experiment_id(f"sqlite:///{tmp_path}/mlflow.db", "test")
    pid, start = dead_pid()
    dead = {**liveness.identity(), names.TAG_PID: str(pid), names.TAG_PID_START: start}
    parent = client.create_run(exp_id, tags={**dead, names.TAG_PARENT: "true",
                                             "fnnbench.n_jobs": "3"}).info.run_id
    kids = [client.create_run(exp_id, run_name=f"seed={i}",
                              tags={**dead, "mlflow.parentRunId": parent}).info.run_id
            for i in range(3)]
    client.log_metric(kids[0], "train_loss", 0.5, step=3)
    client.set_terminated(kids[2], "FINISHED")
    alive = client.create_run(exp_id, tags=liveness.identity()).info.run_id  # this process
    return client, exp_id, parent, kids, alive


def test_reaper_ends_orphans_keeps_metrics_and_ends_their_parent(tmp_path):
    client, exp_id, parent, kids, alive = _orphans(tmp_path)
    listed = reaper.reap(client, exp_id, fix=False)
    assert {o.run_id for o in listed} == {parent, kids[0], kids[1]}
    assert client.get_run(kids[0]).info.status == "RUNNING"  # listing writes nothing
    found = reaper.reap(client, exp_id, fix=True)
    assert {o.run_id: o.status for o in found} == {
        parent: "KILLED", kids[0]: "KILLED", kids[1]: "KILLED"}
    run = client.get_run(kids[0])
    assert run.info.status == "KILLED" and "is gone" in run.data.tags[names.TAG_REAPED]
    assert run.data.tags[names.TAG_ERROR].startswith("reaped: ")
    assert [m.value for m in client.get_metric_history(kids[0], "train_loss")] == [0.5]
    p = client.get_run(parent)
    assert p.info.status == "KILLED" and p.data.tags["fnnbench.n_killed"] == "2"
    assert p.data.tags["fnnbench.n_finished"] == "1"
    assert client.get_run(alive).info.status == "RUNNING"  # its process lives: untouched
    assert reaper.reap(client, exp_id) == []


def doctor(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FNNBENCH_", "MLFLOW_"))}
    return subprocess.run([sys.executable, "-m", "fnnbench.tracking", "doctor", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_doctor_lists_then_fixes_orphans(tmp_path):
    client, _, parent, kids, alive = _orphans(tmp_path)
    uri = ("--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--experiment", "test")
    listed = doctor(*uri, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "found 2 orphaned run(s), 1 sweep parent run(s)" in listed.stdout
    assert "(experiment 'test')" in listed.stdout
    assert f"run {kids[0]} (seed=0): RUNNING (would end KILLED)" in listed.stdout
    assert client.get_run(kids[0]).info.status == "RUNNING"
    fixed = doctor(*uri[:2], "--fix", cwd=tmp_path)  # every experiment
    assert fixed.returncode == 0, fixed.stderr
    assert "ended 2 orphaned run(s), 1 sweep parent run(s)" in fixed.stdout
    assert [client.get_run(r).info.status for r in (parent, *kids, alive)] == [
        "KILLED", "KILLED", "KILLED", "FINISHED", "RUNNING"]


@pytest.mark.parametrize("uri", ["sqlite:///{tmp}/nope.db", "http://127.0.0.1:9",
                                 "ftp://x/y", "sqlite:///{tmp}/mlflow.db#missing-experiment"])
def test_doctor_bad_uri_is_one_line_exit_2(tmp_path, uri):
    uri = uri.replace("{tmp}", str(tmp_path))
    args = ["--tracking-uri", uri.split("#")[0]]
    if "#" in uri:
        args += ["--experiment", "missing"]
    r = doctor(*args, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fnnbench: error: MLflow tracking store")
    assert not (tmp_path / "nope.db").exists()


# -- 4. the spool --------------------------------------------------------------------------

def test_spool_replays_metrics_tags_params_and_the_true_status(tmp_path):
    from mlflow.entities import Metric, Param, RunTag

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = client_for(tmp_path)
    exp_id = tracking.store.experiment_id(uri, "test")
    pid, start = dead_pid()
    run_id = client.create_run(exp_id, tags={**liveness.identity(), names.TAG_PID: str(pid),
                                             names.TAG_PID_START: start}).info.run_id
    s = spool.Spool(uri, run_id, tmp_path / "spool")
    s.batch(metrics=[Metric("train_loss", 1.0 / (e + 1), 1000 + e, e) for e in range(5)],
            params=[Param("seed", "0")], tags=[RunTag(names.TAG_OUTCOME, "max_epochs")])
    (s.artifact_dir).mkdir(parents=True)
    (s.artifact_dir / "history.csv").write_text("epoch\n0\n")
    s.artifacts()
    # the reaper got there first (the spool's server was down): the replay corrects it
    reaper.reap(client, exp_id)
    assert client.get_run(run_id).info.status == "KILLED"
    s.end("FINISHED")
    assert spool.replay(tmp_path / "spool", uri=uri) == [(run_id, "FINISHED")]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and names.TAG_REAPED not in run.data.tags
    assert names.TAG_ERROR not in run.data.tags
    assert run.data.params["seed"] == "0" and run.data.tags[names.TAG_OUTCOME] == "max_epochs"
    assert [m.step for m in client.get_metric_history(run_id, "train_loss")] == list(range(5))
    assert [a.path for a in client.list_artifacts(run_id)] == ["history.csv"]
    assert spool.pending(tmp_path / "spool") == []


def test_a_job_whose_server_is_unreachable_spools_and_the_replay_completes_it(
        tmp_path, monkeypatch):
    """A job against an 'http' store that stops answering mid-run: written to the spool."""
    from mlflow import MlflowClient

    monkeypatch.setenv(names.ENV_SPOOL_DIR, str(tmp_path / "spool"))
    with tracking.job_run(make_cfg(tmp_path, log_model=False, flush_every=1),
                          overrides=["seed=0"]) as job:
        job.uri = "http://127.0.0.1:9"  # the server 'dies': nothing answers there

        def down(self, *args, **kwargs):
            raise ConnectionError("connection refused")

        monkeypatch.setattr(MlflowClient, "log_batch", down)
        monkeypatch.setattr(MlflowClient, "set_terminated", down)
        job._fast = None
        fake_fit(tiny_net(), 3, [job])
    monkeypatch.undo()
    client = client_for(tmp_path)
    assert client.get_run(job.run_id).info.status == "RUNNING"
    [path] = spool.pending(tmp_path / "spool")
    text = path.read_text()
    assert '"end": "FINISHED"' in text and "train_loss" in text
    # replay to the real store (the file names the URI the job had: rewrite it for the test)
    path.write_text(text.replace("http://127.0.0.1:9", f"sqlite:///{tmp_path}/mlflow.db"))
    assert spool.replay(tmp_path / "spool") == [(job.run_id, "FINISHED")]
    assert client.get_run(job.run_id).info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(job.run_id, "train_loss")) == [
        0, 1, 2, 3]


def test_recover_store_as_reproduce_calls_it(tmp_path):
    assert reaper.recover_store(f"sqlite:///{tmp_path}/absent.db") is None
    assert not (tmp_path / "absent.db").exists()
    client, _, parent, kids, _ = _orphans(tmp_path)
    line = reaper.recover_store(f"sqlite:///{tmp_path}/mlflow.db")  # every experiment
    assert "ended 2 run(s) and 1 sweep parent run(s)" in line
    assert client.get_run(parent).info.status == "KILLED"
    assert reaper.recover_store(f"sqlite:///{tmp_path}/mlflow.db", "test") is None


def test_sweep_start_errors_are_one_line_and_the_sweep_goes_on(tmp_path, monkeypatch, capsys):
    from mlflow import MlflowClient

    def broken(self, *args, **kwargs):
        raise RuntimeError("no space left\ndetails")

    monkeypatch.setattr(MlflowClient, "create_run", broken)
    cb = tracking.SweepCallback()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cb.on_multirun_start(sweep_config(tmp_path))
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["fnnbench: could not create the sweep's parent run: RuntimeError: "
                   "no space left"]
    assert cb.parent_run_id is None and cb.finish() is None
    cb._restore_env()
