"""A slow fake run to be killed: ``python -m tests.crash_run OUT [options]``.

Used by ``test_crash_resume.py``: it runs :func:`plan` with :class:`SlowAgent` on the fake
environment through :func:`para_bench.runner.run_plan` (in this process, or in worker
processes with ``--workers 2``), slowly enough that a ``SIGKILL`` from the test lands
mid-run. ``--tear-at K`` makes the K-th record of this process a torn write: half the
line reaches the disk, then the process SIGKILLs itself; ``--delay S`` sets the seconds
slept per ``act`` call.
"""

from __future__ import annotations

import argparse
import os
import signal
import time

import numpy as np

from para_bench.results.store import RunStore
from para_bench.runner import RunConfig, run_plan
from para_bench.suites import get_suite
from para_bench.types import EpisodeRecord, EpisodeSpec
from tests.fake_env import make_env

AGENT = "tests.crash_run:SlowAgent"
STEP_DELAY_S = 0.02  # per act() call; an episode makes 2 to 8 calls


def plan() -> list[EpisodeSpec]:
    """The plan every test run uses: in_dist test split (50 episodes)."""
    return get_suite("in_dist").plan("test")


def config(delay: float = STEP_DELAY_S) -> RunConfig:
    """The run config; ``delay`` seconds per ``act`` call (not part of the plan hash)."""
    return RunConfig(agent=AGENT, agent_kwargs={"delay": delay}, coverage=False, max_steps=40)


class SlowAgent:
    """Moves +x at a seeded random speed (fails on some seeds), sleeping in every ``act``.

    Args:
        delay: seconds slept per ``act`` call.
    """

    def __init__(self, delay: float = STEP_DELAY_S) -> None:
        self.delay = delay

    def reset(self, task: dict, seed: int) -> None:
        self.speed = np.random.default_rng(seed).uniform(0.0, 0.2)

    def act(self, obs: dict, info: dict) -> np.ndarray:
        time.sleep(self.delay)
        return np.tile([self.speed, 0, 0, 0, 0, 0, -1], (5, 1))

    def close(self) -> None:
        pass


def tear_record(k: int) -> None:
    """Makes this process's ``k``-th appended record a torn write followed by SIGKILL."""
    original = RunStore.append
    count = 0

    def append(self: RunStore, record: EpisodeRecord) -> None:
        nonlocal count
        count += 1
        if count < k:
            return original(self, record)
        if not self._repaired:
            self.repair()
        line = (record.to_json() + "\n").encode()
        fd = os.open(self.episodes_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, line[: len(line) // 2])
        os.fsync(fd)
        os.kill(os.getpid(), signal.SIGKILL)

    RunStore.append = append  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> None:
    """Runs (or resumes) the plan into the folder given on the command line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--tear-at", type=int, default=0)
    ap.add_argument("--delay", type=float, default=STEP_DELAY_S, help="seconds per act call")
    args = ap.parse_args(argv)
    if args.tear_at:
        tear_record(args.tear_at)
    run_plan(plan(), config(args.delay), args.out, env_factory=make_env, progress=False,
             workers=args.workers)


if __name__ == "__main__":
    main()
