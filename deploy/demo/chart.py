"""The PNG a marketer looks at: the funnel, score distributions by stage, and per-program email
performance (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

FUNNEL = ("all leads", "mql", "sql", "opportunity", "customer")
GROUPS = {"lead, subscriber, recycled": ("subscriber", "lead", "cold", "recycled", "disqualified"),
          "mql": ("mql",), "sql / opportunity": ("sql", "opportunity"), "customer": ("customer",)}
COLORS = ("#9aa5b1", "#f0a202", "#d95d39", "#2a9d8f")


def draw(rep: dict[str, Any], path: Path) -> None:
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.8), dpi=80,
                                        gridspec_kw={"width_ratios": [1, 1.1, 1.3]})
    reached = rep["funnel"]["reached"]
    values = [sum(rep["funnel"]["leads_by_stage"].values()),
              *(reached.get(s, 0) for s in FUNNEL[1:])]
    bars = ax1.barh(list(FUNNEL)[::-1], values[::-1], color="#264653")
    for bar, value, stage in zip(bars, values[::-1], list(FUNNEL)[::-1], strict=True):
        idx = FUNNEL.index(stage)
        label = f"{value}" + (f"  ({100 * value / values[idx - 1]:.0f} %)"
                              if idx and values[idx - 1] else "")
        ax1.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + label,
                 va="center", fontsize=9)
    ax1.set_xlim(0, max(values or [1]) * 1.35)
    ax1.set_title("Funnel: leads that reached each stage")
    ax1.set_xlabel("leads")

    scores = rep["scores"]
    data = [[s["score"] for s in scores if s["stage"] in stages] for stages in GROUPS.values()]
    lo = min((min(d) for d in data if d), default=0)
    hi = max((max(d) for d in data if d), default=100)
    ax2.hist(data, bins=30, range=(lo, hi), stacked=True, color=COLORS,
             label=list(GROUPS))
    for name, x in (("mql", 50), ("sql", 100)):
        ax2.axvline(x, color="black", linestyle="--", linewidth=0.8)
        ax2.text(x, ax2.get_ylim()[1] * 0.95, f" {name}", fontsize=8)
    ax2.set_title("b2b score by current stage")
    ax2.set_xlabel("score")
    ax2.set_ylabel("leads")
    ax2.legend(fontsize=8, loc="right")

    progs = [(k, v) for k, v in rep["programs"].items() if v.get("sent")]
    progs.sort(key=lambda kv: kv[1]["sent"])
    names = [k for k, _ in progs]
    ys = range(len(progs))
    for offset, key, color in ((-0.27, "sent", "#264653"), (0, "opened", "#2a9d8f"),
                               (0.27, "clicked", "#e76f51")):
        ax3.barh([y + offset for y in ys], [v.get(key, 0) for _, v in progs], height=0.26,
                 color=color, label=key)
    ax3.set_yticks(list(ys), names, fontsize=8)
    ax3.set_title("Emails per program")
    ax3.legend(fontsize=8, loc="lower right")
    run = rep["run"]
    fig.suptitle(f"Nurture demo: {run['leads']} simulated leads over {run['days']} days",
                 fontsize=12)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=80)
    plt.close(fig)
