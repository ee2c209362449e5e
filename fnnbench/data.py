"""Datasets: synthetic (xor, blobs, moons, spirals), sklearn digits, MNIST-1D, IDX files.

One entry point (and ``validate_config(cfg)``, the same checks without loading)::

    data = load_dataset(cfg, seed)     # cfg: a plain Mapping (e.g. dict) with key `name`
    data.X_train  (n_train, n_features) float64      data.y_train  (n_train,) int64 in [0, C)
    data.X_val, data.y_val, data.X_test, data.y_test   (same layout; a split may have 0 rows
                                                        when its fraction is 0)
    data.n_features, data.n_classes (C), data.name, data.info (dict: provenance, JSON-able)

Rows of X are examples.  Labels are class indices; encoding them for a loss (one-hot, +-1)
is the network's job, not this module's.  All randomness comes from
``rng = np.random.default_rng(seed)``, consumed in a fixed order (generate, subsample, split),
so the same (cfg, seed) gives the same arrays and different seeds give different splits.
The splits are stratified: every class is spread over train / val / test in proportion (+-1),
and each split is then shuffled.

Keys of ``cfg`` (any key not listed for a dataset is an error):

==============  ==========================  ===========  =========================================
key             datasets                    default      meaning
==============  ==========================  ===========  =========================================
name            all                         (required)   xor|blobs|moons|spirals|digits|mnist1d|idx
val_fraction    all but xor                 0.15         fraction held out for validation (mnist1d,
                                                         idx: of the train part); in [0, 1)
test_fraction   blobs moons spirals digits  0.15         fraction held out for test; in [0, 1);
                                                         val_fraction + test_fraction < 1
standardize     all                         see below    z-score features with the mean / std of
                                                         the train split only (bool); true for
                                                         blobs, moons, spirals; false for xor,
                                                         digits, mnist1d, idx (already scaled)
n_samples       blobs moons spirals         400          examples generated, all splits together
n_samples       mnist1d                     5000         examples generated; the generator keeps
                                                         80% for train and 20% for test, so the
                                                         default gives 4000 train / 1000 test
noise           blobs                       1.0          std of each Gaussian blob (per axis)
noise           moons                       0.2          std of the Gaussian noise (sklearn)
noise           spirals                     0.1          std of the Gaussian noise; arms have
                                                         radius <= 1
n_classes       blobs                       2            number of blobs (classes), >= 2
n_classes       spirals                     2            number of interleaved arms, >= 2
separation      blobs                       6.0          distance between neighbouring centres
turns           spirals                     1.0          revolutions of each arm
train_images    idx                         (required)   path of the IDX image file (~ expanded,
train_labels    idx                         (required)   .gz accepted); images are flattened to
test_images     idx                         (required)   rows, ubyte images scaled by 1/255 to
test_labels     idx                         (required)   [0, 1], other IDX dtypes kept as they are
max_train       idx                         null         keep a random subset of this many
                                                         examples of the train file (before the
                                                         validation split); null keeps all
random_labels   digits mnist1d              false        replace the training labels by uniform
                                                         random classes (Zhang et al. 2017: a
                                                         memorisation test); val / test keep theirs
==============  ==========================  ===========  =========================================

The datasets:

- ``xor``: the lecture's truth table, X = [[0,0],[0,1],[1,0],[1,1]], y = [0,1,1,0];
  train = val = test = these 4 points (copies), no split.
- ``blobs``: ``n_classes`` isotropic 2-D Gaussian blobs of std ``noise`` with centres evenly
  spaced on a circle, neighbouring centres ``separation`` apart.  Each blob is truncated to the
  disk of radius 0.45 * separation around its centre (radius drawn by inverse CDF, no
  rejection), so the disks lie inside the Voronoi cells of the centres and the classes are
  linearly separable by construction.  Class sizes differ by at most 1.
- ``moons``: ``sklearn.datasets.make_moons`` with ``random_state`` drawn from the seed's rng.
- ``spirals``: arm k of K: t in (0, 1], r = t, phi = 2 pi turns t + 2 pi k / K,
  x = r (cos phi, sin phi) + noise * N(0, I).
- ``digits``: ``sklearn.datasets.load_digits`` (bundled, no download): 1797 examples of 8x8
  images, 64 features scaled by 1/16 to [0, 1], 10 classes.
- ``mnist1d``: generated offline with ``mnist1d.data.make_dataset(get_dataset_args())``
  (``num_samples = n_samples``; never the download path); 40 features, 10 classes; the
  generator's test part is the test set, validation is split off its train part.  The arrays
  are cached as .npz in ``cache_dir()`` keyed by a hash of the generator's arguments and the
  mnist1d version; the cache is written atomically, so parallel workers may share it.
- ``idx``: IDX files (MNIST, Fashion-MNIST, USPS converted, ...).  Validation is split off the
  train file; the test files are the test set.  C = 1 + the largest label.

Errors: ``DataError`` (a ValueError) with one line naming the key or path and what is wrong.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
import random
import struct
import sys
import tempfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "cache_dir",
    "load_dataset",
    "validate_config",
    "read_idx",
    "write_idx",
]


class DataError(ValueError):
    """A dataset cannot be built: bad config key/value, or a missing/corrupt file."""


@dataclass(frozen=True)
class Dataset:
    """Train / validation / test splits; X float64 (n, n_features), y int64 (n,) in [0, C)."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    n_features: int
    n_classes: int
    name: str
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- config keys

_REQUIRED = object()  # marks a key without default

DATASETS: dict[str, dict[str, Any]] = {
    "xor": {"standardize": False},
    "blobs": {
        "n_samples": 400,
        "noise": 1.0,
        "n_classes": 2,
        "separation": 6.0,
        "val_fraction": 0.15,
        "test_fraction": 0.15,
        "standardize": True,
    },
    "moons": {
        "n_samples": 400,
        "noise": 0.2,
        "val_fraction": 0.15,
        "test_fraction": 0.15,
        "standardize": True,
    },
    "spirals": {
        "n_samples": 400,
        "noise": 0.1,
        "n_classes": 2,
        "turns": 1.0,
        "val_fraction": 0.15,
        "test_fraction": 0.15,
        "standardize": True,
    },
    "digits": {"val_fraction": 0.15, "test_fraction": 0.15, "standardize": False,
               "random_labels": False},
    "mnist1d": {"n_samples": 5000, "val_fraction": 0.15, "standardize": False,
                "random_labels": False},
    "idx": {
        "train_images": _REQUIRED,
        "train_labels": _REQUIRED,
        "test_images": _REQUIRED,
        "test_labels": _REQUIRED,
        "max_train": None,
        "val_fraction": 0.15,
        "standardize": False,
    },
}
"""Allowed keys of each dataset (besides ``name``) with their defaults."""


def _as_dict(cfg: Mapping) -> dict[str, Any]:
    """A copy of ``cfg`` as a dict. A Hydra config is converted by the caller (the job layer,
    ``OmegaConf.to_container(cfg, resolve=True)``): this module does not know OmegaConf."""
    if not isinstance(cfg, Mapping):
        raise DataError(f"dataset config must be a mapping, got {type(cfg).__name__}")
    return dict(cfg)


def _resolve(cfg: Mapping) -> tuple[str, dict[str, Any]]:
    """Name and the full key -> value dict (defaults filled in), validated."""
    cfg = _as_dict(cfg)
    name = cfg.pop("name", None)
    if name not in DATASETS:
        raise DataError(f"dataset.name: unknown dataset {name!r}; allowed: {sorted(DATASETS)}")
    spec = DATASETS[name]
    unknown = sorted(k for k in cfg if k not in spec)
    if unknown:
        raise DataError(
            f"dataset {name!r}: unknown key(s) {unknown}; allowed: {['name', *sorted(spec)]}"
        )
    args = {**spec, **cfg}
    for key, value in args.items():
        if value is _REQUIRED or (spec[key] is _REQUIRED and value in (None, "???")):
            raise DataError(f"dataset {name!r}: key {key!r} is required")
    _check_values(name, args)
    return name, args


def _number(name: str, key: str, value: Any, *, integer: bool = False) -> float | int:
    ok = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, ok):
        kind = "an integer" if integer else "a number"
        raise DataError(f"dataset {name!r}: {key} must be {kind}, got {value!r}")
    if not integer and not math.isfinite(value):
        raise DataError(f"dataset {name!r}: {key} must be finite, got {value!r}")
    return value


def _check_values(name: str, args: dict[str, Any]) -> None:
    if not isinstance(args["standardize"], bool):
        raise DataError(
            f"dataset {name!r}: standardize must be true/false, got {args['standardize']!r}"
        )
    fractions = 0.0
    for key in ("val_fraction", "test_fraction"):
        if key in args:
            f = _number(name, key, args[key])
            if not 0.0 <= f < 1.0:
                raise DataError(f"dataset {name!r}: {key} must be in [0, 1), got {f!r}")
            fractions += f
    if fractions >= 1.0:
        raise DataError(
            f"dataset {name!r}: val_fraction + test_fraction must be < 1, got {fractions!r}"
        )
    if "n_classes" in args and _number(name, "n_classes", args["n_classes"], integer=True) < 2:
        raise DataError(f"dataset {name!r}: n_classes must be >= 2, got {args['n_classes']!r}")
    if "n_samples" in args:
        n = _number(name, "n_samples", args["n_samples"], integer=True)
        n_min = 10 if name == "mnist1d" else 2 * args.get("n_classes", 2)
        if n < n_min:
            raise DataError(f"dataset {name!r}: n_samples={n} too small (need >= {n_min})")
        if n > 1_000_000:  # generated in memory, in preflight too: refuse before allocating
            raise DataError(f"dataset {name!r}: n_samples={n} too large (at most 1000000)")
    for key in ("noise", "separation", "turns"):
        if key in args:
            v = _number(name, key, args[key])
            if v < 0 or (key != "noise" and v == 0):
                raise DataError(f"dataset {name!r}: {key} must be > 0, got {v!r}")
    if "random_labels" in args and not isinstance(args["random_labels"], bool):
        raise DataError(
            f"dataset {name!r}: random_labels must be true/false, got {args['random_labels']!r}"
        )
    if args.get("max_train") is not None:
        m = _number(name, "max_train", args["max_train"], integer=True)
        if m < 2:
            raise DataError(f"dataset {name!r}: max_train must be >= 2, got {m!r}")
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        if key in args and not isinstance(args[key], str | os.PathLike):
            raise DataError(f"dataset {name!r}: {key} must be a path, got {args[key]!r}")


def validate_config(cfg: Mapping) -> None:
    """Check ``cfg`` (a plain Mapping: name, keys, values) without loading anything; DataError
    if invalid (also for a ``cfg`` that is not a Mapping).

    Checks everything that does not need the data; file contents and split sizes of real
    datasets are checked by ``load_dataset``.
    """
    _resolve(cfg)


# --------------------------------------------------------------------------- entry point


def load_dataset(cfg: Mapping, seed: int) -> Dataset:
    """Build the dataset ``cfg["name"]`` with the keys of the module table; see there.

    ``cfg`` is a plain Mapping of plain values (a Hydra config is converted by the caller);
    anything else raises DataError."""
    name, args = _resolve(cfg)
    rng = np.random.default_rng(seed)
    info: dict[str, Any] = {"seed": int(seed)}
    if name == "xor":
        X, y = _xor()
        splits = (X, y, X.copy(), y.copy(), X.copy(), y.copy())
        n_classes = 2
    elif name in ("blobs", "moons", "spirals", "digits"):
        X, y, n_classes = _GENERATORS[name](args, rng)
        _check_finite(name, X)
        i_tr, i_va, i_te = _split(
            name, y, n_classes, args["val_fraction"], args["test_fraction"], rng
        )
        splits = (X[i_tr], y[i_tr], X[i_va], y[i_va], X[i_te], y[i_te])
    elif name == "mnist1d":
        X, y, X_test, y_test, path = _mnist1d(args["n_samples"])
        info["cache"] = str(path)
        n_classes = 10
        i_tr, i_va, _ = _split(name, y, n_classes, args["val_fraction"], 0.0, rng)
        splits = (X[i_tr], y[i_tr], X[i_va], y[i_va], X_test, y_test)
    else:  # idx
        X, y, X_test, y_test, n_classes = _idx(args, rng)
        i_tr, i_va, _ = _split(name, y, n_classes, args["val_fraction"], 0.0, rng)
        splits = (X[i_tr], y[i_tr], X[i_va], y[i_va], X_test, y_test)
        info.update(
            {k: str(Path(args[k]).expanduser()) for k in args if k.endswith(("_images", "_labels"))}
        )

    Xs = [np.ascontiguousarray(s, dtype=np.float64) for s in splits[0::2]]
    ys = [np.ascontiguousarray(s, dtype=np.int64) for s in splits[1::2]]
    if args.get("random_labels"):  # drawn last: the splits are those of the true labels
        ys[0] = rng.integers(0, n_classes, size=len(ys[0])).astype(np.int64)
        info["random_labels"] = True
    for X_split in Xs:
        _check_finite(name, X_split)
    if args["standardize"]:
        mean, std = _fit_standardizer(Xs[0])
        Xs = [_standardize(X_split, mean, std) for X_split in Xs]
        info["standardized"] = True
    return Dataset(
        X_train=Xs[0],
        y_train=ys[0],
        X_val=Xs[1],
        y_val=ys[1],
        X_test=Xs[2],
        y_test=ys[2],
        n_features=int(Xs[0].shape[1]),
        n_classes=int(n_classes),
        name=name,
        info=info,
    )


def _check_finite(name: str, X: np.ndarray) -> None:
    if not np.all(np.isfinite(X)):
        raise DataError(f"dataset {name!r}: features contain NaN or inf")


# --------------------------------------------------------------------------- split, scaling


def _split(
    name: str,
    y: np.ndarray,
    n_classes: int,
    val_fraction: float,
    test_fraction: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified index split: n_test = round(n tf), n_val = round(n vf), the rest is train.

    The indices are permuted, stably sorted by class, and the n_test (then n_val) positions
    are spread evenly over that class-sorted order, so each class gets its share +-1.  Each
    split is returned in a fresh random order.
    """
    n = len(y)
    n_test = math.floor(n * test_fraction + 0.5)
    n_val = math.floor(n * val_fraction + 0.5)
    if (test_fraction > 0 and n_test == 0) or (val_fraction > 0 and n_val == 0):
        raise DataError(
            f"dataset {name!r}: {n} examples too few for val_fraction={val_fraction}, "
            f"test_fraction={test_fraction}"
        )
    order = rng.permutation(n)
    order = order[np.argsort(y[order], kind="stable")]

    def spread(m: int, k: int) -> np.ndarray:
        """Boolean mask of k positions evenly spread over m."""
        p = np.arange(m)
        return (p + 1) * k // m > p * k // m

    is_test = spread(n, n_test)
    rest = order[~is_test]
    is_val = spread(len(rest), n_val)
    i_test, i_val, i_train = order[is_test], rest[is_val], rest[~is_val]
    present = np.unique(y)
    if len(np.unique(y[i_train])) < len(present):
        raise DataError(
            f"dataset {name!r}: {n} examples too few: a class of the {len(present)} is "
            f"missing from the train split"
        )
    return rng.permutation(i_train), rng.permutation(i_val), rng.permutation(i_test)


def _fit_standardizer(X_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """mean, std per feature of the train split; features constant on train get std = 1
    (they become exactly 0 on train and are only centred on val / test)."""
    if len(X_train) == 0:
        return np.zeros(X_train.shape[1]), np.ones(X_train.shape[1])
    constant = np.ptp(X_train, axis=0) == 0
    mean = np.where(constant, X_train[0], X_train.mean(axis=0))
    std = np.where(constant, 1.0, X_train.std(axis=0))
    return mean, std


def _standardize(X: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """(X - mean) / std, per feature."""
    return (X - mean) / std


# --------------------------------------------------------------------------- synthetic data


def _xor() -> tuple[np.ndarray, np.ndarray]:
    """The lecture's truth table: A XOR B = AB' + A'B."""
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([0, 1, 1, 0], dtype=np.int64)
    return X, y


def _class_sizes(n: int, n_classes: int) -> np.ndarray:
    """n split into n_classes sizes differing by at most 1."""
    return np.full(n_classes, n // n_classes) + (np.arange(n_classes) < n % n_classes)


def _blobs(args: dict, rng: np.random.Generator):
    K, sigma, d = args["n_classes"], float(args["noise"]), float(args["separation"])
    radius_centres = d / (2.0 * math.sin(math.pi / K))  # neighbours d apart on the circle
    angles = 2.0 * math.pi * np.arange(K) / K
    centres = radius_centres * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    sizes = _class_sizes(args["n_samples"], K)
    y = np.repeat(np.arange(K), sizes)
    R = 0.45 * d  # truncation radius: inside the Voronoi cell of each centre
    # radius of a 2-D isotropic Gaussian: Rayleigh, F(r) = 1 - exp(-r^2 / (2 sigma^2));
    # truncated to r <= R by drawing u ~ U(0, F(R)) and inverting F.
    F_R = -math.expm1(-(R**2) / (2.0 * sigma**2)) if sigma > 0 else 1.0
    u = rng.uniform(0.0, F_R, size=len(y))
    r = sigma * np.sqrt(-2.0 * np.log1p(-u))
    phi = rng.uniform(0.0, 2.0 * math.pi, size=len(y))
    X = centres[y] + r[:, None] * np.stack([np.cos(phi), np.sin(phi)], axis=1)
    return X, y, K


def _moons(args: dict, rng: np.random.Generator):
    from sklearn.datasets import make_moons

    X, y = make_moons(
        n_samples=args["n_samples"],
        noise=float(args["noise"]),
        random_state=int(rng.integers(2**31 - 1)),
    )
    return X, y.astype(np.int64), 2


def _spirals(args: dict, rng: np.random.Generator):
    K, sigma, turns = args["n_classes"], float(args["noise"]), float(args["turns"])
    sizes = _class_sizes(args["n_samples"], K)
    y = np.repeat(np.arange(K), sizes)
    # t in (0, 1], evenly spaced along each arm
    t = np.concatenate([(np.arange(m) + 1.0) / m for m in sizes])
    phi = 2.0 * math.pi * turns * t + 2.0 * math.pi * y / K
    X = t[:, None] * np.stack([np.cos(phi), np.sin(phi)], axis=1)
    X += sigma * rng.standard_normal(X.shape)
    return X, y, K


# Source arrays read from disk, kept for the life of the process (a pool worker runs hundreds
# of jobs on the same data); read-only, every split is a copy.
_SOURCES: dict[Any, tuple[np.ndarray, ...]] = {}


def _source(key: Any, read: Callable[[], tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    if key not in _SOURCES:
        arrays = tuple(np.asarray(a) for a in read())
        for a in arrays:
            a.setflags(write=False)
        _SOURCES[key] = arrays
    return _SOURCES[key]


def _file_stamp(path: Path) -> tuple[int, int] | None:
    """(mtime in ns, size) of a file, None when it is missing."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _digits_file() -> Path | None:
    """scikit-learn's copy of the UCI digits (sklearn/datasets/data/digits.csv.gz), found
    without importing scikit-learn (an import costs ~1 s per process)."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            return path
    return None


def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 digits as ``load_digits(return_X_y=True)`` gives them (tests compare)."""
    path = _digits_file()
    if path is None:  # another layout: let scikit-learn find its file
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        return X, y
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1], data[:, -1].astype(int)


def _digits(args: dict, rng: np.random.Generator):
    X, y = _source("digits", _read_digits)
    return X / 16.0, y.astype(np.int64), 10


_GENERATORS = {"blobs": _blobs, "moons": _moons, "spirals": _spirals, "digits": _digits}


# --------------------------------------------------------------------------- MNIST-1D


def cache_dir() -> Path:
    """$FNNBENCH_CACHE_DIR, else $XDG_CACHE_HOME/fnnbench, else ~/.cache/fnnbench."""
    if os.environ.get("FNNBENCH_CACHE_DIR"):
        return Path(os.environ["FNNBENCH_CACHE_DIR"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "fnnbench"
    return Path.home() / ".cache" / "fnnbench"


_MNIST1D_CACHE_FORMAT = 1


def _mnist1d_args(n_samples: int) -> dict[str, Any]:
    """The generator's arguments: mnist1d defaults with num_samples = n_samples."""
    _import_mnist1d()
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args["num_samples"] = int(n_samples)
    return args


def _mnist1d_cache_path(args: dict[str, Any]) -> Path:
    try:
        version = metadata.version("mnist1d")
    except metadata.PackageNotFoundError:  # pragma: no cover
        version = "unknown"
    key_args = {k: v for k, v in args.items() if k != "url"}
    blob = json.dumps(
        {"args": key_args, "mnist1d": version, "format": _MNIST1D_CACHE_FORMAT}, sort_keys=True
    )
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return cache_dir() / f"mnist1d-{digest}.npz"


def _import_mnist1d() -> None:
    """mnist1d imports pyplot: pick the non-interactive Agg backend unless pyplot is loaded."""
    if "mnist1d.data" not in sys.modules and "matplotlib.pyplot" not in sys.modules:
        import matplotlib

        matplotlib.use("Agg")


def _generate_mnist1d(args: dict[str, Any]) -> dict[str, np.ndarray]:
    """Run the generator offline; it seeds the global numpy / random RNGs, which are restored."""
    _import_mnist1d()
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    # mnist1d calls np.random.seed / random.seed; save and restore the global state so
    # importing a dataset never perturbs a caller's legacy RNG (fnnbench itself never uses it)
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        d = make_dataset(ObjectView(dict(args)))
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)
    return {"x": d["x"], "y": d["y"], "x_test": d["x_test"], "y_test": d["y_test"]}


def _read_mnist1d_cache(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in ("x", "y", "x_test", "y_test")}
    except Exception:  # missing, partial or foreign file: regenerate
        return None
    ok = (
        arrays["x"].ndim == 2
        and arrays["x_test"].ndim == 2
        and arrays["x"].shape[1] == arrays["x_test"].shape[1]
        and arrays["y"].shape == arrays["x"].shape[:1]
        and arrays["y_test"].shape == arrays["x_test"].shape[:1]
    )
    return arrays if ok else None


def _write_atomic_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write to a temporary file in the same directory, then os.replace (atomic on POSIX)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the cache is an ordinary readable file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _mnist1d(n_samples: int):
    args = _mnist1d_args(n_samples)
    path = _mnist1d_cache_path(args)
    key = ("mnist1d", str(path), _file_stamp(path))  # the file changed: read it again
    if key in _SOURCES:
        x, y, x_test, y_test = _SOURCES[key]
        arrays = {"x": x, "y": y, "x_test": x_test, "y_test": y_test}
    else:
        arrays = _read_mnist1d_cache(path)
    if arrays is None:
        arrays = _generate_mnist1d(args)
        try:
            _write_atomic_npz(path, arrays)
        except OSError as e:
            raise DataError(f"{path}: cannot write the mnist1d cache ({e.strerror})") from e
        key = ("mnist1d", str(path), _file_stamp(path))
    for old in [k for k in _SOURCES if k[:2] == key[:2] and k != key]:
        del _SOURCES[old]  # an earlier version of the same file
    _source(key, lambda: (arrays["x"], arrays["y"], arrays["x_test"], arrays["y_test"]))
    y, y_test = arrays["y"].astype(np.int64), arrays["y_test"].astype(np.int64)
    for labels in (y, y_test):
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise DataError(f"{path}: mnist1d labels outside [0, 10)")
    return arrays["x"], y, arrays["x_test"], y_test, path


# --------------------------------------------------------------------------- IDX files

# IDX: magic = 0x00 0x00 <dtype code> <ndim>, then ndim big-endian uint32 sizes, then the data
# in C order, big-endian.
_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Parse an IDX file (gzip-compressed or not) into an array of native byte order.

    Raises DataError naming the path: missing/unreadable file, corrupt gzip, bad magic,
    unknown dtype code, or a data size that does not match the header's dimensions.
    """
    path = Path(path).expanduser()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt gzip data ({e})") from None
    if len(raw) < 4:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes)")
    if raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: bad IDX magic {raw[:4].hex()} (must start with 0000)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise DataError(f"{path}: unknown IDX dtype code 0x{code:02X}")
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header (needs {header} bytes, has {len(raw)})")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _IDX_DTYPES[code]
    count = math.prod(dims)
    if len(raw) - header != count * dtype.itemsize:
        raise DataError(
            f"{path}: size mismatch: header {dims} of {dtype.name} needs "
            f"{count * dtype.itemsize} data bytes, file has {len(raw) - header}"
        )
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file (gzip-compressed when the path ends in .gz).

    dtypes: uint8, int8, int16, int32, float32, float64 (ValueError otherwise).
    """
    path = Path(path).expanduser()
    array = np.asarray(array)
    code = _IDX_CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(
            f"IDX has no dtype for {array.dtype}; use one of {[str(d) for d in _IDX_CODES]}"
        )
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX needs 1..255 dimensions, got {array.ndim}")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + np.ascontiguousarray(array, dtype=_IDX_DTYPES[code]).tobytes()
    if path.suffix == ".gz":
        raw = gzip.compress(raw)
    path.write_bytes(raw)
    return path


def _idx_pair(images_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray]:
    """Images flattened to (n, n_features) float64 (ubyte scaled by 1/255), labels int64."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    ipath, lpath = Path(images_path).expanduser(), Path(labels_path).expanduser()
    if images.ndim < 2:
        raise DataError(f"{ipath}: images need >= 2 dimensions, got shape {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{lpath}: labels must be 1-D, got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise DataError(f"{lpath}: labels must have an integer IDX dtype, got {labels.dtype}")
    if len(images) != len(labels):
        raise DataError(f"{ipath}: {len(images)} images but {lpath} has {len(labels)} labels")
    if labels.size and labels.min() < 0:
        raise DataError(f"{lpath}: negative label {labels.min()}")
    X = images.reshape(len(images), -1).astype(np.float64)
    if images.dtype == np.uint8:
        X /= 255.0
    if not np.all(np.isfinite(X)):
        raise DataError(f"{ipath}: images contain NaN or inf")
    return X, labels.astype(np.int64)


def _idx(args: dict, rng: np.random.Generator):
    X, y = _idx_pair(args["train_images"], args["train_labels"])
    X_test, y_test = _idx_pair(args["test_images"], args["test_labels"])
    if X.shape[1] != X_test.shape[1]:
        raise DataError(
            f"{Path(args['test_images']).expanduser()}: {X_test.shape[1]} features per image, "
            f"train file has {X.shape[1]}"
        )
    if len(X) == 0:
        raise DataError(f"{Path(args['train_images']).expanduser()}: no training examples")
    n_classes = int(max(y.max(), y_test.max() if y_test.size else 0)) + 1
    if n_classes < 2:
        raise DataError(f"{Path(args['train_labels']).expanduser()}: fewer than 2 classes")
    max_train = args["max_train"]
    if max_train is not None and max_train < len(y):
        keep = np.sort(rng.choice(len(y), size=max_train, replace=False))
        X, y = X[keep], y[keep]
    return X, y, X_test, y_test, n_classes
