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
                 "train.epochs=2", "train.diagnostics_every=1")
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


# -- the normalised saturation share, dead-by-z, gradient attenuation, early summaries ---------

def test_saturation_share_known_values_sigmoid_and_tanh_alike():
    from fnnbench.nn import get_activation
    from fnnbench.train import max_derivative, saturation_share

    sig, tanh = get_activation("sigmoid"), get_activation("tanh")
    assert max_derivative(sig) == pytest.approx(0.25)
    assert max_derivative(tanh) == pytest.approx(1.0)
    # sigmoid'(z) < 0.025 <=> |z| > 3.64; tanh'(z) < 0.1 <=> |z| > 1.82
    z = np.array([[0.0, 1.0, 3.0, 4.0], [-5.0, -3.5, 10.0, -0.5]])
    assert saturation_share(sig, z) == pytest.approx(3 / 8)  # 4, -5, 10
    assert saturation_share(tanh, z) == pytest.approx(5 / 8)  # 3, 4, -5, -3.5, 10
    # the same normalised point on both: tanh(z) = 2 sigmoid(2z) - 1, f' scales alike
    zz = np.linspace(-6, 6, 121)[None, :]
    assert saturation_share(sig, 2 * zz) == pytest.approx(saturation_share(tanh, zz))
    assert saturation_share(get_activation("relu"), z) == 0.0  # unbounded: never saturated


def test_dead_z_share_known_values_every_activation():
    from fnnbench.train import dead_z_share

    z = np.array([[-1.0, 0.5, -2.0, 0.0], [-3.0, -1.0, -0.1, -1.0]])
    assert dead_z_share(z) == pytest.approx(2 / 4)  # columns 0 and 2 (z = 0 is not < 0)
    # maxout (k = 2): unit 0 = columns 0, 1 (max 0.5 > 0), unit 1 = columns 2, 3 (max 0)
    assert dead_z_share(z, pieces=2) == 0.0
    assert dead_z_share(np.array([[-1.0, -2.0, 1.0, -1.0]]), pieces=2) == pytest.approx(1 / 2)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "elu"])
def test_dead_z_counts_a_hand_killed_unit_for_every_activation(activation):
    from fnnbench.train import layer_diagnostics

    res, job = run("dataset=digits", f"activation={activation}", "model.hidden_sizes=[8,4]",
                   "train.epochs=1")
    net = job.net
    net.params["b1"][:] = 0.0
    net.params["b1"][[0, 3]] = -1e3  # z < 0 on every example for units 0 and 3 of layer 1
    X = job.data.X_train
    d = layer_diagnostics(net, X, net.loss.encode(job.data.y_train, net.sizes[-1]))
    z1 = X @ net.params["W1"].T + net.params["b1"]
    assert d["dead_z/layer1"] == pytest.approx(np.all(z1 < 0, axis=0).mean())
    assert d["dead_z/layer1"] >= 2 / 8
    # f'(z) = 0 is reachable only by ReLU: the old measure misses leaky ReLU / ELU deaths
    assert (d["dead_frac/layer1"] >= 2 / 8) == (activation == "relu")
    g1, g2 = d["grad_norm/layer1"], d["grad_norm/layer2"]
    assert d["grad_attenuation"] == pytest.approx(math.log10(g1 / g2))


def test_early_diagnostics_every_epoch_and_their_summaries():
    from fnnbench.train import EARLY_EPOCHS

    res, _ = run("dataset=digits", "activation=sigmoid", "model.hidden_sizes=[16,16,16]",
                 "train.epochs=14", "train.diagnostics_every=4")
    diagnosed = [e for e, h in enumerate(res.history) if "sat_share/layer1" in h]
    assert diagnosed == [*range(EARLY_EPOCHS + 1), 12]
    s = res.summary
    early = res.history[1:EARLY_EPOCHS + 1]
    assert s["grad_attenuation_early"] == pytest.approx(
        np.mean([h["grad_attenuation"] for h in early]))
    assert s["top_act_mean_min_early"] == pytest.approx(
        min(h["act_mean/layer3"] for h in early))
    assert s["final_sat_share"] == pytest.approx(
        np.mean([res.history[12][f"sat_share/layer{l}"] for l in (1, 2, 3)]))
    for key in ("mean_sat_share", "final_dead_z_frac", "mean_dead_z_frac",
                "sat_share_top_early", "final_saturated_frac", "final_dead_frac"):
        assert key in s, key
    # one hidden layer: no attenuation to measure
    one, _ = run("dataset=digits", "model.hidden_sizes=[8]", "train.epochs=2")
    assert "grad_attenuation" not in one.history[1]
    assert "grad_attenuation_early" not in one.summary


def test_seconds_per_example():
    res, job = run("dataset=moons", "optimizer.batch_size=32", "train.epochs=3",
                   "train.diagnostics_every=0")
    n = len(job.data.y_train)
    s = res.summary
    assert s["examples_run"] == 3 * n
    assert s["seconds_per_example"] == pytest.approx(s["train_seconds"] / (3 * n))


def test_target_check_every_makes_epochs_to_target_fractional():
    base = ("dataset=digits", "model.hidden_sizes=[32]", "optimizer.batch_size=32",
            "optimizer.lr=0.1", "train.epochs=10", "train.target=0.5",
            "train.target_metric=train_loss", "train.diagnostics_every=0")
    coarse, job = run(*base)
    fine, _ = run(*base, "train.target_check_every=3")
    n = len(job.data.y_train)
    per_epoch = math.ceil(n / 32)
    c, f = coarse.summary, fine.summary
    assert c["epochs_to_target"] == int(c["epochs_to_target"])
    assert f["updates_to_target"] % 3 == 0 or f["updates_to_target"] % per_epoch == 0
    assert f["epochs_to_target"] == pytest.approx(f["updates_to_target"] / per_epoch)
    assert c["epochs_to_target"] - 1 < f["epochs_to_target"] <= c["epochs_to_target"]
    assert f["epochs_to_target"] != int(f["epochs_to_target"])
    whole = int(f["epochs_to_target"])
    assert f["examples_to_target"] == whole * n + (f["updates_to_target"] - whole * per_epoch) * 32
    assert f["seconds_to_target"] <= f["train_seconds"]
    # the checks change no update: the same training, the same history
    assert [h["train_loss"] for h in fine.history] == [h["train_loss"] for h in coarse.history]
    assert TrainSettings.from_cfg(make_cfg(*base, "train.target_check_every=3").train) \
        .target_check_every == 3


# -- the option keys the claims need: ReLU's f'(0), random training labels --------------------

def test_relu_grad_at_zero_option():
    from fnnbench.nn import get_activation

    z = np.array([-1.0, 0.0, 2.0])
    assert get_activation("relu").df(z).tolist() == [0.0, 1.0, 1.0]  # the lecture's f'(0) = 1
    frameworks = get_activation("relu", grad_at_zero=0)
    assert frameworks.df(z).tolist() == [0.0, 0.0, 1.0]
    assert frameworks.backward(np.ones(3), z, frameworks.f(z)).tolist() == [0.0, 0.0, 1.0]
    with pytest.raises(ValueError):
        get_activation("relu", grad_at_zero=0.5)
    # the config key reaches the net; same seed, no z = 0 hit -> the same training
    a, _ = run("dataset=moons", "activation.grad_at_zero=0", "train.epochs=2")
    b, _ = run("dataset=moons", "activation.grad_at_zero=1", "train.epochs=2")
    assert a.net.activation.grad_at_zero == 0.0 and b.net.activation.grad_at_zero == 1.0
    assert a.summary["final_train_loss"] == pytest.approx(b.summary["final_train_loss"])


def test_relu_grad_at_zero_bad_value_is_one_line():
    from fnnbench.job.schema import ConfigError

    with pytest.raises(ConfigError, match=r"^activation.grad_at_zero=0.5: must be one of 1, 0$"):
        build(make_cfg("activation.grad_at_zero=0.5"))


def test_random_labels_replace_training_labels_only():
    from fnnbench.data import load_dataset

    true = load_dataset({"name": "digits"}, seed=3)
    rand = load_dataset({"name": "digits", "random_labels": True}, seed=3)
    again = load_dataset({"name": "digits", "random_labels": True}, seed=3)
    np.testing.assert_array_equal(true.X_train, rand.X_train)
    np.testing.assert_array_equal(true.y_test, rand.y_test)
    np.testing.assert_array_equal(true.y_val, rand.y_val)
    np.testing.assert_array_equal(rand.y_train, again.y_train)
    assert 0.05 < np.mean(rand.y_train == true.y_train) < 0.2  # ~1/10 agree by chance
    assert set(np.unique(rand.y_train)) == set(range(10))
    from fnnbench.data import DataError

    with pytest.raises(DataError, match="random_labels must be true/false"):
        load_dataset({"name": "digits", "random_labels": "yes"}, seed=0)


def test_target_check_every_bad_value_is_one_line():
    from fnnbench.job.schema import ConfigError

    one_line = r"^train.target_check_every=-1: must be an integer >= 0 and <= 1000000$"
    with pytest.raises(ConfigError, match=one_line):
        build(make_cfg("train.target_check_every=-1"))


def test_evaluation_in_workspaces_gives_the_numbers_of_fresh_arrays():
    """fit evaluates the training, validation and test sets into workspaces made once per job
    (mini-batch: a workspace of its own for the training set) and the diagnostics reuse the
    training forward pass: every per-epoch number must equal, exactly, evaluate() and
    layer_diagnostics() on new arrays at the parameters of that epoch."""
    from fnnbench.train import _blas_threads, evaluate, layer_diagnostics, step_threads

    snapshots = []

    class Snap:
        def __init__(self, net):
            self.net = net

        def on_epoch_end(self, epoch, metrics):
            snapshots.append((self.net.theta.copy(), dict(metrics)))

        def on_train_end(self, result):
            pass

    cfg = make_cfg("dataset=digits", "model.hidden_sizes=[16,16]", "activation=tanh",
                   "optimizer.batch_size=64", "optimizer.lr=0.2", "train.epochs=3",
                   "train.diagnostics_every=1", "train.target=0.01",
                   "train.target_metric=train_error", "train.target_check_every=5")
    job = build(cfg)
    s = TrainSettings.from_cfg(cfg.train)
    fit(job.net, job.opt, job.data, s, job.rng, job.batch_size, callbacks=[Snap(job.net)])
    net, d = job.net, job.data
    assert len(snapshots) == 4 and d.X_test is not None and len(d.X_val)
    # the BLAS thread count fit evaluates with (a different count may change the last bit)
    n_threads = step_threads(net, len(d.X_train))
    for theta, metrics in snapshots:
        net.theta[...] = theta
        for split, X, y in (("train", d.X_train, d.y_train), ("val", d.X_val, d.y_val),
                            ("test", d.X_test, d.y_test)):
            X = np.asarray(X, dtype=net.dtype)
            T = net.loss.encode(y, net.sizes[-1]).astype(net.dtype)
            with _blas_threads(n_threads):
                fresh = evaluate(net, X, T, y)
            assert (metrics[f"{split}_loss"], metrics[f"{split}_acc"]) == fresh, split
        T = net.loss.encode(d.y_train, net.sizes[-1]).astype(net.dtype)
        with _blas_threads(n_threads):
            diag = layer_diagnostics(net, np.asarray(d.X_train, dtype=net.dtype), T)
        assert diag and all(metrics[k] == v for k, v in diag.items())
