"""Trainer speed, side by side with PyTorch, against the machine's GEMM peak.

    python -m benchmarks.speed [--quick] [--out FILE] [--no-torch] [--skip-jobs]
                               [--nets 64-128-128-10,...] [--batches 1,32,...] [--dtypes ...]

What is timed, in one process, alternating, ``--repeats`` times, median (the ratio: median of
the back-to-back pairs):

- **fnnbench**: :func:`fnnbench.train.train_epoch`, the trainer's own inner loop (``fit`` calls
  it): the network's backpropagation into the preallocated flat gradient buffer + the ``plain``
  update rule on ``{"theta": net.theta}``, over the batches of :func:`fnnbench.train.batches`;
- **PyTorch**: the same network as ``nn.Sequential(Linear, ReLU, ..., Linear)``, autograd,
  ``nn.CrossEntropyLoss`` and ``optim.SGD`` (``zero_grad``, forward, ``backward``, ``step``), with
  as many threads as the NumPy BLAS (``torch.set_num_threads``);

on the nets 64-128-128-10, 64-512-512-10 and 784-1024-1024-10 (ReLU, softmax cross-entropy,
SGD lr 0.01, random N(0, 1) inputs and labels) at batch 1, 32, 128, 1024 and full batch (the
whole data set of 4096 examples: gradient descent), float32 and float64. A measurement runs
enough batches of the epoch to last ~0.15 s (at least one batch).

Plus: NumPy's GEMM peak (an N x N x N matmul, GFLOP/s) and the fraction of it the trainer
reaches on the big net at batch >= 1024, counting a training step as 3x the forward GEMM
FLOPs (2 n sum_l n_{l-1} n_l each for the forward, dW and dX products; the actual count is
lower because dX of the first layer is not computed, shown alongside); a minimal hand-written
NumPy SGD step (inline below) against the trainer at batch 1 on the small net (per-update
overhead); per-job fixed costs (process start + imports, MLflow run creation through
``fnnbench.tracking.job_run``), the tracking overhead of a digits job (``python -m fnnbench
train.epochs=10``, tracking on vs off, subprocesses in a temporary folder) and its peak
memory (``ru_maxrss`` of the child). Prints markdown and writes it, with the machine, to
``--out`` (default ``benchmarks/results.md``). Ratios are only meaningful within one run.
Run from a checkout (``make bench``); the PyTorch reference needs ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fnnbench.nn import MLP
from fnnbench.optim import make_optimizer
from fnnbench.train import batches, step_threads, train_epoch

NETS = ((64, 128, 128, 10), (64, 512, 512, 10), (784, 1024, 1024, 10))
BATCHES = (1, 32, 128, 1024, 0)  # 0 = full batch (the whole data set)
DTYPES = ("float32", "float64")
N_DATA = 4096  # examples in the data set: "full batch" means 4096
LR = 0.01
TARGET_SECONDS = 0.15  # length of one measurement (at least one batch)
SETTLE_SECONDS = 0.1  # pause before each measurement of a multi-threaded case
DEFAULT_OUT = Path(__file__).resolve().parent / "results.md"  # benchmarks/results.md

# goals of the issue (ratios measured in one run, medians)
GOAL_SMALL = 3.0  # trainer / PyTorch samples/s at batch 1-32 on the small net
GOAL_LARGE = 1.2  # ... at batch >= 128 on every net
GOAL_FLOOR = 1.0  # ... never below
GOAL_PEAK = 0.70  # fraction of float32 GEMM peak on the big net at batch >= 1024
GOAL_OVERHEAD = 1.3  # trainer / minimal step, time per update at batch 1 on the small net
GOAL_MEMORY_MB = 300.0  # peak RSS of a digits job


def _net_name(sizes: Sequence[int]) -> str:
    return "-".join(map(str, sizes))


def _forward_flops(sizes: Sequence[int]) -> int:
    """GEMM FLOPs of one example's forward pass: 2 sum_l n_{l-1} n_l."""
    return 2 * sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=False))


def _train_flops(sizes: Sequence[int]) -> tuple[int, int]:
    """(3x forward convention, actual) GEMM FLOPs of one example's training step."""
    fwd = _forward_flops(sizes)
    actual = 2 * fwd + 2 * sum(a * b for a, b in zip(sizes[1:-1], sizes[2:], strict=False))
    return 3 * fwd, actual


# --------------------------------------------------------------------------- machine


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas() -> tuple[str, int]:
    """A one-line description of NumPy's BLAS and its thread count (threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info

        for info in threadpool_info():
            if info.get("user_api") == "blas" and "numpy" in info.get("filepath", ""):
                break
        else:
            info = next(i for i in threadpool_info() if i.get("user_api") == "blas")
        desc = (
            f"{info.get('internal_api')} {info.get('version')} "
            f"({info.get('architecture') or '?'} kernels, {info.get('num_threads')} threads, "
            f"{info.get('threading_layer', '?')})"
        )
        return desc, int(info.get("num_threads") or 1)
    except Exception as err:  # threadpoolctl missing or no BLAS found
        return f"unknown ({type(err).__name__})", os.cpu_count() or 1


def machine(torch_mod, torch_note: str = "not installed: reference skipped") -> dict[str, str]:
    blas, _ = _blas()
    m = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "CPU": _cpu_model(),
        "cores": f"{os.cpu_count()} logical, {len(os.sched_getaffinity(0))} usable",
        "NumPy BLAS": blas,
        "Python": platform.python_version(),
        "NumPy": np.__version__,
        "PyTorch": torch_note
        if torch_mod is None
        else f"{torch_mod.__version__} ({torch_mod.get_num_threads()} threads, "
        f"MKL {'yes' if torch_mod.backends.mkl.is_available() else 'no'})",
    }
    if os.environ.get("OPENBLAS_CORETYPE"):
        m["OPENBLAS_CORETYPE"] = os.environ["OPENBLAS_CORETYPE"]
    try:
        m["load average"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        pass
    return m


# --------------------------------------------------------------------------- timing


def _measure(run: Callable[[], int]) -> float:
    """Seconds per sample of ``run()`` (which returns the samples it processed)."""
    t0 = time.perf_counter()
    n = run()
    return (time.perf_counter() - t0) / n


def _calibrate(run_one: Callable[[int], int], n_max: int, target: float) -> tuple[int, float]:
    """(number of batches (1..n_max) whose run lasts about ``target`` seconds, seconds of
    one batch); the call is also the warm-up."""
    t0 = time.perf_counter()
    run_one(1)
    dt = max(time.perf_counter() - t0, 1e-7)
    return max(1, min(n_max, math.ceil(target / dt))), dt


@dataclass
class Case:
    """One net x dtype x batch: samples/s of both implementations, per repeat."""

    sizes: tuple[int, ...]
    dtype: str
    batch: int  # examples per update
    full: bool
    small: bool  # the small net (first of the list): goal 3x at batch <= 32
    ours: list[float] = field(default_factory=list)
    torch: list[float] = field(default_factory=list)
    peak: list[float] = field(default_factory=list)  # GEMM GFLOP/s measured alongside

    def fraction(self, flops_per_sample: float) -> float | None:
        """Median over the repeats of trainer GFLOP/s / GEMM peak measured next to it."""
        if not self.peak:
            return None
        return statistics.median(
            o * flops_per_sample / 1e9 / p for o, p in zip(self.ours, self.peak, strict=True)
        )

    @property
    def ours_sps(self) -> float:
        return statistics.median(self.ours)

    @property
    def torch_sps(self) -> float | None:
        return statistics.median(self.torch) if self.torch else None

    @property
    def ratio(self) -> float | None:
        """Median over the repeats of fnnbench / PyTorch samples/s (each pair measured back to
        back, so slow drifts of the machine's load cancel)."""
        if not self.torch:
            return None
        return statistics.median(o / t for o, t in zip(self.ours, self.torch, strict=True))

    @property
    def goal(self) -> float:
        if self.small and self.batch <= 32:
            return GOAL_SMALL
        return GOAL_LARGE if self.batch >= 128 else GOAL_FLOOR


class Ours:
    """The fnnbench trainer on one net / dtype / batch size: its real inner loop."""

    def __init__(self, sizes, dtype, X, y, batch):
        self.net = MLP(
            list(sizes), activation="relu", loss="cross_entropy", seed=0, dtype=np.dtype(dtype)
        )
        self.opt = make_optimizer("plain", lr=LR)
        Xd = np.ascontiguousarray(X, dtype=self.net.dtype)
        T = np.ascontiguousarray(self.net.encode(y))
        self.batches = batches(self.net, Xd, T, batch)
        self.grad = np.zeros_like(self.net.theta)
        self.batch = batch

    def __call__(self, n_batches: int) -> int:
        todo = self.batches[:n_batches]
        done, stop = train_epoch(self.net, self.opt, todo, self.grad)
        if stop or done != len(todo):
            raise RuntimeError(f"fnnbench trainer stopped early ({stop}) in the benchmark")
        return sum(b[0].shape[0] for b in todo)


class Reference:
    """The same net in PyTorch: nn.Sequential + autograd + optim.SGD."""

    def __init__(self, torch, sizes, dtype, X, y, batch):
        tdt = getattr(torch, dtype)
        layers: list = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
            layers.append(torch.nn.Linear(a, b, dtype=tdt))
            if i < len(sizes) - 2:
                layers.append(torch.nn.ReLU())
        torch.manual_seed(0)
        self.model = torch.nn.Sequential(*layers)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.loss = torch.nn.CrossEntropyLoss()
        Xt = torch.from_numpy(np.ascontiguousarray(X, dtype=dtype))
        yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
        self.batches = [(Xt[s : s + batch], yt[s : s + batch]) for s in range(0, len(y), batch)]

    def __call__(self, n_batches: int) -> int:
        model, opt, loss_fn = self.model, self.opt, self.loss
        todo = self.batches[:n_batches]
        for xb, yb in todo:
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
        return sum(int(b[0].shape[0]) for b in todo)


class Gemm:
    """An n x n x n matmul in NumPy's BLAS (all its threads): ``rate()`` in GFLOP/s."""

    def __init__(self, n: int, dtype: str):
        rng = np.random.default_rng(1)
        self.n = n
        self.A = rng.standard_normal((n, n)).astype(dtype)
        self.B = rng.standard_normal((n, n)).astype(dtype)
        self.C = np.empty((n, n), dtype)
        np.matmul(self.A, self.B, out=self.C)  # warm-up

    def rate(self) -> float:
        t0 = time.perf_counter()
        np.matmul(self.A, self.B, out=self.C)
        return 2 * self.n**3 / (time.perf_counter() - t0) / 1e9


def throughput(nets, batch_sizes, dtypes, repeats, torch, target, gemms, log) -> list[Case]:
    """Every net x dtype x batch: fnnbench and PyTorch alternating; on the largest net at
    batch >= 1024 the GEMM peak is measured between them too (its achieved fraction)."""
    rng = np.random.default_rng(0)
    largest = max(nets, key=_forward_flops)
    cases = []
    for sizes in nets:
        X = rng.standard_normal((N_DATA, sizes[0]))
        y = rng.integers(0, sizes[-1], N_DATA)
        for dtype in dtypes:
            for b in batch_sizes:
                batch = N_DATA if b <= 0 else min(b, N_DATA)
                case = Case(
                    tuple(sizes), dtype, batch, full=batch == N_DATA, small=sizes == nets[0]
                )
                impls = {"ours": Ours(sizes, dtype, X, y, batch)}
                if torch is not None:
                    impls["torch"] = Reference(torch, sizes, dtype, X, y, batch)
                n_max = len(impls["ours"].batches)
                calib = {k: _calibrate(f, n_max, target) for k, f in impls.items()}
                counts = {k: c for k, (c, _) in calib.items()}
                # steps of seconds (the big net at full batch) vary little: 3 repeats do
                slow = min(dt for _, dt in calib.values()) > 3 * target
                gemm = gemms[dtype] if sizes == largest and batch >= 1024 else None
                # threaded BLAS pools (OpenBLAS, OpenMP) spin ~0.1 s after their last call:
                # let them settle before the other one is timed
                settle = SETTLE_SECONDS if step_threads(impls["ours"].net, batch) > 1 else 0.0
                order = list(impls)
                for r in range(min(repeats, 3) if slow else repeats):
                    for k in order if r % 2 == 0 else order[::-1]:  # alternate who goes first
                        time.sleep(settle)
                        getattr(case, k).append(
                            1.0 / _measure(lambda f=impls[k], c=counts[k]: f(c))
                        )
                    if gemm is not None:
                        time.sleep(settle)
                        case.peak.append(gemm.rate())
                cases.append(case)
                ratio = case.ratio
                log(
                    f"  {_net_name(sizes):>17} {dtype} batch {batch:>5}: "
                    f"fnnbench {case.ours_sps:>10.0f}/s"
                    + (
                        ""
                        if ratio is None
                        else f"  torch {case.torch_sps:>10.0f}/s  ratio {ratio:.2f}"
                    )
                )
                del impls
    return cases


# --------------------------------------------------------------------------- minimal step


def minimal_sgd(sizes, dtype, X, y, lr=LR):
    """The minimal hand-written NumPy SGD step (batch 1, ReLU, softmax cross-entropy) that
    the trainer's per-update overhead is compared with: one example a step, parameters as
    separate arrays, no checks, no loss value, no flat buffer. Returns ``run(n_steps)``."""
    rng = np.random.default_rng(0)
    Ws = [
        (rng.standard_normal((b, a)) * math.sqrt(2.0 / a)).astype(dtype)
        for a, b in zip(sizes[:-1], sizes[1:], strict=False)
    ]
    bs = [np.zeros(b, dtype) for b in sizes[1:]]
    Xd = np.ascontiguousarray(X, dtype=dtype)
    L = len(Ws)

    def run(n_steps: int) -> int:
        for i in range(n_steps):
            x, c = Xd[i], y[i]
            a_s, z_s = [x], []
            for l in range(L):  # forward
                z = Ws[l] @ a_s[-1] + bs[l]
                z_s.append(z)
                if l < L - 1:
                    a_s.append(np.maximum(z, 0))
            h = np.exp(z - z.max())
            h /= h.sum()
            h[c] -= 1.0  # delta^L = softmax(z) - e_y
            delta = h
            for l in range(L - 1, -1, -1):  # backward + update
                d_prev = (Ws[l].T @ delta) * (z_s[l - 1] > 0) if l else None
                Ws[l] -= lr * np.outer(delta, a_s[l])
                bs[l] -= lr * delta
                delta = d_prev
        return n_steps

    return run


def overhead(sizes, dtype, repeats, target, log) -> dict[str, float]:
    """Seconds per update at batch 1: the trainer vs the minimal step (alternating)."""
    rng = np.random.default_rng(2)
    X = rng.standard_normal((N_DATA, sizes[0]))
    y = rng.integers(0, sizes[-1], N_DATA)
    impls = {"trainer": Ours(sizes, dtype, X, y, 1), "minimal": minimal_sgd(sizes, dtype, X, y)}
    counts = {k: _calibrate(f, N_DATA, target / 3)[0] for k, f in impls.items()}
    times: dict[str, list[float]] = {k: [] for k in impls}
    for r in range(3 * repeats):  # short and many: single-threaded, sensitive to the load
        for k in list(impls) if r % 2 == 0 else list(impls)[::-1]:
            times[k].append(_measure(lambda f=impls[k], c=counts[k]: f(c)))
    res = {k: statistics.median(v) for k, v in times.items()}
    res["ratio"] = statistics.median(
        t / m for t, m in zip(times["trainer"], times["minimal"], strict=True)
    )
    log(
        f"  per update at batch 1 ({_net_name(sizes)}, {dtype}): trainer "
        f"{res['trainer'] * 1e6:.1f} us, minimal {res['minimal'] * 1e6:.1f} us"
    )
    return res


# --------------------------------------------------------------------------- per job

_RUN_CREATION = r"""
import json, sys, time, tempfile, contextlib, io
t0 = time.perf_counter()
from hydra import compose, initialize_config_dir
from fnnbench.paths import CONF_DIR
from fnnbench import tracking
with tempfile.TemporaryDirectory() as d:
    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose("config", overrides=[f"tracking.uri=sqlite:///{d}/bench.db",
                                           "tracking.skip_finished=false"])
    times = []
    for i in range(int(sys.argv[1]) + 1):
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            with tracking.job_run(cfg, overrides=[f"seed={i}"], job_name=f"seed={i}") as run:
                pass
        times.append(time.perf_counter() - t)
print(json.dumps({"first": times[0], "next": times[1:]}))
"""


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)  # the job's default store: ./mlflow.db in its folder
    return env


# A small launcher between the benchmark and the measured child: on Linux a child's
# ru_maxrss includes the RSS of the process it was forked from at exec time (the benchmark,
# with PyTorch loaded, is larger than a job), so the job is spawned from this ~10 MB process.
_LAUNCHER = r"""
import json, os, sys, time
t0 = time.perf_counter()
pid = os.posix_spawn(sys.executable, [sys.executable, *sys.argv[1:]], os.environ)
_, status, usage = os.wait4(pid, 0)
print(json.dumps({"wall": time.perf_counter() - t0, "rss_kb": usage.ru_maxrss,
                  "code": os.waitstatus_to_exitcode(status)}))
"""


def _run_child(args: list[str], cwd: str) -> tuple[float, float, int, str]:
    """(wall seconds, peak RSS MB, exit code, stderr tail) of ``python *args`` in ``cwd``."""
    with tempfile.TemporaryFile() as err:
        out = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, *args],
            cwd=cwd,
            env=_child_env(),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            check=False,
        )
        err.seek(0)
        tail = err.read().decode(errors="replace").strip().splitlines()[-1:] or [""]
    try:
        r = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return math.nan, math.nan, out.returncode or 1, tail[0]
    return r["wall"], r["rss_kb"] / 1024.0, r["code"], tail[0]  # ru_maxrss: KiB on Linux


def job_costs(repeats: int, log) -> dict[str, object]:
    """Process start + imports, MLflow run creation, tracking overhead and memory of a job."""
    py = sys.executable
    res: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="fnnbench-bench-") as tmp:
        starts: dict[str, list[float]] = {"python -c pass": [], "import fnnbench.__main__": []}
        for _ in range(max(repeats, 3)):
            starts["python -c pass"].append(_run_child(["-c", "pass"], tmp)[0])
            starts["import fnnbench.__main__"].append(
                _run_child(["-c", "import fnnbench.__main__"], tmp)[0]
            )
        res["start"] = {k: statistics.median(v) for k, v in starts.items()}
        log(f"  process start: {res['start']}")

        try:
            out = subprocess.run(
                [py, "-c", _RUN_CREATION, str(max(repeats, 3))],
                cwd=tmp,
                env=_child_env(),
                capture_output=True,
                text=True,
                timeout=600,
            )
            if out.returncode:
                raise RuntimeError((out.stderr.strip().splitlines() or ["?"])[-1])
            rc = json.loads(out.stdout.strip().splitlines()[-1])
            res["run_creation"] = {"first": rc["first"], "next": statistics.median(rc["next"])}
        except Exception as err:  # tracking not importable / not finished
            res["run_creation"] = None
            res["run_creation_note"] = f"skipped: {type(err).__name__}: {err}"[:200]
        log(f"  MLflow run creation: {res.get('run_creation') or res.get('run_creation_note')}")

        job = ["-m", "fnnbench", "train.epochs=10"]
        on: list[tuple] = []
        off: list[tuple] = []
        for r in range(repeats):
            for enabled in (True, False) if r % 2 == 0 else (False, True):
                rr = _run_child([*job, f"tracking.enabled={str(enabled).lower()}"], tmp)
                if rr[2]:
                    raise RuntimeError(f"digits job failed (exit {rr[2]}): {rr[3]}")
                (on if enabled else off).append(rr)
        res["job_on"] = statistics.median(r[0] for r in on)
        res["job_off"] = statistics.median(r[0] for r in off)
        res["rss_on"] = max(r[1] for r in on)
        res["rss_off"] = max(r[1] for r in off)
        log(
            f"  digits job: on {res['job_on']:.2f} s, off {res['job_off']:.2f} s, "
            f"peak RSS on {res['rss_on']:.0f} MB, off {res['rss_off']:.0f} MB"
        )
    return res


# --------------------------------------------------------------------------- report


def _fmt(x: float | None, spec: str = ".2f") -> str:
    return "n/a" if x is None else format(x, spec)


def _met(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return out


THROUGHPUT_COLUMNS = (
    "net",
    "dtype",
    "batch",
    "fnnbench (samples/s)",
    "PyTorch (samples/s)",
    "ratio",
    "goal",
    "met",
)


def _goals(cases: list[Case], ovh: dict | None, jobs: dict | None) -> list[tuple]:
    """One row per goal of the issue: the worst measured case and whether it is met."""
    rows: list[tuple] = []

    def worst(label: str, selected: list[Case], goal: float) -> None:
        pairs = [(c.ratio, c) for c in selected if c.ratio is not None]
        if not pairs:
            rows.append((label, "n/a (no PyTorch)" if selected else "n/a", "n/a"))
            return
        r, c = min(pairs, key=lambda p: p[0])
        misses = sum(1 for ratio, _ in pairs if ratio < goal)
        rows.append(
            (
                label,
                f"min {r:.2f}x ({_net_name(c.sizes)} {c.dtype} batch {c.batch}); "
                f"{len(pairs) - misses}/{len(pairs)} cases >= {goal:g}x",
                _met(misses == 0),
            )
        )

    worst(
        "fnnbench / PyTorch >= 3x at batch 1-32, small net",
        [c for c in cases if c.small and c.batch <= 32],
        GOAL_SMALL,
    )
    worst(
        "fnnbench / PyTorch >= 1.2x at batch >= 128, every net",
        [c for c in cases if c.batch >= 128],
        GOAL_LARGE,
    )
    worst("fnnbench / PyTorch never below 1.0x", cases, GOAL_FLOOR)
    fracs = [
        (c.fraction(_train_flops(c.sizes)[0]), c) for c in cases if c.peak and c.dtype == "float32"
    ]
    if fracs:
        f, c = min(fracs, key=lambda p: p[0])
        rows.append(
            (
                ">= 70% of float32 GEMM peak, big net, batch >= 1024",
                f"min {100 * f:.0f}% (batch {c.batch}; 3x forward FLOPs)",
                _met(f >= GOAL_PEAK),
            )
        )
    if ovh:
        r = max(v["ratio"] for v in ovh.values())
        rows.append(
            (
                "per-update overhead at batch 1 within 1.3x of a minimal NumPy step",
                f"max {r:.2f}x",
                _met(r <= GOAL_OVERHEAD),
            )
        )
    if jobs:
        rows.append(
            (
                "peak memory of a digits job < 300 MB",
                f"{jobs['rss_on']:.0f} MB tracking on, {jobs['rss_off']:.0f} MB off",
                _met(jobs["rss_on"] < GOAL_MEMORY_MB),
            )
        )
    return rows


def report(
    info: dict,
    cases: list[Case],
    peaks: dict[str, float],
    ovh: dict | None,
    jobs: dict | None,
    settings: str,
) -> str:
    lines = [
        "# fnnbench trainer benchmark",
        "",
        "Generated by `python -m benchmarks.speed` " + settings + ". Ratios are measured in "
        "one run (alternating, median of the repeats); absolute numbers vary with the "
        "machine's load. Data: 4096 examples, N(0, 1) inputs, random labels; ReLU, "
        'softmax cross-entropy, SGD lr 0.01; "full" = all 4096 examples in one batch.',
        "",
        "## Machine",
        "",
    ]
    lines += _table(("", ""), list(info.items()))
    lines += ["", "## Goals", ""]
    lines += _table(("goal", "measured", "met"), _goals(cases, ovh, jobs))
    lines += [
        "",
        "## Training throughput: fnnbench trainer vs PyTorch",
        "",
        "fnnbench: `fnnbench.train.train_epoch` (the trainer's inner loop; it uses one BLAS "
        "thread per `fnnbench.train.GEMM_PER_THREAD` multiply-adds of a step's largest GEMM, "
        "so one thread below 2^28). PyTorch: `nn.Sequential` + autograd + `optim.SGD`, all "
        "its threads. Goal: ratio >= 3 at batch 1-32 on the small net, >= 1.2 at batch >= "
        "128, never below 1.0.",
        "",
    ]
    rows = []
    for c in cases:
        ratio = c.ratio
        rows.append(
            (
                _net_name(c.sizes),
                c.dtype,
                f"{c.batch} (full)" if c.full else str(c.batch),
                f"{c.ours_sps:.0f}",
                _fmt(c.torch_sps, ".0f"),
                _fmt(ratio),
                f">= {c.goal:g}",
                _met(None if ratio is None else ratio >= c.goal),
            )
        )
    lines += _table(THROUGHPUT_COLUMNS, rows)

    lines += [
        "",
        "## GEMM peak and achieved fraction",
        "",
        "Peak: GFLOP/s of an N x N x N `np.matmul` (NumPy's BLAS, all its threads), "
        "median of the repeats; on the largest net at batch >= 1024 it is also measured "
        "between the trainer's repeats, and the fraction is the median of the pairs. "
        "Trainer GFLOP/s counts a training step as 3x the forward GEMM FLOPs (forward, "
        'dW and dX products); "actual" leaves out the dX product of the first layer, '
        "which is never computed. Goal: >= 70% of the float32 peak on the big net at "
        "batch >= 1024.",
        "",
    ]
    rows = [(f"GEMM peak {dt} (N={n})", f"{p:.1f}", "", "", "", "") for dt, (n, p) in peaks.items()]
    for c in cases:
        if not c.peak:
            continue
        conv, actual = _train_flops(c.sizes)
        frac, frac_actual = c.fraction(conv), c.fraction(actual)
        f32 = c.dtype == "float32"
        rows.append(
            (
                f"trainer {_net_name(c.sizes)} {c.dtype} batch {c.batch} "
                f"(peak alongside: {statistics.median(c.peak):.1f})",
                f"{c.ours_sps * conv / 1e9:.1f}",
                f"{100 * frac:.0f}%",
                f"{100 * frac_actual:.0f}%",
                f">= {100 * GOAL_PEAK:.0f}%" if f32 else "",
                _met(frac >= GOAL_PEAK) if f32 else "",
            )
        )
    lines += _table(("", "GFLOP/s", "of peak (3x fwd)", "of peak (actual)", "goal", "met"), rows)

    if ovh:
        lines += [
            "",
            "## Per-update overhead at batch 1 (small net)",
            "",
            "The trainer's step vs a minimal hand-written NumPy SGD step "
            "(`benchmarks.speed.minimal_sgd`: separate arrays, `np.outer`, no loss value, "
            "no checks), alternating; the ratio is the median of the back-to-back pairs. "
            "Goal: within 1.3x.",
            "",
        ]
        rows = []
        for dtype, r in ovh.items():
            ratio = r["ratio"]
            rows.append(
                (
                    dtype,
                    f"{r['trainer'] * 1e6:.1f}",
                    f"{r['minimal'] * 1e6:.1f}",
                    f"{ratio:.2f}",
                    _met(ratio <= GOAL_OVERHEAD),
                )
            )
        lines += _table(
            ("dtype", "trainer (us/update)", "minimal (us/update)", "ratio", "met"), rows
        )

    if jobs:
        st = jobs["start"]
        lines += ["", "## Per-job costs (subprocesses)", ""]
        rows = [
            ("`python -c pass` (interpreter start)", f"{st['python -c pass']:.2f} s"),
            (
                "`python -c 'import fnnbench.__main__'` (start + imports)",
                f"{st['import fnnbench.__main__']:.2f} s",
            ),
        ]
        rc = jobs.get("run_creation")
        if rc:
            rows += [
                (
                    "MLflow run creation, first of a process (imports mlflow, creates the store)",
                    f"{rc['first']:.2f} s",
                ),
                ("MLflow run creation, next ones (median)", f"{rc['next']:.3f} s"),
            ]
        else:
            rows.append(("MLflow run creation", jobs.get("run_creation_note", "skipped")))
        ratio = jobs["job_on"] / jobs["job_off"]
        rows += [
            (
                "digits job `python -m fnnbench train.epochs=10`, tracking off",
                f"{jobs['job_off']:.2f} s",
            ),
            ("same, tracking on (sqlite store in a temp folder)", f"{jobs['job_on']:.2f} s"),
            ("tracking overhead (on / off)", f"{ratio:.2f}x"),
            (
                "peak memory of the digits job, tracking on (ru_maxrss)",
                f"{jobs['rss_on']:.0f} MB ({_met(jobs['rss_on'] < GOAL_MEMORY_MB)}: "
                f"goal < {GOAL_MEMORY_MB:.0f} MB)",
            ),
            ("peak memory, tracking off", f"{jobs['rss_off']:.0f} MB"),
        ]
        lines += _table(("", "value"), rows)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- CLI


def _import_torch(enabled: bool):
    if not enabled:
        return None
    try:
        import torch
    except ImportError:
        return None
    return torch


def _parse_nets(text: str) -> list[tuple[int, ...]]:
    return [tuple(int(x) for x in net.split("-")) for net in text.split(",") if net]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.speed", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a subset: small and mid nets, batch 1/32/1024, 3 repeats",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="markdown file to write (default benchmarks/results.md)",
    )
    parser.add_argument("--nets", type=_parse_nets, help="e.g. 64-128-128-10,64-512-512-10")
    parser.add_argument("--batches", help="e.g. 1,32,0 (0 = full batch)")
    parser.add_argument("--dtypes", help="float32,float64")
    parser.add_argument("--repeats", type=int, help="alternating repeats (default 5, quick 3)")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    parser.add_argument(
        "--skip-jobs",
        action="store_true",
        help="skip the subprocess measurements (start, tracking, memory)",
    )
    args = parser.parse_args(argv)

    quick = args.quick
    nets = args.nets or (list(NETS[:2]) if quick else list(NETS))
    batch_sizes = (
        [int(b) for b in args.batches.split(",")]
        if args.batches
        else ([1, 32, 1024] if quick else list(BATCHES))
    )
    dtypes = args.dtypes.split(",") if args.dtypes else list(DTYPES)
    repeats = args.repeats or (3 if quick else 5)
    target = TARGET_SECONDS / 3 if quick else TARGET_SECONDS

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    _, blas_threads = _blas()
    torch = _import_torch(not args.no_torch)
    if torch is not None:
        torch.set_num_threads(blas_threads)  # the same cores as NumPy's BLAS
    elif not args.no_torch:
        log(
            "PyTorch is not installed: the reference column is skipped "
            "(pip install 'fnnbench[bench]')"
        )
    info = machine(
        torch, "skipped (--no-torch)" if args.no_torch else "not installed: reference skipped"
    )
    t_start = time.perf_counter()
    n_peak = 1024 if quick else 2048
    gemms = {dt: Gemm(n_peak, dt) for dt in dtypes}
    peaks = {
        dt: (n_peak, statistics.median(g.rate() for _ in range(repeats))) for dt, g in gemms.items()
    }
    log("training throughput (samples/s, median of alternating repeats):")
    cases = throughput(nets, batch_sizes, dtypes, repeats, torch, target, gemms, log)
    log("GEMM peak (GFLOP/s): " + ", ".join(f"{k} {v[1]:.1f}" for k, v in peaks.items()))
    small = nets[0]
    ovh = {dt: overhead(small, dt, repeats, target, log) for dt in dtypes}
    jobs = None if args.skip_jobs else job_costs(1 if quick else 3, log)
    settings = (
        "(" + ("--quick, " if quick else "") + f"{repeats} repeats, "
        f"{time.perf_counter() - t_start:.0f} s)"
    )
    with contextlib.suppress(OSError, KeyError):
        info["load average"] += (
            " at the start; " + ", ".join(f"{x:.2f}" for x in os.getloadavg()) + " at the end"
        )
    text = report(info, cases, peaks, ovh, jobs, settings)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    log(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
