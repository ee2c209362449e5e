"""Judging a claim against a table of MLflow runs: effects, CIs and verdicts.

:func:`judge_comparison` selects both arms of one comparison (:mod:`fnnbench.claims.select`:
the common budget, held-out tuning or the grid kept for selection inside the bootstrap),
computes the oriented effect, its 95% CI and the (2 conf - 1) CI of the equivalence test
(:mod:`fnnbench.claims.stats`), whether the effect is only a bound (an arm censored in half
or more of its runs), the verdict, and whether the published effect lies in the CI and the
effect reaches the sesoi; it returns a :class:`ComparisonResult` whose ``a`` and ``b``
summarise each arm (:class:`ArmSummary`). :func:`judge_claim` judges every comparison of a
claim and gives the claim-level word over the primary ones (:func:`~fnnbench.claims.stats.
claim_verdict`) in a :class:`ClaimResult` whose summary line names every part.

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

from fnnbench.claims.schema import (
    EQUIVALENT,
    INCONCLUSIVE,
    NO_DATA,
    Claim,
    Comparison,
    Published,
)
from fnnbench.claims.select import ArmValues, common_budget, numeric_column, select_arm
from fnnbench.claims.stats import (
    MIN_RUNS,
    bootstrap_stats,
    claim_verdict,
    comparison_verdict,
    effect_bound,
    effect_statistic,
    newcombe_diff_interval,
    percentile_ci,
    published_in_ci,
    sesoi_status,
    tuned_bootstrap,
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
    grid: tuple = ()  # the tune values present
    edge: bool = False  # the chosen tune value is the smallest or largest present
    n_tuning: int = 0  # runs that chose the tune value (held-out tuning), not judged

    @property
    def reached(self) -> float:
        """Share of the arm's runs that reached the target (not censored); NaN without runs."""
        return 1.0 - self.censored / self.n if self.n else math.nan


def _arm_summary(av: ArmValues) -> ArmSummary:
    """The counts of a selected arm (median, mean and rate are filled in later)."""
    return ArmSummary(
        n=av.n,
        censored=int(av.censored.sum()),
        failed=av.failed,
        diverged=av.diverged,
        tuned=av.tuned,
        run_ids=tuple(str(r) for r in av.runs.get("run_id", pd.Series(dtype=str))),
        grid=tuple(av.grid),
        edge=av.edge,
        n_tuning=av.n_tuning,
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
    ci90_low: float = math.nan  # the (2 conf - 1) CI of the equivalence test (TOST)
    ci90_high: float = math.nan
    bound: str | None = None  # ">=" / "<=": the effect is only a bound (an arm >= half censored)
    expect: str = "effect"  # "equivalent": the comparison claims no effect beyond the margin
    equivalence: tuple[float, float] | None = None  # the margin (lo, hi), oriented units
    published: float | None = None  # the published effect, in the comparison's units
    published_in_ci: bool | None = None
    sesoi: float | None = None
    sesoi_status: str | None = None  # reached | not reached | undetermined
    tune_mode: str | None = None  # "held-out" (tune_seeds) | "resample" (selection in the CI)
    budget: float | None = None  # the common budget (censor: metrics.<name>)

    @property
    def ci(self) -> tuple[float, float]:
        return self.ci_low, self.ci_high

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

    def number(self, x: float | None) -> str:
        """A number in the comparison's unit: '3.4x' or '+0.45'."""
        if self.effect_kind == "ratio":
            return f"{_fmt(x)}x"
        return ("+" if x is not None and x > 0 else "") + _fmt(x)

    def effect_text(self) -> str:
        """The effect with its CI, e.g. '3.4x [2.8, 4.1]' or '+0.45 [0.2, 0.65]'; a bound
        (an arm censored in half or more of its runs) as '>= 2.8x' / '<= 4.1x'."""
        if self.bound == ">=":
            return f">= {self.number(self.ci_low)}"
        if self.bound == "<=":
            return f"<= {self.number(self.ci_high)}"
        ci = f"[{_fmt(self.ci_low)}, {_fmt(self.ci_high)}]"
        return f"{self.number(self.effect)} {ci}"

    def part_text(self, escape: Callable[[str], str] = str) -> str:
        """The comparison's part of a claim line: 'relu vs tanh EQUIVALENT within [0.8, 1.25]
        (1.1x [0.9, 1.2]); published 6x outside the CI; sesoi 1.5x not reached' (``escape``
        is applied to the label, the only free text)."""
        label = escape(self.label)
        if self.verdict == NO_DATA:
            return f"{label} {NO_DATA}"
        text = f"{label} {self.verdict}"
        if self.verdict == EQUIVALENT and self.equivalence is not None:
            lo, hi = self.equivalence
            text += f" within [{_fmt(lo)}, {_fmt(hi)}]"
        text += f" ({self.effect_text()})"
        if self.published is not None and self.published_in_ci is not None:
            where = "inside" if self.published_in_ci else "outside"
            text += f"; published {self.number(self.published)} {where} the CI"
        if self.sesoi is not None and self.sesoi_status is not None:
            text += f"; smallest effect of interest {self.number(self.sesoi)} {self.sesoi_status}"
        return text

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

    @property
    def primary(self) -> list[ComparisonResult]:
        return [c for c in self.comparisons if c.primary]

    def summary_line(self) -> str:
        """The claim word and its parts, e.g. 'PARTLY SUPPORTED: relu vs sigmoid SUPPORTED
        (2.9x [2.7, 4]; published 6x outside the CI); relu vs tanh EQUIVALENT within
        [0.8, 1.25] (1.1x [0.9, 1.2])'. Only primary comparisons decide."""
        return f"{self.verdict}: " + "; ".join(c.part_text() for c in self.primary)


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


def _tuned_groups(sa: ArmValues, sb: ArmValues) -> tuple[list, list] | None:
    """Both arms' values per tune value when the selection is repeated inside the bootstrap."""
    if sa.tune_mode != "resample" or sb.tune_mode != "resample":
        return None
    ga = [g for g in sa.groups if np.size(g)]
    gb = [g for g in sb.groups if np.size(g)]
    return (ga, gb) if ga and gb else None


def judge_comparison(
    comp: Comparison,
    runs: pd.DataFrame,
    rng: np.random.Generator,
    *,
    n_boot: int = 4000,
    conf: float = 0.95,
    tune_seeds: int | None = None,
    published: float | None = None,
) -> ComparisonResult:
    """Select both arms of ``comp`` in ``runs``, compute the effect, its CIs and the verdict.

    Ratios and differences: a percentile bootstrap of the medians (paired by seed when both
    arms have the same seeds); with ``tune`` and no ``tune_seeds`` the per-arm selection is
    repeated inside every resample (:func:`fnnbench.claims.stats.tuned_bootstrap`), with
    ``tune_seeds = N`` seeds < N choose and seeds >= N are judged. Rates: Newcombe's interval.
    The verdict: :func:`fnnbench.claims.stats.comparison_verdict` (95% CI for the direction,
    the (2 conf - 1) CI for equivalence). ``published``: the published effect when the
    comparison declares none (the claim's single figure).
    """
    budget = common_budget(comp, runs)
    kw = {"tune_seeds": tune_seeds, "budget": budget}
    sa, sb = select_arm(comp, runs, "a", **kw), select_arm(comp, runs, "b", **kw)
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
        expect=comp.expect,
        equivalence=comp.bounds,
        published=comp.published if comp.published is not None else published,
        sesoi=comp.sesoi,
        tune_mode=sa.tune_mode or sb.tune_mode,
        budget=budget,
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
        res.ci90_low, res.ci90_high = newcombe_diff_interval(k_a, sa.n, k_b, sb.n, 2 * conf - 1)
        res.verdict = comparison_verdict(
            res.ci, (res.ci90_low, res.ci90_high), res.null, expect="effect"
        )
        if res.a.censored or res.b.censored:
            notes.append(
                f"{comp.success.metric} missing in {res.a.censored} vs {res.b.censored} runs "
                "(counted as failures)"
            )
        _magnitude(res)
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
    half = [av.censored[~av.unknown].mean() >= 0.5 for av in (sa, sb)]
    bound = effect_bound(comp.effect, comp.better, *half)
    groups = _tuned_groups(sa, sb)
    order = _paired_order(sa, sb) if not any(unknown) and groups is None else None
    if order is not None:
        va, vb = sa.values[order[0]], sb.values[order[1]]
        res.paired = True
    if va.size < MIN_RUNS or vb.size < MIN_RUNS:
        notes.append(f"fewer than {MIN_RUNS} runs in an arm: no CI")
        res.verdict = INCONCLUSIVE
    else:
        if groups is not None:
            stats = tuned_bootstrap(*groups, comp.effect, comp.better, n_boot, rng=rng)
        else:
            stats = bootstrap_stats(stat, va, vb, n_boot, rng=rng, paired=res.paired)
        res.ci_low, res.ci_high = percentile_ci(stats, conf)
        res.ci90_low, res.ci90_high = percentile_ci(stats, 2 * conf - 1)
        if bound == "?":
            notes.append(
                "target never reached in either arm"
                if sa.censored.all() and sb.censored.all()
                else "both arms censored in half or more of their runs: the medians are "
                "budgets, no effect can be stated"
            )
            res.verdict = INCONCLUSIVE
        else:
            res.bound = bound
            res.verdict = comparison_verdict(
                res.ci,
                (res.ci90_low, res.ci90_high),
                res.null,
                bounds=comp.bounds,
                expect=comp.expect,
                bound=bound,
            )
            if bound is not None:
                side = "b" if (bound == ">=") == (comp.better == "lower") else "a"
                notes.append(
                    f"arm {side} censored in half or more of its runs: the effect is a bound "
                    f"({bound})"
                )
    if any(unknown):
        notes.append(
            f"{comp.metric} missing in {unknown[0]} vs {unknown[1]} runs with no budget "
            "(censor) to count them at"
        )
        res.verdict = INCONCLUSIVE
    _magnitude(res)
    res.note = "; ".join(notes)
    return res


def _magnitude(res: ComparisonResult) -> None:
    """Fill in whether the published effect lies in the CI and whether the sesoi is reached."""
    res.published_in_ci = published_in_ci(res.published, res.ci, res.bound)
    res.sesoi_status = sesoi_status(res.sesoi, res.ci, res.bound)


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
    # the claim's single published figure belongs to its only primary comparison
    pub = claim.published.value if len(claim.primary) == 1 else None
    results = [
        judge_comparison(
            c,
            runs,
            r,
            n_boot=n_boot,
            conf=conf,
            tune_seeds=claim.tune_seeds,
            published=pub if c.primary else None,
        )
        for c, r in zip(claim.comparisons, rngs, strict=True)
    ]
    verdict = claim_verdict([(r.verdict, r.expect) for r in results if r.primary], claim.rule)
    return ClaimResult(claim=claim, verdict=verdict, comparisons=results, seed=seed)
