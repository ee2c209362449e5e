"""The one command: the quick profile of every claim, end to end, into a temporary store."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from fnnbench.claims import CLAIM_VERDICTS, load_claims
from fnnbench.cli.preflight import sweep_size
from fnnbench.paths import SWEEPS_DIR

VERDICT = re.compile(rf"^\*\*({'|'.join(CLAIM_VERDICTS)})\*\*")


def test_every_claim_has_a_quick_profile_that_shrinks_its_sweep():
    claims = load_claims(SWEEPS_DIR)
    assert len(claims) >= 9
    for c in claims:
        full = sweep_size([f"sweep={c.id}"])
        quick = sweep_size([f"sweep={c.id}", *c.quick])
        assert c.quick, c.id
        assert 1 <= quick < full, (c.id, quick, full)


QUICK_MAX_JOBS = 12  # CI runs every quick profile
FULL_PROFILE_MINUTES = 13.0  # the estimates in the headers (2 workers, idle); the goal is 15
COST = re.compile(r"^# Cost estimate: .*?= (\d+) jobs, ~([\d.]+) min", re.M | re.S)


def test_every_claim_file_states_its_cost_why_it_may_differ_and_its_changes():
    total = 0.0
    for c in load_claims(SWEEPS_DIR):
        text = c.path.read_text()
        m = COST.search(text.split("\ndefaults:")[0])
        assert m, f"{c.id}: no '# Cost estimate: ... = N jobs, ~M min' line in the header"
        assert int(m.group(1)) == sweep_size([f"sweep={c.id}"]), c.id
        total += float(m.group(2))
        assert c.differs and len(c.differs) > 40, c.id
        assert "# Command: python -m fnnbench sweep=" + c.id in text, c.id
        assert sweep_size([f"sweep={c.id}", *c.quick]) <= QUICK_MAX_JOBS, c.id
    assert total <= FULL_PROFILE_MINUTES, total


def test_tuned_claims_hold_out_their_tuning_seeds():
    for c in load_claims(SWEEPS_DIR):
        if not any(comp.tune for comp in c.comparisons):
            continue
        assert c.tune_seeds and c.tune_seeds >= 2, c.id
        seeds = str(c.sweep_params["seed"])
        m = re.fullmatch(r"range\(0,\s*(\d+)\)", seeds)
        assert m, (c.id, seeds)
        assert int(m.group(1)) - c.tune_seeds >= 7, (c.id, "too few judged seeds")


@pytest.mark.slow
def test_quick_profile_end_to_end_every_claim_gets_a_verdict(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    for var in ("FNNBENCH_PARENT_RUN_ID", "FNNBENCH_TRACKING_URI"):
        env.pop(var, None)
    out = tmp_path / "reports"
    r = subprocess.run([sys.executable, "-m", "fnnbench.reproduce", "--quick", "--out", str(out)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    claims = load_claims(SWEEPS_DIR)
    for c in claims:
        line = re.search(rf"^  {c.id}\s+(\d+)/(\d+) jobs", r.stdout, re.M)
        assert line and line.group(1) == line.group(2), (c.id, r.stdout)
        page = (out / f"{c.id}.md").read_text()
        first = next(p for p in page.splitlines()[1:] if p.strip())
        assert VERDICT.match(first), (c.id, first)
    index = (out / "README.md").read_text()
    for c in claims:
        assert f"({c.id}.md)" in index
    # running it again trains nothing: every job is skipped
    again = subprocess.run([sys.executable, "-m", "fnnbench.reproduce", "--quick", "--no-report",
                            "xor_single_neuron"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    m = re.search(r"xor_single_neuron\s+(\d+)/(\d+) jobs\s+skipped\s+(\d+)", again.stdout)
    assert m and m.group(1) == m.group(3), again.stdout


def test_the_job_and_sweep_lines_parse_back_to_what_was_printed():
    from fnnbench.tracking.names import (
        SweepCounts,
        failed_line,
        parse_job_line,
        parse_sweep_line,
        skipped_line,
        summary_line,
        sweep_line,
    )

    summary = {"epochs_run": 4, "final_train_loss": 0.5, "final_train_acc": 0.9,
               "train_seconds": 1.25, "epochs_to_target": 3.5}
    for outcome in ("reached_target", "max_epochs", "converged", "diverged"):
        job = parse_job_line(summary_line("activation=relu,seed=3", outcome, summary))
        assert (job.name, job.kind, job.diverged) == ("activation=relu,seed=3", outcome,
                                                      outcome == "diverged")
    assert parse_job_line(skipped_line("seed=1", "abc", "2")).kind == "skipped"
    assert parse_job_line(failed_line("seed=2", ValueError("bad\nsecond line"))).kind == "failed"
    assert parse_job_line("[2026-01-01][HYDRA] #0 : seed=0") is None
    counts = SweepCounts(n_jobs=8, n_finished=6, n_diverged=1, n_failed=1, n_killed=0,
                         n_skipped=1)
    line = sweep_line("capacity", counts, "0123abcd", "FAILED")
    assert parse_sweep_line(line) == counts
    assert parse_job_line(line) is None and parse_sweep_line(line[:-1] + "x y") is None
