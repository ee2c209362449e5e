"""The training loop: batching, metrics, time-to-target, stopping, divergence.

Batching decides the algorithm, as on the lecture's slides: a batch of the whole training set
is gradient descent (one update per epoch), a batch of 1 is SGD (n updates per epoch), a
batch of b is mini-batch SGD (ceil(n / b) updates per epoch). The data are reshuffled every
epoch with the run's generator (one permutation, copied once into preallocated buffers, so
each batch is a contiguous view).

Clock: ``train_seconds`` runs only over forward / backward / update, never over evaluation,
diagnostics or logging, so different batch sizes are compared fairly. ``eval_seconds`` (a
summary) is the clock of the evaluation passes and target checks, so that a job's wall time
splits into training, evaluation and the harness (building, tracking, launching).

Callbacks (``fnnbench.tracking`` is one) get ``on_epoch_end(epoch, metrics)`` — epoch 0 is the
untrained network — and ``on_train_end(result)``.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from fnnbench.data import Dataset
from fnnbench.nn import MLP
from fnnbench.nn.mlp import Workspace
from fnnbench.optim import UpdateRule

# How a job ended (the MLflow tag fnnbench.outcome; fnnbench.tracking.names re-exports them).
REACHED_TARGET = "reached_target"  # stop_at_target and the target was reached
MAX_EPOCHS = "max_epochs"  # the epoch budget ran out
CONVERGED = "converged"  # an update's norm fell to converge_tol
DIVERGED = "diverged"  # a non-finite loss: a valid result, not a crash
OUTCOMES = (REACHED_TARGET, MAX_EPOCHS, CONVERGED, DIVERGED)
# A sigmoid / tanh output within this distance of its bound counts as saturated (the old
# measure, saturated_frac: not comparable between sigmoid and tanh, kept for the record).
SATURATION_MARGIN = 0.02
# The normalised measure (sat_share): a unit is saturated on an example when its derivative
# f'(z) is below this share of the activation's largest derivative (sigmoid 0.25, tanh 1), so
# sigmoid and tanh are judged alike.
SATURATION_DERIVATIVE_SHARE = 0.1
# Diagnostics run every epoch up to this epoch (Glorot & Bengio's early-training window);
# diagnostics_every applies after it. The *_early summaries are over epochs 1..EARLY_EPOCHS.
EARLY_EPOCHS = 10


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
    target_check_every: int = 0
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
    return _evaluate(net, net.feedforward(X), T, y)


def _evaluate(net: MLP, forward: tuple[list, list], T: np.ndarray,
              y: np.ndarray) -> tuple[float, float]:
    """:func:`evaluate` from a forward pass ``net.feedforward(X)``: one pass for both metrics."""
    z = forward[0][-1]
    return float(net.loss.value(z, T) + penalty(net)), accuracy(net, z, y)


_MAX_DERIVATIVE: dict[tuple, float] = {}


def max_derivative(act) -> float:
    """The largest derivative max_z f'(z) of an activation (sigmoid 0.25, tanh 1), found once
    on a grid over [-20, 20] (the bounded activations peak at 0, which is on the grid)."""
    key = act.name  # only the bounded activations (no hyperparameters) get here
    if key not in _MAX_DERIVATIVE:
        z = np.linspace(-20.0, 20.0, 4001)
        _MAX_DERIVATIVE[key] = float(np.max(act.df(z)))
    return _MAX_DERIVATIVE[key]


def saturation_share(act, z: np.ndarray) -> float:
    """Share of (example, unit) pre-activations ``z`` where a saturating activation's derivative
    is below ``SATURATION_DERIVATIVE_SHARE`` of its maximum; 0 for unbounded activations."""
    if act.bounds is None or act.pieces != 1:
        return 0.0
    return float(np.mean(act.df(z) < SATURATION_DERIVATIVE_SHARE * max_derivative(act)))


def dead_z_share(z: np.ndarray, pieces: int = 1) -> float:
    """Share of units whose pre-activation is < 0 on every example (rows of ``z``), whatever
    the activation (leaky ReLU / ELU units never reach f'(z) = 0 but can sit at z < 0). With
    ``pieces`` k > 1 (maxout, columns i*k..i*k+k-1 are unit i) a unit's z is its largest piece."""
    if pieces > 1:
        z = z.reshape(z.shape[0], -1, pieces).max(axis=2)
    return float(np.all(z < 0, axis=0).mean())


def layer_diagnostics(net: MLP, X: np.ndarray, T: np.ndarray,
                      forward: tuple[list, list] | None = None,
                      workspace: Workspace | None = None) -> dict[str, float]:
    """Per-layer diagnostics on the full training set.

    - ``grad_norm/layer{l}``: Frobenius norm of dJ/d(theta^l) (all parameters of layer l) of
      the full-batch loss, l = 1..L;
    - ``act_mean/layer{l}``, ``act_std/layer{l}``: mean and std of a^l over examples and units;
    - ``saturated_frac/layer{l}``: share of (example, unit) outputs within 0.02 of the bounds of
      a saturating activation (sigmoid (0, 1), tanh (-1, 1)); 0 for unbounded activations;
    - ``dead_frac/layer{l}``: share of units whose derivative f'(z) is 0 on every training
      example (a dead ReLU: z < 0 everywhere); 0 for activations that cannot die this way
      (``activation.can_die`` False: PReLU, maxout);
    - ``sat_share/layer{l}``: share of (example, unit) pairs whose derivative is below a tenth
      of the activation's largest derivative (:func:`saturation_share`; 0 when unbounded);
    - ``dead_z/layer{l}``: share of units with z < 0 on every training example, for every
      activation (:func:`dead_z_share`);
    - ``grad_attenuation``: log10(||dJ/dtheta^1|| / ||dJ/dtheta^{L-1}||), the first over the top
      hidden layer's gradient norm (< 0: gradients shrink on their way down); only with >= 2
      hidden layers and both norms finite and > 0.

    ``X`` (converted to the net's dtype) and ``T`` (encoded targets) are not validated.
    ``forward``: the trainer's forward pass ``net.feedforward(X, workspace)`` of this epoch,
    reused: one forward and one backward pass for every diagnostic (the backward writes only
    the workspace's delta buffers, or new arrays, never the forward's arrays).
    """
    X = np.asarray(X, dtype=net.dtype)
    if forward is None:
        forward = net.feedforward(X)
    zs, as_ = forward
    out: dict[str, float] = {}
    layers = net.layer_views(np.empty_like(net.theta))  # (dJ/dW, dJ/db, dJ/dp) per layer
    net.backward(zs, as_, np.asarray(T, dtype=net.dtype), layers, workspace)
    for l in range(1, net.n_layers + 1):
        sq = sum(float(np.vdot(g, g)) for g in layers[l] if g is not None)
        out[f"grad_norm/layer{l}"] = math.sqrt(sq)
    top = net.n_layers - 1
    if top >= 2:
        g1, gt = out["grad_norm/layer1"], out[f"grad_norm/layer{top}"]
        if 0 < g1 < math.inf and 0 < gt < math.inf:
            out["grad_attenuation"] = math.log10(g1 / gt)
    act = net.activation
    for l in range(1, net.n_layers):
        a, z = as_[l], zs[l]
        out[f"act_mean/layer{l}"] = float(a.mean())
        out[f"act_std/layer{l}"] = float(a.std())
        bounds = act.bounds
        if bounds is None:
            out[f"saturated_frac/layer{l}"] = 0.0
        else:
            lo, hi = bounds
            sat = (a <= lo + SATURATION_MARGIN) | (a >= hi - SATURATION_MARGIN)
            out[f"saturated_frac/layer{l}"] = float(sat.mean())
        if not act.can_die:
            out[f"dead_frac/layer{l}"] = 0.0
        else:
            dead = np.all(act.df(z) == 0, axis=0)
            out[f"dead_frac/layer{l}"] = float(dead.mean())
        out[f"sat_share/layer{l}"] = saturation_share(act, z)
        out[f"dead_z/layer{l}"] = dead_z_share(z, act.pieces)
    return out


# per-layer diagnostic -> the stem of its summaries final_<stem>, mean_<stem>
_LAYER_SUMMARIES = {"dead_frac": "dead_frac", "saturated_frac": "saturated_frac",
                    "sat_share": "sat_share", "dead_z": "dead_z_frac"}


def diagnostic_summary(history: list[dict[str, float]], n_hidden: int) -> dict[str, float]:
    """Summary metrics of the per-layer diagnostics of a history (epoch i = ``history[i]``).

    ``final_<m>``: mean over hidden layers at the last diagnosed epoch; ``mean_<m>``: also
    averaged over the diagnosed epochs (m = dead_frac, saturated_frac, sat_share, dead_z_frac);
    ``grad_attenuation_early``: mean of ``grad_attenuation`` over epochs 1..EARLY_EPOCHS;
    ``top_act_mean_min_early``: the smallest mean activation of the top hidden layer over
    epochs 1..EARLY_EPOCHS; ``sat_share_top_early``: the top hidden layer's mean sat_share over
    epochs 1..EARLY_EPOCHS. Keys without data are left out.
    """
    out: dict[str, float] = {}
    for kind, stem in _LAYER_SUMMARIES.items():
        per_epoch = [[v for k, v in h.items() if k.startswith(kind + "/")] for h in history]
        per_epoch = [vals for vals in per_epoch if vals and all(map(math.isfinite, vals))]
        if per_epoch:
            out[f"final_{stem}"] = float(np.mean(per_epoch[-1]))
            out[f"mean_{stem}"] = float(np.mean([np.mean(v) for v in per_epoch]))
    early = history[1:EARLY_EPOCHS + 1]

    def early_values(key: str) -> list[float]:
        return [h[key] for h in early if key in h and math.isfinite(h[key])]

    att = early_values("grad_attenuation")
    if att:
        out["grad_attenuation_early"] = float(np.mean(att))
    if n_hidden >= 1:
        top_mean = early_values(f"act_mean/layer{n_hidden}")
        if top_mean:
            out["top_act_mean_min_early"] = float(np.min(top_mean))
        top_sat = early_values(f"sat_share/layer{n_hidden}")
        if top_sat:
            out["sat_share_top_early"] = float(np.mean(top_sat))
    return out


def _reached(settings: TrainSettings, train_loss: float, train_acc: float) -> bool:
    if settings.target is None:
        return False
    value = train_loss if settings.target_metric == "train_loss" else 1.0 - train_acc
    return value <= settings.target


def batches(net: MLP, X: np.ndarray, T: np.ndarray, batch_size: int) -> list[tuple]:
    """The batches of one epoch over ``X``, ``T`` (in their row order) for :func:`train_epoch`.

    ``[(X_batch, T_batch, workspace), ...]``: contiguous row views (the trainer copies each
    epoch's permutation into the same two arrays, so the views are made once per job) and one
    preallocated :class:`fnnbench.nn.mlp.Workspace` per batch size (the last batch may be
    shorter).
    """
    n = X.shape[0]
    b = max(1, min(int(batch_size), n))
    spaces: dict[int, Workspace] = {}
    out = []
    for start in range(0, n, b):
        Xb, Tb = X[start:start + b], T[start:start + b]
        m = Xb.shape[0]
        if m not in spaces:
            spaces[m] = net.workspace(m)
        out.append((Xb, Tb, spaces[m]))
    return out


# NumPy's BLAS (OpenBLAS) splits every GEMM above ~2^18 multiply-adds over all its threads,
# with a hand-off and a join per call. On a busy machine a thread waiting for a descheduled
# partner waits a scheduler time slice (milliseconds): on the shared 2-core benchmark
# machine 2 threads were 1.5-4x slower than 1 up to 2^27 multiply-adds per GEMM and 1.2-2x
# faster from 2^28 (on an idle machine threads pay from ~2^20). So the trainer gives each
# BLAS thread at least this many multiply-adds of the largest GEMM of a step (~10 ms of
# work). The count depends only on the shapes and the BLAS's own thread count, never on
# timing: BLAS results can differ in the last bit between thread counts, and runs stay
# reproducible.
GEMM_PER_THREAD = 1 << 27
_blas_libs: list | None = None


def _blas_controllers() -> list:
    """threadpoolctl controllers of the BLAS libraries loaded (found once per process)."""
    global _blas_libs
    if _blas_libs is None:
        try:
            from threadpoolctl import ThreadpoolController

            _blas_libs = list(ThreadpoolController().select(user_api="blas").lib_controllers)
        except Exception:  # threadpoolctl missing or failing: leave the threads alone
            _blas_libs = []
    return _blas_libs


@contextlib.contextmanager
def _blas_threads(limit: int) -> Iterator[None]:
    """At most ``limit`` BLAS threads inside the block; the previous counts restored."""
    libs = [(c, c.get_num_threads()) for c in _blas_controllers()]
    libs = [(c, n) for c, n in libs if n > limit]
    for c, _ in libs:
        c.set_num_threads(limit)
    try:
        yield
    finally:
        for c, n in libs:
            c.set_num_threads(n)


def step_threads(net: MLP, rows: int) -> int:
    """BLAS threads worth using for ``rows`` examples: the largest GEMM (rows x n_{l-1} x
    rows_l multiply-adds) over ``GEMM_PER_THREAD``, at least 1."""
    k = net.activation.pieces  # maxout: k rows of W per unit
    widest = max(a * b for a, b in zip(net.sizes[:-1], net.sizes[1:], strict=False)) * k
    return max(1, rows * widest // GEMM_PER_THREAD)


def train_epoch(net: MLP, opt: UpdateRule, epoch_batches: list[tuple], grad: np.ndarray,
                prev: np.ndarray | None = None, converge_tol: float = 0.0) -> tuple[int, str]:
    """The inner loop: one update per batch of :func:`batches`; returns ``(updates, outcome)``.

    Each update: forward + backward (``net.backprop`` into the flat gradient buffer ``grad``,
    no allocation) and ``opt.step({"theta": net.theta}, {"theta": grad})``. ``outcome`` is
    ``"diverged"`` (a non-finite batch loss, before its update), ``"converged"`` (with
    ``prev``, a buffer like theta: an update moved theta by at most ``converge_tol``) or ``""``.
    Small steps use fewer BLAS threads (see ``GEMM_PER_THREAD``). This is the code the
    benchmark (``python -m benchmarks.speed``) times.
    """
    if not epoch_batches:
        return 0, ""
    with _blas_threads(step_threads(net, epoch_batches[0][0].shape[0])):
        return _epoch_loop(net, opt, epoch_batches, grad, prev, converge_tol)


def _epoch_loop(net, opt, epoch_batches, grad, prev, converge_tol) -> tuple[int, str]:
    theta = net.theta
    params, grads = {"theta": theta}, {"theta": grad}
    backprop, step, isfinite = net.backprop, opt.step, math.isfinite
    updates = 0
    if prev is None:
        for Xb, Tb, ws in epoch_batches:
            if not isfinite(backprop(Xb, Tb, grad, ws)):
                return updates, DIVERGED
            step(params, grads)
            updates += 1
        return updates, ""
    for Xb, Tb, ws in epoch_batches:
        np.copyto(prev, theta)
        if not isfinite(backprop(Xb, Tb, grad, ws)):
            return updates, DIVERGED
        step(params, grads)
        updates += 1
        np.subtract(prev, theta, out=prev)
        if math.sqrt(float(np.vdot(prev, prev))) <= converge_tol:
            return updates, CONVERGED
    return updates, ""


def fit(net: MLP, opt: UpdateRule, data: Dataset, settings: TrainSettings, rng: np.random.Generator,
        batch_size: int, callbacks: Iterable[Callback] = ()) -> TrainResult:
    """Train ``net`` on ``data.X_train`` with ``opt`` for ``settings.epochs`` epochs.

    ``batch_size`` is resolved already (n_train for gradient descent). Returns the history
    (one dict per epoch, epoch 0 = before training), the summary metrics and the outcome:
    ``reached_target`` (stop_at_target and the target was reached), ``converged`` (an update
    moved theta by at most ``converge_tol``: the lecture's loop condition theta^{i+1} ==
    theta^i), ``diverged`` (a non-finite loss: a valid result, not a crash), else ``max_epochs``.

    Time to target: the target is checked at every epoch end and, with
    ``settings.target_check_every`` k > 0, also every k updates (a pass over the training set
    outside the clock, only until the target is first reached), so ``epochs_to_target`` =
    updates to target / updates per epoch can be fractional. The epoch is always trained to its
    end (``stop_at_target`` stops after it).
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
    # Evaluation passes write into workspaces made once per job: a forward pass into new
    # arrays costs 2.5x one into preallocated ones on a digits net (the allocator hands large
    # arrays back to the OS and page-faults them in again), and gives the same numbers.
    split_ws = {name: net.workspace(len(v[0])) for name, v in encoded.items()}

    b = min(batch_size, n)
    full_batch = b >= n
    if full_batch:  # gradient descent: the data in their order, no copy
        Xs, Ts = X, T
    else:  # shuffled copies; batches are views into them
        Xs, Ts = np.empty_like(X), np.empty_like(T)
    epoch_batches = batches(net, Xs, Ts, b)
    # gradient descent: the step's workspace holds exactly the training set
    eval_ws = epoch_batches[0][2] if full_batch else net.workspace(n)
    grad = np.zeros_like(net.theta)
    prev = np.empty_like(net.theta) if settings.converge_tol > 0 else None

    history: list[dict[str, float]] = []
    summary: dict[str, float] = {}
    updates = 0
    examples = 0
    clock = 0.0
    eval_clock = 0.0  # evaluation and target checks (outside the training clock)
    per_epoch = len(epoch_batches)
    check_every = settings.target_check_every if settings.target is not None else 0

    def mark_target(epoch: float, upd: int, seen: int, seconds: float) -> None:
        summary["epochs_to_target"] = float(epoch)
        summary["updates_to_target"] = float(upd)
        summary["examples_to_target"] = float(seen)
        summary["seconds_to_target"] = seconds

    def check_target() -> bool:
        """The target on the whole training set between two updates (target_check_every):
        only the metric the target is on (the loss, or the accuracy for train_error)."""
        nonlocal eval_clock
        t0 = time.perf_counter()
        with _blas_threads(eval_threads):
            z = net.feedforward(X, eval_ws)[0][-1]
            if settings.target_metric == "train_loss":
                loss, acc = float(net.loss.value(z, T) + penalty(net)), math.nan
            else:
                loss, acc = math.nan, accuracy(net, z, y)
        eval_clock += time.perf_counter() - t0
        if _reached(settings, loss, acc):
            mark_target(updates / per_epoch, updates, examples, clock)
            return True
        return False

    def run_epoch() -> tuple[int, str]:
        """One epoch of updates; with target_check_every k (and the target not reached yet)
        in chunks that end every k updates, the target checked after each chunk."""
        nonlocal updates, examples, clock
        cuts = [0]
        if check_every and not full_batch and "epochs_to_target" not in summary:
            first = check_every - updates % check_every
            cuts += list(range(first, per_epoch, check_every))
        cuts.append(per_epoch)
        done_all, stop = 0, ""
        for lo, hi in zip(cuts[:-1], cuts[1:], strict=False):
            if hi <= lo:
                continue
            chunk = epoch_batches[lo:hi]
            t0 = time.perf_counter()
            done, stop = train_epoch(net, opt, chunk, grad, prev, settings.converge_tol)
            clock += time.perf_counter() - t0
            updates += done
            done_all += done
            examples += sum(b[0].shape[0] for b in chunk[:done])
            if stop or hi == per_epoch:
                break
            if "epochs_to_target" not in summary:
                check_target()  # reached or not, the epoch is trained to its end
        return done_all, stop
    outcome = MAX_EPOCHS

    def measure(epoch: int) -> dict[str, float]:
        m: dict[str, float] = {}
        # one forward pass of the training set for the metrics and the diagnostics
        forward = net.feedforward(X, eval_ws)
        m["train_loss"], m["train_acc"] = _evaluate(net, forward, T, y)
        for name, (Xe, Te, ye) in encoded.items():
            if name == "test" and not settings.eval_test and epoch < settings.epochs:
                continue
            m[f"{name}_loss"], m[f"{name}_acc"] = _evaluate(
                net, net.feedforward(Xe, split_ws[name]), Te, ye)
        every = settings.diagnostics_every
        due = every and (epoch <= EARLY_EPOCHS or epoch % every == 0)
        if due and all(math.isfinite(v) for v in m.values()):
            m.update(layer_diagnostics(net, X, T, forward=forward, workspace=eval_ws))
        return m

    eval_threads = step_threads(net, n)

    def record(epoch: int) -> dict[str, float]:
        nonlocal eval_clock
        t0 = time.perf_counter()
        with _blas_threads(eval_threads):
            m = measure(epoch)
        eval_clock += time.perf_counter() - t0
        m["updates"] = float(updates)
        m["train_seconds"] = clock
        history.append(m)
        if "epochs_to_target" not in summary and _reached(settings, m["train_loss"],
                                                            m["train_acc"]):
            mark_target(epoch, updates, examples, clock)
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
            outcome = REACHED_TARGET
        elif not math.isfinite(m["train_loss"]):
            outcome = DIVERGED
        while outcome == MAX_EPOCHS and epoch < settings.epochs:
            epoch += 1
            if not full_batch:
                perm = rng.permutation(n)
                np.take(X, perm, axis=0, out=Xs)
                np.take(T, perm, axis=0, out=Ts)
            done, stop = run_epoch()
            if stop:
                outcome = stop
            m = record(epoch)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{m['train_loss']:.4g}", acc=f"{m['train_acc']:.3f}")
            if not math.isfinite(m["train_loss"]):
                outcome = DIVERGED
            elif outcome == MAX_EPOCHS and settings.stop_at_target and (
                    "epochs_to_target" in summary):
                outcome = REACHED_TARGET
    if bar is not None:
        bar.close()

    last = history[-1]
    summary.update({
        "final_train_loss": last["train_loss"],
        "final_train_acc": last["train_acc"],
        "train_seconds": clock,
        "epochs_run": float(epoch),
        "updates_run": float(updates),
        "examples_run": float(examples),
    })
    if examples:
        summary["seconds_per_example"] = clock / examples
    for name in encoded:
        if f"{name}_loss" not in last and math.isfinite(last["train_loss"]):
            t0 = time.perf_counter()
            Xe, Te, ye = encoded[name]
            with _blas_threads(eval_threads):
                last[f"{name}_loss"], last[f"{name}_acc"] = _evaluate(
                    net, net.feedforward(Xe, split_ws[name]), Te, ye)
            eval_clock += time.perf_counter() - t0
        if f"{name}_acc" in last:
            summary[f"final_{name}_loss"] = last[f"{name}_loss"]
            summary[f"final_{name}_acc"] = last[f"{name}_acc"]
    summary.update(diagnostic_summary(history, net.n_layers - 1))
    summary["eval_seconds"] = eval_clock
    result = TrainResult(history=history, summary=summary, outcome=outcome, net=net)
    for cb in callbacks:
        cb.on_train_end(result)
    return result
