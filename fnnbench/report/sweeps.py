"""Sweeps: the MLflow parent runs of multiruns, their jobs and what they vary (no I/O).

A *sweep* is a parent run (tag ``fnnbench.parent = true``, written by
``fnnbench.tracking.SweepCallback``). Its jobs are the runs tagged ``mlflow.parentRunId`` =
its id, plus the FINISHED runs it reused: a job whose identical config already had a
FINISHED run trains nothing and tags the parent ``fnnbench.skipped.<hash>`` = that run's id
(so running the README's sweep twice still reports the runs of the first time).

What a sweep varies is read, in this order, from

1. the parent's ``fnnbench.overrides`` tag (the command line's overrides joined by spaces):
   the overrides Hydra sweeps (``activation=relu,tanh,sigmoid``, ``seed=range(0,5)``), parsed
   with Hydra's own override parser;
2. the parent's run name ``multirun <key>,<key>`` (the keys ``SweepCallback`` handed the jobs
   as ``FNNBENCH_SWEEP_KEYS``; sweeper params set in a config file are only there);
3. the params that differ between its jobs.

A swept key maps to a param column: ``params.<key>`` when the runs have it (``optimizer.lr``,
``seed``), else ``params.<key>.name`` for a config group (``activation`` ->
``activation.name``), else every param under ``<key>.`` that differs between the jobs
(``model=perceptron,deep`` -> ``model.hidden_sizes``). A *setting* is one combination of the
swept values other than the seed; its runs are the seeds.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fnnbench.report.data import ReportError
from fnnbench.report.tables import fmt_value
from fnnbench.tracking import names as tn

SEED = "seed"
MULTIRUN_PREFIX = "multirun "  # SweepCallback names a sweep without claim "multirun <keys>"
IGNORED_PREFIXES = ("tracking.", "hydra.")  # params that never make a setting
_TOKEN_START = re.compile(r"\s+(?=[+~]{0,2}[A-Za-z_][\w./@-]*=)")
_SWEEP_FUNCS = ("range(", "choice(", "glob(", "interval(", "tag(", "sort(", "shuffle(")


# ----------------------------------------------------------------------------- overrides


def split_overrides(text: str | None) -> list[str]:
    """The parent's ``fnnbench.overrides`` tag -> one string per override.

    The tag is ``" ".join(overrides)``, and a value may hold spaces (``model.hidden_sizes=[64,
    64]``): a new override starts only where whitespace is followed by ``key=``."""
    if not text or not str(text).strip():
        return []
    return [t for t in _TOKEN_START.split(str(text).strip()) if t]


def _top_level_comma(value: str) -> bool:
    depth, quote = 0, None
    for ch in value:
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[({":
            depth += 1
        elif ch in "])}":
            depth -= 1
        elif ch == "," and depth == 0:
            return True
    return False


def parse_override(token: str) -> tuple[str, bool]:
    """(key, is a sweep) of one override, by Hydra's parser; a plain reading when Hydra cannot
    parse it (a comma outside brackets, or one of Hydra's sweep functions)."""
    try:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        (o,) = OverridesParser.create().parse_overrides([token])
        return str(o.key_or_group), bool(o.is_sweep_override())
    except Exception:  # noqa: BLE001 - another sweeper's syntax: read it plainly
        key, _, value = token.partition("=")
        value = value.strip()
        return key.lstrip("+~").split("@")[0], _top_level_comma(value) or value.startswith(
            _SWEEP_FUNCS
        )


def swept_overrides(tokens: Sequence[str]) -> tuple[list[str], list[str]]:
    """(the sweep overrides, the fixed ones) among ``tokens``, in command-line order."""
    swept, fixed = [], []
    for t in tokens:
        (swept if parse_override(t)[1] else fixed).append(t)
    return swept, fixed


# ----------------------------------------------------------------------------- sweeps


@dataclass
class Sweep:
    """One sweep: its parent run and its jobs (see the module doc)."""

    run_id: str
    name: str  # the parent's run name
    experiment_id: str
    start_time: Any  # pandas Timestamp (UTC) or NaT
    end_time: Any
    status: str
    claim: str | None  # tag fnnbench.claim of the parent (a claim sweep)
    overrides: list[str]  # the parent's fnnbench.overrides, one string per override
    keys: list[str]  # the keys the sweep varies (seed included when swept)
    source: str  # where `keys` come from: overrides | run name | params
    runs: pd.DataFrame  # its jobs: children, then the runs it reused
    reused: list[str] = field(default_factory=list)  # run ids of the reused FINISHED runs
    parent: pd.DataFrame | None = None  # the parent run as a one-row frame

    @property
    def short(self) -> str:
        return self.run_id[:8]

    @property
    def swept(self) -> list[str]:
        """The sweep overrides as typed (``activation=relu,tanh,sigmoid``)."""
        return swept_overrides(self.overrides)[0]

    @property
    def fixed(self) -> list[str]:
        return swept_overrides(self.overrides)[1]

    @property
    def command(self) -> str:
        """The command that runs the sweep again (identical finished jobs are skipped)."""
        args = " ".join(shlex.quote(t) for t in self.overrides)
        return f"python -m fnnbench -m {args}".rstrip()

    @property
    def title(self) -> str:
        return " ".join(self.swept) or self.name or self.short


def _tags(df: pd.DataFrame, name: str) -> pd.Series:
    col = tn.column(name)
    return df[col] if col in df.columns else pd.Series([None] * len(df), index=df.index)


def _is_parent(df: pd.DataFrame) -> np.ndarray:
    return (_tags(df, tn.TAG_PARENT).astype(str).str.lower() == "true").to_numpy(dtype=bool)


def _text(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    return str(v)


def find_sweeps(runs: pd.DataFrame) -> list[Sweep]:
    """Every sweep among ``runs`` (parents and jobs, ``load_runs`` layout), oldest first."""
    if not len(runs):
        return []
    parent = _is_parent(runs)
    parents, jobs = runs[parent], runs[~parent]
    of_parent = _tags(jobs, "mlflow.parentRunId")
    job_ids = jobs["run_id"].astype(str)
    known = set(job_ids)
    skipped_cols = [c for c in parents.columns if c.startswith(tn.column(tn.TAG_SKIPPED_PREFIX))]
    out = []
    for i in range(len(parents)):
        row = parents.iloc[i]
        rid = str(row["run_id"])
        kids = jobs[(of_parent == rid).to_numpy(dtype=bool)]
        reused = []
        for c in skipped_cols:
            ref = _text(row[c])
            if ref and ref in known and ref not in set(kids["run_id"].astype(str)):
                reused.append(ref)
        reused = list(dict.fromkeys(reused))
        if reused:
            members = pd.concat([kids, jobs[job_ids.isin(reused).to_numpy()]])
        else:
            members = kids
        overrides = split_overrides(_text(row.get(tn.column(tn.TAG_OVERRIDES))))
        name = _text(row.get("tags.mlflow.runName")) or ""
        keys, source = _keys(overrides, name, members)
        out.append(
            Sweep(
                run_id=rid,
                name=name,
                experiment_id=str(row.get("experiment_id", "")),
                start_time=row.get("start_time"),
                end_time=row.get("end_time"),
                status=str(row.get("status", "")),
                claim=_text(row.get(tn.column(tn.TAG_CLAIM))),
                overrides=overrides,
                keys=keys,
                source=source,
                runs=members,
                reused=reused,
                parent=parents.iloc[[i]],
            )
        )
    return sorted(out, key=_start_key)


def _start_key(s: Sweep) -> tuple:
    t = pd.Timestamp(s.start_time) if s.start_time is not None else pd.NaT
    return (pd.isna(t), t.value if not pd.isna(t) else 0, s.run_id)


def _keys(overrides: list[str], name: str, runs: pd.DataFrame) -> tuple[list[str], str]:
    keys = [parse_override(t)[0] for t in swept_overrides(overrides)[0]]
    if keys:
        return list(dict.fromkeys(keys)), "overrides"
    if name.startswith(MULTIRUN_PREFIX):
        keys = [k.strip().lstrip("+~") for k in name[len(MULTIRUN_PREFIX) :].split(",")]
        keys = [k for k in keys if k]
        if keys:
            return keys, "run name"
    return [c[len("params.") :] for c in differing_params(runs)], "params"


def differing_params(runs: pd.DataFrame, prefix: str = "") -> list[str]:
    """``params.<prefix>...`` columns that take two or more values among ``runs`` (a missing
    param counts as a value), tracking and hydra params left out."""
    out = []
    for c in runs.columns:
        if not c.startswith("params." + prefix):
            continue
        key = c[len("params.") :]
        if key.startswith(IGNORED_PREFIXES):
            continue
        vals = {fmt_value(v) for v in runs[c].tolist()}
        if len(vals) > 1:
            out.append(c)
    return out


def last_sweep(sweeps: Sequence[Sweep], where: str) -> Sweep:
    """The sweep started last (ReportError when there is none)."""
    if not sweeps:
        raise ReportError(f"--last: no sweep (parent run tagged fnnbench.parent=true) in {where}")
    return sweeps[-1]


def select_sweep(sweeps: Sequence[Sweep], runs: pd.DataFrame, ident: str, where: str) -> Sweep:
    """The sweep whose parent run id is ``ident`` or starts with it (ReportError naming the
    id otherwise: unknown, ambiguous, or a job's id)."""
    ident = ident.strip().lower()
    if not ident:
        raise ReportError("--sweep: empty run id")
    exact = [s for s in sweeps if s.run_id.lower() == ident]
    found = exact or [s for s in sweeps if s.run_id.lower().startswith(ident)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        ids = ", ".join(s.short for s in found[:5])
        raise ReportError(f"--sweep {ident}: {len(found)} sweeps start with it ({ids}); give more")
    if len(runs) and "run_id" in runs.columns:
        ids = runs["run_id"].astype(str).str.lower()
        hit = runs[(ids == ident).to_numpy() | ids.str.startswith(ident).to_numpy()]
        if len(hit) == 1:
            parent = _text(_tags(hit, "mlflow.parentRunId").iloc[0])
            of = f" of sweep {parent}" if parent else " (not part of a sweep)"
            raise ReportError(
                f"--sweep {ident}: run {hit['run_id'].iloc[0]} is a job{of}, "
                "not a sweep's parent run"
            )
    raise ReportError(f"--sweep {ident}: no sweep parent run with that id in {where}")


# ----------------------------------------------------------------------------- settings


def setting_columns(sweep: Sweep) -> list[tuple[str, str]]:
    """(swept key, param column) pairs that name a setting: every swept key but the seed,
    mapped as the module doc says, only columns whose value differs between the jobs."""
    runs = sweep.runs
    varying = set(differing_params(runs))
    out: list[tuple[str, str]] = []
    for key in sweep.keys:
        if key == SEED:
            continue
        for col in (f"params.{key}", f"params.{key}.name"):
            if col in runs.columns:
                if col in varying:
                    out.append((key, col))
                break
        else:
            out += [(c[len("params.") :], c) for c in differing_params(runs, key + ".")]
    seen: set[str] = set()
    return [(k, c) for k, c in out if not (c in seen or seen.add(c))]


def seeds_swept(sweep: Sweep) -> bool:
    """The seed is swept (a swept key) or differs between jobs of one setting."""
    if SEED in sweep.keys:
        return True
    col = "params.seed"
    if col not in sweep.runs.columns or not len(sweep.runs):
        return False
    cols = [c for _, c in setting_columns(sweep)]
    r = sweep.runs
    if not cols:
        return r[col].map(fmt_value).nunique() > 1
    keys = r[cols].map(fmt_value)
    n = r.assign(_seed=r[col].map(fmt_value)).groupby([*(keys[c] for c in cols)])["_seed"]
    return bool((n.nunique() > 1).any())


ALL = "all runs"


def setting_labels(sweep: Sweep) -> tuple[pd.Series, list[str]]:
    """Per job its setting (``relu``; ``activation=relu, optimizer.lr=0.1`` with several keys;
    'all runs' when only the seed varies), and the settings in the order the sweep ran them
    (first start time)."""
    runs = sweep.runs
    cols = setting_columns(sweep)
    if not len(runs):
        return pd.Series([], dtype=str), []
    if not cols:
        labels = pd.Series(ALL, index=runs.index)
    elif len(cols) == 1:
        labels = runs[cols[0][1]].map(fmt_value)
    else:
        parts = [k + "=" + runs[c].map(fmt_value) for k, c in cols]
        labels = parts[0]
        for p in parts[1:]:
            labels = labels + ", " + p
    labels = labels.astype(str)
    start = pd.to_datetime(runs.get("start_time"), utc=True)
    first = pd.Series(start.to_numpy(), index=runs.index).groupby(labels).min()
    order = sorted(
        first.index,
        key=lambda k: (pd.isna(first[k]), 0 if pd.isna(first[k]) else first[k].value, str(k)),
    )
    return labels, [str(k) for k in order]


def page_stems(sweeps: Sequence[Sweep]) -> dict[str, str]:
    """Page file stem per sweep: ``sweep-<first 8 characters of the parent run id>``, the
    whole id where two sweeps share those 8 characters."""
    shorts: dict[str, int] = {}
    for s in sweeps:
        shorts[s.short] = shorts.get(s.short, 0) + 1
    return {
        s.run_id: f"sweep-{s.short if shorts[s.short] == 1 else s.run_id}"
        for s in sweeps
    }
