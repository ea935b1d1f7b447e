"""Episode videos: overlays drawn where expected, mp4 files that read back."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from para_bench.evaluation.episode import run_episode
from para_bench.suites import get_suite
from para_bench.types import ActionChunk
from para_bench.video import (
    START_BGR,
    TARGET_BGR,
    TRAJ_BGR,
    VideoFrame,
    draw_frame,
    predicted_pixels,
    to_canvas,
    write_video,
)
from tests.fake_env import FakeEnv, ForwardAgent


def _read(path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            return frames
        frames.append(frame)


def test_overlays_are_drawn_where_expected():
    rgb = np.zeros((16, 16, 3), np.uint8)
    img = draw_frame(rgb, path_px=np.array([[2.0, 12.0], [13.0, 12.0]]),
                     predicted_px=np.array([[3.0, 5.0], [np.nan, 1.0]]))
    assert img.shape == (256, 256, 3)  # 16 px -> 256 px, nearest neighbour
    u, v = to_canvas([3.0, 5.0], 16)
    assert (u, v) == (56, 88)  # pixel centre 3 -> middle of its 16-pixel block
    assert tuple(img[v, u]) == TARGET_BGR
    su, sv = to_canvas([2.0, 12.0], 16)
    assert tuple(img[sv, su]) == START_BGR
    mu, mv = to_canvas([8.0, 12.0], 16)
    assert tuple(img[mv, mu]) == TRAJ_BGR  # on the polyline
    assert not img[:60].any() and not img[110:175].any()  # nothing drawn elsewhere


def test_upscaling_keeps_pixels_and_skips_large_frames():
    rgb = np.random.default_rng(0).integers(0, 255, (128, 128, 3), dtype=np.uint8)
    img = draw_frame(rgb)
    assert img.shape == (256, 256, 3) and np.array_equal(img[::2, ::2], rgb[:, :, ::-1])
    assert draw_frame(np.zeros((300, 300, 3), np.uint8)).shape == (300, 300, 3)


def test_predicted_pixels_from_debug_or_projected_targets():
    k = np.array([[100.0, 0, 64], [0, 100.0, 64], [0, 0, 1]])
    obs = {"intrinsics": k, "extrinsics": np.eye(4)}
    chunk = ActionChunk.from_targets([[0.1, 0.0, 1.0], [0.0, 0.0, -1.0]], gripper=-1.0)
    assert np.allclose(predicted_pixels(chunk, obs), [[74.0, 64.0]])  # behind camera dropped
    chunk.debug["pixels"] = [[5, 6], [7, 8]]
    assert np.allclose(predicted_pixels(chunk, obs), [[5, 6], [7, 8]])
    chunk.debug["pixels"] = "garbage"
    assert predicted_pixels(chunk, obs) is None
    assert predicted_pixels(ActionChunk.from_deltas(np.zeros(7)), obs) is None


def test_an_episode_video_reads_back(tmp_path):
    env, agent = FakeEnv(max_steps=20), ForwardAgent()
    spec = get_suite("in_dist").plan("test", episodes=1)[0]
    frames: list[VideoFrame] = []
    out = run_episode(env, agent, spec, frames)
    assert len(frames) == 1 + out.steps // 5  # reset + one per chunk of 5
    assert sum(len(f.eef) for f in frames) == len(out.traj)
    path = write_video(frames, tmp_path / "ep.mp4")
    read = _read(path)
    assert len(read) == len(frames) and read[0].shape == (256, 256, 3)


@pytest.mark.sim
def test_cli_writes_a_readable_video_of_a_real_episode(tmp_path):
    out = tmp_path / "oracle"
    proc = subprocess.run(
        [sys.executable, "-m", "para_bench.cli", "run", "--agent", "oracle", "--suite",
         "in_dist", "--episodes", "1", "--max-steps", "40", "--video", "all", "--no-coverage",
         "--quiet", "--out", str(out)],
        capture_output=True, text=True, env=dict(os.environ, MUJOCO_GL="egl"), timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    videos = list((out / "videos").glob("*.mp4"))
    assert len(videos) == 1
    frames = _read(videos[0])
    assert len(frames) >= 1 and frames[0].shape == (256, 256, 3)


def _magenta(frame: np.ndarray) -> np.ndarray:
    return (frame[:, :, 2] > 170) & (frame[:, :, 1] < 100) & (frame[:, :, 0] > 170)


@pytest.mark.sim
def test_predicted_targets_appear_where_they_were_projected(tmp_path):
    """A real oracle episode: every target the oracle sent is drawn (magenta, read back
    through mp4v) at the pixel its world position projects to, and nowhere else."""
    from para_bench.agents.oracle import OracleAgent
    from para_bench.envs.camera import project
    from para_bench.envs.libero_env import LiberoEnv

    env = LiberoEnv("libero_spatial", 0, image_size=128, control="servo", max_steps=48)
    spec = get_suite("pos_ood").plan("test", episodes=1)[0]
    frames: list[VideoFrame] = []
    chunks = []
    agent = OracleAgent()
    real_act = agent.act
    agent.act = lambda obs, info: chunks.append((obs, real_act(obs, info))) or chunks[-1][1]
    try:
        run_episode(env, agent, spec, frames)
    finally:
        env.close()
    read = _read(write_video(frames, tmp_path / "ep.mp4"))
    assert len(read) == len(frames) == len(chunks) + 1
    s = 2  # 128 px -> 256 px
    checked = 0
    for (obs, chunk), frame in zip(chunks, read, strict=False):
        uv, z = project(chunk.targets, obs["intrinsics"], obs["extrinsics"])
        canvas = to_canvas(uv[z > 0], s)
        inside = canvas[np.all((canvas >= 4) & (canvas < 252), axis=1)]
        mask = _magenta(frame)
        for u, v in inside:  # a drawn dot at each projected target
            assert mask[v - 2:v + 3, u - 2:u + 3].any(), (u, v)
            checked += 1
        ys, xs = np.nonzero(mask)  # and no magenta far from every target
        if len(xs):
            dist = np.min(np.hypot(xs[:, None] - inside[None, :, 0],
                                   ys[:, None] - inside[None, :, 1]), axis=1)
            assert np.mean(dist > 3 * s + 3) < 0.02
    assert checked >= 16
