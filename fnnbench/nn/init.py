"""Weight initializers: ``W = init(shape, rng, dtype)`` for a weight matrix of ``shape``.

``shape = (fan_out, fan_in)`` as for ``W^l (n_l, n_{l-1})``; for a maxout layer
``fan_out = k * n_l`` (every piece counts as a unit). Biases start at zero. Randomness only
through the ``np.random.Generator`` passed in.

- ``standard``: ``U[-1/sqrt(fan_in), 1/sqrt(fan_in)]``;
- ``glorot_uniform``: ``U[-r, r]``, ``r = sqrt(6 / (fan_in + fan_out))`` (Glorot & Bengio 2010);
- ``glorot_normal``: ``N(0, 2 / (fan_in + fan_out))``;
- ``he_uniform``: ``U[-r, r]``, ``r = sqrt(6 / fan_in)`` (He et al. 2015);
- ``he_normal``: ``N(0, 2 / fan_in)``;
- ``lecun_normal``: ``N(0, 1 / fan_in)``;
- ``normal``: ``N(0, sigma^2)`` (``sigma`` given, default 0.01).

Defaults (:func:`default_init`): He normal for the ReLU family and maxout, Glorot uniform for
sigmoid, tanh and linear units.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["DEFAULT_INIT", "INITIALIZERS", "default_init", "get_initializer"]

Initializer = Callable[..., np.ndarray]


def _uniform(r, shape, rng, dtype):
    return rng.uniform(-r, r, size=shape).astype(dtype, copy=False)


def _normal(std, shape, rng, dtype):
    return (std * rng.standard_normal(size=shape)).astype(dtype, copy=False)


def standard(shape, rng, dtype=np.float64):
    """``U[-1/sqrt(fan_in), 1/sqrt(fan_in)]``."""
    return _uniform(1.0 / math.sqrt(shape[1]), shape, rng, dtype)


def glorot_uniform(shape, rng, dtype=np.float64):
    """``U[-r, r]``, ``r = sqrt(6 / (fan_in + fan_out))``."""
    return _uniform(math.sqrt(6.0 / (shape[0] + shape[1])), shape, rng, dtype)


def glorot_normal(shape, rng, dtype=np.float64):
    """``N(0, 2 / (fan_in + fan_out))``."""
    return _normal(math.sqrt(2.0 / (shape[0] + shape[1])), shape, rng, dtype)


def he_uniform(shape, rng, dtype=np.float64):
    """``U[-r, r]``, ``r = sqrt(6 / fan_in)``."""
    return _uniform(math.sqrt(6.0 / shape[1]), shape, rng, dtype)


def he_normal(shape, rng, dtype=np.float64):
    """``N(0, 2 / fan_in)``."""
    return _normal(math.sqrt(2.0 / shape[1]), shape, rng, dtype)


def lecun_normal(shape, rng, dtype=np.float64):
    """``N(0, 1 / fan_in)``."""
    return _normal(math.sqrt(1.0 / shape[1]), shape, rng, dtype)


def normal(shape, rng, dtype=np.float64, sigma=0.01):
    """``N(0, sigma^2)``."""
    return _normal(float(sigma), shape, rng, dtype)


INITIALIZERS: dict[str, Initializer] = {
    f.__name__: f
    for f in (standard, glorot_uniform, glorot_normal, he_uniform, he_normal, lecun_normal, normal)
}
"""Registry: initializer name -> function ``(shape, rng, dtype) -> W``."""

DEFAULT_INIT: dict[str, str] = {
    "relu": "he_normal",
    "shifted_relu": "he_normal",
    "leaky_relu": "he_normal",
    "prelu": "he_normal",
    "elu": "he_normal",
    "maxout": "he_normal",
    "sigmoid": "glorot_uniform",
    "tanh": "glorot_uniform",
    "linear": "glorot_uniform",
}
"""Default initializer per hidden activation."""


def default_init(activation: str) -> str:
    """Name of the default initializer for the hidden ``activation`` (Glorot if unknown)."""
    return DEFAULT_INIT.get(activation, "glorot_uniform")


def get_initializer(name: str, sigma: float = 0.01) -> Initializer:
    """The initializer ``name`` as ``(shape, rng, dtype) -> W``; ``sigma`` is used by ``normal``.

    Raises ValueError for an unknown name or a non-positive ``sigma``.
    """
    if not isinstance(name, str) or name not in INITIALIZERS:
        raise ValueError(f"unknown init {name!r}; expected one of: {', '.join(INITIALIZERS)}")
    if name == "normal":
        if not (isinstance(sigma, (int, float, np.number)) and math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"init_sigma must be a finite number > 0, got {sigma!r}")

        def init(shape, rng, dtype=np.float64):
            return normal(shape, rng, dtype, sigma=sigma)

        return init
    return INITIALIZERS[name]
