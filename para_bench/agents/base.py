"""The ``Agent`` interface every policy implements, and what an agent may declare it needs.

An agent never sees the simulator: it receives the observation dict and an ``info`` dict
(instruction, task; privileged object poses and goal only if it declares
``privileged=True``) and returns an action: a plain (7,) / (K, 7) array of LIBERO deltas,
or an :class:`~para_bench.types.ActionChunk`. The runner executes it through the one
control path (:mod:`para_bench.envs.control`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from para_bench.types import ActionChunk

PRIVILEGED_INFO_KEYS = ("object_poses", "object_extents", "goal")


@dataclass(frozen=True)
class AgentRequirements:
    """What an agent needs from the environment.

    Attributes:
        privileged: receives ``info["object_poses"]`` and ``info["goal"]`` (the oracle).
        depth: needs ``obs["depth"]``.
        image_size: image side the agent expects (None: the run's default).
        control: the control mode its chunks are meant for (None: the run's choice).
        render_quality: ``"fast"`` or ``"libero"`` (images like LIBERO's own data).
        wrist: also needs ``obs["wrist_rgb"]``, the wrist camera (rendered only if asked).
    """

    privileged: bool = False
    depth: bool = False
    image_size: int | None = None
    control: str | None = None
    render_quality: str | None = None
    wrist: bool = False


@runtime_checkable
class Agent(Protocol):
    """A policy under evaluation.

    Attributes:
        name: registry name (set by the registry when created through it).
        requirements: :class:`AgentRequirements`.
    """

    requirements: AgentRequirements

    def reset(self, task: dict[str, Any], seed: int) -> None:
        """Starts an episode. ``task`` has ``task`` (``benchmark/id``) and ``instruction``."""

    def act(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> ActionChunk | np.ndarray:
        """Returns the next chunk of actions."""

    def close(self) -> None:
        """Releases resources."""


class BaseAgent:
    """Convenience base class: no requirements, no-op ``reset`` / ``close``."""

    requirements = AgentRequirements()
    checkpoint: str | None = None

    def reset(self, task: dict[str, Any], seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> ActionChunk | np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass
