"""What a model agent sees at run time is what it was trained on (real simulator).

* The batch a model agent builds from a live observation equals the training sample built
  from the same frame of a collected demo (image, camera, EEF, start EEF, EEF pixel,
  gripper, history), on a perturbed scene (``pos_ood`` train) and a perturbed view
  (``viewpoint_ood`` train), at the first frame and at later decisions (the demo's
  recorded commands are replayed through the env's ``delta`` path to reach them).
* LIBERO's official demo files store robosuite's ``robot0_eef_quat`` (the ``right_hand``
  body) as ``obs/ee_ori``; loading them converts it to the grip site frame para-bench
  observes and steers.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from para_bench.envs.camera import intrinsics_from_fovy, look_at
from para_bench.envs.libero_env import LiberoEnv
from para_bench.models.sample import steps_per_call
from para_bench.suites.spec import get_suite
from para_bench.training.collect import collect
from para_bench.training.dataset import DemoData, TrainingFrames

pytestmark = pytest.mark.sim
S = 64
TINY_AR = {"dim": 16, "grid": 8, "n_window": 3, "stride": 2, "n_exec": 2, "history": 2,
           "token_grid": 2, "layers": 1}
FIELDS = ("rgb", "intrinsics", "extrinsics", "eef_pos", "eef_start", "eef_uv", "gripper_state",
          "history_rgb", "history_uv", "history_xyz")


@pytest.fixture(scope="module")
def perturbed_demos(tmp_path_factory):
    """One oracle demo on a shifted scene and one on an orbited view, 64 px."""
    out = {}
    for suite in ("pos_ood", "viewpoint_ood"):
        spec = get_suite(suite).plan("train", episodes=1)[0]
        assert spec.objects or spec.camera  # episode 0 of each train split is perturbed
        path = tmp_path_factory.mktemp(suite) / "demo.hdf5"
        counts = collect([spec], path, image_size=S, progress=False)
        assert counts["written"] == 1
        out[suite] = (path, spec)
    return out


@pytest.mark.parametrize("suite", ["pos_ood", "viewpoint_ood"])
def test_live_batch_equals_training_sample(suite, perturbed_demos, tmp_path):
    from para_bench.agents.ar.agent import ARAgent
    from para_bench.training.train import train_policy

    path, spec = perturbed_demos[suite]
    ckpt = tmp_path / "ar.pt"
    train_policy("ar", path, ckpt, steps=1, batch_size=2, overrides=TINY_AR, progress=False)
    agent = ARAgent(str(ckpt))
    demo = DemoData(path).demos[0]
    frames = TrainingFrames([demo], agent.config, agent.model.stats)
    every = steps_per_call(agent.config)

    env = LiberoEnv(spec.benchmark, spec.task_id, image_size=S)
    try:
        obs, _ = env.reset(seed=spec.seed, options=spec.reset_options())
        agent.reset({"task": spec.task, "instruction": ""}, spec.seed)
        for t in range(0, 3 * every + 1, every):  # four decisions
            live = agent._batch(obs)
            train = frames.batch([t])
            for key in FIELDS:
                assert torch.equal(live[key], train[key]), (suite, t, key)
            obs, *_ = env.step_chunk(demo.actions[t:t + every])  # the demo's commands
    finally:
        env.close()


def test_libero_ee_ori_is_converted_to_the_grip_site(tmp_path):
    """A LIBERO-layout file written from a real env's ``robot0_eef_quat`` (as LIBERO's
    dataset script stores it) loads with the grip site's orientation."""
    from robosuite.utils import transform_utils as tu

    env = LiberoEnv("libero_spatial", 0, image_size=32)
    try:
        obs, _ = env.reset(seed=0, options={"init_state": 0})
        ee_ori, site_quats = [], []
        for i in range(6):  # turn the wrist about a tilted axis so the frames differ generically
            obs, *_ = env.step_chunk(np.array([[0, 0, 0, 0.3, -0.2, 0.4 - 0.15 * i, -1.0]] * 3))
            raw = env._rs._get_observations(force_update=True)
            ee_ori.append(tu.quat2axisangle(raw["robot0_eef_quat"]))
            site_quats.append(obs["eef_quat_xyzw"])
    finally:
        env.close()
    n = len(ee_ori)
    with h5py.File(tmp_path / "libero.hdf5", "w") as f:
        g = f.create_group("data/demo_0")
        g["actions"] = np.zeros((n, 7))
        g["obs/agentview_rgb"] = np.zeros((n, 32, 32, 3), np.uint8)
        g["obs/ee_pos"] = np.zeros((n, 3))
        g["obs/ee_ori"] = np.asarray(ee_ori)
        g["obs/gripper_states"] = np.zeros((n, 2))
    data = DemoData(tmp_path / "libero.hdf5",
                    camera=(intrinsics_from_fovy(45, 32, 32), look_at([1, 0, 1.6], [0, 0, 0.9])))
    assert data.render_quality == "libero"
    dots = np.abs(np.sum(data.demos[0].eef_quat * np.asarray(site_quats), axis=1))
    assert np.all(dots > 1 - 1e-6), dots  # same rotation (q and -q)
    # and it is a real conversion: the hand's own orientation is another rotation
    hand = np.stack([tu.axisangle2quat(w) for w in ee_ori])
    assert np.all(np.abs(np.sum(hand * np.asarray(site_quats), axis=1)) < 0.99)


def test_collected_demos_record_their_render_quality(perturbed_demos):
    path, _ = perturbed_demos["pos_ood"]
    with h5py.File(path) as f:
        assert json.loads(f["data"].attrs["env_args"])["render_quality"] == "fast"
    assert DemoData(path).render_quality == "fast"
