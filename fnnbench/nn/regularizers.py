"""Regularizers: the ``lambda * Omega(theta)`` term of ``J = mean loss + lambda * Omega(theta)``.

The interface of the family is :class:`Regularizer` (an ABC: a regularizer defines ``omega``
and ``add_grad``), applied to the **weight matrices W^l only** (never to biases ``b^l`` nor to
activation parameters such as PReLU slopes ``mu^l``):

- ``omega(W) -> float``: ``Omega(W)`` of one weight matrix;
- ``value(Ws) -> float``: ``lambda * sum_l Omega(W^l)``;
- ``add_grad(W, dW) -> None``: ``dW += lambda * dOmega/dW`` in place;
- ``strength`` (``lambda >= 0``) and ``name`` (the registry key).

``REGULARIZERS`` (name -> class) is the registry; its keys are the valid names of a config.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterable
from typing import ClassVar

import numpy as np

__all__ = ["REGULARIZERS", "L1", "L2", "NoRegularizer", "Regularizer", "get_regularizer"]


class Regularizer(abc.ABC):
    """The interface (see the module docstring): ``omega(W)``, ``value(Ws)``,
    ``add_grad(W, dW)``; ``lambda = strength``."""

    name: ClassVar[str] = ""

    def __init__(self, strength: float = 0.0):
        if (
            isinstance(strength, bool)
            or not isinstance(strength, (int, float, np.number))
            or not math.isfinite(strength)
        ):
            raise ValueError(f"reg_strength must be a finite number, got {strength!r}")
        if strength < 0:
            raise ValueError(f"reg_strength must be >= 0, got {strength!r}")
        self.strength = float(strength)

    @abc.abstractmethod
    def omega(self, W: np.ndarray) -> float:
        """``Omega(W)`` of one weight matrix (without ``lambda``)."""

    def value(self, Ws: Iterable[np.ndarray]) -> float:
        """``lambda * sum_l Omega(W^l)`` over the weight matrices ``Ws`` (not biases)."""
        if self.strength == 0.0:
            return 0.0
        return self.strength * sum(self.omega(W) for W in Ws)

    @abc.abstractmethod
    def add_grad(self, W: np.ndarray, dW: np.ndarray) -> None:
        """``dW += lambda * dOmega/dW`` in place."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(strength={self.strength})"


class NoRegularizer(Regularizer):
    """``Omega = 0``: no penalty (``regularizer=none``)."""

    name = "none"

    def omega(self, W):
        return 0.0

    def value(self, Ws):
        return 0.0

    def add_grad(self, W, dW):
        return None


class L2(Regularizer):
    """Weight decay: ``Omega(W) = 0.5 * sum W^2``, gradient ``lambda * W`` (weights only)."""

    name = "l2"

    def omega(self, W):
        w = W.ravel()
        return 0.5 * float(np.dot(w, w))

    def add_grad(self, W, dW):
        if self.strength:
            dW += self.strength * W


class L1(Regularizer):
    """Lasso: ``Omega(W) = sum |W|``, (sub)gradient ``lambda * sign(W)`` (weights only)."""

    name = "l1"

    def omega(self, W):
        return float(np.abs(W).sum())

    def add_grad(self, W, dW):
        if self.strength:
            dW += self.strength * np.sign(W)


REGULARIZERS: dict[str, type[Regularizer]] = {
    cls.name: cls for cls in (NoRegularizer, L2, L1)
}
"""Registry: regularizer name -> class (keys ``none, l2, l1``, in that order)."""


def get_regularizer(name: str | None, strength: float = 0.0) -> Regularizer:
    """Build ``name`` (None or ``"none"`` -> no penalty) with ``lambda = strength``.

    Raises ValueError for an unknown name or a negative/non-finite strength.
    """
    key = "none" if name is None else name
    if not isinstance(key, str) or key not in REGULARIZERS:
        raise ValueError(
            f"unknown regularizer {name!r}; expected one of: None, {', '.join(REGULARIZERS)}"
        )
    return REGULARIZERS[key](strength)
