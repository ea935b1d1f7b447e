"""``EnvPool``: one environment per (task, image size, depth, render quality), reused across
episodes and rebuilt after a simulator fault."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from para_bench.agents.base import AgentRequirements
from para_bench.evaluation.config import RunConfig
from para_bench.types import EpisodeSpec


class EnvBuildError(RuntimeError):
    """The environment of an episode could not be constructed."""


def effective_settings(config: RunConfig, req: AgentRequirements) -> dict[str, Any]:
    """The settings an episode really runs with: the run's, where the agent asks for none.

    An explicit ``config.render_quality`` wins over the agent's (a user override); the
    agent's control mode and image size win over the run's defaults.
    """
    return {
        "control": req.control or config.control,
        "image_size": req.image_size or config.image_size,
        "render_quality": config.render_quality or req.render_quality or "fast",
        "depth": bool(req.depth),
    }


class EnvPool:
    """One environment at a time, rebuilt when the episode needs another one.

    Args:
        config: the run's settings.
        env_factory: builds an environment from keyword arguments (default: ``LiberoEnv``).
    """

    def __init__(self, config: RunConfig, env_factory: Callable[..., Any] | None = None) -> None:
        self.config = config
        self.env_factory = env_factory or make_libero_env
        self._key: tuple | None = None
        self._env: Any = None

    def get(self, spec: EpisodeSpec, req: AgentRequirements) -> Any:
        """The environment for an episode of ``spec`` with an agent needing ``req``.

        Raises:
            EnvBuildError: the environment could not be constructed.
        """
        s = effective_settings(self.config, req)
        key = (spec.benchmark, spec.task_id, s["image_size"], s["depth"], s["render_quality"],
               s["control"])
        if key != self._key:
            self.close()
            try:
                self._env = self.env_factory(
                    benchmark=spec.benchmark, task_id=spec.task_id, image_size=s["image_size"],
                    depth=s["depth"], render_quality=s["render_quality"], control=s["control"],
                    zero_rotation=self.config.zero_rotation, max_steps=self.config.max_steps,
                    action_scale=self.config.action_scale,
                )
            except Exception as e:  # noqa: BLE001 - any construction failure is the env's
                raise EnvBuildError(f"environment {spec.task} could not be built: "
                                    f"{type(e).__name__}: {e}") from e
            self._key = key
        return self._env

    def discard(self) -> None:
        """Drops the current environment (after a simulator fault)."""
        try:
            self.close()
        except Exception:  # noqa: BLE001 - a broken simulator may fail to close
            self._env, self._key = None, None

    def close(self) -> None:
        if self._env is not None:
            env, self._env, self._key = self._env, None, None
            env.close()


def make_libero_env(**kwargs: Any) -> Any:
    """The default environment factory: a :class:`~para_bench.envs.libero_env.LiberoEnv`."""
    from para_bench.envs.libero_env import LiberoEnv

    return LiberoEnv(**kwargs)
