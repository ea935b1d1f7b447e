"""Cells of an experiment, computed from its run folders' records alone.

A **cell** is (agent or baseline, setting, demos, train seed, role): the episodes of one
evaluate stage. Rows aggregate a learned agent's cells over training seeds: ``k/n`` sums
the episodes, the rate is the mean of the per-seed rates and the interval a stratified
bootstrap over seeds (:func:`~para_bench.metrics.stratified_bootstrap_rate`); with one
seed, or when every episode failed (or every one succeeded) and a bootstrap would collapse
to a point, it is the 95% Wilson interval of the pooled episodes. Errors count as
failures (and in ``errors``); an ``infeasible`` scene (it cannot take its perturbation) is
not a trial: left out of ``n``, counted in ``infeasible``. Trajectory metrics are means
over ``ok`` episodes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from para_bench.evaluation.stages import APPROACH_M
from para_bench.experiment.stages import Stage
from para_bench.metrics import (
    bootstrap_rate_diff,
    mcnemar_exact,
    paired_bootstrap_diff,
    percent,
    stratified_bootstrap_rate,
    wilson_interval,
)
from para_bench.results.store import RunStore

__all__ = ["Cell", "episodes_frame", "gap", "paired_vs", "row_cell"]

REACHED = ("none", "approached", "grasped", "placed")
#: where a failed episode's first grasp attempt began (:func:`grasp_attempt`)
GRASP_ATTEMPT = ("on_object", "away", "none")


def episodes_frame(stages: list[Stage], root: Path) -> pd.DataFrame:
    """One row per recorded episode of every evaluate stage (finished or not).

    Columns: ``stage``, ``agent``, ``baseline``, ``setting``, ``split``, ``role``, ``demos``,
    ``train_seed``, ``run_dir``, ``episode_id``, ``status``, ``success`` (ok and solved),
    ``steps``, ``jerk``, ``coverage``, ``reached`` (stage reached), ``grasp_attempt``
    (:func:`grasp_attempt`), ``error``, and every numeric ``spec.extra`` entry as
    ``spec_<name>``.
    """
    rows = []
    for s in stages:
        if s.kind != "evaluate":
            continue
        folder = Path(root) / s.output
        for rec in RunStore(folder).records():
            m = rec.metrics or {}
            row = {
                "stage": s.name, "agent": s.meta["agent"], "baseline": s.meta["baseline"],
                "setting": s.meta["setting"], "split": s.meta["split"], "role": s.meta["role"],
                "demos": s.meta.get("demos"), "train_seed": s.meta.get("train_seed"),
                "run_dir": s.output, "episode_id": rec.episode_id, "status": rec.status,
                "success": bool(rec.success) and rec.status == "ok", "steps": rec.steps,
                "jerk": _num(m.get("jerk")), "coverage": _num(m.get("coverage")),
                "reached": m.get("stage") if rec.status == "ok" else "error",
                "grasp_attempt": grasp_attempt(m) if rec.status == "ok" else None,
                "error": rec.error,
            }
            for k, v in (rec.spec.get("extra") or {}).items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    row[f"spec_{k}"] = float(v)
            rows.append(row)
    cols = ["stage", "agent", "baseline", "setting", "split", "role", "demos", "train_seed",
            "run_dir", "episode_id", "status", "success", "steps", "jerk", "coverage",
            "reached", "grasp_attempt", "error"]
    df = pd.DataFrame(rows)
    return df.reindex(columns=[*cols, *sorted(c for c in df.columns if c not in cols)])


def grasp_attempt(metrics: dict[str, Any]) -> str | None:
    """Where an episode's first grasp attempt began (:mod:`para_bench.evaluation.stages`):
    ``on_object`` (within :data:`~para_bench.evaluation.stages.APPROACH_M` of the object's
    surface), ``away``, ``none`` (no attempt); None when the record does not say (no
    tracked object, or a record written before it was recorded)."""
    if "grasp_attempt_step" not in metrics or metrics.get("approached") is None:
        return None  # an older record, or no tracked object (``approached`` is None)
    if metrics["grasp_attempt_step"] is None:
        return "none"
    dist = metrics.get("grasp_attempt_m")
    if dist is None:
        return None
    return "on_object" if dist < APPROACH_M else "away"


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


class Cell:
    """Success and trajectory metrics of a set of episodes, split by training seed.

    Attributes:
        k, n, errors: successes, episodes (errors included), errored episodes.
        infeasible: scenes left out of ``n`` (they cannot take their perturbation).
        rate, lo, hi: success rate and its 95% interval (fractions; NaN when ``n == 0``).
        per_seed: training seed -> (k, n) (learned agents).
        jerk, coverage: means over ``ok`` episodes.
        reached: stage reached -> count (``error`` for errored episodes).
        failures_grasp_attempt: for the failed episodes without errors, where the first
            grasp attempt began (:data:`GRASP_ATTEMPT`) -> count; ``unknown`` for records
            that do not say.
    """

    def __init__(self, df: pd.DataFrame) -> None:
        feasible = df["status"] != "infeasible" if len(df) else []
        self.infeasible = int(len(df) - sum(feasible)) if len(df) else 0
        df = df[feasible] if len(df) else df
        self.df = df
        self.n = len(df)
        self.k = int(df["success"].sum()) if self.n else 0
        self.errors = int((df["status"] != "ok").sum()) if self.n else 0
        seeds = sorted({s for s in df["train_seed"].dropna()}) if self.n else []
        self.per_seed = {int(s): (int(g["success"].sum()), len(g))
                         for s, g in df.groupby("train_seed")} if seeds else {}
        if len(self.per_seed) > 1 and 0 < self.k < self.n:
            self.rate, self.lo, self.hi = stratified_bootstrap_rate(self.strata())
        elif len(self.per_seed) > 1:  # all fail (or all succeed): a bootstrap has no spread
            self.rate = self.k / self.n
            self.lo, self.hi = wilson_interval(self.k, self.n)
        elif self.n:
            self.rate = self.k / self.n
            self.lo, self.hi = wilson_interval(self.k, self.n)
        else:
            self.rate = self.lo = self.hi = math.nan
        ok = df[df["status"] == "ok"] if self.n else df
        self.jerk = float(ok["jerk"].mean()) if len(ok) else math.nan
        self.coverage = float(ok["coverage"].mean()) if len(ok) else math.nan
        self.reached = df["reached"].fillna("none").value_counts().to_dict() if self.n else {}
        failed = ok[~ok["success"]] if len(ok) else ok
        self.failures_grasp_attempt = (failed["grasp_attempt"].fillna("unknown")
                                       .value_counts().to_dict() if len(failed) else {})

    def strata(self) -> list[np.ndarray]:
        """Outcomes per training seed (one stratum for baselines / one seed)."""
        if not self.n:
            return []
        if not self.per_seed:
            return [self.df["success"].to_numpy(dtype=bool)]
        return [g["success"].to_numpy(dtype=bool) for _, g in self.df.groupby("train_seed")]

    def text(self) -> str:
        """``k/n  p% [lo, hi]`` (percent), or ``-`` without episodes."""
        if not self.n:
            return "-"
        ci = f"[{percent(self.lo)}, {percent(self.hi)}]"
        return f"{self.k}/{self.n}  {percent(self.rate)}% {ci}"


def row_cell(df: pd.DataFrame, agent: str, setting: str, role: str = "test",
             demos: int | None = None) -> Cell:
    """The cell of one row of the matrix (all training seeds of ``demos``)."""
    d = df[(df["agent"] == agent) & (df["setting"] == setting) & (df["role"] == role)] \
        if len(df) else df
    if demos is not None and len(d):
        d = d[d["demos"].isna() | (d["demos"] == demos)]
    return Cell(d)


def paired_vs(ref: Cell, other: Cell) -> dict[str, Any] | None:
    """``other`` against ``ref`` on the same episodes: pairs matched by episode and training
    seed (a baseline's episode pairs with every seed of ``ref``); None without pairs.

    Returns:
        ``n_pairs``, ``diff`` (other - ref, fraction), ``lo``, ``hi`` (paired bootstrap),
        ``b01`` (ref fails, other succeeds), ``b10``, ``p_value`` (exact McNemar).
    """
    if not ref.n or not other.n:
        return None
    a = ref.df[["train_seed", "episode_id", "success"]]
    b = other.df[["train_seed", "episode_id", "success"]]
    if b["train_seed"].isna().all() or a["train_seed"].isna().all():
        m = a.merge(b.drop(columns="train_seed").drop_duplicates("episode_id"),
                    on="episode_id", suffixes=("_a", "_b"))
    else:
        m = a.merge(b, on=["train_seed", "episode_id"], suffixes=("_a", "_b"))
    if not len(m):
        return None
    sa, sb = m["success_a"].to_numpy(bool), m["success_b"].to_numpy(bool)
    diff, lo, hi = paired_bootstrap_diff(sa, sb)
    test = mcnemar_exact(sa, sb)
    return {"n_pairs": len(m), "diff": diff, "lo": lo, "hi": hi, "b01": test["b01"],
            "b10": test["b10"], "p_value": test["p_value"]}


def gap(in_dist: Cell, ood: Cell) -> tuple[float, float, float] | None:
    """OOD cell minus in-distribution cell (fractions) with a bootstrap interval."""
    if not in_dist.n or not ood.n:
        return None
    return bootstrap_rate_diff(in_dist.strata(), ood.strata())
