"""MLflow "models from code" entry point: MLflow executes this file to build the model."""

import mlflow

from fnnbench.tracking.model import MLPModel

mlflow.models.set_model(MLPModel())
