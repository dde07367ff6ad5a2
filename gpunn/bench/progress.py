"""The progress bar of ``gpunn bench``."""

from __future__ import annotations

import sys
import time


class Progress:
    """A progress bar on stderr when it is a terminal; else nothing until ``close``,
    which prints how long the run took."""

    def __init__(self, total: int, stream=None, width: int = 30):
        self.stream = stream or sys.stderr
        self.total, self.done, self.width = max(total, 1), 0, width
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.started = time.perf_counter()

    def step(self, what: str) -> None:
        self.done = min(self.done + 1, self.total)
        if not self.tty:
            return
        filled = self.width * self.done // self.total
        bar = "=" * filled + "." * (self.width - filled)
        elapsed = time.perf_counter() - self.started
        self.stream.write(
            f"\r\033[K[{bar}] {self.done}/{self.total} {elapsed:5.0f}s {what}"[:200]
        )
        self.stream.flush()

    def case_done(self, label: str) -> None:
        """Off a terminal, one line per finished case."""
        if not self.tty:
            elapsed = time.perf_counter() - self.started
            self.stream.write(f"gpunn bench: {label} done ({elapsed:.0f} s)\n")
            self.stream.flush()

    def close(self) -> None:
        end = "\r\033[K" if self.tty else ""
        seconds = time.perf_counter() - self.started
        self.stream.write(f"{end}gpunn bench: done in {seconds:.1f} s\n")
        self.stream.flush()
