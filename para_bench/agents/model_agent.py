"""One agent for every learned policy: checkpoint in, end-effector targets out.

:class:`ModelAgent` loads a checkpoint (:mod:`para_bench.models.checkpoint`), turns each
observation into the model's batch with :func:`~para_bench.models.sample.observation_sample`
(the same function every training sample is built with), and returns the first ``n_exec``
predicted points as an :class:`ActionChunk` of targets, one target per control step
(:func:`~para_bench.models.sample.execution_path`: linearly interpolated at ``stride``
steps per predicted point, so the policy runs at the speed of its demonstrations). Targets
go through the run's control mode (``servo`` by default, the PARA protocol); the predicted
pixels ride along in ``debug["pixels"]`` for videos. The agent never touches the simulator.

Gripper commands are sent as the demonstrations sent them: ``-1`` (open), ``+1`` (close)
or ``0`` (hold the fingers where they are; the oracle holds half-closed fingers while it
descends onto a bowl's rim): the decoded value is rounded to the nearest of the three.
Mapping "hold" to "close" shuts the fingers before they reach the rim (measured: a
perfect, state-indexed replay of the demonstrations then fails every episode).

``requirements.render_quality`` is the render quality the checkpoint's training images
came from, so the runner renders the same way.
"""

from __future__ import annotations

import copy
from collections import deque
from typing import Any, ClassVar

import numpy as np

from para_bench.agents.base import AgentFacts, AgentRequirements, BaseAgent
from para_bench.types import ActionChunk


class ModelAgent(BaseAgent):
    """Base of the model agents; subclasses set ``model_name``.

    Args:
        checkpoint: path to a checkpoint written by ``para-bench train``.
        device: ``cpu`` or ``cuda``.
        threads: torch CPU threads of this process (one by default: the agent runs beside
            a single-threaded simulator, often in parallel workers, and oversubscribed
            threads make torch 10-100x slower).
    """

    model_name: ClassVar[str] = ""

    def __init__(self, checkpoint: str | None = None, device: str = "cpu",
                 threads: int | None = 1) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)

        from para_bench.models.checkpoint import CheckpointError, load_policy

        if not checkpoint:
            raise CheckpointError(
                f"agent {self.model_name} needs --checkpoint (train one with "
                f"para-bench train --agent {self.model_name} --data DEMOS.hdf5 --out CKPT.pt)")
        self.checkpoint = checkpoint
        self.device = torch.device(device)
        self.model = load_policy(checkpoint, expect=self.model_name, device=self.device)
        self.config = self.model.config
        self.requirements = self._requirements(self.config.to_dict(), self.model.train_info)
        #: scene ids of the training demos (None: unknown, e.g. LIBERO's own demo files);
        #: the runner refuses to evaluate on them
        self.train_scene_ids: list[str] | None = self.model.train_info.get("train_scene_ids")
        self._history: deque = deque(maxlen=self.config.history)
        self._eef_start: np.ndarray | None = None

    @classmethod
    def facts(cls, checkpoint: str | None = None, **kwargs: Any) -> AgentFacts:
        """Requirements and training scenes, read from the checkpoint (no model is built)."""
        from para_bench.models.checkpoint import read_checkpoint

        cls.check_checkpoint(checkpoint)
        payload = read_checkpoint(checkpoint)
        ids = (payload.get("train") or {}).get("train_scene_ids")
        return AgentFacts(cls._requirements(payload["config"], payload.get("train") or {}),
                          tuple(ids) if ids is not None else None)

    @staticmethod
    def _requirements(config: dict[str, Any], train: dict[str, Any]) -> AgentRequirements:
        return AgentRequirements(image_size=config.get("image_size"),
                                 render_quality=train.get("render_quality"))

    @classmethod
    def check_checkpoint(cls, path: str | None) -> None:
        """Raises a one-line ``ValueError`` if ``path`` cannot serve this agent."""
        from para_bench.models.checkpoint import CheckpointError, read_checkpoint

        if not path:
            raise CheckpointError(f"agent {cls.model_name} needs --checkpoint")
        model = read_checkpoint(path)["model"]
        if model != cls.model_name:
            raise CheckpointError(f"checkpoint {path} holds a {model} policy, not "
                                  f"{cls.model_name}; use --agent {model}")

    def reset(self, task: dict[str, Any], seed: int) -> None:
        import torch

        super().reset(task, seed)
        torch.manual_seed(seed)
        self._history.clear()
        self._eef_start = None

    def _batch(self, obs: dict[str, np.ndarray]) -> dict[str, Any]:
        """The model's batch (batch axis 1) for a live observation; keeps the history."""
        import torch

        from para_bench.models.sample import observation_sample

        if self._eef_start is None:
            self._eef_start = np.asarray(obs["eef_pos"], dtype=np.float64).copy()
        s = observation_sample(obs["rgb"], obs["intrinsics"], obs["extrinsics"], obs["eef_pos"],
                               self._eef_start, obs["gripper_qpos"])
        self._history.append((s["rgb"], s["eef_uv"], s["eef_pos"]))
        if self.config.history > 1:
            hist = list(self._history)
            hist = [hist[0]] * (self.config.history - len(hist)) + hist  # pad with the first
            s["history_rgb"] = torch.stack([h[0] for h in hist])
            s["history_uv"] = torch.stack([h[1] for h in hist])
            s["history_xyz"] = torch.stack([h[2] for h in hist])
        return {k: v[None].to(self.device) for k, v in s.items()}

    def act(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> ActionChunk:
        import torch

        with torch.no_grad():
            pred = self.model.predict(self.prepare(obs))
        return self.finish(obs, pred)

    # The batched path of ``para-bench serve``: ``act`` split in two around the forward pass,
    # so that one ``model.predict`` can serve the batches of several agents stacked.
    def spawn(self) -> ModelAgent:
        """Another agent sharing this one's loaded model, with its own episode state."""
        other = copy.copy(self)
        other._history = deque(maxlen=self.config.history)
        other._eef_start = None
        return other

    def prepare(self, obs: dict[str, np.ndarray]) -> dict[str, Any]:
        """The model's input for one observation (batch size 1); advances the episode state."""
        return self._batch(obs)

    def finish(self, obs: dict[str, np.ndarray], pred: dict[str, Any]) -> ActionChunk:
        """The chunk for ``obs`` from ``model.predict``'s output for it (batch size 1)."""
        from para_bench.models.sample import execution_path

        c = self.config
        n = min(c.n_exec, c.n_window)
        points = pred["xyz"][0, :n].cpu().numpy().astype(np.float64)
        grip = pred["gripper"][0, :n].cpu().numpy().astype(np.float64)
        rot = pred["rot"][0, :n].cpu().numpy().astype(np.float64)
        targets, per_step = execution_path(np.asarray(obs["eef_pos"], dtype=np.float64),
                                           points, c)
        chunk = ActionChunk.from_targets(
            targets, gripper_command(grip[per_step]),
            orientations=self.model.stats.rotation_from_code(rot)[per_step])
        if "uv" in pred:
            chunk.debug["pixels"] = pred["uv"][0, :n].cpu().numpy()
        return chunk


def gripper_command(value: np.ndarray) -> np.ndarray:
    """Decoded gripper values -> the nearest LIBERO command of -1 (open), 0 (hold), +1
    (close)."""
    return np.clip(np.round(np.asarray(value, dtype=np.float64)), -1.0, 1.0)
