"""Configuration of the ACT-style global-regression baseline."""

from __future__ import annotations

from dataclasses import dataclass

from para_bench.models.base import PolicyConfig


@dataclass
class ACTConfig(PolicyConfig):
    """ACT hyper-parameters (on top of :class:`~para_bench.models.base.PolicyConfig`).

    Attributes:
        token_grid: the feature map is average-pooled to ``token_grid x token_grid`` image
            tokens (plus one global-mean token and one proprioception token).
        enc_layers: transformer encoder blocks over those tokens.
        layers: decoder blocks (W learned step queries; self- and cross-attention).
        heads: attention heads.
        xyz_weight: weight of the L1 loss on normalised positions.
        coord_channels, context_pos: kept on / ``absolute`` (the base defaults): ACT's
            image tokens carry absolute 2D position embeddings.
        gripper_weight: weight of the gripper cross-entropy.
        rot_weight: weight of the rotation cross-entropy.
        train_steps: 3200 by default: 0.245 s a step alone on one core of the 2-core
            machine (about half of an ar / voxel step), so 13 minutes of steps: every
            default recipe fits 15 minutes there, validation included.
    """

    dim: int = 64
    token_grid: int = 4
    enc_layers: int = 1
    layers: int = 2
    heads: int = 4
    xyz_weight: float = 1.0
    gripper_weight: float = 0.5
    rot_weight: float = 0.5
    train_steps: int = 3200
