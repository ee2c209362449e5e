"""The statistics behind a verdict: intervals, effects, censoring and verdict rules.

Every effect is oriented so that a value above the null favours the claim, where arm ``a``
is the arm the claim says is better:

- ``ratio``      lower-better: median(b) / median(a); higher-better: median(a) / median(b); null 1
- ``difference`` lower-better: median(b) - median(a); higher-better: median(a) - median(b); null 0
- ``rate``       success rate(a) - success rate(b); null 0

The CI decides, not the point estimate: a 95% CI entirely above the null -> SUPPORTED,
entirely below -> REFUTED, else INCONCLUSIVE (:func:`verdict_of`; a claim of no effect within
a margin: :func:`equivalence_verdict_of`). Ratios and differences use a percentile bootstrap of
the medians (:func:`bootstrap_ci`, paired by seed when both arms have the same seeds); rates
use Newcombe's hybrid score interval (:func:`newcombe_diff_interval`, built on
:func:`wilson_interval`).

Censoring (:func:`censor_values`): a run that never reached the target (metric absent, or the
run diverged) counts as its budget; it is never dropped. A median over censored values is
therefore a lower bound for "lower is better" metrics, which makes the verdicts conservative
toward the arm with more censored runs.

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
    INCONCLUSIVE,
    NO_DATA,
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
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.ndim != 1 or b.ndim != 1 or a.size == 0 or b.size == 0:
        raise ValueError(f"bootstrap_ci needs two non-empty 1-D samples, got {a.shape}, {b.shape}")
    if paired and a.size != b.size:
        raise ValueError(f"paired bootstrap needs equal sizes, got {a.size} and {b.size}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    alpha = 1.0 - conf
    _z(conf)
    idx_a = rng.integers(0, a.size, size=(n_boot, a.size))
    idx_b = idx_a if paired else rng.integers(0, b.size, size=(n_boot, b.size))
    stats = np.asarray(stat_fn(a[idx_a], b[idx_b]), dtype=float)
    if np.isnan(stats).any():
        return math.nan, math.nan
    # order statistics, no interpolation: slightly conservative, and exact with inf ratios
    low = np.quantile(stats, alpha / 2.0, method="lower")
    high = np.quantile(stats, 1.0 - alpha / 2.0, method="higher")
    return float(low), float(high)


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
    """For a claim of *no* effect (difference within +-margin): SUPPORTED if the whole CI lies
    inside (-margin, margin), REFUTED if it lies entirely outside, else INCONCLUSIVE."""
    if not (np.isfinite(ci_low) and np.isfinite(ci_high)):
        return INCONCLUSIVE
    if -margin < ci_low and ci_high < margin:
        return SUPPORTED
    if ci_low >= margin or ci_high <= -margin:
        return REFUTED
    return INCONCLUSIVE


def verdict_of(ci_low: float, ci_high: float, null: float) -> str:
    """SUPPORTED if the CI lies entirely above the null, REFUTED if entirely below."""
    if ci_low > null:
        return SUPPORTED
    if ci_high < null:
        return REFUTED
    return INCONCLUSIVE


def combine_verdicts(verdicts: Sequence[str], rule: str = "all") -> str:
    """Claim verdict from the primary comparisons' verdicts.

    rule ``all``: all SUPPORTED -> SUPPORTED; any REFUTED -> REFUTED; all NO DATA -> NO DATA.
    rule ``any``: any SUPPORTED -> SUPPORTED; all REFUTED -> REFUTED; all NO DATA -> NO DATA.
    Otherwise INCONCLUSIVE.
    """
    check_enum("combine_verdicts", "rule", rule, RULES)
    v = list(verdicts)
    if not v or all(x == NO_DATA for x in v):
        return NO_DATA
    if rule == "all":
        if all(x == SUPPORTED for x in v):
            return SUPPORTED
        if any(x == REFUTED for x in v):
            return REFUTED
    else:
        if any(x == SUPPORTED for x in v):
            return SUPPORTED
        if all(x == REFUTED for x in v):
            return REFUTED
    return INCONCLUSIVE
