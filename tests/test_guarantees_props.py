"""Guarantee: the numerics hold on random shapes and extreme-but-finite inputs (hypothesis).

Properties, each over random shapes, activations (with their parameters), losses (with their
output units), regularizers and input scales, with every warning an error and numpy's
overflow / divide / invalid flags raising:

- activations: ``f`` and ``f'`` are finite for ``|z| <= 1e4`` (the documented range) in float64
  and float32, keep shape and dtype, and ``f'`` matches central differences of ``f`` away from
  kinks;
- losses: value and gradient are finite for ``|z| <= 1e4``, and the gradient matches central
  differences of the value away from hinge margins at 0;
- the MLP: forward pass and loss are finite for inputs up to 1e3 in magnitude, and
  back-propagation matches ``fnnbench.nn.gradient_check`` on random nets and data kept at least
  1e-3 away from every kink (ReLU corners, maxout ties, hinge margins, weights at 0 under L1);
- the trainer: whatever the learning rate in the schema's range (0, 1e6] and the update rule,
  a run either keeps every metric finite or says ``diverged``; it never returns NaN silently.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from test_nn_gradcheck import KINKS, kink_distance  # one definition of "away from the kinks"

from fnnbench.nn import HIDDEN_ACTIVATIONS, MLP, get_activation, get_loss, gradient_check

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
Z_MAX = 1e4  # the documented safe range of activations and losses
KINK_MARGIN = 1e-3
GRAD_TOL = 1e-5


class strict_numerics:  # noqa: N801 - used as a context manager, reads like errstate
    """Every warning an error; numpy's overflow / divide-by-zero / invalid flags raise."""

    def __enter__(self):
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("error")
        self._e = np.errstate(over="raise", divide="raise", invalid="raise")
        self._e.__enter__()
        return self

    def __exit__(self, *exc):
        self._e.__exit__(*exc)
        return self._w.__exit__(*exc)


# --------------------------------------------------------------------------- strategies

@st.composite
def activations(draw):
    """(name, kwargs) of a hidden activation, its parameters anywhere in the schema's range."""
    name = draw(st.sampled_from(HIDDEN_ACTIVATIONS))
    kw = {}
    if name == "leaky_relu":
        kw["slope"] = draw(st.floats(0.0, 0.999))
    elif name == "elu":
        kw["mu"] = draw(st.floats(1e-3, 10.0))
    elif name == "prelu":
        kw["init"] = draw(st.floats(-10.0, 10.0))
    elif name == "maxout":
        kw["k"] = draw(st.integers(2, 4))
    return name, kw


@st.composite
def losses(draw):
    """(name, n_out, kwargs): every loss with every output unit it allows."""
    name = draw(st.sampled_from(["cross_entropy", "square", "hinge", "logistic"]))
    n_out = draw(st.integers(1, 4))
    kw = {}
    if name == "square":
        outputs = ["linear", "sigmoid"] + (["softmax"] if n_out > 1 else [])
        kw["output"] = draw(st.sampled_from(outputs))
    return name, n_out, kw


def z_arrays(shape, lo=-Z_MAX, hi=Z_MAX, dtype=np.float64):
    extremes = st.sampled_from([lo, hi, 0.0, -0.0, 1e-300, -1e-300, 88.0, -88.0, 709.0,
                                -709.0, 745.0, -745.0, 1.0, -1.0])
    values = st.one_of(st.floats(lo, hi, allow_nan=False, allow_infinity=False),
                       extremes.filter(lambda v: lo <= v <= hi))
    return hnp.arrays(np.float64, shape, elements=values).map(lambda a: a.astype(dtype))


# --------------------------------------------------------------------------- activations

@SETTINGS
@given(act=activations(), n=st.integers(1, 5), m=st.integers(1, 4),
       dtype=st.sampled_from([np.float64, np.float32]), data=st.data())
def test_activation_is_finite_on_the_documented_range(act, n, m, dtype, data):
    name, kw = act
    f = get_activation(name, **kw)
    k = kw.get("k", 1)
    z = data.draw(z_arrays((n, m * k), dtype=dtype))
    with strict_numerics():
        a = f.f(z)
        d = f.df(z)
    assert a.shape == (n, m) and d.shape == z.shape
    assert a.dtype == dtype and d.dtype == dtype
    assert np.all(np.isfinite(a)) and np.all(np.isfinite(d))
    if f.bounds is not None:
        lo, hi = f.bounds
        assert np.all(a >= lo) and np.all(a <= hi)


@SETTINGS
@given(act=activations(), n=st.integers(1, 4), m=st.integers(1, 3), data=st.data())
def test_activation_derivative_matches_central_differences(act, n, m, data):
    name, kw = act
    f = get_activation(name, **kw)
    k = kw.get("k", 1)
    z = data.draw(z_arrays((n, m * k), lo=-30.0, hi=30.0))
    if name in KINKS:
        assume(np.abs(z - KINKS[name]).min() > KINK_MARGIN)
    if name == "maxout":
        p = np.sort(z.reshape(n, m, k), axis=-1)
        assume((p[..., -1] - p[..., -2]).min() > KINK_MARGIN)
    with strict_numerics():
        d = f.df(z)
        num = np.zeros_like(z)
        for idx in np.ndindex(*z.shape):
            h = 1e-6 * max(1.0, abs(z[idx]))
            zp, zm = z.copy(), z.copy()
            zp[idx] += h
            zm[idx] -= h
            unit = idx[1] // k  # maxout: the unit this piece belongs to
            num[idx] = (f.f(zp)[idx[0], unit] - f.f(zm)[idx[0], unit]) / (2 * h)
    err = np.abs(num - d) / np.maximum(np.maximum(np.abs(num), np.abs(d)), 1e-3)
    assert err.max() < GRAD_TOL, (name, kw, z, d, num)


# --------------------------------------------------------------------------- losses

def _targets(rng_seed: int, n: int, n_out: int, loss) -> tuple[np.ndarray, np.ndarray]:
    y = np.random.default_rng(rng_seed).integers(0, max(2, n_out), size=n)
    return y, loss.encode(y, n_out)


@SETTINGS
@given(spec=losses(), n=st.integers(1, 6), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([np.float64, np.float32]), data=st.data())
def test_loss_value_and_gradient_are_finite_on_the_documented_range(spec, n, seed, dtype, data):
    name, n_out, kw = spec
    loss = get_loss(name, n_out=n_out, **kw)
    z = data.draw(z_arrays((n, n_out), dtype=dtype))
    _, T = _targets(seed, n, n_out, loss)
    T = T.astype(dtype)
    with strict_numerics():
        J, g = loss.value_and_grad(z, T)
        p = loss.proba(z)
    assert math.isfinite(J) and J >= 0.0 or name == "square" and math.isfinite(J)
    assert g.shape == z.shape and np.all(np.isfinite(g))
    assert p.shape == (n, max(2, n_out)) and np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5 if dtype == np.float32 else 1e-12)


@SETTINGS
@given(spec=losses(), n=st.integers(1, 5), seed=st.integers(0, 2**16), data=st.data())
def test_loss_gradient_matches_central_differences(spec, n, seed, data):
    name, n_out, kw = spec
    loss = get_loss(name, n_out=n_out, **kw)
    z = data.draw(z_arrays((n, n_out), lo=-30.0, hi=30.0))
    _, T = _targets(seed, n, n_out, loss)
    if name == "hinge":
        if n_out == 1:
            assume(np.abs(1.0 - T * z).min() > KINK_MARGIN)
        else:
            s_y = np.sum(T * z, axis=1, keepdims=True)
            assume(np.abs(1.0 + z - s_y)[T == 0].min() > KINK_MARGIN)
    with strict_numerics():
        J, g = loss.value_and_grad(z, T)
        num = np.zeros_like(z)
        for idx in np.ndindex(*z.shape):
            h = 1e-6 * max(1.0, abs(z[idx]))
            zp, zm = z.copy(), z.copy()
            zp[idx] += h
            zm[idx] -= h
            num[idx] = (loss.value(zp, T) - loss.value(zm, T)) / (2 * h)
    floor = 1e-3 * max(1.0, abs(J)) / n
    err = np.abs(num - g) / np.maximum(np.maximum(np.abs(num), np.abs(g)), floor)
    assert err.max() < GRAD_TOL, (name, n_out, kw, z, T, g, num)


# --------------------------------------------------------------------------- the MLP

@st.composite
def nets(draw, x_max: float):
    """A random float64 MLP, a batch X with |x| <= x_max and labels y."""
    act, akw = draw(activations())
    lname, n_out, lkw = draw(losses())
    n_in = draw(st.integers(1, 5))
    hidden = draw(st.lists(st.integers(1, 6), min_size=0, max_size=3))
    reg = draw(st.sampled_from([None, "l2", "l1"]))
    seed = draw(st.integers(0, 2**16))
    net = MLP([n_in, *hidden, n_out], activation=act, loss=lname, seed=seed,
              activation_kwargs=akw, loss_kwargs=lkw, regularizer=reg,
              reg_strength=draw(st.floats(0.0, 1.0)) if reg else 0.0)
    rng = np.random.default_rng(seed)
    for key, v in net.params.items():  # random biases and slopes, not just the initial 0
        if key.startswith("b"):
            v[...] = rng.normal(0.0, 0.5, size=v.shape)
        elif key.startswith("mu"):
            v[...] = rng.uniform(-1.0, 1.0, size=v.shape)
    n = draw(st.integers(1, 6))
    scale = draw(st.sampled_from([1e-3, 0.1, 1.0, 10.0, x_max]))
    X = np.clip(rng.normal(0.0, scale, size=(n, n_in)), -x_max, x_max)
    y = rng.integers(0, max(2, n_out), size=n)
    return net, X, y


@SETTINGS
@given(case=nets(x_max=1e3))
def test_forward_and_loss_are_finite_for_large_inputs(case):
    net, X, y = case
    with strict_numerics():
        z = net.forward(X)
        loss, grads = net.loss_and_grad(X, y)
        p = net.predict_proba(X)
    assert np.all(np.isfinite(z)) and math.isfinite(loss)
    assert all(np.all(np.isfinite(g)) for g in grads.values())
    assert np.all(np.isfinite(p)) and set(grads) == set(net.params)


@SETTINGS
@given(case=nets(x_max=10.0))
def test_backprop_matches_finite_differences_on_random_nets(case):
    net, X, y = case
    assume(kink_distance(net, X, net.encode(y)) >= KINK_MARGIN)
    with strict_numerics():
        errors = gradient_check(net, X, y)
    assert set(errors) == set(net.params)
    bad = {k: e for k, e in errors.items() if not e < GRAD_TOL}
    assert not bad, (net.config, X, y, bad)


# --------------------------------------------------------------------------- the trainer

@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(act=activations(), loss=st.sampled_from(["cross_entropy", "square", "hinge",
                                                 "logistic"]),
       rule=st.sampled_from(["plain", "momentum", "nesterov", "adagrad", "rmsprop", "adam"]),
       log_lr=st.floats(-6.0, 6.0), batch=st.sampled_from([1, 2, 4]),
       seed=st.integers(0, 2**16))
def test_training_never_returns_nan_silently(act, loss, rule, log_lr, batch, seed):
    from fnnbench.data import load_dataset
    from fnnbench.optim import make_optimizer
    from fnnbench.train import TrainSettings, fit

    name, akw = act
    data = load_dataset({"name": "xor"}, seed=seed)
    net = MLP([2, 4, 1], activation=name, loss=loss, seed=seed, activation_kwargs=akw)
    opt = make_optimizer(rule, lr=10.0 ** log_lr)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = fit(net, opt, data, TrainSettings(epochs=4, diagnostics_every=1), np.random.
                     default_rng(seed), batch)
    assert result.outcome in ("max_epochs", "converged", "diverged")
    values = [v for row in result.history for v in row.values()]
    if result.outcome != "diverged":
        assert all(math.isfinite(v) for v in values), result.history
        assert np.all(np.isfinite(net.theta))
    else:
        assert not math.isfinite(result.history[-1]["train_loss"])
    for key in ("final_train_loss", "train_seconds", "epochs_run"):
        assert key in result.summary


def test_strict_numerics_catches_an_overflow():
    # the guard the properties rely on: an overflow inside it is an error, not a warning
    with pytest.raises(FloatingPointError), strict_numerics():
        np.exp(np.array([1000.0]))
