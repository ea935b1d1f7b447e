"""A fake, fast environment and agents for runner tests, importable by worker processes.

Module-level so that Ray actors (and spawned workers) can import them by name:
``env_factory=tests.fake_env.make_env``, ``agent="tests.fake_env:ForwardAgent"``.
"""

from __future__ import annotations

import os
import time

import numpy as np


class FakeEnv:
    """Moves a point by the commanded deltas; succeeds when x > 0.1. Counts every step."""

    dt = 0.05

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.max_steps = kwargs.get("max_steps", 50)
        self.sim_steps = 0

    def reset(self, *, seed=None, options=None):
        self.pos = np.zeros(3)
        self.steps = 0
        if (options or {}).get("objects", {}) and options["objects"].get("dy", 0) > 0.14:
            from para_bench.envs.libero_env import InfeasibleScene

            raise InfeasibleScene("infeasible shift")
        return self._obs(), self._info(False)

    def step_chunk(self, chunk):
        traj = []
        for d in chunk.deltas if chunk.deltas is not None else chunk.targets:
            if self.steps >= self.max_steps:
                break
            if chunk.deltas is not None:
                self.pos = self.pos + 0.05 * np.clip(d[:3], -1, 1)
            self.steps += 1
            self.sim_steps += 1
            traj.append(self.pos.copy())
        success = bool(self.pos[0] > 0.1)
        info = self._info(success)
        info["eef_trajectory"] = np.array(traj).reshape(-1, 3)
        info["commands"] = np.zeros((len(traj), 7))
        return self._obs(), float(success), success, self.steps >= self.max_steps, info

    def _obs(self):
        return {"eef_pos": self.pos.copy(), "rgb": np.zeros((8, 8, 3), np.uint8),
                "intrinsics": np.eye(3), "extrinsics": np.eye(4)}

    def _info(self, success):
        return {"success": success, "steps": self.steps, "instruction": "go right",
                "object_poses": {"secret": np.zeros(7)}, "goal": [["on", "a", "b"]]}

    def close(self):
        pass


def make_env(**kwargs) -> FakeEnv:
    """A picklable ``env_factory`` (the class works too; this names the intent)."""
    return FakeEnv(**kwargs)


class ForwardAgent:
    """Moves +x at a seeded random speed; fails on some seeds (like test_runner's)."""

    def reset(self, task, seed):
        self.speed = np.random.default_rng(seed).uniform(0.0, 0.2)

    def act(self, obs, info):
        return np.tile([self.speed, 0, 0, 0, 0, 0, -1], (5, 1))

    def close(self):
        pass


class DyingAgent(ForwardAgent):
    """Kills its own process on seed 1 (like a segfault) and hangs on seed 2."""

    def reset(self, task, seed):
        super().reset(task, seed)
        self.seed = seed

    def act(self, obs, info):
        if self.seed == 1:
            os._exit(139)
        if self.seed == 2:
            time.sleep(600)
        return super().act(obs, info)


class BrokenAgent(ForwardAgent):
    """Cannot be built: raises in ``__init__`` (like a corrupt checkpoint)."""

    def __init__(self):
        raise RuntimeError("checkpoint is corrupt")


class VanishingAgent(ForwardAgent):
    """Kills its process while being built (like a segfault while loading)."""

    def __init__(self):
        os._exit(3)


class FileCheckpointAgent(ForwardAgent):
    """A ForwardAgent "trained" into a JSON checkpoint: ``{"speed_scale": s,
    "train_scene_ids": [...]}``; its facts come from the file, as a model agent's do."""

    def __init__(self, checkpoint: str):
        import json

        super().__init__()
        self.checkpoint = checkpoint
        with open(checkpoint) as f:
            self.payload = json.load(f)
        self.train_scene_ids = self.payload.get("train_scene_ids")

    @classmethod
    def facts(cls, checkpoint: str, **kwargs):
        import json

        from para_bench.agents.base import AgentFacts, AgentRequirements

        with open(checkpoint) as f:
            ids = json.load(f).get("train_scene_ids")
        return AgentFacts(AgentRequirements(), tuple(ids) if ids is not None else None)

    def act(self, obs, info):
        actions = super().act(obs, info)
        actions[:, 0] *= self.payload.get("speed_scale", 1.0)
        return actions
