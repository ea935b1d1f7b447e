"""Episodes as Ray actor tasks, one writer of records.

The same plan as the worker processes (:mod:`para_bench.executors.processes`), run by
``workers`` Ray actors on an existing cluster (``ray.init(address=...)``, e.g. ``auto``) or
on a local Ray instance. Each actor holds its own
:class:`~para_bench.evaluation.worker.EpisodeWorker` (simulator, agent, reference cache)
and runs one episode per call pair (``prepare``, then ``run``: the timeout clock starts
with ``run``); the records come back to this process, which hands them to ``emit`` and so
stays the only writer. Episodes go to whichever actor is free, so a slow node never holds
up a fixed shard. Faults follow :mod:`para_bench.executors.base`.

Actors run with this process's ``MUJOCO_GL`` and one llvmpipe render thread, like local
workers (``runtime_env``); para-bench must be installed on every node, and videos and
reference trajectories are written by the actors to the same paths on their node (a
shared filesystem on a multi-node cluster). Ray's own logs stay out of the terminal
(``log_to_driver=False``, no dashboard); actor output lands in Ray's session logs
(``/tmp/ray/session_latest``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from typing import Any

from para_bench.errors import StartupError
from para_bench.executors.base import Emit, Item, LostEpisodes, RetryPolicy, WorkerJob
from para_bench.types import EpisodeRecord, EpisodeSpec

INSTALL_HINT = "ray is not installed; install with pip install 'para-bench[ray]'"


def ray_available() -> bool:
    """Whether ``import ray`` would work (without importing it)."""
    from importlib.util import find_spec

    return find_spec("ray") is not None


class EpisodeActor:
    """One Ray actor: its own simulator and agent."""

    def __init__(self, job: dict) -> None:
        os.environ.setdefault("MUJOCO_GL", "egl")
        self.worker = WorkerJob.from_dict(job).build()

    def ready(self) -> bool:
        """Returns once the agent and worker are built."""
        return True

    def prepare(self, spec: dict) -> bool:
        """Computes the episode's reference rollout (not timed)."""
        self.worker.prepare(EpisodeSpec.from_dict(spec))
        return True

    def run(self, spec: dict, index: int) -> str:
        """Runs one episode; returns its record as JSON."""
        return self.worker.run(EpisodeSpec.from_dict(spec), index).to_json()

    def close(self) -> None:
        """Closes the environments, reference cache and agent."""
        self.worker.close()


@dataclass
class _Slot:
    """One actor and what it is doing: starting, preparing or running an episode."""

    actor: Any
    ref: Any
    phase: str = "starting"  # starting | preparing | running
    spec: EpisodeSpec | None = None
    index: int = 0
    started_at: float = 0.0


class RayExecutor:
    """Runs episodes on ``workers`` Ray actors (see the module docstring).

    Args:
        job: what each actor builds (its environment factory must be importable by name).
        workers: number of actors (one CPU each).
        policy: retries and timeout.
        address: Ray cluster address (``auto``, ``ray://host:10001``, ...); None starts a
            local instance unless Ray is already initialised in this process.
    """

    def __init__(self, job: WorkerJob, workers: int, policy: RetryPolicy,
                 address: str | None = None) -> None:
        self.job, self.workers, self.policy, self.address = job, workers, policy, address

    def run(self, items: list[Item], emit: Emit) -> None:
        """Runs ``items``; ``emit`` gets every record in this process.

        Raises:
            StartupError: an actor could not even be built (e.g. the agent fails to load).
        """
        import ray

        from para_bench.executors.processes import worker_environment

        started_here = _init_ray(self.address, self.workers)
        remote_cls = ray.remote(num_cpus=1, max_restarts=0)(EpisodeActor)
        env_vars = {k: v for k, v in worker_environment().items()
                    if k in ("MUJOCO_GL", "LP_NUM_THREADS")}
        options = {"runtime_env": {"env_vars": env_vars}}
        job = self.job.to_dict()
        queue = list(items)
        book = LostEpisodes(self.policy, self.job.config, emit)
        slots: list[_Slot] = []
        closing: list[tuple[Any, Any]] = []  # idle actors closing their simulator and agent

        def start_actor() -> None:
            actor = remote_cls.options(**options).remote(job)
            slots.append(_Slot(actor, actor.ready.remote()))

        def assign(slot: _Slot) -> None:
            if not queue:
                slots.remove(slot)
                closing.append((slot.actor, slot.actor.close.remote()))
                return
            slot.index, slot.spec = queue.pop(0)
            slot.phase, slot.ref = "preparing", slot.actor.prepare.remote(slot.spec.to_dict())

        def lose(slot: _Slot, reason: str, timed_out: bool) -> None:
            slots.remove(slot)
            ray.kill(slot.actor, no_restart=True)
            if book.lost(slot.spec, f"ray actor {reason}", timed_out):
                queue.insert(0, (slot.index, slot.spec))
            if queue:
                start_actor()

        for _ in range(min(self.workers, len(items))):
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
                        if slot.phase == "starting":
                            raise StartupError(
                                f"a Ray actor could not start: {_reason(e)}") from e
                        died = isinstance(e, ray.exceptions.RayActorError)
                        lose(slot, "died" if died else f"failed ({_reason(e)})", False)
                        continue
                    if slot.phase == "preparing":
                        slot.phase, slot.started_at = "running", time.monotonic()
                        slot.ref = slot.actor.run.remote(slot.spec.to_dict(), slot.index)
                        continue
                    if slot.phase == "running":
                        emit(EpisodeRecord.from_dict(json.loads(value)))
                    assign(slot)
                timeout = self.policy.episode_timeout
                if timeout:
                    now = time.monotonic()
                    for slot in [s for s in slots if s.phase == "running"]:
                        if now - slot.started_at > timeout:
                            lose(slot, f"timed out after {timeout:g} s", True)
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
