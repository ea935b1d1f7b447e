"""What a policy sees and predicts, defined once for training and for the agent.

* :func:`observation_inputs` turns one observation (image, camera, EEF, gripper) into the
  input fields of a sample (no batch axis; the image stays ``uint8``), and
  :func:`rgb_to_float` makes the model's ``[0, 1]`` image of it. The agent builds its batch
  from a live observation with these; the dataset builds every training sample from a
  demo frame with the same two functions, so the two cannot drift apart.
* :func:`target_offsets` says which future control steps the ``W`` predicted points are:
  with ``targets == "setpoint"`` (the default) point ``k`` is the servo set-point the
  demonstration commanded ``stride * k`` steps after the frame (``k = 0`` is the command to
  send now); with ``targets == "achieved"`` it is the EEF position the demonstration
  reached ``stride * (k + 1)`` steps after the frame.
* :func:`steps_per_call` is how many control steps the agent executes per decision
  (``n_exec`` points), which is also the spacing of the history frames a multi-frame
  model is trained on.

Why set-points: a servo set-point is what the controller chases, and the end effector
reaches it about 3-4 control steps later (measured on oracle demos). A model trained on
reached positions and executed by sending them as set-points moves slower than the
demonstration it imitates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from para_bench.envs.camera import project

if TYPE_CHECKING:
    from para_bench.models.base import PolicyConfig

TARGET_KINDS = ("setpoint", "achieved")


def observation_inputs(rgb: np.ndarray, intrinsics: np.ndarray, extrinsics: np.ndarray,
                       eef_pos: np.ndarray, eef_start: np.ndarray,
                       gripper_qpos: np.ndarray) -> dict[str, torch.Tensor]:
    """Input fields of one sample: ``rgb`` (3, S, S) uint8, ``intrinsics``, ``extrinsics``,
    ``eef_pos``, ``eef_start``, ``eef_uv`` (the EEF projected with this camera) and
    ``gripper_state`` (finger opening), float32."""
    uv, _ = project(np.asarray(eef_pos, dtype=np.float64)[None], intrinsics, extrinsics)
    return {
        "rgb": torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous(),
        "intrinsics": torch.as_tensor(intrinsics, dtype=torch.float32),
        "extrinsics": torch.as_tensor(extrinsics, dtype=torch.float32),
        "eef_pos": torch.as_tensor(eef_pos, dtype=torch.float32),
        "eef_start": torch.as_tensor(eef_start, dtype=torch.float32),
        "eef_uv": torch.as_tensor(uv[0], dtype=torch.float32),
        "gripper_state": torch.tensor([gripper_qpos[0] - gripper_qpos[1]], dtype=torch.float32),
    }


def rgb_to_float(rgb: torch.Tensor) -> torch.Tensor:
    """``uint8`` images (..., 3, S, S) -> float32 in [0, 1]."""
    return rgb.to(torch.float32) / 255.0


def observation_sample(rgb: np.ndarray, intrinsics: np.ndarray, extrinsics: np.ndarray,
                       eef_pos: np.ndarray, eef_start: np.ndarray,
                       gripper_qpos: np.ndarray) -> dict[str, torch.Tensor]:
    """:func:`observation_inputs` with the image as the model takes it (float, [0, 1])."""
    s = observation_inputs(rgb, intrinsics, extrinsics, eef_pos, eef_start, gripper_qpos)
    s["rgb"] = rgb_to_float(s["rgb"])
    return s


def target_offsets(config: PolicyConfig) -> np.ndarray:
    """Control steps after the frame of the ``n_window`` predicted points (see the module
    docstring)."""
    k = np.arange(config.n_window)
    if getattr(config, "targets", "setpoint") == "achieved":
        return config.stride * (k + 1)
    return config.stride * k


def steps_per_call(config: PolicyConfig) -> int:
    """Control steps one agent decision executes (its ``n_exec`` points)."""
    n = min(config.n_exec, config.n_window)
    if getattr(config, "targets", "setpoint") == "achieved":
        return config.stride * n
    return 1 + config.stride * (n - 1)


def execution_path(start: np.ndarray, points: np.ndarray, config: PolicyConfig
                   ) -> tuple[np.ndarray, np.ndarray]:
    """One servo target per control step for the first ``n_exec`` predicted points.

    ``setpoint`` targets: the first point, then ``stride`` linearly interpolated steps to
    each next one; ``achieved`` targets: ``stride`` steps from the current EEF ``start`` to
    the first point, then to each next one.

    Returns:
        ``(targets (steps_per_call, 3), point index (steps_per_call,))``, the index naming
        the predicted point whose gripper and orientation each step uses (the nearest one,
        ties to the later).
    """
    n = min(config.n_exec, config.n_window, len(points))
    s = config.stride
    frac = np.arange(1, s + 1) / s
    if getattr(config, "targets", "setpoint") == "achieved":
        prev, out = np.asarray(start, dtype=np.float64), []
        for p in points[:n]:
            out.extend(prev + f * (p - prev) for f in frac)
            prev = p
        return np.asarray(out), np.repeat(np.arange(n), s)
    out, idx = [points[0]], [0]
    for k in range(1, n):
        out.extend(points[k - 1] + f * (points[k] - points[k - 1]) for f in frac)
        idx.extend(k - 1 + (frac >= 0.5))
    return np.asarray(out, dtype=np.float64), np.asarray(idx, dtype=np.int64)
