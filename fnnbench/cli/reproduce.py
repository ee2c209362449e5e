"""Reproduce the lecture's claims with one command: every claim sweep, then the report.

    python -m fnnbench.reproduce                 # every claim in sweeps/, full profile
    python -m fnnbench.reproduce --quick         # fewer seeds, a smaller grid, same code paths
    python -m fnnbench.reproduce relu_faster xor_single_neuron --jobs 2

Each claim sweep runs as ``python -m fnnbench sweep=<id>`` in its own process with Hydra's
joblib launcher over ``--jobs`` workers (default: the machine's cores), against the embedded
MLflow store ``./mlflow.db`` unless ``--tracking-uri`` or ``MLFLOW_TRACKING_URI`` says
otherwise. Finished jobs are skipped (tracking.skip_finished), so an interrupted reproduction
is finished by running the same command again. One line per sweep, a progress bar over its
jobs, the wall time at the end; then ``python -m fnnbench.report`` writes the markdown pages.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from fnnbench.claims import load_claims
from fnnbench.cli.preflight import sweep_size
from fnnbench.paths import SWEEPS_DIR, default_reports_dir
from fnnbench.tracking.names import (
    ENV_MLFLOW_URI,
    parse_job_line,
    parse_sweep_line,
    tracking_uri,
)


def run_sweep(claim, *, quick: bool, jobs: int, env: dict, extra: list[str]) -> dict:
    """Run one claim sweep in a subprocess; return counts and wall time."""
    from tqdm import tqdm

    overrides = [f"sweep={claim.id}", *(claim.quick if quick else []), *extra]
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
    ap.add_argument("claims", nargs="*", help="claim ids (default: every file in sweeps/)")
    ap.add_argument("--quick", action="store_true",
                    help="the quick profile: each claim's `quick` overrides (fewer seeds, a "
                         "smaller grid); what CI runs")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="parallel worker processes per sweep (default: cores)")
    ap.add_argument("--tracking-uri", default=None,
                    help="MLflow store (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    ap.add_argument("--out", default=str(default_reports_dir()),
                    help="report folder (default: the checkout's reports/, else ./reports)")
    ap.add_argument("--no-report", action="store_true", help="run the sweeps only")
    ap.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                    help="an extra Hydra override for every sweep (repeatable)")
    args = ap.parse_args(argv)

    try:
        claims = load_claims(SWEEPS_DIR, ids=args.claims or None)
    except ValueError as err:
        print(f"fnnbench.reproduce: error: {err}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    if args.jobs > 1:
        # N worker processes on N cores: one BLAS thread each, or the threads oversubscribe the
        # cores (measured: the same job varied 1.2-7.8 s under load with 2 threads per worker).
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")
    if args.tracking_uri:
        env[ENV_MLFLOW_URI] = args.tracking_uri
    uri = env.get(ENV_MLFLOW_URI) or tracking_uri()
    _recover(uri)
    profile = "quick" if args.quick else "full"
    print(f"fnnbench.reproduce: {len(claims)} claims, {profile} profile, {args.jobs} workers, "
          f"store {uri}", flush=True)
    t0 = time.perf_counter()
    failed_sweeps = []
    for claim in claims:
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
    if not args.no_report:
        cmd = [sys.executable, "-m", "fnnbench.report", "--tracking-uri", uri, "--out", args.out]
        if args.claims:
            cmd += ["--claims", *args.claims]
        rc = subprocess.call(cmd, env=env)
        if rc != 0:
            print(f"fnnbench.reproduce: the report failed (exit {rc})", file=sys.stderr)
            return rc
    print(f"fnnbench.reproduce: total {time.perf_counter() - t0:.1f} s", flush=True)
    return 1 if failed_sweeps else 0


if __name__ == "__main__":
    sys.exit(main())
