"""Scene geometry and perturbations of one LIBERO (robosuite) environment.

:class:`SceneEditor` answers geometric questions about the task's objects (poses,
bounding boxes, gripper-to-object surface distance) and applies the perturbations of
:mod:`para_bench.envs.perturbations`: the agent-view camera orbited about the point it
looks at on the table, objects shifted in the table plane and checked (no
interpenetration, no fall, settled where placed), and the arm started off its rest pose
as in LIBERO's official init states. A perturbation a scene cannot take
raises :class:`InfeasibleScene`; it is deterministic, so retrying cannot help.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from para_bench.envs.camera import look_at_point, mat_to_quat_wxyz, orbit
from para_bench.envs.perturbations import CameraPerturbation, ObjectShift

__all__ = ["ROBOT_INIT_NOISE", "InfeasibleScene", "SceneEditor"]

#: std (radians) of the Gaussian noise on each arm joint at the start of a sampled scene,
#: as LIBERO's official init states carry it (robosuite's default start noise; measured on
#: libero_spatial/0's 50: per-joint std 0.018-0.023 rad about the rest pose)
ROBOT_INIT_NOISE = 0.02


class InfeasibleScene(ValueError):
    """A perturbation this scene cannot take (objects interpenetrate, fall, slide or keep
    moving; the camera ends below the table). Deterministic: retrying cannot help."""


class SceneEditor:
    """Object geometry and perturbations of a robosuite LIBERO env.

    Args:
        rs: the robosuite environment (LIBERO's ``OffScreenRenderEnv.env``).
        camera: the world-fixed MuJoCo camera that camera perturbations move.
        task_key: the task's name in messages (``libero_spatial/0``).
    """

    def __init__(self, rs: Any, camera: str, task_key: str) -> None:
        model = rs.sim.model
        camera_id = model.camera_name2id(camera)
        if model.cam_bodyid[camera_id] != 0:
            raise ValueError(f"camera {camera!r} is not fixed to the world; cannot perturb it")
        self.rs, self.camera_id, self.task_key = rs, camera_id, task_key
        self.camera_default = (model.cam_pos[camera_id].copy(), model.cam_quat[camera_id].copy())
        self.table_z = float(rs.workspace_offset[2])
        self._geom_cache: dict[str, list[int]] = {}
        self._gripper_geoms: list[int] | None = None

    # ------------------------------------------------------------------ geometry
    def movable_objects(self) -> list[str]:
        """Names of the task's movable (free-jointed) objects."""
        return list(self.rs.objects_dict)

    def object_poses(self) -> dict[str, np.ndarray]:
        """Every object and fixture of the task: position (3) + quaternion xyzw (4)."""
        data = self.rs.sim.data
        poses = {}
        for name, body in self.rs.obj_body_id.items():
            w, x, y, z = data.body_xquat[body]
            poses[name] = np.concatenate([data.body_xpos[body], [x, y, z, w]])
        return poses

    def object_extents(self) -> dict[str, list[list[float]]]:
        """World axis-aligned bounding box ``[lo, hi]`` of each object's collision geoms."""
        model, data = self.rs.sim.model, self.rs.sim.data
        extents = {}
        for name in self.rs.obj_body_id:
            lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
            for g in self.collision_geoms(name):
                rot = data.geom_xmat[g].reshape(3, 3)
                centre = data.geom_xpos[g] + rot @ model.geom_aabb[g][:3]
                half = np.abs(rot) @ model.geom_aabb[g][3:]
                lo, hi = np.minimum(lo, centre - half), np.maximum(hi, centre + half)
            extents[name] = [lo.tolist(), hi.tolist()]
        return extents

    def object_geoms(self, name: str) -> set[int]:
        """Every geom of object ``name`` (its body subtree)."""
        model = self.rs.sim.model
        body = self.rs.obj_body_id[name]
        root = model.body_rootid[body]
        # fixtures hang on the world body: take their subtree, not everything under the root
        if root == 0 or root != body:
            subtree = {body}
            for b in range(body + 1, model.nbody):
                if model.body_parentid[b] in subtree:
                    subtree.add(b)
            return {g for g in range(model.ngeom) if model.geom_bodyid[g] in subtree}
        return {g for g in range(model.ngeom) if model.body_rootid[model.geom_bodyid[g]] == body}

    def collision_geoms(self, name: str) -> list[int]:
        """The geoms of object ``name`` that collide (cached)."""
        if name not in self._geom_cache:
            model = self.rs.sim.model
            self._geom_cache[name] = [
                g for g in self.object_geoms(name)
                if model.geom_contype[g] or model.geom_conaffinity[g]
            ]
        return self._geom_cache[name]

    def gripper_surface_distance(self, name: str) -> float:
        """Metres between the gripper's collision geometry (hand, fingers, pads) and the
        nearest collision surface of object ``name`` (0 when touching; capped at 0.5)."""
        import mujoco

        model, data = self.rs.sim.model._model, self.rs.sim.data._data
        if self._gripper_geoms is None:
            prefix = self.rs.robots[0].gripper.naming_prefix
            self._gripper_geoms = [
                g for g in range(model.ngeom)
                if (mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_GEOM, g) or "").startswith(prefix)
                and (model.geom_contype[g] or model.geom_conaffinity[g])]
        fromto = np.zeros(6)
        best = 0.5
        for a in self._gripper_geoms:
            for b in self.collision_geoms(name):
                best = min(best, mujoco.mj_geomDistance(model, data, a, b, best, fromto))
        return max(float(best), 0.0)

    # ------------------------------------------------------------------ camera
    def apply_camera(self, camera: CameraPerturbation | None) -> None:
        """Puts the camera back to its default pose, then orbits it by ``camera``."""
        sim = self.rs.sim
        pos0, quat0 = self.camera_default
        sim.model.cam_pos[self.camera_id] = pos0
        sim.model.cam_quat[self.camera_id] = quat0
        sim.forward()
        if camera is None:
            return
        xpos = sim.data.cam_xpos[self.camera_id].copy()
        xmat = sim.data.cam_xmat[self.camera_id].reshape(3, 3).copy()
        pivot = look_at_point(xpos, xmat, self.table_z)
        new_pos, new_rot = orbit(xpos, xmat, pivot, camera.yaw_deg, camera.pitch_deg,
                                 camera.distance_scale)
        if new_pos[2] < self.table_z + 0.1:
            raise InfeasibleScene(
                f"camera perturbation {camera.to_dict()} puts the camera below the table"
            )
        sim.model.cam_pos[self.camera_id] = new_pos
        sim.model.cam_quat[self.camera_id] = mat_to_quat_wxyz(new_rot)
        sim.forward()

    # ------------------------------------------------------------------ objects
    def shift_names(self, shift: ObjectShift) -> list[str]:
        """The objects ``shift`` moves (all movable objects when it names none)."""
        return list(shift.names) if shift.names else self.movable_objects()

    def free_joint_qpos(self, name: str) -> np.ndarray:
        """View of object ``name``'s free-joint position (xyz + quaternion) in ``qpos``."""
        sim = self.rs.sim
        addr = sim.model.get_joint_qpos_addr(self.rs.objects_dict[name].joints[-1])[0]
        return sim.data.qpos[addr:addr + 7]

    def free_joint_qvel(self, name: str) -> np.ndarray:
        """View of object ``name``'s free-joint velocity in ``qvel``."""
        sim = self.rs.sim
        addr = sim.model.get_joint_qvel_addr(self.rs.objects_dict[name].joints[-1])[0]
        return sim.data.qvel[addr:addr + 6]

    def rest_positions(self, shift: ObjectShift) -> dict[str, np.ndarray]:
        """Table-plane positions of the objects ``shift`` moves, as they are now."""
        return {n: self.free_joint_qpos(n)[:2].copy() for n in self.shift_names(shift)}

    def perturb_arm_start(self, seed: int) -> None:
        """Moves the arm's joints off the rest pose by :data:`ROBOT_INIT_NOISE` (seeded),
        as the official init states have them; the controller's null-space target stays
        the rest pose, as it is when an official init state is restored. The caller
        refreshes the observables."""
        robot = self.rs.robots[0]
        noise = np.random.default_rng(seed).normal(0.0, ROBOT_INIT_NOISE, len(robot.init_qpos))
        self.rs.sim.data.qpos[robot._ref_joint_pos_indexes] = np.asarray(robot.init_qpos) + noise
        self.rs.sim.forward()

    def apply_object_shift(self, shift: ObjectShift) -> None:
        """Moves the objects in the table plane, at rest; rejects interpenetration."""
        names = self.shift_names(shift)
        for name in names:
            self.free_joint_qpos(name)[:2] += (shift.dx, shift.dy)
            self.free_joint_qvel(name)[:] = 0.0
        self.rs.sim.forward()
        self._check_penetration(shift, names)

    def _check_penetration(self, shift: ObjectShift, names: list[str]) -> None:
        sim = self.rs.sim
        moved = set().union(*(self.object_geoms(n) for n in names))
        data = sim.data
        for i in range(data.ncon):
            c = data.contact[i]
            if c.dist < -0.01 and (c.geom1 in moved or c.geom2 in moved):
                g1, g2 = (sim.model.geom_id2name(c.geom1), sim.model.geom_id2name(c.geom2))
                raise InfeasibleScene(
                    f"object shift {shift.to_dict()} makes objects interpenetrate "
                    f"({g1} / {g2}, {-c.dist * 100:.1f} cm) in {self.task_key}"
                )

    def check_settled(self, shift: ObjectShift, reference: dict[str, np.ndarray]) -> None:
        """Rejects a shifted placement that fell, slid away, kept moving or interpenetrates.

        ``reference`` holds where each object came to rest without the shift (LIBERO's init
        states drop objects from a few cm, and some slide a little while settling): the
        shifted object must rest within 2 cm of that position plus the shift.
        """
        where = f"in {self.task_key}"
        for name in reference:
            now = self.free_joint_qpos(name)[:3]
            drift = float(np.linalg.norm(now[:2] - reference[name] - (shift.dx, shift.dy)))
            if now[2] < self.table_z - 0.05:
                raise InfeasibleScene(f"object shift {shift.to_dict()} drops {name} off the "
                                      f"table {where}")
            if drift > 0.02:
                raise InfeasibleScene(
                    f"object shift {shift.to_dict()}: {name} did not settle where placed "
                    f"(slid {drift * 100:.1f} cm) {where}"
                )
            if np.linalg.norm(self.free_joint_qvel(name)[:3]) > 0.05:
                raise InfeasibleScene(f"object shift {shift.to_dict()}: {name} never came to "
                                      f"rest {where}")
        self._check_penetration(shift, list(reference))
