"""Configuration of the autoregressive (AR) policy."""

from __future__ import annotations

from dataclasses import dataclass

from para_bench.models.base import PolicyConfig


@dataclass
class ARConfig(PolicyConfig):
    """AR hyper-parameters (on top of :class:`~para_bench.models.base.PolicyConfig`).

    Attributes:
        history: frames of context C (each gives ``token_grid**2`` patch tokens and one EEF
            token).
        history_dropout: probability that a training sample's past frames are replaced by
            copies of its current frame (what the agent sees at an episode's first decision).
            Without it the model learns to continue the motion its history shows (the
            "copycat" shortcut of behaviour cloning from observation histories, Wen et al.
            2020): on in_dist val scenes the history-trained checkpoint solved 1 of 10 with
            its live history and 7 of the same 10 with the history replaced by the current
            frame.
        history_grad: backpropagate through the backbone for the past frames too (off: the
            past frames' features are computed without gradients, ~2x cheaper per frame,
            and a past frame identical to the current one reuses its features; the shared
            backbone still learns from the current frame).
        token_grid: side of the pooled patch-token grid per frame.
        layers: transformer blocks.
        heads: attention heads.
        subcell_refine: report ``uv``/``xyz`` with a soft-argmax over the 3 x 3 cells around
            each argmax (the fed-back previous target stays the cell centre, as in training).
        height_weight: weight of the height cross-entropy in the loss.
        gripper_weight: weight of the gripper cross-entropy in the loss.
        rot_weight: weight of the rotation cross-entropy in the loss.
        coord_channels, context_pos: kept on / ``absolute`` (the base defaults): seed 002's
            model A sums a standard absolute 2D position code with the EEF-relative one.
        n_exec: 8, as every policy: the agent looks every ``1 + stride * (n_exec - 1)``
            control steps (15), which is also the spacing of the history frames it is trained
            on (:func:`~para_bench.models.sample.steps_per_call`). With 4 (7 control steps)
            the matrix's ``in_dist`` checkpoint solved 3 of 20 held-out scenes and the same
            checkpoint executing all 8 points 12 of the same 20: each decision's first points
            start slowly from the current state, so re-planning every 4 of them left the
            descent to the bowl ~5 cm short when the gripper head closed, on the demos'
            schedule, in the air.
        train_steps: 1600 by default: 0.50 s a step alone on one core of the 2-core
            machine, 14 minutes with validation.
    """

    dim: int = 64
    history: int = 2
    n_exec: int = 8
    history_dropout: float = 0.5
    history_grad: bool = False
    token_grid: int = 8
    layers: int = 3
    heads: int = 4
    subcell_refine: bool = True
    height_weight: float = 1.0
    gripper_weight: float = 0.5
    rot_weight: float = 0.5
    train_steps: int = 1600

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.history_dropout < 1.0:
            raise ValueError(f"history_dropout must be in [0, 1), got {self.history_dropout}")
