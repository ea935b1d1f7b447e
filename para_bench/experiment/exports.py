"""The report's machine-readable forms: ``cells.csv`` and ``matrix.tex``."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pandas as pd

from para_bench.experiment.cells import Cell
from para_bench.metrics import percent

if TYPE_CHECKING:
    from para_bench.experiment.report import Report

__all__ = ["cells_csv", "matrix_tex"]


def cells_csv(r: Report) -> pd.DataFrame:
    """One row per cell (and per row aggregated over seeds when there are several)."""
    rows = []
    for s in r.stages:
        if s.kind != "evaluate":
            continue
        m = s.meta
        c = Cell(r.df[r.df["stage"] == s.name] if len(r.df) else r.df)
        rows.append(_csv_row(m["agent"], m["baseline"], m["setting"], m["role"], m["split"],
                             m.get("demos"), m.get("train_seed"), c,
                             r.markers[s.name] is not None, s.output))
    if len(r.spec.train_seeds) > 1:
        for a in r.spec.agents:
            for s in r.spec.settings:
                for d in r.spec.demos:
                    for role in ("test", "heldout"):
                        c = r.cell(a, s, role, d)
                        if c.n:
                            rows.append(_csv_row(a, False, s, role, None, d, "all", c,
                                                 r.done(a, s, role, d), ""))
    df = pd.DataFrame(rows)
    if len(df):
        df["demos"] = df["demos"].astype("Int64")
    return df

def _csv_row(agent, baseline, setting, role, split, demos, seed, c: Cell, done, run_dir):
    return {"agent": agent, "kind": "baseline" if baseline else "agent",
            "setting": setting, "role": role, "split": split, "demos": demos,
            "train_seed": "" if seed is None else str(seed), "k": c.k, "n": c.n,
            "errors": c.errors,
            "success_pct": round(100 * c.rate, 2) if c.n else None,
            "lo": round(100 * c.lo, 2) if c.n else None,
            "hi": round(100 * c.hi, 2) if c.n else None,
            "jerk": round(c.jerk, 3) if not math.isnan(c.jerk) else None,
            "coverage": round(c.coverage, 4) if not math.isnan(c.coverage) else None,
            "done": done, "run_dir": run_dir}

def matrix_tex(r: Report) -> str:
    """The matrix (one tabular per demos value) as booktabs LaTeX."""
    settings = r.spec.settings
    parts = []
    for d in r.spec.demos:
        lines = ["\\begin{tabular}{l" + "c" * len(settings) + "}", "\\toprule",
                 " & ".join(["", *(s.replace("_", "\\_") for s in settings)]) + " \\\\",
                 "\\midrule"]
        for i, a in enumerate(r.rows):
            if i == len(r.spec.agents) and r.spec.agents:
                lines.append("\\midrule")
            cells = []
            for s in settings:
                c = r.cell(a, s, "test", d)
                cells.append("--" if not c.n else
                             f"{c.k}/{c.n}\\ {percent(c.rate)}\\% "
                             f"[{percent(c.lo)}, {percent(c.hi)}]")
            lines.append(" & ".join([a.replace("_", "\\_"), *cells]) + " \\\\")
        if any(s in r.quoted for s in settings):
            lines.append("\\midrule")
            lines.append(" & ".join(["\\textit{PARA single-frame (quoted)}",
                                     *(_tex_quoted(r.quoted.get(s, "--"))
                                       for s in settings)]) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}"]
        parts.append(f"% {r.spec.name}: {d} demos; k/n success% [95% CI]\n" +
                     "\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _tex_quoted(text: str) -> str:
    return "\\textit{" + text.replace("~", "$\\sim$").replace("%", "\\%") + "}"
