"""PARA network: a per-cell, per-height logit volume over the image for each future step.

Following seed 004 (``TrajectoryHeatmapPredictor``): backbone features, a learnable
start-keypoint embedding added to the cell under the current EEF pixel, a small
refinement, and a 1x1 volume head giving ``(B, W, n_height_bins, grid, grid)`` logits,
softmaxed jointly over (height x cell) per step. Gripper and rotation come from the
features gathered at the step's cell (the target cell while training, the argmax at
inference) through a small transformer over the W step tokens (seed 002's head refactor,
sinusoidal step and height encodings, 1D PCA rotation bins).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from para_bench.agents.para.configuration import ParaConfig
from para_bench.models import geometry
from para_bench.models.backbones import SepConv, build_backbone
from para_bench.models.base import PolicyModel
from para_bench.models.layers import (
    GRIPPER_STATE_SCALE,
    Block,
    FourierEmbed,
    accuracy,
    ce,
    gather_tokens,
    map_tokens,
    neighbourhood_soft_argmax,
    sinusoidal,
)
from para_bench.models.stats import DatasetStats


class StepHead(nn.Module):
    """Gripper and rotation logits from per-step tokens (B, W, D) via a small transformer.

    Args:
        dim: token width.
        layers: transformer blocks (bidirectional over the W steps).
        heads: attention heads.
        n_gripper_bins: gripper classes.
        n_rot_bins: rotation classes.
    """

    def __init__(self, dim: int, layers: int, heads: int, n_gripper_bins: int,
                 n_rot_bins: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([Block(dim, heads) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.gripper = nn.Linear(dim, n_gripper_bins)
        self.rot = nn.Linear(dim, n_rot_bins)

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for blk in self.blocks:
            tokens = blk(tokens)
        h = self.norm(tokens)
        return self.gripper(h), self.rot(h)


class ParaPolicy(PolicyModel):
    """Pixel-aligned heatmap-volume policy (see the module docstring)."""

    name = "para"
    config_class = ParaConfig

    def __init__(self, config: ParaConfig, stats: DatasetStats) -> None:
        super().__init__(config, stats)
        #: decode heights with a soft-argmax around the argmax bin (format-2 checkpoints)
        self.height_soft_argmax = True
        c, d = config, config.dim
        self.backbone = build_backbone(c)
        self.keypoint = nn.Parameter(torch.randn(d) * 0.02)
        self.gripper_embed = nn.Linear(1, d)
        self.offset_embed = (FourierEmbed(2, d, n_freqs=6, max_wavelength=4.0,
                                          min_wavelength=2.0 / c.grid)
                             if c.rel_offset else None)
        self.height_embed = (FourierEmbed(1, d, n_freqs=6, max_wavelength=4.0,
                                          min_wavelength=0.05) if c.eef_height else None)
        self.refine = SepConv(d)
        if c.volume not in ("joint", "factored"):
            raise ValueError(f"volume must be 'joint' or 'factored', not {c.volume!r}")
        n_out = c.n_window * (c.n_height_bins if c.volume == "joint" else 1)
        self.volume_head = nn.Sequential(nn.Linear(d, c.head_dim), nn.GELU(),
                                         nn.Linear(c.head_dim, n_out))
        self.height_head = (nn.Sequential(nn.Linear(d, c.head_dim), nn.GELU(),
                                          nn.Linear(c.head_dim, c.n_window * c.n_height_bins))
                            if c.volume == "factored" else None)
        self.token_in = nn.Linear(d, d)
        self.step_head = StepHead(d, c.head_layers, c.heads, c.n_gripper_bins, c.n_rot_bins)
        # channels-last convolutions (weights and input): a CPU training step ~1.25x faster,
        # the 128-wide separable block at the grid dominating it (the other models: no gain)
        self.to(memory_format=torch.channels_last)

    # ------------------------------------------------------------------ network parts
    def decode_as_format(self, checkpoint_format: int) -> None:
        """Format-1 checkpoints decoded heights as the argmax bin's centre."""
        self.height_soft_argmax = checkpoint_format >= 2

    def features(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Conditioned, refined feature map (B, D, grid, grid)."""
        c = self.config
        f = self.backbone(batch["rgb"].contiguous(memory_format=torch.channels_last))
        b, d, g, _ = f.shape
        f = f + self.gripper_embed(batch["gripper_state"] * GRIPPER_STATE_SCALE)[..., None, None]
        cell = geometry.uv_to_cell(batch["eef_uv"], g, c.image_size)
        at_eef = F.one_hot(cell, g * g).to(f.dtype).view(b, 1, g, g)
        f = f + at_eef * self.keypoint.view(1, d, 1, 1)
        if self.height_embed is not None:
            s = self.stats
            z = (batch["eef_pos"][:, 2:3] - s.height_lo) / (s.height_hi - s.height_lo)
            f = f + self.height_embed(z)[..., None, None]
        if self.offset_embed is not None:
            cells = geometry.grid_uv(g, c.image_size, f.device)
            off = (cells[None] - batch["eef_uv"][:, None]) / c.image_size
            f = f + self.offset_embed(off).transpose(1, 2).reshape(b, d, g, g)
        return self.refine(f)

    def volume_logits(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, W, n_height_bins, grid, grid) logits of the joint (height, cell) distribution
        (log-probabilities when ``volume == "factored"``)."""
        c = self.config
        b, _, g, _ = feats.shape
        tok = map_tokens(feats)  # (B, G2, D)
        if c.volume == "joint":
            vol = self.volume_head(tok).view(b, g * g, c.n_window, c.n_height_bins)
            return vol.permute(0, 2, 3, 1).reshape(b, c.n_window, c.n_height_bins, g, g)
        cells = self.volume_head(tok).transpose(1, 2).log_softmax(-1)  # (B, W, G2)
        heights = self.height_head(tok).view(b, g * g, c.n_window, c.n_height_bins)
        heights = heights.log_softmax(-1).permute(0, 2, 3, 1)  # (B, W, Hb, G2)
        return (cells[:, :, None] + heights).reshape(b, c.n_window, c.n_height_bins, g, g)

    def volume_loss(self, feats: torch.Tensor, cell: torch.Tensor, hbin: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Negative log-likelihood of the target (height bin, cell) (B, W) under the joint
        distribution, and the predicted flat (height * G2 + cell) argmax (B, W).

        ``factored`` computes the same joint likelihood as ``-log p(cell) - log p(h | cell)``
        with the height logits evaluated at the target cell only (much cheaper than the
        full ``W x n_height_bins x G2`` softmax); the argmax returned here (for logging) is
        taken over cells then heights, :meth:`predict` takes the joint argmax.
        """
        c = self.config
        g2 = feats.shape[-1] * feats.shape[-2]
        tok = map_tokens(feats)
        if c.volume == "joint":
            vol = self.volume_logits(feats).flatten(2)
            return ce(vol, hbin * g2 + cell), vol.argmax(-1)
        cells = self.volume_head(tok).transpose(1, 2)  # (B, W, G2)
        at = gather_tokens(tok, cell)  # (B, W, D)
        w = cell.shape[1]
        heights = self.height_head(at).view(*cell.shape, w, c.n_height_bins)
        heights = heights.diagonal(dim1=1, dim2=2).transpose(1, 2)  # step k's own bins
        with torch.no_grad():
            best_cell = cells.argmax(-1)
            hb = self.height_head(gather_tokens(tok, best_cell)).view(*cell.shape, w, -1)
            best_h = hb.diagonal(dim1=1, dim2=2).transpose(1, 2).argmax(-1)
        return ce(cells, cell) + ce(heights, hbin), best_h * g2 + best_cell

    def step_logits(self, feats: torch.Tensor, cell: torch.Tensor, height_bin: torch.Tensor,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Gripper (B, W, n_gripper_bins) and rotation (B, W, n_rot_bins) logits for the
        steps' cells and height bins (B, W)."""
        d, w = feats.shape[1], cell.shape[1]
        tok = self.token_in(gather_tokens(map_tokens(feats), cell))
        steps = torch.arange(w, device=feats.device)
        tok = tok + sinusoidal(steps, d)[None] + sinusoidal(height_bin, d)
        return self.step_head(tok)

    # ------------------------------------------------------------------ contract
    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        feats = self.features(batch)
        g2 = c.grid * c.grid
        cell, hbin = batch["target_cell"], batch["target_height_bin"]
        l_vol, best = self.volume_loss(feats, cell, hbin)
        g_logits, r_logits = self.step_logits(feats, cell, hbin)
        l_g = ce(g_logits, batch["target_gripper_bin"])
        l_r = ce(r_logits, batch["target_rot_bin"])
        loss = l_vol + c.gripper_weight * l_g + c.rot_weight * l_r
        with torch.no_grad():
            pred_uv = geometry.cell_to_uv(best % g2, c.grid, c.image_size)
            px = (pred_uv - batch["target_uv"]).norm(dim=-1).mean().item()
            parts = {"loss": loss.item(), "volume": l_vol.item(), "gripper": l_g.item(),
                     "rot": l_r.item(), "cell_acc": ((best % g2) == cell).float().mean().item(),
                     "height_acc": ((best // g2) == hbin).float().mean().item(),
                     "gripper_acc": accuracy(g_logits, batch["target_gripper_bin"]),
                     "px_err": px}
        return loss, parts

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        g, g2 = c.grid, c.grid * c.grid
        feats = self.features(batch)
        vol = self.volume_logits(feats)
        b, w = vol.shape[:2]
        best = vol.flatten(2).argmax(-1)
        hbin, cell = best // g2, best % g2
        xyz, uv = self.decode_cell_height(cell, hbin, batch)
        if c.subcell_refine:
            sl = torch.gather(vol, 2, hbin[..., None, None, None].expand(-1, -1, 1, g, g))
            coords = geometry.grid_uv(g, c.image_size, vol.device).view(g, g, 2)
            uv = neighbourhood_soft_argmax(sl.reshape(b * w, g, g), coords).view(b, w, 2)
            col = torch.gather(vol.flatten(3), 3,
                               cell[..., None, None].expand(-1, -1, c.n_height_bins, 1))
            if self.height_soft_argmax:
                h = self.refine_height(col[..., 0])
            else:  # format-1 checkpoints: the argmax bin's centre height
                h = geometry.bin_to_value(hbin, self.stats.height_lo, self.stats.height_hi,
                                          c.n_height_bins)
            xyz = geometry.ray_at_height(uv, h, batch["intrinsics"], batch["extrinsics"])
        g_logits, r_logits = self.step_logits(feats, cell, hbin)
        return {"xyz": xyz, "uv": uv, "gripper": self.decode_gripper(g_logits.argmax(-1)),
                "rot": self.decode_rot(r_logits.argmax(-1))}
