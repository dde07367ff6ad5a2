"""The base of every benchmark side (see :mod:`gpunn.bench.contenders`)."""

from __future__ import annotations

from gpunn.bench.models import N_BATCHES


class Side:
    """What every side shares: the batch cycle. Subclasses set ``key`` and
    ``label`` and implement ``_step(x, y)`` (returning the loss, or None)."""

    key = label = ""
    threads = "numpy"  # whose worker threads run its CPU work (BLAS, update pool)

    def __init__(self, case, batches):
        self.case, self.batches, self._i = case, batches, 0

    def _next(self):
        x, y = self.batches[self._i % N_BATCHES]
        self._i += 1
        return x, y

    def first_step(self):
        loss = self._step(*self._next())
        return None if loss is None else float(loss)

    def steps(self, n: int) -> None:
        for _ in range(n):
            self._step(*self._next())

    def sync(self) -> None:
        pass
