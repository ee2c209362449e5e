"""The statistics behind a verdict: intervals, effects, censoring and verdict rules.

Every effect is oriented so that a value above the null favours the claim, where arm ``a``
is the arm the claim says is better:

- ``ratio``      lower-better: median(b) / median(a); higher-better: median(a) / median(b); null 1
- ``difference`` lower-better: median(b) - median(a); higher-better: median(a) - median(b); null 0
- ``rate``       success rate(a) - success rate(b); null 0

The CI decides, not the point estimate (:func:`comparison_verdict`): the 90% CI inside a
declared equivalence range -> EQUIVALENT (two one-sided tests at 5%); a 95% CI entirely above
the null -> SUPPORTED, entirely below -> REFUTED, else INCONCLUSIVE. The claim-level word over
the primary comparisons: :func:`claim_verdict`. Ratios and differences use a percentile
bootstrap of the medians (:func:`bootstrap_ci` / :func:`bootstrap_stats`, paired by seed when
both arms have the same seeds; :func:`tuned_bootstrap` repeats a tuning selection inside every
resample); rates use Newcombe's hybrid score interval (:func:`newcombe_diff_interval`, built on
:func:`wilson_interval`).

Censoring (:func:`censor_values`): a run that never reached the target (metric absent, or the
run diverged) counts as its budget; it is never dropped. A median over half or more censored
values is a budget, so the effect is only a bound (:func:`effect_bound`). Kaplan-Meier curves
of time to target: :func:`km_curve` (scipy).

Plain NumPy on arrays: nothing here knows about run tables or MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from statistics import NormalDist
from typing import Any

import numpy as np

from fnnbench.claims.schema import (
    BETTER,
    EQUIVALENT,
    EXPECT,
    INCONCLUSIVE,
    NO_DATA,
    PARTLY_SUPPORTED,
    REFUTED,
    RULES,
    SUPPORTED,
    check_enum,
)

MIN_RUNS = 2  # a bootstrap CI of a median needs at least two runs per arm


def _z(conf: float) -> float:
    if not 0.0 < conf < 1.0:
        raise ValueError(f"conf must be in (0, 1), got {conf}")
    return NormalDist().inv_cdf(0.5 + conf / 2.0)


def wilson_interval(k: int, n: int, conf: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion k/n.

    center = (p + z^2/2n) / (1 + z^2/n),  half = z / (1 + z^2/n) * sqrt(p(1-p)/n + z^2/4n^2),
    with p = k/n and z the standard normal quantile at (1 + conf)/2.
    """
    if n <= 0 or not 0 <= k <= n:
        raise ValueError(f"wilson_interval needs 0 <= k <= n and n > 0, got k={k}, n={n}")
    z = _z(conf)
    p = k / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, center - half), min(1.0, center + half)


def newcombe_diff_interval(
    k_a: int, n_a: int, k_b: int, n_b: int, conf: float = 0.95
) -> tuple[float, float]:
    """CI for p_a - p_b by Newcombe's hybrid score method (Newcombe 1998, method 10).

    With Wilson intervals (l_a, u_a), (l_b, u_b) and D = p_a - p_b:
    low  = D - sqrt((p_a - l_a)^2 + (u_b - p_b)^2),
    high = D + sqrt((u_a - p_a)^2 + (p_b - l_b)^2).
    """
    l_a, u_a = wilson_interval(k_a, n_a, conf)
    l_b, u_b = wilson_interval(k_b, n_b, conf)
    p_a, p_b = k_a / n_a, k_b / n_b
    d = p_a - p_b
    low = d - math.sqrt((p_a - l_a) ** 2 + (u_b - p_b) ** 2)
    high = d + math.sqrt((u_a - p_a) ** 2 + (p_b - l_b) ** 2)
    return max(-1.0, low), min(1.0, high)


def safe_ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray | float:
    """num / den with num == den -> 1 (so 0/0 and equal budgets are 1) and x/0 -> inf."""
    num_a, den_a = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(num_a == den_a, 1.0, num_a / den_a)
    return r if r.ndim else float(r)


def effect_statistic(effect: str, better: str) -> Callable[[np.ndarray, np.ndarray], Any]:
    """The oriented two-sample statistic stat(a, b) (> null favours arm a), as medians.

    Vectorised: reduces along the last axis, so stat(A, B) with A of shape (n_boot, n_a)
    returns shape (n_boot,).
    """
    check_enum("effect_statistic", "better", better, BETTER)
    if effect == "ratio":
        if better == "lower":
            return lambda a, b: safe_ratio(np.median(b, axis=-1), np.median(a, axis=-1))
        return lambda a, b: safe_ratio(np.median(a, axis=-1), np.median(b, axis=-1))
    if effect == "difference":
        if better == "lower":
            return lambda a, b: np.median(b, axis=-1) - np.median(a, axis=-1)
        return lambda a, b: np.median(a, axis=-1) - np.median(b, axis=-1)
    raise ValueError(f"effect_statistic: effect {effect!r} is not ratio|difference")


def bootstrap_ci(
    stat_fn: Callable[[np.ndarray, np.ndarray], Any],
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_boot: int = 4000,
    conf: float = 0.95,
    *,
    rng: np.random.Generator,
    paired: bool = False,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the two-sample statistic ``stat_fn(a, b)``.

    Each of ``n_boot`` resamples draws n_a values from ``a`` and n_b from ``b`` with
    replacement (independently; ``paired=True`` draws one index vector used for both arms,
    which must then be aligned, e.g. by seed). ``stat_fn`` must be vectorised over leading axes
    (reduce along axis=-1, see :func:`effect_statistic`). Returns the (1-conf)/2 and
    (1+conf)/2 quantiles of the resampled statistics (the order statistics just outside, so
    the interval never shrinks by interpolation); (nan, nan) if any statistic is NaN.
    """
    _z(conf)
    stats = bootstrap_stats(stat_fn, a, b, n_boot, rng=rng, paired=paired)
    # order statistics, no interpolation: slightly conservative, and exact with inf ratios
    return percentile_ci(stats, conf)


def censor_values(
    metric: Sequence[float] | np.ndarray,
    budget: Sequence[float] | np.ndarray | float,
    diverged: Sequence[bool] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Values with censoring: a run whose metric is missing (NaN/inf) or that diverged counts
    as its budget. Returns (values, censored) with censored a boolean mask; never drops a run
    (a censored run without a finite budget stays NaN)."""
    metric = np.asarray(metric, dtype=float)
    budget = np.broadcast_to(np.asarray(budget, dtype=float), metric.shape)
    censored = ~np.isfinite(metric)
    if diverged is not None:
        censored |= np.asarray(diverged, dtype=bool)
    return np.where(censored, budget, metric), censored


def equivalence_verdict_of(ci_low: float, ci_high: float, margin: float) -> str:
    """A claim of *no* effect within +-margin, from a 90% CI (two one-sided tests at 5%):
    EQUIVALENT if the whole CI lies inside (-margin, margin), REFUTED if it lies entirely
    outside, else INCONCLUSIVE."""
    return comparison_verdict(
        (ci_low, ci_high), (ci_low, ci_high), 0.0, bounds=(-margin, margin), expect="equivalent"
    )


def verdict_of(ci_low: float, ci_high: float, null: float) -> str:
    """SUPPORTED if the CI lies entirely above the null, REFUTED if entirely below."""
    if ci_low > null:
        return SUPPORTED
    if ci_high < null:
        return REFUTED
    return INCONCLUSIVE


def inside(ci: tuple[float, float], bounds: tuple[float, float]) -> bool:
    """Is the CI strictly inside the equivalence range (both ends finite)?"""
    lo, hi = ci
    return bool(np.isfinite(lo) and np.isfinite(hi) and bounds[0] < lo and hi < bounds[1])


def comparison_verdict(
    ci95: tuple[float, float],
    ci90: tuple[float, float],
    null: float,
    *,
    bounds: tuple[float, float] | None = None,
    expect: str = "effect",
    bound: str | None = None,
) -> str:
    """The verdict of one comparison from its oriented CIs (> null favours the claim).

    ``expect="effect"`` (the claim is an effect in favour of arm a): the 90% CI inside the
    equivalence ``bounds`` -> EQUIVALENT (two one-sided tests at 5%: an effect too small to
    matter, whatever its sign); else the 95% CI entirely above the null -> SUPPORTED,
    entirely below -> REFUTED; else INCONCLUSIVE.
    ``expect="equivalent"`` (the claim is *no* effect beyond the bounds): the 90% CI inside ->
    EQUIVALENT; the 95% CI entirely outside -> REFUTED; else INCONCLUSIVE.
    ``bound=">="`` (the effect is only a lower bound: the worse arm was censored in half or
    more of its runs) can only give SUPPORTED (95% low above the null) or, for equivalence,
    REFUTED (low at or above the upper margin); ``"<="`` only REFUTED; else INCONCLUSIVE.
    A NaN CI -> INCONCLUSIVE.
    """
    check_enum("comparison_verdict", "expect", expect, EXPECT)
    lo, hi = ci95
    if math.isnan(lo) or math.isnan(hi):
        return INCONCLUSIVE
    if expect == "equivalent":
        if bounds is None:
            raise ValueError("comparison_verdict: expect='equivalent' needs bounds")
        if bound is None and inside(ci90, bounds):
            return EQUIVALENT
        above = bound in (None, ">=") and lo >= bounds[1]
        below = bound in (None, "<=") and hi <= bounds[0]
        return REFUTED if above or below else INCONCLUSIVE
    if bound is None and bounds is not None and inside(ci90, bounds):
        return EQUIVALENT
    if bound in (None, ">=") and lo > null:
        return SUPPORTED
    if bound in (None, "<=") and hi < null:
        return REFUTED
    return INCONCLUSIVE


def confirms(verdict: str, expect: str = "effect") -> bool:
    """Does a comparison's verdict say what it claims (SUPPORTED for an effect, EQUIVALENT for
    a claim of no effect)?"""
    return verdict == (EQUIVALENT if expect == "equivalent" else SUPPORTED)


def claim_verdict(parts: Sequence[tuple[str, str]], rule: str = "all") -> str:
    """The claim-level word from the primary comparisons' ``(verdict, expect)`` pairs.

    - NO DATA: no comparison has data;
    - SUPPORTED: every comparison confirms (:func:`confirms`; rule ``any``: at least one);
    - PARTLY SUPPORTED: some confirm, some do not (the line names each part);
    - REFUTED: none confirms and at least one is REFUTED (rule ``any``: every one);
    - EQUIVALENT: none confirms, every one is EQUIVALENT (an effect was claimed, none found);
    - INCONCLUSIVE: otherwise.
    """
    check_enum("claim_verdict", "rule", rule, RULES)
    p = list(parts)
    if not p or all(v == NO_DATA for v, _ in p):
        return NO_DATA
    ok = [confirms(v, e) for v, e in p]
    if all(ok) or (rule == "any" and any(ok)):
        return SUPPORTED
    if any(ok):
        return PARTLY_SUPPORTED
    refuted = [v == REFUTED for v, _ in p]
    if all(refuted) or (rule == "all" and any(refuted)):
        return REFUTED
    if all(v == EQUIVALENT for v, _ in p):
        return EQUIVALENT
    return INCONCLUSIVE


def combine_verdicts(verdicts: Sequence[str], rule: str = "all") -> str:
    """:func:`claim_verdict` for comparisons that each claim an effect."""
    return claim_verdict([(v, "effect") for v in verdicts], rule)


# ----------------------------------------------------------------------------- bootstrap


def median_effect(effect: str, better: str) -> Callable[[Any, Any], Any]:
    """The oriented effect from the two arms' medians (m_a, m_b), vectorised."""
    check_enum("median_effect", "better", better, BETTER)
    if effect == "ratio":
        if better == "lower":
            return lambda ma, mb: safe_ratio(mb, ma)
        return lambda ma, mb: safe_ratio(ma, mb)
    if effect == "difference":
        if better == "lower":
            return lambda ma, mb: np.asarray(mb, dtype=float) - np.asarray(ma, dtype=float)
        return lambda ma, mb: np.asarray(ma, dtype=float) - np.asarray(mb, dtype=float)
    raise ValueError(f"median_effect: effect {effect!r} is not ratio|difference")


def percentile_ci(stats: np.ndarray, conf: float) -> tuple[float, float]:
    """The (1-conf)/2 and (1+conf)/2 order statistics of bootstrap statistics (no
    interpolation: slightly conservative, exact with inf ratios); (nan, nan) if any is NaN."""
    _z(conf)
    stats = np.asarray(stats, dtype=float)
    if stats.size == 0 or np.isnan(stats).any():
        return math.nan, math.nan
    alpha = 1.0 - conf
    low = np.quantile(stats, alpha / 2.0, method="lower")
    high = np.quantile(stats, 1.0 - alpha / 2.0, method="higher")
    return float(low), float(high)


def resampled_medians(
    groups: Sequence[np.ndarray], n_boot: int, rng: np.random.Generator, better: str
) -> tuple[np.ndarray, np.ndarray]:
    """One arm under tuning, selection repeated inside every resample.

    ``groups``: the arm's values per setting of the tuned param (sorted by setting). Each
    resample draws every group with replacement, keeps the group with the best median (ties:
    the first) and returns its median: shape (n_boot,), with the chosen group index per
    resample. With one group this is the plain bootstrap of the median."""
    check_enum("resampled_medians", "better", better, BETTER)
    meds = np.empty((n_boot, len(groups)))
    for j, g in enumerate(groups):
        g = np.asarray(g, dtype=float)
        meds[:, j] = np.median(g[rng.integers(0, g.size, size=(n_boot, g.size))], axis=1)
    score = -meds if better == "lower" else meds
    pick = np.argmax(score, axis=1)
    return meds[np.arange(n_boot), pick], pick


def tuned_bootstrap(
    groups_a: Sequence[np.ndarray],
    groups_b: Sequence[np.ndarray],
    effect: str,
    better: str,
    n_boot: int = 4000,
    *,
    rng: np.random.Generator,
) -> np.ndarray:
    """Bootstrap statistics of the oriented effect of two tuned arms, the tuning (best median
    per arm) repeated inside each resample so the CI includes the selection (no winner's
    curse): shape (n_boot,). Feed to :func:`percentile_ci`."""
    if not groups_a or not groups_b or any(np.size(g) == 0 for g in (*groups_a, *groups_b)):
        raise ValueError("tuned_bootstrap needs non-empty groups in both arms")
    ma, _ = resampled_medians(groups_a, n_boot, rng, better)
    mb, _ = resampled_medians(groups_b, n_boot, rng, better)
    return np.asarray(median_effect(effect, better)(ma, mb), dtype=float)


def bootstrap_stats(
    stat_fn: Callable[[np.ndarray, np.ndarray], Any],
    a: np.ndarray,
    b: np.ndarray,
    n_boot: int,
    *,
    rng: np.random.Generator,
    paired: bool = False,
) -> np.ndarray:
    """The ``n_boot`` resampled statistics behind :func:`bootstrap_ci`."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.ndim != 1 or b.ndim != 1 or a.size == 0 or b.size == 0:
        raise ValueError(f"bootstrap_ci needs two non-empty 1-D samples, got {a.shape}, {b.shape}")
    if paired and a.size != b.size:
        raise ValueError(f"paired bootstrap needs equal sizes, got {a.size} and {b.size}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    idx_a = rng.integers(0, a.size, size=(n_boot, a.size))
    idx_b = idx_a if paired else rng.integers(0, b.size, size=(n_boot, b.size))
    return np.asarray(stat_fn(a[idx_a], b[idx_b]), dtype=float)


# ----------------------------------------------------------------------------- censoring


def effect_bound(effect: str, better: str, bound_a: bool, bound_b: bool) -> str | None:
    """Which side an effect is bounded on when an arm is censored in half or more of its runs.

    A censored run's value is its budget, a lower bound of the value it would have reached,
    so a median over >= half censored runs is a lower bound of the arm's median. With the
    oriented effect (lower-better: b over a) a bounded arm b gives ``">="``, a bounded arm a
    ``"<="`` (higher-better: the reverse); both bounded: no direction (``"?"``)."""
    if bound_a and bound_b:
        return "?"
    if not (bound_a or bound_b):
        return None
    up = bound_b if better == "lower" else bound_a
    return ">=" if up else "<="


def km_curve(values: np.ndarray, censored: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier estimate of the share of runs that reached the target by time t:
    ``(t, 1 - S(t))`` at the observed event times (``scipy.stats.ecdf`` on
    ``scipy.stats.CensoredData``: censored runs leave the risk set at their budget). Empty
    arrays when no run reached the target."""
    from scipy import stats as sps

    v = np.asarray(values, dtype=float)
    c = np.asarray(censored, dtype=bool)
    ok = np.isfinite(v)
    v, c = v[ok], c[ok]
    if not (~c).any():
        return np.empty(0), np.empty(0)
    res = sps.ecdf(sps.CensoredData(uncensored=v[~c], right=v[c]))
    t = np.asarray(res.sf.quantiles, dtype=float)
    event = np.isin(t, v[~c])  # the steps; censored-only times do not move the curve
    return t[event], 1.0 - np.asarray(res.sf.probabilities, dtype=float)[event]


def published_in_ci(value: float | None, ci: tuple[float, float], bound: str | None) -> bool | None:
    """Does the published effect lie in the CI (for a bound: on its side of the bound)?"""
    lo, hi = ci
    if value is None or math.isnan(lo) or math.isnan(hi):
        return None
    if bound == ">=":
        return bool(value >= lo)
    if bound == "<=":
        return bool(value <= hi)
    return bool(lo <= value <= hi)


def sesoi_status(sesoi: float | None, ci: tuple[float, float], bound: str | None) -> str | None:
    """``reached`` (the CI lies beyond the smallest effect of interest), ``not reached`` (the
    CI lies below it) or ``undetermined``; None without a sesoi or a CI."""
    lo, hi = ci
    if sesoi is None or math.isnan(lo) or math.isnan(hi):
        return None
    if lo > sesoi and bound in (None, ">="):
        return "reached"
    if hi < sesoi and bound in (None, "<="):
        return "not reached"
    return "undetermined"
