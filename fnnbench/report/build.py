"""The report: claims + MLflow runs -> verdicts, figures and markdown pages in ``out``.

    summary = build_report(tracking_uri, experiments=None, claim_ids=None,
                           sweeps_dir="sweeps", out="reports")

For each claim of ``sweeps_dir`` (``fnnbench.claims.load_claims``) the jobs tagged
``fnnbench.claim = <id>`` are judged by ``fnnbench.claims.judge_claim`` (the one
implementation of the statistics), the figures of the claim's ``plots`` list are drawn from
exactly the runs the comparisons used, and ``<out>/<id>.md`` is written with its images in
``<out>/img/``; then ``<out>/README.md`` indexes every primary comparison with provenance and
``<out>/verdicts.json`` lists every comparison's verdict (:func:`verdict_records`). Only runs
tagged ``fnnbench.sweep_sha256`` = the hash of today's claim file are judged; the others are
listed as stale (:func:`split_stale`). Nothing trains:
the decision-boundary figure loads saved parameters (``params.npz`` artifacts) and
evaluates them on a grid.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fnnbench.claims import Claim, ClaimResult, counting_mask, judge_claim, load_claims
from fnnbench.paths import SWEEPS_DIR, git_commit, git_dirty
from fnnbench.report import markdown as md
from fnnbench.report import plots, tables
from fnnbench.report.data import (
    X_AXES,
    cast_value,
    claim_runs,
    connect,
    count_runs,
    curve_table,
    fetch_histories,
    find_experiments,
    job_runs,
    load_runs,
)
from fnnbench.report.sweeps import (
    Sweep,
    find_sweeps,
    last_sweep,
    page_stems,
    seeds_swept,
    select_sweep,
    setting_columns,
    setting_labels,
)
from fnnbench.tracking import names as tn
from fnnbench.tracking.model import no_progress_bar

IMG = "img"
ACTIVATIONS_PNG = f"{IMG}/activations.png"
CURVE_POINTS = 100  # steps per run drawn in learning curves
CURVE_RUNS = 50  # runs per (group, level) in learning curves: the lowest seeds
HEATMAP_POINTS = 50  # steps per run in the layer x epoch heatmaps
HEATMAP_RUNS = 20  # runs per level averaged in a heatmap: the lowest seeds
BOUNDARY_RUNS = 4  # decision-boundary panels (one run per level)
MAX_PANELS = 6  # axes per figure
HEAT_KINDS = {
    "saturated_frac": ("saturated units (fraction)", False),
    "grad_norm": ("log10 gradient norm", True),
}
VERSIONS = (
    "numpy", "pandas", "mlflow", "seaborn", "matplotlib", "hydra-core", "scikit-learn",
    "threadpoolctl",
)  # fmt: skip


@dataclass
class ReportSummary:
    """What :func:`build_report` wrote: verdict per claim id, pages, run counts."""

    out: Path
    verdicts: dict[str, str]
    pages: dict[str, Path]
    n_runs: int
    n_failed: int
    n_diverged: int
    images: list[Path] = field(default_factory=list)
    results: list[ClaimResult] = field(default_factory=list)
    verdicts_json: Path | None = None
    sweeps: dict[str, Path] = field(default_factory=dict)  # parent run id -> sweep page
    not_run: list[str] = field(default_factory=list)  # claim ids without any run: no page
    selected: str | None = None  # the parent run id chosen by --sweep / --last
    files: list[Path] = field(default_factory=list)  # every file written

    def moved(self, src: Path, dst: Path, files: list[Path]) -> ReportSummary:
        """This summary with its paths under ``src`` rewritten to ``dst``."""

        def m(p: Path) -> Path:
            return dst / p.relative_to(src)

        return replace(
            self,
            out=dst,
            pages={k: m(p) for k, p in self.pages.items()},
            images=[m(p) for p in self.images],
            verdicts_json=m(self.verdicts_json) if self.verdicts_json else None,
            sweeps={k: m(p) for k, p in self.sweeps.items()},
            files=files,
        )


# ----------------------------------------------------------------------------- per claim


@dataclass
class ClaimContext:
    """The data one claim's figures are drawn from."""

    claim: Claim
    result: ClaimResult
    runs: pd.DataFrame  # every job tagged with the claim
    used: pd.DataFrame  # the runs the comparisons use (tuned), with `level`
    order: list[str]  # level order for colours
    history: Callable[[Sequence[str], Sequence[str], int | None], pd.DataFrame]
    client: Any

    @property
    def hue_title(self) -> str | None:
        return self.claim.factor

    @functools.cached_property
    def time_to_target(self) -> pd.DataFrame:
        """Per run of every comparison: its time-to-target value or budget (tables.py), computed
        once for the figures that draw it (box plot, Kaplan-Meier, ...)."""
        return tables.time_to_target(self.result, self.runs)

    def plotted(self, *, unique: bool = False) -> pd.DataFrame:
        """The runs behind curves: the comparisons' runs (one row per group and run; one per
        run with ``unique``), else every counting run (group '')."""
        if len(self.used):
            return self.used.drop_duplicates("run_id") if unique else self.used
        r = self.runs[counting_mask(self.runs)]
        keys = tables.label_keys(self.result)
        return r.assign(level=tables.levels(r, self.claim, keys), arm="", group="", primary=True)


def _cap(runs: pd.DataFrame, by: list[str], n: int) -> tuple[pd.DataFrame, int]:
    """At most ``n`` runs per ``by`` group, the lowest seeds first; and how many were left out.

    Histories cost ~10 ms per run and key to read; a figure's mean over 50 (curves) or 20
    (heatmaps) seeds is what the eye can see, while the verdict always uses every run."""
    if not len(runs):
        return runs, 0
    seed = pd.to_numeric(
        runs.get("params.seed", pd.Series(np.nan, index=runs.index)), errors="coerce"
    )
    order = runs.assign(_seed=seed.to_numpy()).sort_values("_seed", kind="stable")
    kept = order.groupby(by, sort=False).head(n).drop(columns="_seed")
    return kept, len(runs) - len(kept)


def _levels_note(df: pd.DataFrame) -> str:
    n = df.groupby("level", sort=False)["run_id"].nunique()
    return ", ".join(f"{md.md_escape(k)} {v}" for k, v in n.items())


def _learning_curves(ctx: ClaimContext) -> tuple[Any, str] | str:
    runs = ctx.plotted()
    if not len(runs) or "metrics.train_loss" not in runs.columns:
        return "no train_loss history in the runs"
    runs = runs[runs["primary"].astype(bool)]  # the groups of the primary comparisons
    groups = list(dict.fromkeys(runs["group"]))
    metrics = {c.metric for c in ctx.result.comparisons}
    axes = ["epoch"]
    if "updates_to_target" in metrics:
        axes.append("updates")
    if "seconds_to_target" in metrics:
        axes.append("seconds")
    outcome = runs.get("tags.fnnbench.outcome", pd.Series(None, index=runs.index))
    diverged = (outcome == "diverged").to_numpy()
    ok, left_out = _cap(runs[~diverged], ["group", "level"], CURVE_RUNS)
    hist = ctx.history(list(dict.fromkeys(ok["run_id"])), ["train_loss"], CURVE_POINTS)
    panels = []
    for x in axes:
        for g in groups:
            sub = ok[ok["group"] == g]
            df, logx = curve_table(hist, sub, "train_loss", x)
            if len(df):
                df = df.merge(sub[["run_id", "level"]], on="run_id")
                panels.append((df, X_AXES[x][0] + (" (log scale)" if logx else ""), logx, g))
    panels = panels[:MAX_PANELS]
    target = None
    if "params.train.target" in runs.columns:
        t = pd.to_numeric(runs["params.train.target"], errors="coerce").dropna().unique()
        tm = runs.get("params.train.target_metric", pd.Series("train_loss", index=runs.index))
        if len(t) == 1 and set(tm.dropna()) <= {"train_loss"}:
            target = float(t[0])
    fig = plots.learning_curves(
        panels,
        title=f"{ctx.claim.id}: training loss",
        ylabel="training loss (mean over runs)",
        hue_title=ctx.hue_title,
        order=ctx.order,
        target=target,
    )
    if fig is None:
        return "no finite train_loss history for the runs"
    n_runs = ok.drop_duplicates("run_id").groupby("level", sort=False)["run_id"].size()
    cap = (
        "Training loss of the runs the primary comparisons used; line: mean over runs, band: "
        "95% bootstrap CI of the mean (runs per level: "
        + ", ".join(f"{md.md_escape(k)} {v}" for k, v in n_runs.items())
        + ")."
    )
    if len(axes) > 1:
        cap += (
            " Updates and seconds per epoch are derived per run from its summary metrics "
            "(updates_run / epochs_run, train_seconds / epochs_run)."
        )
    n_div = len(set(runs["run_id"][diverged]))
    if n_div:
        cap += f" {n_div} diverged runs are left out of the curves (counted above)."
    if left_out:
        cap += (
            f" Curves show the {CURVE_RUNS} lowest seeds per level ({left_out} more runs "
            "count in the verdict but are not drawn)."
        )
    return fig, cap


def _time_to_target(ctx: ClaimContext) -> tuple[Any, str] | str:
    df = ctx.time_to_target
    if df.empty:
        return "no time-to-target comparison with runs"
    fig = plots.time_to_target(
        df, title=f"{ctx.claim.id}: time to target", hue_title=ctx.hue_title, order=ctx.order
    )
    if fig is None:
        return "no time-to-target values (missing metric and no budget)"
    n_c = int(df["censored"].sum())
    n_unknown = int((~np.isfinite(df["value"].to_numpy(dtype=float))).sum())
    cap = (
        "Per run, the runs each comparison used; box: quartiles. "
        f"{n_c} censored runs (target never reached, or diverged) are drawn as red crosses "
        "at their budget, the value the verdict counts them at."
    )
    if n_unknown:
        cap += f" {n_unknown} runs without a budget cannot be drawn."
    return fig, cap


def _kaplan_meier(ctx: ClaimContext) -> tuple[Any, str] | str:
    ttt = ctx.time_to_target
    censored = {c.label for c in ctx.result.comparisons if c.spec and c.spec.censor is not None}
    groups = [
        g
        for c, g in zip(ctx.result.comparisons, tables.group_labels(ctx.result), strict=True)
        if c.label in censored
    ]
    ttt = ttt[ttt["group"].isin(groups)] if len(ttt) else ttt
    df = tables.kaplan_meier(ttt)
    if df.empty:
        return "no time-to-target comparison with a budget (censor) and runs"
    fig = plots.kaplan_meier(
        df, title=f"{ctx.claim.id}: runs at target", hue_title=ctx.hue_title, order=ctx.order
    )
    if fig is None:
        return "no time-to-target values"
    cap = (
        "Kaplan-Meier estimate of the share of runs that reached the target by each time "
        "(scipy.stats.ecdf on censored data: a run that never reached it leaves the risk set "
        "at its budget); k/n in the legend: runs that reached the target of those used."
    )
    return fig, cap


def _ranking(ctx: ClaimContext) -> tuple[Any, str] | str:
    ttt = ctx.time_to_target
    df = tables.ranking(ttt, ctx.claim.metric, ctx.claim.better)
    if df.empty:
        return "no ratio/difference comparison with runs"
    metric = ctx.claim.metric if ctx.claim.metric in set(ttt["metric"]) else ttt["metric"].iloc[0]
    fig = plots.ranking(
        df,
        title=f"{ctx.claim.id}: ranking by {metric}",
        xlabel=plots.metric_label(metric),
        hue_title=ctx.hue_title,
    )
    cap = (
        f"Every level of the primary comparisons ranked by its median {md.md_escape(metric)} "
        "(censored runs at their budget, as in the verdict); bars: 95% bootstrap CI of the "
        "median. The verdict rests on the pairwise comparisons above, not on this ranking."
    )
    return fig, cap


def _saturation(ctx: ClaimContext) -> tuple[Any, str] | str:
    runs = ctx.plotted(unique=True)
    keys = [k for kind in HEAT_KINDS for k in tables.layer_keys(runs, kind)]
    if not keys:
        return "no per-layer diagnostics (saturated_frac/layer*, grad_norm/layer*) in the runs"
    lv = plots.hue_order(ctx.order, runs["level"])[: plots.MAX_LEVELS_HEATMAP]
    runs, left_out = _cap(runs[runs["level"].isin(lv)], ["level"], HEATMAP_RUNS)
    hist = ctx.history(runs["run_id"].tolist(), keys, HEATMAP_POINTS)
    mats = {
        level: {kind: tables.layer_matrix(hist, g["run_id"].tolist(), kind) for kind in HEAT_KINDS}
        for level, g in runs.groupby("level", sort=False)
    }
    mats = {level: mats[level] for level in lv if level in mats}
    fig = plots.layer_heatmaps(
        mats, title=f"{ctx.claim.id}: per-layer diagnostics", kinds=HEAT_KINDS
    )
    if fig is None:
        return "no per-layer history for the runs"
    cap = (
        "Layer x epoch, mean over the runs of each level "
        f"({_levels_note(runs)}): fraction of saturated hidden units (top) and log10 of the "
        "gradient norm of each layer's weights (bottom; layer 1 is next to the input)."
    )
    if left_out:
        cap += f" At most the {HEATMAP_RUNS} lowest seeds per level are averaged."
    return fig, cap


def _dead_units(ctx: ClaimContext) -> tuple[Any, str] | str:
    df = tables.dead_vs_lr(ctx.result, ctx.runs)
    if df.empty:
        return "no final_dead_frac / learning-rate values in the runs"
    fig = plots.dead_vs_lr(
        df,
        title=f"{ctx.claim.id}: dead units vs learning rate",
        hue_title=ctx.hue_title,
        order=ctx.order,
    )
    n_all = int(counting_mask(ctx.runs).sum())
    cap = (
        "Fraction of hidden units that output 0 on every training example at the end of "
        f"training; mean and 95% bootstrap CI over {len(df)} runs"
    )
    if n_all > len(df):
        cap += f" ({n_all - len(df)} finished runs without the metric, e.g. diverged, left out)"
    return fig, cap + "."


def _capacity(ctx: ClaimContext) -> tuple[Any, str] | str:
    df = tables.capacity(ctx.result, ctx.runs)
    if df.empty:
        return "no model.hidden_sizes with two or more sizes / final metrics in the runs"
    kind = (
        "loss" if any("loss" in (c.metric or "") for c in ctx.result.comparisons) else ("accuracy")
    )
    fig = plots.capacity(
        df, title=f"{ctx.claim.id}: capacity", ylabel=f"final {kind}", order=ctx.order
    )
    cap = (
        f"Final training and test {kind} vs model size, mean and 95% bootstrap CI over "
        f"{df['run_id'].nunique()} runs (widths at a fixed depth, depths at a fixed width)."
    )
    return fig, cap


def _success_rate(ctx: ClaimContext) -> tuple[Any, str] | str:
    df = tables.success_rates(ctx.result, ctx.runs)
    if df.empty:
        return "no success-rate comparison with runs"
    spec = next(
        (
            c.spec.success
            for c in ctx.result.comparisons
            if c.spec is not None and c.spec.success is not None
        ),
        None,
    )
    fig = plots.success_rate(
        df,
        title=f"{ctx.claim.id}: success rate",
        ylabel="success rate (fraction of runs)",
        hue_title=ctx.hue_title,
    )
    cap = (
        f"Share of runs with {md.md_escape(spec) if spec else 'success'}; error bars: 95% "
        "Wilson score intervals; k/n above each bar (a run missing the metric counts as a "
        "failure)."
    )
    return fig, cap


def config_of(params: dict[str, str]) -> dict:
    """A run's logged params (flat, as strings) -> the nested job config: values cast by
    :func:`fnnbench.report.data.cast_value`, JSON lists and mappings decoded."""
    cfg: dict = {}
    for key, raw in params.items():
        v = cast_value(raw)
        if isinstance(v, str) and v.startswith(("[", "{")):
            try:
                v = json.loads(v)
            except ValueError:
                pass
        node = cfg
        *path, leaf = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                break
        else:
            node[leaf] = v
    return cfg


def _training_points(client, run_id: str) -> tuple[np.ndarray, np.ndarray] | None:
    """The run's training split, rebuilt by fnnbench.data from its own logged params (the
    run's params only: the runs table fills params of other runs with None). No training."""
    try:
        from fnnbench.data import load_dataset
        from fnnbench.seeding import job_seeds

        cfg = config_of(client.get_run(run_id).data.params)
        data = load_dataset(cfg["dataset"], seed=job_seeds(cfg["seed"]).data)
        return data.X_train, data.y_train
    except Exception:  # noqa: BLE001 - the figure is still useful without the points
        return None


def _find_npz(client, run_id: str) -> str | None:
    stack = [None]
    while stack:
        path = stack.pop()
        for f in client.list_artifacts(run_id, path):
            if f.is_dir:
                stack.append(f.path)
            elif f.path.endswith("params.npz"):
                return f.path
    return None


def _decision_boundary(ctx: ClaimContext) -> tuple[Any, str] | str:
    from fnnbench.nn import MLP

    runs = ctx.plotted(unique=True)
    if not len(runs):
        return "no finished runs"
    if "params.seed" in runs.columns:
        runs = runs.assign(_s=pd.to_numeric(runs["params.seed"], errors="coerce"))
        runs = runs.sort_values("_s", kind="stable")
    picks = runs.groupby("level", sort=False).head(1)
    picks = picks.set_index("level").reindex(plots.hue_order(ctx.order, picks["level"]))
    panels, missing, not2d, no_points = [], 0, 0, 0
    with tempfile.TemporaryDirectory() as tmp, no_progress_bar():
        for level, row in picks.head(BOUNDARY_RUNS).iterrows():
            rid = str(row["run_id"])
            try:
                art = _find_npz(ctx.client, rid)
            except Exception:  # noqa: BLE001 - an unreachable artifact store: skip the run
                art = None
            if art is None:
                missing += 1
                continue
            local = ctx.client.download_artifacts(rid, art, dst_path=tmp)
            net = MLP.load(local)
            if net.sizes[0] != 2:
                not2d += 1
                continue
            pts = _training_points(ctx.client, rid)
            if pts is not None:
                X, y = pts
                lo, hi = X.min(axis=0) - 0.5, X.max(axis=0) + 0.5
            else:
                X = y = None
                no_points += 1
                lo, hi = np.array([-3.0, -3.0]), np.array([3.0, 3.0])
            xx, yy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
            grid = np.column_stack([xx.ravel(), yy.ravel()])
            proba = net.predict_proba(grid)
            multi = proba.shape[1] > 2
            zz = (proba.argmax(axis=1) if multi else proba[:, 1]).reshape(xx.shape)
            seed = row.get("params.seed")
            panels.append({
                "title": f"{level} (seed {seed}, run {md.short(rid)})",
                "xx": xx, "yy": yy, "zz": zz, "multiclass": multi, "X": X, "y": y,
            })  # fmt: skip
    if not panels:
        if not2d:
            return "the runs' inputs are not 2-D"
        return f"no params.npz artifact in the {missing} runs tried"
    fig = plots.decision_boundaries(panels, title=f"{ctx.claim.id}: decision boundaries")
    cap = (
        "Predicted probability of class 1 on a grid (black line: 0.5) for one run per level "
        "(lowest seed), from its saved parameters (params.npz artifact; nothing is trained)"
    )
    cap += "; points: its training split." if no_points < len(panels) else "."
    if no_points:
        cap += f" For {no_points} runs the training data could not be rebuilt from the params."
    if missing:
        cap += f" {missing} runs had no params.npz artifact."
    return fig, cap


FIGURES: dict[str, tuple[str, Callable[[ClaimContext], tuple[Any, str] | str]]] = {
    "learning_curves": ("Learning curves", _learning_curves),
    "time_to_target": ("Time to target", _time_to_target),
    "kaplan_meier": ("Runs at target over time (Kaplan-Meier)", _kaplan_meier),
    "ranking": ("Ranking", _ranking),
    "saturation": ("Saturation and gradient norms per layer", _saturation),
    "dead_units": ("Dead units vs learning rate", _dead_units),
    "decision_boundary": ("Decision boundaries", _decision_boundary),
    "capacity": ("Capacity", _capacity),
    "success_rate": ("Success rate", _success_rate),
}


def default_plots(claim: Claim) -> list[str]:
    """Plots for a claim without a ``plots`` list: curves, plus what its comparisons measure."""
    names = ["learning_curves"]
    if any((c.metric or "").endswith("_to_target") for c in claim.comparisons):
        names.append("time_to_target")
    if any(c.effect == "rate" for c in claim.comparisons):
        names.append("success_rate")
    return names


def with_survival(claim: Claim, names: list[str]) -> list[str]:
    """``names`` plus the Kaplan-Meier figure when a ratio/difference comparison is censored
    (every such page shows the share of runs at target over time)."""
    censored = any(c.censor is not None and c.effect != "rate" for c in claim.comparisons)
    if censored and "kaplan_meier" not in names:
        at = names.index("time_to_target") + 1 if "time_to_target" in names else len(names)
        return [*names[:at], "kaplan_meier", *names[at:]]
    return names


def is_activation_claim(claim: Claim) -> bool:
    return "activations" in claim.plots or claim.factor == "activation.name"


def _observed(runs: pd.DataFrame) -> dict[str, str]:
    """What the runs themselves say about the protocol (escaped text)."""
    out: dict[str, str] = {}

    def values(col: str) -> list:
        if col not in runs.columns:
            return []
        v = [x for x in runs[col].tolist() if x is not None]
        return sorted(
            set(v),
            key=lambda x: (
                not isinstance(x, (int, float)),
                str(x) if not isinstance(x, (int, float)) else x,
            ),
        )

    seeds = [s for s in values("params.seed") if isinstance(s, int)]
    if seeds:
        span = (
            f"{seeds[0]}..{seeds[-1]}"
            if seeds == list(range(seeds[0], seeds[-1] + 1))
            else ", ".join(map(str, seeds[:20])) + (" ..." if len(seeds) > 20 else "")
        )
        out["seeds"] = f"{md.md_escape(span)} ({len(seeds)} seeds)"
    for label, col in (
        ("epoch budget (train.epochs)", "params.train.epochs"),
        ("target (train.target)", "params.train.target"),
        ("target metric", "params.train.target_metric"),
        ("dataset", "params.dataset.name"),
        ("hidden sizes", "params.model.hidden_sizes"),
        ("optimizer", "params.optimizer.name"),
    ):
        v = values(col)
        if v:
            shown = ", ".join(tables.fmt_value(x) for x in v[:12]) + (" ..." if len(v) > 12 else "")
            out[label] = md.md_escape(shown)
    commits = values("tags.mlflow.source.git.commit")
    if commits:
        out["code (git commit of the runs)"] = md.md_escape(", ".join(c[:10] for c in commits))
    hosts = values("tags.fnnbench.host")
    if hosts:
        out["host"] = md.md_escape("; ".join(hosts[:3]))
    return out


def _failed(runs: pd.DataFrame) -> list[tuple[str, str]]:
    f = runs[runs["status"] == "FAILED"] if "status" in runs.columns else runs.iloc[0:0]
    err = f.get("tags.fnnbench.error", pd.Series(None, index=f.index))
    out = []
    for rid, e in zip(f["run_id"], err, strict=True):
        text = str(e).strip().splitlines()[0][:160] if e else "(no fnnbench.error tag)"
        out.append((str(rid), text))
    return out


def render_claim(
    claim: Claim,
    runs: pd.DataFrame,
    out: Path,
    *,
    client,
    store: str,
    seed: int = 0,
    activations: bool = False,
    log: Callable[[str], None] | None = None,
    stale: list[tuple[str, str]] | None = None,
    parents: pd.DataFrame | None = None,
) -> tuple[ClaimResult, Path, list[Path]]:
    """Evaluate one claim on its runs, draw its figures, write ``<out>/<id>.md``.

    ``runs``: the claim's current runs (made with today's claim file); ``stale``: (run id,
    why) of the tagged runs left out; ``parents``: the claim's sweep parent runs (cost)."""
    name = md.page_name(claim.id)
    result = judge_claim(claim, runs, seed=seed)
    counts = count_runs(runs)
    used = tables.used_runs(result, runs)
    order = list(dict.fromkeys(used["level"].tolist()))
    cache: dict[tuple, pd.DataFrame] = {}

    def history(run_ids: Sequence[str], keys: Sequence[str], points: int | None) -> pd.DataFrame:
        k = (tuple(run_ids), tuple(keys), points)
        if k not in cache:
            cache[k] = fetch_histories(client, run_ids, keys, points)
        return cache[k]

    ctx = ClaimContext(claim, result, runs, used, order, history, client)
    if not order and len(runs):
        ctx.order = list(dict.fromkeys(ctx.plotted()["level"].tolist()))
    figures, skipped, images = [], [], []
    wanted = with_survival(claim, list(claim.plots or default_plots(claim)))
    for pname in wanted:
        if pname == "activations":
            continue
        if pname not in FIGURES:
            known = ", ".join([*FIGURES, "activations"])
            skipped.append(f"{md.md_escape(pname)}: unknown plot (known: {known})")
            continue
        heading, fn = FIGURES[pname]
        if counts.total == 0:
            skipped.append(f"{heading}: no runs")
            continue
        _draw(fn, ctx, pname, heading, f"{IMG}/{name}-{pname}.png", out,
              (figures, skipped, images), log, claim.id)
    used_ids = set(used["run_id"]) if len(used) else set()
    counting = runs[counting_mask(runs)] if len(runs) else runs
    unused = int((~counting["run_id"].isin(used_ids)).sum()) if len(counting) else 0
    page = md.ClaimPage(
        result=result,
        store=store,
        counts=counts,
        figures=figures,
        skipped=skipped,
        observed=_observed(runs),
        failed=_failed(runs),
        unused=unused,
        activations=ACTIVATIONS_PNG if activations else None,
        stale=list(stale or []),
        cost=cost_text(runs, parents),
    )
    path = out / f"{name}.md"
    path.write_text(md.claim_page(page), encoding="utf-8")
    return result, path, images


# ----------------------------------------------------------------------------- per sweep


@dataclass
class SweepContext:
    """The data one sweep page's figures are drawn from."""

    sweep: Sweep
    labels: pd.Series  # the setting of each job (index of sweep.runs)
    order: list[str]  # settings in the order the sweep ran them
    hue_title: str
    history: Callable[[Sequence[str], Sequence[str], int | None], pd.DataFrame]
    target: float | None  # train.target when one target on train_loss was set

    @functools.cached_property
    def finished(self) -> pd.DataFrame:
        r = self.sweep.runs
        return r[counting_mask(r)] if len(r) else r

    @functools.cached_property
    def time_to_target(self) -> pd.DataFrame:
        """Epochs to target per finished run (unreached: at its budget, censored)."""
        fin = self.finished
        t = tables.ttt_values(fin)
        return t.assign(
            metric="epochs_to_target",
            group="",
            primary=True,
            level=self.labels.reindex(fin.index).astype(str).to_numpy(),
        )


SWEEP_CURVES = (  # (metric, y label): the panels of a sweep's learning curves
    ("train_loss", "training loss (mean over runs)"),
    ("test_acc", "test accuracy (mean over runs)"),
)


def _sweep_curves(ctx: SweepContext) -> tuple[Any, str] | str:
    runs = ctx.finished
    if not len(runs):
        return "no finished runs"
    div = (runs.get(tn.column(tn.TAG_OUTCOME), pd.Series(None, index=runs.index))
           == tn.DIVERGED).to_numpy(dtype=bool)  # fmt: skip
    ok = runs[~div].assign(level=ctx.labels.reindex(runs.index)[~div].astype(str).to_numpy())
    ok, left_out = _cap(ok, ["level"], CURVE_RUNS)
    keys = [k for k, _ in SWEEP_CURVES]
    hist = ctx.history(list(dict.fromkeys(ok["run_id"])), keys, CURVE_POINTS)
    panels, ylabels, targets = [], [], []
    for key, ylabel in SWEEP_CURVES:
        df, logx = curve_table(hist, ok, key, "epoch")
        if len(df):
            df = df.merge(ok[["run_id", "level"]], on="run_id")
            panels.append((df, X_AXES["epoch"][0], logx, ""))
            ylabels.append(ylabel)
            targets.append(ctx.target if key == "train_loss" else None)
    fig = plots.learning_curves(
        panels,
        title=f"sweep {ctx.sweep.short}: learning curves",
        ylabel="",
        ylabels=ylabels,
        targets=targets,
        hue_title=ctx.hue_title,
        order=ctx.order,
    )
    if fig is None:
        return "no train_loss / test_acc history for the runs"
    n_runs = ok.drop_duplicates("run_id").groupby("level", sort=False)["run_id"].size()
    n_runs = n_runs.reindex([k for k in ctx.order if k in n_runs.index])
    cap = (
        "Per setting, training loss and test accuracy by epoch (MLflow metric histories); "
        "line: mean over runs, band: 95% bootstrap CI of the mean (runs per setting: "
        + ", ".join(f"{md.md_escape(k)} {v}" for k, v in n_runs.items())
        + ")."
    )
    if ctx.target is not None:
        cap += f" Dashed line: the target ({md.md_escape('train_loss')} {md.fmt_num(ctx.target)})."
    if div.any():
        cap += f" {int(div.sum())} diverged runs are left out of the curves (counted above)."
    if left_out:
        cap += f" Curves show the {CURVE_RUNS} lowest seeds per setting ({left_out} more runs)."
    return fig, cap


def _sweep_ttt(ctx: SweepContext) -> tuple[Any, str] | str:
    df = ctx.time_to_target
    if df.empty:
        return "no finished runs"
    fig = plots.time_to_target(
        df, title=f"sweep {ctx.sweep.short}: epochs to target", hue_title=ctx.hue_title,
        order=ctx.order,
    )  # fmt: skip
    if fig is None:
        return "no time-to-target values (no epochs_to_target and no budget)"
    n_c = int(df["censored"].sum())
    cap = (
        "Epochs to target per finished run and setting; box: quartiles. "
        f"{n_c} runs never reached the target (or diverged): red crosses at their epoch "
        "budget, the value the table counts them at."
    )
    return fig, cap


def _sweep_km(ctx: SweepContext) -> tuple[Any, str] | str:
    df = tables.kaplan_meier(ctx.time_to_target)
    if df.empty:
        return "no finished runs"
    fig = plots.kaplan_meier(
        df, title=f"sweep {ctx.sweep.short}: runs at target", hue_title=ctx.hue_title,
        order=ctx.order,
    )  # fmt: skip
    if fig is None:
        return "no time-to-target values"
    cap = (
        "Kaplan-Meier estimate of the share of runs that reached the target by each epoch "
        "(scipy.stats.ecdf on censored data: a run that never reached it leaves the risk set "
        "at its budget); k/n in the legend: runs that reached the target."
    )
    return fig, cap


SWEEP_FIGURES: dict[str, tuple[str, Callable[[SweepContext], tuple[Any, str] | str]]] = {
    "learning_curves": ("Learning curves", _sweep_curves),
    "time_to_target": ("Time to target", _sweep_ttt),
    "kaplan_meier": ("Runs at target over time (Kaplan-Meier)", _sweep_km),
}


def _when(t: Any) -> str:
    if t is None or pd.isna(t):
        return "unknown"
    return pd.Timestamp(t).tz_convert("UTC").strftime("%Y-%m-%d %H:%M UTC")


def _target(runs: pd.DataFrame) -> tuple[str | None, float | None]:
    """The target text of a sweep's runs (None: no target set), and the train_loss target to
    draw on the curves (a single value on train_loss, else None)."""
    if "params.train.target" not in runs.columns or not len(runs):
        return None, None
    t = pd.to_numeric(runs["params.train.target"], errors="coerce").dropna().unique()
    if not len(t):
        return None, None
    tm = runs.get("params.train.target_metric", pd.Series("train_loss", index=runs.index))
    metrics = sorted({str(m) for m in tm.dropna()}) or ["train_loss"]
    text = f"{' / '.join(metrics)} <= " + ", ".join(md.fmt_num(x) for x in sorted(t))
    drawn = float(t[0]) if len(t) == 1 and metrics == ["train_loss"] else None
    return text, drawn


def render_sweep(
    sweep: Sweep,
    out: Path,
    *,
    client,
    store: str,
    stem: str,
    experiment: str = "",
    log: Callable[[str], None] | None = None,
) -> tuple[Path, list[Path]]:
    """Write ``<out>/<stem>.md`` for one sweep (without a claim, or with a claim that has no
    claim file): swept keys, final metrics per setting (median and 95% order-statistic CI
    over seeds), learning curves by setting, time to target where a target was set, the
    command and the run ids. Returns the page and its images."""
    runs = sweep.runs
    labels, order = setting_labels(sweep)
    keys = [k for k, _ in setting_columns(sweep)]
    cache: dict[tuple, pd.DataFrame] = {}

    def history(run_ids: Sequence[str], hkeys: Sequence[str], points: int | None) -> pd.DataFrame:
        k = (tuple(run_ids), tuple(hkeys), points)
        if k not in cache:
            cache[k] = fetch_histories(client, run_ids, hkeys, points)
        return cache[k]

    target_text, target_line = _target(runs)
    ctx = SweepContext(
        sweep, labels, order, ", ".join(keys) or "setting", history, target_line
    )
    table = tables.sweep_table(runs, labels, order, target=target_text is not None)
    metrics = [
        (m, label)
        for m, label in tables.SWEEP_METRICS
        if len(table) and (table[f"{m}.n"] > 0).any()
    ]
    wanted = ["learning_curves"]
    if target_text is not None:
        wanted += ["time_to_target"]
        if len(ctx.time_to_target) and ctx.time_to_target["censored"].any():
            wanted += ["kaplan_meier"]
    figures, skipped, images = [], [], []
    for pname in wanted:
        heading, fn = SWEEP_FIGURES[pname]
        if not len(runs):
            skipped.append(f"{heading}: no runs")
            continue
        _draw(fn, ctx, pname, heading, f"{IMG}/{stem}-{pname}.png", out,
              (figures, skipped, images), log, f"sweep {sweep.short}")
    reused = set(sweep.reused)
    listed = []
    seeds = runs.get("params.seed", pd.Series(None, index=runs.index))
    outcome = runs.get(tn.column(tn.TAG_OUTCOME), pd.Series(None, index=runs.index))
    rank = {k: i for i, k in enumerate(order)}
    for idx in sorted(
        runs.index,
        key=lambda i: (rank.get(str(labels[i]), 0), str(tables.fmt_value(seeds[i]))),
    ):
        rid = str(runs.at[idx, "run_id"])
        how = str(runs.at[idx, "status"])
        if isinstance(outcome[idx], str):
            how += f", {outcome[idx]}"
        if rid in reused:
            how += ", reused from an earlier sweep"
        listed.append((str(labels[idx]), tables.fmt_value(seeds[idx]), rid, how))
    page = md.SweepPage(
        run_id=sweep.run_id,
        name=sweep.name,
        store=store,
        experiment=experiment or sweep.experiment_id,
        started=_when(sweep.start_time),
        status=sweep.status,
        swept=sweep.swept,
        fixed=sweep.fixed,
        keys=sweep.keys,
        keys_source=sweep.source,
        setting_keys=keys,
        command=sweep.command,
        counts=count_runs(runs),
        table=table,
        seeds_swept=seeds_swept(sweep),
        metrics=metrics,
        target=target_text,
        claim=sweep.claim,
        observed=_observed(runs),
        figures=figures,
        skipped=skipped,
        runs=listed,
        failed=_failed(runs),
        reused=len(reused),
        cost=cost_text(runs, sweep.parent),
    )
    path = out / f"{stem}.md"
    path.write_text(md.sweep_page(page), encoding="utf-8")
    return path, images


# ----------------------------------------------------------------------------- stale runs, cost


def split_stale(runs: pd.DataFrame, sha256: str | None) -> tuple[pd.DataFrame, list]:
    """The runs made with today's claim file (tag ``fnnbench.sweep_sha256`` == ``sha256``),
    and (run id, why) of the others. ``sha256`` None (a claim without a file): all current."""
    if sha256 is None or not len(runs):
        return runs, []
    tag = runs.get(tn.column(tn.TAG_SWEEP_SHA256), pd.Series(None, index=runs.index))
    current = (tag == sha256).to_numpy(dtype=bool)
    stale = []
    for rid, t in zip(runs["run_id"][~current], tag[~current], strict=True):
        if t is None or (isinstance(t, float) and np.isnan(t)):
            why = md.PRE_PROVENANCE
        else:
            why = f"made with another version of the claim file (sha256 {str(t)[:12]})"
        stale.append((str(rid), why))
    return runs[current], stale


def _minutes(frame: pd.DataFrame) -> float:
    if not len(frame) or "start_time" not in frame.columns or "end_time" not in frame.columns:
        return float("nan")
    d = pd.to_datetime(frame["end_time"], utc=True) - pd.to_datetime(frame["start_time"], utc=True)
    d = d.dropna()
    return float(d.dt.total_seconds().sum() / 60.0) if len(d) else float("nan")


def cost_text(runs: pd.DataFrame, parents: pd.DataFrame | None) -> str:
    """What the sweep cost: jobs and minutes of run time (sum of end - start over the jobs),
    and the wall span of its sweep parent runs when there are any."""
    if not len(runs):
        return ""
    mins = _minutes(runs)
    text = f"Cost: {len(runs)} jobs"
    text += f", {mins:.1f} minutes of run time (sum over the jobs)" if mins == mins else ""
    if parents is not None and len(parents):
        span = _minutes(parents)
        if span == span:
            text += f"; wall time of the sweep {span:.1f} minutes ({len(parents)} parent runs)"
    return text + "."


def verdict_records(result: ClaimResult) -> list[dict[str, Any]]:
    """The rows of verdicts.json for one claim: one object per comparison."""

    def num(x: float | None) -> float | None:
        return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)

    rows = []
    for c in result.comparisons:
        ci: list | None = None
        if not (np.isnan(c.ci_low) or np.isnan(c.ci_high)):
            ci = [
                None if c.bound == "<=" else num(c.ci_low),
                None if c.bound == ">=" else num(c.ci_high),
            ]
        rows.append(
            {
                "claim": result.claim.id,
                "comparison": c.label,
                "primary": bool(c.primary),
                "metric": c.metric,
                "effect": num(c.effect) if np.isfinite(c.effect) else None,
                "ci": ci,
                "bound": c.bound,
                "verdict": c.verdict,
                "n": [int(c.a.n), int(c.b.n)],
                "published": num(c.published),
                "published_in_ci": c.published_in_ci,
                "claim_verdict": result.verdict,
                "sweep_sha256": result.claim.sha256,
            }
        )
    return rows


# ----------------------------------------------------------------------------- provenance


def _git_commit() -> str:
    sha = git_commit()
    if sha is None:
        return "unknown (not a git checkout)"
    return sha[:12] + (" (with uncommitted changes)" if git_dirty() else "")


def _blas() -> str:
    try:
        from threadpoolctl import threadpool_info

        infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    except Exception:  # noqa: BLE001 - provenance is best effort
        return "unknown"
    return (
        "; ".join(
            f"{i.get('internal_api')} {i.get('version')} ({i.get('num_threads')} threads, "
            f"{i.get('architecture', '?')})"
            for i in infos
        )
        or "none found"
    )


def provenance(
    store: str,
    experiments: Sequence[str],
    jobs: pd.DataFrame,
    n_parents: int,
    unknown_claims: dict[str, int],
) -> dict[str, str]:
    """Provenance rows for the index (values escaped)."""
    counts = count_runs(jobs)
    versions = []
    for pkg in ("fnnbench", *VERSIONS):
        try:
            versions.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            continue
    commits = (
        sorted({c for c in jobs.get(tn.column(tn.TAG_GIT_COMMIT), pd.Series()) if c})
        if len(jobs)
        else []
    )
    outcome = " · ".join(f"{k} {v}" for k, v in sorted(counts.outcomes.items())) or "none"
    rows = {
        "generated": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "report code (git commit)": _git_commit(),
        "MLflow store": tn.tracking_uri(store),
        "experiments read": ", ".join(experiments) or "none",
        "runs (jobs)": f"{counts.total} ({counts.finished} finished: {outcome})",
        "failed runs": str(counts.failed),
        "diverged runs": str(counts.diverged),
        "other statuses": ", ".join(f"{v} {k}" for k, v in counts.other.items()) or "none",
        "sweep parent runs": str(n_parents),
        "runs' git commits": ", ".join(c[:10] for c in commits[:8]) or "unknown",
        "python": sys.version.split()[0],
        "packages": ", ".join(versions),
        "machine": f"{platform.platform()}, {os.cpu_count()} cores",
        "BLAS": _blas(),
    }
    if unknown_claims:
        rows["runs tagged with claims not in sweeps/"] = ", ".join(
            f"{k} ({v})" for k, v in sorted(unknown_claims.items())
        )
    return {md.md_escape(k): md.md_escape(v) for k, v in rows.items()}


# ----------------------------------------------------------------------------- the report


def write_activations(out: Path) -> Path:
    """img/activations.png: f and f' of every hidden unit of fnnbench.nn (written once)."""
    df = tables.activation_curves(np.linspace(-4.0, 4.0, 801))
    return plots.save(plots.activations(df), out / ACTIVATIONS_PNG)


def build_report(
    tracking_uri: str | None = None,
    experiments: Sequence[str] | None = None,
    claim_ids: Sequence[str] | None = None,
    sweeps_dir: str | Path = SWEEPS_DIR,
    out: str | Path = "reports",
    *,
    sweep: str | None = None,
    last: bool = False,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> ReportSummary:
    """Read the runs, judge every claim with runs, write a page per sweep without a claim,
    then the index; see the module doc.

    ``sweep`` (a parent run id, or a unique prefix of one) / ``last`` (the sweep started
    last): only that sweep -- its claim's page when it is a claim sweep, else its sweep page.
    Nothing is written when an argument is wrong: ``fnnbench.report.data.ReportError``
    (missing store or experiment, unknown sweep, no sweep for ``last``) and ValueError (bad
    claim files, unknown claim id, conflicting selections) carry one-line messages, and every
    file is rendered in a temporary folder next to ``out`` and moved into ``out`` at the end.
    """
    log = log or (lambda s: None)
    out = Path(out)
    if sweep is not None and last:
        raise ValueError("--sweep and --last: give one of them")
    if claim_ids and (sweep is not None or last):
        raise ValueError("--claims cannot be combined with --sweep or --last")
    every_claim = load_claims(sweeps_dir)
    claims = load_claims(sweeps_dir, list(claim_ids)) if claim_ids else every_claim
    known = {c.id for c in every_claim}
    store = tn.tracking_uri(tracking_uri)
    client = connect(store)
    exps = find_experiments(client, experiments)
    exp_names = {e.experiment_id: e.name for e in exps}
    all_runs = load_runs(client, [e.experiment_id for e in exps])
    jobs = job_runs(all_runs)
    sweeps = find_sweeps(all_runs)
    where = store + (f" (experiments {', '.join(e.name for e in exps)})" if experiments else "")
    chosen: Sweep | None = None
    if sweep is not None:
        chosen = select_sweep(sweeps, all_runs, sweep, where)
    elif last:
        chosen = last_sweep(sweeps, where)

    def plain(s: Sweep) -> bool:  # reported on a sweep page, not a claim page
        return s.claim is None or s.claim not in known

    if chosen is not None:
        claims = [c for c in every_claim if not plain(chosen) and c.id == chosen.claim]
        listed = [chosen]
        scope = chosen.runs
        if claims:
            scope = pd.concat([scope, claim_runs(jobs, claims[0].id)])
            scope = scope[~scope["run_id"].duplicated()]
        n_parents = 1
    else:
        ids = {c.id for c in claims}
        listed = [s for s in sweeps if (s.claim in ids if claim_ids else True)]
        scope = jobs
        n_parents = len(all_runs) - len(jobs)
    stems = page_stems(sweeps)

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        summary = _render(
            stage, claims, listed, stems, scope, all_runs, jobs, known, n_parents,
            client=client, store=store, exps=exps, exp_names=exp_names, chosen=chosen,
            seed=seed, log=log,
        )  # fmt: skip
        moved = _publish(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return summary.moved(stage, out, moved)


def _render(
    stage: Path,
    claims: list[Claim],
    listed: list[Sweep],
    stems: dict[str, str],
    scope: pd.DataFrame,
    all_runs: pd.DataFrame,
    jobs: pd.DataFrame,
    known: set[str],
    n_parents: int,
    *,
    client,
    store: str,
    exps: list,
    exp_names: dict[str, str],
    chosen: Sweep | None,
    seed: int,
    log: Callable[[str], None],
) -> ReportSummary:
    """Every page, figure and the index into ``stage`` (see :func:`build_report`)."""
    (stage / IMG).mkdir(parents=True, exist_ok=True)
    images: list[Path] = []
    entries, verdicts, pages, not_run = [], {}, {}, []
    results, records = [], []
    parent_runs = all_runs.iloc[0:0] if not len(all_runs) else all_runs.drop(jobs.index)
    wrote_activations = False
    for claim in claims:
        tagged = claim_runs(jobs, claim.id)
        runs, stale = split_stale(tagged, claim.sha256)
        if not len(tagged):  # never run: no page, one line in the index
            result = judge_claim(claim, runs, seed=seed)
            verdicts[claim.id] = result.verdict
            results.append(result)
            records += verdict_records(result)
            not_run.append(claim)
            log(f"{claim.id}: not run")
            continue
        parents = parent_runs[
            (parent_runs.get(tn.column(tn.TAG_CLAIM), pd.Series(None, index=parent_runs.index))
             == claim.id).to_numpy(dtype=bool)
        ] if len(parent_runs) else None  # fmt: skip
        activations = is_activation_claim(claim)
        if activations and not wrote_activations:
            images.append(write_activations(stage))
            wrote_activations = True
        result, path, imgs = render_claim(
            claim,
            runs,
            stage,
            client=client,
            store=store,
            seed=seed,
            activations=activations,
            log=log,
            stale=stale,
            parents=parents,
        )
        images += imgs
        verdicts[claim.id], pages[claim.id] = result.verdict, path
        results.append(result)
        records += verdict_records(result)
        entries.append(md.IndexEntry(result, path.name, len(runs), len(stale)))
        extra = f", {len(stale)} stale" if stale else ""
        log(f"{claim.id}: {result.verdict} ({len(runs)} runs{extra}) -> {path.name}")
    if entries and not wrote_activations:
        images.append(write_activations(stage))  # the index shows it
    sweep_pages: dict[str, Path] = {}
    index_rows = []
    for s in reversed(listed):  # newest first
        c = count_runs(s.runs)
        link = None
        if s.claim is not None and s.claim in known:
            link = pages[s.claim].name if s.claim in pages else None
        else:
            path, imgs = render_sweep(
                s, stage, client=client, store=store, stem=stems[s.run_id],
                experiment=exp_names.get(s.experiment_id, s.experiment_id), log=log,
            )  # fmt: skip
            images += imgs
            sweep_pages[s.run_id] = path
            link = path.name
            log(f"sweep {s.short} ({s.title}): {c.total} jobs -> {path.name}")
        index_rows.append(
            md.SweepEntry(
                run_id=s.run_id, title=s.title, page=link, started=_when(s.start_time),
                n_jobs=c.total, finished=c.finished, failed=c.failed, claim=s.claim,
            )
        )  # fmt: skip
    tagged = scope.get(tn.column(tn.TAG_CLAIM), pd.Series(dtype=object)).dropna()
    unknown = {str(k): int(v) for k, v in tagged[~tagged.isin(known)].value_counts().items()}
    prov = provenance(store, [e.name for e in exps], scope, n_parents, unknown)
    if chosen is not None:
        prov[md.md_escape("selection")] = md.md_escape(f"one sweep: {chosen.run_id}")
    index = md.index_page(
        entries,
        prov,
        ACTIVATIONS_PNG if entries else None,
        sweeps=index_rows,
        not_run=not_run,
    )
    (stage / "README.md").write_text(index, encoding="utf-8")
    verdicts_json = stage / "verdicts.json"
    verdicts_json.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    counts = count_runs(scope)
    return ReportSummary(
        out=stage,
        verdicts=verdicts,
        pages=pages,
        n_runs=counts.total,
        n_failed=counts.failed,
        n_diverged=counts.diverged,
        images=images,
        results=results,
        verdicts_json=verdicts_json,
        sweeps=sweep_pages,
        not_run=[c.id for c in not_run],
        selected=chosen.run_id if chosen is not None else None,
    )


def _publish(stage: Path, out: Path) -> list[Path]:
    """Move every file rendered in ``stage`` into ``out`` (same file system: ``os.replace``),
    replacing files of the same name and leaving other files of ``out`` alone."""
    moved = []
    for src in sorted(p for p in stage.rglob("*") if p.is_file()):
        dst = out / src.relative_to(stage)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        moved.append(dst)
    return moved


def write_readme(path: str | Path, results: Sequence[ClaimResult]) -> Path:
    """Rewrite the block between ``<!-- verdicts:start -->`` and ``<!-- verdicts:end -->`` of
    the README at ``path`` with one row per primary comparison of ``results`` (ValueError
    naming the file when the markers are missing)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"{path}: cannot read: {err.strerror}") from err
    try:
        new = md.replace_readme_block(text, md.readme_table(results))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    path.write_text(new, encoding="utf-8")
    return path


def _draw(fn, ctx, pname: str, heading: str, rel: str, out: Path, lists: tuple[list, list, list],
          log, who: str) -> None:
    """Draw one figure of a page into ``out / rel``: a FigureRef into ``figures``, or why not
    into ``skipped`` (a figure function returns a reason, or raises: one odd figure never sinks
    the report); the PNG path into ``images``."""
    figures, skipped, images = lists
    try:
        got = fn(ctx)
        if isinstance(got, str):
            skipped.append(f"{heading}: {got}")
            return
        fig, caption = got
        images.append(plots.save(fig, out / rel))
    except Exception as err:  # noqa: BLE001 - one odd figure must not sink the report
        plots.close_all()
        msg = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        skipped.append(f"{heading}: could not be drawn ({md.md_escape(msg)})")
        if log is not None:
            log(f"{who}: {pname} not drawn: {msg}")
        return
    figures.append(md.FigureRef(pname, rel, heading, caption))
