"""Image backbones: ``rgb`` (B, 3, S, S) in [0, 1] -> feature map (B, dim, grid, grid).

* ``cnn``: a small CNN trained from scratch. A local path (2x2 stride-2 convs to the
  prediction grid) keeps fine position detail; a context path (further stride-2 convs to
  ``grid / 4`` and one transformer block over those tokens) gives every cell a view of the
  whole image, then is upsampled and added back. Two switches set how much it may know
  about absolute image position (each policy picks what its seed architecture implies):
  ``coord_channels`` appends CoordConv channels, and ``context_pos`` gives the context
  attention learned absolute position embeddings (``absolute``) or a learned bias per
  relative offset between tokens (``relative``: the context path is then translation
  equivariant, up to the image border).
* ``dinov2:<local path>`` / ``dinov3:<local path>``: a HuggingFace DINOv2 or DINOv3 ViT
  (``AutoModel``) loaded from a local folder (never downloaded), patch features reshaped
  to a map, 1x1 conv to ``dim``, resized to ``grid``. Its configuration is kept in the
  policy config (``backbone_config``), so a checkpoint rebuilds it without the folder
  (the weights are in the checkpoint's state dict).
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


class RelativeBias(nn.Module):
    """Learned attention bias per (head, relative 2D offset) between the tokens of a
    ``side x side`` map (as in Swin): ``(heads, side**2, side**2)``."""

    def __init__(self, side: int, heads: int) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.zeros(heads, (2 * side - 1) ** 2))
        ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
        ys, xs = ys.flatten(), xs.flatten()
        rel = (ys[:, None] - ys[None] + side - 1) * (2 * side - 1) + (xs[:, None] - xs[None]
                                                                       + side - 1)
        self.register_buffer("index", rel, persistent=False)

    def forward(self) -> torch.Tensor:
        return self.table[:, self.index]


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
    absolute position embedding, or a relative-offset attention bias), a 1x1 conv to the
    output width, upsampling back (nearest-neighbour by default: the local path adds the
    detail).

    Args:
        c_in: input channels.
        dim: output channels.
        size: side of the input map.
        n_down: halvings (fewer if the map is too small).
        width: token width of the transformer block.
        heads: attention heads.
        position: ``absolute`` or ``relative``.
        upsample: ``nearest`` or ``bilinear``.
    """

    def __init__(self, c_in: int, dim: int, size: int, n_down: int = 2, width: int = 128,
                 heads: int = 4, position: str = "absolute", upsample: str = "nearest") -> None:
        super().__init__()
        if upsample not in ("nearest", "bilinear"):
            raise ValueError(f"context_upsample must be 'nearest' or 'bilinear', not {upsample!r}")
        self.upsample = upsample
        n_down = max(0, min(n_down, int(math.log2(max(size, 1)))))
        chans = [c_in] + [min(width, c_in * 2**(i + 1)) for i in range(n_down - 1)] + [width]
        layers: list[nn.Module] = []
        for i in range(len(chans) - 1):
            k = 2 if i < n_down else 1
            layers += [conv_block(chans[i], chans[i + 1], k, k), SepConv(chans[i + 1])]
        self.down = nn.Sequential(*layers[:-1])  # no separable block right before attention
        low = max(size // 2**n_down, 1)
        if position not in ("absolute", "relative"):
            raise ValueError(f"context_pos must be 'absolute' or 'relative', not {position!r}")
        self.pos = (nn.Parameter(torch.randn(1, low * low, width) * 0.02)
                    if position == "absolute" else None)
        self.rel = RelativeBias(low, heads) if position == "relative" else None
        self.block = Block(width, heads)
        self.out = nn.Conv2d(width, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-1]
        y = self.down(x)
        b, d, h, w = y.shape
        t = map_tokens(y)
        if self.pos is not None:
            t = self.block(t + self.pos)
        else:
            t = self.block(t, allowed=self.rel().to(t.dtype))
        y = self.out(t.transpose(1, 2).reshape(b, d, h, w))
        if self.upsample == "nearest" and size % h == 0:  # ~5x cheaper than bilinear on CPU
            return y.repeat_interleave(size // h, 2).repeat_interleave(size // w, 3)
        return F.interpolate(y, size=(size, size), mode="bilinear", align_corners=False)


class CNNBackbone(nn.Module):
    """Small CNN from scratch with a global context path.

    The local path patchifies with 2x2 stride-2 convs down to the grid and applies one
    separable block there; the context path (:class:`ContextPath`) reaches ``grid / 4``.
    Their sum (with CoordConv channels if ``coords``) is the feature map.

    Args:
        image_size: S.
        grid: output side.
        dim: output channels.
        width: channels of the local path at the grid.
        context_width: token width of the context path.
        coords: append CoordConv channels (at the input and at the grid).
        context_pos: ``absolute`` or ``relative`` position code of the context attention.
        context_upsample: ``nearest`` or ``bilinear`` upsampling of the context map.
    """

    def __init__(self, image_size: int, grid: int, dim: int, width: int = 32,
                 context_width: int = 128, coords: bool = True,
                 context_pos: str = "absolute", context_upsample: str = "nearest") -> None:
        super().__init__()
        self.grid = grid
        self.coords = coords
        n_down = max(0, int(math.floor(math.log2(image_size / grid))))
        n_in = 5 if coords else 3
        chans = [n_in] + [max(width // 2**(n_down - 1 - i), 8) for i in range(n_down)]
        self.stem = nn.Sequential(*[conv_block(chans[i], chans[i + 1], 2, 2)
                                    for i in range(n_down)])
        self.local = nn.Sequential(conv_block(chans[-1], width, 1), SepConv(width))
        self.context = ContextPath(width, dim, grid, n_down=2, width=context_width,
                                   position=context_pos, upsample=context_upsample)
        self.fuse = nn.Conv2d(width + (2 if coords else 0), dim, 1)
        self.norm = nn.GroupNorm(_groups(dim), dim)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        add = add_coords if self.coords else (lambda t: t)
        x = self.stem(add(rgb - 0.5))
        x = self.local(scale_to_grid(x, self.grid))
        return self.norm(self.fuse(add(x)) + self.context(x))


class DinoBackbone(nn.Module):
    """A local HuggingFace DINOv2 / DINOv3 ViT checkpoint as a feature-map backbone.

    Args:
        path: local folder with ``config.json`` and weights (never downloaded).
        image_size: S.
        grid: output side.
        dim: output channels.
        freeze: keep DINOv2's weights fixed (the 1x1 projection still trains).
        hf_config: the ViT's configuration as a dict (``config.to_dict()``): builds the
            network from it, uninitialised, without reading ``path`` (a checkpoint's state
            dict then supplies the weights).
    """

    def __init__(self, path: str, image_size: int, grid: int, dim: int, freeze: bool,
                 hf_config: dict | None = None) -> None:
        super().__init__()
        try:
            from transformers import AutoConfig, AutoModel
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("the dinov2 / dinov3 backbones need transformers: "
                              "pip install transformers") from e
        if hf_config is not None:
            cfg = dict(hf_config)
            self.dino = AutoModel.from_config(AutoConfig.for_model(cfg.pop("model_type"), **cfg))
        else:
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
                                     width=getattr(c, "cnn_width", 32),
                                     context_width=c.context_width, coords=c.coord_channels,
                                     context_pos=c.context_pos,
                                     context_upsample=c.context_upsample)
        if c.freeze_backbone:
            net.requires_grad_(False)
        return net
    if c.backbone.startswith(("dinov2:", "dinov3:")):
        net = DinoBackbone(c.backbone.split(":", 1)[1], c.image_size, c.grid, c.dim,
                           c.freeze_backbone, hf_config=c.backbone_config)
        if c.backbone_config is None:  # remember it: checkpoints need no folder
            c.backbone_config = net.dino.config.to_dict()
        return net
    raise ValueError(f"unknown backbone {c.backbone!r} (use 'cnn', 'dinov2:<local path>' or "
                     "'dinov3:<local path>')")
