"""The parameter arena: every trainable parameter of a model is a view into one flat
buffer, every gradient a view into a second one of the same layout.

So an optimizer step is one update over two flat arrays (one kernel launch on the GPU),
global-norm clipping is one reduction, saving is one copy, and data-parallel training is
one all-reduce. Optimizer state (moments, accumulators) is allocated with
:meth:`ParameterArena.zeros_like_params` and so shares the layout.

Under mixed precision the arena also holds ``compute``, a 16-bit copy of the parameters
in the same layout: the weights the layers multiply by. The optimizer writes it as it
updates the float32 masters (in the same pass on the GPU). Anything else that writes
the masters calls :meth:`ParameterArena.params_changed`; the copy is brought up to
date (one cast) before the next forward pass reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np

# Each tensor starts on a 128-byte boundary (32 float32 / 16 float64), so views are
# aligned for vector loads and cuBLAS(Lt); the padding stays zero in params and grads.
ALIGN_BYTES = 128


@dataclass(frozen=True)
class ParamSpec:
    """A parameter a layer asks for: its name within the layer, shape and initial
    value (a host array of that shape, any float dtype)."""

    name: str
    shape: tuple[int, ...]
    init: np.ndarray


@dataclass(frozen=True)
class Slot:
    """Where one parameter lives in the flat buffers."""

    owner: str  # the layer's name, e.g. "dense_0"
    name: str  # e.g. "kernel"
    offset: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return prod(self.shape)

    @property
    def key(self) -> str:
        return f"{self.owner}.{self.name}"


class ParameterArena:
    """Flat parameter and gradient buffers of one model, on one backend and dtype.

    Args:
        backend: the backend that owns the buffers.
        dtype: float dtype of parameters and gradients.
        specs: ``[(owner, ParamSpec), ...]`` in layer order.
        compute_dtype: the dtype the layers compute in; a 16-bit one (mixed
            precision) adds the ``compute`` copy of the parameters. Default: dtype.
    """

    def __init__(
        self, backend, dtype, specs: list[tuple[str, ParamSpec]], compute_dtype=None
    ):
        self.backend = backend
        self.dtype = np.dtype(dtype)
        align = max(ALIGN_BYTES // self.dtype.itemsize, 1)
        self.slots: list[Slot] = []
        offset = 0
        for owner, spec in specs:
            self.slots.append(Slot(owner, spec.name, offset, tuple(spec.shape)))
            offset += -(-prod(spec.shape) // align) * align
        self.size = offset
        host = np.zeros(self.size, dtype=self.dtype)
        for slot, (_, spec) in zip(self.slots, specs):
            host[slot.offset : slot.offset + slot.size] = np.asarray(spec.init).ravel()
        self.params = backend.asarray(host)
        self.grads = backend.zeros(self.size, self.dtype)
        compute = np.dtype(compute_dtype or self.dtype)
        self.compute = (
            None if compute == self.dtype else backend.zeros(self.size, compute)
        )
        self._compute_stale = self.compute is not None

    @property
    def num_params(self) -> int:
        """Number of trainable scalars (padding excluded)."""
        return sum(slot.size for slot in self.slots)

    def view(self, flat, slot: Slot):
        """The part of ``flat`` (params, grads or a state buffer) that holds ``slot``."""
        return flat[slot.offset : slot.offset + slot.size].reshape(slot.shape)

    def views(self, owner: str, flat) -> dict:
        """``{name: view}`` of every parameter of layer ``owner`` in ``flat``."""
        return {s.name: self.view(flat, s) for s in self.slots if s.owner == owner}

    def zeros_like_params(self):
        """A new zero buffer with the arena's layout (for optimizer state)."""
        return self.backend.zeros(self.size, self.dtype)

    # ---------------------------------------------------------------- mixed precision
    @property
    def compute_dtype(self) -> np.dtype:
        return self.dtype if self.compute is None else self.compute.dtype

    def params_changed(self) -> None:
        """Marks the 16-bit copy stale after the masters were written other than by
        the optimizer (set_weights, a restore, a checkpoint, a broadcast)."""
        self._compute_stale = self.compute is not None

    def sync_compute(self) -> None:
        """Brings the 16-bit copy up to date (one cast of the masters) if it is
        stale; a no-op without mixed precision."""
        if self._compute_stale:
            with np.errstate(over="ignore"):  # past the 16-bit range: inf
                self.compute[...] = self.params
            self._compute_stale = False

    def compute_written(self) -> None:
        """Records that the optimizer wrote the copy along with the masters."""
        self._compute_stale = False
