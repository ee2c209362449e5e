"""Config schema: every key and value of a composed job config is checked before anything trains.

One rule per key, stated once in ``SCHEMA``; a violation raises :class:`ConfigError` whose
message is one line naming the key, the value and what is allowed, e.g.::

    optimizer.lr=-0.1: must be a finite number > 0

Objects are built from names through the registries of ``fnnbench.nn`` / ``fnnbench.optim`` /
``fnnbench.data`` (never through ``_target_``), so a command-line override cannot instantiate
an arbitrary Python class. The only ``_target_`` in the configs is Hydra's own callback, and
:func:`validate` refuses any ``_target_`` key in the job config.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from fnnbench.nn import HIDDEN_ACTIVATIONS, LOSSES, REGULARIZERS, get_activation
from fnnbench.nn.init import INITIALIZERS
from fnnbench.optim import HYPERPARAMETERS, RANGES, UPDATE_RULES, Range


class ConfigError(ValueError):
    """A bad key or value in the job config; ``str(err)`` is one line for the user."""


Check = Callable[[str, Any], None]


def _fail(key: str, value: Any, allowed: str) -> None:
    raise ConfigError(f"{key}={_show(value)}: {allowed}")


def _show(value: Any) -> str:
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value)
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def number(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
           hi_open: bool = False, optional: bool = False) -> Check:
    """A finite number in [lo, hi] (open ends when ``lo_open`` / ``hi_open``)."""
    lo_s = "" if lo is None else (f" > {lo}" if lo_open else f" >= {lo}")
    hi_s = "" if hi is None else (f" < {hi}" if hi_open else f" <= {hi}")
    rule = "must be a finite number" + (lo_s + (" and" if lo_s and hi_s else "") + hi_s)
    if optional:
        rule += " (or null)"

    def check(key: str, v: Any) -> None:
        if v is None and optional:
            return
        if not _is_number(v) or not math.isfinite(v):
            _fail(key, v, rule)
        if lo is not None and (v <= lo if lo_open else v < lo):
            _fail(key, v, rule)
        if hi is not None and (v >= hi if hi_open else v > hi):
            _fail(key, v, rule)

    return check


def integer(lo: int, hi: int | None = None) -> Check:
    rule = f"must be an integer >= {lo}" + ("" if hi is None else f" and <= {hi}")

    def check(key: str, v: Any) -> None:
        if not isinstance(v, int) or isinstance(v, bool) or v < lo or (hi is not None and v > hi):
            _fail(key, v, rule)

    return check


def choice(*options: Any, optional: bool = False) -> Check:
    shown = ", ".join(str(o) for o in options) + (", null" if optional else "")

    def check(key: str, v: Any) -> None:
        if v is None and optional:
            return
        if isinstance(v, bool) or v not in options:
            _fail(key, v, f"must be one of {shown}")

    return check


def boolean(key: str, v: Any) -> None:
    if not isinstance(v, bool):
        _fail(key, v, "must be true or false")


def text(key: str, v: Any) -> None:
    if not isinstance(v, str) or not v:
        _fail(key, v, "must be a non-empty string")


def widths(key: str, v: Any) -> None:
    rule = "must be a list of integer widths >= 1, e.g. [64, 64] ([] = no hidden layer)"
    if not isinstance(v, (list, ListConfig)) or len(v) > 64:
        _fail(key, v, rule)
    for w in v:
        if not isinstance(w, int) or isinstance(w, bool) or w < 1 or w > 1_000_000:
            _fail(key, v, rule)


def batch_size(key: str, v: Any) -> None:
    if v == "full":
        return
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        _fail(key, v, "must be 'full' (gradient descent) or an integer >= 1 (1 = SGD)")


def anything(key: str, v: Any) -> None:
    """Keys owned and checked by another module (dataset keys: fnnbench.data; tracking)."""


# Section -> key -> check. Activation, loss and optimizer sections also depend on `name`/`rule`.
SCHEMA: dict[str, dict[str, Check]] = {
    "train": {
        "epochs": integer(1, 1_000_000),
        "target": number(0.0, optional=True),
        "target_metric": choice("train_loss", "train_error"),
        "stop_at_target": boolean,
        "converge_tol": number(0.0),
        "diagnostics_every": integer(0),
        "target_check_every": integer(0, 1_000_000),
        "eval_test": boolean,
        "progress": choice("auto", True, False),
    },
    "model": {
        "hidden_sizes": widths,
        "init": choice(*sorted(INITIALIZERS), optional=True),
        "init_sigma": number(0.0, lo_open=True),
        "dtype": choice("float64", "float32"),
    },
    "regularizer": {
        "name": choice(*REGULARIZERS),
        "strength": number(0.0),
    },
}

def optional_text(key: str, v: Any) -> None:
    if v is not None and (not isinstance(v, str) or not v.strip()):
        _fail(key, v, "must be a non-empty string (or null)")


def optional_boolean(key: str, v: Any) -> None:
    if v is not None and not isinstance(v, bool):
        _fail(key, v, "must be true, false or null")


# The tracking section (conf/tracking/*.yaml); fnnbench.tracking reads these keys.
TRACKING_KEYS: dict[str, Check] = {
    "uri": optional_text,
    "experiment": text,
    "enabled": boolean,
    "log_model": boolean,
    "log_artifacts": boolean,
    "skip_finished": optional_boolean,
    "flush_every": integer(1, 1_000_000),
    "flush_seconds": number(0.0, 86_400.0),
    "fast_metrics": boolean,
    "heartbeat_seconds": number(0.0, 86_400.0, lo_open=True),
    "stale_seconds": number(0.0, 30 * 86_400.0, lo_open=True),
}

# Largest network and data a job may build: parameters, and activation values of one pass over
# the training set (evaluation runs on the whole split), both counted in numbers (float64: x8
# bytes, and the trainer keeps a few copies of each).
MAX_PARAMS = 50_000_000
MAX_ACTIVATIONS = 200_000_000

# Extra keys each activation accepts besides `name`.
ACTIVATION_KEYS: dict[str, dict[str, Check]] = {
    "relu": {"grad_at_zero": choice(1, 0)},
    "leaky_relu": {"slope": number(0.0, 1.0, hi_open=True)},
    "prelu": {"init": number(-10.0, 10.0)},
    "elu": {"mu": number(0.0, lo_open=True)},
    "maxout": {"k": integer(2, 16)},
}

LOSS_KEYS: dict[str, dict[str, Check]] = {
    "square": {"output": choice("linear", "sigmoid", "softmax")},
}



def in_range(r: Range) -> Check:
    """The check of a number in one of fnnbench.optim's hyperparameter ranges."""
    return number(r.lo, r.hi, lo_open=r.lo_open, hi_open=r.hi_open)


# Hyperparameters of each update rule besides lr, with the ranges fnnbench.optim enforces.
OPTIMIZER_KEYS: dict[str, dict[str, Check]] = {
    rule: {name: in_range(RANGES[name]) for name in names if name != "lr"}
    for rule, names in HYPERPARAMETERS.items()
}
LR_MAX = 1e6  # above any useful step size: a typo guard on top of optim's lr > 0

TOP_LEVEL = ("dataset", "model", "activation", "loss", "optimizer", "regularizer", "tracking",
             "train", "seed", "claim")


def _check_keys(section: str, node: Mapping, rules: Mapping[str, Check]) -> None:
    for key in node:
        if key not in rules:
            allowed = ", ".join(rules) or "(none)"
            raise ConfigError(f"{section}.{key}: unknown key; {section} allows: {allowed}")
    for key, check in rules.items():
        if key not in node:
            raise ConfigError(f"{section}.{key}: missing")
        check(f"{section}.{key}", node[key])


def _no_targets(node: Any, path: str) -> None:
    if isinstance(node, Mapping):
        for k, v in node.items():
            if k == "_target_":
                raise ConfigError(f"{path}._target_={_show(v)}: refused; fnnbench builds objects "
                                  "by name from its own registries only")
            _no_targets(v, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _no_targets(v, f"{path}[{i}]")


def validate(cfg: DictConfig) -> None:
    """Check every key and value of a composed job config (the ``hydra`` node excluded).

    Raises :class:`ConfigError` (one line) on the first problem found.
    """
    try:
        c = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as err:  # interpolation / missing value (???)
        msg = str(err).splitlines()[0]
        key = getattr(err, "full_key", None)
        raise ConfigError(f"{key}: {msg}" if key else msg) from None
    c.pop("hydra", None)
    _no_targets(c, "")
    for key in c:
        if key not in TOP_LEVEL:
            raise ConfigError(f"{key}: unknown top-level key; allowed: {', '.join(TOP_LEVEL)}")
    for key in ("dataset", "model", "activation", "loss", "optimizer", "regularizer", "train"):
        if not isinstance(c.get(key), dict):
            raise ConfigError(f"{key}: missing section (pick an option, e.g. {key}=<name>)")
    integer(0, 2**32 - 1)("seed", c.get("seed"))

    for section, rules in SCHEMA.items():
        _check_keys(section, c[section], rules)

    act = c["activation"]
    choice(*sorted(HIDDEN_ACTIVATIONS))("activation.name", act.get("name"))
    _check_keys("activation", act, {"name": text, **ACTIVATION_KEYS.get(act["name"], {})})

    loss = c["loss"]
    choice(*sorted(LOSSES))("loss.name", loss.get("name"))
    _check_keys("loss", loss, {"name": text, **LOSS_KEYS.get(loss["name"], {})})

    opt = c["optimizer"]
    choice(*sorted(UPDATE_RULES))("optimizer.rule", opt.get("rule"))
    _check_keys("optimizer", opt, {"name": text, "rule": text,
                                   "lr": number(RANGES["lr"].lo, LR_MAX, lo_open=True),
                                   "batch_size": batch_size, **OPTIMIZER_KEYS[opt["rule"]]})

    if c.get("tracking") is not None:
        if not isinstance(c["tracking"], dict):
            _fail("tracking", c["tracking"], "must be a section (pick an option, e.g. "
                  "tracking=local)")
        _check_keys("tracking", c["tracking"], TRACKING_KEYS)

    tr = c["train"]
    if tr["target"] is not None and tr["target_metric"] == "train_error" and tr["target"] > 1:
        _fail("train.target", tr["target"], "must be in [0, 1] for target_metric=train_error")
    if tr["stop_at_target"] and tr["target"] is None:
        _fail("train.stop_at_target", True, "needs train.target to be set")

    from fnnbench.data import validate_config as validate_dataset

    try:
        validate_dataset(c["dataset"])
    except ValueError as err:
        raise ConfigError(str(err)) from None


def check_against_data(cfg: DictConfig, n_train: int) -> None:
    """Cross-checks that need the data: a batch larger than the training set."""
    bs = cfg.optimizer.batch_size
    if bs != "full" and bs > n_train:
        _fail("optimizer.batch_size", bs,
              f"must be <= the {n_train} training examples of dataset={cfg.dataset.name} "
              "(or 'full' for gradient descent)")


def check_size(cfg: DictConfig, n_features: int, n_classes: int, n_train: int) -> None:
    """The network fits: at most MAX_PARAMS parameters and MAX_ACTIVATIONS activation values
    in one pass over the training set (a typo like hidden_sizes=[1000000,1000000] is refused
    here instead of exhausting the machine's memory)."""
    act = OmegaConf.to_container(cfg.activation, resolve=True)
    k = get_activation(act.pop("name"), **act).pieces  # inputs per unit (maxout: k)
    n_out = 1 if n_classes == 2 else n_classes
    hidden = [int(w) for w in cfg.model.hidden_sizes]
    sizes = [int(n_features), *hidden, n_out]
    params = sum((sizes[i - 1] + 1) * sizes[i] * (k if i < len(sizes) - 1 else 1)
                 for i in range(1, len(sizes)))
    acts = int(n_train) * sum(w * k for w in hidden) + int(n_train) * n_out
    if params > MAX_PARAMS:
        _fail("model.hidden_sizes", hidden,
              f"too large: {params:,} parameters with {n_features} inputs and {n_out} outputs;"
              f" at most {MAX_PARAMS:,}")
    if acts > MAX_ACTIVATIONS:
        _fail("model.hidden_sizes", hidden,
              f"too large: {acts:,} activation values over the {n_train} training examples; "
              f"at most {MAX_ACTIVATIONS:,} (fewer or narrower layers, or dataset.max_train)")


def resolve_batch_size(bs: int | str, n_train: int) -> int:
    """'full' -> n_train (gradient descent); an int is used as is."""
    return n_train if bs == "full" else int(bs)
