"""A non-editable install runs anywhere: ``pip install .`` into a fresh venv, then the CLI from an
empty directory (conf/ and sweeps/ are package data, read through importlib.resources).

The fresh venv gets fnnbench itself from ``pip install --no-deps .`` (a real wheel build, build
isolation and all); its dependencies are borrowed from the test's own interpreter through a
``.pth`` file, so the test needs no download beyond the build backend.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 900


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)


@pytest.mark.slow
def test_pip_install_runs_the_cli_from_an_empty_directory(tmp_path):
    venv = tmp_path / "venv"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI", "FNNBENCH_PARENT_RUN_ID",
                        "FNNBENCH_TRACKING_URI", "VIRTUAL_ENV")}
    r = _run([sys.executable, "-m", "venv", str(venv)], tmp_path, env)
    assert r.returncode == 0, r.stderr
    python = venv / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; "
                         "print(sysconfig.get_paths()['purelib'])"], tmp_path, env).stdout.strip())
    (purelib / "zz_fnnbench_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    r = _run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(ROOT)],
             tmp_path, env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    work = tmp_path / "empty"
    work.mkdir()
    where = _run([str(python), "-c", "import fnnbench; print(fnnbench.__file__)"], work, env)
    assert Path(where.stdout.strip()).is_relative_to(purelib), where.stdout + where.stderr

    first = _run([str(python), "-m", "fnnbench", "-m", "activation=relu,tanh", "train.epochs=2"],
                 work, env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    claim = _run([str(python), "-m", "fnnbench", "sweep=xor_single_neuron", "seed=0",
                  "train.epochs=5"], work, env)
    assert claim.returncode == 0, claim.stdout[-3000:] + claim.stderr[-3000:]
    assert (work / "mlflow.db").is_file()

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{work / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    jobs = [r for r in runs if r.data.tags.get("fnnbench.parent") != "true"]
    assert len(jobs) == 2 + 4, [r.info.run_name for r in runs]  # 2 activations, 4 widths
    assert all(r.info.status == "FINISHED" for r in runs)
    assert {r.data.tags.get("fnnbench.claim") for r in jobs} == {None, "xor_single_neuron"}
