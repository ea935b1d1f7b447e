"""ACT-style baseline: global image tokens -> transformer decoder -> regressed xyz.

The rival of the pixel-aligned models: the same backbone, pooled to a few image tokens
(no per-pixel output), a proprioception token (EEF position normalised by the dataset
statistics, gripper state), a small encoder, and a decoder with W learned step queries.
Positions are regressed in normalised coordinates ``(xyz - xyz_mean) / xyz_std`` with an
L1 loss; gripper and rotation are classified into bins like the other models.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from para_bench.agents.act.configuration import ACTConfig
from para_bench.models import geometry
from para_bench.models.backbones import build_backbone
from para_bench.models.base import PolicyModel
from para_bench.models.layers import (
    GRIPPER_STATE_SCALE,
    Block,
    accuracy,
    ce,
    map_tokens,
    scale_to_grid,
    sinusoidal,
)
from para_bench.models.stats import DatasetStats


class ACTPolicy(PolicyModel):
    """Global-regression policy (see the module docstring)."""

    name = "act"
    config_class = ACTConfig

    def __init__(self, config: ACTConfig, stats: DatasetStats) -> None:
        super().__init__(config, stats)
        c, d = config, config.dim
        self.backbone = build_backbone(c)
        n_tok = c.token_grid * c.token_grid + 2
        self.token_pos = nn.Parameter(torch.randn(1, n_tok, d) * 0.02)
        self.proprio = nn.Linear(4, d)
        self.encoder = nn.ModuleList([Block(d, c.heads) for _ in range(c.enc_layers)])
        self.enc_norm = nn.LayerNorm(d)
        self.query = nn.Parameter(torch.randn(1, c.n_window, d) * 0.02)
        self.decoder = nn.ModuleList([Block(d, c.heads, cross=True) for _ in range(c.layers)])
        self.norm = nn.LayerNorm(d)
        self.xyz_out = nn.Linear(d, 3)
        self.gripper_out = nn.Linear(d, c.n_gripper_bins)
        self.rot_out = nn.Linear(d, c.n_rot_bins)
        self.register_buffer("xyz_mean", torch.tensor(stats.xyz_mean, dtype=torch.float32),
                             persistent=False)
        self.register_buffer("xyz_std", torch.tensor(stats.xyz_std, dtype=torch.float32),
                             persistent=False)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Normalised xyz (B, W, 3), gripper and rotation logits (B, W, bins)."""
        c = self.config
        fmap = self.backbone(batch["rgb"])
        img = map_tokens(scale_to_grid(fmap, c.token_grid))
        prop = torch.cat([(batch["eef_pos"] - self.xyz_mean) / self.xyz_std,
                          batch["gripper_state"] * GRIPPER_STATE_SCALE], -1)
        mem = torch.cat([img, img.mean(1, keepdim=True), self.proprio(prop)[:, None]], 1)
        mem = mem + self.token_pos
        for blk in self.encoder:
            mem = blk(mem)
        mem = self.enc_norm(mem)
        steps = sinusoidal(torch.arange(c.n_window, device=mem.device), c.dim)
        q = (self.query + steps[None]).expand(mem.shape[0], -1, -1)
        for blk in self.decoder:
            q = blk(q, memory=mem)
        q = self.norm(q)
        return {"xyz": self.xyz_out(q), "gripper": self.gripper_out(q), "rot": self.rot_out(q)}

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        out = self(batch)
        target = (batch["target_xyz"] - self.xyz_mean) / self.xyz_std
        l_xyz = F.l1_loss(out["xyz"], target)
        l_g = ce(out["gripper"], batch["target_gripper_bin"])
        l_r = ce(out["rot"], batch["target_rot_bin"])
        loss = c.xyz_weight * l_xyz + c.gripper_weight * l_g + c.rot_weight * l_r
        with torch.no_grad():
            err = ((out["xyz"] * self.xyz_std + self.xyz_mean) - batch["target_xyz"])
            parts = {"loss": loss.item(), "xyz": l_xyz.item(), "gripper": l_g.item(),
                     "rot": l_r.item(), "gripper_acc": accuracy(out["gripper"],
                                                                batch["target_gripper_bin"]),
                     "xyz_err": err.norm(dim=-1).mean().item()}
        return loss, parts

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = self(batch)
        xyz = out["xyz"] * self.xyz_std + self.xyz_mean
        uv = geometry.project(xyz, batch["intrinsics"], batch["extrinsics"])[0]
        return {"xyz": xyz, "uv": uv, "gripper": self.decode_gripper(out["gripper"].argmax(-1)),
                "rot": self.decode_rot(out["rot"].argmax(-1))}
