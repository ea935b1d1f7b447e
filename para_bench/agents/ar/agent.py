"""The ``ar`` agent: the autoregressive patch transformer (seed 002, model A)."""

from para_bench.agents.model_agent import ModelAgent


class ARAgent(ModelAgent):
    """AR: causal transformer over patch + EEF tokens, next EEF as a pointer over cells."""

    model_name = "ar"
