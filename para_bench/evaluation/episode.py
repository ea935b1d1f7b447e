"""The episode loop: one environment, one agent, every action through the one control path.

:func:`run_episode` resets the environment to a planned scene, then alternates ``act`` and
``step_chunk`` until success or the step limit. What the agent returns is checked before
it reaches the simulator (shape, finiteness, unit quaternions, the workspace box), so a
malformed action is the agent's fault (:class:`AgentFault`), never the simulator's.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from para_bench.agents.base import PRIVILEGED_INFO_KEYS, AgentRequirements
from para_bench.envs.control import check_targets
from para_bench.evaluation.stages import StageTracker
from para_bench.types import EpisodeSpec, as_action_chunk


class AgentFault(Exception):
    """The agent raised, or returned something the control path cannot execute."""


@dataclass
class EpisodeOutcome:
    """What happened in one episode (the raw material of its record).

    Attributes:
        success: task success.
        steps: control steps executed.
        traj: (T + 1, 3) EEF positions: the start, then one per control step.
        grips: gripper command of every control step.
        latencies: seconds per ``act`` call.
        camera: ``(intrinsics, extrinsics)`` at the episode's start.
        success_step: the control step success was reached at, or None.
        dt: seconds per control step.
        stage: furthest stage reached (see :mod:`para_bench.evaluation.stages`).
        stages_observed: each stage actually observed.
        control_modes: chunks executed per control mode (``{"servo": 40}``).
        targets: number of end-effector targets executed.
        steps_per_target_max: most control steps any one target got (0 for deltas).
        grasp_attempt_step: control step the first grasp attempt began at (None: none; see
            :mod:`para_bench.evaluation.stages`).
        grasp_attempt_m: gripper-to-object surface distance then (None without a tracked
            object).
    """

    success: bool
    steps: int
    traj: np.ndarray
    grips: list[float]
    latencies: list[float]
    camera: tuple[np.ndarray, np.ndarray]
    success_step: int | None
    dt: float
    stage: str | None
    stages_observed: dict[str, bool | None]
    control_modes: dict[str, int] = field(default_factory=dict)
    targets: int = 0
    steps_per_target_max: int = 0
    grasp_attempt_step: int | None = None
    grasp_attempt_m: float | None = None


def _act(agent: Any, obs: dict, info: dict) -> Any:
    try:
        chunk = agent.act(obs, info)
    except Exception as e:  # noqa: BLE001 - any agent failure is the agent's
        raise AgentFault(f"agent.act raised {type(e).__name__}: {e}") from e
    try:
        chunk = as_action_chunk(chunk)
        check_targets(chunk)
    except (ValueError, TypeError) as e:
        raise AgentFault(f"agent returned an invalid action: {e}") from e
    return chunk


def run_episode(env: Any, agent: Any, spec: EpisodeSpec,
                frames: list | None = None) -> EpisodeOutcome:
    """Runs one episode of ``spec``.

    Args:
        env: an environment with ``reset`` and ``step_chunk`` (a ``LiberoEnv``).
        agent: the agent (see :class:`~para_bench.agents.base.Agent`).
        spec: the planned episode.
        frames: if a list, a :class:`~para_bench.video.VideoFrame` is appended per
            observation (the one from reset, then one per chunk), each with the EEF positions
            executed to reach it and the targets the agent predicted from it.

    Raises:
        AgentFault: the agent raised or returned an invalid action.
        InfeasibleScene / ValueError: the environment rejected the scene at reset.
        Exception: anything else comes from the simulator.
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
    latencies: list[float] = []
    modes: Counter = Counter()
    n_targets, per_target_max = 0, 0
    if frames is not None:
        from para_bench.video import VideoFrame, predicted_pixels

        frames.append(VideoFrame.from_obs(obs, traj))
    success, steps = bool(info["success"]), 0
    done = success
    while not done:
        agent_info = info if req.privileged else {
            k: v for k, v in info.items() if k not in PRIVILEGED_INFO_KEYS}
        t0 = time.perf_counter()
        chunk = _act(agent, obs, agent_info)
        latencies.append(time.perf_counter() - t0)
        if frames is not None:
            frames[-1].predicted_px = predicted_pixels(chunk, obs)
        obs, _, terminated, truncated, info = env.step_chunk(chunk)
        traj.extend(info["eef_trajectory"])
        grips.extend(np.asarray(info["commands"])[:, 6].tolist())
        modes[info.get("control_mode", "delta")] += 1
        per_target = np.asarray(info.get("steps_per_target", []), dtype=int)
        n_targets += len(per_target)
        per_target_max = max(per_target_max, int(per_target.max(initial=0)))
        steps = info["steps"]
        success = bool(info["success"])
        stages.update(info)
        if frames is not None:
            frames.append(VideoFrame.from_obs(obs, info["eef_trajectory"]))
        done = terminated or truncated
    return EpisodeOutcome(
        success=success, steps=steps, traj=np.asarray(traj), grips=grips, latencies=latencies,
        camera=start_cam, success_step=steps if success else None,
        dt=getattr(env, "dt", 0.05), stage=stages.stage(success),
        stages_observed=stages.observed(success), control_modes=dict(modes),
        targets=n_targets, steps_per_target_max=per_target_max,
        grasp_attempt_step=stages.attempt_step, grasp_attempt_m=stages.attempt_m)
