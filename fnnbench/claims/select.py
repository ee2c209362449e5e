"""Run selection: which runs of an MLflow run table each arm of a comparison uses.

``runs`` is a DataFrame in ``mlflow.search_runs`` layout (``run_id``, ``status``,
``params.<key>``, ``metrics.<name>``, ``tags.<name>``) with params already cast by
``fnnbench.report.data.cast_params``. A run *counts* when it is FINISHED with a
fnnbench.outcome tag (:func:`counting_mask`); an arm is the counting runs whose params match
the arm and the comparison's ``where`` (:func:`match_value`), restricted to the best value of
the ``tune`` param when the comparison tunes one (:func:`select_arm`, :func:`runs_for_arm`).
:func:`arm_values` turns an arm's runs into the values a statistic uses: the metric with
unreached and diverged runs censored at their budget, or success as 0/1 for a rate.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fnnbench.claims.schema import Comparison
from fnnbench.claims.stats import censor_values
from fnnbench.tracking.names import DIVERGED, TAG_OUTCOME, column

_OUTCOME_COL = column(TAG_OUTCOME)
_NO_OUTCOME = "missing"  # an outcome tag of this value is no outcome: the run does not count


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
    if "status" not in runs.columns or _OUTCOME_COL not in runs.columns:
        return np.zeros(len(runs), dtype=bool)
    outcome = runs[_OUTCOME_COL]
    ok = (runs["status"] == "FINISHED") & outcome.notna() & (outcome != _NO_OUTCOME)
    return ok.to_numpy(dtype=bool)


def _failed_mask(runs: pd.DataFrame) -> np.ndarray:
    if "status" not in runs.columns:
        return np.zeros(len(runs), dtype=bool)
    return (runs["status"] == "FAILED").to_numpy(dtype=bool)


def diverged_mask(frame: pd.DataFrame) -> np.ndarray:
    """Runs whose fnnbench.outcome tag is ``diverged`` (all False without the tag column)."""
    if _OUTCOME_COL not in frame.columns:
        return np.zeros(len(frame), dtype=bool)
    return (frame[_OUTCOME_COL] == DIVERGED).to_numpy(dtype=bool)


def numeric_column(frame: pd.DataFrame, col: str) -> np.ndarray:
    """Column ``col`` of ``frame`` as floats (non-numbers -> NaN; all NaN if no such column)."""
    if col not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)


def common_budget(comp: Comparison, runs: pd.DataFrame) -> float | None:
    """The one budget of a comparison censored at ``metrics.<name>`` (no declared budget, e.g.
    training seconds): the largest value of that metric over the counting runs of *both* arms
    (every tune value), so an arm that never reaches the target is never counted faster than
    one that does. None for other censor specs (a param is a budget per run, a number is
    declared) or when no run has the metric."""
    if not (isinstance(comp.censor, str) and comp.censor.startswith("metrics.")):
        return None
    mask = np.zeros(len(runs), dtype=bool)
    for arm in (comp.a, comp.b):
        m, note = _match(runs, {**comp.where, **arm})
        if note is None:
            mask |= m
    x = numeric_column(runs[mask & counting_mask(runs)], comp.censor)
    return float(np.nanmax(x)) if np.isfinite(x).any() else None


def _budget(comp: Comparison, frame: pd.DataFrame, budget: float | None = None) -> np.ndarray:
    if comp.censor is None:
        return np.full(len(frame), np.nan)
    if isinstance(comp.censor, str):
        if comp.censor.startswith("metrics."):
            # the comparison's common budget (common_budget); this frame alone if not given
            if budget is None:
                x = numeric_column(frame, comp.censor)
                budget = float(np.nanmax(x)) if np.isfinite(x).any() else np.nan
            return np.full(len(frame), budget)
        return numeric_column(frame, _param_col(comp.censor))
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
    grid: list = field(default_factory=list)  # the tune values present (sorted)
    groups: list = field(default_factory=list)  # values per tune value (non-unknown), for CIs
    edge: bool = False  # the chosen tune value is the smallest or largest present
    tune_mode: str | None = None  # "held-out" (tune_seeds) or "resample" (selection in CI)
    n_tuning: int = 0  # runs that chose the setting (held-out tuning), not judged

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def diverged(self) -> int:
        return int(diverged_mask(self.runs).sum())


def arm_values(comp: Comparison, frame: pd.DataFrame, budget: float | None = None) -> ArmValues:
    """Values of the runs in ``frame`` for ``comp`` (censoring or success applied; ``budget``:
    the comparison's :func:`common_budget` for ``censor: metrics.<name>``)."""
    n = len(frame)
    if comp.effect == "rate":
        assert comp.success is not None
        x = numeric_column(frame, f"metrics.{comp.success.metric}")
        ok = comp.success(x)
        missing = np.isnan(x)
        return ArmValues(frame, ok.astype(float), missing, np.zeros(n, dtype=bool))
    metric = numeric_column(frame, f"metrics.{comp.metric}")
    if comp.censor is None:
        unknown = ~np.isfinite(metric)
        return ArmValues(frame, metric, np.zeros(n, dtype=bool), unknown)
    values, censored = censor_values(metric, _budget(comp, frame, budget), diverged_mask(frame))
    unknown = censored & ~np.isfinite(values)
    return ArmValues(frame, values, censored & ~unknown, unknown)


def _score(comp: Comparison, av: ArmValues) -> float:
    """Tune score of a group, larger is better: the median value (sign by `better`; censored
    runs at the common budget, so a group whose runs diverge fast never wins on short
    censored times); rate: the success rate. The same rule as inside the bootstrap
    (:func:`fnnbench.claims.stats.resampled_medians`)."""
    v = av.values[np.isfinite(av.values)]
    if v.size == 0:
        return -math.inf
    if comp.effect == "rate":
        return float(v.mean())
    m = float(np.median(v))
    return -m if comp.better == "lower" else m


def _sort_key(x: Any) -> tuple[int, Any]:
    f = float(x) if _is_number(x) else _to_float(x)
    return (0, f) if f is not None else (1, str(x))


def _seeds(frame: pd.DataFrame) -> np.ndarray:
    return numeric_column(frame, "params.seed")


def select_arm(
    comp: Comparison,
    runs: pd.DataFrame,
    side: str,
    tuned: bool = True,
    *,
    tune_seeds: int | None = None,
    budget: float | None = None,
) -> ArmValues:
    """Arm ``side`` ('a' or 'b') of ``comp`` in ``runs``, with its values (:func:`arm_values`).

    The counting runs that match the arm and ``where``; when ``comp`` tunes a param and
    ``tuned`` is true, only those at the arm's best value of it (best median, or success rate;
    ties keep the smaller value), recorded in ``tuned``; ``groups`` keeps every value's
    values so a CI can repeat the selection in each resample (``tune_mode = "resample"``).
    ``tune_seeds = N``: runs with seed < N choose the value and runs with seed >= N at that
    value are the arm (``tune_mode = "held-out"``, ``n_tuning`` runs used for the choice).
    ``edge``: the chosen value is the smallest or largest present. ``budget``: the common
    budget (default :func:`common_budget` of ``runs``). ``failed`` counts the arm's FAILED runs
    (at that value). A key that is not a column gives no runs and a ``note`` naming it."""
    if side not in ("a", "b"):
        raise ValueError(f"side must be 'a' or 'b', got {side!r}")
    if budget is None:
        budget = common_budget(comp, runs)
    arm = comp.a if side == "a" else comp.b
    empty = runs.iloc[0:0]
    mask, note = _match(runs, {**comp.where, **arm})
    if note is None and tuned and comp.tune and _param_col(comp.tune) not in runs.columns:
        note = f"tune param '{comp.tune}' not in the runs"
    if note is None and tuned and comp.tune and tune_seeds and "params.seed" not in runs.columns:
        note = "tune_seeds needs params.seed in the runs"
    if note is not None:
        return ArmValues(empty, np.empty(0), np.empty(0, bool), np.empty(0, bool), note=note)
    count = mask & counting_mask(runs)
    failed = mask & _failed_mask(runs)
    chosen, grid, groups, edge, mode, n_tuning = None, [], [], False, None, 0
    if tuned and comp.tune:
        col = runs[_param_col(comp.tune)]
        held_out = bool(tune_seeds)
        choose = count
        if held_out:
            tuning = _seeds(runs) < float(tune_seeds)
            choose = count & tuning
            count &= ~tuning
            failed &= ~tuning
            n_tuning = int(choose.sum())
        grid = sorted({v for v in col[choose] if not _is_missing(v)}, key=_sort_key)
        best = None
        for value in grid:
            in_value = col.map(lambda c, w=value: match_value(c, w)).to_numpy(dtype=bool)
            av = arm_values(comp, runs[choose & in_value], budget)
            s = _score(comp, av)
            if not held_out:
                groups.append(av.values[~av.unknown])
            if best is None or s > best[0]:  # strict: ties keep the smaller value
                best = (s, value)
        if best is not None:
            chosen = best[1]
            in_group = col.map(lambda c: match_value(c, chosen)).to_numpy(dtype=bool)
            count &= in_group
            failed &= in_group
            edge = len(grid) > 1 and chosen in (grid[0], grid[-1])
            mode = "held-out" if held_out else "resample"
        else:
            count &= False
    av = arm_values(comp, runs[count], budget)
    av.failed = int(failed.sum())
    av.tuned = chosen.item() if isinstance(chosen, np.generic) else chosen
    av.grid = [g.item() if isinstance(g, np.generic) else g for g in grid]
    av.groups, av.edge, av.tune_mode, av.n_tuning = groups, edge, mode, n_tuning
    return av


def runs_for_arm(
    comp: Comparison,
    runs: pd.DataFrame,
    side: str,
    *,
    tuned: bool = True,
    tune_seeds: int | None = None,
) -> pd.DataFrame:
    """The runs that arm ``side`` ('a' or 'b') of ``comp`` uses: FINISHED runs with an outcome
    tag, matching the arm and ``where``, restricted to the chosen tune value (``tuned=False``:
    every tune value; ``tune_seeds``: the evaluation seeds only). Empty when a key is not a
    column. The report plots exactly these."""
    return select_arm(comp, runs, side, tuned=tuned, tune_seeds=tune_seeds).runs
