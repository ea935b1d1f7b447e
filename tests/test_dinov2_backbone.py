"""The DINOv2 backbone loads from a local folder only (no download) and trains or freezes."""

from __future__ import annotations

import pytest
import torch
import transformers

from tests.test_models import build, make_batch


@pytest.fixture(scope="module")
def tiny_dino(tmp_path_factory):
    """A randomly initialised, tiny DINOv2 saved the way a user's local weights are."""
    cfg = transformers.Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=64, patch_size=8, image_size=32)
    path = tmp_path_factory.mktemp("dinov2")
    transformers.Dinov2Model(cfg).save_pretrained(path)
    return path


@pytest.mark.parametrize("freeze", [True, False])
def test_para_on_a_local_dinov2(tiny_dino, freeze):
    model = build("para", backbone=f"dinov2:{tiny_dino}", freeze_backbone=freeze)
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
