"""A model's architecture as JSON-able dicts, and back.

``model_config(model)`` is::

    {"version": 1, "dtype": "float32", "input_dim": 20, "seed": 0,
     "layers": [{"class": "Dense", "config": {"units": 64, "activation": "relu",
                 ..., "name": "dense_0"}}, ...],
     "compile": {"loss": {"name": "softmax_cross_entropy", ...},
                 "optimizer": {"name": "adam", "lr": 0.001, "betas": [0.9, 0.999],
                               ...},
                 "metrics": ["accuracy"]}}          # or "compile": None

Layers are rebuilt as ``cls(**config)`` with ``cls`` looked up by name among the
classes :mod:`gpunn.layers` exports (:func:`layer_classes`), never by importing
anything a file names; losses by :func:`gpunn.losses.get`, optimizers by
:func:`gpunn.optim.get` (a schedule lr by :func:`gpunn.schedules.from_config`),
metrics by :func:`gpunn.metrics.get`. A Dense layer built with a callable
initializer records it as None and is rebuilt with the default initializer (its
trained weights are in the file, so a loaded model is exact).

This module builds layers, losses, optimizers and metrics, never the model:
``Sequential.from_config(config)`` builds itself from :func:`model_arguments`.
"""

from __future__ import annotations

import inspect

from gpunn import layers as layers_lib
from gpunn import losses, optim, schedules
from gpunn import metrics as metrics_lib
from gpunn.layers.base import Layer
from gpunn.optim.loss_scaler import LossScaler, StaticLossScaler

VERSION = 1
_CONFIG_KEYS = {"version", "dtype", "input_dim", "seed", "layers", "compile"}
_INITIALIZERS = ("kernel_init", "bias_init")  # None: a callable that was not saved


def layer_classes() -> dict[str, type]:
    """``{class name: class}`` of every layer class :mod:`gpunn.layers` exports."""
    found = {}
    for name in layers_lib.__all__:
        obj = getattr(layers_lib, name)
        if isinstance(obj, type) and issubclass(obj, Layer) and obj is not Layer:
            found[obj.__name__] = obj
    return found


def layer_config(layer: Layer) -> dict:
    """``{"class": name, "config": layer.get_config()}``; ValueError for a layer
    class :func:`layer_from_config` cannot rebuild (not exported by gpunn.layers)."""
    name = type(layer).__name__
    if layer_classes().get(name) is not type(layer):
        raise ValueError(
            f"cannot save layer {layer.name!r} of class {name}: only the classes of "
            f"gpunn.layers can be rebuilt ({sorted(layer_classes())})"
        )
    return {"class": name, "config": layer.get_config()}


def layer_from_config(config: dict) -> Layer:
    """A new, unbuilt layer from :func:`layer_config`'s dict."""
    _require_keys("layer config", config, {"class", "config"})
    cls = layer_classes().get(config["class"])
    if cls is None:
        raise ValueError(
            f"unknown layer class {config['class']!r}; known: {sorted(layer_classes())}"
        )
    kwargs = config["config"]
    if not isinstance(kwargs, dict):
        raise TypeError(f"layer config must be a dict, got {type(kwargs).__name__}")
    kwargs = {k: v for k, v in kwargs.items() if not (k in _INITIALIZERS and v is None)}
    return cls(**kwargs)


def compile_config(model, include_optimizer: bool = True) -> dict | None:
    """The loss, optimizer and metrics of a compiled model (None otherwise, or when
    ``include_optimizer`` is false)."""
    if model.loss is None or not include_optimizer:
        return None
    optimizer, scaler = model.optimizer, model.loss_scaler
    return {
        "loss": model.loss.get_config(),
        "optimizer": {"name": type(optimizer).__name__.lower()}
        | optimizer.hyperparameters(),
        "metrics": [_metric_config(m) for m in model.metrics],
        "loss_scale": None
        if scaler is None
        else {"class": type(scaler).__name__, **scaler.get_config()},
    }


def _metric_config(metric) -> str | dict:
    """The name, or ``{"name": ..., **constructor arguments}`` (``top_k_accuracy``'s
    ``k``)."""
    params = inspect.signature(type(metric)).parameters
    args = {k: getattr(metric, k) for k in params if hasattr(metric, k)}
    return {"name": metric.name, **args} if args else metric.name


def compile_arguments(config: dict) -> dict:
    """``{"loss", "optimizer", "metrics", "loss_scale"}`` objects for
    ``model.compile`` from :func:`compile_config`'s dict (a config written before
    loss scaling existed has no ``loss_scale``: the policy's default)."""
    _require_keys(
        "compile config",
        config,
        {"loss", "optimizer", "metrics"},
        optional={"loss_scale"},
    )
    loss = losses.get(config["loss"])
    hyper = dict(config["optimizer"])
    name, lr = hyper.pop("name", None), hyper.pop("lr", None)
    if isinstance(lr, dict):
        lr = schedules.from_config(lr)
    elif isinstance(lr, str):
        raise TypeError(
            f"the optimizer's lr was a plain callable ({lr}), which cannot be saved: "
            "use a gpunn.schedules schedule, or save with include_optimizer=False"
        )
    if not isinstance(name, str):
        raise TypeError(f"optimizer config needs a 'name', got {name!r}")
    optimizer = optim.get(name, lr=lr, **hyper)
    found = [_metric(m, loss) for m in config["metrics"]]
    scale = _loss_scaler(config.get("loss_scale", "auto"))
    return {"loss": loss, "optimizer": optimizer, "metrics": found, "loss_scale": scale}


def _loss_scaler(config):
    """A LossScaler / StaticLossScaler from its config dict (None and "auto" pass)."""
    if config is None or config == "auto":
        return config
    if not isinstance(config, dict):
        raise TypeError(
            f"loss_scale config must be a dict, got {type(config).__name__}"
        )
    kwargs = dict(config)
    classes = {"LossScaler": LossScaler, "StaticLossScaler": StaticLossScaler}
    cls = classes.get(kwargs.pop("class", None))
    if cls is None:
        raise ValueError(f"loss_scale class must be one of {sorted(classes)}")
    return cls(**kwargs)


def _metric(config, loss):
    if not isinstance(config, dict):
        return metrics_lib.get(config, loss)
    args = dict(config)
    metric = metrics_lib.get(args.pop("name", None), loss)
    return metrics_lib.get(type(metric)(**args), loss)


def model_config(model, include_optimizer: bool = True) -> dict:
    """The architecture of ``model`` (read from its ``dtype``, ``input_dim``,
    ``seed``, ``layers``, ``loss``, ``optimizer`` and ``metrics``) as a JSON-able
    dict (see the module doc):
    dtype, input width (None before the model is built), seed, layer configs and,
    when compiled, the loss, optimizer and metric configs. Weights and state are not
    included: ``model.save`` writes them as tensors."""
    return {
        "version": VERSION,
        "dtype": model.dtype.name,
        "precision": model.policy.name,
        "input_dim": model.input_dim,
        "seed": model.seed,
        "layers": [layer_config(layer) for layer in model.layers],
        "compile": compile_config(model, include_optimizer),
    }


def model_arguments(config: dict) -> dict:
    """What ``Sequential.from_config`` builds a model from, out of
    :func:`model_config`'s dict: ``{"layers": [new, unbuilt layers], "input_dim",
    "dtype", "seed", "compile": compile kwargs or None}``.

    Raises: ValueError / TypeError naming the bad entry (e.g. ``layers[2]``).
    """
    _require_keys("model config", config, _CONFIG_KEYS, optional={"precision"})
    if config["version"] != VERSION:
        raise ValueError(f"config version must be {VERSION}, got {config['version']!r}")
    if not isinstance(config["layers"], list):
        raise TypeError("config 'layers' must be a list")
    layers = []
    for i, layer in enumerate(config["layers"]):
        try:
            layers.append(layer_from_config(layer))
        except (ValueError, TypeError, LookupError, ArithmeticError) as exc:
            kind = TypeError if isinstance(exc, TypeError) else ValueError
            raise kind(f"layers[{i}]: {exc}") from exc
    compiled = config["compile"]
    return {
        "layers": layers,
        **{key: config[key] for key in ("input_dim", "dtype", "seed")},
        "precision": config.get("precision", "float32"),
        "compile": None if compiled is None else compile_arguments(compiled),
    }


def _require_keys(what: str, config, keys: set, optional: set = frozenset()) -> None:
    """ValueError unless ``config`` is a dict holding ``keys`` and maybe some of
    ``optional`` (keys added after files were first written), nothing else."""
    found = set(config) if isinstance(config, dict) else None
    if found is None or not keys <= found <= keys | optional:
        got = sorted(config) if isinstance(config, dict) else type(config).__name__
        extra = f" (and maybe {sorted(optional)})" if optional else ""
        raise ValueError(f"{what} must have the keys {sorted(keys)}{extra}, got {got}")
