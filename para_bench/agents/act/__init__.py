"""ACT-style global-regression baseline."""

from para_bench.agents.act.configuration import ACTConfig
from para_bench.agents.act.modeling import ACTPolicy

__all__ = ["ACTConfig", "ACTPolicy"]
