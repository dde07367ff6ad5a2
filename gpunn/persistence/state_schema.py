"""The training-state JSON, checked field by field as untrusted input.

A checkpoint's SHA-256 digests show it is intact, not that gpunn wrote it: anyone can
recompute them. So :func:`checked` validates every field of the state with the care
the file layer gives the header (exact keys, types, ranges, sizes; the parser has
already bounded the nesting) and raises :class:`~gpunn.errors.CheckpointError` naming
the field. What only the model can judge (layer names, shapes, the optimizer's own
host state, each callback's state) is checked by the model side when it restores.
"""

from __future__ import annotations

import math
import numbers

from gpunn.errors import CheckpointError
from gpunn.precision import POLICIES

DTYPES = ("float32", "float64")
MAX_INT = 2**53  # counters (steps, epochs, samples) a float64 still holds exactly
MAX_LAYERS = 10_000
MAX_CALLBACKS = 1_000
MAX_RANKS = 2**16
_STATE = ("version", "dtype", "layers", "loss", "seed", "optimizer", "rng")
_STATE += ("callbacks", "loop", "world_size")
_LOOP = ("epoch", "batch", "config", "epoch_rng", "sizes", "accumulated")
_CONFIG = ("n_samples", "batch_size", "shuffle", "accumulate_steps")
_PCG64 = ("bit_generator", "state", "has_uint32", "uinteger")
_SCALER = ("scale", "growth_factor", "backoff_factor", "growth_interval")
_SCALER += ("_growth_tracker", "skipped_steps")


class _Bad(Exception):
    """A field that breaks the schema: ``(where, problem)``."""


def checked(state, version: int, path: str) -> dict:
    """``state`` itself once every field fits the schema; CheckpointError naming
    ``path`` and the field otherwise."""
    try:
        _check_state(state, version)
    except _Bad as bad:
        where, problem = bad.args
        raise CheckpointError(
            f"{path}: training state field {where}: {problem}"
        ) from None
    return state


def _check_state(state, version: int) -> None:
    _keys("(top level)", state, _STATE, optional=("precision", "loss_scaler"))
    if state["version"] != version:
        raise _Bad("version", f"must be {version}, got {_short(state['version'])}")
    _choice("dtype", state["dtype"], DTYPES)
    _list("layers", state["layers"], MAX_LAYERS)
    for i, layer in enumerate(state["layers"]):
        _keys(f"layers[{i}]", layer, (), extra=True)
        _type(f"layers[{i}].class", layer.get("class"), str)
    if state["loss"] is not None:
        _keys("loss", state["loss"], (), extra=True)
    _int("seed", state["seed"], 0, 2**63)
    _check_optimizer(state["optimizer"])
    world = _int("world_size", state["world_size"], 1, MAX_RANKS + 1)
    _check_rngs(state["rng"], world)
    _keys("callbacks", state["callbacks"], (), extra=True)
    if len(state["callbacks"]) > MAX_CALLBACKS:
        raise _Bad("callbacks", f"more than {MAX_CALLBACKS} entries")
    if state["loop"] is not None:
        _check_loop(state["loop"])
    _choice("precision", state.get("precision", "float32"), POLICIES)
    if state.get("loss_scaler") is not None:
        _check_loss_scaler(state["loss_scaler"])


def _check_loss_scaler(scaler) -> None:
    """GradScaler's state (scale, factors, interval, growth tracker) and the skipped
    steps; LossScaler.load_state_dict checks how they relate."""
    _keys("loss_scaler", scaler, _SCALER)
    for key in ("scale", "growth_factor", "backoff_factor"):
        _real(f"loss_scaler.{key}", scaler[key], positive=True)
    _int("loss_scaler.growth_interval", scaler["growth_interval"], 1, MAX_INT)
    _int("loss_scaler._growth_tracker", scaler["_growth_tracker"], 0, MAX_INT)
    _int("loss_scaler.skipped_steps", scaler["skipped_steps"], 0, MAX_INT)


def _check_optimizer(optimizer) -> None:
    _keys("optimizer", optimizer, ("class", "hyperparameters", "host"))
    _type("optimizer.class", optimizer["class"], str)
    hyper = optimizer["hyperparameters"]
    _keys("optimizer.hyperparameters", hyper, ("lr",), extra=True)
    lr = hyper["lr"]
    if not isinstance(lr, (str, dict)):  # a schedule's config, or a callable's repr
        _real("optimizer.hyperparameters.lr", lr, positive=True)
    host = optimizer["host"]
    _keys("optimizer.host", host, ("steps", "lr_scale"), extra=True)
    _int("optimizer.host.steps", host["steps"], 0, MAX_INT)
    _real("optimizer.host.lr_scale", host["lr_scale"], positive=True)
    for key, value in host.items():
        _real(f"optimizer.host.{key}", value)


def _check_rngs(rng, world: int) -> None:
    optional = ("ranks",) if world > 1 else ()
    _keys("rng", rng, ("model", "layers"), optional=optional)
    pcg64("rng.model", rng["model"])
    _layer_rngs("rng.layers", rng["layers"])
    if world > 1:
        ranks = _list("rng.ranks", rng["ranks"], world)
        if len(ranks) != world:
            raise _Bad("rng.ranks", f"must list {world} ranks, got {len(ranks)}")
        for i, layers in enumerate(ranks):
            _layer_rngs(f"rng.ranks[{i}]", layers)


def _layer_rngs(where: str, layers) -> None:
    _keys(where, layers, (), extra=True)
    for name, state in layers.items():
        if state is None:
            continue
        _keys(f"{where}.{name}", state, ("bit_generator",), extra=True)
        if state["bit_generator"] == "PCG64":
            pcg64(f"{where}.{name}", state)
        # other generators (dropout's counter-based one) check their own state


def pcg64(where: str, state) -> None:
    """NumPy's ``PCG64.state``: exact keys, 128-bit state and increment, a
    ``has_uint32`` flag and a 32-bit buffered value."""
    _keys(where, state, _PCG64)
    if state["bit_generator"] != "PCG64":
        raise _Bad(f"{where}.bit_generator", f"must be 'PCG64', got {_short(state)}")
    _keys(f"{where}.state", state["state"], ("state", "inc"))
    for key in ("state", "inc"):
        _int(f"{where}.state.{key}", state["state"][key], 0, 2**128)
    _int(f"{where}.has_uint32", state["has_uint32"], 0, 2)
    _int(f"{where}.uinteger", state["uinteger"], 0, 2**32)


def _check_loop(loop) -> None:
    _keys("loop", loop, _LOOP)
    _int("loop.epoch", loop["epoch"], 0, 2**31)
    batch = _int("loop.batch", loop["batch"], 0, 2**31)
    config = _keys("loop.config", loop["config"], (), extra=True)
    if config.get("source") == "iterable":
        most_batches, most_rows, most_samples = _iterable_config(config)
    else:
        most_batches, most_rows, most_samples = _rows_config(config)
    steps = config["accumulate_steps"]
    if batch > most_batches:
        raise _Bad("loop.batch", f"{batch} is past the epoch's {most_batches} batches")
    if batch == 0:
        if loop["epoch_rng"] is not None or loop["sizes"] or loop["accumulated"]:
            raise _Bad("loop", "at an epoch boundary it holds no epoch position")
        return
    pcg64("loop.epoch_rng", loop["epoch_rng"])
    sizes = _list("loop.sizes", loop["sizes"], batch)
    if len(sizes) != batch:
        raise _Bad("loop.sizes", f"must list {batch} batch sizes, got {len(sizes)}")
    for i, count in enumerate(sizes):
        _int(f"loop.sizes[{i}]", count, 0, most_rows + 1)
    accumulated = loop["accumulated"]
    if accumulated is not None:
        pair = _list("loop.accumulated", accumulated, 2)
        if len(pair) != 2:
            raise _Bad("loop.accumulated", f"must be [batches, samples], got {pair}")
        _int("loop.accumulated[0]", pair[0], 1, steps)  # a full group has stepped
        _int("loop.accumulated[1]", pair[1], 0, most_samples + 1)


def _rows_config(config) -> tuple[int, int, int]:
    """In-memory arrays (the four settings) or a memory-mapped array (plus
    ``source: "memmap"`` and ``chunk_rows``): ``(batches per epoch, rows per
    batch, samples)``."""
    optional = ("source", "chunk_rows") if "source" in config else ()
    _keys("loop.config", config, _CONFIG + optional)
    if optional:
        _choice("loop.config.source", config["source"], ("memmap",))
        _int("loop.config.chunk_rows", config["chunk_rows"], 1, MAX_INT)
    n = _int("loop.config.n_samples", config["n_samples"], 1, MAX_INT)
    size = _int("loop.config.batch_size", config["batch_size"], 1, MAX_INT)
    _type("loop.config.shuffle", config["shuffle"], bool)
    _int("loop.config.accumulate_steps", config["accumulate_steps"], 1, MAX_INT)
    return -(-n // size), size, n


def _iterable_config(config) -> tuple[int, int, int]:
    """An iterable of batches: no sample count, batch size or shuffling (each is
    None / False), ``steps_per_epoch`` None or an int: ``(most batches per epoch,
    most rows per batch, most samples)``."""
    _keys("loop.config", config, (*_CONFIG, "source", "steps_per_epoch"))
    for key in ("n_samples", "batch_size"):
        if config[key] is not None:
            raise _Bad(f"loop.config.{key}", f"must be null, got {_short(config[key])}")
    if config["shuffle"] is not False:
        raise _Bad(
            "loop.config.shuffle", f"must be false, got {_short(config['shuffle'])}"
        )
    _int("loop.config.accumulate_steps", config["accumulate_steps"], 1, MAX_INT)
    steps = config["steps_per_epoch"]
    if steps is not None:
        _int("loop.config.steps_per_epoch", steps, 1, 2**31)
    return (2**31 - 1 if steps is None else steps), MAX_INT - 1, MAX_INT - 1


# ------------------------------------------------------------------ primitives
def _keys(where: str, value, required, optional=(), extra=False) -> dict:
    """A dict with str keys holding ``required`` (and maybe ``optional``); only
    those unless ``extra``."""
    if not isinstance(value, dict):
        raise _Bad(where, f"must be an object, got {_short(value)}")
    missing = [k for k in required if k not in value]
    unexpected = [] if extra else sorted(set(value) - {*required, *optional})
    if missing or unexpected:
        raise _Bad(where, f"missing {missing}, unexpected {unexpected}")
    return value


def _list(where: str, value, most: int) -> list:
    if not isinstance(value, list):
        raise _Bad(where, f"must be a list, got {_short(value)}")
    if len(value) > most:
        raise _Bad(where, f"must hold at most {most} items, got {len(value)}")
    return value


def _type(where: str, value, kind: type):
    if not isinstance(value, kind):
        raise _Bad(where, f"must be a {kind.__name__}, got {_short(value)}")
    return value


def _choice(where: str, value, allowed) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise _Bad(where, f"must be one of {list(allowed)}, got {_short(value)}")


def _int(where: str, value, lo: int, hi: int) -> int:
    """An int (bools refused) in ``[lo, hi)``."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value < hi:
        raise _Bad(where, f"must be an int in [{lo}, {hi}), got {_short(value)}")
    return value


def _real(where: str, value, positive: bool = False) -> float:
    """A finite real number (bools refused), > 0 if ``positive``."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    try:
        ok = ok and math.isfinite(value) and (value > 0 or not positive)
    except OverflowError:  # an int beyond float's range
        ok = False
    if not ok:
        kind = "a finite number > 0" if positive else "a finite number"
        raise _Bad(where, f"must be {kind}, got {_short(value)}")
    return float(value)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
