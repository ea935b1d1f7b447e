"""``EpisodeWorker``: one agent, its environments and its reference cache; turns a planned
episode into its :class:`~para_bench.types.EpisodeRecord`.

Every executor (in-process, worker processes, Ray actors) runs episodes through one of
these, so faults are owned the same way everywhere:

===============  ============  ==============================================================
status           fault         cause
===============  ============  ==============================================================
``ok``           None          the episode ran to success or to its step limit
``error``        ``agent``     the agent raised, or returned an invalid action
``error``        ``environment``  the environment could not be built
``error``        ``reset``     the environment refused the episode's reset options
``error``        ``simulator`` the simulator failed mid-episode (the env is rebuilt)
``error``        ``worker``    the worker died or timed out (set by the executor)
``infeasible``   ``scene``     the perturbation cannot be applied to this scene: not a
                               trial, excluded from ``n`` and shown separately
===============  ============  ==============================================================
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from para_bench.agents.base import AgentRequirements
from para_bench.envs.libero_env import InfeasibleScene
from para_bench.errors import StartupError, describe
from para_bench.evaluation.config import RunConfig
from para_bench.evaluation.env_pool import EnvBuildError, EnvPool, effective_settings
from para_bench.evaluation.episode import AgentFault, EpisodeOutcome, run_episode
from para_bench.evaluation.episode_metrics import episode_metrics
from para_bench.evaluation.references import ReferenceCache
from para_bench.types import EpisodeRecord, EpisodeSpec


def checkpoint_sha(path: str | None) -> str | None:
    """sha256 (first 16 hex) of a checkpoint file, or None."""
    if not path:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def build_agent(config: RunConfig) -> Any:
    """The run's agent, or :class:`~para_bench.errors.StartupError` naming the cause."""
    from para_bench.registry import make_agent

    try:
        return make_agent(config.agent, **config.agent_kwargs)
    except Exception as e:  # noqa: BLE001 - any failure to build stops the run
        raise StartupError(f"agent {config.agent!r} could not be built: {describe(e)}") from e


def error_record(spec: EpisodeSpec, config: RunConfig, error: str, fault: str = "worker",
                 status: str = "error") -> EpisodeRecord:
    """The record of an episode that produced no outcome (fault, infeasible scene)."""
    return EpisodeRecord(
        episode_id=spec.episode_id, spec=spec.to_dict(), task=spec.task,
        init_state=spec.init_state, perturbation=spec.perturbation, agent=config.agent,
        status=status, success=False, steps=0, metrics={}, error=error, fault=fault,
        checkpoint=config.agent_kwargs.get("checkpoint"),
    )


class EpisodeWorker:
    """Runs planned episodes for one agent; a context manager that closes what it opened.

    Args:
        config: the run's settings.
        out_dir: the run folder (videos go to ``videos/``).
        reference_root: the reference cache folder (default: ``<out_dir>/../.reference``).
        env_factory: environment factory (tests); None builds ``LiberoEnv``.
        agent: an already built agent to use (in-process runs build it once); None builds one.

    Raises:
        StartupError: the agent could not be built (the message names the cause).
    """

    def __init__(self, config: RunConfig, out_dir: str | Path,
                 reference_root: str | Path | None = None,
                 env_factory: Callable | None = None, agent: Any = None) -> None:
        self.config, self.out_dir = config, Path(out_dir)
        self.agent = agent if agent is not None else build_agent(config)
        self.req: AgentRequirements = getattr(self.agent, "requirements", AgentRequirements())
        self.ckpt = config.agent_kwargs.get("checkpoint")
        self.ckpt_sha = checkpoint_sha(self.ckpt)
        self.pool = EnvPool(config, env_factory)
        self.refs: ReferenceCache | None = None
        if config.coverage and env_factory is None:
            root = Path(reference_root) if reference_root else self.out_dir.parent / ".reference"
            self.refs = ReferenceCache(root, config, lambda: EnvPool(config))
        self._reference: dict[str, np.ndarray | None] = {}

    def prepare(self, spec: EpisodeSpec) -> None:
        """Computes what an episode needs beforehand (its oracle reference), outside the
        episode's timing and timeout."""
        if self.refs is not None and spec.episode_id not in self._reference:
            self._reference = {spec.episode_id: self.refs.get(spec)}

    def run(self, spec: EpisodeSpec, index: int) -> EpisodeRecord:
        """Runs one planned episode with fault isolation; returns its record.

        Args:
            spec: the episode.
            index: its position in the run (``--video N`` films the first N).
        """
        self.prepare(spec)
        frames: list | None = [] if self.config.video != "none" else None
        status, fault, error, out = "ok", None, None, None
        t0 = time.perf_counter()
        try:
            env = self.pool.get(spec, self.req)
            out = run_episode(env, self.agent, spec, frames)
        except AgentFault as e:
            status, fault, error = "error", "agent", str(e)
        except EnvBuildError as e:
            status, fault, error = "error", "environment", str(e)
        except InfeasibleScene as e:
            status, fault, error = "infeasible", "scene", str(e)
        except ValueError as e:  # the env refused the reset options (a suite / spec bug)
            status, fault, error = "error", "reset", f"reset refused: {e}"
        except Exception as e:  # noqa: BLE001 - simulator fault: rebuild the env
            status, fault, error = "error", "simulator", f"simulator {describe(e)}"
            self.pool.discard()
        wall = round(time.perf_counter() - t0, 3)
        record = self._record(spec, status, fault, error, out, wall)
        if frames and _want_video(self.config.video, index, record.success):
            from para_bench.video import write_video

            write_video(frames, self.out_dir / "videos" / f"{spec.episode_id}.mp4")
        return record

    def _record(self, spec: EpisodeSpec, status: str, fault: str | None, error: str | None,
                out: EpisodeOutcome | None, wall: float) -> EpisodeRecord:
        if out is None:
            record = error_record(spec, self.config, error or "", fault or "worker", status)
            record.checkpoint_sha, record.wall_time_s = self.ckpt_sha, wall
            return record
        image_size = effective_settings(self.config, self.req)["image_size"]
        m = episode_metrics(out, self._reference.get(spec.episode_id), image_size)
        m.update({f"spec_{k}": v for k, v in spec.extra.items() if isinstance(v, (int, float))})
        return EpisodeRecord(
            episode_id=spec.episode_id, spec=spec.to_dict(), task=spec.task,
            init_state=spec.init_state, perturbation=spec.perturbation, agent=self.config.agent,
            status=status, success=bool(out.success), steps=int(out.steps), metrics=m,
            checkpoint=self.ckpt, checkpoint_sha=self.ckpt_sha, error=None, fault=None,
            eef_trajectory=np.round(out.traj, 5).tolist(), wall_time_s=wall,
        )

    def __enter__(self) -> EpisodeWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the environments, the reference cache and the agent."""
        self.pool.close()
        if self.refs is not None:
            self.refs.close()
        try:
            self.agent.close()
        except Exception:  # noqa: BLE001 - a failing close must not hide the run's result
            pass


def _want_video(mode: str, index: int, success: bool) -> bool:
    if mode == "all":
        return True
    if mode == "failures":
        return not success
    return mode.isdigit() and index < int(mode)
