"""What keeps a failed or conflicting call from changing a model.

- **Build undone.** A call that builds an unbuilt model (``fit``, ``evaluate``,
  ``train_step``, ``predict``, ``adapt``) and then fails before any optimizer step
  leaves it unbuilt, its generator and layers as before: ``fit(X.T, y)`` does not
  leave a model built for the wrong width, and the corrected call builds it as the
  first one would have (:func:`unbuilt_if_failed`). A build that fails half way is
  undone the same way (:func:`undo_on_error`).
- **One model per layer.** A layer's parameters are views into its model's arena, so
  a layer object serves one model: :func:`check_free` refuses a layer that another
  live model has built, or a layer given twice.
- **One training call at a time.** ``fit``, ``train_step`` and ``lr_find`` hold the
  model (:func:`exclusive`); a second one from another thread (or from a callback
  of the first) raises instead of interleaving updates.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref

__all__ = [
    "check_free",
    "claim",
    "exclusive",
    "guarded",
    "unbuilt_if_failed",
    "undo_on_error",
]


def guarded(call: str, exclusive_call: bool = False):
    """Decorates a public method of a model: :func:`unbuilt_if_failed`, and with
    ``exclusive_call`` :func:`exclusive` too (``call`` names it in the error)."""

    def decorate(method):
        @functools.wraps(method)
        def run(model, *args, **kwargs):
            held = (
                exclusive(model, call) if exclusive_call else contextlib.nullcontext()
            )
            with held, unbuilt_if_failed(model):
                return method(model, *args, **kwargs)

        return run

    return decorate


# ------------------------------------------------------------------ build undone
def _objects(model) -> list:
    """The objects a build (or the steps a failed first call skipped) changes: the
    layers, the layers they hold (Dense's activation), the optimizer and the loss
    scaler (its scale backs off on skipped steps)."""
    found = []
    for layer in model.layers:
        found.append(layer)
        found += [v for v in vars(layer).values() if _is_layer(v)]
    found += [obj for obj in (model.optimizer, model.loss_scaler) if obj is not None]
    return found


def _is_layer(value) -> bool:
    from gpunn.layers.base import Layer

    return isinstance(value, Layer)


def _snapshot(model) -> dict:
    """What :func:`_restore` needs to put an unbuilt model back: the generator's
    state and shallow copies of the attributes of everything a build changes (a
    build only assigns attributes, it never mutates what they held before)."""
    return {
        "rng": model.rng.bit_generator.state,
        "objects": [(obj, dict(vars(obj))) for obj in _objects(model)],
    }


def _restore(model, saved: dict) -> None:
    model.rng.bit_generator.state = saved["rng"]
    for obj, attributes in saved["objects"]:
        vars(obj).clear()
        vars(obj).update(attributes)
    model.arena = model.input_dim = None
    vars(model).pop("output_dim", None)


@contextlib.contextmanager
def undo_on_error(model):
    """Runs a build of the unbuilt ``model``; on any error puts it back unbuilt."""
    saved = _snapshot(model)
    try:
        yield
    except BaseException:
        _restore(model, saved)
        raise


@contextlib.contextmanager
def unbuilt_if_failed(model):
    """Wraps a public call: when ``model`` was unbuilt and the call fails before
    its first optimizer step, the build the call did is undone."""
    if model.built:
        yield
        return
    saved, steps = _snapshot(model), model._steps_applied
    try:
        yield
    except BaseException:
        if model.built and model._steps_applied == steps:
            _restore(model, saved)
        raise


# ------------------------------------------------------------------ ownership
def _owner(layer):
    ref = vars(layer).get("_owner")
    return None if ref is None else ref()


def check_free(model, layers) -> None:
    """ValueError unless every layer of ``layers`` is free for ``model``: not
    built by another live model, and not given twice."""
    seen = set()
    for layer in layers:
        owner = _owner(layer)
        label = f"{layer.name or type(layer).__name__.lower()} ({type(layer).__name__})"
        if owner is not None and owner is not model:
            raise ValueError(
                f"layer {label} already belongs to another model: its parameters "
                "live in that model's arena, so one layer object cannot serve two "
                "models (the first would be rewired silently). Create new layer "
                "objects for this model"
            )
        if id(layer) in seen:
            raise ValueError(
                f"layer {label} appears twice in the model; use two layer objects"
            )
        seen.add(id(layer))


def claim(model) -> None:
    """Marks ``model``'s layers as its own (after a successful build)."""
    ref = weakref.ref(model)
    for layer in model.layers:
        layer._owner = ref


# ------------------------------------------------------------------ one call at a time
@contextlib.contextmanager
def exclusive(model, call: str):
    """Holds ``model`` for a training call; RuntimeError when another one runs."""
    lock = vars(model).setdefault("_busy", threading.Lock())
    if not lock.acquire(blocking=False):
        running = getattr(model, "_busy_with", "a training call")
        raise RuntimeError(
            f"{call} cannot start: {running} is already running on this model (in "
            "another thread, or this is a callback of it); one training call at a "
            "time per model"
        )
    model._busy_with = call
    try:
        yield
    finally:
        model._busy_with = None
        lock.release()
