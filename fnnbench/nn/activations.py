"""Activation functions: the non-linearity ``a = f(z)`` of a layer and its derivative.

The interface of the family is :class:`Activation` (an ABC; every activation has exactly these
signatures, so the network treats them all alike). ``p`` is the layer's learnable parameter
array (PReLU: the slopes ``mu (n_units,)``), None for an activation without parameters:

- ``f(z, p=None, out=None) -> a``: the activation, elementwise, same shape as ``z`` (maxout:
  ``(..., k*m) -> (..., m)``; softmax: row-wise over the last axis); with ``out`` (an array of
  the result's shape and dtype, e.g. the trainer's preallocated buffer) it is written there;
- ``df(z, p=None) -> f'(z)``: the elementwise derivative, same shape as ``z`` (maxout: the 0/1
  mask of the winning piece; softmax: the full Jacobian, see :class:`Softmax`);
- ``backward(da, z, a, p=None) -> delta = dJ/dz``: the chain rule ``delta = f'(z) (.) da``
  given ``da = dJ/da`` and what the forward pass computed (``z`` and ``a = f(z)``); it may
  write into ``da``;
- ``pieces``: pre-activations per unit (1; maxout: ``k``), so a layer of ``m`` units has
  ``pieces * m`` rows of ``W``;
- learnable parameters, default none: ``param_name`` (key prefix: ``"mu"`` -> ``mu1, mu2``;
  None without parameters), ``param_shape(n_units)`` (None without parameters),
  ``init_param(p)`` (fills the initial values in place) and ``grad_param(da, z, p, out)``
  (``out = dJ/dp``, summed over the rows; called before ``backward``, which may overwrite
  ``da``);
- ``name`` (the registry key), ``hyperparameters`` (constructor keyword -> ``float`` or
  ``int``), ``bounds`` (``(lo, hi)`` of a saturating unit, else None) and ``can_die``
  (whether ``f'`` can be 0 on a whole region, so a unit can be dead).

Every function is vectorised and numerically safe for ``|z|`` up to 1e4 in float32 and
float64: no overflow, underflow or invalid-value warnings and no NaN, because every ``exp``
is taken of an argument clipped to ``[-cap, 0]`` (``cap`` just above the log of the
smallest normal number, so the clipping changes no result by more than ~1e-300).

At a kink the derivative takes the value of the right-hand branch, as in the lecture
(ReLU: ``f'(z) = 1`` for ``z >= 0``; ``ReLU(grad_at_zero=0)`` takes the left-hand value 0).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import ClassVar

import numpy as np

__all__ = [
    "ACTIVATIONS",
    "HIDDEN_ACTIVATIONS",
    "Activation",
    "ELU",
    "LeakyReLU",
    "Linear",
    "Maxout",
    "PReLU",
    "ReLU",
    "ShiftedReLU",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "exp_cap",
    "get_activation",
    "sigmoid",
    "softmax",
    "softplus",
]


def _as_float(z) -> np.ndarray:
    """``z`` as a floating ndarray (no copy when it already is one)."""
    z = np.asarray(z)
    if z.dtype.kind != "f":
        z = z.astype(np.float64)
    return z


_EXP_CAPS: dict[np.dtype, float] = {}


def exp_cap(dtype) -> float:
    """Largest ``c`` with ``exp(-c)`` a normal number of ``dtype``, minus a margin.

    float64 -> ~700.4, float32 -> ~79.3. ``exp(-min(|x|, cap))`` then never underflows and
    ``exp(min(x, cap))`` never overflows.
    """
    cap = _EXP_CAPS.get(dtype)
    if cap is None:
        cap = _EXP_CAPS[np.dtype(dtype)] = float(-np.log(np.finfo(dtype).tiny)) - 8.0
    return cap


def _into(out: np.ndarray | None, a: np.ndarray) -> np.ndarray:
    """``a``, or ``a`` copied into ``out`` when given (activations without an ``out`` path)."""
    if out is None:
        return a
    np.copyto(out, a)
    return out


def _exp_neg_abs(z: np.ndarray) -> np.ndarray:
    """``exp(-|z|)`` with ``|z|`` clipped at :func:`exp_cap` (a new array, shape of z)."""
    e = np.abs(z)
    np.minimum(e, exp_cap(z.dtype), out=e)
    np.negative(e, out=e)
    return np.exp(e, out=e)


def sigmoid(z, out: np.ndarray | None = None) -> np.ndarray:
    """Logistic sigmoid ``1 / (1 + exp(-z))``, elementwise, without overflow or underflow.

    ``-z`` is clipped to ``[-cap, cap]`` first: ``exp`` stays finite and normal, and the
    result keeps its relative precision in both tails (``sigma(-40) = 4.2e-18``, not 0).
    Written into ``out`` when given (may be ``z`` itself).
    """
    z = _as_float(z)
    cap = exp_cap(z.dtype)
    e = np.negative(z, out=out)
    np.maximum(e, -cap, out=e)
    np.minimum(e, cap, out=e)
    np.exp(e, out=e)
    e += 1.0
    return np.reciprocal(e, out=e)


def softplus(x) -> np.ndarray:
    """``log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|))``, elementwise, stable for any ``x``."""
    x = _as_float(x)
    e = _exp_neg_abs(x)
    np.log1p(e, out=e)
    return np.add(np.maximum(x, 0.0), e, out=e)


def softmax(z, axis: int = -1) -> np.ndarray:
    """Row-wise softmax ``h_i = exp(z_i) / sum_c exp(z_c)`` over ``axis``.

    Log-sum-exp stable: the row maximum is subtracted first, and the shifted values are
    clipped at ``-cap`` so tiny probabilities do not underflow (they stay >= ~1e-304).
    """
    z = _as_float(z)
    h = z - np.max(z, axis=axis, keepdims=True)
    np.maximum(h, -exp_cap(z.dtype), out=h)
    np.exp(h, out=h)
    h /= np.sum(h, axis=axis, keepdims=True)
    return h


class Activation(abc.ABC):
    """The interface of every activation (see the module docstring): subclasses define ``f``
    and ``df``; ``backward`` defaults to ``f'(z) (.) da``; no learnable parameters by default.
    """

    name: ClassVar[str] = ""
    bounds: ClassVar[tuple[float, float] | None] = None
    hyperparameters: ClassVar[Mapping[str, type]] = {}
    param_name: ClassVar[str | None] = None
    can_die: ClassVar[bool] = True

    @abc.abstractmethod
    def f(self, z, p: np.ndarray | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """``a = f(z)``; written into ``out`` when given."""

    @abc.abstractmethod
    def df(self, z, p: np.ndarray | None = None) -> np.ndarray:
        """``f'(z)``, shape of ``z``."""

    def backward(self, da: np.ndarray, z: np.ndarray, a: np.ndarray,
                 p: np.ndarray | None = None) -> np.ndarray:
        """``delta = f'(z) (.) da``, shape of ``z``; ``da = dJ/da`` may be overwritten."""
        da *= self.df(z, p)
        return da

    @property
    def pieces(self) -> int:
        """Pre-activations per unit: a layer of ``m`` units has ``pieces * m`` rows of ``W``."""
        return 1

    def param_shape(self, n_units: int) -> tuple[int, ...] | None:
        """Shape of the learnable parameter array of a layer of ``n_units``; None: none."""
        return None

    def init_param(self, p: np.ndarray) -> None:
        """Fill the initial values of the layer's parameter array ``p`` in place."""
        raise TypeError(f"activation {self.name!r} has no learnable parameters")

    def grad_param(self, da: np.ndarray, z: np.ndarray, p: np.ndarray,
                   out: np.ndarray) -> np.ndarray:
        """``out = dJ/dp`` from ``da = dJ/da`` ``(n, n_units)`` (summed over the rows)."""
        raise TypeError(f"activation {self.name!r} has no learnable parameters")

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Linear(Activation):
    """Identity ``f(z) = z``, ``f'(z) = 1``. A deep linear network is one linear map."""

    name = "linear"

    def f(self, z, p=None, out=None):
        z = _as_float(z)
        return z.copy() if out is None else _into(out, z)

    def df(self, z, p=None):
        return np.ones_like(_as_float(z))

    def backward(self, da, z, a, p=None):
        return da


class Sigmoid(Activation):
    """``f(z) = 1/(1+exp(-z))`` in (0, 1); ``f'(z) = f(z) (1 - f(z))`` (max 1/4 at z = 0)."""

    name = "sigmoid"
    bounds = (0.0, 1.0)

    def f(self, z, p=None, out=None):
        return sigmoid(z, out=out)

    def df(self, z, p=None):
        s = sigmoid(z)
        return s * (1.0 - s)

    def backward(self, da, z, a, p=None):
        # f'(z) from the cached a = sigma(z): a (1 - a)
        da *= a
        da *= 1.0 - a
        return da


class Tanh(Activation):
    """``f(z) = tanh(z)`` in (-1, 1), zero-centred; ``f'(z) = 1 - tanh(z)^2``."""

    name = "tanh"
    bounds = (-1.0, 1.0)

    def f(self, z, p=None, out=None):
        return np.tanh(_as_float(z), out=out)

    def df(self, z, p=None):
        t = np.tanh(_as_float(z))
        return 1.0 - t * t

    def backward(self, da, z, a, p=None):
        da *= 1.0 - a * a
        return da


class ReLU(Activation):
    """``f(z) = max(z, 0)``; ``f'(z) = 1 if z > 0, 0 if z < 0`` and ``grad_at_zero`` at the kink
    z = 0: 1 is the lecture's convention (the default), 0 the frameworks' (PyTorch, JAX)."""

    name = "relu"
    hyperparameters = {"grad_at_zero": float}

    def __init__(self, grad_at_zero: float = 1.0):
        if grad_at_zero not in (0, 1) or isinstance(grad_at_zero, bool):
            raise ValueError(f"relu: grad_at_zero must be 0 or 1, got {grad_at_zero!r}")
        self.grad_at_zero = float(grad_at_zero)

    def f(self, z, p=None, out=None):
        return np.maximum(_as_float(z), 0.0, out=out)

    def df(self, z, p=None):
        z = _as_float(z)
        return ((z >= 0) if self.grad_at_zero else (z > 0)).astype(z.dtype)

    def backward(self, da, z, a, p=None):
        da *= (z >= 0) if self.grad_at_zero else (z > 0)
        return da


class ShiftedReLU(Activation):
    """Shifted ReLU ``f(z) = max(-1, z)``; ``f'(z) = 1 if z >= -1 else 0``."""

    name = "shifted_relu"

    def f(self, z, p=None, out=None):
        return np.maximum(_as_float(z), -1.0, out=out)

    def df(self, z, p=None):
        z = _as_float(z)
        return (z >= -1.0).astype(z.dtype)

    def backward(self, da, z, a, p=None):
        da *= z >= -1.0
        return da


class LeakyReLU(Activation):
    """``f(z) = z if z >= 0 else slope*z`` (lecture: slope 0.01); ``f'(z) = 1 or slope``."""

    name = "leaky_relu"
    hyperparameters = {"slope": float}

    def __init__(self, slope: float = 0.01):
        self.slope = float(slope)

    def f(self, z, p=None, out=None):
        z = _as_float(z)
        return _into(out, np.where(z >= 0, z, self.slope * z))

    def df(self, z, p=None):
        z = _as_float(z)
        return np.where(z >= 0, 1.0, self.slope).astype(z.dtype, copy=False)

    def __repr__(self) -> str:
        return f"LeakyReLU(slope={self.slope})"


class PReLU(Activation):
    """Parametric ReLU ``f(z) = z if z >= 0 else mu*z`` with a slope ``mu`` learned per unit.

    ``mu`` has shape ``(n_units,)`` and broadcasts over the rows of ``z`` ``(n, n_units)``;
    without ``mu`` the initial slope ``init`` (He et al. 2015: 0.25) is used.
    ``f'(z) = 1 or mu``; the gradient for the slope is ``df/dmu = min(z, 0)``, so
    ``dJ/dmu_i = sum_rows dJ/da_i * min(z_i, 0)`` (see :meth:`dmu`). The slopes are the
    layer's learnable parameter ``p`` (key ``mu<l>``).
    """

    name = "prelu"
    hyperparameters = {"init": float}
    param_name = "mu"
    can_die = False  # dead_frac is not measured for a learned slope

    def __init__(self, init: float = 0.25):
        self.init = float(init)

    def f(self, z, p=None, out=None):
        z = _as_float(z)
        mu = self.init if p is None else p
        return _into(out, np.where(z >= 0, z, mu * z))

    def df(self, z, p=None):
        z = _as_float(z)
        mu = self.init if p is None else p
        return np.where(z >= 0, 1.0, mu).astype(z.dtype, copy=False)

    def dmu(self, z):
        """``df/dmu = min(z, 0)``, elementwise, shape of ``z``."""
        return np.minimum(_as_float(z), 0.0)

    def param_shape(self, n_units):
        return (n_units,)

    def init_param(self, p):
        p[...] = self.init

    def grad_param(self, da, z, p, out):
        # sum_rows da * dmu(z), with dmu inlined (z is the net's float array): one call less
        return np.sum(da * np.minimum(z, 0.0), axis=0, out=out)

    def __repr__(self) -> str:
        return f"PReLU(init={self.init})"


class ELU(Activation):
    """``f(z) = z if z >= 0 else mu*(exp(z) - 1)``; ``f'(z) = 1 if z >= 0 else mu*exp(z)``.

    ``exp`` is only taken of the clipped negative part ``max(min(z, 0), -cap)`` (``np.expm1``
    for accuracy near 0), so large positive ``z`` never overflows.
    """

    name = "elu"
    hyperparameters = {"mu": float}

    def __init__(self, mu: float = 1.0):
        self.mu = float(mu)

    def _neg(self, z):
        zn = np.minimum(z, 0.0)
        np.maximum(zn, -exp_cap(z.dtype), out=zn)
        return zn

    def f(self, z, p=None, out=None):
        z = _as_float(z)
        return _into(out, np.where(z >= 0, z, self.mu * np.expm1(self._neg(z))))

    def df(self, z, p=None):
        z = _as_float(z)
        return np.where(z >= 0, 1.0, self.mu * np.exp(self._neg(z))).astype(z.dtype, copy=False)

    def __repr__(self) -> str:
        return f"ELU(mu={self.mu})"


class Maxout(Activation):
    """Maxout: ``a_i = max_j z_{i,j}`` over ``k`` linear pieces ``z_{i,j} = w_{ij}.x + b_{ij}``.

    ``z`` has shape ``(..., k*m)`` with the pieces of unit ``i`` in columns ``i*k .. i*k+k-1``
    (so ``W`` of a maxout layer has shape ``(k*m, n_in)``); ``f(z)`` has shape ``(..., m)``.
    ``df(z)`` is the 0/1 mask ``(..., k*m)`` of the winning piece (the first on ties), and
    ``backward`` routes ``da`` ``(..., m)`` to the winning pieces: ``delta (..., k*m)``.
    """

    name = "maxout"
    hyperparameters = {"k": int}
    can_die = False  # some piece always wins: f' is never 0 for a whole unit

    def __init__(self, k: int = 2):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"maxout k must be an integer >= 1, got {k!r}")
        self.k = int(k)

    @property
    def pieces(self) -> int:
        return self.k

    def _pieces(self, z):
        z = _as_float(z)
        if z.shape[-1] % self.k:
            raise ValueError(f"maxout: last axis {z.shape[-1]} is not a multiple of k={self.k}")
        return z.reshape(*z.shape[:-1], z.shape[-1] // self.k, self.k)

    def f(self, z, p=None, out=None):
        return np.maximum.reduce(self._pieces(z), axis=-1, out=out)

    def df(self, z, p=None):
        pieces = self._pieces(z)
        mask = np.zeros_like(pieces)
        np.put_along_axis(mask, pieces.argmax(axis=-1)[..., None], 1.0, axis=-1)
        return mask.reshape(np.shape(z))

    def backward(self, da, z, a, p=None):
        mask = self.df(z)
        m = mask.reshape(*mask.shape[:-1], -1, self.k)
        m *= da[..., None]
        return mask

    def __repr__(self) -> str:
        return f"Maxout(k={self.k})"


class Softmax(Activation):
    """Softmax output unit ``h = softmax(z)`` over the last axis; rows sum to one.

    Not elementwise: ``df(z)`` returns the Jacobian ``dh/dz = diag(h) - h h^T`` with shape
    ``(..., C, C)``, and ``backward`` the vector-Jacobian product ``h (.) (da - <da, h>)``.
    Used as the output unit of cross-entropy and square loss, never as a hidden activation.
    """

    name = "softmax"
    bounds = (0.0, 1.0)

    def f(self, z, p=None, out=None):
        return _into(out, softmax(z))

    def df(self, z, p=None):
        h = softmax(z)
        with np.errstate(under="ignore"):  # products of tiny probabilities flush to 0
            J = -h[..., :, None] * h[..., None, :]
        idx = np.arange(h.shape[-1])
        J[..., idx, idx] += h
        return J

    def backward(self, da, z, a, p=None):
        with np.errstate(under="ignore"):
            return a * (da - np.sum(da * a, axis=-1, keepdims=True))


ACTIVATIONS: dict[str, type[Activation]] = {
    cls.name: cls
    for cls in (Linear, Sigmoid, Tanh, ReLU, ShiftedReLU, LeakyReLU, PReLU, ELU, Maxout, Softmax)
}
"""Registry: activation name -> class. ``get_activation`` builds instances from it."""

HIDDEN_ACTIVATIONS: tuple[str, ...] = tuple(n for n in ACTIVATIONS if n != "softmax")
"""Names allowed as the hidden activation of an MLP (softmax is an output unit only)."""


def get_activation(name: str, **kw) -> Activation:
    """Build the activation ``name`` with its parameters ``kw``.

    ``leaky_relu(slope=0.01)``, ``elu(mu=1.0)``, ``prelu(init=0.25)``, ``maxout(k=2)``; the
    others take none (``ACTIVATIONS[name].hyperparameters`` lists them). Raises ValueError
    naming an unknown name or parameter.
    """
    if isinstance(name, Activation):
        return name
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; expected one of: {', '.join(ACTIVATIONS)}")
    cls = ACTIVATIONS[name]
    allowed = list(cls.hyperparameters)
    bad = sorted(set(kw) - set(allowed))
    if bad:
        raise ValueError(
            f"activation {name!r} got unknown parameter(s) {bad}; "
            f"allowed: {allowed if allowed else 'none'}"
        )
    for key, value in kw.items():
        # real-valued ones are checked here; the others by the constructor (maxout's k)
        if cls.hyperparameters[key] is float and (
            isinstance(value, bool)
            or not isinstance(value, (int, float, np.number))
            or not np.isfinite(value)
        ):
            raise ValueError(f"activation {name!r}: {key} must be a finite number, got {value!r}")
    return cls(**kw)
