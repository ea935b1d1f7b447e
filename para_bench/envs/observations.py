"""The observation contract of :class:`~para_bench.envs.libero_env.LiberoEnv`.

Keys (numpy): ``rgb`` (H, W, 3) uint8 upright; ``depth`` (H, W) float32 metres along the
optical axis (when ``depth=True``); ``intrinsics`` (3, 3); ``extrinsics`` (4, 4) world ->
camera, OpenCV axes; ``eef_pos`` (3,) and ``eef_quat_xyzw`` (4,) of the grip site between
the fingertips (the frame the controller steers); ``gripper_qpos`` (2,); ``joint_pos``
(7,); ``robosuite_eef_pos`` (3,) and ``robosuite_eef_quat_xyzw`` (4,), robosuite's own
``robot0_eef_pos`` / ``robot0_eef_quat`` (the hand body's orientation, not the grip site's:
the state openpi's LIBERO policies read); ``wrist_rgb`` (H, W, 3) uint8 upright, the wrist
camera ``robot0_eye_in_hand`` (only when ``wrist=True``: it costs a render). See
:mod:`para_bench.envs.camera` for the conventions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from para_bench.envs.camera import depth_buffer_to_metres, mat_to_quat_xyzw
from para_bench.envs.rendering import WRIST_CAMERA

__all__ = ["observation_space", "to_observation"]


def observation_space(image_size: int, depth: bool, wrist: bool) -> spaces.Dict:
    """The ``gymnasium`` space of the observation contract."""
    n = image_size

    def box(shape: tuple, lo: float = -np.inf, hi: float = np.inf,
            dtype: Any = np.float64) -> spaces.Box:
        return spaces.Box(lo, hi, shape, dtype)

    obs_spaces = {
        "rgb": spaces.Box(0, 255, (n, n, 3), np.uint8),
        "intrinsics": box((3, 3)),
        "extrinsics": box((4, 4)),
        "eef_pos": box((3,)),
        "eef_quat_xyzw": box((4,), -1.0, 1.0),
        "gripper_qpos": box((2,)),
        "joint_pos": box((7,)),
        "robosuite_eef_pos": box((3,)),
        "robosuite_eef_quat_xyzw": box((4,), -1.0, 1.0),
    }
    if depth:
        obs_spaces["depth"] = box((n, n), 0.0, np.inf, np.float32)
    if wrist:
        obs_spaces["wrist_rgb"] = spaces.Box(0, 255, (n, n, 3), np.uint8)
    return spaces.Dict(obs_spaces)


def to_observation(raw: dict[str, Any], camera: str, intrinsics: np.ndarray,
                   extrinsics: np.ndarray, eef_pos: np.ndarray, eef_rotmat: np.ndarray,
                   model: Any, depth: bool, wrist: bool) -> dict[str, np.ndarray]:
    """The contract's observation from robosuite's observables and the grip-site pose.

    Args:
        raw: robosuite's observation dict (images bottom-up, OpenGL convention).
        camera: the agent-view camera's name.
        intrinsics, extrinsics: that camera's matrices now.
        eef_pos, eef_rotmat: the grip site's position and rotation matrix.
        model: the MuJoCo model (robosuite's wrapper), for the depth buffer's near / far.
        depth, wrist: whether to add ``depth`` / ``wrist_rgb``.
    """
    obs = {
        "rgb": np.ascontiguousarray(raw[f"{camera}_image"][::-1]),
        "intrinsics": intrinsics,
        "extrinsics": extrinsics,
        "eef_pos": eef_pos,
        "eef_quat_xyzw": mat_to_quat_xyzw(eef_rotmat),
        "gripper_qpos": np.asarray(raw["robot0_gripper_qpos"], dtype=np.float64),
        "joint_pos": np.asarray(raw["robot0_joint_pos"], dtype=np.float64),
        "robosuite_eef_pos": np.asarray(raw["robot0_eef_pos"], dtype=np.float64),
        "robosuite_eef_quat_xyzw": np.asarray(raw["robot0_eef_quat"], dtype=np.float64),
    }
    if wrist:
        obs["wrist_rgb"] = np.ascontiguousarray(raw[f"{WRIST_CAMERA}_image"][::-1])
    if depth:
        extent = model.stat.extent
        buf = raw[f"{camera}_depth"][::-1, :, 0]
        obs["depth"] = depth_buffer_to_metres(
            buf, model.vis.map.znear * extent, model.vis.map.zfar * extent
        ).astype(np.float32)
    return obs
