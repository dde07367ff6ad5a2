"""Layers that add noise while training: ``Dropout`` and ``GaussianNoise``.

Each draws a seed from the model's generator in ``build`` and makes a generator of its
own from it in ``bind`` (:meth:`_Noise.new_generator`), so a run is reproducible from
the model's seed, noise is drawn on the device, and no global RNG is touched. Dropout's
is a counter-based :class:`~gpunn.backends.philox.CounterRNG` (Philox4x64-10): the
same masks on the CPU and the GPU, bit for bit, and a state (key, counter) that
checkpoints save and restore on both. GaussianNoise asks the backend for one
(``numpy.random.Generator``; cuRAND on the GPU). In eval mode both return their input
array itself.
"""

from __future__ import annotations

from gpunn.backends.philox import CounterRNG
from gpunn.checks import check_real
from gpunn.layers.base import Layer


class _Noise(Layer):
    """A layer with its own generator, seeded from the model's one in ``build``."""

    def __init__(self, name: str | None = None):
        super().__init__(name)
        self.seed: int | None = None
        self.generator = None
        self._before = None  # the generator's state before a staged step's draws

    def build(self, n_in, rng):
        specs = super().build(n_in, rng)
        self.seed = int(rng.integers(2**63))
        return specs

    def bind(self, backend, params, grads):
        super().bind(backend, params, grads)
        self.generator = self.new_generator(backend, self.seed)
        self._before = None

    def _draw_staged(self) -> None:
        """Notes the generator's state before the first draw of a step (inside a
        model), so :meth:`discard_state` can rewind a refused step's draws. A
        generator whose state the backend cannot read (cuRAND) is not rewound."""
        if self.stage_state and self._before is None:
            self._before = self.backend.generator_state(self.generator)

    def commit_state(self) -> None:
        self._before = None

    def discard_state(self) -> None:
        before, self._before = self._before, None
        if before is not None:
            self.backend.set_generator_state(self.generator, before)

    def new_generator(self, backend, seed: int):
        """The layer's generator for ``seed`` (also used by data-parallel training to
        reseed each rank): the backend's by default."""
        return backend.generator(seed)

    def flops_per_sample(self) -> int:
        return self.n_in or 0


class Dropout(_Noise):
    """Inverted dropout: in training ``y = x * m / (1 - rate)`` with ``m ~
    Bernoulli(1 - rate)`` drawn per element, so ``E[y] = x``; in eval ``y = x``.

    As ``torch.nn.Dropout`` / ``keras.layers.Dropout`` (Srivastava et al., 2014,
    "Dropout: a simple way to prevent neural networks from overfitting"); the scale is
    applied while training, so inference needs no rescaling. The backward pass
    multiplies by the same mask and scale.

    The mask comes from a counter-based generator (Philox4x64-10, seeded from the
    model's seed): element ``j`` is kept iff the ``j``-th 64-bit word drawn is
    ``>= floor(rate * 2**64)``, so the CPU and GPU backends draw identical masks and a
    resumed run continues the same stream (see :mod:`gpunn.backends.philox`).

    Args:
        rate: probability of zeroing an element, in ``[0, 1)``; 0 makes the layer the
            identity.
        name: optional layer name.

    Shape: ``(batch, n)`` -> ``(batch, n)``.
    """

    def __init__(self, rate: float, name: str | None = None):
        super().__init__(name)
        self.rate = check_real("rate", rate, 0, 1, hi_open=True)
        self._mask = None

    def new_generator(self, backend, seed: int):
        """A :class:`~gpunn.backends.philox.CounterRNG`, on every backend."""
        return CounterRNG(seed)

    def forward(self, x, training: bool = False):
        if not training:
            return x
        if self.rate == 0:
            self._mask = None
            return x
        self._draw_staged()
        y, self._mask = self.backend.dropout(x, self.rate, self.generator)
        return y

    def backward(self, dy):
        if not self.needs_dx:
            return None
        if self._mask is None:
            return dy
        return self.backend.backprop_dropout(dy, self._mask)

    def get_config(self) -> dict:
        return {"rate": self.rate, "name": self.name}


class GaussianNoise(_Noise):
    """Additive Gaussian noise: in training ``y = x + stddev * z`` with ``z ~ N(0, 1)``
    drawn per element; in eval ``y = x``. The gradient passes through unchanged.

    As ``keras.layers.GaussianNoise``: a regularizer (noise injection, Bishop 1995,
    "Training with noise is equivalent to Tikhonov regularization").

    Args:
        stddev: standard deviation of the noise, ``>= 0``; 0 makes the layer the
            identity.
        name: optional layer name.

    Shape: ``(batch, n)`` -> ``(batch, n)``.
    """

    def __init__(self, stddev: float, name: str | None = None):
        super().__init__(name)
        self.stddev = check_real("stddev", stddev, 0)

    def forward(self, x, training: bool = False):
        if not training or self.stddev == 0:
            return x
        self._draw_staged()
        return self.backend.gaussian_noise(x, self.stddev, self.generator)

    def backward(self, dy):
        return dy if self.needs_dx else None

    def get_config(self) -> dict:
        return {"stddev": self.stddev, "name": self.name}
