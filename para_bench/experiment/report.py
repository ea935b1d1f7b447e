"""The experiment's report, from its records alone: ``<out>/report/``.

- ``report.md``: the matrix in the seeds' layout (rows: agents, then baselines, then the
  seed notes' quoted PARA single-frame row; columns: settings; cells ``k/n  p% [lo, hi]``),
  each model's success on held-out scenes of its own training distribution, a plain
  reading, jerk and coverage, stage reached, the paired comparison of every row against
  ``para`` per setting, the generalisation gaps, per-seed spread, success against demos,
  training summaries, plots and provenance (commands, versions, git sha, machine, wall
  time per stage, rebuilt stages).
- ``cells.csv``: one row per cell (and per row aggregated over seeds when there are several).
- ``matrix.tex``: the matrix as a booktabs table.
- PNG plots (:mod:`para_bench.experiment.figures`).

Nothing here runs a simulator or a model: ``experiment report`` can rebuild it any time
(cells of stages that have not finished are marked ``*``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from para_bench.experiment.cells import (
    GRASP_ATTEMPT,
    REACHED,
    Cell,
    episodes_frame,
    gap,
    paired_vs,
    row_cell,
)
from para_bench.experiment.exports import cells_csv, matrix_tex
from para_bench.experiment.figures import write_figures
from para_bench.experiment.progress import fmt_seconds
from para_bench.experiment.spec import ExperimentSpec
from para_bench.experiment.stages import Stage
from para_bench.experiment.state import StageBook, read_json
from para_bench.metrics import percent

__all__ = ["QUOTED_PARA", "Report", "write_report"]

#: seed 001's PARA single-frame reference, per setting (quoted, never measured here)
QUOTED_PARA = {"in_dist": "~46%", "viewpoint_ood": "45%", "pos_ood": "54%"}
QUOTED_LABEL = "PARA single-frame (seed 001, quoted)"
QUOTED_NOTE = ("quoted from seed 001, not measured here: GPU, DINO backbone, the lab's own "
               "splits (in_dist from logs/para_v2_results.txt, viewpoint vp_outer_half, "
               "position exp3_left)")
REFERENCE = "para"


def _pct(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:+.1f}"


def _f(x: float, digits: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in r] for r in [header, *rows]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in esc[1:]]) + "\n"


class Report:
    """An experiment's cells and sections, read once from its folder (records, markers,
    training summaries); each method renders one section of ``report.md``."""

    quoted = QUOTED_PARA

    def __init__(self, spec: ExperimentSpec, stages: list[Stage], root: Path) -> None:
        self.spec, self.stages, self.root = spec, stages, Path(root)
        self.book = StageBook(self.root)
        self.markers = {s.name: self.book.marker(s) for s in stages}
        self.df = episodes_frame(stages, self.root)
        self.rows = [*spec.agents, *spec.baselines]

    def done(self, agent: str, setting: str, role: str, demos: int | None) -> bool:
        for s in self.stages:
            m = s.meta
            if s.kind == "evaluate" and m["agent"] == agent and m["setting"] == setting and \
                    m["role"] == role and (demos is None or m.get("demos") in (None, demos)):
                if self.markers[s.name] is None:
                    return False
        return True

    def cell(self, agent: str, setting: str, role: str = "test",
             demos: int | None = None) -> Cell:
        return row_cell(self.df, agent, setting, role, demos)

    def cell_text(self, agent: str, setting: str, role: str, demos: int | None) -> str:
        c = self.cell(agent, setting, role, demos)
        star = "" if self.done(agent, setting, role, demos) else " *"
        err = f" ({c.errors} err)" if c.errors else ""
        err += f" ({c.infeasible} infeasible)" if c.infeasible else ""
        return c.text() + err + star

    # -- sections ------------------------------------------------------------------------------

    def matrix(self, demos: int) -> str:
        settings = self.spec.settings
        rows = [[a, *(self.cell_text(a, s, "test", demos) for s in settings)]
                for a in self.rows]
        if any(s in QUOTED_PARA for s in settings):
            rows.append([f"*{QUOTED_LABEL}*", *(f"*{QUOTED_PARA.get(s, '-')}*" for s in settings)])
        return _table(["", *settings], rows)

    def heldout(self, demos: int) -> str:
        if not self.spec.agents:
            return ""
        has = {s: any(st.meta.get("role") == "heldout" and st.meta["setting"] == s
                      for st in self.stages) for s in self.spec.settings}
        header = ["", *(f"{s} ({self.spec.eval[s]['heldout_split']})" for s in self.spec.settings)]
        rows = [[a, *(self.cell_text(a, s, "heldout", demos) if has[s] else
                      "not evaluated: no such split" for s in self.spec.settings)]
                for a in self.spec.agents]
        return _table(header, rows)

    def reading(self, demos: int) -> list[str]:
        out = []
        for s in self.spec.settings:
            cells = {a: self.cell(a, s, "test", demos) for a in self.spec.agents}
            if cells and all(c.n and c.k == 0 for c in cells.values()):
                n = ", ".join(f"{a} 0/{c.n}" for a, c in cells.items())
                out.append(f"Every learned model is at 0% on `{s}` ({n}).")
            if "oracle" in self.spec.baselines:
                o = self.cell("oracle", s)
                if o.n and not self.done("oracle", s, "test", None):
                    out.append(f"Oracle on `{s}`: {o.k}/{o.n} so far (unfinished).")
                elif o.n:
                    verdict = ("every test scene is solvable" if o.k == o.n else
                               f"{o.n - o.k} test scene(s) not shown solvable")
                    flag = "" if o.rate >= 0.95 else " -- below the 95% target"
                    out.append(f"Oracle on `{s}`: {o.k}/{o.n}: {verdict}{flag}.")
        errs = [(a, s) for a in self.rows for s in self.spec.settings
                if self.cell(a, s, "test", demos).errors]
        out.append("No cell has errors." if not errs else "Cells with errors: " +
                   ", ".join(f"{a} on {s}" for a, s in errs) + " (errors count as failures).")
        return out

    def traj_metrics(self, demos: int) -> str:
        header = ["", *(f"{s}: jerk m/s^3 / coverage" for s in self.spec.settings)]
        rows = []
        for a in self.rows:
            cells = [self.cell(a, s, "test", demos) for s in self.spec.settings]
            rows.append([a, *(f"{_f(c.jerk, 1)} / {_f(c.coverage)}" for c in cells)])
        return _table(header, rows)

    def _per_setting(self, header: str, demos: int, text: Callable[[Cell], str]) -> str:
        """One row per agent, one column per setting: ``text`` of its test cell."""
        rows = []
        for a in self.rows:
            cells = [self.cell(a, s, "test", demos) for s in self.spec.settings]
            rows.append([a, *(text(c) if c.n else "-" for c in cells)])
        return _table(["", *(f"{s}: {header}" for s in self.spec.settings)], rows)

    def reached(self, demos: int) -> str:
        return self._per_setting("/".join((*(r[0] for r in REACHED), "err")), demos,
                                 lambda c: "/".join(str(c.reached.get(r, 0))
                                                    for r in (*REACHED, "error")))

    def grasp_attempts(self, demos: int) -> str:
        return self._per_setting(" / ".join(GRASP_ATTEMPT), demos, self._attempt_text)

    @staticmethod
    def _attempt_text(c: Cell) -> str:
        counts = c.failures_grasp_attempt
        text = " / ".join(str(counts.get(k, 0)) for k in GRASP_ATTEMPT)
        unknown = counts.get("unknown", 0)
        return text + (f" ({unknown} not recorded)" if unknown else "")

    def paired(self, demos: int) -> str:
        if REFERENCE not in self.spec.agents:
            return f"(`{REFERENCE}` is not among the agents: no paired comparison.)\n"
        parts = []
        for s in self.spec.settings:
            ref = self.cell(REFERENCE, s, "test", demos)
            rows = []
            for a in self.rows:
                if a == REFERENCE:
                    continue
                c = self.cell(a, s, "test", demos)
                r = paired_vs(ref, c)
                if r is None:
                    rows.append([a, f"{ref.k}/{ref.n}", f"{c.k}/{c.n}", "-", "-", "-", "-"])
                    continue
                rows.append([a, f"{ref.k}/{ref.n}", f"{c.k}/{c.n}",
                             f"{_pct(r['diff'])} [{_pct(r['lo'])}, {_pct(r['hi'])}]",
                             str(r["b01"]), str(r["b10"]), f"{r['p_value']:.3g}"])
            parts.append(f"**{s}**\n\n" + _table(
                ["vs para", "para k/n", "k/n", "difference pp [95% paired bootstrap]",
                 "only it solved", "only para solved", "McNemar p (exact)"], rows))
        return "\n".join(parts)

    def gaps(self, demos: int) -> str:
        if "in_dist" not in self.spec.settings or len(self.spec.settings) < 2:
            return "(needs `in_dist` and another setting.)\n"
        ood = [s for s in self.spec.settings if s != "in_dist"]
        rows = []
        for a in self.rows:
            base = self.cell(a, "in_dist", "test", demos)
            cells = []
            for s in ood:
                g = gap(base, self.cell(a, s, "test", demos))
                cells.append("-" if g is None else f"{_pct(g[0])} [{_pct(g[1])}, {_pct(g[2])}]")
            rows.append([a, *cells])
        return _table(["", *(f"{s} - in_dist (pp)" for s in ood)], rows)

    def seed_spread(self, demos: int) -> str:
        header = ["", *self.spec.settings]
        rows = []
        for a in self.spec.agents:
            cells = []
            for s in self.spec.settings:
                ps = self.cell(a, s, "test", demos).per_seed
                rates = [k / n for k, n in ps.values() if n]
                cells.append("-" if not rates else ", ".join(
                    f"s{seed} {k}/{n}" for seed, (k, n) in ps.items()) +
                    f" (range {percent(min(rates), 0)}-{percent(max(rates), 0)}%)")
            rows.append([a, *cells])
        return _table(header, rows)

    def vs_demos(self) -> str:
        header = ["agent", "setting", *(f"{d} demos" for d in self.spec.demos)]
        rows = [[a, s, *(self.cell_text(a, s, "test", d) for d in self.spec.demos)]
                for a in self.spec.agents for s in self.spec.settings]
        return _table(header, rows)

    def training(self) -> str:
        rows = []
        keys = ("val_pixel_error", "val_xyz_error_cm", "val_height_bin_acc", "val_gripper_acc")
        for s in self.stages:
            if s.kind != "train":
                continue
            info = self.book.train_summary(s)
            if info is None:
                rows.append([s.meta["agent"], s.meta["setting"], str(s.meta["demos"]),
                             str(s.meta["train_seed"]), "not trained yet", *("-" * 7)])
                continue
            rows.append([s.meta["agent"], s.meta["setting"], str(s.meta["demos"]),
                         str(s.meta["train_seed"]), str(info.get("steps")),
                         _f(info.get("train_minutes"), 1), _f(info.get("steps_per_s")),
                         str(info.get("n_train_demos")), *(_f(info.get(k)) for k in keys)])
        return _table(["agent", "setting", "demos", "seed", "steps", "minutes", "steps/s",
                       "train demos", "val px err", "val 3D err cm", "height-bin acc",
                       "gripper acc"], rows)

    def provenance(self) -> list[str]:
        meta = read_json(self.root / "experiment.json") or {}
        inv = meta.get("invocations", [])
        out = [f"- experiment file: `{self.spec.path}` (sha256 {self.spec.text_sha256[:16]})"]
        for i, x in enumerate(inv, 1):
            m = x.get("machine", {})
            out.append(f"- run {i}: `{' '.join(x.get('command', []))}`, {x.get('started')} -> "
                       f"{x.get('finished', 'not finished')}, exit {x.get('exit', '-')}, "
                       f"{x.get('jobs')} jobs ({x.get('executor')}), git {x.get('git_sha')}, "
                       f"{m.get('cpu', '?')} x {m.get('cores', '?')} cores, "
                       f"{m.get('memory_gib', '?')} GiB")
        if inv:
            v = inv[-1].get("versions", {})
            out.append("- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) +
                       f"; python {inv[-1].get('python')}; {inv[-1].get('platform')}")
        shas = sorted({str(m.get("git_sha")) for m in self.markers.values() if m})
        if len(shas) > 1:
            out.append(f"- stages were built by {len(shas)} code versions (git "
                       f"{', '.join(x[:10] for x in shas)}): see the git column below")
        out.extend(f"- note: {n}" for n in self.spec.notes)
        return out

    def stage_times(self) -> tuple[str, list[str]]:
        rows, rebuilt, total = [], [], 0.0
        for s in self.stages:
            m = self.markers[s.name]
            if m is None:
                rows.append([s.name, "not done", "-", "-", "-", "-"])
                continue
            total += (m.get("duration_s") or 0) + (m.get("earlier_attempts_s") or 0)
            earlier = m.get("earlier_attempts_s") or 0
            dur = fmt_seconds(m.get("duration_s")) + \
                (f" (+{fmt_seconds(earlier)} interrupted)" if earlier else "") + \
                (f" (reused from {m['reused_from']})" if m.get("reused_from") else "")
            rows.append([s.name, dur, str(m.get("attempts", 1)), str(m.get("finished")),
                         str(m.get("git_sha") or "-")[:10], "yes" if m.get("rebuilt") else ""])
            for r in m.get("rebuilt", []):
                same = "identical content" if r.get("identical_content") else "DIFFERENT content"
                byte = "identical bytes" if r.get("identical_bytes") else "bytes differ"
                rebuilt.append(f"- `{s.name}`: output lost, rebuilt {r.get('at')}: {same}, "
                               f"{byte}")
        table = _table(["stage", "wall time", "attempts", "finished", "git", "rebuilt"], rows)
        return table + f"\nSum of stage times: {fmt_seconds(total)}.\n", rebuilt

    # -- assembly ------------------------------------------------------------------------------

    def markdown(self, figures: list[str]) -> str:
        spec = self.spec
        n_done = sum(m is not None for m in self.markers.values())
        md = [f"# Experiment `{spec.name}`\n"]
        if spec.description:
            md.append(spec.description.strip() + "\n")
        md.append(f"Built from the records by `para-bench experiment report {spec.path}`: "
                  f"{n_done} of {len(self.stages)} stages done (cells of unfinished stages "
                  "are marked `*`). Cells: `k/n  success% [95% interval]` over the test "
                  "split's episodes; Wilson interval for one training seed, stratified "
                  "bootstrap over seeds for several (Wilson when all fail or all succeed). "
                  "Errors count as failures; infeasible scenes are not counted.\n")
        for d in spec.demos:
            title = f" ({d} demos)" if len(spec.demos) > 1 or spec.agents else ""
            md.append(f"## Success matrix{title}\n\n" + self.matrix(d))
            if any(s in QUOTED_PARA for s in spec.settings):
                md.append(f"\n*Quoted row*: {QUOTED_NOTE}.\n")
            if spec.agents:
                md.append(f"\n### Held-out scenes of each model's own training distribution"
                          f"{title}\n\nDoes it work where it was trained? (scenes of the "
                          "training distribution never used for training)\n\n" +
                          self.heldout(d))
            md.append("\n### Plain reading\n\n" + "\n".join(f"- {x}" for x in self.reading(d)))
            md.append(f"\n\n### Jerk and coverage{title}\n\nMeans over episodes without "
                      "errors; coverage against the oracle's path of the same scene.\n\n" +
                      self.traj_metrics(d))
            md.append(f"\n### Stage reached{title}\n\n"
                      "Episodes per stage: none / approached / grasped / placed / error.\n\n" +
                      self.reached(d))
            md.append(f"\n### Where failed grasps began{title}\n\n"
                      "Failed episodes (without errors) by where their first grasp attempt "
                      "began (a close command held for 10 control steps): on the object to "
                      "move (within 2 cm of its surface) / away from it (in the air or on "
                      "something else) / no attempt. Records written before this was "
                      "recorded count as not recorded.\n\n" + self.grasp_attempts(d))
            if spec.agents:
                md.append(f"\n### Paired comparison against `para`{title}\n\nSame episodes "
                          "(and training seed); difference = row minus para, percentage "
                          "points.\n\n" + self.paired(d))
            md.append(f"\n### Generalisation gap{title}\n\nOut-of-distribution cell minus "
                      "the same row's in-distribution cell (different episodes: independent "
                      "bootstrap).\n\n" + self.gaps(d))
            if len(spec.train_seeds) > 1:
                md.append(f"\n### Per-seed spread{title}\n\n" + self.seed_spread(d))
        if len(spec.demos) > 1:
            md.append("\n## Success against demos\n\n" + self.vs_demos())
        if spec.agents:
            md.append("\n## Training\n\n" + self.training())
        if figures:
            md.append("\n## Plots\n\n" + "\n".join(f"![{Path(f).stem}]({f})" for f in figures)
                      + "\n")
        times, rebuilt = self.stage_times()
        md.append("\n## Provenance\n\n" + "\n".join(self.provenance()) + "\n")
        md.append("\n### Rebuilt stages\n\n" + ("\n".join(rebuilt) if rebuilt else "None.")
                  + "\n")
        md.append("\n### Wall time per stage\n\n" + times)
        return "\n".join(md)


def write_report(spec: ExperimentSpec, stages: list[Stage], root: Path) -> Path:
    """Writes ``<root>/report/`` (see the module docstring); returns ``report.md``'s path."""
    r = Report(spec, stages, root)
    out = Path(root) / "report"
    out.mkdir(parents=True, exist_ok=True)
    figures = write_figures(r, out)
    cells_csv(r).to_csv(out / "cells.csv", index=False)
    (out / "matrix.tex").write_text(matrix_tex(r))
    path = out / "report.md"
    path.write_text(r.markdown([Path(f).name for f in figures]))
    return path
