"""Finite-difference gradient checks (float64).

``numerical_gradient`` perturbs an array in place with central differences;
``gradient_check`` compares a net's backpropagated gradient with it, key by key.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["gradient_check", "numerical_gradient", "relative_error"]


def numerical_gradient(f: Callable[[np.ndarray], float], x: np.ndarray, eps: float = 1e-6):
    """Central differences ``g_i = (f(x + eps e_i) - f(x - eps e_i)) / (2 eps)``.

    ``x`` is perturbed **in place**, one entry at a time, and restored, so ``f`` may read
    ``x`` through a view (e.g. ``f = lambda _: net_loss()`` with ``x = net.params["W1"]``).
    ``f(x)`` returns a scalar. Returns ``g`` with the shape of ``x`` (float64).
    Error: ``O(eps^2)`` truncation plus ``O(ulp(f) / eps)`` rounding.
    """
    g = np.zeros(x.shape, dtype=np.float64)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i].copy()
        x[i] = old + eps
        f_plus = float(f(x))
        x[i] = old - eps
        f_minus = float(f(x))
        x[i] = old
        g[i] = (f_plus - f_minus) / (2.0 * eps)
    return g


def relative_error(g_num: np.ndarray, g: np.ndarray, floor: float = 1e-3) -> float:
    """``max_i |g_num_i - g_i| / max(|g_num_i|, |g_i|, floor)`` (0.0 for empty arrays).

    The ``floor`` keeps entries whose true gradient is ~0 (dead units, tiny weights) from
    dividing rounding noise by ~0: below it the error is absolute, scaled by ``1/floor``.
    """
    g_num, g = np.asarray(g_num, dtype=np.float64), np.asarray(g, dtype=np.float64)
    if g.size == 0:
        return 0.0
    denom = np.maximum(np.maximum(np.abs(g_num), np.abs(g)), floor)
    return float(np.max(np.abs(g_num - g) / denom))


def gradient_check(net, X, y, eps: float = 1e-6, floor: float = 1e-3) -> dict[str, float]:
    """Max relative error per parameter key between backprop and central differences.

    ``net``: an ``MLP`` (float64 recommended: in float32 rounding dominates); ``X``, ``y`` as
    for ``net.loss_and_grad`` (the loss ``J`` includes the regularizer). Returns
    ``{key: relative_error(numerical, analytic, floor * max(1, |J|))}`` for every key of
    ``net.params``: central differences carry a rounding error ~ ``ulp(J) / eps``, so entries
    smaller than the floor are compared absolutely. Values around 1e-8 mean agreement; above
    1e-6, a bug or a kink (ReLU at 0, a hinge margin at 0, a maxout tie, ``W = 0`` under L1)
    within ``eps`` of the point.
    """
    X, T = net.prepare(X, y)
    J, grads = net.loss_and_grad_encoded(X, T)
    floor = floor * max(1.0, abs(J))

    def loss(_x) -> float:
        return net.loss_encoded(X, T)

    return {
        key: relative_error(numerical_gradient(loss, view, eps), grads[key], floor)
        for key, view in net.params.items()
    }
