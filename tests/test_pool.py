"""fnnbench.reproduce's pool (fnnbench.cli.pool) keeps every promise of the per-sweep processes.

- the jobs: ``plan_sweep`` expands a claim's command line into the jobs Hydra's basic sweeper
  launches for it (fast);
- the records: two quick claims reproduced through the pool into store A and with
  ``--per-sweep-process`` (one ``python -m fnnbench sweep=<id>`` with Hydra's joblib launcher
  per claim) into store B give the same child runs (names, params, tags, metric histories,
  artifacts) and the same parent runs; the output has one line per claim and the
  compute-limit line;
- faults: Ctrl-C (SIGINT to the process group), SIGTERM to the launching process only and
  kill -9 of one worker process leave no run RUNNING and no process behind, interrupted runs
  KILLED with their metrics, and the same command finishes the claim; a bad ``--override`` is
  one line on stderr, exit 2, nothing written to the store.

Every reproduction runs in a subprocess against a temporary sqlite store (MLFLOW_TRACKING_URI)
with cwd=tmp_path; the store is read with sqlite3 (exact values, no client caching).
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

from fnnbench.claims import load_claims
from fnnbench.paths import SWEEPS_DIR
from tests.fixtures.procs import group_members
from tests.test_compose import hydra_jobs, hydra_multirun_config

TIMEOUT = 900  # seconds for one reproduction: generous, the machine is shared and loaded
SIGNAL_EXIT_TIMEOUT = 180  # from the signal to the launching process's exit
FINAL = {"FINISHED", "FAILED", "KILLED"}
JOBS = ("--jobs", "2")

# Tags that legitimately differ between the pool's runs and the per-sweep processes' runs.
# Every other tag (fnnbench.*, mlflow.runName, mlflow.source.*, mlflow.user, fnnbench.host,
# fnnbench.versions, fnnbench.config_hash, ...) must be equal: both stores are written on this
# machine, by this user, from this checkout, so host, user, versions and git commit agree.
LIVENESS_TAGS = {
    "fnnbench.pid",  # the process writing the run: a pool worker vs a joblib worker
    "fnnbench.pid_start",  # that process's start time (/proc/<pid>/stat)
    "fnnbench.heartbeat",  # unix seconds of the writer's last sign of life (wall clock)
}
CHILD_ONLY_DIFFERENT = {
    "mlflow.parentRunId",  # the value is the parent's run id, new in each store: checked to
    # point at the claim's parent run of the same store instead
}


def wall_clock(key: str) -> bool:
    """Metrics (and history.csv columns) measured with a clock: train_seconds,
    eval_seconds, seconds_to_target, seconds_per_example."""
    return "seconds" in key


# --------------------------------------------------------------------------- processes

def clean_env(db: Path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items()
         if not k.startswith(("FNNBENCH_", "MLFLOW_", "HYDRA_")) and k != "PYTEST_CURRENT_TEST"}
    e["CI"] = "true"
    e["MLFLOW_TRACKING_URI"] = f"sqlite:///{db}"
    return e


def reproduce_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "fnnbench.reproduce", *args, "--no-report", *JOBS]


def reproduce(cwd: Path, db: Path, *args: str,
              timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(reproduce_cmd(*args), cwd=cwd, env=clean_env(db), capture_output=True,
                          text=True, timeout=timeout)


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


class Reproduction:
    """``python -m fnnbench.reproduce`` in its own session (process group = its pid)."""

    def __init__(self, cwd: Path, db: Path, *args: str):
        self.db = db
        self.out_path, self.err_path = cwd / "stdout.txt", cwd / "stderr.txt"
        self.cmd = reproduce_cmd(*args)
        with open(self.out_path, "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(self.cmd, cwd=cwd, env=clean_env(db), stdout=out,
                                         stderr=err, start_new_session=True)
        self.pgid = self.proc.pid

    def output(self) -> str:
        return (f"stdout:\n{self.out_path.read_text()}\nstderr:\n"
                f"{self.err_path.read_text()[-4000:]}")

    def wait_running_children(self, n: int = 2, min_steps: int = 3,
                              timeout: float = TIMEOUT) -> dict[str, list[int]]:
        """n RUNNING child runs, each with >= min_steps epochs of train_loss: id -> steps."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "the reproduction ended first\n" + self.output()
            found = {}
            for r in children(self.db) if self.db.exists() else []:
                if r["status"] == "RUNNING":
                    s = steps(self.db, r["id"])
                    if len(s) >= min_steps:
                        found[r["id"]] = s
            if len(found) >= n:
                return found
            time.sleep(0.2)
        raise AssertionError(f"no {n} RUNNING child runs with metrics\n" + self.output())

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {timeout} s after the signal\n"
                                 + self.output()) from None

    def assert_no_process_left(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while group_members(self.pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = group_members(self.pgid)
        assert not left, f"processes of the reproduction still alive: {left}"

    def kill(self) -> None:
        """Whatever is left of this reproduction's process group (never another's)."""
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        if self.proc.poll() is None:
            self.proc.wait(timeout=60)


# --------------------------------------------------------------------------- the store

def _connect(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=60)


def runs(db: Path) -> list[dict]:
    """Every run: id, name, status, start/end (ms), experiment name, tags, params,
    artifact_uri."""
    with _connect(db) as con:
        rows = con.execute(
            "SELECT r.run_uuid, r.name, r.status, r.start_time, r.end_time, e.name, "
            "r.artifact_uri FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id"
        ).fetchall()
        tags: dict[str, dict[str, str]] = defaultdict(dict)
        for run_id, key, value in con.execute("SELECT run_uuid, key, value FROM tags"):
            tags[run_id][key] = value
        params: dict[str, dict[str, str]] = defaultdict(dict)
        for run_id, key, value in con.execute("SELECT run_uuid, key, value FROM params"):
            params[run_id][key] = value
    return [{"id": r, "name": n, "status": s, "start": st, "end": en, "experiment": e,
             "artifact_uri": a, "tags": tags[r], "params": params[r]}
            for r, n, s, st, en, e, a in rows]


def children(db: Path) -> list[dict]:
    return [r for r in runs(db) if r["tags"].get("fnnbench.parent") != "true"]


def parents(db: Path) -> list[dict]:
    return [r for r in runs(db) if r["tags"].get("fnnbench.parent") == "true"]


def experiments(db: Path) -> list[str]:
    with _connect(db) as con:
        return sorted(n for (n,) in con.execute("SELECT name FROM experiments"))


def histories(db: Path, run_id: str) -> dict[str, list[tuple[int, float | str]]]:
    """metric key -> [(step, value)] sorted by step ('nan' for NaN: comparable)."""
    out: dict[str, list] = defaultdict(list)
    with _connect(db) as con:
        for key, step, value, is_nan in con.execute(
                "SELECT key, step, value, is_nan FROM metrics WHERE run_uuid = ?", (run_id,)):
            out[key].append((int(step), "nan" if is_nan or math.isnan(value) else float(value)))
    return {k: sorted(v) for k, v in out.items()}


def steps(db: Path, run_id: str, key: str = "train_loss") -> list[int]:
    with _connect(db) as con:
        return sorted(s for (s,) in con.execute(
            "SELECT step FROM metrics WHERE run_uuid = ? AND key = ?", (run_id, key)))


def assert_nothing_running(db: Path) -> None:
    open_runs = [(r["name"], r["status"]) for r in runs(db) if r["status"] not in FINAL]
    assert not open_runs, f"runs left without a final status: {open_runs}"


def parent_count_problems(db: Path) -> list[str]:
    """Each closed parent's counts (fnnbench.n_finished/n_failed/n_killed) are those of its
    children in the store: no job of a sweep ran on after its parent was closed. Returns
    what disagrees (one line per parent)."""
    kids: dict[str, Counter] = defaultdict(Counter)
    for r in children(db):
        kids[r["tags"].get("mlflow.parentRunId")][r["status"]] += 1
    problems = []
    for p in parents(db):
        if p["status"] == "RUNNING":
            continue
        counted = {s: int(p["tags"].get(f"fnnbench.n_{s.lower()}", -1))
                   for s in ("FINISHED", "FAILED", "KILLED")}
        in_store = {s: kids[p["id"]][s] for s in counted}
        if counted != in_store:
            problems.append(
                f"parent {p['name']} ({p['status']}, ended {p['end']}) counted {counted} but "
                f"the store has {in_store} children (name, status, start, end): "
                + str(sorted((r["name"], r["status"], r["start"], r["end"])
                             for r in children(db)
                             if r["tags"].get("mlflow.parentRunId") == p["id"])))
    return problems


def artifact_dir(run: dict) -> Path:
    uri = urlparse(run["artifact_uri"])
    assert uri.scheme == "file", run["artifact_uri"]
    return Path(unquote(uri.path))


# --------------------------------------------------------------------------- the jobs

@pytest.mark.parametrize("extra", [[], ["hydra.job.chdir=false"]], ids=["plain", "hydra-override"])
def test_plan_sweep_gives_the_jobs_hydras_basic_sweeper_launches(extra):
    """The pool's jobs are Hydra's: the sweeper's params then the multirun config's task
    overrides (``Hydra.multirun`` hands the sweeper ``hydra.overrides.task``, so a
    ``hydra.*`` override is no part of any job: not of its overrides tag, not of its name)."""
    from fnnbench.cli.compose import Composer
    from fnnbench.cli.pool import claim_spec, plan_sweep

    claim = load_claims(SWEEPS_DIR, ids=["xor_single_neuron"])[0]
    overrides = [*claim.quick, "tracking.enabled=false", *extra]  # no store is prepared
    plan = plan_sweep(claim_spec(claim, extra=overrides), Composer())
    with Composer.session():
        expected = hydra_jobs(hydra_multirun_config([f"sweep={claim.id}", *overrides]))
    assert len(expected) == 10
    assert plan.jobs == expected


# --------------------------------------------------------------------------- same records

RECORD_CLAIMS = ("dying_relu", "xor_single_neuron")  # a swept config group; a cheap dataset


@pytest.fixture(scope="module")
def two_stores(tmp_path_factory):
    """The quick profile of RECORD_CLAIMS through the pool (A) and per sweep process (B)."""
    out = {}
    for label, flags in (("pool", ()), ("per_sweep", ("--per-sweep-process",))):
        cwd = tmp_path_factory.mktemp(label)
        db = cwd / "mlflow.db"
        t0 = time.perf_counter()
        r = reproduce(cwd, db, *RECORD_CLAIMS, "--quick", *flags)
        out[label] = {"db": db, "result": r, "seconds": time.perf_counter() - t0}
    return out


def _by_name(rs: list[dict]) -> dict[str, dict]:
    names = Counter(r["name"] for r in rs)
    assert all(n == 1 for n in names.values()), names
    return {r["name"]: r for r in rs}


def _history_csv(path: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    return [{k: v for k, v in row.items() if not wall_clock(k)} for row in rows]


@pytest.mark.slow
def test_the_pool_writes_the_records_the_per_sweep_processes_write(two_stores):
    from mlflow import MlflowClient

    a, b = two_stores["pool"], two_stores["per_sweep"]
    for s in (a, b):
        assert s["result"].returncode == 0, s["result"].stdout + s["result"].stderr[-3000:]
    db_a, db_b = a["db"], b["db"]
    assert experiments(db_a) == experiments(db_b) == sorted(["Default", *RECORD_CLAIMS])
    assert_nothing_running(db_a)

    # the parent runs: one per claim, FINISHED, the same tags but the launcher's liveness
    pa, pb = _by_name(parents(db_a)), _by_name(parents(db_b))
    assert sorted(pa) == sorted(pb) == sorted(RECORD_CLAIMS)
    for claim in RECORD_CLAIMS:
        x, y = pa[claim], pb[claim]
        assert x["status"] == y["status"] == "FINISHED", claim
        assert x["experiment"] == y["experiment"] == claim
        for key in ("fnnbench.claim", "fnnbench.sweep", "fnnbench.sweep_sha256",
                    "fnnbench.n_jobs", "fnnbench.n_finished", "fnnbench.n_failed",
                    "fnnbench.n_killed", "fnnbench.n_skipped", "fnnbench.n_diverged"):
            assert key in x["tags"], (claim, key)
        drop = LIVENESS_TAGS
        assert ({k: v for k, v in x["tags"].items() if k not in drop}
                == {k: v for k, v in y["tags"].items() if k not in drop}), claim
        assert x["params"] == y["params"] == {}

    # the child runs: the same names, params, tags, statuses, metric histories, artifacts
    ca, cb = _by_name(children(db_a)), _by_name(children(db_b))
    assert sorted(ca) == sorted(cb)
    n_jobs = {c: int(pa[c]["tags"]["fnnbench.n_jobs"]) for c in RECORD_CLAIMS}
    assert len(ca) == sum(n_jobs.values()) == 18
    drop = LIVENESS_TAGS | CHILD_ONLY_DIFFERENT
    for name in sorted(ca):
        x, y = ca[name], cb[name]
        assert x["status"] == y["status"] == "FINISHED", name
        assert x["experiment"] == y["experiment"]
        assert x["tags"]["mlflow.parentRunId"] == pa[x["experiment"]]["id"], name
        assert y["tags"]["mlflow.parentRunId"] == pb[y["experiment"]]["id"], name
        assert x["params"] == y["params"], name
        tx = {k: v for k, v in x["tags"].items() if k not in drop}
        ty = {k: v for k, v in y["tags"].items() if k not in drop}
        assert tx == ty, (name, {k: (tx.get(k), ty.get(k)) for k in set(tx) | set(ty)
                                 if tx.get(k) != ty.get(k)})
        hx, hy = histories(db_a, x["id"]), histories(db_b, y["id"])
        assert sorted(hx) == sorted(hy), name
        for key in hx:
            if not wall_clock(key):
                assert hx[key] == hy[key], (name, key)
            else:
                assert [s for s, _ in hx[key]] == [s for s, _ in hy[key]], (name, key)
        # the artifacts: the config (same text, same key order), the history (but its
        # clocks), the trained parameters (bit for bit)
        dx, dy = artifact_dir(x), artifact_dir(y)
        assert sorted(p.name for p in dx.iterdir()) == sorted(p.name for p in dy.iterdir())
        assert (dx / "config.yaml").read_text() == (dy / "config.yaml").read_text(), name
        assert _history_csv(dx / "history.csv") == _history_csv(dy / "history.csv"), name
        with np.load(dx / "params.npz") as px, np.load(dy / "params.npz") as py:
            assert sorted(px.files) == sorted(py.files), name
            for k in px.files:
                assert np.array_equal(px[k], py[k]), (name, k)

    # the artifact listing of one child, through MLflow
    name = sorted(ca)[0]
    listed = []
    for db, run in ((db_a, ca[name]), (db_b, cb[name])):
        client = MlflowClient(f"sqlite:///{db}")
        listed.append(sorted((f.path, f.is_dir) for f in client.list_artifacts(run["id"])))
    assert listed[0] == listed[1]
    assert {"config.yaml", "history.csv", "params.npz"} <= {p for p, _ in listed[0]}


CLAIM_LINE = re.compile(r"^  (\S+)\s+(\d+)/(\d+) jobs  skipped\s+(\d+)  failed\s+(\d+)  "
                        r"diverged\s+(\d+)\s+([\d.]+) s  (.+)$", re.M)
COMPUTE_LINE = re.compile(
    r"^fnnbench\.reproduce: (\d+) jobs trained; training clock ([\d.]+) s = (\d+)% of the "
    r"compute limit \(2 workers x ([\d.]+) s\), with evaluation ([\d.]+) s = (\d+)%; median "
    r"harness overhead per job (\d+) ms; worker output: (\S+)$", re.M)


@pytest.mark.slow
def test_the_pool_prints_one_line_per_claim_and_the_compute_limit(two_stores):
    r = two_stores["pool"]["result"]
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    lines = CLAIM_LINE.findall(r.stdout)
    assert [m[0] for m in lines] == list(RECORD_CLAIMS), r.stdout  # one each, in order
    for claim, done, total, skipped, failed, _diverged, _seconds, status in lines:
        assert (done, skipped, failed, status) == (total, "0", "0", "ok"), (claim, r.stdout)
    compute = COMPUTE_LINE.findall(r.stdout)
    assert len(compute) == 1, r.stdout
    trained, train_s, _, wall, _, _, _, log = compute[0]
    assert int(trained) == sum(int(m[2]) for m in lines) == 18
    assert 0 < float(train_s) < 2 * float(wall)  # within the compute limit
    assert Path(log).is_file()
    # the old way prints the same counts (its own timing, no compute-limit line)
    old = two_stores["per_sweep"]["result"]
    old_lines = CLAIM_LINE.findall(old.stdout)
    assert [m[:6] for m in old_lines] == [m[:6] for m in lines], old.stdout
    assert not COMPUTE_LINE.search(old.stdout)


# --------------------------------------------------------------------------- faults

# 4 jobs of ~10 s (2 workers: 2 running, 1 in the executor's call queue, 1 waiting); each
# epoch is flushed to MLflow, so a signal finds metrics to keep
FAULT_ARGS = ("sigmoid_saturation", "--quick", "--override", "seed=0,1",
              "--override", "train.epochs=150", "--override", "tracking.flush_every=1")
FAULT_JOBS = 4


def assert_interrupted_runs_kept_their_metrics(db: Path, before: dict[str, list[int]]) -> None:
    status = {r["id"]: r for r in runs(db)}
    for run_id, kept in before.items():
        assert status[run_id]["status"] == "KILLED", status[run_id]
        assert steps(db, run_id)[: len(kept)] == kept, status[run_id]["name"]


def jobs_trained_after(db: Path, signal_ms: int) -> list[tuple[str, str, int]]:
    """Child runs that began after the signal and were trained to the end: (name, status,
    ms after the signal). After an interrupt the reproduction must stop handing out jobs: a
    job already queued in the executor would otherwise delay the exit by a whole job (and,
    after a worker died, run on after its claim's parent run was closed)."""
    return [(r["name"], r["status"], r["start"] - signal_ms) for r in children(db)
            if r["start"] > signal_ms and r["status"] == "FINISHED"]


def assert_the_same_command_finishes(cwd: Path, db: Path) -> None:
    again = reproduce(cwd, db, *FAULT_ARGS)
    assert again.returncode == 0, again.stdout + again.stderr[-3000:]
    m = CLAIM_LINE.search(again.stdout)
    assert m and m.group(2) == m.group(3) == str(FAULT_JOBS) and m.group(8) == "ok", again.stdout
    assert_nothing_running(db)
    last = max(parents(db), key=lambda p: p["start"])
    assert last["status"] == "FINISHED", last
    t = last["tags"]
    assert int(t["fnnbench.n_finished"]) + int(t["fnnbench.n_skipped"]) == FAULT_JOBS, t
    assert t["fnnbench.n_killed"] == t["fnnbench.n_failed"] == "0", t
    hashes = [r["tags"]["fnnbench.config_hash"] for r in children(db)
              if r["status"] == "FINISHED"]
    assert len(hashes) == len(set(hashes)) == FAULT_JOBS, sorted(hashes)  # each job once


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGINT-to-group", "SIGTERM-to-launcher"])
def test_a_signal_ends_the_reproduction_and_the_same_command_finishes(tmp_path, how):
    db = tmp_path / "mlflow.db"
    live = Reproduction(tmp_path, db, *FAULT_ARGS)
    try:
        before = live.wait_running_children(n=2)  # both workers busy, one job queued
        signal_ms = int(time.time() * 1000)
        if how == "SIGINT-to-group":  # Ctrl-C at a terminal
            os.killpg(live.pgid, signal.SIGINT)
        else:
            os.kill(live.proc.pid, signal.SIGTERM)
        rc = live.wait(SIGNAL_EXIT_TIMEOUT)
        live.assert_no_process_left()
    finally:
        live.kill()
    err = live.err_path.read_text()
    if how == "SIGINT-to-group":
        assert rc == 130, live.output()
    else:
        assert rc != 0, live.output()
    assert "Traceback" not in err, err
    assert "interrupted" in err, live.output()
    assert_nothing_running(db)
    assert_interrupted_runs_kept_their_metrics(db, before)
    (parent,) = parents(db)
    assert parent["status"] == "KILLED", parent
    assert not parent_count_problems(db)
    late = jobs_trained_after(db, signal_ms)  # asserted last: the rerun is checked first
    assert_the_same_command_finishes(tmp_path, db)
    assert not late, f"jobs started after the signal and trained to the end: {late}"


@pytest.mark.slow
def test_kill9_of_a_worker_ends_the_reproduction_and_the_next_one_finishes(tmp_path):
    db = tmp_path / "mlflow.db"
    live = Reproduction(tmp_path, db, *FAULT_ARGS)
    try:
        before = live.wait_running_children(n=2)
        victim_run = sorted(before)[0]
        worker = int(next(r for r in runs(db) if r["id"] == victim_run)["tags"]["fnnbench.pid"])
        assert parent_pid(worker) == live.proc.pid  # a worker of the pool, not the launcher
        kill_ms = int(time.time() * 1000)
        os.kill(worker, signal.SIGKILL)
        live.wait(SIGNAL_EXIT_TIMEOUT)  # any exit code: the claim could not finish
        live.assert_no_process_left()
    finally:
        live.kill()
    assert "Traceback" not in live.err_path.read_text(), live.output()
    # asserted last (the recovery is checked first): the claim's parent counts its children
    # as they end, and no job starts after the worker died and runs on past its parent run
    problems = parent_count_problems(db)
    late = jobs_trained_after(db, kill_ms)
    doctor = subprocess.run([sys.executable, "-m", "fnnbench.tracking", "doctor", "--fix"],
                            cwd=tmp_path, env=clean_env(db), capture_output=True, text=True,
                            timeout=300)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert_nothing_running(db)
    status = {r["id"]: r for r in runs(db)}
    assert status[victim_run]["status"] == "KILLED", status[victim_run]
    assert steps(db, victim_run)[: len(before[victim_run])] == before[victim_run]
    (parent,) = parents(db)
    assert parent["status"] in ("KILLED", "FAILED"), parent
    assert_the_same_command_finishes(tmp_path, db)
    assert not problems and not late, "\n".join(
        [*problems, f"jobs started after the kill and trained to the end: {late}"])


@pytest.mark.slow
@pytest.mark.parametrize(("override", "key"), [("optimizer.lr=abc", "optimizer.lr"),
                                               ("nosuchkey=1", "nosuchkey")])
def test_a_bad_override_is_one_line_exit_2_and_nothing_written(tmp_path, override, key):
    db = tmp_path / "mlflow.db"
    r = reproduce(tmp_path, db, "xor_single_neuron", "--quick", "--override", override,
                  timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("fnnbench.reproduce: error: ") and key in lines[0], lines[0]
    assert "Traceback" not in r.stdout + r.stderr
    if db.exists():  # the store may exist; no experiment of the claim, no run
        assert experiments(db) in ([], ["Default"]) and runs(db) == []
    assert not (tmp_path / "mlartifacts").exists() and not (tmp_path / "multirun").exists()


@pytest.mark.slow
def test_a_later_claims_bad_override_lets_the_claims_before_it_finish(tmp_path):
    """A claim file of one's own whose quick profile has a bad value, after a shipped claim:
    its preflight runs while the workers train the first claim. The first claim ends as it
    would alone (every job and its parent FINISHED, nothing interrupted), the bad one writes
    nothing, and the reproduction ends with its one-line error, exit 2."""
    from fnnbench.paths import SWEEPS_DIR

    text = (SWEEPS_DIR / "xor_single_neuron.yaml").read_text()
    bad = text.replace("  id: xor_single_neuron", "  id: xor_bad").replace(
        "  experiment: xor_single_neuron", "  experiment: xor_bad").replace(
        '  quick: ["seed=range(0,5)"', '  quick: ["optimizer.lr=abc", "seed=range(0,5)"')
    assert bad.count("xor_bad") == 2 and "optimizer.lr=abc" in bad
    claim = tmp_path / "claims" / "xor_bad.yaml"
    claim.parent.mkdir()
    claim.write_text(bad)
    db = tmp_path / "mlflow.db"
    r = reproduce(tmp_path, db, "xor_single_neuron", str(claim), "--quick", "--no-report",
                  timeout=600)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("fnnbench.reproduce: error: "), r.stderr
    assert "optimizer.lr" in lines[0] and "Traceback" not in r.stdout + r.stderr
    done = runs(db)
    assert done and {run["experiment"] for run in done} == {"xor_single_neuron"}
    assert [run for run in done if run["status"] != "FINISHED"] == []
    assert "xor_bad" not in experiments(db)
    parent = [run for run in done if run["tags"].get("fnnbench.parent") == "true"]
    assert len(parent) == 1 and len(done) == 1 + 10  # the quick profile's 10 jobs
