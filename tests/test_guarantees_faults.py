"""Guarantee: faults and load lose nothing -- through the real command line (slow).

- SIGINT and SIGTERM during a job and between two jobs of a sweep: every run in the store ends
  with a final status (none RUNNING), the metrics logged before the signal are kept, and running
  the same sweep again trains only the jobs that did not finish (tracking.skip_finished);
- Ctrl-C in a terminal during a parallel (joblib) sweep -- SIGINT to the whole process group:
  the same, and no worker process outlives the sweep;
- a read-only store directory: one clear line, exit 2, the store untouched;
- the tracking server dies mid-sweep: the running job spools its run and goes on, the jobs that
  cannot create a run fail clearly and the sweep names them; re-running against the restarted
  server replays the spool and completes the sweep, nothing left RUNNING;
- load: a 200-job parallel sweep on a fresh embedded store gives 200 FINISHED children and every
  metric value (epochs + 1 per per-epoch metric per run, each equal to the job's history.csv),
  and the report renders over that store;
- determinism: the same sweep under the basic and the joblib launcher gives bit-identical
  metric histories per job (timing metrics excluded).

The store is read with sqlite3 directly: exact values, no client-side caching.
"""

from __future__ import annotations

import csv
import math
import os
import queue
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
SERVER_SCRIPT = REPO / "scripts" / "mlflow-server"
TIMEOUT = 1800  # seconds: generous, the machine is shared and loaded
TIMING_METRICS = {"train_seconds", "eval_seconds", "seconds_to_target", "seconds_per_example"}
FINAL = {"FINISHED", "FAILED", "KILLED"}


# --------------------------------------------------------------------------- processes

def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("FNNBENCH_", "MLFLOW_", "HYDRA_")) and k != "PYTEST_CURRENT_TEST"}
    e["CI"] = "true"
    e.update(extra)
    return e


def fnnbench(cwd: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fnnbench", *args], cwd=cwd, env=env(**extra),
                          capture_output=True, text=True, timeout=TIMEOUT)


class Live:
    """A running `python -m fnnbench`; its stdout lines are read by a thread into a queue."""

    def __init__(self, cwd: Path, *args: str, new_session: bool = False, **extra: str):
        self.stderr_path = cwd / f"stderr-{time.monotonic_ns()}.txt"
        self._err = open(self.stderr_path, "w")  # noqa: SIM115 - closed in finish()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fnnbench", *args], cwd=cwd, env=env(**extra),
            stdout=subprocess.PIPE, stderr=self._err, text=True, bufsize=1,
            start_new_session=new_session)
        self.lines: list[str] = []
        self._q: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_line(self, predicate, timeout: float = TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._q.get(timeout=1.0)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("the process ended first:\n" + "\n".join(self.lines)
                                     + "\n" + self.stderr())
            self.lines.append(line)
            if predicate(line):
                return line
        raise AssertionError("no such line:\n" + "\n".join(self.lines))

    def finish(self, timeout: float = TIMEOUT) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self._err.close()
        while (line := self._q.get(timeout=60)) is not None:
            self.lines.append(line)
        return rc

    def stderr(self) -> str:
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""


def summary_line(line: str) -> bool:
    return line.startswith("fnnbench: ") and ": max_epochs," in line


# --------------------------------------------------------------------------- the store

def connect(db: Path) -> sqlite3.Connection:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)
    return con


def runs(db: Path) -> list[dict]:
    """Every run: id, name, status, tags, artifact_uri."""
    with connect(db) as con:
        rows = con.execute("SELECT run_uuid, name, status, artifact_uri FROM runs").fetchall()
        tags: dict[str, dict[str, str]] = defaultdict(dict)
        for run_id, key, value in con.execute("SELECT run_uuid, key, value FROM tags"):
            tags[run_id][key] = value
    return [{"id": r, "name": n, "status": s, "artifact_uri": a, "tags": tags[r]}
            for r, n, s, a in rows]


def children(db: Path) -> list[dict]:
    return [r for r in runs(db) if r["tags"].get("fnnbench.parent") != "true"]


def parents(db: Path) -> list[dict]:
    return [r for r in runs(db) if r["tags"].get("fnnbench.parent") == "true"]


def histories(db: Path, run_ids=None) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """run id -> metric key -> [(step, value)] sorted by step (NaN as float('nan'))."""
    out: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    with connect(db) as con:
        for run_id, key, step, value, is_nan in con.execute(
                "SELECT run_uuid, key, step, value, is_nan FROM metrics"):
            if run_ids is None or run_id in run_ids:
                out[run_id][key].append((int(step), math.nan if is_nan else float(value)))
    for per_run in out.values():
        for key in per_run:
            per_run[key].sort()
    return out


def steps(db: Path, run_id: str, key: str = "train_loss") -> list[int]:
    with connect(db) as con:
        return sorted(s for (s,) in con.execute(
            "SELECT step FROM metrics WHERE run_uuid = ? AND key = ?", (run_id, key)))


def assert_no_run_left_open(db: Path) -> None:
    open_runs = [(r["name"], r["status"]) for r in runs(db) if r["status"] not in FINAL]
    assert not open_runs, f"runs left without a final status: {open_runs}"


def wait_for_running_child(db: Path, live: Live, min_steps: int = 3,
                           timeout: float = TIMEOUT) -> tuple[str, list[int]]:
    """A RUNNING child run with >= min_steps epochs of train_loss logged: (run id, its steps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert live.proc.poll() is None, live.stderr()
        for r in children(db) if db.exists() else []:
            if r["status"] == "RUNNING":
                s = steps(db, r["id"])
                if len(s) >= min_steps:
                    return r["id"], s
        time.sleep(0.2)
    raise AssertionError("no RUNNING child run with metrics appeared")


def config_hashes(db: Path, status: str = "FINISHED") -> list[str]:
    return [r["tags"].get("fnnbench.config_hash") for r in children(db)
            if r["status"] == status]


# --------------------------------------------------------------------------- 1. signals

# Three short jobs; each epoch is flushed to MLflow (the signal finds metrics to keep).
SWEEP = ("-m", "seed=0,1,2", "dataset=moons", "optimizer=minibatch", "train.epochs=150",
         "tracking.log_model=false", "tracking.flush_every=1")
SWEEP_EPOCHS = 150


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("point", ["during_a_job", "between_jobs"])
def test_signal_keeps_metrics_and_rerun_finishes_only_missing_jobs(tmp_path, sig, point):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    live = Live(tmp_path, *SWEEP, MLFLOW_TRACKING_URI=uri)
    seen_run = seen_steps = None
    try:
        live.wait_line(summary_line)  # the first job FINISHED
        if point == "during_a_job":
            seen_run, seen_steps = wait_for_running_child(db, live)
        live.proc.send_signal(sig)
        rc = live.finish()
    finally:
        if live.proc.poll() is None:
            live.proc.kill()
    err = live.stderr()
    assert rc == 130, err
    assert "interrupted" in err and "Traceback" not in err, err
    assert_no_run_left_open(db)
    kids = children(db)
    finished = [r for r in kids if r["status"] == "FINISHED"]
    assert 1 <= len(finished) < 3
    for r in finished:  # a finished job has every epoch
        assert steps(db, r["id"]) == list(range(SWEEP_EPOCHS + 1))
    if seen_run is not None:  # the interrupted job: KILLED, the epochs logged before are kept
        status = {r["id"]: r["status"] for r in kids}[seen_run]
        assert status == "KILLED"
        kept = steps(db, seen_run)
        assert kept[: len(seen_steps)] == seen_steps and kept == list(range(len(kept)))
    [parent] = parents(db)
    assert parent["status"] == "KILLED"
    before = histories(db)

    again = fnnbench(tmp_path, *SWEEP, MLFLOW_TRACKING_URI=uri)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("fnnbench: skipped") == len(finished), again.stdout
    assert sum(summary_line(x) for x in again.stdout.splitlines()) == 3 - len(finished)
    assert_no_run_left_open(db)
    hashes = config_hashes(db)
    assert len(hashes) == len(set(hashes)) == 3  # each job FINISHED exactly once
    after = histories(db)
    for run_id, per_key in before.items():  # nothing logged before was lost or changed
        assert after[run_id] == per_key
    assert sorted(p["status"] for p in parents(db)) == ["FINISHED", "KILLED"]


def test_ctrl_c_during_a_parallel_sweep(tmp_path):
    """SIGINT to the process group (a terminal's Ctrl-C) with joblib workers."""
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    args = ("-m", "seed=0,1,2,3", "dataset=moons", "train.epochs=150",
            "tracking.log_model=false", "tracking.flush_every=1", "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2")
    live = Live(tmp_path, *args, new_session=True, MLFLOW_TRACKING_URI=uri)
    pgid = live.proc.pid
    try:
        live.wait_line(summary_line)
        seen_run, seen_steps = wait_for_running_child(db, live)
        os.killpg(pgid, signal.SIGINT)
        rc = live.finish()
        deadline = time.monotonic() + 300
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.5)
        lingering = _group_alive(pgid)
    finally:
        if _group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
    assert rc != 0
    assert not lingering, "worker processes outlived the interrupted sweep"
    assert_no_run_left_open(db)
    kept = steps(db, seen_run)
    assert kept[: len(seen_steps)] == seen_steps
    n_finished = len(config_hashes(db))
    again = fnnbench(tmp_path, *args, MLFLOW_TRACKING_URI=uri)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("fnnbench: skipped") == n_finished, again.stdout
    assert_no_run_left_open(db)
    hashes = config_hashes(db)
    assert len(hashes) == len(set(hashes)) == 4


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


# --------------------------------------------------------------------------- 2. read-only store

def _readonly_prefix(directory: Path) -> list[str]:
    """As in test_guarantees_inputs: chmod when not root, else a read-only bind mount."""
    import shutil

    if os.geteuid() != 0:
        directory.chmod(0o555)
        return []
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0"'
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-m", "sh", "-c", script, str(directory)], capture_output=True,
            timeout=60).returncode != 0:
        pytest.skip("root without mount namespaces: cannot make a read-only directory")
    return ["unshare", "-m", "sh", "-c", script + ' && exec "$@"', str(directory)]


def test_read_only_store_after_a_sweep_is_one_clear_line(tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    db = store / "mlflow.db"
    args = ("-m", "seed=0,1", "dataset=xor", "optimizer=gd", "train.epochs=3",
            "tracking.log_model=false")
    first = fnnbench(tmp_path, *args, MLFLOW_TRACKING_URI=f"sqlite:///{db}")
    assert first.returncode == 0, first.stderr
    before = (runs(db), histories(db))
    prefix = _readonly_prefix(store)
    try:
        r = subprocess.run([*prefix, sys.executable, "-m", "fnnbench", *args, "seed=0,1,2"],
                           cwd=tmp_path, env=env(MLFLOW_TRACKING_URI=f"sqlite:///{db}"),
                           capture_output=True, text=True, timeout=TIMEOUT)
    finally:
        store.chmod(0o755)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("fnnbench: error: ") and str(store) in lines[0]
    assert "not writable" in lines[0] and "Traceback" not in r.stderr
    assert (runs(db), histories(db)) == before


# --------------------------------------------------------------------------- 3. server dies

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.server
@pytest.mark.skipif(not SERVER_SCRIPT.exists(), reason="scripts/mlflow-server is missing")
def test_server_dying_mid_sweep_names_the_jobs_to_rerun(tmp_path):
    port = _free_port()
    state = tmp_path / "state"
    senv = env(PORT=str(port), STATE_DIR=str(state), PYTHON=sys.executable, WAIT_SECONDS="600")

    def server(cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SERVER_SCRIPT), cmd], env=senv, capture_output=True,
                              text=True, timeout=TIMEOUT)

    url = f"http://127.0.0.1:{port}"
    args = ("-m", "seed=0,1,2,3", "dataset=moons", "train.epochs=150", "tracking=server",
            f"tracking.uri={url}", "tracking.log_model=false", "tracking.flush_every=1")
    started = server("start")
    assert started.returncode == 0, started.stdout + started.stderr
    # MLflow's client retries a refused request 7 times with backoff (~4 minutes per call, and
    # a failing job makes several calls): bounded here to keep the test short
    fast_fail = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
    try:
        live = Live(tmp_path, *args, **fast_fail)
        try:
            live.wait_line(summary_line)  # job 0 FINISHED; stop the server during job 1
            wait_for_running_child(state / "mlflow.db", live)
            stopped = server("stop")
            assert stopped.returncode == 0, stopped.stderr
            rc = live.finish()
        finally:
            if live.proc.poll() is None:
                live.proc.kill()
        err = live.stderr()
        assert rc == 1, err
        failed = [x for x in err.splitlines() if x.startswith("fnnbench: job ")
                  and " failed: " in x]
        assert failed, err
        [final] = [x for x in err.splitlines() if " job(s) failed: " in x]
        n_failed = int(final.split("fnnbench: ")[1].split(" ")[0])
        assert n_failed == len(failed) >= 1
        for line in failed:  # each failed job is named on the summary line, with the server
            name = line.split("fnnbench: job ")[1].split(" failed: ")[0]
            assert name in final and url in line
        assert "Traceback" not in err, err

        restarted = server("start")
        assert restarted.returncode == 0, restarted.stdout + restarted.stderr
        again = fnnbench(tmp_path, *args)
        assert again.returncode == 0, again.stderr
        db = state / "mlflow.db"
        hashes = config_hashes(db)
        assert len(hashes) == len(set(hashes)) == 4
        # the job that lost the server spooled its run; the re-run replayed the spool (its true
        # status, FINISHED) and the reaper ended the old parent run: nothing is left RUNNING
        assert_no_run_left_open(db)
        assert not list((tmp_path / ".fnnbench-spool").glob("*.jsonl"))
        for kid in children(db):
            if kid["status"] == "FINISHED":
                assert steps(db, kid["id"]) == list(range(151)), kid["name"]
    finally:
        server("stop")


# --------------------------------------------------------------------------- 4. load

N_LOAD = 200
LOAD_EPOCHS = 5


def test_200_parallel_jobs_lose_no_metric_value_and_report_renders(tmp_path):
    db = tmp_path / "mlflow.db"
    assert not db.exists()
    r = fnnbench(tmp_path, "-m", f"seed=range(0,{N_LOAD})", "dataset=xor", "optimizer=gd",
                 f"train.epochs={LOAD_EPOCHS}", "tracking.log_model=false",
                 "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                 MLFLOW_TRACKING_URI=f"sqlite:///{db}")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "database is locked" not in r.stderr
    assert sum(summary_line(x) for x in r.stdout.splitlines()) == N_LOAD
    kids = children(db)
    assert len(kids) == N_LOAD and {k["status"] for k in kids} == {"FINISHED"}
    [parent] = parents(db)
    assert parent["status"] == "FINISHED"
    assert parent["tags"]["fnnbench.n_finished"] == str(N_LOAD)
    assert {k["tags"]["mlflow.parentRunId"] for k in kids} == {parent["id"]}

    hist = histories(db)
    n_values = 0
    lost = []
    for kid in kids:
        logged = hist[kid["id"]]
        epoch_rows = _history_csv(kid["artifact_uri"])
        assert len(epoch_rows) == LOAD_EPOCHS + 1
        keys = [k for k in epoch_rows[0] if k != "epoch"]
        for key in keys:
            values = logged.get(key, [])
            for row in epoch_rows:  # every value of the job's history is in MLflow, exactly
                if row[key] == "":
                    continue
                n_values += 1
                want = (int(row["epoch"]), float(row[key]))
                if not any(s == want[0] and _eq(v, want[1]) for s, v in values):
                    lost.append((kid["name"], key, want))
            # one value per epoch 0..E, timing metrics too
            assert [s for s, _ in values] == list(range(LOAD_EPOCHS + 1)), (kid["name"], key)
    assert not lost, f"{len(lost)} metric values lost, e.g. {lost[:5]}"
    n_keys = len([k for k in _history_csv(kids[0]["artifact_uri"])[0] if k != "epoch"])
    assert n_values == N_LOAD * n_keys * (LOAD_EPOCHS + 1)

    out = tmp_path / "report"
    rep = subprocess.run([sys.executable, "-m", "fnnbench.report", "--tracking-uri",
                          f"sqlite:///{db}", "--out", str(out)], cwd=tmp_path, env=env(),
                         capture_output=True, text=True, timeout=TIMEOUT)
    assert rep.returncode == 0, rep.stderr[-3000:]
    assert (out / "README.md").exists() or any(out.glob("*.md")), list(out.iterdir())


def _history_csv(artifact_uri: str) -> list[dict[str, str]]:
    path = Path(unquote(urlparse(artifact_uri).path)) / "history.csv"
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _eq(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def test_per_epoch_train_seconds_has_one_value_per_epoch(tmp_path):
    """Summary metrics are logged at the last epoch's step; train_seconds (also per-epoch)
    keeps one value per epoch, and every summary metric's latest value is the summary."""
    db = tmp_path / "mlflow.db"
    r = fnnbench(tmp_path, "dataset=xor", "optimizer=gd", "train.epochs=3",
                 "tracking.log_model=false", MLFLOW_TRACKING_URI=f"sqlite:///{db}")
    assert r.returncode == 0, r.stderr[-3000:]
    [kid] = children(db)
    hist = histories(db)[kid["id"]]
    assert [s for s, _ in hist["train_seconds"]] == [0, 1, 2, 3]
    for key in ("epochs_run", "final_train_loss", "updates_run"):
        assert [s for s, _ in hist[key]] == [3], key
    assert hist["epochs_run"][0][1] == 3.0


# --------------------------------------------------------------------------- 5. determinism

def test_basic_and_joblib_launchers_give_bit_identical_histories(tmp_path):
    sweep = ("-m", "seed=0,1", "activation=relu,tanh", "dataset=moons",
             "optimizer=minibatch", "train.epochs=4", "tracking.log_model=false")
    by_launcher = {}
    for launcher, extra in (("basic", ()), ("joblib", ("hydra/launcher=joblib",
                                                       "hydra.launcher.n_jobs=2"))):
        d = tmp_path / launcher
        d.mkdir()
        db = d / "mlflow.db"
        r = fnnbench(d, *sweep, *extra, MLFLOW_TRACKING_URI=f"sqlite:///{db}")
        assert r.returncode == 0, r.stderr[-3000:]
        kids = children(db)
        assert len(kids) == 4 and {k["status"] for k in kids} == {"FINISHED"}
        hist = histories(db)
        by_launcher[launcher] = {
            _job_key(k): {key: v for key, v in hist[k["id"]].items() if key not in TIMING_METRICS}
            for k in kids}
    basic, joblib = by_launcher["basic"], by_launcher["joblib"]
    assert sorted(basic) == sorted(joblib) and len(basic) == 4
    for job in basic:
        assert basic[job].keys() == joblib[job].keys(), job
        for key in basic[job]:
            a, b = basic[job][key], joblib[job][key]
            assert len(a) == len(b) and all(
                sa == sb and _eq(va, vb) for (sa, va), (sb, vb) in zip(a, b, strict=True)), (
                job, key, a, b)


def _job_key(run: dict) -> str:
    overrides = run["tags"].get("fnnbench.overrides", "").split()
    return " ".join(sorted(o for o in overrides if not o.lstrip("+~").startswith("hydra")))
