"""What ``gpunn bench`` shows and keeps: the terminal table, the JSON and the plot.

Columns of the table, one row per side of a case:
- ``ms/step``: median step time (see :mod:`gpunn.bench.runner`);
- ``samples/s``: batch size / step time;
- ``gpunn x``: this side's step time / gpunn's, i.e. how many times faster gpunn is
  (above 1: gpunn is faster; the GEMM floor's value is below 1 by construction);
- ``%floor``: the GEMM floor's step time / this side's, in percent (100 would mean the
  step costs no more than its matrix products);
- ``TFLOP/s``: the step's GEMM FLOPs (``6 * B * sum(n_i * n_(i+1))``) / step time;
- ``peak MiB``: peak memory while the side was built and warmed up (device memory on
  the GPU, growth of the C heap's bytes in use on the CPU: :mod:`gpunn.bench.memory`);
- ``first ms``: the first step on a fresh model (lazy set-up, compilation included).

A ratio is shown only between stable measurements: where a side's rounds disagree
widely, or the GEMM floor moved during the case (the machine's load changed), the
ratio cells say ``unstable`` and a line under the case gives the reason (the JSON
keeps it in ``unstable`` and leaves the ratios null). Run again on a quieter
machine, or with more ``--steps``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from gpunn.bench.models import MODELS

COLUMNS = (
    ("side", 27),
    ("ms/step", 10),
    ("samples/s", 12),
    ("gpunn x", 9),
    ("%floor", 10),
    ("TFLOP/s", 9),
    ("peak MiB", 10),
    ("first ms", 10),
)
MAIN_CONTENDER = "torch-fused"


# ------------------------------------------------------------------ table
def table(report: dict) -> str:
    """The whole report as text: a header, one block per case, the summary."""
    lines = [_header(report), ""]
    for case in report["cases"]:
        lines += _case_block(case) + [""]
    lines += summary(report)
    return "\n".join(lines).rstrip() + "\n"


def _header(report: dict) -> str:
    m, s = report["machine"], report["settings"]
    where = m.get("gpu", {}).get("name") if s["device"] == "gpu" else m["cpu"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    text = (
        f"gpunn bench, {report['created']}: {s['device']} ({where}, "
        f"{m['cpu_count']} CPUs); {versions}\n"
        f"{s['dtype']} {s['optimizer']} {s['loss']}; steps {s['steps']} in "
        f"{s['rounds']} rounds after {s['warmup_steps']} warm-up; "
        f"check_finite={s['check_finite']}; {s.get('threads', '?')} threads for "
        "every side"
    )
    for item in report["skipped"]:
        what = item.get("contender") or f"precision {item.get('precision')}"
        text += f"\nnot run: {what}: {item['reason']}"
    return text


def _case_block(case: dict) -> list[str]:
    sizes = "-".join(map(str, case["sizes"]))
    title = (
        f"{case['model']} ({sizes}), batch {case['batch']}, {case['precision']} "
        f"(TF32 {'on' if case['tf32'] else 'off'}), {case['device']}: "
        f"{case['flops_per_step'] / 1e9:.3g} GFLOP/step, "
        f"{case['parameters'] / 1e6:.3g}M parameters"
    )
    lines = [
        title,
        _gate_line(case),
        "".join(
            f"{name:>{width}}" if i else f"{name:<{width}}"
            for i, (name, width) in enumerate(COLUMNS)
        ),
    ]
    timed = [s for s in case["sides"] if s["status"] == "ok" and s["median_step_s"]]
    ours = next((s for s in timed if s["key"] == "gpunn"), {})
    floor = next((s for s in timed if s["key"] == "gemm-floor"), {})
    for side in timed:
        lines.append(_row(side, ours.get("unstable"), floor.get("unstable")))
    for side in timed:
        if side.get("unstable"):
            lines.append(f"  unstable: {side['label']}: {side['unstable']}")
    for side in case["sides"]:
        if side["status"] == "disagrees":
            lines.append(
                f"  not timed: {side['label']}: first-step loss {side['first_loss']:.7g}"
                f" differs from gpunn's by {side['loss_rel_diff']:.2g} (relative)"
            )
        elif side["status"] == "error":
            lines.append(f"  not timed: {side['label']}: {side['error']}")
    return lines


def _gate_line(case: dict) -> str:
    compared = [s for s in case["sides"] if s["loss_rel_diff"] is not None]
    others = [s for s in compared if s["key"] != "gpunn"]
    if case["reference_loss"] is None:
        return "first-step losses: not compared (gpunn did not run)"
    worst = max((s["loss_rel_diff"] for s in others), default=0.0)
    agree = all(s["status"] != "disagrees" for s in compared)
    verdict = "all sides agree" if agree else "NOT all sides agree"
    return (
        f"first-step loss {case['reference_loss']:.7g}: {verdict} within rtol "
        f"{case['loss_rtol']:.0e} (largest relative difference {worst:.2g}); "
        "only agreeing sides are timed"
    )


def _row(side: dict, ours_unstable=None, floor_unstable=None) -> str:
    def num(value, scale, fmt):
        return "-" if value is None else format(value * scale, fmt)

    def ratio(value, fmt, other_unstable):
        if value is None and (side.get("unstable") or other_unstable):
            return "unstable"
        return num(value, 1, fmt)

    widths = [width for _, width in COLUMNS]
    cells = [
        f"{side['label'][: widths[0] - 1]:<{widths[0]}}",
        f"{side['median_step_s'] * 1e3:>{widths[1]}.3f}",
        f"{side['samples_per_s']:>{widths[2]},.0f}",
        f"{ratio(side['gpunn_speedup'], '.2f', ours_unstable):>{widths[3]}}",
        f"{ratio(side['pct_gemm_floor'], '.1f', floor_unstable):>{widths[4]}}",
        f"{side['tflops']:>{widths[5]}.3f}",
        f"{num(side['peak_bytes'], 2**-20, '.1f'):>{widths[6]}}",
        f"{num(side['first_step_s'], 1e3, '.1f'):>{widths[7]}}",
    ]
    if side.get("compile_s") is not None:
        cells.append(f"  (compile {side['compile_s']:.1f} s)")
    return "".join(cells)


def summary(report: dict) -> list[str]:
    """gpunn's speed-up over torch eager (fused Adam) and its % of the GEMM floor
    per model and batch size, one table per precision."""
    lines = []
    for precision in dict.fromkeys(c["precision"] for c in report["cases"]):
        cases = [c for c in report["cases"] if c["precision"] == precision]
        batches = sorted({c["batch"] for c in cases})
        for title, pick in (
            (
                f"gpunn speed-up over torch eager, Adam fused ({precision})",
                lambda c: _side(c, MAIN_CONTENDER, "gpunn_speedup", "{:.2f}x"),
            ),
            (
                f"gpunn % of the GEMM floor ({precision})",
                lambda c: _side(c, "gpunn", "pct_gemm_floor", "{:.0f}%"),
            ),
        ):
            lines.append(title)
            lines.append(f"{'model':<8}" + "".join(f"{b:>9}" for b in batches))
            for name in dict.fromkeys(c["model"] for c in cases):
                cells = {c["batch"]: pick(c) for c in cases if c["model"] == name}
                lines.append(
                    f"{name:<8}" + "".join(f"{cells.get(b, ''):>9}" for b in batches)
                )
            lines.append("")
    return lines


def _side(case: dict, key: str, field: str, fmt: str) -> str:
    """The side's ``field`` formatted; ``unstable`` when it was timed but a side the
    ratio needs (it, gpunn or the floor) was unstable; else ``-``."""
    sides = {s["key"]: s for s in case["sides"]}
    side = sides.get(key)
    if side is None or side.get("median_step_s") is None:
        return "-"
    if side.get(field) is not None:
        return fmt.format(side[field])
    other = sides.get("gpunn" if field == "gpunn_speedup" else "gemm-floor", {})
    return "unstable" if side.get("unstable") or other.get("unstable") else "-"


# ------------------------------------------------------------------ files
def save(report: dict, out: Path) -> dict:
    """Writes ``bench_<device>_<time>.json``, ``.txt`` and (with matplotlib) ``.png``
    into ``out``; returns ``{kind: path or the reason it was not written}``."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = report["created"][:19].replace("-", "").replace(":", "").replace("T", "_")
    stem = out / f"bench_{report['settings']['device']}_{stamp}"
    written = {}
    path = stem.with_suffix(".json")
    path.write_text(json.dumps(_finite(report), indent=1, allow_nan=False) + "\n")
    written["json"] = str(path)
    path = stem.with_suffix(".txt")
    path.write_text(table(report))
    written["table"] = str(path)
    written["plot"] = plot(report, stem.with_suffix(".png"))
    return written


def _finite(value):
    """``value`` with NaN and infinities replaced by None: strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def plot(report: dict, path: Path) -> str:
    """A PNG of samples/s against batch size, one line per side, one panel per
    model and precision. Returns the path, or why no plot was made."""
    try:
        import matplotlib
    except ImportError:
        return "no plot: matplotlib is not installed (pip install 'gpunn[bench]')"
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    panels = list(dict.fromkeys((c["precision"], c["model"]) for c in report["cases"]))
    if not panels:
        return "no plot: no case ran"
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5 * len(panels), 4), squeeze=False
    )
    for ax, (precision, model) in zip(axes[0], panels):
        cases = [
            c
            for c in report["cases"]
            if (c["precision"], c["model"]) == (precision, model)
        ]
        lines = {}
        for case in cases:
            for side in case["sides"]:
                if side["samples_per_s"] is not None:
                    lines.setdefault(side["label"], []).append(
                        (case["batch"], side["samples_per_s"])
                    )
        for label, points in lines.items():
            xs, ys = zip(*sorted(points))
            style = "--" if label.startswith("GEMM floor") else "-"
            ax.plot(xs, ys, style, marker="o", label=label)
        sizes = "-".join(map(str, MODELS[model]))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set(
            xlabel="batch size",
            ylabel="samples/s",
            title=f"{model} ({sizes}), {precision}",
        )
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks([c["batch"] for c in cases], [str(c["batch"]) for c in cases])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    settings = report["settings"]
    where = report["machine"].get("gpu", {}).get("name") or report["machine"]["cpu"]
    fig.suptitle(
        f"gpunn bench on {settings['device']} ({where}), {report['created']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)
