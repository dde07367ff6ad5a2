"""The default build function of :class:`~gpunn.sklearn.NeuralNetClassifier` and
:class:`~gpunn.sklearn.NeuralNetRegressor`, and how a build function is called."""

from __future__ import annotations

import inspect

from gpunn.layers import Dense, Dropout
from gpunn.model import Sequential

# Arguments the wrappers give a build function when its signature names them.
INJECTED = ("n_features_in", "n_outputs", "n_classes", "multilabel", "seed")
EMPTY = inspect.Parameter.empty  # a build function argument without a default


def mlp(
    n_features_in: int,
    n_outputs: int,
    n_classes: int | None = None,
    multilabel: bool = False,
    hidden_layer_sizes=(100,),
    activation: str = "relu",
    dropout: float = 0.0,
    optimizer: str = "adam",
    learning_rate: float = 1e-3,
    dtype: str = "float32",
    device: str = "auto",
    seed: int | None = None,
) -> Sequential:
    """A compiled MLP: Dense layers of ``hidden_layer_sizes`` with ``activation``
    (each followed by ``Dropout(dropout)`` when it is > 0) and a linear output of
    ``n_outputs``; softmax cross-entropy for a classifier (``n_classes`` given),
    binary cross-entropy for multilabel targets, mean squared error for a
    regressor.

    Args:
        n_features_in, n_outputs, n_classes, multilabel, seed: given by the
            wrapper.
        hidden_layer_sizes: widths of the hidden layers. Default: ``(100,)``.
        activation: a gpunn activation name. Default: ``"relu"``.
        dropout: dropout rate after each hidden layer. Default: 0.
        optimizer: a :func:`gpunn.optim.get` name. Default: ``"adam"``.
        learning_rate: its learning rate. Default: 1e-3.
        dtype, device: as :class:`gpunn.Sequential`'s ``dtype`` and ``backend``.

    Returns: the compiled :class:`~gpunn.Sequential`, built for ``n_features_in``.
    """
    from gpunn import optim

    layers = []
    for units in hidden_layer_sizes:
        layers.append(Dense(int(units), activation=activation))
        if dropout:
            layers.append(Dropout(dropout))
    layers.append(Dense(n_outputs))
    model = Sequential(
        layers, input_dim=n_features_in, dtype=dtype, backend=device, seed=seed
    )
    if multilabel:
        loss = "binary_cross_entropy"
    else:
        loss = "softmax_cross_entropy" if n_classes else "mse"
    model.compile(loss, optim.get(optimizer, lr=learning_rate), metrics=())
    return model


def signature(build_fn) -> tuple[dict, bool]:
    """``({name: default}, takes_kwargs)`` of a build function's tunable arguments
    (the injected ones left out; ``inspect.Parameter.empty`` where there is no
    default)."""
    try:
        params = inspect.signature(build_fn).parameters.values()
    except (TypeError, ValueError):  # not a function: fit says so
        return {}, False
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    tunable = {
        p.name: p.default for p in params if p.kind in kinds and p.name not in INJECTED
    }
    takes_kwargs = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params)
    return tunable, takes_kwargs


def call(build_fn, params: dict, injected: dict) -> Sequential:
    """Calls ``build_fn`` with ``params`` and the ``injected`` arguments its
    signature accepts; checks that it returned a compiled Sequential."""
    if not callable(build_fn):
        raise TypeError(
            "build_fn must be a function returning a compiled gpunn.Sequential, "
            f"got {build_fn!r}"
        )
    accepted = inspect.signature(build_fn).parameters
    takes_kwargs = any(
        p.kind == inspect.Parameter.VAR_KEYWORD for p in accepted.values()
    )
    extra = {k: v for k, v in injected.items() if takes_kwargs or k in accepted}
    model = build_fn(**params, **extra)
    name = getattr(build_fn, "__name__", repr(build_fn))
    if not isinstance(model, Sequential):
        raise TypeError(
            f"build_fn {name} must return a gpunn.Sequential, got "
            f"{type(model).__name__}"
        )
    if model.loss is None:
        raise ValueError(
            f"build_fn {name} must return a compiled model: call "
            "model.compile(loss, optimizer) before returning it"
        )
    return model
