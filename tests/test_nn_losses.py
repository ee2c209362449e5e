"""Losses: closed forms, fused gradients against finite differences, encodings, stability."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fnnbench.nn import LOSSES, Loss, get_loss
from fnnbench.nn.losses import check_labels

# (name, n_out, kwargs): every loss in its binary and multi-class form, square's outputs
CASES = [
    ("cross_entropy", 1, {}),
    ("cross_entropy", 3, {}),
    ("square", 1, {}),
    ("square", 3, {}),
    ("square", 1, {"output": "sigmoid"}),
    ("square", 3, {"output": "sigmoid"}),
    ("square", 3, {"output": "softmax"}),
    ("hinge", 1, {}),
    ("hinge", 3, {}),
    ("logistic", 1, {}),
    ("logistic", 3, {}),
]
IDS = [f"{n}-{k}-{kw.get('output', '')}" for n, k, kw in CASES]


def data(n_out, n=6, seed=0, scale=1.5):
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=scale, size=(n, n_out))
    y = rng.integers(0, max(2, n_out), size=n)
    return z, y


def test_registry_and_outputs():
    assert set(LOSSES) == {"cross_entropy", "square", "hinge", "logistic"}
    assert get_loss("cross_entropy", n_out=1).output == "sigmoid"
    assert get_loss("cross_entropy", n_out=4).output == "softmax"
    assert get_loss("square").output == "linear"
    assert get_loss("square", output="sigmoid").output == "sigmoid"
    assert get_loss("hinge").output == "linear"
    assert get_loss("logistic").output == "linear"


def test_bad_names_and_parameters():
    with pytest.raises(ValueError, match=r"unknown loss 'mse'.*cross_entropy.*logistic"):
        get_loss("mse")
    with pytest.raises(ValueError, match=r"unknown output 'tanh' for square loss"):
        get_loss("square", output="tanh")
    with pytest.raises(ValueError, match=r"'hinge' got unknown parameter\(s\) \['output'\]"):
        get_loss("hinge", output="linear")
    with pytest.raises(ValueError, match="output 'softmax' needs n_out >= 2"):
        get_loss("square", n_out=1, output="softmax")


def test_encodings():
    y = np.array([0, 1, 1, 0])
    np.testing.assert_array_equal(get_loss("cross_entropy").encode(y, 1)[:, 0], [0, 1, 1, 0])
    np.testing.assert_array_equal(get_loss("square").encode(y, 1)[:, 0], [0, 1, 1, 0])
    np.testing.assert_array_equal(get_loss("hinge").encode(y, 1)[:, 0], [-1, 1, 1, -1])
    np.testing.assert_array_equal(get_loss("logistic").encode(y, 1)[:, 0], [-1, 1, 1, -1])
    y3 = np.array([2, 0])
    one_hot = [[0, 0, 1], [1, 0, 0]]
    for name in ["cross_entropy", "square", "hinge"]:
        np.testing.assert_array_equal(get_loss(name).encode(y3, 3), one_hot)
    np.testing.assert_array_equal(get_loss("logistic").encode(y3, 3), [[-1, -1, 1], [1, -1, -1]])
    assert get_loss("square").encode(y3, 3, np.float32).dtype == np.float32
    # integer-valued floats and bools are fine as labels
    np.testing.assert_array_equal(check_labels(np.array([0.0, 2.0]), 3), [0, 2])
    np.testing.assert_array_equal(check_labels(np.array([True, False]), 2), [1, 0])


@pytest.mark.parametrize(
    ("y", "C", "match"),
    [
        (np.array([0, 3]), 3, r"labels y out of range: expected integers in \[0, 3\)"),
        (np.array([-1, 0]), 2, "labels y out of range"),
        (np.array([0.5, 1.0]), 2, "labels y must be integers, got non-integer"),
        (np.array([0.0, np.nan]), 2, "non-finite"),
        (np.array([[0, 1]]), 2, "must be a 1-D array"),
        (np.array(["a", "b"]), 2, "labels y must be integers, got dtype"),
    ],
)
def test_bad_labels(y, C, match):
    with pytest.raises(ValueError, match=match):
        check_labels(y, C)


def test_cross_entropy_known_values():
    z = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    y = np.array([1, 2])
    loss = get_loss("cross_entropy", n_out=3)
    T = loss.encode(y, 3)
    h = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    expected = -(math.log(h[0, 1]) + math.log(h[1, 2])) / 2
    assert loss.value(z, T) == pytest.approx(expected, rel=1e-14)
    # fused gradient of the lecture's softmax slide: (h - e_y) / n
    np.testing.assert_allclose(loss.grad(z, T), (h - T) / 2, rtol=1e-14)
    # binary: -t log s - (1 - t) log(1 - s)
    zb = np.array([[0.3], [-2.0]])
    Tb = np.array([[1.0], [0.0]])
    s = 1 / (1 + np.exp(-zb))
    bce = -np.mean(Tb * np.log(s) + (1 - Tb) * np.log(1 - s))
    binary = get_loss("cross_entropy", n_out=1)
    assert binary.value(zb, Tb) == pytest.approx(bce, rel=1e-14)
    np.testing.assert_allclose(binary.grad(zb, Tb), (s - Tb) / 2, rtol=1e-14)


def test_square_known_values():
    z = np.array([[0.5, -1.0], [2.0, 0.0]])
    T = np.array([[1.0, 0.0], [0.0, 1.0]])
    loss = get_loss("square")
    assert loss.value(z, T) == pytest.approx((0.25 + 1 + 4 + 1) / 2, rel=1e-15)
    np.testing.assert_allclose(loss.grad(z, T), 2 * (z - T) / 2, rtol=1e-15)


def test_hinge_known_values():
    binary = get_loss("hinge")
    z = np.array([[0.5], [-2.0], [3.0]])
    T = np.array([[1.0], [-1.0], [-1.0]])  # margins 0.5, -1, 4
    assert binary.value(z, T) == pytest.approx((0.5 + 0 + 4) / 3, rel=1e-15)
    np.testing.assert_allclose(binary.grad(z, T), [[-1 / 3], [0], [1 / 3]], rtol=1e-15)
    ww = get_loss("hinge")
    s = np.array([[3.0, 2.5, -1.0]])  # true class 0: margins 1+2.5-3 = 0.5, 1-1-3 < 0
    T = np.array([[1.0, 0.0, 0.0]])
    assert ww.value(s, T) == pytest.approx(0.5, rel=1e-15)
    np.testing.assert_allclose(ww.grad(s, T), [[-1.0, 1.0, 0.0]], rtol=1e-15)


def test_logistic_equals_binary_cross_entropy():
    z, y = data(1, n=50, scale=5.0)
    logistic = get_loss("logistic")
    bce = get_loss("cross_entropy", n_out=1)
    t = logistic.encode(y, 1)
    assert logistic.value(z, t) == pytest.approx(bce.value(z, bce.encode(y, 1)), rel=1e-13)
    np.testing.assert_allclose(logistic.grad(z, t), bce.grad(z, bce.encode(y, 1)), rtol=1e-10)
    np.testing.assert_allclose(logistic.proba(z), bce.proba(z), rtol=1e-15)
    np.testing.assert_array_equal(logistic.predict(z), bce.predict(z))
    # and against the lecture's formula log(1 + exp(-y s)) where that is safe
    assert logistic.value(z, t) == pytest.approx(np.mean(np.log1p(np.exp(-t * z))), rel=1e-13)


@pytest.mark.parametrize(("name", "n_out", "kw"), CASES, ids=IDS)
def test_grad_matches_finite_differences(name, n_out, kw):
    loss = get_loss(name, n_out=n_out, **kw)
    z, y = data(n_out)
    T = loss.encode(y, n_out)
    if name == "hinge":  # keep margins away from the kink
        if n_out == 1:
            margin = np.abs(1 - T * z)
        else:
            margin = np.abs(1 + z - np.sum(T * z, axis=1, keepdims=True))[T == 0]
        assert margin.min() > 1e-3
    J, g = loss.value_and_grad(z, T)
    assert J == loss.value(z, T)
    np.testing.assert_array_equal(g, loss.grad(z, T))
    num = np.zeros_like(z)
    h = 1e-6
    for i in np.ndindex(z.shape):
        zp, zm = z.copy(), z.copy()
        zp[i] += h
        zm[i] -= h
        num[i] = (loss.value(zp, T) - loss.value(zm, T)) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(("name", "n_out", "kw"), CASES, ids=IDS)
def test_proba_and_predict(name, n_out, kw):
    loss = get_loss(name, n_out=n_out, **kw)
    z, _ = data(n_out, n=40)
    P = loss.proba(z)
    C = max(2, n_out)
    assert P.shape == (40, C)
    assert np.all(P >= 0) and np.all(P <= 1)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-12)
    pred = loss.predict(z)
    assert pred.dtype == np.int64 and pred.shape == (40,)
    np.testing.assert_array_equal(pred, P.argmax(axis=1))


def test_square_linear_proba_is_the_simplex_projection():
    loss = get_loss("square", n_out=3)
    z = np.array([[0.2, 0.5, 0.1], [-1.0, -2.0, -0.5], [0.6, 0.6, 0.6], [2.0, 0.0, 0.0]])
    expected = [
        [0.2 + 1 / 15, 0.5 + 1 / 15, 0.1 + 1 / 15],
        [0.25, 0.0, 0.75],
        [1 / 3] * 3,
        [1.0, 0.0, 0.0],
    ]
    np.testing.assert_allclose(loss.proba(z), expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(
        get_loss("square").proba(np.array([[1.7], [0.3]])), [[0, 1], [0.7, 0.3]]
    )


def test_binary_thresholds():
    z = np.array([[-0.1], [0.1], [0.4], [0.6]])
    for name in ["cross_entropy", "hinge", "logistic"]:  # 0 on scores / 0.5 on sigmoid
        np.testing.assert_array_equal(get_loss(name, n_out=1).predict(z), [0, 1, 1, 1])
    np.testing.assert_array_equal(get_loss("square").predict(z), [0, 0, 0, 1])  # yhat > 0.5
    sq_sigmoid = get_loss("square", output="sigmoid")
    np.testing.assert_array_equal(sq_sigmoid.predict(z), [0, 1, 1, 1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("name", "n_out", "kw"), CASES, ids=IDS)
def test_no_warnings_no_nan_at_1e4(name, n_out, kw, dtype):
    loss = get_loss(name, n_out=n_out, **kw)
    z = np.array([[1e4] * n_out, [-1e4] * n_out, [0.0] * n_out], dtype=dtype)
    if n_out > 1:
        z[0, 0] = -1e4
    y = np.array([0, 1, 1])
    T = loss.encode(y, n_out, dtype)
    with np.errstate(all="raise"):
        J, g = loss.value_and_grad(z, T)
        P = loss.proba(z)
        pred = loss.predict(z)
    assert math.isfinite(J)
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(P))
    assert g.dtype == dtype
    assert pred.shape == (3,)


def test_cross_entropy_huge_logits_exact():
    loss = get_loss("cross_entropy", n_out=2)
    z = np.array([[1e4, -1e4]])
    with np.errstate(all="raise"):
        assert loss.value(z, np.array([[1.0, 0.0]])) == 0.0
        assert loss.value(z, np.array([[0.0, 1.0]])) == pytest.approx(2e4, rel=1e-15)


# -- the contract --------------------------------------------------------------------------


def test_every_loss_is_a_loss():
    for name, cls in LOSSES.items():
        loss = get_loss(name, n_out=3)
        assert isinstance(loss, Loss) and type(loss) is cls and loss.name == name
    assert LOSSES["square"].hyperparameters == ("output",)
    assert all(not LOSSES[n].hyperparameters for n in ("cross_entropy", "hinge", "logistic"))


def test_an_incomplete_loss_cannot_be_instantiated():
    class NoProba(Loss):
        name = "no_proba"

        @property
        def output(self):
            return "linear"

        def value_and_grad(self, z, T, out=None):
            return 0.0, np.zeros_like(z)

    with pytest.raises(TypeError, match="abstract"):
        NoProba()
