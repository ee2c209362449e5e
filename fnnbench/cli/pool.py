"""Every claim sweep through one pool of warm worker processes (``fnnbench.reproduce``).

``python -m fnnbench sweep=<id>`` starts a Python process, composes every job's config three
times (preflight, Hydra's sweeper, Hydra's launcher: ~0.15 s each) and starts joblib workers
that import NumPy, MLflow and Hydra again: ~15 s per claim before the first job trains.
:func:`run_claims` does the same work once for all claims:

- each claim's command line is checked by :func:`fnnbench.cli.preflight.preflight` (the same
  one-line errors, before anything is written) and expanded into jobs exactly as Hydra's basic
  sweeper expands it (``BasicSweeper.split_arguments``: the same jobs in the same order);
- each job's config is composed once, by Hydra, through :class:`fnnbench.cli.compose.Composer`
  (one full composition per distinct set of config-group choices);
- the parent run of each claim is created and closed by the same
  :class:`fnnbench.tracking.SweepCallback` that Hydra calls (same tags, same counts);
- jobs run in one ``ProcessPoolExecutor`` of ``workers`` spawned processes that live for the
  whole reproduction, through the same :func:`fnnbench.job.run_job` a Hydra job calls (same
  MLflow records: run names, tags, params, metrics, artifacts; skip-finished included). At
  most ``2 * workers`` jobs are queued, so a claim's parent run opens when its first job is
  queued and the workers move on to the next claim while the last jobs of one finish.

Workers write their output (job lines, warnings) to a log file, never to the terminal; the
caller gets one :class:`ClaimRun` per claim and one :class:`JobDone` per job. Ctrl-C (or
SIGTERM) ends running jobs as KILLED, closes every open parent run as KILLED and raises
KeyboardInterrupt. A worker process that dies (kill -9, out of memory) ends the claims it had
jobs of (their parents FAILED, the job's run KILLED by the parent's count) and the pool is
started again for the remaining claims; running the reproduction again finishes them
(skip-finished).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import pickle
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from fnnbench.job.run import JobContext

# the names of a job's overrides the worker gets (env of the sweep + the job)
_WORKER_LOG = "FNNBENCH_POOL_LOG"


@dataclass
class JobDone:
    """What became of one job (in the worker, timed there)."""

    claim: str
    name: str
    kind: str  # finished | skipped | failed | killed
    outcome: str | None = None  # the trainer's outcome (reached_target, diverged, ...)
    error: str | None = None
    train_seconds: float = 0.0  # the training clock (forward, backward, update)
    eval_seconds: float = 0.0  # the evaluation clock (metrics, target checks)
    job_seconds: float = 0.0  # the whole job in the worker: build, tracking, training
    compose_seconds: float = 0.0  # composing the config (in the launching process)
    queue_seconds: float = 0.0  # queued -> started in a worker


@dataclass
class ClaimRun:
    """One claim's sweep: its jobs and what its parent run counted."""

    claim: str
    n_jobs: int
    parent_run_id: str | None = None
    summary: object | None = None  # fnnbench.tracking.sweep.SweepSummary
    jobs: list[JobDone] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    error: str | None = None  # why the sweep ended early, if it did
    compose_seconds: float = 0.0  # composing its jobs' configs (launching process)

    @property
    def seconds(self) -> float:
        return self.ended - self.started


@dataclass
class _Task:
    claim: str
    cfg: bytes  # the pickled job config (DictConfig without the hydra section)
    context: JobContext
    env: dict[str, str]
    queued: float
    compose_seconds: float = 0.0


@dataclass
class _Plan:
    claim: str
    sweep_cfg: object  # the sweep's own config (with hydra), for SweepCallback.start
    jobs: list[list[str]]  # each job's task overrides (as Hydra's sweeper makes them)
    # the sweep's hydra overrides that change what a job composes (hydra/<group> choices,
    # hydra.searchpath), put before each job's overrides as Hydra's load_sweep_config does
    hydra_args: list[str] = field(default_factory=list)


# -- the worker side ------------------------------------------------------------------------
def _worker_init(log_path: str | None) -> None:
    """A worker: output to the log file, signals as in a Hydra job, mlflow imported once."""
    if log_path:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    from fnnbench.job.signals import install_signal_handlers

    install_signal_handlers()


# Set in a worker once a job was interrupted (Ctrl-C, SIGTERM, the launching process gone):
# the jobs still queued for it are not started (the executor would hand them over).
_STOPPING = False


def _run_task(task: _Task) -> JobDone:
    """One job in a worker, as ``fnnbench.cli.main.hydra_main`` runs it in a Hydra job."""
    global _STOPPING
    from fnnbench.data import DataError
    from fnnbench.job import ConfigError, run_job
    from fnnbench.tracking.names import failed_line

    if _STOPPING:
        return JobDone(task.claim, task.context.name or "", "killed",
                       error="not started: the pool was stopping")
    started = time.time()
    os.environ.update(task.env)
    t0 = time.perf_counter()
    done = JobDone(task.claim, task.context.name or "", "finished",
                   queue_seconds=max(0.0, started - task.queued))
    try:
        cfg = pickle.loads(task.cfg)
        result = run_job(cfg, multirun=True, context=task.context)
    except KeyboardInterrupt:
        _STOPPING = True
        done.kind = "killed"
        done.job_seconds = time.perf_counter() - t0
        return done
    except (ConfigError, DataError, Exception) as err:  # the run is FAILED already
        print(failed_line(done.name, err), file=sys.stderr, flush=True)
        done.kind, done.error = "failed", f"{type(err).__name__}: {err}".splitlines()[0]
        done.job_seconds = time.perf_counter() - t0
        return done
    done.job_seconds = time.perf_counter() - t0
    if result is None:
        done.kind = "skipped"
    else:
        done.outcome = str(result.outcome)
        done.train_seconds = float(result.summary.get("train_seconds", 0.0) or 0.0)
        done.eval_seconds = float(result.summary.get("eval_seconds", 0.0) or 0.0)
    return done


def _interrupt_workers(pool: cf.ProcessPoolExecutor) -> None:
    """SIGINT to every worker: a running job ends KILLED (a Ctrl-C at a terminal reaches
    them anyway; a SIGINT/SIGTERM sent to this process alone does not)."""
    for proc in list(getattr(pool, "_processes", {}).values()):
        try:
            os.kill(proc.pid, signal.SIGINT)
        except (OSError, AttributeError):
            pass


# -- the launching side ---------------------------------------------------------------------
@dataclass(frozen=True)
class SweepSpec:
    """One sweep for the pool: a name and the overrides of ``python -m fnnbench -m <args>``."""

    name: str
    args: tuple[str, ...]
    n_jobs: int  # the expected job count (preflight.expand); Hydra's expansion decides


def claim_spec(claim, quick: bool = False, extra: Sequence[str] = ()) -> SweepSpec:
    """The sweep of a :class:`fnnbench.claims.Claim` (a shipped claim file or one elsewhere,
    see fnnbench.paths.sweep_override), with its quick profile if asked."""
    from fnnbench.cli.preflight import expand, external_sweep_args
    from fnnbench.paths import sweep_override

    first = sweep_override(claim.path) if claim.path is not None else f"sweep={claim.id}"
    rest = [*(claim.quick if quick else []), *extra]
    args = external_sweep_args([first, *rest])
    return SweepSpec(claim.id, tuple(args),
                     expand([f"sweep={claim.id}", *rest], claim.sweep_params).n_jobs)


def plan_sweep(spec: SweepSpec, composer) -> _Plan:
    """Check the sweep's command line (preflight) and expand it into jobs, as Hydra's basic
    sweeper would (the same jobs in the same order)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    from fnnbench.cli.preflight import parse_overrides, preflight

    args = list(spec.args)
    preflight(["-m", *args], composer=composer)
    with composer.session():
        sweep_cfg = composer.compose(args, hydra=True, multirun=True)
    node = sweep_cfg.hydra.sweeper.get("params")
    params = OmegaConf.to_container(node) if node is not None else {}
    # Hydra's multirun hands its sweeper the task overrides only; the hydra ones stay on the
    # sweep's config and are re-applied to each job by the launcher (load_sweep_config)
    task = [str(o) for o in sweep_cfg.hydra.overrides.task]
    parsed = parse_overrides([f"{k}={v}" for k, v in params.items()] + task)
    max_batch = sweep_cfg.hydra.sweeper.get("max_batch_size")
    jobs = [list(job) for batch in BasicSweeper.split_arguments(parsed, max_batch)
            for job in batch]
    # hydra.* values (hydra.job.chdir, ...) touch only the hydra section, which a job config
    # does not have (preflight checked them); groups and the search path change the job
    hydra_args = [str(o) for o in sweep_cfg.hydra.overrides.hydra
                  if str(o).startswith(("hydra/", "hydra.searchpath="))]
    return _Plan(spec.name, sweep_cfg, jobs, hydra_args)


def _tasks(sweeps: Sequence[SweepSpec], composer, opened: dict, runs: dict,
           remaining: dict) -> Iterator[_Task | None]:
    """The jobs of every sweep in order. A sweep is checked and expanded (plan_sweep) when
    the workers reach it, while they still run the last jobs of the sweep before; its parent
    run opens before its first job is queued."""
    from fnnbench.tracking import run_name
    from fnnbench.tracking.sweep import SweepCallback

    for spec in sweeps:
        plan = plan_sweep(spec, composer)
        claim_id = plan.claim
        cb = SweepCallback()
        cb.quiet, cb.export_env = True, False
        run = runs[plan.claim]
        run.started = time.perf_counter()
        cb.start(plan.sweep_cfg)
        run.parent_run_id = cb.parent_run_id
        opened[plan.claim] = cb
        env = cb.job_env()
        keys = [k for k in env.get("FNNBENCH_SWEEP_KEYS", "").split(",") if k]
        sweep = plan.sweep_cfg.hydra.runtime.choices.get("sweep")
        searchpath = tuple(str(p) for p in (plan.sweep_cfg.hydra.searchpath or []))
        if len(plan.jobs) != run.n_jobs:  # expand() and Hydra's sweeper disagree: trust Hydra
            remaining[claim_id] += len(plan.jobs) - run.n_jobs
            run.n_jobs = len(plan.jobs)
        with composer.session():
            for job in plan.jobs:
                t0 = time.perf_counter()
                blob = pickle.dumps(composer.compose([*plan.hydra_args, *job], hydra=False))
                ctx = JobContext(tuple(job), run_name(job, keys), sweep, parallel=True,
                                 searchpath=searchpath)
                seconds = time.perf_counter() - t0
                run.compose_seconds += seconds
                yield _Task(plan.claim, blob, ctx, env, time.time(), seconds)
        if not plan.jobs:
            yield None  # lets the caller close a claim without jobs


def run_claims(claims: Sequence, *, workers: int, quick: bool = False,
               extra: Sequence[str] = (), **kwargs) -> list[ClaimRun]:
    """Run the sweeps of ``claims`` (:class:`fnnbench.claims.Claim`; with ``quick`` their quick
    profile; ``extra`` overrides for every claim) through one pool; see :func:`run_sweeps`."""
    return run_sweeps([claim_spec(c, quick, extra) for c in claims], workers=workers,
                      **kwargs)


def run_sweeps(sweeps: Sequence[SweepSpec], *, workers: int, log_path: str | None = None,
               on_job: Callable[[JobDone], None] | None = None,
               on_claim: Callable[[ClaimRun], None] | None = None) -> list[ClaimRun]:
    """Run ``sweeps`` through one pool of ``workers`` processes, in order. Calls ``on_job``
    per job and ``on_claim`` per sweep as they end. The first sweep's preflight runs before
    any job starts, the others' while the workers train. A sweep that fails its preflight
    (or cannot open its parent run) writes nothing and ends the run: no job is queued after
    it, the sweeps before it finish as they would (their jobs are not interrupted), then its
    error is raised."""
    from fnnbench.cli.compose import Composer

    composer = Composer()
    runs = {spec.name: ClaimRun(spec.name, spec.n_jobs) for spec in sweeps}
    remaining = {cid: run.n_jobs for cid, run in runs.items()}
    opened: dict = {}  # claim -> SweepCallback with an open parent run
    ctx = multiprocessing.get_context("spawn")
    pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                  initializer=_worker_init, initargs=(log_path,))
    pending: dict[cf.Future, _Task] = {}
    tasks = _tasks(list(sweeps), composer, opened, runs, remaining)
    deferred: list[Exception] = []  # a later sweep's error, raised once the others are done

    def close(claim: str, ended_early: str | None = None) -> None:
        cb = opened.pop(claim, None)
        run = runs[claim]
        run.ended = time.perf_counter()
        if cb is not None:
            try:
                run.summary = cb.finish(ended_early=ended_early)
            except Exception as exc:  # one line; the other claims go on
                first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
                run.error = f"could not close the parent run: {first}"
        if ended_early:
            run.error = run.error or f"the sweep ended early ({ended_early})"
        if on_claim is not None:
            on_claim(run)

    def fill() -> None:
        nonlocal tasks
        while len(pending) < 2 * workers:
            try:
                task = next(tasks)
            except StopIteration:
                break
            except Exception as exc:
                if not pending and not opened:
                    raise  # nothing is running: the error now
                deferred.append(exc)
                tasks = iter(())
                break
            if task is not None:
                pending[pool.submit(_run_task, task)] = task
            for claim in [c for c in list(opened) if remaining[c] == 0]:
                close(claim)
        for claim in [c for c in list(opened) if remaining[c] == 0]:
            close(claim)

    progress_since_restart = True
    try:
        fill()
        while pending:
            done, _ = cf.wait(list(pending), return_when=cf.FIRST_COMPLETED)
            broken = None
            for fut in done:
                task = pending.pop(fut)
                try:
                    job = fut.result()
                except cf.process.BrokenProcessPool as exc:
                    broken = exc
                    job = JobDone(task.claim, task.context.name or "", "killed",
                                  error="its worker process died")
                job.compose_seconds = task.compose_seconds
                progress_since_restart |= broken is None
                runs[task.claim].jobs.append(job)
                remaining[task.claim] -= 1
                if on_job is not None:
                    on_job(job)
            if broken is not None and not progress_since_restart:
                raise RuntimeError(f"the worker processes die before finishing a job "
                                   f"(see {log_path or 'their output'})")
            if broken is not None:
                progress_since_restart = False
                # every queued job of the open claims is lost with the pool: end those
                # claims (their parents count what ran), start a new pool for the rest
                for task in list(pending.values()):
                    runs[task.claim].jobs.append(JobDone(task.claim, task.context.name or "",
                                                         "killed", error="pool restarted"))
                    remaining[task.claim] -= 1
                pending.clear()
                for claim in list(opened):
                    close(claim, ended_early="a worker process died")
                    remaining[claim] = -1
                tasks = _skip_claims(tasks, set(runs) - {c for c, n in remaining.items()
                                                         if n > 0})
                pool.shutdown(wait=False, cancel_futures=True)
                pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                              initializer=_worker_init, initargs=(log_path,))
            fill()
    except BaseException as exc:
        _interrupt_workers(pool)
        pool.shutdown(wait=True, cancel_futures=True)
        reason = "KeyboardInterrupt" if isinstance(exc, KeyboardInterrupt) else type(
            exc).__name__
        for claim in list(opened):
            close(claim, ended_early=reason)
        raise
    pool.shutdown(wait=True)
    for claim in list(opened):
        close(claim)
    if deferred:
        raise deferred[0]
    return list(runs.values())


def _skip_claims(tasks: Iterator[_Task | None], ended: set[str]) -> Iterator[_Task | None]:
    for task in tasks:
        if task is None or task.claim not in ended:
            yield task


def default_log_path() -> str:
    """Where the workers' output goes: a file in the system's temporary folder."""
    import tempfile

    return str(Path(tempfile.gettempdir()) / f"fnnbench-reproduce-{os.getpid()}.log")
