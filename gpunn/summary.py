"""The text of ``Sequential.summary`` (layers, output widths, parameters, FLOPs) and
of ``repr(model)``."""

from __future__ import annotations

import inspect

__all__ = ["describe", "summary_table"]


def summary_table(model, print_fn=print) -> str:
    """The text of ``Sequential.summary``."""
    rows = [("Layer (type)", "Output", "Params", "FLOPs/sample")]
    counts = {}
    if model.built:
        for slot in model.arena.slots:
            counts[slot.owner] = counts.get(slot.owner, 0) + slot.size
    for layer in model.layers:
        built = layer.n_out is not None
        rows.append(
            (
                f"{layer.name or '?'} ({type(layer).__name__})",
                f"(batch, {layer.n_out})" if built else "?",
                f"{counts.get(layer.name, 0):,}" if built else "?",
                f"{layer.flops_per_sample():,}" if built else "?",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    rule = "-" * len(lines[0])
    lines = [rule, lines[0], rule, *lines[1:], rule]
    if model.built:
        forward = sum(layer.flops_per_sample() for layer in model.layers)
        lines += [
            (
                f"Total params: {model.count_params():,} "
                f"({model.count_params() * model.dtype.itemsize / 2**20:.2f} MiB "
                f"{model.dtype.name})"
            ),
            f"Forward FLOPs/sample: {forward:,} (a training step is about 3x)",
            f"Backend: {model.backend.name}",
        ]
    else:
        lines.append("Not built: pass input_dim or call fit to build the model.")
    text = "\n".join(lines)
    print_fn(text)
    return text


def describe(model) -> str:
    """``repr(model)``, as PyTorch prints a module: one line per layer (its name, its
    arguments that differ from the defaults, its output width and parameters once
    built), then the input width and parameter count (or that it is not built), the
    dtype, precision, backend and seed, and the compiled loss, optimizer and
    metrics."""
    counts = {}
    if model.built:
        for slot in model.arena.slots:
            counts[slot.owner] = counts.get(slot.owner, 0) + slot.size
    lines = []
    for i, layer in enumerate(model.layers):
        line = f"  ({layer.name or i}): {_layer(layer)}"
        if layer.n_out is not None:
            line += f" -> (batch, {layer.n_out}), {counts.get(layer.name, 0):,} params"
        lines.append(line)
    if model.built:
        lines.append(
            f"  input_dim={model.input_dim}, params={model.count_params():,} (built)"
        )
    else:
        lines.append("  not built: fit, predict, adapt or build(input_dim) builds it")
    lines.append(
        f"  dtype={model.dtype.name}, precision={model.policy.name}, "
        f"backend={model.backend.name}, seed={model.seed}"
    )
    if model.loss is None:
        lines.append("  not compiled")
    else:
        metrics = [metric.name for metric in model.metrics]
        lines.append(f"  loss={model.loss!r}, optimizer={model.optimizer!r}")
        lines.append(f"  metrics={metrics}")
    return "Sequential(\n" + "\n".join(lines) + "\n)"


def _layer(layer) -> str:
    """``Dense(units=8, activation='relu')``: the config entries that differ from
    the constructor's defaults (the name is shown apart)."""
    try:
        defaults = {
            name: p.default
            for name, p in inspect.signature(type(layer)).parameters.items()
            if p.default is not inspect.Parameter.empty
        }
    except (TypeError, ValueError):
        defaults = {}
    args = [
        f"{key}={value!r}"
        for key, value in layer.get_config().items()
        if key != "name" and not (key in defaults and _same(defaults[key], value))
    ]
    return f"{type(layer).__name__}({', '.join(args)})"


def _same(default, value) -> bool:
    try:
        return bool(default == value)
    except Exception:  # noqa: BLE001 - arrays and the like: show the value
        return False
