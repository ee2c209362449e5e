"""Config -> objects: the network, the update rule, the data and the random streams of a job.

``build(cfg)`` validates the composed config (:mod:`fnnbench.job.schema`), converts it to plain
containers once, and builds every object by name through the registries of ``fnnbench.nn``,
``fnnbench.optim`` and ``fnnbench.data`` (never through ``_target_``). Nothing here trains or
logs; :mod:`fnnbench.job.run` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from fnnbench.data import Dataset, load_dataset
from fnnbench.job.schema import check_against_data, check_size, resolve_batch_size, validate
from fnnbench.nn import MLP
from fnnbench.optim import make_optimizer
from fnnbench.seeding import job_seeds


@dataclass
class JobParts:
    """Everything a training job needs, built from a validated config."""

    net: MLP
    opt: Any  # an fnnbench.optim update rule
    data: Dataset
    batch_size: int
    rng: np.random.Generator  # the trainer's shuffling stream


def build(cfg: DictConfig) -> JobParts:
    """Config -> objects, through the registries of fnnbench.nn / optim / data only.

    Raises ConfigError / DataError (one line) for a bad config or unreadable data.
    """
    validate(cfg)
    c: dict = OmegaConf.to_container(cfg, resolve=True)  # the config crosses in here, once
    seeds = job_seeds(c["seed"])
    data = load_dataset(c["dataset"], seed=seeds.data)
    check_against_data(cfg, len(data.y_train))
    check_size(cfg, data.n_features, data.n_classes, len(data.y_train))
    # Two classes: one output unit (the lecture's Bernoulli / single neuron); C > 2: C outputs.
    n_out = 1 if data.n_classes == 2 else data.n_classes
    act = dict(c["activation"])
    act_name = act.pop("name")
    loss_kw = dict(c["loss"])
    loss_name = loss_kw.pop("name")
    model, reg = c["model"], c["regularizer"]
    net = MLP(
        [data.n_features, *model["hidden_sizes"], n_out],
        activation=act_name,
        loss=loss_name,
        seed=seeds.init,
        dtype=np.dtype(model["dtype"]),
        activation_kwargs=act,
        loss_kwargs=loss_kw,
        init=model["init"],
        init_sigma=model["init_sigma"],
        regularizer=None if reg["name"] == "none" else reg["name"],
        reg_strength=float(reg["strength"]),
    )
    hp = {k: v for k, v in c["optimizer"].items() if k not in ("name", "rule", "batch_size")}
    opt = make_optimizer(c["optimizer"]["rule"], **hp)
    bs = resolve_batch_size(c["optimizer"]["batch_size"], len(data.y_train))
    return JobParts(net=net, opt=opt, data=data, batch_size=bs,
                    rng=np.random.default_rng(seeds.shuffle))
