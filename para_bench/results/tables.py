"""Tables from run folders: one row per episode, summaries per group, paired comparisons.

Counting rule: an episode with ``status == "error"`` (agent, simulator or worker fault)
counts in ``n`` and as a **failure** in the success rate and its Wilson interval; it is
also reported in the separate ``errors`` column. An ``infeasible`` episode (a scene that
cannot take its perturbation) is not a trial: it is left out of ``n`` and shown in its own
column. Trajectory metrics (jerk, coverage, steps) are averaged over ``ok`` episodes only,
NaN values ignored.

Rows are keyed by the full identity of what produced them, never by a file name: the
``agent`` label is the agent name, ``[checkpoint file stem@sha256 prefix]`` when it ran
from a checkpoint, and, in parentheses, every run setting that differs from the defaults
(control mode as executed -- ``servo+teleport`` when an agent switched chunks to
``teleport`` in a ``servo`` run -- max steps, action scale, image size, zero rotation,
render quality, physics loop, agent arguments, training scenes allowed). A remote policy
(``--agent remote``) is labelled by what the server serves: ``remote:<agent>[<checkpoint
sha256 prefix>]``, or ``remote:<format>@<host:port>`` for servers that are not para-bench's.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from numbers import Real
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from para_bench.metrics import mcnemar_exact, paired_bootstrap_diff, percent, wilson_interval
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
    "run", "agent", "settings", "suite", "split", "task", "episode_id", "status", "success",
    "steps",
    *METRIC_COLUMNS, "wall_time_s",
)  # fmt: skip
SUMMARY_COLUMNS = (
    "n", "errors", "infeasible", "k", "success_pct", "ci_low_pct", "ci_high_pct", "jerk",
    "coverage", "steps",
)  # fmt: skip
#: Identity settings and their defaults; a label names each one that differs.
SETTING_DEFAULTS = {"max_steps": 600, "action_scale": 1.0, "image_size": 128,
                    "zero_rotation": False, "render_quality": "fast", "physics": None,
                    "agent_args": {}, "allow_train_scenes": False}
#: What must match for two runs' episodes to be compared pairwise.
COMPARABLE_SETTINGS = ("control", "zero_rotation", "max_steps", "action_scale", "image_size",
                       "render_quality", "physics", "control_path_version")


def _flatten(metrics: dict, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, prefix=f"{name}."))
        elif isinstance(value, (Real, np.number, np.bool_)):
            out[name] = float(value)
    return out


def run_label(agent: str, checkpoint: str | None, checkpoint_sha: str | None,
              identity: dict, modes_seen: set[str]) -> str:
    """The row label of a run's records (see the module docstring)."""
    label = agent
    if checkpoint or checkpoint_sha:
        stem = Path(checkpoint).stem if checkpoint else "ckpt"
        label += f"[{stem}@{(checkpoint_sha or '')[:8]}]" if checkpoint_sha else f"[{stem}]"
    control = identity.get("control", "servo")
    extra = sorted(m for m in modes_seen if m not in (control, "delta"))
    parts = []
    if control != "servo" or extra:
        parts.append("+".join([control, *extra]))
    for key, default in SETTING_DEFAULTS.items():
        value = identity.get(key, default)
        if key == "physics" and value in (None, "fast"):
            continue
        if value != default:
            shown = json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
            parts.append(f"{key}={shown}")
    return f"{label} ({', '.join(parts)})" if parts else label


#: Remote agents' arguments already named by their label (or that change no outcome).
REMOTE_LABELLED_ARGS = ("policy_url", "policy_format", "served", "timeout")


def remote_label(policy: dict) -> str:
    """The label of a remote policy's records: what the server said it serves."""
    server = policy.get("server") or {}
    if policy.get("format") == "para-bench" and server.get("agent"):
        sha = server.get("checkpoint_sha")
        return f"remote:{server['agent']}" + (f"[{sha[:8]}]" if sha else "")
    return f"remote:{policy.get('format')}@{urlparse(policy.get('url', '')).netloc}"


def _identity(manifest: dict) -> dict:
    """A run's identity; manifests of older runs only had the config."""
    if "identity" in manifest:
        return dict(manifest["identity"])
    return dict(manifest.get("config") or {})


def records_frame(run_dirs: Iterable[str | os.PathLike] | str | os.PathLike) -> pd.DataFrame:
    """One row per episode record of the given run folders.

    Args:
        run_dirs: run folders; a single path is expanded with :func:`find_runs`.

    Returns:
        Columns :data:`RECORD_COLUMNS` (``run`` is the folder path; ``agent`` is the row
        label of the run's identity, see the module docstring; ``settings`` the JSON of the
        run's :data:`COMPARABLE_SETTINGS`; ``suite`` and ``split`` come from the record's
        spec; missing metrics are NaN), then every other numeric entry of ``metrics``,
        nested dicts flattened as ``outer.inner``.
    """
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = find_runs(run_dirs)
    rows = []
    for run_dir in run_dirs:
        store = RunStore(run_dir)
        identity = _identity(store.read_manifest() or {})
        settings = json.dumps({k: identity.get(k) for k in COMPARABLE_SETTINGS},
                              sort_keys=True)
        records = store.records()
        modes = {m for r in records for m in ((r.metrics or {}).get("control_modes") or {})}
        for rec in records:
            metrics = _flatten(rec.metrics or {})
            label_args = (rec.agent, rec.checkpoint, rec.checkpoint_sha, identity)
            if rec.policy:
                args = {k: v for k, v in (identity.get("agent_args") or {}).items()
                        if k not in REMOTE_LABELLED_ARGS}
                label_args = (remote_label(rec.policy), None, None,
                              {**identity, "agent_args": args})
            row: dict = {
                "run": str(Path(run_dir)),
                "agent": run_label(*label_args, modes),
                "settings": settings,
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
        One row per group: the ``by`` columns, then ``n`` (trials: errors included,
        infeasible scenes not), ``errors``, ``infeasible``, ``k`` (successes),
        ``success_pct``, ``ci_low_pct``, ``ci_high_pct`` (95% Wilson over the ``n`` trials,
        errors counted as failures), and ``jerk``, ``coverage``, ``steps`` (means over ``ok``
        episodes, NaN ignored).
    """
    by = list(by)
    rows = []
    if len(df):
        for keys, g in df.groupby(by, sort=True, dropna=False):
            keys = keys if isinstance(keys, tuple) else (keys,)
            infeasible = int((g["status"] == "infeasible").sum())
            g = g[g["status"] != "infeasible"]
            ok = g[g["status"] == "ok"]
            k = int((g["success"].astype(bool) & (g["status"] == "ok")).sum())
            n = len(g)
            low, high = wilson_interval(k, n)
            rows.append(
                {
                    **dict(zip(by, keys, strict=True)),
                    "n": n,
                    "errors": n - len(ok),
                    "infeasible": infeasible,
                    "k": k,
                    "success_pct": 100.0 * k / n if n else math.nan,
                    "ci_low_pct": 100.0 * low,
                    "ci_high_pct": 100.0 * high,
                    "jerk": ok["jerk"].mean(),
                    "coverage": ok["coverage"].mean(),
                    "steps": ok["steps"].mean(),
                }
            )
    return pd.DataFrame(rows, columns=[*by, *SUMMARY_COLUMNS])


def _settings_diff(a: set[str], b: set[str]) -> str:
    sa = [json.loads(x) for x in sorted(a)]
    sb = [json.loads(x) for x in sorted(b)]
    parts = []
    for key in COMPARABLE_SETTINGS:
        va, vb = {json.dumps(x.get(key)) for x in sa}, {json.dumps(x.get(key)) for x in sb}
        if va != vb:
            parts.append(f"{key} {'/'.join(sorted(va))} vs {'/'.join(sorted(vb))}")
    return "; ".join(parts) or "mixed settings"


def _num(value: float, digits: int) -> str:
    return "-" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def _success_parts(row: pd.Series) -> tuple[str, str, str]:
    k, n = int(row["k"]), int(row["n"])
    if n == 0:
        return f"{k}/{n}", "-", ""
    ci = f"[{percent(row['ci_low_pct'] / 100)}, {percent(row['ci_high_pct'] / 100)}]"
    return f"{k}/{n}", f"{percent(k / n)}%", ci


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
    header = [*keys, "success (k/n, 95% CI)", "errors", "infeasible", "jerk m/s^3",
              "coverage", "steps"]
    right = [False] * len(keys) + [False, True, True, True, True, True]
    rows = [
        [
            *(str(row[c]) for c in keys),
            success[i],
            str(int(row["errors"])),
            str(int(row["infeasible"])),
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

    Errors count as failures; infeasible episodes are left out. The two agents' runs must
    share their :data:`COMPARABLE_SETTINGS` (else ``ValueError`` names the difference), and
    each agent may have only one record per episode (else ``ValueError``: two runs of one
    identity on the same episodes).

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
    d = d[d["status"] != "infeasible"]
    won = d["success"].astype(bool) & (d["status"] == "ok")
    d = d.assign(won=won)
    settings_a = set(d.loc[d["agent"] == agent_a, "settings"].dropna())
    settings_b = set(d.loc[d["agent"] == agent_b, "settings"].dropna())
    if settings_a and settings_b and settings_a != settings_b:
        diff = _settings_diff(settings_a, settings_b)
        raise ValueError(f"{agent_a} and {agent_b} ran under different settings ({diff}); "
                         "a paired comparison needs the same protocol")
    d = d[["agent", "episode_id", "won"]]
    a, b = d[d["agent"] == agent_a], d[d["agent"] == agent_b]
    for name, part in ((agent_a, a), (agent_b, b)):
        if part["episode_id"].duplicated().any():
            raise ValueError(f"{name} has several records of one episode (several runs of "
                             "the same identity); compare one run folder per agent")
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
