"""The training loop: batching, metrics, time-to-target, stopping, divergence.

Batching decides the algorithm, as on the lecture's slides: a batch of the whole training set
is gradient descent (one update per epoch), a batch of 1 is SGD (n updates per epoch), a
batch of b is mini-batch SGD (ceil(n / b) updates per epoch). The data are reshuffled every
epoch with the run's generator (one permutation, copied once into preallocated buffers, so
each batch is a contiguous view).

Clock: ``train_seconds`` runs only over forward / backward / update, never over evaluation,
diagnostics or logging, so different batch sizes are compared fairly.

Callbacks (``fnnbench.tracking`` is one) get ``on_epoch_end(epoch, metrics)`` — epoch 0 is the
untrained network — and ``on_train_end(result)``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from fnnbench.data import Dataset
from fnnbench.nn import MLP

OUTCOMES = ("reached_target", "max_epochs", "converged", "diverged")
# A sigmoid / tanh output within this distance of its bound counts as saturated.
SATURATION_MARGIN = 0.02


class Callback(Protocol):
    def on_epoch_end(self, epoch: int, metrics: dict[str, float]) -> None: ...

    def on_train_end(self, result: TrainResult) -> None: ...


@dataclass
class TrainResult:
    """What a job produced: per-epoch history, summary metrics, outcome and the trained net."""

    history: list[dict[str, float]]
    summary: dict[str, float]
    outcome: str
    net: MLP
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainSettings:
    """The ``train`` config section (see conf/config.yaml for the meaning of each key)."""

    epochs: int = 30
    target: float | None = None
    target_metric: str = "train_loss"
    stop_at_target: bool = False
    converge_tol: float = 0.0
    diagnostics_every: int = 1
    eval_test: bool = True
    progress: bool = False

    @classmethod
    def from_cfg(cls, train_cfg: Mapping, progress: bool = False) -> TrainSettings:
        keys = cls.__dataclass_fields__
        kw = {k: train_cfg[k] for k in keys if k in train_cfg and k != "progress"}
        return cls(**kw, progress=progress)


def accuracy(net: MLP, z: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(net.loss.predict(z) == y))


def penalty(net: MLP) -> float:
    """lambda * Omega(theta) of the net's regularizer (weights only), 0 without one."""
    reg = net.regularizer
    if not reg.strength:
        return 0.0
    return float(reg.value(net.params[f"W{l}"] for l in range(1, net.n_layers + 1)))


def evaluate(net: MLP, X: np.ndarray, T: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Loss (mean over examples, plus lambda * Omega) and accuracy on a whole split.

    ``X`` is validated and in the net's dtype already (the trainer checks data once)."""
    zs, _ = net._forward(X)
    z = zs[-1]
    return float(net.loss.value(z, T) + penalty(net)), accuracy(net, z, y)


def layer_diagnostics(net: MLP, X: np.ndarray, T: np.ndarray) -> dict[str, float]:
    """Per-layer diagnostics on the full training set.

    - ``grad_norm/layer{l}``: Frobenius norm of dJ/d(theta^l) (all parameters of layer l) of
      the full-batch loss, l = 1..L;
    - ``act_mean/layer{l}``, ``act_std/layer{l}``: mean and std of a^l over examples and units;
    - ``saturated_frac/layer{l}``: share of (example, unit) outputs within 0.02 of the bounds of
      a saturating activation (sigmoid (0, 1), tanh (-1, 1)); 0 for unbounded activations;
    - ``dead_frac/layer{l}``: share of units whose derivative f'(z) is 0 on every training
      example (a dead ReLU: z < 0 everywhere); 0 for PReLU and maxout, which cannot die this way.
    """
    out: dict[str, float] = {}
    _, grads = net.loss_and_grad(X, T)
    for l in range(1, net.n_layers + 1):
        sq = sum(float(np.vdot(grads[k], grads[k])) for k in net.layer_keys(l))
        out[f"grad_norm/layer{l}"] = math.sqrt(sq)
    _, cache = net.forward(X, cache=True)
    act = net.activation
    for l in range(1, net.n_layers):
        a, z = cache["a"][l], cache["z"][l]
        out[f"act_mean/layer{l}"] = float(a.mean())
        out[f"act_std/layer{l}"] = float(a.std())
        bounds = getattr(act, "bounds", None)
        if bounds is None:
            out[f"saturated_frac/layer{l}"] = 0.0
        else:
            lo, hi = bounds
            sat = (a <= lo + SATURATION_MARGIN) | (a >= hi - SATURATION_MARGIN)
            out[f"saturated_frac/layer{l}"] = float(sat.mean())
        if act.name in ("prelu", "maxout"):
            out[f"dead_frac/layer{l}"] = 0.0
        else:
            dead = np.all(act.df(z) == 0, axis=0)
            out[f"dead_frac/layer{l}"] = float(dead.mean())
    return out


def _reached(settings: TrainSettings, train_loss: float, train_acc: float) -> bool:
    if settings.target is None:
        return False
    value = train_loss if settings.target_metric == "train_loss" else 1.0 - train_acc
    return value <= settings.target


def fit(net: MLP, opt: Any, data: Dataset, settings: TrainSettings, rng: np.random.Generator,
        batch_size: int, callbacks: Iterable[Callback] = ()) -> TrainResult:
    """Train ``net`` on ``data.X_train`` with ``opt`` for ``settings.epochs`` epochs.

    ``batch_size`` is resolved already (n_train for gradient descent). Returns the history
    (one dict per epoch, epoch 0 = before training), the summary metrics and the outcome:
    ``reached_target`` (stop_at_target and the target was reached), ``converged`` (an update
    moved theta by at most ``converge_tol``: the lecture's loop condition theta^{i+1} ==
    theta^i), ``diverged`` (a non-finite loss: a valid result, not a crash), else ``max_epochs``.
    """
    callbacks = list(callbacks)
    dtype = net.theta.dtype
    X = np.ascontiguousarray(data.X_train, dtype=dtype)
    y = data.y_train
    n = X.shape[0]
    n_out = net.sizes[-1]
    T = np.ascontiguousarray(net.loss.encode(y, n_out), dtype=dtype)  # labels encoded once
    splits = {"val": (data.X_val, data.y_val)}
    if data.X_test is not None:
        splits["test"] = (data.X_test, data.y_test)
    encoded = {
        name: (np.ascontiguousarray(Xs, dtype=dtype),
               np.ascontiguousarray(net.loss.encode(ys, n_out), dtype=dtype), ys)
        for name, (Xs, ys) in splits.items() if Xs is not None and len(Xs)
    }

    b = min(batch_size, n)
    full_batch = b >= n
    Xs, Ts = np.empty_like(X), np.empty_like(T)  # shuffled copies; batches are views into them
    grad = np.zeros_like(net.theta)
    params, grads = {"theta": net.theta}, {"theta": grad}
    prev = np.empty_like(net.theta) if settings.converge_tol > 0 else None

    history: list[dict[str, float]] = []
    summary: dict[str, float] = {}
    updates = 0
    clock = 0.0
    outcome = "max_epochs"

    def record(epoch: int) -> dict[str, float]:
        m: dict[str, float] = {}
        m["train_loss"], m["train_acc"] = evaluate(net, X, T, y)
        for name, (Xe, Te, ye) in encoded.items():
            if name == "test" and not settings.eval_test and epoch < settings.epochs:
                continue
            m[f"{name}_loss"], m[f"{name}_acc"] = evaluate(net, Xe, Te, ye)
        every = settings.diagnostics_every
        if every and epoch % every == 0 and all(math.isfinite(v) for v in m.values()):
            m.update(layer_diagnostics(net, X, T))
        m["updates"] = float(updates)
        m["train_seconds"] = clock
        history.append(m)
        if "epochs_to_target" not in summary and _reached(settings, m["train_loss"],
                                                            m["train_acc"]):
            summary["epochs_to_target"] = float(epoch)
            summary["updates_to_target"] = float(updates)
            summary["examples_to_target"] = float(epoch * n)
            summary["seconds_to_target"] = clock
        for cb in callbacks:
            cb.on_epoch_end(epoch, m)
        return m

    bar = None
    if settings.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=settings.epochs, unit="epoch", leave=False, dynamic_ncols=True)

    epoch = 0
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        m = record(0)
        if settings.stop_at_target and "epochs_to_target" in summary:
            outcome = "reached_target"
        elif not math.isfinite(m["train_loss"]):
            outcome = "diverged"
        while outcome == "max_epochs" and epoch < settings.epochs:
            epoch += 1
            if full_batch:
                Xe, Te = X, T
            else:
                perm = rng.permutation(n)
                np.take(X, perm, axis=0, out=Xs)
                np.take(T, perm, axis=0, out=Ts)
                Xe, Te = Xs, Ts
            t0 = time.perf_counter()
            for start in range(0, n, b):
                if prev is not None:
                    np.copyto(prev, net.theta)
                loss, _ = net._loss_and_grad(Xe[start:start + b], Te[start:start + b], grad)
                if not math.isfinite(loss):
                    outcome = "diverged"
                    break
                opt.step(params, grads)
                updates += 1
                if prev is not None:
                    np.subtract(prev, net.theta, out=prev)
                    if math.sqrt(float(np.vdot(prev, prev))) <= settings.converge_tol:
                        outcome = "converged"
                        break
            clock += time.perf_counter() - t0
            m = record(epoch)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{m['train_loss']:.4g}", acc=f"{m['train_acc']:.3f}")
            if not math.isfinite(m["train_loss"]):
                outcome = "diverged"
            elif outcome == "max_epochs" and settings.stop_at_target and (
                    "epochs_to_target" in summary):
                outcome = "reached_target"
    if bar is not None:
        bar.close()

    last = history[-1]
    summary.update({
        "final_train_loss": last["train_loss"],
        "final_train_acc": last["train_acc"],
        "train_seconds": clock,
        "epochs_run": float(epoch),
        "updates_run": float(updates),
    })
    for name in encoded:
        if f"{name}_loss" not in last and math.isfinite(last["train_loss"]):
            last[f"{name}_loss"], last[f"{name}_acc"] = evaluate(net, *encoded[name])
        if f"{name}_acc" in last:
            summary[f"final_{name}_loss"] = last[f"{name}_loss"]
            summary[f"final_{name}_acc"] = last[f"{name}_acc"]
    for kind in ("dead_frac", "saturated_frac"):
        # final_*: mean over hidden layers at the last diagnosed epoch; mean_*: also over epochs
        per_epoch = [[v for k, v in h.items() if k.startswith(kind + "/")] for h in history]
        per_epoch = [vals for vals in per_epoch if vals and all(map(math.isfinite, vals))]
        if per_epoch:
            summary[f"final_{kind}"] = float(np.mean(per_epoch[-1]))
            summary[f"mean_{kind}"] = float(np.mean([np.mean(v) for v in per_epoch]))
    result = TrainResult(history=history, summary=summary, outcome=outcome, net=net)
    for cb in callbacks:
        cb.on_train_end(result)
    return result
