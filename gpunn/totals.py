"""What one pass of ``fit`` or ``evaluate`` adds up: :class:`Totals` keeps the batch
losses and metric statistics on the device (read once per epoch, or when the progress
bar redraws); :class:`Accumulator` sums gradients over ``accumulate_steps`` batches
before one optimizer step."""

from __future__ import annotations

import numpy as np

__all__ = ["Accumulator", "Totals"]


class Totals:
    """Device-side batch losses and metric statistics of one pass, read on demand."""

    def __init__(self, model, dp=None):
        self.model, self.dp, self.losses, self.sizes = model, dp, [], []
        self.stats = [[] for _ in model.metrics]

    def add(self, loss, outputs, targets) -> None:
        backend = self.model.backend
        self.losses.append(loss)
        self.sizes.append(len(targets))
        for stats, metric in zip(self.stats, self.model.metrics):
            stats.append(metric.batch_stats(backend, outputs, targets))

    def logs(self, prefix: str = "", reduce: bool = True) -> dict:
        """The pass's mean loss and metrics; on several ranks (``reduce``, which
        every rank must call together) over all ranks' samples."""
        sums = self._sums()
        if reduce and self.dp is not None:
            flat = self.dp.reduce_host_(np.concatenate([s.ravel() for s in sums]))
            parts = np.split(flat, np.cumsum([s.size for s in sums])[:-1])
            sums = [part.reshape(s.shape) for part, s in zip(parts, sums)]
        loss_sum, n_samples = sums[0]
        logs = {prefix + "loss": float(loss_sum / n_samples) if n_samples else np.nan}
        for totals, metric in zip(sums[1:], self.model.metrics):
            logs[prefix + metric.name] = metric.result(totals, int(n_samples))
        return logs

    def local_logs(self) -> dict:
        """This rank's running logs, for the progress bar (no collective)."""
        return self.logs(reduce=False)

    def _sums(self) -> list:
        """``[(loss * size summed, samples), metric totals...]`` as float64 arrays."""
        backend, stack = self.model.backend, self.model.backend.xp.stack
        host = lambda arrays: backend.to_numpy(stack(arrays)).astype(np.float64)
        sizes = np.asarray(self.sizes, np.float64)
        loss = float(host(self.losses) @ sizes) if self.losses else 0.0
        sums = [np.array([loss, sizes.sum()])]
        return sums + [host(stats).sum(axis=0) for stats in self.stats]

    def add_empty(self, targets) -> None:
        """Records a shard with no rows (a rank of a tiny batch): zero statistics of
        the right shapes, so the ranks' sums line up. ``targets``: 0 rows of them."""
        backend, model = self.model.backend, self.model
        outputs = backend.zeros((0, model.output_dim), model.dtype)
        self.add(backend.zeros((), model.dtype), outputs, targets)


class Accumulator:
    """Sums ``batch size * gradient`` over a group of batches, then steps once on the
    sum divided by the group's samples: the gradient of one large batch. ``check``
    (a :class:`~gpunn.faults.StepCheck`) sees the group's summed loss and averaged
    gradient before its step. On several ranks (``dp``) each sums its shards and
    one all-reduce per group (not per batch) gives the group's gradient."""

    def __init__(self, model, steps: int, check=None, dp=None):
        self.model, self.steps, self.check, self.dp = model, steps, check, dp
        self.buffer = model.arena.zeros_like_params()
        self.batches = 0
        self.total = 0  # the group's samples (over all ranks)
        self.loss = None  # the group's summed batch losses (device), for the check

    def add(self, n: int, loss=None, n_global: int | None = None) -> None:
        if loss is not None and n:
            self.loss = loss if self.loss is None else self.loss + loss
        xp, grads = self.model.backend.xp, self.model.arena.grads
        if self.batches == 0:
            xp.multiply(grads, n, out=self.buffer)
        elif n:
            self.buffer += grads * n
        self.batches += 1
        self.total += n if n_global is None else n_global
        if self.batches == self.steps:
            self.flush()

    def flush(self) -> None:
        if self.batches == 0:
            return
        xp, dp, loss = self.model.backend.xp, self.dp, self.loss
        xp.divide(self.buffer, self.total, out=self.model.arena.grads)
        if dp is not None:
            dp.engine.allreduce_(self.model.arena.grads)
            loss = dp.reduce_loss(loss, 1, 1)  # NaN on any rank reaches every rank
        self.model._apply_step(loss, self.check, self.total, self.batches)
        self.batches = self.total = 0
        self.loss = None
