"""The executor interface and the one retry / timeout policy every executor follows.

An executor runs planned episodes and hands each record to ``emit`` in the calling
process, which stays the only writer of the run folder. Its workers each hold an
:class:`~para_bench.evaluation.worker.EpisodeWorker` built from a :class:`WorkerJob`.

Faults of a worker (not of an episode, which its EpisodeWorker records itself):

* a worker that dies (MuJoCo segfault, OOM, kill, lost node) costs only its in-flight
  episode: it is retried in a fresh worker until :attr:`RetryPolicy.max_attempts`, then
  recorded as an error (``fault: "worker"``);
* an episode running longer than :attr:`RetryPolicy.episode_timeout` seconds (its
  reference rollout not counted) has its worker killed and is recorded as an error, never
  retried;
* a worker that cannot build its agent ends the run
  (:class:`~para_bench.errors.StartupError`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from para_bench.evaluation.config import RunConfig
from para_bench.evaluation.worker import error_record
from para_bench.types import EpisodeRecord, EpisodeSpec

Item = tuple[int, EpisodeSpec]  # an episode and its index in the run (for --video N)
Emit = Callable[[EpisodeRecord], None]


@dataclass(frozen=True)
class RetryPolicy:
    """What happens to an episode whose worker is lost.

    Attributes:
        max_attempts: attempts of an episode before it is recorded as an error.
        episode_timeout: seconds before an episode's worker is killed, or None.
    """

    max_attempts: int = 2
    episode_timeout: float | None = None


@dataclass(frozen=True)
class WorkerJob:
    """What a worker needs to build its :class:`~para_bench.evaluation.worker.EpisodeWorker`.

    Attributes:
        config: the run's settings.
        out_dir: the run folder.
        reference_root: reference-trajectory cache folder, or None for the default.
        env_factory: ``module:qualname`` of an environment factory (tests), or None.
    """

    config: RunConfig
    out_dir: Path
    reference_root: str | None = None
    env_factory: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "out_dir": str(self.out_dir),
                "reference_root": self.reference_root, "env_factory": self.env_factory}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WorkerJob:
        return cls(RunConfig.from_dict(d["config"]), Path(d["out_dir"]), d.get("reference_root"),
                   d.get("env_factory"))

    def build(self, agent: Any = None) -> Any:
        """The :class:`~para_bench.evaluation.worker.EpisodeWorker` of this job."""
        from para_bench.evaluation.worker import EpisodeWorker

        factory = load_name(self.env_factory) if self.env_factory else None
        return EpisodeWorker(self.config, self.out_dir, self.reference_root, factory, agent)


class Executor(Protocol):
    """Runs episodes; calls ``emit`` with each record, in the calling process."""

    def run(self, items: list[Item], emit: Emit) -> None: ...


class LostEpisodes:
    """The retry bookkeeping shared by the worker-process and Ray executors."""

    def __init__(self, policy: RetryPolicy, config: RunConfig, emit: Emit) -> None:
        self.policy, self.config, self.emit = policy, config, emit
        self.attempts: dict[str, int] = {}

    def lost(self, spec: EpisodeSpec, reason: str, timed_out: bool = False) -> bool:
        """An episode's worker is gone. Returns True to retry it; otherwise its error record
        has been emitted."""
        n = self.attempts[spec.episode_id] = self.attempts.get(spec.episode_id, 0) + 1
        if not timed_out and n < self.policy.max_attempts:
            return True
        self.emit(error_record(spec, self.config, f"{reason} (attempt {n})", fault="worker"))
        return False


def importable_name(obj: Any) -> str | None:
    """``module:qualname`` under which another process can import ``obj``, or None.

    Args:
        obj: a module-level function or class (e.g. an ``env_factory``).

    Returns:
        The name, or None for lambdas, closures, ``__main__`` objects and the like.
    """
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
    if not module or module == "__main__" or not qualname or "<" in qualname:
        return None
    try:
        found = load_name(f"{module}:{qualname}")
    except (ImportError, AttributeError):
        return None
    return f"{module}:{qualname}" if found is obj else None


def load_name(name: str) -> Any:
    """Imports ``module:qualname``."""
    module, _, qualname = name.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj
