"""What ``fit`` prints: a progress bar on a terminal, one line per epoch otherwise."""

from __future__ import annotations

import sys
import time

REFRESH_SECONDS = 0.1
BAR_WIDTH = 30


def format_logs(logs: dict) -> str:
    return " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())


class Progress:
    """``verbose=0``: silent; ``1``: a bar updated in place on a terminal (one line per
    epoch when the stream is not a terminal); ``2``: one line per epoch."""

    def __init__(self, verbose: int, epochs: int, steps: int, stream=None):
        self.stream = stream or sys.stdout
        self.verbose, self.epochs, self.steps = verbose, epochs, steps
        isatty = getattr(self.stream, "isatty", lambda: False)()
        self.bar = verbose == 1 and isatty
        self._epoch, self._started, self._shown = 0, 0.0, 0.0

    def start_epoch(self, epoch: int) -> None:
        self._epoch, self._started, self._shown = epoch, time.perf_counter(), 0.0

    def batch(self, step: int, running_logs) -> None:
        """Called after each batch; ``running_logs()`` (which may wait for the device)
        is called only when the bar is redrawn."""
        if not self.bar:
            return
        now = time.perf_counter()
        if now - self._shown < REFRESH_SECONDS and step < self.steps:
            return
        self._shown = now
        done = BAR_WIDTH * step // self.steps
        arrow = ">" if done < BAR_WIDTH else ""
        bar = "=" * done + arrow + "." * (BAR_WIDTH - done - len(arrow))
        line = (
            f"\rEpoch {self._epoch}/{self.epochs} [{bar}] {step}/{self.steps} "
            f"- {now - self._started:.1f}s - {format_logs(running_logs())}"
        )
        self.stream.write(line)
        self.stream.flush()

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
