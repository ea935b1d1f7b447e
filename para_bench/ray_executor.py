"""Episodes as Ray actor tasks, one writer of records.

The same plan as the local pool (:mod:`para_bench.parallel`), run by ``workers`` Ray
actors on an existing cluster (``ray.init(address=...)``, e.g. ``auto``) or on a local
Ray instance. Each actor holds its own :class:`~para_bench.runner.EpisodeExecutor`
(simulator, agent, reference cache) and runs one episode per call; the records come back
to this process, which hands them to ``emit`` and so stays the only writer. Episodes go
to whichever actor is free, so a slow node never holds up a fixed shard.

An actor that dies (MuJoCo segfault, OOM, lost node) costs only its in-flight episode:
that episode is retried once in a fresh actor (``MAX_ATTEMPTS`` in all), then recorded as
an error; an episode over ``episode_timeout`` seconds has its actor killed and is
recorded as an error. Actors run with this process's ``MUJOCO_GL`` and one llvmpipe render
thread, like local workers (``runtime_env``);
para-bench must be installed on every node, and videos and reference trajectories are
written by the actors to the same paths on their node (a shared filesystem on a
multi-node cluster). Ray's own logs stay out of the terminal (``log_to_driver=False``,
no dashboard); actor output lands in Ray's session logs (``/tmp/ray/session_latest``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from para_bench.errors import StartupError
from para_bench.types import EpisodeRecord, EpisodeSpec

MAX_ATTEMPTS = 2
INSTALL_HINT = "ray is not installed; install with pip install 'para-bench[ray]'"


def ray_available() -> bool:
    """Whether ``import ray`` would work (without importing it)."""
    from importlib.util import find_spec

    return find_spec("ray") is not None


class EpisodeActor:
    """One Ray actor: its own simulator and agent, one episode per :meth:`run` call."""

    def __init__(self, config: dict, out_dir: str, reference_root: str | None,
                 env_factory: Callable | None) -> None:
        from para_bench.runner import EpisodeExecutor, RunConfig

        os.environ.setdefault("MUJOCO_GL", "egl")
        self.executor = EpisodeExecutor(RunConfig(**config), Path(out_dir), reference_root,
                                        env_factory)

    def ready(self) -> bool:
        """Returns once the agent and executor are built."""
        return True

    def run(self, spec: dict, index: int) -> str:
        """Runs one episode; returns its record as JSON."""
        return self.executor.run(EpisodeSpec.from_dict(spec), index).to_json()

    def close(self) -> None:
        """Closes the environments, reference cache and agent."""
        self.executor.__exit__(None, None, None)


@dataclass
class _Slot:
    """One actor and what it is doing: starting (``spec is None``) or running an episode."""

    actor: Any
    ref: Any
    spec: EpisodeSpec | None = None
    index: int = 0
    started_at: float = 0.0


def run_in_ray(todo: list[EpisodeSpec], config: Any, out_dir: Path,
               emit: Callable[[EpisodeRecord], None], workers: int,
               episode_timeout: float | None, reference_root: str | Path | None,
               address: str | None = None, env_factory: Callable | None = None) -> None:
    """Runs ``todo`` on ``workers`` Ray actors; calls ``emit`` with each record, here.

    Args:
        todo: episodes to run; episode ``i`` gets video index ``i`` as in-process runs do.
        config: the run's :class:`~para_bench.runner.RunConfig`.
        out_dir: the run folder (videos are written there by the actors).
        emit: called in this process with every record, in completion order.
        workers: number of actors (one CPU each).
        episode_timeout: seconds before an episode's actor is killed, or None.
        reference_root: reference-trajectory cache folder, or None for the default.
        address: Ray cluster address (``auto``, ``ray://host:10001``, ...); None starts a
            local instance unless Ray is already initialised in this process.
        env_factory: environment factory for the actors (tests); must be picklable.

    Raises:
        StartupError: if an actor cannot even be built (e.g. the agent fails to load);
            a :class:`RuntimeError`.
    """
    import ray

    from para_bench.runner import error_record

    started_here = _init_ray(address, workers)
    remote_cls = ray.remote(num_cpus=1, max_restarts=0)(EpisodeActor)
    from para_bench.parallel import worker_environment

    env_vars = {k: v for k, v in worker_environment().items()
                if k in ("MUJOCO_GL", "LP_NUM_THREADS")}
    options = {"runtime_env": {"env_vars": env_vars}}
    args = (asdict(config), str(out_dir), str(reference_root) if reference_root else None,
            env_factory)
    queue = list(enumerate(todo))
    attempts: dict[str, int] = {}
    slots: list[_Slot] = []
    closing: list[tuple[Any, Any]] = []  # idle actors closing their simulator and agent

    def start_actor() -> None:
        actor = remote_cls.options(**options).remote(*args)
        slots.append(_Slot(actor, actor.ready.remote()))

    def assign(slot: _Slot) -> None:
        if not queue:
            slots.remove(slot)
            closing.append((slot.actor, slot.actor.close.remote()))
            return
        slot.index, slot.spec = queue.pop(0)
        slot.ref = slot.actor.run.remote(slot.spec.to_dict(), slot.index)
        slot.started_at = time.monotonic()

    def lose(slot: _Slot, reason: str, retry: bool) -> None:
        """The slot's actor is gone: retry or record its episode, start a replacement."""
        slots.remove(slot)
        ray.kill(slot.actor, no_restart=True)
        spec = slot.spec
        n = attempts[spec.episode_id] = attempts.get(spec.episode_id, 0) + 1
        if retry and n < MAX_ATTEMPTS:
            queue.insert(0, (slot.index, spec))
        else:
            emit(error_record(spec, config, f"ray actor {reason} (attempt {n})"))
        if queue:
            start_actor()

    for _ in range(min(workers, len(todo))):
        start_actor()
    try:
        while slots:
            by_ref = {s.ref: s for s in slots}
            ready, _ = ray.wait(list(by_ref), num_returns=1, timeout=1.0)
            for ref in ready:
                slot = by_ref[ref]
                try:
                    value = ray.get(ref)
                except ray.exceptions.RayError as e:
                    if slot.spec is None:
                        raise StartupError(f"a Ray actor could not start: {_reason(e)}") from e
                    died = isinstance(e, ray.exceptions.RayActorError)
                    lose(slot, "died" if died else f"failed ({_reason(e)})", retry=True)
                    continue
                if slot.spec is not None:
                    emit(EpisodeRecord.from_dict(json.loads(value)))
                assign(slot)
            if episode_timeout:
                now = time.monotonic()
                for slot in [s for s in slots if s.spec is not None]:
                    if now - slot.started_at > episode_timeout:
                        lose(slot, f"timed out after {episode_timeout:g} s", retry=False)
    finally:
        if closing:
            ray.wait([ref for _, ref in closing], num_returns=len(closing), timeout=30)
        for actor in [a for a, _ in closing] + [s.actor for s in slots]:
            ray.kill(actor, no_restart=True)
        if started_here:
            ray.shutdown()


def _init_ray(address: str | None, workers: int) -> bool:
    """Connects to ``address`` or starts a quiet local instance; True if started here."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False,
                              "logging_level": logging.ERROR}
    if address:
        kwargs["address"] = address
    else:  # a local instance: enough CPU slots for every actor
        kwargs["num_cpus"] = max(workers, os.cpu_count() or 1)
    ray.init(**kwargs)
    return True


def _reason(error: Exception) -> str:
    """The gist of a Ray error: its innermost ``SomeError: message`` line, else its first."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", x).strip() for x in str(error).splitlines()]
    lines = [x for x in lines if x]
    causes = [x for x in lines if re.match(r"^[\w.]+(Error|Exception)\b.*:", x)]
    return (causes or lines or [type(error).__name__])[-1 if causes else 0]
