"""Executors: who runs the planned episodes, behind one small interface
(:class:`~para_bench.executors.base.Executor`: ``run(items, emit)``) and one retry /
timeout policy (:class:`~para_bench.executors.base.RetryPolicy`).

* :class:`~para_bench.executors.inprocess.InProcessExecutor` -- this process, in order;
* :class:`~para_bench.executors.processes.ProcessExecutor` -- spawned worker processes;
* :class:`~para_bench.executors.ray_actors.RayExecutor` -- Ray actors, local or a cluster.

The runner (:mod:`para_bench.runner`) picks one with :func:`make_executor`; whichever runs,
the calling process stays the only writer of records.
"""

from __future__ import annotations

from typing import Any

from para_bench.executors.base import Executor, RetryPolicy, WorkerJob, importable_name

__all__ = ["Executor", "RetryPolicy", "WorkerJob", "importable_name", "make_executor"]


def make_executor(kind: str, job: WorkerJob, workers: int = 1,
                  policy: RetryPolicy | None = None, address: str | None = None,
                  agent: Any = None, env_factory: Any = None) -> Executor:
    """The executor for a run.

    Args:
        kind: ``local`` (this process, or worker processes when ``workers > 1`` or a timeout
            is set) or ``ray``.
        job: what a worker builds.
        workers: worker processes / actors.
        policy: retries and timeout (default: 2 attempts, no timeout).
        address: Ray cluster address (``kind="ray"``).
        agent: an already built agent, reused by the in-process executor.
        env_factory: the environment factory object (in-process runs accept any callable;
            other executors need ``job.env_factory``, its importable name).

    Raises:
        ValueError: an unknown kind, or an env factory other processes cannot import.
    """
    policy = policy or RetryPolicy()
    remote = kind == "ray" or workers > 1 or policy.episode_timeout is not None
    if remote and env_factory is not None and job.env_factory is None:
        raise ValueError(f"env_factory {env_factory!r} cannot be imported by a worker; use a "
                         "module-level function or class")
    if kind == "ray":
        from para_bench.executors.ray_actors import RayExecutor

        return RayExecutor(job, workers, policy, address)
    if kind != "local":
        raise ValueError(f"unknown executor {kind!r}; choose local or ray")
    if remote:
        from para_bench.executors.processes import ProcessExecutor

        return ProcessExecutor(job, workers, policy)
    from para_bench.executors.inprocess import InProcessExecutor

    return InProcessExecutor(job, agent, env_factory)
