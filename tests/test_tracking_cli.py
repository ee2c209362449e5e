"""`python -m fnnbench` end to end with MLflow: sweeps, parallel jobs, resume, SIGINT (slow)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TIMEOUT = 900  # seconds; generous: the machine is shared


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("FNNBENCH_", "MLFLOW_")) and k != "PYTEST_CURRENT_TEST"}
    e["CI"] = "true"
    return e


def fnnbench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "fnnbench", *args], cwd=tmp_path, env=env(),
                         capture_output=True, text=True, timeout=TIMEOUT)
    return out


def runs(tmp_path: Path, experiment: str = "fnnbench"):
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, "no experiment"
    all_runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in all_runs if r.data.tags.get("fnnbench.parent") == "true"]
    children = [r for r in all_runs if r.data.tags.get("fnnbench.parent") != "true"]
    return client, parents, children


EPOCH_METRICS = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
                 "grad_norm/layer1")


def assert_every_metric_every_epoch(client, run, epochs: int) -> None:
    for key in EPOCH_METRICS:
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
        assert steps == list(range(epochs + 1)), (run.info.run_name, key, steps)


def test_sweep_one_parent_three_finished_children(tmp_path):
    out = fnnbench(tmp_path, "-m", "seed=0,1,2", "train.epochs=2", "tracking.log_model=false",
                   "train.diagnostics_every=1")
    assert out.returncode == 0, out.stderr
    client, parents, children = runs(tmp_path)
    assert len(parents) == 1 and len(children) == 3
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["fnnbench.n_jobs"] == "3"
    assert parent.data.tags["fnnbench.n_finished"] == "3"
    assert all(r.info.status == "FINISHED" for r in children)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert {r.data.params["seed"] for r in children} == {"0", "1", "2"}
    for r in children:
        assert_every_metric_every_epoch(client, r, 2)
        assert r.data.tags["fnnbench.outcome"] in ("max_epochs", "reached_target", "converged")
    assert "3 jobs: 3 finished (0 diverged), 0 failed, 0 killed, 0 skipped" in out.stdout


def test_sweep_twice_trains_each_job_once(tmp_path):
    args = ("-m", "seed=0,1,2", "train.epochs=2", "tracking.log_model=false",
            "train.diagnostics_every=1")
    first = fnnbench(tmp_path, *args)
    assert first.returncode == 0, first.stderr
    second = fnnbench(tmp_path, *args)
    assert second.returncode == 0, second.stderr
    assert "3 jobs: 0 finished (0 diverged), 0 failed, 0 killed, 3 skipped" in second.stdout
    _, parents, children = runs(tmp_path)
    assert len(parents) == 2 and len(children) == 3
    assert all(p.info.status == "FINISHED" for p in parents)
    assert sorted(p.data.tags["fnnbench.n_skipped"] for p in parents) == ["0", "3"]


def test_parallel_sweep_on_a_fresh_store(tmp_path):
    assert not (tmp_path / "mlflow.db").exists()
    epochs = 3
    out = fnnbench(tmp_path, "-m", "seed=0,1,2,3", f"train.epochs={epochs}",
                   "train.diagnostics_every=1",
                   "hydra/launcher=joblib", "hydra.launcher.n_jobs=2")
    assert out.returncode == 0, out.stderr
    assert "database is locked" not in out.stderr
    client, parents, children = runs(tmp_path)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 4 and all(r.info.status == "FINISHED" for r in children)
    for r in children:
        assert_every_metric_every_epoch(client, r, epochs)
        assert "model" in {a.path for a in client.list_artifacts(r.info.run_id)}


def _wait_for_running_run(tmp_path: Path, proc: subprocess.Popen, timeout: float = TIMEOUT):
    """Wait for the sweep's parent run (the store is complete then: opening a half-migrated
    database would migrate it concurrently), then poll until a job's run is RUNNING."""
    for line in proc.stdout:
        if "parent run" in line:
            break
    else:
        raise AssertionError(proc.communicate()[1])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        client, _, children = runs(tmp_path)
        running = [r for r in children if r.info.status == "RUNNING"]
        if running:
            return client, running[0]
        time.sleep(0.5)
    raise AssertionError("no RUNNING run appeared")


def test_sigint_marks_job_and_parent_killed(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "fnnbench", "-m", "seed=0", "train.epochs=100000",
         "tracking.flush_every=1"],
        cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        client, run = _wait_for_running_run(tmp_path, proc)
        deadline = time.monotonic() + TIMEOUT  # wait for a few epochs to be logged
        while len(client.get_metric_history(run.info.run_id, "train_loss")) < 3:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0, err
    client, parents, children = runs(tmp_path)
    assert [r.info.status for r in children] == ["KILLED"]
    assert len(client.get_metric_history(children[0].info.run_id, "train_loss")) >= 3
    assert [p.info.status for p in parents] == ["KILLED"]
    assert parents[0].data.tags["fnnbench.n_killed"] == "1"


def test_bad_store_exits_2_with_one_line(tmp_path):
    out = fnnbench(tmp_path, "train.epochs=1", "tracking.uri=foo://nowhere")
    assert out.returncode == 2
    lines = [line for line in out.stderr.splitlines() if line.strip() and "INFO" not in line]
    assert len(lines) == 1 and "foo://nowhere" in lines[0], out.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_overhead_benchmark_runs(tmp_path):
    from benchmarks.tracking_overhead import measure_overhead

    result = measure_overhead(["train.epochs=2"], repeats=1, store_dir=tmp_path)
    assert len(result.times_on) == len(result.times_off) == 1
    assert result.off > 0 and result.on > 0 and result.first_on > 0
    assert 0.2 < result.ratio < 50  # sanity: both jobs ran the same training
    assert "ratio" in result.line()
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path}/bench.db")
    exp = client.get_experiment_by_name("fnnbench")
    assert len(client.search_runs([exp.experiment_id])) == 2  # first_on + one repeat
