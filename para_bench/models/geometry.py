"""Pixel-aligned geometry in torch, with the same conventions as :mod:`para_bench.envs.camera`.

One decode is shared by every model and by training-target construction:

* the prediction grid is ``grid x grid`` cells over an ``image_size`` square image; cell
  ``c = row * grid + col`` covers pixels ``[col * s, (col + 1) * s)`` horizontally with
  ``s = image_size / grid``, its centre at pixel ``u = (col + 0.5) * s - 0.5`` (OpenCV
  pixel centres at integers);
* heights are world z in metres, discretised into ``n_bins`` equal bins over
  ``[lo, hi]`` (bin centres decode);
* ``(u, v, height) -> xyz`` is the point where the pixel's ray meets the plane
  ``z = height`` (:func:`ray_at_height`), the inverse of :func:`project`.
"""

from __future__ import annotations

import torch


def project(xyz: torch.Tensor, intrinsics: torch.Tensor, extrinsics: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """World points (..., N, 3) -> pixels (..., N, 2) (u = column, v = row) and depth (..., N).

    ``intrinsics`` is (..., 3, 3), ``extrinsics`` (..., 4, 4) world -> camera (OpenCV).
    """
    cam = xyz @ extrinsics[..., :3, :3].transpose(-1, -2) + extrinsics[..., None, :3, 3]
    z = cam[..., 2]
    f = torch.stack([intrinsics[..., 0, 0], intrinsics[..., 1, 1]], -1)[..., None, :]
    c = intrinsics[..., None, :2, 2]
    uv = cam[..., :2] / z[..., None].clamp(min=1e-6) * f + c
    return uv, z


def ray_at_height(uv: torch.Tensor, height: torch.Tensor, intrinsics: torch.Tensor,
                  extrinsics: torch.Tensor) -> torch.Tensor:
    """World points (..., N, 3) where pixel rays (..., N, 2) meet ``z = height`` (..., N)."""
    c2w = torch.linalg.inv(extrinsics)
    origin = c2w[..., None, :3, 3]
    f = torch.stack([intrinsics[..., 0, 0], intrinsics[..., 1, 1]], -1)[..., None, :]
    xy = (uv - intrinsics[..., None, :2, 2]) / f
    dirs_cam = torch.cat([xy, torch.ones_like(xy[..., :1])], -1)
    dirs = dirs_cam @ c2w[..., :3, :3].transpose(-1, -2)
    t = (height - origin[..., 2]) / dirs[..., 2]
    return origin + t[..., None] * dirs


def cell_to_uv(cell: torch.Tensor, grid: int, image_size: int) -> torch.Tensor:
    """Cell indices (...) -> pixel coordinates (..., 2) of the cell centres."""
    s = image_size / grid
    row = torch.div(cell, grid, rounding_mode="floor")
    col = cell - row * grid
    return torch.stack([(col + 0.5) * s - 0.5, (row + 0.5) * s - 0.5], -1).to(torch.float32)


def uv_to_cell(uv: torch.Tensor, grid: int, image_size: int) -> torch.Tensor:
    """Pixels (..., 2) -> cell indices (...); pixels outside the image clamp to the border."""
    s = image_size / grid
    col = torch.floor((uv[..., 0] + 0.5) / s).long().clamp(0, grid - 1)
    row = torch.floor((uv[..., 1] + 0.5) / s).long().clamp(0, grid - 1)
    return row * grid + col


def value_to_bin(x: torch.Tensor, lo: float, hi: float, n_bins: int) -> torch.Tensor:
    """Continuous values -> bin indices in ``0..n_bins-1`` (values outside clamp)."""
    t = (x - lo) / max(hi - lo, 1e-8)
    return torch.floor(t * n_bins).long().clamp(0, n_bins - 1)


def bin_to_value(b: torch.Tensor, lo: float, hi: float, n_bins: int) -> torch.Tensor:
    """Bin indices -> bin-centre values."""
    return lo + (b.to(torch.float32) + 0.5) / n_bins * (hi - lo)


def grid_uv(grid: int, image_size: int, device: torch.device | None = None) -> torch.Tensor:
    """Pixel centres of all cells, (grid * grid, 2), in cell order."""
    return cell_to_uv(torch.arange(grid * grid, device=device), grid, image_size)


def voxel_xyz(intrinsics: torch.Tensor, extrinsics: torch.Tensor, grid: int, image_size: int,
              heights: torch.Tensor) -> torch.Tensor:
    """World coordinates of every (cell, height) voxel: (B, grid * grid, n_heights, 3).

    Voxel ``(c, h)`` is where cell ``c``'s centre ray meets ``z = heights[h]``.
    """
    b = intrinsics.shape[0]
    uv = grid_uv(grid, image_size, intrinsics.device)  # (G2, 2)
    n_h = heights.shape[0]
    uv = uv[None, :, None, :].expand(b, -1, n_h, -1).reshape(b, -1, 2)
    h = heights[None, None, :].expand(b, grid * grid, -1).reshape(b, -1)
    return ray_at_height(uv, h, intrinsics, extrinsics).reshape(b, grid * grid, n_h, 3)
