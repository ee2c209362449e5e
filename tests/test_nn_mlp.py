"""MLP: parameter layout, forward/backward against hand computations, regularizers,
initializers, float32, persistence, validation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from fnnbench.nn import MLP, get_initializer
from fnnbench.nn.activations import sigmoid, softmax


def blobs(n=30, n_in=4, C=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, size=n)
    X = rng.normal(size=(n, n_in)) + 2.0 * np.eye(C, n_in)[y]
    return X, y


# -- layout ------------------------------------------------------------------------------


def test_params_are_views_of_one_flat_theta():
    net = MLP([4, 5, 3, 2], activation="tanh", seed=0)
    assert list(net.params) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    shapes = {k: v.shape for k, v in net.params.items()}
    assert shapes == {
        "W1": (5, 4),
        "b1": (5,),
        "W2": (3, 5),
        "b2": (3,),
        "W3": (2, 3),
        "b3": (2,),
    }
    assert net.theta.ndim == 1 and net.theta.size == 20 + 5 + 15 + 3 + 6 + 2
    for v in net.params.values():
        assert np.shares_memory(v, net.theta)
    net.theta[:] = 0.5
    assert all(np.all(v == 0.5) for v in net.params.values())
    net.params["b2"][...] = 7.0  # in-place updates through a view land in theta
    assert np.count_nonzero(net.theta == 7.0) == 3
    assert net.n_layers == 3 and net.sizes == [4, 5, 3, 2]
    assert net.layer_keys(2) == ["W2", "b2"]


def test_maxout_and_prelu_layouts():
    net = MLP([4, 5, 3, 2], activation="maxout", activation_kwargs={"k": 3})
    assert net.params["W1"].shape == (15, 4) and net.params["b1"].shape == (15,)
    assert net.params["W2"].shape == (9, 5)
    assert net.params["W3"].shape == (2, 3)  # the output layer is a plain linear layer
    p = MLP([4, 5, 3, 2], activation="prelu", activation_kwargs={"init": 0.1})
    assert list(p.params) == ["W1", "b1", "mu1", "W2", "b2", "mu2", "W3", "b3"]
    assert p.params["mu1"].shape == (5,) and p.params["mu2"].shape == (3,)
    np.testing.assert_array_equal(p.params["mu1"], 0.1)
    assert p.layer_keys(1) == ["W1", "b1", "mu1"] and p.layer_keys(3) == ["W3", "b3"]
    assert MLP([4, 5, 2], activation="prelu").params["mu1"][0] == 0.25


def test_single_layer_of_neurons():
    net = MLP([4, 3], activation="relu", loss="cross_entropy", seed=0)  # hidden sizes []
    assert list(net.params) == ["W1", "b1"] and net.n_layers == 1
    X, y = blobs()
    z = net.forward(X)
    np.testing.assert_allclose(z, X @ net.params["W1"].T + net.params["b1"], rtol=1e-15)
    loss, grads = net.loss_and_grad(X, y)
    T = np.eye(3)[y]
    delta = (softmax(z) - T) / len(y)  # softmax regression
    np.testing.assert_allclose(grads["W1"], delta.T @ X, rtol=1e-12)
    np.testing.assert_allclose(grads["b1"], delta.sum(0), rtol=1e-12)


# -- forward / backward ----------------------------------------------------------------


def test_forward_matches_the_lectures_column_form():
    net = MLP([3, 4, 2], activation="sigmoid", loss="cross_entropy", seed=1)
    x = np.array([0.5, -1.0, 2.0])
    P = net.params
    a1 = sigmoid(P["W1"] @ x + P["b1"])  # z^l = W^l a^{l-1} + b^l, a column
    z2 = P["W2"] @ a1 + P["b2"]
    z, cache = net.forward(x[None, :], cache=True)
    np.testing.assert_allclose(z[0], z2, rtol=1e-14)
    assert cache["z"][0] is None and len(cache["z"]) == len(cache["a"]) == 3
    np.testing.assert_array_equal(cache["a"][0], x[None, :])
    np.testing.assert_allclose(cache["a"][1][0], a1, rtol=1e-14)
    np.testing.assert_allclose(cache["a"][2], softmax(z), rtol=1e-14)  # output unit


def test_backward_matches_the_delta_recursion_by_hand():
    net = MLP([3, 4, 2], activation="tanh", loss="square", seed=2)
    X, _ = blobs(n=5, n_in=3, C=2)
    T = np.random.default_rng(0).normal(size=(5, 2))
    loss, g = net.loss_and_grad(X, T)
    P = net.params
    z1 = X @ P["W1"].T + P["b1"]
    a1 = np.tanh(z1)
    z2 = a1 @ P["W2"].T + P["b2"]
    assert loss == pytest.approx(np.sum((z2 - T) ** 2) / 5, rel=1e-14)
    d2 = 2 * (z2 - T) / 5  # delta^L = grad_yhat J (.) f'(z^L), linear output
    d1 = (1 - a1**2) * (d2 @ P["W2"])  # delta^l = f'(z^l) (.) (W^{l+1})^T delta^{l+1}
    np.testing.assert_allclose(g["W2"], d2.T @ a1, rtol=1e-13)
    np.testing.assert_allclose(g["b2"], d2.sum(0), rtol=1e-13)
    np.testing.assert_allclose(g["W1"], d1.T @ X, rtol=1e-13)
    np.testing.assert_allclose(g["b1"], d1.sum(0), rtol=1e-13)


@pytest.mark.parametrize("activation", ["relu", "prelu", "maxout", "sigmoid"])
def test_out_buffer_batch_of_one_and_batch_mean(activation):
    net = MLP([4, 6, 5, 3], activation=activation, seed=3, regularizer="l2", reg_strength=0.01)
    X, y = blobs(n=8)
    loss, grads = net.loss_and_grad(X, y)
    out = np.full_like(net.theta, np.nan)
    loss2, grads2 = net.loss_and_grad(X, y, out=out)
    assert loss2 == loss
    for k in grads:
        assert np.shares_memory(grads2[k], out)
        np.testing.assert_array_equal(grads2[k], grads[k])
    assert not np.any(np.isnan(out))
    # the mean over a batch is the mean of the per-example losses and gradients
    per_example = [net.loss_and_grad(X[i : i + 1], y[i : i + 1], out=out) for i in range(8)]
    reg = 0.01 * 0.5 * sum(np.sum(net.params[f"W{l}"] ** 2) for l in (1, 2, 3))
    mean_loss = np.mean([j - reg for j, _ in per_example]) + reg
    assert loss == pytest.approx(mean_loss, rel=1e-13)
    # batch-1 gradients (outer-product path) average to the batch gradient
    acc = np.zeros_like(net.theta)
    for i in range(8):
        _, g1 = net.loss_and_grad(X[i : i + 1], y[i : i + 1])
        acc += np.concatenate([g1[k].ravel() for k in net.params])
    full = np.concatenate([grads[k].ravel() for k in net.params])
    np.testing.assert_allclose(acc / 8, full, rtol=1e-12, atol=1e-15)


def test_encoded_targets_give_the_same_result():
    net = MLP([4, 5, 1], activation="elu", loss="hinge", seed=0)
    X, y = blobs(C=2)
    l1, g1 = net.loss_and_grad(X, y)
    l2, g2 = net.loss_and_grad(X, net.loss.encode(y, 1))
    assert l1 == l2
    np.testing.assert_array_equal(g1["W1"], g2["W1"])


@pytest.mark.parametrize("reg", ["l2", "l1"])
def test_regularizer_in_loss_and_gradient_weights_only(reg):
    kw = dict(activation="prelu", loss="cross_entropy", seed=4)
    plain = MLP([4, 5, 3], **kw)
    lam = 0.3
    regd = MLP([4, 5, 3], **kw, regularizer=reg, reg_strength=lam)
    np.testing.assert_array_equal(plain.theta, regd.theta)
    X, y = blobs()
    J0, g0 = plain.loss_and_grad(X, y)
    J1, g1 = regd.loss_and_grad(X, y)
    Ws = [regd.params["W1"], regd.params["W2"]]
    omega = sum(0.5 * np.sum(W**2) for W in Ws) if reg == "l2" else sum(np.abs(W).sum() for W in Ws)
    assert J1 - J0 == pytest.approx(lam * omega, rel=1e-12)
    for k in ["W1", "W2"]:
        dOmega = regd.params[k] if reg == "l2" else np.sign(regd.params[k])
        np.testing.assert_allclose(g1[k] - g0[k], lam * dOmega, rtol=1e-10, atol=1e-15)
    for k in ["b1", "b2", "mu1"]:  # biases and PReLU slopes are not regularized
        np.testing.assert_array_equal(g1[k], g0[k])


def test_deep_linear_network_collapses_to_one_linear_map():
    net = MLP([4, 6, 5, 3, 2], activation="linear", loss="square", seed=5)
    P = net.params
    W = P["W4"] @ P["W3"] @ P["W2"] @ P["W1"]  # W1 W2 ... x = W x
    b = P["b1"]
    for l in (2, 3, 4):  # fold the biases: b <- W^l b + b^l
        P[f"b{l}"][...] = np.random.default_rng(l).normal(size=P[f"b{l}"].shape)
        b = P[f"W{l}"] @ b + P[f"b{l}"]
    X, _ = blobs(n_in=4)
    np.testing.assert_allclose(net.forward(X), X @ W.T + b, rtol=1e-12, atol=1e-12)


def test_float32_forward_backward_close_to_float64():
    X, y = blobs()
    n64 = MLP([4, 8, 3], activation="tanh", seed=6)
    n32 = MLP([4, 8, 3], activation="tanh", seed=6, dtype=np.float32)
    assert n32.theta.dtype == np.float32
    np.testing.assert_allclose(n32.theta, n64.theta, rtol=1e-6)
    n32.theta[:] = n64.theta  # same parameters up to float32 rounding
    l32, g32 = n32.loss_and_grad(X, y)  # X (float64) is cast to float32
    l64, g64 = n64.loss_and_grad(X, y)
    assert l32 == pytest.approx(l64, rel=1e-5)
    for k in g64:
        assert g32[k].dtype == np.float32
        np.testing.assert_allclose(g32[k], g64[k], rtol=1e-3, atol=1e-5)
    assert n32.forward(X).dtype == np.float32
    np.testing.assert_array_equal(n32.predict(X), n64.predict(X))
    out = np.zeros(n32.theta.shape, np.float32)
    n32.loss_and_grad(X, y, out=out)
    assert np.any(out != 0)


def test_huge_inputs_stay_finite():
    X = np.array([[1e4, -1e4, 1e4, -1e4], [-1e4, 1e4, 0.0, 1.0]])
    for act in ["sigmoid", "tanh", "elu", "relu", "maxout"]:
        for loss in ["cross_entropy", "logistic", "square", "hinge"]:
            net = MLP([4, 5, 3], activation=act, loss=loss, seed=0)
            # underflow to 0 is the exact rounded result; everything else raises
            with np.errstate(over="raise", invalid="raise", divide="raise"):
                J, g = net.loss_and_grad(X, np.array([0, 2]))
                P = net.predict_proba(X)
            assert math.isfinite(J) and np.all(np.isfinite(net.theta))
            assert all(np.all(np.isfinite(v)) for v in g.values()) and np.all(np.isfinite(P))


def test_predict_and_proba_shapes():
    X, y = blobs()
    multi = MLP([4, 6, 3], seed=0)
    assert multi.predict_proba(X).shape == (30, 3)
    pred = multi.predict(X)
    assert pred.dtype == np.int64 and set(pred) <= {0, 1, 2}
    binary = MLP([4, 6, 1], seed=0)
    P = binary.predict_proba(X)
    assert P.shape == (30, 2) and binary.n_classes == 2
    np.testing.assert_allclose(P.sum(1), 1.0, rtol=1e-14)
    np.testing.assert_array_equal(binary.predict(X), P.argmax(1))


def test_gradient_descent_learns_xor():
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([0, 1, 1, 0])
    net = MLP([2, 4, 1], activation="tanh", loss="cross_entropy", seed=0)
    Xc, T = net.prepare(X, y)
    first = None
    g = np.empty_like(net.theta)
    for _ in range(1500):
        J, _ = net.loss_and_grad_encoded(Xc, T, g)
        first = J if first is None else first
        net.theta -= 0.5 * g
    assert J < 0.1 * first
    np.testing.assert_array_equal(net.predict(X), y)


# -- initialisation ----------------------------------------------------------------------


def test_default_initializers_per_activation():
    relu = MLP([400, 300, 2], activation="relu", seed=0)
    assert relu.init_name == "he_normal"
    assert np.std(relu.params["W1"]) == pytest.approx(math.sqrt(2 / 400), rel=0.02)
    tanh = MLP([400, 300, 2], activation="tanh", seed=0)
    assert tanh.init_name == "glorot_uniform"
    r = math.sqrt(6 / 700)
    W = tanh.params["W1"]
    assert W.max() <= r and W.min() >= -r and W.max() > 0.99 * r
    assert np.all(relu.params["b1"] == 0) and np.all(tanh.params["b2"] == 0)
    for act in ["leaky_relu", "prelu", "elu", "shifted_relu", "maxout"]:
        assert MLP([3, 2, 2], activation=act).init_name == "he_normal"
    for act in ["sigmoid", "linear"]:
        assert MLP([3, 2, 2], activation=act).init_name == "glorot_uniform"


@pytest.mark.parametrize(
    ("name", "kind", "scale"),
    [
        ("standard", "uniform", 1 / math.sqrt(400)),
        ("glorot_uniform", "uniform", math.sqrt(6 / 700)),
        ("he_uniform", "uniform", math.sqrt(6 / 400)),
        ("glorot_normal", "normal", math.sqrt(2 / 700)),
        ("he_normal", "normal", math.sqrt(2 / 400)),
        ("lecun_normal", "normal", math.sqrt(1 / 400)),
        ("normal", "normal", 0.05),
    ],
)
def test_initializer_scales(name, kind, scale):
    net = MLP([400, 300, 2], activation="relu", init=name, init_sigma=0.05, seed=1)
    W = net.params["W1"]
    if kind == "uniform":
        assert np.abs(W).max() <= scale and np.abs(W).max() > 0.99 * scale
        assert np.std(W) == pytest.approx(scale / math.sqrt(3), rel=0.02)
    else:
        assert np.std(W) == pytest.approx(scale, rel=0.02)
    assert abs(np.mean(W)) < 0.01 * scale * 10
    f = get_initializer(name, sigma=0.05)
    assert f((3, 2), np.random.default_rng(0), np.float32).dtype == np.float32


def test_seeded_and_reproducible():
    a = MLP([3, 5, 2], seed=7)
    b = MLP([3, 5, 2], seed=7)
    c = MLP([3, 5, 2], seed=8)
    np.testing.assert_array_equal(a.theta, b.theta)
    assert not np.array_equal(a.theta, c.theta)


# -- config and persistence --------------------------------------------------------------


def test_config_is_json_and_rebuilds_the_net():
    net = MLP(
        [4, 6, 3],
        activation="leaky_relu",
        loss="square",
        seed=3,
        dtype=np.float32,
        activation_kwargs={"slope": np.float64(0.1)},
        loss_kwargs={"output": "softmax"},
        init="he_uniform",
        regularizer="l2",
        reg_strength=0.01,
    )
    cfg = net.config
    assert json.loads(json.dumps(cfg)) == cfg
    assert cfg["dtype"] == "float32" and cfg["sizes"] == [4, 6, 3]
    assert cfg["activation_kwargs"] == {"slope": 0.1}
    twin = MLP(**cfg)
    np.testing.assert_array_equal(twin.theta, net.theta)
    assert twin.loss.output == "softmax" and twin.activation.slope == 0.1


@pytest.mark.parametrize("activation", ["prelu", "maxout", "relu"])
def test_save_load_round_trip(tmp_path, activation):
    net = MLP([4, 5, 3], activation=activation, seed=2, regularizer="l1", reg_strength=0.1)
    net.theta += 0.01 * np.arange(net.theta.size)  # not the seeded init
    path = tmp_path / "net"  # written at exactly this path, no suffix added
    net.save(path)
    assert path.exists()
    with np.load(path, allow_pickle=False) as f:
        assert f["config"].dtype.kind == "U" and f["config"].shape == ()
    back = MLP.load(path)
    np.testing.assert_array_equal(back.theta, net.theta)
    assert back.config == net.config
    X, y = blobs()
    np.testing.assert_array_equal(back.forward(X), net.forward(X))
    assert back.loss_and_grad(X, y)[0] == net.loss_and_grad(X, y)[0]


def test_load_rejects_foreign_files(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, a=np.zeros(3))
    with pytest.raises(ValueError, match="not an MLP file"):
        MLP.load(path)
    net = MLP([3, 2])
    cfg = np.array(json.dumps(net.config))
    np.savez(path, config=cfg, W1=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="parameter 'b1' is missing"):
        MLP.load(path)
    np.savez(path, config=cfg, W1=np.zeros((3, 3)), b1=np.zeros(2))
    with pytest.raises(ValueError, match=r"'W1' has shape \(3, 3\), expected \(2, 3\)"):
        MLP.load(path)


# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sizes": [4]}, "at least 2 entries"),
        ({"sizes": []}, "at least 2 entries"),
        ({"sizes": [4, 0, 2]}, r"sizes must be positive \(width >= 1\), got 0"),
        ({"sizes": [4, -3, 2]}, "sizes must be positive"),
        ({"sizes": [4, 2.5, 2]}, "sizes must be positive integers, got 2.5"),
        ({"sizes": 5}, "sizes must be a list"),
        ({"activation": "swish"}, r"unknown activation 'swish'; expected one of: linear"),
        ({"activation": "softmax"}, "'softmax' is an output unit"),
        ({"loss": "mse"}, "unknown loss 'mse'"),
        ({"init": "orthogonal"}, "unknown init 'orthogonal'"),
        ({"init": "normal", "init_sigma": -1.0}, "init_sigma must be a finite number > 0"),
        ({"regularizer": "l3"}, "unknown regularizer 'l3'"),
        ({"regularizer": "l2", "reg_strength": -0.1}, "reg_strength must be >= 0"),
        ({"reg_strength": float("nan")}, "reg_strength must be a finite number"),
        ({"dtype": np.int32}, "dtype must be float32 or float64"),
        ({"loss": "square", "loss_kwargs": {"output": "softmax"}, "sizes": [4, 1]}, "n_out >= 2"),
        ({"activation_kwargs": {"slope": 0.1}}, r"'relu' got unknown parameter"),
        ({"seed": 1.5}, "seed must be an integer"),
    ],
)
def test_bad_constructor_arguments(kwargs, match):
    kwargs = {"sizes": [4, 3, 2], **kwargs}
    with pytest.raises(ValueError, match=match):
        MLP(**kwargs)


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (np.zeros(4), np.zeros(1, int), r"X must be a 2-D array .* got shape \(4,\)"),
        (np.zeros((2, 5)), np.zeros(2, int), "X has 5 features but the network expects 4"),
        (np.zeros((3, 4)), np.zeros(2, int), "mismatched lengths: X has 3 rows, y has 2"),
        (np.zeros((2, 4)), np.array([0, 3]), r"labels y out of range: .*\[0, 3\)"),
        (np.zeros((2, 4)), np.array([0, -1]), "labels y out of range"),
        (np.zeros((2, 4)), np.array([0.0, 1.5]), "non-integer"),
        (np.array([[0, 0, 0, np.nan], [0, 0, 0, 0]]), np.zeros(2, int), "X contains non-finite"),
        (np.array([[0, 0, 0, np.inf], [0, 0, 0, 0]]), np.zeros(2, int), "X contains non-finite"),
        (np.zeros((2, 4)), np.zeros((2, 2)), r"encoded targets must have shape \(n, 3\)"),
        (np.zeros((2, 4)), np.zeros((2, 3), int), "2-D targets must be a float array"),
        (np.zeros((2, 4)), np.full((2, 3), np.nan), "targets y contain non-finite"),
        (np.zeros((2, 4)), np.zeros((2, 3, 1)), "y must be 1-D integer labels or 2-D"),
        (np.array([["a"] * 4]), np.zeros(1, int), "X must be numeric"),
    ],
)
def test_bad_data(X, y, match):
    net = MLP([4, 5, 3])
    with pytest.raises(ValueError, match=match):
        net.loss_and_grad(X, y)


def test_bad_inputs_to_forward_predict_out_and_layer_keys():
    net = MLP([4, 5, 3])
    for method in (net.forward, net.predict, net.predict_proba):
        with pytest.raises(ValueError, match="X has 3 features"):
            method(np.zeros((2, 3)))
    X, y = blobs()
    with pytest.raises(ValueError, match="out must be a 1-D array of shape"):
        net.loss_and_grad(X, y, out=np.zeros(3))
    with pytest.raises(ValueError, match="out must have dtype float64"):
        net.loss_and_grad(X, y, out=np.zeros(net.theta.shape, np.float32))
    with pytest.raises(ValueError, match="not sharing memory with theta"):
        net.loss_and_grad(X, y, out=net.theta)
    with pytest.raises(ValueError, match=r"layer index must be in 1..2, got 3"):
        net.layer_keys(3)
    with pytest.raises(ValueError, match="labels y out of range"):
        MLP([4, 1]).loss_and_grad(X, y)  # binary net, three classes in y


def test_registries_reject_non_string_names():
    from fnnbench.nn import get_activation, get_loss, get_regularizer

    with pytest.raises(ValueError, match="unknown activation"):
        get_activation(["relu"])
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss(3)
    with pytest.raises(ValueError, match="unknown regularizer"):
        get_regularizer(["l2"])
    with pytest.raises(ValueError, match="unknown init"):
        get_initializer(None)


def test_every_regularizer_is_a_regularizer_and_the_base_is_abstract():
    from fnnbench.nn import REGULARIZERS, Regularizer, get_regularizer

    assert list(REGULARIZERS) == ["none", "l2", "l1"]
    for name, cls in REGULARIZERS.items():
        reg = get_regularizer(name, 0.1)
        assert isinstance(reg, Regularizer) and type(reg) is cls and reg.name == name

    class NoGrad(Regularizer):
        name = "no_grad"

        def omega(self, W):
            return 0.0

    with pytest.raises(TypeError, match="abstract"):
        NoGrad()


# -- the step API ------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "prelu", "maxout"])
def test_step_api_agrees_with_the_validated_path(activation):
    net = MLP([4, 6, 5, 3], activation=activation, seed=3, regularizer="l2", reg_strength=0.01)
    X, y = blobs(n=8)
    J, grads = net.loss_and_grad(X, y)
    Xc, T = net.prepare(X, y)
    # feedforward into a workspace: the arrays are its buffers
    ws = net.workspace(8)
    zs, as_ = net.feedforward(Xc, ws)
    assert all(zs[l] is ws.z[l] for l in (1, 2, 3)) and all(as_[l] is ws.a[l] for l in (1, 2))
    np.testing.assert_array_equal(zs[-1], net.forward(X))
    # backprop into a flat buffer; layer_views are views of it in the order of params
    grad = np.zeros_like(net.theta)
    assert net.backprop(Xc, T, grad, ws) == J
    layers = net.layer_views(grad)
    assert layers[0] is None and len(layers) == net.n_layers + 1
    for l in range(1, net.n_layers + 1):
        views = [v for v in layers[l] if v is not None]
        assert len(views) == len(net.layer_keys(l))
        for key, v in zip(net.layer_keys(l), views, strict=True):
            assert np.shares_memory(v, grad)
            np.testing.assert_array_equal(v, grads[key])
    # backward from a forward pass, and the encoded fast paths
    fresh = net.layer_views(np.empty_like(net.theta))
    assert net.backward(*net.feedforward(Xc), T, fresh) == J
    J2, g2 = net.loss_and_grad_encoded(Xc, T)
    assert J2 == J == net.loss_encoded(Xc, T) and g2.keys() == grads.keys()
