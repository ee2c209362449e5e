"""``python -m fnnbench.tracking doctor [--fix] [--tracking-uri URI] [--experiment NAME]``.

Lists the runs of the experiment that processes which are gone left RUNNING (kill -9,
preemption, a lost node; see :mod:`fnnbench.tracking.reaper`) and the spool files of runs a
dead tracking server missed (:mod:`fnnbench.tracking.spool`). With ``--fix`` it replays the
spool files whose server answers, then ends the orphaned runs KILLED (tag ``fnnbench.reaped``,
metrics kept) and the sweep parent runs whose jobs have all ended. Exit 0; a store or an
experiment that cannot be used is one line on stderr and exit 2.
"""

from __future__ import annotations

import argparse
import sys

from fnnbench.tracking.names import STALE_SECONDS

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fnnbench.tracking",
                                description="Maintenance of fnnbench's MLflow store.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("doctor", help="list (and with --fix end) runs left RUNNING by dead "
                       "processes; replay spooled runs")
    d.add_argument("--fix", action="store_true", help="replay spools, end orphaned runs")
    d.add_argument("--tracking-uri", default=None,
                   help="the store (default: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    d.add_argument("--experiment", default=None,
                   help="the experiment to check (default: every experiment of the store)")
    d.add_argument("--stale-seconds", type=float, default=STALE_SECONDS,
                   help="a run on another host without a heartbeat for this long is dead "
                   f"(default {STALE_SECONDS:g})")
    d.add_argument("--spool-dir", default=None,
                   help="where jobs spooled (default: $FNNBENCH_SPOOL_DIR, else ./.fnnbench-spool)")
    return p


def _experiments(uri: str, name: str | None) -> list:
    """The experiments to check; TrackingError (one line) for a store or experiment not there."""
    from pathlib import Path

    from mlflow import MlflowClient

    from fnnbench.tracking.reaper import experiments
    from fnnbench.tracking.store import (
        TrackingError,
        check_server,
        first_line,
        scheme_of,
        sqlite_path,
    )

    scheme = scheme_of(uri)
    if scheme == "sqlite":
        path = sqlite_path(uri)
        if path not in (None, "", ":memory:") and not Path(path).is_file():
            raise TrackingError(uri, f"no such database file {path}")
    elif scheme in ("http", "https"):
        check_server(uri)
    elif scheme not in ("postgresql", "mysql", "mssql"):
        raise TrackingError(uri, f"unsupported URI scheme '{scheme}' "
                            "(use sqlite:///path/to/mlflow.db or http://host:port)")
    try:
        found = experiments(MlflowClient(uri), name)
    except Exception as exc:
        raise TrackingError(uri, first_line(exc)) from None
    if name and not found:
        raise TrackingError(uri, f"no experiment named '{name}'")
    return found


def doctor(args: argparse.Namespace) -> int:
    from mlflow import MlflowClient

    from fnnbench.tracking import spool
    from fnnbench.tracking.reaper import reap
    from fnnbench.tracking.store import TrackingError, resolve_uri

    uri = resolve_uri({"uri": args.tracking_uri} if args.tracking_uri else None)
    replayed, orphans = [], []
    try:
        found = _experiments(uri, args.experiment)
        if args.fix:  # first: a spooled run gets its true status, not KILLED
            replayed = spool.replay(args.spool_dir, uri=uri)
        for exp in found:
            orphans += reap(MlflowClient(uri), exp.experiment_id, fix=args.fix,
                            stale_seconds=args.stale_seconds)
    except TrackingError as exc:
        print(f"fnnbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    for run_id, status in replayed:
        print(f"fnnbench: run {run_id}: spool replayed" + (f", ended {status}" if status else ""))
    for path in spool.pending(args.spool_dir, uri=uri):
        print(f"fnnbench: spool {path}: not replayed" + ("" if args.fix else " (use --fix)"))
    for orphan in orphans:
        print(orphan.line(fixed=args.fix))
    n_runs = sum(not o.parent for o in orphans)
    verb = "ended" if args.fix else "found"
    where = f"experiment '{args.experiment}'" if args.experiment else "every experiment"
    print(f"fnnbench: doctor {uri} ({where}): {verb} {n_runs} orphaned "
          f"run(s), {len(orphans) - n_runs} sweep parent run(s)"
          + (f", replayed {len(replayed)} spool(s)" if args.fix else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "doctor":
        return doctor(args)
    return EXIT_USAGE  # pragma: no cover - argparse requires a command


if __name__ == "__main__":
    sys.exit(main())
