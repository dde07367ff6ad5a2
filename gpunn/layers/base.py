"""The layer contract.

A layer is built once its input width is known: ``build(n_in, rng)`` returns the
:class:`~gpunn.arena.ParamSpec` of each parameter it needs, and after the model has laid
them out in its arena, ``bind(backend, params, grads)`` hands the layer its views.
Under mixed precision the model also sets ``compute_params``, views of the arena's
16-bit copy of the same parameters: a layer that multiplies by its weights (Dense)
reads those and computes in their dtype; the others read the float32 ``params``.
``backward`` returns ``dx`` in the dtype its forward's input had.

``forward(x, training)`` returns ``y`` and, when training, keeps what ``backward``
needs; ``backward(dy)`` returns ``dx`` and writes the parameter gradients into the grad
views (overwriting them). A layer whose ``needs_dx`` is false (the first layer of a
model) may return None from ``backward`` and skip that work.

Optional hooks (the base class gives the no-op version):

- ``penalty()``: a 0-d device array added to the training loss (kernel regularizers);
  the layer's ``backward`` adds the penalty's gradient into its grad views itself.
- ``get_state()`` / ``set_state(state)``: non-trainable state as host arrays (BatchNorm's
  running statistics, a fitted Standardize's mean and scale). It is saved with the
  model, restored by ``lr_find`` and not touched by optimizers.
- ``adapt(x)``: fits preprocessing statistics from data (``adaptable = True``).
- ``commit_state()`` / ``discard_state()``: during a model's training step (the
  model sets ``stage_state``) a training forward only stages the state it changes
  (BatchNorm's running statistics, a noise layer's generator); the model commits it
  once the optimizer step is applied and discards it when the step is refused (a
  non-finite loss or gradient) or fails. Otherwise a forward updates at once.
- Randomness: a layer that needs it draws a seed from the model's generator in
  ``build`` and asks the backend for a device generator in ``bind``
  (``backend.generator(seed)``), so runs are reproducible and no global RNG is used.
"""

from __future__ import annotations

import numpy as np

from gpunn.arena import ParamSpec

# names of the tensors a training checkpoint keeps beside the layers' (optimizer.*,
# loop.*, callbacks.*): a layer of one of these names would share their keys
RESERVED_NAMES = ("optimizer", "loop", "callbacks")


def check_name(name) -> str | None:
    """A layer name that keeps the file keys ``<name>.<entry>`` unambiguous: None
    (named by the model), or a str without ``"."``, other than
    :data:`RESERVED_NAMES`, encodable as UTF-8. TypeError / ValueError naming it."""
    if name is None or name == "":
        return None
    if not isinstance(name, str):
        raise TypeError(f"name must be a str or None, got {type(name).__name__}")
    if "." in name:
        raise ValueError(
            f"name must not contain '.' (saved files name tensors "
            f"'<layer>.<entry>'), got {name!r}"
        )
    if name in RESERVED_NAMES:
        raise ValueError(
            f"name {name!r} is reserved (checkpoints keep {list(RESERVED_NAMES)} "
            "tensors beside the layers'); choose another"
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"name must be valid UTF-8 text, got {name!r}") from None
    return name


class Layer:
    """Base class of all layers. Shape: ``(batch, n_in)`` -> ``(batch, n_out)``.

    ``name`` (None: the model names it, ``dense_0``) keys the layer's tensors in
    saved files as ``<name>.<parameter>``; it may not contain ``"."`` or be one of
    :data:`RESERVED_NAMES` (see :func:`check_name`), checked whenever it is set.
    """

    def __init__(self, name: str | None = None):
        self.name = name
        self.backend = None
        self.n_in: int | None = None
        self.n_out: int | None = None
        self.params: dict = {}
        self.grads: dict = {}
        self.needs_dx = True

    # ------------------------------------------------------------- building
    def build(self, n_in: int, rng: np.random.Generator) -> list[ParamSpec]:
        """Fixes the input width, returns the parameters to allocate."""
        self.n_in, self.n_out = n_in, self.output_dim(n_in)
        return []

    def output_dim(self, n_in: int) -> int:
        return n_in

    def bind(self, backend, params: dict, grads: dict) -> None:
        self.backend, self.params, self.grads = backend, params, grads
        self.compute_params = params  # a mixed-precision model gives 16-bit views

    @property
    def built(self) -> bool:
        return self.backend is not None

    @property
    def name(self) -> str | None:
        return self._name

    @name.setter
    def name(self, value) -> None:
        self._name = check_name(value)

    # ------------------------------------------------------------- compute
    def forward(self, x, training: bool = False):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    # ------------------------------------------------------------- optional hooks
    adaptable = False
    min_train_batch = 1  # smallest batch the layer can train on (BatchNorm: 2)
    # the factor the loss gradient carries in a step (dynamic loss scaling, set by
    # the model): gradients a layer adds on its own (penalties) are scaled alike
    grad_scale = 1.0
    stage_state = False  # set by the model during its training steps: see above

    def commit_state(self) -> None:
        """Keeps the state training forwards staged since the last commit or
        discard (the model's optimizer step was applied)."""

    def discard_state(self) -> None:
        """Drops the state training forwards staged since the last commit or discard
        (the step was refused or failed): the layer state is as before them."""

    def staged_is_finite(self):
        """Whether the staged state is finite, as a 0-d bool device array (read by
        the step's finite check), or None when nothing numeric is staged."""
        return

    def penalty(self):
        """The layer's regularization loss as a 0-d device array, or None."""
        return

    def get_state(self) -> dict:
        """Non-trainable state ``{name: host array}`` (copies)."""
        return {}

    def set_state(self, state: dict) -> None:
        """Restores what :meth:`get_state` returned."""
        if state:
            raise ValueError(
                f"{type(self).__name__} has no state, got entries {sorted(state)}"
            )

    # ------------------------------------------------------------- introspection
    def flops_per_sample(self) -> int:
        """Forward floating-point operations for one sample."""
        return 0

    def get_config(self) -> dict:
        """The constructor arguments (JSON-serializable) that rebuild this layer."""
        return {"name": self.name}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"
