"""Claims: what a lecture claim is, and its verdict on a table of MLflow runs.

A claim lives in ``sweeps/<id>.yaml`` (a Hydra config) under the key ``claim``; see
docs/internals.md, section "Claims". The package has four modules, each usable on its own:

- :mod:`fnnbench.claims.schema`: what a claim is. The dataclasses (:class:`Claim`,
  :class:`Comparison`, :class:`Success`, :class:`Published`), validation of the ``claim``
  section (:func:`parse_claim`), :func:`load_claim` / :func:`load_claims`, the verdict words
  (SUPPORTED, REFUTED, INCONCLUSIVE, NO DATA) and the other constants of the schema, and the
  checks of ``python -m fnnbench.claims check`` that need no Hydra
  (:func:`claim_file_problems`, :func:`claim_problems`, :func:`arm_problems`).
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
not the point estimate. One verdict per comparison: the 90% CI inside a declared equivalence
margin -> EQUIVALENT; else a 95% CI entirely above the null -> SUPPORTED, entirely below ->
REFUTED, else INCONCLUSIVE; an arm without runs -> NO DATA. The claim-level word
(SUPPORTED, PARTLY SUPPORTED, REFUTED, EQUIVALENT, INCONCLUSIVE, NO DATA) names its primary
parts (:func:`claim_verdict`). A run that never reached the target counts at a budget
common to the comparison (censored), it is never dropped; an arm censored in half or more of
its runs makes the effect a bound (>= or <=).

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
    CLAIM_KEYS,
    CLAIM_VERDICTS,
    COMPARISON_KEYS,
    EFFECTS,
    EQUIVALENT,
    EXPECT,
    INCONCLUSIVE,
    NO_DATA,
    NULL,
    OPS,
    PARTLY_SUPPORTED,
    PUBLISHED_KEYS,
    REFUTED,
    RULES,
    SUCCESS_KEYS,
    SUPPORTED,
    VERDICTS,
    Claim,
    Comparison,
    Published,
    Success,
    arm_problems,
    claim_file_problems,
    claim_problems,
    load_claim,
    load_claims,
    parse_claim,
)
from fnnbench.claims.select import (
    ArmValues,
    arm_values,
    common_budget,
    counting_mask,
    diverged_mask,
    match_value,
    runs_for_arm,
)
from fnnbench.claims.stats import (
    MIN_RUNS,
    bootstrap_ci,
    censor_values,
    claim_verdict,
    combine_verdicts,
    comparison_verdict,
    confirms,
    effect_bound,
    effect_statistic,
    equivalence_verdict_of,
    km_curve,
    newcombe_diff_interval,
    percentile_ci,
    published_in_ci,
    safe_ratio,
    sesoi_status,
    tuned_bootstrap,
    verdict_of,
    wilson_interval,
)

__all__ = [
    # schema
    "BETTER", "CLAIM_VERDICTS", "EFFECTS", "EQUIVALENT", "EXPECT", "INCONCLUSIVE", "NO_DATA",
    "NULL", "OPS", "PARTLY_SUPPORTED", "REFUTED", "RULES", "SUPPORTED", "VERDICTS", "Claim",
    "Comparison", "Published", "Success", "load_claim", "load_claims", "parse_claim",
    "CLAIM_KEYS", "COMPARISON_KEYS", "SUCCESS_KEYS", "PUBLISHED_KEYS", "claim_problems",
    "claim_file_problems", "arm_problems",
    # stats
    "MIN_RUNS", "bootstrap_ci", "censor_values", "claim_verdict", "combine_verdicts",
    "comparison_verdict", "confirms", "effect_bound", "effect_statistic",
    "equivalence_verdict_of", "km_curve", "newcombe_diff_interval", "percentile_ci",
    "published_in_ci", "safe_ratio", "sesoi_status", "tuned_bootstrap", "verdict_of",
    "wilson_interval",
    # select
    "ArmValues", "arm_values", "common_budget", "counting_mask", "diverged_mask", "match_value",
    "runs_for_arm",
    # judge
    "ArmSummary", "ClaimResult", "ComparisonResult", "judge_claim", "judge_comparison",
]  # fmt: skip
