"""fnnbench.claims: claim files, statistics against hand-computed values, verdicts on
synthetic run tables with a known answer."""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fnnbench.claims import (
    EQUIVALENT,
    INCONCLUSIVE,
    NO_DATA,
    PARTLY_SUPPORTED,
    REFUTED,
    SUPPORTED,
    ArmSummary,
    Claim,
    bootstrap_ci,
    censor_values,
    combine_verdicts,
    effect_statistic,
    judge_claim,
    load_claim,
    load_claims,
    match_value,
    newcombe_diff_interval,
    parse_claim,
    runs_for_arm,
    wilson_interval,
)
from fnnbench.paths import SWEEPS_DIR

BUDGET = 100

# ----------------------------------------------------------------------------- helpers


def run_row(
    run_id,
    act,
    seed,
    epochs=None,
    *,
    lr=0.1,
    hidden=(64, 64),
    status="FINISHED",
    outcome=None,
    budget=BUDGET,
    **metrics,
):
    """One run in the cast mlflow.search_runs layout; epochs=None means never reached."""
    if outcome is None:
        outcome = "reached_target" if epochs is not None else "max_epochs"
    row = {
        "run_id": run_id,
        "status": status,
        "params.activation.name": act,
        "params.optimizer.lr": lr,
        "params.model.hidden_sizes": json.dumps(list(hidden)),
        "params.seed": seed,
        "params.train.epochs": budget,
        "metrics.epochs_to_target": np.nan if epochs is None else float(epochs),
        "tags.fnnbench.outcome": outcome if status == "FINISHED" else None,
    }
    row.update({f"metrics.{k}": v for k, v in metrics.items()})
    return row


def table(arms: dict[str, list], **kw) -> pd.DataFrame:
    """arms: activation -> list of epochs_to_target (None = censored), seeds 0..n-1."""
    rows = [
        run_row(f"{act}-{i}", act, i, e, **kw)
        for act, values in arms.items()
        for i, e in enumerate(values)
    ]
    return pd.DataFrame(rows)


def claim(**over) -> Claim:
    section = {
        "id": "relu_faster",
        "statement": "ReLU converges faster than sigmoid",
        "published": {"value": 6.0, "text": "6x fewer epochs"},
        "metric": "epochs_to_target",
        "better": "lower",
        "effect": "ratio",
        "censor": "train.epochs",
        "comparisons": [
            {
                "label": "relu vs sigmoid",
                "a": {"activation.name": "relu"},
                "b": {"activation.name": "sigmoid"},
            }
        ],
    }
    comp_over = over.pop("comparison", {})
    section.update(over)
    section["comparisons"][0].update(comp_over)
    return parse_claim(section, src="test")


RNG = np.random.default_rng(12345)
FAST = list(RNG.normal(10, 1, 10).round(1))
SLOW = list(RNG.normal(40, 3, 10).round(1))


# ----------------------------------------------------------------------------- statistics


def test_wilson_known_values():
    lo, hi = wilson_interval(0, 20)
    assert lo == 0.0
    assert hi == pytest.approx(0.1611, abs=1e-4)
    assert wilson_interval(10, 20) == pytest.approx((0.2993, 0.7007), abs=1e-4)
    # Newcombe (1998a), example 81/263 -> 0.2553, 0.3662
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson_interval(20, 20) == pytest.approx((1 - 0.1611, 1.0), abs=1e-4)
    # wider at higher confidence
    assert wilson_interval(5, 20, conf=0.99)[1] > wilson_interval(5, 20)[1]


@pytest.mark.parametrize("k,n", [(-1, 10), (11, 10), (0, 0)])
def test_wilson_rejects_bad_counts(k, n):
    with pytest.raises(ValueError, match="k="):
        wilson_interval(k, n)


@pytest.mark.parametrize(
    "counts,expected",
    [  # Newcombe (1998b), Table II, method 10
        ((56, 70, 48, 80), (0.0524, 0.3339)),
        ((9, 10, 3, 10), (0.1705, 0.8090)),
        ((0, 10, 0, 20), (-0.1611, 0.2775)),
        ((0, 10, 0, 10), (-0.2775, 0.2775)),
        ((10, 10, 0, 20), (0.6791, 1.0)),
        ((10, 10, 0, 10), (0.6075, 1.0)),
    ],
)
def test_newcombe_known_values(counts, expected):
    assert newcombe_diff_interval(*counts) == pytest.approx(expected, abs=1e-4)


def test_newcombe_antisymmetric():
    lo, hi = newcombe_diff_interval(7, 12, 3, 15)
    lo2, hi2 = newcombe_diff_interval(3, 15, 7, 12)
    assert (lo2, hi2) == pytest.approx((-hi, -lo), abs=1e-12)


def test_effect_statistics_orientation():
    a, b = np.array([10.0, 12.0, 14.0]), np.array([30.0, 36.0, 42.0])
    assert effect_statistic("ratio", "lower")(a, b) == pytest.approx(3.0)
    assert effect_statistic("ratio", "higher")(a, b) == pytest.approx(1 / 3)
    assert effect_statistic("difference", "lower")(a, b) == pytest.approx(24.0)
    assert effect_statistic("difference", "higher")(a, b) == pytest.approx(-24.0)
    # equal (e.g. both at the budget, or both 0) -> ratio exactly 1, no warning
    z = np.zeros(3)
    assert effect_statistic("ratio", "lower")(z, z) == 1.0
    with pytest.raises(ValueError, match="rate"):
        effect_statistic("rate", "lower")


def test_bootstrap_ci_contains_truth_and_is_deterministic():
    gen = np.random.default_rng(0)
    a, b = gen.normal(10, 1, 30), gen.normal(30, 1, 30)
    stat = effect_statistic("ratio", "lower")
    ci1 = bootstrap_ci(stat, a, b, rng=np.random.default_rng(7))
    ci2 = bootstrap_ci(stat, a, b, rng=np.random.default_rng(7))
    ci3 = bootstrap_ci(stat, a, b, rng=np.random.default_rng(8))
    assert ci1 == ci2
    assert ci1 != ci3
    assert ci1[0] < stat(a, b) < ci1[1]
    assert 2.7 < ci1[0] and ci1[1] < 3.3
    # higher confidence -> wider
    lo99, hi99 = bootstrap_ci(stat, a, b, conf=0.99, rng=np.random.default_rng(7))
    assert lo99 <= ci1[0] and hi99 >= ci1[1]


def test_bootstrap_paired_uses_the_same_indices():
    # b = a + 5 exactly: paired differences of medians are always 5, unpaired ones are not
    a = np.arange(10.0)
    b = a + 5.0
    stat = effect_statistic("difference", "lower")
    assert bootstrap_ci(stat, a, b, rng=np.random.default_rng(0), paired=True) == (5.0, 5.0)
    lo, hi = bootstrap_ci(stat, a, b, rng=np.random.default_rng(0))
    assert lo < 5.0 < hi
    with pytest.raises(ValueError, match="equal sizes"):
        bootstrap_ci(stat, a, b[:5], rng=np.random.default_rng(0), paired=True)
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci(stat, a, [], rng=np.random.default_rng(0))


def test_ratio_with_zero_medians_is_infinite_not_nan():
    # arm a reached the target at epoch 0 in most runs: the ratio is inf, never NaN
    stat = effect_statistic("ratio", "lower")
    lo, hi = bootstrap_ci(
        stat, [0.0, 0.0, 0.0, 1.0], [5.0, 6.0, 7.0, 8.0], rng=np.random.default_rng(0)
    )
    assert 5.0 <= lo < math.inf and hi == math.inf
    zero = [0.0] * 4
    assert bootstrap_ci(stat, zero, zero, rng=np.random.default_rng(0)) == (1.0, 1.0)


def test_censor_values_counts_at_budget_never_drops():
    v, c = censor_values(
        [5.0, np.nan, 7.0, np.inf], [100, 100, 50, 100], [False, False, True, False]
    )
    assert v.tolist() == [5.0, 100.0, 50.0, 100.0]
    assert c.tolist() == [False, True, True, True]


def test_combine_verdicts_rules():
    S, R, I, N = SUPPORTED, REFUTED, INCONCLUSIVE, NO_DATA  # noqa: N806
    assert combine_verdicts([S, S]) == S
    # parts are named, never hidden: one SUPPORTED part makes the claim partly supported
    assert combine_verdicts([S, R]) == PARTLY_SUPPORTED
    assert combine_verdicts([S, I]) == PARTLY_SUPPORTED
    assert combine_verdicts([S, N]) == PARTLY_SUPPORTED
    assert combine_verdicts([R, I]) == R
    assert combine_verdicts([EQUIVALENT, EQUIVALENT]) == EQUIVALENT
    assert combine_verdicts([EQUIVALENT, I]) == I
    assert combine_verdicts([N, N]) == N
    assert combine_verdicts([R, N]) == R
    assert combine_verdicts([S, R], "any") == S
    assert combine_verdicts([R, R], "any") == R
    assert combine_verdicts([R, I], "any") == I
    assert combine_verdicts([N], "any") == N


@pytest.mark.parametrize(
    "cell,want,expected",
    [
        ("[64, 64]", [64, 64], True),
        ("[64,64]", [64, 64], True),
        ("[64, 64]", [64], False),
        ("[]", [], True),
        (0.001, 1e-3, True),
        (0.001, "1e-3", True),  # PyYAML reads 1e-3 as a string
        (64, 64.0, True),
        (0.1, 0.2, False),
        ("relu", "relu", True),
        ("relu", "Relu", False),
        (True, True, True),
        (True, 1, False),
        (np.nan, 0.1, False),
        (None, None, True),
        ("relu", None, False),
    ],
)
def test_match_value(cell, want, expected):
    assert match_value(cell, want) is expected


# ----------------------------------------------------------------------------- verdicts


def test_clear_effect_supported():
    runs = table({"relu": FAST, "sigmoid": SLOW})
    res = judge_claim(claim(), runs, seed=0)
    (c,) = res.comparisons
    assert res.verdict == SUPPORTED and c.verdict == SUPPORTED
    expected = np.median(SLOW) / np.median(FAST)
    assert c.effect == pytest.approx(expected, rel=1e-12)
    assert 1.0 < c.ci_low < c.effect < c.ci_high
    assert (c.a.n, c.b.n) == (10, 10)
    assert c.paired  # same seeds in both arms
    assert c.a.median == pytest.approx(np.median(FAST)) and c.b.mean == pytest.approx(np.mean(SLOW))
    assert sorted(c.a.run_ids) == sorted(f"relu-{i}" for i in range(10))
    assert isinstance(c.a, ArmSummary) and isinstance(c.b, ArmSummary)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.a.n = 0  # type: ignore[misc]
    line = res.summary_line()
    assert line.startswith("SUPPORTED: relu vs sigmoid SUPPORTED (")
    assert c.published == 6.0 and c.published_in_ci is (c.ci_low <= 6.0 <= c.ci_high)
    assert "published 6x " in line


def test_reversed_effect_refuted():
    runs = table({"relu": SLOW, "sigmoid": FAST})
    res = judge_claim(claim(), runs, seed=0)
    c = res.comparisons[0]
    assert res.verdict == REFUTED
    assert c.ci_high < 1.0


def test_same_distribution_inconclusive():
    gen = np.random.default_rng(3)
    runs = table({"relu": list(gen.normal(20, 3, 12)), "sigmoid": list(gen.normal(20, 3, 12))})
    res = judge_claim(claim(), runs, seed=0)
    c = res.comparisons[0]
    assert res.verdict == INCONCLUSIVE
    assert c.ci_low < 1.0 < c.ci_high


def test_difference_effect_higher_better():
    gen = np.random.default_rng(4)
    runs = table({"relu": FAST, "sigmoid": SLOW})
    runs["metrics.final_test_acc"] = np.where(
        runs["params.activation.name"] == "relu",
        gen.normal(0.95, 0.01, 20),
        gen.normal(0.80, 0.01, 20),
    )
    cl = claim(metric="final_test_acc", better="higher", effect="difference", censor=None)
    c = judge_claim(cl, runs).comparisons[0]
    assert c.verdict == SUPPORTED
    assert c.effect == pytest.approx(0.15, abs=0.03)
    assert "x" not in c.effect_text()


def test_same_seed_same_ci_and_seed_matters():
    gen = np.random.default_rng(5)
    runs = table({"relu": list(gen.normal(18, 4, 10)), "sigmoid": list(gen.normal(22, 4, 10))})
    r1, r2 = judge_claim(claim(), runs, seed=1), judge_claim(claim(), runs, seed=1)
    r3 = judge_claim(claim(), runs, seed=2)
    c1, c2, c3 = r1.comparisons[0], r2.comparisons[0], r3.comparisons[0]
    assert (c1.ci_low, c1.ci_high) == (c2.ci_low, c2.ci_high)
    assert (c1.ci_low, c1.ci_high) != (c3.ci_low, c3.ci_high)
    assert c1.effect == c3.effect


def test_censored_runs_count_at_budget_never_dropped():
    # relu: 10 runs reach the target at ~10; sigmoid: 6/10 never reach it (budget 100)
    sig = [30, 32, 35, 38] + [None] * 6
    runs = table({"relu": FAST, "sigmoid": sig})
    c = judge_claim(claim(), runs).comparisons[0]
    assert (c.a.n, c.b.n) == (10, 10)
    assert (c.a.censored, c.b.censored) == (0, 6)
    assert c.b.median == BUDGET  # 6 of 10 at the budget -> the median is the budget
    assert c.b.mean == pytest.approx((30 + 32 + 35 + 38 + 6 * BUDGET) / 10)
    assert c.effect == pytest.approx(BUDGET / np.median(FAST))
    assert c.verdict == SUPPORTED
    assert len(c.b.run_ids) == 10


def test_censored_budget_per_run():
    runs = table({"relu": [10, 11, None], "sigmoid": [None, None, None]})
    runs.loc[runs["run_id"] == "sigmoid-0", "params.train.epochs"] = 50
    c = judge_claim(claim(), runs).comparisons[0]
    assert c.b.censored == 3
    assert c.b.median == 100  # values 50, 100, 100
    assert c.b.mean == pytest.approx(250 / 3)


def test_both_arms_fully_censored_inconclusive():
    runs = table({"relu": [None] * 5, "sigmoid": [None] * 5})
    res = judge_claim(claim(), runs)
    c = res.comparisons[0]
    assert c.effect == 1.0
    assert (c.ci_low, c.ci_high) == (1.0, 1.0)
    assert c.verdict == INCONCLUSIVE and res.verdict == INCONCLUSIVE
    assert "target never reached in either arm" in c.note
    assert (c.a.censored, c.b.censored) == (5, 5)


def test_fully_censored_at_different_budgets_inconclusive():
    # no arm ever reached the target: whatever the budgets, the runs say nothing
    runs = table({"relu": [None] * 5, "sigmoid": [None] * 5})
    runs.loc[runs["params.activation.name"] == "sigmoid", "params.train.epochs"] = 50
    c = judge_claim(claim(), runs).comparisons[0]
    assert c.ci_high < 1.0  # the CI alone would say REFUTED
    assert c.verdict == INCONCLUSIVE and "never reached" in c.note


def test_missing_metric_without_budget_is_inconclusive_not_dropped():
    runs = table({"relu": FAST[:4] + [None], "sigmoid": SLOW})
    c = judge_claim(claim(censor=None), runs).comparisons[0]
    assert c.verdict == INCONCLUSIVE
    assert c.a.n == 5
    assert "no budget" in c.note


def test_failed_and_diverged_runs_counted():
    runs = table({"relu": FAST, "sigmoid": SLOW})
    extra = [
        run_row("relu-f1", "relu", 20, None, status="FAILED"),
        run_row("relu-f2", "relu", 21, None, status="FAILED"),
        run_row("sig-f", "sigmoid", 20, None, status="FAILED"),
        run_row("sig-d1", "sigmoid", 30, None, outcome="diverged"),
        run_row("sig-d2", "sigmoid", 31, 12.0, outcome="diverged"),  # diverged after a target
        run_row("relu-k", "relu", 40, 5.0, status="KILLED"),
        run_row("relu-m", "relu", 41, 5.0, outcome="missing"),
        {**run_row("relu-n", "relu", 42, 5.0), "tags.fnnbench.outcome": None},
    ]
    runs = pd.concat([runs, pd.DataFrame(extra)], ignore_index=True)
    c = judge_claim(claim(), runs).comparisons[0]
    assert c.failed == (2, 1)
    assert c.diverged == (0, 2)
    assert (c.a.n, c.b.n) == (10, 12)  # failed, killed, outcome missing: not counted
    assert c.b.censored == 2  # diverged runs are censored at the budget
    assert "relu-k" not in c.a.run_ids and "sig-d1" in c.b.run_ids
    assert c.paired is False  # different seeds
    assert c.verdict == SUPPORTED


def test_no_data_cases():
    runs = table({"relu": FAST, "sigmoid": SLOW})
    # an arm value that no run has
    res = judge_claim(claim(comparison={"b": {"activation.name": "tanh"}}), runs)
    c = res.comparisons[0]
    assert res.verdict == NO_DATA and c.verdict == NO_DATA
    assert (c.a.n, c.b.n) == (10, 0)
    assert "arm b" in c.note
    assert res.summary_line() == "NO DATA: relu vs sigmoid NO DATA"
    # a where key that is not a column
    res = judge_claim(claim(comparison={"where": {"optimizer.momentum": 0.9}}), runs)
    assert res.verdict == NO_DATA
    assert "optimizer.momentum" in res.comparisons[0].note
    # an arm whose runs all failed
    failed = table({"relu": FAST, "sigmoid": SLOW})
    failed.loc[failed["params.activation.name"] == "sigmoid", "status"] = "FAILED"
    c = judge_claim(claim(), failed).comparisons[0]
    assert c.verdict == NO_DATA and c.b.failed == 10 and "10 failed" in c.note
    # an empty table
    assert judge_claim(claim(), pd.DataFrame()).verdict == NO_DATA


def test_where_filters_and_list_params_match():
    small = table({"relu": SLOW, "sigmoid": FAST}, hidden=(8,))  # reversed, other width
    big = table({"relu": FAST, "sigmoid": SLOW}, hidden=(64, 64))
    small["run_id"] = "small-" + small["run_id"]
    runs = pd.concat([small, big], ignore_index=True)
    wide = claim(comparison={"where": {"model.hidden_sizes": [64, 64]}})
    c64 = judge_claim(wide, runs).comparisons[0]
    c8 = judge_claim(claim(comparison={"where": {"model.hidden_sizes": [8]}}), runs).comparisons[0]
    assert c64.verdict == SUPPORTED and c8.verdict == REFUTED
    assert (c64.a.n, c8.a.n) == (10, 10)
    assert all(r.startswith("small-") for r in c8.a.run_ids)
    # the arms themselves may be lists too
    cl = claim(
        comparison={
            "a": {"model.hidden_sizes": [64, 64]},
            "b": {"model.hidden_sizes": [8]},
            "where": {"activation.name": "relu"},
        }
    )
    c = judge_claim(cl, runs).comparisons[0]
    assert c.verdict == SUPPORTED and (c.a.n, c.b.n) == (10, 10)


def test_tune_picks_best_lr_per_arm():
    # relu is best at lr 0.1, sigmoid at lr 1.0; lr 0.01 ties with 1.0 for relu (smaller wins)
    parts = []
    for lr, relu, sig in [
        (0.01, [12] * 5, [90] * 5),
        (0.1, [5] * 5, [60] * 5),
        (1.0, [12] * 5, [None, 20, 21, 22, 23]),
    ]:
        t = table({"relu": relu, "sigmoid": sig}, lr=lr)
        t["run_id"] = t["run_id"] + f"-lr{lr}"
        parts.append(t)
    runs = pd.concat(parts, ignore_index=True)
    cl = claim(comparison={"tune": "optimizer.lr"})
    c = judge_claim(cl, runs).comparisons[0]
    assert c.tune == "optimizer.lr"
    assert c.a.tuned == pytest.approx(0.1) and c.b.tuned == pytest.approx(1.0)
    assert (c.a.n, c.b.n) == (5, 5)
    assert c.a.median == 5 and c.b.median == 22  # 20, 21, 22, 23 and 100 (censored)
    assert c.b.censored == 1
    assert all(r.endswith("-lr0.1") for r in c.a.run_ids)
    assert c.effect == pytest.approx(22 / 5)
    # tie: relu only with lr 0.01 and 1.0 (both median 12) -> the smaller lr
    runs2 = runs[~runs["run_id"].str.endswith("-lr0.1")]
    c2 = judge_claim(cl, runs2).comparisons[0]
    assert c2.a.tuned == pytest.approx(0.01)
    # runs_for_arm gives the plots the same selection, or every lr with tuned=False
    comp = cl.comparisons[0]
    assert sorted(runs_for_arm(comp, runs, "a")["run_id"]) == sorted(c.a.run_ids)
    assert len(runs_for_arm(comp, runs, "a", tuned=False)) == 15
    # a tune key that is not a column -> NO DATA naming it
    bad = judge_claim(claim(comparison={"tune": "optimizer.beta"}), runs)
    assert bad.verdict == NO_DATA and "optimizer.beta" in bad.comparisons[0].note


def test_tune_inherited_from_claim():
    runs = table({"relu": FAST, "sigmoid": SLOW}, lr=0.5)
    cl = claim(tune="optimizer.lr")
    assert cl.comparisons[0].tune == "optimizer.lr"
    c = judge_claim(cl, runs).comparisons[0]
    assert c.a.tuned == pytest.approx(0.5) and c.verdict == SUPPORTED


def _rate_runs(k_a, n_a, k_b, n_b, missing_b=0):
    rows = []
    for act, k, n in (("relu", k_a, n_a), ("sigmoid", k_b, n_b)):
        for i in range(n):
            acc = 1.0 if i < k else 0.75
            if act == "sigmoid" and i >= n - missing_b:
                acc = np.nan
            rows.append(run_row(f"{act}-{i}", act, i, 5.0, final_train_acc=acc))
    return pd.DataFrame(rows)


RATE = {
    "effect": "rate",
    "success": {"metric": "final_train_acc", "op": ">=", "value": 1.0},
    "metric": None,
    "better": None,
    "censor": None,
}


def test_rate_claim_newcombe():
    runs = _rate_runs(9, 10, 3, 10)
    res = judge_claim(claim(**RATE), runs)
    c = res.comparisons[0]
    assert c.effect_kind == "rate" and c.metric == "final_train_acc"
    assert (c.a.rate, c.b.rate) == (0.9, 0.3)
    assert c.effect == pytest.approx(0.6)
    assert (c.ci_low, c.ci_high) == pytest.approx((0.1705, 0.8090), abs=1e-4)
    assert c.verdict == SUPPORTED and res.verdict == SUPPORTED
    # reversed and equal
    assert judge_claim(claim(**RATE), _rate_runs(3, 10, 9, 10)).verdict == REFUTED
    assert judge_claim(claim(**RATE), _rate_runs(5, 10, 5, 10)).verdict == INCONCLUSIVE


def test_rate_missing_metric_counts_as_failure():
    # sigmoid: 8 successes would be 8/10 but the last 4 have no metric -> 6/10
    runs = _rate_runs(10, 10, 8, 10, missing_b=4)
    c = judge_claim(claim(**RATE), runs).comparisons[0]
    assert c.b.n == 10 and c.b.rate == pytest.approx(0.6)
    assert c.b.censored == 4 and "counted as failures" in c.note
    assert (c.ci_low, c.ci_high) == pytest.approx(newcombe_diff_interval(10, 10, 6, 10))


def test_rule_any_and_non_primary():
    runs = pd.concat(
        [table({"relu": FAST, "sigmoid": SLOW}), table({"tanh": FAST})], ignore_index=True
    )
    runs["run_id"] = [f"r{i}" for i in range(len(runs))]
    comps = [
        {"a": {"activation.name": "relu"}, "b": {"activation.name": "sigmoid"}},
        {"a": {"activation.name": "relu"}, "b": {"activation.name": "tanh"}},
        {"a": {"activation.name": "sigmoid"}, "b": {"activation.name": "relu"}, "primary": False},
    ]
    all_ = judge_claim(claim(comparisons=[dict(c) for c in comps]), runs)
    assert [c.verdict for c in all_.comparisons] == [SUPPORTED, INCONCLUSIVE, REFUTED]
    assert all_.comparisons[1].label == "relu vs tanh"  # default label from the arms
    # one primary part SUPPORTED, one INCONCLUSIVE; the REFUTED one is not primary
    assert all_.verdict == PARTLY_SUPPORTED
    assert "relu vs sigmoid SUPPORTED" in all_.summary_line()
    assert "relu vs tanh INCONCLUSIVE" in all_.summary_line()
    any_ = judge_claim(claim(comparisons=[dict(c) for c in comps], rule="any"), runs)
    assert any_.verdict == SUPPORTED
    assert "relu vs tanh" in any_.summary_line() and "sigmoid vs relu" not in any_.summary_line()


# ----------------------------------------------------------------------------- claim files

VALID = """\
# @package _global_
# Claim: ReLU converges much faster than sigmoid (6x faster).
# Source: Lecture 2; Krizhevsky et al. 2012, Fig. 1
# Command: python -m fnnbench sweep=relu_faster
defaults:
  - override /dataset: blobs
hydra:
  mode: MULTIRUN
  sweeper:
    params:
      activation: relu,sigmoid,tanh
      seed: range(10)
      optimizer.lr: 0.01,0.1,1.0
claim:
  id: relu_faster
  title: ReLU converges faster than sigmoid and tanh
  statement: "Converge much faster than sigmoid and tanh in practice (6x faster)"
  source: "Lecture 2, 'Gradient Computation: ReLU'"
  published: {value: 6.0, text: "6x fewer epochs"}
  protocol: "lr tuned per activation, 10 seeds"
  factor: activation.name
  metric: epochs_to_target
  better: lower
  effect: ratio
  censor: train.epochs
  plots: [learning_curves, time_to_target]
  comparisons:
    - label: "relu vs sigmoid"
      a: {activation.name: relu}
      b: {activation.name: sigmoid}
      where: {model.hidden_sizes: [64, 64]}
      tune: optimizer.lr
    - a: {activation.name: relu}
      b: {activation.name: tanh}
      metric: final_train_loss
      primary: false
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_load_claim_valid(tmp_path):
    cl = load_claim(write(tmp_path, "relu_faster.yaml", VALID))
    assert cl.id == "relu_faster" and cl.rule == "all"
    assert cl.header.splitlines() == [
        "Claim: ReLU converges much faster than sigmoid (6x faster).",
        "Source: Lecture 2; Krizhevsky et al. 2012, Fig. 1",
        "Command: python -m fnnbench sweep=relu_faster",
    ]
    assert cl.sweep_params == {
        "activation": "relu,sigmoid,tanh",
        "seed": "range(10)",
        "optimizer.lr": "0.01,0.1,1.0",
    }
    assert cl.published.value == 6.0 and cl.published.text == "6x fewer epochs"
    assert cl.plots == ["learning_curves", "time_to_target"]
    c1, c2 = cl.comparisons
    assert c1.where == {"model.hidden_sizes": [64, 64]} and c1.tune == "optimizer.lr"
    assert (c1.metric, c1.better, c1.effect, c1.censor) == (
        "epochs_to_target",
        "lower",
        "ratio",
        "train.epochs",
    )
    assert c2.label == "relu vs tanh" and c2.metric == "final_train_loss"
    assert c2.censor == "train.epochs" and not c2.primary
    assert [c.label for c in cl.primary] == ["relu vs sigmoid"]


def test_load_claims_sorted_filtered_skips_non_claims(tmp_path):
    write(tmp_path, "b_claim.yaml", VALID.replace("id: relu_faster", "id: zzz"))
    write(tmp_path, "a_claim.yaml", VALID.replace("id: relu_faster", "id: yyy"))
    write(tmp_path, "smoke.yaml", "hydra:\n  mode: MULTIRUN\n")
    write(tmp_path, "notes.txt", "not a sweep")
    assert [c.id for c in load_claims(tmp_path)] == ["yyy", "zzz"]
    assert [c.id for c in load_claims(tmp_path, ids=["zzz"])] == ["zzz"]
    with pytest.raises(ValueError, match="'nope'"):
        load_claims(tmp_path, ids=["nope"])
    write(tmp_path, "c_claim.yaml", VALID.replace("id: relu_faster", "id: zzz"))
    with pytest.raises(ValueError, match="c_claim.yaml.*'id'.*zzz"):
        load_claims(tmp_path)
    with pytest.raises(ValueError, match="no 'claim' section"):
        load_claim(tmp_path / "smoke.yaml")


@pytest.mark.parametrize(
    "old,new,key,value",
    [
        ("  factor: activation.name\n", "  factr: activation.name\n", "'factr'", "activation.name"),
        ("  id: relu_faster\n", "", "'id'", "None"),
        (
            '  statement: "Converge much faster than sigmoid and tanh in practice (6x faster)"\n',
            "",
            "'statement'",
            "None",
        ),
        ("  better: lower\n", "  better: smaller\n", "'better'", "'smaller'"),
        ("  effect: ratio\n", "  effect: speedup\n", "'effect'", "'speedup'"),
        ("  effect: ratio\n", "  effect: rate\n", r"'comparisons\[0\].effect'", "'rate'"),
        (
            "      tune: optimizer.lr\n",
            "      tune: optimizer.lr\n      colour: red\n",
            r"'comparisons\[0\].colour'",
            "'red'",
        ),
        (
            "      primary: false\n",
            "      primary: false\n      better: faster\n",
            r"'comparisons\[1\].better'",
            "'faster'",
        ),
        ("  metric: epochs_to_target\n", "", r"'comparisons\[0\].metric'", "None"),
        ("      b: {activation.name: sigmoid}\n", "", r"'comparisons\[0\].b'", "None"),
        (
            "      primary: false\n",
            "      primary: maybe\n",
            r"'comparisons\[1\].primary'",
            "'maybe'",
        ),
        ("  censor: train.epochs\n", "  censor: train.epochs\n  rule: most\n", "'rule'", "'most'"),
        (
            "  censor: train.epochs\n",
            "  censor: train.epochs\n  success: {metric: acc, op: '~', value: 1}\n",
            "'success.op'",
            "'~'",
        ),
        (
            '  published: {value: 6.0, text: "6x fewer epochs"}\n',
            "  published: {value: 6.0, txt: x}\n",
            "'published.txt'",
            "'x'",
        ),
    ],
)
def test_load_claim_invalid_names_file_key_value(tmp_path, old, new, key, value):
    assert old in VALID
    path = write(tmp_path, "bad_claim.yaml", VALID.replace(old, new))
    with pytest.raises(ValueError, match=rf"bad_claim\.yaml.*{key}.*{value}"):
        load_claim(path)
    with pytest.raises(ValueError, match=r"bad_claim\.yaml"):
        load_claims(tmp_path)


def test_load_claim_empty_comparisons(tmp_path):
    text = VALID.split("  comparisons:\n")[0] + "  comparisons: []\n"
    with pytest.raises(ValueError, match=r"empty\.yaml.*'comparisons' = \[\]: missing"):
        load_claim(write(tmp_path, "empty.yaml", text))
    no_primary = VALID.replace(
        "      tune: optimizer.lr\n", "      tune: optimizer.lr\n      primary: false\n"
    )
    with pytest.raises(ValueError, match=r"no_primary\.yaml.*'comparisons'.*no primary"):
        load_claim(write(tmp_path, "no_primary.yaml", no_primary))


def test_rate_claim_file_and_inherited_success(tmp_path):
    text = VALID.replace("  effect: ratio\n", "  effect: rate\n").replace(
        "  censor: train.epochs\n",
        "  censor: train.epochs\n  success: {metric: final_train_acc, op: '>=', value: 1.0}\n",
    )
    cl = load_claim(write(tmp_path, "xor.yaml", text))
    assert all(c.effect == "rate" for c in cl.comparisons)
    s = cl.comparisons[0].success
    assert (s.metric, s.op, s.value) == ("final_train_acc", ">=", 1.0)
    assert s(np.array([1.0, 0.99, np.nan])).tolist() == [True, False, False]
    assert str(s) == "final_train_acc >= 1"


def test_repo_sweep_files_are_valid_claims():
    # every claim in the package's sweeps/ parses (load_claims raises on the first bad one)
    sweeps = SWEEPS_DIR
    for cl in load_claims(sweeps):
        assert cl.primary, cl.id
        assert cl.path is not None and cl.path.parent == sweeps


# ----------------------------------------------------------------------------- equivalence, quick


def _acc_runs(mean_a: float, mean_b: float, sd: float = 0.003) -> pd.DataFrame:
    gen = np.random.default_rng(7)
    runs = table({"relu": FAST, "sigmoid": FAST})
    runs["metrics.final_test_acc"] = np.where(
        runs["params.activation.name"] == "relu",
        gen.normal(mean_a, sd, 20),
        gen.normal(mean_b, sd, 20),
    )
    return runs


@pytest.mark.parametrize(
    ("mean_a", "mean_b", "verdict"),
    [
        (0.850, 0.850, EQUIVALENT),  # no difference: 90% CI inside +-0.02
        (0.950, 0.850, REFUTED),  # a clear difference of 0.10: CI entirely beyond the margin
        (0.870, 0.850, INCONCLUSIVE),  # difference right at the margin: CI straddles it
    ],
)
def test_equivalence_margin(mean_a, mean_b, verdict):
    cl = claim(
        metric="final_test_acc",
        better="higher",
        effect="difference",
        censor=None,
        comparison={"margin": 0.02},
    )
    res = judge_claim(cl, _acc_runs(mean_a, mean_b))
    c = res.comparisons[0]
    assert c.verdict == verdict, (c.effect, c.ci_low, c.ci_high)
    # a margin keeps its meaning: the claim is "no effect", so EQUIVALENT supports it
    assert c.expect == "equivalent"
    assert res.verdict == {EQUIVALENT: SUPPORTED}.get(verdict, verdict)


def test_margin_needs_difference_and_quick_is_a_list_of_overrides():
    with pytest.raises(ValueError, match="margin"):
        claim(comparison={"margin": 0.02})  # effect ratio
    with pytest.raises(ValueError, match="quick"):
        claim(quick="seed=1")
    assert claim(quick=["seed=range(0,2)"]).quick == ["seed=range(0,2)"]


def test_censor_at_a_per_run_metric():
    runs = table({"relu": [1.0, 2.0, None], "sigmoid": [5.0, None, None]})
    runs["metrics.train_seconds"] = [1.0, 2.0, 3.5, 5.0, 7.0, 9.0]
    cl = claim(censor="metrics.train_seconds")
    c = judge_claim(cl, runs).comparisons[0]
    assert (c.a.n, c.b.n, c.a.censored, c.b.censored) == (3, 3, 1, 2)
    # one budget for the comparison, the largest train_seconds of either arm (never an arm's
    # own slowest run): relu [1, 2, 9], sigmoid [5, 9, 9]
    assert c.budget == 9.0
    assert c.a.median == 2.0 and c.a.mean == 4.0 and c.b.median == 9.0
    # sigmoid is censored in 2 of 3 runs: its median is a budget, the ratio only a bound
    assert c.bound == ">=" and c.effect_text().startswith(">= ")


def test_tune_prefers_the_lr_that_reaches_the_target():
    # lr 1.0 diverges fast (every run censored at a tiny time); lr 0.1 reaches the target.
    rows = [run_row(f"r{i}", "relu", i, None, lr=1.0, outcome="diverged") for i in range(4)]
    rows += [run_row(f"s{i}", "relu", i, 5.0 + i, lr=0.1) for i in range(4)]
    rows += [run_row(f"t{i}", "sigmoid", i, 20.0 + i, lr=0.1) for i in range(4)]
    runs = pd.DataFrame(rows)
    runs["metrics.train_seconds"] = [0.01] * 4 + [30.0] * 8
    runs["metrics.seconds_to_target"] = runs.pop("metrics.epochs_to_target")
    cl = claim(metric="seconds_to_target", censor="metrics.train_seconds", tune="optimizer.lr")
    c = judge_claim(cl, runs).comparisons[0]
    assert c.a.tuned == 0.1
