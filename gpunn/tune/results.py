"""The outcome of a search: one :class:`Trial` per trained configuration, ranked in
:class:`SearchResults`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class Trial:
    """One trained configuration.

    Attributes:
        index: position in the order the trials ran (0-based).
        params: the arguments given to ``build_fn``.
        score: the best epoch's ``monitor`` value (nan when the trial failed or every
            value was nan).
        epoch: that epoch, 0-based as ``History.epoch`` (None when no score).
        logs: the last epoch's logs (``{"loss": ..., "val_loss": ..., ...}``).
        seconds: wall time of ``fit``.
        history: ``history.history`` of the trial's ``fit``.
        error: why the trial failed (training diverged), else None.
    """

    index: int
    params: dict
    score: float
    epoch: int | None
    logs: dict = field(default_factory=dict)
    seconds: float = 0.0
    history: dict = field(default_factory=dict)
    error: str | None = None


class SearchResults:
    """The trials of a search, sorted best first (failed trials last, ties in run
    order), with ``best_params``, ``best_score``, ``rows()`` and ``table()``."""

    def __init__(self, trials: list[Trial], monitor: str, mode: str):
        self.monitor, self.mode = monitor, mode
        sign = -1.0 if mode == "max" else 1.0
        self.trials = sorted(
            trials, key=lambda t: (math.isnan(t.score), sign * t.score, t.index)
        )

    @property
    def best(self) -> Trial:
        return self.trials[0]

    @property
    def best_params(self) -> dict:
        return dict(self.best.params)

    @property
    def best_score(self) -> float:
        return self.best.score

    def rows(self) -> list[dict]:
        """One flat dict per trial, best first: ``rank`` (1 = best), ``trial``, the
        params, ``score``, ``epoch``, ``seconds``, ``error``, then the last epoch's
        logs prefixed ``final_`` (``final_val_loss``, ...)."""
        return [
            {
                "rank": rank,
                "trial": t.index,
                **t.params,
                "score": t.score,
                "epoch": t.epoch,
                "seconds": t.seconds,
                "error": t.error,
                **{f"final_{k}": v for k, v in t.logs.items()},
            }
            for rank, t in enumerate(self.trials, 1)
        ]

    def table(self) -> str:
        """The trials as an aligned text table, best first."""
        names = list(self.trials[0].params)
        header = ["rank", "trial", *names, f"{self.mode} {self.monitor}", "epoch", "s"]
        body = [
            [rank, t.index, *(t.params[n] for n in names)]
            + [t.score, "-" if t.epoch is None else t.epoch, t.seconds]
            for rank, t in enumerate(self.trials, 1)
        ]
        cells = [header] + [[_cell(v) for v in row] for row in body]
        widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
        right = [isinstance(v, (int, float)) for v in body[0]]
        lines = [
            "  ".join(
                c.rjust(w) if r else c.ljust(w) for c, w, r in zip(row, widths, right)
            )
            for row in cells
        ]
        return "\n".join(line.rstrip() for line in lines)

    __str__ = table

    def __repr__(self) -> str:
        return (
            f"SearchResults({len(self.trials)} trials, best {self.monitor}="
            f"{self.best_score:.6g} with {self.best.params})"
        )


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
