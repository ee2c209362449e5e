"""Compose job configs with Hydra once per set of config-group choices.

Composing ``conf/config.yaml`` with Hydra costs ~0.15 s (OmegaConf builds some 3,000 nodes for
Hydra's own ``hydra`` section and ours, and every YAML file is parsed again). In a sweep the
config groups (``dataset=``, ``activation=``, ``sweep=``, ...) take a handful of values while
the plain values (``seed=``, ``optimizer.lr=``) take many, so :class:`Composer` composes each
distinct list of group overrides once, keeps the result pickled, and per job unpickles it
(~1 ms) and applies the value overrides with Hydra's own override code, in the order given,
exactly as ``hydra.compose`` applies them after the defaults list is built
(``ConfigLoaderImpl._apply_overrides_to_config``). The ``hydra`` section is completed as
Hydra completes it (``overrides.task`` / ``overrides.hydra``, ``job.override_dirname``).

``Composer.compose(overrides)`` gives the same config as
``hydra.compose("config", overrides, return_hydra_config=True)`` — tests/test_compose.py
compares the two over every shipped claim's sweep — and raises the same exceptions for a bad
override (preflight turns them into one line). It needs an initialized Hydra
(``with Composer.session(): ...`` or Hydra's ``initialize_config_dir``).
"""

from __future__ import annotations

import contextlib
import pickle
from collections.abc import Iterator, Sequence

from omegaconf import DictConfig, open_dict

from fnnbench.paths import CONF_DIR


class Composer:
    """``compose(overrides)`` with a cache of compositions keyed by the group overrides."""

    def __init__(self) -> None:
        self._cache: dict[tuple[tuple[str, ...], bool], bytes] = {}
        self._parser = None
        self.compositions = 0  # full Hydra compositions done (for the harness benchmark)
        self.hits = 0

    @staticmethod
    @contextlib.contextmanager
    def session() -> Iterator[None]:
        """Hydra initialized on fnnbench's conf/ for the block (and cleared after it)."""
        from hydra import initialize_config_dir
        from hydra.core.global_hydra import GlobalHydra

        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
                yield
        finally:
            GlobalHydra.instance().clear()

    def _parse(self, overrides: Sequence[str]) -> list:
        from hydra.core.override_parser.overrides_parser import OverridesParser

        if self._parser is None:
            self._parser = OverridesParser.create()
        return self._parser.parse_overrides(list(overrides))

    def _is_group(self, override) -> bool:
        """As Hydra decides (hydra._internal.defaults_list.Overrides): a key naming a config
        group whose value is not a dict selects a config; anything else sets a value."""
        from hydra.core.global_hydra import GlobalHydra

        if override.key_or_group == "hydra.searchpath":
            return True  # Hydra reads it before the defaults list: part of the composition
        if isinstance(override.value(), dict):
            return False
        repo = GlobalHydra.instance().config_loader().repository
        return bool(repo.group_exists(override.key_or_group))

    def compose(self, overrides: Sequence[str], *, hydra: bool = True,
                multirun: bool = False) -> DictConfig:
        """The config of ``overrides``; with ``hydra=False`` without the ``hydra`` section
        (the job config a launcher hands to the task function). ``multirun=True``: the
        sweep's own config, as Hydra composes it before expanding the sweep (swept overrides
        are left out of the composition and kept in ``hydra.overrides.task``)."""
        from hydra._internal.config_loader_impl import ConfigLoaderImpl

        parsed = self._parse(overrides)
        if not multirun and any(o.is_sweep_override() for o in parsed):
            from hydra import compose  # Hydra's own error for a sweep in a single config

            return compose("config", overrides=list(overrides), return_hydra_config=hydra)
        fixed = [o for o in parsed if not o.is_sweep_override()]
        groups = tuple(o.input_line for o in fixed if self._is_group(o))
        values = [o for o in fixed if not self._is_group(o)]
        if not hydra and any(o.is_hydra_override() for o in values):
            # hydra.* values only touch the hydra section, but Hydra checks them: so do we
            cfg = self.compose(overrides, hydra=True, multirun=multirun)
            with open_dict(cfg):
                del cfg["hydra"]
            return cfg
        key = (groups, hydra)
        blob = self._cache.get(key)
        if blob is None:
            blob = pickle.dumps(self._compose_groups(list(groups), hydra))
            self._cache[key] = blob
        else:
            self.hits += 1
        cfg = pickle.loads(blob)
        if values:
            ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        if hydra:
            _complete_hydra(cfg, parsed)
        return cfg

    def _compose_groups(self, groups: list[str], hydra: bool) -> DictConfig:
        from hydra import compose

        self.compositions += 1
        cfg = compose("config", overrides=groups, return_hydra_config=True)
        if not hydra:
            with open_dict(cfg):
                del cfg["hydra"]
        return cfg


def _complete_hydra(cfg: DictConfig, parsed: list) -> None:
    """The parts of the ``hydra`` section Hydra derives from the whole override list."""
    from hydra._internal.config_loader_impl import get_overrides_dirname

    task = [o for o in parsed if not o.is_hydra_override()]
    h = cfg.hydra
    h.overrides.task = [o.input_line for o in task]
    h.overrides.hydra = [o.input_line for o in parsed if o.is_hydra_override()]
    conf = h.job.config.override_dirname
    h.job.override_dirname = get_overrides_dirname(
        overrides=task, kv_sep=conf.kv_sep, item_sep=conf.item_sep,
        exclude_keys=conf.exclude_keys)
