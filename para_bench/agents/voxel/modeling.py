"""Voxel-token Perceiver-IO network: models B (absolute) and C (EEF-relative) of seed 002.

"The action space is the token space": each (cell, height) voxel of a ``voxel_grid x
voxel_grid x voxel_heights`` image-aligned volume is a token
``Linear(PE(xyz)) + image_feature[cell]``, xyz being where the cell's centre ray meets
the height plane (:func:`~para_bench.models.geometry.voxel_xyz`), absolute (centred on the
dataset mean) or minus ``eef_start``. A context token (EEF position and gripper state) and
W query tokens attend causally among themselves and cross-attend to the voxels (keys and
values projected once, shared by all layers); voxels never attend to each other. Each
query scores every voxel (dot product), giving the step's voxel; gripper, rotation and the
offset of the point from the voxel's centre (``offset_head``) come from the query state with
the features of that voxel (the target's in training).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from para_bench.agents.voxel.configuration import VoxelAbsConfig, VoxelConfig, VoxelRelConfig
from para_bench.models import geometry
from para_bench.models.backbones import build_backbone
from para_bench.models.base import PolicyModel
from para_bench.models.layers import (
    GRIPPER_STATE_SCALE,
    Block,
    FourierEmbed,
    causal_allowed,
    ce,
    gather_tokens,
    map_tokens,
    neighbourhood_soft_argmax,
    scale_to_grid,
    sinusoidal,
)
from para_bench.models.stats import DatasetStats


class VoxelPolicy(PolicyModel):
    """Voxel-token Perceiver-IO policy (see the module docstring); ``config.relative``
    picks model B or C."""

    name = "voxel"
    config_class = VoxelConfig

    def __init__(self, config: VoxelConfig, stats: DatasetStats) -> None:
        super().__init__(config, stats)
        c, d = config, config.dim
        self.backbone = build_backbone(c)
        pe = {"n_freqs": 8, "max_wavelength": 4.0, "min_wavelength": 0.02}  # metres
        self.vox_pe = FourierEmbed(3, d, **pe)
        self.pos_pe = FourierEmbed(3, d, **pe)
        self.feat_in = nn.Linear(d, d)
        self.vox_norm = nn.LayerNorm(d)
        self.kv = nn.Linear(d, 2 * d)
        self.ctx_token = nn.Parameter(torch.randn(d) * 0.02)
        self.query_token = nn.Parameter(torch.randn(d) * 0.02)
        self.gripper_embed = nn.Linear(1, d)
        self.blocks = nn.ModuleList([Block(d, c.heads, cross=True, cross_own_kv=False)
                                     for _ in range(c.layers)])
        self.norm = nn.LayerNorm(d)
        self.ptr_q = nn.Linear(d, d)
        self.cell_in = nn.Linear(d, d)
        self.out_norm = nn.LayerNorm(d)
        self.gripper_out = nn.Linear(d, c.n_gripper_bins)
        self.rot_out = nn.Linear(d, c.n_rot_bins)
        self.offset_out = nn.Linear(d, 3) if c.offset_head else None

    # ------------------------------------------------------------------ parts
    def voxel_heights(self, device: torch.device | None = None) -> torch.Tensor:
        """Height of each voxel level (voxel_heights,)."""
        c, s = self.config, self.stats
        return geometry.bin_to_value(torch.arange(c.voxel_heights, device=device),
                                     s.height_lo, s.height_hi, c.voxel_heights)

    def origin(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, 3) point positions are encoded relative to."""
        if self.config.relative:
            return batch["eef_start"]
        mean = torch.tensor(self.stats.xyz_mean, dtype=torch.float32,
                            device=batch["eef_pos"].device)
        return mean.expand_as(batch["eef_pos"])

    def level_spacing(self) -> float:
        """Metres between two height levels: the unit of the regressed offsets."""
        s = self.stats
        return (s.height_hi - s.height_lo) / self.config.voxel_heights

    def voxel_index(self, uv: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Voxel indices (cell * voxel_heights + level) of pixels (..., 2) at heights (...)."""
        c, s = self.config, self.stats
        cell = geometry.uv_to_cell(uv, c.voxel_grid, c.image_size)
        return cell * c.voxel_heights + geometry.value_to_bin(z, s.height_lo, s.height_hi,
                                                              c.voxel_heights)

    def encode(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Voxel tokens (B, V, D), their xyz (B, V, 3), shared keys/values, and origin."""
        c = self.config
        fmap = self.backbone(batch["rgb"])
        feats = self.feat_in(map_tokens(scale_to_grid(fmap, c.voxel_grid)))  # (B, Gv2, D)
        xyz = geometry.voxel_xyz(batch["intrinsics"], batch["extrinsics"], c.voxel_grid,
                                 c.image_size, self.voxel_heights(fmap.device))
        origin = self.origin(batch)
        tok = feats[:, :, None] + self.vox_pe(xyz - origin[:, None, None])
        vox = self.vox_norm(tok.flatten(1, 2))
        split = self.blocks[0].cross.split
        k, v = self.kv(vox).chunk(2, -1)
        return {"vox": vox, "xyz": xyz.flatten(1, 2), "kv": (split(k), split(v)),
                "origin": origin}

    def queries(self, enc: dict[str, torch.Tensor], prev_xyz: torch.Tensor | None,
                batch: dict[str, torch.Tensor], w: int) -> torch.Tensor:
        """Context token + ``w`` query tokens (B, 1 + w, D)."""
        d, origin = self.config.dim, enc["origin"]
        ctx = (self.ctx_token + self.pos_pe(batch["eef_pos"] - origin)
               + self.gripper_embed(batch["gripper_state"] * GRIPPER_STATE_SCALE))
        q = self.query_token + sinusoidal(torch.arange(w, device=origin.device), d)[None]
        q = q.expand(origin.shape[0], -1, -1)
        if prev_xyz is not None:
            q = q + self.pos_pe(prev_xyz - origin[:, None])
        return torch.cat([ctx[:, None], q], 1)

    def run(self, enc: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
        """Perceiver blocks; the W query states (B, W, D)."""
        allowed = causal_allowed(tokens.shape[1], tokens.device)
        for blk in self.blocks:
            tokens = blk(tokens, allowed=allowed, kv=enc["kv"])
        return self.norm(tokens[:, 1:])

    def outputs(self, enc: dict[str, torch.Tensor], state: torch.Tensor,
                vidx: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Voxel logits (B, W, V) and gripper/rotation logits at ``vidx`` (default argmax)."""
        logits = self.ptr_q(state) @ enc["vox"].transpose(1, 2) / math.sqrt(state.shape[-1])
        if vidx is None:
            vidx = logits.argmax(-1)
        z = self.out_norm(state + self.cell_in(gather_tokens(enc["vox"], vidx)))
        out = {"voxel": logits, "gripper": self.gripper_out(z), "rot": self.rot_out(z),
               "vidx": vidx}
        if self.offset_out is not None:
            out["offset"] = self.offset_out(z)
        return out

    def _prev(self, batch: dict[str, torch.Tensor], step_xyz: torch.Tensor) -> torch.Tensor:
        """Previous targets (B, W, 3): the current EEF, then steps 0 .. W - 2."""
        return torch.cat([batch["eef_pos"][:, None], step_xyz[:, :-1]], 1)

    # ------------------------------------------------------------------ contract
    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        enc = self.encode(batch)
        vidx = self.voxel_index(batch["target_uv"], batch["target_xyz"][..., 2])
        w = vidx.shape[1]
        centres = gather_tokens(enc["xyz"], vidx)  # (B, W, 3) the target voxels' centres
        prev = self._prev(batch, centres) if c.autoregressive else None
        out = self.outputs(enc, self.run(enc, self.queries(enc, prev, batch, w)), vidx)
        l_v = ce(out["voxel"], vidx)
        l_g = ce(out["gripper"], batch["target_gripper_bin"])
        l_r = ce(out["rot"], batch["target_rot_bin"])
        loss = l_v + c.gripper_weight * l_g + c.rot_weight * l_r
        parts = {"voxel": l_v.item(), "gripper": l_g.item(), "rot": l_r.item()}
        if self.offset_out is not None:
            want = (batch["target_xyz"] - centres) / self.level_spacing()
            l_o = F.smooth_l1_loss(out["offset"].float(), want, beta=0.1)
            loss = loss + c.offset_weight * l_o
            parts["offset"] = l_o.item()
        with torch.no_grad():
            best = out["voxel"].argmax(-1)
            err = (gather_tokens(enc["xyz"], best) - batch["target_xyz"]).norm(dim=-1)
            parts.update(loss=loss.item(), voxel_acc=(best == vidx).float().mean().item(),
                         xyz_err=err.mean().item())
        return loss, parts

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c = self.config
        enc = self.encode(batch)
        b, w = batch["eef_pos"].shape[0], c.n_window
        if c.autoregressive:
            vidx = torch.zeros(b, w, dtype=torch.long, device=enc["vox"].device)
            step_xyz = batch["eef_pos"][:, None].repeat(1, w, 1)
            outs = []
            for k in range(w):
                prev = self._prev(batch, step_xyz)[:, :k + 1]
                state = self.run(enc, self.queries(enc, prev, batch, k + 1))
                o = self.outputs(enc, state[:, k:k + 1], None)
                vidx[:, k] = o["vidx"][:, 0]
                step_xyz[:, k] = gather_tokens(enc["xyz"], o["vidx"])[:, 0]
                outs.append(o)
            out = {key: torch.cat([o[key] for o in outs], 1) for key in outs[0]}
        else:
            out = self.outputs(enc, self.run(enc, self.queries(enc, None, batch, w)), None)
            vidx = out["vidx"]
        xyz = gather_tokens(enc["xyz"], vidx)
        if self.offset_out is not None:
            xyz = xyz + out["offset"] * self.level_spacing()
        elif c.subvoxel_refine:
            gv, hv = c.voxel_grid, c.voxel_heights
            coords = enc["xyz"].view(b, 1, gv, gv, hv, 3).expand(-1, w, -1, -1, -1, -1)
            xyz = neighbourhood_soft_argmax(out["voxel"].reshape(b * w, gv, gv, hv),
                                            coords.reshape(b * w, gv, gv, hv, 3)).view(b, w, 3)
        uv = geometry.project(xyz, batch["intrinsics"], batch["extrinsics"])[0]
        return {"xyz": xyz, "uv": uv,
                "gripper": self.decode_gripper(out["gripper"].argmax(-1)),
                "rot": self.decode_rot(out["rot"].argmax(-1))}


class VoxelAbsPolicy(VoxelPolicy):
    """Model B: voxel tokens with absolute world-xyz encodings."""

    name = "voxel_abs"
    config_class = VoxelAbsConfig


class VoxelRelPolicy(VoxelPolicy):
    """Model C: voxel tokens with xyz encodings relative to ``eef_start``."""

    name = "voxel_rel"
    config_class = VoxelRelConfig
