"""Check a command line before Hydra launches anything: one clear line per mistake.

``preflight(args)`` parses the overrides with Hydra's own grammar, composes the job config,
expands the sweep (the sweep file's ``hydra.sweeper.params`` and the command line's swept
keys, the command line winning as in Hydra's basic sweeper), and composes + validates one
config per value of every swept key (the other keys at their first value): a bad value
anywhere in a sweep is reported before the first job starts and before any MLflow run or
experiment exists. It then loads each distinct dataset once (batch size vs. training-set
size, unreadable data files) and prepares each MLflow store the jobs will write to, once, in
this launching process.
"""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from fnnbench.config import ConfigError, check_against_data, validate

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
GROUPS = ("dataset", "model", "activation", "loss", "optimizer", "regularizer", "tracking",
          "sweep")
# Hydra flags that only print or inspect: nothing runs, nothing to check.
_INSPECT = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--resolve",
            "--shell-completion", "-sc", "--version"}
# Hydra flags that take a value.
_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name",
               "-cn", "--config-dir", "-cd", "--experimental-rerun", "--info", "-i"}


def split_args(args: list[str]) -> tuple[list[str], list[str]]:
    """Hydra flags (with their values) apart from the overrides."""
    flags: list[str] = []
    overrides: list[str] = []
    it = iter(args)
    for a in it:
        if a.startswith("-"):
            flags.append(a)
            if a in _WITH_VALUE and "=" not in a:
                nxt = next(it, None)
                if nxt is not None:
                    flags.append(nxt)
        else:
            overrides.append(a)
    return flags, overrides


def options(group: str) -> list[str]:
    d = CONF_DIR / group
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def _composition_error(err: Exception, overrides: list[str]) -> ConfigError:
    """Hydra's multi-line composition errors -> one line naming the key and what is allowed."""
    from hydra.errors import MissingConfigException

    msg = str(err)
    if isinstance(err, MissingConfigException) or "Could not find" in msg:
        for group in GROUPS:
            for o in overrides:
                key, _, value = o.lstrip("+~").partition("=")
                if key == group and value not in options(group):
                    return ConfigError(
                        f"{group}={value}: unknown option; available: "
                        f"{', '.join(options(group)) or '(none: is the sweeps/ folder there?)'}")
    if "Could not override" in msg or "Could not append" in msg or "not in struct" in msg:
        key = msg.split("'")[1] if "'" in msg else "?"
        section = key.rsplit(".", 1)[0] if "." in key else ""
        return ConfigError(f"{key}: unknown key" + (f" in {section}" if section else "")
                           + "; see `python -m fnnbench --cfg job` for the keys that exist")
    first = next((line.strip() for line in msg.splitlines() if line.strip()), type(err).__name__)
    return ConfigError(first)


def _compose(overrides: list[str]) -> DictConfig:
    from hydra import compose

    try:
        return compose("config", overrides=overrides, return_hydra_config=True)
    except ConfigError:
        raise
    except Exception as err:  # Hydra/OmegaConf composition errors
        raise _composition_error(err, overrides) from None


def _parse(overrides: list[str]):
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    parsed = []
    for o in overrides:
        try:
            parsed.extend(parser.parse_overrides([o]))
        except OverrideParseException as err:
            first = str(err).splitlines()[0]
            raise ConfigError(f"malformed override {o!r}: {first}") from None
    return parsed


def expand(overrides: list[str], sweeper_params: dict) -> tuple[list[str], list[list[str]]]:
    """Base overrides (every key at its first value) and the probes (one per swept value)."""
    from hydra.errors import HydraException

    params = [f"{k}={v}" for k, v in (sweeper_params or {}).items()]
    axes: dict[str, list[str]] = {}
    for o in _parse(params + overrides):
        key = o.get_key_element()
        if o.is_sweep_override():
            try:
                axes[key] = [f"{key}={v}" for v in o.sweep_string_iterator()]
            except HydraException as err:
                raise ConfigError(f"{o.input_line}: {str(err).splitlines()[0]}") from None
            if not axes[key]:
                raise ConfigError(f"{o.input_line}: the sweep has no values")
        else:
            axes[key] = [o.input_line]
    base = [vals[0] for vals in axes.values()]
    probes = [base]
    for i, vals in enumerate(axes.values()):
        for v in vals[1:]:
            probes.append(base[:i] + [v] + base[i + 1:])
    return base, probes


def preflight(args: list[str]) -> list[DictConfig]:
    """Validate a ``python -m fnnbench`` command line; return the probe configs checked."""
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    flags, overrides = split_args(args)
    if _INSPECT & {f.split("=")[0] for f in flags}:
        return []
    _parse(overrides)
    GlobalHydra.instance().clear()
    checked: list[DictConfig] = []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        first = _compose(_first_values(overrides))
        params = first.hydra.sweeper.get("params")
        sweeper_params = OmegaConf.to_container(params) if params is not None else {}
        multirun = "-m" in flags or "--multirun" in flags or str(first.hydra.mode) in (
            "MULTIRUN", "RunMode.MULTIRUN")
        if not multirun and any(o.is_sweep_override() for o in _parse(overrides)):
            raise ConfigError("a swept value (a,b or range(...)) needs -m / --multirun: "
                              f"{next(o for o in overrides if ',' in o or '(' in o)}")
        _, probes = expand(overrides, sweeper_params if multirun else {})
        sizes: dict[str, int] = {}
        stores: set[tuple] = set()
        for probe in probes:
            cfg = _compose(probe)
            job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
            validate(job)
            key = json.dumps(OmegaConf.to_container(job.dataset, resolve=True), sort_keys=True)
            if key not in sizes:
                sizes[key] = _n_train(job)
            check_against_data(job, sizes[key])
            t = job.get("tracking")
            if t is not None and t.get("enabled", True):
                stores.add((t.get("uri"), t.get("experiment")))
            checked.append(job)
    GlobalHydra.instance().clear()
    _prepare_stores(checked, stores)
    return checked


def _first_values(overrides: list[str]) -> list[str]:
    """Every override at its first value, so the base config can be composed."""
    return [f"{o.get_key_element()}={next(iter(o.sweep_string_iterator()))}"
            if o.is_sweep_override() else o.input_line for o in _parse(overrides)]


def _n_train(job: DictConfig) -> int:
    from fnnbench.data import DataError, load_dataset

    try:
        return len(load_dataset(job.dataset, seed=0).y_train)
    except DataError as err:
        raise ConfigError(str(err)) from None


def _prepare_stores(jobs: list[DictConfig], stores: set[tuple]) -> None:
    from fnnbench import tracking

    done = set()
    for job in jobs:
        t = job.get("tracking")
        if t is None or not t.get("enabled", True):
            continue
        k = (t.get("uri"), t.get("experiment"))
        if k in done:
            continue
        done.add(k)
        try:
            tracking.prepare(t)
        except tracking.TrackingError as err:
            raise ConfigError(str(err)) from None
