"""Finite-difference gradient checks (float64): every hidden activation x every loss x
depth 0, 1, 3 hidden layers x regularizer none/l2/l1; relative error < 1e-6.

Points are kept away from kinks (ReLU-like units at their corner, maxout ties, hinge margins
at 0, weights at 0 under L1): a net/data pair is reseeded until every such distance is
>= 1e-3, far above the ~1e-6 moves of the central differences.
"""

from __future__ import annotations

import numpy as np
import pytest

from fnnbench.nn import HIDDEN_ACTIVATIONS, MLP, gradient_check, numerical_gradient
from fnnbench.nn.gradcheck import relative_error

TOL = 1e-6
KINK_MARGIN = 1e-3
N = 4  # examples per check
DEPTHS = {0: [], 1: [4], 3: [4, 3, 4]}
REGS = [None, "l2", "l1"]
LOSSES_CHECKED = ["cross_entropy", "square", "hinge", "logistic"]
SQUARE_OUTPUTS = {
    "square-linear-binary": ("square", 1, {"output": "linear"}),
    "square-sigmoid-binary": ("square", 1, {"output": "sigmoid"}),
    "square-sigmoid-multi": ("square", 3, {"output": "sigmoid"}),
    "square-softmax-multi": ("square", 3, {"output": "softmax"}),
}
KINKS = {"relu": 0.0, "leaky_relu": 0.0, "prelu": 0.0, "elu": 0.0, "shifted_relu": -1.0}


def kink_distance(net: MLP, X: np.ndarray, T: np.ndarray) -> float:
    """Smallest distance of any pre-activation, margin or L1 weight to a kink."""
    zs, _ = net.feedforward(X)
    d = np.inf
    name = net.activation.name
    for z in zs[1:-1]:
        if name in KINKS:
            d = min(d, np.abs(z - KINKS[name]).min())
        elif name == "maxout":
            p = np.sort(z.reshape(z.shape[0], -1, net.activation.k), axis=-1)
            d = min(d, (p[..., -1] - p[..., -2]).min())
    zL = zs[-1]
    if net.loss.name == "hinge":
        if zL.shape[1] == 1:
            d = min(d, np.abs(1.0 - T * zL).min())
        else:
            s_y = np.sum(T * zL, axis=1, keepdims=True)
            m = np.abs(1.0 + zL - s_y)[T == 0]
            d = min(d, m.min())
    if net.regularizer.name == "l1":
        d = min(d, min(np.abs(net.params[f"W{l}"]).min() for l in range(1, net.n_layers + 1)))
    return float(d)


def make_case(activation, hidden, loss, n_out, loss_kwargs, reg, seed0=0):
    """A small float64 net with random biases (and slopes) and data away from every kink."""
    for seed in range(seed0, seed0 + 200):
        rng = np.random.default_rng(seed)
        net = MLP(
            [3, *hidden, n_out],
            activation=activation,
            loss=loss,
            seed=seed,
            loss_kwargs=loss_kwargs,
            activation_kwargs={"k": 2} if activation == "maxout" else None,
            regularizer=reg,
            reg_strength=0.05 if reg else 0.0,
        )
        for key, v in net.params.items():
            if key.startswith("b"):
                v[...] = rng.normal(0.0, 0.5, size=v.shape)
            elif key.startswith("mu"):
                v[...] = rng.uniform(0.05, 0.5, size=v.shape)
        X = rng.normal(size=(N, 3))
        y = rng.integers(0, max(2, n_out), size=N)
        T = net.encode(y)
        if kink_distance(net, X, T) >= KINK_MARGIN:
            return net, X, y
    raise AssertionError("no kink-free case found in 200 seeds")  # pragma: no cover


@pytest.mark.parametrize("reg", REGS)
@pytest.mark.parametrize("depth", sorted(DEPTHS))
@pytest.mark.parametrize("loss", LOSSES_CHECKED)
@pytest.mark.parametrize("activation", HIDDEN_ACTIVATIONS)
def test_gradient_matches_finite_differences(activation, loss, depth, reg):
    # binary (one output unit) and 3-class alternate over depth x regularizer, so every
    # activation x loss pair is checked in both forms
    n_out = 1 if (depth + REGS.index(reg)) % 2 == 0 else 3
    net, X, y = make_case(activation, DEPTHS[depth], loss, n_out, {}, reg)
    errors = gradient_check(net, X, y)
    assert set(errors) == set(net.params)
    if activation == "prelu" and depth > 0:
        assert "mu1" in errors  # PReLU slopes are checked too
    bad = {k: e for k, e in errors.items() if not e < TOL}
    assert not bad, f"relative error >= {TOL}: {bad}"


@pytest.mark.parametrize("reg", [None, "l2"])
@pytest.mark.parametrize("loss_case", sorted(SQUARE_OUTPUTS))
@pytest.mark.parametrize("activation", ["tanh", "relu", "prelu", "maxout"])
def test_gradient_square_loss_outputs(activation, loss_case, reg):
    loss, n_out, kw = SQUARE_OUTPUTS[loss_case]
    net, X, y = make_case(activation, [4, 3], loss, n_out, kw, reg)
    errors = gradient_check(net, X, y)
    assert max(errors.values()) < TOL, errors


def test_gradient_check_batch_of_one_and_maxout_k3():
    # the batch-1 path (outer product by broadcasting) and maxout with three pieces
    for activation, kw in [("relu", None), ("maxout", {"k": 3}), ("prelu", None)]:
        for seed in range(100):
            net = MLP([3, 5, 4, 2], activation=activation, activation_kwargs=kw, seed=seed)
            X = np.random.default_rng(seed).normal(size=(1, 3))
            y = np.array([1])
            if kink_distance(net, X, net.encode(y)) >= KINK_MARGIN:
                break
        errors = gradient_check(net, X, y)
        assert max(errors.values()) < TOL, (activation, errors)


def test_gradient_check_detects_a_wrong_gradient(monkeypatch):
    # a check that cannot fail is no check: break backprop and watch it fail
    net, X, y = make_case("tanh", [4], "cross_entropy", 3, {}, None)
    good = MLP.loss_and_grad_encoded

    def broken(self, X, T, out=None):
        J, G = good(self, X, T, out)
        G["W1"][0, 0] *= 1.01
        return J, G

    monkeypatch.setattr(MLP, "loss_and_grad_encoded", broken)
    errors = gradient_check(net, X, y)
    assert errors["W1"] > 1e-3
    assert errors["W2"] < TOL


def test_numerical_gradient_of_a_quadratic_and_restores_x():
    A = np.array([[2.0, 0.5], [0.5, 1.0]])
    x = np.array([0.3, -0.7])
    x0 = x.copy()
    g = numerical_gradient(lambda v: 0.5 * v @ A @ v, x)
    np.testing.assert_allclose(g, A @ x0, rtol=1e-8)
    np.testing.assert_array_equal(x, x0)


def test_relative_error_floor():
    assert relative_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert relative_error(np.array([1.0]), np.array([1.1])) == pytest.approx(0.1 / 1.1)
    # below the floor the error is absolute / floor
    assert relative_error(np.array([1e-9]), np.array([0.0]), floor=1e-3) == pytest.approx(1e-6)
    assert relative_error(np.array([]), np.array([])) == 0.0
