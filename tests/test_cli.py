"""The command line: every config option composes and builds; bad input is one line, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from fnnbench.cli.preflight import options
from fnnbench.job import build
from fnnbench.paths import CONF_DIR, SWEEPS_DIR

GROUPS = ("dataset", "model", "activation", "loss", "optimizer", "regularizer")


def cli(*args: str, cwd: Path, env_extra: dict | None = None, timeout: float = 300):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{cwd / 'mlflow.db'}"}
    env.pop("FNNBENCH_PARENT_RUN_ID", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "fnnbench", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize(("group", "option"),
                         [(g, o) for g in GROUPS for o in options(g) if o != "idx"])
def test_every_option_composes_and_builds(group, option):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        extra = ["optimizer=gd"] if (group, option) == ("dataset", "xor") else []  # 4 examples
        cfg = compose("config", overrides=[f"{group}={option}", "tracking.enabled=false", *extra])
    job = build(cfg)
    assert job.net.n_layers == len(cfg.model.hidden_sizes) + 1
    assert job.batch_size >= 1


def test_sweeps_are_reachable_through_the_sweep_group():
    assert (CONF_DIR / "sweep").resolve() == SWEEPS_DIR.resolve()
    assert options("sweep"), "no claim sweeps found through conf/sweep"


# Each bad input: the one line it must print (a fragment naming the key) -- exit 2, no traceback,
# nothing written to MLflow.
BAD_INPUTS = [
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1"),
    (["optimizer.lr=nan"], "optimizer.lr=nan"),
    (["optimizer.lr=abc"], "optimizer.lr='abc'"),
    (["optimizer.batch_size=0"], "optimizer.batch_size=0"),
    (["optimizer.batch_size=100000"], "optimizer.batch_size=100000"),
    (["model.hidden_sizes=[64,0]"], "model.hidden_sizes"),
    (["activation=swish"], "activation=swish: unknown option"),
    (["dataset=cifar"], "dataset=cifar: unknown option"),
    (["optimizer.lrr=0.1"], "optimizer.lrr"),
    (["+optimizer.lrr=0.1"], "optimizer.lrr: unknown key"),
    (["train.epochs=0"], "train.epochs=0"),
    (["seed=-1"], "seed=-1"),
    (["sweep=no_such_claim"], "sweep=no_such_claim: unknown option"),
    (["optimizer.lr=[1,"], "malformed override"),
    (["-m", "optimizer.lr=0.1,-1"], "optimizer.lr=-1"),
    (["+model._target_=os.system"], "_target_"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "fragment"), BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, fragment):
    r = cli(*args, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("fnnbench: error: ")
    assert fragment in lines[0]
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "mlflow.db").exists()  # nothing half-written to MLflow
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


@pytest.mark.slow
def test_one_job_prints_a_summary_line(tmp_path):
    r = cli("dataset=moons", "train.epochs=3", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "fnnbench: " in r.stdout and "max_epochs" in r.stdout


@pytest.mark.slow
def test_divergence_exits_zero(tmp_path):
    r = cli("activation=sigmoid", "loss=square", "optimizer.lr=1000", "train.epochs=3",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert ": diverged," in r.stdout


@pytest.mark.slow
def test_sweep_runs_from_another_directory(tmp_path):
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    r = cli("-m", "activation=relu,tanh", "dataset=moons", "train.epochs=2", cwd=elsewhere)
    assert r.returncode == 0, r.stderr
    done = [line for line in r.stdout.splitlines() if ": max_epochs," in line]
    assert len(done) == 2, r.stdout
