"""Dataset statistics that decoding needs, computed once from the training data and saved
inside every checkpoint.

* heights: world z range of the EEF targets (with a margin), binned into height bins;
* gripper: command range, binned into gripper bins;
* rotation: each EEF orientation ``R`` is written as the world-frame rotation vector
  ``w = log(R @ R_ref^T)`` about a reference orientation ``R_ref`` (the chordal mean of the
  data), and reduced to one number by PCA (seed 001's PCA-1D rotation):
  ``r = (w - mean) . axis``, binned over ``[r_lo, r_hi]``. The explained variance of the
  first component is kept so a user can see how much rotation the 1D code discards.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from para_bench.envs.control import quat_xyzw_to_mat, rotation_error

HEIGHT_MARGIN_M = 0.02


def rotvec_to_mat(w: np.ndarray) -> np.ndarray:
    """Rotation vector (3,) -> 3x3 rotation (Rodrigues)."""
    angle = float(np.linalg.norm(w))
    if angle < 1e-12:
        return np.eye(3)
    k = np.asarray(w, dtype=np.float64) / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * (kx @ kx)


def chordal_mean(mats: np.ndarray) -> np.ndarray:
    """The rotation closest (Frobenius) to the mean of rotation matrices (N, 3, 3)."""
    u, _, vt = np.linalg.svd(np.mean(mats, axis=0))
    r = u @ vt
    if np.linalg.det(r) < 0:
        u[:, -1] *= -1
        r = u @ vt
    return r


@dataclass
class DatasetStats:
    """Ranges and bases for target binning and decoding (see the module docstring)."""

    height_lo: float
    height_hi: float
    gripper_lo: float
    gripper_hi: float
    rot_ref: list  # 3x3
    rot_mean: list  # 3
    rot_axis: list  # 3
    rot_lo: float
    rot_hi: float
    rot_explained_variance: float
    xyz_mean: list  # 3, for models that regress positions
    xyz_std: list  # 3
    n_frames: int

    @classmethod
    def from_arrays(cls, xyz: np.ndarray, quat_xyzw: np.ndarray, gripper: np.ndarray
                    ) -> DatasetStats:
        """Computes the statistics from all target EEF positions (N, 3), orientations (N, 4)
        and gripper commands (N,)."""
        xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
        mats = np.stack([quat_xyzw_to_mat(q) for q in np.asarray(quat_xyzw).reshape(-1, 4)])
        ref = chordal_mean(mats)
        w = np.stack([rotation_error(m, ref) for m in mats])
        mean = w.mean(axis=0)
        centred = w - mean
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        var = s**2
        ev = float(var[0] / var.sum()) if var.sum() > 1e-12 else 1.0
        axis = vt[0]
        proj = centred @ axis
        lo, hi = float(proj.min()), float(proj.max())
        if hi - lo < 1e-3:
            lo, hi = lo - 0.05, hi + 0.05
        g = np.asarray(gripper, dtype=np.float64)
        return cls(
            height_lo=float(xyz[:, 2].min() - HEIGHT_MARGIN_M),
            height_hi=float(xyz[:, 2].max() + HEIGHT_MARGIN_M),
            gripper_lo=float(min(g.min(), -1.0)), gripper_hi=float(max(g.max(), 1.0)),
            rot_ref=ref.tolist(), rot_mean=mean.tolist(), rot_axis=axis.tolist(),
            rot_lo=lo, rot_hi=hi, rot_explained_variance=ev,
            xyz_mean=xyz.mean(axis=0).tolist(), xyz_std=(xyz.std(axis=0) + 1e-3).tolist(),
            n_frames=len(xyz),
        )

    def rotation_code(self, quat_xyzw: np.ndarray) -> np.ndarray:
        """Orientations (N, 4) -> 1D PCA coordinates (N,)."""
        ref = np.asarray(self.rot_ref)
        w = np.stack([rotation_error(quat_xyzw_to_mat(q), ref)
                      for q in np.asarray(quat_xyzw).reshape(-1, 4)])
        return (w - np.asarray(self.rot_mean)) @ np.asarray(self.rot_axis)

    def rotation_from_code(self, code: np.ndarray) -> np.ndarray:
        """1D PCA coordinates (N,) -> quaternions xyzw (N, 4)."""
        from para_bench.envs.camera import mat_to_quat_xyzw

        ref, mean, axis = (np.asarray(a) for a in (self.rot_ref, self.rot_mean, self.rot_axis))
        return np.stack([mat_to_quat_xyzw(rotvec_to_mat(mean + c * axis) @ ref)
                         for c in np.asarray(code, dtype=np.float64).reshape(-1)])

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> DatasetStats:
        return cls(**d)
