"""Episodes one after another in this process (no timeout: a hung episode hangs the run;
use worker processes for ``--episode-timeout``)."""

from __future__ import annotations

from typing import Any

from para_bench.executors.base import Emit, Item, WorkerJob


class InProcessExecutor:
    """Runs every episode in this process with one EpisodeWorker.

    Args:
        job: what the worker needs.
        agent: an already built agent to reuse (the runner builds one to read its identity).
        env_factory: an environment factory object (tests may pass closures here).
    """

    def __init__(self, job: WorkerJob, agent: Any = None, env_factory: Any = None) -> None:
        self.job, self.agent, self.env_factory = job, agent, env_factory

    def run(self, items: list[Item], emit: Emit) -> None:
        from para_bench.evaluation.worker import EpisodeWorker

        with EpisodeWorker(self.job.config, self.job.out_dir, self.job.reference_root,
                           self.env_factory, self.agent) as worker:
            for index, spec in items:
                emit(worker.run(spec, index))
