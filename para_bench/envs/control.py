"""The one control path: every action that reaches the simulator goes through here.

An :class:`~para_bench.types.ActionChunk` is executed one control step (20 Hz) at a time:

* ``delta`` — LIBERO's OSC_POSE deltas as given (the standard LIBERO protocol);
  ``action_scale`` multiplies the position part before clipping to [-1, 1].
* ``servo`` — proportional control toward each end-effector target for
  ``servo_steps`` control steps (default 1), re-reading the EEF after every step:
  the protocol of the PARA experiments.
* ``teleport`` — servo toward each target until within ``teleport_tol`` metres, at most
  ``teleport_max_steps`` steps per target, before the next target (and observation).
  Every chunk executes at least one control step, so an episode always ends.

Orientation: with ``zero_rotation`` (or when a target chunk carries no orientations)
the controller holds the end-effector orientation the episode started with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from para_bench.types import ActionChunk, ControlMode

OSC_POS_LIMIT = 0.05  # metres per control step at |action| = 1 (robosuite output_max)
OSC_ROT_LIMIT = 0.5  # radians per control step at |action| = 1
CONTROL_MODES: tuple[str, ...] = ("delta", "servo", "teleport")
#: Bumped whenever what a chunk does to the robot changes; part of every run's identity.
CONTROL_PATH_VERSION = 2
#: World-frame box (metres) every end-effector target must lie in: LIBERO's tables sit at
#: the origin with the robot's mount at x = -0.66; anything outside is not a target but a bug.
TARGET_WORKSPACE = ((-1.5, -1.5, 0.0), (1.5, 1.5, 2.5))


def check_targets(chunk: ActionChunk) -> None:
    """Raises ``ValueError`` when a target chunk leaves :data:`TARGET_WORKSPACE`."""
    if chunk.targets is None:
        return
    lo, hi = (np.asarray(b) for b in TARGET_WORKSPACE)
    t = np.asarray(chunk.targets)
    outside = np.any((t < lo) | (t > hi), axis=1)
    if outside.any():
        i = int(np.argmax(outside))
        raise ValueError(f"target {i} {np.round(t[i], 3).tolist()} lies outside the workspace "
                         f"box {TARGET_WORKSPACE} (world frame, metres)")


@dataclass(frozen=True)
class ControlConfig:
    """How chunks are executed.

    Attributes:
        mode: default mode for target chunks and the mode named in records.
        zero_rotation: hold the start orientation (ignore commanded rotations).
        action_scale: multiplier on the position command (deltas or servo error).
        servo_steps: control steps per target in ``servo`` mode.
        teleport_tol: metres; ``teleport`` moves on when the EEF is this close.
        teleport_max_steps: bound on control steps per target in ``teleport`` mode.
        max_steps: control steps per episode before truncation (600 as in the seeds).
    """

    mode: ControlMode = "delta"
    zero_rotation: bool = False
    action_scale: float = 1.0
    servo_steps: int = 1
    teleport_tol: float = 0.01
    teleport_max_steps: int = 30
    max_steps: int = 600

    def __post_init__(self) -> None:
        if self.mode not in CONTROL_MODES:
            raise ValueError(f"unknown control mode {self.mode!r}; choose one of {CONTROL_MODES}")
        if not (np.isfinite(self.action_scale) and self.action_scale > 0):
            raise ValueError(f"action_scale must be a positive number, got {self.action_scale}")
        if self.max_steps < 1 or self.servo_steps < 1 or self.teleport_max_steps < 1:
            raise ValueError("max_steps, servo_steps and teleport_max_steps must be >= 1")


class Controllable(Protocol):
    """What the controller needs from an environment (implemented by ``LiberoEnv``)."""

    def _control_step(self, action: np.ndarray, render: bool) -> bool: ...  # returns success
    def _eef_pos(self) -> np.ndarray: ...
    def _eef_rotmat(self) -> np.ndarray: ...

    @property
    def _start_rotmat(self) -> np.ndarray: ...

    @property
    def _steps_left(self) -> int: ...


@dataclass
class ChunkResult:
    """What executing one chunk did.

    Attributes:
        steps: control steps executed.
        success: the task succeeded during the chunk (execution stopped there).
        rendered_in_step: the camera was rendered inside the last control step.
        eef_trajectory: (steps, 3) EEF position after every control step.
        commands: (steps, 7) the LIBERO actions actually sent.
        mode: the control mode that executed the chunk (``delta``, ``servo``, ``teleport``).
        steps_per_target: (n,) control steps each target got (empty for deltas).
    """

    steps: int
    success: bool
    rendered_in_step: bool
    eef_trajectory: np.ndarray
    commands: np.ndarray
    mode: str = "delta"
    steps_per_target: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))


def rotation_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Axis-angle vector (world frame) rotating ``current`` onto ``target`` (3x3 matrices)."""
    r = target @ current.T
    cos = np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    if angle < 1e-8:
        return np.zeros(3)
    axis = np.array([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1]])
    s = np.linalg.norm(axis)
    if s < 1e-8:  # angle ~ pi: axis from the symmetric part
        w, v = np.linalg.eigh((r + r.T) / 2.0)
        axis = v[:, np.argmax(w)]
        return axis * angle
    return axis / s * angle


def quat_xyzw_to_mat(q: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) -> 3x3 rotation."""
    x, y, z, w = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def servo_action(env: Controllable, target: np.ndarray, gripper: float,
                 orientation: np.ndarray | None, config: ControlConfig) -> np.ndarray:
    """One LIBERO action moving the EEF toward ``target`` (and orientation)."""
    a = np.zeros(7)
    a[:3] = (target - env._eef_pos()) * config.action_scale / OSC_POS_LIMIT
    goal_rot = env._start_rotmat if (orientation is None or config.zero_rotation) \
        else quat_xyzw_to_mat(orientation)
    a[3:6] = rotation_error(goal_rot, env._eef_rotmat()) / OSC_ROT_LIMIT
    a[6] = gripper
    return np.clip(a, -1.0, 1.0)


def execute_chunk(env: Controllable, chunk: ActionChunk, config: ControlConfig) -> ChunkResult:
    """Executes a validated chunk; stops early on success or when the episode's steps run out.

    The camera is rendered inside the last control step only when that step is known in
    advance (deltas, servo); otherwise ``rendered_in_step`` is False and the caller renders.
    """
    traj, cmds = [], []
    success = False
    rendered = False

    def step(action: np.ndarray, last: bool) -> bool:
        nonlocal rendered
        render = last or env._steps_left == 1
        ok = env._control_step(action, render)
        rendered = render
        traj.append(env._eef_pos().copy())
        cmds.append(action)
        return ok

    per_target: list[int] = []
    mode = "delta"
    if chunk.deltas is not None:
        for i, d in enumerate(chunk.deltas):
            if env._steps_left <= 0:
                break
            a = np.array(d, dtype=np.float64)
            a[:3] *= config.action_scale
            if config.zero_rotation:
                a[3:6] = rotation_error(env._start_rotmat, env._eef_rotmat()) / OSC_ROT_LIMIT
            success = step(np.clip(a, -1.0, 1.0), last=i == len(chunk.deltas) - 1)
            if success:
                break
    else:
        mode = chunk.control or config.mode
        if mode == "delta":
            mode = "servo"
        n = len(chunk.targets)
        for i in range(n):
            orient = None if chunk.orientations is None else chunk.orientations[i]
            budget = config.servo_steps if mode == "servo" else config.teleport_max_steps
            per_target.append(0)
            for j in range(budget):
                if env._steps_left <= 0:
                    break
                # a chunk always moves at least one step, so every act() makes progress
                if mode == "teleport" and (traj or i < n - 1) and \
                        np.linalg.norm(chunk.targets[i] - env._eef_pos()) < config.teleport_tol:
                    break
                a = servo_action(env, chunk.targets[i], chunk.gripper[i], orient, config)
                last = mode == "servo" and i == n - 1 and j == budget - 1
                per_target[-1] += 1
                success = step(a, last=last)
                if success:
                    break
            if success or env._steps_left <= 0:
                break
    traj_arr = np.asarray(traj).reshape(-1, 3)
    return ChunkResult(len(traj), success, rendered and bool(traj), traj_arr,
                       np.asarray(cmds).reshape(-1, 7), mode,
                       np.asarray([k for k in per_target if k], dtype=int))
