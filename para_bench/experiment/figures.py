"""The report's plots (matplotlib, Agg), from the same cells as the tables.

- ``matrix.png``: rows x settings heatmap of success %, ``k/n`` in each cell (one panel per
  demos value);
- ``bars.png``: grouped bars per setting with the 95% intervals;
- ``perturbation.png``: success against perturbation size per agent, for settings whose
  test episodes carry one (``dist_to_train_m`` on ``pos_ood``, ``off_axis_deg`` on
  ``viewpoint_ood``; any other numeric ``spec.extra`` otherwise), Wilson intervals;
- ``training.png``: training loss curves (one panel per setting);
- ``demos.png``: success against demos (only when several demos values).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from para_bench.metrics import percent, wilson_interval

if TYPE_CHECKING:
    from para_bench.experiment.report import Report

__all__ = ["PERTURBATION_KEYS", "write_figures"]

#: setting -> the spec.extra field that measures how far a test scene is from training
PERTURBATION_KEYS = {"pos_ood": "dist_to_train_m", "viewpoint_ood": "off_axis_deg"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return str(path)


def matrix_png(r: Report, path: Path) -> str:
    plt = _plt()
    demos, settings, rows = r.spec.demos, r.spec.settings, r.rows
    fig, axes = plt.subplots(1, len(demos), squeeze=False,
                             figsize=(1.6 + 1.9 * len(settings) * len(demos),
                                      1.2 + 0.5 * len(rows)))
    for ax, d in zip(axes[0], demos, strict=True):
        grid = np.full((len(rows), len(settings)), np.nan)
        for i, a in enumerate(rows):
            for j, s in enumerate(settings):
                c = r.cell(a, s, "test", d)
                if c.n:
                    grid[i, j] = 100 * c.rate
                    ax.text(j, i, f"{c.k}/{c.n}\n{percent(c.rate, 0)}%", ha="center",
                            va="center", fontsize=8,
                            color="black" if grid[i, j] > 60 else "white")
                else:
                    ax.text(j, i, "n/a", ha="center", va="center", fontsize=8)
        ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(settings)), settings)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_title(f"success % ({d} demos)" if r.spec.agents else "success %", fontsize=9)
    return _save(fig, path)


def _below(upper: float, lower: float) -> float:
    """An error-bar length ``upper - lower``, never negative (an interval bound can differ
    from the rate by rounding when all episodes succeed or fail)."""
    return max(0.0, upper - lower)


def bars_png(r: Report, path: Path) -> str:
    plt = _plt()
    d = max(r.spec.demos)
    settings, rows = r.spec.settings, r.rows
    fig, ax = plt.subplots(figsize=(1.5 + len(settings) * (0.5 + 0.45 * len(rows)), 4))
    width = 0.8 / max(1, len(rows))
    colors = plt.get_cmap("tab10")
    for i, a in enumerate(rows):
        xs, ys, lo, hi = [], [], [], []
        for j, s in enumerate(settings):
            c = r.cell(a, s, "test", d)
            if c.n:
                xs.append(j + (i - (len(rows) - 1) / 2) * width)
                ys.append(100 * c.rate)
                lo.append(_below(100 * c.rate, 100 * c.lo))
                hi.append(_below(100 * c.hi, 100 * c.rate))
        ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=a, color=colors(i % 10))
    ax.set_xticks(range(len(settings)), settings)
    ax.set_ylim(0, 105)
    ax.set_ylabel("success % (95% CI)")
    # outside the axes: a bar at any height stays visible
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title(f"success per setting ({d} demos)" if r.spec.agents else "success per setting")
    return _save(fig, path)


def perturbation_png(r: Report, path: Path) -> str | None:
    plt = _plt()
    d = max(r.spec.demos)
    df = r.df[(r.df["role"] == "test")] if len(r.df) else r.df
    panels = []
    for s in r.spec.settings:
        col = f"spec_{PERTURBATION_KEYS[s]}" if s in PERTURBATION_KEYS else None
        sub = df[df["setting"] == s] if len(df) else df
        if col is None or col not in sub.columns:
            extra = [c for c in sub.columns if c.startswith("spec_") and sub[c].notna().any()]
            col = extra[0] if extra else None
        if col is not None and sub[col].notna().any():
            panels.append((s, col, sub[sub[col].notna()]))
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), squeeze=False, figsize=(4.5 * len(panels), 3.6))
    colors = plt.get_cmap("tab10")
    for ax, (s, col, sub) in zip(axes[0], panels, strict=True):
        for i, a in enumerate(r.rows):
            g = sub[(sub["agent"] == a) & (sub["demos"].isna() | (sub["demos"] == d))]
            if not len(g):
                continue
            xs = sorted(g[col].unique())
            span = (sub[col].max() - sub[col].min()) or 1.0
            dodge = (i - (len(r.rows) - 1) / 2) * 0.012 * span  # overlapping lines stay visible
            k = [int(g[g[col] == x]["success"].sum()) for x in xs]
            n = [int((g[col] == x).sum()) for x in xs]
            rate = [100 * ki / ni for ki, ni in zip(k, n, strict=True)]
            ci = [wilson_interval(ki, ni) for ki, ni in zip(k, n, strict=True)]
            err = [[_below(ra, 100 * c[0]) for ra, c in zip(rate, ci, strict=True)],
                   [_below(100 * c[1], ra) for ra, c in zip(rate, ci, strict=True)]]
            ax.errorbar([x + dodge for x in xs], rate, yerr=err, marker="o", ms=3, capsize=2,
                        lw=1, label=a,
                        color=colors(i % 10))
        ax.set_xlabel(col[len("spec_"):])
        ax.set_ylabel("success % (95% Wilson)")
        ax.set_ylim(-5, 105)
        ax.set_title(f"{s}: success vs perturbation size", fontsize=9)
        ax.legend(fontsize=7)
    return _save(fig, path)


def training_png(r: Report, path: Path) -> str | None:
    plt = _plt()
    curves: dict[str, list] = {}
    for s in r.stages:
        if s.kind == "train":
            info = r.book.train_summary(s)
            if info and info.get("curve"):
                curves.setdefault(s.meta["setting"], []).append((s, info["curve"]))
    if not curves:
        return None
    fig, axes = plt.subplots(1, len(curves), squeeze=False, figsize=(4.5 * len(curves), 3.4))
    for ax, (setting, items) in zip(axes[0], curves.items(), strict=True):
        for s, curve in items:
            label = s.meta["agent"]
            if len(r.spec.demos) > 1 or len(r.spec.train_seeds) > 1:
                label += f" d{s.meta['demos']} s{s.meta['train_seed']}"
            ax.plot([c["step"] for c in curve], [c["loss"] for c in curve], lw=1, label=label)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("training loss")
        ax.set_title(f"trained on {setting}", fontsize=9)
        ax.legend(fontsize=7)
    return _save(fig, path)


def demos_png(r: Report, path: Path) -> str | None:
    if len(r.spec.demos) < 2 or not r.spec.agents:
        return None
    plt = _plt()
    settings = r.spec.settings
    fig, axes = plt.subplots(1, len(settings), squeeze=False, figsize=(4.2 * len(settings), 3.4))
    for ax, s in zip(axes[0], settings, strict=True):
        for a in r.spec.agents:
            pts = [(d, r.cell(a, s, "test", d)) for d in r.spec.demos]
            pts = [(d, c) for d, c in pts if c.n]
            if not pts:
                continue
            xs = [d for d, _ in pts]
            ys = [100 * c.rate for _, c in pts]
            err = [[_below(100 * c.rate, 100 * c.lo) for _, c in pts],
                   [_below(100 * c.hi, 100 * c.rate) for _, c in pts]]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=2, label=a)
        ax.set_xlabel("demos")
        ax.set_ylabel("success % (95% CI)")
        ax.set_ylim(-5, 105)
        ax.set_title(s, fontsize=9)
        ax.legend(fontsize=7)
    return _save(fig, path)


def write_figures(r: Report, out: Path) -> list[str]:
    """Writes every plot that has data into ``out``; returns the written paths."""
    if not len(r.df) and not any(s.kind == "train" for s in r.stages):
        return []
    written = []
    if len(r.df):
        written += [matrix_png(r, out / "matrix.png"), bars_png(r, out / "bars.png")]
        written.append(perturbation_png(r, out / "perturbation.png"))
    written.append(training_png(r, out / "training.png"))
    if len(r.df):
        written.append(demos_png(r, out / "demos.png"))
    return [w for w in written if w]
