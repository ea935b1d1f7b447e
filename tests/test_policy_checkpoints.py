"""Checkpoints: bit-identical for the same data and seed, self-contained (DINO backbones),
old formats load with their settings, and inference never imports the training code."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import transformers

from para_bench.models.checkpoint import load_policy, read_checkpoint
from para_bench.training.train import train_policy
from tests.test_dino_backbones import TINY_VIT
from tests.test_training_data import S, _camera, _write_libero_file

TINY = {"dim": 16, "n_window": 2, "grid": 8}


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    path = tmp_path_factory.mktemp("demos") / "demos.hdf5"
    _write_libero_file(path, n_demos=3, t=12, camera=_camera())
    return path


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_data_and_seed_give_a_bit_identical_checkpoint(demos, tmp_path):
    torch.set_num_threads(1)
    a, b, c = tmp_path / "a.pt", tmp_path / "sub" / "b.pt", tmp_path / "c.pt"
    train_policy("para", demos, a, steps=3, batch_size=4, overrides=TINY, progress=False)
    info = train_policy("para", demos, b, steps=3, batch_size=4, overrides=TINY,
                        progress=False)
    assert _sha(a) == _sha(b)  # another file name and folder: same bytes
    # timings stay out of the checkpoint, in the .train.json
    assert "steps_per_s" in info and "train_minutes" in info
    assert not {"steps_per_s", "train_minutes", "build_s"} & set(read_checkpoint(a)["train"])
    assert json.loads(b.with_suffix(".train.json").read_text())["steps_per_s"] > 0
    train_policy("para", demos, c, steps=3, batch_size=4, overrides=TINY, seed=1,
                 progress=False)
    assert _sha(a) != _sha(c)  # the seed matters


def test_dino_checkpoint_runs_after_its_backbone_folder_is_deleted(demos, tmp_path):
    folder = tmp_path / "dinov2-tiny"
    transformers.Dinov2Model(transformers.Dinov2Config(**TINY_VIT)).save_pretrained(folder)
    ckpt = tmp_path / "para_dino.pt"
    train_policy("para", demos, ckpt, steps=2, batch_size=2,
                 overrides={**TINY, "backbone": f"dinov2:{folder}"}, progress=False)
    before = load_policy(ckpt)
    shutil.rmtree(folder)
    after = load_policy(ckpt)
    from tests.test_models import make_batch

    batch = make_batch(after.config, after.stats, b=2)
    torch.manual_seed(0)
    out_after = after.predict(batch)
    torch.manual_seed(0)
    out_before = before.predict(batch)
    for key in ("xyz", "gripper", "rot"):
        assert torch.equal(out_before[key], out_after[key])


def test_format_1_checkpoints_keep_their_training_settings(demos, tmp_path):
    ckpt = tmp_path / "old.pt"
    train_policy("act", demos, ckpt, steps=1, batch_size=2,
                 overrides={**TINY, "coord_channels": True, "context_pos": "absolute",
                            "targets": "achieved"}, progress=False)
    payload = torch.load(ckpt, weights_only=True)
    payload["format"] = 1
    for key in ("targets", "coord_channels", "context_pos", "augment_shift", "augment_color",
                "backbone_config"):
        payload["config"].pop(key)
    torch.save(payload, ckpt)
    model = load_policy(ckpt)
    assert model.config.targets == "achieved" and model.config.coord_channels


def test_model_agent_never_imports_the_training_code(demos, tmp_path):
    ckpt = tmp_path / "para.pt"
    train_policy("para", demos, ckpt, steps=1, batch_size=2, overrides=TINY, progress=False)
    k, w2c = _camera()
    script = f"""
import sys, numpy as np
from para_bench.agents.para.agent import ParaAgent
agent = ParaAgent({str(ckpt)!r})
agent.reset({{"task": "libero_spatial/0", "instruction": ""}}, 0)
obs = {{"rgb": np.zeros(({S}, {S}, 3), np.uint8), "intrinsics": np.array({k.tolist()}),
       "extrinsics": np.array({w2c.tolist()}), "eef_pos": np.array([0.0, 0.0, 1.0]),
       "eef_quat_xyzw": np.array([0.0, 0.0, 0.0, 1.0]), "gripper_qpos": np.zeros(2)}}
chunk = agent.act(obs, {{}})
assert len(chunk.targets) > 0
loaded = sorted(m for m in sys.modules if m.startswith("para_bench.training"))
assert not loaded, loaded
print(agent.requirements.render_quality)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "fast"  # as its demo file says


def test_augmented_shift_moves_pixels_and_intrinsics_together():
    """A world point projected with the shifted K lands where its pixel moved to."""
    from para_bench.envs.camera import project
    from para_bench.training.augment import Augment, augment_batch

    k, w2c = _camera()
    point = np.array([[0.05, -0.03, 0.95]])
    uv = project(point, k, w2c)[0][0]
    u, v = int(round(uv[0])), int(round(uv[1]))
    rgb = torch.zeros(1, 3, S, S, dtype=torch.uint8)
    rgb[0, :, v, u] = 255
    batch = {"rgb": rgb, "intrinsics": torch.tensor(k, dtype=torch.float32)[None],
             "eef_uv": torch.tensor(uv, dtype=torch.float32)[None]}
    gen = torch.Generator().manual_seed(3)
    out = augment_batch(dict(batch), Augment(shift=4), gen)
    moved = project(point, out["intrinsics"][0].double().numpy(), w2c)[0][0]
    row, col = np.unravel_index(int(out["rgb"][0, 0].argmax()), (S, S))
    assert (round(moved[0]), round(moved[1])) == (col, row) != (u, v)
    assert np.allclose(out["eef_uv"][0].numpy(), moved, atol=1e-4)


def _as_older_checkpoint(ckpt, fmt: int, drop: tuple[str, ...]) -> None:
    payload = torch.load(ckpt, weights_only=True)
    payload["format"] = fmt
    for key in drop:
        payload["config"].pop(key, None)
    torch.save(payload, ckpt)


def test_format_1_para_decodes_heights_at_bin_centres_as_it_did(demos, tmp_path):
    from para_bench.models import geometry
    from tests.test_models import make_batch

    ckpt = tmp_path / "old_para.pt"
    train_policy("para", demos, ckpt, steps=1, batch_size=2,
                 overrides={**TINY, "coord_channels": True, "context_pos": "absolute",
                            "context_width": 128, "context_upsample": "bilinear"},
                 progress=False)
    assert load_policy(ckpt).height_soft_argmax
    _as_older_checkpoint(ckpt, 1, ("context_width", "context_upsample"))
    model = load_policy(ckpt)
    assert not model.height_soft_argmax
    c, s = model.config, model.stats
    centres = geometry.bin_to_value(torch.arange(c.n_height_bins), s.height_lo, s.height_hi,
                                    c.n_height_bins)
    z = model.predict(make_batch(c, s, b=2))["xyz"][..., 2].flatten()
    assert torch.isclose(z[:, None], centres[None].float(), atol=1e-4).any(1).all()


def test_early_format_2_checkpoints_keep_their_context_path(demos, tmp_path):
    ckpt = tmp_path / "early.pt"
    train_policy("act", demos, ckpt, steps=1, batch_size=2,
                 overrides={**TINY, "context_width": 128, "context_upsample": "bilinear"},
                 progress=False)
    _as_older_checkpoint(ckpt, 2, ("context_width", "context_upsample"))
    model = load_policy(ckpt)
    assert (model.config.context_width, model.config.context_upsample) == (128, "bilinear")


def test_voxel_checkpoints_from_before_the_offset_head_decode_without_it(demos, tmp_path):
    ckpt = tmp_path / "voxel.pt"
    train_policy("voxel_abs", demos, ckpt, steps=1, batch_size=2,
                 overrides={**TINY, "voxel_grid": 8, "offset_head": False}, progress=False)
    _as_older_checkpoint(ckpt, 2, ("offset_head", "offset_weight"))
    model = load_policy(ckpt)
    assert not model.config.offset_head and model.offset_out is None


def test_para_checkpoints_from_before_the_eef_height_input_load_without_it(demos, tmp_path):
    ckpt = tmp_path / "para.pt"
    train_policy("para", demos, ckpt, steps=1, batch_size=2,
                 overrides={**TINY, "eef_height": False}, progress=False)
    _as_older_checkpoint(ckpt, 2, ("eef_height",))
    model = load_policy(ckpt)
    assert not model.config.eef_height and model.height_embed is None


def test_a_config_that_cannot_decode_is_refused_in_one_line():
    from para_bench.models.base import PolicyConfig

    for bad, needle in [({"n_gripper_bins": 2}, "n_gripper_bins must be >= 3"),
                        ({"targets": "future"}, "targets must be one of"),
                        ({"context_pos": "rope"}, "context_pos must be one of")]:
        with pytest.raises(ValueError, match=needle):
            PolicyConfig(**bad)


def test_a_killed_training_resumes_to_the_same_checkpoint_bytes(demos, tmp_path, monkeypatch):
    from para_bench.models.zoo import load_model_class
    from para_bench.training.resume import resume_path

    whole = tmp_path / "whole.pt"
    train_policy("para", demos, whole, steps=6, batch_size=2, overrides=TINY, val_every=2,
                 progress=False)
    assert not resume_path(whole).exists()  # removed once the training completed

    cls = load_model_class("para")
    real_loss, calls = cls.loss, []

    def dies_at_step_5(self, batch):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("killed")
        return real_loss(self, batch)

    killed = tmp_path / "killed.pt"
    with monkeypatch.context() as m:
        m.setattr(cls, "loss", dies_at_step_5)
        with pytest.raises(RuntimeError, match="killed"):
            train_policy("para", demos, killed, steps=6, batch_size=2, overrides=TINY,
                         val_every=2, progress=False)
    assert torch.load(resume_path(killed), weights_only=False)["step"] == 4
    summary = train_policy("para", demos, killed, steps=6, batch_size=2, overrides=TINY,
                           val_every=2, progress=False)
    assert summary["resumed_from_step"] == 4
    assert _sha(killed) == _sha(whole)
    assert not resume_path(killed).exists()
    # another training of the same output (other seed) does not take that state
    train_policy("para", demos, killed, steps=6, batch_size=2, overrides=TINY, val_every=2,
                 seed=1, progress=False)
    assert _sha(killed) != _sha(whole)
