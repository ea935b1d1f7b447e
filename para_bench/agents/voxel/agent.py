"""The ``voxel_abs`` and ``voxel_rel`` agents: voxel-token Perceiver policies (seed 002, B/C)."""

from para_bench.agents.model_agent import ModelAgent


class VoxelAbsAgent(ModelAgent):
    """Voxel tokens with absolute world-xyz encodings, EEF queries cross-attending to them."""

    model_name = "voxel_abs"


class VoxelRelAgent(ModelAgent):
    """Voxel tokens with xyz relative to the episode-start EEF (translation equivariant)."""

    model_name = "voxel_rel"
