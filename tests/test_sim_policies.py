"""collect -> train -> run for every learned policy, through the CLI, in the real simulator."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from tests.test_sim_cli import _cli, _records

pytestmark = pytest.mark.sim
POLICIES = ("para", "ar", "voxel_abs", "voxel_rel", "act")
TINY = ("--set", "dim=32", "--set", "n_window=4", "--set", "stride=2")


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    """Two oracle demos of libero_spatial/0, 64 px (one per init state), as a user collects."""
    path = tmp_path_factory.mktemp("data") / "demos.hdf5"
    proc = _cli("collect", "--suite", "in_dist", "--split", "train", "--episodes", "2",
                "--image-size", "64", "--out", str(path), "--quiet")
    assert "wrote 2 demos" in proc.stdout
    return path


def test_collected_demos_have_libero_layout_and_a_camera(demos):
    with h5py.File(demos) as f:
        data = f["data"]
        assert len(data) == 2 and data.attrs["image_origin"] == "top"
        g = data["demo_0"]
        t = g.attrs["num_samples"]
        assert g["actions"].shape == (t, 7) and g["obs/agentview_rgb"].shape == (t, 64, 64, 3)
        assert g["camera/intrinsics"].shape == (t, 3, 3)
        assert json.loads(g.attrs["perturbation"]) == {"camera": None, "objects": None}
        # the recorded EEF moves between frames: every control step was recorded
        assert np.linalg.norm(np.diff(g["obs/ee_pos"][()], axis=0), axis=1).max() > 1e-3
    again = _cli("collect", "--suite", "in_dist", "--split", "train", "--episodes", "2",
                 "--image-size", "64", "--out", str(demos), "--quiet")
    assert "wrote 0 demos" in again.stdout and "2 already there" in again.stdout


@pytest.mark.parametrize("name", POLICIES)
def test_train_then_run_through_the_servo_path(name, demos, tmp_path):
    ckpt = tmp_path / f"{name}.pt"
    proc = _cli("train", "--agent", name, "--data", str(demos), "--out", str(ckpt),
                "--steps", "3", "--batch-size", "4", "--quiet", *TINY)
    assert ckpt.is_file() and "val_pixel_error" in proc.stdout
    summary = json.loads(ckpt.with_suffix(".train.json").read_text())
    assert summary["steps"] == 3 and len(summary["curve"]) >= 1
    assert ckpt.with_suffix(".overlay.png").stat().st_size > 1000
    out = tmp_path / "run"
    _cli("run", "--agent", name, "--checkpoint", str(ckpt), "--suite", "in_dist",
         "--episodes", "1", "--max-steps", "24", "--no-coverage", "--quiet", "--out", str(out))
    rec = _records(out)[0]
    assert rec["status"] == "ok", rec["error"]
    assert rec["steps"] == 24 and rec["checkpoint_sha"]
    assert rec["metrics"]["n_calls"] >= 24 // (2 * 4)  # chunks of n_exec * stride targets


def test_checkpoint_of_another_model_is_refused(demos, tmp_path):
    ckpt = tmp_path / "voxel.pt"
    _cli("train", "--agent", "voxel_abs", "--data", str(demos), "--out", str(ckpt),
         "--steps", "1", "--batch-size", "2", "--quiet", *TINY)
    for args, needle in [
        (("--agent", "para", "--checkpoint", str(ckpt)), "holds a voxel_abs policy"),
        (("--agent", "para",), "needs --checkpoint"),
        (("--agent", "act", "--checkpoint", str(demos)), "unreadable or corrupt"),
    ]:
        proc = _cli("run", *args, "--suite", "in_dist", "--episodes", "1", check=False)
        assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    proc = _cli("train", "--agent", "oracle", "--data", str(demos), "--out", "x.pt", check=False)
    assert proc.returncode == 2 and "cannot train agent 'oracle'" in proc.stderr
