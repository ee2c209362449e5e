"""Claims: what a lecture claim is, and its verdict on a table of MLflow runs.

A claim lives in ``sweeps/<id>.yaml`` (a Hydra config) under the key ``claim``; see
docs/internals.md, section "Claims". The package has four modules, each usable on its own:

- :mod:`fnnbench.claims.schema`: what a claim is. The dataclasses (:class:`Claim`,
  :class:`Comparison`, :class:`Success`, :class:`Published`), validation of the ``claim``
  section (:func:`parse_claim`), :func:`load_claim` / :func:`load_claims`, the verdict words
  (SUPPORTED, REFUTED, INCONCLUSIVE, NO DATA) and the other constants of the schema.
- :mod:`fnnbench.claims.stats`: the statistics, on plain arrays. Wilson and Newcombe
  intervals, the oriented effect statistics, the percentile bootstrap, censoring, and the
  verdict rules.
- :mod:`fnnbench.claims.select`: which runs each arm uses. Param matching, the runs that
  count, tune selection and each arm's (censored) values.
- :mod:`fnnbench.claims.judge`: the verdicts. :func:`judge_comparison` and
  :func:`judge_claim` give a :class:`ComparisonResult` (one :class:`ArmSummary` per arm) and
  a :class:`ClaimResult`.

Every effect is oriented so that a value above the null (1 for ratios, 0 for differences and
rates) favours the claim, arm ``a`` being the arm the claim says is better. The CI decides,
not the point estimate: a 95% CI entirely above the null -> SUPPORTED, entirely below ->
REFUTED, else INCONCLUSIVE; an arm without runs -> NO DATA. A run that never reached the
target counts at its budget (censored), it is never dropped.

The names below are re-exported from those modules; import them from ``fnnbench.claims``.
"""

from fnnbench.claims.judge import (
    ArmSummary,
    ClaimResult,
    ComparisonResult,
    judge_claim,
    judge_comparison,
)
from fnnbench.claims.schema import (
    BETTER,
    EFFECTS,
    INCONCLUSIVE,
    NO_DATA,
    NULL,
    OPS,
    REFUTED,
    RULES,
    SUPPORTED,
    VERDICTS,
    Claim,
    Comparison,
    Published,
    Success,
    load_claim,
    load_claims,
    parse_claim,
)
from fnnbench.claims.select import (
    ArmValues,
    arm_values,
    counting_mask,
    diverged_mask,
    match_value,
    runs_for_arm,
)
from fnnbench.claims.stats import (
    MIN_RUNS,
    bootstrap_ci,
    censor_values,
    combine_verdicts,
    effect_statistic,
    equivalence_verdict_of,
    newcombe_diff_interval,
    safe_ratio,
    verdict_of,
    wilson_interval,
)

__all__ = [
    # schema
    "BETTER", "EFFECTS", "INCONCLUSIVE", "NO_DATA", "NULL", "OPS", "REFUTED", "RULES",
    "SUPPORTED", "VERDICTS", "Claim", "Comparison", "Published", "Success", "load_claim",
    "load_claims", "parse_claim",
    # stats
    "MIN_RUNS", "bootstrap_ci", "censor_values", "combine_verdicts", "effect_statistic",
    "equivalence_verdict_of", "newcombe_diff_interval", "safe_ratio", "verdict_of",
    "wilson_interval",
    # select
    "ArmValues", "arm_values", "counting_mask", "diverged_mask", "match_value", "runs_for_arm",
    # judge
    "ArmSummary", "ClaimResult", "ComparisonResult", "judge_claim", "judge_comparison",
]  # fmt: skip
