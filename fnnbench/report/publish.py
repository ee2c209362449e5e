"""The report in MLflow: each page and its figures on its sweep's parent run, verdicts as tags.

    published = publish_report(summary, tracking_uri)      # after build_report

For every page :func:`fnnbench.report.build.build_report` wrote, the sweep parent run it
belongs to (:func:`targets`):

- a claim page: the sweep chosen with ``--sweep`` / ``--last`` when it is that claim's sweep
  (``summary.selected``), else the claim's newest parent run (tags ``fnnbench.parent = true``,
  ``fnnbench.claim = <id>``; the newest start time);
- a sweep page (``summary.sweeps``: parent run id -> page): that parent run.

The page is logged as ``report/<page>.md`` and the PNG files it embeds as ``report/img/...``
(the page's relative image links still resolve in the run's Artifacts tab), with
``MlflowClient.log_artifacts``; a claim page's parent is tagged ``fnnbench.verdict`` = the
claim-level word and, for a claim with several primary comparisons, one
``fnnbench.verdict.<comparison slug>`` per primary comparison (stale verdict tags of that
parent are deleted), and every published parent ``fnnbench.report`` = the page's artifact
path. Only artifacts and tags are written: the run's status and end time stay as they were.
Publishing never fails the report: an error is one line on stderr.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fnnbench.tracking import names as tn

_IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


@dataclass
class Target:
    """One page and the sweep parent run it is published to."""

    page: Path
    run_id: str
    experiment_id: str
    result: Any = None  # the claim's ClaimResult (claim pages), None for a sweep page
    tags: dict[str, str] = field(default_factory=dict)  # the parent's tags when it was found


@dataclass
class Published:
    """What was logged to one parent run."""

    page: Path
    run_id: str
    experiment_id: str
    artifacts: list[str]  # artifact paths
    tags: dict[str, str]


@dataclass
class _Parent:
    run_id: str
    experiment_id: str
    claim: str | None
    tags: dict[str, str]


def page_images(page: Path) -> list[Path]:
    """The local PNG files a markdown page embeds (relative links below the page's folder)."""
    text = page.read_text(encoding="utf-8")
    root = page.parent.resolve()
    out: list[Path] = []
    for rel in dict.fromkeys(_IMAGE.findall(text)):
        if "://" in rel or rel.startswith("/"):
            continue
        path = (page.parent / rel).resolve()
        if path.suffix.lower() == ".png" and path.is_file() and path.is_relative_to(root):
            out.append(path)
    return out


def verdict_tags(result) -> dict[str, str]:
    """``fnnbench.verdict`` = the claim-level word; with several primary comparisons also one
    ``fnnbench.verdict.<slug of its label>`` = its verdict per primary comparison."""
    tags = {tn.verdict_tag(): str(result.verdict)}
    primary = [c for c in result.comparisons if c.primary]
    if len(primary) > 1:
        for c in primary:
            key, n = tn.verdict_tag(c.label), 2
            while key in tags:  # two labels with the same slug
                key, n = f"{tn.verdict_tag(c.label)}_{n}", n + 1
            tags[key] = str(c.verdict)
    return tags


def _experiment_ids(client, experiments: Sequence[str] | None) -> list[str]:
    if experiments:
        found = [client.get_experiment_by_name(n) for n in experiments]
        return [e.experiment_id for e in found if e is not None]
    ids, token = [], None
    while True:
        page = client.search_experiments(max_results=1000, page_token=token)
        ids += [e.experiment_id for e in page]
        token = page.token
        if not token:
            return ids


def parent_runs(client, experiment_ids: Sequence[str]) -> list[_Parent]:
    """Every sweep parent run (tag ``fnnbench.parent = true``) of the experiments, newest
    first (one search, paged)."""
    out: list[_Parent] = []
    if not experiment_ids:
        return out
    token = None
    while True:
        page = client.search_runs(
            list(experiment_ids),
            filter_string=f"tags.`{tn.TAG_PARENT}` = 'true'",
            order_by=["attributes.start_time DESC"],
            max_results=1000,
            page_token=token,
        )
        for r in page:
            tags = dict(r.data.tags)
            out.append(_Parent(r.info.run_id, r.info.experiment_id, tags.get(tn.TAG_CLAIM), tags))
        token = page.token
        if not token:
            return out


def targets(summary, client, experiments: Sequence[str] | None = None) -> list[Target]:
    """The parent run of every page of ``summary`` (see the module doc); pages without one
    (runs logged outside a sweep) are left out."""
    parents = parent_runs(client, _experiment_ids(client, experiments))
    by_id = {p.run_id: p for p in parents}
    newest: dict[str, _Parent] = {}
    for p in parents:  # newest first
        if p.claim is not None:
            newest.setdefault(p.claim, p)
    selected = by_id.get(getattr(summary, "selected", None) or "")
    results = {r.claim.id: r for r in getattr(summary, "results", []) or []}
    out: list[Target] = []
    for claim_id, page in (getattr(summary, "pages", {}) or {}).items():
        parent = selected if selected is not None and selected.claim == claim_id else None
        parent = parent or newest.get(claim_id)
        if parent is not None:
            out.append(Target(Path(page), parent.run_id, parent.experiment_id,
                              results.get(claim_id), parent.tags))
    for run_id, page in (getattr(summary, "sweeps", {}) or {}).items():
        parent = by_id.get(run_id)
        if parent is not None:
            out.append(Target(Path(page), parent.run_id, parent.experiment_id, None, parent.tags))
    return out


def publish_page(client, target: Target) -> Published:
    """Log one page and its PNGs to its parent run and tag the parent (module doc)."""
    from mlflow.entities import RunTag

    page = target.page
    images = page_images(page)
    with tempfile.TemporaryDirectory(prefix="fnnbench-publish-") as tmp:
        root = Path(tmp)
        shutil.copyfile(page, root / page.name)
        artifacts = [f"{tn.REPORT_ARTIFACTS}/{page.name}"]
        base = page.parent.resolve()
        for img in images:
            rel = img.relative_to(base)
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(img, root / rel)
            artifacts.append(f"{tn.REPORT_ARTIFACTS}/{rel.as_posix()}")
        client.log_artifacts(target.run_id, str(root), artifact_path=tn.REPORT_ARTIFACTS)
    tags = {tn.TAG_REPORT: artifacts[0]}
    if target.result is not None:
        tags.update(verdict_tags(target.result))
        for key in target.tags:
            if key.startswith(tn.TAG_VERDICT + ".") and key not in tags:
                client.delete_tag(target.run_id, key)  # a comparison renamed since
    client.log_batch(target.run_id, tags=[RunTag(k, v) for k, v in tags.items()])
    return Published(page, target.run_id, target.experiment_id, artifacts, tags)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def publish_report(
    summary,
    tracking_uri: str | None = None,
    *,
    experiments: Sequence[str] | None = None,
    log: Callable[[str], None] | None = None,
) -> list[Published]:
    """Publish every page of ``summary`` (a ``ReportSummary``) to its sweep parent run in the
    store ``tracking_uri`` (default as the report: ``$MLFLOW_TRACKING_URI``, else
    ``sqlite:///mlflow.db``); ``experiments``: the experiment names the report read (default:
    every experiment). Never raises: errors are one line on stderr; returns what was logged."""
    log = log or (lambda s: None)
    uri = tn.tracking_uri(tracking_uri)
    done: list[Published] = []
    errors: list[str] = []
    try:
        from fnnbench.report.data import connect  # never creates a missing store

        client = connect(uri)
        todo = targets(summary, client, experiments)
    except Exception as exc:  # noqa: BLE001 - publishing never fails the report
        print(f"fnnbench.report: not published to MLflow ({uri}): {_first_line(exc)}",
              file=sys.stderr, flush=True)
        return done
    for target in todo:
        try:
            done.append(publish_page(client, target))
        except Exception as exc:  # noqa: BLE001 - one page must not stop the others
            errors.append(f"{target.page.name} -> run {target.run_id}: {_first_line(exc)}")
    base = tn.ui_base(uri)
    for p in done:
        log(f"{p.page.name} -> parent run {p.run_id}: "
            + tn.run_url(p.experiment_id, p.run_id, f"artifacts/{p.artifacts[0]}", base))
    cmd = tn.ui_command(uri)
    if done and cmd:
        log(f"(start the UI: {cmd})")
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        print(f"fnnbench.report: not published to MLflow: {errors[0]}{more}",
              file=sys.stderr, flush=True)
    return done

