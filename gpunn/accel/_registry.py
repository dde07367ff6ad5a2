"""What ran where: each accelerated call is counted as run on gpunn or handed to
scikit-learn, with the reason; :func:`report` summarizes. The first time a reason
comes up it is logged (one line, logger ``gpunn.accel``, level WARNING)."""

from __future__ import annotations

import collections
import logging
import threading

logger = logging.getLogger("gpunn.accel")

GPUNN = "gpunn"
SKLEARN = "scikit-learn"

_lock = threading.Lock()
_counts: collections.Counter = collections.Counter()  # (class, method, where, why)
_logged: set = set()


def record(cls_name: str, method: str, reason: str | None) -> None:
    """Counts one call of ``cls_name.method``: on gpunn (``reason`` None) or on
    scikit-learn because of ``reason``."""
    where = GPUNN if reason is None else SKLEARN
    key = (cls_name, method, where, reason or "")
    with _lock:
        _counts[key] += 1
        first = reason is not None and (cls_name, reason) not in _logged
        if first:
            _logged.add((cls_name, reason))
    if first:
        logger.warning(
            "gpunn.accel: %s.%s runs on scikit-learn: %s", cls_name, method, reason
        )


def reset() -> None:
    """Forgets every count (and which reasons were logged)."""
    with _lock:
        _counts.clear()
        _logged.clear()


def snapshot() -> dict:
    """``{"gpunn": n, "scikit-learn": n, "calls": [{"estimator", "method",
    "where", "reason", "count"}, ...]}``."""
    with _lock:
        items = sorted(_counts.items())
    calls = [
        {"estimator": c, "method": m, "where": w, "reason": r, "count": n}
        for (c, m, w, r), n in items
    ]
    totals = {
        where: sum(call["count"] for call in calls if call["where"] == where)
        for where in (GPUNN, SKLEARN)
    }
    return {**totals, "calls": calls}


def format_report(data: dict) -> str:
    """The text of :func:`gpunn.accel.report`."""
    total = data[GPUNN] + data[SKLEARN]
    if not total:
        return "gpunn.accel: no MLPClassifier/MLPRegressor call yet"
    lines = [
        (
            f"gpunn.accel: {data[GPUNN]} of {total} calls ran on gpunn, "
            f"{data[SKLEARN]} on scikit-learn"
        )
    ]
    for call in data["calls"]:
        why = f" ({call['reason']})" if call["reason"] else ""
        lines.append(
            f"  {call['estimator']}.{call['method']}: {call['count']} on "
            f"{call['where']}{why}"
        )
    return "\n".join(lines)
