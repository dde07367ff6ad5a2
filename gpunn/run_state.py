"""A model's whole training state, captured as plain data and restored from it.

:func:`capture` turns a model, its optimizer and generators, the callbacks' states
(handed in as a dict) and the loop position into the tensors and JSON that
:mod:`gpunn.persistence.training_state` writes; :class:`Restore` checks what
:func:`~gpunn.persistence.training_state.read` returns against a model and puts it
back, all or nothing. Callbacks are matched and restored by
:mod:`gpunn.checkpointing`; nothing here imports them.
"""

from __future__ import annotations

import json

import numpy as np

from gpunn import distributed, schedules
from gpunn.errors import CheckpointError
from gpunn.persistence import model_io
from gpunn.persistence.config import model_config
from gpunn.persistence.training_state import VERSION, join, split


# ------------------------------------------------------------------ capture
def capture(model, callbacks: dict, loop=None) -> tuple[dict, dict, str | None]:
    """``(tensors, state, model_json)`` of everything a resumed ``fit`` needs.

    Args:
        model: the model (built and compiled).
        callbacks: ``{key: state}`` of the stateful callbacks (arrays allowed).
        loop: the :class:`~gpunn.checkpointing.FitLoop`, or None.

    Returns: host copies of the tensors, the JSON-able state and, when
    ``gpunn.load`` can rebuild the model, its ``"gpunn.model"`` JSON (else None).
    """
    backend, arena, optimizer = model.backend, model.arena, model.optimizer
    scaler = model.loss_scaler
    tensors = {
        s.key: backend.to_numpy(arena.view(arena.params, s)) for s in arena.slots
    }
    tensors.update(model.get_state())
    for name, buffer in optimizer.state.items():
        tensors[f"optimizer.{name}"] = backend.to_numpy(buffer)
    if optimizer.grad_norm is not None:
        tensors["optimizer.grad_norm"] = backend.to_numpy(optimizer.grad_norm)
    state = {
        "version": VERSION,
        **_identity(model),
        "seed": model.seed,
        "optimizer": {**_optimizer_identity(optimizer), "host": optimizer.host_state()},
        "rng": {"model": model.rng.bit_generator.state, "layers": _layer_rngs(model)},
        "callbacks": {
            key: split(value, f"callbacks.{i}", tensors)
            for i, (key, value) in enumerate(callbacks.items())
        },
        "loop": None,
        "loss_scaler": None if scaler is None else scaler.state_dict(),
    }
    dp = distributed.active(model)
    state["world_size"] = 1 if dp is None else dp.size
    if dp is not None:  # each rank's dropout/noise streams (a collective call)
        state["rng"]["ranks"] = dp.world.allgather_json(state["rng"]["layers"])
    if loop is not None:
        state["loop"], loop_tensors = loop.get_state()
        tensors.update(loop_tensors)
    return tensors, state, _model_json(model, tensors)


def non_finite(model, tensors: dict) -> list[str]:
    """The names of the parameters, optimizer buffers and real layer state among
    ``tensors`` (as :func:`capture` gives them) holding NaN or infinity: what a
    resume refuses."""
    keys = [s.key for s in model.arena.slots]
    keys += [f"optimizer.{name}" for name in model.optimizer.state]
    keys += list(model.get_state())
    return [
        key
        for key in keys
        if tensors[key].dtype.kind == "f" and not np.isfinite(tensors[key]).all()
    ]


def _model_json(model, tensors: dict) -> str | None:
    """The ``"gpunn.model"`` entry that lets ``gpunn.load`` open the checkpoint as
    a model, or None when load could not (the checkpoint still resumes)."""
    try:
        config = model_config(model, True)
    except ValueError:  # a layer class gpunn.layers does not export
        return None
    weights = {s.key: tensors[s.key] for s in model.arena.slots}
    state = {key: tensors[key] for key in model.get_state()}
    return model_io.loadable_json(config, weights, state)


def _identity(model) -> dict:
    """What must equal between a checkpoint and the model resuming it."""
    layers = [
        {"class": type(layer).__name__, **layer.get_config()} for layer in model.layers
    ]
    loss = model.loss.get_config() if hasattr(model.loss, "get_config") else None
    identity = {"dtype": model.dtype.name, "layers": layers, "loss": loss}
    return _jsonable({**identity, "precision": model.policy.name})


def _optimizer_identity(optimizer) -> dict:
    hyper = _jsonable(optimizer.hyperparameters())
    return {"class": type(optimizer).__name__, "hyperparameters": hyper}


def _jsonable(value):
    return json.loads(json.dumps(value, allow_nan=True, default=repr))


def _noise_layers(model) -> list:
    return [layer for layer in model.layers if getattr(layer, "generator", None)]


def _layer_rngs(model) -> dict:
    states = {}
    for layer in _noise_layers(model):
        states[layer.name] = model.backend.generator_state(layer.generator)
    return states


# ------------------------------------------------------------------ restore
class Restore:
    """A checkpoint checked against a model, ready to :meth:`apply`.

    Construction reads nothing into the model: it raises :class:`CheckpointError`
    naming ``path`` and listing the missing, unexpected and mismatched entries when the
    checkpoint does not fit the model, its optimizer or its dtype. ``loop`` and
    ``loop_tensors`` are the saved loop position for the caller to check;
    ``callbacks`` the saved callback states (``{key: state}``, arrays joined back).
    """

    def __init__(self, model, tensors: dict, state: dict, path=""):
        self.model, self.tensors, self.path = model, tensors, str(path)
        # checkpoints written before mixed precision: float32, no loss scaler
        state = {"precision": "float32", "loss_scaler": None, **state}
        self.state = state
        try:
            problems = _compare(model, tensors, state)
            if any(problems):
                raise CheckpointError(self._describe(*problems))
            self.lr = _saved_lr(model.optimizer, state["optimizer"])
            self.rngs = _checked_rngs(model, _this_ranks_rngs(model, state, path))
            self.callbacks = {
                key: join(value, tensors) for key, value in state["callbacks"].items()
            }
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, OverflowError) as exc:
            raise CheckpointError(
                f"{self.path}: unreadable training state: {exc}"
            ) from exc
        self.loop = state["loop"]
        self.loop_tensors = {k: v for k, v in tensors.items() if k.startswith("loop.")}

    def _describe(self, missing, unexpected, mismatched) -> str:
        return (
            f"checkpoint {self.path} does not fit this model: missing {missing}, "
            f"unexpected {unexpected}, mismatched {mismatched}"
        )

    def apply(self) -> None:
        """Restores layer state, parameters, optimizer and generators; all or
        nothing (CheckpointError naming the entry when a value is refused)."""
        model, optimizer = self.model, self.model.optimizer
        before, optimizer_before = model._snapshot(), optimizer.snapshot()
        try:
            self._apply_model()
        except (ValueError, TypeError) as exc:
            model._restore(before)
            optimizer.restore(optimizer_before)
            raise CheckpointError(f"{self.path}: {exc}") from exc
        model.rng.bit_generator.state = self.rngs["model"]
        for layer in _noise_layers(model):
            saved = self.rngs["layers"][layer.name]
            if saved is not None and model.backend.generator_state(layer.generator):
                model.backend.set_generator_state(layer.generator, saved)

    def _apply_model(self) -> None:
        model, tensors = self.model, self.tensors
        optimizer, backend, arena = model.optimizer, model.backend, model.arena
        model.set_state({key: tensors[key] for key in model.get_state()})
        for slot in arena.slots:
            arena.view(arena.params, slot)[...] = backend.asarray(tensors[slot.key])
        if self.lr is not None:
            optimizer.lr = self.lr  # resets lr_scale, which the host state sets
        optimizer.load_host_state(self.state["optimizer"]["host"])
        for name, buffer in optimizer.state.items():
            buffer[...] = backend.asarray(tensors[f"optimizer.{name}"])
        if model.loss_scaler is not None:
            model.loss_scaler.load_state_dict(self.state["loss_scaler"])
        norm = tensors.get("optimizer.grad_norm")
        optimizer.grad_norm = None if norm is None else backend.asarray(norm).copy()


def _compare(model, tensors: dict, state: dict) -> tuple[list, list, list]:
    """``(missing, unexpected, mismatched)`` entries between checkpoint and model."""
    expected = _expected_tensors(model)
    saved = {
        k: v
        for k, v in tensors.items()
        if not k.startswith(("loop.", "callbacks.")) and k != "optimizer.grad_norm"
    }
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    mismatched = []
    norm = tensors.get("optimizer.grad_norm")
    if norm is not None and (norm.shape != () or norm.dtype.kind != "f"):
        mismatched.append(
            f"optimizer.grad_norm: checkpoint {norm.dtype} {norm.shape}, model real ()"
        )
    for key in sorted(set(expected) & set(saved)):
        want, got = expected[key], (saved[key].dtype.name, saved[key].shape)
        if got[1] != want[1] or want[0] not in (None, got[0]):
            mismatched.append(
                f"{key}: checkpoint {got[0]} {got[1]}, model {want[0] or 'real'} "
                f"{want[1]}"
            )
        elif want[0] is not None and not np.isfinite(saved[key]).all():
            mismatched.append(f"{key}: contains NaN or infinity")
    ours, theirs = _identity(model), {key: state[key] for key in _identity(model)}
    for found, optimizer in (
        (ours, _optimizer_identity(model.optimizer)),
        (theirs, state["optimizer"]),
    ):  # the lr is state (the checkpoint's is kept), not identity
        found["optimizer.class"] = optimizer["class"]
        found["optimizer.hyperparameters"] = _without_lr(optimizer["hyperparameters"])
    if ours["optimizer.class"] != theirs["optimizer.class"]:
        del ours["optimizer.hyperparameters"]  # not comparable
    mismatched += _scaler_differences(state["loss_scaler"], model.loss_scaler)
    return missing, unexpected, _differences("", theirs, ours) + mismatched


def _scaler_differences(saved, scaler) -> list[str]:
    """The loss scaler must be there on both sides or neither, of the same kind
    (dynamic or static) and with the same factors and interval."""
    if (saved is None) != (scaler is None):
        have = ["none", "a loss scaler"]
        saved_has, model_has = have[saved is not None], have[scaler is not None]
        return [f"loss_scaler: checkpoint {saved_has}, model {model_has}"]
    if saved is None:
        return []
    ours = scaler.state_dict()
    keys = ("growth_factor", "backoff_factor", "growth_interval")
    return [
        f"loss_scaler.{key}: checkpoint {saved.get(key)}, model {ours[key]}"
        for key in keys
        if saved.get(key) != ours[key]
    ]


def _without_lr(hyperparameters: dict) -> dict:
    return {k: v for k, v in hyperparameters.items() if k != "lr"}


def _differences(name: str, saved, ours) -> list[str]:
    """``"name: checkpoint X, model Y"`` for each differing leaf of two JSON values:
    dicts key by key (layer configs only when of the same class), lists item by
    item."""
    if saved == ours:
        return []
    if isinstance(saved, list) and isinstance(ours, list):
        found = [
            d
            for i, (a, b) in enumerate(zip(saved, ours))
            for d in _differences(f"{name}[{i}]", a, b)
        ]
        if len(saved) != len(ours):
            found.append(f"len({name}): checkpoint {len(saved)}, model {len(ours)}")
        return found
    if (
        isinstance(saved, dict)
        and isinstance(ours, dict)
        and saved.get("class") == ours.get("class")
    ):
        prefix = f"{name}." if name else ""
        return [
            d
            for key in sorted(set(ours) | (set(saved) & set(ours)))
            for d in _differences(prefix + key, saved.get(key), ours.get(key))
        ]
    return [f"{name}: checkpoint {saved}, model {ours}"]


def _expected_tensors(model) -> dict:
    """``{name: (dtype name or None for any real dtype, shape)}``."""
    dtype, arena = model.dtype.name, model.arena
    expected = {s.key: (dtype, s.shape) for s in arena.slots}
    for key, value in model.get_state().items():
        expected[key] = (None, value.shape)  # set_state converts real dtypes
    for name in model.optimizer.state:
        expected[f"optimizer.{name}"] = (dtype, (arena.size,))
    return expected


def _saved_lr(optimizer, saved: dict):
    """The lr (a float or a rebuilt schedule) to give the optimizer, or None to keep
    its own (a plain callable schedule, recorded only by its repr)."""
    lr = saved["hyperparameters"]["lr"]
    if isinstance(lr, dict):
        return schedules.from_config(lr)
    if isinstance(lr, str):
        if optimizer.schedule is None or hasattr(optimizer.schedule, "get_config"):
            raise CheckpointError(
                f"the checkpoint's lr is a plain callable ({lr}): resume with an "
                "optimizer built with that callable as its lr"
            )
        return None
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"optimizer lr must be a number > 0, got {lr!r}")
    return float(lr)


def _this_ranks_rngs(model, state: dict, path) -> dict:
    """The generator states of this rank; CheckpointError when the checkpoint was
    written by another number of data-parallel ranks."""
    dp = distributed.active(model)
    size, saved = 1 if dp is None else dp.size, state.get("world_size", 1)
    if saved != size:
        raise CheckpointError(
            f"{path}: the checkpoint was written by {saved} data-parallel rank(s), "
            f"but this run has {size}; resume it with the same number of ranks"
        )
    rngs = state["rng"]
    return rngs if dp is None else {**rngs, "layers": rngs["ranks"][dp.rank]}


def _checked_rngs(model, saved: dict) -> dict:
    """The saved generator states, each tried on a scratch generator first."""
    scratch = type(model.rng.bit_generator)(0)
    scratch.state = saved["model"]
    names = sorted(layer.name for layer in _noise_layers(model))
    if sorted(saved["layers"]) != names:
        raise ValueError(f"rng.layers must name {names}, got {sorted(saved['layers'])}")
    for layer in _noise_layers(model):
        state = saved["layers"][layer.name]
        if state is not None and model.backend.generator_state(layer.generator):
            _scratch_set_state(layer.generator, state)
    return saved


def _scratch_set_state(generator, state) -> None:
    """Sets ``state`` on a fresh generator of ``generator``'s kind (ValueError or
    TypeError when it does not fit), leaving ``generator`` alone."""
    if hasattr(generator, "set_state"):  # gpunn's own (dropout's CounterRNG)
        type(generator)(0).set_state(state)
    else:
        type(generator.bit_generator)(0).state = state
