"""fnnbench.report for every sweep: a page per sweep without a claim, --sweep / --last, the
claims not run, one-line errors; on a synthetic store (sweeps with and without a claim, seeds
swept or not, a target, reused runs), then the README's activation sweep run for real."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from fnnbench.paths import file_sha256
from fnnbench.report.__main__ import main as report_main
from fnnbench.report.markdown import fmt_num
from fnnbench.report.sweeps import (
    Sweep,
    page_stems,
    parse_override,
    select_sweep,
    split_overrides,
    swept_overrides,
)
from fnnbench.report.tables import median_ci
from tests.fixtures.store import log_parent, log_run, synthetic_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
T0 = 1_700_000_000_000  # ms: start times of the synthetic sweeps, one hour apart
HOUR = 3_600_000


# ----------------------------------------------------------------------------- units


def test_split_overrides_keeps_values_with_spaces_together():
    tag = "activation=relu,tanh model.hidden_sizes=[64, 64],[] seed=range(0,3) +x.y=1"
    assert split_overrides(tag) == [
        "activation=relu,tanh", "model.hidden_sizes=[64, 64],[]", "seed=range(0,3)", "+x.y=1",
    ]  # fmt: skip
    assert split_overrides("") == [] and split_overrides(None) == []


def test_sweep_overrides_are_told_from_fixed_ones():
    tokens = split_overrides(
        "activation=relu,tanh train.epochs=2 model.hidden_sizes=[64, 64] seed=range(0,3) "
        "optimizer.lr=choice(0.1,0.5) dataset=moons"
    )
    swept, fixed = swept_overrides(tokens)
    assert swept == ["activation=relu,tanh", "seed=range(0,3)", "optimizer.lr=choice(0.1,0.5)"]
    assert fixed == ["train.epochs=2", "model.hidden_sizes=[64, 64]", "dataset=moons"]
    assert parse_override("+model.hidden_sizes=[4],[8]") == ("model.hidden_sizes", True)


def test_median_ci_is_the_order_statistic_interval():
    # the distribution-free 95% CI of the median of 10 values is (x(2), x(9)): coverage 97.9%
    x = np.array([9.0, 1.0, 7.0, 3.0, 5.0, 10.0, 2.0, 8.0, 4.0, 6.0])
    assert median_ci(x) == (2.0, 9.0)
    assert median_ci(np.arange(20.0)) == (5.0, 14.0)  # (x(6), x(15)) for n = 20
    assert median_ci(np.arange(6.0)) == (0.0, 5.0)  # n = 6: [min, max], coverage 96.9%
    assert all(np.isnan(median_ci(np.arange(5.0))))  # [min, max] covers only 93.75%
    assert all(np.isnan(median_ci([1.0, np.nan])))


def test_median_ci_covers_the_true_median_at_least_95_percent():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(1000):  # exact coverage for n = 12, (x(3), x(10)): 96.1%
        lo, hi = median_ci(rng.exponential(1.0, size=12))
        hits += lo <= np.log(2.0) <= hi
    assert hits / 1000 >= 0.95


def _fake(run_id: str) -> Sweep:
    return Sweep(run_id, "multirun x", "0", pd.NaT, pd.NaT, "FINISHED", None, [], [], "params",
                 pd.DataFrame())  # fmt: skip


def test_select_sweep_by_id_or_unique_prefix():
    sweeps = [_fake("abc10000"), _fake("abc20000"), _fake("ffff0000")]
    runs = pd.DataFrame({"run_id": ["abc10000", "abc20000", "ffff0000", "job1"],
                         "tags.mlflow.parentRunId": [None, None, None, "ffff0000"]})  # fmt: skip
    assert select_sweep(sweeps, runs, "abc1", "s").run_id == "abc10000"
    assert select_sweep(sweeps, runs, "FFFF", "s").run_id == "ffff0000"
    with pytest.raises(ValueError, match="2 sweeps start with it"):
        select_sweep(sweeps, runs, "abc", "s")
    with pytest.raises(ValueError, match="run job1 is a job of sweep ffff0000"):
        select_sweep(sweeps, runs, "job1", "s")
    with pytest.raises(ValueError, match="no sweep parent run with that id in s"):
        select_sweep(sweeps, runs, "0123", "s")


def test_page_names_are_stable_and_unique():
    stems = page_stems([_fake("12345678aaaa"), _fake("12345678bbbb"), _fake("87654321cccc")])
    assert stems == {
        "12345678aaaa": "sweep-12345678aaaa", "12345678bbbb": "sweep-12345678bbbb",
        "87654321cccc": "sweep-87654321",
    }  # fmt: skip


# ----------------------------------------------------------------------------- the store

BUDGET = 40
CLAIM = {
    "id": "speed",
    "title": "ReLU reaches the target sooner than sigmoid",
    "statement": "ReLU converges faster than sigmoid",
    "factor": "activation.name",
    "metric": "epochs_to_target",
    "better": "lower",
    "effect": "ratio",
    "censor": "train.epochs",
    "plots": ["learning_curves"],
    "comparisons": [{"a": {"activation.name": "relu"}, "b": {"activation.name": "sigmoid"}}],
}
NODATA = {
    "id": "nodata",
    "title": "A claim nobody ran yet",
    "statement": "Momentum helps",
    "metric": "epochs_to_target",
    "better": "lower",
    "comparisons": [{"a": {"optimizer.name": "momentum"}, "b": {"optimizer.name": "sgd"}}],
}
SEEDS = 10  # per setting of the seeded sweep: enough for a 95% interval of the median
SIGMOID_SEEDS = 4  # too few for one: "(no CI)"


def _experiment(client, name):
    exp = client.get_experiment_by_name(name)
    return exp.experiment_id if exp else client.create_experiment(name)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Experiment 'fnnbench': sweep A (activation x 10 seeds, target 0.1; sigmoid 4 seeds and
    one FAILED) at T0, sweep B (lr, one seed, no target) at T0 + 2h. Experiment 'speed': the
    claim sweep of 'speed' at T0 + 1h. Experiment 'again': sweep C1 (one job) at T0 + 3h and
    C2 (the same command, its job skipped: reused) at T0 + 4h. Claim 'nodata' never ran."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("sweeps-store")
    sweeps_dir = root / "sweeps"
    sweeps_dir.mkdir()
    for c in (CLAIM, NODATA):
        body = {"claim": c, "hydra": {"sweeper": {"params": {"seed": "range(0,4)"}}}}
        (sweeps_dir / f"{c['id']}.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    rng = np.random.default_rng(0)
    ids: dict[str, object] = {}

    eid = _experiment(client, "fnnbench")
    a = log_parent(
        client, eid, None, 2 * SEEDS + SIGMOID_SEEDS + 1, start_ms=T0,
        overrides=f"activation=relu,tanh,sigmoid seed=range(0,{SEEDS}) train.epochs={BUDGET}",
        run_name="multirun activation,seed",
    )  # fmt: skip
    kids: dict[str, list[str]] = {}
    t = T0
    for act, n in (("relu", SEEDS), ("tanh", SEEDS), ("sigmoid", SIGMOID_SEEDS)):
        for seed in range(n):
            t += 1000
            run = synthetic_run(rng, claim=None, activation=act, seed=seed, epochs=BUDGET)
            kids.setdefault(act, []).append(log_run(client, eid, run, t0_ms=t, parent=a))
    failed = synthetic_run(rng, claim=None, activation="sigmoid", seed=SIGMOID_SEEDS)
    failed.status = "FAILED"
    ids["a_failed"] = log_run(client, eid, failed, t0_ms=t + 1000, parent=a)
    ids["a"], ids["a_kids"] = a, kids

    b = log_parent(client, eid, None, 2, start_ms=T0 + 2 * HOUR,
                   overrides="optimizer.lr=0.1,0.5 dataset=moons")  # fmt: skip
    ids["b_kids"] = [
        log_run(client, eid, synthetic_run(rng, claim=None, lr=lr, seed=0, epochs=20,
                                           extra_params={"train.target": None}),
                t0_ms=T0 + 2 * HOUR + i * 1000, parent=b)
        for i, lr in enumerate((0.1, 0.5))
    ]  # fmt: skip
    ids["b"] = b

    eid = _experiment(client, "speed")
    sha = file_sha256(sweeps_dir / "speed.yaml")
    s = log_parent(client, eid, "speed", 8, sweep_sha256=sha, start_ms=T0 + HOUR,
                   overrides="sweep=speed")  # fmt: skip
    for i, (act, seed) in enumerate((a, sd) for a in ("relu", "sigmoid") for sd in range(4)):
        run = synthetic_run(rng, claim="speed", activation=act, seed=seed, epochs=BUDGET,
                            sweep_sha256=sha)  # fmt: skip
        log_run(client, eid, run, t0_ms=T0 + HOUR + i * 1000, parent=s)
    ids["speed"] = s

    eid = _experiment(client, "again")
    c1 = log_parent(client, eid, None, 1, start_ms=T0 + 3 * HOUR,
                    overrides="activation=elu,relu")  # fmt: skip
    done = log_run(client, eid, synthetic_run(rng, claim=None, activation="elu", seed=0),
                   t0_ms=T0 + 3 * HOUR + 1000, parent=c1)  # fmt: skip
    c2 = log_parent(client, eid, None, 1, start_ms=T0 + 4 * HOUR,
                    overrides="activation=elu,relu",
                    tags={"fnnbench.skipped.0123456789abcdef": done})  # fmt: skip
    ids.update(c1=c1, c2=c2, reused=done)
    _experiment(client, "empty")
    return {"uri": uri, "sweeps": sweeps_dir, "ids": ids}


def _build(store, out, **kw):
    from fnnbench.report.build import build_report

    return build_report(store["uri"], sweeps_dir=store["sweeps"], out=out, **kw)


@pytest.fixture(scope="module")
def full(store, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    summary = _build(store, out)
    pages = {p.stem: p.read_text(encoding="utf-8") for p in out.glob("*.md")}
    return {"out": out, "summary": summary, "pages": pages}


def _rows(page: str) -> dict[str, list[str]]:
    """The rows of the per-setting table, by setting: the cells after the setting."""
    body = page.split("## Result", 1)[1].split("\n## ", 1)[0]
    out = {}
    for ln in body.splitlines():
        if ln.startswith("| ") and not ln.startswith(("| setting", "| :---")):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]]
            out[cells[0]] = cells[1:]
    return out


def _header(page: str) -> list[str]:
    line = next(ln for ln in page.splitlines() if ln.startswith("| setting |"))
    return [c.strip() for c in line.split("|")[1:-1]]


def _images(text: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)


@pytest.mark.slow
def test_every_sweep_without_a_claim_gets_a_page_and_the_index_lists_every_sweep(store, full):
    ids, pages = store["ids"], full["pages"]
    sweep_pages = {f"sweep-{ids[k][:8]}" for k in ("a", "b", "c1", "c2")}
    assert set(pages) == {"README", "speed"} | sweep_pages
    assert set(full["summary"].sweeps) == {ids[k] for k in ("a", "b", "c1", "c2")}
    section = pages["README"].split("## Sweeps", 1)[1].split("\n## ", 1)[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("| [")]
    # newest first; the claim sweep links to its claim page
    assert [re.search(r"\]\(([^)]+)\)", r).group(1) for r in rows] == [
        f"sweep-{ids['c2'][:8]}.md", f"sweep-{ids['c1'][:8]}.md", f"sweep-{ids['b'][:8]}.md",
        "speed.md", f"sweep-{ids['a'][:8]}.md",
    ]  # fmt: skip
    assert f"| speed | {ids['speed']} |" in section
    for name in sweep_pages:
        assert "NO DATA" not in pages[name], name


@pytest.mark.slow
def test_claims_without_runs_are_listed_as_not_run_not_paged(full):
    assert "nodata" not in full["pages"] and full["summary"].not_run == ["nodata"]
    index = full["pages"]["README"]
    lines = [ln for ln in index.splitlines() if "not run" in ln]
    assert len(lines) == 3
    assert lines[0].startswith("1 claims: ") and "; 1 not run (listed below). " in lines[0]
    assert lines[1:] == [
        "## Claims not run",
        "- A claim nobody ran yet (`nodata`): not run; `python -m fnnbench sweep=nodata`",
    ]
    assert "](speed.md)" in index
    verdicts = json.loads((full["out"] / "verdicts.json").read_text())
    assert {r["claim"] for r in verdicts} == {"speed", "nodata"}  # machine-readable: all


@pytest.mark.slow
def test_seeds_swept_give_medians_with_order_statistic_intervals(store, full):
    from fnnbench.report.data import connect, load_runs

    ids = store["ids"]
    page = full["pages"][f"sweep-{ids['a'][:8]}"]
    assert page.startswith("# Sweep: activation=relu,tanh,sigmoid seed=range(0,10)\n")
    assert "**3 settings** of activation over seeds · 25 jobs (24 finished, 1 failed" in page
    assert "`scipy.stats.quantile_test(x, p=0.5).confidence_interval()`" in page
    rows = _rows(page)
    assert list(rows) == ["relu", "tanh", "sigmoid"]  # the order the sweep ran them
    header = _header(page)[1:]
    client = connect(store["uri"])
    runs = load_runs(client, [client.get_experiment_by_name("fnnbench").experiment_id])
    for act in ("relu", "tanh"):
        mine = runs[runs["run_id"].isin(ids["a_kids"][act])]
        v = np.sort(mine["metrics.final_train_loss"].to_numpy(dtype=float))
        assert v.size == SEEDS
        want = f"{fmt_num(np.median(v))} [{fmt_num(v[1])}, {fmt_num(v[8])}]"  # x(2), x(9)
        assert rows[act][header.index("final training loss")] == want
        assert rows[act][:3] == [str(SEEDS), str(SEEDS), f"{SEEDS} / 0 / 0"]
    sig = rows["sigmoid"]
    assert sig[:3] == [str(SIGMOID_SEEDS + 1), str(SIGMOID_SEEDS + 1), f"{SIGMOID_SEEDS} / 1 / 0"]
    assert sig[header.index("final training loss")].endswith(" (no CI)")  # 4 runs: none
    # time to target (target 0.1): sigmoid (tau 45 epochs > budget 40) never reaches it
    assert sig[header.index("reached target")] == f"0 / {SIGMOID_SEEDS}"
    assert sig[header.index("epochs to target")] == f">= {BUDGET} (bound)"
    assert rows["relu"][header.index("reached target")] == f"{SEEDS} / {SEEDS}"
    imgs = _images(page)
    stem = f"sweep-{ids['a'][:8]}"
    assert imgs == [f"img/{stem}-{k}.png" for k in ("learning_curves", "time_to_target",
                                                      "kaplan_meier")]  # fmt: skip
    for rel in imgs:
        assert (full["out"] / rel).read_bytes()[:8] == PNG_MAGIC
    assert f"python -m fnnbench -m activation=relu,tanh,sigmoid 'seed=range(0,10)' " \
           f"train.epochs={BUDGET}" in page  # fmt: skip
    for rid in [ids["a"], ids["a_failed"], *ids["a_kids"]["relu"], *ids["a_kids"]["sigmoid"]]:
        assert rid in page
    assert "<details><summary>Failed runs (1)</summary>" in page


@pytest.mark.slow
def test_a_sweep_without_seeds_shows_values_and_no_time_to_target(store, full):
    page = full["pages"][f"sweep-{store['ids']['b'][:8]}"]
    assert "**2 settings** of optimizer.lr · 2 jobs" in page and "over seeds" not in page
    assert list(_rows(page)) == ["0.1", "0.5"]
    assert "reached target" not in _header(page)
    assert "One run per setting (the seed is not swept)" in page
    assert "(no CI)" not in page and " [" not in "".join(sum(_rows(page).values(), []))
    assert _images(page) == [f"img/sweep-{store['ids']['b'][:8]}-learning_curves.png"]


@pytest.mark.slow
def test_a_sweep_that_reused_finished_runs_reports_them(store, full):
    ids = store["ids"]
    page = full["pages"][f"sweep-{ids['c2'][:8]}"]
    line = next(ln for ln in page.splitlines() if ids["reused"] in ln)
    assert line.startswith("- all runs, seed 0: ") and line.endswith(
        ", reused from an earlier sweep)"
    )
    assert "1 of them were reused" in page


@pytest.mark.slow
def test_sweep_flag_writes_only_that_sweep(store, tmp_path):
    ids = store["ids"]
    out = tmp_path / "out"
    summary = _build(store, out, sweep=ids["b"][:10])
    assert sorted(p.name for p in out.glob("*.md")) == ["README.md", f"sweep-{ids['b'][:8]}.md"]
    assert summary.selected == ids["b"] and summary.pages == {} and summary.not_run == []
    assert summary.n_runs == 2
    index = (out / "README.md").read_text()
    assert "No claim in this report." in index and "not run" not in index
    assert index.count("](sweep-") == 1
    assert json.loads((out / "verdicts.json").read_text()) == []
    assert {p.name for p in (out / "img").iterdir()} == {
        f"sweep-{ids['b'][:8]}-learning_curves.png"
    }


@pytest.mark.slow
def test_sweep_flag_on_a_claim_sweep_writes_its_claim_page(store, tmp_path):
    out = tmp_path / "out"
    summary = _build(store, out, sweep=store["ids"]["speed"])
    assert sorted(p.name for p in out.glob("*.md")) == ["README.md", "speed.md"]
    assert summary.sweeps == {} and list(summary.verdicts) == ["speed"]


@pytest.mark.slow
def test_last_flag_takes_the_sweep_started_last(store, tmp_path, capsys):
    ids = store["ids"]
    out = tmp_path / "out"
    code = report_main(["--tracking-uri", store["uri"], "--sweeps-dir", str(store["sweeps"]),
                        "--out", str(out), "--last"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.glob("*.md")) == ["README.md", f"sweep-{ids['c2'][:8]}.md"]
    out2 = tmp_path / "out2"
    code = report_main(["--tracking-uri", store["uri"], "--sweeps-dir", str(store["sweeps"]),
                        "--out", str(out2), "--last", "--experiment", "fnnbench"])  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in out2.glob("*.md")) == ["README.md", f"sweep-{ids['b'][:8]}.md"]
    out3 = tmp_path / "out3"
    code = report_main(["--tracking-uri", store["uri"], "--sweeps-dir", str(store["sweeps"]),
                        "--out", str(out3), "--last", "--experiment", "speed"])  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in out3.glob("*.md")) == ["README.md", "speed.md"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--sweep", "0123456789"], "--sweep 0123456789: no sweep parent run with that id"),
        (["--sweep", "JOB"], "is a job of sweep "),
        (["--last", "--experiment", "empty"], "--last: no sweep (parent run tagged"),
        (["--sweep", "abc", "--last"], "not allowed with argument --sweep"),
        (["--last", "--claims", "speed"], "--claims cannot be combined with --sweep or --last"),
        (["--last", "--readme", "README.md"], "--readme needs every claim's verdict"),
        (["--experiment", "nope", "--last"], "--experiment 'nope': no such experiment"),
    ],
)
def test_bad_selection_is_one_line_exit_2_and_writes_nothing(store, tmp_path, capsys, args,
                                                             fragment):
    args = [store["ids"]["reused"] if a == "JOB" else a for a in args]
    out = tmp_path / "out"
    try:
        code = report_main(["--tracking-uri", store["uri"], "--sweeps-dir", str(store["sweeps"]),
                            "--out", str(out), *args])  # fmt: skip
    except SystemExit as exc:  # argparse's own checks exit (status 2) from parse_args
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and err.startswith("fnnbench.report: error: ")
    assert fragment in err
    assert list(tmp_path.iterdir()) == []  # no output folder, no staging folder


@pytest.mark.slow
def test_a_crash_while_rendering_leaves_nothing_half_written(store, tmp_path, monkeypatch):
    from fnnbench.report import build

    real = build.render_sweep

    def crash(sweep, out, **kw):
        real(sweep, out, **kw)  # the page and its figure are written, then it fails
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(build, "render_sweep", crash)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="disk on fire"):
        _build(store, out, sweep=store["ids"]["b"])
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- a real sweep


@pytest.mark.slow
def test_the_readme_activation_sweep_gets_a_report(tmp_path):
    """README's first command (`python -m fnnbench -m activation=relu,tanh,sigmoid`), run for
    real with 2 epochs on moons, then `python -m fnnbench.report --last`: one page naming the
    three settings, with figures, and no NO DATA page."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "CI": "true"}
    for var in ("FNNBENCH_PARENT_RUN_ID", "FNNBENCH_TRACKING_URI", "FNNBENCH_SWEEP_KEYS"):
        env.pop(var, None)
    overrides = ["activation=relu,tanh,sigmoid", "train.epochs=2", "dataset=moons"]
    r = subprocess.run([sys.executable, "-m", "fnnbench", "-m", *overrides], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    parent = re.search(r"parent run ([0-9a-f]{32}) FINISHED", r.stdout).group(1)
    out = tmp_path / "reports"
    cmd = [sys.executable, "-m", "fnnbench.report", "--last", "--out", str(out)]
    rep = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert rep.returncode == 0, rep.stderr[-2000:]
    pages = {p.name: p.read_text() for p in out.glob("*.md")}
    assert set(pages) == {"README.md", f"sweep-{parent[:8]}.md"}
    page = pages[f"sweep-{parent[:8]}.md"]
    assert list(_rows(page)) == ["relu", "tanh", "sigmoid"]
    assert "**3 settings** of activation · 3 jobs (3 finished, 0 failed" in page
    assert f"python -m fnnbench -m {' '.join(overrides)}" in page
    assert f"parent: {parent}" in page
    assert len(re.findall(r"^- (relu|tanh|sigmoid), seed 0: [0-9a-f]{32} \(FINISHED", page,
                          re.M)) == 3  # fmt: skip
    imgs = _images(page)
    assert imgs and all((out / rel).read_bytes()[:8] == PNG_MAGIC for rel in imgs)
    for text in pages.values():
        assert "NO DATA" not in text
    assert f"](sweep-{parent[:8]}.md)" in pages["README.md"]
    assert Path(out / "verdicts.json").is_file()
