"""Image augmentation for training, the same for every policy.

As the visuomotor literature does it: a random shift (DrQ: pad by ``shift`` pixels with
the border's colours, crop back to the image size at a random offset; Diffusion Policy's
random crop is the same translation) and a mild colour jitter (brightness, contrast,
saturation factors drawn uniformly from ``[1 - x, 1 + x]``). A sample's history frames get
the same shift and jitter as its current frame.

A shift moves the image content by ``(du, dv)`` pixels, so every pixel-space field moves
with it: the principal point of ``intrinsics`` and the ``eef_uv``, ``target_uv`` and
``history_uv`` pixels (PARA lifts pixels to 3D with K: the shifted K lifts the shifted
pixel to the same world point). World-space fields do not change.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from para_bench.models.sample import rgb_to_float

UV_KEYS = ("eef_uv", "target_uv", "history_uv")


@dataclass(frozen=True)
class Augment:
    """Augmentation strengths.

    Attributes:
        shift: largest shift in pixels (each axis, uniform integers in ``[-shift, shift]``).
        brightness: multiplicative brightness jitter.
        contrast: contrast jitter (about each image's mean grey).
        saturation: saturation jitter (about each pixel's grey).
    """

    shift: int = 0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0

    @property
    def active(self) -> bool:
        return bool(self.shift or self.brightness or self.contrast or self.saturation)


def _factor(n: int, x: float, gen: torch.Generator | None) -> torch.Tensor:
    return 1.0 + (torch.rand(n, generator=gen) * 2 - 1) * x


def shift_images(rgb: torch.Tensor, du: torch.Tensor, dv: torch.Tensor, pad: int
                 ) -> torch.Tensor:
    """Moves each image's content by integer ``(du[i], dv[i])`` pixels (right, down),
    filling with the border (replicate padding): ``rgb`` (B, ..., 3, S, S), any dtype.

    One gather with clamped source indices (the same pixels as padding by ``pad`` and
    cropping, without building the padded images); ``pad`` bounds the shifts."""
    shape = rgb.shape
    b, s = shape[0], shape[-1]
    if bool((du.abs() > pad).any() or (dv.abs() > pad).any()):
        raise ValueError(f"shift larger than pad={pad}")
    pix = torch.arange(s, device=rgb.device)
    du, dv = du.to(rgb.device).long(), dv.to(rgb.device).long()
    rows = (pix[None] - dv[:, None]).clamp(0, s - 1)  # (B, S) source row per output row
    cols = (pix[None] - du[:, None]).clamp(0, s - 1)
    src = (rows[:, :, None] * s + cols[:, None, :]).view(b, 1, s * s)
    x = rgb.reshape(b, -1, s * s)
    return x.gather(2, src.expand(-1, x.shape[1], -1)).reshape(shape)


def _jitter(x: torch.Tensor, bright: torch.Tensor, contrast: torch.Tensor,
            sat: torch.Tensor) -> torch.Tensor:
    """Colour jitter of float images (B, ..., 3, S, S) with per-sample factors (B,)."""
    view = (-1,) + (1,) * (x.dim() - 1)
    x = x * bright.view(view)
    grey = (0.299 * x[..., 0:1, :, :] + 0.587 * x[..., 1:2, :, :] + 0.114 * x[..., 2:3, :, :])
    x = grey + (x - grey) * sat.view(view)
    mean = grey.mean(dim=(-1, -2, -3), keepdim=True)
    x = mean + (x - mean) * contrast.view(view)
    return x.clamp(0.0, 1.0)


def augment_batch(b: dict[str, torch.Tensor], aug: Augment,
                  gen: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Augments a batch whose images are still ``uint8`` (returns float images in [0, 1])."""
    n = b["rgb"].shape[0]
    keys = [k for k in ("rgb", "history_rgb") if k in b]
    if aug.shift:
        du = torch.randint(-aug.shift, aug.shift + 1, (n,), generator=gen)
        dv = torch.randint(-aug.shift, aug.shift + 1, (n,), generator=gen)
        for k in keys:
            b[k] = shift_images(b[k], du, dv, aug.shift)
        d = torch.stack([du, dv], -1).to(torch.float32)
        k_mat = b["intrinsics"].clone()
        k_mat[:, :2, 2] += d
        b["intrinsics"] = k_mat
        for k in UV_KEYS:
            if k in b:
                b[k] = b[k] + d.view(n, *([1] * (b[k].dim() - 2)), 2)
    for k in keys:
        b[k] = rgb_to_float(b[k])
    if aug.brightness or aug.contrast or aug.saturation:
        f = [_factor(n, x, gen) for x in (aug.brightness, aug.contrast, aug.saturation)]
        for k in keys:
            b[k] = _jitter(b[k], *f)
    return b
