"""Finite-difference gradient checks (float64, central differences).

``gradcheck(layer, x)``: a random projection ``L = sum(r * layer(x))`` of the layer's
output; ``dL/dx`` and every ``dL/dparam`` from ``backward(r)`` are compared with
central differences, element by element.

``gradcheck(loss, outputs, targets)``: the gradient a fused loss op returns is compared
with central differences of its loss.

``gradcheck(model, x, y)``: the gradient of a compiled model's loss with respect to the
whole parameter arena, compared along random directions ``u`` (``grad . u`` against
``(L(p + eps u) - L(p - eps u)) / 2 eps``), as the README's tolerances ask for whole models.

Each returns True or raises :class:`GradcheckError` naming the worst entry. Inputs must
be float64 and away from kinks (e.g. no ReLU input within ``eps`` of 0). Layers and
models are checked on the backend they were built on (a float64 GPU model is checked
on the GPU, its gradients read back to the host); a standalone layer that is not built
yet is built on the CPU.
"""

from __future__ import annotations

import numpy as np

from gpunn import losses
from gpunn.arena import ParameterArena
from gpunn.backends import get_backend
from gpunn.layers.base import Layer


class GradcheckError(AssertionError):
    """An analytic gradient disagrees with finite differences."""


def gradcheck(
    target,
    x,
    y=None,
    *,
    eps: float = 1e-6,
    rtol: float = 1e-3,
    atol: float = 1e-5,
    max_entries: int = 400,
    directions: int = 8,
    seed: int = 0,
    sample_weight=None,
) -> bool:
    """Checks analytic gradients of a Layer, a loss (name or Loss) or a compiled
    Sequential against central differences in float64.

    Args:
        target: the Layer, loss or model.
        x: float64 input ``(batch, n_in)`` (layer/model) or outputs (loss).
        y: targets (loss and model only).
        eps: finite-difference step. Default: 1e-6.
        rtol, atol: tolerance ``|analytic - numeric| <= atol + rtol * |numeric|``.
        max_entries: per array, check at most this many (seeded random) entries.
        directions: random directions for a whole model.
        seed: seed of the projections, directions and entry choice.
        sample_weight: per-sample weights ``(batch,)`` given to a loss (loss only).

    Returns: True. Raises: GradcheckError on a mismatch, ValueError for non-float64.
    """
    rng = np.random.default_rng(seed)
    tol = {
        "eps": eps,
        "rtol": rtol,
        "atol": atol,
        "max_entries": max_entries,
        "rng": rng,
    }
    if sample_weight is not None and (
        isinstance(target, Layer) or hasattr(target, "arena")
    ):
        raise TypeError("gradcheck takes sample_weight for a loss only")
    if isinstance(target, Layer):
        return _check_layer(target, _f64(x, "x"), **tol)
    if hasattr(target, "arena") and hasattr(target, "forward"):
        return _check_model(target, _f64(x, "x"), y, directions, **tol)
    loss = losses.get(target)
    return _check_loss(loss, _f64(x, "outputs"), y, sample_weight, **tol)


def _f64(x, name):
    if x.dtype != np.float64:
        raise ValueError(f"gradcheck needs float64 {name}, got {x.dtype}")
    return x


def _compare(what, analytic, numeric, rtol, atol):
    analytic, numeric = np.asarray(analytic), np.asarray(numeric)
    err = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
    if err.size and err.max() > 0:
        i = int(err.argmax())
        raise GradcheckError(
            f"gradient of {what} is wrong at flat index {i}: analytic "
            f"{analytic.flat[i]:.10g}, numeric {numeric.flat[i]:.10g} "
            f"({int((err > 0).sum())} of {err.size} entries outside "
            f"atol={atol} + rtol={rtol})"
        )


def _numeric(f, array, entries, eps):
    """Central differences of scalar ``f()`` w.r.t. ``array.flat[entries]`` (``array``
    on any backend)."""
    out = np.empty(len(entries))
    flat = array.reshape(-1)  # a view: arrays here are contiguous
    for k, i in enumerate(entries):
        orig = float(flat[i])  # a copy (CuPy's flat[i] is a 0-d view)
        flat[i] = orig + eps
        plus = f()
        flat[i] = orig - eps
        minus = f()
        flat[i] = orig
        out[k] = (plus - minus) / (2 * eps)
    return out


def _entries(size, max_entries, rng):
    if size <= max_entries:
        return np.arange(size)
    return np.sort(rng.choice(size, max_entries, replace=False))


def _standalone(layer, n_in, rng):
    """Builds ``layer`` alone on the float64 CPU backend."""
    backend = get_backend("cpu")
    owner = layer.name or "layer"
    arena = ParameterArena(
        backend, np.float64, [(owner, s) for s in layer.build(n_in, rng)]
    )
    layer.bind(
        backend, arena.views(owner, arena.params), arena.views(owner, arena.grads)
    )


def _check_layer(layer, x, eps, rtol, atol, max_entries, rng):
    if not layer.built:
        _standalone(layer, x.shape[1], rng)
    if any(p.dtype != np.float64 for p in layer.params.values()):
        raise ValueError("gradcheck needs a layer built in float64")
    needs_dx, layer.needs_dx = layer.needs_dx, True
    try:
        x = layer.backend.asarray(x).copy()  # the differences perturb a copy
        return _check_layer_built(layer, x, eps, rtol, atol, max_entries, rng)
    finally:
        layer.needs_dx = needs_dx


def _check_layer_built(layer, x, eps, rtol, atol, max_entries, rng):
    host = layer.backend.to_numpy
    r = rng.standard_normal((x.shape[0], layer.output_dim(x.shape[1])))
    r = layer.backend.asarray(r)

    def objective():  # a random projection of the output, plus any penalty
        penalty = layer.penalty()
        value = float((layer.forward(x, training=True) * r).sum())
        return value if penalty is None else value + float(penalty)

    objective()
    dx = np.array(host(layer.backward(r)))
    grads = {name: np.array(host(g)) for name, g in layer.grads.items()}
    checks = [("input x", x, dx)] + [
        (f"parameter {name}", layer.params[name], grads[name]) for name in grads
    ]
    for what, array, analytic in checks:
        entries = _entries(array.size, max_entries, rng)
        numeric = _numeric(objective, array, entries, eps)
        _compare(
            f"{type(layer).__name__} w.r.t. {what}",
            analytic.reshape(-1)[entries],
            numeric,
            rtol,
            atol,
        )
    return True


def _check_loss(loss, outputs, targets, weight, eps, rtol, atol, max_entries, rng):
    backend = get_backend("cpu")
    z = np.array(outputs)
    t = loss.prepare_targets(np.asarray(targets), z.shape[1], np.float64)
    if weight is not None:
        weight = losses.prepare_sample_weight(weight, len(z), np.float64)
    _, analytic = loss(backend, z, t, weight)
    entries = _entries(z.size, max_entries, rng)
    numeric = _numeric(lambda: float(loss(backend, z, t, weight)[0]), z, entries, eps)
    _compare(
        f"loss {loss.name} w.r.t. its input",
        np.asarray(analytic).reshape(-1)[entries],
        numeric,
        rtol,
        atol,
    )
    return True


def _check_model(model, x, y, directions, eps, rtol, atol, max_entries, rng):
    if model.dtype != np.float64:
        raise ValueError(f"gradcheck needs a float64 model, got {model.dtype}")
    model._require_compiled()
    x, y, _ = model._dataset(x, y)
    arena, backend = model.arena, model.backend

    def objective():  # the training loss: fused head and penalties included
        return float(model._loss(x, y, training=True)[0])

    model._gradients(x, y)
    grad = np.array(backend.to_numpy(arena.grads))
    start = arena.params.copy()
    analytic, numeric = [], []
    try:
        for _ in range(directions):
            u = rng.standard_normal(arena.size)
            u /= np.linalg.norm(u)
            step = backend.asarray(eps * u)
            arena.params[...] = start + step
            plus = objective()
            arena.params[...] = start - step
            minus = objective()
            analytic.append(grad @ u)
            numeric.append((plus - minus) / (2 * eps))
    finally:
        arena.params[...] = start
    _compare("the model's loss along random directions", analytic, numeric, rtol, atol)
    return True
