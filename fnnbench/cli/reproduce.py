"""Reproduce the lecture's claims with one command: every claim sweep, then the report.

    python -m fnnbench.reproduce                 # every claim in sweeps/, full profile
    python -m fnnbench.reproduce --quick         # fewer seeds, a smaller grid, same code paths
    python -m fnnbench.reproduce relu_faster xor_single_neuron --jobs 2
    python -m fnnbench.reproduce --sweeps-dir my_claims/        # claim files of your own
    python -m fnnbench.reproduce path/to/momentum_faster.yaml --quick

Every claim sweep runs through one pool of ``--jobs`` warm worker processes (default: the
machine's cores; :mod:`fnnbench.cli.pool`): each job's config composed once by Hydra, one
parent run per claim, the same MLflow records as ``python -m fnnbench sweep=<id>`` — which
``--per-sweep-process`` runs instead, one process with Hydra's joblib launcher per claim (the
old way, kept for comparison). Against the embedded MLflow store ``./mlflow.db`` unless
``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` says otherwise. Finished jobs are skipped
(tracking.skip_finished), so an interrupted reproduction is finished by running the same
command again. One line per claim, a progress bar over all jobs with an ETA, the wall time and
the compute-limit ratio (training clock / workers / wall time) at the end; then
``python -m fnnbench.report`` writes the markdown pages.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from fnnbench.claims import load_claims
from fnnbench.cli.preflight import sweep_size
from fnnbench.paths import SWEEPS_DIR, default_reports_dir, sweep_override
from fnnbench.tracking.names import (
    ENV_MLFLOW_URI,
    parse_job_line,
    parse_sweep_line,
    tracking_uri,
)


def run_sweep(claim, *, quick: bool, jobs: int, env: dict, extra: list[str]) -> dict:
    """Run one claim sweep in a subprocess; return counts and wall time."""
    from tqdm import tqdm

    overrides = [sweep_override(claim.path) if claim.path else f"sweep={claim.id}",
                 *(claim.quick if quick else []), *extra]
    if jobs > 1:
        overrides += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"]
    total = sweep_size([o for o in overrides if not o.startswith("hydra")])
    cmd = [sys.executable, "-m", "fnnbench", *overrides]
    t0 = time.perf_counter()
    counts = {"jobs": total, "done": 0, "skipped": 0, "failed": 0, "diverged": 0}
    tail: list[str] = []
    final = None
    show_bar = sys.stderr.isatty()
    with tqdm(total=total, desc=claim.id, unit="job", disable=not show_bar, leave=False) as bar:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            tail = (tail + [line])[-20:]
            summary = parse_sweep_line(line)
            if summary is not None:  # the sweep's own count from MLflow: it decides
                final = summary
                continue
            job = parse_job_line(line)
            if job is None:
                continue
            counts["done"] += 1
            if job.kind in ("skipped", "failed"):
                counts[job.kind] += 1
            elif job.diverged:
                counts["diverged"] += 1
            bar.update(1)
        rc = proc.wait()
    if final is not None:
        # Job lines are for the progress bar only: parallel workers share one pipe, and a
        # worker's line can reach it split around another process's write (seen: 7/8 jobs).
        counts.update(done=final.n_jobs, skipped=final.n_skipped,
                      failed=final.n_failed + final.n_killed, diverged=final.n_diverged)
    counts["seconds"] = time.perf_counter() - t0
    counts["returncode"] = rc
    counts["tail"] = tail
    return counts


def _claim_line(claim_id: str, n_jobs: int, done: int, skipped: int, failed: int,
                diverged: int, seconds: float, status: str) -> str:
    return (f"  {claim_id:<24} {done:>4}/{n_jobs} jobs  skipped {skipped:>4}  "
            f"failed {failed:>3}  diverged {diverged:>3}  {seconds:7.1f} s  {status}")


def run_pooled(claims, *, quick: bool, jobs: int, extra: list[str]) -> tuple[list[str], dict]:
    """Every claim through one pool (fnnbench.cli.pool); returns the failed claims and the
    harness figures (jobs, training clock, compose time, per-job overhead)."""
    import statistics

    from tqdm import tqdm

    from fnnbench.cli.pool import default_log_path, run_claims
    from fnnbench.cli.preflight import expand

    log_path = default_log_path()
    failed: list[str] = []
    total = sum(expand([f"sweep={c.id}", *(c.quick if quick else []), *extra],
                       c.sweep_params).n_jobs for c in claims)
    bar = tqdm(total=total, unit="job", disable=not sys.stderr.isatty(), leave=False,
               desc="reproduce")

    def on_job(job) -> None:
        bar.update(1)

    def on_claim(run) -> None:
        s = run.summary
        if s is None:
            counts = dict(done=len(run.jobs), skipped=0, diverged=0,
                          failed=sum(j.kind in ("failed", "killed") for j in run.jobs))
        else:
            counts = dict(done=s.n_jobs, skipped=s.n_skipped, diverged=s.n_diverged,
                          failed=s.n_failed + s.n_killed)
        bad = run.error or counts["failed"]
        status = "ok" if not bad else (run.error or f"{counts['failed']} job(s) failed")
        if bad:
            failed.append(run.claim)
        bar.write(_claim_line(run.claim, run.n_jobs, seconds=run.seconds, status=status,
                              **counts))
        for j in run.jobs:
            if j.kind == "failed":
                bar.write(f"    {j.name}: {j.error}", file=sys.stderr)

    try:
        runs = run_claims(claims, workers=jobs, quick=quick, extra=extra, log_path=log_path,
                          on_job=on_job, on_claim=on_claim)
    finally:  # a ConfigError or an interrupt: the caller says it in one line
        bar.close()
    done = [j for r in runs for j in r.jobs]
    trained = [j for j in done if j.kind == "finished"]
    overheads = [j.job_seconds - j.train_seconds - j.eval_seconds + j.compose_seconds
                 for j in trained]
    figures = {
        "jobs": len(done), "trained": len(trained),
        "train_seconds": sum(j.train_seconds for j in trained),
        "eval_seconds": sum(j.eval_seconds for j in trained),
        "compose_seconds": sum(j.compose_seconds for j in done),
        "median_overhead": statistics.median(overheads) if overheads else float("nan"),
        "log": log_path,
    }
    return failed, figures


def _load(names: list[str], sweeps_dir: str) -> list:
    """Claims by id (in ``sweeps_dir``) or by file path, in the order given; every claim of
    ``sweeps_dir`` when none is named. ValueError (one line) for a bad name or file."""
    from fnnbench.claims import load_claim

    if not names:
        return load_claims(sweeps_dir)
    out = []
    for name in names:
        if name.endswith((".yaml", ".yml")) or "/" in name:
            path = Path(name).expanduser()
            if not path.is_file():
                raise ValueError(f"{name}: no such claim file")
            out.append(load_claim(path))
        else:
            out.extend(load_claims(sweeps_dir, ids=[name]))
    ids = [c.id for c in out]
    if len(set(ids)) != len(ids):
        raise ValueError(f"claim {next(i for i in ids if ids.count(i) > 1)!r} named twice")
    return out


def _recover(uri: str) -> None:
    """Before the sweeps: runs an earlier, killed reproduction left RUNNING are ended
    (fnnbench.tracking.reaper); never stops the reproduction (one line on error)."""
    from fnnbench.tracking.reaper import recover_store

    try:
        line = recover_store(uri)
    except Exception as exc:
        first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        print(f"fnnbench.reproduce: could not check {uri} for runs left RUNNING: {first}",
              file=sys.stderr, flush=True)
        return
    if line:
        print(line, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m fnnbench.reproduce", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("claims", nargs="*",
                    help="claim ids of --sweeps-dir, or paths to claim files <id>.yaml "
                         "(default: every claim file in --sweeps-dir)")
    ap.add_argument("--sweeps-dir", default=str(SWEEPS_DIR),
                    help="folder of claim files (default: the shipped fnnbench/sweeps/)")
    ap.add_argument("--quick", action="store_true",
                    help="the quick profile: each claim's `quick` overrides (fewer seeds, a "
                         "smaller grid); what CI runs")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="parallel worker processes (default: cores)")
    ap.add_argument("--per-sweep-process", action="store_true",
                    help="run each claim as `python -m fnnbench sweep=<id>` in its own process "
                         "with Hydra's joblib launcher (the old way; same records, slower)")
    ap.add_argument("--tracking-uri", default=None,
                    help="MLflow store (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    ap.add_argument("--out", default=str(default_reports_dir()),
                    help="report folder (default: the checkout's reports/, else ./reports)")
    ap.add_argument("--no-report", action="store_true", help="run the sweeps only")
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                    help="an extra Hydra override for every sweep (repeatable)")
    args = ap.parse_args(argv)

    try:
        claims = _load(args.claims, args.sweeps_dir)
    except ValueError as err:
        print(f"fnnbench.reproduce: error: {err}", file=sys.stderr)
        return 2
    if args.jobs < 1:
        print(f"fnnbench.reproduce: error: --jobs={args.jobs}: must be at least 1",
              file=sys.stderr)
        return 2
    if args.jobs > 1:
        # N worker processes on N cores: one BLAS thread each, or the threads oversubscribe the
        # cores (measured: the same job varied 1.2-7.8 s under load with 2 threads per worker).
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")
    if args.tracking_uri:
        os.environ[ENV_MLFLOW_URI] = args.tracking_uri
    env = dict(os.environ)
    uri = env.get(ENV_MLFLOW_URI) or tracking_uri()
    _recover(uri)
    profile = "quick" if args.quick else "full"
    print(f"fnnbench.reproduce: {len(claims)} claims, {profile} profile, {args.jobs} workers, "
          f"store {uri}", flush=True)
    t0 = time.perf_counter()
    failed_sweeps: list[str] = []
    figures = None
    if not args.per_sweep_process:
        from fnnbench.job import ConfigError
        from fnnbench.job.signals import install_signal_handlers

        install_signal_handlers()  # SIGTERM as Ctrl-C: every open parent run is closed
        try:
            failed_sweeps, figures = run_pooled(claims, quick=args.quick, jobs=args.jobs,
                                                extra=args.override)
        except ConfigError as err:
            print(f"fnnbench.reproduce: error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("fnnbench.reproduce: interrupted; runs so far are marked KILLED and keep "
                  "their metrics; run the same command again to finish", file=sys.stderr)
            return 130
    for claim in claims if args.per_sweep_process else []:
        c = run_sweep(claim, quick=args.quick, jobs=args.jobs, env=env, extra=args.override)
        status = "ok" if c["returncode"] == 0 else f"exit {c['returncode']}"
        print(f"  {claim.id:<24} {c['done']:>4}/{c['jobs']} jobs  skipped {c['skipped']:>4}  "
              f"failed {c['failed']:>3}  diverged {c['diverged']:>3}  {c['seconds']:7.1f} s  "
              f"{status}", flush=True)
        if c["returncode"] != 0:
            failed_sweeps.append(claim.id)
            print("    " + "\n    ".join(c["tail"][-8:]), file=sys.stderr)
    wall = time.perf_counter() - t0
    print(f"fnnbench.reproduce: sweeps done in {wall:.1f} s ({wall / 60:.1f} min)", flush=True)
    if figures is not None:
        capacity = args.jobs * wall
        train, ev = figures["train_seconds"], figures["eval_seconds"]
        print(f"fnnbench.reproduce: {figures['trained']} jobs trained; training clock "
              f"{train:.1f} s = {train / capacity:.0%} of the compute limit ({args.jobs} "
              f"workers x {wall:.1f} s), with evaluation {train + ev:.1f} s = "
              f"{(train + ev) / capacity:.0%}; median harness overhead per job "
              f"{figures['median_overhead'] * 1000:.0f} ms; worker output: {figures['log']}",
              flush=True)
    if not args.no_report:
        cmd = [sys.executable, "-m", "fnnbench.report", "--tracking-uri", uri, "--out", args.out]
        dirs = {str(Path(c.path).parent) for c in claims if c.path is not None}
        if len(dirs) == 1 and dirs != {str(Path(SWEEPS_DIR))}:
            cmd += ["--sweeps-dir", dirs.pop()]
        if args.claims:
            cmd += ["--claims", *[c.id for c in claims]]
        rc = subprocess.call(cmd, env=env)
        if rc != 0:
            print(f"fnnbench.reproduce: the report failed (exit {rc})", file=sys.stderr)
            return rc
    print(f"fnnbench.reproduce: total {time.perf_counter() - t0:.1f} s", flush=True)
    return 1 if failed_sweeps else 0


if __name__ == "__main__":
    sys.exit(main())
