"""Demo datasets for the learned policies: HDF5 (para-bench's or LIBERO's own) -> batches.

:class:`DemoData` reads every demo of a file into memory once. :class:`TrainingFrames`
turns a list of demos into pre-built tensors, one row per frame: the ``uint8`` image, the
input fields (built with :func:`~para_bench.models.sample.observation_inputs`, exactly as
the agent builds them from a live observation), the targets of the ``n_window`` predicted
points (:func:`~para_bench.models.sample.target_offsets`, clamped to the demo's last
frame) and the history frames' indices. :meth:`TrainingFrames.batch` gathers a batch with
tensor indexing (no per-sample Python), optionally augmented
(:mod:`para_bench.training.augment`).

Targets: the servo **set-point** the demonstration commanded at each step, recovered from
the recorded OSC command: ``eef_t + a_t[:3] * 0.05`` m and ``exp(a_t[3:6] * 0.5) @ R_t``
(the controller's own goal; LIBERO's official files use the same OSC deltas), or, with
``targets = "achieved"``, the EEF positions reached.

LIBERO's official demo files store images upside down and carry no camera: pass
``camera=(intrinsics, extrinsics)`` for the task's default agent view (e.g. from
``LiberoEnv(...).camera_matrices()``). Their ``obs/ee_ori`` (axis-angle) is robosuite's
``robot0_eef_quat``, the orientation of the ``right_hand`` body, while para-bench observes
and steers the grip site: it is converted with :data:`HAND_TO_GRIP_SITE`. Their images were
rendered by LIBERO's own renderer: checkpoints trained on them record
``render_quality = "libero"``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from para_bench.envs.camera import mat_to_quat_xyzw
from para_bench.envs.control import OSC_POS_LIMIT, OSC_ROT_LIMIT, quat_xyzw_to_mat
from para_bench.models.base import PolicyConfig, add_bin_targets
from para_bench.models.sample import (
    observation_inputs,
    rgb_to_float,
    steps_per_call,
    target_offsets,
)
from para_bench.models.stats import DatasetStats, rotvec_to_mat
from para_bench.training.augment import Augment, augment_batch

#: Rotation from robosuite's ``right_hand`` body frame (LIBERO's ``ee_ori``) to the grip
#: site frame para-bench observes: ``R_site = R_hand @ HAND_TO_GRIP_SITE`` (the Panda
#: gripper is mounted at -90 deg about the hand's z axis; checked on a real env by a test).
HAND_TO_GRIP_SITE = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


@dataclass
class Demo:
    """One demo in memory (``T`` frames)."""

    name: str
    rgb: np.ndarray  # (T, S, S, 3) uint8, row 0 at the top
    eef_pos: np.ndarray  # (T, 3)
    eef_quat: np.ndarray  # (T, 4) xyzw, grip site
    gripper_qpos: np.ndarray  # (T, 2)
    actions: np.ndarray  # (T, 7)
    intrinsics: np.ndarray  # (T, 3, 3)
    extrinsics: np.ndarray  # (T, 4, 4)

    def __len__(self) -> int:
        return len(self.actions)

    def setpoints(self) -> tuple[np.ndarray, np.ndarray]:
        """The servo set-point of every step: positions (T, 3) and orientations (T, 4)."""
        pos = self.eef_pos + self.actions[:, :3] * OSC_POS_LIMIT
        quat = np.stack([
            mat_to_quat_xyzw(rotvec_to_mat(a[3:6] * OSC_ROT_LIMIT) @ quat_xyzw_to_mat(q))
            for a, q in zip(self.actions, self.eef_quat, strict=True)])
        return pos, quat


class DemoData:
    """All demos of an HDF5 file, resized to ``image_size`` if needed.

    Attributes:
        render_quality: how the images were rendered (``fast`` or ``libero``), from the
            file's ``env_args``; LIBERO's own files: ``libero``.

    Raises:
        ValueError: the file is missing, unreadable, has no demos, or lacks a camera and
            none was given.
    """

    def __init__(self, path: str | Path, image_size: int | None = None,
                 camera: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        import h5py

        path = Path(path)
        if not path.is_file():
            raise ValueError(f"dataset {path}: no such file")
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise ValueError(f"dataset {path}: not a readable HDF5 file ({e})") from None
        with f:
            if "data" not in f or not len(f["data"]):
                raise ValueError(f"dataset {path}: no demos (expected data/demo_N groups)")
            data = f["data"]
            upright = data.attrs.get("image_origin", "bottom") == "top"
            env_args = json.loads(data.attrs.get("env_args", "{}") or "{}")
            own = "image_origin" in data.attrs  # written by para-bench collect
            self.render_quality = env_args.get("render_quality", "fast" if own else "libero")
            names = sorted(data, key=lambda n: int(n.rsplit("_", 1)[-1]))
            self.demos = [self._read(data[n], n, upright, camera, path) for n in names]
        self.image_size = image_size or self.demos[0].rgb.shape[1]
        if any(d.rgb.shape[1] != self.image_size for d in self.demos):
            self.demos = [_resized(d, self.image_size) for d in self.demos]
        self.path = path

    @staticmethod
    def _read(g, name: str, upright: bool, camera, path: Path) -> Demo:
        obs = g["obs"]
        rgb = obs["agentview_rgb"][()]
        if not upright:
            rgb = np.ascontiguousarray(rgb[:, ::-1])
        t = len(rgb)
        if "ee_quat_xyzw" in obs:
            quat = obs["ee_quat_xyzw"][()]
        else:  # LIBERO: the right_hand body's axis-angle -> the grip site's quaternion
            quat = np.stack([mat_to_quat_xyzw(rotvec_to_mat(w) @ HAND_TO_GRIP_SITE)
                             for w in obs["ee_ori"][()]])
        if "camera" in g:
            k, w2c = g["camera/intrinsics"][()], g["camera/extrinsics"][()]
        elif camera is not None:
            k = np.broadcast_to(camera[0], (t, 3, 3)).copy()
            w2c = np.broadcast_to(camera[1], (t, 4, 4)).copy()
        else:
            raise ValueError(f"dataset {path}: {name} has no camera (LIBERO's own demo files); "
                             "give the task's default view with --camera-from-task BENCH/ID")
        return Demo(name, rgb, obs["ee_pos"][()], quat, obs["gripper_states"][()],
                    g["actions"][()], k, w2c)

    def split(self, val_fraction: float = 0.1) -> tuple[list[Demo], list[Demo]]:
        """The last ``val_fraction`` of demos (at least one) for validation; with a single
        demo, it serves both."""
        n_val = max(1, round(len(self.demos) * val_fraction))
        if len(self.demos) <= n_val:
            return self.demos, self.demos
        return self.demos[:-n_val], self.demos[-n_val:]


def demo_scene_ids(path: str | Path) -> list[str] | None:
    """The sorted scene ids of every demo in a para-bench demo file; None for files that do
    not record them (LIBERO's own demos, collected in scenes other than its init states)."""
    import h5py

    with h5py.File(path, "r") as f:
        ids = [g.attrs.get("scene_id") for g in f["data"].values()]
    if not ids or any(i is None for i in ids):
        return None
    return sorted({str(i) for i in ids})


def default_camera(task: str, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(intrinsics, extrinsics)`` of a task's unperturbed agent view at ``image_size``:
    the camera of LIBERO's own demo files."""
    from para_bench.envs.libero_env import LiberoEnv
    from para_bench.envs.tasks import parse_task

    bench, tid = parse_task(task)
    env = LiberoEnv(bench, tid, image_size=image_size)
    try:
        env.reset(seed=0)
        return env.camera_matrices()
    finally:
        env.close()


def _resized(d: Demo, size: int) -> Demo:
    import cv2

    scale = size / d.rgb.shape[1]
    rgb = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA) for im in d.rgb])
    k = d.intrinsics.copy()
    k[:, :2, :2] *= scale
    k[:, :2, 2] = (k[:, :2, 2] + 0.5) * scale - 0.5
    return Demo(d.name, rgb, d.eef_pos, d.eef_quat, d.gripper_qpos, d.actions, k, d.extrinsics)


def demo_targets(d: Demo, config: PolicyConfig) -> tuple[np.ndarray, np.ndarray]:
    """Every step's target position (T, 3) and orientation (T, 4) of the config's kind."""
    if getattr(config, "targets", "setpoint") == "achieved":
        return d.eef_pos, d.eef_quat
    return d.setpoints()


def compute_stats(demos: list[Demo], config: PolicyConfig | None = None) -> DatasetStats:
    """Statistics of the targets in ``demos`` (saved in the checkpoint); heights cover the
    reached EEF positions too."""
    pos, quat = zip(*(demo_targets(d, config or PolicyConfig()) for d in demos), strict=True)
    stats = DatasetStats.from_arrays(
        np.concatenate(pos), np.concatenate(quat),
        np.concatenate([d.actions[:, 6] for d in demos]))
    z = np.concatenate([d.eef_pos[:, 2] for d in demos])
    stats.height_lo = min(stats.height_lo, float(z.min()) - 0.02)
    stats.height_hi = max(stats.height_hi, float(z.max()) + 0.02)
    return stats


def history_indices(t: int, config: PolicyConfig) -> list[int]:
    """Frames of the context window, oldest first, spaced as the agent sees them at run time
    (every :func:`~para_bench.models.sample.steps_per_call` control steps), clamped to the
    demo's first frame."""
    spacing = steps_per_call(config)
    return [max(0, t - j * spacing) for j in range(config.history - 1, -1, -1)]


INPUT_KEYS = ("intrinsics", "extrinsics", "eef_pos", "eef_start", "eef_uv", "gripper_state")
TARGET_KEYS = ("target_xyz", "target_uv", "target_gripper", "target_rot")


class TrainingFrames:
    """Every frame of a list of demos as one pre-built training sample (module docstring).

    Attributes:
        rgb: (N, 3, S, S) uint8 images.
        fields: input and target tensors, one row per frame.
        history: (N, C) frame indices of each frame's history (``config.history > 1``).
    """

    def __init__(self, demos: list[Demo], config: PolicyConfig, stats: DatasetStats) -> None:
        from para_bench.envs.camera import project

        self.demos, self.config, self.stats = demos, config, stats
        offsets = target_offsets(config)
        rows: dict[str, list] = {k: [] for k in (*INPUT_KEYS, *TARGET_KEYS)}
        rgb, history, start = [], [], 0
        for d in demos:
            pos, quat = demo_targets(d, config)
            codes = stats.rotation_code(quat).astype(np.float32)
            for t in range(len(d)):
                s = observation_inputs(d.rgb[t], d.intrinsics[t], d.extrinsics[t],
                                       d.eef_pos[t], d.eef_pos[0], d.gripper_qpos[t])
                rgb.append(s.pop("rgb"))
                for k, v in s.items():
                    rows[k].append(v)
                idx = np.minimum(t + offsets, len(d) - 1)
                grip_idx = idx if getattr(config, "targets", "setpoint") == "setpoint" \
                    else np.maximum(idx - 1, 0)
                uv, _ = project(pos[idx], d.intrinsics[t], d.extrinsics[t])
                rows["target_xyz"].append(torch.as_tensor(pos[idx], dtype=torch.float32))
                rows["target_uv"].append(torch.as_tensor(uv, dtype=torch.float32))
                rows["target_gripper"].append(torch.as_tensor(d.actions[grip_idx, 6],
                                                              dtype=torch.float32))
                rows["target_rot"].append(torch.as_tensor(codes[idx]))
                history.append([start + j for j in history_indices(t, config)])
            start += len(d)
        self.rgb = torch.stack(rgb)
        self.fields = {k: torch.stack(v) for k, v in rows.items()}
        self.history = torch.as_tensor(history, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.rgb)

    def batch(self, idx: torch.Tensor | list[int], augment: Augment | None = None,
              generator: torch.Generator | None = None,
              device: torch.device | str = "cpu", train: bool = False
              ) -> dict[str, torch.Tensor]:
        """The samples ``idx`` as one batch with bin targets (``augment``: random shifts and
        colour jitter, see :mod:`para_bench.training.augment`; ``train``: a training batch,
        whose past frames the config's ``history_dropout`` may replace, drawn from
        ``generator``)."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        b = {k: v[idx] for k, v in self.fields.items()}
        b["rgb"] = self.rgb[idx]
        if self.config.history > 1:
            hist = self.history[idx]
            drop = getattr(self.config, "history_dropout", 0.0)
            if train and drop > 0:  # see ARConfig.history_dropout
                mask = torch.rand(len(idx), generator=generator) < drop
                hist = torch.where(mask[:, None], idx[:, None].expand_as(hist), hist)
            b["history_rgb"] = self.rgb[hist]
            b["history_uv"] = self.fields["eef_uv"][hist]
            b["history_xyz"] = self.fields["eef_pos"][hist]
        if augment is not None and augment.active:
            b = augment_batch(b, augment, generator)
        else:
            b["rgb"] = rgb_to_float(b["rgb"])
            if "history_rgb" in b:
                b["history_rgb"] = rgb_to_float(b["history_rgb"])
        b = add_bin_targets(b, self.config, self.stats)
        return {k: v.to(device) for k, v in b.items()}
