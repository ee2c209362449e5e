"""The training loop on small real data: batching = algorithm, time-to-target, stopping."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from fnnbench.job import build
from fnnbench.paths import CONF_DIR
from fnnbench.train import TrainSettings, fit


def make_cfg(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("config", overrides=["tracking.enabled=false", *overrides])


def run(*overrides: str, **settings):
    cfg = make_cfg(*overrides)
    job = build(cfg)
    s = TrainSettings.from_cfg(cfg.train)
    if settings:
        s = TrainSettings(**{**s.__dict__, **settings})
    return fit(job.net, job.opt, job.data, s, job.rng, job.batch_size), job


@pytest.mark.parametrize(("optimizer", "batch", "per_epoch"), [
    ("gd", "full", lambda n, b: 1),
    ("sgd", 1, lambda n, b: n),
    ("minibatch", 32, lambda n, b: math.ceil(n / b)),
    ("minibatch", 50, lambda n, b: math.ceil(n / b)),
])
def test_batching_decides_the_algorithm(optimizer, batch, per_epoch):
    res, job = run("dataset=moons", f"optimizer={optimizer}", f"optimizer.batch_size={batch}",
                   "train.epochs=3", "train.diagnostics_every=0")
    n = len(job.data.y_train)
    b = n if batch == "full" else batch
    assert res.summary["updates_run"] == 3 * per_epoch(n, b)
    assert [h["updates"] for h in res.history] == [e * per_epoch(n, b) for e in range(4)]
    assert len(res.history) == 4  # epoch 0 (untrained) .. epoch 3


def test_time_to_target_only_when_reached():
    res, job = run("dataset=blobs", "train.epochs=20", "train.target=0.05",
                   "train.target_metric=train_error")
    s = res.summary
    assert res.outcome == "max_epochs"
    assert "epochs_to_target" in s
    e = int(s["epochs_to_target"])
    assert 1 - res.history[e]["train_acc"] <= 0.05
    assert all(1 - h["train_acc"] > 0.05 for h in res.history[:e])
    n = len(job.data.y_train)
    assert s["examples_to_target"] == e * n
    assert s["updates_to_target"] == res.history[e]["updates"]
    assert 0 <= s["seconds_to_target"] <= s["train_seconds"]

    res2, _ = run("dataset=blobs", "train.epochs=2", "train.target=1e-9")
    assert not {"epochs_to_target", "updates_to_target", "examples_to_target",
                "seconds_to_target"} & set(res2.summary)


def test_stop_at_target():
    res, _ = run("dataset=blobs", "train.epochs=50", "train.target=0.05",
                 "train.target_metric=train_error", "train.stop_at_target=true")
    assert res.outcome == "reached_target"
    assert res.summary["epochs_run"] == res.summary["epochs_to_target"]


def test_divergence_is_an_outcome_not_a_crash():
    res, _ = run("dataset=digits", "activation=sigmoid", "loss=square", "optimizer.lr=1000",
                 "train.epochs=5")
    assert res.outcome == "diverged"
    assert not math.isfinite(res.history[-1]["train_loss"])


def test_converged_on_tolerance():
    res, _ = run("dataset=blobs", "optimizer=gd", "optimizer.lr=1e-9", "train.epochs=50",
                 "train.converge_tol=1e-6")
    assert res.outcome == "converged"
    assert res.summary["epochs_run"] == 1


def test_same_seed_same_history_different_seed_differs():
    def curve(seed):
        res, _ = run("dataset=moons", f"seed={seed}", "train.epochs=4")
        return [{k: v for k, v in h.items() if k != "train_seconds"} for h in res.history]

    assert curve(3) == curve(3)  # bit-identical, every metric of every epoch
    assert curve(3) != curve(4)


def test_diagnostics_per_layer():
    res, _ = run("dataset=digits", "activation=sigmoid", "model.hidden_sizes=[16,16]",
                 "train.epochs=2")
    h = res.history[-1]
    for l in (1, 2):
        for k in ("act_mean", "act_std", "dead_frac", "saturated_frac"):
            assert 0 <= h[f"{k}/layer{l}"] <= 1 or k == "act_mean"
    assert set(f"grad_norm/layer{l}" for l in (1, 2, 3)) <= set(h)
    assert "final_saturated_frac" in res.summary


def test_dead_relu_units_are_counted():
    res, job = run("dataset=digits", "model.hidden_sizes=[8]", "train.epochs=1")
    net = job.net
    # kill unit 0 of layer 1: a large negative bias makes z < 0 on every example
    net.params["b1"][0] = -1e3
    from fnnbench.train import layer_diagnostics
    X = job.data.X_train
    T = net.loss.encode(job.data.y_train, net.sizes[-1])
    d = layer_diagnostics(net, X, T)
    assert d["dead_frac/layer1"] >= 1 / 8


@pytest.mark.slow
def test_digits_one_hidden_layer_reaches_95_percent():
    res, _ = run("dataset=digits")
    assert res.summary["final_test_acc"] >= 0.95


@pytest.mark.slow
def test_xor_single_neuron_fails_hidden_layer_succeeds():
    single = []
    hidden = []
    for seed in range(10):
        r, _ = run("dataset=xor", "model=perceptron", "activation=tanh", "optimizer=gd",
                   "optimizer.lr=1.0", "train.epochs=300", f"seed={seed}",
                   "train.diagnostics_every=0")
        single.append(r.summary["final_train_acc"])
        r, _ = run("dataset=xor", "model.hidden_sizes=[4]", "activation=tanh", "optimizer=gd",
                   "optimizer.lr=1.0", "train.epochs=300", f"seed={seed}",
                   "train.diagnostics_every=0")
        hidden.append(r.summary["final_train_acc"])
    assert max(single) <= 0.75  # a single neuron cannot separate XOR, whatever the seed
    assert np.mean(np.array(hidden) == 1.0) >= 0.7  # most seeds solve it with 4 tanh units
