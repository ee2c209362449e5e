"""What a claim is and how its verdict is computed (effect size, CI, verdict).

A claim lives in ``sweeps/<id>.yaml`` (a Hydra config) under the key ``claim``; see
docs/internals.md, section "Claims". This module reads that section (``load_claim``,
``load_claims``) and judges it against a table of MLflow runs (``evaluate``).

Every effect is oriented so that a value above the null favours the claim, where arm ``a``
is the arm the claim says is better:

- ``ratio``      lower-better: median(b) / median(a); higher-better: median(a) / median(b); null 1
- ``difference`` lower-better: median(b) - median(a); higher-better: median(a) - median(b); null 0
- ``rate``       success rate(a) - success rate(b); null 0

The CI decides, not the point estimate: a 95% CI entirely above the null -> SUPPORTED,
entirely below -> REFUTED, else INCONCLUSIVE; an arm without runs -> NO DATA. Ratios and
differences use a percentile bootstrap of the medians (paired by seed when both arms have the
same seeds); rates use Newcombe's hybrid score interval.

Censoring: a run that never reached the target (metric absent, or the run diverged) counts
as its budget (the ``censor`` param, e.g. ``train.epochs``); it is never dropped. A median
over censored values is therefore a lower bound for "lower is better" metrics, which makes
the verdicts conservative toward the arm with more censored runs.

Randomness: ``evaluate(..., seed)`` makes one ``np.random.Generator`` and spawns one child per
comparison, so a verdict is reproducible and does not depend on the order of comparisons.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd
import yaml

SUPPORTED = "SUPPORTED"
REFUTED = "REFUTED"
INCONCLUSIVE = "INCONCLUSIVE"
NO_DATA = "NO DATA"
VERDICTS = (SUPPORTED, REFUTED, INCONCLUSIVE, NO_DATA)

EFFECTS = ("ratio", "difference", "rate")
BETTER = ("lower", "higher")
RULES = ("all", "any")
NULL = {"ratio": 1.0, "difference": 0.0, "rate": 0.0}
OPS: dict[str, Callable[[Any, Any], Any]] = {
    ">=": operator.ge,
    ">": operator.gt,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}

OUTCOME_TAG = "tags.fnnbench.outcome"
MIN_RUNS = 2  # a bootstrap CI of a median needs at least two runs per arm

_CLAIM_KEYS = {
    "id", "title", "statement", "source", "published", "protocol", "factor", "metric",
    "better", "effect", "censor", "success", "rule", "plots", "comparisons", "tune", "where",
    "quick",
}  # fmt: skip
_COMPARISON_KEYS = {
    "label", "a", "b", "where", "tune", "primary", "metric", "better", "effect", "censor",
    "success", "margin",
}  # fmt: skip
_INHERITED = ("metric", "better", "effect", "censor", "tune", "success")


# ----------------------------------------------------------------------------- the claim


@dataclass(frozen=True)
class Published:
    """The published figure the claim is compared with (``value`` in the effect's unit)."""

    value: float | None = None
    text: str | None = None


@dataclass(frozen=True)
class Success:
    """A run succeeds when ``metrics.<metric> <op> value``; a missing metric is a failure."""

    metric: str
    op: str
    value: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Boolean success per run for metric values ``x`` (NaN -> False)."""
        x = np.asarray(x, dtype=float)
        ok = np.zeros(x.shape, dtype=bool)
        finite = ~np.isnan(x)
        ok[finite] = OPS[self.op](x[finite], self.value)
        return ok

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


@dataclass(frozen=True)
class Comparison:
    """One arm-vs-arm comparison, with the claim's defaults already filled in.

    ``a`` is the arm the claim says is better; ``a``, ``b`` and ``where`` map param keys
    (without the ``params.`` prefix) to values. ``censor`` is a param key holding the budget
    (or ``metrics.<name>``: unreached runs count at the arm's largest value of that metric)
    (e.g. ``train.epochs``) or a number, or None.
    """

    label: str
    a: dict[str, Any]
    b: dict[str, Any]
    where: dict[str, Any] = field(default_factory=dict)
    tune: str | None = None
    primary: bool = True
    metric: str | None = None
    better: str = "lower"
    effect: str = "ratio"
    censor: str | float | None = None
    success: Success | None = None
    margin: float | None = None  # equivalence: the claim is "no effect beyond +-margin"

    @property
    def null(self) -> float:
        return NULL[self.effect]


@dataclass(frozen=True)
class Claim:
    """The ``claim`` section of one sweep file, validated.

    ``sweep_params`` is ``hydra.sweeper.params`` of the same file (for the report's protocol
    section); ``header`` is the file's leading comment block without the ``#`` (Hydra
    directives such as ``# @package _global_`` left out).
    """

    id: str
    statement: str
    comparisons: list[Comparison]
    title: str | None = None
    source: str | None = None
    published: Published = field(default_factory=Published)
    protocol: str | None = None
    factor: str | None = None
    metric: str | None = None
    better: str | None = None
    effect: str = "ratio"
    censor: str | float | None = None
    success: Success | None = None
    tune: str | None = None
    where: dict[str, Any] = field(default_factory=dict)
    rule: str = "all"
    plots: list[str] = field(default_factory=list)
    quick: list[str] = field(default_factory=list)  # overrides for `reproduce --quick`
    sweep_params: dict[str, Any] = field(default_factory=dict)
    header: str = ""
    path: Path | None = None

    @property
    def primary(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.primary]


def _fail(where: str, key: str, value: Any, why: str) -> ValueError:
    return ValueError(f"{where}: claim key {key!r} = {value!r}: {why}")


def _read_header(text: str) -> str:
    """The leading comment block of a yaml file, '#' stripped, Hydra '# @...' lines left out."""
    lines = []
    for line in text.splitlines():
        s = line.strip()
        if not s:
            if lines:
                lines.append("")
            continue
        if not s.startswith("#"):
            break
        if s.startswith("# @") or s.startswith("#@"):
            continue
        s = s[1:]
        lines.append(s[1:] if s.startswith(" ") else s)
    return "\n".join(lines).strip("\n")


def _check_str(src: str, key: str, value: Any, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(src, key, value, "expected a non-empty string")
    return value


def _check_mapping(src: str, key: str, value: Any, allow_empty: bool = True) -> dict:
    if value is None and allow_empty:
        return {}
    if not isinstance(value, Mapping) or (not allow_empty and not value):
        raise _fail(src, key, value, "expected a mapping of param key -> value")
    for k in value:
        if not isinstance(k, str):
            raise _fail(src, key, value, f"param key {k!r} is not a string")
    return dict(value)


def _check_enum(src: str, key: str, value: Any, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise _fail(src, key, value, f"expected one of {'|'.join(allowed)}")
    return value


def _check_number(src: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _fail(src, key, value, "expected a number")
    return float(value)


def _parse_success(src: str, key: str, value: Any) -> Success | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _fail(src, key, value, "expected {metric, op, value}")
    unknown = set(value) - {"metric", "op", "value"}
    if unknown:
        k = sorted(unknown)[0]
        raise _fail(src, f"{key}.{k}", value[k], "unknown key (allowed: metric, op, value)")
    for k in ("metric", "op", "value"):
        if k not in value:
            raise _fail(src, f"{key}.{k}", None, "missing")
    metric = _check_str(src, f"{key}.metric", value["metric"], optional=False)
    op = _check_enum(src, f"{key}.op", value["op"], tuple(OPS))
    return Success(metric, op, _check_number(src, f"{key}.value", value["value"]))


def _parse_published(src: str, value: Any) -> Published:
    if value is None:
        return Published()
    if isinstance(value, str):
        return Published(text=value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return Published(value=float(value))
    if not isinstance(value, Mapping):
        raise _fail(src, "published", value, "expected {value, text}, a number or a string")
    unknown = set(value) - {"value", "text"}
    if unknown:
        k = sorted(unknown)[0]
        raise _fail(src, f"published.{k}", value[k], "unknown key (allowed: value, text)")
    v = value.get("value")
    return Published(
        value=None if v is None else _check_number(src, "published.value", v),
        text=_check_str(src, "published.text", value.get("text")),
    )


def _parse_censor(src: str, key: str, value: Any) -> str | float | None:
    if value is None or isinstance(value, str) and value.strip():
        return value
    return _check_number(src, key, value)


def _arm_label(arm: Mapping[str, Any]) -> str:
    return ",".join(json.dumps(v) if isinstance(v, (list, tuple)) else str(v) for v in arm.values())


def _parse_comparison(src: str, i: int, raw: Any, defaults: dict[str, Any]) -> Comparison:
    key = f"comparisons[{i}]"
    if not isinstance(raw, Mapping):
        raise _fail(src, key, raw, "expected a mapping with keys a, b, ...")
    unknown = set(raw) - _COMPARISON_KEYS
    if unknown:
        k = sorted(unknown)[0]
        raise _fail(src, f"{key}.{k}", raw[k], f"unknown key (allowed: {sorted(_COMPARISON_KEYS)})")
    for side in ("a", "b"):
        if side not in raw:
            raise _fail(src, f"{key}.{side}", None, "missing")
    a = _check_mapping(src, f"{key}.a", raw["a"], allow_empty=False)
    b = _check_mapping(src, f"{key}.b", raw["b"], allow_empty=False)
    where = {**defaults["where"], **_check_mapping(src, f"{key}.where", raw.get("where"))}
    merged = {k: raw[k] if k in raw else defaults[k] for k in _INHERITED}

    effect = _check_enum(src, f"{key}.effect", merged["effect"], EFFECTS)
    metric = _check_str(src, f"{key}.metric", merged["metric"])
    success = (
        _parse_success(src, f"{key}.success", raw["success"])
        if "success" in raw
        else merged["success"]
    )
    if effect == "rate":
        if success is None:
            raise _fail(src, f"{key}.effect", effect, "effect 'rate' needs a 'success' spec")
        better = merged["better"] or "higher"
        _check_enum(src, f"{key}.better", better, BETTER)
    else:
        if metric is None:
            raise _fail(src, f"{key}.metric", None, f"effect {effect!r} needs a metric")
        better = _check_enum(src, f"{key}.better", merged["better"], BETTER)
    margin = raw.get("margin")
    if margin is not None:
        if effect != "difference":
            raise _fail(src, f"{key}.margin", margin, "a margin needs effect: difference")
        margin = _check_number(src, f"{key}.margin", margin)
        if margin <= 0:
            raise _fail(src, f"{key}.margin", margin, "must be > 0")
    primary = raw.get("primary", True)
    if not isinstance(primary, bool):
        raise _fail(src, f"{key}.primary", primary, "expected true or false")
    label = raw.get("label") or f"{_arm_label(a)} vs {_arm_label(b)}"
    return Comparison(
        label=_check_str(src, f"{key}.label", label, optional=False),
        a=a,
        b=b,
        where=where,
        tune=_check_str(src, f"{key}.tune", merged["tune"]),
        primary=primary,
        metric=metric,
        better=better,
        effect=effect,
        censor=_parse_censor(src, f"{key}.censor", merged["censor"]),
        success=success,
        margin=margin,
    )


def parse_claim(section: Any, src: str = "<claim>", **extra: Any) -> Claim:
    """Validate a ``claim`` mapping and build a :class:`Claim` (``src`` names it in errors).

    Raises ValueError naming the source, the key and the value: unknown keys, missing
    id/statement/comparisons, ``better`` not lower|higher, ``effect`` not ratio|difference|rate,
    rate without a success spec, no primary comparison.
    """
    if not isinstance(section, Mapping):
        raise _fail(src, "claim", section, "expected a mapping")
    unknown = set(section) - _CLAIM_KEYS
    if unknown:
        k = sorted(unknown)[0]
        raise _fail(src, k, section[k], f"unknown key (allowed: {sorted(_CLAIM_KEYS)})")
    for k in ("id", "statement", "comparisons"):
        if section.get(k) in (None, "", []):
            raise _fail(src, k, section.get(k), "missing")
    if not isinstance(section["comparisons"], list):
        raise _fail(src, "comparisons", section["comparisons"], "expected a list")
    better = section.get("better")
    if better is not None:
        _check_enum(src, "better", better, BETTER)
    effect = _check_enum(src, "effect", section.get("effect", "ratio"), EFFECTS)
    rule = _check_enum(src, "rule", section.get("rule", "all"), RULES)
    quick = section.get("quick") or []
    if not isinstance(quick, list) or not all(isinstance(q, str) and "=" in q for q in quick):
        raise _fail(src, "quick", quick, "expected a list of Hydra overrides key=value")
    plots = section.get("plots") or []
    if not isinstance(plots, list) or not all(isinstance(p, str) for p in plots):
        raise _fail(src, "plots", plots, "expected a list of plot names")
    defaults = {
        "metric": _check_str(src, "metric", section.get("metric")),
        "better": better,
        "effect": effect,
        "censor": _parse_censor(src, "censor", section.get("censor")),
        "tune": _check_str(src, "tune", section.get("tune")),
        "success": _parse_success(src, "success", section.get("success")),
        "where": _check_mapping(src, "where", section.get("where")),
    }
    comparisons = [
        _parse_comparison(src, i, c, defaults) for i, c in enumerate(section["comparisons"])
    ]
    if not any(c.primary for c in comparisons):
        raise _fail(src, "comparisons", "...", "no primary comparison (set primary: true)")
    return Claim(
        id=str(_check_str(src, "id", section["id"], optional=False)),
        statement=str(_check_str(src, "statement", section["statement"], optional=False)),
        comparisons=comparisons,
        title=_check_str(src, "title", section.get("title")),
        source=_check_str(src, "source", section.get("source")),
        published=_parse_published(src, section.get("published")),
        protocol=_check_str(src, "protocol", section.get("protocol")),
        factor=_check_str(src, "factor", section.get("factor")),
        metric=defaults["metric"],
        better=better,
        effect=effect,
        censor=defaults["censor"],
        success=defaults["success"],
        tune=defaults["tune"],
        where=defaults["where"],
        rule=rule,
        plots=list(plots),
        quick=list(quick),
        **extra,
    )


def _load(path: Path) -> tuple[dict, str]:
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid yaml: {e}") from e
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected a yaml mapping at the top level")
    return dict(data), text


def _sweep_params(data: Mapping) -> dict[str, Any]:
    node: Any = data
    for k in ("hydra", "sweeper", "params"):
        node = node.get(k) if isinstance(node, Mapping) else None
    return dict(node) if isinstance(node, Mapping) else {}


def load_claim(path: str | Path) -> Claim:
    """Read and validate the ``claim`` section of one sweep file (ValueError if absent/bad)."""
    path = Path(path)
    data, text = _load(path)
    if "claim" not in data:
        raise ValueError(f"{path}: no 'claim' section")
    return parse_claim(
        data["claim"],
        src=str(path),
        sweep_params=_sweep_params(data),
        header=_read_header(text),
        path=path,
    )


def load_claims(sweeps_dir: str | Path, ids: Sequence[str] | None = None) -> list[Claim]:
    """All claims in ``sweeps_dir/*.yaml``, sorted by file name; files without ``claim`` skipped.

    ``ids`` keeps only those claim ids (ValueError naming an id that no file defines).
    Duplicate ids are a ValueError.
    """
    sweeps_dir = Path(sweeps_dir)
    if not sweeps_dir.is_dir():
        raise ValueError(f"{sweeps_dir}: not a directory")
    claims: list[Claim] = []
    seen: dict[str, Path] = {}
    for path in sorted(sweeps_dir.glob("*.yaml"), key=lambda p: p.name):
        data, _ = _load(path)
        if "claim" not in data:
            continue
        claim = load_claim(path)
        if claim.id in seen:
            raise ValueError(
                f"{path}: claim key 'id' = {claim.id!r}: also defined in {seen[claim.id]}"
            )
        seen[claim.id] = path
        claims.append(claim)
    if ids is not None:
        missing = [i for i in ids if i not in seen]
        if missing:
            raise ValueError(f"{sweeps_dir}: no claim with id {missing[0]!r} (have {sorted(seen)})")
        claims = [c for c in claims if c.id in set(ids)]
    return claims


# ----------------------------------------------------------------------------- statistics


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
    _check_enum("effect_statistic", "better", better, BETTER)
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
    _check_enum("combine_verdicts", "rule", rule, RULES)
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


# ----------------------------------------------------------------------------- run selection


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(
        x, (bool, np.bool_)
    )


def _is_missing(x: Any) -> bool:
    return x is None or (isinstance(x, (float, np.floating)) and math.isnan(x))


def _to_float(x: Any) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def match_value(cell: Any, want: Any) -> bool:
    """Does a (cast) param cell equal the yaml value ``want``?

    Numbers compare numerically (a numeric string in the yaml, e.g. ``1e-3``, too); lists
    compare to the JSON string of the list; booleans to booleans (or 'true'/'false');
    strings exactly; None matches a missing cell. A missing cell matches nothing else.
    """
    if want is None:
        return _is_missing(cell)
    if _is_missing(cell):
        return False
    if isinstance(want, bool):
        if isinstance(cell, (bool, np.bool_)):
            return bool(cell) == want
        return isinstance(cell, str) and cell.strip().lower() == str(want).lower()
    if isinstance(want, (list, tuple, Mapping)):
        want_j = json.loads(json.dumps(want))
        if isinstance(cell, str):
            if cell == json.dumps(want):
                return True
            try:
                return json.loads(cell) == want_j
            except ValueError:
                return False
        return isinstance(cell, (list, tuple, Mapping)) and json.loads(json.dumps(cell)) == want_j
    if isinstance(cell, (bool, np.bool_)):
        return False
    if _is_number(want):
        c = float(cell) if _is_number(cell) else _to_float(cell)
        return c is not None and math.isclose(c, float(want), rel_tol=1e-9, abs_tol=0.0)
    if isinstance(want, str):
        if isinstance(cell, str):
            return cell == want
        w = _to_float(want)
        return _is_number(cell) and w is not None and math.isclose(float(cell), w, rel_tol=1e-9)
    return cell == want


def _param_col(key: str) -> str:
    return f"params.{key}"


def _match(runs: pd.DataFrame, spec: Mapping[str, Any]) -> tuple[np.ndarray, str | None]:
    """Boolean mask of runs whose params match every key of spec; note names a missing key."""
    mask = np.ones(len(runs), dtype=bool)
    for key, want in spec.items():
        col = _param_col(key)
        if col not in runs.columns:
            return np.zeros(len(runs), dtype=bool), f"param '{key}' not in the runs"
        mask &= runs[col].map(lambda c, w=want: match_value(c, w)).to_numpy(dtype=bool)
    return mask, None


def counting_mask(runs: pd.DataFrame) -> np.ndarray:
    """Runs that count: status FINISHED and a fnnbench.outcome tag (not missing)."""
    if "status" not in runs.columns or OUTCOME_TAG not in runs.columns:
        return np.zeros(len(runs), dtype=bool)
    outcome = runs[OUTCOME_TAG]
    ok = (runs["status"] == "FINISHED") & outcome.notna() & (outcome != "missing")
    return ok.to_numpy(dtype=bool)


def _failed_mask(runs: pd.DataFrame) -> np.ndarray:
    if "status" not in runs.columns:
        return np.zeros(len(runs), dtype=bool)
    return (runs["status"] == "FAILED").to_numpy(dtype=bool)


def _diverged(frame: pd.DataFrame) -> np.ndarray:
    if OUTCOME_TAG not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return (frame[OUTCOME_TAG] == "diverged").to_numpy(dtype=bool)


def _numeric_col(frame: pd.DataFrame, col: str) -> np.ndarray:
    if col not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)


def _budget(comp: Comparison, frame: pd.DataFrame) -> np.ndarray:
    if comp.censor is None:
        return np.full(len(frame), np.nan)
    if isinstance(comp.censor, str):
        if comp.censor.startswith("metrics."):
            # "metrics.<name>": no fixed budget (e.g. training seconds); an unreached run counts
            # as the slowest run of its arm, the largest value of that metric in the arm.
            x = _numeric_col(frame, comp.censor)
            worst = float(np.nanmax(x)) if np.isfinite(x).any() else np.nan
            return np.full(len(frame), worst)
        return _numeric_col(frame, _param_col(comp.censor))
    return np.full(len(frame), float(comp.censor))


@dataclass
class ArmValues:
    """One arm's data for a comparison: the runs used and their (censored) values.

    ``values``: metric values with censored runs at their budget (ratio/difference) or
    success as 0/1 (rate). ``censored``: censored at the budget (rate: success metric missing,
    counted as failure). ``unknown``: runs that needed censoring but have no budget.
    """

    runs: pd.DataFrame
    values: np.ndarray
    censored: np.ndarray
    unknown: np.ndarray
    failed: int = 0
    tuned: Any = None
    note: str | None = None

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def diverged(self) -> int:
        return int(_diverged(self.runs).sum())


def arm_values(comp: Comparison, frame: pd.DataFrame) -> ArmValues:
    """Values of the runs in ``frame`` for ``comp`` (censoring or success applied)."""
    n = len(frame)
    if comp.effect == "rate":
        assert comp.success is not None
        x = _numeric_col(frame, f"metrics.{comp.success.metric}")
        ok = comp.success(x)
        missing = np.isnan(x)
        return ArmValues(frame, ok.astype(float), missing, np.zeros(n, dtype=bool))
    metric = _numeric_col(frame, f"metrics.{comp.metric}")
    if comp.censor is None:
        unknown = ~np.isfinite(metric)
        return ArmValues(frame, metric, np.zeros(n, dtype=bool), unknown)
    values, censored = censor_values(metric, _budget(comp, frame), _diverged(frame))
    unknown = censored & ~np.isfinite(values)
    return ArmValues(frame, values, censored & ~unknown, unknown)


def _score(comp: Comparison, av: ArmValues) -> tuple[float, float]:
    """Tune score of a group, larger is better: the median value (sign by `better`; censored
    runs at their budget); rate: the success rate. With a per-arm budget (``censor:
    metrics.<name>``, e.g. seconds) the share of runs that reached the target ranks first, so a
    group whose runs diverge fast never wins on its short censored times."""
    v = av.values[np.isfinite(av.values)]
    if v.size == 0:
        return (-math.inf, -math.inf)
    if comp.effect == "rate":
        return (float(v.mean()), 0.0)
    per_arm_budget = isinstance(comp.censor, str) and comp.censor.startswith("metrics.")
    reached = 1.0 - float(av.censored.mean()) if per_arm_budget and av.censored.size else 0.0
    m = float(np.median(v))
    return (reached, -m if comp.better == "lower" else m)


def _sort_key(x: Any) -> tuple[int, Any]:
    f = float(x) if _is_number(x) else _to_float(x)
    return (0, f) if f is not None else (1, str(x))


def _select(comp: Comparison, runs: pd.DataFrame, side: str, tuned: bool = True) -> ArmValues:
    if side not in ("a", "b"):
        raise ValueError(f"side must be 'a' or 'b', got {side!r}")
    arm = comp.a if side == "a" else comp.b
    empty = runs.iloc[0:0]
    mask, note = _match(runs, {**comp.where, **arm})
    if note is None and tuned and comp.tune and _param_col(comp.tune) not in runs.columns:
        note = f"tune param '{comp.tune}' not in the runs"
    if note is not None:
        return ArmValues(empty, np.empty(0), np.empty(0, bool), np.empty(0, bool), note=note)
    count = mask & counting_mask(runs)
    failed = mask & _failed_mask(runs)
    chosen = None
    if tuned and comp.tune:
        col = runs[_param_col(comp.tune)]
        best = None
        for value in sorted({v for v in col[count] if not _is_missing(v)}, key=_sort_key):
            group = count & col.map(lambda c, w=value: match_value(c, w)).to_numpy(dtype=bool)
            s = _score(comp, arm_values(comp, runs[group]))
            if best is None or s > best[0]:  # strict: ties keep the smaller value
                best = (s, value)
        if best is not None:
            chosen = best[1]
            in_group = col.map(lambda c: match_value(c, chosen)).to_numpy(dtype=bool)
            count &= in_group
            failed &= in_group
        else:
            count &= False
    av = arm_values(comp, runs[count])
    av.failed = int(failed.sum())
    av.tuned = chosen.item() if isinstance(chosen, np.generic) else chosen
    return av


def runs_for_arm(
    comp: Comparison, runs: pd.DataFrame, side: str, *, tuned: bool = True
) -> pd.DataFrame:
    """The runs that arm ``side`` ('a' or 'b') of ``comp`` uses: FINISHED runs with an outcome
    tag, matching the arm and ``where``, restricted to the chosen tune value (``tuned=False``:
    every tune value). Empty when a key is not a column. The report plots exactly these."""
    return _select(comp, runs, side, tuned=tuned).runs


# ----------------------------------------------------------------------------- evaluation


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


@dataclass
class ComparisonResult:
    """The outcome of one comparison (arm ``a`` is the arm the claim says is better).

    ``effect`` is oriented (> ``null`` favours the claim); ``ci_low``/``ci_high`` its CI (NaN
    when none could be computed). ``median_*``/``mean_*`` are over the values used (censored
    runs at their budget; rate: over the success metric where present). ``tuned_*`` are the
    chosen values of the ``tune`` param. ``failed_*``/``diverged_*`` count FAILED and diverged
    runs of each arm (after tune selection); diverged runs are among the censored ones.
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
    n_a: int = 0
    n_b: int = 0
    censored_a: int = 0
    censored_b: int = 0
    failed_a: int = 0
    failed_b: int = 0
    diverged_a: int = 0
    diverged_b: int = 0
    tune: str | None = None
    tuned_a: Any = None
    tuned_b: Any = None
    run_ids_a: list[str] = field(default_factory=list)
    run_ids_b: list[str] = field(default_factory=list)
    median_a: float = math.nan
    median_b: float = math.nan
    mean_a: float = math.nan
    mean_b: float = math.nan
    rate_a: float = math.nan
    rate_b: float = math.nan
    paired: bool = False
    primary: bool = True
    note: str = ""
    spec: Comparison | None = field(default=None, repr=False)

    @property
    def failed(self) -> tuple[int, int]:
        return self.failed_a, self.failed_b

    @property
    def diverged(self) -> tuple[int, int]:
        return self.diverged_a, self.diverged_b

    @property
    def censored(self) -> tuple[int, int]:
        return self.censored_a, self.censored_b

    def effect_text(self) -> str:
        """The effect with its CI, e.g. '3.4x [2.8, 4.1]' or '+0.45 [0.2, 0.65]'."""
        ci = f"[{_fmt(self.ci_low)}, {_fmt(self.ci_high)}]"
        if self.effect_kind == "ratio":
            return f"{_fmt(self.effect)}x {ci}"
        sign = "+" if self.effect > 0 else ""
        return f"{sign}{_fmt(self.effect)} {ci}"

    def summary_line(self) -> str:
        n = f"(n={self.n_a} vs {self.n_b})"
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


def evaluate_comparison(
    comp: Comparison,
    runs: pd.DataFrame,
    rng: np.random.Generator,
    *,
    n_boot: int = 4000,
    conf: float = 0.95,
) -> ComparisonResult:
    """Select both arms of ``comp`` in ``runs``, compute the effect, its CI and the verdict."""
    sa, sb = _select(comp, runs, "a"), _select(comp, runs, "b")
    notes = [f"arm {s}: {av.note}" for s, av in (("a", sa), ("b", sb)) if av.note]
    res = ComparisonResult(
        label=comp.label,
        metric=comp.success.metric if comp.effect == "rate" and comp.success else comp.metric,
        effect_kind=comp.effect,
        better=comp.better,
        null=comp.null,
        verdict=NO_DATA,
        conf=conf,
        n_a=sa.n,
        n_b=sb.n,
        censored_a=int(sa.censored.sum()),
        censored_b=int(sb.censored.sum()),
        failed_a=sa.failed,
        failed_b=sb.failed,
        diverged_a=sa.diverged,
        diverged_b=sb.diverged,
        tune=comp.tune,
        tuned_a=sa.tuned,
        tuned_b=sb.tuned,
        run_ids_a=[str(r) for r in sa.runs.get("run_id", pd.Series(dtype=str))],
        run_ids_b=[str(r) for r in sb.runs.get("run_id", pd.Series(dtype=str))],
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
        res.rate_a, res.rate_b = k_a / sa.n, k_b / sb.n
        res.effect = res.rate_a - res.rate_b
        res.ci_low, res.ci_high = newcombe_diff_interval(k_a, sa.n, k_b, sb.n, conf)
        col = f"metrics.{comp.success.metric}"
        xa, xb = _numeric_col(sa.runs, col), _numeric_col(sb.runs, col)
        res.median_a, res.median_b = _nan_stat(np.median, xa), _nan_stat(np.median, xb)
        res.mean_a, res.mean_b = _nan_stat(np.mean, xa), _nan_stat(np.mean, xb)
        res.verdict = verdict_of(res.ci_low, res.ci_high, res.null)
        if res.censored_a or res.censored_b:
            notes.append(
                f"{comp.success.metric} missing in {res.censored_a} vs {res.censored_b} runs "
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
    res.median_a, res.median_b = _nan_stat(np.median, va), _nan_stat(np.median, vb)
    res.mean_a, res.mean_b = _nan_stat(np.mean, va), _nan_stat(np.mean, vb)
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
        res.verdict = (verdict_of(res.ci_low, res.ci_high, res.null) if comp.margin is None
                       else equivalence_verdict_of(res.ci_low, res.ci_high, comp.margin))
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


def evaluate(
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
        evaluate_comparison(c, runs, r, n_boot=n_boot, conf=conf)
        for c, r in zip(claim.comparisons, rngs, strict=True)
    ]
    verdict = combine_verdicts([r.verdict for r in results if r.primary], claim.rule)
    return ClaimResult(claim=claim, verdict=verdict, comparisons=results, seed=seed)
