"""``RunConfig``: everything about a run that is not the plan."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RunConfig:
    """Everything about a run that is not the plan.

    Attributes:
        agent: registry name (or ``module:factory``) of the agent.
        agent_kwargs: keyword arguments for the agent factory (e.g. ``checkpoint``).
        control: default control mode (an agent may ask for its own; the run's identity
            records the mode that applies).
        zero_rotation, max_steps, action_scale: see :class:`~para_bench.envs.control.ControlConfig`.
        image_size: agent-view image side (an agent may ask for its own).
        render_quality: ``fast`` or ``libero``; None uses the agent's (a checkpoint knows the
            quality of its training images), else ``fast``.
        coverage: compute free-space coverage against the oracle's reference trajectory.
        video: ``none``, ``all``, ``failures``, or an integer N (first N episodes).
        allow_train_scenes: evaluate on scenes the checkpoint was trained on (refused
            otherwise); the records say so.
    """

    agent: str
    agent_kwargs: dict[str, Any] = field(default_factory=dict)
    control: str = "servo"
    zero_rotation: bool = False
    max_steps: int = 600
    action_scale: float = 1.0
    image_size: int = 128
    render_quality: str | None = None
    coverage: bool = True
    video: str = "none"
    allow_train_scenes: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        return cls(**d)
