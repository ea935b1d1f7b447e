"""PARA: pixel-aligned heatmap-volume policy (seed 004's ``TrajectoryHeatmapPredictor``)."""

from para_bench.agents.para.configuration import ParaConfig
from para_bench.agents.para.modeling import ParaPolicy

__all__ = ["ParaConfig", "ParaPolicy"]
