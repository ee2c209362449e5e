"""``python -m fnnbench.report``: MLflow runs -> reports/ (markdown + PNG). Never trains.

    python -m fnnbench.report [--tracking-uri URI] [--experiment NAME ...] [--claims ID ...]
                              [--sweeps-dir DIR] [--out DIR] [--readme README.md]
                              [--sweep RUN_ID | --last]

Every claim with runs gets a page, every sweep without a claim a page of its own
(``sweep-<run id>.md``); ``--sweep`` / ``--last`` report one sweep only.

``--readme PATH`` rewrites the block between ``<!-- verdicts:start -->`` and
``<!-- verdicts:end -->`` of that file with the verdicts just computed (one row per primary
comparison): the README's claims table is generated, never edited by hand.

Exit codes: 0 written; 2 bad arguments, missing store / experiment / claim, bad claim file.
"""

from __future__ import annotations

import argparse
import sys

from fnnbench.paths import SWEEPS_DIR
from fnnbench.report.build import build_report, write_readme
from fnnbench.report.data import ReportError
from fnnbench.report.markdown import replace_readme_block

EXIT_USAGE = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    class Parser(argparse.ArgumentParser):
        def error(self, message: str):  # one line, exit 2 (no usage block)
            self.exit(EXIT_USAGE, f"fnnbench.report: error: {message.splitlines()[0]}\n")

    ap = Parser(
        prog="python -m fnnbench.report",
        description="Judge each claim of sweeps/ against the MLflow runs tagged with it and "
        "write one markdown page per claim with runs and one per sweep without a claim "
        "(with seaborn figures), plus an index.",
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
    one = ap.add_mutually_exclusive_group()
    one.add_argument(
        "--sweep",
        default=None,
        metavar="RUN_ID",
        help="only this sweep (its parent run id, or a unique prefix of it): its claim's page "
        "for a claim sweep, else its sweep page",
    )
    one.add_argument(
        "--last", action="store_true", help="only the sweep started last (as --sweep)"
    )
    ap.add_argument(
        "--readme",
        default=None,
        metavar="PATH",
        help="rewrite the verdicts block (<!-- verdicts:start --> ... <!-- verdicts:end -->) "
        "of this markdown file, e.g. README.md, with one row per primary comparison",
    )
    ap.add_argument(
        "--no-publish",
        action="store_true",
        help="do not log the pages and figures to their sweep parent runs in MLflow, nor tag "
        "the parents with their verdicts (fnnbench.report.publish)",
    )
    args = ap.parse_args(argv)
    if args.claims and (args.sweep is not None or args.last):
        ap.error("--claims cannot be combined with --sweep or --last")
    if args.readme and (args.sweep is not None or args.last):
        ap.error("--readme needs every claim's verdict: not with --sweep or --last")
    return args


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as err:
        raise ValueError(f"{path}: cannot read: {err.strerror}") from err


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.readme:  # fail before the work, not after it
            try:
                replace_readme_block(_read(args.readme), "")
            except ValueError as err:
                raise ValueError(f"{args.readme}: {err}") from err
        summary = build_report(
            tracking_uri=args.tracking_uri,
            experiments=args.experiment,
            claim_ids=args.claims,
            sweeps_dir=args.sweeps_dir,
            out=args.out,
            sweep=args.sweep,
            last=args.last,
            log=lambda s: print(f"fnnbench.report: {s}", flush=True),
        )
        if args.readme:
            write_readme(args.readme, summary.results)
            print(f"fnnbench.report: verdicts table -> {args.readme}")
    except (ReportError, ValueError) as err:
        print(f"fnnbench.report: error: {str(err).splitlines()[0]}", file=sys.stderr)
        return EXIT_USAGE
    print(
        f"fnnbench.report: {len(summary.pages)} claims, {len(summary.sweeps)} sweep pages, "
        f"{summary.n_runs} runs "
        f"({summary.n_failed} failed, {summary.n_diverged} diverged) -> {summary.out}/README.md"
    )
    if not args.no_publish:  # each page on its sweep's parent run; errors: one line, exit 0
        from fnnbench.report.publish import publish_report

        publish_report(summary, args.tracking_uri, experiments=args.experiment,
                       log=lambda s: print(f"fnnbench.report: {s}", flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
