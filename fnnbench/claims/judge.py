"""Judging a claim against a table of MLflow runs: effects, CIs and verdicts.

:func:`judge_comparison` selects both arms of one comparison (:mod:`fnnbench.claims.select`),
computes the oriented effect and its CI (:mod:`fnnbench.claims.stats`) and the verdict, and
returns a :class:`ComparisonResult` whose ``a`` and ``b`` summarise each arm
(:class:`ArmSummary`). :func:`judge_claim` judges every comparison of a claim and combines the
primary ones by the claim's rule into a :class:`ClaimResult`.

Randomness: ``judge_claim(..., seed)`` makes one ``np.random.Generator`` and spawns one child
per comparison, so a verdict is reproducible and does not depend on the order of comparisons.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from fnnbench.claims.schema import INCONCLUSIVE, NO_DATA, Claim, Comparison, Published
from fnnbench.claims.select import ArmValues, numeric_column, select_arm
from fnnbench.claims.stats import (
    MIN_RUNS,
    bootstrap_ci,
    combine_verdicts,
    effect_statistic,
    equivalence_verdict_of,
    newcombe_diff_interval,
    verdict_of,
)


def _nan_stat(fn: Callable[[np.ndarray], Any], v: np.ndarray) -> float:
    v = v[np.isfinite(v)]
    return float(fn(v)) if v.size else math.nan


def _fmt(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if abs(x) >= 1000:
        return f"{x:.0f}"
    return f"{x:.3g}"


@dataclass(frozen=True)
class ArmSummary:
    """One arm of a judged comparison: its runs, their counts and their centre.

    ``n`` runs used (FINISHED with an outcome, matching the arm, after tune selection), their
    ``run_ids``; ``censored`` of them counted at their budget (rate: success metric missing,
    counted as a failure); ``failed`` FAILED and ``diverged`` diverged runs of the arm (after
    tune selection; diverged runs are among the censored ones); ``tuned`` the chosen value of
    the comparison's ``tune`` param. ``median``/``mean`` are over the values used (censored
    runs at their budget; rate: over the success metric where present); ``rate`` the success
    rate (rate effects only). NaN when not computed.
    """

    n: int = 0
    censored: int = 0
    failed: int = 0
    diverged: int = 0
    tuned: Any = None
    run_ids: tuple[str, ...] = ()
    median: float = math.nan
    mean: float = math.nan
    rate: float = math.nan


def _arm_summary(av: ArmValues) -> ArmSummary:
    """The counts of a selected arm (median, mean and rate are filled in later)."""
    return ArmSummary(
        n=av.n,
        censored=int(av.censored.sum()),
        failed=av.failed,
        diverged=av.diverged,
        tuned=av.tuned,
        run_ids=tuple(str(r) for r in av.runs.get("run_id", pd.Series(dtype=str))),
    )


def _centred(arm: ArmSummary, values: np.ndarray, **extra: Any) -> ArmSummary:
    """``arm`` with the median and mean of the finite ``values`` (and ``extra`` fields)."""
    return replace(
        arm, median=_nan_stat(np.median, values), mean=_nan_stat(np.mean, values), **extra
    )


@dataclass
class ComparisonResult:
    """The outcome of one comparison (arm ``a`` is the arm the claim says is better).

    ``effect`` is oriented (> ``null`` favours the claim); ``ci_low``/``ci_high`` its CI (NaN
    when none could be computed). ``a`` and ``b`` summarise each arm (:class:`ArmSummary`:
    runs used, censored / failed / diverged counts, chosen ``tune`` value, median, mean, rate).
    """

    label: str
    metric: str | None
    effect_kind: str
    better: str
    null: float
    verdict: str
    effect: float = math.nan
    ci_low: float = math.nan
    ci_high: float = math.nan
    conf: float = 0.95
    a: ArmSummary = field(default_factory=ArmSummary)
    b: ArmSummary = field(default_factory=ArmSummary)
    tune: str | None = None
    paired: bool = False
    primary: bool = True
    note: str = ""
    spec: Comparison | None = field(default=None, repr=False)

    @property
    def failed(self) -> tuple[int, int]:
        """FAILED runs of arms a and b."""
        return self.a.failed, self.b.failed

    @property
    def diverged(self) -> tuple[int, int]:
        """Diverged runs of arms a and b."""
        return self.a.diverged, self.b.diverged

    @property
    def censored(self) -> tuple[int, int]:
        """Censored runs of arms a and b."""
        return self.a.censored, self.b.censored

    def effect_text(self) -> str:
        """The effect with its CI, e.g. '3.4x [2.8, 4.1]' or '+0.45 [0.2, 0.65]'."""
        ci = f"[{_fmt(self.ci_low)}, {_fmt(self.ci_high)}]"
        if self.effect_kind == "ratio":
            return f"{_fmt(self.effect)}x {ci}"
        sign = "+" if self.effect > 0 else ""
        return f"{sign}{_fmt(self.effect)} {ci}"

    def summary_line(self) -> str:
        n = f"(n={self.a.n} vs {self.b.n})"
        if self.verdict == NO_DATA:
            return f"{self.verdict}: {self.label} {n}"
        return f"{self.verdict}: {self.label} {self.effect_text()} {n}"


@dataclass
class ClaimResult:
    """A claim's verdict (by its rule over primary comparisons) and every comparison."""

    claim: Claim
    verdict: str
    comparisons: list[ComparisonResult]
    seed: int = 0

    @property
    def published(self) -> Published:
        return self.claim.published

    def summary_line(self) -> str:
        """E.g. 'SUPPORTED: relu vs sigmoid 3.4x [2.8, 4.1] (n=10 vs 10); paper: 6x'."""
        parts = [c.summary_line().split(": ", 1)[1] for c in self.comparisons if c.primary]
        line = f"{self.verdict}: " + "; ".join(parts)
        pub = self.claim.published
        if pub.value is not None:
            unit = "x" if self.claim.primary[0].effect == "ratio" else ""
            line += f"; paper: {_fmt(pub.value)}{unit}"
        elif pub.text:
            line += f"; paper: {pub.text}"
        return line


def _paired_order(a: ArmValues, b: ArmValues) -> tuple[np.ndarray, np.ndarray] | None:
    """Index orders aligning both arms by seed, or None when the seed sets differ."""
    col = "params.seed"
    if col not in a.runs.columns or col not in b.runs.columns or a.n != b.n:
        return None
    sa = pd.to_numeric(a.runs[col], errors="coerce").to_numpy(dtype=float)
    sb = pd.to_numeric(b.runs[col], errors="coerce").to_numpy(dtype=float)
    if np.isnan(sa).any() or np.isnan(sb).any() or len(set(sa)) != len(sa):
        return None
    oa, ob = np.argsort(sa), np.argsort(sb)
    if not np.array_equal(sa[oa], sb[ob]):
        return None
    return oa, ob


def judge_comparison(
    comp: Comparison,
    runs: pd.DataFrame,
    rng: np.random.Generator,
    *,
    n_boot: int = 4000,
    conf: float = 0.95,
) -> ComparisonResult:
    """Select both arms of ``comp`` in ``runs``, compute the effect, its CI and the verdict."""
    sa, sb = select_arm(comp, runs, "a"), select_arm(comp, runs, "b")
    notes = [f"arm {s}: {av.note}" for s, av in (("a", sa), ("b", sb)) if av.note]
    res = ComparisonResult(
        label=comp.label,
        metric=comp.success.metric if comp.effect == "rate" and comp.success else comp.metric,
        effect_kind=comp.effect,
        better=comp.better,
        null=comp.null,
        verdict=NO_DATA,
        conf=conf,
        a=_arm_summary(sa),
        b=_arm_summary(sb),
        tune=comp.tune,
        primary=comp.primary,
        spec=comp,
    )
    for s, av in (("a", sa), ("b", sb)):
        if av.n == 0 and not av.note:
            extra = f" ({av.failed} failed)" if av.failed else ""
            notes.append(f"arm {s}: no finished runs{extra}")
    if sa.n == 0 or sb.n == 0:
        res.note = "; ".join(notes)
        return res

    if comp.effect == "rate":
        assert comp.success is not None
        k_a, k_b = int(sa.values.sum()), int(sb.values.sum())
        col = f"metrics.{comp.success.metric}"
        xa, xb = numeric_column(sa.runs, col), numeric_column(sb.runs, col)
        res.a = _centred(res.a, xa, rate=k_a / sa.n)
        res.b = _centred(res.b, xb, rate=k_b / sb.n)
        res.effect = res.a.rate - res.b.rate
        res.ci_low, res.ci_high = newcombe_diff_interval(k_a, sa.n, k_b, sb.n, conf)
        res.verdict = verdict_of(res.ci_low, res.ci_high, res.null)
        if res.a.censored or res.b.censored:
            notes.append(
                f"{comp.success.metric} missing in {res.a.censored} vs {res.b.censored} runs "
                "(counted as failures)"
            )
        res.note = "; ".join(notes)
        return res

    stat = effect_statistic(comp.effect, comp.better)
    if comp.metric and f"metrics.{comp.metric}" not in runs.columns:
        notes.append(f"metric '{comp.metric}' not in the runs")
    unknown = int(sa.unknown.sum()), int(sb.unknown.sum())
    keep_a, keep_b = ~sa.unknown, ~sb.unknown
    va, vb = sa.values[keep_a], sb.values[keep_b]
    res.a, res.b = _centred(res.a, va), _centred(res.b, vb)
    if va.size == 0 or vb.size == 0:
        notes.append(f"{comp.metric} missing in {unknown[0]} vs {unknown[1]} runs, no budget")
        res.verdict = INCONCLUSIVE
        res.note = "; ".join(notes)
        return res
    res.effect = float(stat(va, vb))
    order = _paired_order(sa, sb) if not any(unknown) else None
    if order is not None:
        va, vb = sa.values[order[0]], sb.values[order[1]]
        res.paired = True
    if va.size < MIN_RUNS or vb.size < MIN_RUNS:
        notes.append(f"fewer than {MIN_RUNS} runs in an arm: no CI")
        res.verdict = INCONCLUSIVE
    else:
        res.ci_low, res.ci_high = bootstrap_ci(
            stat, va, vb, n_boot, conf, rng=rng, paired=res.paired
        )
        res.verdict = (
            verdict_of(res.ci_low, res.ci_high, res.null)
            if comp.margin is None
            else equivalence_verdict_of(res.ci_low, res.ci_high, comp.margin)
        )
    if any(unknown):
        notes.append(
            f"{comp.metric} missing in {unknown[0]} vs {unknown[1]} runs with no budget "
            "(censor) to count them at"
        )
        res.verdict = INCONCLUSIVE
    if sa.censored.all() and sb.censored.all() and not any(unknown):
        notes.append("target never reached in either arm")
        res.verdict = INCONCLUSIVE
    res.note = "; ".join(notes)
    return res


def judge_claim(
    claim: Claim,
    runs: pd.DataFrame,
    seed: int = 0,
    *,
    n_boot: int = 4000,
    conf: float = 0.95,
) -> ClaimResult:
    """Judge ``claim`` against ``runs`` (mlflow.search_runs layout, params already cast).

    One ``np.random.Generator`` is made from ``seed`` and one child spawned per comparison:
    the same seed gives the same CIs and verdicts.
    """
    rngs = np.random.default_rng(seed).spawn(len(claim.comparisons))
    results = [
        judge_comparison(c, runs, r, n_boot=n_boot, conf=conf)
        for c, r in zip(claim.comparisons, rngs, strict=True)
    ]
    verdict = combine_verdicts([r.verdict for r in results if r.primary], claim.rule)
    return ClaimResult(claim=claim, verdict=verdict, comparisons=results, seed=seed)
