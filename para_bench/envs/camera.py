"""Camera geometry in the OpenCV convention, and viewpoint orbits for MuJoCo cameras.

Conventions (used everywhere in para-bench):

* ``intrinsics`` K is 3x3 for the delivered image size, pixel centres at integer
  coordinates (OpenCV): ``u = fx * x / z + cx`` with ``cx = (W - 1) / 2``.
* ``extrinsics`` is the 4x4 world -> camera transform with OpenCV axes
  (x right, y down, z forward). ``intrinsics @ extrinsics[:3]`` maps world points to
  pixels of the upright image (row 0 at the top).
* MuJoCo cameras look along their -z axis with y up; :func:`mujoco_to_opencv` converts.
"""

from __future__ import annotations

import numpy as np

# MuJoCo camera frame (x right, y up, looking along -z) -> OpenCV (x right, y down, z forward).
_MJ_TO_CV = np.diag([1.0, -1.0, -1.0])


def intrinsics_from_fovy(fovy_deg: float, height: int, width: int) -> np.ndarray:
    """Pinhole K for a MuJoCo camera with vertical field of view ``fovy_deg``."""
    f = 0.5 * height / np.tan(np.deg2rad(fovy_deg) / 2.0)
    return np.array(
        [[f, 0.0, (width - 1) / 2.0], [0.0, f, (height - 1) / 2.0], [0.0, 0.0, 1.0]],
        dtype=np.float64,
    )


def mujoco_to_opencv(cam_pos: np.ndarray, cam_xmat: np.ndarray) -> np.ndarray:
    """4x4 world -> camera (OpenCV axes) from a MuJoCo camera's world position and 3x3 rotation."""
    r_cv = np.asarray(cam_xmat, dtype=np.float64).reshape(3, 3) @ _MJ_TO_CV  # camera -> world
    w2c = np.eye(4)
    w2c[:3, :3] = r_cv.T
    w2c[:3, 3] = -r_cv.T @ np.asarray(cam_pos, dtype=np.float64)
    return w2c


def look_at(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """4x4 world -> camera (OpenCV axes) for a camera at ``position`` looking at ``target``,
    image x along the horizontal (for synthetic views in tests and benchmarks)."""
    pos = np.asarray(position, dtype=np.float64)
    fwd = np.asarray(target, dtype=np.float64) - pos
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    r = np.stack([right, np.cross(fwd, right), fwd], 1)  # camera -> world: x right, y down
    w2c = np.eye(4)
    w2c[:3, :3] = r.T
    w2c[:3, 3] = -r.T @ pos
    return w2c


def project(points: np.ndarray, intrinsics: np.ndarray, extrinsics: np.ndarray) -> tuple:
    """Projects world points (N, 3) to pixels.

    Returns:
        ``(uv, z)``: (N, 2) pixel coordinates (u = column, v = row) and (N,) depth along
        the optical axis in metres (negative behind the camera).
    """
    pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
    cam = pts @ extrinsics[:3, :3].T + extrinsics[:3, 3]
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = (cam[:, :2] / z[:, None]) * np.diag(intrinsics)[:2] + intrinsics[:2, 2]
    return uv, z


def unproject(uv: np.ndarray, depth: np.ndarray, intrinsics: np.ndarray,
              extrinsics: np.ndarray) -> np.ndarray:
    """Lifts pixels (N, 2) with optical-axis depth (N,) to world points (N, 3)."""
    uv = np.atleast_2d(np.asarray(uv, dtype=np.float64))
    depth = np.asarray(depth, dtype=np.float64).reshape(-1)
    xy = (uv - intrinsics[:2, 2]) / np.diag(intrinsics)[:2]
    cam = np.concatenate([xy * depth[:, None], depth[:, None]], axis=1)
    c2w = np.linalg.inv(extrinsics)
    return cam @ c2w[:3, :3].T + c2w[:3, 3]


def pixel_ray_at_height(uv: np.ndarray, height: np.ndarray, intrinsics: np.ndarray,
                        extrinsics: np.ndarray) -> np.ndarray:
    """World points (N, 3) where each pixel's ray meets the horizontal plane ``z = height``.

    This is the decode of pixel-aligned policies: (u, v, height) -> 3D point.
    """
    uv = np.atleast_2d(np.asarray(uv, dtype=np.float64))
    height = np.broadcast_to(np.asarray(height, dtype=np.float64), (len(uv),))
    c2w = np.linalg.inv(extrinsics)
    origin = c2w[:3, 3]
    xy = (uv - intrinsics[:2, 2]) / np.diag(intrinsics)[:2]
    dirs = np.concatenate([xy, np.ones((len(uv), 1))], axis=1) @ c2w[:3, :3].T
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (height - origin[2]) / dirs[:, 2]
    return origin + t[:, None] * dirs


def depth_buffer_to_metres(depth: np.ndarray, znear: float, zfar: float) -> np.ndarray:
    """Converts MuJoCo's normalised OpenGL depth buffer to metres along the optical axis."""
    return znear / (1.0 - depth * (1.0 - znear / zfar))


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * (k @ k)


def look_at_point(cam_pos: np.ndarray, cam_xmat: np.ndarray, plane_z: float) -> np.ndarray:
    """Where the camera's optical axis meets the horizontal plane ``z = plane_z``."""
    forward = -np.asarray(cam_xmat).reshape(3, 3)[:, 2]
    if forward[2] >= -1e-6:
        raise ValueError("camera does not look down at the table; cannot orbit it")
    t = (plane_z - cam_pos[2]) / forward[2]
    return np.asarray(cam_pos, dtype=np.float64) + t * forward


def orbit(cam_pos: np.ndarray, cam_xmat: np.ndarray, pivot: np.ndarray, yaw_deg: float,
          pitch_deg: float, distance_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Orbits a camera about ``pivot``: yaw about world z, pitch = change of elevation.

    Positive pitch raises the camera; the camera keeps looking at ``pivot`` because its
    orientation turns with the same rotation.

    Returns:
        ``(position, rotation)``: new world position (3,) and 3x3 world rotation (MuJoCo axes).
    """
    v = np.asarray(cam_pos, dtype=np.float64) - pivot
    rot = _axis_angle([0.0, 0.0, 1.0], np.deg2rad(yaw_deg))
    v_yawed = rot @ v
    side = np.cross(v_yawed, [0.0, 0.0, 1.0])
    if np.linalg.norm(side) > 1e-9 and pitch_deg:
        rot = _axis_angle(side, np.deg2rad(pitch_deg)) @ rot
    new_pos = pivot + distance_scale * (rot @ v)
    new_rot = rot @ np.asarray(cam_xmat, dtype=np.float64).reshape(3, 3)
    return new_pos, new_rot


def mat_to_quat_wxyz(mat: np.ndarray) -> np.ndarray:
    """3x3 rotation -> unit quaternion (w, x, y, z), MuJoCo's order."""
    import mujoco

    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.asarray(mat, dtype=np.float64).reshape(9))
    return q


def mat_to_quat_xyzw(mat: np.ndarray) -> np.ndarray:
    """3x3 rotation -> unit quaternion (x, y, z, w) with w >= 0, para-bench's order."""
    w, x, y, z = mat_to_quat_wxyz(mat)
    return np.array([x, y, z, w]) * (1.0 if w >= 0 else -1.0)
