"""Oracle reference trajectories (free-space coverage), cached on disk by what made them.

A reference is the oracle's executed EEF trajectory for the same episode spec, computed
under the run's control settings. It is stored at
``<root>/<key>/<episode_id>.npy`` where ``key`` hashes the oracle's source, the control
path version and every control setting that shapes the trajectory (max steps, action
scale, zero rotation, physics loop): a changed oracle or setting never reads a stale file.
An oracle failure is cached (as an empty array: "no reference") only under the default
step limit or more, so a short smoke run (``--max-steps 50``) cannot poison later runs.
References are computed before an episode starts, outside its timing and timeout.
The reference oracle takes the best-scoring rim side (:data:`REFERENCE_RIM_SIDE_MARGIN`),
whatever margin the run's demos were collected with, so coverage stays comparable across
runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from para_bench.envs.control import CONTROL_PATH_VERSION
from para_bench.evaluation.config import RunConfig
from para_bench.evaluation.env_pool import EnvPool
from para_bench.types import EpisodeSpec

DEFAULT_MAX_STEPS = 600
REFERENCE_RIM_SIDE_MARGIN = 0.0  # the reference oracle's rim_side_margin (metres)


@cache
def oracle_source_hash() -> str:
    """sha256 (first 12 hex) of the oracle's source file."""
    import para_bench.agents.oracle as oracle

    return hashlib.sha256(Path(oracle.__file__).read_bytes()).hexdigest()[:12]


def reference_key(config: RunConfig) -> str:
    """The cache key of references computed under ``config``'s control settings."""
    key = {"oracle": oracle_source_hash(), "control_path": CONTROL_PATH_VERSION,
           "max_steps": config.max_steps, "action_scale": config.action_scale,
           "zero_rotation": config.zero_rotation,
           "physics": getattr(config, "physics", None)}
    if REFERENCE_RIM_SIDE_MARGIN:  # 0 leaves the keys of earlier references as they were
        key["rim_side_margin"] = REFERENCE_RIM_SIDE_MARGIN
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


class ReferenceCache:
    """Oracle reference trajectories per episode spec, computed once and cached on disk.

    Args:
        root: the cache folder (one sub-folder per :func:`reference_key`).
        config: the run's settings (the oracle runs under its control settings).
        pool_factory: builds the oracle's own environment pool.
    """

    def __init__(self, root: str | Path, config: RunConfig,
                 pool_factory: Callable[[], EnvPool]) -> None:
        self.config = config
        self.folder = Path(root) / reference_key(config)
        self.pool_factory = pool_factory
        self._pool: EnvPool | None = None
        self._oracle: Any = None

    def path(self, spec: EpisodeSpec) -> Path:
        return self.folder / f"{spec.episode_id}.npy"

    def get(self, spec: EpisodeSpec) -> np.ndarray | None:
        """The reference trajectory (N, 3); empty when the oracle failed; None when it could
        not be computed (a simulator fault, or a failure under a short step limit)."""
        path = self.path(spec)
        if path.exists():
            return np.load(path)
        from para_bench.evaluation.episode import run_episode
        from para_bench.registry import make_agent

        if self._oracle is None:
            self._oracle = make_agent("oracle", rim_side_margin=REFERENCE_RIM_SIDE_MARGIN)
            self._pool = self.pool_factory()
        try:
            env = self._pool.get(spec, self._oracle.requirements)
            out = run_episode(env, self._oracle, spec)
        except Exception:  # noqa: BLE001 - no reference: coverage stays empty
            self._pool.discard()
            return None
        if not out.success and self.config.max_steps < DEFAULT_MAX_STEPS:
            return None  # perhaps only the step limit: do not cache a failure
        ref = out.traj if out.success else np.zeros((0, 3))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, ref)
        os.replace(tmp, path)  # atomic: workers may compute references concurrently
        return ref

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
