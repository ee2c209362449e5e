"""The MLP as an MLflow pyfunc model, logged with MLflow's "models from code".

The model directory holds the code file `_model_code.py` (which builds `MLPModel()`) and
`artifacts/params.npz` (written by `MLP.save`, loaded with `MLP.load`: no pickle anywhere).
Loading needs `fnnbench` importable. `predict` returns class probabilities, shape (n, C).

    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    proba = model.predict(X)          # X: (n, n_features) float64 array -> (n, C)

The signature (float64 tensors) is given explicitly, so MLflow infers nothing at save time.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import yaml

MODEL_CODE = Path(__file__).with_name("_model_code.py")


class MLPModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: load_context reads params.npz; predict -> net.predict_proba(X)."""

    def load_context(self, context):
        from fnnbench.nn import MLP

        self.net = MLP.load(context.artifacts["params"])

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        X = np.asarray(model_input, dtype=np.float64)
        return self.net.predict_proba(X)


def pip_requirements() -> list[str]:
    """Pinned requirements of the logged model (given explicitly: no slow inference)."""
    return [f"mlflow=={mlflow.__version__}", f"numpy=={np.__version__}"]


def signature(net) -> mlflow.models.ModelSignature:
    """Input: float64 tensor (-1, n_features); output: float64 probabilities (-1, C)."""
    from mlflow.types import Schema, TensorSpec

    n_in = int(net.sizes[0])
    n_classes = int(net.predict_proba(np.zeros((1, n_in))).shape[1])
    f64 = np.dtype(np.float64)
    return mlflow.models.ModelSignature(
        inputs=Schema([TensorSpec(f64, (-1, n_in))]),
        outputs=Schema([TensorSpec(f64, (-1, n_classes))]),
    )


@contextlib.contextmanager
def no_progress_bar() -> Iterator[None]:
    """No MLflow tqdm bar per artifact copied or downloaded (one per job / run otherwise)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    old = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def save_pyfunc(path: str | Path, params_npz: str | Path, net) -> None:
    """Write a pyfunc model directory at `path` from `net` and its `net.save` file.

    The first model of each input/output shape in a process is written by
    `mlflow.pyfunc.save_model`; later ones copy that directory's files and change only what
    is theirs (artifacts/params.npz, model_uuid, utc_time_created, model_size_bytes, the
    params uri) in its MLmodel: the dict of MLflow's own `Model.to_dict`, written as
    `Model.save` writes it (`yaml.safe_dump`, default_flow_style=False) with libyaml's
    emitter when PyYAML has it (the same text, 5x faster): ~4x cheaper per job than a full
    save.
    """
    path, params_npz = Path(path), Path(params_npz)
    n_in = int(net.sizes[0])
    key = (n_in, int(net.predict_proba(np.zeros((1, n_in))).shape[1]))
    template = _TEMPLATES.get(key)
    if template is None:
        _save_with_mlflow(path, params_npz, signature(net))
        root = Path(tempfile.mkdtemp(prefix="fnnbench-model-"))
        atexit.register(shutil.rmtree, root, True)
        shutil.copytree(path, root / "model")
        _TEMPLATES[key] = root / "model"
        return
    if key not in _TEMPLATE_MODELS:  # parsed once per shape, its files listed once
        from mlflow.models import Model

        files = sorted(p.relative_to(template) for p in template.rglob("*") if p.is_file())
        _TEMPLATE_MODELS[key] = (Model.load(str(template)).to_dict(), files)
    mlmodel, files = _TEMPLATE_MODELS[key]
    for rel in files:
        if rel.name == "MLmodel":
            continue
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel == _PARAMS:
            shutil.copyfile(params_npz, path / rel)
        else:
            shutil.copyfile(template / rel, path / rel)
    model = copy.deepcopy(mlmodel)
    model["model_uuid"] = uuid.uuid4().hex
    model["utc_time_created"] = str(datetime.now(UTC).replace(tzinfo=None))
    if model.get("model_size_bytes"):
        model["model_size_bytes"] += ((path / _PARAMS).stat().st_size
                                     - (template / _PARAMS).stat().st_size)
    model["flavors"]["python_function"]["artifacts"]["params"]["uri"] = str(params_npz)
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    (path / "MLmodel").write_text(yaml.dump(model, Dumper=dumper, default_flow_style=False))


def _save_with_mlflow(path: Path, params_npz: Path, sig) -> None:
    with warnings.catch_warnings(), no_progress_bar():
        # the signature is explicit; an input example would add nothing
        warnings.filterwarnings("ignore", message=".*input example was not provided")
        mlflow.pyfunc.save_model(
            path=str(path),
            python_model=str(MODEL_CODE),
            artifacts={"params": str(params_npz)},
            pip_requirements=pip_requirements(),
            signature=sig,
        )


# (inputs, classes) -> a model directory written by save_model in this process
_TEMPLATES: dict[tuple[int, int], Path] = {}
# (inputs, classes) -> (its MLmodel as Model.to_dict, its files relative to the directory)
_TEMPLATE_MODELS: dict[tuple[int, int], tuple[dict, list[Path]]] = {}
_PARAMS = Path("artifacts", "params.npz")
