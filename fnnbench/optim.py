"""Update rules: GD / SGD / mini-batch SGD and the adaptive ones.

The one interface of this module, the ABC :class:`UpdateRule`::

    opt = make_optimizer("adam", lr=1e-3)   # built by name from UPDATE_RULES
    opt.step(params, grads)      # params, grads: dict[str, np.ndarray], same keys and shapes

``step`` updates every array of ``params`` IN PLACE (``theta -= ...``); it never rebinds an
entry, so views into one flat buffer stay valid (the trainer passes ``{"theta": net.theta}``
and ``{"theta": grad_buffer}``). A rule defines ``update(theta, g, buffers, t)`` (the rule on
one array, in place; ``step`` calls it for every array) and declares ``rule`` (its name),
``hp_class`` (its hyperparameter dataclass) and ``buffer_names`` (its state arrays).

Hyperparameters live in ``opt.hp``, a frozen dataclass; everything that changes lives in
``opt.state``:

    opt.state["t"]             number of steps taken so far (the step in progress is t)
    opt.state["buffers"][key]  dict of arrays for parameter ``key`` (shape and dtype of it),
                               allocated lazily on the first step that sees ``key``:
                               the rule's accumulators (``v``, ``G``, ``s``, ``m``) and one
                               scratch array ``tmp``, so a step allocates no new arrays.

To change a hyperparameter between steps (a schedule) replace the whole dataclass:
``opt.hp = dataclasses.replace(opt.hp, lr=0.5 * opt.hp.lr)``.  ``opt.reset()`` drops the state.

Rules (g = dJ/dtheta of the batch the trainer passes; all operations elementwise):

=========  ==================================================================================
plain      theta <- theta - lr g   (lecture: theta^{i+1} = theta^i - eta grad J; GD, SGD and
           mini-batch SGD are all this rule: the batch size lives in the trainer)
momentum   v <- mu v - lr g;  theta <- theta + v                       (v^0 = 0)
nesterov   v <- mu v - lr g;  theta <- theta + mu v - lr g             (v^0 = 0)
           (mu is the hyperparameter ``momentum``, the name the configs use)
           the standard reformulation (Sutskever et al. 2013; Bengio et al. 2013) in which the
           stored theta is the look-ahead point theta_true + mu v, so g is taken where the
           trainer evaluates it; equivalently theta <- theta - mu v_old + (1 + mu) v_new
adagrad    G <- G + g^2;  theta <- theta - lr g / (sqrt(G) + eps)      (G^0 = 0; Duchi et al.)
rmsprop    s <- rho s + (1 - rho) g^2;  theta <- theta - lr g / (sqrt(s) + eps)   (s^0 = 0)
adam       m <- beta1 m + (1 - beta1) g;  v <- beta2 v + (1 - beta2) g^2   (m^0 = v^0 = 0)
           m_hat = m / (1 - beta1^t);  v_hat = v / (1 - beta2^t)            (bias correction)
           theta <- theta - lr m_hat / (sqrt(v_hat) + eps)          (Kingma & Ba, Algorithm 1)
=========  ==================================================================================

Notation: the lecture calls the learning rate eta (or epsilon_k); here it is ``lr``.  eps sits
outside the square root in adagrad / rmsprop / adam (as in Kingma & Ba).

Valid values, stated once in ``RANGES`` (hyperparameter -> :class:`Range`) and enforced by the
dataclasses: ``lr``, ``eps`` > 0; ``momentum``, ``rho``, ``beta1``, ``beta2`` in [0, 1).
``HYPERPARAMETERS`` maps each rule to the names of its hyperparameters.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

__all__ = [
    "HYPERPARAMETERS",
    "RANGES",
    "UPDATE_RULES",
    "AdaGrad",
    "AdaGradHP",
    "Adam",
    "AdamHP",
    "Momentum",
    "MomentumHP",
    "Nesterov",
    "NesterovHP",
    "Plain",
    "PlainHP",
    "RMSProp",
    "RMSPropHP",
    "Range",
    "UpdateRule",
    "make_optimizer",
]


# --------------------------------------------------------------------------- hyperparameters


@dataclass(frozen=True)
class Range:
    """An interval of the reals: ``lo < x`` (``lo_open``) or ``lo <= x``, and ``x < hi``
    (``hi_open``) or ``x <= hi``; an end that is None is unbounded. ``str``: ``"> 0"``,
    ``"in [0, 1)"``."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, x: float) -> bool:
        lo, hi = self.lo, self.hi
        if lo is not None and (x <= lo if self.lo_open else x < lo):
            return False
        return hi is None or (x < hi if self.hi_open else x <= hi)

    def __str__(self) -> str:
        lo, hi = self.lo, self.hi
        if hi is None:
            return "any number" if lo is None else f"{'>' if self.lo_open else '>='} {lo:g}"
        if lo is None:
            return f"{'<' if self.hi_open else '<='} {hi:g}"
        return f"in {'(' if self.lo_open else '['}{lo:g}, {hi:g}{')' if self.hi_open else ']'}"


_POSITIVE = Range(0.0, lo_open=True)
_UNIT = Range(0.0, 1.0, hi_open=True)  # decay rates

RANGES: dict[str, Range] = {
    "lr": _POSITIVE,
    "eps": _POSITIVE,
    "momentum": _UNIT,
    "rho": _UNIT,
    "beta1": _UNIT,
    "beta2": _UNIT,
}
"""Valid values of every optimizer hyperparameter (finite numbers within the range)."""


def _check_real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"optimizer hyperparameter {name!r} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"optimizer hyperparameter {name!r} must be finite, got {value!r}")
    return value


class _HP:
    """Validation shared by the hyperparameter dataclasses (values are stored as float)."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            valid = RANGES.get(field.name)
            if valid is None:
                continue
            value = _check_real(field.name, getattr(self, field.name))
            if value not in valid:
                raise ValueError(
                    f"optimizer hyperparameter {field.name!r} must be {valid}, got {value!r}"
                )
            object.__setattr__(self, field.name, value)


@dataclass(frozen=True)
class PlainHP(_HP):
    lr: float = 0.01  # step size eta (lecture); > 0


@dataclass(frozen=True)
class MomentumHP(_HP):
    lr: float = 0.01  # step size; > 0
    momentum: float = 0.9  # momentum coefficient mu; in [0, 1)


@dataclass(frozen=True)
class NesterovHP(_HP):
    lr: float = 0.01  # step size; > 0
    momentum: float = 0.9  # momentum coefficient mu; in [0, 1)


@dataclass(frozen=True)
class AdaGradHP(_HP):
    lr: float = 0.01  # global step size; > 0
    eps: float = 1e-8  # added to sqrt(G) against division by zero; > 0


@dataclass(frozen=True)
class RMSPropHP(_HP):
    lr: float = 0.001  # global step size; > 0
    rho: float = 0.9  # decay of the running mean of g^2; in [0, 1)
    eps: float = 1e-8  # added to sqrt(s); > 0


@dataclass(frozen=True)
class AdamHP(_HP):
    lr: float = 0.001  # step size alpha; > 0
    beta1: float = 0.9  # decay of the first moment; in [0, 1)
    beta2: float = 0.999  # decay of the second moment; in [0, 1)
    eps: float = 1e-8  # added to sqrt(v_hat); > 0


# --------------------------------------------------------------------------- the rules


class UpdateRule(abc.ABC):
    """The interface of every update rule: ``step(params, grads)`` in place; subclasses define
    ``update`` (the rule on one array) and ``rule``, ``hp_class``, ``buffer_names``.

    ``buffer_names``: the per-parameter state arrays of the rule (zeros at first), plus the
    scratch array ``tmp`` every rule gets.
    """

    rule: ClassVar[str] = ""
    hp_class: ClassVar[type] = PlainHP
    buffer_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, hp: Any = None) -> None:
        self.hp = self.hp_class() if hp is None else hp
        if not isinstance(self.hp, self.hp_class):
            raise ValueError(f"{self.rule}: hp must be a {self.hp_class.__name__}, got {hp!r}")
        self.state: dict[str, Any] = {}
        self.reset()

    def reset(self) -> None:
        """Forget all state (t = 0, no buffers)."""
        self.state = {"t": 0, "buffers": {}}

    @property
    def config(self) -> dict[str, Any]:
        """JSON-serialisable ``{"rule": ..., **hyperparameters}``."""
        return {"rule": self.rule, **dataclasses.asdict(self.hp)}

    def __repr__(self) -> str:
        hp = ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(self.hp).items())
        return f"{type(self).__name__}({hp})"

    def _buffers(self, key: str, theta: np.ndarray) -> dict[str, np.ndarray]:
        buffers = self.state["buffers"].get(key)
        if buffers is None or buffers["tmp"].shape != theta.shape:
            buffers = {name: np.zeros_like(theta) for name in (*self.buffer_names, "tmp")}
            self.state["buffers"][key] = buffers
        return buffers

    def step(self, params: Mapping[str, np.ndarray], grads: Mapping[str, np.ndarray]) -> None:
        """One update of every array in ``params`` in place, from ``grads`` (same keys/shapes).

        Arrays of ``params`` must be writable floating arrays; ``grads`` is only read.
        """
        # called once per update: the checks stay, at the cost of a few dict look-ups
        if not grads.keys() >= params.keys():
            missing = [key for key in params if key not in grads]
            raise ValueError(f"{self.rule}: no gradient for parameter(s) {missing}")
        state = self.state
        state["t"] = t = state["t"] + 1
        buffers = state["buffers"]
        for key, theta in params.items():
            g = grads[key]
            if g.shape != theta.shape:
                raise ValueError(
                    f"{self.rule}: gradient {key!r} has shape {g.shape}, parameter {theta.shape}"
                )
            buf = buffers.get(key)
            if buf is None or buf["tmp"].shape != theta.shape:
                buf = self._buffers(key, theta)
            self.update(theta, g, buf, t)

    @abc.abstractmethod
    def update(self, theta: np.ndarray, g: np.ndarray, buffers: dict[str, np.ndarray],
               t: int) -> None:
        """The rule on one array: ``theta`` updated in place from its gradient ``g`` (read
        only), its ``buffers`` (``buffer_names`` and ``tmp``, updated in place) and the step
        number ``t`` (1 on the first step); allocates nothing."""


class Plain(UpdateRule):
    """theta <- theta - lr g  (GD, SGD, mini-batch SGD)."""

    rule = "plain"
    hp_class = PlainHP

    def update(self, theta, g, buf, t):
        tmp = buf["tmp"]
        np.multiply(g, self.hp.lr, out=tmp)
        np.subtract(theta, tmp, out=theta)


class Momentum(UpdateRule):
    """v <- mu v - lr g;  theta <- theta + v."""

    rule = "momentum"
    hp_class = MomentumHP
    buffer_names = ("v",)

    def update(self, theta, g, buf, t):
        v, tmp = buf["v"], buf["tmp"]
        mu = self.hp.momentum
        v *= mu
        np.multiply(g, self.hp.lr, out=tmp)
        v -= tmp
        theta += v


class Nesterov(UpdateRule):
    """v <- mu v - lr g;  theta <- theta + mu v - lr g  (look-ahead reformulation)."""

    rule = "nesterov"
    hp_class = NesterovHP
    buffer_names = ("v",)

    def update(self, theta, g, buf, t):
        v, tmp = buf["v"], buf["tmp"]
        mu = self.hp.momentum
        v *= mu
        np.multiply(g, self.hp.lr, out=tmp)  # tmp = lr g
        v -= tmp
        theta -= tmp
        np.multiply(v, mu, out=tmp)  # tmp = mu v_new
        theta += tmp


class AdaGrad(UpdateRule):
    """G <- G + g^2;  theta <- theta - lr g / (sqrt(G) + eps)."""

    rule = "adagrad"
    hp_class = AdaGradHP
    buffer_names = ("G",)

    def update(self, theta, g, buf, t):
        G, tmp = buf["G"], buf["tmp"]
        np.multiply(g, g, out=tmp)
        G += tmp
        np.sqrt(G, out=tmp)
        tmp += self.hp.eps
        np.divide(g, tmp, out=tmp)
        tmp *= self.hp.lr
        theta -= tmp


class RMSProp(UpdateRule):
    """s <- rho s + (1 - rho) g^2;  theta <- theta - lr g / (sqrt(s) + eps)."""

    rule = "rmsprop"
    hp_class = RMSPropHP
    buffer_names = ("s",)

    def update(self, theta, g, buf, t):
        s, tmp = buf["s"], buf["tmp"]
        rho = self.hp.rho
        s *= rho
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - rho
        s += tmp
        np.sqrt(s, out=tmp)
        tmp += self.hp.eps
        np.divide(g, tmp, out=tmp)
        tmp *= self.hp.lr
        theta -= tmp


class Adam(UpdateRule):
    """Kingma & Ba, Algorithm 1: moments m, v with bias correction by 1 - beta^t."""

    rule = "adam"
    hp_class = AdamHP
    buffer_names = ("m", "v")

    def update(self, theta, g, buf, t):
        m, v, tmp = buf["m"], buf["v"], buf["tmp"]
        beta1, beta2 = self.hp.beta1, self.hp.beta2
        m *= beta1
        np.multiply(g, 1.0 - beta1, out=tmp)
        m += tmp
        v *= beta2
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - beta2
        v += tmp
        np.divide(v, 1.0 - beta2**t, out=tmp)  # v_hat
        np.sqrt(tmp, out=tmp)
        tmp += self.hp.eps
        np.divide(m, tmp, out=tmp)  # m / (sqrt(v_hat) + eps)
        tmp *= self.hp.lr / (1.0 - beta1**t)  # m_hat = m / (1 - beta1^t)
        theta -= tmp


UPDATE_RULES: dict[str, type[UpdateRule]] = {
    cls.rule: cls for cls in (Plain, Momentum, Nesterov, AdaGrad, RMSProp, Adam)
}
"""Registry: rule name -> class. ``make_optimizer`` builds instances from it."""

HYPERPARAMETERS: dict[str, tuple[str, ...]] = {
    name: tuple(f.name for f in dataclasses.fields(cls.hp_class))
    for name, cls in UPDATE_RULES.items()
}
"""Rule name -> the names of its hyperparameters (each with its range in ``RANGES``)."""


def make_optimizer(rule: str, **hparams: Any) -> UpdateRule:
    """Build the optimizer ``rule`` (a key of UPDATE_RULES) from its hyperparameters.

    Unset hyperparameters take the defaults of the rule's dataclass.  Raises ValueError naming
    an unknown rule, an unknown hyperparameter (with the allowed ones) or an invalid value
    (lr and eps must be > 0; momentum, rho, beta1, beta2 in [0, 1)).
    """
    if rule not in UPDATE_RULES:
        raise ValueError(f"unknown update rule {rule!r}; allowed: {sorted(UPDATE_RULES)}")
    cls = UPDATE_RULES[rule]
    allowed = list(HYPERPARAMETERS[rule])
    unknown = sorted(k for k in hparams if k not in allowed)
    if unknown:
        raise ValueError(
            f"unknown hyperparameter(s) {unknown} for update rule {rule!r}; allowed: {allowed}"
        )
    return cls(cls.hp_class(**hparams))
