"""Figures: tidy tables (from :mod:`fnnbench.report.tables`) -> seaborn plots -> PNG.

Drawing only: every function takes the numbers already computed and returns a matplotlib
``Figure`` (or None when there is nothing to draw); :func:`save` writes it as a small PNG
(dpi 100) and closes it. The backend is Agg (no display needed). Every figure has a title,
labelled axes with units and a legend naming the claim's factor.

Seed bands are the mean over runs and its 95% percentile-bootstrap CI
(:func:`fnnbench.report.data.mean_ci`, seaborn's ``errorbar=("ci", 95)`` vectorised).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from fnnbench.report.data import mean_ci  # noqa: E402

DPI = 100
STYLE = "whitegrid"
CENSORED_COLOR = "crimson"
MAX_LEVELS_HEATMAP = 4

METRIC_LABELS = {
    "train_loss": "training loss",
    "val_loss": "validation loss",
    "test_loss": "test loss",
    "train_acc": "training accuracy",
    "test_acc": "test accuracy",
    "epochs_to_target": "epochs to target (epochs)",
    "updates_to_target": "updates to target (parameter updates)",
    "examples_to_target": "examples to target (examples seen)",
    "seconds_to_target": "time to target (s)",
    "final_train_loss": "final training loss",
    "final_test_acc": "final test accuracy",
    "final_train_acc": "final training accuracy",
}


def metric_label(name: str) -> str:
    return METRIC_LABELS.get(name, name.replace("_", " "))


def _band(seed: int = 0):
    """An errorbar callable for seaborn: the 95% bootstrap CI of the mean, reproducible."""
    rng = np.random.default_rng(seed)
    return lambda v: mean_ci(v, rng=rng)


def save(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as PNG (dpi 100, tight box) to ``path`` and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def close_all() -> None:
    """Close every open figure (after a drawing error)."""
    plt.close("all")


def _spread(v: np.ndarray) -> float:
    v = v[np.isfinite(v) & (v > 0)]
    return float(v.max() / v.min()) if v.size else 1.0


def hue_order(order: Sequence[str], present) -> list[str]:
    """The levels present, in ``order`` first (the claim's arms), then the rest sorted."""
    present = [str(p) for p in dict.fromkeys(present)]
    first = [o for o in order if o in present]
    return first + sorted(set(present) - set(first))


def _legend(ax, title: str | None) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, title=title, fontsize="small", title_fontsize="small")


# ----------------------------------------------------------------------------- curves


def _grid(n: int, width: float, height: float, ncols: int = 3):
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width * ncols + 0.6, height * nrows), squeeze=False
    )
    for ax in axes.ravel()[n:]:
        ax.set_axis_off()
    return fig, axes.ravel()[:n]


def learning_curves(
    panels: Sequence[tuple[pd.DataFrame, str, bool, str]],
    *,
    title: str,
    ylabel: str,
    hue_title: str | None,
    order: Sequence[str],
    target: float | None = None,
    ylabels: Sequence[str] | None = None,
    targets: Sequence[float | None] | None = None,
) -> Figure | None:
    """One axes per (x axis, group): mean curve and 95% CI band per level.

    ``panels``: (DataFrame ``level, x, value``, x label with unit, log x, panel title). The y
    axis is logarithmic when the values span more than a factor 30. ``target`` draws a
    dashed line. ``ylabels`` / ``targets``: per panel, instead of ``ylabel`` / ``target``
    (panels of different metrics).
    """
    keep = [i for i, p in enumerate(panels) if len(p[0])]
    if not keep:
        return None
    ylabs = [ylabels[i] if ylabels is not None else ylabel for i in keep]
    tgts = [targets[i] if targets is not None else target for i in keep]
    panels = [panels[i] for i in keep]
    with sns.axes_style(STYLE):
        fig, axes = _grid(len(panels), 4.6, 3.8)
        for i, (ax, (df, xlabel, logx, sub)) in enumerate(zip(axes, panels, strict=True)):
            ylabel, target = ylabs[i], tgts[i]
            sns.lineplot(
                data=df,
                x="x",
                y="value",
                hue="level",
                hue_order=hue_order(order, df["level"]),
                estimator="mean",
                errorbar=_band(i),
                ax=ax,
                linewidth=1.4,
            )
            if logx:
                ax.set_xscale("log")
            vals = df["value"].to_numpy(dtype=float)
            if _spread(vals) > 30 and (vals[np.isfinite(vals)] > 0).all():
                ax.set_yscale("log")
            if target is not None:
                ax.axhline(target, ls="--", color="0.3", lw=1, label="target")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            if sub:
                ax.set_title(sub, fontsize="medium")
            _legend(ax, hue_title)
        fig.suptitle(title)
        fig.tight_layout()
    return fig


def time_to_target(
    df: pd.DataFrame,
    *,
    title: str,
    hue_title: str | None,
    order: Sequence[str],
    max_panels: int = 6,
) -> Figure | None:
    """Box plot per level for each (metric, group); runs shown as points, censored runs
    (never reached the target, or diverged) as red crosses at their budget."""
    df = df[np.isfinite(df["value"].to_numpy(dtype=float))]
    if df.empty:
        return None
    keys = list(dict.fromkeys(zip(df["metric"], df["group"], strict=True)))[:max_panels]
    with sns.axes_style(STYLE):
        fig, axes = _grid(len(keys), 4.4, 4.0)
        for ax, (metric, group) in zip(axes, keys, strict=True):
            d = df[(df["metric"] == metric) & (df["group"] == group)]
            lv = hue_order(order, d["level"])
            with warnings.catch_warnings():
                # seaborn 0.13.2 passes vert= to Axes.bxp, deprecated in matplotlib 3.11
                # (fixed upstream in seaborn PR #3820, not released yet)
                warnings.filterwarnings("ignore", message="vert: bool")
                sns.boxplot(
                    data=d,
                    x="level",
                    y="value",
                    order=lv,
                    color="0.9",
                    showfliers=False,
                    width=0.5,
                    ax=ax,
                )
            reached, cens = d[~d["censored"]], d[d["censored"]]
            if len(reached):
                sns.stripplot(
                    data=reached,
                    x="level",
                    y="value",
                    order=lv,
                    color="tab:blue",
                    size=4,
                    jitter=0.15,
                    alpha=0.8,
                    ax=ax,
                )
            if len(cens):
                sns.stripplot(
                    data=cens,
                    x="level",
                    y="value",
                    order=lv,
                    color=CENSORED_COLOR,
                    marker="X",
                    size=6,
                    jitter=0.15,
                    ax=ax,
                )
            if _spread(d["value"].to_numpy(dtype=float)) > 30 and (d["value"] > 0).all():
                ax.set_yscale("log")
            ax.set_xlabel(hue_title or "")
            ax.set_ylabel(metric_label(metric))
            if group:
                ax.set_title(group, fontsize="medium")
            ax.tick_params(axis="x", labelrotation=20)
            handles = [
                Line2D([], [], ls="", marker="o", color="tab:blue", label="reached target"),
                Line2D([], [], ls="", marker="X", color=CENSORED_COLOR, label="censored at budget"),
            ]
            ax.legend(handles=handles, fontsize="small", loc="best")
        fig.suptitle(title)
        fig.tight_layout()
    return fig


def kaplan_meier(
    df: pd.DataFrame,
    *,
    title: str,
    hue_title: str | None,
    order: Sequence[str],
    max_panels: int = 6,
) -> Figure | None:
    """Step curves of the share of runs that reached the target by time t (Kaplan-Meier,
    censored runs leave the risk set at their budget), one panel per (metric, group)."""
    if df.empty:
        return None
    keys = list(dict.fromkeys(zip(df["metric"], df["group"], strict=True)))[:max_panels]
    palette = sns.color_palette("colorblind", max(3, len(order) or 3))
    colour = {lv: palette[i % len(palette)] for i, lv in enumerate(order)}
    with sns.axes_style(STYLE):
        fig, axes = _grid(len(keys), 4.4, 3.6)
        for ax, (metric, group) in zip(axes, keys, strict=True):
            d = df[(df["metric"] == metric) & (df["group"] == group)]
            for i, level in enumerate(hue_order(order, d["level"])):
                g = d[d["level"] == level]
                k, n = int(g["n_reached"].iloc[0]), int(g["n"].iloc[0])
                ax.step(
                    g["t"], g["reached"], where="post",
                    color=colour.get(level, palette[i % len(palette)]),
                    label=f"{level} ({k}/{n} reached)",
                )  # fmt: skip
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel(metric_label(metric))
            ax.set_ylabel("share of runs at target")
            if group:
                ax.set_title(group, fontsize="medium")
            _legend(ax, hue_title)
        fig.suptitle(title)
        fig.tight_layout()
    return fig


def layer_heatmaps(
    mats: dict[str, dict[str, pd.DataFrame]], *, title: str, kinds: dict[str, tuple[str, bool]]
) -> Figure | None:
    """Layer x epoch heatmaps: one row per diagnostic kind, one column per level.

    ``mats[level][kind]``: DataFrame layer x step (mean over runs); ``kinds[kind]``:
    (colour-bar label with unit, log10 scale). Colour scales are shared along a row.
    """
    lv = list(mats)[:MAX_LEVELS_HEATMAP]
    ks = [k for k in kinds if any(k in mats[level] and not mats[level][k].empty for level in lv)]
    if not lv or not ks:
        return None
    fig, axes = plt.subplots(
        len(ks), len(lv), figsize=(3.2 * len(lv) + 1.2, 2.4 * len(ks) + 0.8), squeeze=False
    )
    for i, kind in enumerate(ks):
        label, log = kinds[kind]
        shown = {}
        for level in lv:
            m = mats[level].get(kind, pd.DataFrame())
            if not m.empty and log:
                with np.errstate(divide="ignore", invalid="ignore"):
                    m = np.log10(m.where(m > 0))
            shown[level] = m
        allv = np.concatenate([m.to_numpy(dtype=float).ravel() for m in shown.values()])
        allv = allv[np.isfinite(allv)]
        vmin, vmax = (float(allv.min()), float(allv.max())) if allv.size else (0.0, 1.0)
        if vmin == vmax:
            vmin, vmax = vmin - 0.5, vmax + 0.5
        for j, level in enumerate(lv):
            ax = axes[i, j]
            m = shown[level]
            if m.empty:
                ax.set_axis_off()
                ax.set_title(f"{level}: no data", fontsize="small")
                continue
            sns.heatmap(
                m,
                ax=ax,
                vmin=vmin,
                vmax=vmax,
                cmap="viridis",
                cbar=j == len(lv) - 1,
                cbar_kws={"label": label} if j == len(lv) - 1 else None,
                xticklabels=max(1, m.shape[1] // 6),
                yticklabels=True,
            )
            ax.set_title(str(level), fontsize="small")
            ax.set_xlabel("epoch" if i == len(ks) - 1 else "")
            ax.set_ylabel("layer" if j == 0 else "")
            ax.tick_params(axis="x", labelrotation=0, labelsize="x-small")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def dead_vs_lr(
    df: pd.DataFrame, *, title: str, hue_title: str | None, order: Sequence[str]
) -> Figure | None:
    """Final fraction of dead hidden units vs learning rate, mean and 95% CI per level."""
    if df.empty:
        return None
    with sns.axes_style(STYLE):
        fig, ax = plt.subplots(figsize=(5.6, 3.8))
        sns.lineplot(
            data=df,
            x="lr",
            y="dead",
            hue="level",
            hue_order=hue_order(order, df["level"]),
            marker="o",
            errorbar=_band(),
            ax=ax,
        )
        if _spread(df["lr"].to_numpy(dtype=float)) > 10 and (df["lr"] > 0).all():
            ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("learning rate (log scale)" if ax.get_xscale() == "log" else "learning rate")
        ax.set_ylabel("dead hidden units (fraction)")
        _legend(ax, hue_title)
        ax.set_title(title)
        fig.tight_layout()
    return fig


def capacity(df: pd.DataFrame, *, title: str, ylabel: str, order: Sequence[str]) -> Figure | None:
    """Final train/test metric vs width and/or depth: mean and 95% CI over seeds."""
    if df.empty:
        return None
    panels = [p for p in ("width", "depth") if p in set(df["panel"])]
    multi = df["level"].nunique() > 1
    with sns.axes_style(STYLE):
        fig, axes = _grid(len(panels), 4.8, 3.8)
        for ax, panel in zip(axes, panels, strict=True):
            d = df[df["panel"] == panel]
            sns.lineplot(
                data=d,
                x="x",
                y="value",
                hue="split",
                style="level" if multi else None,
                style_order=hue_order(order, d["level"]) if multi else None,
                marker="o",
                errorbar=_band(),
                ax=ax,
            )
            xs = d["x"].to_numpy(dtype=float)
            if panel == "width" and _spread(xs) > 8 and (xs > 0).all():
                ax.set_xscale("log", base=2)
            ax.set_xlabel("hidden units per layer" if panel == "width" else "hidden layers")
            ax.set_ylabel(ylabel)
            fixed = int(d["fixed"].iloc[0])
            if panel == "depth":
                ax.xaxis.get_major_locator().set_params(integer=True)
                ax.set_title(f"depth, {fixed} units per layer", fontsize="medium")
            else:
                ax.set_title(
                    f"width, {fixed} hidden layer{'s' if fixed != 1 else ''}", fontsize="medium"
                )
            _legend(ax, None)
        fig.suptitle(title)
        fig.tight_layout()
    return fig


def ranking(df: pd.DataFrame, *, title: str, xlabel: str, hue_title: str | None) -> Figure | None:
    """Levels ranked best first: median with its 95% bootstrap CI, censored counts noted."""
    if df.empty:
        return None
    with sns.axes_style(STYLE):
        fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(df) + 1.4))
        y = np.arange(len(df))
        colors = sns.color_palette(n_colors=len(df))
        xerr = np.vstack([df["median"] - df["low"], df["high"] - df["median"]])
        ax.errorbar(
            df["median"],
            y,
            xerr=np.clip(xerr, 0, None),
            fmt="none",
            ecolor="0.3",
            capsize=4,
            lw=1.2,
        )
        ax.scatter(df["median"], y, c=colors, s=50, zorder=3, edgecolors="black", linewidths=0.5)
        labels = [
            f"{lv}  ({c}/{n} censored)" if c else str(lv)
            for lv, c, n in zip(df["level"], df["censored"], df["n"], strict=True)
        ]
        ax.set_yticks(y, labels)
        ax.invert_yaxis()  # best on top
        xs = np.concatenate([df["low"], df["high"]]).astype(float)
        if _spread(xs) > 30 and (xs > 0).all():
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(hue_title or "")
        ax.set_title(title + "\n(median and 95% bootstrap CI, best on top)", fontsize="medium")
        fig.tight_layout()
    return fig


def success_rate(
    df: pd.DataFrame, *, title: str, ylabel: str, hue_title: str | None
) -> Figure | None:
    """Success rate per level with 95% Wilson intervals, k/n written above each bar."""
    if df.empty:
        return None
    with sns.axes_style(STYLE):
        fig, ax = plt.subplots(figsize=(max(4.0, 1.1 * len(df) + 2.0), 3.8))
        x = np.arange(len(df))
        colors = sns.color_palette(n_colors=len(df))
        ax.bar(x, df["rate"], color=colors, width=0.6)
        # a rate of 0 or 1 sits on its Wilson bound up to rounding: clip what matplotlib refuses
        yerr = np.clip(np.vstack([df["rate"] - df["low"], df["high"] - df["rate"]]), 0.0, None)
        ax.errorbar(x, df["rate"], yerr=yerr, fmt="none", ecolor="black", capsize=5)
        for xi, (k, n, hi) in enumerate(zip(df["k"], df["n"], df["high"], strict=True)):
            ax.text(
                xi, min(hi + 0.03, 1.08), f"{k}/{n}", ha="center", va="bottom", fontsize="small"
            )
        ax.set_xticks(x, [str(v) for v in df["level"]], rotation=20)
        ax.set_ylim(0, 1.15)
        ax.set_xlabel(hue_title or "")
        ax.set_ylabel(ylabel)
        ax.set_title(title + "\n(bars: 95% Wilson intervals)", fontsize="medium")
        fig.tight_layout()
    return fig


def decision_boundaries(panels: Sequence[dict], *, title: str) -> Figure | None:
    """Predicted probability of class 1 (or the predicted class) on a grid, per run.

    ``panels``: dicts with ``title``, ``xx``, ``yy`` (mesh), ``zz`` (values on the mesh),
    ``multiclass`` (zz holds class ids) and optional ``X``, ``y`` (the training points).
    """
    if not panels:
        return None
    n = len(panels)
    fig, axes = plt.subplots(
        1, n, figsize=(3.3 * n + 1.0, 3.6), squeeze=False, layout="constrained"
    )
    mappable = None
    for i, (ax, p) in enumerate(zip(axes[0], panels, strict=True)):
        if p.get("multiclass"):
            ax.contourf(p["xx"], p["yy"], p["zz"], alpha=0.35, cmap="tab10")
        else:
            mappable = ax.contourf(
                p["xx"], p["yy"], p["zz"], levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.75
            )
            ax.contour(p["xx"], p["yy"], p["zz"], levels=[0.5], colors="black", linewidths=1)
        if p.get("X") is not None:
            ax.scatter(
                p["X"][:, 0],
                p["X"][:, 1],
                c=p["y"],
                cmap="coolwarm" if not p.get("multiclass") else "tab10",
                s=14 if len(p["X"]) > 50 else 45,
                edgecolors="black",
                linewidths=0.4,
            )
        ax.set_title(p["title"], fontsize="small")
        ax.set_xlabel("input x1 (data units)")
        ax.set_ylabel("input x2 (data units)" if i == 0 else "")
    if mappable is not None:
        fig.colorbar(mappable, ax=list(axes[0]), label="P(class 1)", shrink=0.9)
    fig.suptitle(title)
    return fig


def activations(df: pd.DataFrame) -> Figure:
    """f(z) and f'(z) of each hidden unit, one small panel per unit (the lecture's slides)."""
    units = list(dict.fromkeys(df["unit"]))
    ncol = 4
    nrow = int(np.ceil(len(units) / ncol))
    with sns.axes_style(STYLE):
        fig, axes = plt.subplots(
            nrow, ncol, figsize=(3.0 * ncol, 2.5 * nrow), squeeze=False, sharex=True
        )
        for ax, unit in zip(axes.ravel(), units, strict=False):
            d = df[df["unit"] == unit]
            ax.plot(d["z"], d["f"], color="tab:blue", lw=1.8, label="f(z)")
            ax.plot(d["z"], d["df"], color="tab:orange", lw=1.4, ls="--", label="f'(z)")
            ax.axhline(0, color="0.5", lw=0.6)
            ax.axvline(0, color="0.5", lw=0.6)
            ax.set_title(unit, fontsize="medium")
            ax.set_ylim(-1.6, 2.6)
        for ax in axes.ravel()[len(units) :]:
            ax.set_axis_off()
        for ax in axes[-1]:
            ax.set_xlabel("pre-activation z")
        for ax in axes[:, 0]:
            ax.set_ylabel("a = f(z), f'(z)")
        axes[0, 0].legend(fontsize="small", loc="upper left")
        fig.suptitle("Hidden-unit activations f (solid) and their derivatives f' (dashed)")
        fig.tight_layout()
    return fig
