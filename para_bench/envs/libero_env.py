"""``LiberoEnv``: a LIBERO task as a ``gymnasium.Env``, with camera geometry for PARA policies.

Create it through Gymnasium (``import para_bench`` registers the ids)::

    env = gym.make("para_bench/libero_spatial-0-v0", image_size=128, depth=True)
    obs, info = env.reset(seed=0, options={"init_state": 3,
                                           "camera": {"yaw_deg": 20},
                                           "objects": {"dx": 0.0, "dy": 0.08}})
    obs, r, terminated, truncated, info = env.unwrapped.step_chunk(actions)  # (K, 7)

Observation keys (numpy): ``rgb`` (H, W, 3) uint8 upright; ``depth`` (H, W) float32 metres
along the optical axis (when ``depth=True``); ``intrinsics`` (3, 3); ``extrinsics`` (4, 4)
world -> camera, OpenCV axes; ``eef_pos`` (3,) and ``eef_quat_xyzw`` (4,) of the grip site
between the fingertips (the frame the controller steers); ``gripper_qpos`` (2,);
``joint_pos`` (7,). See :mod:`para_bench.envs.camera` for the conventions.

``info``: ``instruction``, ``task``, ``success``, ``steps``, ``object_poses`` (name ->
position (3) + quaternion xyzw (4), privileged), ``goal`` (BDDL goal predicates,
privileged), and after :meth:`LiberoEnv.step_chunk` ``eef_trajectory`` (K, 3).

Rendering happens only when an observation is returned: a chunk of K actions renders
once, inside its last control step (as stock robosuite does), never the K-1 frames
nobody reads. ``render_quality="fast"`` (default) turns off MSAA and the mirrored
reflection pass (~3x cheaper per frame on CPU rasterisers, mean pixel change ~3/255);
``"libero"`` keeps LIBERO's own settings, for policies trained on LIBERO's images.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from para_bench.envs.camera import (
    depth_buffer_to_metres,
    intrinsics_from_fovy,
    look_at_point,
    mat_to_quat_wxyz,
    mat_to_quat_xyzw,
    mujoco_to_opencv,
    orbit,
)
from para_bench.envs.control import ControlConfig, check_targets, execute_chunk
from para_bench.envs.perturbations import CameraPerturbation, ObjectShift
from para_bench.envs.tasks import get_task, load_init_states, validate_task
from para_bench.types import ActionChunk, as_action_chunk

RENDER_QUALITIES = ("fast", "libero")
SETTLE_ACTION = np.array([0, 0, 0, 0, 0, 0, -1.0])
RESET_OPTIONS = {"init_state", "placement_seed", "camera", "objects"}


class SimulationUnstable(RuntimeError):
    """The physics diverged; the episode cannot continue (reset the environment)."""


class InfeasibleScene(ValueError):
    """A perturbation this scene cannot take (objects interpenetrate, fall, slide or keep
    moving; the camera ends below the table). Deterministic: retrying cannot help."""


class LiberoEnv(gym.Env):
    """A LIBERO task (MuJoCo + robosuite) with camera geometry, perturbations and one control path.

    Args:
        benchmark: ``libero_spatial``, ``libero_object``, ``libero_goal``, ``libero_10`` or
            ``libero_90``.
        task_id: task index in LIBERO's default order.
        image_size: side of the square agent-view image in pixels.
        depth: also return ``depth`` in metres.
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
        **control_kwargs: Any,
    ) -> None:
        validate_task(benchmark, task_id)
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
            raise ValueError(f"image_size must be an integer >= 8, got {image_size!r}")
        if render_quality not in RENDER_QUALITIES:
            raise ValueError(
                f"render_quality must be one of {RENDER_QUALITIES}, got {render_quality!r}"
            )
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.task = get_task(benchmark, task_id)
        self.image_size = image_size
        self.use_depth = bool(depth)
        self.render_quality = render_quality
        self.camera_name = camera
        self.render_mode = render_mode
        self.record_steps = bool(record_steps)
        self._recorded: list[dict[str, np.ndarray]] = []
        self.settle_steps = int(settle_steps)
        self.control = ControlConfig(mode=control, zero_rotation=zero_rotation,
                                     action_scale=action_scale, max_steps=max_steps,
                                     **control_kwargs)
        self._init_states = load_init_states(benchmark, task_id)

        os.environ.setdefault("MUJOCO_GL", "egl")
        _quiet_render_teardown()
        from libero.libero.envs.env_wrapper import OffScreenRenderEnv
        from robosuite.macros import IMAGE_CONVENTION

        if IMAGE_CONVENTION != "opengl":  # the vertical flip below assumes it
            raise RuntimeError(f"robosuite's macros.IMAGE_CONVENTION is {IMAGE_CONVENTION!r}; "
                               "para-bench needs robosuite's default 'opengl'")

        self._libero = OffScreenRenderEnv(
            bddl_file_name=self.task.bddl_path,
            camera_names=[camera],
            camera_heights=image_size,
            camera_widths=image_size,
            camera_depths=self.use_depth,
            hard_reset=False,
            ignore_done=True,
            horizon=10**9,
        )
        self._rs = self._libero.env  # the robosuite environment
        self.instruction = self._libero.language_instruction
        sim = self._rs.sim
        self._cam_id = sim.model.camera_name2id(camera)
        if sim.model.cam_bodyid[self._cam_id] != 0:
            raise ValueError(f"camera {camera!r} is not fixed to the world; cannot perturb it")
        self._cam_default = (sim.model.cam_pos[self._cam_id].copy(),
                             sim.model.cam_quat[self._cam_id].copy())
        self._table_z = float(self._rs.workspace_offset[2])
        self._eef_site = self._rs.robots[0].eef_site_id
        self._goal_object = self._object_to_move()
        self._step_distances: list[float] = []
        self._gripper_geoms: list[int] | None = None
        self._render_gate = False
        self._gate_cameras()
        self._configure_renderer()

        n = image_size
        box = lambda shape, lo=-np.inf, hi=np.inf, dt=np.float64: spaces.Box(lo, hi, shape, dt)  # noqa: E731
        obs_spaces = {
            "rgb": spaces.Box(0, 255, (n, n, 3), np.uint8),
            "intrinsics": box((3, 3)),
            "extrinsics": box((4, 4)),
            "eef_pos": box((3,)),
            "eef_quat_xyzw": box((4,), -1.0, 1.0),
            "gripper_qpos": box((2,)),
            "joint_pos": box((7,)),
        }
        if self.use_depth:
            obs_spaces["depth"] = box((n, n), 0.0, np.inf, np.float32)
        self.observation_space = spaces.Dict(obs_spaces)
        self.action_space = spaces.Box(-1.0, 1.0, (7,), np.float32)

        self._steps = 0
        self._start_rot = np.eye(3)
        self._camera_perturbation: CameraPerturbation | None = None
        self._object_shift: ObjectShift | None = None
        self._last_obs: dict | None = None
        self._init_state: int | None = None
        self._placement_seed: int | None = None
        self._geom_cache: dict[str, list[int]] = {}
        self._divergences_seen = 0
        self._needs_reset = True

    # ------------------------------------------------------------------ rendering
    def _gate_cameras(self) -> None:
        """Wraps robosuite's camera sensors so they render only while the gate is open."""
        stub = np.zeros((self.image_size, self.image_size, 3), np.uint8)
        name = f"{self.camera_name}_image"
        observable = self._rs._observables[name]
        real = observable._sensor

        def gated(obs_cache: dict) -> np.ndarray:
            if not self._render_gate:
                return stub
            # robosuite renders into whichever GL context is current; with two
            # environments in one process (an agent's and the oracle reference's) that is
            # often the other one's, giving subtly wrong, non-deterministic pixels
            self._rs.sim._render_context_offscreen.gl_ctx.make_current()
            return real(obs_cache)

        gated.__modality__ = getattr(real, "__modality__", "image")
        observable._sensor = gated

    def _configure_renderer(self) -> None:
        """Applies the render quality to the offscreen context (created once: soft resets)."""
        import mujoco

        sim = self._rs.sim
        ctx = sim._render_context_offscreen
        if self.render_quality == "fast":
            sim.model.vis.quality.offsamples = 0
            sim.model.vis.global_.offwidth = self.image_size
            sim.model.vis.global_.offheight = self.image_size
            ctx.gl_ctx.make_current()
            ctx.con.free()
            ctx._set_mujoco_context_and_buffers()
            ctx.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0

    # ------------------------------------------------------------------ Controllable
    def _control_step(self, action: np.ndarray, render: bool) -> bool:
        render = render or self.record_steps
        self._render_gate = render
        try:
            _, _, done, _ = self._rs.step(action)
        finally:
            self._render_gate = False
        self._steps += 1
        self._check_stable()
        if self._goal_object is not None:
            self._step_distances.append(self.gripper_surface_distance(self._goal_object))
        if render:
            self._last_obs = self._rs._get_observations()
            if self.record_steps:
                self._recorded.append(self._observation())
        return bool(done)

    def _check_stable(self) -> None:
        """Raises ``SimulationUnstable`` when the physics diverged (the episode is lost)."""
        bad = _divergence_count(self._rs.sim.data._data)
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
        data = self._rs.sim.data
        poses = {}
        for name, body in self._rs.obj_body_id.items():
            w, x, y, z = data.body_xquat[body]
            poses[name] = np.concatenate([data.body_xpos[body], [x, y, z, w]])
        return poses

    def object_extents(self) -> dict[str, list[list[float]]]:
        """World axis-aligned bounding box ``[lo, hi]`` of each object's collision geoms."""
        model, data = self._rs.sim.model, self._rs.sim.data
        extents = {}
        for name in self._rs.obj_body_id:
            lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
            for g in self._collision_geoms(name):
                rot = data.geom_xmat[g].reshape(3, 3)
                centre = data.geom_xpos[g] + rot @ model.geom_aabb[g][:3]
                half = np.abs(rot) @ model.geom_aabb[g][3:]
                lo, hi = np.minimum(lo, centre - half), np.maximum(hi, centre + half)
            extents[name] = [lo.tolist(), hi.tolist()]
        return extents

    def _collision_geoms(self, name: str) -> list[int]:
        if name not in self._geom_cache:
            model = self._rs.sim.model
            self._geom_cache[name] = [
                g for g in self._object_geoms(name)
                if model.geom_contype[g] or model.geom_conaffinity[g]
            ]
        return self._geom_cache[name]

    def gripper_surface_distance(self, name: str) -> float:
        """Metres between the gripper's collision geometry (hand, fingers, pads) and the
        nearest collision surface of object ``name`` (0 when touching; capped at 0.5)."""
        import mujoco

        model, data = self._rs.sim.model._model, self._rs.sim.data._data
        if self._gripper_geoms is None:
            prefix = self._rs.robots[0].gripper.naming_prefix
            self._gripper_geoms = [
                g for g in range(model.ngeom)
                if (mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g) or "").startswith(prefix)
                and (model.geom_contype[g] or model.geom_conaffinity[g])]
        fromto = np.zeros(6)
        best = 0.5
        for a in self._gripper_geoms:
            for b in self._collision_geoms(name):
                best = min(best, mujoco.mj_geomDistance(model, data, a, b, best, fromto))
        return max(float(best), 0.0)

    def _object_to_move(self) -> str | None:
        """The object of the first ``(on X Y)`` / ``(in X Y)`` goal, if it is movable."""
        for g in self._rs.parsed_problem["goal_state"]:
            if len(g) == 3 and g[0].lower() in ("on", "in") and g[1] in self._rs.objects_dict:
                return g[1]
        return None

    def movable_objects(self) -> list[str]:
        """Names of the task's movable (free-jointed) objects."""
        return list(self._rs.objects_dict)

    # ------------------------------------------------------------------ gym API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        """Resets to an official init state or a sampled placement, then perturbs.

        Args:
            seed: seeds ``np_random``; the init state defaults to ``seed % n_init_states``.
            options: ``init_state`` (int, one of LIBERO's official init states) or
                ``placement_seed`` (int: a fresh placement from LIBERO's own placement
                sampler, the BDDL regions, seeded -- how LIBERO generated its init files;
                fixture jitter comes from the same seed), ``camera`` (dict, see
                :class:`~para_bench.envs.perturbations.CameraPerturbation`), ``objects``
                (dict, see :class:`~para_bench.envs.perturbations.ObjectShift`).

        Raises:
            InfeasibleScene: the perturbation cannot be applied to this scene (objects
                interpenetrate, fall, slide or keep moving; the camera ends below the table).
            ValueError: unknown options, an init state out of range, an unknown object.
        """
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - RESET_OPTIONS
        if unknown:
            raise ValueError(f"unknown reset option(s) {sorted(unknown)}; allowed: "
                             f"{sorted(RESET_OPTIONS)}")
        n_init = len(self._init_states)
        init_state = options.get("init_state")
        placement = options.get("placement_seed")
        if placement is not None:
            if init_state is not None:
                raise ValueError("give one of init_state or placement_seed, not both")
            if isinstance(placement, bool) or not isinstance(placement, (int, np.integer)) \
                    or not 0 <= placement < 2**32:
                raise ValueError(f"placement_seed must be an integer in 0..2**32-1, "
                                 f"got {placement!r}")
        elif init_state is None:
            init_state = int(self.np_random.integers(n_init)) if seed is None else seed % n_init
        if placement is None and (isinstance(init_state, bool)
                                  or not isinstance(init_state, (int, np.integer))
                                  or not 0 <= init_state < n_init):
            raise ValueError(
                f"init_state must be an integer in 0..{n_init - 1}, got {init_state!r}"
            )
        camera = CameraPerturbation.from_options(options.get("camera"))
        shift = ObjectShift.from_options(options.get("objects"))
        if shift and shift.names:
            unknown_objects = set(shift.names) - set(self.movable_objects())
            if unknown_objects:
                raise ValueError(f"unknown object(s) {sorted(unknown_objects)} in "
                                 f"{self.task.key}; movable objects: {self.movable_objects()}")

        # LIBERO re-samples fixture placements from the global numpy RNG on every reset:
        # seed it from this reset's RNG so the same seed gives the same scene.
        scene_seed = int(self.np_random.integers(2**31))
        if placement is not None:  # the sampler and the fixture jitter share its seed
            scene_seed, init_state = int(placement), None
        else:
            init_state = int(init_state)
        reference = None
        if shift:  # where the objects come to rest unshifted: the shift is judged against it
            self._restore_and_settle(init_state, scene_seed, None)
            reference = {n: self._free_joint_qpos(n)[:2].copy() for n in self._shift_names(shift)}
        self._restore_and_settle(init_state, scene_seed, shift)
        self._apply_camera(camera)
        if shift:
            self._check_settled(shift, reference)
        self._start_rot = self._eef_rotmat()
        self._init_state = init_state
        self._placement_seed = None if placement is None else int(placement)
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
            # MuJoCo frees a render context's GL objects by id in the *current* GL context:
            # make ours current first, or another environment's textures are freed instead
            ctx = getattr(self._rs.sim, "_render_context_offscreen", None)
            if ctx is not None:
                ctx.gl_ctx.make_current()
            self._libero.close()
            self._libero = None

    # ------------------------------------------------------------------ internals
    def _render_now(self) -> None:
        self._render_gate = True
        try:
            self._last_obs = self._rs._get_observations(force_update=True)
        finally:
            self._render_gate = False

    def _observation(self) -> dict[str, np.ndarray]:
        raw = self._last_obs
        k, w2c = self.camera_matrices()
        obs = {
            "rgb": np.ascontiguousarray(raw[f"{self.camera_name}_image"][::-1]),
            "intrinsics": k,
            "extrinsics": w2c,
            "eef_pos": self._eef_pos(),
            "eef_quat_xyzw": mat_to_quat_xyzw(self._eef_rotmat()),
            "gripper_qpos": np.asarray(raw["robot0_gripper_qpos"], dtype=np.float64),
            "joint_pos": np.asarray(raw["robot0_joint_pos"], dtype=np.float64),
        }
        if self.use_depth:
            model = self._rs.sim.model
            extent = model.stat.extent
            buf = raw[f"{self.camera_name}_depth"][::-1, :, 0]
            obs["depth"] = depth_buffer_to_metres(
                buf, model.vis.map.znear * extent, model.vis.map.zfar * extent
            ).astype(np.float32)
        return obs

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

    def _apply_camera(self, camera: CameraPerturbation | None) -> None:
        sim = self._rs.sim
        pos0, quat0 = self._cam_default
        sim.model.cam_pos[self._cam_id] = pos0
        sim.model.cam_quat[self._cam_id] = quat0
        sim.forward()
        if camera is None:
            return
        xpos = sim.data.cam_xpos[self._cam_id].copy()
        xmat = sim.data.cam_xmat[self._cam_id].reshape(3, 3).copy()
        pivot = look_at_point(xpos, xmat, self._table_z)
        new_pos, new_rot = orbit(xpos, xmat, pivot, camera.yaw_deg, camera.pitch_deg,
                                 camera.distance_scale)
        if new_pos[2] < self._table_z + 0.1:
            raise InfeasibleScene(
                f"camera perturbation {camera.to_dict()} puts the camera below the table"
            )
        sim.model.cam_pos[self._cam_id] = new_pos
        sim.model.cam_quat[self._cam_id] = mat_to_quat_wxyz(new_rot)
        sim.forward()

    def _object_geoms(self, name: str) -> set[int]:
        model = self._rs.sim.model
        body = self._rs.obj_body_id[name]
        root = model.body_rootid[body]
        # fixtures hang on the world body: take their subtree, not everything under the root
        if root == 0 or root != body:
            subtree = {body}
            for b in range(body + 1, model.nbody):
                if model.body_parentid[b] in subtree:
                    subtree.add(b)
            return {g for g in range(model.ngeom) if model.geom_bodyid[g] in subtree}
        return {g for g in range(model.ngeom) if model.body_rootid[model.geom_bodyid[g]] == body}

    def _restore_and_settle(self, init_state: int | None, scene_seed: int,
                            shift: ObjectShift | None) -> None:
        """Soft reset (LIBERO's placement sampler and fixture jitter seeded by
        ``scene_seed``), then the official init state if one is given, shift, settle."""
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
        if shift:
            self._apply_object_shift(shift)
        self._steps = 0
        self._divergences_seen = _divergence_count(rs.sim.data._data)
        for _ in range(self.settle_steps):
            rs.step(SETTLE_ACTION)

    def _shift_names(self, shift: ObjectShift) -> list[str]:
        return list(shift.names) if shift.names else self.movable_objects()

    def _free_joint_qpos(self, name: str) -> np.ndarray:
        sim = self._rs.sim
        addr = sim.model.get_joint_qpos_addr(self._rs.objects_dict[name].joints[-1])[0]
        return sim.data.qpos[addr:addr + 7]

    def _free_joint_qvel(self, name: str) -> np.ndarray:
        sim = self._rs.sim
        addr = sim.model.get_joint_qvel_addr(self._rs.objects_dict[name].joints[-1])[0]
        return sim.data.qvel[addr:addr + 6]

    def _apply_object_shift(self, shift: ObjectShift) -> None:
        names = self._shift_names(shift)
        for name in names:
            self._free_joint_qpos(name)[:2] += (shift.dx, shift.dy)
            self._free_joint_qvel(name)[:] = 0.0
        self._rs.sim.forward()
        self._check_penetration(shift, names)

    def _check_penetration(self, shift: ObjectShift, names: list[str]) -> None:
        sim = self._rs.sim
        moved = set().union(*(self._object_geoms(n) for n in names))
        data = sim.data
        for i in range(data.ncon):
            c = data.contact[i]
            if c.dist < -0.01 and (c.geom1 in moved or c.geom2 in moved):
                g1, g2 = (sim.model.geom_id2name(c.geom1), sim.model.geom_id2name(c.geom2))
                raise InfeasibleScene(
                    f"object shift {shift.to_dict()} makes objects interpenetrate "
                    f"({g1} / {g2}, {-c.dist * 100:.1f} cm) in {self.task.key}"
                )

    def _check_settled(self, shift: ObjectShift, reference: dict[str, np.ndarray]) -> None:
        """Rejects a shifted placement that fell, slid away, kept moving or interpenetrates.

        ``reference`` holds where each object came to rest without the shift (LIBERO's init
        states drop objects from a few cm, and some slide a little while settling): the
        shifted object must rest within 2 cm of that position plus the shift.
        """
        for name in reference:
            now = self._free_joint_qpos(name)[:3]
            drift = float(np.linalg.norm(now[:2] - reference[name] - (shift.dx, shift.dy)))
            if now[2] < self._table_z - 0.05:
                raise InfeasibleScene(f"object shift {shift.to_dict()} drops {name} off the table "
                                 f"in {self.task.key}")
            if drift > 0.02:
                raise InfeasibleScene(
                    f"object shift {shift.to_dict()}: {name} did not settle where placed "
                    f"(slid {drift * 100:.1f} cm) in {self.task.key}"
                )
            if np.linalg.norm(self._free_joint_qvel(name)[:3]) > 0.05:
                raise InfeasibleScene(f"object shift {shift.to_dict()}: {name} never came to rest "
                                 f"in {self.task.key}")
        self._check_penetration(shift, list(reference))

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


def _quiet_render_teardown() -> None:
    """robosuite frees EGL contexts in ``__del__``, which raises noisily once EGL is gone at
    interpreter exit; make those finalisers quiet (the process is ending anyway)."""
    from robosuite.renderers.context import egl_context
    from robosuite.utils import binding_utils

    for cls in (binding_utils.MjRenderContext, egl_context.EGLGLContext):
        original = cls.__del__
        if getattr(original, "_para_bench_quiet", False):
            continue

        def quiet(self, _original=original):
            try:
                _original(self)
            except Exception:  # noqa: BLE001 - teardown only
                pass

        quiet._para_bench_quiet = True
        cls.__del__ = quiet


def _divergence_count(data) -> int:
    """MuJoCo's count of bad-qpos / qvel / qacc events (it silently resets data on them)."""
    import mujoco

    w = mujoco.mjtWarning
    return sum(int(data.warning[k].number) for k in (w.mjWARN_BADQPOS, w.mjWARN_BADQVEL,
                                                     w.mjWARN_BADQACC))

