"""Losses, each fused with its output unit (lecture: Normal -> linear, Bernoulli -> sigmoid,
Multinomial -> softmax).

The interface of the family is :class:`Loss` (an ABC: a loss defines ``output``,
``value_and_grad`` and ``proba``; the rest have defaults). ``z`` is the output pre-activation
``z^L`` of shape ``(n, n_out)``, ``T`` the encoded targets of the same shape, ``C`` the number
of classes (``C = n_out``, or 2 when ``n_out == 1``: one output unit for a binary problem).

- ``name`` (the registry key) and ``hyperparameters`` (its constructor keywords besides
  ``n_out``: ``("output",)`` for square, else none);
- ``output``: the output unit, ``"linear" | "sigmoid" | "softmax"``;
- ``encode(y, n_out, dtype) -> T``: integer labels ``y (n,)`` in ``[0, C)`` -> targets;
- ``value(z, T) -> float``: the loss, **averaged over the batch** (summed over outputs);
- ``grad(z, T) -> dJ/dz^L``: shape ``(n, n_out)``, the gradient with respect to the output
  **pre-activation** ``z^L``, i.e. ``delta^L = grad_yhat J (.) f'(z^L)`` already fused with
  the output unit, **including the 1/n** of the batch mean;
- ``value_and_grad(z, T, out=None) -> (float, dJ/dz^L)``: both, sharing the work (the
  trainer's path); the gradient is written into ``out`` (shape of ``z``) when given;
- ``proba(z) -> (n, C)``: class probabilities (binary: two columns ``[1-p, p]``);
- ``predict(z) -> (n,)`` int64 labels, equal to ``proba(z).argmax(1)``. Binary threshold:
  0.5 on sigmoid outputs and on the square loss's regression estimate, 0 on linear scores.

All computations are stable for ``|z|`` up to 1e4 (``softplus``/log-sum-exp instead of
``log(1 + exp(.))``); no warnings, no NaN.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import numpy as np

from fnnbench.nn.activations import exp_cap, sigmoid, softmax, softplus

_max_rows = np.maximum.reduce  # np.max / np.sum without their Python wrappers (same results)
_sum = np.add.reduce

__all__ = [
    "LOSSES",
    "CrossEntropy",
    "Hinge",
    "Logistic",
    "Loss",
    "Square",
    "check_labels",
    "get_loss",
    "n_classes",
]


def n_classes(n_out: int) -> int:
    """Number of classes ``C`` for ``n_out`` output units (one unit = binary, C = 2)."""
    return 2 if n_out == 1 else int(n_out)


def check_labels(y, C: int) -> np.ndarray:
    """Validate class labels: 1-D, finite, integer-valued, in ``[0, C)``; returns int64 ``(n,)``.

    Raises ValueError naming the problem (shape, non-integer, out of range).
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"labels y must be a 1-D array of class indices, got shape {y.shape}")
    if y.dtype.kind == "b":
        return y.astype(np.int64)
    if y.dtype.kind not in "iuf":
        raise ValueError(f"labels y must be integers, got dtype {y.dtype}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)):
            raise ValueError("labels y contain non-finite values (NaN or inf)")
        if np.any(y != np.round(y)):
            raise ValueError("labels y must be integers, got non-integer values")
    if y.size and (y.min() < 0 or y.max() >= C):
        raise ValueError(
            f"labels y out of range: expected integers in [0, {C}) for {C} classes, "
            f"got min {y.min()!r}, max {y.max()!r}"
        )
    return y.astype(np.int64)


def _into(out: np.ndarray | None, g: np.ndarray) -> np.ndarray:
    """``g``, or ``g`` copied into ``out`` when given."""
    if out is None:
        return g
    np.copyto(out, g)
    return out


def _one_hot(y: np.ndarray, C: int, dtype) -> np.ndarray:
    T = np.zeros((y.shape[0], C), dtype=dtype)
    T[np.arange(y.shape[0]), y] = 1
    return T


def _two_columns(p1: np.ndarray) -> np.ndarray:
    """``p1 (n, 1)`` -> ``[1 - p1, p1] (n, 2)``."""
    return np.concatenate([1.0 - p1, p1], axis=1)


def _project_simplex(V: np.ndarray) -> np.ndarray:
    """Rows of ``V (n, C)`` projected (Euclidean) onto the probability simplex.

    ``p = max(v - tau, 0)`` with ``tau`` chosen so that ``sum p = 1`` (sort-based algorithm,
    Duchi et al. 2008); the order of the entries, hence the argmax, is preserved.
    """
    n, C = V.shape
    u = -np.sort(-V, axis=1)
    css = np.cumsum(u, axis=1) - 1.0
    rho = np.sum(u - css / np.arange(1, C + 1) > 0, axis=1)
    tau = css[np.arange(n), rho - 1] / rho
    return np.maximum(V - tau[:, None], 0.0)


def _normalise_rows(P: np.ndarray) -> np.ndarray:
    """Rows scaled to sum to one; an all-zero row becomes uniform."""
    s = P.sum(axis=1, keepdims=True)
    C = P.shape[1]
    return np.divide(P, s, out=np.full_like(P, 1.0 / C), where=s > 0)


class Loss(abc.ABC):
    """The interface of every loss (see the module docstring): subclasses define ``output``,
    ``value_and_grad`` and ``proba``; ``value``, ``grad``, ``encode`` and ``predict`` have
    defaults."""

    name: ClassVar[str] = ""
    hyperparameters: ClassVar[tuple[str, ...]] = ()

    def __init__(self, n_out: int | None = None):
        self.n_out = n_out

    @property
    @abc.abstractmethod
    def output(self) -> str:
        """The output unit: ``"linear" | "sigmoid" | "softmax"``."""

    # -- targets ------------------------------------------------------------------------
    def encode(self, y, n_out: int, dtype=np.float64) -> np.ndarray:
        """Labels ``y (n,)`` -> ``T (n, n_out)``: binary ``{0, 1}``, multi-class one-hot."""
        y = check_labels(y, n_classes(n_out))
        if n_out == 1:
            return y.astype(dtype).reshape(-1, 1)
        return _one_hot(y, n_out, dtype)

    # -- value / gradient ---------------------------------------------------------------
    @abc.abstractmethod
    def value_and_grad(self, z: np.ndarray, T: np.ndarray,
                       out: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """``(J, dJ/dz^L)``: the batch mean and ``(n, n_out)`` gradient (into ``out``)."""

    def value(self, z, T) -> float:
        """Batch mean of the loss, a Python float."""
        return self.value_and_grad(z, T)[0]

    def grad(self, z, T) -> np.ndarray:
        """``dJ/dz^L (n, n_out)``, fused with the output unit, including the 1/n."""
        return self.value_and_grad(z, T)[1]

    # -- prediction ---------------------------------------------------------------------
    @abc.abstractmethod
    def proba(self, z) -> np.ndarray:
        """Class probabilities ``(n, C)`` (binary: two columns ``[1-p, p]``)."""

    def predict(self, z) -> np.ndarray:
        """Labels ``(n,)`` int64: argmax of the outputs, binary threshold at 0 on scores."""
        z = np.asarray(z)
        if z.shape[1] == 1:
            return (z[:, 0] > 0).astype(np.int64)
        return z.argmax(axis=1).astype(np.int64)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(output={self.output!r})"


class Square(Loss):
    """Square loss ``J = (1/n) sum_t sum_j (yhat_tj - T_tj)^2`` with ``yhat = out(z)``.

    ``output``: ``"linear"`` (default; Normal model), ``"sigmoid"`` or ``"softmax"`` (needs
    ``n_out >= 2``). Targets: ``{0, 1}`` for ``n_out == 1``, one-hot for ``C >= 2``.
    Gradient with respect to ``z^L``: ``g = 2 (yhat - T) / n`` times the output unit's
    derivative: linear ``g``; sigmoid ``g (.) yhat (1 - yhat)``; softmax
    ``yhat (.) (g - <g, yhat>)`` (the softmax Jacobian-vector product).
    Binary prediction: ``yhat > 0.5``. ``proba`` for a linear output is the regression
    estimate of ``E[e_y | x]`` projected onto the probability simplex (binary: clipped to
    [0, 1]); sigmoid outputs are renormalised to sum to one.
    """

    name = "square"
    hyperparameters = ("output",)
    OUTPUTS = ("linear", "sigmoid", "softmax")

    def __init__(self, output: str = "linear", n_out: int | None = None):
        if output not in self.OUTPUTS:
            raise ValueError(
                f"unknown output {output!r} for square loss; expected one of: "
                f"{', '.join(self.OUTPUTS)}"
            )
        if output == "softmax" and n_out == 1:
            raise ValueError("square loss with output 'softmax' needs n_out >= 2, got n_out=1")
        super().__init__(n_out)
        self._output = output

    @property
    def output(self) -> str:
        return self._output

    def _yhat(self, z):
        if self._output == "sigmoid":
            return sigmoid(z)
        if self._output == "softmax":
            return softmax(z)
        return z

    def encode(self, y, n_out, dtype=np.float64):
        if self._output == "softmax" and n_out == 1:
            raise ValueError("square loss with output 'softmax' needs n_out >= 2, got n_out=1")
        return super().encode(y, n_out, dtype)

    def value_and_grad(self, z, T, out=None):
        n = z.shape[0]
        yhat = self._yhat(z)
        r = np.subtract(yhat, T, out=out)
        J = float(np.vdot(r, r)) / n
        g = r
        g *= 2.0 / n
        # saturated units give products below the smallest float: they flush to 0
        if self._output == "sigmoid":
            with np.errstate(under="ignore"):
                g *= yhat
                g *= 1.0 - yhat
        elif self._output == "softmax":
            with np.errstate(under="ignore"):
                g -= np.sum(g * yhat, axis=1, keepdims=True)
                g *= yhat
        return J, g

    def proba(self, z):
        z = np.asarray(z)
        yhat = self._yhat(z)
        if self._output == "softmax":
            return yhat
        if z.shape[1] == 1:
            return _two_columns(np.clip(yhat, 0.0, 1.0))
        # the regression estimate of E[e_y | x], projected onto the probability simplex
        return _project_simplex(yhat)

    def predict(self, z):
        z = np.asarray(z)
        if z.shape[1] == 1:
            t = 0.5 if self._output == "linear" else 0.0  # sigmoid(z) > 0.5  <=>  z > 0
            return (z[:, 0] > t).astype(np.int64)
        return super().predict(z)


class Hinge(Loss):
    """Hinge loss on linear scores ``s = z``, batch mean.

    Binary (``n_out == 1``, targets ``t in {-1, +1}``): ``l = max(0, 1 - t s)``, gradient
    with respect to ``z^L``: ``-t 1[1 - t s > 0] / n``.
    Multi-class (Weston-Watkins, one-hot targets): ``l = sum_{j != y} max(0, 1 + s_j - s_y)``;
    gradient ``1[margin_j > 0] / n`` for ``j != y`` and ``-(number of active margins) / n``
    for the true class. Not differentiable where a margin is exactly 0 (the gradient there
    is taken as 0). ``proba`` is sigmoid/softmax of the scores: monotone, not calibrated.
    """

    name = "hinge"

    @property
    def output(self) -> str:
        return "linear"

    def encode(self, y, n_out, dtype=np.float64):
        """Binary: ``t = 2y - 1 in {-1, +1}``; multi-class: one-hot."""
        T = super().encode(y, n_out, dtype)
        if n_out == 1:
            T = 2 * T - 1
        return T

    def value_and_grad(self, z, T, out=None):
        n = z.shape[0]
        if z.shape[1] == 1:
            m = 1.0 - T * z  # margins
            active = m > 0
            J = float(np.sum(m, where=active)) / n
            g = np.where(active, -T, 0.0).astype(z.dtype, copy=False)
            g /= n
            return J, _into(out, g)
        s_y = np.sum(T * z, axis=1, keepdims=True)
        m = z - s_y
        m += 1.0
        active = (m > 0) & (T == 0)
        J = float(np.sum(m, where=active)) / n
        g = active.astype(z.dtype)
        g -= T * np.sum(g, axis=1, keepdims=True)
        g /= n
        return J, _into(out, g)

    def proba(self, z):
        z = np.asarray(z)
        if z.shape[1] == 1:
            return _two_columns(sigmoid(z))
        return softmax(z)


class Logistic(Loss):
    """Logistic loss ``l = log(1 + exp(-t s))`` on linear scores ``s = z``, ``t in {-1, +1}``.

    Computed as ``softplus(-t s)`` (``np.logaddexp``-style, stable). Binary: one unit;
    ``C >= 2``: one-vs-rest, ``l = sum_c log(1 + exp(-t_c s_c))`` with ``t_c = +1`` for the
    true class and ``-1`` otherwise. Batch mean. Gradient with respect to ``z^L``:
    ``-t sigma(-t s) / n``. Equals binary cross-entropy of ``sigma(s)`` with ``y = (t+1)/2``.
    """

    name = "logistic"

    @property
    def output(self) -> str:
        return "linear"

    def encode(self, y, n_out, dtype=np.float64):
        """``t = 2 e_y - 1``: ``(n, 1)`` for binary, ``(n, C)`` one-vs-rest otherwise."""
        return 2 * super().encode(y, n_out, dtype) - 1

    def value_and_grad(self, z, T, out=None):
        n = z.shape[0]
        u = -T * z
        J = float(np.sum(softplus(u))) / n
        g = sigmoid(u, out=out)
        g *= T
        g *= -1.0 / n
        return J, g

    def proba(self, z):
        z = np.asarray(z)
        p = sigmoid(z)
        if z.shape[1] == 1:
            return _two_columns(p)
        return _normalise_rows(p)


class CrossEntropy(Loss):
    """Cross-entropy, the negative log-likelihood of the output unit's distribution.

    ``n_out == 1`` (Bernoulli, sigmoid output, targets ``{0, 1}``):
    ``l = -t log sigma(z) - (1-t) log(1 - sigma(z)) = softplus(z) - t z``.
    ``n_out >= 2`` (Multinomial, softmax output, one-hot targets):
    ``l = -log h_y = logsumexp(z) - z_y``.
    Batch mean. Gradient with respect to ``z^L`` fused with the output unit (the lecture's
    softmax slide): ``dJ/dz = (h - e_y) / n`` with ``h = softmax(z)`` (binary:
    ``(sigma(z) - t) / n``).
    """

    name = "cross_entropy"

    @property
    def output(self) -> str:
        return "sigmoid" if self.n_out == 1 else "softmax"

    def value_and_grad(self, z, T, out=None):
        n = z.shape[0]
        if z.shape[1] == 1:
            J = float(np.sum(softplus(z)) - np.vdot(T, z)) / n
            g = sigmoid(z, out=out)
            g -= T
            g /= n
            return J, g
        zmax = _max_rows(z, axis=1, keepdims=True)
        h = np.subtract(z, zmax, out=out)
        np.maximum(h, -exp_cap(z.dtype), out=h)
        np.exp(h, out=h)
        S = _sum(h, axis=1, keepdims=True)
        h /= S  # h = softmax(z)
        lse = np.log(S, out=S)
        lse += zmax  # log sum_c exp(z_c), stable
        J = float(_sum(lse, axis=None) - np.vdot(T, z)) / n
        h -= T
        if n != 1:  # x / 1 is x: one pass less at SGD's batch of one
            h /= n
        return J, h

    def proba(self, z):
        z = np.asarray(z)
        if z.shape[1] == 1:
            return _two_columns(sigmoid(z))
        return softmax(z)


LOSSES: dict[str, type[Loss]] = {cls.name: cls for cls in (CrossEntropy, Square, Hinge, Logistic)}
"""Registry: loss name -> class. ``get_loss`` builds instances from it."""


def get_loss(name: str, n_out: int | None = None, **kw) -> Loss:
    """Build the loss ``name``; ``n_out`` fixes cross-entropy's output unit (1 -> sigmoid).

    Only ``square`` takes a parameter: ``output="linear"|"sigmoid"|"softmax"``.
    Raises ValueError naming an unknown loss or parameter.
    """
    if isinstance(name, Loss):
        return name
    if not isinstance(name, str) or name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; expected one of: {', '.join(LOSSES)}")
    allowed = list(LOSSES[name].hyperparameters)
    bad = sorted(set(kw) - set(allowed))
    if bad:
        raise ValueError(
            f"loss {name!r} got unknown parameter(s) {bad}; allowed: {allowed or 'none'}"
        )
    return LOSSES[name](n_out=n_out, **kw)
