"""AR network: model A of seed 002, with look-ahead targets so that it moves (seed 001).

Context tokens: for each of the C history frames, the backbone map average-pooled to
``token_grid x token_grid`` patch tokens plus one EEF token (the frame's EEF pixel and
height). Every token carries summed position encodings: temporal (frame index), absolute
pixel position, and position **relative to the current EEF pixel**. Then W query tokens;
query k carries the previous target (k = 0: the current EEF; k > 0: target k - 1,
teacher-forced in training, the model's own argmax at inference) as pixel + height
encodings. Queries attend causally among themselves and to all context tokens; context
tokens never see queries. Each query state points at a cell of the current frame's
full-resolution feature map (dot product with per-cell keys that carry the same absolute
and EEF-relative encodings) and gives height, gripper and rotation logits (with the
features at its cell).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from para_bench.agents.ar.configuration import ARConfig
from para_bench.models import geometry
from para_bench.models.backbones import build_backbone
from para_bench.models.base import PolicyModel
from para_bench.models.layers import (
    GRIPPER_STATE_SCALE,
    Block,
    FourierEmbed,
    ce,
    gather_tokens,
    map_tokens,
    mlp,
    neighbourhood_soft_argmax,
    scale_to_grid,
    sinusoidal,
)
from para_bench.models.stats import DatasetStats


class ARPolicy(PolicyModel):
    """Autoregressive pointer-over-cells policy (see the module docstring)."""

    name = "ar"
    config_class = ARConfig

    def __init__(self, config: ARConfig, stats: DatasetStats) -> None:
        super().__init__(config, stats)
        c, d = config, config.dim
        self.backbone = build_backbone(c)
        pos_kw = {"n_freqs": 6, "max_wavelength": 4.0, "min_wavelength": 2.0 / c.grid}
        self.pos = FourierEmbed(4, d, **pos_kw)  # [uv / S, (uv - eef_uv) / S]
        self.key_pos = FourierEmbed(4, d, bias=False, **pos_kw)
        self.height_pe = FourierEmbed(1, d, n_freqs=6, max_wavelength=4.0,
                                      min_wavelength=2.0 / c.n_height_bins)
        self.frame_embed = nn.Parameter(torch.randn(max(c.history, 1), d) * 0.02)
        self.eef_token = nn.Parameter(torch.randn(d) * 0.02)
        self.query_token = nn.Parameter(torch.randn(d) * 0.02)
        self.gripper_embed = nn.Linear(1, d)
        self.patch_in = nn.Linear(d, d)
        self.blocks = nn.ModuleList([Block(d, c.heads) for _ in range(c.layers)])
        self.norm = nn.LayerNorm(d)
        self.key_in = nn.Linear(d, d, bias=False)
        self.ptr_q = nn.Linear(d, d)
        self.cell_in = nn.Linear(d, d)
        self.out_norm = nn.LayerNorm(d)
        self.height_out = mlp(d, d, c.n_height_bins)
        self.gripper_out = nn.Linear(d, c.n_gripper_bins)
        self.rot_out = nn.Linear(d, c.n_rot_bins)

    # ------------------------------------------------------------------ encodings
    def _pos(self, uv: torch.Tensor, eef_uv: torch.Tensor, key: bool = False) -> torch.Tensor:
        """Absolute + EEF-relative pixel encodings of ``uv`` (B, N, 2) or (N, 2)."""
        s = self.config.image_size
        uv = uv.expand(eef_uv.shape[0], *uv.shape[-2:]) if uv.dim() == 2 else uv
        x = torch.cat([uv / s, (uv - eef_uv[:, None]) / s], -1)
        return (self.key_pos if key else self.pos)(x)

    def _height(self, h: torch.Tensor) -> torch.Tensor:
        s = self.stats
        return self.height_pe(((h - s.height_lo) / (s.height_hi - s.height_lo))[..., None])

    def _frames(self, batch: dict[str, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.config.history > 1:
            return batch["history_rgb"], batch["history_uv"], batch["history_xyz"]
        return batch["rgb"][:, None], batch["eef_uv"][:, None], batch["eef_pos"][:, None]

    def encode(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor,
                                                              torch.Tensor]:
        """Context tokens (B, C * (T * T + 1), D), the current frame's cell features
        (B, G * G, D) and its cell keys (B, G * G, D)."""
        c, t = self.config, self.config.token_grid
        rgb, uv, xyz = self._frames(batch)
        b, n = rgb.shape[:2]
        eef_uv = batch["eef_uv"]
        now = self.backbone(rgb[:, -1])  # (B, D, G, G)
        d, g = now.shape[1], now.shape[-1]
        pooled_now = scale_to_grid(now, t)[:, None]
        if n == 1:
            pooled = pooled_now
        elif c.history_grad:
            past = self.backbone(rgb[:, :-1].flatten(0, 1))
            pooled = torch.cat([scale_to_grid(past, t).view(b, n - 1, d, t, t), pooled_now], 1)
        else:
            pooled = torch.cat([self._past_pooled(rgb, now), pooled_now], 1)
        cur = map_tokens(now).contiguous()
        patches = self.patch_in(map_tokens(pooled.flatten(0, 1))).view(b, n, t * t, d)
        patches = patches + self._pos(geometry.grid_uv(t, c.image_size, now.device),
                                      eef_uv)[:, None]
        eef = self.eef_token + self._pos(uv, eef_uv) + self._height(xyz[..., 2])
        grip = self.gripper_embed(batch["gripper_state"] * GRIPPER_STATE_SCALE)
        eef = eef + torch.cat([torch.zeros_like(eef[:, :-1]), grip[:, None]], 1)
        tokens = torch.cat([patches, eef[:, :, None]], 2) + self.frame_embed[:n, None]
        keys = self.key_in(cur) + self._pos(geometry.grid_uv(g, c.image_size, now.device),
                                            eef_uv, key=True)
        return tokens.flatten(1, 2), cur, keys

    @torch.no_grad()
    def _past_pooled(self, rgb: torch.Tensor, now: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, C - 1, D, T, T) of the past frames, without gradients. A past
        frame identical to the current one (an episode's first decisions; ``history_dropout``
        in training) reuses the current frame's features instead of a second backbone pass."""
        b, n = rgb.shape[:2]
        t = self.config.token_grid
        past = rgb[:, :-1].flatten(0, 1)
        same = (rgb[:, :-1] == rgb[:, -1:]).flatten(2).all(-1).flatten()  # (B * (C - 1),)
        out = scale_to_grid(now.detach(), t).repeat_interleave(n - 1, 0)
        todo = (~same).nonzero().flatten()
        if len(todo):
            out[todo] = scale_to_grid(self.backbone(past[todo]), t)
        return out.view(b, n - 1, *out.shape[1:])

    def queries(self, prev_uv: torch.Tensor, prev_h: torch.Tensor,
                batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Query tokens (B, W, D) from the previous targets' pixels (B, W, 2) and heights."""
        w, d = prev_uv.shape[1], self.config.dim
        steps = torch.arange(w, device=prev_uv.device)
        grip = self.gripper_embed(batch["gripper_state"] * GRIPPER_STATE_SCALE)[:, None]
        return (self.query_token + self._pos(prev_uv, batch["eef_uv"]) + self._height(prev_h)
                + sinusoidal(steps, d)[None] + grip)

    def run(self, ctx: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
        """Transformer over context + queries; the queries' final states (B, W, D)."""
        n, w = ctx.shape[1], queries.shape[1]
        allowed = torch.zeros(n + w, n + w, dtype=torch.bool, device=ctx.device)
        allowed[:, :n] = True
        allowed[n:, n:] = torch.ones(w, w, dtype=torch.bool, device=ctx.device).tril()
        x = torch.cat([ctx, queries], 1)
        for blk in self.blocks:
            x = blk(x, allowed=allowed)
        return self.norm(x[:, n:])

    def outputs(self, state: torch.Tensor, cur: torch.Tensor, keys: torch.Tensor,
                cell: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """Cell logits (B, W, G * G); height/gripper/rotation logits at ``cell`` (B, W)
        (default: the argmax cell)."""
        ptr = self.ptr_q(state) @ keys.transpose(1, 2) / math.sqrt(state.shape[-1])
        if cell is None:
            cell = ptr.argmax(-1)
        z = self.out_norm(state + self.cell_in(gather_tokens(cur, cell)))
        return {"cell": ptr, "height": self.height_out(z), "gripper": self.gripper_out(z),
                "rot": self.rot_out(z), "cell_idx": cell}

    def _prev(self, batch: dict[str, torch.Tensor], cell: torch.Tensor, hbin: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """Previous targets for the W queries, from the step cells/height bins (B, W)."""
        c, s = self.config, self.stats
        uv = geometry.cell_to_uv(cell[:, :-1], c.grid, c.image_size)
        h = geometry.bin_to_value(hbin[:, :-1], s.height_lo, s.height_hi, c.n_height_bins)
        return (torch.cat([batch["eef_uv"][:, None], uv], 1),
                torch.cat([batch["eef_pos"][:, None, 2], h], 1))

    # ------------------------------------------------------------------ contract
    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        c = self.config
        ctx, cur, keys = self.encode(batch)
        cell, hbin = batch["target_cell"], batch["target_height_bin"]
        prev_uv, prev_h = self._prev(batch, cell, hbin)
        out = self.outputs(self.run(ctx, self.queries(prev_uv, prev_h, batch)), cur, keys, cell)
        l_cell = ce(out["cell"], cell)
        l_h = ce(out["height"], hbin)
        l_g = ce(out["gripper"], batch["target_gripper_bin"])
        l_r = ce(out["rot"], batch["target_rot_bin"])
        loss = l_cell + c.height_weight * l_h + c.gripper_weight * l_g + c.rot_weight * l_r
        with torch.no_grad():
            best = out["cell"].argmax(-1)
            uv = geometry.cell_to_uv(best, c.grid, c.image_size)
            parts = {"loss": loss.item(), "cell": l_cell.item(), "height": l_h.item(),
                     "gripper": l_g.item(), "rot": l_r.item(),
                     "cell_acc": (best == cell).float().mean().item(),
                     "height_acc": (out["height"].argmax(-1) == hbin).float().mean().item(),
                     "px_err": (uv - batch["target_uv"]).norm(dim=-1).mean().item()}
        return loss, parts

    @torch.no_grad()
    def predict(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        c, g = self.config, self.config.grid
        ctx, cur, keys = self.encode(batch)
        b, w = ctx.shape[0], c.n_window
        cell = torch.zeros(b, w, dtype=torch.long, device=ctx.device)
        hbin, grip, rot = cell.clone(), cell.clone(), cell.clone()
        ptrs = []
        for k in range(w):
            prev_uv, prev_h = self._prev(batch, cell, hbin)
            state = self.run(ctx, self.queries(prev_uv[:, :k + 1], prev_h[:, :k + 1], batch))
            out = self.outputs(state[:, k:k + 1], cur, keys, None)
            cell[:, k] = out["cell_idx"][:, 0]
            hbin[:, k] = out["height"][:, 0].argmax(-1)
            grip[:, k] = out["gripper"][:, 0].argmax(-1)
            rot[:, k] = out["rot"][:, 0].argmax(-1)
            ptrs.append(out["cell"][:, 0])
        xyz, uv = self.decode_cell_height(cell, hbin, batch)
        if c.subcell_refine:
            coords = geometry.grid_uv(g, c.image_size, ctx.device).view(g, g, 2)
            logits = torch.stack(ptrs, 1).reshape(b * w, g, g)
            uv = neighbourhood_soft_argmax(logits, coords).view(b, w, 2)
            h = geometry.bin_to_value(hbin, self.stats.height_lo, self.stats.height_hi,
                                      c.n_height_bins)
            xyz = geometry.ray_at_height(uv, h, batch["intrinsics"], batch["extrinsics"])
        return {"xyz": xyz, "uv": uv, "gripper": self.decode_gripper(grip),
                "rot": self.decode_rot(rot)}
