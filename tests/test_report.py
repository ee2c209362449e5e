"""fnnbench.report: escaping, param casting, bulk histories, curves; then a whole report
rendered from a synthetic MLflow store (tier: slow) with failed, diverged and censored runs,
a claim without runs and a malicious param value."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from fnnbench.claims import (
    CLAIM_VERDICTS,
    NO_DATA,
    SUPPORTED,
    VERDICTS,
    judge_claim,
    load_claims,
)
from fnnbench.paths import file_sha256
from fnnbench.report.__main__ import main as report_main
from fnnbench.report.data import (
    cast_params,
    cast_value,
    claim_runs,
    connect,
    count_runs,
    curve_table,
    fetch_histories,
    find_experiments,
    load_runs,
    mean_ci,
)
from fnnbench.report.markdown import md_escape, md_table, page_name
from tests.fixtures.store import log_parent, log_run, synthetic_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVIL = "moons|<script>alert(1)</script> [x](http://e.vil) *b* _i_ `c`\nrow2"

# ----------------------------------------------------------------------------- escaping


def test_md_escape_neutralises_markdown_and_html():
    out = md_escape(EVIL)
    assert "<script>" not in out and "</script>" not in out
    assert "&lt;script&gt;" in out
    assert "\n" not in out and "<br>" in out
    for raw in ("|", "[", "]", "*", "_", "`"):
        # every metacharacter is preceded by a backslash
        assert all(out[i - 1] == "\\" for i, ch in enumerate(out) if ch == raw)
    assert md_escape(None) == "None"
    assert md_escape("a&b") == "a&amp;b"
    assert md_escape("plain text 0.1") == "plain text 0.1"


def _unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=30), min_size=1, max_size=4))
def test_escaped_cells_never_break_a_table(cells):
    table = md_table([f"h{i}" for i in range(len(cells))], [[md_escape(c) for c in cells]])
    lines = table.split("\n")
    assert len(lines) == 3  # header, rule, one row: no newline escaped the row
    assert _unescaped_pipes(lines[2]) == len(cells) + 1
    assert "<" not in lines[2].replace("<br>", "")


def test_md_table_checks_row_width_and_alignment():
    t = md_table(["a", "b"], [["1", "2"]], align="lr")
    assert t.splitlines()[1] == "| :--- | ---: |"
    with pytest.raises(ValueError, match="2 cells"):
        md_table(["a"], [["1", "2"]])


def test_page_name_keeps_identifiers_and_sanitises_the_rest():
    assert page_name("relu_faster") == "relu_faster"
    assert page_name("../x y") == "___x_y"


# ----------------------------------------------------------------------------- params


@pytest.mark.parametrize(
    "raw, want",
    [
        ("64", 64),
        ("-3", -3),
        ("0.1", 0.1),
        ("1e-3", 0.001),
        ("True", True),
        ("false", False),
        ("None", None),
        ("null", None),
        ("relu", "relu"),
        ("[64, 64]", "[64, 64]"),
        ("[]", "[]"),
        (None, None),
        (float("nan"), None),
    ],
)
def test_cast_value(raw, want):
    got = cast_value(raw)
    assert got == want and type(got) is type(want)


def test_cast_params_casts_only_params_and_keeps_ints_next_to_none():
    df = pd.DataFrame(
        {
            "run_id": ["a", "b"],
            "params.seed": ["1", None],
            "params.optimizer.lr": ["0.5", "1e-2"],
            "params.model.hidden_sizes": ["[4]", "[]"],
            "tags.fnnbench.outcome": ["1", "2"],
        }
    )
    before = df.copy()
    out = cast_params(df)
    assert out["params.seed"].tolist() == [1, None]
    assert isinstance(out.loc[0, "params.seed"], int)
    assert out["params.optimizer.lr"].tolist() == [0.5, 0.01]
    assert out["params.model.hidden_sizes"].tolist() == ["[4]", "[]"]
    assert out["tags.fnnbench.outcome"].tolist() == ["1", "2"]  # tags untouched
    pd.testing.assert_frame_equal(df, before)  # input not modified


def test_config_of_rebuilds_the_nested_job_config_from_logged_params():
    from fnnbench.report.build import config_of

    cfg = config_of(
        {
            "model.hidden_sizes": "[4, 4]",
            "model.init": "None",
            "seed": "3",
            "dataset.name": "moons",
            "dataset.noise": "0.15",
            "train.target": "null",
        }
    )
    assert cfg == {
        "model": {"hidden_sizes": [4, 4], "init": None},
        "seed": 3,
        "dataset": {"name": "moons", "noise": 0.15},
        "train": {"target": None},
    }


# ----------------------------------------------------------------------------- statistics


def test_mean_ci_agrees_with_the_normal_interval():
    rng = np.random.default_rng(1)
    v = rng.normal(10.0, 2.0, size=400)
    lo, hi = mean_ci(v, rng=np.random.default_rng(0), n_boot=4000)
    se = v.std(ddof=1) / np.sqrt(v.size)
    # percentile bootstrap of a mean ~ mean +- 1.96 se for n = 400 (tolerance 10% of the width)
    assert lo == pytest.approx(v.mean() - 1.96 * se, abs=0.1 * 3.92 * se)
    assert hi == pytest.approx(v.mean() + 1.96 * se, abs=0.1 * 3.92 * se)
    assert mean_ci([3.0]) == (3.0, 3.0)
    assert all(np.isnan(mean_ci([np.nan])))


def test_curve_table_derives_updates_per_epoch_from_summary_metrics():
    hist = pd.DataFrame(
        {
            "run_id": ["r1"] * 3 + ["r2"] * 3,
            "key": "train_loss",
            "step": [0, 1, 2] * 2,
            "value": [1.0, 0.5, 0.0, 1.0, 0.8, 0.6],
        }
    )
    runs = pd.DataFrame(
        {
            "run_id": ["r1", "r2"],
            "metrics.updates_run": [20.0, 2.0],  # 10 updates / epoch vs 1 update / epoch
            "metrics.epochs_run": [2.0, 2.0],
        }
    )
    ep, log = curve_table(hist, runs, "train_loss", "epoch")
    assert not log and sorted(ep["x"].unique()) == [0, 1, 2]
    up, _ = curve_table(hist, runs, "train_loss", "updates", n_grid=21)
    r1 = up[up["run_id"] == "r1"].set_index("x")["value"]
    assert r1.loc[10.0] == pytest.approx(0.5) and r1.loc[5.0] == pytest.approx(0.75)
    r2 = up[up["run_id"] == "r2"]
    assert r2["x"].max() <= 2.0  # no extrapolation beyond a run's own range


# ----------------------------------------------------------------------------- levels, tables


def _frame(rows):
    """A cast run table: every row FINISHED with an outcome tag."""
    base = {"status": "FINISHED", "tags.fnnbench.outcome": "max_epochs", "params.train.epochs": 50}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_levels_name_the_arm_keys_that_vary_and_groups_name_the_where():
    from fnnbench.claims import parse_claim
    from fnnbench.report import tables

    claim = parse_claim({
        "id": "lin", "statement": "s", "factor": "activation.name", "metric": "final_test_acc",
        "better": "higher", "effect": "difference",
        "comparisons": [
            {"a": {"activation.name": "linear", "model.hidden_sizes": [8, 8]},
             "b": {"activation.name": "linear", "model.hidden_sizes": []},
             "where": {"seed_set": 1}},
            {"a": {"activation.name": "relu", "model.hidden_sizes": [8, 8]},
             "b": {"activation.name": "linear", "model.hidden_sizes": [8, 8]},
             "where": {"seed_set": 2}},
        ],
    })  # fmt: skip
    rows = []
    for i, (act, hid, ss) in enumerate(
        [
            ("linear", "[8, 8]", 1),
            ("linear", "[]", 1),
            ("relu", "[8, 8]", 2),
            ("linear", "[8, 8]", 2),
        ]
        * 2
    ):
        rows.append(
            {
                "run_id": f"r{i}",
                "params.activation.name": act,
                "params.seed": i,
                "params.model.hidden_sizes": hid,
                "params.seed_set": ss,
                "metrics.final_test_acc": 0.5 + 0.01 * i,
            }
        )
    result = judge_claim(claim, _frame(rows))
    used = tables.used_runs(result, _frame(rows))
    assert tables.label_keys(result) == ["model.hidden_sizes"]
    assert tables.group_labels(result) == ["seed_set=1", "seed_set=2"]
    got = set(zip(used["group"], used["level"], strict=True))
    assert got == {
        ("seed_set=1", "linear (hidden=[8, 8])"), ("seed_set=1", "linear (hidden=[])"),
        ("seed_set=2", "relu (hidden=[8, 8])"), ("seed_set=2", "linear (hidden=[8, 8])"),
    }  # fmt: skip
    assert len(used) == 8  # every run once per group


def test_ranking_orders_levels_best_first_with_censored_counts():
    from fnnbench.report.tables import ranking

    ttt = pd.DataFrame({
        "metric": "epochs_to_target", "group": "", "primary": True,
        "level": ["slow"] * 4 + ["fast"] * 4,
        "run_id": [f"r{i}" for i in range(8)],
        "value": [40, 50, 50, 45, 5, 6, 7, 6],
        "censored": [False, True, True, False] + [False] * 4,
        "diverged": False,
    })  # fmt: skip
    r = ranking(ttt, "epochs_to_target", "lower")
    assert r["level"].tolist() == ["fast", "slow"]
    assert r["median"].tolist() == [6.0, 47.5]
    assert r["censored"].tolist() == [0, 2]
    assert (r["low"] <= r["median"]).all() and (r["median"] <= r["high"]).all()
    assert ranking(ttt, "epochs_to_target", "higher")["level"].tolist() == ["slow", "fast"]


# ----------------------------------------------------------------------------- the store


def _experiment(client, name):
    exp = client.get_experiment_by_name(name)
    return exp.experiment_id if exp else client.create_experiment(name)


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    """Three runs, two metrics, 30 epochs: for the history readers."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("tiny")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    eid = _experiment(client, "tiny")
    rng = np.random.default_rng(0)
    ids = [
        log_run(client, eid, synthetic_run(rng, claim="tiny", seed=s, epochs=30, hidden=(8,)))
        for s in range(3)
    ]
    return uri, ids


def test_fetch_histories_bulk_equals_per_run_history(tiny_store):
    uri, ids = tiny_store
    client = connect(uri)
    keys = ["train_loss", "grad_norm/layer1"]
    bulk = fetch_histories(client, ids, keys)
    assert len(bulk) == 3 * 2 * 31
    for rid in ids:
        for key in keys:
            ref = sorted((m.step, m.value) for m in client.get_metric_history(rid, key))
            got = bulk[(bulk["run_id"] == rid) & (bulk["key"] == key)]
            assert list(zip(got["step"], got["value"], strict=True)) == ref


def test_fetch_histories_sampling_and_fallback_agree(tiny_store):
    uri, ids = tiny_store
    client = connect(uri)
    sampled = fetch_histories(client, ids, ["train_loss"], max_points=10)
    per_run = sampled.groupby("run_id")["step"]
    assert (per_run.count() <= 10).all() and (per_run.count() >= 9).all()
    assert (per_run.min() == 0).all() and (per_run.max() == 30).all()

    class PlainClient:  # a client without a bulk-capable store (e.g. a tracking server)
        def __init__(self, inner):
            self.get_metric_history = inner.get_metric_history

    full = fetch_histories(client, ids, ["train_loss"])
    fallback = fetch_histories(PlainClient(client), ids, ["train_loss"], threads=2)
    pd.testing.assert_frame_equal(full, fallback)


def test_cli_missing_store_is_one_line_and_exit_2(tmp_path, capsys):
    (tmp_path / "sweeps").mkdir()
    code = report_main(
        [
            "--tracking-uri",
            f"sqlite:///{tmp_path / 'nope.db'}",
            "--sweeps-dir",
            str(tmp_path / "sweeps"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "no MLflow store" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "nope.db").exists()  # reading never creates a store


# ----------------------------------------------------------------------------- a whole report

BUDGET = 40


def _claim_file(sweeps: Path, claim: dict, sweep: dict | None = None) -> None:
    body = {"claim": claim, "hydra": {"sweeper": {"params": sweep or {"seed": "range(0,4)"}}}}
    text = f"# {claim['statement']}\n# python -m fnnbench sweep={claim['id']}\n"
    (sweeps / f"{claim['id']}.yaml").write_text(text + yaml.safe_dump(body, sort_keys=False))


CLAIMS = [
    {
        "id": "speed",
        "title": "ReLU reaches the target sooner than sigmoid",
        "statement": "ReLU converges much faster than sigmoid (6x faster)",
        "source": "Lecture 2 | Krizhevsky et al. 2012",
        "published": {"value": 6.0, "text": "6x fewer epochs"},
        "factor": "activation.name",
        "metric": "epochs_to_target",
        "better": "lower",
        "effect": "ratio",
        "censor": "train.epochs",
        "plots": [
            "learning_curves",
            "time_to_target",
            "ranking",
            "saturation",
            "activations",
            "nonsense",
        ],
        "comparisons": [
            {
                "label": "relu vs sigmoid, lr tuned",
                "a": {"activation.name": "relu"},
                "b": {"activation.name": "sigmoid"},
                "tune": "optimizer.lr",
            },
            {
                "label": "relu vs sigmoid at lr 0.5",
                "a": {"activation.name": "relu"},
                "b": {"activation.name": "sigmoid"},
                "where": {"optimizer.lr": 0.5},
                "primary": False,
            },
        ],
    },
    {
        "id": "dead",
        "title": "Large steps kill ReLU units",
        "statement": "ReLU can die during training",
        "factor": "activation.name",
        "metric": "final_dead_frac",
        "better": "higher",
        "effect": "difference",
        "plots": ["dead_units"],
        "comparisons": [
            {
                "a": {"activation.name": "relu", "optimizer.lr": 1.0},
                "b": {"activation.name": "relu", "optimizer.lr": 0.01},
            },
        ],
    },
    {
        "id": "xor",
        "title": "A hidden layer solves XOR",
        "statement": "A single neuron cannot represent XOR; one hidden layer can",
        "factor": "model.hidden_sizes",
        "effect": "rate",
        "success": {"metric": "final_train_acc", "op": ">=", "value": 1.0},
        "plots": ["success_rate", "decision_boundary", "capacity"],
        "comparisons": [{"a": {"model.hidden_sizes": [4]}, "b": {"model.hidden_sizes": []}}],
    },
    {
        "id": "nodata",
        "title": "A claim nobody ran yet",
        "statement": "Momentum helps",
        "metric": "epochs_to_target",
        "better": "lower",
        "plots": ["learning_curves"],
        "comparisons": [{"a": {"optimizer.name": "momentum"}, "b": {"optimizer.name": "sgd"}}],
    },
]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with 4 claims: 'speed' (tuned, censored, 1 FAILED, 1 diverged, 1 malicious
    param, a parent run), 'dead', 'xor' (params.npz artifacts), 'nodata' (no runs)."""
    from mlflow import MlflowClient

    from fnnbench.nn import MLP

    root = tmp_path_factory.mktemp("store")
    sweeps = root / "sweeps"
    sweeps.mkdir()
    for c in CLAIMS:
        _claim_file(sweeps, c)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    rng = np.random.default_rng(0)
    jobs = {"speed": [], "dead": [], "xor": []}
    for act in ("relu", "sigmoid"):
        for lr in (0.1, 0.5):
            for seed in range(4):
                extra = {"dataset.name": EVIL} if (act, lr, seed) == ("relu", 0.5, 3) else None
                jobs["speed"].append(synthetic_run(
                    rng, claim="speed", activation=act, lr=lr, seed=seed, epochs=BUDGET,
                    extra_params=extra,
                ))  # fmt: skip
    failed = synthetic_run(rng, claim="speed", activation="relu", lr=0.5, seed=9, epochs=BUDGET)
    failed.status = "FAILED"
    failed.tags["fnnbench.error"] = "ValueError: bad | <b>value</b>\nsecond line"
    jobs["speed"].append(failed)
    jobs["speed"].append(synthetic_run(
        rng, claim="speed", activation="sigmoid", lr=0.5, seed=8, epochs=BUDGET, diverge_at=6,
    ))  # fmt: skip
    for lr in (0.01, 1.0):
        for seed in range(3):
            jobs["dead"].append(synthetic_run(
                rng, claim="dead", activation="relu", lr=lr, seed=seed, epochs=10,
                diagnostics=False,
            ))  # fmt: skip
    for hidden in ((4,), (), (8,)):  # [8] is in no comparison: only the capacity figure
        for seed in range(4):
            run = synthetic_run(
                rng,
                claim="xor",
                activation="tanh",
                seed=seed,
                epochs=10,
                hidden=hidden,
                diagnostics=False,
                extra_params={"dataset.name": "xor"},
            )
            run.summary["final_train_acc"] = 1.0 if hidden and seed < 4 else 0.75
            if seed == 0:
                path = root / f"params-{len(hidden)}.npz"
                MLP([2, *hidden, 1], activation="tanh", loss="cross_entropy", seed=0).save(path)
                run.artifacts["params.npz"] = path
            jobs["xor"].append(run)
    ids = {}
    for claim, runs in jobs.items():
        sha = file_sha256(sweeps / f"{claim}.yaml")
        for r in runs:  # made with today's claim file (the provenance tag)
            r.tags["fnnbench.sweep_sha256"] = sha
        eid = _experiment(client, claim)
        log_parent(client, eid, claim, len(runs), sweep_sha256=sha)
        ids[claim] = [log_run(client, eid, r) for r in runs]
    # stale: made with an older claim file, and before provenance tags; never judged
    eid = _experiment(client, "speed")
    old = synthetic_run(
        rng,
        claim="speed",
        activation="sigmoid",
        lr=0.1,
        seed=20,
        epochs=BUDGET,
        sweep_sha256="0" * 64,
    )
    ids["stale"] = [log_run(client, eid, old)]
    untagged = synthetic_run(
        rng, claim="speed", activation="sigmoid", lr=0.1, seed=21, epochs=BUDGET
    )
    ids["stale"].append(log_run(client, eid, untagged))
    _experiment(client, "nodata")
    return {
        "uri": uri, "sweeps": sweeps, "root": root, "ids": ids, "n_jobs": 16 + 2 + 6 + 12 + 2
    }  # fmt: skip


@pytest.fixture(scope="module")
def report(store, tmp_path_factory):
    from fnnbench.report.build import build_report

    out = tmp_path_factory.mktemp("report")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = build_report(store["uri"], sweeps_dir=store["sweeps"], out=out)
    pages = {p.stem: p.read_text(encoding="utf-8") for p in out.glob("*.md")}
    return {"out": out, "summary": summary, "pages": pages, "warnings": caught}


def _images(text: str) -> list[str]:
    return re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)


@pytest.mark.slow
def test_every_claim_with_runs_has_a_page_and_the_index_links_it(report):
    pages = report["pages"]
    assert set(pages) == {"README", "speed", "dead", "xor"}  # 'nodata' was never run: no page
    index = pages["README"]
    for cid in ("speed", "dead", "xor"):
        assert f"]({cid}.md)" in index
    assert "(nodata.md)" not in index
    not_run = [ln for ln in index.splitlines() if ": not run" in ln]
    assert not_run == [
        "- A claim nobody ran yet (`nodata`): not run; `python -m fnnbench sweep=nodata`"
    ]
    assert report["summary"].not_run == ["nodata"]
    assert "## Provenance" in index and "BLAS" in index and "cores" in index


@pytest.mark.slow
def test_verdict_line_comes_first_then_the_table(report):
    for cid in ("speed", "dead", "xor"):
        lines = [ln for ln in report["pages"][cid].splitlines() if ln.strip()]
        assert lines[0].startswith("# ")
        assert re.match(rf"\*\*({'|'.join(CLAIM_VERDICTS)})\*\* · ", lines[1]), lines[1]
    speed = report["pages"]["speed"]
    # the claim word, then each primary comparison with its own verdict, then the paper
    first = speed.splitlines()[2]
    assert first.startswith("**SUPPORTED** · relu vs sigmoid, lr tuned SUPPORTED (")
    assert first.endswith("; paper: 6x (6x fewer epochs).")
    assert "at lr 0.5" not in first  # exploratory comparisons never decide
    assert "| comparison (a vs b) | metric | effect [95% CI] |" in speed
    assert "<details><summary>MLflow run ids used" in speed
    assert "python -m fnnbench sweep=speed" in speed


@pytest.mark.slow
def test_verdicts_are_those_of_fnnbench_claims(store, report):
    client = connect(store["uri"])
    runs = load_runs(client, [e.experiment_id for e in find_experiments(client)])
    from fnnbench.report.build import split_stale

    for claim in load_claims(store["sweeps"]):
        current, _ = split_stale(claim_runs(runs, claim.id), claim.sha256)
        want = judge_claim(claim, current, seed=0).verdict
        assert report["summary"].verdicts[claim.id] == want
    # the synthetic data has a known answer: tau(relu) = 8 epochs vs tau(sigmoid) = 45
    assert report["summary"].verdicts["speed"] == SUPPORTED
    assert report["summary"].verdicts["dead"] == SUPPORTED
    assert report["summary"].verdicts["nodata"] == NO_DATA


@pytest.mark.slow
def test_every_embedded_image_is_a_small_valid_png(report):
    out = report["out"]
    seen = set()
    for text in report["pages"].values():
        for rel in _images(text):
            path = out / rel
            assert path.is_file(), rel
            assert path.read_bytes()[:8] == PNG_MAGIC
            with Image.open(path) as im:
                im.verify()
            with Image.open(path) as im:
                assert im.format == "PNG" and 200 < im.width < 2000 and im.height < 1500
            assert path.stat().st_size < 400_000
            seen.add(rel)
    want = {
        "img/activations.png", "img/speed-learning_curves.png", "img/speed-time_to_target.png",
        "img/speed-ranking.png",
        "img/speed-saturation.png", "img/dead-dead_units.png", "img/xor-success_rate.png",
        "img/xor-decision_boundary.png", "img/xor-capacity.png",
    }  # fmt: skip
    assert want <= seen
    assert "img/activations.png" in _images(report["pages"]["README"])
    assert "img/activations.png" in _images(report["pages"]["speed"])


@pytest.mark.slow
def test_failed_diverged_and_censored_runs_are_counted(store, report):
    s = report["summary"]
    assert (s.n_runs, s.n_failed, s.n_diverged) == (store["n_jobs"], 1, 1)  # parents excluded
    index = report["pages"]["README"]
    assert "| failed runs | 1 |" in index and "| diverged runs | 1 |" in index
    assert "| sweep parent runs | 3 |" in index
    speed = report["pages"]["speed"]
    assert "18 runs tagged with this claim: 17 finished" in speed
    assert "1 failed" in speed and "1 diverged" in speed
    failed_id = store["ids"]["speed"][16]
    assert f"- {failed_id}: ValueError: bad \\| &lt;b&gt;value&lt;/b&gt;" in speed
    # the secondary comparison at lr 0.5 holds the diverged sigmoid run and the failed relu run
    row = next(ln for ln in speed.splitlines() if ln.startswith("| relu vs sigmoid at lr 0.5"))
    cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]
    assert cells[0] == "relu vs sigmoid at lr 0.5 (exploratory)"
    assert cells[5] == "4 / 5"  # n a / b
    assert cells[9] == "1 / 0"  # failed a / b
    assert cells[10] == "0 / 1"  # diverged a / b
    assert "diverged runs are left out of the curves" in speed


@pytest.mark.slow
def test_claim_without_runs_gets_no_page_and_the_index_says_how_to_produce_it(report):
    assert not (report["out"] / "nodata.md").exists()
    assert "nodata" not in report["summary"].pages
    index = report["pages"]["README"]
    section = index.split("## Claims not run", 1)[1].split("\n## ", 1)[0]
    assert [ln for ln in section.splitlines() if ln.strip()] == [
        "- A claim nobody ran yet (`nodata`): not run; `python -m fnnbench sweep=nodata`"
    ]
    assert "3 claims: " in index and "1 not run (listed below)" in index
    for name, text in report["pages"].items():  # the claims with runs have a verdict
        assert "no runs tagged" not in text, name


@pytest.mark.slow
def test_malicious_param_value_is_escaped_everywhere(report):
    for name, text in report["pages"].items():
        assert "<script>" not in text, name
        assert "[x](http://e.vil)" not in text, name  # no live link
        assert "*b*" not in text and "_i_" not in text, name  # no emphasis
    assert "&lt;script&gt;" in report["pages"]["speed"]
    assert "| Lecture 2 \\| Krizhevsky" not in report["pages"]["speed"]  # claim text escaped too
    assert "nonsense: unknown plot" in report["pages"]["speed"]


@pytest.mark.slow
def test_rendering_emits_no_warnings(report):
    noisy = [
        w
        for w in report["warnings"]
        if any(m in str(w.filename) for m in ("seaborn", "matplotlib", "pandas", "fnnbench"))
    ]
    assert not noisy, [
        f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}" for w in noisy
    ]


@pytest.mark.slow
def test_cli_writes_the_selected_claims(store, tmp_path, capsys):
    out = tmp_path / "out"
    code = report_main(
        [
            "--tracking-uri",
            store["uri"],
            "--experiment",
            "xor",
            "nodata",
            "--claims",
            "xor",
            "--sweeps-dir",
            str(store["sweeps"]),
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.glob("*.md")) == ["README.md", "xor.md"]
    assert "xor: " in capsys.readouterr().out
    assert (
        report_main(
            [
                "--tracking-uri",
                store["uri"],
                "--claims",
                "missing",
                "--sweeps-dir",
                str(store["sweeps"]),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert (
        report_main(
            [
                "--tracking-uri",
                store["uri"],
                "--experiment",
                "missing",
                "--sweeps-dir",
                str(store["sweeps"]),
                "--out",
                str(out),
            ]
        )
        == 2
    )


@pytest.mark.slow
def test_a_figure_that_fails_is_named_on_the_page_not_fatal(store, tmp_path, monkeypatch):
    from fnnbench.report import build

    def boom(ctx):
        raise RuntimeError("boom | <x>")

    monkeypatch.setitem(build.FIGURES, "dead_units", ("Dead units vs learning rate", boom))
    logs = []
    summary = build.build_report(
        store["uri"], claim_ids=["dead"], sweeps_dir=store["sweeps"], out=tmp_path, log=logs.append
    )
    page = (tmp_path / "dead.md").read_text()
    assert (
        "- Dead units vs learning rate: could not be drawn (RuntimeError: boom \\| &lt;x&gt;)"
        in page
    )
    assert summary.verdicts["dead"] == SUPPORTED
    assert any("dead_units not drawn: RuntimeError" in line for line in logs)


@pytest.mark.slow
def test_runs_table_counts_and_layout(store):
    client = connect(store["uri"])
    runs = load_runs(client, [e.experiment_id for e in find_experiments(client)])
    from fnnbench.report.build import split_stale

    tagged = claim_runs(runs, "speed")
    assert count_runs(tagged).total == 20  # 2 of them stale
    (claim,) = load_claims(store["sweeps"], ["speed"])
    speed, stale = split_stale(tagged, claim.sha256)
    c = count_runs(speed)
    assert (c.total, c.finished, c.failed, c.diverged) == (18, 17, 1, 1)
    assert sorted(rid for rid, _ in stale) == sorted(store["ids"]["stale"])
    assert isinstance(speed["params.seed"].iloc[0], int)
    assert set(speed["params.model.hidden_sizes"]) == {json.dumps([64, 64])}


# ----------------------------------------------------------------------------- a tracking server


@pytest.fixture
def server(tmp_path):
    """`mlflow server` on a free localhost port with its own sqlite store; stopped by pid."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = tmp_path / "server.db"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{db}",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
            if proc.poll() is not None:
                pytest.fail("mlflow server exited")
        else:
            pytest.fail("mlflow server did not answer /health")
        yield url, f"sqlite:///{db}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.server
def test_fetch_histories_through_a_server_uses_the_bulk_endpoint(server, monkeypatch):
    from mlflow import MlflowClient

    import fnnbench.report.data as data

    url, db_uri = server
    client = MlflowClient(url)
    eid = client.create_experiment("srv")
    rng = np.random.default_rng(3)
    ids = [
        log_run(client, eid, synthetic_run(rng, claim="srv", seed=s, epochs=12, hidden=(4,)))
        for s in range(3)
    ]
    per_run_calls = []
    monkeypatch.setattr(data, "_per_run", lambda *a, **k: per_run_calls.append(a) or None)
    keys = ["train_loss", "grad_norm/layer2"]
    got = fetch_histories(connect(url), ids, keys)
    assert not per_run_calls  # the bulk endpoint answered
    want = fetch_histories(connect(db_uri), ids, keys)  # the same store, read directly
    pd.testing.assert_frame_equal(got, want)
    sampled = fetch_histories(connect(url), ids, ["train_loss"], max_points=5)
    assert (
        sampled.groupby("run_id")["step"].agg(["count", "min", "max"]).to_numpy().tolist()
        == [[5, 0, 12]] * 3
    )


# ----------------------------------------------------------------------------- a real sweep


@pytest.mark.slow
def test_report_from_a_short_real_sweep(tmp_path):
    """Train a few real XOR jobs through `python -m fnnbench` into a fresh store, then report:
    the decision boundary comes from the logged params.npz and the rebuilt training data."""
    import os
    import subprocess
    import sys

    from fnnbench.report.build import SWEEPS_DIR, build_report

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "CI": "true"}
    cmd = [
        sys.executable,
        "-m",
        "fnnbench",
        "sweep=xor_single_neuron",
        "seed=range(0,3)",
        "model.hidden_sizes=[],[4]",
        "train.epochs=150",
        f"hydra.sweep.dir={tmp_path / 'multirun'}",
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "reports"
    summary = build_report(uri, claim_ids=["xor_single_neuron"], sweeps_dir=SWEEPS_DIR, out=out)
    assert summary.n_runs == 6 and summary.n_failed == 0
    page = (out / "xor_single_neuron.md").read_text()
    first = [ln for ln in page.splitlines() if ln.strip()][1]
    assert re.match(rf"\*\*({'|'.join(CLAIM_VERDICTS)})\*\* · ", first), first
    assert "; paper: " in first
    for rel in (
        "img/xor_single_neuron-success_rate.png",
        "img/xor_single_neuron-decision_boundary.png",
        "img/xor_single_neuron-learning_curves.png",
    ):
        assert rel in _images(page)
        assert (out / rel).read_bytes()[:8] == PNG_MAGIC
    assert "points: its training split" in page  # the data was rebuilt from the logged config


# ------------------------------------------------------------------ verdicts.json, README

VERDICT_KEYS = {
    "claim", "comparison", "primary", "metric", "effect", "ci", "bound", "verdict", "n",
    "published", "published_in_ci", "claim_verdict", "sweep_sha256",
}  # fmt: skip


@pytest.mark.slow
def test_verdicts_json_has_one_object_per_comparison(store, report):
    rows = json.loads((report["out"] / "verdicts.json").read_text())
    assert report["summary"].verdicts_json == report["out"] / "verdicts.json"
    assert all(set(r) == VERDICT_KEYS for r in rows)
    n_comparisons = sum(len(c.comparisons) for c in load_claims(store["sweeps"]))
    assert len(rows) == n_comparisons
    speed = [r for r in rows if r["claim"] == "speed"]
    assert [r["primary"] for r in speed] == [True, False]
    tuned = speed[0]
    assert tuned["verdict"] in VERDICTS and tuned["claim_verdict"] == SUPPORTED
    assert tuned["metric"] == "epochs_to_target" and tuned["bound"] is None
    assert tuned["ci"][0] <= tuned["effect"] <= tuned["ci"][1]
    assert tuned["published"] == 6.0
    assert tuned["published_in_ci"] is (tuned["ci"][0] <= 6.0 <= tuned["ci"][1])
    assert tuned["sweep_sha256"] == file_sha256(store["sweeps"] / "speed.yaml")
    nodata = next(r for r in rows if r["claim"] == "nodata")
    assert (nodata["verdict"], nodata["effect"], nodata["ci"], nodata["n"]) == (
        NO_DATA,
        None,
        None,
        [0, 0],
    )


@pytest.mark.slow
def test_stale_runs_are_listed_not_used(store, report):
    speed = report["pages"]["speed"]
    assert "Stale runs, not used: 2 runs" in speed
    assert "1 made before provenance tags" in speed
    assert "1 made with another version of the claim file (sha256 000000000000)" in speed
    for rid in store["ids"]["stale"]:
        assert f"- {rid}: " in speed
        assert rid not in speed.split("Stale runs")[0]  # used by no comparison
    assert "(2 stale)" in report["pages"]["README"]


@pytest.mark.slow
def test_pages_show_cost_tuning_reach_and_kaplan_meier(report):
    speed = report["pages"]["speed"]
    assert re.search(r"Cost: 18 jobs, [0-9.]+ minutes of run time", speed)
    assert "wall time of the sweep" in speed
    assert "repeated inside every bootstrap resample" in speed  # no tune_seeds
    assert "reached target a / b" in speed
    assert "img/speed-kaplan_meier.png" in _images(speed)
    assert "(exploratory: never decides the claim)" in speed
    index = report["pages"]["README"]
    assert "| claim | verdict | comparison | comparison verdict |" in index
    assert "relu vs sigmoid at lr 0.5" not in index  # one row per primary comparison


def test_claim_page_renders_differs_and_grid_edges():
    from fnnbench.claims import parse_claim
    from fnnbench.report import markdown as md

    claim = parse_claim(
        {
            "id": "c",
            "statement": "s",
            "metric": "epochs_to_target",
            "better": "lower",
            "censor": "train.epochs",
            "tune_seeds": 2,
            "differs": "The paper used a CNN on CIFAR-10 | here an MLP.",
            "comparisons": [
                {
                    "a": {"activation.name": "relu"},
                    "b": {"activation.name": "tanh"},
                    "tune": "optimizer.lr",
                }
            ],
        },
        src="t",
    )
    rows = [
        {"run_id": f"{act}-{lr}-{seed}", "status": "FINISHED", "params.activation.name": act,
         "params.optimizer.lr": lr, "params.seed": seed, "params.train.epochs": 100,
         "metrics.epochs_to_target": base / lr ** 0.5 + seed * 0.1,
         "tags.fnnbench.outcome": "reached_target"}
        for act, base in (("relu", 3.0), ("tanh", 6.0))
        for lr in (0.01, 0.1, 1.0)
        for seed in range(6)
    ]  # fmt: skip
    result = judge_claim(claim, pd.DataFrame(rows))
    text = md.comparison_table(result)
    assert "Tuning (held out): per arm, runs with seed < 2 choose" in text
    assert "Grid-edge optima" in text and "optimizer.lr = 1.0 is at the edge" in text
    counts = count_runs(pd.DataFrame(rows))
    page = md.claim_page(md.ClaimPage(result=result, store="s", counts=counts))
    assert "## Why the result may differ from the paper" in page
    assert "CNN on CIFAR-10 \\| here an MLP." in page


def test_readme_block_is_rewritten_between_the_markers(tmp_path):
    from fnnbench.claims import parse_claim
    from fnnbench.report import markdown as md
    from fnnbench.report.build import write_readme

    claim = parse_claim(
        {"id": "c", "statement": "s", "metric": "m", "better": "lower",
         "comparisons": [{"label": "x vs y", "a": {"k": 1}, "b": {"k": 2}, "published": 6},
                         {"a": {"k": 1}, "b": {"k": 3}, "primary": False}]},
        src="t",
    )  # fmt: skip
    rows = [
        {"run_id": f"r{k}-{i}", "status": "FINISHED", "params.k": k, "params.seed": i,
         "metrics.m": (10.0 if k == 1 else 30.0) + i, "tags.fnnbench.outcome": "reached_target"}
        for k in (1, 2, 3)
        for i in range(8)
    ]  # fmt: skip
    result = judge_claim(claim, pd.DataFrame(rows))
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# x\n\n## The claims\n\n{md.README_START}\n| old | table |\n{md.README_END}\n\nafter\n"
    )
    write_readme(readme, [result])
    text = readme.read_text()
    assert "| old | table |" not in text and text.endswith("\nafter\n")
    block = text.split(md.README_START)[1].split(md.README_END)[0]
    lines = [ln for ln in block.splitlines() if ln.startswith("| ")]
    assert lines[0].startswith("| claim | verdict | comparison | comparison verdict |")
    assert len(lines) == 3  # header, rule, one primary comparison
    assert lines[2].startswith("| c | SUPPORTED | x vs y | SUPPORTED | ")
    assert "6x (outside the CI)" in lines[2]
    write_readme(readme, [result])  # idempotent
    assert readme.read_text() == text
    bad = tmp_path / "NOMARKERS.md"
    bad.write_text("# no block\n")
    with pytest.raises(ValueError, match="NOMARKERS.md: no <!-- verdicts:start -->"):
        write_readme(bad, [result])


def test_cli_readme_without_markers_fails_before_reading_the_store(tmp_path, capsys):
    bad = tmp_path / "README.md"
    bad.write_text("# no block\n")
    code = report_main(
        [
            "--tracking-uri",
            f"sqlite:///{tmp_path / 'none.db'}",
            "--readme",
            str(bad),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == 2
    assert "no <!-- verdicts:start -->" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_readme_option_rewrites_the_block(store, tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# r\n\n<!-- verdicts:start -->\nhand-made\n<!-- verdicts:end -->\n")
    args = ["--tracking-uri", store["uri"], "--claims", "xor", "--sweeps-dir", str(store["sweeps"])]
    code = report_main([*args, "--out", str(tmp_path / "out"), "--readme", str(readme)])
    assert code == 0, capsys.readouterr().err
    text = readme.read_text()
    assert "hand-made" not in text
    rows = json.loads((tmp_path / "out" / "verdicts.json").read_text())
    for r in (r for r in rows if r["primary"]):
        assert f"| {r['claim']} | {r['claim_verdict']} | " in text
        assert f" | {r['verdict']} | " in text


def test_success_rate_figure_draws_rates_of_zero_and_one_on_their_wilson_bounds():
    """A rate of 1 (or 0) equals its Wilson bound up to rounding; the error bar must not go
    negative (matplotlib refuses a yerr of -1e-17: the figure was skipped once)."""
    from fnnbench.claims import wilson_interval
    from fnnbench.report import plots

    rows = []
    for level, k, n in (("2 units", 40, 40), ("8 units", 0, 40), ("4 units", 13, 40)):
        lo, hi = wilson_interval(k, n)
        if k == n:  # what rounding can give: the bound a hair inside the rate
            hi = np.nextafter(1.0, 0.0)
        if k == 0:
            lo = np.nextafter(0.0, 1.0)
        rows.append({"level": level, "k": k, "n": n, "rate": k / n, "low": lo, "high": hi})
    fig = plots.success_rate(pd.DataFrame(rows), title="t", ylabel="share", hue_title=None)
    assert fig is not None
