"""Scale-out: scripts/tracking-stack (PostgreSQL + mlflow server) and sweeps run by worker
processes (Hydra's submitit_local and joblib launchers) logging to it over HTTP.

The stack tests are slow and start real servers on free localhost ports; they skip, naming
what is missing, without PostgreSQL (initdb/pg_ctl), psycopg2 or hydra-submitit-launcher
(the `cluster` extra). One stack serves the module; it is stopped at the end and no
PostgreSQL or mlflow process of it may be left.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from fnnbench.paths import CONF_DIR

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "tracking-stack"
TIMEOUT = 600  # seconds for any one command: the machine may be heavily loaded
EPOCHS = 20
# metrics logged once per epoch (step = epoch 0..EPOCHS) for dataset=xor, one hidden layer
PER_EPOCH = ("train_loss", "train_acc", "val_loss", "val_acc", "test_loss", "test_acc",
             "updates", "grad_norm/layer1", "grad_norm/layer2", "act_mean/layer1",
             "act_std/layer1", "dead_frac/layer1", "saturated_frac/layer1")


def _missing() -> str | None:
    """Why the stack tests cannot run here, or None."""
    if not (shutil.which("pg_ctl") and shutil.which("initdb")) and not glob.glob(
            "/usr/lib/postgresql/*/bin/pg_ctl"):
        return "PostgreSQL's initdb/pg_ctl not installed (Debian: apt-get install postgresql)"
    for module, what in (("hydra_plugins.hydra_submitit_launcher", "hydra-submitit-launcher"),
                         ("psycopg2", "psycopg2-binary")):
        try:
            if importlib.util.find_spec(module) is None:
                return f"{what} not installed (pip install -e '.[cluster]')"
        except ModuleNotFoundError:
            return f"{what} not installed (pip install -e '.[cluster]')"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' OS user to run PostgreSQL"
    return None


def stack_test(fn):
    """Mark a test that needs the tracking stack: slow, server, skipped without PostgreSQL."""
    missing = _missing()
    for mark in (pytest.mark.slow, pytest.mark.server,
                 pytest.mark.skipif(missing is not None, reason=str(missing))):
        fn = mark(fn)
    return fn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of the live (not zombie) processes."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            cmd = raw.replace(b"\0", b" ").decode(errors="replace")
            table[int(entry.name)] = (int(fields[1]), cmd)
    return table


def processes_mentioning(*needles: str) -> list[tuple[int, str]]:
    """(pid, command line) of live processes whose command line contains a needle, and of
    their descendants (PostgreSQL's backends rename themselves 'postgres: ...')."""
    table = _process_table()
    table.pop(os.getpid(), None)
    found = {pid for pid, (_, cmd) in table.items() if any(n in cmd for n in needles)}
    grew = True
    while grew:
        more = {pid for pid, (ppid, _) in table.items() if ppid in found} - found
        found |= more
        grew = bool(more)
    return sorted((pid, table[pid][1]) for pid in found)


class Stack:
    """The tracking stack of this module: its environment, URL and directories."""

    def __init__(self, root: Path):
        self.root = root
        self.state = root / "state"
        # as root PostgreSQL runs as `postgres`, which must reach its directory: pytest's
        # tmp dirs are private (0700), so the cluster goes in a directory of its own in /tmp
        self.pg_dir = Path(tempfile.mkdtemp(prefix="fnnbench-pg-"))  # the script chowns it
        self.port, self.pg_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("FNNBENCH_", "MLFLOW_", "PG"))}
        self.env.update({"STATE_DIR": str(self.state), "PG_DIR": str(self.pg_dir),
                         "PORT": str(self.port), "PG_PORT": str(self.pg_port),
                         "PYTHON": sys.executable, "WAIT_SECONDS": "300", "CI": "true"})

    def script(self, command: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPT), command], env=self.env, text=True,
                              capture_output=True, timeout=TIMEOUT)

    def leftovers(self) -> list[tuple[int, str]]:
        return processes_mentioning(str(self.pg_dir), str(self.state),
                                    f"--port {self.port}")

    def sweep(self, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "fnnbench", "-m", *overrides],
                              cwd=cwd, env=self.env, text=True, capture_output=True,
                              timeout=TIMEOUT)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(tmp_path_factory.mktemp("cluster"))
    try:
        started = s.script("start")
        assert started.returncode == 0, started.stdout + started.stderr
        assert started.stdout.strip().splitlines()[-1] == s.url
        yield s
    finally:
        s.script("stop")
        for pid, _ in s.leftovers():  # only if the stop test already failed
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(s.pg_dir, ignore_errors=True)


def search(url: str, experiment: str):
    """mlflow.search_runs over HTTP: every run of the experiment, as a DataFrame."""
    import mlflow

    mlflow.set_tracking_uri(url)
    try:
        return mlflow.search_runs(experiment_names=[experiment])
    finally:
        mlflow.set_tracking_uri(None)


def split(df):
    parents = df[df["tags.fnnbench.parent"] == "true"]
    children = df[df["tags.fnnbench.parent"] != "true"]
    return parents, children


def assert_complete_histories(url: str, run_ids, epochs: int = EPOCHS) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(url)
    for run_id in run_ids:
        for key in PER_EPOCH:
            steps = sorted(m.step for m in client.get_metric_history(run_id, key))
            assert steps == list(range(epochs + 1)), (run_id, key, steps)


SWEEP = ("seed=range(0,6)", "dataset=xor", "optimizer=gd", f"train.epochs={EPOCHS}",
         "train.diagnostics_every=1",
         "tracking.log_model=false")


@stack_test
def test_status_prints_the_tracking_uri(stack):
    status = stack.script("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert status.stdout.strip().splitlines()[-1] == stack.url
    assert "postgresql" in status.stdout  # the server's backend is the PostgreSQL cluster
    assert "already running" in stack.script("start").stdout


@stack_test
def test_submitit_sweep_then_rerun_skips_everything(stack, tmp_path):
    common = (*SWEEP, "hydra/launcher=submitit_local", f"tracking.uri={stack.url}",
              "tracking.experiment=submitit")
    first = stack.sweep(*common, "hydra.sweeper.max_batch_size=2",
                        f"hydra.sweep.dir={tmp_path / 'first'}", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "6 jobs: 6 finished" in first.stdout
    assert f"job output (submitit): {tmp_path / 'first'}/.submitit/<job id>/" in first.stdout
    assert not (tmp_path / "mlflow.db").exists()  # everything went to the server

    df = search(stack.url, "submitit")
    parents, children = split(df)
    assert len(parents) == 1 and len(children) == 6
    assert set(df["status"]) == {"FINISHED"}
    assert set(children["tags.mlflow.parentRunId"]) == {parents["run_id"].iloc[0]}
    assert sorted(children["params.seed"].astype(int)) == list(range(6))
    assert_complete_histories(stack.url, children["run_id"])
    logs = list((tmp_path / "first" / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 6  # one submitit job per sweep job, each a process of its own

    # the same sweep again, all jobs at once: every worker finds its FINISHED run
    again = stack.sweep(*common, f"hydra.sweep.dir={tmp_path / 'again'}", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "6 jobs: 0 finished (0 diverged), 0 failed, 0 killed, 6 skipped" in again.stdout
    outputs = [p.read_text() for p in (tmp_path / "again" / ".submitit").glob("*/*_log.out")]
    assert len(outputs) == 6 and all("fnnbench: skipped" in text for text in outputs)
    parents, children = split(search(stack.url, "submitit"))
    assert len(children) == 6 and len(parents) == 2  # nothing retrained
    assert set(parents["status"]) == {"FINISHED"}
    assert set(parents["tags.fnnbench.n_skipped"]) == {"0", "6"}


@stack_test
def test_joblib_sweep_on_the_same_server(stack, tmp_path):
    done = stack.sweep(*SWEEP, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                       "tracking=server", f"tracking.uri={stack.url}",
                       "tracking.experiment=joblib", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                       cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    df = search(stack.url, "joblib")
    parents, children = split(df)
    assert len(parents) == 1 and len(children) == 6
    assert set(df["status"]) == {"FINISHED"}
    assert set(children["tags.mlflow.parentRunId"]) == {parents["run_id"].iloc[0]}
    assert_complete_histories(stack.url, children["run_id"])


@stack_test
def test_a_killed_worker_leaves_no_running_run(stack, tmp_path):
    """SIGKILL the worker of a long job: its run ends KILLED, the other jobs finish."""
    from mlflow import MlflowClient

    sweep_dir = tmp_path / "sweep"
    out = (tmp_path / "out.txt").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fnnbench", "-m", "dataset=xor", "optimizer=gd",
         "train.epochs=20,21,22,1000000", "tracking.log_model=false",
         "tracking.flush_every=10", "hydra/launcher=submitit_local",
         f"tracking.uri={stack.url}", "tracking.experiment=kill",
         f"hydra.sweep.dir={sweep_dir}"],
        cwd=tmp_path, env=stack.env, text=True, stdout=out, stderr=subprocess.STDOUT)
    client = MlflowClient(stack.url)
    try:
        deadline = time.monotonic() + TIMEOUT
        long_run = None
        while time.monotonic() < deadline and proc.poll() is None:
            exp = client.get_experiment_by_name("kill")
            runs = client.search_runs([exp.experiment_id]) if exp else []
            jobs = [r for r in runs if r.data.tags.get("fnnbench.parent") != "true"]
            short = [r for r in jobs if r.data.params.get("train.epochs") != "1000000"]
            long_ = [r for r in jobs if r.data.params.get("train.epochs") == "1000000"]
            workers = [p for p, cmd in processes_mentioning(str(sweep_dir))
                       if "submitit.core._submit" in cmd]
            if (len(short) == 3 and all(r.info.status == "FINISHED" for r in short)
                    and len(long_) == 1 and long_[0].info.status == "RUNNING"
                    and client.get_metric_history(long_[0].info.run_id, "train_loss")
                    and len(workers) == 1):
                long_run = long_[0].info.run_id
                os.kill(workers[0], signal.SIGKILL)
                break
            time.sleep(1)
        assert long_run is not None, "the long job never ran alone: " + _read(tmp_path)
        assert proc.wait(timeout=TIMEOUT) != 0  # the launcher reports the lost job
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid, _cmd in processes_mentioning(str(sweep_dir)):  # this test's processes only
            os.kill(pid, signal.SIGKILL)
        out.close()
    output = _read(tmp_path)
    df = search(stack.url, "kill")
    parents, children = split(df)
    assert "RUNNING" not in set(df["status"]), output
    status = dict(zip(children["params.train.epochs"], children["status"], strict=True))
    assert sorted(status) == ["1000000", "20", "21", "22"]
    assert [status[e] for e in ("20", "21", "22")] == ["FINISHED"] * 3  # the others completed
    assert status["1000000"] in ("KILLED", "FAILED"), output
    assert len(client.get_metric_history(long_run, "train_loss")) >= 10  # kept its metrics
    assert parents["status"].iloc[0] in ("KILLED", "FAILED")
    assert "3 finished (0 diverged), 0 failed, 1 killed" in output
    assert "job output (submitit)" in output


def _read(tmp_path: Path) -> str:
    return (tmp_path / "out.txt").read_text()


@stack_test
def test_stop_leaves_no_process(stack):
    assert stack.leftovers()  # running: PostgreSQL and the mlflow server
    stopped = stack.script("stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    deadline = time.monotonic() + 60
    while stack.leftovers() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert stack.leftovers() == []
    status = stack.script("status")
    assert status.returncode == 1 and "not running" in status.stdout
    assert not (stack.state / "stack-server.pid").exists()


def test_slurm_profile_composes_and_makes_an_sbatch_script(tmp_path, monkeypatch):
    """conf/hydra/launcher/slurm.yaml: Hydra composes it, preflight accepts it, and submitit
    turns its values into sbatch options (a fake srun stands in for Slurm)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                        reason="hydra-submitit-launcher not installed (extra `cluster`)")
    import submitit
    from hydra import compose, initialize_config_dir
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from omegaconf import OmegaConf

    from fnnbench.cli.preflight import preflight

    overrides = ["hydra/launcher=slurm", "hydra.launcher.partition=cpu",
                 "tracking.enabled=false"]
    preflight(["-m", "seed=0,1", *overrides])  # allow-listed launcher, nothing refused
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    assert params["_target_"].endswith("SlurmLauncher")
    assert params["partition"] == "cpu" and params["array_parallelism"] == 32

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    executor = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="slurm")
    base = set(OmegaConf.structured(BaseQueueConf).keys())  # as the launcher maps them
    skip = {"_target_", "submitit_folder", "max_num_timeout", "name"}
    executor.update_parameters(**{k if k in base else f"slurm_{k}": v
                                  for k, v in params.items() if k not in skip})
    text = executor._executor._make_submission_file_text("python -u job.py", "uid")
    for line in ("#SBATCH --partition=cpu", "#SBATCH --time=60", "#SBATCH --cpus-per-task=1",
                 "#SBATCH --mem=2GB"):
        assert line in text, text


@pytest.mark.parametrize("override", ["+hydra.launcher.setup=[touch /tmp/x]",
                                      "hydra.launcher.additional_parameters={wrap:x}"])
def test_shell_lines_of_the_launcher_are_refused_on_the_command_line(override):
    from fnnbench.cli.preflight import preflight
    from fnnbench.job.schema import ConfigError

    with pytest.raises(ConfigError, match="refused; submitit runs these as shell lines"):
        preflight(["-m", "seed=0,1", "hydra/launcher=slurm", override])


def test_a_worker_gets_the_parent_run_from_the_pickled_callback():
    """submitit/joblib pickle the Hydra callbacks with each job: in a worker process whose
    environment lacks the sweep's variables, on_job_start sets them from the callback."""
    import pickle

    from fnnbench.tracking import SweepCallback

    callback = SweepCallback()
    callback.uri, callback.parent_run_id, callback._keys = "http://h:1", "abc123", "seed"
    code = ("import os, pickle, sys; cb = pickle.load(sys.stdin.buffer); "
            "cb.on_job_start(config=None); print(os.environ['FNNBENCH_PARENT_RUN_ID'], "
            "os.environ['FNNBENCH_TRACKING_URI'], os.environ['FNNBENCH_SWEEP_KEYS'])")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FNNBENCH_")}
    done = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(callback),
                          env=env, capture_output=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split() == ["abc123", "http://h:1", "seed"]
    before = dict(os.environ)
    callback.on_job_start(config=None)  # the launching process: its environment is untouched
    assert dict(os.environ) == before
