"""Figures from a :func:`~para_bench.results.tables.summary_table` (matplotlib, Agg)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["plot_comparison"]


def _column_label(summary: pd.DataFrame) -> pd.Series:
    if "split" in summary.columns:
        return summary["suite"].astype(str) + "/" + summary["split"].astype(str)
    return summary["suite"].astype(str)


def plot_comparison(summary: pd.DataFrame, out_path: str | os.PathLike) -> Path:
    """Success per suite and agent: grouped bars with Wilson intervals, and a heatmap.

    Left panel: bars of success % per suite (x; ``suite/split`` when the summary has a
    ``split`` column) and agent (colour), 95% Wilson error bars, ``k/n`` above each bar.
    Right panel: agent x suite heatmap of success % with the value in each cell.

    Args:
        summary: a :func:`~para_bench.results.tables.summary_table` grouped at least by
            ``agent`` and ``suite`` (one row per agent and suite).
        out_path: PNG file to write; parent folders are created.

    Returns:
        The written path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    missing = {"agent", "suite"} - set(summary.columns)
    if missing:
        raise ValueError(f"summary needs columns agent and suite; missing {sorted(missing)}")
    if summary.empty:
        raise ValueError("summary is empty: nothing to plot")
    labels = list(_column_label(summary))
    records = summary.to_dict("records")
    cell = {(str(r["agent"]), c): r for r, c in zip(records, labels, strict=True)}
    agents = list(dict.fromkeys(a for a, _ in cell))
    cols = list(dict.fromkeys(labels))

    bar_w = max(4.0, 1.0 + len(cols) * (0.4 + 0.6 * len(agents)))
    map_w = max(3.5, 1.5 + 0.9 * len(cols))
    fig, (ax_bar, ax_map) = plt.subplots(
        1,
        2,
        figsize=(bar_w + map_w, max(4.0, 1.5 + 0.45 * len(agents))),
        gridspec_kw={"width_ratios": [bar_w, map_w]},
    )
    width = 0.8 / max(2, len(agents))
    x = np.arange(len(cols))
    colors = plt.get_cmap("tab10")
    for i, agent in enumerate(agents):
        offset = (i - (len(agents) - 1) / 2) * width
        present = [j for j, c in enumerate(cols) if (agent, c) in cell]
        xs = x[present] + offset
        rows = [cell[agent, cols[j]] for j in present]
        pct = np.array([r["success_pct"] for r in rows], dtype=float)
        low = np.array([r["ci_low_pct"] for r in rows], dtype=float)
        high = np.array([r["ci_high_pct"] for r in rows], dtype=float)
        err = np.vstack([pct - low, high - pct])
        ax_bar.bar(xs, pct, width, yerr=err, capsize=3, color=colors(i % 10), label=agent)
        for xi, r in zip(xs, rows, strict=True):
            label = f"{int(r['k'])}/{int(r['n'])}"
            ax_bar.text(xi, r["ci_high_pct"] + 2, label, ha="center", fontsize=8)
    tilt = {"rotation": 20, "ha": "right"} if len(cols) > 3 else {}
    ax_bar.set_xticks(x, cols, **tilt)
    ax_bar.set_ylim(0, 125)
    ax_bar.set_ylabel("success % (95% Wilson CI)")
    ax_bar.set_title("Success per suite")
    ax_bar.legend(fontsize=8, loc="upper right", ncols=min(len(agents), 4))

    grid = np.full((len(agents), len(cols)), np.nan)
    for (agent, col), r in cell.items():
        grid[agents.index(agent), cols.index(col)] = r["success_pct"]
    im = ax_map.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto")
    for i in range(len(agents)):
        for j in range(len(cols)):
            v = grid[i, j]
            text = "n/a" if np.isnan(v) else f"{v:.0f}"
            color = "black" if np.isnan(v) or v > 60 else "white"
            ax_map.text(j, i, text, ha="center", va="center", fontsize=9, color=color)
    ax_map.set_xticks(range(len(cols)), cols, **tilt)
    ax_map.set_yticks(range(len(agents)), agents)
    ax_map.set_title("Success % (agent x suite)")
    fig.colorbar(im, ax=ax_map, fraction=0.046, pad=0.04)
    fig.tight_layout()

    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
