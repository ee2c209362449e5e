"""Guarantee: no run is left RUNNING after a hard kill or a dead server (slow, real CLI).

- kill -9 of a whole sweep (basic and joblib launchers) mid-job, then the same sweep again:
  the reaper ends the dead runs KILLED (their metrics kept), 0 runs RUNNING, every job
  FINISHED exactly once;
- kill -9 of the launching process only (joblib): the worker stops its job (KILLED), the
  re-run reaps the parent; kill -9 of a submitit_local worker and of its launching process;
- the tracking server killed mid-sweep and started again: the job that lost it spools, the
  sweep's end replays the spool, every job's per-epoch values are in the store;
- 20 kill -9 at random times during a 30-job joblib sweep, each followed by a re-run:
  exactly 30 finished jobs, none RUNNING, `PRAGMA integrity_check` ok after every kill.
"""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.procs import group_members
from tests.test_guarantees_faults import (
    FINAL,
    SERVER_SCRIPT,
    TIMEOUT,
    Live,
    _free_port,
    children,
    config_hashes,
    env,
    fnnbench,
    parents,
    runs,
    steps,
    summary_line,
    wait_for_running_child,
)

pytestmark = pytest.mark.slow

SWEEP = ("-m", "seed=0,1,2", "dataset=moons", "optimizer=minibatch", "train.epochs=150",
         "tracking.log_model=false", "tracking.flush_every=1")
JOBLIB = ("hydra/launcher=joblib", "hydra.launcher.n_jobs=2")


def kill_group(live: Live) -> None:
    """SIGKILL the sweep's whole process group (its leader is `live.proc`) and reap it."""
    pgid = live.proc.pid
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return
    live.proc.wait(timeout=60)
    deadline = time.monotonic() + 60
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)


def integrity(db: Path) -> str:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60) as con:
        return con.execute("PRAGMA integrity_check").fetchone()[0]


def assert_recovered(db: Path, n_jobs: int) -> None:
    """0 RUNNING runs, each job FINISHED exactly once."""
    open_runs = [(r["name"], r["status"]) for r in runs(db) if r["status"] not in FINAL]
    assert not open_runs, f"runs left RUNNING: {open_runs}"
    hashes = config_hashes(db)
    assert len(hashes) == len(set(hashes)) == n_jobs, sorted(hashes)


@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_kill9_of_a_sweep_then_the_same_sweep_again(tmp_path, launcher):
    db = tmp_path / "mlflow.db"
    args = (*SWEEP, *(JOBLIB if launcher == "joblib" else ()))
    live = Live(tmp_path, *args, new_session=True, MLFLOW_TRACKING_URI=f"sqlite:///{db}")
    try:
        live.wait_line(summary_line)
        killed_run, killed_steps = wait_for_running_child(db, live)
        kill_group(live)
        live.finish()
    finally:
        kill_group(live)
    assert integrity(db) == "ok"
    left = {r["id"] for r in runs(db) if r["status"] == "RUNNING"}
    assert killed_run in left and {p["id"] for p in parents(db)} <= left  # what kill -9 leaves

    again = fnnbench(tmp_path, *args, MLFLOW_TRACKING_URI=f"sqlite:///{db}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "left RUNNING by processes that are gone" in again.stdout, again.stdout
    assert_recovered(db, 3)
    status = {r["id"]: r for r in runs(db)}
    assert all(status[r]["status"] == "KILLED" and "fnnbench.reaped" in status[r]["tags"]
               for r in left)
    kept = steps(db, killed_run)
    assert kept[: len(killed_steps)] == killed_steps  # the killed run keeps its metrics
    assert sorted(p["status"] for p in parents(db)) == ["FINISHED", "KILLED"]


def test_kill9_of_the_launching_process_stops_its_joblib_workers(tmp_path):
    db = tmp_path / "mlflow.db"
    # a short job and a long one: the long one runs alone when the launcher is killed
    args = ("-m", "train.epochs=20,1500", "dataset=moons", "optimizer=minibatch",
            "tracking.log_model=false", "tracking.flush_every=10", *JOBLIB)
    live = Live(tmp_path, *args, new_session=True, MLFLOW_TRACKING_URI=f"sqlite:///{db}")
    try:
        live.wait_line(summary_line)
        killed_run, _ = wait_for_running_child(db, live)
        os.kill(live.proc.pid, signal.SIGKILL)  # the launcher only: its workers are orphans
        live.proc.wait(timeout=60)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(
                r["status"] == "RUNNING" for r in children(db)):
            time.sleep(0.5)
    finally:
        kill_group(live)  # idle loky workers (they hold the stdout pipe)
        live.finish()
    kids = {r["id"]: r for r in children(db)}
    assert kids[killed_run]["status"] == "KILLED", kids[killed_run]
    assert "launching process" in kids[killed_run]["tags"].get("fnnbench.error", "")
    again = fnnbench(tmp_path, *args, MLFLOW_TRACKING_URI=f"sqlite:///{db}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert_recovered(db, 2)
    assert sorted(p["status"] for p in parents(db)) == ["FINISHED", "KILLED"]


SUBMITIT = importlib.util.find_spec("hydra_plugins") is not None and any(
    (Path(p) / "hydra_submitit_launcher").is_dir()
    for p in importlib.util.find_spec("hydra_plugins").submodule_search_locations)


@pytest.mark.skipif(not SUBMITIT, reason="hydra-submitit-launcher not installed (extra `cluster`)")
@pytest.mark.parametrize("victim", ["worker", "launcher"])
def test_kill9_under_submitit_local(tmp_path, victim):
    from tests.test_cluster import processes_mentioning

    db = tmp_path / "mlflow.db"
    sweep_dir = tmp_path / "sweep"
    args = ("-m", "train.epochs=20,1500", "dataset=moons", "optimizer=minibatch",
            "tracking.log_model=false", "tracking.flush_every=10",
            "hydra/launcher=submitit_local", f"hydra.sweep.dir={sweep_dir}")
    live = Live(tmp_path, *args, new_session=True, MLFLOW_TRACKING_URI=f"sqlite:///{db}")
    try:
        deadline = time.monotonic() + TIMEOUT
        long_run = None
        while long_run is None:
            assert time.monotonic() < deadline and live.proc.poll() is None, live.stderr()
            for r in children(db) if db.exists() else []:
                if (r["status"] == "RUNNING" and r["name"] == "train.epochs=1500"
                        and len(steps(db, r["id"])) >= 3):
                    long_run = r
            time.sleep(0.2)
        worker = int(long_run["tags"]["fnnbench.pid"])  # the process writing the run
        os.kill(live.proc.pid if victim == "launcher" else worker, signal.SIGKILL)
        if victim == "worker":
            live.proc.wait(timeout=TIMEOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(
                r["status"] == "RUNNING" for r in children(db)):
            time.sleep(0.5)
    finally:
        kill_group(live)
        for pid, _ in processes_mentioning(str(sweep_dir)):
            os.kill(pid, signal.SIGKILL)
        live.finish()
    if victim == "launcher":  # the worker saw its launcher die and closed its run
        assert {r["id"]: r["status"] for r in children(db)}[long_run["id"]] == "KILLED"
    again = fnnbench(tmp_path, *args, MLFLOW_TRACKING_URI=f"sqlite:///{db}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert_recovered(db, 2)
    assert {r["id"]: r["status"] for r in runs(db)}[long_run["id"]] == "KILLED"
    assert len(steps(db, long_run["id"])) >= 3  # its metrics are kept


@pytest.mark.server
@pytest.mark.skipif(not SERVER_SCRIPT.exists(), reason="scripts/mlflow-server is missing")
def test_server_killed_mid_sweep_and_restarted_loses_nothing(tmp_path):
    port = _free_port()
    state = tmp_path / "state"
    senv = env(PORT=str(port), STATE_DIR=str(state), PYTHON=sys.executable, WAIT_SECONDS="300")

    def server(cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SERVER_SCRIPT), cmd], env=senv, capture_output=True,
                              text=True, timeout=TIMEOUT)

    url = f"http://127.0.0.1:{port}"
    epochs = 300
    args = ("-m", "seed=0,1,2", "dataset=moons", "optimizer=minibatch",
            f"train.epochs={epochs}", "tracking=server", f"tracking.uri={url}",
            "tracking.log_model=false", "tracking.flush_every=1")
    fast_fail = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
    db = state / "mlflow.db"
    started = server("start")
    assert started.returncode == 0, started.stdout + started.stderr
    try:
        live = Live(tmp_path, *args, **fast_fail)
        try:
            live.wait_line(summary_line)  # job 0 FINISHED; kill the server during job 1
            spooled, _ = wait_for_running_child(db, live)
            pid = int((state / "server.pid").read_text())
            os.killpg(pid, signal.SIGKILL)
            deadline = time.monotonic() + 300
            while "is spooled to" not in live.stderr() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert "is spooled to" in live.stderr(), live.stderr()
            server("stop")  # forgets the killed server (a zombie may keep its pid alive)
            restarted = server("start")
            assert restarted.returncode == 0, restarted.stdout + restarted.stderr
            rc = live.finish()
        finally:
            if live.proc.poll() is None:
                live.proc.kill()
        err = live.stderr()
        assert "Traceback" not in err, err
        if rc != 0:  # a job started while the server was down: re-running completes it
            again = fnnbench(tmp_path, *args, **fast_fail)
            assert again.returncode == 0, again.stderr[-3000:]
        assert_recovered(db, 3)
        kids = {r["id"]: r for r in children(db)}
        assert kids[spooled]["status"] == "FINISHED"  # its true status, not KILLED
        for run_id, r in kids.items():
            if r["status"] == "FINISHED":
                assert steps(db, run_id) == list(range(epochs + 1)), r["name"]
        assert not list((tmp_path / ".fnnbench-spool").glob("*.jsonl"))
    finally:
        server("stop")


N_KILL_JOBS = 30
N_KILLS = 20


def n_parent_runs(db: Path) -> int:
    try:
        return len(parents(db)) if db.exists() else 0
    except sqlite3.Error:  # the store is being created
        return 0


def test_twenty_random_kills_of_a_parallel_sweep(tmp_path):
    db = tmp_path / "mlflow.db"
    args = ("-m", f"seed=range(0,{N_KILL_JOBS})", "dataset=xor", "optimizer=gd",
            "train.epochs=40", "tracking.log_model=false", "tracking.log_artifacts=false",
            "tracking.flush_every=5", *JOBLIB)
    rng = random.Random(0)
    t0 = time.monotonic()
    kills = 0
    for _ in range(N_KILLS):
        n_parents = n_parent_runs(db)
        live = Live(tmp_path, *args, new_session=True, MLFLOW_TRACKING_URI=f"sqlite:///{db}")
        try:
            # kill at a random time after the sweep made its parent run (jobs start then)
            deadline = time.monotonic() + TIMEOUT
            while n_parent_runs(db) == n_parents and live.proc.poll() is None:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            time.sleep(rng.uniform(4.0, 20.0))  # joblib workers start ~10 s after it
            finished_early = live.proc.poll() is not None
            kill_group(live)
            live.finish()
        finally:
            kill_group(live)
        kills += not finished_early
        assert integrity(db) == "ok"
        if finished_early:
            break
    final = fnnbench(tmp_path, *args, MLFLOW_TRACKING_URI=f"sqlite:///{db}")
    assert final.returncode == 0, final.stderr[-3000:]
    assert integrity(db) == "ok"
    assert_recovered(db, N_KILL_JOBS)
    reaped = [r for r in runs(db) if "fnnbench.reaped" in r["tags"]]
    n_parents = sum(r["tags"].get("fnnbench.parent") == "true" for r in reaped)
    print(f"\n{kills} kills, {len(reaped) - n_parents} job runs and {n_parents} parent runs "
          f"reaped, {time.monotonic() - t0:.0f} s")
