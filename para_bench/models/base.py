"""The contract between learned policies, the dataset, the training loop and the agent.

A policy is a :class:`PolicyModel` built from a :class:`PolicyConfig` (hyper-parameters,
saved in the checkpoint) and the :class:`~para_bench.models.stats.DatasetStats` of its
training data. It sees one **batch** (a dict of float32 tensors, ``B`` samples):

=================  ================  =====================================================
key                shape             meaning
=================  ================  =====================================================
``rgb``            (B, 3, S, S)      current agent-view image in [0, 1], row 0 at the top
``intrinsics``     (B, 3, 3)         K for the S x S image (OpenCV)
``extrinsics``     (B, 4, 4)         world -> camera (OpenCV axes)
``eef_pos``        (B, 3)            current EEF position, world, metres
``eef_start``      (B, 3)            EEF position at the episode's first frame
``eef_uv``         (B, 2)            current EEF pixel (u = column, v = row)
``gripper_state``  (B, 1)            finger opening (sum of the two finger joints), metres
``history_rgb``    (B, C, 3, S, S)   the last C frames the agent saw, oldest first, the
                                     last is ``rgb`` (only when ``config.history > 1``)
``history_uv``     (B, C, 2)         EEF pixel in each of those frames
``history_xyz``    (B, C, 3)         EEF position in each of those frames
=================  ================  =====================================================

Training batches add targets for the ``W = config.n_window`` predicted points (which
control steps they are: :func:`~para_bench.models.sample.target_offsets`; by default the
servo set-points commanded ``stride * k`` steps ahead): ``target_xyz`` (B, W, 3),
``target_uv`` (B, W, 2) (projected with the current camera), ``target_gripper`` (B, W)
(command), ``target_rot`` (B, W) (1D PCA rotation code), and their discretisations from
:func:`add_bin_targets`:
``target_cell`` (B, W) index into the ``grid x grid`` prediction grid, ``target_height_bin``,
``target_gripper_bin``, ``target_rot_bin`` (B, W) long.

:meth:`PolicyModel.predict` returns ``xyz`` (B, W, 3) world targets, ``gripper`` (B, W)
commands in [-1, 1], ``rot`` (B, W) rotation codes, and optionally ``uv`` (B, W, 2)
predicted pixels (drawn on videos).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

import torch
from torch import nn

from para_bench.models import geometry
from para_bench.models.stats import DatasetStats


@dataclass
class PolicyConfig:
    """Hyper-parameters shared by every policy (model configs subclass it).

    Attributes:
        image_size: S, side of the square input image.
        grid: side of the prediction grid (cells of ``S / grid`` pixels).
        n_window: W, future steps predicted at once.
        stride: control steps between consecutive predicted steps (look-ahead larger than
            a grid cell, the fix seed 001 names for models that did not move).
        n_exec: predicted steps executed before the agent looks again.
        targets: ``setpoint`` (the servo set-points the demonstration commanded) or
            ``achieved`` (the EEF positions it reached); see :mod:`para_bench.models.sample`.
        history: C, frames of context (1 = the current frame only).
        n_height_bins, n_gripper_bins, n_rot_bins: discretisation of height, gripper, rotation.
        backbone: ``cnn`` (small CNN trained from scratch), ``dinov2:<local path>`` or
            ``dinov3:<local path>`` (HuggingFace weights in a local folder).
        freeze_backbone: keep the backbone's weights fixed (pretrained backbones).
        backbone_config: the pretrained backbone's own configuration (filled in by
            training), so a checkpoint builds its backbone without the original folder.
        coord_channels: the ``cnn`` backbone appends CoordConv (absolute pixel coordinate)
            channels.
        context_pos: position code of the ``cnn`` backbone's global-context attention:
            ``absolute`` (learned per-token embeddings) or ``relative`` (a learned bias per
            relative offset between tokens: translation equivariant).
        context_width: token width of the ``cnn`` backbone's global-context path.
        context_upsample: how that path's coarse map returns to the grid: ``nearest``
            (cheap on CPU) or ``bilinear``.
        dim: feature width.
        train_steps: default optimisation steps of ``para-bench train``.
        augment_shift: training augmentation, random shift in pixels (DrQ); 0 turns it off.
        augment_color: training augmentation, brightness / contrast / saturation jitter.
    """

    image_size: int = 128
    grid: int = 32
    n_window: int = 8
    stride: int = 2
    n_exec: int = 8
    targets: str = "setpoint"
    history: int = 1
    n_height_bins: int = 32
    n_gripper_bins: int = 8
    n_rot_bins: int = 48
    backbone: str = "cnn"
    freeze_backbone: bool = False
    backbone_config: dict | None = None
    coord_channels: bool = True
    context_pos: str = "absolute"
    context_width: int = 64
    context_upsample: str = "nearest"
    dim: int = 128
    train_steps: int = 2000
    augment_shift: int = 6
    augment_color: float = 0.1

    def __post_init__(self) -> None:
        from para_bench.models.sample import TARGET_KINDS

        choices = {"targets": TARGET_KINDS, "context_pos": ("absolute", "relative"),
                   "context_upsample": ("nearest", "bilinear")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, name)!r}")
        if self.n_gripper_bins < 3:  # the decoded command needs a bin nearest each of -1, 0, 1
            raise ValueError(f"n_gripper_bins must be >= 3 (open, hold, close), "
                             f"got {self.n_gripper_bins}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PolicyConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


class PolicyModel(nn.Module):
    """Base class of the learned policies (see the module docstring for the batch)."""

    name: ClassVar[str] = ""
    config_class: ClassVar[type[PolicyConfig]] = PolicyConfig

    def __init__(self, config: PolicyConfig, stats: DatasetStats) -> None:
        super().__init__()
        self.config = config
        self.stats = stats

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss on a batch with targets, and its parts (floats) for logging."""
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Decoded predictions: ``xyz``, ``gripper``, ``rot`` and optionally ``uv``."""
        raise NotImplementedError

    def decode_as_format(self, checkpoint_format: int) -> None:
        """Decodes as the code that wrote a checkpoint of this format did (models whose
        decoding changed since override it)."""

    # helpers every model uses -------------------------------------------------------
    def heights(self, device: torch.device | None = None) -> torch.Tensor:
        """Bin-centre heights (n_height_bins,) in metres."""
        c, s = self.config, self.stats
        return geometry.bin_to_value(torch.arange(c.n_height_bins, device=device),
                                     s.height_lo, s.height_hi, c.n_height_bins)

    def refine_height(self, logits: torch.Tensor) -> torch.Tensor:
        """Sub-bin height (B, W) in metres from height ``logits`` (B, W, n_height_bins): the
        softmax-weighted mean of the centres of the argmax bin and its two neighbours (a
        grasp needs a few millimetres; a bin is about a centimetre)."""
        from para_bench.models.layers import neighbourhood_soft_argmax

        b, w, n = logits.shape
        h = neighbourhood_soft_argmax(logits.reshape(b * w, n),
                                      self.heights(logits.device)[:, None])
        return h.view(b, w)

    def decode_gripper(self, b: torch.Tensor) -> torch.Tensor:
        return geometry.bin_to_value(b, self.stats.gripper_lo, self.stats.gripper_hi,
                                     self.config.n_gripper_bins)

    def decode_rot(self, b: torch.Tensor) -> torch.Tensor:
        return geometry.bin_to_value(b, self.stats.rot_lo, self.stats.rot_hi,
                                     self.config.n_rot_bins)

    def decode_cell_height(self, cell: torch.Tensor, height_bin: torch.Tensor,
                           batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(cell, height bin) (B, W) -> world xyz (B, W, 3) and pixel uv (B, W, 2)."""
        c = self.config
        uv = geometry.cell_to_uv(cell, c.grid, c.image_size)
        h = geometry.bin_to_value(height_bin, self.stats.height_lo, self.stats.height_hi,
                                  c.n_height_bins)
        return geometry.ray_at_height(uv, h, batch["intrinsics"], batch["extrinsics"]), uv


def add_bin_targets(batch: dict[str, torch.Tensor], config: PolicyConfig,
                    stats: DatasetStats) -> dict[str, torch.Tensor]:
    """Adds the discretised targets (``target_cell`` ...) to a batch with continuous ones."""
    c, s = config, stats
    batch["target_cell"] = geometry.uv_to_cell(batch["target_uv"], c.grid, c.image_size)
    batch["target_height_bin"] = geometry.value_to_bin(
        batch["target_xyz"][..., 2], s.height_lo, s.height_hi, c.n_height_bins)
    batch["target_gripper_bin"] = geometry.value_to_bin(
        batch["target_gripper"], s.gripper_lo, s.gripper_hi, c.n_gripper_bins)
    batch["target_rot_bin"] = geometry.value_to_bin(
        batch["target_rot"], s.rot_lo, s.rot_hi, c.n_rot_bins)
    return batch
