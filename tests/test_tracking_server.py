"""scripts/mlflow-server and a sweep logged over HTTP (slow; starts a real server)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.server]

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "mlflow-server"
TIMEOUT = 900


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_server_start_sweep_over_http_stop(tmp_path):
    port = free_port()
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FNNBENCH_", "MLFLOW_"))}
    env.update({"PORT": str(port), "STATE_DIR": str(state), "PYTHON": sys.executable,
                "WAIT_SECONDS": "300", "CI": "true"})

    def server(cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPT), cmd], env=env, capture_output=True,
                              text=True, timeout=TIMEOUT)

    url = f"http://127.0.0.1:{port}"
    assert server("status").returncode == 1
    started = server("start")
    pid = None
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert url in started.stdout
        pid = int((state / "server.pid").read_text())
        status = server("status")
        assert status.returncode == 0 and url in status.stdout
        assert "already running" in server("start").stdout

        sweep = subprocess.run(
            [sys.executable, "-m", "fnnbench", "-m", "seed=0,1", "train.epochs=2",
             "tracking=server", f"tracking.uri={url}"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT)
        assert sweep.returncode == 0, sweep.stderr
        assert not (tmp_path / "mlflow.db").exists()  # everything went over HTTP

        import mlflow

        mlflow.set_tracking_uri(url)
        try:
            df = mlflow.search_runs(experiment_names=["fnnbench"])
        finally:
            mlflow.set_tracking_uri(None)
        assert len(df) == 3
        assert set(df["status"]) == {"FINISHED"}
        parent = df[df["tags.fnnbench.parent"] == "true"]
        children = df[df["tags.fnnbench.parent"] != "true"]
        assert len(parent) == 1 and len(children) == 2
        assert set(children["tags.mlflow.parentRunId"]) == {parent["run_id"].iloc[0]}
        assert sorted(children["params.seed"]) == ["0", "1"]
        assert children["metrics.final_train_loss"].notna().all()
        client = mlflow.MlflowClient(url)
        run_id = children["run_id"].iloc[0]
        assert len(client.get_metric_history(run_id, "train_loss")) == 3
        names = {a.path for a in client.list_artifacts(run_id)}
        assert {"config.yaml", "history.csv", "params.npz", "model"} <= names
        assert any((state / "artifacts").rglob("params.npz"))  # stored by the server
    finally:
        stopped = server("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert pid is not None and not group_alive(pid)
    assert not (state / "server.pid").exists()
    assert server("status").returncode == 1
