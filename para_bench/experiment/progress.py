"""One view of an experiment's stages: done / running / left, each running stage's own
progress, and an ETA from the durations of finished stages.

The same view is printed live by ``experiment run`` (redrawn in place on a terminal,
a line per change otherwise) and once by ``experiment status``.

ETA: a stage's expected duration is the mean time per unit (demo, training step, episode)
of finished stages of the same kind (and agent, for trainings; learned vs baseline, for
evaluations), times its units; a running stage's remaining time is extrapolated from its
own progress once it is 5% through. The total is the remaining work divided by the jobs,
but never less than the longest stage left: read it as an estimate.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from para_bench.experiment.stages import Stage

__all__ = ["LiveView", "StageView", "render", "stage_progress"]

_TQDM = re.compile(rb"(\d+)/(\d+) \[")


@dataclass
class StageView:
    """What the view knows about one stage."""

    stage: Stage
    state: str  # done | lost | running | todo | failed | blocked
    duration_s: float | None = None  # done stages
    started: float | None = None  # running stages (epoch seconds)
    progress: tuple[int, int] | None = None  # running: (units done, units total)
    progress_start: int | None = None  # running: units done when this attempt was first seen
    rebuilt: bool = False
    output_missing: bool = False  # done, output not kept here (rebuilt only when needed)


def units(stage: Stage) -> float:
    """The size of a stage in its kind's unit (demos, steps, episodes)."""
    if stage.kind in ("collect", "subset"):
        return float(stage.meta["demos"])
    if stage.kind == "train":
        return float(stage.material["options"]["steps"])
    return float(stage.meta["episodes"])


def stage_seconds(stage: Stage, marker: dict[str, Any] | None) -> float | None:
    """Seconds a done stage's output took: its last attempt plus the interrupted earlier
    ones it continued (collections and evaluations continue their files, trainings their
    last validation)."""
    if not marker or marker.get("duration_s") is None:
        return None
    return float(marker["duration_s"]) + float(marker.get("earlier_attempts_s") or 0.0)


def _group(stage: Stage) -> tuple:
    if stage.kind == "train":
        return ("train", stage.meta["agent"])
    if stage.kind == "evaluate":
        return ("evaluate", stage.meta["baseline"])
    return (stage.kind,)


def stage_progress(stage: Stage, root: Path) -> tuple[int, int] | None:
    """A running stage's own progress: records written (evaluate) or the last progress bar
    of the current attempt in its log (collect, train)."""
    if stage.kind == "evaluate":
        try:
            with open(root / stage.output / "episodes.jsonl", "rb") as f:
                n = sum(1 for line in f if line.strip())
        except OSError:
            n = 0
        return min(n, stage.meta["episodes"]), stage.meta["episodes"]
    try:
        with open(root / stage.log, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read()
    except OSError:
        return None
    header = tail.rfind(b"\n$ ")  # each attempt appends its command line, then its output
    if header >= 0:
        tail = tail[header:]
    found = _TQDM.findall(tail)
    return (int(found[-1][0]), int(found[-1][1])) if found else None


def _rates(views: list[StageView]) -> dict[tuple, float]:
    sums: dict[tuple, list[float]] = {}
    for v in views:
        if v.state == "done" and v.duration_s and not v.rebuilt:
            s = sums.setdefault(_group(v.stage), [0.0, 0.0])
            s[0] += v.duration_s
            s[1] += units(v.stage)
    return {g: t / u for g, (t, u) in sums.items() if u > 0}


def remaining_seconds(views: list[StageView], now: float | None = None) -> dict[str, float | None]:
    """Expected seconds left per stage name (None where nothing is known yet)."""
    now = now or time.time()
    rates = _rates(views)
    kind_rates: dict[str, list[float]] = {}
    for g, r in rates.items():
        kind_rates.setdefault(g[0], []).append(r)
    out: dict[str, float | None] = {}
    for v in views:
        if v.state in ("done", "failed", "blocked"):
            continue
        rate = rates.get(_group(v.stage))
        if rate is None and v.stage.kind in kind_rates:
            rate = sum(kind_rates[v.stage.kind]) / len(kind_rates[v.stage.kind])
        total = rate * units(v.stage) if rate else None
        if v.state == "running" and v.started:
            elapsed = now - v.started
            done, whole = v.progress or (0, 0)
            here = done - min(v.progress_start or 0, done)  # what this attempt did
            if whole and here / whole >= 0.05:
                out[v.stage.name] = elapsed * (whole - done) / here
            else:
                out[v.stage.name] = None if total is None else max(0.0, total - elapsed)
        else:
            out[v.stage.name] = total
    return out


def fmt_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def summary_line(name: str, views: list[StageView], jobs: int) -> str:
    """``name: N stages: a done, b running, c left (...)  ETA ~...``"""
    counts: dict[str, int] = {}
    for v in views:
        counts[v.state] = counts.get(v.state, 0) + 1
    left = counts.get("todo", 0) + counts.get("lost", 0)
    parts = [f"{counts.get('done', 0)} done", f"{counts.get('running', 0)} running",
             f"{left} left"]
    for state in ("failed", "blocked"):
        if counts.get(state):
            parts.append(f"{counts[state]} {state}")
    rebuilt = sum(v.rebuilt for v in views)
    if rebuilt:
        parts.append(f"{rebuilt} rebuilt")
    rem = remaining_seconds(views)
    if not rem:
        eta = "finished"
    elif any(v is None for v in rem.values()):
        eta = "ETA: once a stage of each kind has finished"
    else:  # the work spread over the slots, but never less than the longest stage left
        eta = f"ETA ~{fmt_seconds(max(sum(rem.values()) / max(1, jobs), *rem.values()))}"
    return f"{name}: {len(views)} stages: {', '.join(parts)}; {eta}"


def render(name: str, views: list[StageView], jobs: int, every_stage: bool = False) -> list[str]:
    """The view as lines: a summary, the running stages with their progress, then (with
    ``every_stage``) one line per stage, else the counts left per kind."""
    now = time.time()
    rem = remaining_seconds(views, now)
    lines = [summary_line(name, views, jobs)]
    for v in views:
        if v.state != "running" and not every_stage:
            continue
        lines.append("  " + _stage_line(v, rem.get(v.stage.name), now))
    if not every_stage:
        left: dict[str, int] = {}
        for v in views:
            if v.state in ("todo", "lost"):
                left[v.stage.kind] = left.get(v.stage.kind, 0) + 1
        if left:
            lines.append("  left: " + ", ".join(f"{n} {k}" for k, n in left.items()))
    return lines


def _stage_line(v: StageView, remaining: float | None, now: float) -> str:
    head = f"{v.state:<8} {v.stage.name}"
    if v.state == "running":
        elapsed = now - v.started if v.started else None
        prog = ""
        if v.progress and v.progress[1]:
            done, total = v.progress
            prog = f"  {done}/{total} ({100 * done / total:.0f}%)"
        return f"{head}{prog}  {fmt_seconds(elapsed)} elapsed, ~{fmt_seconds(remaining)} left"
    if v.state == "done":
        note = "  (rebuilt)" if v.rebuilt else ""
        if v.output_missing:
            note += "  (output not here; rebuilt only if a stage needs it)"
        return f"{head}  {fmt_seconds(v.duration_s)}{note}"
    if v.state == "lost":
        return f"{head}  (output missing: to rebuild)"
    if v.state == "todo" and remaining is not None:
        return f"{head}  ~{fmt_seconds(remaining)}"
    return head


class LiveView:
    """The live view of ``experiment run``: on a terminal the view of :func:`render`,
    redrawn in place at most once a second with event lines above it; in a log, the event
    lines and the summary every 5 minutes.

    Args:
        name: the experiment's name.
        jobs: slots (for the ETA).
        enabled: False draws nothing (``--quiet``).
    """

    def __init__(self, name: str, jobs: int, enabled: bool = True) -> None:
        self.name, self.jobs, self.enabled = name, jobs, enabled
        self.tty = sys.stdout.isatty()
        self._drawn = 0
        self._last = time.time()

    def event(self, line: str, views: list[StageView]) -> None:
        """Prints a timestamped event line (stage started, done, failed)."""
        if not self.enabled:
            return
        self.clear()
        done = sum(v.state == "done" for v in views)
        print(f"[{datetime.now().strftime('%H:%M:%S')}] {line}  [{done}/{len(views)} done]",
              flush=True)
        if self.tty:
            self.draw(views, force=True)

    def clear(self) -> None:
        """Erases the drawn view (terminal only)."""
        if self._drawn and self.tty:
            sys.stdout.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def draw(self, views: list[StageView], force: bool = False) -> None:
        """Redraws the view (terminal), or prints the summary if 5 minutes passed (log)."""
        if not self.enabled:
            return
        now = time.time()
        if self.tty:
            if not force and now - self._last < 1.0:
                return
            self.clear()
            lines = render(self.name, views, self.jobs)
            width = shutil.get_terminal_size().columns
            print("\n".join(line[:width - 1] for line in lines), flush=True)
            self._drawn = len(lines)
        elif now - self._last > 300:
            print(summary_line(self.name, views, self.jobs), flush=True)
        else:
            return
        self._last = now

    def final(self, views: list[StageView]) -> None:
        """The summary line, once, at the end."""
        if self.enabled:
            print(summary_line(self.name, views, self.jobs), flush=True)
