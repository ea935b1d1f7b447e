"""AR: autoregressive transformer over patch tokens with EEF-relative position encodings
(model A of seed 002)."""

from para_bench.agents.ar.configuration import ARConfig
from para_bench.agents.ar.modeling import ARPolicy

__all__ = ["ARConfig", "ARPolicy"]
