"""Harness speed: where a job's time goes besides its arithmetic, and how close a reproduction
runs to its compute limit. Before (Hydra's launchers, one process per claim sweep) and after
(one pool of warm workers, configs composed once), side by side in one run.

    python -m benchmarks.harness [--jobs 40] [--store-runs 10000] [--repeats 5]
                                 [--reproduce quick|full|none] [--out FILE]

Sections (each with the machine's load average at its start and end):

1. **Composition** of the job configs of a claim sweep (relu_faster, full profile): what
   Hydra's path pays per job (three compositions: preflight, the basic sweeper's batch
   validation, the launcher's ``load_sweep_config``) against :class:`fnnbench.cli.compose.Composer`
   (one composition per distinct set of config-group choices, then ~1 ms per job).
2. **Per-job breakdown** in one process, as a pool worker runs jobs: ``--jobs`` default jobs
   (digits, one epoch) tracked to a fresh sqlite store under a sweep's parent run
   (skip-finished on), each part timed by wrapping the function that does it: building the
   data, the rest of the build, the skip-finished lookup, creating the run, logging params,
   metric flushes, closing the run, artifacts, evaluation, training, and what is left.
3. **Tracking overhead** of the default job (digits, 30 epochs): tracked / untracked wall
   time, alternating in one process (``benchmarks.tracking_overhead``).
4. **Per-job overhead through two workers**: ``--jobs`` default one-epoch jobs as one sweep,
   (a) through the pool (:func:`fnnbench.cli.pool.run_sweeps`), once on an empty store and
   once on a store already holding ``--store-runs`` FINISHED runs in the same experiment;
   (b) through ``python -m fnnbench -m ... hydra/launcher=joblib hydra.launcher.n_jobs=2``.
   Per job: the median of (job wall time in its worker - its training clock), and the
   amortised figure (wall time x workers - sum of training clocks) / jobs, which also
   carries start-up, composition and the launcher's bookkeeping.
5. **Reproduction** (``--reproduce quick``, or ``full``): ``python -m fnnbench.reproduce
   --no-report`` with the pool and with ``--per-sweep-process`` (the old way), each on a fresh
   store: wall time and the compute-limit ratio (sum of training clocks / workers / wall).

Run from a checkout. The machine is shared and noisy: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def _ms(x: float) -> str:
    return f"{x * 1000:.1f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


@contextlib.contextmanager
def env(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- 1. composition ---------------------------------------------------------------------------
def composition(n: int) -> list[str]:
    from hydra import compose

    from fnnbench.claims import load_claim
    from fnnbench.cli.compose import Composer
    from fnnbench.cli.pool import claim_spec, plan_sweep
    from fnnbench.paths import SWEEPS_DIR

    claim = load_claim(Path(SWEEPS_DIR) / "relu_faster.yaml")
    composer = Composer()
    plan = plan_sweep(claim_spec(claim), composer)
    jobs = plan.jobs[:n]
    with Composer.session():
        t0 = time.perf_counter()
        for job in jobs:
            compose("config", overrides=job, return_hydra_config=True)
        hydra_one = (time.perf_counter() - t0) / len(jobs)
        fresh = Composer()
        t0 = time.perf_counter()
        for job in jobs:
            fresh.compose(job, hydra=False)
        cached = (time.perf_counter() - t0) / len(jobs)
    lines = [f"Jobs: the first {len(jobs)} of relu_faster's full sweep ({len(plan.jobs)} jobs); "
             f"{fresh.compositions} distinct sets of group choices among them.", ""]
    lines += _table(["path", "ms per job", "compositions per job"], [
        ["Hydra (preflight + sweeper validation + launcher)", _ms(3 * hydra_one), "3"],
        ["one Hydra composition", _ms(hydra_one), "1"],
        ["Composer (cached by group choices)", _ms(cached),
         f"{fresh.compositions / len(jobs):.2f}"],
    ])
    return lines


# -- 2. per-job breakdown ---------------------------------------------------------------------
PARTS = ("compose", "data", "build (rest)", "skip lookup", "create run (+ params)", "params",
         "flushes", "close run (+ last metrics)", "artifacts", "evaluation", "training", "other")
# the two ways a job's run is written: fastsql (the default) and MLflow's own calls
TRACKING_PATHS = (("fastsql", []), ("MLflow's calls", ["tracking.fast_metrics=false"]))


def _timed(times: dict, part: str, fn: Callable) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            times[part] += time.perf_counter() - t0
    return wrapper


def breakdown(n: int, store: Path) -> tuple[list[str], dict[str, float]]:
    """Median seconds per part over n default one-epoch jobs, in this process, written with
    fastsql and with MLflow's own calls (alternating)."""
    meds = {}
    for label, extra in TRACKING_PATHS:
        meds[label] = _breakdown(n, store.with_name(f"{store.stem}-{len(meds)}.db"), extra)
    rows = [[p, *(_ms(m[p]) for m in meds.values())] for p in PARTS]
    rows.append(["**job wall time**", *(_ms(m["wall"]) for m in meds.values())])
    rows.append(["**harness (wall - training - evaluation)**",
                 *(_ms(m["harness"]) for m in meds.values())])
    lines = [f"{n} default jobs (digits, MLP 64, ReLU, one epoch), tracked (sqlite, "
             "skip-finished on, under a parent run), in one process; median ms per job. "
             "fastsql is the default; `tracking.fast_metrics=false` writes with MLflow's own "
             "calls (the way before).", ""]
    lines += _table(["part", *meds], rows)
    return lines, meds["fastsql"]


def _breakdown(n: int, store: Path, extra: Sequence[str]) -> dict[str, float]:
    import importlib

    import mlflow

    from fnnbench.cli.compose import Composer
    from fnnbench.tracking import fastsql

    build_mod = importlib.import_module("fnnbench.job.build")
    run_mod = importlib.import_module("fnnbench.job.run")
    from fnnbench.job.run import JobContext, run_job
    trun = importlib.import_module("fnnbench.tracking.run")
    from fnnbench.tracking.sweep import SweepCallback

    composer = Composer()
    uri = f"sqlite:///{store}"
    with env(MLFLOW_TRACKING_URI=uri), Composer.session():
        sweep_cfg = composer.compose(["seed=range(0,1000)", "train.epochs=1"], multirun=True)
        cb = SweepCallback()
        cb.quiet, cb.export_env = True, False
        cb.start(sweep_cfg)
        per_job: list[dict[str, float]] = []
        times: dict[str, float] = defaultdict(float)
        patches = [
            (build_mod, "load_dataset", "data"),
            (run_mod, "build", "build (rest)"),
            (trun, "_skip_lookup", "skip lookup"),
            (mlflow.MlflowClient, "create_run", "create run (+ params)"),
            (fastsql.SqliteWriter, "create_run", "create run (+ params)"),
            (trun.JobRun, "flush", "flushes"),
            (trun.JobRun, "_end", "close run (+ last metrics)"),
            (trun.JobRun, "_log_artifacts", "artifacts"),
        ]
        saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
        for obj, name, part in patches:
            setattr(obj, name, _timed(times, part, getattr(obj, name)))
        real_write = trun.JobRun._write_fast
        real_params = trun._log_params

        def write_fast(self, metrics=(), **rest):  # params are the only write outside a phase
            if "params" in rest:
                return _timed(times, "params", real_write)(self, metrics, **rest)
            return real_write(self, metrics, **rest)

        trun.JobRun._write_fast = write_fast
        trun._log_params = _timed(times, "params", real_params)
        try:
            with env(**cb.job_env()):
                for i in range(n + 1):  # the first job pays the one-off costs: not counted
                    times.clear()
                    t0 = time.perf_counter()
                    job = [f"seed={i}", "train.epochs=1"]
                    cfg = composer.compose([*job, *extra], hydra=False)
                    times["compose"] = time.perf_counter() - t0
                    ctx = JobContext(tuple(job), f"seed={i}", None, parallel=True)
                    with contextlib.redirect_stdout(open(os.devnull, "w")):  # noqa: SIM115
                        result = run_job(cfg, multirun=True, context=ctx)
                    wall = time.perf_counter() - t0
                    times["evaluation"] = result.summary["eval_seconds"]
                    times["training"] = result.summary["train_seconds"]
                    times["build (rest)"] -= times["data"]
                    times["other"] = wall - sum(times[p] for p in PARTS if p != "other")
                    if i:
                        per_job.append({**times, "wall": wall})
        finally:
            for obj, name, fn in saved:
                setattr(obj, name, fn)
            trun.JobRun._write_fast = real_write
            trun._log_params = real_params
            cb.finish()
    med = {p: statistics.median(j.get(p, 0.0) for j in per_job) for p in (*PARTS, "wall")}
    med["harness"] = statistics.median(
        j["wall"] - j["training"] - j["evaluation"] for j in per_job)
    return med


# -- 3. tracking overhead ---------------------------------------------------------------------
def tracking_ratio(repeats: int) -> list[str]:
    from benchmarks.tracking_overhead import measure_overhead

    rows = []
    for label, extra in TRACKING_PATHS:
        with tempfile.TemporaryDirectory(prefix="fnnbench-bench-") as tmp:
            o = measure_overhead(extra, repeats=repeats, store_dir=tmp)
        rows.append([label, f"{o.on:.3f}", f"{o.off:.3f}", f"{o.ratio:.3f}",
                     f"**{o.ratio_paired:.3f}**", f"{o.ratio_best:.3f}",
                     f"{(o.on - o.off) * 1e3:.1f}"])
    return [f"Default job (digits, 30 epochs, the model logged), in one process, tracked and "
            f"untracked alternating, median of {repeats} (goal: ratio <= 1.05).", "",
            *_table(["writes", "tracked s", "untracked s", "ratio of medians",
                     "median paired ratio", "fastest-run ratio", "tracked - untracked (ms)"],
                    rows),
            "", "Paired ratio: each tracked job over the untracked one run just before it (the "
            "machine's speed drifts less between two neighbours than over the whole run)."]


# -- 4. per-job overhead through two workers -------------------------------------------------------
def fill_store(db: Path, n: int) -> None:
    """Clone the FINISHED child runs already in the store until it holds n more (each with
    its own run id and config hash, so none is a skip-finished match)."""
    con = sqlite3.connect(db)
    try:
        templates = [r[0] for r in con.execute(
            "SELECT run_uuid FROM runs WHERE status='FINISHED' AND run_uuid IN "
            "(SELECT run_uuid FROM tags WHERE key='mlflow.parentRunId')")]
        tables = [t for t in ("runs", "tags", "params", "metrics", "latest_metrics")]
        rows = {t: {u: con.execute(f"SELECT * FROM {t} WHERE run_uuid=?", (u,)).fetchall()
                    for u in templates} for t in tables}
        cols = {t: [c[1] for c in con.execute(f"PRAGMA table_info({t})")] for t in tables}
        for i in range(n):
            src = templates[i % len(templates)]
            new = uuid.uuid4().hex
            for t in tables:
                ci = cols[t].index("run_uuid")
                out = []
                for r in rows[t][src]:
                    r = list(r)
                    r[ci] = new
                    if t == "tags" and r[cols[t].index("key")] == "fnnbench.config_hash":
                        r[cols[t].index("value")] = uuid.uuid4().hex + uuid.uuid4().hex
                    if t == "runs" and "artifact_uri" in cols[t]:
                        r[cols[t].index("artifact_uri")] = str(r[cols[t].index(
                            "artifact_uri")]).replace(src, new)
                    out.append(r)
                if out:
                    marks = ",".join("?" * len(cols[t]))
                    con.executemany(f"INSERT INTO {t} VALUES ({marks})", out)
            if i % 1000 == 999:
                con.commit()
        con.commit()
    finally:
        con.close()


def pool_sweep(n: int, store: Path, first_seed: int = 0) -> dict[str, float]:
    from fnnbench.cli.pool import SweepSpec, run_sweeps

    spec = SweepSpec("bench", (f"seed=range({first_seed},{first_seed + n})",
                               "train.epochs=1"), n)
    with env(MLFLOW_TRACKING_URI=f"sqlite:///{store}", OPENBLAS_NUM_THREADS="1",
             OMP_NUM_THREADS="1", MKL_NUM_THREADS="1"):
        t0 = time.perf_counter()
        (run,) = run_sweeps([spec], workers=2, log_path=str(store) + ".log")
        wall = time.perf_counter() - t0
    jobs = [j for j in run.jobs if j.kind == "finished"]
    train = sum(j.train_seconds for j in jobs)
    return {
        "jobs": len(jobs), "wall": wall,
        "median": statistics.median(j.job_seconds - j.train_seconds for j in jobs),
        "harness": statistics.median(j.job_seconds - j.train_seconds - j.eval_seconds
                                     for j in jobs),
        "amortised": (wall * 2 - train) / max(len(jobs), 1),
    }


def hydra_sweep(n: int, store: Path) -> dict[str, float]:
    cmd = [sys.executable, "-m", "fnnbench", "-m", f"seed=range(0,{n})", "train.epochs=1",
           "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    e = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{store}", OPENBLAS_NUM_THREADS="1",
             OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=store.parent, env=e, capture_output=True, text=True,
                         timeout=3600)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise RuntimeError(out.stderr.strip().splitlines()[-1])
    train = [float(m) for m in re.findall(r"train_seconds=([0-9.]+)", out.stdout)]
    return {"jobs": len(train), "wall": wall,
            "amortised": (wall * 2 - sum(train)) / max(len(train), 1)}


def workers_section(n: int, store_runs: int) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="fnnbench-bench-") as tmp:
        empty = pool_sweep(n, Path(tmp) / "empty.db")
        big_db = Path(tmp) / "big.db"
        pool_sweep(n, big_db, first_seed=10_000)  # templates, then the clones
        t0 = time.perf_counter()
        fill_store(big_db, store_runs)
        fill = time.perf_counter() - t0
        big = pool_sweep(n, big_db)
        lookup = lookup_times(big_db)
        old = hydra_sweep(n, Path(tmp) / "hydra.db")
    rows = [
        ["pool, empty store", f"{empty['wall']:.1f}", _ms(empty["median"]),
         _ms(empty["harness"]), _ms(empty["amortised"])],
        [f"pool, {store_runs + n:,} runs in the store", f"{big['wall']:.1f}",
         _ms(big["median"]), _ms(big["harness"]), _ms(big["amortised"])],
        ["Hydra joblib launcher (2 workers)", f"{old['wall']:.1f}", "", "",
         _ms(old["amortised"])],
    ]
    lines = [f"A sweep of {n} default one-epoch jobs (digits), tracked to sqlite, two workers. "
             f"Store filled with {store_runs:,} cloned FINISHED runs in {fill:.1f} s.", ""]
    lines += _table(["path", "wall s", "median job - training (ms)",
                     "median harness: job - training - evaluation (ms)",
                     "amortised (wall x 2 - training) / jobs (ms)"], rows)
    ratio = big["harness"] / empty["harness"] if empty["harness"] > 0 else float("nan")
    lines += ["", f"Store size: harness per job with {store_runs:,} runs / empty store = "
              f"**{ratio:.2f}** (goal <= 1.2). Goal for the median harness: <= 50 ms.", "",
              "The skip-finished lookup on the big store (median of 30, ms):", ""]
    lines += _table(["lookup", "with the (key, value) index on tags", "without it"],
                    [["fastsql (one query)", _ms(lookup["fast indexed"]), _ms(lookup["fast scan"])],
                     ["MLflow's search_runs", _ms(lookup["indexed"]), _ms(lookup["scan"])]])
    return lines


def lookup_times(db: Path, repeats: int = 30) -> dict[str, float]:
    """The skip-finished lookup (a hash no run has) with and without the tag-value index,
    by fastsql's query and by MLflow's search_runs."""
    from mlflow import MlflowClient

    from fnnbench.tracking import fastsql
    from fnnbench.tracking import run as trun
    from fnnbench.tracking.store import TAG_VALUE_INDEX

    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("fnnbench").experiment_id
    fast = fastsql.writer(client)

    def median(writer) -> float:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            trun._skip_lookup(client, exp, uuid.uuid4().hex, writer)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    out = {"fast indexed": median(fast), "indexed": median(None)}
    con = sqlite3.connect(db)
    con.execute(f"DROP INDEX IF EXISTS {TAG_VALUE_INDEX}")
    con.commit()
    out.update({"fast scan": median(fast), "scan": median(None)})
    con.execute(f"CREATE INDEX IF NOT EXISTS {TAG_VALUE_INDEX} ON tags (key, value)")
    con.commit()
    con.close()
    return out


# -- 5. reproduction --------------------------------------------------------------------------
def reproduction(profile: str) -> list[str]:
    rows = []
    for label, flag in (("pool (default)", []), ("one process per sweep (old)",
                                                  ["--per-sweep-process"])):
        with tempfile.TemporaryDirectory(prefix="fnnbench-bench-") as tmp:
            cmd = [sys.executable, "-m", "fnnbench.reproduce", "--no-report", *flag]
            if profile == "quick":
                cmd.append("--quick")
            e = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{tmp}/mlflow.db",
                     PYTHONPATH=str(ROOT))
            start = load()
            t0 = time.perf_counter()
            out = subprocess.run(cmd, cwd=tmp, env=e, capture_output=True, text=True,
                                 timeout=4 * 3600)
            wall = time.perf_counter() - t0
            ratio = re.search(r"training clock ([0-9.]+) s = (\d+)%.*with evaluation "
                              r"([0-9.]+) s = (\d+)%", out.stdout)
            train = sum(float(x) for x in re.findall(r"train_seconds=([0-9.]+)",
                                                     out.stdout))
            if ratio:
                limit = f"{ratio.group(2)}% ({ratio.group(4)}% with evaluation)"
            elif train:
                limit = f"{train / 2 / wall:.0%} (from the jobs' lines)"
            else:
                limit = "n/a (the old path prints no training clock)"
            rows.append([label, f"{wall:.1f}", limit, f"{start} -> {load()}",
                         "ok" if out.returncode == 0 else f"exit {out.returncode}"])
    lines = [f"`python -m fnnbench.reproduce --no-report{' --quick' if profile == 'quick' else ''}`"
             " on a fresh store, two workers.", ""]
    lines += _table(["path", "wall s", "training clock / (2 x wall)", "load average",
                     "status"], rows)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.harness", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=40, help="jobs per measured sweep (40)")
    ap.add_argument("--store-runs", type=int, default=10_000,
                    help="FINISHED runs in the big store (10000)")
    ap.add_argument("--repeats", type=int, default=5, help="tracking on/off repeats (5)")
    ap.add_argument("--reproduce", choices=("quick", "full", "none"), default="quick")
    ap.add_argument("--out", default=None, help="also write the markdown here")
    args = ap.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    t_start = time.perf_counter()
    out = ["# fnnbench harness benchmark", "",
           f"`python -m benchmarks.harness {' '.join(argv or sys.argv[1:])}`, "
           f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores.",
           ""]
    sections: list[tuple[str, Callable[[], list[str]]]] = [
        ("1. Composition", lambda: composition(args.jobs)),
    ]
    with tempfile.TemporaryDirectory(prefix="fnnbench-bench-") as tmp:
        sections.append(("2. Per-job breakdown (one worker)",
                         lambda: breakdown(args.jobs, Path(tmp) / "breakdown.db")[0]))
        sections.append(("3. Tracking overhead", lambda: tracking_ratio(args.repeats)))
        sections.append(("4. Per-job overhead through two workers",
                         lambda: workers_section(args.jobs, args.store_runs)))
        if args.reproduce != "none":
            sections.append((f"5. Reproduction ({args.reproduce} profile)",
                             lambda: reproduction(args.reproduce)))
        for title, fn in sections:
            start = load()
            print(f"[{title}] ...", file=sys.stderr, flush=True)
            body = fn()
            out += [f"## {title}", "", f"Load average {start} at the start, {load()} at the "
                    "end.", "", *body, ""]
    out.append(f"Total {time.perf_counter() - t_start:.0f} s.")
    text = "\n".join(out) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
