"""Voxel-token Perceiver-IO policies (models B/C of seed 002): absolute or EEF-relative xyz."""

from para_bench.agents.voxel.configuration import VoxelAbsConfig, VoxelConfig, VoxelRelConfig
from para_bench.agents.voxel.modeling import VoxelAbsPolicy, VoxelPolicy, VoxelRelPolicy

__all__ = ["VoxelAbsConfig", "VoxelAbsPolicy", "VoxelConfig", "VoxelPolicy", "VoxelRelConfig",
           "VoxelRelPolicy"]
