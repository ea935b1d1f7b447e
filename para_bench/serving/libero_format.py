"""openpi's LIBERO convention: the observation its LIBERO policies were trained on.

What openpi's LIBERO example client sends (``examples/libero/main.py``), per query:

==========================  ==============================================================
key                         value
==========================  ==============================================================
``observation/image``       agent view: robosuite's raw frame (rendered at 256 px, LIBERO's
                            own render settings) rotated 180 degrees, resized with padding
                            to 224 x 224, uint8
``observation/wrist_image`` the same for the wrist camera ``robot0_eye_in_hand``
``observation/state``       (8,): robosuite's ``robot0_eef_pos`` (3), ``robot0_eef_quat``
                            as an axis-angle vector (3), ``robot0_gripper_qpos`` (2)
``prompt``                  the task's instruction
==========================  ==============================================================

The answer's ``actions`` (N, 7) are LIBERO OSC deltas; the client executes the first
``replan_steps`` of them (openpi's default: 5) and asks again.

The environment delivers images upright (robosuite's raw frame flipped vertically), so
the raw frame rotated by 180 degrees is the upright frame flipped left-right.
"""

from __future__ import annotations

from typing import Any

import numpy as np

RENDER_SIZE = 256  # LIBERO_ENV_RESOLUTION of openpi's example: its policies' training data
INPUT_SIZE = 224


def quat_xyzw_to_axis_angle(quat: np.ndarray) -> np.ndarray:
    """Unit quaternion (x, y, z, w) -> axis-angle vector (3,), angle in [0, 2 pi].

    The axis is ``xyz / sin(angle / 2)`` with ``angle = 2 acos(w)`` (``w`` clipped to
    [-1, 1]); a zero rotation gives zeros. The convention of robosuite's ``quat2axisangle``,
    which openpi's LIBERO example applies to ``robot0_eef_quat``.
    """
    q = np.asarray(quat, dtype=np.float64)
    w = float(np.clip(q[3], -1.0, 1.0))
    s = np.sqrt(1.0 - w * w)
    if s == 0.0:  # no rotation
        return np.zeros(3)
    return q[:3] * (2.0 * np.arccos(w)) / s


def resize_with_pad(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Fits an (H, W, 3) uint8 image into ``height x width`` without distortion.

    Scales by the larger of the two ratios with PIL's bilinear filter (sizes truncated to
    integers), then centres it on a black canvas: the resize openpi's clients apply
    (a PIL port of ``tf.image.resize_with_pad``). An image of the target size is returned
    as is.
    """
    from PIL import Image

    h, w = image.shape[:2]
    if (h, w) == (height, width):
        return image
    scale = max(w / width, h / height)
    new_w, new_h = int(w / scale), int(h / scale)
    resized = Image.fromarray(image).resize((new_w, new_h), resample=Image.BILINEAR)
    canvas = np.zeros((height, width, image.shape[2]), dtype=np.uint8)
    top, left = max(0, (height - new_h) // 2), max(0, (width - new_w) // 2)
    canvas[top:top + new_h, left:left + new_w] = np.asarray(resized)
    return canvas


def openpi_image(upright: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """An upright env frame as openpi's LIBERO policies see it (raw frame rotated 180 deg,
    resized with padding to ``size``)."""
    raw_rotated = np.ascontiguousarray(upright[:, ::-1])
    return resize_with_pad(raw_rotated, size, size)


def encode_observation(obs: dict[str, np.ndarray], instruction: str,
                       size: int = INPUT_SIZE) -> dict[str, Any]:
    """The LIBERO-convention observation dict from a para-bench observation.

    Needs ``rgb`` and ``wrist_rgb`` (``LiberoEnv(wrist=True)``) and the raw robosuite state
    ``robosuite_eef_pos``, ``robosuite_eef_quat_xyzw``, ``gripper_qpos``.
    """
    state = np.concatenate([
        np.asarray(obs["robosuite_eef_pos"], dtype=np.float64),
        quat_xyzw_to_axis_angle(obs["robosuite_eef_quat_xyzw"]),
        np.asarray(obs["gripper_qpos"], dtype=np.float64),
    ])
    return {
        "observation/image": openpi_image(obs["rgb"], size),
        "observation/wrist_image": openpi_image(obs["wrist_rgb"], size),
        "observation/state": state,
        "prompt": str(instruction),
    }


def decode_actions(msg: Any, replan_steps: int) -> np.ndarray:
    """The first ``replan_steps`` LIBERO deltas of an answer, (replan_steps, 7).

    Raises:
        ValueError: no ``actions``, not (N, 7), or fewer than ``replan_steps`` of them (as
            openpi's example client refuses).
    """
    if not isinstance(msg, dict) or "actions" not in msg:
        raise ValueError("the server's answer has no 'actions'")
    actions = np.asarray(msg["actions"], dtype=np.float64)
    if actions.ndim != 2 or actions.shape[1] != 7:
        raise ValueError(f"expected (N, 7) LIBERO actions, got shape {actions.shape}")
    if len(actions) < replan_steps:
        raise ValueError(f"the policy predicts {len(actions)} actions, fewer than "
                         f"--replan-steps {replan_steps}")
    return actions[:replan_steps]
