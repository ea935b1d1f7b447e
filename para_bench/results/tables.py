"""Tables from run folders: one row per episode, summaries per group, paired comparisons.

Counting rule: an episode with ``status == "error"`` (agent or simulator fault) counts in
``n`` and as a **failure** in the success rate and its Wilson interval; it is also
reported in the separate ``errors`` column. Trajectory metrics (jerk, coverage, steps)
are averaged over ``ok`` episodes only, NaN values ignored.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from numbers import Real
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from para_bench.metrics import mcnemar_exact, paired_bootstrap_diff, wilson_interval
from para_bench.results.store import RunStore, find_runs

__all__ = [
    "RECORD_COLUMNS",
    "SUMMARY_COLUMNS",
    "format_table",
    "paired_comparison",
    "records_frame",
    "summary_table",
    "to_markdown",
]

METRIC_COLUMNS = ("jerk", "accel_mean", "coverage", "coverage_3d", "path_length")
RECORD_COLUMNS = (
    "run", "agent", "suite", "split", "task", "episode_id", "status", "success", "steps",
    *METRIC_COLUMNS, "wall_time_s",
)  # fmt: skip
SUMMARY_COLUMNS = (
    "n", "errors", "k", "success_pct", "ci_low_pct", "ci_high_pct", "jerk", "coverage", "steps",
)  # fmt: skip


def _flatten(metrics: dict, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, prefix=f"{name}."))
        elif isinstance(value, (Real, np.number, np.bool_)):
            out[name] = float(value)
    return out


def _agent_label(agent: str, checkpoint: str | None, control: str,
                 policy: dict | None = None) -> str:
    label = f"{agent}[{Path(checkpoint).stem}]" if checkpoint else agent
    if policy:  # a remote policy: what the server serves, not the client's name
        server = policy.get("server") or {}
        if policy.get("format") == "para-bench" and server.get("agent"):
            sha = server.get("checkpoint_sha")
            label = f"remote:{server['agent']}" + (f"[{sha[:8]}]" if sha else "")
        else:
            label = f"remote:{policy.get('format')}@{urlparse(policy.get('url', '')).netloc}"
    return label if control in ("servo", None) else f"{label} ({control})"


def records_frame(run_dirs: Iterable[str | os.PathLike] | str | os.PathLike) -> pd.DataFrame:
    """One row per episode record of the given run folders.

    Args:
        run_dirs: run folders; a single path is expanded with :func:`find_runs`.

    Returns:
        Columns :data:`RECORD_COLUMNS` (``run`` is the folder path; ``agent`` is the agent
        name, followed by ``[checkpoint file stem]`` for agents run from a checkpoint and
        ``(control mode)`` for runs not under the default ``servo``, so two checkpoints or
        two protocols of one policy stay apart; a remote policy is
        ``remote:<served agent>[<checkpoint sha>]`` or ``remote:<format>@<host:port>``;
        ``suite`` and ``split`` come from the record's spec; missing metrics are NaN), then
        every other numeric entry of ``metrics``, nested dicts flattened as ``outer.inner``.
    """
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = find_runs(run_dirs)
    rows = []
    for run_dir in run_dirs:
        store = RunStore(run_dir)
        control = ((store.read_manifest() or {}).get("config") or {}).get("control", "servo")
        for rec in store.records():
            metrics = _flatten(rec.metrics or {})
            row: dict = {
                "run": str(Path(run_dir)),
                "agent": _agent_label(rec.agent, rec.checkpoint, control, rec.policy),
                "suite": rec.spec.get("suite"),
                "split": rec.spec.get("split"),
                "task": rec.task,
                "episode_id": rec.episode_id,
                "status": rec.status,
                "success": bool(rec.success) and rec.status == "ok",
                "steps": int(rec.steps),
            }
            for name in METRIC_COLUMNS:
                row[name] = metrics.pop(name, math.nan)
            row["wall_time_s"] = float(rec.wall_time_s)
            for name, value in metrics.items():
                row[name if name not in row else f"metrics.{name}"] = value
            rows.append(row)
    df = pd.DataFrame(rows)
    extra = sorted(c for c in df.columns if c not in RECORD_COLUMNS)
    return df.reindex(columns=[*RECORD_COLUMNS, *extra])


def summary_table(
    df: pd.DataFrame, by: Sequence[str] = ("agent", "suite", "split")
) -> pd.DataFrame:
    """Success with Wilson interval and mean trajectory metrics per group.

    Args:
        df: a :func:`records_frame`.
        by: grouping columns.

    Returns:
        One row per group: the ``by`` columns, then ``n`` (episodes, errors included),
        ``errors``, ``k`` (successes), ``success_pct``, ``ci_low_pct``, ``ci_high_pct``
        (95% Wilson over all ``n`` episodes, errors counted as failures), and ``jerk``,
        ``coverage``, ``steps`` (means over ``ok`` episodes, NaN ignored).
    """
    by = list(by)
    rows = []
    if len(df):
        for keys, g in df.groupby(by, sort=True, dropna=False):
            keys = keys if isinstance(keys, tuple) else (keys,)
            ok = g[g["status"] == "ok"]
            k = int((g["success"].astype(bool) & (g["status"] == "ok")).sum())
            n = len(g)
            low, high = wilson_interval(k, n)
            rows.append(
                {
                    **dict(zip(by, keys, strict=True)),
                    "n": n,
                    "errors": n - len(ok),
                    "k": k,
                    "success_pct": 100.0 * k / n,
                    "ci_low_pct": 100.0 * low,
                    "ci_high_pct": 100.0 * high,
                    "jerk": ok["jerk"].mean(),
                    "coverage": ok["coverage"].mean(),
                    "steps": ok["steps"].mean(),
                }
            )
    return pd.DataFrame(rows, columns=[*by, *SUMMARY_COLUMNS])


def _num(value: float, digits: int) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def _success_parts(row: pd.Series) -> tuple[str, str, str]:
    k, n = int(row["k"]), int(row["n"])
    if n == 0:
        return f"{k}/{n}", "-", ""
    ci = f"[{row['ci_low_pct']:.1f}, {row['ci_high_pct']:.1f}]"
    return f"{k}/{n}", f"{row['success_pct']:.1f}%", ci


def _success_cells(summary: pd.DataFrame, align: bool) -> list[str]:
    """``k/n  rate% [low, high]`` per row; ``align`` pads k/n and the rate to common widths."""
    parts = [_success_parts(row) for _, row in summary.iterrows()]
    if not parts:
        return []
    wk = max(len(p[0]) for p in parts) if align else 0
    wr = max(len(p[1]) for p in parts) if align else 0
    return [f"{kn:>{wk}}  {rate:>{wr}} {ci}".rstrip() for kn, rate, ci in parts]


def _cells(summary: pd.DataFrame, align: bool) -> tuple[list[str], list[list[str]], list[bool]]:
    """Header, string rows and right-alignment flags shared by both renderers."""
    success = _success_cells(summary, align)
    keys = [c for c in summary.columns if c not in SUMMARY_COLUMNS]
    header = [*keys, "success (k/n, 95% CI)", "errors", "jerk m/s^3", "coverage", "steps"]
    right = [False] * len(keys) + [False, True, True, True, True]
    rows = [
        [
            *(str(row[c]) for c in keys),
            success[i],
            str(int(row["errors"])),
            _num(row["jerk"], 2),
            _num(row["coverage"], 2),
            _num(row["steps"], 1),
        ]
        for i, (_, row) in enumerate(summary.iterrows())
    ]
    return header, rows, right


def format_table(summary: pd.DataFrame) -> str:
    """Fixed-width plain-text rendering of a :func:`summary_table` for the terminal.

    The success column reads like ``17/20  85.0% [64.0, 94.8]``; errors are shown in their
    own column (and are already counted as failures in the success column).
    """
    header, rows, right = _cells(summary, align=True)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        parts = [
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)]) + "\n"


def to_markdown(summary: pd.DataFrame) -> str:
    """GitHub-flavoured Markdown rendering of a :func:`summary_table`."""
    header, rows, right = _cells(summary, align=False)

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = "|" + "|".join("---:" if r else "---" for r in right) + "|"
    return "\n".join([line(header), align, *(line(r) for r in rows)]) + "\n"


def paired_comparison(
    df: pd.DataFrame, agent_a: str, agent_b: str, suite: str | None = None
) -> dict:
    """Compares two agents on the episodes both ran (joined on ``episode_id``).

    Errors count as failures. When an agent has several records of one episode (several
    runs), the first is used.

    Args:
        df: a :func:`records_frame`.
        agent_a: baseline agent.
        agent_b: agent compared against it.
        suite: restrict to one suite; None uses every suite.

    Returns:
        ``agent_a``, ``agent_b``, ``suite``, ``n_pairs``, ``only_a`` / ``only_b`` (unpaired
        episodes, left out), ``k_a``, ``k_b``, ``success_a``, ``success_b`` (fractions),
        ``diff`` (``success_b - success_a``), ``ci_low`` / ``ci_high`` (95% paired bootstrap
        of ``diff``), ``b01`` (A fails, B succeeds), ``b10`` and ``p_value`` (exact McNemar).
    """
    d = df if suite is None else df[df["suite"] == suite]
    won = d["success"].astype(bool) & (d["status"] == "ok")
    d = d.assign(won=won)[["agent", "episode_id", "won"]]
    a = d[d["agent"] == agent_a].drop_duplicates("episode_id")
    b = d[d["agent"] == agent_b].drop_duplicates("episode_id")
    m = a.merge(b, on="episode_id", suffixes=("_a", "_b"))
    sa = m["won_a"].to_numpy(dtype=bool)
    sb = m["won_b"].to_numpy(dtype=bool)
    n = len(m)
    diff, low, high = paired_bootstrap_diff(sa, sb)
    test = mcnemar_exact(sa, sb)
    return {
        "agent_a": agent_a,
        "agent_b": agent_b,
        "suite": suite,
        "n_pairs": n,
        "only_a": len(a) - n,
        "only_b": len(b) - n,
        "k_a": int(sa.sum()),
        "k_b": int(sb.sum()),
        "success_a": float(sa.mean()) if n else math.nan,
        "success_b": float(sb.mean()) if n else math.nan,
        "diff": diff,
        "ci_low": low,
        "ci_high": high,
        "b01": test["b01"],
        "b10": test["b10"],
        "p_value": test["p_value"],
    }
