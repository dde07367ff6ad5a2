"""Weight regularizers with Keras semantics: a penalty added to the training loss and
its gradient added to the weight's gradient.

| class (name) | penalty | gradient |
|---|---|---|
| ``L1(l1=0.01)`` (``"l1"``) | ``l1 * sum(abs(w))`` | ``l1 * sign(w)`` (0 at 0) |
| ``L2(l2=0.01)`` (``"l2"``) | ``l2 * sum(w**2)`` | ``2 * l2 * w`` |
| ``L1L2(l1=0.0, l2=0.0)`` (``"l1_l2"``) | both | both |

Note that Keras' ``L2`` has no factor 1/2, so ``L2(l2)`` is ``weight_decay = 2 * l2``
in ``torch.optim.SGD`` terms. The backend computes the penalty as a 0-d device array
(``l1_l2_penalty``) and adds the gradient in place (``add_l1_l2_grad_``), so nothing
waits for the device.

Example::

    Dense(64, activation="relu", kernel_regularizer=L2(1e-4))
    Dense(64, kernel_regularizer="l1")  # L1(0.01)
"""

from __future__ import annotations

from gpunn.checks import check_real
from gpunn.errors import ArgumentError


class Regularizer:
    """``l1 * sum(abs(w)) + l2 * sum(w**2)``: the general form the presets set.

    Args:
        l1: strength of the L1 term, >= 0. Default: 0.0.
        l2: strength of the L2 term, >= 0. Default: 0.0.
    """

    name = "l1_l2"

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1 = check_real("l1", l1, lo=0)
        self.l2 = check_real("l2", l2, lo=0)

    def penalty(self, backend, w):
        """The penalty of weight ``w`` as a 0-d device array of its dtype."""
        return backend.l1_l2_penalty(w, self.l1, self.l2)

    def add_grad_(self, backend, w, dw, scale: float = 1.0) -> None:
        """Adds ``scale`` times the penalty's gradient with respect to ``w`` into
        ``dw`` in place (``scale``: the loss scale the data gradient carries)."""
        if scale == 1:
            backend.add_l1_l2_grad_(w, dw, self.l1, self.l2)
        else:
            backend.add_l1_l2_grad_(w, dw, self.l1 * scale, self.l2 * scale)

    def get_config(self) -> dict:
        """The constructor arguments (Keras' ``get_config``)."""
        return {"l1": self.l1, "l2": self.l2}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class L1L2(Regularizer):
    """``l1 * sum(abs(w)) + l2 * sum(w**2)`` (Keras' ``L1L2``).

    Args:
        l1: >= 0. Default: 0.0.
        l2: >= 0. Default: 0.0.
    """


class L1(Regularizer):
    """``l1 * sum(abs(w))``, gradient ``l1 * sign(w)`` with ``sign(0) = 0`` (Keras'
    ``L1``).

    Args:
        l1: >= 0. Default: 0.01.
    """

    name = "l1"

    def __init__(self, l1: float = 0.01):
        super().__init__(l1=l1)

    def get_config(self) -> dict:
        return {"l1": self.l1}


class L2(Regularizer):
    """``l2 * sum(w**2)``, gradient ``2 * l2 * w`` (Keras' ``L2``).

    Args:
        l2: >= 0. Default: 0.01.
    """

    name = "l2"

    def __init__(self, l2: float = 0.01):
        super().__init__(l2=l2)

    def get_config(self) -> dict:
        return {"l2": self.l2}


_BY_NAME = {cls.name: cls for cls in (L1, L2, L1L2)}


def names() -> list[str]:
    return sorted(_BY_NAME)


def get(regularizer, argument: str = "regularizer") -> Regularizer | None:
    """A regularizer from a name (default strengths), a config from :func:`serialize`
    (``{"name": "l2", "l2": 1e-4}``), a :class:`Regularizer`, or None (none).
    ``argument`` names the argument in error messages."""
    if regularizer is None or isinstance(regularizer, Regularizer):
        return regularizer
    if isinstance(regularizer, str) and regularizer in _BY_NAME:
        return _BY_NAME[regularizer]()
    if isinstance(regularizer, dict) and regularizer.get("name") in _BY_NAME:
        config = {k: v for k, v in regularizer.items() if k != "name"}
        return _BY_NAME[regularizer["name"]](**config)
    raise ArgumentError(
        f"{argument} must be one of {names()}, a Regularizer, a config dict with "
        f"one of those names, or None, got {regularizer!r}"
    )


def serialize(regularizer: Regularizer | None) -> dict | None:
    """``{"name": ..., **get_config()}`` (JSON), which :func:`get` turns back."""
    if regularizer is None:
        return None
    return {"name": regularizer.name, **regularizer.get_config()}
