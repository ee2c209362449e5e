"""The Hydra entry point: ``python -m fnnbench [overrides]`` trains one job, ``-m`` sweeps.

``train(cfg)`` builds everything from a composed config and runs the job under MLflow
tracking; ``@hydra.main`` only calls it. Before Hydra launches anything, :func:`preflight`
composes and validates the config of every value of every swept key, and prepares the MLflow
store, so a user mistake is one line on stderr, exit code 2, and nothing written to MLflow.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from fnnbench.config import (
    ConfigError,
    check_against_data,
    check_size,
    resolve_batch_size,
    validate,
)

REPO_DIR = Path(__file__).resolve().parent.parent
CONF_DIR = REPO_DIR / "conf"
SWEEPS_DIR = REPO_DIR / "sweeps"
EXIT_USAGE = 2
EXIT_FAILED_JOBS = 1


@dataclass
class Job:
    """Everything a training job needs, built from a validated config."""

    net: Any
    opt: Any
    data: Any
    batch_size: int
    rng: np.random.Generator


def build(cfg: DictConfig) -> Job:
    """Config -> objects, through the registries of fnnbench.nn / optim / data only."""
    from fnnbench.data import load_dataset
    from fnnbench.nn import MLP
    from fnnbench.optim import make_optimizer

    validate(cfg)
    # One SeedSequence per job: independent streams for the data split, init and shuffling.
    seed_data, seed_init, seed_shuffle = np.random.SeedSequence(cfg.seed).spawn(3)
    data = load_dataset(cfg.dataset, seed=int(seed_data.generate_state(1)[0]))
    check_against_data(cfg, len(data.y_train))
    check_size(cfg, data.n_features, data.n_classes, len(data.y_train))
    # Two classes: one output unit (the lecture's Bernoulli / single neuron); C > 2: C outputs.
    n_out = 1 if data.n_classes == 2 else data.n_classes
    act = OmegaConf.to_container(cfg.activation)
    act_name = act.pop("name")
    loss_kw = OmegaConf.to_container(cfg.loss)
    loss_name = loss_kw.pop("name")
    reg = cfg.regularizer.name
    net = MLP(
        [data.n_features, *cfg.model.hidden_sizes, n_out],
        activation=act_name,
        loss=loss_name,
        seed=int(seed_init.generate_state(1)[0]),
        dtype=np.dtype(cfg.model.dtype),
        activation_kwargs=act,
        loss_kwargs=loss_kw,
        init=cfg.model.init,
        init_sigma=cfg.model.init_sigma,
        regularizer=None if reg == "none" else reg,
        reg_strength=float(cfg.regularizer.strength),
    )
    hp = {k: v for k, v in OmegaConf.to_container(cfg.optimizer).items()
          if k not in ("name", "rule", "batch_size")}
    opt = make_optimizer(cfg.optimizer.rule, **hp)
    bs = resolve_batch_size(cfg.optimizer.batch_size, len(data.y_train))
    return Job(net=net, opt=opt, data=data, batch_size=bs,
               rng=np.random.default_rng(seed_shuffle))


def _progress(cfg: DictConfig, multirun: bool) -> bool:
    mode = cfg.train.progress
    if mode == "auto":
        parallel = multirun and "joblib" in str(_hydra_choice("hydra/launcher") or "")
        return sys.stderr.isatty() and not parallel and os.environ.get("CI") != "true"
    return bool(mode)


def _hydra_choice(group: str) -> str | None:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return HydraConfig.get().runtime.choices.get(group)


def _overrides() -> tuple[list[str], str | None]:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return [], None
    from fnnbench.tracking import run_name

    overrides = list(HydraConfig.get().overrides.task)
    return overrides, run_name(overrides) if overrides else None  # the keys the sweep varies


def train(cfg: DictConfig, *, multirun: bool = False):
    """Run one job from a composed config: validate, build, fit under MLflow tracking.

    Returns the :class:`fnnbench.train.TrainResult`, or None when tracking skipped the job
    because an identical config already has a FINISHED run. Raises ConfigError /
    DataError (one line) before anything is logged when the config or the data are bad.
    """
    from fnnbench import tracking
    from fnnbench.train import TrainSettings, fit

    job = build(cfg)
    settings = TrainSettings.from_cfg(cfg.train, progress=_progress(cfg, multirun))
    overrides, job_name = _overrides()
    with tracking.job_run(cfg, overrides=overrides, job_name=job_name) as run:
        if run.skipped:  # tracking.job_run printed the one "fnnbench: skipped ..." line
            return None
        result = fit(job.net, job.opt, job.data, settings, job.rng, job.batch_size,
                     callbacks=[run])
    s = result.summary
    ttt = s.get("epochs_to_target")
    print(
        f"fnnbench: {job_name or 'job'}: {result.outcome}, epochs={int(s['epochs_run'])}, "
        f"train_loss={s['final_train_loss']:.4g}, train_acc={s['final_train_acc']:.4f}, "
        f"test_acc={s.get('final_test_acc', float('nan')):.4f}, "
        f"epochs_to_target={'-' if ttt is None else int(ttt)}, "
        f"train_seconds={s['train_seconds']:.2f}",
        flush=True,
    )
    return result


_failed_jobs: list[str] = []


@hydra.main(version_base=None, config_path=str(CONF_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> Any:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from fnnbench.data import DataError

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    install_signal_handlers()  # again in worker processes (joblib, submitit)
    try:
        train(cfg, multirun=multirun)
    except (ConfigError, DataError) as err:
        if not multirun:
            print(f"fnnbench: error: {err}", file=sys.stderr)
            sys.exit(EXIT_USAGE)
        _job_failed(err)
    except Exception as err:  # a crash: the MLflow run is FAILED already; keep the sweep going
        if not multirun:
            raise
        _job_failed(err)
    return None


def _job_failed(err: BaseException) -> None:
    _, name = _overrides()
    line = str(err).splitlines()[0] if str(err) else type(err).__name__
    print(f"fnnbench: job {name or '?'} failed: {type(err).__name__}: {line}", file=sys.stderr)
    _failed_jobs.append(name or "?")


# Code an interrupt must not land in: a KeyboardInterrupt raised inside an MLflow / SQLAlchemy
# call can leave a sqlite write transaction open, and then closing the run as KILLED fails
# with "database is locked" (and the sweep goes on as if a job had failed).
_STORE_MODULES = ("fnnbench.tracking", "mlflow", "sqlalchemy", "sqlite3", "alembic")
_RECHECK_SECONDS = 0.05
_pending_signal: int | None = None


def _in_store_code(frame: Any) -> bool:
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).startswith(_STORE_MODULES):
            return True
        frame = frame.f_back
    return False


def _interrupt(signum: int, frame: Any) -> None:
    """SIGINT / SIGTERM: raise KeyboardInterrupt, but never inside MLflow store code.

    There the signal is held and re-checked every 50 ms (SIGALRM), so the write completes and
    the job's run is closed as KILLED right after. A second signal while one is held is
    delivered at once (a user who presses Ctrl-C twice wants out).
    """
    global _pending_signal
    if _pending_signal is None and _in_store_code(frame):
        _pending_signal = signum
        signal.setitimer(signal.ITIMER_REAL, _RECHECK_SECONDS)
        return
    _pending_signal = None
    raise KeyboardInterrupt(f"signal {signum}")


def _deliver_held(signum: int, frame: Any) -> None:
    global _pending_signal
    if _pending_signal is None:
        return
    if _in_store_code(frame):
        signal.setitimer(signal.ITIMER_REAL, _RECHECK_SECONDS)
        return
    held, _pending_signal = _pending_signal, None
    raise KeyboardInterrupt(f"signal {held}")


def install_signal_handlers() -> None:
    """SIGINT and SIGTERM end the job as KeyboardInterrupt, outside store code (main thread)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
            signal, "setitimer"):
        return
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _interrupt)
    signal.signal(signal.SIGALRM, _deliver_held)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    from fnnbench.preflight import preflight

    try:
        preflight(args)
    except ConfigError as err:
        print(f"fnnbench: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    install_signal_handlers()
    sys.argv = [sys.argv[0], *args]
    try:
        _hydra_main()
    except KeyboardInterrupt as exc:
        # as for an uncaught exception: the sweep callback's exit hook reads sys.last_value
        # to close the parent run as KILLED (not FAILED) when no job was running
        sys.last_type, sys.last_value, sys.last_traceback = type(exc), exc, exc.__traceback__
        print("fnnbench: interrupted; runs so far are marked KILLED and keep their metrics",
              file=sys.stderr)
        return 130
    if _failed_jobs:
        print(f"fnnbench: {len(_failed_jobs)} job(s) failed: {', '.join(_failed_jobs)}",
              file=sys.stderr)
        return EXIT_FAILED_JOBS
    return 0


if __name__ == "__main__":
    sys.exit(main())
