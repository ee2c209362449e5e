"""What a claim is: the ``claim`` section of a sweep file, parsed and validated.

A claim lives in ``sweeps/<id>.yaml`` (a Hydra config) under the key ``claim``; see
docs/internals.md, section "Claims". :func:`load_claim` / :func:`load_claims` read that
section, :func:`parse_claim` validates it into a :class:`Claim` whose comparisons carry the
claim's defaults (metric, better, effect, censor, tune, success, where) already filled in.
Errors are ValueErrors naming the file, the key and the value.

Also the words and constants of the schema: the comparison verdicts (SUPPORTED, REFUTED,
EQUIVALENT, INCONCLUSIVE, NO DATA), the claim-level words (those and PARTLY SUPPORTED), the
effect kinds with their null values, ``better`` directions, verdict rules and the comparison
operators of a success spec.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from fnnbench.paths import file_sha256

SUPPORTED = "SUPPORTED"
REFUTED = "REFUTED"
EQUIVALENT = "EQUIVALENT"
INCONCLUSIVE = "INCONCLUSIVE"
NO_DATA = "NO DATA"
PARTLY_SUPPORTED = "PARTLY SUPPORTED"
VERDICTS = (SUPPORTED, REFUTED, EQUIVALENT, INCONCLUSIVE, NO_DATA)  # one per comparison
# the claim-level words (fnnbench.claims.stats.claim_verdict)
CLAIM_VERDICTS = (SUPPORTED, PARTLY_SUPPORTED, REFUTED, EQUIVALENT, INCONCLUSIVE, NO_DATA)
EXPECT = ("effect", "equivalent")  # what a comparison claims: an effect, or none (within a margin)

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

_CLAIM_KEYS = {
    "id", "title", "statement", "source", "published", "protocol", "factor", "metric",
    "better", "effect", "censor", "success", "rule", "plots", "comparisons", "tune", "where",
    "quick", "tune_seeds", "differs",
}  # fmt: skip
_COMPARISON_KEYS = {
    "label", "a", "b", "where", "tune", "primary", "metric", "better", "effect", "censor",
    "success", "margin", "equivalence", "published", "sesoi", "expect",
}  # fmt: skip
_INHERITED = ("metric", "better", "effect", "censor", "tune", "success")
# the keys a claim file may use (docs/claims.md documents each; tests/test_claim_authoring.py)
CLAIM_KEYS = frozenset(_CLAIM_KEYS)  # the `claim:` section
COMPARISON_KEYS = frozenset(_COMPARISON_KEYS)  # each entry of `comparisons:`
SUCCESS_KEYS = ("metric", "op", "value")  # `success: {metric, op, value}`
PUBLISHED_KEYS = ("value", "text")  # `published: {value, text}` (claim level)


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
    margin: float | None = None  # difference: the equivalence margin +-margin
    equivalence: tuple[float, float] | None = None  # the margin (lo, hi), oriented effect units
    published: float | None = None  # the published effect, in the comparison's units
    sesoi: float | None = None  # smallest effect size of interest (oriented effect units)
    expect: str = "effect"  # "equivalent": the claim is no effect beyond the margin

    @property
    def null(self) -> float:
        return NULL[self.effect]

    @property
    def bounds(self) -> tuple[float, float] | None:
        """The equivalence margin as (lo, hi) (``margin: m`` -> (-m, m)), or None."""
        if self.equivalence is not None:
            return self.equivalence
        if self.margin is not None:
            return (-self.margin, self.margin)
        return None


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
    tune_seeds: int | None = None  # seeds < N tune, seeds >= N are judged
    differs: str | None = None  # why a result may differ from the paper (free text)
    sha256: str | None = None  # sha256 of the claim file (provenance of the runs)
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


def check_enum(src: str, key: str, value: Any, allowed: Sequence[str]) -> str:
    """``value`` if it is one of ``allowed``, else a ValueError naming ``src``, ``key`` and the
    value (e.g. ``test: claim key 'better' = 'smaller': expected one of lower|higher``)."""
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
    op = check_enum(src, f"{key}.op", value["op"], tuple(OPS))
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


def _parse_equivalence(src: str, key: str, value: Any, effect: str) -> tuple[float, float] | None:
    """``equivalence: [lo, hi]``: lo < null < hi (ratios: 0 < lo < 1 < hi)."""
    if value is None:
        return None
    if effect == "rate":
        raise _fail(src, key, value, "an equivalence range needs effect: ratio or difference")
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise _fail(src, key, value, "expected [lo, hi]")
    lo, hi = (_check_number(src, key, v) for v in value)
    null = NULL[effect]
    if not lo < null < hi or (effect == "ratio" and lo <= 0):
        limits = "0 < lo < 1 < hi" if effect == "ratio" else "lo < 0 < hi"
        raise _fail(src, key, list(value), f"expected {limits}")
    return (lo, hi)


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

    effect = check_enum(src, f"{key}.effect", merged["effect"], EFFECTS)
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
        check_enum(src, f"{key}.better", better, BETTER)
    else:
        if metric is None:
            raise _fail(src, f"{key}.metric", None, f"effect {effect!r} needs a metric")
        better = check_enum(src, f"{key}.better", merged["better"], BETTER)
    margin = raw.get("margin")
    if margin is not None:
        if effect != "difference":
            raise _fail(src, f"{key}.margin", margin, "a margin needs effect: difference")
        margin = _check_number(src, f"{key}.margin", margin)
        if margin <= 0:
            raise _fail(src, f"{key}.margin", margin, "must be > 0")
    equivalence = _parse_equivalence(src, f"{key}.equivalence", raw.get("equivalence"), effect)
    if margin is not None and equivalence is not None:
        raise _fail(src, f"{key}.equivalence", raw["equivalence"], "give margin or equivalence")
    published = raw.get("published")
    if published is not None:
        published = _check_number(src, f"{key}.published", published)
        if effect == "ratio" and published <= 0:
            raise _fail(src, f"{key}.published", published, "a ratio must be > 0")
    sesoi = raw.get("sesoi")
    if sesoi is not None:
        sesoi = _check_number(src, f"{key}.sesoi", sesoi)
        if sesoi <= NULL[effect]:
            raise _fail(src, f"{key}.sesoi", sesoi, f"must be > {NULL[effect]:g} (no effect)")
    # a margin on a difference keeps its old meaning: the claim is "no effect beyond it"
    expect = raw.get("expect", "equivalent" if margin is not None else "effect")
    check_enum(src, f"{key}.expect", expect, EXPECT)
    if expect == "equivalent" and margin is None and equivalence is None:
        raise _fail(src, f"{key}.expect", expect, "needs a margin or an equivalence range")
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
        equivalence=equivalence,
        published=published,
        sesoi=sesoi,
        expect=expect,
    )


def _top_level_fields(src: str, section: Mapping) -> dict[str, Callable[[], Any]]:
    """One check per top-level key (after the unknown and missing keys): each thunk returns
    the key's validated value or raises the ValueError of that key. ``parse_claim`` runs them
    in this order and stops at the first error; ``claim_problems`` runs them all."""

    def quick() -> list[str]:
        value = section.get("quick") or []
        if not isinstance(value, list) or not all(isinstance(q, str) and "=" in q
                                                  for q in value):
            raise _fail(src, "quick", value, "expected a list of Hydra overrides key=value")
        return list(value)

    def tune_seeds() -> int | None:
        value = section.get("tune_seeds")
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise _fail(src, "tune_seeds", value, "expected an integer >= 1")
        return value

    def plots() -> list[str]:
        value = section.get("plots") or []
        if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
            raise _fail(src, "plots", value, "expected a list of plot names")
        return list(value)

    def better() -> str | None:
        value = section.get("better")
        return None if value is None else check_enum(src, "better", value, BETTER)

    def comparisons() -> list:
        if not isinstance(section["comparisons"], list):
            raise _fail(src, "comparisons", section["comparisons"], "expected a list")
        return section["comparisons"]

    return {
        "comparisons": comparisons,
        "better": better,
        "effect": lambda: check_enum(src, "effect", section.get("effect", "ratio"), EFFECTS),
        "rule": lambda: check_enum(src, "rule", section.get("rule", "all"), RULES),
        "quick": quick,
        "tune_seeds": tune_seeds,
        "plots": plots,
        "metric": lambda: _check_str(src, "metric", section.get("metric")),
        "censor": lambda: _parse_censor(src, "censor", section.get("censor")),
        "tune": lambda: _check_str(src, "tune", section.get("tune")),
        "success": lambda: _parse_success(src, "success", section.get("success")),
        "where": lambda: _check_mapping(src, "where", section.get("where")),
        "id": lambda: str(_check_str(src, "id", section["id"], optional=False)),
        "statement": lambda: str(_check_str(src, "statement", section["statement"],
                                            optional=False)),
        "title": lambda: _check_str(src, "title", section.get("title")),
        "source": lambda: _check_str(src, "source", section.get("source")),
        "published": lambda: _parse_published(src, section.get("published")),
        "protocol": lambda: _check_str(src, "protocol", section.get("protocol")),
        "factor": lambda: _check_str(src, "factor", section.get("factor")),
        "differs": lambda: _check_str(src, "differs", section.get("differs")),
    }


def _structure_problems(src: str, section: Any) -> list[ValueError]:
    """Not a mapping, unknown keys (each), missing id/statement/comparisons (each)."""
    if not isinstance(section, Mapping):
        return [_fail(src, "claim", section, "expected a mapping")]
    out = [_fail(src, k, section[k], f"unknown key (allowed: {sorted(_CLAIM_KEYS)})")
           for k in sorted(set(section) - _CLAIM_KEYS)]
    out += [_fail(src, k, section.get(k), "missing") for k in ("id", "statement", "comparisons")
            if section.get(k) in (None, "", [])]
    return out


_DEFAULT_KEYS = ("metric", "better", "effect", "censor", "tune", "success", "where")


def parse_claim(section: Any, src: str = "<claim>", **extra: Any) -> Claim:
    """Validate a ``claim`` mapping and build a :class:`Claim` (``src`` names it in errors).

    Raises ValueError naming the source, the key and the value: unknown keys, missing
    id/statement/comparisons, ``better`` not lower|higher, ``effect`` not ratio|difference|rate,
    rate without a success spec, no primary comparison.
    """
    problems = _structure_problems(src, section)
    if problems:
        raise problems[0]
    fields = {k: check() for k, check in _top_level_fields(src, section).items()}
    defaults = {k: fields[k] for k in _DEFAULT_KEYS}
    comparisons = [
        _parse_comparison(src, i, c, defaults) for i, c in enumerate(fields["comparisons"])
    ]
    if not any(c.primary for c in comparisons):
        raise _fail(src, "comparisons", "...", "no primary comparison (set primary: true)")
    return Claim(
        id=fields["id"],
        statement=fields["statement"],
        comparisons=comparisons,
        title=fields["title"],
        source=fields["source"],
        published=fields["published"],
        protocol=fields["protocol"],
        factor=fields["factor"],
        metric=fields["metric"],
        better=fields["better"],
        effect=fields["effect"],
        censor=fields["censor"],
        success=fields["success"],
        tune=fields["tune"],
        where=fields["where"],
        rule=fields["rule"],
        plots=fields["plots"],
        quick=fields["quick"],
        tune_seeds=fields["tune_seeds"],
        differs=fields["differs"],
        **extra,
    )


def claim_problems(section: Any, src: str = "<claim>") -> list[str]:
    """Every problem of a ``claim`` mapping, one line each (``parse_claim`` stops at the
    first): unknown and missing keys, each top-level key, each comparison, no primary one.
    Empty when ``parse_claim`` accepts the section."""
    errors = _structure_problems(src, section)
    if errors and not isinstance(section, Mapping):
        return [str(e) for e in errors]
    known = {k: v for k, v in section.items() if k in _CLAIM_KEYS}
    fields: dict[str, Any] = {}
    if not any("missing" in str(e) for e in errors):
        for key, check in _top_level_fields(src, known).items():
            try:
                fields[key] = check()
            except ValueError as err:
                errors.append(err)
    if not errors:
        defaults = {k: fields[k] for k in _DEFAULT_KEYS}
        parsed = []
        for i, raw in enumerate(fields["comparisons"]):
            try:
                parsed.append(_parse_comparison(src, i, raw, defaults))
            except ValueError as err:
                errors.append(err)
        if parsed and len(parsed) == len(fields["comparisons"]) and not any(
                c.primary for c in parsed):
            errors.append(_fail(src, "comparisons", "...",
                                "no primary comparison (set primary: true)"))
    return [str(e) for e in errors]


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
        sha256=file_sha256(path),
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


# ------------------------------------------------------------------- checking a claim file


def _key_fail(src: str, key: str, value: Any, why: str) -> str:
    return f"{src}: key {key!r} = {value!r}: {why}"


def _yaml_error(path: Path, err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    what = getattr(err, "problem", None) or str(err).splitlines()[0]
    return f"{path}: not valid yaml: {what}{where}"


def claim_file_problems(path: str | Path) -> list[str]:
    """Every problem of a claim file that can be seen without Hydra, one line each (empty:
    ``load_claim`` accepts it and the file is a claim sweep): a missing or unreadable file,
    invalid yaml, no ``# @package _global_`` line, no ``Protocol`` in the header, every
    problem of the ``claim`` section (:func:`claim_problems`), an ``id`` other than the file
    name, no ``hydra.mode: MULTIRUN``, no ``hydra.sweeper.params``."""
    path = Path(path)
    if not path.exists():
        return [f"{path}: no such file"]
    if not path.is_file():
        return [f"{path}: not a file"]
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return [f"{path}: cannot read it ({getattr(err, 'strerror', None) or err})"]
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        return [_yaml_error(path, err)]
    if not isinstance(data, Mapping):
        return [f"{path}: expected a yaml mapping at the top level, got "
                f"{type(data).__name__}"]
    src = str(path)
    problems = []
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if first.replace(" ", "") != "#@package_global_":
        problems.append(f"{src}: the first line must be '# @package _global_' (the sweep's keys "
                        f"are top-level config keys), got {first[:60]!r}")
    if "protocol" not in _read_header(text).lower():
        problems.append(f"{src}: the header comment has no 'Protocol' part: what is measured, "
                        "fixed before any result is looked at (see docs/claims.md)")
    if "claim" not in data:
        return [*problems, f"{src}: no 'claim' section"]
    problems += claim_problems(data["claim"], src=src)
    claim_id = data["claim"].get("id") if isinstance(data["claim"], Mapping) else None
    if isinstance(claim_id, str) and claim_id and claim_id != path.stem:
        problems.append(str(_fail(src, "id", claim_id, f"must be the file name without .yaml "
                                  f"({path.stem!r}): sweep=<id> runs it")))
    hydra = data.get("hydra") if isinstance(data.get("hydra"), Mapping) else {}
    if hydra.get("mode") != "MULTIRUN":
        problems.append(_key_fail(src, "hydra.mode", hydra.get("mode"),
                                  "a claim file is a sweep: set hydra.mode: MULTIRUN"))
    if not _sweep_params(data):
        problems.append(_key_fail(src, "hydra.sweeper.params", None,
                                  "missing: the values the sweep runs (seeds, the arms)"))
    return problems


def arm_problems(claim: Claim, values: Mapping[str, Sequence[Any]]) -> list[str]:
    """Keys and values of the comparisons that the sweep's jobs never have, one line each.

    ``values`` maps each param key of the jobs (``optimizer.name``, ``model.hidden_sizes``, as
    MLflow logs them) to the values it takes over the sweep. Checked: every key and value of
    ``a``, ``b`` and ``where`` (a value matches as the report matches runs), the ``tune`` and
    ``factor`` keys, a param ``censor`` key, and that ``a`` and ``b`` differ.
    """
    from fnnbench.claims.select import match_value  # select imports this module

    src = str(claim.path) if claim.path is not None else "<claim>"

    def shown(vals: Sequence[Any]) -> str:
        text = ", ".join(json.dumps(v) if isinstance(v, (list, dict)) else str(v)
                         for v in vals)
        return text if len(text) <= 80 else text[:77] + "..."

    def key_problem(key_path: str, key: str) -> str | None:
        if key in values:
            return None
        return str(_fail(src, key_path, key, "not a param of the sweep's jobs (keys as "
                         "`python -m fnnbench --cfg job` prints them, e.g. optimizer.name)"))

    problems: list[str] = []
    for key_path, key in (("factor", claim.factor), ("tune", claim.tune)):
        if key and (p := key_problem(key_path, key)):
            problems.append(p)
    for i, comp in enumerate(claim.comparisons):
        where = f"comparisons[{i}]"
        for side in ("a", "b", "where"):
            for key, want in getattr(comp, side).items():
                p = key_problem(f"{where}.{side}", key)
                if p:
                    problems.append(p)
                elif not any(match_value(v, want) for v in values[key]):
                    problems.append(str(_fail(src, f"{where}.{side}.{key}", want,
                                              f"not a value of the sweep ({shown(values[key])})")))
        if comp.tune and comp.tune != claim.tune and (p := key_problem(f"{where}.tune",
                                                                       comp.tune)):
            problems.append(p)
        censor = comp.censor
        if (isinstance(censor, str) and not censor.startswith("metrics.")
                and censor != claim.censor and (p := key_problem(f"{where}.censor", censor))):
            problems.append(p)
        if {**comp.where, **comp.a} == {**comp.where, **comp.b}:
            problems.append(str(_fail(src, f"{where}.b", comp.b, "the same arm as a")))
    if isinstance(claim.censor, str) and not claim.censor.startswith("metrics."):
        if p := key_problem("censor", claim.censor):
            problems.append(p)
    return problems
