"""Counter-based random numbers for dropout: one Philox4x64-10 stream that the NumPy
reference and the CUDA kernel (``kernels/dropout.cu``) draw bit for bit alike.

A :class:`CounterRNG` is a 128-bit key and a counter. Its stream is exactly
``numpy.random.Philox(key=key, counter=counter).random_raw()``: NumPy adds one to the
256-bit counter *before* each block and a block yields the four 64-bit words of
``Philox4x64-10(counter, key)`` in order, so word ``j`` of a draw that starts at
``counter`` is word ``j % 4`` of the block at ``counter + 1 + j // 4``. A draw of
``n`` words advances the counter by ``ceil(n / 4)`` blocks, so any draw can be
regenerated from ``(key, counter)`` alone, on any device, and the state is two
integers that serialize to JSON.

Dropout keeps element ``j`` of its ``(batch, n)`` input iff ``w_j >= threshold``
with ``threshold = floor(rate * 2**64)``: an integer compare, so CPU and GPU masks
are bitwise equal, and ``P(keep) = 1 - rate`` up to ``2**-64``. The mask is never a
float tensor: :class:`DropoutMask` holds a bool array (reference) or packed bits
(kernels) and the scale ``1 / (1 - rate)``.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

__all__ = ["ALGORITHM", "CounterRNG", "DropoutMask", "dropout_threshold", "raw_words"]

ALGORITHM = "Philox4x64-10"
_KEY_LIMIT, _COUNTER_LIMIT = 2**128, 2**256
_MASK64 = 2**64 - 1


class CounterRNG:
    """A Philox4x64-10 stream addressed by ``(key, counter)`` (see the module).

    Args:
        seed: a non-negative int; the key is ``SeedSequence(seed).generate_state(2,
            uint64)``, as ``numpy.random.Philox(seed)`` derives it, so
            ``CounterRNG(s).random_raw(n) == numpy.random.Philox(s).random_raw(n)``.
    """

    def __init__(self, seed: int):
        k0, k1 = np.random.SeedSequence(seed).generate_state(2, np.uint64)
        self.key = int(k0) | int(k1) << 64
        self.counter = 0

    def __repr__(self) -> str:
        return f"CounterRNG(key={self.key:#034x}, counter={self.counter})"

    def take(self, n: int) -> int:
        """Reserves the next ``ceil(n / 4)`` blocks for a draw of ``n`` words and
        returns the counter that draw starts from (its first block is this + 1)."""
        start = self.counter
        self.counter = (start + -(-int(n) // 4)) % _COUNTER_LIMIT
        return start

    def random_raw(self, n: int) -> np.ndarray:
        """The next ``n`` 64-bit words of the stream, as ``uint64``; advances it."""
        start = self.take(n)
        return np.random.Philox(key=self.key, counter=start).random_raw(int(n))

    def key_words(self) -> tuple[np.uint64, np.uint64]:
        """The key as its two 64-bit words, low first (a kernel's arguments)."""
        return np.uint64(self.key & _MASK64), np.uint64(self.key >> 64)

    @staticmethod
    def counter_words(counter: int) -> tuple[np.uint64, ...]:
        """A counter as its four 64-bit words, low first (a kernel's arguments)."""
        return tuple(np.uint64(counter >> (64 * i) & _MASK64) for i in range(4))

    def get_state(self) -> dict:
        """The state as JSON-able values: the key as a hex string, the counter as
        an int counting 4-word blocks."""
        return {
            "bit_generator": ALGORITHM,
            "key": f"{self.key:#034x}",
            "counter": self.counter,
        }

    def set_state(self, state) -> None:
        """Restores a :meth:`get_state` value; ValueError (nothing changed) unless it
        is exactly that shape with a key in ``[0, 2**128)`` and a counter in
        ``[0, 2**256)``."""
        expected = {"bit_generator", "key", "counter"}
        if not isinstance(state, dict) or set(state) != expected:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"CounterRNG state needs {sorted(expected)}, got {got}")
        if state["bit_generator"] != ALGORITHM:
            raise ValueError(
                f"CounterRNG state must be for {ALGORITHM}, "
                f"got {state['bit_generator']!r}"
            )
        key, counter = _parse_key(state["key"]), state["counter"]
        if not _is_int(counter) or not 0 <= counter < _COUNTER_LIMIT:
            raise ValueError(
                f"CounterRNG counter must be an int in [0, 2**256), got {counter!r}"
            )
        self.key, self.counter = key, int(counter)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _parse_key(text) -> int:
    try:
        key = int(text, 16) if isinstance(text, str) else None
    except ValueError:
        key = None
    if key is None or not 0 <= key < _KEY_LIMIT:
        raise ValueError(
            f"CounterRNG key must be a hex string of a 128-bit int, got {text!r}"
        )
    return key


def raw_words(generator, n: int) -> np.ndarray:
    """``n`` uint64 words from a :class:`CounterRNG`, a NumPy ``BitGenerator`` or a
    ``numpy.random.Generator`` (its bit generator's stream); advances it."""
    draw = getattr(generator, "random_raw", None)
    if draw is None:
        draw = generator.bit_generator.random_raw
    return np.asarray(draw(int(n)), dtype=np.uint64)


def dropout_threshold(rate) -> np.uint64:
    """``floor(rate * 2**64)`` as uint64 (exact: scaling by a power of two is); an
    element is kept iff its word is ``>=`` this. ValueError unless ``0 <= rate < 1``.
    """
    if not 0 <= rate < 1:
        raise ValueError(f"rate must be in [0, 1), got {rate!r}")
    return np.uint64(int(float(rate) * 2.0**64))


@dataclass(frozen=True, eq=False)
class DropoutMask:
    """Which elements :meth:`dropout` kept, and the scale of the kept ones.

    Exactly one of ``keep`` (a bool array of ``shape``: the reference) and ``bits``
    (uint32 words, bit ``j % 32`` of word ``j // 32`` for flat element ``j``, the
    padding bits 0: the kernels) is set. ``scale`` is ``1 / (1 - rate)`` in double;
    :meth:`multiplier` rounds it once to the array's dtype.
    """

    shape: tuple
    scale: float
    keep: object = None
    bits: object = None

    def check(self, dy) -> None:
        """ValueError unless ``dy`` has the mask's shape."""
        if tuple(dy.shape) != tuple(self.shape):
            raise ValueError(
                f"backprop_dropout needs dy of shape {tuple(self.shape)}, "
                f"got {tuple(dy.shape)}"
            )

    def keep_array(self, xp):
        """The bool keep array (unpacked from the bits when packed)."""
        if self.keep is not None:
            return self.keep
        size = int(np.prod(self.shape, dtype=np.int64))
        flat = xp.unpackbits(self.bits.view(xp.uint8), bitorder="little")
        return flat[:size].reshape(self.shape).astype(bool)

    def multiplier(self, xp, dtype):
        """``keep * scale`` in ``dtype``: a temporary float array, never stored."""
        m = self.keep_array(xp).astype(dtype)
        m *= np.dtype(dtype).type(self.scale)
        return m
