"""fnnbench.nn: the NumPy network core (activations, losses, initializers, regularizers, MLP,
gradient check). See docs/internals.md, section "fnnbench.nn", for the contract."""

from fnnbench.nn.activations import ACTIVATIONS, HIDDEN_ACTIVATIONS, Activation, get_activation
from fnnbench.nn.gradcheck import gradient_check, numerical_gradient, relative_error
from fnnbench.nn.init import DEFAULT_INIT, INITIALIZERS, default_init, get_initializer
from fnnbench.nn.losses import LOSSES, Loss, get_loss
from fnnbench.nn.mlp import MLP
from fnnbench.nn.regularizers import REGULARIZERS, Regularizer, get_regularizer

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_INIT",
    "HIDDEN_ACTIVATIONS",
    "INITIALIZERS",
    "LOSSES",
    "MLP",
    "REGULARIZERS",
    "Activation",
    "Loss",
    "Regularizer",
    "default_init",
    "get_activation",
    "get_initializer",
    "get_loss",
    "get_regularizer",
    "gradient_check",
    "numerical_gradient",
    "relative_error",
]
