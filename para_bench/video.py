"""Episode videos: the frames the agent saw, with what it did and what it meant to do.

Each frame is the agent-view image given to ``act`` (plus the last observation), upscaled
with nearest-neighbour so small images stay crisp, with two overlays:

- the executed end-effector trajectory so far (every control step, rendered or not),
  projected with the episode-start camera, as a polyline;
- the targets predicted from that frame: ``chunk.debug["pixels"]`` ((K, 2), u = column,
  v = row in the delivered image) when the agent provides them, else the chunk's world
  targets projected with that frame's camera.

Videos are MPEG-4 Part 2 (``mp4v``), the codec every opencv-python wheel can write and read.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from para_bench.envs.camera import project

MIN_SIDE = 256  # frames smaller than this are upscaled by an integer factor
FPS = 5
TRAJ_BGR = (0, 220, 255)  # executed EEF path: yellow
START_BGR = (0, 255, 0)  # episode start: green
TARGET_BGR = (255, 0, 255)  # predicted targets: magenta


@dataclass
class VideoFrame:
    """One frame of an episode video.

    Attributes:
        rgb: (H, W, 3) uint8 agent-view image.
        intrinsics: (3, 3) camera intrinsics of this image.
        extrinsics: (4, 4) world -> camera of this image.
        eef: (M, 3) EEF positions executed since the previous frame (the first frame holds
            the start position).
        predicted_px: (K, 2) pixels the agent predicted from this frame, or None.
    """

    rgb: np.ndarray
    intrinsics: np.ndarray
    extrinsics: np.ndarray
    eef: np.ndarray
    predicted_px: np.ndarray | None = None

    @classmethod
    def from_obs(cls, obs: dict, eef: Any) -> VideoFrame:
        """A frame of an observation, with the EEF positions executed to reach it."""
        return cls(np.asarray(obs["rgb"]), np.asarray(obs["intrinsics"], dtype=np.float64),
                   np.asarray(obs["extrinsics"], dtype=np.float64),
                   np.asarray(eef, dtype=np.float64).reshape(-1, 3))


def predicted_pixels(chunk: Any, obs: dict) -> np.ndarray | None:
    """The chunk's predicted targets in the pixels of ``obs``'s image, or None.

    Uses ``chunk.debug["pixels"]`` when present, else projects ``chunk.targets`` with the
    observation's camera (points behind the camera are dropped). Malformed debug data gives
    None: a video overlay never fails an episode.
    """
    try:
        if chunk.debug and chunk.debug.get("pixels") is not None:
            px = np.asarray(chunk.debug["pixels"], dtype=np.float64).reshape(-1, 2)
        elif chunk.targets is not None:
            px, z = project(chunk.targets, obs["intrinsics"], obs["extrinsics"])
            px = px[z > 0]
        else:
            return None
    except (TypeError, ValueError, KeyError):
        return None
    px = px[np.all(np.isfinite(px), axis=1)]
    return px if len(px) else None


def upscale_factor(shape: tuple[int, ...]) -> int:
    """Integer nearest-neighbour factor that brings the short side to about ``MIN_SIDE``."""
    return max(1, MIN_SIDE // max(1, min(shape[:2])))


def to_canvas(uv: np.ndarray, scale: int) -> np.ndarray:
    """Maps image pixels (u, v; centres at integers) to integer pixels of the upscaled frame."""
    return np.round(np.asarray(uv, dtype=np.float64) * scale + (scale - 1) / 2).astype(np.int32)


def draw_frame(rgb: np.ndarray, path_px: np.ndarray | None = None,
               predicted_px: np.ndarray | None = None) -> np.ndarray:
    """Upscales an RGB frame and draws the overlays; returns a new (H*s, W*s, 3) BGR image.

    Args:
        rgb: (H, W, 3) uint8 image.
        path_px: (N, 2) executed EEF path in the image's pixels (u, v), or None.
        predicted_px: (K, 2) predicted targets in the image's pixels, or None.
    """
    import cv2

    s = upscale_factor(rgb.shape)
    bgr = np.ascontiguousarray(np.repeat(np.repeat(rgb[:, :, ::-1], s, 0), s, 1))
    limit = 4 * max(bgr.shape[:2])  # keep far-off points inside int32 and cv2's range
    radius = max(2, s + 1)
    if path_px is not None and len(path_px):
        pts = _finite(path_px)
        if len(pts):
            pts = np.clip(to_canvas(pts, s), -limit, limit)
            if len(pts) > 1:
                cv2.polylines(bgr, [pts.reshape(-1, 1, 2)], False, TRAJ_BGR, max(2, s // 2),
                              cv2.LINE_AA)
            cv2.circle(bgr, tuple(int(c) for c in pts[0]), radius, START_BGR, -1)
    if predicted_px is not None and len(predicted_px):
        pts = _finite(predicted_px)
        for u, v in np.clip(to_canvas(pts, s), -limit, limit):
            cv2.circle(bgr, (int(u), int(v)), radius, TARGET_BGR, -1)
    return bgr


def _finite(px: np.ndarray) -> np.ndarray:
    px = np.asarray(px, dtype=np.float64).reshape(-1, 2)
    return px[np.all(np.isfinite(px), axis=1)]


def render_frames(frames: list[VideoFrame]) -> list[np.ndarray]:
    """Draws every frame: the path executed up to it (start camera) and its predictions."""
    k0, w2c0 = frames[0].intrinsics, frames[0].extrinsics
    out, executed = [], []
    for f in frames:
        executed.extend(f.eef)
        path_px = None
        if executed:
            uv, z = project(np.asarray(executed), k0, w2c0)
            path_px = uv[z > 0]
        out.append(draw_frame(f.rgb, path_px, f.predicted_px))
    return out


def write_video(frames: list[VideoFrame], path: str | Path, fps: int = FPS) -> Path | None:
    """Writes an episode video (mp4v); returns its path, or None (with a warning) on failure.

    A video that cannot be written never costs the episode its record.
    """
    import cv2

    path = Path(path)
    try:
        images = render_frames(frames)
        path.parent.mkdir(parents=True, exist_ok=True)
        h, w = images[0].shape[:2]
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        if not writer.isOpened():
            raise OSError("opencv could not open an mp4v writer")
        try:
            for img in images:
                writer.write(img)
        finally:
            writer.release()
    except Exception as e:  # noqa: BLE001 - the record matters more than its video
        print(f"para-bench: warning: video {path.name} not written: {type(e).__name__}: {e}",
              file=sys.stderr)
        return None
    return path
