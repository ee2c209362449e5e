"""Benchmark the report generator on a large synthetic MLflow store.

    python -m fnnbench.bench_report [--runs 1000] [--epochs 200] [--store DIR] [--out DIR]

Builds an embedded sqlite store in a temporary folder (or ``--store DIR``, reused when it
already holds the same size) with ``--runs`` synthetic jobs of ``--epochs`` epochs, logged
with ``MlflowClient.log_batch`` under the documented MLflow names (docs/internals.md), spread
over three claims (learning curves + time to target + per-layer heatmaps; dead units vs
learning rate; success rate with capacity), then times ``python -m fnnbench.report`` on it
(``build_report``), and prints one table: store size, build time, and the report's phases.

The synthetic runs are also what tests/test_report.py logs (:func:`synthetic_run`,
:func:`log_run`): curves with a known speed per activation, censored runs, diverged runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

EPOCH_KEYS = ("train_loss", "train_acc")
TAU = {"relu": 8.0, "leaky_relu": 9.0, "elu": 9.0, "tanh": 20.0, "sigmoid": 45.0}  # epochs
SATURATING = {"sigmoid": 0.6, "tanh": 0.35}  # final saturated fraction per hidden layer


@dataclass
class SyntheticRun:
    """One job as the trainer would log it: params, tags, per-epoch histories, summary."""

    params: dict[str, Any]
    tags: dict[str, str]
    history: dict[str, np.ndarray]  # key -> values for epochs 0..epochs_run
    summary: dict[str, float]
    status: str = "FINISHED"
    artifacts: dict[str, Path] = field(default_factory=dict)  # artifact path -> local file


def synthetic_run(
    rng: np.random.Generator,
    *,
    claim: str,
    activation: str = "relu",
    lr: float = 0.1,
    seed: int = 0,
    epochs: int = 50,
    target: float = 0.1,
    hidden: tuple[int, ...] = (64, 64),
    batch_size: int = 32,
    n_train: int = 400,
    diagnostics: bool = True,
    diverge_at: int | None = None,
    extra_params: dict[str, Any] | None = None,
) -> SyntheticRun:
    """A plausible run: train_loss = 0.02 + 0.7 exp(-t / tau) with tau per activation
    (scaled by 0.1 / lr), multiplicative noise; accuracy from the loss; saturation for
    sigmoid / tanh; dead units for ReLU growing with the learning rate; layer gradient norms
    shrinking towards the input for saturating units. ``diverge_at``: the loss explodes to
    NaN at that epoch and the outcome is ``diverged``."""
    tau = TAU.get(activation, 15.0) * min(10.0, max(0.2, 0.1 / lr)) * rng.uniform(0.8, 1.25)
    last = epochs if diverge_at is None else min(diverge_at, epochs)
    t = np.arange(last + 1, dtype=float)
    loss = (0.02 + 0.7 * np.exp(-t / tau)) * np.exp(rng.normal(0.0, 0.03, t.size))
    if diverge_at is not None:
        loss[-3:] = [1e3, 1e12, np.nan][-min(3, loss.size) :]
    acc = np.clip(1.0 - loss / 1.4, 0.0, 1.0)
    history = {"train_loss": loss, "train_acc": acc}
    n_hidden = len(hidden)
    sat_final = SATURATING.get(activation, 0.0)
    dead_final = min(0.9, 0.4 * lr) if activation == "relu" else 0.0
    if diagnostics and n_hidden:
        for layer in range(1, n_hidden + 1):
            s = sat_final * (1 - np.exp(-t / 15.0)) * (1 + 0.1 * layer)
            history[f"saturated_frac/layer{layer}"] = np.clip(s + rng.normal(0, 0.01, t.size), 0, 1)
        for layer in range(1, n_hidden + 2):
            shrink = (1.0 - sat_final) ** (n_hidden + 1 - layer)
            g = 2.0 * shrink * np.exp(-t / (2 * tau)) + 1e-3
            history[f"grad_norm/layer{layer}"] = g * np.exp(rng.normal(0, 0.05, t.size))
    reached = np.flatnonzero(np.isfinite(loss) & (loss <= target))
    upe = math.ceil(n_train / batch_size)
    sec_per_epoch = 0.01 * (1.5 if activation in ("sigmoid", "tanh") else 1.0)
    summary = {
        "final_train_loss": float(loss[-1]),
        "final_train_acc": float(acc[-1]),
        "final_test_acc": float(acc[-1] - abs(rng.normal(0.03, 0.01))),
        "train_seconds": last * sec_per_epoch,
        "epochs_run": float(last),
        "updates_run": float(last * upe),
    }
    if n_hidden:
        summary["final_dead_frac"] = float(np.clip(dead_final + rng.normal(0, 0.02), 0, 1))
        summary["final_saturated_frac"] = sat_final
    if diverge_at is not None:
        outcome = "diverged"
        for k in ("final_train_loss", "final_train_acc", "final_test_acc", "final_dead_frac"):
            summary.pop(k, None)
    elif reached.size:
        e = int(reached[0])
        outcome = "reached_target"
        summary.update(
            epochs_to_target=float(e),
            updates_to_target=float(e * upe),
            examples_to_target=float(e * n_train),
            seconds_to_target=e * sec_per_epoch,
        )
    else:
        outcome = "max_epochs"
    params = {
        "seed": seed,
        "activation.name": activation,
        "optimizer.name": "minibatch",
        "optimizer.rule": "plain",
        "optimizer.lr": lr,
        "optimizer.batch_size": batch_size,
        "model.hidden_sizes": json.dumps(list(hidden)),
        "model.init": None,
        "dataset.name": "moons",
        "loss.name": "cross_entropy",
        "regularizer.name": "none",
        "train.epochs": epochs,
        "train.target": target,
        "train.target_metric": "train_loss",
        **(extra_params or {}),
    }
    tags = {
        "fnnbench.claim": claim,
        "fnnbench.sweep": claim,
        "fnnbench.outcome": outcome,
        "fnnbench.overrides": f"activation={activation},optimizer.lr={lr},seed={seed}",
        "mlflow.source.git.commit": "0123456789abcdef0123456789abcdef01234567",
        "fnnbench.host": "bench (synthetic)",
    }
    return SyntheticRun(params, tags, history, summary)


def log_run(client, experiment_id: str, run: SyntheticRun, *, t0_ms: int | None = None) -> str:
    """Log ``run`` with ``log_batch`` (<= 1000 metrics / 100 params per call); returns the id."""
    from mlflow.entities import Metric, Param, RunTag

    t0 = int(time.time() * 1000) if t0_ms is None else t0_ms
    r = client.create_run(experiment_id, tags={k: str(v) for k, v in run.tags.items()})
    rid = r.info.run_id
    params = [Param(k, str(v)) for k, v in run.params.items()]
    for i in range(0, len(params), 100):
        client.log_batch(rid, params=params[i : i + 100])
    metrics = [
        Metric(k, float(v), t0 + step, step)
        for k, vals in run.history.items()
        for step, v in enumerate(vals)
    ]
    last = max((len(v) for v in run.history.values()), default=1) - 1
    metrics += [Metric(k, float(v), t0 + last, last) for k, v in run.summary.items()]
    for i in range(0, len(metrics), 1000):
        client.log_batch(rid, metrics=metrics[i : i + 1000])
    for path, local in run.artifacts.items():
        with tempfile.TemporaryDirectory() as tmp:
            named = Path(tmp) / os.path.basename(path)  # the artifact keeps the name `path`
            shutil.copyfile(local, named)
            client.log_artifact(rid, str(named), artifact_path=os.path.dirname(path) or None)
    if run.status == "FAILED" and "fnnbench.error" not in run.tags:
        client.log_batch(rid, tags=[RunTag("fnnbench.error", "synthetic failure")])
    client.set_terminated(rid, status=run.status)
    return rid


def log_parent(client, experiment_id: str, claim: str, n_jobs: int) -> str:
    """A sweep parent run as tracking logs it (excluded from the report's counts)."""
    r = client.create_run(
        experiment_id,
        tags={
            "fnnbench.parent": "true",
            "fnnbench.claim": claim,
            "fnnbench.sweep": claim,
            "fnnbench.n_jobs": str(n_jobs),
        },
    )
    client.set_terminated(r.info.run_id)
    return r.info.run_id


def _yaml(claim: dict, sweep: dict) -> str:
    import yaml

    head = f"# {claim['title']}\n# python -m fnnbench sweep={claim['id']}\n"
    body = {"claim": claim, "hydra": {"sweeper": {"params": sweep}}}
    return head + yaml.safe_dump(body, sort_keys=False)


BENCH_CLAIMS = [
    {
        "id": "bench_relu_faster",
        "title": "ReLU trains faster than sigmoid and tanh (synthetic)",
        "statement": "Converge much faster than sigmoid and tanh in practice (6x faster)",
        "source": "Lecture 2; Krizhevsky et al. 2012",
        "published": {"value": 6.0, "text": "6x fewer epochs to 25% training error"},
        "factor": "activation.name",
        "metric": "epochs_to_target",
        "better": "lower",
        "effect": "ratio",
        "censor": "train.epochs",
        "plots": ["learning_curves", "time_to_target", "saturation", "activations"],
        "comparisons": [
            {
                "label": "relu vs sigmoid",
                "a": {"activation.name": "relu"},
                "b": {"activation.name": "sigmoid"},
            },
            {
                "label": "relu vs tanh",
                "a": {"activation.name": "relu"},
                "b": {"activation.name": "tanh"},
            },
        ],
    },
    {
        "id": "bench_dead_relu",
        "title": "A large learning rate kills ReLU units (synthetic)",
        "statement": "ReLU is fragile during training and can die",
        "factor": "activation.name",
        "metric": "final_dead_frac",
        "better": "higher",
        "effect": "difference",
        "plots": ["dead_units", "learning_curves"],
        "comparisons": [
            {
                "label": "relu lr 1.0 vs 0.01",
                "a": {"activation.name": "relu", "optimizer.lr": 1.0},
                "b": {"activation.name": "relu", "optimizer.lr": 0.01},
            },
        ],
    },
    {
        "id": "bench_width",
        "title": "Wider networks fit the training set more often (synthetic)",
        "statement": "More hidden units, more capacity",
        "factor": "model.hidden_sizes",
        "effect": "rate",
        "success": {"metric": "final_train_acc", "op": ">=", "value": 0.97},
        "plots": ["success_rate", "capacity", "learning_curves"],
        "comparisons": [
            {
                "label": "width 64 vs 4",
                "a": {"model.hidden_sizes": [64]},
                "b": {"model.hidden_sizes": [4]},
            },
        ],
    },
]


def build_store(root: Path, n_runs: int, n_epochs: int, seed: int = 0) -> tuple[str, Path, int]:
    """Write the bench claims to ``root/sweeps`` and ``n_runs`` runs to ``root/mlflow.db``.

    Split: 60% relu/tanh/sigmoid with per-layer diagnostics, 20% dead units (relu and
    leaky_relu x 4 learning rates), 20% widths 4/16/64. Returns (uri, sweeps dir, metric rows).
    """
    from mlflow import MlflowClient

    sweeps = root / "sweeps"
    sweeps.mkdir(parents=True, exist_ok=True)
    for c in BENCH_CLAIMS:
        (sweeps / f"{c['id']}.yaml").write_text(_yaml(c, {"seed": "range(0,10)"}))
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    rng = np.random.default_rng(seed)
    n_a = int(0.6 * n_runs)
    n_b = int(0.2 * n_runs)
    n_c = n_runs - n_a - n_b
    jobs: list[tuple[str, dict]] = []
    for i in range(n_a):
        act = ("relu", "tanh", "sigmoid")[i % 3]
        jobs.append(("bench_relu_faster", {"activation": act, "seed": i // 3}))
    for i in range(n_b):
        act = ("relu", "leaky_relu")[i % 2]
        lr = (0.01, 0.1, 0.3, 1.0)[(i // 2) % 4]
        jobs.append(
            ("bench_dead_relu", {"activation": act, "lr": lr, "seed": i // 8, "diagnostics": False})
        )
    for i in range(n_c):
        width = (4, 16, 64)[i % 3]
        jobs.append(("bench_width", {"hidden": (width,), "seed": i // 3, "diagnostics": False}))
    exps = {}
    rows = 0
    for claim, kw in jobs:
        if claim not in exps:
            exps[claim] = client.create_experiment(claim)
            log_parent(client, exps[claim], claim, sum(1 for c, _ in jobs if c == claim))
        run = synthetic_run(rng, claim=claim, epochs=n_epochs, **kw)
        if claim == "bench_width":
            w = run.params["model.hidden_sizes"]
            p = {"[4]": 0.5, "[16]": 0.8, "[64]": 0.95}[w]
            acc = 1.0 if rng.random() < p else 0.9
            run.summary["final_train_acc"] = acc
        rows += sum(len(v) for v in run.history.values()) + len(run.summary)
        log_run(client, exps[claim], run)
    return uri, sweeps, rows


def _time(fn, *args, **kw) -> tuple[Any, float]:
    t = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m fnnbench.bench_report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--runs", type=int, default=1000, help="synthetic jobs (default 1000)")
    ap.add_argument("--epochs", type=int, default=200, help="epochs per job (default 200)")
    ap.add_argument(
        "--store",
        default=None,
        help="folder for mlflow.db + sweeps/ (default: a temporary folder); reused "
        "when it already has a store",
    )
    ap.add_argument("--out", default=None, help="report folder (default: <store>/reports)")
    args = ap.parse_args(argv)

    from fnnbench.report.build import build_report
    from fnnbench.report.data import (
        claim_runs,
        connect,
        fetch_histories,
        find_experiments,
        load_runs,
    )

    tmp = None
    if args.store is None:
        tmp = tempfile.TemporaryDirectory(prefix="fnnbench-bench-report-")
        root = Path(tmp.name)
    else:
        root = Path(args.store)
        root.mkdir(parents=True, exist_ok=True)
    try:
        if (root / "mlflow.db").is_file():
            uri, sweeps, rows, t_build = f"sqlite:///{root / 'mlflow.db'}", root / "sweeps", -1, 0.0
            print(f"reusing the store in {root}", flush=True)
        else:
            print(f"building {args.runs} runs x {args.epochs} epochs in {root} ...", flush=True)
            (uri, sweeps, rows), t_build = _time(build_store, root, args.runs, args.epochs)
        out = Path(args.out) if args.out else root / "reports"

        client = connect(uri)
        ids = [e.experiment_id for e in find_experiments(client)]
        runs, t_load = _time(load_runs, client, ids)
        rel_ids = claim_runs(runs, "bench_relu_faster")["run_id"].tolist()
        _, t_curves = _time(fetch_histories, client, rel_ids, ["train_loss"], 100)
        _, t_full = _time(fetch_histories, client, rel_ids[:100], ["train_loss"], None)
        summary, t_report = _time(build_report, uri, None, None, sweeps, out)
    finally:
        if tmp is not None:
            tmp.cleanup()

    table = [
        ("runs in the store (jobs + parents)", f"{len(runs)}"),
        ("epochs per run", f"{args.epochs}"),
        ("metric rows logged", "reused" if rows < 0 else f"{rows}"),
        ("store build with log_batch (s)", "reused" if rows < 0 else f"{t_build:.1f}"),
        ("load_runs: search_runs -> pandas, cast (s)", f"{t_load:.2f}"),
        (f"train_loss of {len(rel_ids)} runs, 100 points each (s)", f"{t_curves:.2f}"),
        ("train_loss of 100 runs, full history (s)", f"{t_full:.2f}"),
        ("whole report: build_report (s)", f"{t_report:.2f}"),
        ("claims / images written", f"{len(summary.pages)} / {len(summary.images)}"),
        ("cores", f"{os.cpu_count()}"),
    ]
    w = max(len(k) for k, _ in table)
    print(f"\n{'phase'.ljust(w)} | value")
    print(f"{'-' * w}-|-------")
    for k, v in table:
        print(f"{k.ljust(w)} | {v}")
    verdicts = ", ".join(f"{k}: {v}" for k, v in summary.verdicts.items())
    print(f"\nverdicts: {verdicts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
