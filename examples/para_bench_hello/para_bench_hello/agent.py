"""``hello_lift``: a minimal agent that emits end-effector targets 5 cm above where it is."""

from __future__ import annotations

from typing import Any

import numpy as np

from para_bench.agents.base import AgentRequirements, BaseAgent
from para_bench.types import ActionChunk


class HelloLiftAgent(BaseAgent):
    """Servos the end effector 5 cm above its current position, gripper open."""

    requirements = AgentRequirements(control="servo")

    def act(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> ActionChunk:
        target = np.asarray(obs["eef_pos"]) + [0.0, 0.0, 0.05]
        return ActionChunk.from_targets(np.tile(target, (4, 1)), gripper=-1.0)
