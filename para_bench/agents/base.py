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
    """

    privileged: bool = False
    depth: bool = False
    image_size: int | None = None
    control: str | None = None
    render_quality: str | None = None


@dataclass(frozen=True)
class AgentFacts:
    """What the runner must know about an agent before any episode runs: what it needs
    from the environment (part of the run's identity) and the scenes it was trained on
    (refused as evaluation scenes).

    Attributes:
        requirements: the agent's :class:`AgentRequirements`.
        train_scene_ids: scene ids of its training data; None when unknown or untrained.
    """

    requirements: AgentRequirements
    train_scene_ids: tuple[str, ...] | None = None


def agent_facts(factory: Any, kwargs: dict[str, Any], agent: Any = None) -> AgentFacts | None:
    """The :class:`AgentFacts` of an agent, without building it where possible.

    Uses ``factory.facts(**kwargs)`` when the factory offers it, else a class's
    ``requirements`` attribute, else the built ``agent`` (None when there is none).
    """
    if hasattr(factory, "facts"):
        return factory.facts(**kwargs)
    if agent is not None:
        ids = getattr(agent, "train_scene_ids", None)
        return AgentFacts(getattr(agent, "requirements", AgentRequirements()),
                          tuple(ids) if ids is not None else None)
    if isinstance(factory, type):
        return AgentFacts(getattr(factory, "requirements", AgentRequirements()))
    return None


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

    @classmethod
    def facts(cls, **kwargs: Any) -> AgentFacts:
        """What the runner needs before building the agent (see :class:`AgentFacts`)."""
        return AgentFacts(cls.requirements)

    def reset(self, task: dict[str, Any], seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> ActionChunk | np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass
