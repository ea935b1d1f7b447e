"""Trivial baselines: ``noop`` (stands still) and ``random`` (uniform LIBERO deltas)."""

from __future__ import annotations

from typing import Any

import numpy as np

from para_bench.agents.base import BaseAgent
from para_bench.registry import register_agent


@register_agent("noop", description="holds still (zero deltas, gripper open)")
class NoopAgent(BaseAgent):
    """Returns zero deltas with the gripper open, in chunks of ``chunk`` steps."""

    def __init__(self, chunk: int = 10) -> None:
        self.chunk = chunk

    def act(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        a = np.zeros((self.chunk, 7))
        a[:, 6] = -1.0
        return a


@register_agent("random", description="uniform random LIBERO deltas (seeded per episode)")
class RandomAgent(BaseAgent):
    """Uniform random deltas in [-1, 1] (seeded by the episode seed)."""

    def __init__(self, chunk: int = 5) -> None:
        self.chunk = chunk

    def act(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, size=(self.chunk, 7))
