"""Image backbones: ``rgb`` (B, 3, S, S) in [0, 1] -> feature map (B, dim, grid, grid).

* ``cnn``: a small CoordConv CNN trained from scratch. A local path (2x2 stride-2 convs to
  the prediction grid) keeps fine position detail; a context path (further stride-2 convs
  to ``grid / 4`` and one transformer block over those tokens) gives every cell a view of
  the whole image, then is upsampled and added back.
* ``dinov2:<local path>`` / ``dinov3:<local path>``: a HuggingFace DINOv2 or DINOv3 ViT
  (``AutoModel``) loaded from a local folder (never
  downloaded), patch features reshaped to a map, 1x1 conv to ``dim``, resized to ``grid``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from para_bench.models.base import PolicyConfig
from para_bench.models.layers import Block, map_tokens, scale_to_grid

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _groups(c: int) -> int:
    return next(g for g in (8, 4, 2, 1) if c % g == 0)


def conv_block(c_in: int, c_out: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv (``k x k``, padding ``(k - 1) // 2``) + GroupNorm + GELU."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, bias=False),
                         nn.GroupNorm(_groups(c_out), c_out), nn.GELU())


class SepConv(nn.Module):
    """Residual depthwise-separable block: depthwise 3x3, GroupNorm, GELU, pointwise 1x1."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False)
        self.norm = nn.GroupNorm(_groups(c), c)
        self.pw = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw(F.gelu(self.norm(self.dw(x))))


def add_coords(x: torch.Tensor) -> torch.Tensor:
    """Appends two CoordConv channels (column, row) in [-1, 1]: (B, C, H, W) -> (B, C + 2, H, W)."""
    b, _, h, w = x.shape
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.cat([x, torch.stack([xx, yy])[None].expand(b, -1, -1, -1)], 1)


class ContextPath(nn.Module):
    """Global context for a feature map: 2x2 stride-2 convs (each followed by a separable
    block) down to ``size / 2**n_down``, a transformer block over those tokens (learned
    position embedding), a 1x1 conv to the output width, bilinear upsampling back.

    Args:
        c_in: input channels.
        dim: output channels.
        size: side of the input map.
        n_down: halvings (fewer if the map is too small).
        width: token width of the transformer block.
        heads: attention heads.
    """

    def __init__(self, c_in: int, dim: int, size: int, n_down: int = 2, width: int = 128,
                 heads: int = 4) -> None:
        super().__init__()
        n_down = max(0, min(n_down, int(math.log2(max(size, 1)))))
        chans = [c_in] + [min(width, c_in * 2**(i + 1)) for i in range(n_down - 1)] + [width]
        layers: list[nn.Module] = []
        for i in range(len(chans) - 1):
            k = 2 if i < n_down else 1
            layers += [conv_block(chans[i], chans[i + 1], k, k), SepConv(chans[i + 1])]
        self.down = nn.Sequential(*layers[:-1])  # no separable block right before attention
        low = max(size // 2**n_down, 1)
        self.pos = nn.Parameter(torch.randn(1, low * low, width) * 0.02)
        self.block = Block(width, heads)
        self.out = nn.Conv2d(width, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-1]
        y = self.down(x)
        b, d, h, w = y.shape
        t = self.block(map_tokens(y) + self.pos)
        y = self.out(t.transpose(1, 2).reshape(b, d, h, w))
        return F.interpolate(y, size=(size, size), mode="bilinear", align_corners=False)


class CNNBackbone(nn.Module):
    """Small CoordConv CNN from scratch with a global context path.

    The local path patchifies with 2x2 stride-2 convs down to the grid and applies one
    separable block there; the context path (:class:`ContextPath`) reaches ``grid / 4``.
    Their sum, with the coordinates, is the feature map.

    Args:
        image_size: S.
        grid: output side.
        dim: output channels.
        width: channels of the local path at the grid.
        context_width: token width of the context path.
    """

    def __init__(self, image_size: int, grid: int, dim: int, width: int = 32,
                 context_width: int = 128) -> None:
        super().__init__()
        self.grid = grid
        n_down = max(0, int(math.floor(math.log2(image_size / grid))))
        chans = [5] + [max(width // 2**(n_down - 1 - i), 8) for i in range(n_down)]
        self.stem = nn.Sequential(*[conv_block(chans[i], chans[i + 1], 2, 2)
                                    for i in range(n_down)])
        self.local = nn.Sequential(conv_block(chans[-1], width, 1), SepConv(width))
        self.context = ContextPath(width, dim, grid, n_down=2, width=context_width)
        self.fuse = nn.Conv2d(width + 2, dim, 1)
        self.norm = nn.GroupNorm(_groups(dim), dim)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        x = self.stem(add_coords(rgb - 0.5))
        x = self.local(scale_to_grid(x, self.grid))
        return self.norm(self.fuse(add_coords(x)) + self.context(x))


class DinoBackbone(nn.Module):
    """A local HuggingFace DINOv2 / DINOv3 ViT checkpoint as a feature-map backbone.

    Args:
        path: local folder with ``config.json`` and weights (never downloaded).
        image_size: S.
        grid: output side.
        dim: output channels.
        freeze: keep DINOv2's weights fixed (the 1x1 projection still trains).
    """

    def __init__(self, path: str, image_size: int, grid: int, dim: int, freeze: bool) -> None:
        super().__init__()
        try:
            from transformers import AutoModel
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("the dinov2 / dinov3 backbones need transformers: "
                              "pip install transformers") from e
        try:
            self.dino = AutoModel.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as e:
            raise ValueError(f"dino backbone: no usable model in local folder {path!r} "
                             f"({str(e).splitlines()[0][:120]})") from None
        self.freeze = freeze
        if freeze:
            self.dino.requires_grad_(False)
        cfg = self.dino.config
        self.patch = int(cfg.patch_size)
        self.n_prefix = 1 + int(getattr(cfg, "num_register_tokens", 0) or 0)
        self.in_size = max(self.patch, round(image_size / self.patch) * self.patch)
        self.grid = grid
        self.proj = nn.Conv2d(int(cfg.hidden_size), dim, 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        x = (rgb - self.mean) / self.std
        if x.shape[-1] != self.in_size:
            x = F.interpolate(x, size=(self.in_size, self.in_size), mode="bilinear",
                              align_corners=False)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze):
            h = self.dino(pixel_values=x).last_hidden_state[:, self.n_prefix:]
        n = self.in_size // self.patch
        fmap = h.transpose(1, 2).reshape(h.shape[0], h.shape[2], n, n)
        fmap = self.proj(fmap)
        return F.interpolate(fmap, size=(self.grid, self.grid), mode="bilinear",
                             align_corners=False)


def build_backbone(config: PolicyConfig) -> nn.Module:
    """The backbone named by ``config.backbone``: ``cnn``, ``dinov2:<local path>`` or
    ``dinov3:<local path>``."""
    c = config
    if c.backbone == "cnn":
        net: nn.Module = CNNBackbone(c.image_size, c.grid, c.dim,
                                     width=getattr(c, "cnn_width", 32))
        if c.freeze_backbone:
            net.requires_grad_(False)
        return net
    if c.backbone.startswith(("dinov2:", "dinov3:")):
        return DinoBackbone(c.backbone.split(":", 1)[1], c.image_size, c.grid, c.dim,
                              c.freeze_backbone)
    raise ValueError(f"unknown backbone {c.backbone!r} (use 'cnn', 'dinov2:<local path>' or "
                     "'dinov3:<local path>')")
