"""Activations: closed forms, derivatives against finite differences, stability at |z| = 1e4,
registry and validation."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

from fnnbench.nn import ACTIVATIONS, HIDDEN_ACTIVATIONS, Activation, get_activation
from fnnbench.nn.activations import sigmoid, softmax, softplus

ELEMENTWISE = [n for n in HIDDEN_ACTIVATIONS if n != "maxout"]
KINKS = {"relu": 0.0, "leaky_relu": 0.0, "prelu": 0.0, "elu": 0.0, "shifted_relu": -1.0}
BIG = np.array([-1e4, -800.0, -100.0, -1.0, 0.0, 1.0, 100.0, 800.0, 1e4])


def away_from_kink(name: str, rng: np.random.Generator, size: int = 200) -> np.ndarray:
    z = rng.uniform(-4, 4, size=size)
    if name in KINKS:
        z = z[np.abs(z - KINKS[name]) > 1e-3]
    return z


def test_registry_names():
    assert set(ACTIVATIONS) == {
        "linear",
        "sigmoid",
        "tanh",
        "relu",
        "shifted_relu",
        "leaky_relu",
        "prelu",
        "elu",
        "maxout",
        "softmax",
    }
    assert "softmax" not in HIDDEN_ACTIVATIONS
    for name in ACTIVATIONS:
        assert get_activation(name).name == name


def test_bounds():
    assert get_activation("sigmoid").bounds == (0.0, 1.0)
    assert get_activation("tanh").bounds == (-1.0, 1.0)
    for name in ["linear", "relu", "shifted_relu", "leaky_relu", "prelu", "elu", "maxout"]:
        assert get_activation(name).bounds is None


def test_unknown_activation_names_bad_and_allowed():
    with pytest.raises(ValueError, match=r"unknown activation 'swish'.*relu.*maxout"):
        get_activation("swish")


def test_bad_activation_parameters():
    with pytest.raises(ValueError, match=r"'relu' got unknown parameter\(s\) \['slope'\]"):
        get_activation("relu", slope=0.1)
    with pytest.raises(ValueError, match="slope must be a finite number"):
        get_activation("leaky_relu", slope=float("nan"))
    with pytest.raises(ValueError, match="maxout k must be an integer >= 1"):
        get_activation("maxout", k=0)
    with pytest.raises(ValueError, match="maxout k must be an integer >= 1"):
        get_activation("maxout", k=2.5)


def test_sigmoid_tanh_closed_forms():
    z = np.linspace(-6, 6, 25)
    np.testing.assert_allclose(get_activation("sigmoid").f(z), 1 / (1 + np.exp(-z)), rtol=1e-14)
    np.testing.assert_allclose(get_activation("tanh").f(z), np.tanh(z), rtol=1e-15)
    assert sigmoid(np.array([0.0]))[0] == 0.5
    s = 1 / (1 + math.exp(-0.7))
    assert get_activation("sigmoid").df(np.array([0.7]))[0] == pytest.approx(s * (1 - s), rel=1e-14)
    assert get_activation("tanh").df(np.array([0.7]))[0] == pytest.approx(
        1 - math.tanh(0.7) ** 2, rel=1e-14
    )
    # sigmoid in the far tail keeps its relative precision (no 1 - 1 cancellation)
    assert sigmoid(np.array([-40.0]))[0] == pytest.approx(math.exp(-40.0), rel=1e-12)


def test_relu_family_known_values():
    z = np.array([-2.0, -0.5, 0.0, 0.5, 2.0])
    np.testing.assert_array_equal(get_activation("relu").f(z), [0, 0, 0, 0.5, 2])
    np.testing.assert_array_equal(get_activation("relu").df(z), [0, 0, 1, 1, 1])  # f'(0) = 1
    np.testing.assert_array_equal(get_activation("shifted_relu").f(z), [-1, -0.5, 0, 0.5, 2])
    np.testing.assert_array_equal(get_activation("shifted_relu").df(z), [0, 1, 1, 1, 1])
    np.testing.assert_allclose(get_activation("leaky_relu").f(z), [-0.02, -0.005, 0, 0.5, 2])
    np.testing.assert_allclose(get_activation("leaky_relu", slope=0.1).df(z), [0.1, 0.1, 1, 1, 1])
    np.testing.assert_allclose(get_activation("prelu").f(z), [-0.5, -0.125, 0, 0.5, 2])
    np.testing.assert_allclose(
        get_activation("elu").f(z), [math.expm1(-2), math.expm1(-0.5), 0, 0.5, 2]
    )
    np.testing.assert_allclose(
        get_activation("elu", mu=2.0).df(z), [2 * math.exp(-2), 2 * math.exp(-0.5), 1, 1, 1]
    )
    np.testing.assert_array_equal(get_activation("linear").f(z), z)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_df_matches_central_differences(name):
    act = get_activation(name)
    z = away_from_kink(name, np.random.default_rng(1))
    h = 1e-6
    num = (act.f(z + h) - act.f(z - h)) / (2 * h)
    np.testing.assert_allclose(act.df(z), num, rtol=1e-7, atol=1e-9)
    # backward(da, z, a) == da * f'(z)
    da = np.random.default_rng(2).normal(size=z.shape)
    np.testing.assert_allclose(act.backward(da.copy(), z, act.f(z)), da * act.df(z), rtol=1e-14)


def test_prelu_per_unit_slopes_and_dmu():
    act = get_activation("prelu")
    z = np.array([[-2.0, 1.0, -1.0], [3.0, -4.0, 0.5]])
    mu = np.array([0.1, 0.2, 0.3])
    np.testing.assert_allclose(act.f(z, mu), [[-0.2, 1.0, -0.3], [3.0, -0.8, 0.5]])
    np.testing.assert_allclose(act.df(z, mu), [[0.1, 1.0, 0.3], [1.0, 0.2, 1.0]])
    np.testing.assert_allclose(act.dmu(z), [[-2.0, 0.0, -1.0], [0.0, -4.0, 0.0]])
    assert get_activation("prelu", init=0.1).init == 0.1


def test_maxout_pieces_and_routing():
    act = get_activation("maxout", k=2)
    # two units, pieces of unit i in columns 2i, 2i+1
    z = np.array([[1.0, 3.0, -1.0, -2.0], [5.0, 0.0, 0.5, 0.7]])
    np.testing.assert_array_equal(act.f(z), [[3.0, -1.0], [5.0, 0.7]])
    np.testing.assert_array_equal(act.df(z), [[0, 1, 1, 0], [1, 0, 0, 1]])
    da = np.array([[10.0, 20.0], [30.0, 40.0]])
    np.testing.assert_array_equal(act.backward(da, z, act.f(z)), [[0, 10, 20, 0], [30, 0, 0, 40]])
    act3 = get_activation("maxout", k=3)
    assert act3.f(np.arange(6.0).reshape(1, 6)).tolist() == [[2.0, 5.0]]
    with pytest.raises(ValueError, match="not a multiple of k=3"):
        act3.f(np.zeros((1, 4)))


def test_softmax_closed_form_rows_sum_to_one_and_jacobian():
    z = np.array([[1.0, 2.0, 3.0], [-1.0, 0.0, 1000.0], [0.0, 0.0, 0.0]])
    h = softmax(z)
    e = np.exp([1.0, 2.0, 3.0])
    np.testing.assert_allclose(h[0], e / e.sum(), rtol=1e-14)
    np.testing.assert_allclose(h[2], [1 / 3] * 3, rtol=1e-15)
    np.testing.assert_allclose(h.sum(axis=1), 1.0, rtol=1e-15)
    # shift invariance: softmax(z + c) == softmax(z)
    np.testing.assert_allclose(softmax(z[:1] + 500.0), h[:1], rtol=1e-13)
    act = get_activation("softmax")
    J = act.df(z[:1])[0]
    np.testing.assert_allclose(J, np.diag(h[0]) - np.outer(h[0], h[0]), rtol=1e-14)
    da = np.array([[0.3, -1.0, 2.0]])
    np.testing.assert_allclose(act.backward(da, z[:1], h[:1]), da @ J, rtol=1e-13)


def test_softplus_closed_form():
    x = np.array([-30.0, -1.0, 0.0, 2.0, 50.0])
    np.testing.assert_allclose(softplus(x), np.log1p(np.exp(x)), rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_no_warnings_no_nan_at_1e4(name, dtype):
    act = get_activation(name)
    z = np.tile(BIG.astype(dtype), (2, 2))  # (2, 18): even width for maxout
    with np.errstate(all="raise"):
        a = act.f(z)
        d = act.df(z)
        b = act.backward(np.ones_like(a), z, a)
    for arr in (a, d, b):
        assert np.all(np.isfinite(arr)), name
    assert a.dtype == dtype and d.dtype == dtype
    if act.bounds is not None:
        lo, hi = act.bounds
        assert np.all((a >= lo) & (a <= hi))


def test_extreme_values_are_exact_limits():
    with np.errstate(all="raise"):
        np.testing.assert_allclose(sigmoid(BIG)[[0, -1]], [0.0, 1.0], atol=1e-300)
        assert get_activation("elu").f(np.array([1e4]))[0] == 1e4
        assert get_activation("elu").f(np.array([-1e4]))[0] == -1.0
        np.testing.assert_allclose(softmax(np.array([[1e4, -1e4, 0.0]])), [[1, 0, 0]], atol=1e-300)
        np.testing.assert_allclose(softplus(np.array([-1e4, 1e4])), [0.0, 1e4], atol=1e-300)


def test_integer_input_is_promoted():
    assert get_activation("sigmoid").f([0, 0]).dtype == np.float64
    assert get_activation("relu").f(np.array([-1, 2])).tolist() == [0.0, 2.0]


# -- the contract --------------------------------------------------------------------------


def test_every_activation_is_an_activation_with_one_signature():
    base = {m: inspect.signature(getattr(Activation, m)) for m in ("f", "df", "backward")}
    for name, cls in ACTIVATIONS.items():
        act = get_activation(name)
        assert isinstance(act, Activation) and type(act) is cls
        for method, sig in base.items():
            params = list(inspect.signature(getattr(cls, method)).parameters)
            assert params == list(sig.parameters), (name, method)
        init = inspect.signature(cls.__init__).parameters
        declared = [p for p in init if p not in ("self", "args", "kwargs")]
        assert list(cls.hyperparameters) == declared, name


def test_an_incomplete_activation_cannot_be_instantiated():
    class NoDerivative(Activation):
        name = "no_derivative"

        def f(self, z, p=None, out=None):
            return z

    with pytest.raises(TypeError, match="abstract"):
        NoDerivative()


def test_pieces_and_learnable_parameters_through_the_interface():
    for name in ACTIVATIONS:
        act = get_activation(name)
        assert act.pieces == (2 if name == "maxout" else 1)
        if name != "prelu":
            assert act.param_shape(3) is None and act.param_name is None
            with pytest.raises(TypeError, match="no learnable parameters"):
                act.init_param(np.zeros(3))
    assert get_activation("maxout", k=3).pieces == 3
    prelu = get_activation("prelu", init=0.1)
    assert prelu.param_name == "mu" and prelu.param_shape(3) == (3,)
    mu = np.zeros(3)
    prelu.init_param(mu)
    np.testing.assert_array_equal(mu, 0.1)
    z = np.array([[-2.0, 1.0, -1.0], [3.0, -4.0, 0.5]])
    da = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    out = np.empty(3)
    prelu.grad_param(da, z, mu, out)  # dJ/dmu = sum_rows da * min(z, 0)
    np.testing.assert_array_equal(out, [-2.0, -20.0, -3.0])
