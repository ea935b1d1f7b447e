"""DINOv2 / DINOv3 backbones load from a local folder only (no download), train or freeze."""

from __future__ import annotations

import pytest
import torch
import transformers

from tests.test_models import build, make_batch

TINY_VIT = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 64, "patch_size": 8, "image_size": 32}


@pytest.fixture(scope="module")
def tiny_dino(tmp_path_factory):
    """Randomly initialised, tiny DINOv2 and DINOv3 ViTs saved the way a user's local
    weights are."""
    paths = {}
    for name, cfg, cls in [
        ("dinov2", transformers.Dinov2Config(**TINY_VIT), transformers.Dinov2Model),
        ("dinov3", transformers.DINOv3ViTConfig(**TINY_VIT, num_register_tokens=2),
         transformers.DINOv3ViTModel),
    ]:
        paths[name] = tmp_path_factory.mktemp(name)
        cls(cfg).save_pretrained(paths[name])
    return paths


@pytest.mark.parametrize("kind,freeze", [("dinov2", True), ("dinov2", False), ("dinov3", True)])
def test_para_on_a_local_dino(tiny_dino, kind, freeze):
    model = build("para", backbone=f"{kind}:{tiny_dino[kind]}", freeze_backbone=freeze)
    batch = make_batch(model.config, model.stats)
    loss, _ = model.loss(batch)
    loss.backward()
    dino_grads = [p.grad for p in model.backbone.dino.parameters()]
    assert all(g is None for g in dino_grads) if freeze else \
        any(g is not None and g.abs().sum() > 0 for g in dino_grads)
    assert model.backbone.proj.weight.grad.abs().sum() > 0
    out = model.predict(batch)
    assert out["xyz"].shape == (4, model.config.n_window, 3) and torch.isfinite(out["xyz"]).all()


def test_missing_local_weights_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no usable model in local folder"):
        build("para", backbone=f"dinov2:{tmp_path / 'nothing'}")
