"""``LiberoEnv``: a LIBERO task as a ``gymnasium.Env``, with camera geometry for PARA policies.

Create it through Gymnasium (``import para_bench`` registers the ids)::

    env = gym.make("para_bench/libero_spatial-0-v0", image_size=128, depth=True)
    obs, info = env.reset(seed=0, options={"init_state": 3,
                                           "camera": {"yaw_deg": 20},
                                           "objects": {"dx": 0.0, "dy": 0.08}})
    obs, r, terminated, truncated, info = env.unwrapped.step_chunk(actions)  # (K, 7)

Observations: see :mod:`para_bench.envs.observations`.

``info``: ``instruction``, ``task``, ``success``, ``steps``, ``object_poses`` (name ->
position (3) + quaternion xyzw (4), privileged), ``goal`` (BDDL goal predicates,
privileged), and after :meth:`LiberoEnv.step_chunk` ``eef_trajectory`` (K, 3).

Rendering happens only when an observation is returned: a chunk of K actions renders
once, inside its last control step (as stock robosuite does), never the K-1 frames
nobody reads (:mod:`para_bench.envs.rendering`: the render gate and the render quality).
Perturbations are applied by :mod:`para_bench.envs.scene`.

``physics="fast"`` (default) steps the simulator with :mod:`para_bench.envs.physics`'s
loop: the same states, frames and success as robosuite's ``env.step``
(``physics="robosuite"``), about twice as fast.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from para_bench.envs.camera import intrinsics_from_fovy, mujoco_to_opencv
from para_bench.envs.control import ControlConfig, check_targets, execute_chunk
from para_bench.envs.observations import observation_space, to_observation
from para_bench.envs.perturbations import CameraPerturbation, ObjectShift, parse_reset_options
from para_bench.envs.physics import PHYSICS_LOOPS, FastControlLoop, divergence_count
from para_bench.envs.rendering import RENDER_QUALITIES, WRIST_CAMERA, RenderGate
from para_bench.envs.scene import InfeasibleScene, SceneEditor
from para_bench.envs.tasks import get_task, load_init_states, open_offscreen_env, validate_task
from para_bench.types import ActionChunk, as_action_chunk

__all__ = ["RENDER_QUALITIES", "WRIST_CAMERA", "InfeasibleScene", "LiberoEnv",
           "SimulationUnstable"]

SETTLE_ACTION = np.array([0, 0, 0, 0, 0, 0, -1.0])


class SimulationUnstable(RuntimeError):
    """The physics diverged; the episode cannot continue (reset the environment)."""


class LiberoEnv(gym.Env):
    """A LIBERO task (MuJoCo + robosuite) with camera geometry, perturbations and one control path.

    Args:
        benchmark: ``libero_spatial``, ``libero_object``, ``libero_goal``, ``libero_10`` or
            ``libero_90``.
        task_id: task index in LIBERO's default order.
        image_size: side of the square agent-view image in pixels.
        depth: also return ``depth`` in metres.
        wrist: also return ``wrist_rgb``, the wrist camera (same size, same render gate).
        render_quality: ``"fast"`` (default) or ``"libero"`` (see module docstring).
        camera: the MuJoCo camera that gives ``rgb`` (LIBERO's ``agentview``).
        control: default control mode for chunks (``delta``, ``servo``, ``teleport``).
        zero_rotation: hold the start orientation.
        action_scale: multiplier on position commands.
        max_steps: control steps before truncation (600 as in the seeds).
        settle_steps: no-op steps after reset so objects come to rest (LIBERO's eval uses 10).
        render_mode: ``"rgb_array"`` or None.
        record_steps: render after every control step and return those observations in
            ``info["step_observations"]`` from :meth:`step_chunk` (demo collection; costs
            one render per step).
        physics: the control-step loop: ``"fast"`` (default; the same dynamics without
            robosuite's per-substep overhead, see :mod:`para_bench.envs.physics`) or
            ``"robosuite"`` (robosuite's own ``env.step``, for audits).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        benchmark: str = "libero_spatial",
        task_id: int = 0,
        image_size: int = 128,
        depth: bool = False,
        render_quality: str = "fast",
        camera: str = "agentview",
        control: str = "delta",
        zero_rotation: bool = False,
        action_scale: float = 1.0,
        max_steps: int = 600,
        settle_steps: int = 10,
        render_mode: str | None = None,
        record_steps: bool = False,
        physics: str = "fast",
        wrist: bool = False,
        **control_kwargs: Any,
    ) -> None:
        validate_task(benchmark, task_id)
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
            raise ValueError(f"image_size must be an integer >= 8, got {image_size!r}")
        if render_quality not in RENDER_QUALITIES:
            raise ValueError(
                f"render_quality must be one of {RENDER_QUALITIES}, got {render_quality!r}"
            )
        if physics not in PHYSICS_LOOPS:
            raise ValueError(f"physics must be one of {PHYSICS_LOOPS}, got {physics!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.task = get_task(benchmark, task_id)
        self.image_size = image_size
        self.use_depth = bool(depth)
        self.render_quality = render_quality
        self.camera_name = camera
        self.wrist = bool(wrist)
        self._cameras = [camera] + ([WRIST_CAMERA] if self.wrist else [])
        self.render_mode = render_mode
        self.physics = physics
        self.record_steps = bool(record_steps)
        self._recorded: list[dict[str, np.ndarray]] = []
        self.settle_steps = int(settle_steps)
        self.control = ControlConfig(mode=control, zero_rotation=zero_rotation,
                                     action_scale=action_scale, max_steps=max_steps,
                                     **control_kwargs)
        self._init_states = load_init_states(benchmark, task_id)

        self._libero = open_offscreen_env(self.task, self._cameras, image_size, self.use_depth)
        self._rs = self._libero.env  # the robosuite environment
        self.instruction = self._libero.language_instruction
        self._scene = SceneEditor(self._rs, camera, self.task.key)
        self._cam_id = self._scene.camera_id
        self._table_z = self._scene.table_z
        self._eef_site = self._rs.robots[0].eef_site_id
        self._goal_object = self._object_to_move()
        self._step_distances: list[float] = []
        self._gate = RenderGate(self._rs, self._cameras, image_size, render_quality)
        self._fast = FastControlLoop(self._rs, self._contract_observables()) \
            if physics == "fast" else None

        self.observation_space = observation_space(image_size, self.use_depth, self.wrist)
        self.action_space = spaces.Box(-1.0, 1.0, (7,), np.float32)

        self._steps = 0
        self._start_rot = np.eye(3)
        self._camera_perturbation: CameraPerturbation | None = None
        self._object_shift: ObjectShift | None = None
        self._last_obs: dict | None = None
        self._init_state: int | None = None
        self._placement_seed: int | None = None
        self._divergences_seen = 0
        self._needs_reset = True

    # ------------------------------------------------------------------ rendering
    def _contract_observables(self) -> list[str]:
        """robosuite observables :meth:`_observation` reads, in robosuite's order (the fast
        physics loop keeps only these up to date)."""
        wanted = {f"{camera}_image" for camera in self._cameras}
        wanted |= {"robot0_joint_pos", "robot0_gripper_qpos", "robot0_eef_pos", "robot0_eef_quat"}
        if self.use_depth:
            wanted.add(f"{self.camera_name}_depth")
        return [name for name in self._rs._observables if name in wanted]

    # ------------------------------------------------------------------ Controllable
    def _physics_step(self, action: np.ndarray) -> bool:
        """One control step of the simulator (25 substeps); returns LIBERO's success."""
        if self._fast is not None:
            return self._fast.step(action)
        return bool(self._rs.step(action)[2])

    def _control_step(self, action: np.ndarray, render: bool) -> bool:
        render = render or self.record_steps
        self._gate.open = render
        try:
            done = self._physics_step(action)
        finally:
            self._gate.open = False
        self._steps += 1
        self._check_stable()
        if self._goal_object is not None:
            self._step_distances.append(self.gripper_surface_distance(self._goal_object))
        if render:
            self._last_obs = self._fast.observations() if self._fast is not None \
                else self._rs._get_observations()
            if self.record_steps:
                self._recorded.append(self._observation())
        return done

    def _check_stable(self) -> None:
        """Raises ``SimulationUnstable`` when the physics diverged (the episode is lost)."""
        bad = divergence_count(self._rs.sim.data._data)
        if bad > self._divergences_seen or not np.all(np.isfinite(self._rs.sim.data.qpos)):
            self._divergences_seen = bad
            self._needs_reset = True
            raise SimulationUnstable(
                f"simulation unstable at step {self._steps} of {self.task.key} "
                "(non-finite state, or MuJoCo flagged bad qpos / qvel / qacc)"
            )

    def _eef_pos(self) -> np.ndarray:
        return self._rs.sim.data.site_xpos[self._eef_site].copy()

    def _eef_rotmat(self) -> np.ndarray:
        return self._rs.sim.data.site_xmat[self._eef_site].reshape(3, 3).copy()

    @property
    def _start_rotmat(self) -> np.ndarray:
        return self._start_rot

    @property
    def _steps_left(self) -> int:
        return self.control.max_steps - self._steps

    # ------------------------------------------------------------------ geometry
    def camera_matrices(self) -> tuple[np.ndarray, np.ndarray]:
        """``(intrinsics, extrinsics)`` of the agent-view camera as it is now."""
        sim = self._rs.sim
        k = intrinsics_from_fovy(float(sim.model.cam_fovy[self._cam_id]), self.image_size,
                                 self.image_size)
        w2c = mujoco_to_opencv(sim.data.cam_xpos[self._cam_id], sim.data.cam_xmat[self._cam_id])
        return k, w2c

    def object_poses(self) -> dict[str, np.ndarray]:
        """Every object and fixture of the task: position (3) + quaternion xyzw (4)."""
        return self._scene.object_poses()

    def object_extents(self) -> dict[str, list[list[float]]]:
        """World axis-aligned bounding box ``[lo, hi]`` of each object's collision geoms."""
        return self._scene.object_extents()

    def gripper_surface_distance(self, name: str) -> float:
        """Metres between the gripper's collision geometry (hand, fingers, pads) and the
        nearest collision surface of object ``name`` (0 when touching; capped at 0.5)."""
        return self._scene.gripper_surface_distance(name)

    def _object_to_move(self) -> str | None:
        """The object of the first ``(on X Y)`` / ``(in X Y)`` goal, if it is movable."""
        for g in self._rs.parsed_problem["goal_state"]:
            if len(g) == 3 and g[0].lower() in ("on", "in") and g[1] in self._rs.objects_dict:
                return g[1]
        return None

    def movable_objects(self) -> list[str]:
        """Names of the task's movable (free-jointed) objects."""
        return self._scene.movable_objects()

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Resets to an official init state or a sampled placement, then perturbs.

        Args:
            seed: seeds ``np_random``; the init state defaults to ``seed % n_init_states``.
            options: ``init_state`` (int, one of LIBERO's official init states) or
                ``placement_seed`` (int: a fresh placement from LIBERO's own placement
                sampler, the BDDL regions, seeded -- how LIBERO generated its init files;
                fixture jitter and the arm's start off its rest pose come from the same
                seed), ``camera`` (dict, see
                :class:`~para_bench.envs.perturbations.CameraPerturbation`), ``objects``
                (dict, see :class:`~para_bench.envs.perturbations.ObjectShift`).

        Raises:
            InfeasibleScene: the perturbation cannot be applied to this scene (objects
                interpenetrate, fall, slide or keep moving; the camera ends below the table).
            ValueError: unknown options, an init state out of range, an unknown object.
        """
        super().reset(seed=seed)
        n_init = len(self._init_states)
        request = parse_reset_options(
            options, n_init,
            lambda: int(self.np_random.integers(n_init)) if seed is None else seed % n_init,
            self.movable_objects(), self.task.key)
        init_state, placement = request.init_state, request.placement_seed
        camera, shift = request.camera, request.shift
        # LIBERO re-samples fixture placements from the global numpy RNG on every reset:
        # seed it from this reset's RNG so the same seed gives the same scene.
        scene_seed = int(self.np_random.integers(2**31))
        if placement is not None:  # the sampler and the fixture jitter share its seed
            scene_seed = placement
        reference = None
        if shift:  # where the objects come to rest unshifted: the shift is judged against it
            self._restore_and_settle(init_state, scene_seed, None)
            reference = self._scene.rest_positions(shift)
        self._restore_and_settle(init_state, scene_seed, shift)
        self._scene.apply_camera(camera)
        if shift:
            self._scene.check_settled(shift, reference)
        self._start_rot = self._eef_rotmat()
        self._init_state = init_state
        self._placement_seed = placement
        self._camera_perturbation, self._object_shift = camera, shift
        self._render_now()
        self._needs_reset = False
        return self._observation(), self._info(success=bool(self._rs._check_success()))

    def step(self, action: np.ndarray):
        """One LIBERO OSC delta action (7,), rendered (the plain Gymnasium API)."""
        return self.step_chunk(np.asarray(action, dtype=np.float64).reshape(1, 7))

    def step_chunk(self, actions: np.ndarray | ActionChunk, control: str | None = None):
        """Executes a chunk through the control path and renders once, at its end.

        Args:
            actions: (K, 7) LIBERO deltas, or an :class:`~para_bench.types.ActionChunk`.
            control: overrides the mode for a target chunk (``servo`` / ``teleport``).

        Returns:
            ``(obs, reward, terminated, truncated, info)``: reward 1.0 on success;
            ``terminated`` on success; ``truncated`` when ``max_steps`` is reached;
            ``info["eef_trajectory"]`` the EEF position after every control step, (K, 3).
        """
        if self._needs_reset:
            raise RuntimeError("call reset() before step_chunk()")
        chunk = as_action_chunk(actions)
        check_targets(chunk)
        self._recorded = []
        self._step_distances = []
        if control is not None:
            chunk.control = control
            chunk.validate()
        result = execute_chunk(self, chunk, self.control)
        if not result.rendered_in_step:
            self._render_now()
        success = result.success
        terminated = success
        truncated = not success and self._steps_left <= 0
        if terminated or truncated:
            self._needs_reset = True
        info = self._info(success=success)
        info["eef_trajectory"] = result.eef_trajectory
        info["commands"] = result.commands
        info["control_mode"] = result.mode
        info["steps_per_target"] = result.steps_per_target
        if self._goal_object is not None:
            info["goal_object_distances"] = np.asarray(self._step_distances)
        if self.record_steps:
            info["step_observations"], self._recorded = self._recorded, []
        return self._observation(), float(success), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """The last agent-view frame (``render_mode="rgb_array"``)."""
        if self.render_mode == "rgb_array" and self._last_obs is not None:
            return self._observation()["rgb"]
        return None

    def close(self) -> None:
        if getattr(self, "_libero", None) is not None:
            self._gate.before_close()
            self._libero.close()
            self._libero = None

    # ------------------------------------------------------------------ internals
    def _render_now(self) -> None:
        self._last_obs = self._gate.render_now()

    def _observation(self) -> dict[str, np.ndarray]:
        k, w2c = self.camera_matrices()
        return to_observation(self._last_obs, self.camera_name, k, w2c, self._eef_pos(),
                              self._eef_rotmat(), self._rs.sim.model, self.use_depth, self.wrist)

    def _info(self, success: bool) -> dict[str, Any]:
        return {
            "instruction": self.instruction,
            "task": self.task.key,
            "task_name": self.task.name,
            "success": bool(success),
            "steps": self._steps,
            "init_state": self._init_state,
            "placement_seed": self._placement_seed,
            "object_poses": self.object_poses(),
            "object_extents": self.object_extents(),
            "goal": [list(g) for g in self._rs.parsed_problem["goal_state"]],
            "goal_object": self._goal_object,
            "goal_object_distance": (None if self._goal_object is None else
                                     self.gripper_surface_distance(self._goal_object)),
        }

    def _restore_and_settle(self, init_state: int | None, scene_seed: int,
                            shift: ObjectShift | None) -> None:
        """Soft reset (LIBERO's placement sampler and fixture jitter seeded by
        ``scene_seed``), then the official init state if one is given (else the arm's
        start noise, seeded by ``scene_seed``), shift, settle."""
        rs = self._rs
        rs.robots[0].gripper.current_action = np.zeros_like(rs.robots[0].gripper.current_action)
        global_state = np.random.get_state()
        np.random.seed(scene_seed)
        try:
            rs.reset()
        finally:
            np.random.set_state(global_state)
        if init_state is not None:
            self._libero.set_init_state(self._init_states[init_state])
        else:
            self._scene.perturb_arm_start(scene_seed)
            self._libero._post_process()
            self._libero._update_observables(force=True)
        if shift:
            self._scene.apply_object_shift(shift)
        self._steps = 0
        self._divergences_seen = divergence_count(rs.sim.data._data)
        for _ in range(self.settle_steps):
            self._physics_step(SETTLE_ACTION)

    # ------------------------------------------------------------------ episode facts
    @property
    def perturbation(self) -> dict:
        """The perturbation applied at the last reset, as plain parameters."""
        return {
            "camera": self._camera_perturbation.to_dict() if self._camera_perturbation else None,
            "objects": self._object_shift.to_dict() if self._object_shift else None,
        }

    @property
    def dt(self) -> float:
        """Seconds per control step."""
        return 1.0 / self._rs.control_freq
