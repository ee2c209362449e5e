"""The numbers behind each figure, computed from the runs (no plotting here).

Every function takes the claim's runs (``mlflow.search_runs`` layout, params cast by
:func:`fnnbench.report.data.cast_params`) and returns a tidy DataFrame for one figure of
:mod:`fnnbench.report.plots`. Which runs a comparison uses, their censored values and the
Wilson intervals come from :mod:`fnnbench.claims` (one implementation of the statistics);
this module only reshapes.

A run's *level* is its value of the claim's ``factor`` param (the colour of every figure),
followed by its value of the ``tune`` param when a comparison tunes one, e.g.
``relu (lr=0.1)``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from fnnbench.claims import (
    Claim,
    ClaimResult,
    arm_values,
    common_budget,
    counting_mask,
    diverged_mask,
    km_curve,
    runs_for_arm,
    wilson_interval,
)
from fnnbench.report.data import hidden_sizes, mean_ci

ALL = "all runs"


def fmt_value(v: Any) -> str:
    """A param value as text: 0.1 -> '0.1', 1e-05 -> '1e-05', [64, 64] -> '[64, 64]'."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "None"
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v)
    return str(v)


def arm_name(arm: Mapping[str, Any]) -> str:
    """{'activation.name': 'relu', 'optimizer.lr': 0.1} -> 'relu, 0.1'."""
    return ", ".join(fmt_value(v) for v in arm.values())


def _col(key: str | None) -> str | None:
    return None if key is None else f"params.{key}"


def tune_keys(result: ClaimResult) -> list[str]:
    """The params tuned by the claim's comparisons (in order, without duplicates)."""
    keys = [c.tune for c in result.comparisons if c.tune]
    return list(dict.fromkeys(keys))


def varying_keys(specs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Keys (in order of appearance) that take at least two different values among ``specs``."""
    seen: dict[str, set[str]] = {}
    for spec in specs:
        for k, v in spec.items():
            seen.setdefault(k, set()).add(json.dumps(v, sort_keys=True, default=str))
    return [k for k, vals in seen.items() if len(vals) > 1]


def label_keys(result: ClaimResult) -> list[str]:
    """Params that name a level besides the factor: arm keys that vary across the arms of the
    comparisons (e.g. ``model.hidden_sizes`` when arms differ in depth), then tuned params."""
    arms = [arm for c in result.comparisons if c.spec for arm in (c.spec.a, c.spec.b)]
    keys = varying_keys(arms) + tune_keys(result)
    return [k for k in dict.fromkeys(keys) if k != result.claim.factor]


def _short(key: str) -> str:
    return {"model.hidden_sizes": "hidden", "model.init": "init"}.get(key, key.rsplit(".", 1)[-1])


def levels(runs: pd.DataFrame, claim: Claim, keys: Sequence[str] = ()) -> pd.Series:
    """Level label per run: the factor value, then '(<short key>=<value>, ...)' for ``keys``,
    e.g. ``relu (lr=0.1)``; without a factor the keys alone (or 'all runs')."""
    fcol = _col(claim.factor)
    has_factor = fcol is not None and fcol in runs.columns
    base = runs[fcol].map(fmt_value) if has_factor else pd.Series("", index=runs.index)
    parts = [
        _short(k) + "=" + runs[_col(k)].map(fmt_value)
        for k in keys
        if k != claim.factor and _col(k) in runs.columns
    ]
    if parts:
        extra = parts[0]
        for p in parts[1:]:
            extra = extra + ", " + p
        base = (base + " (" + extra + ")") if has_factor else extra
    elif not has_factor:
        base = pd.Series(ALL, index=runs.index)
    return base.astype(str)


def group_labels(result: ClaimResult) -> list[str]:
    """Per comparison, the label of its ``where`` filter restricted to the keys that differ
    between comparisons (e.g. 'hidden=[64, 64]'); '' when all comparisons share one filter."""
    wheres = [c.spec.where if c.spec else {} for c in result.comparisons]
    keys = varying_keys(wheres)
    return [", ".join(f"{_short(k)}={fmt_value(w[k])}" for k in keys if k in w) for w in wheres]


def used_runs(result: ClaimResult, runs: pd.DataFrame, *, tuned: bool = True) -> pd.DataFrame:
    """The runs the comparisons use (both arms of every comparison), one row per
    (group, run), with columns ``level``, ``group`` (see :func:`group_labels`), ``primary``
    (the run is used by a primary comparison of that group) and ``arm``.

    ``tuned=False``: every tune value (what the tuning chose from)."""
    frames = []
    groups = group_labels(result)
    for c, group in zip(result.comparisons, groups, strict=True):
        if c.spec is None:
            continue
        for arm in ("a", "b"):
            r = runs_for_arm(c.spec, runs, arm, tuned=tuned, tune_seeds=result.claim.tune_seeds)
            if len(r):
                spec = c.spec.a if arm == "a" else c.spec.b
                frames.append(r.assign(arm=arm_name(spec), group=group, primary=c.primary))
    if not frames:
        empty = runs.iloc[0:0]
        return empty.assign(
            level=pd.Series(dtype=str),
            group=pd.Series(dtype=str),
            primary=pd.Series(dtype=bool),
            arm=pd.Series(dtype=str),
        )
    out = pd.concat(frames)
    prim = out.groupby(["group", "run_id"])["primary"].transform("max")
    out = out.assign(primary=prim.astype(bool)).drop_duplicates(["group", "run_id"])
    keys = (
        label_keys(result)
        if tuned
        else [k for k in label_keys(result) if k not in tune_keys(result)]
    )
    return out.assign(level=levels(out, result.claim, keys))


def _order(values: pd.Series) -> list[str]:
    """Level order: first appearance (the claim's order of arms)."""
    return list(dict.fromkeys(values.tolist()))


# ----------------------------------------------------------------------------- figures


def time_to_target(result: ClaimResult, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (metric, group, run) of the ratio/difference comparisons: ``metric, group,
    primary, level, run_id, value, censored, diverged``. Censored runs carry their budget as
    value (what the verdict used); ``value`` is NaN for a run that needed censoring but has
    no budget. Rows of primary comparisons come first."""
    rows = []
    keys = label_keys(result)
    groups = group_labels(result)
    for c, group in zip(result.comparisons, groups, strict=True):
        comp = c.spec
        if comp is None or comp.effect == "rate" or not comp.metric:
            continue
        budget = common_budget(comp, runs)
        for side in ("a", "b"):
            r = runs_for_arm(comp, runs, side, tune_seeds=result.claim.tune_seeds)
            if not len(r):
                continue
            av = arm_values(comp, r, budget)
            rows.append(
                pd.DataFrame(
                    {
                        "metric": comp.metric,
                        "group": group,
                        "primary": c.primary,
                        "level": levels(r, result.claim, keys).to_numpy(),
                        "run_id": r["run_id"].astype(str).to_numpy(),
                        "value": np.asarray(av.values, dtype=float),
                        "censored": np.asarray(av.censored, dtype=bool),
                        "diverged": diverged_mask(r),
                    }
                )
            )
    cols = ["metric", "group", "primary", "level", "run_id", "value", "censored", "diverged"]
    if not rows:
        return pd.DataFrame(columns=cols)
    out = pd.concat(rows, ignore_index=True)
    out = out.sort_values("primary", ascending=False, kind="stable")
    return out.drop_duplicates(["metric", "group", "run_id"])[cols].reset_index(drop=True)


def kaplan_meier(ttt: pd.DataFrame) -> pd.DataFrame:
    """Kaplan-Meier curves of time to target per (metric, group, level) of
    :func:`time_to_target`: ``metric, group, primary, level, t, reached, n, n_reached`` with
    ``reached`` = 1 - S(t) (:func:`fnnbench.claims.km_curve`, scipy's ``ecdf`` on censored
    data), from (0, 0) flat to the largest time observed (a level without a reached run is a
    flat line at 0)."""
    cols = ["metric", "group", "primary", "level", "t", "reached", "n", "n_reached"]
    rows = []
    if ttt.empty:
        return pd.DataFrame(columns=cols)
    for (metric, group, level), g in ttt.groupby(["metric", "group", "level"], sort=False):
        v = g["value"].to_numpy(dtype=float)
        cens = g["censored"].to_numpy(dtype=bool)
        t, f = km_curve(v, cens)
        n, k = int(np.isfinite(v).sum()), int((~cens & np.isfinite(v)).sum())
        prim = bool(g["primary"].any())
        points = [(0.0, 0.0), *zip(t.tolist(), f.tolist(), strict=True)]
        end = float(np.nanmax(v)) if np.isfinite(v).any() else 0.0
        if end > points[-1][0]:  # flat to the last time observed (the budget)
            points.append((end, points[-1][1]))
        for ti, fi in points:
            rows.append([metric, group, prim, level, ti, fi, n, k])
    return pd.DataFrame(rows, columns=cols)


def ranking(ttt: pd.DataFrame, metric: str | None, better: str | None) -> pd.DataFrame:
    """Levels ranked by the median of ``metric`` over the runs of the primary comparisons
    (censored runs at their budget, as in the verdict): ``level, median, low, high, n,
    censored``, best first; CI: 95% percentile bootstrap of the median."""
    cols = ["level", "median", "low", "high", "n", "censored"]
    if ttt.empty:
        return pd.DataFrame(columns=cols)
    d = ttt[ttt["primary"].astype(bool)]
    if metric is not None and metric in set(d["metric"]):
        d = d[d["metric"] == metric]
    else:
        d = d[d["metric"] == d["metric"].iloc[0]] if len(d) else d
    d = d.drop_duplicates("run_id")
    rows = []
    rng = np.random.default_rng(0)
    for level, g in d.groupby("level", sort=False):
        v = g["value"].to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        if not v.size:
            continue
        lo, hi = mean_ci(v, rng=rng, stat="median")
        rows.append(
            {
                "level": level,
                "median": float(np.median(v)),
                "low": lo,
                "high": hi,
                "n": int(v.size),
                "censored": int(g["censored"].sum()),
            }
        )
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values("median", ascending=better != "higher", kind="stable", ignore_index=True)


def success_rates(result: ClaimResult, runs: pd.DataFrame) -> pd.DataFrame:
    """Per level of the rate comparisons: ``level, k, n, rate, low, high`` (95% Wilson)."""
    rows: dict[str, dict] = {}
    keys = label_keys(result)
    for c in result.comparisons:
        comp = c.spec
        if comp is None or comp.effect != "rate":
            continue
        for side in ("a", "b"):
            r = runs_for_arm(comp, runs, side)
            if not len(r):
                continue
            ok = np.asarray(arm_values(comp, r).values, dtype=float)
            for lev, g in pd.Series(ok, index=levels(r, result.claim, keys).to_numpy()).groupby(
                level=0, sort=False
            ):
                if lev in rows:
                    continue
                k, n = int(g.sum()), int(g.size)
                lo, hi = wilson_interval(k, n)
                rows[lev] = {"level": lev, "k": k, "n": n, "rate": k / n, "low": lo, "high": hi}
    return pd.DataFrame(list(rows.values()), columns=["level", "k", "n", "rate", "low", "high"])


def dead_vs_lr(result: ClaimResult, runs: pd.DataFrame) -> pd.DataFrame:
    """Counting runs with ``lr`` (``optimizer.lr``, or the tuned param) and ``dead``
    (``final_dead_frac``): ``level, lr, dead, run_id``; runs without the metric dropped
    (the caller reports how many)."""
    key = "optimizer.lr"
    if _col(key) not in runs.columns:
        key = next((k for k in tune_keys(result) if _col(k) in runs.columns), key)
    col = _col(key)
    cols = ["level", "lr", "dead", "run_id"]
    if col not in runs.columns or "metrics.final_dead_frac" not in runs.columns:
        return pd.DataFrame(columns=cols)
    r = runs[counting_mask(runs)]
    keys = [k for k in label_keys(result) if k not in (key, *tune_keys(result))]
    out = pd.DataFrame(
        {
            "level": levels(r, result.claim, keys).to_numpy(),
            "lr": pd.to_numeric(r[col], errors="coerce").to_numpy(dtype=float),
            "dead": r["metrics.final_dead_frac"].to_numpy(dtype=float),
            "run_id": r["run_id"].astype(str).to_numpy(),
        }
    )
    return out[np.isfinite(out["lr"]) & np.isfinite(out["dead"])].reset_index(drop=True)


def capacity(result: ClaimResult, runs: pd.DataFrame) -> pd.DataFrame:
    """Final train/test metric vs model size for the counting runs: ``panel, x, fixed, level,
    split, value, run_id`` (``fixed``: the depth of the width panel, the width of the depth
    panel). Panel ``width``: hidden units per layer, at the depth with the most
    widths; panel ``depth``: hidden layers, at the width with the most depths (a panel needs
    two sizes). Accuracy, or loss when the claim's metric is a loss; split = train | test."""
    cols = ["panel", "x", "fixed", "level", "split", "value", "run_id"]
    if "params.model.hidden_sizes" not in runs.columns:
        return pd.DataFrame(columns=cols)
    metrics = [c.metric or "" for c in result.comparisons] + [result.claim.metric or ""]
    kind = "loss" if any("loss" in m for m in metrics) else "acc"
    r = runs[counting_mask(runs)]
    sizes = r["params.model.hidden_sizes"].map(hidden_sizes)
    ok = sizes.notna().to_numpy()
    r, sizes = r[ok], sizes[ok]
    keys = [k for k in label_keys(result) if k != "model.hidden_sizes"]
    claim = result.claim
    if claim.factor == "model.hidden_sizes":
        claim = _no_factor(claim)  # the size is the x axis, not a colour
    lev = levels(r, claim, keys)
    width = np.array([max(s) if s else 0 for s in sizes], dtype=int)
    depth = np.array([len(s) for s in sizes], dtype=int)
    uniform = np.array([len(set(s)) <= 1 for s in sizes], dtype=bool)  # equal widths
    frames = []
    for split in ("train", "test"):
        col = f"metrics.final_{split}_{kind}"
        if col not in r.columns:
            continue
        v = r[col].to_numpy(dtype=float)
        for panel, x, fixed in (("width", width, depth), ("depth", depth, width)):
            sel = uniform & np.isfinite(v)
            if not sel.any():
                continue
            # the fixed size with the most distinct values of the other one
            counts = pd.Series(x[sel]).groupby(fixed[sel]).nunique()
            if counts.max() < 2:
                continue
            keep = sel & (fixed == counts.idxmax())
            frames.append(pd.DataFrame({
                "panel": panel, "x": x[keep], "fixed": int(counts.idxmax()),
                "level": lev.to_numpy()[keep], "split": split,
                "value": v[keep], "run_id": r["run_id"].astype(str).to_numpy()[keep],
            }))  # fmt: skip
    if not frames:
        return pd.DataFrame(columns=cols)
    return pd.concat(frames, ignore_index=True)[cols]


def _no_factor(claim: Claim) -> Claim:
    from dataclasses import replace

    return replace(claim, factor=None)


def layer_keys(runs: pd.DataFrame, kind: str) -> list[str]:
    """Per-layer metric keys of ``kind`` (e.g. ``saturated_frac``) present in the runs,
    ordered by layer: ``[kind/layer1, kind/layer2, ...]``."""
    prefix = f"metrics.{kind}/layer"
    found = []
    for c in runs.columns:
        if c.startswith(prefix) and c[len(prefix) :].isdigit():
            found.append((int(c[len(prefix) :]), c[len("metrics.") :]))
    return [k for _, k in sorted(found)]


def layer_matrix(hist: pd.DataFrame, run_ids: Sequence[str], kind: str) -> pd.DataFrame:
    """Mean over ``run_ids`` of metric ``kind/layer{l}`` per (layer, step): a DataFrame with
    one row per layer (index ``1..L``) and one column per step; non-finite values left out."""
    prefix = f"{kind}/layer"
    h = hist[hist["key"].str.startswith(prefix) & hist["run_id"].isin(list(run_ids))]
    h = h[np.isfinite(h["value"].to_numpy(dtype=float))]
    if h.empty:
        return pd.DataFrame()
    layer = h["key"].str[len(prefix) :].astype(int)
    m = h.assign(layer=layer).pivot_table(index="layer", columns="step", values="value")
    return m.sort_index()


def activation_curves(z: np.ndarray) -> pd.DataFrame:
    """f(z) and f'(z) of the lecture's hidden units, from fnnbench.nn: ``unit, z, f, df``.

    Leaky ReLU with slope 0.1 and PReLU with mu = 0.25 (so the negative side is visible),
    ELU with mu = 1, maxout with two pieces ``max(z, -0.5 z)`` (a learned V shape).
    """
    from fnnbench.nn import get_activation

    units = [
        ("sigmoid", "sigmoid", {}),
        ("tanh", "tanh", {}),
        ("ReLU", "relu", {}),
        ("shifted ReLU", "shifted_relu", {}),
        ("leaky ReLU (0.1)", "leaky_relu", {"slope": 0.1}),
        ("PReLU (mu=0.25)", "prelu", {}),
        ("ELU (mu=1)", "elu", {"mu": 1.0}),
    ]
    frames = []
    for label, name, kw in units:
        act = get_activation(name, **kw)
        frames.append(pd.DataFrame({"unit": label, "z": z, "f": act.f(z), "df": act.df(z)}))
    maxout = get_activation("maxout", k=2)
    w = np.array([1.0, -0.5])  # slopes of the two pieces z_1 = z, z_2 = -0.5 z
    pieces = z[:, None] * w[None, :]  # (n, k*m) with m = 1 unit
    f = maxout.f(pieces)[:, 0]
    df = (maxout.df(pieces) * w[None, :]).sum(axis=1)  # dz_j/dz = w_j on the winning piece
    frames.append(pd.DataFrame({"unit": "maxout max(z, -0.5z)", "z": z, "f": f, "df": df}))
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------- sweeps

MEDIAN_CI_MIN_RUNS = 6  # the fewest runs with a distribution-free 95% interval of the median
SWEEP_METRICS = (
    ("final_train_loss", "final training loss"),
    ("final_train_acc", "final training accuracy"),
    ("final_test_acc", "final test accuracy"),
)


def median_ci(values: Sequence[float] | np.ndarray, conf: float = 0.95) -> tuple[float, float]:
    """Distribution-free CI of the median: the order statistics of the binomial (sign-test)
    interval, ``scipy.stats.quantile_test(x, p=0.5).confidence_interval``. Exact coverage >=
    ``conf`` for any continuous distribution, no resampling; NaN values dropped. (nan, nan)
    with fewer than 6 values at 95% (the widest interval, [min, max], covers only
    1 - 2^(1 - n): 93.75% for 5 values)."""
    from scipy import stats as sps

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return math.nan, math.nan
    ci = sps.quantile_test(v, q=float(np.median(v)), p=0.5).confidence_interval(conf)
    lo, hi = float(ci.low), float(ci.high)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return math.nan, math.nan
    return lo, hi


def _summary(v: np.ndarray) -> dict[str, float]:
    v = v[np.isfinite(v)]
    if not v.size:
        return {"median": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    lo, hi = median_ci(v)
    return {"median": float(np.median(v)), "low": lo, "high": hi, "n": int(v.size)}


def sweep_table(
    runs: pd.DataFrame,
    labels: pd.Series,
    order: Sequence[str],
    *,
    target: bool = False,
    budget_col: str = "params.train.epochs",
) -> pd.DataFrame:
    """One row per setting of a sweep (``labels``: the setting of each run, ``order``: row
    order): ``setting, n, finished, failed, diverged, seeds`` (distinct seeds), then per
    metric of :data:`SWEEP_METRICS` ``<metric>.median, .low, .high, .n`` over the finished
    runs with a finite value (median, :func:`median_ci`).

    ``target``: also ``reached`` (finished runs that reached the target), ``ttt.median, .low,
    .high, .n`` of ``epochs_to_target`` over the finished runs, a run that never reached the
    target (or diverged) counted at its epoch budget, never dropped; ``ttt.censored`` (such
    runs) and ``ttt.bound`` (half or more of them: the median is only a lower bound)."""
    rows = []
    ok = counting_mask(runs)
    div = diverged_mask(runs)
    status = runs["status"] if "status" in runs.columns else pd.Series("", index=runs.index)
    seeds = runs["params.seed"] if "params.seed" in runs.columns else None
    lab = labels.reindex(runs.index).astype(str).to_numpy()
    for setting in order:
        sel = lab == setting
        r = runs[sel]
        row: dict[str, Any] = {
            "setting": setting,
            "n": int(sel.sum()),
            "finished": int(ok[sel].sum()),
            "failed": int((status[sel] == "FAILED").sum()),
            "diverged": int(div[sel].sum()),
            "seeds": int(seeds[sel].map(fmt_value).nunique()) if seeds is not None else 0,
        }
        fin = r[ok[sel]]
        for metric, _ in SWEEP_METRICS:
            col = f"metrics.{metric}"
            v = (
                pd.to_numeric(fin[col], errors="coerce").to_numpy(dtype=float)
                if col in fin.columns
                else np.array([])
            )
            row.update({f"{metric}.{k}": x for k, x in _summary(v).items()})
        if target:
            t = ttt_values(fin, budget_col=budget_col)
            row["reached"] = int((~t["censored"]).sum())
            row.update({f"ttt.{k}": x for k, x in _summary(t["value"].to_numpy()).items()})
            row["ttt.censored"] = int(t["censored"].sum())
            row["ttt.bound"] = bool(len(t)) and t["censored"].sum() * 2 >= len(t)
        rows.append(row)
    return pd.DataFrame(rows)


def ttt_values(runs: pd.DataFrame, *, budget_col: str = "params.train.epochs") -> pd.DataFrame:
    """Epochs to target per run: ``run_id, value, censored``; a run without
    ``epochs_to_target`` (target never reached) or a diverged run counts at its epoch budget
    (``budget_col``), censored, never dropped (NaN when it has no budget)."""
    col = "metrics.epochs_to_target"
    v = (
        pd.to_numeric(runs[col], errors="coerce").to_numpy(dtype=float)
        if col in runs.columns
        else np.full(len(runs), np.nan)
    )
    div = diverged_mask(runs)
    budget = (
        pd.to_numeric(runs[budget_col], errors="coerce").to_numpy(dtype=float)
        if budget_col in runs.columns
        else np.full(len(runs), np.nan)
    )
    cens = ~np.isfinite(v) | div
    return pd.DataFrame(
        {
            "run_id": runs["run_id"].astype(str).to_numpy() if len(runs) else [],
            "value": np.where(cens, budget, v),
            "censored": cens,
        }
    )
