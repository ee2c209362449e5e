"""fnnbench.optim: hand-computed steps, convex quadratics, in-place updates, validation."""

import dataclasses
import math
import re
import tracemalloc

import numpy as np
import pytest

from fnnbench.optim import HYPERPARAMETERS, RANGES, UPDATE_RULES, Range, UpdateRule, make_optimizer

RULES = ["plain", "momentum", "nesterov", "adagrad", "rmsprop", "adam"]
EPS = 1e-8  # the eps used in the hand computations below


def run_steps(rule, hparams, theta0, gs):
    """Apply the gradients gs (one per step, not depending on theta) and return theta after each."""
    opt = make_optimizer(rule, **hparams)
    theta = np.array(theta0, dtype=np.float64)
    out = []
    for g in gs:
        opt.step({"theta": theta}, {"theta": np.array(g, dtype=np.float64)})
        out.append(theta.copy())
    return out


def test_registry_has_every_rule():
    assert sorted(UPDATE_RULES) == sorted(RULES)


# ----------------------------------------------------------------------- hand-computed steps


def test_plain_steps_by_hand():
    # theta <- theta - lr g, lr = 0.1
    got = run_steps("plain", {"lr": 0.1}, [1.0, -2.0], [[0.5, -1.0], [0.5, -1.0]])
    np.testing.assert_allclose(got[0], [1.0 - 0.05, -2.0 + 0.1], rtol=0, atol=1e-15)
    np.testing.assert_allclose(got[1], [1.0 - 0.10, -2.0 + 0.2], rtol=0, atol=1e-15)


def test_momentum_steps_by_hand():
    # v <- 0.9 v - 0.1 g; theta <- theta + v
    # g=1:  v = -0.1,                   theta = 0.9
    # g=1:  v = -0.09 - 0.1 = -0.19,    theta = 0.71
    # g=-2: v = -0.171 + 0.2 = 0.029,   theta = 0.739
    got = run_steps("momentum", {"lr": 0.1, "momentum": 0.9}, [1.0], [[1.0], [1.0], [-2.0]])
    np.testing.assert_allclose(np.ravel(got), [0.9, 0.71, 0.739], rtol=0, atol=1e-14)


def test_nesterov_steps_by_hand():
    # v <- 0.9 v - 0.1 g; theta <- theta + 0.9 v - 0.1 g
    # g=1: v = -0.1,  theta = 1 - 0.09 - 0.1 = 0.81
    # g=1: v = -0.19, theta = 0.81 - 0.171 - 0.1 = 0.539
    got = run_steps("nesterov", {"lr": 0.1, "momentum": 0.9}, [1.0], [[1.0], [1.0]])
    np.testing.assert_allclose(np.ravel(got), [0.81, 0.539], rtol=0, atol=1e-14)
    # the same as the other form theta <- theta - mu v_old + (1 + mu) v_new
    assert 0.81 - 0.9 * (-0.1) + 1.9 * (-0.19) == pytest.approx(0.539, abs=1e-14)


def test_adagrad_steps_by_hand():
    # G <- G + g^2; theta <- theta - lr g / (sqrt(G) + eps), lr = 0.1
    # g=2:  G = 4, theta = 1 - 0.2 / (2 + eps)
    # g=-1: G = 5, theta += 0.1 / (sqrt(5) + eps)
    got = run_steps("adagrad", {"lr": 0.1, "eps": EPS}, [1.0], [[2.0], [-1.0]])
    t1 = 1.0 - 0.2 / (2.0 + EPS)
    t2 = t1 + 0.1 / (math.sqrt(5.0) + EPS)
    np.testing.assert_allclose(np.ravel(got), [t1, t2], rtol=0, atol=1e-14)
    assert t2 == pytest.approx(0.9447213595, abs=1e-9)


def test_rmsprop_steps_by_hand():
    # s <- 0.9 s + 0.1 g^2; theta <- theta - 0.01 g / (sqrt(s) + eps)
    # g=2: s = 0.4,               theta = 1 - 0.02 / (sqrt(0.4) + eps)
    # g=2: s = 0.36 + 0.4 = 0.76, theta -= 0.02 / (sqrt(0.76) + eps)
    got = run_steps("rmsprop", {"lr": 0.01, "rho": 0.9, "eps": EPS}, [1.0], [[2.0], [2.0]])
    t1 = 1.0 - 0.02 / (math.sqrt(0.4) + EPS)
    t2 = t1 - 0.02 / (math.sqrt(0.76) + EPS)
    np.testing.assert_allclose(np.ravel(got), [t1, t2], rtol=0, atol=1e-14)


def test_adam_steps_by_hand():
    # m <- 0.9 m + 0.1 g; v <- 0.999 v + 0.001 g^2; hats divide by 1 - beta^t; lr = 0.1
    # t=1, g=2:  m = 0.2, v = 0.004; m_hat = 2, v_hat = 4; theta = 1 - 0.1 * 2 / (2 + eps)
    # t=2, g=-1: m = 0.18 - 0.1 = 0.08; v = 0.003996 + 0.001 = 0.004996
    #            m_hat = 0.08 / 0.19; v_hat = 0.004996 / 0.001999
    hp = {"lr": 0.1, "beta1": 0.9, "beta2": 0.999, "eps": EPS}
    got = run_steps("adam", hp, [1.0], [[2.0], [-1.0]])
    t1 = 1.0 - 0.1 * 2.0 / (2.0 + EPS)
    m_hat, v_hat = 0.08 / 0.19, 0.004996 / 0.001999
    t2 = t1 - 0.1 * m_hat / (math.sqrt(v_hat) + EPS)
    np.testing.assert_allclose(np.ravel(got), [t1, t2], rtol=0, atol=1e-12)
    # the first Adam step is lr * sign(g) (up to eps), whatever the scale of g
    got = run_steps("adam", hp, [0.0, 0.0], [[1e-3, -50.0]])
    np.testing.assert_allclose(got[0], [-0.1, 0.1], rtol=0, atol=1e-5)


# ----------------------------------------------------------------------- convex quadratic


def quadratic():
    """f(x) = 0.5 x^T A x - b^T x with A SPD, eigenvalues 1 and 10 (condition number 10)."""
    c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
    Q = np.array([[c, -s], [s, c]])
    A = Q @ np.diag([1.0, 10.0]) @ Q.T
    b = np.array([4.0, -8.0])
    return A, b, np.linalg.solve(A, b)


def minimise(opt, n_steps):
    A, b, x_star = quadratic()
    x, g = np.zeros(2), np.empty(2)
    for _ in range(n_steps):
        np.subtract(A @ x, b, out=g)  # grad f = A x - b
        opt.step({"x": x}, {"x": g})
    return np.linalg.norm(x - x_star)


@pytest.mark.parametrize(
    "rule, hparams, n_steps, tol",
    [
        ("plain", {"lr": 0.1}, 400, 1e-8),  # lr = 1/L; contraction 0.9 per step
        ("momentum", {"lr": 0.05, "momentum": 0.5}, 400, 1e-8),
        ("nesterov", {"lr": 0.05, "momentum": 0.5}, 400, 1e-8),
        ("adagrad", {"lr": 1.0}, 600, 1e-8),
        # constant-lr RMSProp ends in a limit cycle of amplitude ~ lr around x*
        ("rmsprop", {"lr": 0.01}, 2000, 2e-2),
        ("adam", {"lr": 0.01}, 2000, 1e-8),
    ],
)
def test_minimises_convex_quadratic(rule, hparams, n_steps, tol):
    A, b, x_star = quadratic()
    start = np.linalg.norm(x_star)
    assert start > 10 * tol  # the distance to cover is large compared with tol
    assert minimise(make_optimizer(rule, **hparams), n_steps) < tol


def test_rmsprop_with_decayed_lr_converges_tightly():
    # replacing the frozen hp (a schedule) keeps the state; lr /10 every 500 steps
    opt = make_optimizer("rmsprop", lr=0.01)
    A, b, x_star = quadratic()
    x, g = np.zeros(2), np.empty(2)
    for k in range(3000):
        if k and k % 500 == 0:
            opt.hp = dataclasses.replace(opt.hp, lr=opt.hp.lr / 10)
        np.subtract(A @ x, b, out=g)
        opt.step({"x": x}, {"x": g})
    assert opt.state["t"] == 3000
    assert np.linalg.norm(x - x_star) < 1e-6


# ----------------------------------------------------------------------- in place, views, state


@pytest.mark.parametrize("rule", RULES)
def test_views_into_flat_buffer_stay_valid(rule):
    theta = np.arange(1.0, 8.0)
    grad = np.linspace(-1.0, 1.0, 7)
    params = {"W": theta[:6].reshape(2, 3), "b": theta[6:]}
    grads = {"W": grad[:6].reshape(2, 3), "b": grad[6:]}
    before, grad_before = theta.copy(), grad.copy()
    opt = make_optimizer(rule, lr=0.1)
    for _ in range(3):
        opt.step(params, grads)
    assert np.shares_memory(params["W"], theta) and np.shares_memory(params["b"], theta)
    np.testing.assert_array_equal(theta[:6].reshape(2, 3), params["W"])
    # every entry with a non-zero gradient moved, and against the gradient's sign
    moved = np.sign(theta - before)
    np.testing.assert_array_equal(moved[grad != 0], -np.sign(grad[grad != 0]))
    np.testing.assert_array_equal(grad, grad_before)  # gradients are only read


@pytest.mark.parametrize("rule", RULES)
def test_flat_buffer_updated_in_place_with_same_object(rule):
    theta = np.ones(5)
    params = {"theta": theta}
    opt = make_optimizer(rule, lr=0.1)
    opt.step(params, {"theta": np.full(5, 2.0)})
    assert params["theta"] is theta
    assert np.all(theta < 1.0)
    assert opt.state["t"] == 1
    buffers = opt.state["buffers"]["theta"]
    ids = {k: id(v) for k, v in buffers.items()}
    opt.step(params, {"theta": np.full(5, 2.0)})
    assert {k: id(v) for k, v in opt.state["buffers"]["theta"].items()} == ids
    opt.reset()
    assert opt.state == {"t": 0, "buffers": {}}


@pytest.mark.parametrize("rule", RULES)
def test_step_allocates_no_array_sized_memory(rule):
    n = 100_000  # 800 kB per float64 array
    theta, g = np.ones(n), np.full(n, 0.5)
    opt = make_optimizer(rule, lr=0.01)
    opt.step({"theta": theta}, {"theta": g})  # first step allocates the state
    tracemalloc.start()
    try:
        opt.step({"theta": theta}, {"theta": g})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * n // 10  # well under one array


@pytest.mark.parametrize("rule", RULES)
def test_float32_parameters_keep_their_dtype(rule):
    theta = np.ones(4, dtype=np.float32)
    opt = make_optimizer(rule, lr=0.1)
    opt.step({"theta": theta}, {"theta": np.ones(4, dtype=np.float32)})
    assert theta.dtype == np.float32
    assert all(v.dtype == np.float32 for v in opt.state["buffers"]["theta"].values())
    assert np.all(theta < 1.0)


# ----------------------------------------------------------------------- validation


def test_unknown_rule_is_named():
    with pytest.raises(ValueError, match="'sgdd'.*allowed.*plain"):
        make_optimizer("sgdd", lr=0.1)


def test_unknown_hyperparameter_is_named():
    with pytest.raises(ValueError, match="'beta1'.*'momentum'.*allowed.*'lr', 'momentum'"):
        make_optimizer("momentum", lr=0.1, beta1=0.9)


@pytest.mark.parametrize(
    "rule, hparams, name",
    [
        ("plain", {"lr": 0.0}, "lr"),
        ("plain", {"lr": -1.0}, "lr"),
        ("plain", {"lr": float("nan")}, "lr"),
        ("plain", {"lr": "0.1"}, "lr"),
        ("plain", {"lr": True}, "lr"),
        ("momentum", {"momentum": 1.0}, "momentum"),
        ("nesterov", {"momentum": -0.1}, "momentum"),
        ("adagrad", {"eps": 0.0}, "eps"),
        ("rmsprop", {"rho": 1.5}, "rho"),
        ("adam", {"beta1": 1.0}, "beta1"),
        ("adam", {"beta2": -0.5}, "beta2"),
    ],
)
def test_invalid_hyperparameter_values(rule, hparams, name):
    with pytest.raises(ValueError, match=f"'{name}'"):
        make_optimizer(rule, **hparams)


def test_hyperparameters_frozen_and_defaults():
    opt = make_optimizer("adam")
    assert (opt.hp.lr, opt.hp.beta1, opt.hp.beta2, opt.hp.eps) == (1e-3, 0.9, 0.999, 1e-8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        opt.hp.lr = 1.0
    assert make_optimizer("momentum", lr=1).config == {
        "rule": "momentum",
        "lr": 1.0,
        "momentum": 0.9,
    }
    assert isinstance(make_optimizer("plain", lr=1).hp.lr, float)


def test_missing_or_misshapen_gradient():
    opt = make_optimizer("plain", lr=0.1)
    with pytest.raises(ValueError, match="'b'"):
        opt.step({"W": np.ones(2), "b": np.ones(1)}, {"W": np.ones(2)})
    with pytest.raises(ValueError, match="shape"):
        opt.step({"W": np.ones(2)}, {"W": np.ones(3)})


# ----------------------------------------------------------------------- the contract


def test_every_rule_is_an_update_rule():
    for name, cls in UPDATE_RULES.items():
        opt = make_optimizer(name)
        assert isinstance(opt, UpdateRule) and type(opt) is cls and opt.rule == name
        assert HYPERPARAMETERS[name] == tuple(f.name for f in dataclasses.fields(cls.hp_class))


def test_an_incomplete_rule_cannot_be_instantiated():
    class NoUpdate(UpdateRule):
        rule = "no_update"

    with pytest.raises(TypeError, match="abstract"):
        NoUpdate()


def test_ranges_are_the_ones_the_rules_enforce():
    # every hyperparameter has a range; its ends are accepted / refused as the range says
    for rule, names in HYPERPARAMETERS.items():
        for name in names:
            valid = RANGES[name]
            for x, inside in [(valid.lo, not valid.lo_open), (valid.hi, not valid.hi_open)]:
                if x is None:
                    continue
                assert (x in valid) == inside
                if inside:
                    assert getattr(make_optimizer(rule, **{name: x}).hp, name) == x
                else:
                    with pytest.raises(ValueError, match=re.escape(f"'{name}' must be {valid}")):
                        make_optimizer(rule, **{name: x})
    assert str(RANGES["lr"]) == "> 0" and str(RANGES["beta2"]) == "in [0, 1)"
    assert 1e300 in RANGES["lr"] and 0.0 in RANGES["momentum"] and 1.0 not in RANGES["rho"]
    assert str(Range()) == "any number" and str(Range(hi=2.0)) == "<= 2"
