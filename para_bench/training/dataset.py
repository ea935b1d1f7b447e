"""Demo datasets for the learned policies: HDF5 (para-bench's or LIBERO's own) -> batches.

:class:`DemoData` reads every demo of a file into memory once; :class:`FrameDataset`
serves training samples in the batch layout of :mod:`para_bench.models.base`: the frame,
its camera, the current and start EEF, and the targets ``stride * (k + 1)`` control steps
ahead (``k < n_window``), clamped to the demo's last frame.

LIBERO's official demo files store images upside down and carry no camera: pass
``camera=(intrinsics, extrinsics)`` for the task's default agent view (e.g. from
``LiberoEnv(...).camera_matrices()``); orientations come from ``obs/ee_ori`` (axis-angle).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from para_bench.envs.camera import mat_to_quat_xyzw, project
from para_bench.models.base import PolicyConfig
from para_bench.models.stats import DatasetStats, rotvec_to_mat


@dataclass
class Demo:
    """One demo in memory (``T`` frames)."""

    name: str
    rgb: np.ndarray  # (T, S, S, 3) uint8, row 0 at the top
    eef_pos: np.ndarray  # (T, 3)
    eef_quat: np.ndarray  # (T, 4) xyzw
    gripper_qpos: np.ndarray  # (T, 2)
    actions: np.ndarray  # (T, 7)
    intrinsics: np.ndarray  # (T, 3, 3)
    extrinsics: np.ndarray  # (T, 4, 4)

    def __len__(self) -> int:
        return len(self.actions)


class DemoData:
    """All demos of an HDF5 file, resized to ``image_size`` if needed.

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
        else:
            quat = np.stack([mat_to_quat_xyzw(rotvec_to_mat(w)) for w in obs["ee_ori"][()]])
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


def compute_stats(demos: list[Demo]) -> DatasetStats:
    """Statistics of the targets in ``demos`` (saved in the checkpoint)."""
    return DatasetStats.from_arrays(
        np.concatenate([d.eef_pos for d in demos]), np.concatenate([d.eef_quat for d in demos]),
        np.concatenate([d.actions[:, 6] for d in demos]))


class FrameDataset(torch.utils.data.Dataset):
    """Every frame of a list of demos as one training sample (see the module docstring)."""

    def __init__(self, demos: list[Demo], config: PolicyConfig, stats: DatasetStats) -> None:
        self.demos, self.config, self.stats = demos, config, stats
        self.index = [(i, t) for i, d in enumerate(demos) for t in range(len(d))]
        self.rot_codes = [stats.rotation_code(d.eef_quat).astype(np.float32) for d in demos]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        i, t = self.index[item]
        return frame_sample(self.demos[i], t, self.config, self.rot_codes[i])


def observation_sample(rgb: np.ndarray, intrinsics: np.ndarray, extrinsics: np.ndarray,
                       eef_pos: np.ndarray, eef_start: np.ndarray,
                       gripper_qpos: np.ndarray) -> dict[str, torch.Tensor]:
    """The input part of a sample (no batch axis), shared by training and the agent."""
    uv, _ = project(eef_pos[None], intrinsics, extrinsics)
    return {
        "rgb": torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0,
        "intrinsics": torch.as_tensor(intrinsics, dtype=torch.float32),
        "extrinsics": torch.as_tensor(extrinsics, dtype=torch.float32),
        "eef_pos": torch.as_tensor(eef_pos, dtype=torch.float32),
        "eef_start": torch.as_tensor(eef_start, dtype=torch.float32),
        "eef_uv": torch.as_tensor(uv[0], dtype=torch.float32),
        "gripper_state": torch.tensor([gripper_qpos[0] - gripper_qpos[1]], dtype=torch.float32),
    }


def history_indices(t: int, config: PolicyConfig) -> list[int]:
    """Frames of the context window, oldest first, spaced as the agent sees them at run time
    (every ``stride * n_exec`` control steps), clamped to the demo's first frame."""
    spacing = config.stride * config.n_exec
    return [max(0, t - j * spacing) for j in range(config.history - 1, -1, -1)]


def frame_sample(d: Demo, t: int, config: PolicyConfig,
                 rot_codes: np.ndarray) -> dict[str, torch.Tensor]:
    """Inputs and continuous targets for frame ``t`` of demo ``d``."""
    k, w2c = d.intrinsics[t], d.extrinsics[t]
    s = observation_sample(d.rgb[t], k, w2c, d.eef_pos[t], d.eef_pos[0], d.gripper_qpos[t])
    last = len(d) - 1
    idx = np.minimum(t + config.stride * np.arange(1, config.n_window + 1), last)
    target_xyz = d.eef_pos[idx]
    uv, _ = project(target_xyz, k, w2c)
    s["target_xyz"] = torch.as_tensor(target_xyz, dtype=torch.float32)
    s["target_uv"] = torch.as_tensor(uv, dtype=torch.float32)
    s["target_gripper"] = torch.as_tensor(d.actions[np.maximum(idx - 1, 0), 6],
                                          dtype=torch.float32)
    s["target_rot"] = torch.as_tensor(rot_codes[idx])
    if config.history > 1:
        hist = history_indices(t, config)
        s["history_rgb"] = torch.stack([
            torch.from_numpy(d.rgb[j]).permute(2, 0, 1).float() / 255.0 for j in hist])
        huv, _ = project(d.eef_pos[hist], k, w2c)
        s["history_uv"] = torch.as_tensor(huv, dtype=torch.float32)
        s["history_xyz"] = torch.as_tensor(d.eef_pos[hist], dtype=torch.float32)
    return s
