"""Demo files, training samples, checkpoints and the model agent's decode (no simulator)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from para_bench.agents.model_agent import gripper_command
from para_bench.agents.oracle import RIM_SIDE_MARGIN
from para_bench.envs.camera import intrinsics_from_fovy, look_at, project
from para_bench.envs.control import OSC_POS_LIMIT
from para_bench.models.base import PolicyConfig
from para_bench.models.checkpoint import CheckpointError, read_checkpoint
from para_bench.models.sample import execution_path, steps_per_call
from para_bench.models.stats import DatasetStats
from para_bench.training.dataset import DemoData, TrainingFrames, compute_stats, history_indices

S = 32


def _camera():
    # looking down at the table from above and in front, like LIBERO's agent view
    return intrinsics_from_fovy(45.0, S, S), look_at([1.0, 0.0, 1.6], [0.0, 0.0, 0.9])


def _demo_arrays(t: int, rng: np.random.Generator):
    xyz = np.cumsum(rng.normal(0, 0.01, (t, 3)), axis=0) + [0.0, 0.0, 1.0]
    actions = np.zeros((t, 7))
    actions[:, 6] = np.where(np.arange(t) < t // 2, -1.0, 1.0)
    rgb = rng.integers(0, 255, (t, S, S, 3), dtype=np.uint8)
    return xyz, actions, rgb


def _write_libero_file(path, n_demos=3, t=20, camera=None):
    """LIBERO's own layout: images upside down, no camera, orientation as axis-angle; with
    ``camera``, para-bench's (per-frame camera, images upright)."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        if camera is not None:
            f.require_group("data").attrs["image_origin"] = "top"
        for i in range(n_demos):
            xyz, actions, rgb = _demo_arrays(t, rng)
            g = f.create_group(f"data/demo_{i}")
            g["actions"] = actions
            g["obs/agentview_rgb"] = rgb[:, ::-1]
            g["obs/ee_pos"] = xyz
            g["obs/ee_ori"] = np.tile([np.pi, 0.0, 0.0], (t, 1))
            g["obs/gripper_states"] = np.tile([0.04, -0.04], (t, 1))
            g["obs/joint_states"] = np.zeros((t, 7))
            g.attrs["num_samples"] = t
            if camera is not None:
                g["camera/intrinsics"] = np.tile(camera[0], (t, 1, 1))
                g["camera/extrinsics"] = np.tile(camera[1], (t, 1, 1))
    return rng


def test_libero_layout_is_flipped_upright_and_needs_a_camera(tmp_path):
    path = tmp_path / "libero.hdf5"
    _write_libero_file(path)
    with pytest.raises(ValueError, match="no camera"):
        DemoData(path)
    data = DemoData(path, camera=_camera())
    with h5py.File(path) as f:
        raw = f["data/demo_0/obs/agentview_rgb"][()]
    assert np.array_equal(data.demos[0].rgb, raw[:, ::-1])
    assert len(data.demos) == 3
    train, val = data.split()
    assert len(train) == 2 and len(val) == 1


def test_missing_or_unreadable_dataset_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        DemoData(tmp_path / "nope.hdf5")
    bad = tmp_path / "bad.hdf5"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        DemoData(bad)


def test_samples_carry_projected_setpoints_ahead_by_stride(tmp_path):
    path = tmp_path / "libero.hdf5"
    _write_libero_file(path, n_demos=2, t=12)
    data = DemoData(path, camera=_camera())
    d = data.demos[0]
    d.actions[:, :3] = np.random.default_rng(3).uniform(-1, 1, (len(d), 3))
    config = PolicyConfig(image_size=S, grid=8, n_window=3, stride=2, history=2, n_exec=2)
    stats = compute_stats(data.demos, config)
    ds = TrainingFrames([d], config, stats)
    setpoints = d.eef_pos + d.actions[:, :3] * OSC_POS_LIMIT  # the servo goals commanded
    b = ds.batch([3, 9])
    # set-points commanded at t, t+2, t+4, clamped to the last frame (11)
    assert np.allclose(b["target_xyz"][0].numpy(), setpoints[[3, 5, 7]], atol=1e-6)
    assert np.allclose(b["target_xyz"][1].numpy(), setpoints[[9, 11, 11]], atol=1e-6)
    uv, _ = project(setpoints[[3, 5, 7]], d.intrinsics[3], d.extrinsics[3])
    assert np.allclose(b["target_uv"][0].numpy(), uv, atol=1e-4)
    assert b["target_gripper"][0].tolist() == d.actions[[3, 5, 7], 6].tolist()
    # history frames spaced by the steps one decision executes (1 + 2 * (2 - 1) = 3)
    assert steps_per_call(config) == 3
    assert history_indices(3, config) == [0, 3] and history_indices(9, config) == [6, 9]
    assert torch.equal(b["history_rgb"][0, 0], torch.from_numpy(d.rgb[0]).permute(2, 0, 1) / 255)
    assert b["target_cell"].shape == (2, 3) and b["target_cell"].max() < 64
    assert set(b["target_gripper_bin"].flatten().tolist()) <= {0, config.n_gripper_bins - 1}
    achieved = PolicyConfig(image_size=S, grid=8, n_window=3, stride=2, targets="achieved")
    b = TrainingFrames([d], achieved, compute_stats([d], achieved)).batch([3])
    assert np.allclose(b["target_xyz"][0].numpy(), d.eef_pos[[5, 7, 9]], atol=1e-6)
    assert b["target_gripper"][0].tolist() == d.actions[[4, 6, 8], 6].tolist()


def test_history_dropout_replaces_past_frames_with_the_current_one_in_training_only(tmp_path):
    from para_bench.agents.ar.configuration import ARConfig
    from para_bench.training.augment import Augment

    path = tmp_path / "libero.hdf5"
    _write_libero_file(path, n_demos=1, t=40)
    d = DemoData(path, camera=_camera()).demos[0]
    config = ARConfig(image_size=S, grid=8, n_window=3, stride=2, history=2, n_exec=2,
                      history_dropout=0.5)
    ds = TrainingFrames([d], config, compute_stats([d], config))
    idx = list(range(10, 40))
    plain = ds.batch(idx)  # validation: never dropped
    assert not torch.equal(plain["history_uv"][:, 0], plain["eef_uv"])
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(ds.batch(idx, Augment(shift=0), gen)["history_xyz"],
                       plain["history_xyz"])  # not a training batch: nothing dropped
    b = ds.batch(idx, Augment(shift=0), gen, train=True)
    same = (b["history_xyz"][:, 0] == b["eef_pos"]).all(-1)
    assert 0 < int(same.sum()) < len(idx)  # some dropped, some kept
    assert torch.equal(b["history_rgb"][same, 0], b["history_rgb"][same, 1])
    assert torch.equal(b["history_xyz"][~same], plain["history_xyz"][~same])
    with pytest.raises(ValueError, match="history_dropout"):
        ARConfig(history_dropout=1.0)


def test_rotation_code_round_trips_along_its_axis():
    rng = np.random.default_rng(1)
    angles = np.linspace(-0.4, 0.4, 50)
    quats = np.stack([[np.sin(a / 2), 0.0, 0.0, np.cos(a / 2)] for a in angles])  # about x
    stats = DatasetStats.from_arrays(rng.normal(size=(50, 3)), quats, np.ones(50))
    assert stats.rot_explained_variance > 0.99
    back = stats.rotation_from_code(stats.rotation_code(quats))
    dots = np.abs(np.sum(back * quats, axis=1))
    assert np.all(dots > 1 - 1e-6)


def test_execution_path_reaches_each_point_at_its_step():
    points = np.array([[0.1, 0, 0], [0.1, 0.2, 0], [0.3, 0.2, 0]])
    # set-points: the first now, then stride steps to each next one
    path, idx = execution_path(np.zeros(3), points, PolicyConfig(stride=2, n_exec=3))
    assert path.shape == (5, 3) and idx.tolist() == [0, 1, 1, 2, 2]
    assert np.allclose(path[[0, 2, 4]], points) and np.allclose(path[1], [0.1, 0.1, 0])
    # reached positions: stride steps from the current EEF to each point
    path, idx = execution_path(np.zeros(3), points[:2],
                               PolicyConfig(stride=2, n_exec=2, targets="achieved"))
    assert path.shape == (4, 3) and idx.tolist() == [0, 0, 1, 1]
    assert np.allclose(path[1], [0.1, 0, 0]) and np.allclose(path[3], [0.1, 0.2, 0])
    assert np.allclose(path[0], [0.05, 0, 0]) and np.allclose(path[2], [0.1, 0.1, 0])


def test_gripper_commands_keep_hold():
    # the oracle's three commands survive binning (8 bins over [-1, 1]) and decoding
    config, stats = PolicyConfig(), DatasetStats.from_arrays(
        np.zeros((3, 3)), np.tile([0, 0, 0, 1.0], (3, 1)), np.array([-1.0, 0.0, 1.0]))
    from para_bench.models import geometry

    bins = geometry.value_to_bin(torch.tensor([-1.0, 0.0, 1.0]), stats.gripper_lo,
                                 stats.gripper_hi, config.n_gripper_bins)
    values = geometry.bin_to_value(bins, stats.gripper_lo, stats.gripper_hi,
                                   config.n_gripper_bins).numpy()
    assert gripper_command(values).tolist() == [-1.0, 0.0, 1.0]


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        read_checkpoint(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="unreadable or corrupt"):
        read_checkpoint(corrupt)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not a para-bench policy"):
        read_checkpoint(other)
    newer = tmp_path / "newer.pt"
    torch.save({"kind": "para-bench-policy", "format": 99}, newer)
    with pytest.raises(CheckpointError, match="newer"):
        read_checkpoint(newer)


def test_training_stops_early_and_keeps_a_checkpoint(tmp_path, monkeypatch):
    from para_bench.agents.act.modeling import ACTPolicy
    from para_bench.models.checkpoint import load_policy
    from para_bench.training.train import train_policy

    data = tmp_path / "demos.hdf5"
    _write_libero_file(data, n_demos=2, t=10, camera=_camera())
    tiny = {"dim": 16, "n_window": 2, "grid": 8}
    ckpt = tmp_path / "act.pt"
    summary = train_policy("act", data, ckpt, steps=50, batch_size=2, overrides=tiny,
                           max_minutes=0.0, progress=False)
    assert summary["steps"] == 1 and not summary["interrupted"]  # out of time after step 1
    real_loss, calls = ACTPolicy.loss, []

    def loss_then_ctrl_c(self, batch):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_loss(self, batch)

    monkeypatch.setattr(ACTPolicy, "loss", loss_then_ctrl_c)
    summary = train_policy("act", data, ckpt, steps=50, batch_size=2, overrides=tiny,
                           progress=False, resume=False)  # not from the first run's step 1
    assert summary["steps"] == 3 and summary["interrupted"]
    assert load_policy(ckpt, expect="act").config.dim == 16
    assert ckpt.with_suffix(".train.json").is_file() and ckpt.with_suffix(".loss.png").is_file()


def test_collect_redoes_a_demo_torn_by_a_kill_and_keeps_whole_ones(tmp_path, monkeypatch):
    import para_bench.evaluation.env_pool as env_pool
    import para_bench.training.collect as collect_mod
    from para_bench.suites import get_suite

    class NoEnvs:
        def __init__(self, *a, **kw):
            pass

        def get(self, *a):
            return None

        def discard(self):
            pass

        def close(self):
            pass

    rolled = []

    def fake_rollout(env, oracle, spec):
        rolled.append(spec.episode_id)
        t = 5
        return {"success": True, "instruction": "x", "actions": np.zeros((t, 7)),
                "obs": {"agentview_rgb": np.zeros((t, S, S, 3), np.uint8)},
                "intrinsics": np.zeros((t, 3, 3)), "extrinsics": np.zeros((t, 4, 4))}

    monkeypatch.setattr(env_pool, "EnvPool", NoEnvs)
    monkeypatch.setattr(collect_mod, "rollout_demo", fake_rollout)
    plan = get_suite("pos_ood").plan("train", episodes=3, seed=0)
    out = tmp_path / "demos.hdf5"
    collect_mod.collect(plan[:2], out, image_size=S, progress=False)
    with h5py.File(out, "a") as f:  # a kill between the datasets of the second demo
        del f["data/demo_1/camera/extrinsics"]
        del f["data/demo_1"].attrs["complete"]
    rolled.clear()
    counts = collect_mod.collect(plan, out, image_size=S, progress=False)
    assert rolled == [plan[1].episode_id, plan[2].episode_id]
    assert counts == {"written": 2, "failed": 0, "skipped": 1}
    with h5py.File(out) as f:
        assert [f[f"data/demo_{i}"].attrs["episode_id"] for i in range(3)] == \
            [s.episode_id for s in plan]
        assert f["data"].attrs["oracle_rim_side_margin"] == RIM_SIDE_MARGIN
    rolled.clear()  # the oracle's rim-side margin is pinned: another one is refused
    with pytest.raises(ValueError, match="oracle_rim_side_margin"):
        collect_mod.collect(plan, out, image_size=S, progress=False, rim_side_margin=0.0)
    assert rolled == []
