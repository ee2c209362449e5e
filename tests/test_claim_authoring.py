"""docs/claims.md is enough to write a claim: it documents every key the loader accepts (with
the loader's defaults), and its worked example, written out of the markdown into a folder of
its own, passes `claims check`, runs its quick profile through `python -m fnnbench
sweep=<path>` and gets a verdict from `python -m fnnbench.report --sweeps-dir`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fnnbench.claims import (
    CLAIM_KEYS,
    CLAIM_VERDICTS,
    COMPARISON_KEYS,
    NO_DATA,
    PUBLISHED_KEYS,
    SUCCESS_KEYS,
    load_claim,
    parse_claim,
)

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "claims.md"


def section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def table_rows(text: str) -> dict[str, list[str]]:
    """First-column `key` -> the other cells, for every markdown table row in ``text``."""
    rows = {}
    for line in text.splitlines():
        m = re.match(r"^\| `([^`]+)` \|(.*)\|\s*$", line)
        if m:
            rows[m.group(1)] = [c.strip() for c in m.group(2).split("|")]
    return rows


def example_yaml() -> str:
    blocks = re.findall(r"^```yaml\n(.*?)^```", DOC.read_text(), re.M | re.S)
    found = [b for b in blocks if "id: momentum_faster" in b]
    assert len(found) == 1
    return found[0]


def test_every_claim_key_is_documented():
    claim_rows = table_rows(section("The `claim:` keys"))
    assert set(claim_rows) >= CLAIM_KEYS, CLAIM_KEYS - set(claim_rows)
    assert set(claim_rows) - CLAIM_KEYS <= set(SUCCESS_KEYS) | set(PUBLISHED_KEYS)
    comparison_rows = table_rows(section("Comparisons"))
    assert set(comparison_rows) >= COMPARISON_KEYS, COMPARISON_KEYS - set(comparison_rows)
    for key in (*SUCCESS_KEYS, *PUBLISHED_KEYS):
        assert key in claim_rows, key


def test_documented_defaults_are_the_loaders():
    """Where the doc's default is a literal (`ratio`, `all`, `[]`, `true`, ...), a claim that
    leaves the key out gets exactly that value."""
    minimal = {"id": "x", "statement": "s", "metric": "m", "better": "lower",
               "comparisons": [{"a": {"k": 1}, "b": {"k": 2}}]}
    claim = parse_claim(minimal)
    comp = claim.comparisons[0]
    checked = 0
    for rows, obj, keys in ((table_rows(section("The `claim:` keys")), claim, CLAIM_KEYS),
                            (table_rows(section("Comparisons")), comp, COMPARISON_KEYS)):
        for key in keys:
            default = rows[key][0]
            m = re.match(r"^`([^`]+)`", default)
            if key in minimal or not m or "<" in m.group(1):  # a pattern, not a literal
                continue
            assert getattr(obj, key) == yaml.safe_load(m.group(1)), (key, default)
            checked += 1
        for key in keys:  # "none" means None
            if rows[key][0].startswith("none") and key not in minimal and key != "published":
                assert getattr(obj, key) in (None, {}, []), key
    assert checked >= 6
    assert comp.label == "1 vs 2"  # "<a values> vs <b values>"


def test_the_example_is_a_valid_claim_that_is_not_shipped(tmp_path):
    path = tmp_path / "momentum_faster.yaml"
    path.write_text(example_yaml())
    claim = load_claim(path)
    assert claim.id == "momentum_faster"
    assert not (ROOT / "fnnbench" / "sweeps" / "momentum_faster.yaml").exists()
    assert {c.a["optimizer.name"] for c in claim.comparisons} == {"momentum"}


@pytest.mark.slow
def test_a_claim_written_from_the_docs_runs_end_to_end(tmp_path):
    folder = tmp_path / "my claims"  # a space in the path, on purpose
    folder.mkdir()
    path = folder / "momentum_faster.yaml"
    path.write_text(example_yaml())
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "FNNBENCH_CACHE_DIR": str(tmp_path / "cache")}
    for var in ("FNNBENCH_PARENT_RUN_ID", "FNNBENCH_TRACKING_URI"):
        env.pop(var, None)

    def run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=timeout)

    r = run("fnnbench.claims", "check", str(path))
    assert r.returncode == 0, r.stderr
    assert re.search(r"quick profile:\s+20 jobs", r.stdout), r.stdout
    claim = load_claim(path)
    r = run("fnnbench", f"sweep='{path}'", *claim.quick)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert re.search(r"sweep momentum_faster: 20 jobs: 20 finished", r.stdout), r.stdout[-2000:]
    out = tmp_path / "reports"
    r = run("fnnbench.report", "--sweeps-dir", str(folder), "--claims", "momentum_faster",
            "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    verdicts = json.loads((out / "verdicts.json").read_text())
    primary = [v for v in verdicts if v["claim"] == "momentum_faster" and v["primary"]]
    assert primary
    word = primary[0]["claim_verdict"]
    assert word in CLAIM_VERDICTS and word != NO_DATA, primary
    assert primary[0]["sweep_sha256"] == claim.sha256  # the runs count: not stale
    page = (out / "momentum_faster.md").read_text()
    assert f"**{word}**" in page


@pytest.mark.slow
@pytest.mark.parametrize(("extra", "fragment"), [
    ("  callbacks:\n    evil:\n      _target_: builtins.print\n", "hydra.callbacks"),
    ("  job:\n    env_set:\n      PWNED: '1'\n", "hydra.job.env_set"),
])
def test_an_external_file_gets_the_same_hydra_checks(tmp_path, extra, fragment):
    text = example_yaml().replace("hydra:\n  mode: MULTIRUN\n", "hydra:\n  mode: MULTIRUN\n"
                                  + extra)
    path = tmp_path / "momentum_faster.yaml"
    path.write_text(text)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "FNNBENCH_CACHE_DIR": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "fnnbench", f"sweep={path}"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=300)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(lines) == 1 and fragment in lines[0] and "refused" in lines[0], lines
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "multirun").exists()


@pytest.mark.slow
def test_a_bad_sweep_path_on_the_command_line_is_one_line(tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "FNNBENCH_CACHE_DIR": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "fnnbench", "sweep=nowhere/claim.yaml"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip() == "fnnbench: error: sweep=nowhere/claim.yaml: no such file"
    assert not (tmp_path / "mlflow.db").exists()
