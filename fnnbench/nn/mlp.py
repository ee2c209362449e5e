"""The multilayer perceptron: forward pass, backpropagation, parameters in one flat buffer.

Notation of the lecture, layer ``l = 1..L``: ``z^l = W^l a^{l-1} + b^l``, ``a^l = f(z^l)``,
``a^0 = x``; the output layer has no hidden activation: the loss applies its output unit to
``z^L`` and returns the fused ``delta^L = dJ/dz^L``. Backpropagation:
``delta^l = f'(z^l) (.) (W^{l+1})^T delta^{l+1}``, ``dJ/dW^l = delta^l (a^{l-1})^T``,
``dJ/db^l = delta^l``.

Row form: rows of ``X`` are examples, so every column vector of the lecture is a row here
and a batch stacks them: ``z (n, n_l) = a (n, n_{l-1}) @ W.T + b``,
``delta^l = f'(z^l) (.) (delta^{l+1} @ W^{l+1})`` and ``dJ/dW^l = delta^T @ a^{l-1}``
(summed over the batch; the 1/n of the batch mean is already inside ``delta^L``).

The step API (no validation, for the trainer; ``X (n, n_in)`` in the net dtype, ``T (n, n_out)``
targets encoded by ``net.loss.encode``): :meth:`MLP.feedforward` (the forward pass, into a
:class:`Workspace` when given), :meth:`MLP.backward` (backpropagation from a forward pass into
the :meth:`MLP.layer_views` of a gradient buffer), :meth:`MLP.backprop` (both, into a flat
gradient buffer: the training step), :meth:`MLP.loss_and_grad_encoded` and
:meth:`MLP.loss_encoded`. The validating methods (``forward``, ``loss_and_grad``, ``predict``)
check their inputs and then call these.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

from fnnbench.nn.activations import HIDDEN_ACTIVATIONS, get_activation, sigmoid
from fnnbench.nn.activations import softmax as _softmax
from fnnbench.nn.init import default_init, get_initializer
from fnnbench.nn.losses import get_loss, n_classes
from fnnbench.nn.regularizers import get_regularizer

__all__ = ["MLP", "Workspace"]

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class Workspace:
    """Preallocated arrays for batches of ``n`` rows: the trainer's step allocates nothing.

    ``z[l] (n, rows_l)`` for ``l = 1..L`` and ``a[l] (n, n_l)`` for the hidden layers (the
    forward pass); ``dz (n, n_out)`` receives ``delta^L`` from the loss and ``da[l] (n, n_l)``
    receives ``dJ/da^l``, turned into ``delta^l`` in place (the backward pass). Index 0 is
    None (``a^0`` is the batch itself). Each call overwrites the previous one's arrays, so one
    workspace serves one batch size at a time (the trainer keeps one per batch size).
    """

    def __init__(self, net: MLP, n: int):
        dt, L, sizes = net.dtype, net.n_layers, net.sizes
        k = net.activation.pieces
        self.n = int(n)
        self.z = [None] + [
            np.empty((n, sizes[l] * (k if l < L else 1)), dt) for l in range(1, L + 1)
        ]
        self.a = [None] + [np.empty((n, sizes[l]), dt) for l in range(1, L)]
        self.da = [None] + [np.empty((n, sizes[l]), dt) for l in range(1, L)]
        self.dz = np.empty((n, sizes[L]), dt)


def _check_sizes(sizes) -> list[int]:
    try:
        sizes = list(sizes)
    except TypeError:
        raise ValueError(f"sizes must be a list of layer widths, got {sizes!r}") from None
    if len(sizes) < 2:
        raise ValueError(f"sizes must have at least 2 entries [n_in, ..., n_out], got {sizes!r}")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)):
            raise ValueError(f"sizes must be positive integers, got {s!r} in {sizes!r}")
        if s <= 0:
            raise ValueError(f"sizes must be positive (width >= 1), got {s!r} in {sizes!r}")
    return [int(s) for s in sizes]


def _plain(obj):
    """Numpy scalars inside kwargs -> Python numbers, for a JSON config."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


class MLP:
    """A fully connected feedforward network ``sizes = [n_in, *hidden, n_out]``.

    ``hidden = []`` is a single layer of neurons. ``n_out == 1`` means a binary problem with
    one output unit. Parameters live in one flat array ``theta`` (``dtype``, float64 by
    default); ``params`` maps ``W1, b1[, mu1], ..., WL, bL`` to views of it, in that order:
    ``W^l (n_l, n_{l-1})`` (hidden layers: ``(k*n_l, n_{l-1})`` with ``k =
    activation.pieces``, 1 but for maxout, pieces of unit ``i`` in rows ``i*k..i*k+k-1``),
    ``b^l (n_l,)`` (hidden: ``(k*n_l,)``), and the hidden activation's learnable parameters
    ``<activation.param_name><l>`` of shape ``activation.param_shape(n_l)`` (PReLU slopes
    ``mu^l (n_l,)``). Update parameters in place (``theta -= lr * grad``).

    Weights from ``init`` (None -> He normal for the ReLU family and maxout, Glorot uniform
    otherwise) with ``np.random.default_rng(seed)``; biases 0; activation parameters from
    ``activation.init_param`` (PReLU slopes: ``activation_kwargs["init"]``, 0.25). The
    regularizer ``lambda * Omega`` acts on weights only.
    """

    def __init__(
        self,
        sizes,
        activation: str = "relu",
        loss: str = "cross_entropy",
        seed: int | None = 0,
        dtype=np.float64,
        *,
        activation_kwargs: dict | None = None,
        loss_kwargs: dict | None = None,
        init: str | None = None,
        init_sigma: float = 0.01,
        regularizer: str | None = None,
        reg_strength: float = 0.0,
    ):
        self.sizes = _check_sizes(sizes)
        self.n_layers = len(self.sizes) - 1
        try:
            self.dtype = np.dtype(dtype)
        except TypeError:
            raise ValueError(f"unknown dtype {dtype!r}; expected float32 or float64") from None
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        if activation == "softmax":
            raise ValueError(
                "activation 'softmax' is an output unit, not a hidden activation; use "
                "loss='cross_entropy' (or square with output='softmax'); hidden activations: "
                + ", ".join(HIDDEN_ACTIVATIONS)
            )
        if not isinstance(activation, str) or activation not in HIDDEN_ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; expected one of: "
                + ", ".join(HIDDEN_ACTIVATIONS)
            )
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        activation_kwargs = _plain(dict(activation_kwargs or {}))
        loss_kwargs = _plain(dict(loss_kwargs or {}))
        self.activation = get_activation(activation, **activation_kwargs)
        self.loss = get_loss(loss, n_out=self.sizes[-1], **loss_kwargs)
        self.regularizer = get_regularizer(regularizer, reg_strength)
        self.init_name = default_init(activation) if init is None else init
        initializer = get_initializer(self.init_name, init_sigma)
        self._config = {
            "sizes": list(self.sizes),
            "activation": activation,
            "loss": loss,
            "seed": None if seed is None else int(seed),
            "dtype": self.dtype.name,
            "activation_kwargs": activation_kwargs,
            "loss_kwargs": loss_kwargs,
            "init": init,
            "init_sigma": float(init_sigma),
            "regularizer": regularizer,
            "reg_strength": float(reg_strength),
        }

        act = self.activation
        # layout of theta: (key, offset, shape), layer by layer W, b[, activation parameter];
        # self._keys[l] = (W key, b key, key of the activation's parameter after it or None)
        self._layout: list[tuple[str, int, tuple[int, ...]]] = []
        self._keys: list = [None]
        offset = 0
        for l in range(1, self.n_layers + 1):
            n_prev, n_l = self.sizes[l - 1], self.sizes[l]
            hidden = l < self.n_layers
            rows = act.pieces * n_l if hidden else n_l
            shapes = [(f"W{l}", (rows, n_prev)), (f"b{l}", (rows,))]
            p_shape = act.param_shape(n_l) if hidden else None
            p_key = None if p_shape is None else f"{act.param_name}{l}"
            if p_key is not None:
                shapes.append((p_key, p_shape))
            self._keys.append((f"W{l}", f"b{l}", p_key))
            for key, shape in shapes:
                self._layout.append((key, offset, shape))
                offset += math.prod(shape)
        self.theta = np.zeros(offset, dtype=self.dtype)
        self.params: dict[str, np.ndarray] = self._views(self.theta)
        # one slot: the views of the last gradient buffer (the trainer reuses one buffer)
        self._grad_views: tuple[np.ndarray, dict[str, np.ndarray], list] | None = None
        self._layer_params = self.layer_views(self.theta)
        # the forward pass's view of layer l: (W^T, b, p or None), made once
        self._forward_params = [(W.T, b, p) for W, b, p in self._layer_params[1:]]

        rng = np.random.default_rng(seed)
        for l in range(1, self.n_layers + 1):
            W = self.params[f"W{l}"]
            W[...] = initializer(W.shape, rng, self.dtype)
            p_key = self._keys[l][2]
            if p_key is not None:
                act.init_param(self.params[p_key])

    # -- layout -------------------------------------------------------------------------
    def _views(self, buf: np.ndarray) -> dict[str, np.ndarray]:
        """Dict of views into the flat buffer ``buf`` with the keys and shapes of ``params``."""
        return {key: buf[o : o + math.prod(s)].reshape(s) for key, o, s in self._layout}

    def layer_keys(self, l: int) -> list[str]:
        """Parameter keys of layer ``l`` (1..L): ``["W<l>", "b<l>"]`` plus the activation's
        parameter (PReLU: ``"mu<l>"``) on a hidden layer."""
        if (
            isinstance(l, bool)
            or not isinstance(l, (int, np.integer))
            or not 1 <= l <= self.n_layers
        ):
            raise ValueError(f"layer index must be in 1..{self.n_layers}, got {l!r}")
        return [key for key in self._keys[l] if key is not None]

    @property
    def n_classes(self) -> int:
        """Number of classes C (2 when ``n_out == 1``)."""
        return n_classes(self.sizes[-1])

    @property
    def config(self) -> dict[str, Any]:
        """The constructor kwargs, JSON-serialisable: ``MLP(**net.config)`` rebuilds the net."""
        return json.loads(json.dumps(self._config))

    def __repr__(self) -> str:
        return (
            f"MLP(sizes={self.sizes}, activation={self.activation!r}, loss={self.loss!r}, "
            f"regularizer={self.regularizer!r}, dtype={self.dtype.name}, "
            f"n_params={self.theta.size})"
        )

    # -- validation ---------------------------------------------------------------------
    def check_X(self, X) -> np.ndarray:
        """Validate inputs ``X (n, n_in)``: 2-D, numeric, finite; returns it in the net dtype."""
        X = np.asarray(X)
        if X.ndim != 2:
            raise ValueError(f"X must be a 2-D array (n_examples, n_features), got shape {X.shape}")
        if X.shape[1] != self.sizes[0]:
            raise ValueError(
                f"X has {X.shape[1]} features but the network expects {self.sizes[0]} (sizes[0])"
            )
        if X.dtype.kind not in "biuf":
            raise ValueError(f"X must be numeric, got dtype {X.dtype}")
        X = X.astype(self.dtype, copy=False)
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains non-finite values (NaN or inf)")
        return X

    def encode(self, y) -> np.ndarray:
        """Labels ``y (n,)`` -> targets ``T (n, n_out)`` for the loss, in the net dtype."""
        return self.loss.encode(y, self.sizes[-1], self.dtype)

    def prepare(self, X, y) -> tuple[np.ndarray, np.ndarray]:
        """Validate ``X`` and ``y`` once -> ``(X, T)`` ready for :meth:`loss_and_grad_encoded`.

        ``y`` is a 1-D array of integer labels in ``[0, C)`` or a 2-D float array already
        encoded by ``net.loss.encode`` (shape ``(n, n_out)``).
        """
        X = self.check_X(X)
        y = np.asarray(y)
        n, n_out = X.shape[0], self.sizes[-1]
        if y.ndim == 1:
            if y.shape[0] != n:
                raise ValueError(
                    f"X and y have mismatched lengths: X has {n} rows, y has {y.shape[0]}"
                )
            return X, self.encode(y)
        if y.ndim == 2:
            if y.shape[0] != n:
                raise ValueError(
                    f"X and y have mismatched lengths: X has {n} rows, y has {y.shape[0]}"
                )
            if y.dtype.kind != "f":
                raise ValueError(
                    "2-D targets must be a float array encoded by net.loss.encode; "
                    f"got dtype {y.dtype} (pass integer class labels as a 1-D array)"
                )
            if y.shape[1] != n_out:
                raise ValueError(f"encoded targets must have shape (n, {n_out}), got {y.shape}")
            if not np.all(np.isfinite(y)):
                raise ValueError("targets y contain non-finite values (NaN or inf)")
            return X, y.astype(self.dtype, copy=False)
        raise ValueError(
            f"y must be 1-D integer labels or 2-D encoded targets, got shape {y.shape}"
        )

    # -- forward ------------------------------------------------------------------------
    def workspace(self, n: int) -> Workspace:
        """Preallocated arrays for batches of ``n`` rows (see :class:`Workspace`)."""
        return Workspace(self, n)

    def layer_views(self, buf: np.ndarray) -> list:
        """Per-layer views of a flat buffer ``buf`` shaped like ``theta`` (e.g. a gradient):
        ``[None, (W^1, b^1, p^1 or None), ..., (W^L, b^L, None)]`` with ``W^l (rows_l,
        n_{l-1})``, ``b^l (rows_l,)`` and ``p^l`` the activation's parameter of layer ``l``
        (PReLU: ``mu^l (n_l,)``), None without one. Index 0 is None."""
        V = self._views(buf)
        return [None] + [(V[kW], V[kb], V[kp] if kp else None) for kW, kb, kp in self._keys[1:]]

    def feedforward(self, X: np.ndarray, ws: Workspace | None = None) -> tuple[list, list]:
        """The forward pass, no checks: ``(zs, as_)`` with ``zs[l] = z^l (n, rows_l)`` for
        ``l = 1..L`` (``zs[0] = None``; ``zs[L] (n, n_out)`` is the output pre-activation) and
        ``as_[l] = a^l (n, n_l)`` for ``l < L`` (``as_[0] = X``). ``X (n, n_in)`` in the net
        dtype. With a workspace of ``n`` rows the arrays are its buffers (overwritten by the
        next call), else new arrays."""
        act, L = self.activation, self.n_layers
        zs: list = [None]
        as_: list = [X]
        a = X
        for l, (WT, b, p) in enumerate(self._forward_params, 1):
            # row form of z^l = W^l a^{l-1} + b^l: examples are rows, so z = a W^T + b
            z = np.matmul(a, WT, out=None if ws is None else ws.z[l])
            z += b
            zs.append(z)
            if l < L:
                a = act.f(z, p, out=None if ws is None else ws.a[l])
                as_.append(a)
        return zs, as_

    def _output_unit(self, z: np.ndarray) -> np.ndarray:
        out = self.loss.output
        if out == "sigmoid":
            return sigmoid(z)
        if out == "softmax":
            return _softmax(z)
        return z

    def forward(self, X, cache: bool = False):
        """``z^L (n, n_out)``, the output pre-activation (before the loss's output unit).

        With ``cache=True`` returns ``(z^L, cache)``: ``cache["z"][l] = z^l`` (``z[0]`` is
        None) and ``cache["a"][l] = a^l`` for ``l = 0..L`` (``a[0] = X``; ``a[L]`` is the
        output unit applied to ``z^L``: identity, sigmoid or softmax).
        """
        X = self.check_X(X)
        zs, as_ = self.feedforward(X)
        if not cache:
            return zs[-1]
        return zs[-1], {"z": zs, "a": [*as_, self._output_unit(zs[-1])]}

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities ``(n, C)`` (binary: two columns ``[1-p, p]``)."""
        return self.loss.proba(self.forward(X))

    def predict(self, X) -> np.ndarray:
        """Predicted labels ``(n,)`` int64 in ``[0, C)``."""
        return self.loss.predict(self.forward(X))

    # -- loss and gradient --------------------------------------------------------------
    def loss_and_grad(self, X, y, out: np.ndarray | None = None) -> tuple[float, dict]:
        """``(J, grads)`` with ``J = mean loss + lambda * Omega(W)``; validated.

        ``y``: 1-D integer labels in ``[0, C)`` or 2-D targets encoded by ``net.loss.encode``.
        ``grads`` has the keys and shapes of ``params``; with ``out`` (a 1-D array like
        ``theta``) the gradient is written into ``out`` and ``grads`` holds views of it.
        """
        X, T = self.prepare(X, y)
        if out is not None:
            if not isinstance(out, np.ndarray) or out.shape != self.theta.shape:
                raise ValueError(
                    f"out must be a 1-D array of shape {self.theta.shape}, got "
                    f"{getattr(out, 'shape', type(out).__name__)}"
                )
            if out.dtype != self.dtype:
                raise ValueError(f"out must have dtype {self.dtype}, got {out.dtype}")
            if not out.flags.c_contiguous or np.shares_memory(out, self.theta):
                raise ValueError("out must be a contiguous array not sharing memory with theta")
        return self.loss_and_grad_encoded(X, T, out)

    def loss_encoded(self, X: np.ndarray, T: np.ndarray) -> float:
        """``J = mean loss + lambda * Omega(W)`` only (no gradient); no checks: ``X (n, n_in)``
        in the net dtype, ``T (n, n_out)`` encoded."""
        zs, _ = self.feedforward(X)
        J = self.loss.value(zs[-1], T)
        if self.regularizer.strength:
            J += self.regularizer.value(self.params[k[0]] for k in self._keys[1:])
        return float(J)

    def _grads_for(self, out: np.ndarray | None) -> tuple[dict[str, np.ndarray], list]:
        """Views of the gradient buffer ``out`` (a new one when None): the dict of ``params``
        keys and the per-layer list of :meth:`layer_views`; cached for the last ``out``."""
        if out is None:
            buf = np.empty_like(self.theta)
            return self._views(buf), self.layer_views(buf)
        cached = self._grad_views
        if cached is None or cached[0] is not out:
            cached = self._grad_views = (out, self._views(out), self.layer_views(out))
        return cached[1], cached[2]

    def loss_and_grad_encoded(self, X: np.ndarray, T: np.ndarray,
                              out: np.ndarray | None = None) -> tuple[float, dict]:
        """:meth:`loss_and_grad` without checks: ``X (n, n_in)`` in the net dtype, ``T (n,
        n_out)`` encoded by ``net.loss.encode``; ``out`` (if given) a contiguous 1-D array like
        ``theta``, not sharing memory with it.

        Returns ``(J, grads)``: ``grads`` has the keys and shapes of ``params`` (views of
        ``out`` when given).
        """
        G, layers = self._grads_for(out)
        zs, as_ = self.feedforward(X)
        return self.backward(zs, as_, T, layers), dict(G)

    def backprop(self, X: np.ndarray, T: np.ndarray, grad: np.ndarray,
                 ws: Workspace | None = None) -> float:
        """The training step's gradient: returns ``J`` and writes ``dJ/dtheta`` into ``grad``.

        No checks, no dict: ``X (n, n_in)`` and ``T (n, n_out)`` as for
        :meth:`loss_and_grad_encoded`; ``grad`` a flat buffer like ``theta`` (its
        :meth:`layer_views` are cached, so reuse one buffer); with ``ws`` (a workspace of ``n``
        rows) every intermediate array is preallocated.
        """
        zs, as_ = self.feedforward(X, ws)
        return self.backward(zs, as_, T, self._grads_for(grad)[1], ws)

    def backward(self, zs: list, as_: list, T: np.ndarray, grads: list,
                 ws: Workspace | None = None) -> float:
        """Backpropagation from a forward pass ``(zs, as_)`` of :meth:`feedforward`; returns
        ``J`` (with the penalty).

        ``delta^L = loss.grad(z^L, T)`` ``(n, n_out)`` (fused, includes 1/n); for ``l = L..1``:
        ``dJ/dW^l = delta^T a^{l-1} + lambda dOmega/dW^l``, ``dJ/db^l = sum_rows delta``, then
        ``delta <- f'(z^{l-1}) (.) (delta W^l)`` (and ``dJ/dp^{l-1}`` of the activation's
        parameter). ``grads`` is :meth:`layer_views` of the gradient buffer, written in place;
        with ``ws`` the deltas live in its buffers, never in the forward pass's arrays.
        """
        act, reg, L = self.activation, self.regularizer, self.n_layers
        params = self._layer_params
        J, delta = self.loss.value_and_grad(zs[L], T, out=None if ws is None else ws.dz)
        single = delta.shape[0] == 1
        penalised = reg.strength != 0.0
        for l in range(L, 0, -1):
            W, _, _ = params[l]
            gW, gb, _ = grads[l]
            a_prev = as_[l - 1]
            # dJ/dW = delta^T a: at a batch of one an outer product, for which np.dot takes
            # BLAS (np.matmul of (m,1) x (1,n) takes a slow path); same products, same bits
            if single:
                np.dot(delta.T, a_prev, out=gW)
                np.copyto(gb, delta[0])
            else:
                np.matmul(delta.T, a_prev, out=gW)
                np.add.reduce(delta, axis=0, out=gb)  # np.sum without its Python wrapper
            if penalised:
                reg.add_grad(W, gW)
            if l > 1:
                # dJ/da^{l-1}, row form of (W^l)^T delta^l
                da = np.matmul(delta, W, out=None if ws is None else ws.da[l - 1])
                z = zs[l - 1]
                p = params[l - 1][2]
                if p is not None:  # dJ/dp first: backward may overwrite da
                    act.grad_param(da, z, p, grads[l - 1][2])
                delta = act.backward(da, z, a_prev, p)
        if penalised:
            J += reg.value(params[l][0] for l in range(1, L + 1))
        return float(J)

    # -- persistence --------------------------------------------------------------------
    def save(self, path) -> None:
        """Write the parameters and the config to ``path`` (.npz, no pickle).

        Arrays: one per parameter key, plus ``config``: the JSON config in a 0-d unicode array.
        The file is written to exactly ``path`` (no ``.npz`` suffix is appended).
        """
        arrays = {key: np.array(v) for key, v in self.params.items()}
        with open(os.fspath(path), "wb") as fh:
            np.savez(fh, config=np.array(json.dumps(self._config)), **arrays)

    @classmethod
    def load(cls, path) -> MLP:
        """Rebuild a net written by :meth:`save` (``allow_pickle=False``)."""
        with np.load(os.fspath(path), allow_pickle=False) as f:
            if "config" not in f.files:
                raise ValueError(f"{os.fspath(path)}: not an MLP file (no 'config' array)")
            net = cls(**json.loads(str(f["config"][()])))
            for key, view in net.params.items():
                if key not in f.files:
                    raise ValueError(f"{os.fspath(path)}: parameter {key!r} is missing")
                value = f[key]
                if value.shape != view.shape:
                    raise ValueError(
                        f"{os.fspath(path)}: parameter {key!r} has shape {value.shape}, "
                        f"expected {view.shape}"
                    )
                view[...] = value
        return net
