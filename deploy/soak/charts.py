"""The charts of an endurance run, drawn from its files (`series.jsonl`, `lag.jsonl` and the
faults of `result.json`): memory of every process, rows of every table, latency percentiles,
consumer lag and the work waiting in the services' tables over time, each with the faults
marked and the drain shaded (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from deploy.soak.measures import MB
from deploy.soak.report import PRUNED

CHARTS = ("rss.png", "rows.png", "latency.png", "lag.png")


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _marks(ax: Axes, figures: Mapping[str, Any]) -> None:
    """Faults as vertical lines (labelled), the drain after the load shaded."""
    for f in figures.get("faults", []):
        ax.axvline(f["at"] / 60, color="#d95d39", linewidth=0.8, linestyle="--")
        ax.text(f["at"] / 60, 1.0, f" {f['fault']}", rotation=90, va="top", fontsize=7,
                color="#d95d39", transform=ax.get_xaxis_transform())
    end = figures.get("settings", {}).get("load_seconds")
    if end is not None:
        ax.axvspan(end / 60, ax.get_xlim()[1], color="#9aa5b1", alpha=0.2, label="drain")
    ax.set_xlabel("minutes into the run")
    ax.grid(alpha=0.3)


def _plot(ax: Axes, points: Sequence[tuple[float, float | None]], label: str,
          scale: float = 1.0, style: str = "-") -> None:
    """A line; an unknown value (a process down, the broker unreadable, no message in a
    window) breaks it rather than being bridged."""
    ax.plot([t / 60 for t, _ in points], [math.nan if v is None else v / scale
                                          for _, v in points], style, label=label,
            linewidth=1.2, marker=".", markersize=2)


def _named(docs: Sequence[Mapping[str, Any]], field: str) -> dict[str, list[tuple[float, Any]]]:
    """Per name, (t, value or None) of one mapping field of each sample or lag reading; a
    reading where the whole field is unknown gives None to every name."""
    names = sorted({n for d in docs for n in (d.get(field) or {})})
    return {n: [(float(d["t"]), (d.get(field) or {}).get(n)) for d in docs] for n in names}


def draw(out: Path, figures: Mapping[str, Any]) -> list[Path]:
    """Write the four PNGs into `out`; their paths."""
    samples = _lines(out / "series.jsonl")
    lag = _lines(out / "lag.jsonl")
    paths = []

    fig, ax = plt.subplots(figsize=(12, 4.5), dpi=80)
    for name, points in _named(samples, "rss").items():
        _plot(ax, points, name, MB)
    ax.set_title("Memory (RSS; PostgreSQL: Pss of all its processes) over time")
    ax.set_ylabel("MB")
    paths.append(_save(fig, ax, figures, out / "rss.png"))

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), dpi=80, sharex=True)
    for name, points in _named(samples, "rows").items():
        _plot(top if name in PRUNED else bottom, points, name)
    top.set_title("Rows of the pruned tables (must level off)")
    bottom.set_title("Rows of the other tables (the leads' state)")
    for ax in (top, bottom):
        ax.set_ylabel("rows")
    _marks(top, figures)
    paths.append(_save(fig, bottom, figures, out / "rows.png"))

    fig, ax = plt.subplots(figsize=(12, 4.5), dpi=80)
    for q, style in (("p50", "-"), ("p95", "--"), ("p99", ":")):
        _plot(ax, [(s["t"], s["latency_ms"][q]) for s in samples], q, style=style)
    ax.set_title("Latency, due → received by the peer, of the messages of each sample window")
    ax.set_ylabel("ms")
    ax.set_yscale("log")
    paths.append(_save(fig, ax, figures, out / "latency.png"))

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7), dpi=80, sharex=True)
    for group, points in _named(lag, "lag").items():
        _plot(top, points, group)
    top.set_title("Consumer lag per group (records behind; gaps: the broker could not be read)")
    top.set_ylabel("records")
    for name, points in _named(samples, "backlog").items():
        _plot(bottom, points, name)
    bottom.set_title("Work waiting in the services' tables")
    bottom.set_ylabel("rows")
    _marks(top, figures)
    paths.append(_save(fig, bottom, figures, out / "lag.png"))
    return paths


def _save(fig: Any, ax: Axes, figures: Mapping[str, Any], path: Path) -> Path:
    _marks(ax, figures)
    for a in fig.axes:
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
