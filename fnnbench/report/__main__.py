"""``python -m fnnbench.report``: MLflow runs -> reports/ (markdown + PNG). Never trains.

    python -m fnnbench.report [--tracking-uri URI] [--experiment NAME ...] [--claims ID ...]
                              [--sweeps-dir DIR] [--out DIR]

Exit codes: 0 written; 2 bad arguments, missing store / experiment / claim, bad claim file.
"""

from __future__ import annotations

import argparse
import sys

from fnnbench.paths import SWEEPS_DIR
from fnnbench.report.build import build_report
from fnnbench.report.data import ReportError

EXIT_USAGE = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m fnnbench.report",
        description="Judge each claim of sweeps/ against the MLflow runs tagged with it and "
        "write one markdown page per claim (with seaborn figures) plus an index.",
    )
    ap.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)",
    )
    ap.add_argument(
        "--experiment",
        nargs="+",
        action="extend",
        default=None,
        metavar="NAME",
        help="read only these experiments (default: every experiment in the store)",
    )
    ap.add_argument(
        "--claims",
        nargs="+",
        action="extend",
        default=None,
        metavar="ID",
        help="only these claim ids (default: every claim in --sweeps-dir)",
    )
    ap.add_argument(
        "--sweeps-dir",
        default=str(SWEEPS_DIR),
        help="folder of claim files <id>.yaml (default: fnnbench/sweeps/, the shipped claims)",
    )
    ap.add_argument("--out", default="reports", help="output folder (default: reports/)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = build_report(
            tracking_uri=args.tracking_uri,
            experiments=args.experiment,
            claim_ids=args.claims,
            sweeps_dir=args.sweeps_dir,
            out=args.out,
            log=lambda s: print(f"fnnbench.report: {s}", flush=True),
        )
    except (ReportError, ValueError) as err:
        print(f"fnnbench.report: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"fnnbench.report: {len(summary.pages)} claims, {summary.n_runs} runs "
        f"({summary.n_failed} failed, {summary.n_diverged} diverged) -> {summary.out}/README.md"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
