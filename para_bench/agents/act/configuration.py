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
        train_steps: 4000 by default: a step costs about half of an ar / voxel step, so
            the default recipes take about the same CPU time.
    """

    dim: int = 64
    token_grid: int = 4
    enc_layers: int = 1
    layers: int = 2
    heads: int = 4
    xyz_weight: float = 1.0
    gripper_weight: float = 0.5
    rot_weight: float = 0.5
    train_steps: int = 4000
