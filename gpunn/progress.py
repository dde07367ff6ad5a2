"""What ``fit`` prints: a progress bar on a terminal, one line per epoch otherwise.

The bar shows the batches done, the time left (``ETA``: the mean time per batch so
far times the batches left, in Keras' format: ``42s``, ``3:07``, ``1:02:09``) and
the running logs; once the epoch's last batch is done, the seconds it took. When the
number of batches is unknown (an iterable without ``steps_per_epoch``, in its first
epoch) it shows ``12/Unknown`` and the seconds so far instead.
"""

from __future__ import annotations

import sys
import time

REFRESH_SECONDS = 0.1
BAR_WIDTH = 30


def format_logs(logs: dict) -> str:
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


def format_eta(seconds: float) -> str:
    """Keras' ETA format: ``"42s"``, ``"3:07"`` (minutes), ``"1:02:09"`` (hours)."""
    eta = round(seconds)
    if eta >= 3600:
        return f"{eta // 3600}:{eta % 3600 // 60:02d}:{eta % 60:02d}"
    if eta >= 60:
        return f"{eta // 60}:{eta % 60:02d}"
    return f"{eta}s"


class Progress:
    """``verbose=0``: silent; ``1``: a bar updated in place on a terminal (one line per
    epoch when the stream is not a terminal); ``2``: one line per epoch.

    Args:
        verbose: 0, 1 or 2.
        epochs: the epochs in total (for ``Epoch 3/10``).
        steps: batches per epoch, or None when unknown.
        stream: where to write. Default: ``sys.stdout``.
    """

    def __init__(self, verbose: int, epochs: int, steps: int | None, stream=None):
        self.stream = stream or sys.stdout
        self.verbose, self.epochs, self.steps = verbose, epochs, steps
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.bar = verbose == 1 and isatty
        self._epoch, self._started, self._shown = 0, 0.0, 0.0
        self._first_step = 0

    def start_epoch(self, epoch: int, steps: int | None = None) -> None:
        """Starts the bar of ``epoch`` (1-based); ``steps`` updates the batches per
        epoch when it became known (None keeps what was known)."""
        self._epoch, self._started, self._shown = epoch, time.perf_counter(), 0.0
        self._first_step = None
        if steps is not None:
            self.steps = steps

    def batch(self, step: int, running_logs) -> None:
        """Called after each batch; ``running_logs()`` (which may wait for the device)
        is called only when the bar is redrawn."""
        if not self.bar:
            return
        now = time.perf_counter()
        if self._first_step is None:  # a resumed epoch starts past its first batch
            self._first_step = step - 1
        last = self.steps is not None and step >= self.steps
        if now - self._shown < REFRESH_SECONDS and not last:
            return
        self._shown = now
        elapsed = now - self._started
        line = f"\rEpoch {self._epoch}/{self.epochs} {self._position(step)} - "
        if last or self.steps is None:
            line += f"{elapsed:.1f}s"
        else:
            per_step = elapsed / max(step - self._first_step, 1)
            line += f"ETA: {format_eta(per_step * (self.steps - step))}"
        self.stream.write(f"{line} - {format_logs(running_logs())}")
        self.stream.flush()

    def _position(self, step: int) -> str:
        if self.steps is None:
            return f"{step}/Unknown"
        done = BAR_WIDTH * min(step, self.steps) // self.steps
        arrow = ">" if done < BAR_WIDTH else ""
        bar = "=" * done + arrow + "." * (BAR_WIDTH - done - len(arrow))
        return f"[{bar}] {step}/{self.steps}"

    def end_epoch(self, logs: dict) -> None:
        if self.verbose == 0:
            return
        seconds = time.perf_counter() - self._started
        prefix = "\r\033[K" if self.bar else ""
        self.stream.write(
            f"{prefix}Epoch {self._epoch}/{self.epochs} - {seconds:.2f}s "
            f"- {format_logs(logs)}\n"
        )
        self.stream.flush()
