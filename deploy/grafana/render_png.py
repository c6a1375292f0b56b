"""Render the dashboard's panels to one PNG with matplotlib, from a live Prometheus.

Grafana cannot run on the development machines, so the README's picture of the dashboard is
drawn from the same JSON Grafana provisions and the same queries, evaluated by a real
Prometheus (tests/ops/test_live_prometheus.py with VIGIL_WRITE_DOCS=1). Each panel is drawn
the way its Grafana type shows data: lines, a number, bars, a heatmap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

__all__ = ["Series", "render"]

# one series of a range query: its labels and its (unix time, value) points
Series = tuple[dict[str, str], list[tuple[float, float]]]


def _legend(fmt: str, labels: dict[str, str]) -> str:
    if not fmt or fmt == "__auto":
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k != "__name__") or "value"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)


def _finite(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(t, v) for t, v in points if math.isfinite(v)]


def render(board: dict, query_range: Callable[[str], list[Series]], out: Path,
           subtitle: str = "", columns: int = 4) -> int:
    """Draw every panel with data queries into ``out``; returns the number of panels drawn.

    ``query_range(expr)`` evaluates one expression over the rendered time range (the caller
    substitutes Grafana's variables such as ``$__rate_interval``).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [p for p in board["panels"] if p["type"] not in ("row", "table")]
    rows = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 2.9 * rows), squeeze=False)
    fig.suptitle(f"{board['title']}  {subtitle}", fontsize=14, x=0.01, ha="left")
    t0: float | None = None
    for ax, panel in zip(axes.flat, panels):
        ax.set_title(panel["title"], fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        drawn: list[tuple[str, list[tuple[float, float]]]] = []
        for target in panel["targets"]:
            for labels, points in query_range(target["expr"]):
                drawn.append((_legend(target.get("legendFormat", ""), labels), _finite(points)))
        drawn = [(name, pts) for name, pts in drawn if pts]
        if not drawn:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            continue
        if t0 is None:
            t0 = min(pts[0][0] for _, pts in drawn)
        if panel["type"] == "stat":
            value = sum(pts[-1][1] for _, pts in drawn)
            ax.text(0.5, 0.45, f"{value:,.0f}", ha="center", va="center", fontsize=30,
                    color="#2f7d32", transform=ax.transAxes)
            ax.set_axis_off()
        elif panel["type"] == "bargauge":
            names = [name for name, _ in drawn]
            values = [pts[-1][1] for _, pts in drawn]
            ax.barh(names, values, color="#3274d9")
            ax.set_xlabel(unit, fontsize=7)
        elif panel["type"] == "heatmap":
            _heatmap(ax, drawn, t0)
        else:
            for name, pts in drawn[:12]:
                ax.plot([t - t0 for t, _ in pts], [v for _, v in pts], lw=1.2, label=name)
            positive = [v for _, pts in drawn for _, v in pts if v > 0]
            if positive and max(positive) / min(positive) > 1e3:  # e.g. ms next to hours
                ax.set_yscale("log")
            ax.set_xlabel("seconds", fontsize=7)
            if unit and unit != "short":
                ax.set_ylabel(unit, fontsize=7)
            ax.legend(fontsize=6, loc="upper left", framealpha=0.6)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_axis_off()
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=72)
    plt.close(fig)
    return len(panels)


def _heatmap(ax, drawn: list[tuple[str, list[tuple[float, float]]]], t0: float) -> None:  # type: ignore[no-untyped-def]
    """Cumulative ``le`` buckets -> per-bucket counts over time, as Grafana's heatmap."""
    import numpy as np

    def le(name: str) -> float:
        return math.inf if name in ("+Inf", "inf") else float(name)

    buckets = sorted(drawn, key=lambda d: le(d[0]))
    times = sorted({t for _, pts in buckets for t, _ in pts})
    index = {t: i for i, t in enumerate(times)}
    cum = np.zeros((len(buckets), len(times)))
    for b, (_, pts) in enumerate(buckets):
        for t, v in pts:
            cum[b, index[t]] = v
    counts = np.diff(cum, axis=0, prepend=0)
    ax.imshow(counts, aspect="auto", origin="lower", cmap="inferno", interpolation="nearest",
              extent=(times[0] - t0, times[-1] - t0, 0, len(buckets)))
    ax.set_yticks(np.arange(len(buckets)) + 0.5, [n for n, _ in buckets], fontsize=5)
    ax.set_xlabel("seconds", fontsize=7)
