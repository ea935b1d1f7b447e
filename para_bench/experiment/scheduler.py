"""``experiment run``: stages in dependency order, side by side, resumable.

Straight-line loop: work out which stages are done (:mod:`~para_bench.experiment.state`),
which are needed (not done, or done but with their output gone while a stage that is not
done needs it: *rebuilt*), then launch every ready stage while slots are free, poll, and
finalise each stage that exits: move its output into place, write its done marker last.

Slots: ``--jobs N`` (default: the number of cores) bounds the simulators + trainings
running at once. A stage takes one slot; an evaluation started while fewer stages are
ready than slots are free takes the spare ones as ``--workers`` (episodes in parallel;
records do not depend on it). Every child runs with one torch thread.

A stage that fails (non-zero exit, or an output that does not check out) is retried once
when a signal killed it, else marked failed; stages that need it are blocked, the others
go on, and the command exits 1 naming the logs. Killing the experiment (even ``kill -9``)
kills its children; rerunning the same command resumes: finished stages are skipped,
``collect`` and ``run`` continue their own files, ``train`` its last validation.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from para_bench.experiment.launch import LocalLaunch, RayLaunch
from para_bench.experiment.progress import LiveView, StageView, stage_progress, stage_seconds
from para_bench.experiment.spec import ExperimentSpec
from para_bench.experiment.stages import Stage
from para_bench.experiment.state import StageBook

__all__ = ["RunOptions", "Scheduler", "launch_priority", "needed_stages", "stage_views"]

MAX_EVAL_WORKERS = 8
HEARTBEAT_S = 30.0


@dataclass
class RunOptions:
    """How to run: ``jobs`` slots (0 on Ray: the cluster's CPUs), ``executor`` (``local``
    or ``ray``), GPUs per training on Ray, the Ray address, whether to draw the live
    view, and experiment folders whose finished stages this run may copy (``reuse``)."""

    jobs: int
    executor: str = "local"
    train_gpus: float = 0.0
    ray_address: str | None = None
    live: bool = True
    reuse: tuple[Path, ...] = ()


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def needed_stages(stages: list[Stage], states: dict[str, str]) -> set[str]:
    """Stages to run: those not done, lost evaluations (their records are the result), and
    lost demos / checkpoints that a stage to run reads."""
    need = {s.name for s in stages if states[s.name] == "todo" or
            (states[s.name] == "lost" and s.kind == "evaluate")}
    for s in reversed(stages):  # dependants come after their dependencies
        if s.name in need:
            need.update(d for d in s.deps if states[d] != "done")
    return need


def stage_views(stages: list[Stage], book: StageBook) -> list[StageView]:
    """The current view of every stage, as ``status`` shows it (no process of ours runs)."""
    states = {s.name: book.state(s) for s in stages}
    need = needed_stages(stages, states)
    views = []
    for s in stages:
        m = book.marker(s)
        state = states[s.name]
        v = StageView(s, "todo", rebuilt=bool(m and m.get("rebuilt")))
        if state in ("done", "lost") and s.name not in need:
            v.state, v.duration_s = "done", stage_seconds(s, m)
            v.output_missing = state == "lost"
        elif state == "lost":
            v.state = "lost"
        running = book.running(s)
        if running and v.state != "done":
            v.state, v.started = "running", running.get("started_ts")
            v.progress = stage_progress(s, book.root)
            v.progress_start = running.get("progress_start")
        views.append(v)
    return views


class _Running:
    def __init__(self, stage: Stage, launch: Any, slots: int, started: float,
                 attempt: int) -> None:
        self.stage, self.launch, self.slots = stage, launch, slots
        self.started, self.attempt, self.beat = started, attempt, started
        self.earlier_s = 0.0  # time spent in interrupted earlier attempts
        self.progress_start: int | None = None  # units done when first seen (a resume's)


def launch_priority(stage: Stage, spec: ExperimentSpec) -> tuple:
    """Sort key of a ready stage: cells fill in one at a time rather than all at the end.

    Demos first (everything needs them); then evaluations of finished checkpoints, before
    more training, so an interrupted matrix leaves whole cells; the oracle's rows (the proof
    that every test scene is solvable, which each learned cell is read against); trainings
    agent by agent in the file's order (one agent's row across settings before the next);
    the other baselines last.
    """
    meta = stage.meta
    agents, settings = list(spec.agents), list(spec.settings)
    agent = agents.index(meta["agent"]) if meta.get("agent") in agents else 0
    setting = settings.index(meta["setting"]) if meta.get("setting") in settings else 0
    if stage.kind in ("collect", "subset"):
        return (0, setting, meta.get("demos", 0))
    if stage.kind == "train":
        return (2, agent, setting, meta.get("demos", 0), meta.get("train_seed", 0))
    if meta.get("baseline"):
        if meta["agent"] == "oracle":
            return (1.5, setting)
        baselines = list(spec.baselines)
        return (3, setting, baselines.index(meta["agent"]) if meta["agent"] in baselines else 0)
    return (1, agent, setting, meta.get("demos", 0), meta.get("train_seed", 0),
            meta.get("role") != "heldout")


class Scheduler:
    """Runs the needed stages of one experiment folder (see the module docstring)."""

    def __init__(self, spec: ExperimentSpec, stages: list[Stage], root: Path,
                 opts: RunOptions) -> None:
        self.spec, self.stages, self.root, self.opts = spec, stages, Path(root), opts
        self.book = StageBook(self.root)
        self.by_name = {s.name: s for s in stages}
        self.running: dict[str, _Running] = {}
        self.failed: dict[str, str] = {}
        self.attempts: dict[str, int] = {}
        #: seconds of attempts retried in this invocation (the retry continues their files)
        self.carried_s: dict[str, float] = {}
        self.views: dict[str, StageView] = {}
        self.view = LiveView(spec.name, opts.jobs, opts.live)
        from para_bench.runner import _git_sha

        self.git_sha = _git_sha()

    # -- setup ---------------------------------------------------------------------------------

    def _initial(self) -> None:
        states = {s.name: self.book.state(s) for s in self.stages}
        for v in stage_views(self.stages, self.book):
            if v.state == "running":  # left by a predecessor that died (we hold the lock)
                info = self.book.running(v.stage) or {}
                _kill_group(info.get("pid"), self.root)
                v.state = "lost" if states[v.stage.name] == "lost" else "todo"
            self.views[v.stage.name] = v

    def _ready(self) -> list[Stage]:
        """Stages whose inputs are done, in :func:`launch_priority` order."""
        out = []
        for s in self.stages:
            v = self.views[s.name]
            if v.state not in ("todo", "lost") or s.name in self.running:
                continue
            if all(self.views[d].state == "done" and not self.views[d].output_missing
                   for d in s.deps):
                out.append(s)
        return sorted(out, key=lambda s: launch_priority(s, self.spec))

    def _prepare(self, stage: Stage) -> bool:
        """Puts aside what a previous, different attempt left at the stage's output.

        Returns:
            Whether the stage starts over (nothing of an earlier attempt is continued).
        """
        out = self.root / stage.output
        over = False
        if self.views[stage.name].state == "lost" and out.exists():
            self._set_aside(out, "altered")
            over = True
        if stage.kind == "evaluate" and out.is_dir():
            from para_bench.results.store import RunStore
            from para_bench.runner import file_sha256

            store = RunStore(out)
            if not store.records():  # nothing to resume: start clean
                shutil.rmtree(out)
                over = True
            elif stage.deps:  # a run folder is bound to its checkpoint's sha256
                identity = (store.read_manifest() or {}).get("identity") or {}
                sha = file_sha256(str(self.root / self.by_name[stage.deps[0]].output))
                if identity.get("checkpoint_sha256") != sha:  # of a rebuilt checkpoint
                    self._set_aside(out, "other-checkpoint")
                    over = True
        if stage.kind in ("collect", "subset"):
            from para_bench.training.collect import repair_demo_file

            over = not repair_demo_file(self.root / stage.work) or over
        return over

    def _set_aside(self, path: Path, why: str) -> None:
        i = 1
        while path.with_name(f"{path.name}.{why}-{i}").exists():
            i += 1
        os.replace(path, path.with_name(f"{path.name}.{why}-{i}"))

    # -- launching -----------------------------------------------------------------------------

    def _free(self) -> int:
        return self.opts.jobs - sum(r.slots for r in self.running.values())

    def _launch_ready(self) -> None:
        ready = self._ready()
        for i, stage in enumerate(ready):
            free = self._free()
            if free < 1:
                return
            slots = 1
            if stage.kind == "evaluate":
                spare = free - (len(ready) - i - 1)
                slots = max(1, min(spare, stage.meta["episodes"], MAX_EVAL_WORKERS))
            self._launch(stage, slots)

    def _launch(self, stage: Stage, slots: int) -> None:
        started_over = self._prepare(stage)
        argv = list(stage.argv)
        if stage.kind == "evaluate":
            argv += ["--workers", str(slots)]
        carried = self.carried_s.pop(stage.name, 0.0)
        stale = 0.0 if started_over else self._stale_running(stage) + carried
        if self.opts.executor == "ray":
            inputs = [self.by_name[d].output for d in stage.deps]
            if stage.kind == "evaluate":
                inputs.append(stage.output)  # resume a partial run folder
            if stage.kind == "collect":
                inputs.append(stage.work)
            gpus = self.opts.train_gpus if stage.kind == "train" else 0
            launch: Any = RayLaunch(stage, argv, self.root, inputs, slots, gpus)
        else:
            launch = LocalLaunch(stage, argv, self.root)
        now = time.time()
        self.attempts[stage.name] = self.attempts.get(stage.name, 0) + 1
        run = _Running(stage, launch, slots, now, self.attempts[stage.name])
        run.earlier_s = stale
        self.running[stage.name] = run
        self._beat(run)
        v = self.views[stage.name]
        v.state, v.started, v.progress, v.progress_start = "running", now, None, None
        self._event_line(f"start    {stage.name}" + (f"  ({slots} workers)" if slots > 1 else ""))

    def _stale_running(self, stage: Stage) -> float:
        """Seconds an interrupted earlier attempt ran (from its last heartbeat), if any."""
        try:
            info = json.loads(self.book.running_path(stage).read_text())
        except (OSError, json.JSONDecodeError):
            return 0.0
        if info.get("key") != stage.key:
            return 0.0
        return max(0.0, info.get("heartbeat_ts", 0) - info.get("started_ts", 0)) + \
            info.get("earlier_s", 0.0)

    def _beat(self, run: _Running) -> None:
        run.beat = time.time()
        self.book.set_running(run.stage, {
            "pid": run.launch.pid or os.getpid(), "scheduler_pid": os.getpid(),
            "started_ts": run.started, "heartbeat_ts": run.beat, "slots": run.slots,
            "earlier_s": run.earlier_s, "attempt": run.attempt,
            "progress_start": self._observe(run)})

    def _observe(self, run: _Running) -> int | None:
        """Refreshes a running stage's progress in its view; returns the units it had done
        when first seen (a resumed collection or evaluation starts part-way: the ETA counts
        only what this attempt did)."""
        v = self.views[run.stage.name]
        v.progress = stage_progress(run.stage, self.root)
        if run.progress_start is None and v.progress is not None:
            run.progress_start = v.progress[0]  # a resumed stage starts part-way
        v.progress_start = run.progress_start
        return run.progress_start

    # -- finishing -----------------------------------------------------------------------------

    def _finalize(self, stage: Stage) -> str | None:
        """Moves the output into place; returns why it cannot be accepted, or None."""
        work, out = self.root / stage.work, self.root / stage.output
        if stage.kind == "evaluate":
            from para_bench.results.store import RunStore

            n = len(RunStore(out).records())
            if n != stage.meta["episodes"]:
                return f"the run ended with {n} of {stage.meta['episodes']} episodes recorded"
            return None
        if not work.is_file():
            return f"{stage.work} was not written"
        out.parent.mkdir(parents=True, exist_ok=True)
        for side, final in zip(stage.side_files(), stage.output_side_files(), strict=True):
            src, dst = self.root / side, self.root / final
            if src.is_file():
                os.replace(src, dst)
                if dst.name.endswith(".train.json"):
                    shutil.copyfile(dst, self.book.dir / f"{stage.stem}.train.json")
        os.replace(work, out)
        return None

    def _finish(self, run: _Running, code: int) -> None:
        stage = run.stage
        del self.running[stage.name]
        why = None
        if code == 0:
            run.launch.collect()
            why = self._finalize(stage)
        else:
            why = f"exit code {code}"
        v = self.views[stage.name]
        now = time.time()
        if why is None:
            info = {"started": datetime.fromtimestamp(run.started, timezone.utc)
                    .isoformat(timespec="seconds"), "finished": _now_iso(),
                    "duration_s": round(now - run.started, 1),
                    "earlier_attempts_s": round(run.earlier_s, 1), "attempts": run.attempt,
                    "command": stage.argv, "log": stage.log, "slots": run.slots,
                    "executor": self.opts.executor, "host": platform.node(),
                    "git_sha": self.git_sha}
            marker = self.book.write_done(stage, info)
            self.book.clear_running(stage)
            v.state, v.duration_s = "done", stage_seconds(stage, info)
            v.rebuilt, v.output_missing = bool(marker["rebuilt"]), False
            self._event_line(f"done     {stage.name}  ({info['duration_s']:.0f} s)")
            return
        self.book.clear_running(stage)
        if code < 0 and run.attempt < 2:  # killed by a signal (OOM, segfault): once more
            self.carried_s[stage.name] = now - run.started + run.earlier_s
            v.state = "todo"
            self._event_line(f"retry    {stage.name}: {why}")
            return
        v.state = "failed"
        self.failed[stage.name] = why
        self._event_line(f"FAILED   {stage.name}: {why}; see {stage.log}")
        self._block_dependants()

    def _block_dependants(self) -> None:
        changed = True
        while changed:
            changed = False
            for s in self.stages:
                v = self.views[s.name]
                if v.state in ("todo", "lost") and any(
                        self.views[d].state in ("failed", "blocked") for d in s.deps):
                    v.state, changed = "blocked", True

    def _event_line(self, line: str) -> None:
        self.view.event(line, self._views())

    def _views(self) -> list[StageView]:
        for run in self.running.values():
            self._observe(run)
        return [self.views[s.name] for s in self.stages]

    # -- main loop -----------------------------------------------------------------------------

    def run(self) -> int:
        """Runs what is needed; returns 0 when every stage is done, else 1."""
        self._initial()
        todo = [s for s in self.stages if self.views[s.name].state in ("todo", "lost")]
        self._event_line(f"{len(self.stages)} stages, {len(todo)} to run, {self.opts.jobs} slots, "
                    f"folder {self.root}")
        try:
            while True:
                self._launch_ready()
                if not self.running:
                    break
                time.sleep(0.5)
                for run in list(self.running.values()):
                    code = run.launch.poll()
                    if code is not None:
                        self._finish(run, code)
                    elif time.time() - run.beat > HEARTBEAT_S:
                        self._beat(run)
                self.view.draw(self._views())
        finally:
            for run in list(self.running.values()):
                run.launch.kill()
                self.book.clear_running(run.stage)
            self.view.clear()
        self.view.final(self._views())
        left = [s.name for s in self.stages if self.views[s.name].state != "done"]
        return 0 if not left else 1


def _kill_group(pid: Any, root: Path) -> None:
    """Kills a stage process an interrupted predecessor left running (its own session):
    only a session leader working in this experiment folder, never a reused pid."""
    if not isinstance(pid, int) or pid <= 0:
        return
    try:
        same_dir = Path(f"/proc/{pid}").joinpath("cwd").resolve() == root.resolve()
        leader = os.getsid(pid) == pid
    except OSError:
        return
    if same_dir and leader:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
