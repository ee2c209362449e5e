"""Links into MLflow's UI, experiments tagged for it, and the report published to MLflow.

- names: the lines a sweep prints after its summary line (the report command, its runs in the
  UI's model-training view, searched for the sweep), verdict tag keys;
- store: experiments fnnbench creates carry ``mlflow.experimentKind`` (model training), and an
  existing experiment without it gets it once, with no store call when it is there;
- fnnbench.report.publish: each page and its PNGs on its sweep's parent run, the verdicts as
  the parent's tags, the parent's status untouched, errors as one line.

The real UI is driven by tests/test_browser.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pytest

from fnnbench.tracking import names as tn

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32  # enough for MLflow: a file named .png


# ----------------------------------------------------------------------------- names


def _query(url: str) -> dict[str, list[str]]:
    return parse_qs(urlsplit(url).fragment.partition("?")[2])


def test_runs_url_opens_the_model_training_runs_view_searched_for_the_sweep():
    url = tn.runs_url("7", "abc123", "http://127.0.0.1:5005/")
    assert url.startswith("http://127.0.0.1:5005/#/experiments/7/runs?")
    q = _query(url)
    assert q["workflowType"] == ["machine_learning"]
    assert q["searchFilter"] == ["tags.mlflow.parentRunId = 'abc123'"]
    assert " " not in url and "'" not in url  # clickable in a terminal: one token
    bare = tn.runs_url("7")
    assert bare == f"{tn.UI_URL}/#/experiments/7/runs?workflowType=machine_learning"


def test_run_url_points_at_a_tab_or_an_artifact_in_the_model_training_view():
    ml = "workflowType=machine_learning"
    assert tn.run_url("3", "r1") == f"{tn.UI_URL}/#/experiments/3/runs/r1?{ml}"
    url = tn.run_url("3", "r1", "artifacts/report/x.md", "http://h:1")
    assert url == f"http://h:1/#/experiments/3/runs/r1/artifacts/report/x.md?{ml}"


def test_ui_line_names_the_ui_command_for_a_local_store_and_the_server_itself_otherwise():
    line = tn.ui_line("sqlite:////data/my runs/mlflow.db", "4", "p1")
    assert line.startswith("fnnbench: runs: http://127.0.0.1:5000/#/experiments/4/runs?")
    assert line.endswith("(start the UI: mlflow ui --backend-store-uri "
                         "'sqlite:////data/my runs/mlflow.db')")
    url = line.split()[2]
    assert unquote(_query(url)["searchFilter"][0]) == "tags.mlflow.parentRunId = 'p1'"
    server = tn.ui_line("http://mlflow.lab:8080/", "4", "p1")
    assert server.startswith("fnnbench: runs: http://mlflow.lab:8080/#/experiments/4/runs?")
    assert "mlflow ui" not in server
    assert tn.ui_command("https://x") is None


def test_report_line_names_the_sweep_and_nothing_parses_the_new_lines_as_a_job_or_sweep():
    counts = tn.SweepCounts(3, 3, 0, 0, 0, 0)
    lines = [tn.report_line("p1"), tn.ui_line("sqlite:///mlflow.db", "1", "p1")]
    assert lines[0] == "fnnbench: report: python -m fnnbench.report --sweep p1"
    for line in lines:  # reproduce reads a sweep's output with these two parsers
        assert tn.parse_job_line(line) is None and tn.parse_sweep_line(line) is None
    assert tn.parse_sweep_line(tn.sweep_line("x", counts, "p1", "FINISHED")) == counts


def test_verdict_tags_are_tag_key_safe_slugs():
    assert tn.verdict_tag() == "fnnbench.verdict"
    assert tn.verdict_tag("per second: mini-batch vs SGD") == (
        "fnnbench.verdict.per_second_mini_batch_vs_sgd")
    assert tn.verdict_tag("z < 0 (on every example)!") == "fnnbench.verdict.z_0_on_every_example"
    assert tn.verdict_tag("***") == "fnnbench.verdict.comparison"
    assert len(tn.verdict_tag("x" * 500)) <= len("fnnbench.verdict.") + 80


# ----------------------------------------------------------------------------- experiment kind


@pytest.fixture
def fresh(tmp_path):
    from fnnbench.tracking import store

    store.reset_cache()
    yield f"sqlite:///{tmp_path / 'mlflow.db'}"
    store.reset_cache()


def test_prepare_creates_the_experiment_as_a_model_training_experiment(fresh):
    from mlflow import MlflowClient

    from fnnbench.tracking import store

    uri = store.prepare({"uri": fresh, "experiment": "kind"})
    exp = MlflowClient(uri).get_experiment_by_name("kind")
    assert exp.tags[tn.TAG_EXPERIMENT_KIND] == tn.EXPERIMENT_KIND == "custom_model_development"
    assert exp.artifact_location.endswith(f"mlartifacts/{exp.experiment_id}")  # as before


def test_an_existing_experiment_gets_the_kind_once_and_a_kind_set_by_hand_is_kept(
    fresh, monkeypatch
):
    from mlflow import MlflowClient

    from fnnbench.tracking import store

    client = MlflowClient(fresh)
    old = client.create_experiment("old")  # made before fnnbench tagged experiments
    mine = client.create_experiment("genai", tags={tn.TAG_EXPERIMENT_KIND: "genai_development"})
    assert store.experiment_id(fresh, "old") == old
    assert client.get_experiment(old).tags[tn.TAG_EXPERIMENT_KIND] == tn.EXPERIMENT_KIND
    assert store.experiment_id(fresh, "genai") == mine
    assert client.get_experiment(mine).tags[tn.TAG_EXPERIMENT_KIND] == "genai_development"

    calls = []
    monkeypatch.setattr(MlflowClient, "set_experiment_tag", lambda *a, **k: calls.append(a))
    store.reset_cache()  # a new process: the tag is read with the experiment, nothing written
    assert store.experiment_id(fresh, "old") == old
    assert store.experiment_id(fresh, "genai") == mine
    assert calls == []


def test_a_store_that_refuses_the_experiment_tag_still_gives_the_experiment(fresh, monkeypatch):
    from mlflow import MlflowClient

    from fnnbench.tracking import store

    eid = MlflowClient(fresh).create_experiment("ro")

    def refuse(*a, **k):
        raise PermissionError("read-only")

    monkeypatch.setattr(MlflowClient, "set_experiment_tag", refuse)
    assert store.experiment_id(fresh, "ro") == eid


# ----------------------------------------------------------------------------- publish


def _result(claim_id: str, verdict: str, parts: list[tuple[str, str, bool]]):
    comps = [SimpleNamespace(label=lbl, verdict=v, primary=p) for lbl, v, p in parts]
    return SimpleNamespace(claim=SimpleNamespace(id=claim_id), verdict=verdict, comparisons=comps)


def _parent(client, eid: str, claim: str | None, start_ms: int, **tags: str) -> str:
    all_tags = {tn.TAG_PARENT: "true", **tags}
    if claim is not None:
        all_tags[tn.TAG_CLAIM] = claim
    rid = client.create_run(eid, start_time=start_ms, tags=all_tags).info.run_id
    client.set_terminated(rid, "KILLED", end_time=start_ms + 5000)
    return rid


def _page(out: Path, name: str, images: list[str]) -> Path:
    (out / "img").mkdir(parents=True, exist_ok=True)
    for rel in images:
        (out / rel).write_bytes(PNG)
    (out / "img" / "unrelated.png").write_bytes(PNG)  # not on the page: not published
    body = "\n".join(f"![figure]({rel})" for rel in images)
    path = out / name
    path.write_text(f"# {name}\n\n{body}\n![remote](https://example.org/x.png)\n")
    return path


def _artifacts(client, run_id: str) -> set[str]:
    out, todo = set(), [None]
    while todo:
        for f in client.list_artifacts(run_id, todo.pop()):
            (todo.append(f.path) if f.is_dir else out.add(f.path))
    return out


@pytest.fixture
def published_store(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    eid = client.create_experiment("c", artifact_location=(tmp_path / "art").as_uri())
    t0 = int(time.time() * 1000) - 3_600_000
    ids = {
        "older": _parent(client, eid, "c", t0),
        "newer": _parent(client, eid, "c", t0 + 60_000,
                         **{"fnnbench.verdict.renamed_comparison": "SUPPORTED"}),
        "other": _parent(client, eid, "other", t0 + 120_000),
        "plain": _parent(client, eid, None, t0 + 180_000),
    }
    out = tmp_path / "reports"
    summary = SimpleNamespace(
        out=out,
        pages={"c": _page(out, "c.md", ["img/c-learning_curves.png", "img/c-ranking.png"])},
        sweeps={ids["plain"]: _page(out, "sweep-plain.md", ["img/sweep-plain-curves.png"])},
        results=[_result("c", "PARTLY SUPPORTED", [
            ("relu vs sigmoid", "SUPPORTED", True),
            ("relu vs tanh", "INCONCLUSIVE", True),
            ("at lr 0.5 (exploratory)", "REFUTED", False),
        ])],
        selected=None,
    )
    return {"uri": uri, "client": client, "eid": eid, "ids": ids, "summary": summary}


def test_each_page_and_its_pngs_go_to_its_parent_run_with_the_verdicts_as_tags(published_store):
    from fnnbench.report.publish import publish_report

    s = published_store
    client, ids = s["client"], s["ids"]
    before = {k: client.get_run(v).info for k, v in ids.items()}
    lines = []
    done = publish_report(s["summary"], s["uri"], log=lines.append)
    assert {p.run_id for p in done} == {ids["newer"], ids["plain"]}
    assert _artifacts(client, ids["newer"]) == {
        "report/c.md", "report/img/c-learning_curves.png", "report/img/c-ranking.png"}
    assert _artifacts(client, ids["plain"]) == {
        "report/sweep-plain.md", "report/img/sweep-plain-curves.png"}
    assert _artifacts(client, ids["older"]) == set() == _artifacts(client, ids["other"])
    tags = client.get_run(ids["newer"]).data.tags
    verdicts = {k: v for k, v in tags.items() if k.startswith(tn.TAG_VERDICT)}
    assert verdicts == {  # the claim's word and one tag per primary comparison; stale one gone
        "fnnbench.verdict": "PARTLY SUPPORTED",
        "fnnbench.verdict.relu_vs_sigmoid": "SUPPORTED",
        "fnnbench.verdict.relu_vs_tanh": "INCONCLUSIVE",
    }
    assert tags[tn.TAG_REPORT] == "report/c.md"
    plain = client.get_run(ids["plain"]).data.tags
    assert plain[tn.TAG_REPORT] == "report/sweep-plain.md" and tn.TAG_VERDICT not in plain
    for k, info in before.items():  # status and end time as they were (KILLED stays KILLED)
        now = client.get_run(ids[k]).info
        assert (now.status, now.end_time) == (info.status, info.end_time) == ("KILLED",
                                                                              info.end_time)
    assert any(ids["newer"] in ln and "artifacts/report/c.md?workflowType=machine_learning" in ln
               for ln in lines), lines


def test_a_claim_with_one_primary_comparison_gets_only_the_claim_tag(published_store):
    from fnnbench.report.publish import verdict_tags

    r = _result("c", "SUPPORTED", [("a vs b", "SUPPORTED", True), ("x", "REFUTED", False)])
    assert verdict_tags(r) == {"fnnbench.verdict": "SUPPORTED"}
    twins = _result("c", "SUPPORTED", [("a-b", "SUPPORTED", True), ("a b", "REFUTED", True)])
    assert verdict_tags(twins) == {"fnnbench.verdict": "SUPPORTED",
                                   "fnnbench.verdict.a_b": "SUPPORTED",
                                   "fnnbench.verdict.a_b_2": "REFUTED"}


def test_the_sweep_chosen_with_sweep_gets_its_claim_page_not_the_newest(published_store):
    from fnnbench.report.publish import publish_report

    s = published_store
    s["summary"].selected = s["ids"]["older"]
    s["summary"].sweeps = {}
    done = publish_report(s["summary"], s["uri"])
    assert [p.run_id for p in done] == [s["ids"]["older"]]
    assert "report/c.md" in _artifacts(s["client"], s["ids"]["older"])
    assert _artifacts(s["client"], s["ids"]["newer"]) == set()


def test_experiments_limit_where_parents_are_looked_for(published_store):
    from fnnbench.report.publish import publish_report

    s = published_store
    s["client"].create_experiment("elsewhere")
    assert publish_report(s["summary"], s["uri"], experiments=["elsewhere"]) == []
    assert len(publish_report(s["summary"], s["uri"], experiments=["c"])) == 2


def test_publishing_errors_are_one_line_on_stderr_and_never_raise(published_store, capsys,
                                                                   monkeypatch):
    from mlflow import MlflowClient

    from fnnbench.report.publish import publish_report

    s = published_store

    def boom(*a, **k):
        raise OSError("disk full\nsecond line")

    monkeypatch.setattr(MlflowClient, "log_artifacts", boom)
    assert publish_report(s["summary"], s["uri"]) == []
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not published to MLflow" in err and "disk full" in err
    assert "(and 1 more)" in err
    monkeypatch.undo()
    assert publish_report(s["summary"], "sqlite:////nonexistent/dir/x.db") == []
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fnnbench.report: not published to MLflow")


# ----------------------------------------------------------------------------- the report CLI


@pytest.mark.slow
def test_report_cli_publishes_to_the_sweeps_parent_runs_unless_no_publish(tmp_path, capsys):
    import yaml
    from mlflow import MlflowClient

    from fnnbench.paths import file_sha256
    from fnnbench.report.__main__ import main as report_main
    from tests.fixtures.store import log_run, synthetic_run

    sweeps = tmp_path / "sweeps"
    sweeps.mkdir()
    claim = {
        "id": "fast", "title": "ReLU is fastest", "statement": "ReLU converges faster",
        "factor": "activation.name", "metric": "epochs_to_target", "better": "lower",
        "effect": "ratio", "censor": "train.epochs", "plots": ["time_to_target"],
        "comparisons": [
            {"label": "relu vs sigmoid", "a": {"activation.name": "relu"},
             "b": {"activation.name": "sigmoid"}},
            {"label": "relu vs tanh", "a": {"activation.name": "relu"},
             "b": {"activation.name": "tanh"}},
        ],
    }  # fmt: skip
    body = {"claim": claim, "hydra": {"sweeper": {"params": {"seed": "range(0,4)"}}}}
    (sweeps / "fast.yaml").write_text("# ReLU converges faster\n" + yaml.safe_dump(body))
    sha = file_sha256(sweeps / "fast.yaml")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    eid = client.create_experiment("fast", artifact_location=(tmp_path / "art").as_uri())
    parent = _parent(client, eid, "fast", int(time.time() * 1000) - 60_000,
                     **{"fnnbench.sweep": "fast", "fnnbench.sweep_sha256": sha})
    rng = np.random.default_rng(0)
    for act in ("relu", "sigmoid", "tanh"):
        for seed in range(4):
            run = synthetic_run(rng, claim="fast", activation=act, seed=seed, epochs=30,
                                hidden=(8,), diagnostics=False, sweep_sha256=sha)
            run.tags["mlflow.parentRunId"] = parent
            log_run(client, eid, run)
    args = ["--tracking-uri", uri, "--sweeps-dir", str(sweeps), "--out", str(tmp_path / "r")]
    assert report_main([*args, "--no-publish"]) == 0
    assert _artifacts(client, parent) == set()
    assert tn.TAG_VERDICT not in client.get_run(parent).data.tags
    capsys.readouterr()
    assert report_main(args) == 0
    out, err = capsys.readouterr()
    assert "not published" not in err, err
    arts = _artifacts(client, parent)
    assert "report/fast.md" in arts and "report/img/fast-time_to_target.png" in arts, arts
    page = (tmp_path / "r" / "fast.md").read_text()
    for rel in (a.removeprefix("report/") for a in arts if a.endswith(".png")):
        assert f"({rel})" in page  # exactly the figures the page shows
    tags = client.get_run(parent).data.tags
    assert tags["fnnbench.verdict"] in ("SUPPORTED", "PARTLY SUPPORTED", "INCONCLUSIVE")
    assert {"fnnbench.verdict.relu_vs_sigmoid", "fnnbench.verdict.relu_vs_tanh"} <= set(tags)
    assert client.get_run(parent).info.status == "KILLED"  # as the sweep left it
    assert f"fast.md -> parent run {parent}" in out
