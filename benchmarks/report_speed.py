"""Benchmark the report generator on a large synthetic MLflow store.

    python -m benchmarks.report_speed [--runs 1000] [--epochs 200] [--store DIR] [--out DIR]

Run from a checkout (it imports ``tests.fixtures.store``). Builds an embedded sqlite store in a
temporary folder (or ``--store DIR``, reused when it already has one) with ``--runs``
synthetic jobs of ``--epochs`` epochs, logged with ``MlflowClient.log_batch`` under the
documented MLflow names (docs/internals.md), spread over three claims (learning curves + time
to target + per-layer heatmaps; dead units vs learning rate; success rate with capacity), then
times ``python -m fnnbench.report`` on it (``build_report``), and prints one table: store size,
build time, and the report's phases.

The synthetic runs are those of tests/test_report.py: :mod:`tests.fixtures.store`
(``synthetic_run``, ``log_run``, ``log_parent``); :func:`build_store` only decides how many
of which.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from fnnbench.paths import file_sha256
from tests.fixtures.store import log_parent, log_run, synthetic_run


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
    digests = {}
    for c in BENCH_CLAIMS:
        path = sweeps / f"{c['id']}.yaml"
        path.write_text(_yaml(c, {"seed": "range(0,10)"}))
        digests[c["id"]] = file_sha256(path)  # the runs are of today's claim file: none stale
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
            log_parent(client, exps[claim], claim, sum(1 for c, _ in jobs if c == claim),
                       sweep_sha256=digests[claim])
        run = synthetic_run(rng, claim=claim, epochs=n_epochs, sweep_sha256=digests[claim], **kw)
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
        prog="python -m benchmarks.report_speed",
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
