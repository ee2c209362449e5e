"""Guarantee: bad input is refused before anything runs -- through the real command line.

Every case runs ``python -m fnnbench ...`` in its own directory with
MLFLOW_TRACKING_URI=sqlite:///<dir>/mlflow.db and must give

- exit code 2, exactly one non-empty line on stderr, ``fnnbench: error: <key>=<value>: <what is
  allowed>`` (each case names the fragments its line must contain), no "Traceback";
- nothing in MLflow: the sqlite file does not exist, or -- for the cases that point at a store
  holding runs -- every experiment and every run (status, metrics, tags) is as before;
- nothing else written: no Hydra output folders, no marker file of an injected callable.

Groups: config values (unknown keys and options, wrong types, negative / zero / NaN / inf / huge
values, empty lists, a batch larger than the data), sweeps (unknown sweep, a swept list with one
bad value, empty and huge sweeps), override syntax, code injection (``_target_`` anywhere, Hydra
callbacks / launcher / sweeper / logging / environment / search path, config-dir and rerun
flags), IDX data files (missing, empty, truncated, wrong magic, wrong dtype, wrong shape,
mismatched files, corrupt gzip, NaN pixels, one class, a directory), and tracking settings
(unknown scheme, a closed port, a server that answers 501, one that never answers, a
read-only directory, ./mlruns holding file-store data, a sqlite file that is not a database, a
deleted experiment).

The cases of a group run two at a time (a ThreadPoolExecutor over subprocesses) inside one
test that reports every failing case at once.
"""

from __future__ import annotations

import gzip
import http.server
import os
import pickle
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from fnnbench.data import write_idx
from fnnbench.paths import SWEEPS_DIR

pytestmark = pytest.mark.slow

TIMEOUT = 600  # seconds per subprocess: the machine is shared and loaded
WORKERS = 2


# --------------------------------------------------------------------------- the harness

@dataclass
class Case:
    """One bad command line and what its single stderr line must contain."""

    id: str
    args: list[str]
    fragments: list[str]
    env: dict[str, str] = field(default_factory=dict)
    prefix: list[str] = field(default_factory=list)  # e.g. an `unshare` wrapper
    absent: list[Path] = field(default_factory=list)  # files that must not appear
    db_may_exist: bool = False  # the case's store existed before (checked by snapshot)


def base_env(cwd: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FNNBENCH_", "MLFLOW_", "HYDRA_")) and k != "PYTEST_CURRENT_TEST"}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{cwd / 'mlflow.db'}"
    env["CI"] = "true"
    return env


def run_case(case: Case, root: Path) -> str | None:
    """Run one case in its own directory; None when it behaved, else what went wrong."""
    cwd = root / case.id
    cwd.mkdir(parents=True, exist_ok=True)
    env = {**base_env(cwd), **case.env}
    args = [a.replace("{cwd}", str(cwd)) for a in case.args]
    cmd = [*case.prefix, sys.executable, "-m", "fnnbench", *args]
    try:
        r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                           timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return f"{case.id}: timed out after {TIMEOUT} s"
    problems = []
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    if r.returncode != 2:
        problems.append(f"exit code {r.returncode} (want 2)")
    if len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines (want 1)")
    elif not lines[0].startswith("fnnbench: error: "):
        problems.append("the line does not start with 'fnnbench: error: '")
    else:
        missing = [f.replace("{cwd}", str(cwd)) for f in case.fragments
                   if f.replace("{cwd}", str(cwd)) not in lines[0]]
        if missing:
            problems.append(f"the line lacks {missing}")
    if "Traceback" in r.stderr + r.stdout:
        problems.append("a traceback")
    if not case.db_may_exist and (cwd / "mlflow.db").exists():
        problems.append("mlflow.db was created")
    for name in ("outputs", "multirun", "mlartifacts"):
        if (cwd / name).exists():
            problems.append(f"{name}/ was created")
    for p in case.absent:
        if Path(str(p).replace("{cwd}", str(cwd))).exists():
            problems.append(f"{p} exists: injected code ran")
    if not problems:
        return None
    return (f"{case.id}: {'; '.join(problems)}\n    $ fnnbench {' '.join(args)}\n    stderr: "
            + "\n            ".join(lines[:12]) + ("\n    stdout: " + r.stdout[-500:]
                                                   if r.stdout.strip() else ""))


def run_all(cases: list[Case], root: Path) -> None:
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    with ThreadPoolExecutor(WORKERS) as pool:
        failures = [f for f in pool.map(lambda c: run_case(c, root), cases) if f]
    assert not failures, f"{len(failures)} of {len(cases)} cases misbehaved:\n" + "\n".join(
        failures)


# --------------------------------------------------------------------------- MLflow snapshots

def snapshot(uri: str) -> dict:
    """Every experiment (deleted ones too) and every run with status, metrics, params, tags."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(uri)
    exps = client.search_experiments(view_type=ViewType.ALL)
    out = {"experiments": sorted((e.experiment_id, e.name, e.lifecycle_stage) for e in exps)}
    runs = client.search_runs([e.experiment_id for e in exps], run_view_type=ViewType.ALL,
                              max_results=10_000)
    out["runs"] = sorted(
        (r.info.run_id, r.info.status, r.info.end_time, sorted(r.data.metrics.items()),
         sorted(r.data.params.items()), sorted(r.data.tags.items())) for r in runs)
    return out


def make_store(path: Path) -> str:
    """A sqlite store holding one FINISHED run, one FAILED run and a deleted experiment."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{path}"
    client = MlflowClient(uri)
    exp = client.create_experiment("fnnbench")
    for status in ("FINISHED", "FAILED"):
        run = client.create_run(exp, run_name=f"old-{status.lower()}")
        for step in range(3):
            client.log_metric(run.info.run_id, "train_loss", 1.0 / (step + 1), step=step)
        client.set_terminated(run.info.run_id, status)
    gone = client.create_experiment("gone")
    client.delete_experiment(gone)
    return uri


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file()}


# --------------------------------------------------------------------------- helpers

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def readonly_prefix(directory: Path) -> list[str]:
    """A command prefix under which `directory` is read-only (root ignores mode bits).

    Not root: chmod 0555 (the caller restores it). Root: a private mount namespace with a
    read-only bind mount of the directory (util-linux `unshare`); skip when that is not allowed.
    """
    if os.geteuid() != 0:
        directory.chmod(0o555)
        return []
    if shutil.which("unshare") is None:
        pytest.skip("running as root without unshare: cannot make a read-only directory")
    probe = subprocess.run(["unshare", "-m", "sh", "-c",
                            'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0"',
                            str(directory)], capture_output=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip("running as root and mount namespaces are not allowed here")
    return ["unshare", "-m", "sh", "-c",
            'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"',
            str(directory)]


# --------------------------------------------------------------------------- 1. config values

CONFIG_CASES = [
    # optimizer.lr: sign, zero, non-finite, huge, wrong types
    Case("lr-negative", ["optimizer.lr=-0.1"], ["optimizer.lr=-0.1", "finite number > 0"]),
    Case("lr-zero", ["optimizer.lr=0"], ["optimizer.lr=0:", "> 0"]),
    Case("lr-nan", ["optimizer.lr=nan"], ["optimizer.lr=nan", "finite"]),
    Case("lr-inf", ["optimizer.lr=inf"], ["optimizer.lr=inf", "finite"]),
    Case("lr-minus-inf", ["optimizer.lr=-inf"], ["optimizer.lr=-inf", "finite"]),
    Case("lr-huge", ["optimizer.lr=1e308"], ["optimizer.lr=1e+308", "<= 1000000"]),
    Case("lr-string", ["optimizer.lr=abc"], ["optimizer.lr='abc'", "finite number"]),
    Case("lr-bool", ["optimizer.lr=true"], ["optimizer.lr=True", "finite number"]),
    Case("lr-list", ["optimizer.lr=[0.1]"], ["optimizer.lr=[0.1]", "finite number"]),
    Case("lr-null", ["optimizer.lr=null"], ["optimizer.lr=None", "finite number"]),
    Case("lr-interpolated-string", ["optimizer.lr=${oc.env:HOME}"],
         ["optimizer.lr=", "finite number"]),
    # batch size
    Case("batch-zero", ["optimizer.batch_size=0"], ["optimizer.batch_size=0", "'full'"]),
    Case("batch-negative", ["optimizer.batch_size=-3"], ["optimizer.batch_size=-3", ">= 1"]),
    Case("batch-float", ["optimizer.batch_size=1.5"], ["optimizer.batch_size=1.5", "integer"]),
    Case("batch-word", ["optimizer.batch_size=half"], ["optimizer.batch_size='half'", "'full'"]),
    Case("batch-beyond-digits", ["optimizer.batch_size=100000"],
         ["optimizer.batch_size=100000", "1257 training examples"]),
    Case("batch-beyond-xor", ["dataset=xor", "optimizer.batch_size=5"],
         ["optimizer.batch_size=5", "4 training examples"]),
    # model
    Case("width-zero", ["model.hidden_sizes=[64,0]"], ["model.hidden_sizes=[64, 0]", ">= 1"]),
    Case("width-negative", ["model.hidden_sizes=[-1]"], ["model.hidden_sizes=[-1]", ">= 1"]),
    Case("widths-not-list", ["model.hidden_sizes=5"], ["model.hidden_sizes=5", "list"]),
    Case("widths-strings", ["model.hidden_sizes=[a]"], ["model.hidden_sizes=['a']", "list"]),
    Case("widths-float", ["model.hidden_sizes=[1e3]"], ["model.hidden_sizes=[1000.0]", "integer"]),
    Case("widths-huge", ["model.hidden_sizes=[1000000,1000000]"],
         ["model.hidden_sizes=[1000000, 1000000]", "too large", "at most"]),
    Case("widths-huge-activations", ["activation=maxout", "activation.k=16",
                                     "model.hidden_sizes=[20000]"],
         ["model.hidden_sizes=[20000]", "activation values", "at most"]),
    Case("init-unknown", ["model.init=bogus"], ["model.init='bogus'", "must be one of"]),
    Case("dtype-float16", ["model.dtype=float16"], ["model.dtype='float16'", "float64, float32"]),
    Case("init-sigma-zero", ["model.init_sigma=0"], ["model.init_sigma=0", "> 0"]),
    Case("model-unknown-option", ["model=resnet"], ["model=resnet: unknown option", "mlp"]),
    # activation / loss
    Case("activation-unknown", ["activation=swish"], ["activation=swish: unknown option", "relu"]),
    Case("activation-name-unknown", ["activation.name=relu6"],
         ["activation.name='relu6'", "must be one of"]),
    Case("leaky-slope", ["activation=leaky_relu", "activation.slope=2"],
         ["activation.slope=2", "< 1.0"]),
    Case("maxout-k-huge", ["activation=maxout", "activation.k=100"],
         ["activation.k=100", "<= 16"]),
    Case("elu-mu-nan", ["activation=elu", "activation.mu=nan"], ["activation.mu=nan", "finite"]),
    Case("activation-key-wrong-option", ["activation=relu", "+activation.slope=0.1"],
         ["activation.slope: unknown key", "name"]),
    Case("loss-unknown", ["loss=mae"], ["loss=mae: unknown option", "cross_entropy"]),
    Case("loss-output", ["loss=square", "loss.output=tanh"],
         ["loss.output='tanh'", "linear, sigmoid, softmax"]),
    Case("loss-key-unknown", ["loss=hinge", "loss.output=linear"], ["loss.output: unknown key"]),
    # optimizer rules
    Case("adam-beta1", ["optimizer=adam", "optimizer.beta1=1"], ["optimizer.beta1=1", "< 1.0"]),
    Case("adam-eps-zero", ["optimizer=adam", "optimizer.eps=0"], ["optimizer.eps=0", "> 0"]),
    Case("momentum-negative", ["optimizer=momentum", "optimizer.momentum=-0.1"],
         ["optimizer.momentum=-0.1", ">= 0"]),
    Case("rule-key-unknown", ["optimizer=rmsprop", "+optimizer.beta1=0.9"],
         ["optimizer.beta1: unknown key", "rho"]),
    Case("rule-unknown", ["optimizer.rule=sgd2"], ["optimizer.rule='sgd2'", "adam"]),
    Case("optimizer-unknown", ["optimizer=lbfgs"], ["optimizer=lbfgs: unknown option", "adam"]),
    Case("key-typo", ["optimizer.lrr=0.1"], ["optimizer.lrr", "unknown key"]),
    # regularizer
    Case("reg-negative", ["regularizer=l2", "regularizer.strength=-1"],
         ["regularizer.strength=-1", ">= 0"]),
    Case("reg-inf", ["regularizer=l1", "regularizer.strength=inf"],
         ["regularizer.strength=inf", "finite"]),
    Case("reg-unknown", ["regularizer=l3"], ["regularizer=l3: unknown option", "l2"]),
    # train
    Case("epochs-zero", ["train.epochs=0"], ["train.epochs=0", ">= 1"]),
    Case("epochs-float", ["train.epochs=1.5"], ["train.epochs=1.5", "integer"]),
    Case("epochs-huge", ["train.epochs=10000000"], ["train.epochs=10000000", "<= 1000000"]),
    Case("target-negative", ["train.target=-1"], ["train.target=-1", ">= 0"]),
    Case("target-error-above-1", ["train.target_metric=train_error", "train.target=2"],
         ["train.target=2", "[0, 1]"]),
    Case("target-metric", ["train.target_metric=val_loss"],
         ["train.target_metric='val_loss'", "train_loss, train_error"]),
    Case("stop-without-target", ["train.stop_at_target=true"],
         ["train.stop_at_target=True", "train.target"]),
    Case("stop-not-bool", ["train.stop_at_target=maybe"],
         ["train.stop_at_target='maybe'", "true or false"]),
    Case("diagnostics-negative", ["train.diagnostics_every=-1"],
         ["train.diagnostics_every=-1", ">= 0"]),
    Case("converge-tol-nan", ["train.converge_tol=nan"], ["train.converge_tol=nan", "finite"]),
    Case("progress-word", ["train.progress=sometimes"], ["train.progress='sometimes'", "auto"]),
    # seed, unknown keys
    Case("seed-negative", ["seed=-1"], ["seed=-1", ">= 0"]),
    Case("seed-huge", ["seed=4294967296"], ["seed=4294967296", "<= 4294967295"]),
    Case("seed-float", ["seed=1.5"], ["seed=1.5", "integer"]),
    Case("top-level-unknown", ["+foo=1"], ["foo: unknown top-level key", "allowed"]),
    Case("train-key-unknown", ["+train.foo=1"], ["train.foo: unknown key", "epochs"]),
    # dataset values (fnnbench.data's checks)
    Case("dataset-unknown", ["dataset=cifar"], ["dataset=cifar: unknown option", "digits"]),
    Case("blobs-one-class", ["dataset=blobs", "dataset.n_classes=1"], ["n_classes", ">= 2"]),
    Case("moons-noise-negative", ["dataset=moons", "dataset.noise=-1"], ["noise", "> 0"]),
    Case("fractions-sum", ["dataset=moons", "dataset.val_fraction=0.6",
                           "dataset.test_fraction=0.5"], ["val_fraction + test_fraction", "< 1"]),
    Case("fraction-nan", ["dataset=moons", "dataset.val_fraction=nan"],
         ["val_fraction", "finite"]),
    Case("n-samples-float", ["dataset=moons", "dataset.n_samples=1e12"],
         ["n_samples", "integer"]),
    Case("n-samples-huge", ["dataset=moons", "dataset.n_samples=1000000000"],
         ["n_samples=1000000000", "at most 1000000"]),
    Case("dataset-key-unknown", ["dataset=spirals", "+dataset.bogus=1"], ["bogus", "allowed"]),
    Case("idx-without-paths", ["dataset=idx"], ["dataset.train_images", "Missing"]),
    # tracking keys (values; the stores are in TRACKING_CASES)
    Case("tracking-enabled-word", ["tracking.enabled=maybe"],
         ["tracking.enabled='maybe'", "true or false"]),
    Case("tracking-flush-zero", ["tracking.flush_every=0"], ["tracking.flush_every=0", ">= 1"]),
    Case("tracking-key-unknown", ["+tracking.foo=1"], ["tracking.foo: unknown key", "uri"]),
    Case("tracking-experiment-empty", ["tracking.experiment="],
         ["tracking.experiment=''", "non-empty"]),
    Case("tracking-option-unknown", ["tracking=cloud"], ["tracking=cloud: unknown option",
                                                         "local"]),
]

# --------------------------------------------------------------------------- 2. sweeps, syntax

SWEEP_CASES = [
    Case("sweep-unknown", ["sweep=no_such_claim"], ["sweep=no_such_claim: unknown option",
                                                    "relu_faster"]),
    Case("sweep-unknown-multirun", ["-m", "sweep=no_such_claim"],
         ["sweep=no_such_claim: unknown option"]),
    Case("sweep-one-bad-lr", ["-m", "optimizer.lr=0.1,0.2,-1"], ["optimizer.lr=-1", "> 0"]),
    Case("sweep-one-bad-width", ["-m", "model.hidden_sizes=[8],[0]"],
         ["model.hidden_sizes=[0]", ">= 1"]),
    Case("sweep-one-bad-option", ["-m", "activation=relu,swish"],
         ["activation=swish: unknown option"]),
    Case("sweep-batch-beyond-one-dataset", ["-m", "dataset=digits,xor", "optimizer.batch_size=32"],
         ["optimizer.batch_size=32", "4 training examples"]),
    Case("sweep-bad-value-last-axis", ["-m", "seed=0,1", "train.epochs=1,0"],
         ["train.epochs=0", ">= 1"]),
    Case("sweep-empty-range", ["-m", "seed=range(0,0)"], ["seed=range(0,0)", "no values"]),
    Case("value-empty", ["-m", "optimizer.lr="], ["optimizer.lr=''", "finite number"]),
    Case("value-empty-list", ["optimizer.lr=[]"], ["optimizer.lr=[]", "finite number"]),
    Case("sweep-huge", ["-m", "seed=range(0,1000000)"], ["seed=range(0,1000000)",
                                                         "more than 100000 jobs"]),
    Case("sweep-without-m", ["optimizer.lr=0.1,0.2"], ["optimizer.lr=0.1,0.2", "-m"]),
    Case("claim-sweep-bad-value", ["sweep=relu_faster", "optimizer.lr=-1"],
         ["optimizer.lr=-1", "> 0"]),
    Case("syntax-unclosed-list", ["optimizer.lr=[1,"], ["malformed override", "optimizer.lr=[1,"]),
    Case("syntax-no-equals", ["optimizer.lr"], ["malformed override", "missing EQUAL"]),
    Case("syntax-no-key", ["=1"], ["malformed override '=1'", "no key"]),
    Case("syntax-double-equals", ["optimizer.lr==1"], ["malformed override", "optimizer.lr==1"]),
    Case("syntax-bad-interpolation", ["optimizer.lr=${foo}"], ["optimizer.lr", "foo"]),
    Case("syntax-unknown-flag", ["--foo"], ["--foo: unknown flag", "--multirun"]),
    Case("launcher-n-jobs-zero", ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=0",
                                  "seed=0,1"], ["hydra.launcher.n_jobs=0", "from 1 to 1024"]),
    Case("launcher-n-jobs-word", ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=abc",
                                  "seed=0,1"], ["hydra.launcher.n_jobs=abc", "Integer"]),
    Case("launcher-threads", ["-m", "hydra/launcher=joblib", "hydra.launcher.prefer=threads",
                              "seed=0,1"], ["hydra.launcher.prefer='threads'", "processes"]),
    Case("output-dir-under-a-file", ["hydra.run.dir=/dev/null/out"],
         ["hydra.run.dir=/dev/null/out", "not a directory"]),
]

# --------------------------------------------------------------------------- 3. injection

PWNED = "{cwd}/pwned"


def injection_cases(tmp: Path) -> list[Case]:
    evil = tmp / "evil.pickle"
    # unpickling this calls open(<cwd>/pwned-rerun, "w"): the file appears iff it was unpickled
    marker = tmp / "pwned-rerun"
    evil.write_bytes(pickle.dumps(_OpenOnUnpickle(str(marker))))
    evil_conf = tmp / "evil_conf" / "hydra" / "callbacks"
    evil_conf.mkdir(parents=True)
    (evil_conf / "x.yaml").write_text(f"x:\n  _target_: builtins.open\n  _args_: ['{PWNED}', w]\n")
    pwn = Path(PWNED)
    return [
        Case("target-job-key", ["+model._target_=os.system"], ["model._target_=os.system",
                                                                "refused", "registries"]),
        Case("target-job-value", ["model.hidden_sizes={_target_:builtins.open,_args_:[x,w]}"],
             ["_target_", "refused"]),
        Case("target-in-sweep-value", ["-m", "optimizer.lr=0.1,{_target_:builtins.open}"],
             ["_target_", "refused"]),
        Case("callback-add-open", ["+hydra.callbacks.x._target_=builtins.open",
                                   f"+hydra.callbacks.x._args_=[{PWNED},w]"],
             ["hydra.callbacks.x._target_=builtins.open", "refused"], absent=[pwn]),
        Case("callback-add-copyfile", ["+hydra.callbacks.x._target_=shutil.copyfile",
                                       f"+hydra.callbacks.x._args_=[/etc/hostname,{PWNED}]"],
             ["hydra.callbacks.x._target_=shutil.copyfile", "refused"], absent=[pwn]),
        Case("callback-no-plus", ["hydra.callbacks.x._target_=os.system"],
             ["hydra.callbacks.x._target_", "refused"]),
        Case("callback-replace-own", ["hydra.callbacks.mlflow._target_=builtins.print"],
             ["hydra.callbacks.mlflow._target_", "refused"]),
        Case("callback-delete-own", ["~hydra.callbacks.mlflow"],
             ["hydra.callbacks.mlflow: refused", "fnnbench.tracking.SweepCallback"]),
        Case("callback-args-only", [f"+hydra.callbacks.mlflow.x={PWNED}"],
             ["hydra.callbacks.mlflow.x", "refused"]),
        Case("callbacks-group", ["+hydra/callbacks=x"], ["hydra/callbacks=x: refused"]),
        Case("launcher-unknown", ["hydra/launcher=rq"], ["hydra/launcher=rq: refused",
                                                         "basic, joblib"]),
        Case("sweeper-unknown", ["hydra/sweeper=optuna"], ["hydra/sweeper=optuna: refused",
                                                           "basic"]),
        Case("launcher-package", ["hydra/launcher@hydra.callbacks.y=joblib"],
             ["refused", "basic, joblib"]),
        Case("launcher-target", ["hydra.launcher._target_=builtins.exec"],
             ["hydra.launcher._target_=builtins.exec", "refused"]),
        Case("sweeper-target", ["-m", "hydra.sweeper._target_=builtins.exec", "seed=0,1"],
             ["hydra.sweeper._target_", "refused"]),
        Case("launcher-nested-target", ["-m", "hydra/launcher=joblib",
                                        "hydra.launcher.n_jobs={_target_:builtins.open}",
                                        "seed=0,1"], ["hydra.launcher.n_jobs", "refused"]),
        Case("logging-class", ["hydra.job_logging.handlers.console.class=shutil.copyfile"],
             ["hydra.job_logging.handlers.console.class", "refused"]),
        Case("logging-new-handler", ["+hydra.job_logging.handlers.x.class=subprocess.Popen",
                                     "+hydra.job_logging.handlers.x.args=[touch,pwned]"],
             ["hydra.job_logging.handlers.x.class", "refused"], absent=[Path("{cwd}/pwned")]),
        Case("env-set", ["+hydra.job.env_set.LD_PRELOAD=/tmp/evil.so"],
             ["hydra.job.env_set.LD_PRELOAD", "refused"]),
        Case("env-set-tracking", ["+hydra.job.env_set.MLFLOW_TRACKING_URI=sqlite:///x.db"],
             ["hydra.job.env_set.MLFLOW_TRACKING_URI", "refused"]),
        Case("searchpath", [f"hydra.searchpath=[file://{tmp / 'evil_conf'}]"],
             ["hydra.searchpath", "refused"]),
        Case("searchpath-then-callback", [f"hydra.searchpath=[file://{tmp / 'evil_conf'}]",
                                          "+hydra/callbacks=x"], ["refused"], absent=[pwn]),
        Case("config-dir", ["--config-dir", str(tmp / "evil_conf"), "+hydra/callbacks=x"],
             ["--config-dir: refused", "conf/"], absent=[pwn]),
        Case("config-path", ["--config-path=/tmp", "--config-name=x"],
             ["--config-path: refused"]),
        Case("experimental-rerun", ["--experimental-rerun", str(evil)],
             ["--experimental-rerun: refused", "unpickles"], absent=[marker]),
        Case("inspect-does-not-excuse", ["--cfg", "job",
                                         "+hydra.callbacks.x._target_=builtins.open",
                                         f"+hydra.callbacks.x._args_=[{PWNED},w]"],
             ["refused"], absent=[pwn]),
    ]


class _OpenOnUnpickle:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


# --------------------------------------------------------------------------- 4. IDX data files

def idx_cases(tmp: Path, store_uri: str) -> list[Case]:
    d = tmp / "idx"
    d.mkdir()
    rng = np.random.default_rng(0)
    good = {
        "train_images": rng.integers(0, 256, size=(40, 4, 4), dtype=np.uint8),
        "train_labels": np.arange(40, dtype=np.uint8) % 3,
        "test_images": rng.integers(0, 256, size=(12, 4, 4), dtype=np.uint8),
        "test_labels": np.arange(12, dtype=np.uint8) % 3,
    }
    paths = {k: write_idx(d / f"{k}.idx", v) for k, v in good.items()}

    def variant(name: str, key: str, make: Callable[[Path], None]) -> list[str]:
        p = d / name
        make(p)
        chosen = {**paths, key: p}
        return ["dataset=idx", *(f"dataset.{k}={v}" for k, v in chosen.items())]

    raw = paths["train_images"].read_bytes()
    lraw = paths["train_labels"].read_bytes()

    def wrong_magic(p):
        p.write_bytes(b"\x08\x03" + raw[2:])

    def bad_code(p):
        p.write_bytes(raw[:2] + b"\x07" + raw[3:])

    def zero_dims(p):
        p.write_bytes(raw[:3] + b"\x00")

    def float_labels(p):
        write_idx(p, good["train_labels"].astype(np.float32))

    one_class = {**paths, **{k: write_idx(d / f"one_{k}.idx", np.zeros_like(good[k]))
                             for k in ("train_labels", "test_labels")}}
    cases = [
        Case("idx-missing", variant("x", "train_images", lambda p: None),
             [str(d / "x"), "no such file"]),
        Case("idx-empty", variant("empty.idx", "train_images", lambda p: p.write_bytes(b"")),
             ["empty.idx", "truncated"]),
        Case("idx-truncated-data", variant("trunc.idx", "train_images",
                                           lambda p: p.write_bytes(raw[: len(raw) // 2])),
             ["trunc.idx", "size mismatch"]),
        Case("idx-truncated-header", variant("trunc_h.idx", "train_labels",
                                             lambda p: p.write_bytes(lraw[:6])),
             ["trunc_h.idx", "truncated IDX header"]),
        Case("idx-extra-bytes", variant("extra.idx", "test_images",
                                        lambda p: p.write_bytes(
                                            paths["test_images"].read_bytes() + b"\x00")),
             ["extra.idx", "size mismatch"]),
        Case("idx-wrong-magic", variant("magic.idx", "train_images", wrong_magic),
             ["magic.idx", "bad IDX magic"]),
        Case("idx-unknown-dtype", variant("code.idx", "train_images", bad_code),
             ["code.idx", "unknown IDX dtype"]),
        Case("idx-zero-dims", variant("zdim.idx", "train_images", zero_dims),
             ["zdim.idx", "0 dimensions"]),
        Case("idx-labels-2d", variant("l2d.idx", "train_labels",
                                      lambda p: write_idx(p, good["train_labels"].reshape(8, 5))),
             ["l2d.idx", "1-D"]),
        Case("idx-images-1d", variant("i1d.idx", "train_images",
                                      lambda p: write_idx(p, np.zeros(40, np.uint8))),
             ["i1d.idx", ">= 2 dimensions"]),
        Case("idx-count-mismatch", variant("l39.idx", "train_labels",
                                           lambda p: write_idx(p, good["train_labels"][:39])),
             ["40 images", "39 labels"]),
        Case("idx-feature-mismatch", variant("t5x5.idx", "test_images",
                                             lambda p: write_idx(
                                                 p, np.zeros((12, 5, 5), np.uint8))),
             ["t5x5.idx", "25 features", "16"]),
        Case("idx-float-labels", variant("fl.idx", "train_labels", float_labels),
             ["fl.idx", "integer IDX dtype"]),
        Case("idx-nan-pixels", variant("nan.idx", "train_images",
                                       lambda p: write_idx(p, np.full((40, 4, 4), np.nan,
                                                                      np.float32))),
             ["nan.idx", "NaN"]),
        Case("idx-one-class", ["dataset=idx", *(f"dataset.{k}={v}" for k, v in one_class.items())],
             ["fewer than 2 classes"]),
        Case("idx-corrupt-gzip", variant("bad.idx.gz", "train_images",
                                         lambda p: p.write_bytes(gzip.compress(raw)[:30])),
             ["bad.idx.gz", "corrupt gzip"]),
        Case("idx-directory", variant("adir", "test_labels", lambda p: p.mkdir()),
             ["adir", "cannot read"]),
        Case("idx-batch-beyond", ["dataset=idx", *(f"dataset.{k}={v}" for k, v in paths.items()),
                                  "optimizer.batch_size=64"],
             ["optimizer.batch_size=64", "36 training examples"]),
        # the same mistake against a store that holds runs: the store is left as it was
        Case("idx-truncated-existing-store", variant("trunc2.idx", "train_images",
                                                     lambda p: p.write_bytes(raw[:100])),
             ["trunc2.idx", "size mismatch"], env={"MLFLOW_TRACKING_URI": store_uri},
             db_may_exist=True),
    ]
    return cases


# --------------------------------------------------------------------------- 5. tracking stores

class _Http501(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass


def tracking_cases(tmp: Path, store_uri: str, ports: dict[str, int]) -> list[Case]:
    not_db = tmp / "notadb.db"
    not_db.write_bytes(b"this is not an sqlite database\n" * 10)
    a_file = tmp / "a_file"
    a_file.write_text("x")
    mlruns = tmp / "filestore"
    (mlruns / "mlruns" / "0" / "abc" / "metrics").mkdir(parents=True)
    (mlruns / "mlruns" / "0" / "meta.yaml").write_text(
        "artifact_location: mlruns/0\nexperiment_id: '0'\nlifecycle_stage: active\n"
        "name: Default\n")
    (mlruns / "mlruns" / "0" / "abc" / "metrics" / "train_loss").write_text("0 0.5 0\n")
    return [
        Case("uri-scheme-unknown", ["tracking.uri=bogus://x"],
             ["tracking.uri=bogus://x", "unsupported URI scheme", "sqlite:///"]),
        Case("uri-scheme-unknown-env", [], ["MLFLOW_TRACKING_URI=bogus://x",
                                            "unsupported URI scheme"],
             env={"MLFLOW_TRACKING_URI": "bogus://x"}),
        Case("uri-closed-port", [f"tracking.uri=http://127.0.0.1:{ports['closed']}"],
             [f"tracking.uri=http://127.0.0.1:{ports['closed']}", "cannot reach"]),
        Case("uri-server-preset-down", ["tracking=server",
                                        f"tracking.uri=http://127.0.0.1:{ports['closed']}"],
             ["cannot reach"]),
        Case("uri-not-mlflow-server", [f"tracking.uri=http://127.0.0.1:{ports['http501']}"],
             ["tracking.uri=http://127.0.0.1:", "HTTP 501"]),
        Case("uri-server-never-answers", [f"tracking.uri=http://127.0.0.1:{ports['silent']}"],
             ["tracking.uri=http://127.0.0.1:", "cannot reach"]),
        Case("sqlite-not-a-database", [f"tracking.uri=sqlite:///{not_db}"],
             [f"tracking.uri=sqlite:///{not_db}", "not a database"]),
        Case("sqlite-dir-is-a-file", [f"tracking.uri=sqlite:///{a_file}/mlflow.db"],
             ["tracking.uri=sqlite:///", "cannot create directory"]),
        Case("sqlite-on-proc", ["tracking.uri=sqlite:////proc/fnnbench/mlflow.db"],
             ["tracking.uri=sqlite:////proc/fnnbench/mlflow.db", "directory"]),
        Case("file-store-path", [f"tracking.uri={mlruns / 'mlruns'}"],
             ["tracking.uri=", "file store", "sqlite:///mlflow.db"]),
        Case("file-store-uri", [f"tracking.uri=file://{mlruns / 'mlruns'}"],
             ["tracking.uri=file://", "file store"]),
        Case("file-store-env", [], ["MLFLOW_TRACKING_URI=file:./mlruns", "file store"],
             env={"MLFLOW_TRACKING_URI": "file:./mlruns"}),
        Case("experiment-deleted", ["tracking.experiment=gone"],
             ["tracking.experiment=gone", "deleted", "restore"],
             env={"MLFLOW_TRACKING_URI": store_uri}, db_may_exist=True),
        Case("sweep-bad-value-existing-store", ["-m", "optimizer.lr=0.1,-1", "dataset=xor",
                                                "optimizer.batch_size=full"],
             ["optimizer.lr=-1"], env={"MLFLOW_TRACKING_URI": store_uri}, db_may_exist=True),
        Case("injection-existing-store", ["+hydra.callbacks.x._target_=builtins.open"],
             ["refused"], env={"MLFLOW_TRACKING_URI": store_uri}, db_may_exist=True),
    ], not_db, mlruns


@pytest.fixture(scope="module")
def servers():
    """A port nobody listens on, an HTTP server answering 501, a socket that never answers."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Http501)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts into the backlog, never reads or answers
    try:
        yield {"closed": free_port(), "http501": httpd.server_address[1],
               "silent": silent.getsockname()[1]}
    finally:
        httpd.shutdown()
        httpd.server_close()
        silent.close()


# --------------------------------------------------------------------------- the tests

def test_bad_config_values_are_one_line_exit_2(tmp_path):
    run_all(CONFIG_CASES, tmp_path)


def test_bad_sweeps_and_syntax_are_one_line_exit_2(tmp_path):
    run_all(SWEEP_CASES, tmp_path)


def test_code_injection_is_refused_and_nothing_runs(tmp_path):
    cases = injection_cases(tmp_path)
    run_all(cases, tmp_path)
    assert not (tmp_path / "pwned-rerun").exists()


def test_bad_data_files_are_one_line_and_store_untouched(tmp_path):
    uri = make_store(tmp_path / "store" / "mlflow.db")
    before = snapshot(uri)
    run_all(idx_cases(tmp_path, uri), tmp_path)
    assert snapshot(uri) == before


def test_bad_tracking_settings_are_one_line_and_nothing_created(tmp_path, servers):
    uri = make_store(tmp_path / "store" / "mlflow.db")
    before = snapshot(uri)
    cases, not_db, mlruns = tracking_cases(tmp_path, uri, servers)
    not_db_bytes, mlruns_tree = not_db.read_bytes(), tree(mlruns)
    # the env case reads ./mlruns of its own directory: give it file-store data too
    shutil.copytree(mlruns / "mlruns", tmp_path / "file-store-env" / "mlruns")
    run_all(cases, tmp_path)
    assert snapshot(uri) == before
    assert not_db.read_bytes() == not_db_bytes
    assert tree(mlruns) == mlruns_tree
    assert not Path("/proc/fnnbench").exists()


def test_read_only_store_directory_is_one_line_and_store_untouched(tmp_path):
    store_dir = tmp_path / "ro"
    uri = make_store(store_dir / "mlflow.db")
    before = snapshot(uri)
    files_before = tree(store_dir)
    prefix = readonly_prefix(store_dir)
    try:
        cases = [
            Case("ro-existing-store", ["dataset=xor", "optimizer=gd", "train.epochs=1"],
                 ["MLFLOW_TRACKING_URI=", str(store_dir), "not writable"],
                 env={"MLFLOW_TRACKING_URI": uri}, prefix=prefix, db_may_exist=True),
            Case("ro-new-store", ["dataset=xor", "optimizer=gd", "train.epochs=1",
                                  f"tracking.uri=sqlite:///{store_dir}/new.db"],
                 [f"tracking.uri=sqlite:///{store_dir}/new.db", "not writable"], prefix=prefix),
            Case("ro-sweep", ["-m", "seed=0,1", "dataset=xor", "optimizer=gd",
                              "train.epochs=1"], ["not writable"],
                 env={"MLFLOW_TRACKING_URI": uri}, prefix=prefix, db_may_exist=True),
        ]
        run_all(cases, tmp_path)
    finally:
        store_dir.chmod(0o755)
    assert tree(store_dir) == files_before
    assert snapshot(uri) == before


def test_the_matrix_is_large_enough(tmp_path):
    """The README's Guarantees section quotes these counts."""
    n = (len(CONFIG_CASES) + len(SWEEP_CASES) + len(injection_cases(tmp_path))
         + len(idx_cases(tmp_path, "sqlite:///unused.db"))
         + len(tracking_cases(tmp_path, "sqlite:///unused.db", {"closed": 1, "http501": 1,
                                                                 "silent": 1})[0]) + 3)
    assert n >= 150, n


# --------------------------------------------------------------------------- no over-refusal

GOOD = [
    ["-m", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    ["hydra.job.chdir=true", "hydra.run.dir={cwd}/out"],
    ["hydra/job_logging=disabled", "hydra/hydra_logging=disabled"],
    ["-m", "seed=range(0,3)", "hydra.sweep.dir={cwd}/sweep", "hydra.verbose=true"],
    ["model.hidden_sizes=[]", "optimizer.batch_size=full", "train.target=0.1"],
    ["--cfg", "job"],
]


@pytest.mark.parametrize("args", GOOD, ids=[" ".join(a) for a in GOOD])
def test_good_command_lines_pass_preflight(tmp_path, args):
    """The refusals above refuse nothing a user needs (in-process, tracking off)."""
    from fnnbench.cli.preflight import preflight

    preflight([a.replace("{cwd}", str(tmp_path)) for a in args] + ["tracking.enabled=false"])


@pytest.mark.parametrize("claim", sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml")))
def test_every_claim_sweep_passes_preflight(claim):
    from fnnbench.cli.preflight import preflight

    checked = preflight(["-m", f"sweep={claim}", "tracking.enabled=false"])
    assert checked, claim
