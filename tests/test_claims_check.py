"""`python -m fnnbench.claims check FILE`: every problem one line, exit 2; else jobs and time.

Also the way a claim file outside sweeps/ runs (`python -m fnnbench sweep=<path>.yaml`): the
translation to a generated search path entry, and what preflight still refuses.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fnnbench.claims import (
    CLAIM_KEYS,
    arm_problems,
    claim_file_problems,
    claim_problems,
    load_claim,
    load_claims,
)
from fnnbench.cli import check
from fnnbench.cli.preflight import (
    check_override,
    external_sweep_args,
    parse_overrides,
    preflight,
    sweep_size,
)
from fnnbench.job.schema import ConfigError
from fnnbench.paths import SWEEPS_DIR, generated_sweep, sweep_file, sweep_override

ROOT = Path(__file__).resolve().parent.parent


def example_yaml() -> str:
    """The worked example of docs/claims.md (its yaml block that defines momentum_faster)."""
    text = (ROOT / "docs" / "claims.md").read_text()
    blocks = re.findall(r"^```yaml\n(.*?)^```", text, re.M | re.S)
    found = [b for b in blocks if "id: momentum_faster" in b]
    assert len(found) == 1, "docs/claims.md: one yaml block must define momentum_faster"
    return found[0]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Generated sweep folders go to the test's own cache, not ~/.cache."""
    monkeypatch.setenv("FNNBENCH_CACHE_DIR", str(tmp_path / "cache"))


def write(tmp_path: Path, text: str, name: str = "momentum_faster.yaml",
          folder: str = "claims") -> Path:
    d = tmp_path / folder
    d.mkdir(exist_ok=True)
    path = d / name
    path.write_text(text)
    return path


def run_check(capsys, *args: str) -> tuple[int, list[str], list[str]]:
    rc = check.main(["check", *args])
    out, err = capsys.readouterr()
    return rc, out.splitlines(), [x for x in err.splitlines() if x.strip()]


# --------------------------------------------------------------------------- bad files

def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a fragment its one line must hold)."""
    good = example_yaml()
    return {
        "unknown key": (write(tmp_path, good.replace("  factor: optimizer.name\n",
                                                     "  factor: optimizer.name\n  colour: red\n"),
                              folder="unknown_key"),
                        "claim key 'colour' = 'red': unknown key"),
        "arm value not in the grid": (
            write(tmp_path, good.replace("b: {optimizer.name: minibatch}, tune",
                                         "b: {optimizer.name: adam}, tune"), folder="arm_value"),
            "comparisons[0].b.optimizer.name' = 'adam': not a value of the sweep"),
        "not yaml": (write(tmp_path, "claim: [unclosed\n  id: x: y\n", "not_yaml.yaml"),
                     "not valid yaml"),
        "missing file": (tmp_path / "claims" / "no_such_claim.yaml", "no such file"),
    }


CASES = ["unknown key", "arm value not in the grid", "not yaml", "missing file"]


@pytest.mark.parametrize("case", CASES)
def test_a_bad_file_is_one_line_and_exit_2(tmp_path, capsys, case):
    path, fragment = bad_files(tmp_path)[case]
    rc, out, err = run_check(capsys, str(path), "--no-timing")
    assert rc == 2
    assert len(err) == 1, err
    assert err[0].startswith(f"{path}: ")
    assert fragment in err[0], err[0]
    assert not out


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_a_bad_file_through_the_command_line(tmp_path, case):
    path, fragment = bad_files(tmp_path)[case]
    env = {**os.environ, "FNNBENCH_CACHE_DIR": str(tmp_path / "cache")}
    r = subprocess.run([sys.executable, "-m", "fnnbench.claims", "check", str(path)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and fragment in lines[0], r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "mlflow.db").exists()


def test_every_problem_is_reported_not_only_the_first(tmp_path, capsys):
    text = (example_yaml().replace("  better: lower\n", "  better: smaller\n")
            .replace("  factor: optimizer.name\n", "  factor: optimizer.name\n  colour: red\n")
            .replace("equivalence: [0.8, 1.25]", "equivalence: [1.2, 0.8]"))
    path = write(tmp_path, text.replace("id: momentum_faster", "id: other_name"))
    rc, _, err = run_check(capsys, str(path), "--no-timing")
    assert rc == 2
    assert any("'colour'" in x for x in err), err
    assert any("'better' = 'smaller'" in x for x in err), err
    assert any("'id' = 'other_name'" in x for x in err), err
    assert all(x.startswith(f"{path}: ") for x in err)


def test_hydra_errors_of_the_sweep_are_one_line_each(tmp_path, capsys):
    text = example_yaml().replace("optimizer.lr: 0.03,0.1,", "optimizer.lr: -1,0.1,")
    path = write(tmp_path, text)
    rc, _, err = run_check(capsys, str(path), "--no-timing")
    assert rc == 2
    assert err == [f"{path}: optimizer.lr=-1: " + err[0].split("optimizer.lr=-1: ")[1]], err
    text = example_yaml().replace('quick: ["seed=range(0,5)"', 'quick: ["optimizer=nope"')
    path = write(tmp_path, text)
    rc, _, err = run_check(capsys, str(path), "--no-timing")
    assert rc == 2 and len(err) == 1, err
    assert "claim key 'quick'" in err[0] and "optimizer=nope: unknown option" in err[0]


def test_a_file_that_is_not_a_claim_sweep(tmp_path):
    text = example_yaml()
    no_package = write(tmp_path, text.replace("# @package _global_\n", ""))
    assert any("@package _global_" in p for p in claim_file_problems(no_package))
    no_multirun = write(tmp_path, text.replace("  mode: MULTIRUN\n", ""))
    assert any("'hydra.mode'" in p for p in claim_file_problems(no_multirun))
    no_protocol = write(tmp_path, text.replace("# Protocol (fixed", "# Plan (fixed"))
    assert any("'Protocol'" in p for p in claim_file_problems(no_protocol))
    assert claim_problems("x", src="s") == ["s: claim key 'claim' = 'x': expected a mapping"]


def test_the_example_passes_and_states_jobs_and_time(tmp_path, capsys):
    path = write(tmp_path, example_yaml())
    rc, out, err = run_check(capsys, str(path), "--workers", "2")
    assert rc == 0, err
    assert not err
    text = "\n".join(out)
    assert re.search(r"full profile:\s+120 jobs, ~[\d.]+ (s|min) on 2 worker", text), text
    assert re.search(r"quick profile:\s+20 jobs, ~[\d.]+ (s|min) on 2 worker", text), text
    assert "trained here for 1 epoch" in text and "upper bound" in text
    claim = load_claim(path)
    assert sweep_size([sweep_override(path)]) == 120
    assert sweep_size([sweep_override(path), *claim.quick]) == 20


def test_arm_checks_on_values():
    claim = load_claims(SWEEPS_DIR, ["batch_speed"])[0]
    values = {"optimizer.name": ["gd", "sgd", "minibatch"], "optimizer.lr": [0.1],
              "train.epochs": [30]}
    assert arm_problems(claim, values) == []
    values["optimizer.name"] = ["gd", "sgd"]
    problems = arm_problems(claim, values)
    assert problems and all("'minibatch'" in p and "not a value of the sweep" in p
                            for p in problems)
    del values["optimizer.lr"]
    assert any("claim key 'tune' = 'optimizer.lr': not a param" in p
               for p in arm_problems(claim, values))


@pytest.mark.slow
def test_every_shipped_claim_passes_the_check(capsys):
    for path in sorted(SWEEPS_DIR.glob("*.yaml")):
        assert claim_file_problems(path) == [], path
        rc, _, err = run_check(capsys, str(path), "--no-timing")
        assert rc == 0, err


def test_claim_keys_are_the_loaders():
    assert {"id", "statement", "comparisons", "quick", "tune_seeds"} <= CLAIM_KEYS


# ---------------------------------------------------------------- external claim files

def test_a_sweep_path_becomes_a_generated_search_path(tmp_path):
    path = write(tmp_path, example_yaml())
    args = external_sweep_args(["-m", f"sweep={path}", "seed=1"])
    assert args[:3] == ["-m", "sweep=momentum_faster", "seed=1"]
    assert len(args) == 4 and args[3].startswith("hydra.searchpath=[file://")
    folder = args[3][len("hydra.searchpath=[file://"):-1]
    copy = generated_sweep(folder)
    assert copy is not None and copy.read_bytes() == path.read_bytes()
    assert copy.parent.parent.parent == tmp_path / "cache" / "sweeps"
    assert sweep_file("momentum_faster", [f"file://{folder}"]) == copy
    assert sweep_file("relu_faster") == SWEEPS_DIR / "relu_faster.yaml"
    # the same file again: the same folder (named by its sha256); no path: unchanged
    assert external_sweep_args([f"sweep={path}"])[1] == args[3]
    assert external_sweep_args(["sweep=relu_faster", "seed=1"]) == ["sweep=relu_faster", "seed=1"]
    # what preflight checks: the composed config of the copy
    jobs = preflight([*args, "tracking.enabled=false"])
    assert jobs and all(j.claim.id == "momentum_faster" for j in jobs)
    assert {j.optimizer.name for j in jobs} == {"momentum", "minibatch"}


def test_sweep_override_names_shipped_files_by_id(tmp_path):
    assert sweep_override(SWEEPS_DIR / "relu_faster.yaml") == "sweep=relu_faster"
    path = write(tmp_path, example_yaml())
    assert sweep_override(path) == f"sweep={path}"
    spaced = tmp_path / "my claims"
    spaced.mkdir()
    (spaced / "momentum_faster.yaml").write_text(example_yaml())
    o = sweep_override(spaced / "momentum_faster.yaml")
    assert o.startswith("sweep='") and external_sweep_args([o])[0] == "sweep=momentum_faster"
    assert external_sweep_args([f"sweep={SWEEPS_DIR / 'relu_faster.yaml'}"]) == [
        "sweep=relu_faster"]


@pytest.mark.parametrize(("value", "fragment"), [
    ("{tmp}/claims/none.yaml", "no such file"),
    ("{tmp}/claims", "must end with .yaml"),
    ("{tmp}/claims/relu_faster.yaml", "is the name of a claim sweep fnnbench ships"),
    ("{tmp}/claims/bad name!.yaml", "must be letters, digits"),
])
def test_a_bad_sweep_path_is_one_line(tmp_path, value, fragment):
    write(tmp_path, example_yaml(), "relu_faster.yaml")
    write(tmp_path, example_yaml(), "bad name!.yaml")
    value = value.format(tmp=tmp_path)
    with pytest.raises(ConfigError) as err:
        external_sweep_args([f"sweep='{value}'"])
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("sweep=") and fragment in msg, msg
    with pytest.raises(ConfigError, match="one claim file at a time"):
        external_sweep_args([f"sweep={tmp_path}/a.yaml,{tmp_path}/b.yaml"])


def test_only_a_generated_search_path_passes(tmp_path):
    path = write(tmp_path, example_yaml())
    good = external_sweep_args([f"sweep={path}"])[1]
    check_override(parse_overrides([good])[0])  # no error
    folder = Path(good[len("hydra.searchpath=[file://"):-1])
    forged = [f"hydra.searchpath=[file://{tmp_path / 'claims'}]",
              f"hydra.searchpath=[file://{folder},file://{tmp_path}]",
              "hydra.searchpath=[pkg://fnnbench.conf]"]
    extra = folder / "hydra" / "launcher"
    for line in forged:
        with pytest.raises(ConfigError, match="refused"):
            check_override(parse_overrides([line])[0])
    # a generated folder with anything else in it, or edited after it was made, is refused
    extra.mkdir(parents=True)
    with pytest.raises(ConfigError, match="refused"):
        check_override(parse_overrides([good])[0])
    (folder / "hydra" / "launcher").rmdir()
    (folder / "hydra").rmdir()
    copy = next((folder / "sweep").glob("*.yaml"))
    copy.write_text(copy.read_text() + "\n# edited\n")
    with pytest.raises(ConfigError, match="refused"):
        check_override(parse_overrides([good])[0])
