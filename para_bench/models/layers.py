"""Small building blocks shared by the policy networks: encodings, attention, gathers, decode.

Attention masks here follow :func:`torch.nn.functional.scaled_dot_product_attention`: a bool
mask is ``True`` where a query **may** attend to a key.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

#: ``gripper_state`` is a finger opening in metres (0 .. ~0.08); this brings it to ~[0, 2].
GRIPPER_STATE_SCALE = 25.0


def sinusoidal(pos: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Fixed transformer sin/cos encoding of (fractional) positions: (...) -> (..., dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=pos.device) / half)
    ang = pos.to(torch.float32)[..., None] * freqs
    out = torch.cat([torch.sin(ang), torch.cos(ang)], -1)
    return F.pad(out, (0, dim - 2 * half))


def fourier_features(x: torch.Tensor, n_freqs: int, max_wavelength: float,
                     min_wavelength: float) -> torch.Tensor:
    """Sin/cos of coordinates at geometric wavelengths: (..., C) -> (..., C * 2 * n_freqs)."""
    if n_freqs == 1:
        wl = torch.tensor([max_wavelength], device=x.device)
    else:
        wl = torch.logspace(math.log10(max_wavelength), math.log10(min_wavelength), n_freqs,
                            device=x.device)
    ang = (2 * math.pi) * x[..., None] / wl  # (..., C, F)
    return torch.cat([torch.sin(ang), torch.cos(ang)], -1).flatten(-2)


class FourierEmbed(nn.Module):
    """Learned linear map of the Fourier features of continuous coordinates.

    Args:
        in_ch: number of coordinates C.
        dim: output width.
        n_freqs: frequencies per coordinate.
        max_wavelength: longest wavelength (in the coordinates' units).
        min_wavelength: shortest wavelength.
        bias: give the linear map a bias (leave it out where a constant shift is
            meaningless, e.g. keys of a softmax over positions).
    """

    def __init__(self, in_ch: int, dim: int, n_freqs: int = 8, max_wavelength: float = 4.0,
                 min_wavelength: float = 0.03, bias: bool = True) -> None:
        super().__init__()
        self.n_freqs, self.max_wl, self.min_wl = n_freqs, max_wavelength, min_wavelength
        self.proj = nn.Linear(in_ch * 2 * n_freqs, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(fourier_features(x, self.n_freqs, self.max_wl, self.min_wl))


def mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Two-layer perceptron with GELU."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))


class Attention(nn.Module):
    """Multi-head attention (self or cross) on ``scaled_dot_product_attention``.

    Args:
        dim: token width.
        heads: number of heads.
        own_kv: whether the layer projects keys/values itself; without, the caller passes
            precomputed ``kv`` (shared by several layers, e.g. a large Perceiver input).
    """

    def __init__(self, dim: int, heads: int, own_kv: bool = True) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim) if own_kv else None
        self.out = nn.Linear(dim, dim)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor | None = None,
                allowed: torch.Tensor | None = None,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Attends from ``x`` (B, N, D) to ``ctx`` (B, M, D) (default ``x``) or to ``kv``
        (two (B, heads, M, D / heads) tensors); ``allowed`` (N, M) bool."""
        if kv is None:
            assert self.kv is not None, "this layer needs precomputed kv"
            k, v = self.kv(x if ctx is None else ctx).chunk(2, -1)
            kv = self.split(k), self.split(v)
        o = F.scaled_dot_product_attention(self.split(self.q(x)), kv[0], kv[1],
                                           attn_mask=allowed)
        return self.out(o.transpose(1, 2).flatten(2))


class Block(nn.Module):
    """Pre-norm transformer block: self-attention, optional cross-attention, MLP.

    Args:
        dim: token width.
        heads: attention heads.
        cross: add a cross-attention sub-layer.
        cross_own_kv: the cross-attention projects its memory itself (else pass ``kv``).
        mlp_ratio: hidden width of the MLP over ``dim``.
    """

    def __init__(self, dim: int, heads: int, cross: bool = False, cross_own_kv: bool = True,
                 mlp_ratio: int = 2) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.cross = Attention(dim, heads, own_kv=cross_own_kv) if cross else None
        self.norm_c = nn.LayerNorm(dim) if cross else None
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = mlp(dim, mlp_ratio * dim, dim)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor | None = None,
                memory: torch.Tensor | None = None,
                kv: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, allowed=allowed)
        if self.cross is not None:
            x = x + self.cross(self.norm_c(x), ctx=memory, kv=kv)
        return x + self.mlp(self.norm2(x))


def causal_allowed(n: int, device: torch.device | None = None) -> torch.Tensor:
    """(n, n) bool mask, ``True`` on and below the diagonal."""
    return torch.ones(n, n, dtype=torch.bool, device=device).tril()


def map_tokens(fmap: torch.Tensor) -> torch.Tensor:
    """Feature map (B, D, H, W) -> tokens (B, H * W, D) in cell order (row major)."""
    return fmap.flatten(2).transpose(1, 2)


def gather_tokens(tokens: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Tokens (B, N, D) at indices (B, W) -> (B, W, D)."""
    return torch.gather(tokens, 1, idx[..., None].expand(-1, -1, tokens.shape[-1]))


def scale_to_grid(fmap: torch.Tensor, size: int) -> torch.Tensor:
    """Average-pools (or bilinearly resizes up) a feature map to ``size x size``."""
    if fmap.shape[-1] == size and fmap.shape[-2] == size:
        return fmap
    if fmap.shape[-1] > size:
        return F.adaptive_avg_pool2d(fmap, size)
    return F.interpolate(fmap, size=(size, size), mode="bilinear", align_corners=False)


def neighbourhood_soft_argmax(logits: torch.Tensor, coords: torch.Tensor,
                              radius: int = 1) -> torch.Tensor:
    """Sub-cell decode: softmax-weighted mean of coordinates around each argmax.

    Args:
        logits: (N, *dims) scores over a grid of any rank.
        coords: (N, *dims, C) or (*dims, C) coordinates of the grid entries.
        radius: half-size of the neighbourhood (1 = 3 x 3 (x 3 ...)).

    Returns:
        (N, C) coordinates: the argmax entry's, pulled toward its likely neighbours.
    """
    n, dims = logits.shape[0], logits.shape[1:]
    flat = logits.reshape(n, -1)
    if coords.dim() == len(dims) + 1:
        coords = coords.expand(n, *coords.shape)
    coords = coords.reshape(n, flat.shape[1], -1)
    best = flat.argmax(-1)
    # unravel the argmax
    idx, rem = [], best
    for d in reversed(dims):
        idx.append(rem % d)
        rem = torch.div(rem, d, rounding_mode="floor")
    idx = idx[::-1]
    offsets = torch.tensor(list(itertools.product(range(-radius, radius + 1),
                                                  repeat=len(dims))), device=logits.device)
    nb = torch.stack(idx, -1)[:, None, :] + offsets[None]  # (N, K, R)
    size = torch.tensor(dims, device=logits.device)
    valid = ((nb >= 0) & (nb < size)).all(-1)
    nb = torch.minimum(nb.clamp(min=0), size - 1)
    strides = torch.tensor([math.prod(dims[i + 1:]) for i in range(len(dims))],
                           device=logits.device)
    lin = (nb * strides).sum(-1)  # (N, K)
    w = torch.gather(flat, 1, lin).masked_fill(~valid, float("-inf")).softmax(-1)
    pts = torch.gather(coords, 1, lin[..., None].expand(-1, -1, coords.shape[-1]))
    return (w[..., None] * pts).sum(1)


def ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the last axis of (..., K) logits with (...) long targets."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1))


def accuracy(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Top-1 accuracy over the last axis."""
    return (logits.argmax(-1) == target).float().mean().item()
