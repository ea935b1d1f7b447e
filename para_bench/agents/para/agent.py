"""The ``para`` agent: the pixel-aligned heatmap policy (seed 004) behind a checkpoint."""

from para_bench.agents.model_agent import ModelAgent


class ParaAgent(ModelAgent):
    """PARA: heatmap over pixels x height bins, lifted to 3D with the camera."""

    model_name = "para"
