"""The ``act`` agent: the global-regression baseline PARA is compared against."""

from para_bench.agents.model_agent import ModelAgent


class ACTAgent(ModelAgent):
    """ACT-style: pooled image descriptor -> transformer decoder -> chunk of EEF targets."""

    model_name = "act"
