"""Markdown text of the report: claim pages and the index (text only, no I/O).

Values that come from runs (params, tags, errors) or from claim files are passed through
:func:`md_escape` before they reach a page, so a param value cannot break a table, open a
link, inject HTML or start emphasis. Tables are written by :func:`md_table` (no tabulate).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fnnbench.claims import NO_DATA, Claim, ClaimResult, ComparisonResult

SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ESCAPE = re.compile(r"([\\`*_\[\]|#!])")
SHORT = 8  # characters of a run id shown in tables


def md_escape(value: Any) -> str:
    """Text safe inside markdown prose and table cells.

    ``&``, ``<``, ``>`` become HTML entities (no tags, no comments); the markdown
    metacharacters ``\\ ` * _ [ ] | # !`` get a backslash; newlines (and CR) become ``<br>``
    (a line break that stays inside a table cell). None -> ``None``.
    """
    s = "None" if value is None else str(value)
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = _ESCAPE.sub(r"\\\1", s)
    s = s.replace("\r\n", "\n").replace("\r", "\n")
    return s.replace("\n", "<br>")


def md_table(header: Sequence[str], rows: Iterable[Sequence[str]], align: str = "") -> str:
    """A pipe table from already-escaped cells. ``align``: one letter per column,
    ``l``/``r``/``c`` (default left)."""
    header = list(header)
    spec = {"l": ":---", "r": "---:", "c": ":---:"}
    marks = [spec.get((align[i] if i < len(align) else "l"), ":---") for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    for row in rows:
        cells = [str(c) for c in row]
        if len(cells) != len(header):
            raise ValueError(f"md_table: row has {len(cells)} cells, header has {len(header)}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def page_name(claim_id: str) -> str:
    """File stem for a claim page: the id when it is a plain identifier, else sanitised."""
    return claim_id if SAFE_ID.match(claim_id) else re.sub(r"[^A-Za-z0-9_-]", "_", claim_id)


def code_or_text(s: str) -> str:
    """Inline code for plain identifiers/commands, escaped text otherwise (a code span cannot
    be escaped)."""
    return f"`{s}`" if re.fullmatch(r"[A-Za-z0-9_.=/ :,\[\]-]+", s) else md_escape(s)


def short(run_id: str) -> str:
    return str(run_id)[:SHORT]


def fmt_num(x: Any) -> str:
    """A number for a table: 3 significant digits, integers as integers, NaN as '-'."""
    if x is None:
        return "-"
    try:
        f = float(x)
    except (TypeError, ValueError):
        return md_escape(x)
    if math.isnan(f):
        return "-"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    if f == int(f) and abs(f) < 1e6:
        return str(int(f))
    if abs(f) >= 1000:
        return f"{f:.0f}"
    return f"{f:.3g}"


# ----------------------------------------------------------------------------- verdict


def effect_text(c: ComparisonResult) -> str:
    """'3.4x [2.8, 4.1]' / '+0.45 [0.2, 0.65]' / '3.4x (no CI)' / '-' (no data)."""
    if c.verdict == NO_DATA or (isinstance(c.effect, float) and math.isnan(c.effect)):
        return "-"
    text = c.effect_text()
    if math.isnan(c.ci_low) or math.isnan(c.ci_high):
        text = text.split(" [", 1)[0] + " (no CI)"
    return text


def published_text(claim: Claim, *, with_text: bool = True) -> str:
    """The published figure: '6x (6x fewer epochs ...)', '+0.3', the text alone, or '-'."""
    pub = claim.published
    kind = claim.primary[0].effect if claim.primary else claim.effect
    parts = []
    if pub.value is not None:
        v = pub.value
        parts.append(f"{fmt_num(v)}x" if kind == "ratio" else "0" if v == 0 else f"{v:+.3g}")
    if pub.text and (with_text or not parts):
        parts.append(f"({md_escape(pub.text)})" if parts else md_escape(pub.text))
    return " ".join(parts) if parts else "-"


def here_text(result: ClaimResult) -> str:
    """Effects of the primary comparisons, e.g. '3.4x [2.8, 4.1] (95% CI), n = 10 vs 10 runs'
    (with the comparison label when there are several)."""
    prim = [c for c in result.comparisons if c.primary]
    parts = []
    for c in prim:
        if c.verdict == NO_DATA:
            t = f"no data (n = {c.a.n} vs {c.b.n} runs)"
        else:
            t = f"{effect_text(c)}, n = {c.a.n} vs {c.b.n} runs"  # numbers only
        if len(prim) > 1:
            t = f"{md_escape(c.label)}: {t}"
        parts.append(t)
    return "; ".join(parts)


def parts_text(result: ClaimResult) -> str:
    """The primary comparisons, each with its own verdict (escaped), '; '-separated."""
    return "; ".join(c.part_text(md_escape) for c in result.comparisons if c.primary)


def verdict_line(result: ClaimResult, *, n_runs: int, store: str) -> str:
    """The first line of a claim page: the claim word, then each primary comparison with its
    verdict, effect and CI (and the published figure and the sesoi where declared), then the
    paper's figure."""
    v = result.verdict
    cmd = f"python -m fnnbench sweep={result.claim.id}"
    if n_runs == 0:
        return (
            f"**{v}** · no runs tagged fnnbench.claim = {md_escape(result.claim.id)} in "
            f"{md_escape(store)}; produce them with {code_or_text(cmd)}, then "
            f"`python -m fnnbench.report`."
        )
    line = f"**{v}** · {parts_text(result)}; paper: {published_text(result.claim)}"
    if v == NO_DATA:
        line += f"; no finished runs in an arm, see the notes below ({code_or_text(cmd)})"
    return line + "."


# ----------------------------------------------------------------------------- pages


@dataclass
class FigureRef:
    """A figure on a page: ``path`` relative to the page, a heading and a caption (escaped)."""

    name: str
    path: str
    heading: str
    caption: str


@dataclass
class ClaimPage:
    """Everything a claim page shows (the numbers are computed elsewhere)."""

    result: ClaimResult
    store: str
    counts: Any  # fnnbench.report.data.RunCounts
    figures: list[FigureRef] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # escaped sentences
    observed: dict[str, str] = field(default_factory=dict)  # label -> escaped text
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run id, error)
    unused: int = 0
    activations: str | None = None  # link to the activation figure
    stale: list[tuple[str, str]] = field(default_factory=list)  # (run id, why), not used
    cost: str = ""  # escaped sentence: jobs and minutes of the sweep


def _pair(a: Any, b: Any) -> str:
    return f"{fmt_num(a)} / {fmt_num(b)}"


def _tuned(c: ComparisonResult) -> str:
    if not c.tune:
        return "-"
    edge = [s for s, arm in (("a", c.a), ("b", c.b)) if arm.edge]
    flag = f" (grid edge: {', '.join(edge)})" if edge else ""
    return f"{md_escape(c.tune)}: {md_escape(c.a.tuned)} / {md_escape(c.b.tuned)}{flag}"


def _share(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.0f}%"


def _reached(c: ComparisonResult) -> str:
    if c.effect_kind == "rate" or c.spec is None or c.spec.censor is None:
        return "-"
    return f"{_share(c.a.reached)} / {_share(c.b.reached)}"


def _magnitude(c: ComparisonResult) -> str:
    out = []
    if c.published is not None:
        where = {True: "in CI", False: "outside CI", None: "no CI"}[c.published_in_ci]
        out.append(f"published {c.number(c.published)}: {where}")
    if c.sesoi is not None:
        out.append(f"sesoi {c.number(c.sesoi)}: {c.sesoi_status or 'no CI'}")
    return md_escape("; ".join(out)) if out else "-"


def comparison_bullets(result: ClaimResult) -> str:
    """One line per comparison: its verdict with the reason (margins, the 90% CI of the
    equivalence test, the published figure, the sesoi); secondary ones marked exploratory."""
    lines = []
    for c in result.comparisons:
        tag = "" if c.primary else " (exploratory: never decides the claim)"
        text = f"- {c.part_text(md_escape)}{tag}"
        if c.equivalence is not None and c.verdict != NO_DATA:
            lo, hi = c.equivalence
            ci90 = f"[{fmt_num(c.ci90_low)}, {fmt_num(c.ci90_high)}]"
            conf90 = round(100 * (2 * c.conf - 1))
            text += (
                f". Equivalence margin [{fmt_num(lo)}, {fmt_num(hi)}]; {conf90}% CI {ci90} "
                "(two one-sided tests at 5%)"
            )
        if c.bound is not None:
            text += (
                f". An arm did not reach the target in half or more of its runs: its median is "
                f"a budget and the effect only a bound ({md_escape(c.bound)})"
            )
        lines.append(text + ".")
    return "\n".join(lines)


def tuning_text(result: ClaimResult) -> str:
    """How the tuned comparisons chose their setting, and grid-edge optima."""
    tuned = [c for c in result.comparisons if c.tune and c.verdict != NO_DATA]
    if not tuned:
        return ""
    n = result.claim.tune_seeds
    if n:
        text = (
            f"Tuning (held out): per arm, runs with seed < {n} choose the value of the tuned "
            f"param (best median); only runs with seed >= {n} at that value are judged."
        )
    else:
        text = (
            "Tuning (no tune_seeds): per arm, the value of the tuned param with the best median "
            "is chosen on all runs, and the choice is repeated inside every bootstrap resample, "
            "so the CI includes the selection (no winner's curse)."
        )
    edges = []
    for c in tuned:
        for side, arm in (("a", c.a), ("b", c.b)):
            if arm.edge:
                grid = ", ".join(md_escape(g) for g in arm.grid)
                edges.append(
                    f"- {md_escape(c.label)}, arm {side}: {md_escape(c.tune)} = "
                    f"{md_escape(arm.tuned)} is at the edge of the values run ({grid}); the "
                    "best setting may lie outside the grid."
                )
    if edges:
        text += "\n\nGrid-edge optima:\n\n" + "\n".join(edges)
    return text


def _ids(ids: Sequence[str], k: int = 3) -> str:
    shown = ", ".join(md_escape(short(i)) for i in ids[:k])
    more = f" +{len(ids) - k}" if len(ids) > k else ""
    return (shown + more) if ids else "-"


def comparison_table(result: ClaimResult) -> str:
    """The numbers behind the verdict, one row per comparison, then notes and run ids."""
    rows = []
    for c in result.comparisons:
        label = md_escape(c.label) + ("" if c.primary else " (exploratory)")
        if c.effect_kind == "rate":
            centre = f"{fmt_num(c.a.rate)} / {fmt_num(c.b.rate)} (rate)"
        else:
            centre = _pair(c.a.median, c.b.median)
        rows.append(
            [
                label,
                md_escape(c.metric or "-"),
                effect_text(c),
                f"**{c.verdict}**",
                _magnitude(c),
                _pair(c.a.n, c.b.n),
                centre,
                _reached(c),
                _pair(c.a.censored, c.b.censored),
                _pair(c.a.failed, c.b.failed),
                _pair(c.a.diverged, c.b.diverged),
                _tuned(c),
                f"{_ids(c.a.run_ids)} / {_ids(c.b.run_ids)}",
            ]
        )
    table = md_table(
        [
            "comparison (a vs b)",
            "metric",
            "effect [95% CI]",
            "verdict",
            "published / sesoi",
            "n a / b",
            "median a / b",
            "reached target a / b",
            "censored a / b",
            "failed a / b",
            "diverged a / b",
            "tuned",
            "runs a / b",
        ],
        rows,
        align="lllclrrrrrrll",
    )
    parts = [comparison_bullets(result), table]
    tuning = tuning_text(result)
    if tuning:
        parts.append(tuning)
    notes = [f"- {md_escape(c.label)}: {md_escape(c.note)}" for c in result.comparisons if c.note]
    if notes:
        parts.append("Notes:\n\n" + "\n".join(notes))
    ids = []
    for c in result.comparisons:
        for side, run_ids in (("a", c.a.run_ids), ("b", c.b.run_ids)):
            ids.append(
                f"- {md_escape(c.label)}, arm {side} ({len(run_ids)}): "
                + (", ".join(md_escape(i) for i in run_ids) or "none")
            )
    n = sum(len(c.a.run_ids) + len(c.b.run_ids) for c in result.comparisons)
    parts.append(
        f"<details><summary>MLflow run ids used ({n})</summary>\n\n"
        + "\n".join(ids)
        + "\n\n</details>"
    )
    return "\n\n".join(parts)


def _counts_text(counts: Any, unused: int) -> str:
    out = counts.outcomes
    outcome = " · ".join(f"{md_escape(k)} {v}" for k, v in sorted(out.items())) or "none"
    other = ", ".join(f"{v} {md_escape(k)}" for k, v in sorted(counts.other.items()))
    text = (
        f"{counts.total} runs tagged with this claim: {counts.finished} finished "
        f"({outcome}), {counts.failed} failed"
    )
    if other:
        text += f", {other}"
    text += f"; {counts.diverged} diverged (counted at their budget, never dropped)."
    if unused:
        text += (
            f" {unused} finished runs are not used by any comparison (no arm matches them, "
            "or the tuning chose another value)."
        )
    return text


PRE_PROVENANCE = "made before provenance tags"


def stale_text(stale: Sequence[tuple[str, str]]) -> str:
    """The runs left out because they were made with another version of the claim file."""
    why: dict[str, int] = {}
    for _, w in stale:
        why[w] = why.get(w, 0) + 1
    counts = "; ".join(f"{n} {md_escape(w)}" for w, n in why.items())
    ids = "\n".join(f"- {md_escape(rid)}: {md_escape(w)}" for rid, w in stale)
    return (
        f"Stale runs, not used: {len(stale)} runs tagged with this claim were not made with "
        f"today's claim file ({counts}).\n\n"
        f"<details><summary>Stale runs ({len(stale)})</summary>\n\n{ids}\n\n</details>"
    )


def claim_page(page: ClaimPage) -> str:
    """The markdown of one claim page; the verdict line comes right after the title."""
    r, claim = page.result, page.result.claim
    title = md_escape(claim.title or claim.id)
    lines = [f"# {title}", "", verdict_line(r, n_runs=page.counts.total, store=page.store), ""]
    lines += [f"> {md_escape(claim.statement)}", ""]
    if claim.source:
        lines += [f"Source: {md_escape(claim.source)}", ""]
    if claim.published.text or claim.published.value is not None:
        lines += [f"Published figure: {published_text(claim)}", ""]

    lines += ["## Protocol", ""]
    if claim.protocol:
        lines += [md_escape(claim.protocol.strip()), ""]
    if claim.sweep_params:
        lines += ["What varies (the sweep in " + code_or_text(f"sweeps/{claim.id}.yaml") + "):", ""]
        lines += [f"- {md_escape(k)} = {md_escape(v)}" for k, v in claim.sweep_params.items()]
        lines += [""]
    if page.observed:
        lines += ["In the runs:", ""]
        lines += [f"- {k}: {v}" for k, v in page.observed.items()]
        lines += [""]
    lines += [
        "Reproduce:",
        "",
        "```",
        f"python -m fnnbench sweep={claim.id}" if SAFE_ID.match(claim.id) else "(see above)",
        f"python -m fnnbench.report --claims {claim.id}" if SAFE_ID.match(claim.id) else "",
        "```",
        "",
    ]

    lines += ["## Result", ""]
    if page.counts.total == 0:
        lines += [
            "No data: no run in the store is tagged with this claim. Run the sweep above "
            "(it logs to the MLflow experiment named after the claim), then rebuild the report.",
            "",
        ]
    else:
        lines += [comparison_table(r), ""]
    if claim.differs:
        lines += ["## Why the result may differ from the paper", ""]
        lines += [md_escape(claim.differs.strip()), ""]
    lines += ["## Runs", "", _counts_text(page.counts, page.unused), ""]
    if page.cost:
        lines += [page.cost, ""]
    if page.stale:
        lines += [stale_text(page.stale), ""]
    if page.failed:
        lines += [f"<details><summary>Failed runs ({len(page.failed)})</summary>", ""]
        lines += [f"- {md_escape(rid)}: {md_escape(err)}" for rid, err in page.failed]
        lines += ["", "</details>", ""]

    if page.figures or page.skipped or page.activations:
        lines += ["## Figures", ""]
    for f in page.figures:
        lines += [f"### {f.heading}", "", f"![{md_escape(f.heading)}]({f.path})", "", f.caption, ""]
    if page.activations:
        lines += [
            "### The activation functions",
            "",
            f"![activation functions and their derivatives]({page.activations})",
            "",
        ]
    if page.skipped:
        lines += ["Not drawn:", ""] + [f"- {s}" for s in page.skipped] + [""]
    return "\n".join(lines).rstrip() + "\n"


@dataclass
class IndexEntry:
    result: ClaimResult
    page: str  # link target, relative to the index
    n_runs: int
    stale: int = 0  # runs left out: made with another version of the claim file (or untagged)


WORDS_TEXT = (
    "One verdict per comparison, decided by its CI, not the point estimate: **SUPPORTED** "
    "(the 95% CI entirely on the claimed side of no effect), **REFUTED** (entirely on the "
    "other side), **EQUIVALENT** (the 90% CI inside the equivalence margin the claim file "
    "declares: two one-sided tests at 5%), **INCONCLUSIVE**, **NO DATA**. A claim is "
    "SUPPORTED when every primary comparison says what it claims, PARTLY SUPPORTED when some "
    "do, REFUTED when none does and one is refuted, EQUIVALENT when every one is equivalent, "
    "else INCONCLUSIVE. Effects are ratios (x, > 1 favours the claim) or differences (> 0 "
    "favours the claim); >= / <= marks a bound (an arm censored in half or more of its runs). "
    "Exploratory (secondary) comparisons are on the pages and never decide."
)


# ----------------------------------------------------------------------------- sweeps


@dataclass
class SweepEntry:
    """A sweep's row in the index."""

    run_id: str
    title: str  # raw text (escaped here)
    page: str | None  # link target relative to the index (a sweep page or the claim page)
    started: str
    n_jobs: int
    finished: int
    failed: int
    claim: str | None = None  # a claim sweep: its claim id


def sweeps_table(sweeps: Sequence[SweepEntry]) -> str:
    """One row per sweep: what it varies (linked to its page), start, jobs, claim, run id."""
    rows = []
    for s in sweeps:
        title = md_escape(s.title)
        rows.append(
            [
                f"[{title}]({s.page})" if s.page else title,
                md_escape(s.started),
                f"{s.n_jobs} ({s.finished} finished, {s.failed} failed)",
                md_escape(s.claim) if s.claim else "-",
                md_escape(s.run_id),
            ]
        )
    return md_table(
        ["sweep", "started", "jobs", "claim", "parent run"], rows, align="llrll"
    )


@dataclass
class SweepPage:
    """Everything a sweep page shows (the numbers are computed elsewhere); text is raw unless
    the field says escaped."""

    run_id: str
    name: str  # the parent's run name
    store: str
    experiment: str
    started: str
    status: str
    swept: list[str]  # the sweep overrides as typed
    fixed: list[str]  # the other overrides
    keys: list[str]  # what varies (seed included when swept)
    keys_source: str  # overrides | run name | params
    setting_keys: list[str]  # the keys that name a setting
    command: str
    counts: Any  # fnnbench.report.data.RunCounts
    table: Any  # pandas DataFrame of fnnbench.report.tables.sweep_table
    seeds_swept: bool
    metrics: list[tuple[str, str]] = field(default_factory=list)  # (metric, label) columns
    target: str | None = None  # the target (train.target and its metric) when one was set
    claim: str | None = None  # tag fnnbench.claim of a claim whose file is not in sweeps/
    observed: dict[str, str] = field(default_factory=dict)  # label -> escaped text
    figures: list[FigureRef] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # escaped sentences
    runs: list[tuple[str, str, str, str]] = field(default_factory=list)  # setting, seed, id, how
    failed: list[tuple[str, str]] = field(default_factory=list)  # (run id, error)
    reused: int = 0  # runs reused from an earlier sweep (identical config already FINISHED)
    cost: str = ""


MEDIAN_NOTE = (
    "Each cell: the median over the finished runs of the setting (its seeds) and its 95% "
    "confidence interval, distribution-free: the order statistics of the binomial (sign-test) "
    "interval for the median, `scipy.stats.quantile_test(x, p=0.5).confidence_interval()`, "
    "exact coverage >= 95% without resampling. (no CI): fewer than 6 runs, too few for a 95% "
    "interval of the median (the widest one, [min, max], covers 1 - 2^(1-n): 93.8% for 5 runs)."
)
ONE_RUN_NOTE = (
    "One run per setting (the seed is not swept): each cell is that run's value, without an "
    "interval. Sweep seeds as well (e.g. `seed=range(0,10)`) for medians with 95% intervals."
)


def _median_cell(row: Mapping[str, Any], prefix: str, *, bound: bool = False) -> str:
    n = int(row.get(f"{prefix}.n", 0) or 0)
    med = row.get(f"{prefix}.median")
    if n == 0 or med is None or (isinstance(med, float) and math.isnan(med)):
        return "-"
    if bound:
        return f">= {fmt_num(med)} (bound)"
    if n == 1:
        return fmt_num(med)
    lo, hi = row.get(f"{prefix}.low"), row.get(f"{prefix}.high")
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return f"{fmt_num(med)} (no CI)"
    return f"{fmt_num(med)} [{fmt_num(lo)}, {fmt_num(hi)}]"


def sweep_result_table(table: Any, *, target: bool, metrics: Sequence[tuple[str, str]]) -> str:
    """The per-setting table of a sweep page (``table``: tables.sweep_table)."""
    header = ["setting", "runs", "seeds", "finished / failed / diverged"]
    header += [label for _, label in metrics]
    if target:
        header += ["reached target", "epochs to target"]
    rows = []
    for row in table.to_dict("records"):
        cells = [
            md_escape(row["setting"]),
            str(row["n"]),
            str(row["seeds"]),
            f"{row['finished']} / {row['failed']} / {row['diverged']}",
        ]
        cells += [_median_cell(row, m) for m, _ in metrics]
        if target:
            cells += [
                f"{row['reached']} / {row['finished']}",
                _median_cell(row, "ttt", bound=bool(row.get("ttt.bound"))),
            ]
        rows.append(cells)
    return md_table(header, rows, align="lrrr" + "r" * (len(header) - 4))


def _sweep_counts(counts: Any, reused: int) -> str:
    out = counts.outcomes
    outcome = " · ".join(f"{md_escape(k)} {v}" for k, v in sorted(out.items())) or "none"
    other = ", ".join(f"{v} {md_escape(k)}" for k, v in sorted(counts.other.items()))
    text = (
        f"{counts.total} jobs: {counts.finished} finished ({outcome}), {counts.failed} failed"
    )
    if other:
        text += f", {other}"
    text += f"; {counts.diverged} diverged."
    if reused:
        text += (
            f" {reused} of them were reused: their config had already FINISHED in an earlier "
            "run, so the sweep trained nothing for them (tag fnnbench.skipped.* of the parent)."
        )
    return text


def sweep_first_line(page: SweepPage) -> str:
    """The first line of a sweep page: settings, jobs, parent run, start."""
    n_set = len(page.table) if page.table is not None else 0
    keys = ", ".join(page.setting_keys)
    what = f"**{n_set} settings** of {md_escape(keys)}" if keys else f"**{n_set} setting**"
    if page.seeds_swept:
        what += " over seeds"
    c = page.counts
    return (
        f"{what} · {c.total} jobs ({c.finished} finished, {c.failed} failed, {c.diverged} "
        f"diverged) · parent run {md_escape(page.run_id)} ({md_escape(page.status)}) · "
        f"started {md_escape(page.started)}."
    )


def sweep_page(page: SweepPage) -> str:
    """The markdown of one sweep page (a sweep without a claim): what was run, the final
    metrics per setting, learning curves, time to target, the command and the run ids."""
    title = md_escape(" ".join(page.swept) or page.name or page.run_id[:SHORT])
    lines = [f"# Sweep: {title}", "", sweep_first_line(page), ""]
    if page.claim:
        lines += [
            f"Tagged with claim {md_escape(page.claim)}, which is not in the claim files read "
            "(sweeps/): the sweep is shown as it was run, without a verdict.",
            "",
        ]
    else:
        lines += [
            "A sweep without a claim: this page shows what was run and measured; it judges "
            "nothing (the claims are in `fnnbench/sweeps/`).",
            "",
        ]
    lines += ["## Protocol", ""]
    source = {
        "overrides": "the sweep's overrides (tag fnnbench.overrides of the parent run)",
        "run name": "the parent run's name",
        "params": "the params that differ between the jobs",
    }.get(page.keys_source, page.keys_source)
    if page.swept:
        lines += ["What varies (the sweep overrides):", ""]
        lines += [f"- {code_or_text(t)}" for t in page.swept]
        lines += [""]
    elif page.keys:
        lines += [f"What varies (from {source}):", ""]
        lines += [f"- {md_escape(k)}" for k in page.keys]
        lines += [""]
    else:
        lines += ["Nothing found to vary between the jobs.", ""]
    if page.fixed:
        lines += ["Fixed overrides: " + ", ".join(code_or_text(t) for t in page.fixed), ""]
    if page.target:
        lines += [f"Target: {md_escape(page.target)}.", ""]
    if page.observed:
        lines += ["In the runs:", ""]
        lines += [f"- {k}: {v}" for k, v in page.observed.items()]
        lines += [""]
    lines += [
        "Reproduce (jobs whose identical config already FINISHED in the same store are "
        "skipped):",
        "",
        "```",
        page.command,
        f"python -m fnnbench.report --sweep {page.run_id}",
        "```",
        "",
    ]

    lines += ["## Result", ""]
    if page.table is None or not len(page.table):
        lines += ["No jobs: the sweep has no runs in the store.", ""]
    else:
        lines += [
            sweep_result_table(page.table, target=page.target is not None, metrics=page.metrics),
            "",
        ]
        several = bool((page.table["n"] > 1).any())
        lines += [MEDIAN_NOTE if several else ONE_RUN_NOTE, ""]
        if page.target is not None:
            lines += [
                "Epochs to target: a run that never reached the target (or diverged) counts "
                "at its epoch budget (train.epochs), never dropped; when half or more of a "
                "setting's runs did, the median is only a lower bound (>=).",
                "",
            ]
    lines += ["## Runs", "", _sweep_counts(page.counts, page.reused), ""]
    if page.cost:
        lines += [page.cost, ""]
    if page.failed:
        lines += [f"<details><summary>Failed runs ({len(page.failed)})</summary>", ""]
        lines += [f"- {md_escape(rid)}: {md_escape(err)}" for rid, err in page.failed]
        lines += ["", "</details>", ""]
    lines += [
        f"<details><summary>MLflow run ids (parent and {len(page.runs)} jobs)</summary>",
        "",
        f"- parent: {md_escape(page.run_id)} (experiment {md_escape(page.experiment)}, "
        f"{md_escape(page.store)})",
    ]
    lines += [
        f"- {md_escape(setting)}, seed {md_escape(seed)}: {md_escape(rid)} ({md_escape(how)})"
        for setting, seed, rid, how in page.runs
    ]
    lines += ["", "</details>", ""]
    if page.figures or page.skipped:
        lines += ["## Figures", ""]
    for f in page.figures:
        lines += [f"### {f.heading}", "", f"![{md_escape(f.heading)}]({f.path})", "", f.caption, ""]
    if page.skipped:
        lines += ["Not drawn:", ""] + [f"- {s}" for s in page.skipped] + [""]
    return "\n".join(lines).rstrip() + "\n"


def index_page(
    entries: Sequence[IndexEntry],
    provenance: Mapping[str, str],
    activations: str | None,
    *,
    sweeps: Sequence[SweepEntry] = (),
    not_run: Sequence[Claim] = (),
) -> str:
    """The report's README: one row per primary comparison of the claims with runs, the
    claims not run (one line each), the sweeps (one row each, newest first), provenance."""
    counts: dict[str, int] = {}
    for e in entries:
        counts[e.result.verdict] = counts.get(e.result.verdict, 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in counts.items()) or "no claims"
    rows = []
    for e in entries:
        c = e.result.claim
        prim = [x for x in e.result.comparisons if x.primary]
        for i, x in enumerate(prim):
            first = i == 0
            rows.append(
                [
                    f"[{md_escape(c.title or c.id)}]({e.page})" if first else "",
                    f"**{e.result.verdict}**" if first else "",
                    md_escape(x.label),
                    f"**{x.verdict}**",
                    effect_text(x) or "-",
                    _magnitude(x)
                    if x.published is not None or x.sesoi is not None or len(prim) > 1
                    else published_text(c, with_text=False),
                    f"{x.a.n} vs {x.b.n}",
                    f"{e.n_runs}" + (f" ({e.stale} stale)" if e.stale else "") if first else "",
                ]
            )
    not_run_text = f"; {len(not_run)} not run (listed below)" if not_run else ""
    lines = ["# fnnbench report: the lecture's claims, measured", ""]
    if entries:
        lines += [
            f"{len(entries)} claims: {summary}{not_run_text}. {WORDS_TEXT}",
            "",
            md_table(
                [
                    "claim",
                    "verdict",
                    "comparison",
                    "comparison verdict",
                    "effect [95% CI]",
                    "paper",
                    "n a vs b",
                    "runs used",
                ],
                rows,
                align="lclclllr",
            ),
            "",
        ]
    elif not_run:
        lines += [f"No claim has runs in this report; {len(not_run)} not run (listed below).", ""]
    else:
        lines += ["No claim in this report.", ""]
    stale = sum(e.stale for e in entries)
    if stale:
        lines += [
            f"{stale} runs are stale (made with another version of their claim file, or before "
            "provenance tags) and are not used; each page lists them.",
            "",
        ]
    if not_run:
        lines += ["## Claims not run", ""]
        lines += [
            f"- {md_escape(c.title or c.id)} ({code_or_text(c.id)}): not run; "
            + code_or_text(f"python -m fnnbench sweep={c.id}" if SAFE_ID.match(c.id) else c.id)
            for c in not_run
        ]
        lines += [""]
    if sweeps:
        lines += ["## Sweeps", "", sweeps_table(sweeps), ""]
    if activations and entries:
        lines += [
            "The hidden units the claims compare, from `fnnbench.nn`:",
            "",
            f"![activation functions and their derivatives]({activations})",
            "",
        ]
    lines += ["## Provenance", "", md_table(["", ""], [[k, v] for k, v in provenance.items()]), ""]
    return "\n".join(lines)


README_START = "<!-- verdicts:start -->"
README_END = "<!-- verdicts:end -->"


def readme_table(results: Sequence[ClaimResult]) -> str:
    """The README's claims table: one row per primary comparison (generated, never edited)."""
    rows = []
    for r in results:
        for x in r.primary:
            pub = "-"
            if x.published is not None:
                where = {True: "in the CI", False: "outside the CI", None: "no CI"}
                pub = md_escape(f"{x.number(x.published)} ({where[x.published_in_ci]})")
            rows.append(
                [
                    md_escape(r.claim.id),
                    r.verdict,
                    md_escape(x.label),
                    x.verdict,
                    effect_text(x),
                    pub,
                ]
            )
    return md_table(
        ["claim", "verdict", "comparison", "comparison verdict", "effect [95% CI]", "published"],
        rows,
    )


def replace_readme_block(text: str, table: str) -> str:
    """``text`` with the block between the verdict markers replaced by ``table``
    (ValueError when the markers are missing or out of order)."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise ValueError(f"no {README_START} ... {README_END} block")
    head = text[: start + len(README_START)]
    return f"{head}\n{table}\n{text[end:]}"
