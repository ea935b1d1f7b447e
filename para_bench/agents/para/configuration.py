"""Configuration of the PARA policy."""

from __future__ import annotations

from dataclasses import dataclass

from para_bench.models.base import PolicyConfig


@dataclass
class ParaConfig(PolicyConfig):
    """PARA hyper-parameters (on top of :class:`~para_bench.models.base.PolicyConfig`).

    Attributes:
        volume: ``joint``: one 1x1 head gives all ``W x n_height_bins`` logits per cell,
            softmaxed jointly over (height x cell) (seed 004); ``factored``: the same joint
            distribution written as ``p(cell) * p(height | cell)`` (a W-channel cell head
            plus a per-cell height head), trained with the same joint likelihood but
            evaluating height logits only at the target cell -- several times cheaper on CPU.
        head_dim: width of the per-cell bottleneck before the volume logits
            (``W * n_height_bins`` channels per cell are the costly part).
        head_layers: transformer layers of the gripper/rotation head over the W tokens.
        heads: attention heads of that head.
        eef_height: add a Fourier encoding of the EEF's current height (normalised to the
            training heights' range) to every cell, as the gripper state is: the 3D start
            keypoint's height, which the EEF pixel alone does not give under a moving
            camera. Off by default: it lowers the open-loop height error but not the
            closed-loop failures (README, PARA's recipe choices).
        rel_offset: add a Fourier encoding of each cell's pixel offset to the current EEF
            pixel to the feature map (on top of the start-keypoint embedding).
        subcell_refine: decode ``uv`` with a soft-argmax over the 3 x 3 cells around the
            argmax (at the argmax height) instead of the cell centre, and the height with a
            soft-argmax over the 3 height bins around the argmax (at the chosen cell).
        gripper_weight: weight of the gripper cross-entropy in the loss.
        rot_weight: weight of the rotation cross-entropy in the loss.
        coord_channels, context_pos: off / ``relative`` (seed 004: DINO patch features and
            a 1x1 conv head, so a cell's output follows what is under it; the CPU backbone
            gets no absolute image coordinates, its global context is translation
            equivariant, and position enters only relative to the EEF pixel).
        train_steps: 2500 by default: 0.327 s a step alone on one core of the 2-core
            machine (about two thirds of an ar / voxel step), 14 minutes with validation;
            ``benchmarks/training_speed.py`` measures it.
    """

    dim: int = 64
    coord_channels: bool = False
    context_pos: str = "relative"
    volume: str = "factored"
    head_dim: int = 32
    head_layers: int = 2
    heads: int = 4
    rel_offset: bool = True
    eef_height: bool = False
    subcell_refine: bool = True
    gripper_weight: float = 0.5
    rot_weight: float = 0.5
    train_steps: int = 2500
