"""One job seed -> independent random streams (the one place that splits a job's seed).

``job_seeds(seed)`` spawns three children of ``np.random.SeedSequence(seed)``: the data split,
the initial weights and the per-epoch shuffling. The job layer builds a job from them and the
report rebuilds a run's training points from the same ``data`` seed, without training.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class JobSeeds(NamedTuple):
    data: int  # seed of fnnbench.data.load_dataset (split, synthetic samples)
    init: int  # seed of the MLP's initial weights
    shuffle: np.random.SeedSequence  # the trainer's per-epoch permutations


def job_seeds(seed: int) -> JobSeeds:
    """The three streams of a job with top-level config ``seed``."""
    data, init, shuffle = np.random.SeedSequence(int(seed)).spawn(3)
    return JobSeeds(int(data.generate_state(1)[0]), int(init.generate_state(1)[0]), shuffle)
