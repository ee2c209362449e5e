"""Check a command line before Hydra launches anything: one clear line per mistake.

``preflight(args)`` parses the overrides with Hydra's own grammar, composes the job config,
expands the sweep (the sweep file's ``hydra.sweeper.params`` and the command line's swept
keys, the command line winning as in Hydra's basic sweeper), and composes + validates one
config per value of every swept key (the other keys at their first value): a bad value
anywhere in a sweep is reported before the first job starts and before any MLflow run or
experiment exists. It then loads each distinct dataset once (batch size vs. training-set
size, unreadable data files) and prepares each MLflow store the jobs will write to, once, in
this launching process.

Overrides are data, never code. Hydra instantiates ``_target_`` nodes of its own config (the
callbacks, the launcher, the sweeper, and the ``class`` entries of the logging configs) in the
launching process, and its blocklist is best effort (``builtins.open`` or ``shutil.copyfile``
pass it), so ``+hydra.callbacks.x._target_=...`` would run any callable the user names. Hence
:func:`check_override` refuses every override that mentions ``_target_``, any ``hydra.*`` key
outside :data:`HYDRA_KEYS` / :data:`HYDRA_PREFIXES` (callbacks, logging, environment,
search path), and ``hydra/<group>`` choices outside :data:`HYDRA_CHOICES`; and
:func:`check_hydra` checks the composed ``hydra`` node (only fnnbench's own callback, a
launcher and a sweeper from the allow-lists, stdlib logging classes, no ``env_set``), whatever
a sweep file set. The flags that make Hydra read another config (``--config-path``,
``--config-name``, ``--config-dir``) or unpickle one (``--experimental-rerun``) are refused:
preflight must check exactly what will run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import NamedTuple

from omegaconf import DictConfig, OmegaConf

from fnnbench.job.schema import ConfigError, check_against_data, check_size, validate
from fnnbench.paths import (
    CONF_DIR,
    external_sweep,
    generated_sweep,
    is_sweep_path,
    override_value,
    shipped_sweep,
)

GROUPS = ("dataset", "model", "activation", "loss", "optimizer", "regularizer", "tracking",
          "sweep")
# Hydra flags that only print or inspect: nothing runs, nothing to check.
_INSPECT = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--resolve",
            "--shell-completion", "-sc", "--version"}
# Hydra flags that take a value.
_WITH_VALUE = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name",
               "-cn", "--config-dir", "-cd", "--experimental-rerun", "--info", "-i"}
# Hydra flags that run jobs.
_RUN = {"-m", "--multirun", "-r", "--run"}
# Hydra flags refused: another primary config / config dir (preflight would check a config
# other than the one that runs) or a pickled config (unpickling runs code).
_REFUSED_FLAGS = {
    "--config-path": "fnnbench composes its own conf/ only",
    "-cp": "fnnbench composes its own conf/ only",
    "--config-name": "fnnbench composes its own conf/config.yaml only",
    "-cn": "fnnbench composes its own conf/config.yaml only",
    "--config-dir": "fnnbench composes its own conf/ only (add options as conf/<group>/"
                    "<name>.yaml, claim sweeps as sweeps/<name>.yaml)",
    "-cd": "fnnbench composes its own conf/ only (add options as conf/<group>/<name>.yaml, "
           "claim sweeps as sweeps/<name>.yaml)",
    "--experimental-rerun": "it unpickles a file, which can run any code; run the job's "
                            "overrides again instead (see .hydra/overrides.yaml)",
}

# Hydra's own settings a command line (or a sweep file) may change: plain data only.
HYDRA_CHOICES = {
    "hydra/launcher": ("basic", "joblib", "submitit_local", "submitit_slurm", "slurm"),
    "hydra/sweeper": ("basic",),
    "hydra/job_logging": ("default", "disabled", "none", "stdout"),
    "hydra/hydra_logging": ("default", "disabled", "none", "hydra_debug"),
}
HYDRA_KEYS = ("hydra.run.dir", "hydra.sweep.dir", "hydra.sweep.subdir", "hydra.job.chdir",
              "hydra.job.name", "hydra.output_subdir", "hydra.verbose", "hydra.mode",
              "hydra.sweeper.max_batch_size")
HYDRA_PREFIXES = ("hydra.launcher.", "hydra.sweeper.params.")
OWN_CALLBACKS = {"mlflow": {"_target_": "fnnbench.tracking.SweepCallback"}}
LAUNCHERS = {
    "hydra._internal.core_plugins.basic_launcher.BasicLauncher": "basic",
    "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher": "joblib",
    # extra `cluster` (hydra-submitit-launcher); conf/hydra/launcher/slurm.yaml is a profile
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher": "submitit_local",
    "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher": "submitit_slurm",
}
# submitit launcher options that become shell commands or raw sbatch lines: profile files only
LAUNCHER_SHELL_KEYS = ("setup", "additional_parameters", "srun_args")
SWEEPERS = {"hydra._internal.core_plugins.basic_sweeper.BasicSweeper": "basic"}
# Sweeps larger than this are refused before anything is composed (a typo like range(0,1e8)).
MAX_JOBS = 100_000
_TARGET_REFUSAL = ("refused; an override cannot name a Python object to build (_target_): "
                   "fnnbench builds objects by name from its own registries only")


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


def check_flags(flags: list[str]) -> None:
    """Refuse unknown Hydra flags and the ones that would run a config preflight did not check."""
    it = iter(flags)
    for f in it:
        name = f.split("=", 1)[0]
        if name in _WITH_VALUE and "=" not in f:
            next(it, None)  # the flag's value
        if name in _REFUSED_FLAGS:
            raise ConfigError(f"{name}: refused; {_REFUSED_FLAGS[name]}")
        if name not in _INSPECT | _WITH_VALUE | _RUN:
            raise ConfigError(
                f"{f}: unknown flag; allowed: -m/--multirun, --cfg job|hydra|all, --resolve, "
                "--package, --info, --help, --hydra-help, --version, --shell-completion")


def check_override(o) -> None:
    """Refuse one parsed override that names code or a Hydra setting outside the allow-lists."""
    key = o.key_or_group
    line = o.input_line
    if not key:
        raise ConfigError(f"malformed override {line!r}: no key before '='")
    if "_target_" in line:
        shown = line.lstrip("+~")
        raise ConfigError(f"{shown}: {_TARGET_REFUSAL}")
    if key.startswith("hydra/"):
        allowed = HYDRA_CHOICES.get(key)
        value = None if o.is_delete() else o.value()
        if allowed is None or o.package is not None or o.is_delete() or (
                o.is_sweep_override() or value not in allowed):
            what = (f"{key} may be one of {', '.join(allowed)}" if allowed else
                    "the hydra/ groups that may be chosen are " + ", ".join(
                        f"{g}={'|'.join(v)}" for g, v in HYDRA_CHOICES.items()))
            raise ConfigError(f"{line.lstrip('+~')}: refused; {what}")
        return
    if key == "hydra.searchpath" and _generated_searchpath(o):
        return
    if key == "hydra" or key.startswith("hydra."):
        if key.startswith("hydra.callbacks") or key == "hydra":
            raise ConfigError(
                f"{line.lstrip('+~')}: refused; Hydra callbacks cannot be added, changed or "
                "removed from the command line (fnnbench runs only its own, "
                "hydra.callbacks.mlflow = fnnbench.tracking.SweepCallback)")
        if o.is_delete() or not (key in HYDRA_KEYS or key.startswith(HYDRA_PREFIXES)):
            raise ConfigError(
                f"{line.lstrip('+~')}: refused; the hydra settings that may be changed are "
                f"{', '.join(HYDRA_KEYS)}, hydra.launcher.<option>, hydra.sweeper.params.<key>")
        if key.split(".")[2:3] and key.split(".")[2] in LAUNCHER_SHELL_KEYS:
            raise ConfigError(
                f"{line.lstrip('+~')}: refused; submitit runs these as shell lines / sbatch "
                "options: set them in conf/hydra/launcher/slurm.yaml")


def _walk_targets(node, path: str):
    """(path, value) of every _target_ / () / class entry below node (a plain container)."""
    if isinstance(node, dict):
        for k, v in node.items():
            p = f"{path}.{k}"
            if k in ("_target_", "()", "class"):
                yield p, v
            yield from _walk_targets(v, p)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk_targets(v, f"{path}[{i}]")


def _container(node, path: str, resolve: bool = True):
    try:
        return OmegaConf.to_container(node, resolve=resolve) if node is not None else None
    except Exception as err:
        raise ConfigError(f"{path}: {str(err).splitlines()[0]}") from None


def check_hydra(cfg: DictConfig) -> None:
    """The composed ``hydra`` node: only fnnbench's callback, allow-listed plugins, no code."""
    h = cfg.get("hydra")
    if h is None:
        return
    callbacks = _container(h.get("callbacks"), "hydra.callbacks", resolve=False) or {}
    if callbacks != OWN_CALLBACKS:
        raise ConfigError(
            f"hydra.callbacks={_short(callbacks)}: refused; fnnbench runs only its own Hydra "
            "callback (hydra.callbacks.mlflow = fnnbench.tracking.SweepCallback)")
    for section, allowed in (("launcher", LAUNCHERS), ("sweeper", SWEEPERS)):
        node = _container(h.get(section), f"hydra.{section}", resolve=False) or {}
        target = node.get("_target_")
        if target not in allowed:
            raise ConfigError(f"hydra.{section}._target_={target!r}: refused; hydra/{section} "
                              f"may be one of {', '.join(allowed.values())}")
        for path, value in _walk_targets({k: v for k, v in node.items() if k != "_target_"},
                                         f"hydra.{section}"):
            raise ConfigError(f"{path}={_short(value)}: {_TARGET_REFUSAL}")
    for section in ("job_logging", "hydra_logging"):
        node = _container(h.get(section), f"hydra.{section}", resolve=False) or {}
        for path, value in _walk_targets(node, f"hydra.{section}"):
            if path.endswith(".()") or not (isinstance(value, str)
                                           and value.startswith("logging.")):
                raise ConfigError(f"{path}={_short(value)}: refused; logging handlers, "
                                  "formatters and filters must be classes of the logging module")
    job = h.get("job") or {}
    env_set = _container(job.get("env_set"), "hydra.job.env_set", resolve=False)
    if env_set:
        raise ConfigError(f"hydra.job.env_set={_short(env_set)}: refused; set environment "
                          "variables in the shell that launches fnnbench")
    _check_launcher(h)


def _short(value) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_launcher(h: DictConfig) -> None:
    """Values of the joblib launcher's options: jobs in processes, a usable worker count."""
    launcher = h.get("launcher") or {}
    if LAUNCHERS.get(launcher.get("_target_")) != "joblib":
        return
    n = launcher.get("n_jobs")
    if not isinstance(n, int) or isinstance(n, bool) or not (n == -1 or 1 <= n <= 1024):
        raise ConfigError(f"hydra.launcher.n_jobs={_short(n)}: must be an integer from 1 to "
                          "1024 (parallel worker processes), or -1 (one per core)")
    backend = launcher.get("backend")
    if backend not in (None, "loky", "multiprocessing"):
        raise ConfigError(f"hydra.launcher.backend={_short(backend)}: must be loky, "
                          "multiprocessing or null (jobs run in separate processes)")
    prefer = launcher.get("prefer")
    if prefer not in (None, "processes"):
        raise ConfigError(f"hydra.launcher.prefer={_short(prefer)}: must be processes (jobs "
                          "share no process state)")


def check_output_dir(cfg: DictConfig, multirun: bool) -> None:
    """Hydra's output directory (hydra.run.dir / hydra.sweep.dir) can be created."""
    import tempfile

    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    try:
        value = OmegaConf.select(cfg, key, throw_on_resolution_failure=True)
    except Exception as err:
        raise ConfigError(f"{key}: {str(err).splitlines()[0]}") from None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key}={_short(value)}: must be a directory path")
    path = Path(value).expanduser().absolute()
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{key}={value}: cannot create the output directory ({existing} is "
                          "not a directory)")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise ConfigError(f"{key}={value}: cannot create the output directory in {existing} "
                          f"({err.strerror or type(err).__name__})") from None


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
    cause = err.__cause__
    if msg.startswith("Error merging override") and cause is not None:
        line = next((x.strip() for x in str(cause).splitlines() if x.strip()), "")
        return ConfigError(f"{msg[len('Error merging override '):]}: {line}")
    if "Could not override" in msg or "Could not append" in msg or "not in struct" in msg:
        key = msg.split("'")[1] if "'" in msg else "?"
        section = key.rsplit(".", 1)[0] if "." in key else ""
        return ConfigError(f"{key}: unknown key" + (f" in {section}" if section else "")
                           + "; see `python -m fnnbench --cfg job` for the keys that exist")
    first = next((line.strip() for line in msg.splitlines() if line.strip()), type(err).__name__)
    return ConfigError(first)


def _compose(overrides: list[str], composer=None) -> DictConfig:
    try:
        if composer is not None:  # (hydra.searchpath is part of its cache key)
            return composer.compose(overrides, hydra=True)
        from hydra import compose

        return compose("config", overrides=overrides, return_hydra_config=True)
    except ConfigError:
        raise
    except Exception as err:  # Hydra/OmegaConf composition errors
        raise _composition_error(err, overrides) from None


def parse_overrides(overrides: list[str]) -> list:
    """Hydra's parsed overrides; a malformed one is a one-line ConfigError."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    parsed = []
    for o in overrides:
        try:
            parsed.extend(parser.parse_overrides([o]))
        except OverrideParseException as err:
            lines = [x.strip() for x in str(err).splitlines()[:2] if x.strip()]
            raise ConfigError(f"malformed override {o!r}: {'; '.join(lines)}") from None
    return parsed


class Expansion(NamedTuple):
    base: list[str]  # every key at its first value
    probes: list[list[str]]  # the base, then one override list per further swept value
    n_jobs: int  # the product of the swept axes: the jobs Hydra's basic sweeper launches


def expand(overrides: list[str], sweeper_params: dict) -> Expansion:
    """Expand a sweep (``sweeper_params`` first, then the command line, which wins, as in
    Hydra's basic sweeper) into its probes and its size; ConfigError for a bad override."""
    from hydra.errors import HydraException

    params = [f"{k}={v}" for k, v in (sweeper_params or {}).items()]
    axes: dict[str, list[str]] = {}
    n_jobs = 1
    for o in parse_overrides(params + overrides):
        check_override(o)
        key = o.get_key_element()
        if o.is_sweep_override():
            try:
                axes[key] = []
                for v in o.sweep_string_iterator():
                    axes[key].append(f"{key}={v}")
                    if len(axes[key]) > MAX_JOBS:
                        break
            except HydraException as err:
                raise ConfigError(f"{o.input_line}: {str(err).splitlines()[0]}") from None
            if not axes[key]:
                raise ConfigError(f"{o.input_line}: the sweep has no values")
        else:
            axes[key] = [o.input_line]
        n_jobs = math.prod(len(vals) for vals in axes.values())  # a later value of a key wins
        if n_jobs > MAX_JOBS:
            raise ConfigError(f"{o.input_line}: the sweep has more than {MAX_JOBS} jobs; "
                              "split it into smaller sweeps")
    base = [vals[0] for vals in axes.values()]
    probes = [base]
    for i, vals in enumerate(axes.values()):
        for v in vals[1:]:
            probes.append(base[:i] + [v] + base[i + 1:])
    return Expansion(base, probes, n_jobs)


def sweep_size(overrides: list[str]) -> int:
    """How many jobs ``python -m fnnbench -m <overrides>`` launches (a claim sweep's own
    ``hydra.sweeper.params`` included)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = external_sweep_args(overrides)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        first = [o for o in overrides if o.startswith(("sweep=", "hydra.searchpath="))]
        cfg = compose("config", overrides=first, return_hydra_config=True)
        params = OmegaConf.to_container(cfg.hydra.sweeper.get("params") or {})
    GlobalHydra.instance().clear()
    return expand(overrides, params).n_jobs


def preflight(args: list[str], composer=None) -> list[DictConfig]:
    """Validate a ``python -m fnnbench`` command line; return the probe configs checked.

    ``composer``: a :class:`fnnbench.cli.compose.Composer` to compose with (default: a new
    one); sharing one across command lines shares its cache of compositions.
    """
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from fnnbench.cli.compose import Composer

    composer = composer if composer is not None else Composer()

    flags, overrides = split_args(external_sweep_args(args))
    check_flags(flags)
    for o in parse_overrides(overrides):
        check_override(o)
    if _INSPECT & {f.split("=")[0] for f in flags}:
        return []
    GlobalHydra.instance().clear()
    checked: list[DictConfig] = []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        first = _compose(_first_values(overrides), composer)
        check_hydra(first)
        params = first.hydra.sweeper.get("params")
        sweeper_params = OmegaConf.to_container(params) if params is not None else {}
        multirun = "-m" in flags or "--multirun" in flags or str(first.hydra.mode) in (
            "MULTIRUN", "RunMode.MULTIRUN")
        if not multirun and any(o.is_sweep_override() for o in parse_overrides(overrides)):
            raise ConfigError("a swept value (a,b or range(...)) needs -m / --multirun: "
                              f"{next(o for o in overrides if ',' in o or '(' in o)}")
        probes = expand(overrides, sweeper_params if multirun else {}).probes
        check_output_dir(first, multirun)
        sizes: dict[str, tuple[int, int, int]] = {}
        for probe in probes:
            cfg = _compose(probe, composer)
            check_hydra(cfg)
            job = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
            validate(job)
            key = json.dumps(OmegaConf.to_container(job.dataset, resolve=True), sort_keys=True)
            if key not in sizes:
                sizes[key] = _data_shape(job)
            n_train, n_features, n_classes = sizes[key]
            check_against_data(job, n_train)
            check_size(job, n_features, n_classes, n_train)
            checked.append(job)
    GlobalHydra.instance().clear()
    _prepare_stores(checked)
    return checked


def _first_values(overrides: list[str]) -> list[str]:
    """Every override at its first value, so the base config can be composed."""
    out = []
    for o in parse_overrides(overrides):
        if not o.is_sweep_override():
            out.append(o.input_line)
            continue
        first = next(iter(o.sweep_string_iterator()), None)
        if first is None:
            raise ConfigError(f"{o.input_line}: the sweep has no values")
        out.append(f"{o.get_key_element()}={first}")
    return out


# (training examples, features, classes) by dataset config, for this process: a reproduction
# checks a dozen claim sweeps over the same few datasets
_DATA_SHAPES: dict[str, tuple[int, int, int]] = {}


def _data_shape(job: DictConfig) -> tuple[int, int, int]:
    """(training examples, features, classes) of the job's dataset, loaded once."""
    from fnnbench.data import DataError, load_dataset

    spec = OmegaConf.to_container(job.dataset, resolve=True)
    key = json.dumps(spec, sort_keys=True, default=str)
    if key not in _DATA_SHAPES:
        try:
            data = load_dataset(spec, seed=0)
        except DataError as err:
            raise ConfigError(str(err)) from None
        _DATA_SHAPES[key] = (len(data.y_train), data.n_features, data.n_classes)
    return _DATA_SHAPES[key]


def _prepare_stores(jobs: list[DictConfig]) -> None:
    """Prepare each (store, experiment) the jobs write to, once, in this process."""
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
            raise ConfigError(_tracking_message(t, err)) from None


def _tracking_message(t: DictConfig, err) -> str:
    """'<key>=<value>: <cause>', the key being where the store (or experiment) came from."""
    import os

    from fnnbench.tracking.names import ENV_MLFLOW_URI

    uri, cause = getattr(err, "uri", None), getattr(err, "cause", None)
    if uri is None or cause is None:
        return str(err)
    if cause.startswith(f"experiment '{t.get('experiment')}'"):
        return f"tracking.experiment={t.get('experiment')} in {uri}: {cause}"
    if t.get("uri"):
        key = "tracking.uri"
    elif os.environ.get(ENV_MLFLOW_URI):
        key = ENV_MLFLOW_URI
    else:
        key = "tracking.uri (default)"
    return f"{key}={uri}: MLflow tracking store: {cause}"


# ------------------------------------------------------------ claim files outside sweeps/
#
# ``sweep=path/to/<name>.yaml`` runs a claim file that is not in fnnbench's sweeps/: it is
# copied into a directory fnnbench generates (fnnbench.paths.external_sweep: named by the
# file's sha256, holding only sweep/<name>.yaml) and the command line becomes
# ``sweep=<name> hydra.searchpath=[file://<that directory>]``. That one search path entry is
# the only one check_override lets through (_generated_searchpath); every other check runs on
# the composed config as for a shipped sweep (check_hydra, validate, the data, the store).

SEARCHPATH_KEY = "hydra.searchpath"


def external_sweep_args(args: list[str]) -> list[str]:
    """``args`` with a ``sweep=<file>.yaml`` override replaced by ``sweep=<name>`` and the
    generated search path entry (see above); other arguments unchanged, and ``args`` itself
    when there is no such override. A bad path is a one-line ConfigError."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    out: list[str] = []
    extra: list[str] = []
    changed = False
    for a in args:
        key = a.lstrip("+~").split("=", 1)[0].split("@", 1)[0]
        if a.startswith("-") or key != "sweep" or "=" not in a:
            out.append(a)
            continue
        try:
            o = parser.parse_overrides([a])[0]
        except OverrideParseException:
            out.append(a)  # preflight reports the malformed override
            continue
        if o.is_delete() or o.is_sweep_override():
            value = None if o.is_delete() else o.input_line.split("=", 1)[1]
            if value is not None and any(is_sweep_path(str(v))
                                         for v in o.sweep_string_iterator()):
                raise ConfigError(f"sweep={value}: one claim file at a time (run each with "
                                  "its own command)")
            out.append(a)
            continue
        value = o.value()
        if not isinstance(value, str) or not is_sweep_path(value):
            out.append(a)
            continue
        if extra:
            raise ConfigError(f"{a}: one claim file at a time")
        shipped = shipped_sweep(Path(value).stem)
        if shipped is not None and Path(value).expanduser().resolve() == shipped.resolve():
            out.append(f"sweep={shipped.stem}")  # a shipped claim file, named by its path
            changed = True
            continue
        try:
            name, directory = external_sweep(value)
        except ValueError as err:
            raise ConfigError(f"sweep={err}") from None
        out.append(f"sweep={name}")
        extra.append(f"{SEARCHPATH_KEY}=[{override_value(f'file://{directory}')}]")
    return out + extra if extra or changed else list(args)


def _generated_searchpath(o) -> bool:
    """Is this ``hydra.searchpath=[...]`` override exactly one directory that
    fnnbench.paths.external_sweep generated (and nothing else)?"""
    if o.is_delete() or o.is_sweep_override() or o.package is not None:
        return False
    try:
        value = o.value()
    except Exception:
        return False
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], str):
        return False
    entry = value[0]
    return entry.startswith("file://") and generated_sweep(entry[len("file://"):]) is not None
