"""What a run records, as plain data: flattened params, config hash, run tags.

No MLflow import here; `job.py` turns these dicts into MLflow entities.

- params: the resolved config (minus `hydra`) flattened with dots; lists and empty dicts
  as JSON (`[64, 64]`, `[]`, `{}`); scalars with `str()` (`0.1`, `True`, `None`);
  values cut to MAX_PARAM_CHARS (MLflow's limit).
- config hash: sha256 of the canonical JSON of the resolved config minus `hydra` and
  `tracking`, with the `claim` section reduced to its `id` (editing a claim's prose does
  not retrain its jobs, moving a job to another claim does).
"""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf

from fnnbench.paths import git_commit
from fnnbench.tracking.names import TAG_GIT_COMMIT, TAG_HOST, TAG_VERSIONS

MAX_PARAM_CHARS = 6000  # MLflow: param values longer than this are rejected or cut
MAX_TAG_CHARS = 8000  # MLflow: tag value limit
PARAMS_PER_BATCH = 100  # MLflow log_batch: at most 100 params (and 100 tags) per call
METRICS_PER_BATCH = 1000  # MLflow log_batch: at most 1000 metrics per call

T = TypeVar("T")


def resolved(cfg: DictConfig | Mapping) -> dict:
    """The config as a plain dict, interpolations resolved, without the `hydra` node."""
    if isinstance(cfg, DictConfig):
        data = OmegaConf.to_container(cfg, resolve=True)
    else:
        data = json.loads(json.dumps(dict(cfg), default=str))
    assert isinstance(data, dict)
    data.pop("hydra", None)
    return data


def _param_value(value: Any) -> str:
    if isinstance(value, list | tuple | dict):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    return text[:MAX_PARAM_CHARS]


def flatten(data: Mapping, prefix: str = "") -> dict[str, str]:
    """Flatten nested mappings with dots: {"optimizer": {"lr": 0.1}} -> {"optimizer.lr": "0.1"}.

    Lists (of anything) and empty mappings become one JSON value; every value is a str of at
    most MAX_PARAM_CHARS characters.
    """
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = _param_value(dict(value) if isinstance(value, Mapping) else value)
    return flat


def chunks(items: Sequence[T] | Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of at most `size` items (the last one may be shorter)."""
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def canonical(data: Mapping) -> dict:
    """The part of a resolved config that decides a job's result (see module docstring)."""
    out = {k: v for k, v in data.items() if k not in ("hydra", "tracking")}
    if isinstance(out.get("claim"), Mapping):
        out["claim"] = {"id": out["claim"].get("id")}
    return out


def config_hash(cfg: DictConfig | Mapping) -> str:
    """sha256 hex digest of the canonical resolved config (sorted keys, compact JSON)."""
    text = json.dumps(canonical(resolved(cfg)), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


@functools.cache
def versions() -> str:
    """'fnnbench=... numpy=... mlflow=... hydra=... python=...' of this process (cached)."""
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for name, dist in [("fnnbench", "fnnbench"), ("numpy", "numpy"), ("mlflow", "mlflow"),
                       ("hydra", "hydra-core"), ("omegaconf", "omegaconf")]:
        try:
            parts.append(f"{name}={version(dist)}")
        except PackageNotFoundError:
            continue
    parts.append(f"python={platform.python_version()}")
    return " ".join(parts)


def context_tags() -> dict[str, str]:
    """Tags every fnnbench run carries: host, versions, git commit (when known), user."""
    import getpass

    tags = {
        TAG_HOST: socket.gethostname(),
        TAG_VERSIONS: versions(),
        "mlflow.source.type": "LOCAL",
        "mlflow.source.name": "fnnbench",
    }
    try:
        tags["mlflow.user"] = getpass.getuser()
    except (KeyError, OSError):
        pass
    if commit := git_commit():
        tags[TAG_GIT_COMMIT] = commit
    return tags


def clip_tag(value: Any) -> str:
    """A tag value as str, cut to MLflow's limit."""
    return str(value)[:MAX_TAG_CHARS]
