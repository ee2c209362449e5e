"""fnnbench.data: shapes, splits, standardisation, validation, MNIST-1D cache, IDX files."""

import gzip
import subprocess
import sys
import warnings
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pytest
from omegaconf import OmegaConf

import fnnbench.data as data_mod
from fnnbench.data import (
    DATASETS,
    DataError,
    Dataset,
    load_dataset,
    read_idx,
    validate_config,
    write_idx,
)

FAST = ["xor", "blobs", "moons", "spirals", "digits"]


def check_layout(d: Dataset) -> None:
    """Dtypes, shapes and label range common to every dataset."""
    for X, y in ((d.X_train, d.y_train), (d.X_val, d.y_val), (d.X_test, d.y_test)):
        assert X.dtype == np.float64 and y.dtype == np.int64
        assert X.ndim == 2 and X.shape == (len(y), d.n_features)
        assert np.all(np.isfinite(X))
        assert y.size == 0 or (y.min() >= 0 and y.max() < d.n_classes)
    assert set(np.unique(d.y_train)) == set(range(d.n_classes))


# ----------------------------------------------------------------------- each dataset


def test_xor_is_the_truth_table():
    d = load_dataset({"name": "xor"}, seed=3)
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    y = np.array([0, 1, 1, 0])
    for Xs, ys in ((d.X_train, d.y_train), (d.X_val, d.y_val), (d.X_test, d.y_test)):
        np.testing.assert_array_equal(Xs, X)
        np.testing.assert_array_equal(ys, y)
    assert not np.shares_memory(d.X_train, d.X_val)  # copies, not one array thrice
    assert (d.n_features, d.n_classes, d.name) == (2, 2, "xor")
    check_layout(d)


@pytest.mark.parametrize(
    "cfg, n_classes, sizes",
    [
        ({"name": "blobs"}, 2, (280, 60, 60)),
        ({"name": "blobs", "n_classes": 4, "n_samples": 200}, 4, (140, 30, 30)),
        ({"name": "moons", "n_samples": 100}, 2, (70, 15, 15)),
        ({"name": "spirals", "n_classes": 3, "n_samples": 300}, 3, (210, 45, 45)),
    ],
)
def test_synthetic_shapes(cfg, n_classes, sizes):
    d = load_dataset(cfg, seed=0)
    check_layout(d)
    assert (d.n_features, d.n_classes) == (2, n_classes)
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == sizes
    # stratified: every class gets its share of the test split within +-1
    counts = np.bincount(d.y_test, minlength=n_classes)
    assert counts.max() - counts.min() <= 1


def test_digits_shapes_and_scaling():
    d = load_dataset({"name": "digits"}, seed=0)
    check_layout(d)
    n = len(d.y_train) + len(d.y_val) + len(d.y_test)
    assert (n, d.n_features, d.n_classes) == (1797, 64, 10)
    X = np.concatenate([d.X_train, d.X_val, d.X_test])
    assert X.min() == 0.0 and X.max() == 1.0  # pixel values 0..16 divided by 16
    assert (len(d.y_val), len(d.y_test)) == (270, 270)  # round(0.15 * 1797)


def test_digits_splits_partition_the_data():
    from sklearn.datasets import load_digits

    X_all, y_all = load_digits(return_X_y=True)
    d = load_dataset({"name": "digits"}, seed=5)
    X = np.concatenate([d.X_train, d.X_val, d.X_test]) * 16.0
    y = np.concatenate([d.y_train, d.y_val, d.y_test])

    def rows(X, y):  # sorted rows of [y, X]: multiset of examples
        Z = np.column_stack([y, X])
        return Z[np.lexsort(Z.T[::-1])]

    np.testing.assert_array_equal(rows(X, y), rows(X_all, y_all))


def test_blobs_linearly_separable_by_least_squares():
    for seed in range(5):
        d = load_dataset({"name": "blobs"}, seed=seed)
        X = np.concatenate([d.X_train, d.X_val, d.X_test])
        y = np.concatenate([d.y_train, d.y_val, d.y_test])
        A = np.column_stack([X, np.ones(len(X))])
        w, *_ = np.linalg.lstsq(A, 2.0 * y - 1.0, rcond=None)  # targets -1 / +1
        assert np.mean((A @ w > 0) == (y == 1)) == 1.0


@pytest.mark.parametrize("n_classes", [2, 3, 5])
def test_blobs_points_inside_their_voronoi_cell_even_with_large_noise(n_classes):
    # truncation keeps each point nearer its own centre than any other: separable by the
    # linear machine argmax_k (2 c_k.x - |c_k|^2)
    d = load_dataset(
        {"name": "blobs", "n_classes": n_classes, "noise": 20.0, "standardize": False}, seed=1
    )
    X = np.concatenate([d.X_train, d.X_val, d.X_test])
    y = np.concatenate([d.y_train, d.y_val, d.y_test])
    # centres evenly spaced on a circle, neighbours `separation` = 6 apart (the default)
    rho = 6.0 / (2 * np.sin(np.pi / n_classes))
    ang = 2 * np.pi * np.arange(n_classes) / n_classes
    true_centres = rho * np.column_stack([np.cos(ang), np.sin(ang)])
    dist = np.linalg.norm(X[:, None, :] - true_centres[None], axis=2)
    assert np.all(dist[np.arange(len(y)), y] <= 0.45 * 6.0 + 1e-12)
    assert np.all(np.argmin(dist, axis=1) == y)


def test_spirals_arms_are_interleaved():
    d = load_dataset({"name": "spirals", "noise": 0.0, "standardize": False}, seed=0)
    X = np.concatenate([d.X_train, d.X_val, d.X_test])
    r = np.linalg.norm(X, axis=1)
    assert r.max() == pytest.approx(1.0, abs=1e-12)  # t in (0, 1], r = t
    # a linear classifier cannot separate the arms (accuracy well below 100%)
    y = np.concatenate([d.y_train, d.y_val, d.y_test])
    A = np.column_stack([X, np.ones(len(X))])
    w, *_ = np.linalg.lstsq(A, 2.0 * y - 1.0, rcond=None)
    assert np.mean((A @ w > 0) == (y == 1)) < 0.9


# ----------------------------------------------------------------------- splits, scaling


@pytest.mark.parametrize("name", ["blobs", "moons", "spirals", "digits"])
def test_splits_deterministic_per_seed_and_differ_across_seeds(name):
    a, b = load_dataset({"name": name}, seed=7), load_dataset({"name": name}, seed=7)
    c = load_dataset({"name": name}, seed=8)
    for field in ("X_train", "y_train", "X_val", "y_val", "X_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.X_train.shape == c.X_train.shape
    assert not np.array_equal(a.X_train, c.X_train)


def test_standardisation_uses_train_statistics_only():
    raw = load_dataset({"name": "moons", "standardize": False}, seed=2)
    std = load_dataset({"name": "moons", "standardize": True}, seed=2)
    np.testing.assert_array_equal(raw.y_train, std.y_train)  # same split
    mu, sigma = raw.X_train.mean(axis=0), raw.X_train.std(axis=0)
    for field in ("X_train", "X_val", "X_test"):
        np.testing.assert_allclose(
            getattr(std, field), (getattr(raw, field) - mu) / sigma, rtol=0, atol=1e-12
        )
    np.testing.assert_allclose(std.X_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(std.X_train.std(axis=0), 1.0, atol=1e-12)
    # val/test are not re-centred on their own statistics
    assert np.abs(std.X_test.mean(axis=0)).max() > 1e-6


def test_standardisation_leaves_constant_features_at_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = load_dataset({"name": "digits", "standardize": True}, seed=0)
    constant = np.ptp(load_dataset({"name": "digits"}, seed=0).X_train, axis=0) == 0
    assert constant.any()  # digits has blank border pixels
    assert np.all(d.X_train[:, constant] == 0.0)
    assert np.all(np.isfinite(d.X_val)) and np.all(np.isfinite(d.X_test))


def test_zero_val_fraction_gives_empty_val_split():
    d = load_dataset({"name": "blobs", "val_fraction": 0.0, "n_samples": 100}, seed=0)
    assert d.X_val.shape == (0, 2) and d.y_val.shape == (0,)
    assert len(d.y_train) + len(d.y_test) == 100


def test_accepts_any_plain_mapping_and_refuses_others():
    # the job layer converts a Hydra config once (OmegaConf.to_container) before calling
    cfg = OmegaConf.to_container(OmegaConf.create({"name": "blobs", "n_samples": 50}))
    d = load_dataset(cfg, seed=0)
    proxy = MappingProxyType({"name": "blobs", "n_samples": 50})
    np.testing.assert_array_equal(d.X_train, load_dataset(proxy, seed=0).X_train)
    for bad in (["name", "blobs"], "blobs", None):
        with pytest.raises(DataError, match="dataset config must be a mapping, got"):
            load_dataset(bad, seed=0)
        with pytest.raises(DataError, match="dataset config must be a mapping"):
            validate_config(bad)


def test_ground_floor_imports_neither_omegaconf_nor_hydra():
    code = (
        "import sys\n"
        "import fnnbench.data, fnnbench.nn, fnnbench.optim, fnnbench.train\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('omegaconf', 'hydra')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "cfg, pattern",
    [
        ({"name": "cifar"}, r"unknown dataset 'cifar'.*allowed.*'blobs'"),
        ({}, r"unknown dataset None"),
        ({"name": "xor", "noise": 0.1}, r"'xor'.*unknown key.*'noise'.*allowed.*'standardize'"),
        ({"name": "moons", "n_classes": 3}, r"unknown key.*'n_classes'"),
        ({"name": "blobs", "val_fraction": 1.0}, r"val_fraction must be in \[0, 1\)"),
        ({"name": "blobs", "test_fraction": -0.1}, r"test_fraction must be in \[0, 1\)"),
        ({"name": "blobs", "val_fraction": 0.5, "test_fraction": 0.5}, r"must be < 1"),
        ({"name": "blobs", "n_samples": 3}, r"n_samples=3 too small"),
        ({"name": "blobs", "n_samples": 10.5}, r"n_samples must be an integer"),
        ({"name": "blobs", "n_samples": 10, "val_fraction": 0.01}, r"too few"),
        ({"name": "blobs", "n_classes": 1}, r"n_classes must be >= 2"),
        ({"name": "blobs", "noise": -1.0}, r"noise must be > 0"),
        ({"name": "spirals", "turns": float("inf")}, r"turns must be finite"),
        ({"name": "digits", "standardize": "yes"}, r"standardize must be true/false"),
        (
            {"name": "idx", "train_images": "a", "train_labels": "b", "test_images": "c"},
            r"'test_labels' is required",
        ),
    ],
)
def test_invalid_config_raises_data_error(cfg, pattern):
    with pytest.raises(DataError, match=pattern) as info:
        load_dataset(cfg, seed=0)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_validate_config_checks_without_loading(tmp_path):
    validate_config(
        {
            "name": "idx",
            **{
                k: str(tmp_path / k)
                for k in ("train_images", "train_labels", "test_images", "test_labels")
            },
        }
    )  # files need not exist yet
    validate_config(MappingProxyType({"name": "spirals", "n_classes": 3}))
    with pytest.raises(DataError, match="unknown key.*'std'"):
        validate_config({"name": "blobs", "std": 1.0})
    # a mandatory value left as ??? in the config stays "???" through OmegaConf.to_container
    missing = OmegaConf.to_container(OmegaConf.create(
        {
            "name": "idx",
            "train_images": "???",
            "train_labels": "a",
            "test_images": "b",
            "test_labels": "c",
        }
    ))
    with pytest.raises(DataError, match="'train_images' is required"):
        validate_config(missing)


def test_every_documented_key_is_in_the_module_docstring():
    for name, spec in DATASETS.items():
        assert name in data_mod.__doc__
        for key in spec:
            assert key in data_mod.__doc__, (name, key)


# ----------------------------------------------------------------------- MNIST-1D


def fake_generator(calls):
    """Stands in for mnist1d.make_dataset: tiny arrays, counts its calls."""

    def generate(args):
        calls.append(args["num_samples"])
        rng = np.random.default_rng(0)
        n_train = int(args["num_samples"] * args["train_split"])
        n_test = args["num_samples"] - n_train
        return {
            "x": rng.standard_normal((n_train, 40)),
            "y": np.arange(n_train) % 10,
            "x_test": rng.standard_normal((n_test, 40)),
            "y_test": np.arange(n_test) % 10,
        }

    return generate


@pytest.fixture
def fake_mnist1d(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setenv("FNNBENCH_CACHE_DIR", str(tmp_path / "cache"))
    # mnist1d defaults without importing mnist1d (its import takes seconds)
    monkeypatch.setattr(
        data_mod,
        "_mnist1d_args",
        lambda n: {"num_samples": n, "train_split": 0.8, "seed": 42, "url": "unused"},
    )
    monkeypatch.setattr(data_mod, "_generate_mnist1d", fake_generator(calls))
    return calls, tmp_path / "cache"


def test_mnist1d_cache_written_once_then_hit(fake_mnist1d):
    calls, cache = fake_mnist1d
    a = load_dataset({"name": "mnist1d", "n_samples": 200}, seed=0)
    assert calls == [200]
    files = list(cache.iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"  # no temporary file left behind
    b = load_dataset({"name": "mnist1d", "n_samples": 200}, seed=0)
    assert calls == [200]  # cache hit: generator not called again
    np.testing.assert_array_equal(a.X_test, b.X_test)
    assert (len(a.y_train), len(a.y_val), len(a.y_test)) == (136, 24, 40)
    load_dataset({"name": "mnist1d", "n_samples": 300}, seed=0)
    assert calls == [200, 300]  # different generator args -> different cache entry
    assert len(list(cache.iterdir())) == 2


def test_mnist1d_corrupt_cache_is_regenerated(fake_mnist1d):
    calls, cache = fake_mnist1d
    load_dataset({"name": "mnist1d", "n_samples": 100}, seed=0)
    (path,) = cache.iterdir()
    path.write_bytes(b"PK\x03\x04 not really a zip")
    d = load_dataset({"name": "mnist1d", "n_samples": 100}, seed=0)
    assert calls == [100, 100]
    check_layout(d)


def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("FNNBENCH_CACHE_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert data_mod.cache_dir() == tmp_path / "a"
    monkeypatch.delenv("FNNBENCH_CACHE_DIR")
    assert data_mod.cache_dir() == tmp_path / "x" / "fnnbench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_mod.cache_dir() == tmp_path / "home" / ".cache" / "fnnbench"


@pytest.mark.slow
def test_mnist1d_real_generator_and_cache_hit(monkeypatch, tmp_path):
    monkeypatch.setenv("FNNBENCH_CACHE_DIR", str(tmp_path))
    legacy = np.random.get_state()  # noqa: NPY002 - the generator must leave it untouched
    d = load_dataset({"name": "mnist1d"}, seed=0)
    assert np.array_equal(np.random.get_state()[1], legacy[1])  # noqa: NPY002
    check_layout(d)
    assert (d.n_features, d.n_classes) == (40, 10)
    assert len(d.y_train) + len(d.y_val) == 4000 and len(d.y_test) == 1000
    assert len(d.y_val) == 600  # 0.15 of the 4000 train examples
    assert Path(d.info["cache"]).parent == tmp_path

    def fail(args):
        raise AssertionError("cache miss")

    monkeypatch.setattr(data_mod, "_generate_mnist1d", fail)
    again = load_dataset({"name": "mnist1d"}, seed=0)
    np.testing.assert_array_equal(again.X_train, d.X_train)
    np.testing.assert_array_equal(again.y_test, d.y_test)


# ----------------------------------------------------------------------- IDX files


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip(tmp_path, dtype, suffix):
    rng = np.random.default_rng(0)
    a = (rng.uniform(-100, 100, size=(3, 4, 5)) + (100 if dtype == "u1" else 0)).astype(dtype)
    path = write_idx(tmp_path / f"a.idx{suffix}", a)
    b = read_idx(path)
    assert b.dtype == a.dtype and b.shape == a.shape
    np.testing.assert_array_equal(a, b)


def test_idx_header_bytes_are_the_standard_ones(tmp_path):
    path = write_idx(tmp_path / "labels", np.array([7, 2, 1], dtype=np.uint8))
    # magic 0x00000801 (ubyte, 1 dim), count 3 big-endian, then the bytes
    assert path.read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1])
    with pytest.raises(ValueError, match="int64"):
        write_idx(tmp_path / "x", np.arange(3))


def make_idx_files(tmp_path, n_train=60, n_test=20, gz=False):
    rng = np.random.default_rng(1)
    sfx = ".gz" if gz else ""
    images = rng.integers(0, 256, size=(n_train, 4, 3), dtype=np.uint8)
    labels = (np.arange(n_train) % 3).astype(np.uint8)
    t_images = rng.integers(0, 256, size=(n_test, 4, 3), dtype=np.uint8)
    t_labels = (np.arange(n_test) % 3).astype(np.uint8)
    cfg = {
        "name": "idx",
        "train_images": str(write_idx(tmp_path / f"train-images{sfx}", images)),
        "train_labels": str(write_idx(tmp_path / f"train-labels{sfx}", labels)),
        "test_images": str(write_idx(tmp_path / f"test-images{sfx}", t_images)),
        "test_labels": str(write_idx(tmp_path / f"test-labels{sfx}", t_labels)),
    }
    return cfg, images, labels, t_images, t_labels


@pytest.mark.parametrize("gz", [False, True])
def test_idx_dataset_loads(tmp_path, gz):
    cfg, images, labels, t_images, t_labels = make_idx_files(tmp_path, gz=gz)
    d = load_dataset(cfg, seed=0)
    check_layout(d)
    assert (d.n_features, d.n_classes) == (12, 3)
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (51, 9, 20)
    np.testing.assert_array_equal(d.X_test, t_images.reshape(20, 12) / 255.0)
    np.testing.assert_array_equal(d.y_test, t_labels)
    # train + val are the train file's rows, flattened and scaled by 1/255
    X = np.concatenate([d.X_train, d.X_val])
    got = {tuple(r) for r in np.round(X * 255).astype(int)}
    assert got == {tuple(r) for r in images.reshape(60, 12).astype(int)}


def test_idx_tilde_paths_and_max_train(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    cfg, *_ = make_idx_files(tmp_path)
    cfg = {k: v.replace(str(tmp_path), "~") if k != "name" else v for k, v in cfg.items()}
    d = load_dataset({**cfg, "max_train": 20, "val_fraction": 0.25}, seed=0)
    assert (len(d.y_train), len(d.y_val), len(d.y_test)) == (15, 5, 20)
    e = load_dataset({**cfg, "max_train": 20, "val_fraction": 0.25}, seed=1)
    assert not np.array_equal(np.sort(d.X_train, axis=0), np.sort(e.X_train, axis=0))


def corrupt(path: Path, how: str) -> None:
    raw = path.read_bytes()
    if how == "truncated":
        path.write_bytes(raw[:-5])
    elif how == "extra_bytes":
        path.write_bytes(raw + b"\x00")
    elif how == "bad_magic":
        path.write_bytes(b"\x01\x02" + raw[2:])
    elif how == "dtype_code":
        path.write_bytes(raw[:2] + b"\x0a" + raw[3:])
    elif how == "header_cut":
        path.write_bytes(raw[:6])
    elif how == "missing":
        path.unlink()
    elif how == "bad_gzip":
        path.write_bytes(gzip.compress(raw)[:-10])


@pytest.mark.parametrize(
    "key, how, pattern",
    [
        ("train_images", "missing", "no such file"),
        ("train_images", "truncated", "size mismatch"),
        ("test_labels", "extra_bytes", "size mismatch"),
        ("train_labels", "bad_magic", "bad IDX magic"),
        ("test_images", "dtype_code", "unknown IDX dtype code 0x0A"),
        ("train_labels", "header_cut", "truncated IDX header"),
        ("test_images", "bad_gzip", "corrupt gzip"),
    ],
)
def test_idx_corruption_raises_data_error_naming_the_path(tmp_path, key, how, pattern):
    cfg, *_ = make_idx_files(tmp_path)
    corrupt(Path(cfg[key]), how)
    with pytest.raises(DataError, match=pattern) as info:
        load_dataset(cfg, seed=0)
    assert cfg[key] in str(info.value)
    assert "\n" not in str(info.value)


def test_idx_count_mismatch_and_bad_labels(tmp_path):
    cfg, images, labels, *_ = make_idx_files(tmp_path)
    write_idx(cfg["train_labels"], labels[:-1])
    with pytest.raises(DataError, match="60 images but .* 59 labels") as info:
        load_dataset(cfg, seed=0)
    assert cfg["train_images"] in str(info.value) and cfg["train_labels"] in str(info.value)
    write_idx(cfg["train_labels"], labels.astype(np.float32))
    with pytest.raises(DataError, match="integer IDX dtype") as info:
        load_dataset(cfg, seed=0)
    assert cfg["train_labels"] in str(info.value)
    write_idx(cfg["train_labels"], labels.astype(np.int16) - 1)
    with pytest.raises(DataError, match="negative label"):
        load_dataset(cfg, seed=0)


def test_idx_non_finite_features(tmp_path):
    cfg, images, *_ = make_idx_files(tmp_path)
    bad = images.astype(np.float32)
    bad[3, 1, 1] = np.nan
    write_idx(cfg["train_images"], bad)
    with pytest.raises(DataError, match="NaN or inf") as info:
        load_dataset(cfg, seed=0)
    assert cfg["train_images"] in str(info.value)
