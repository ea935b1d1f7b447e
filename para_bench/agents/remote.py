"""The ``remote`` agent: a policy served elsewhere, over openpi's websocket protocol.

``para-bench run --agent remote --policy-url ws://host:port`` evaluates whatever listens
there -- ``para-bench serve`` or openpi's own policy server -- through the same episode loop
and the same control path as a local agent: the returned actions come back as an
:class:`~para_bench.types.ActionChunk` and the environment executes them.

Two formats (``policy_format``):

* ``para-bench`` (default): the observation travels under para-bench's own keys
  (:mod:`para_bench.serving.para_format`); the served agent's requirements (image size,
  depth, control mode, render quality) come from the server's metadata, so the environment
  renders what that agent needs and it behaves exactly as it does in-process.
* ``openpi-libero``: what openpi's LIBERO example sends (:mod:`para_bench.serving.libero_format`:
  both cameras at 256 px, LIBERO's render settings, rotated and padded to 224, the 8-value
  robosuite state, the instruction as ``prompt``); the first ``replan_steps`` returned
  actions run as LIBERO deltas, then it asks again.

A slow or dead server fails the call: the episode in flight becomes an error record with
the reason, and the next episode reconnects (trying for ``connect_timeout`` seconds) -- to
the same policy: with ``served`` (the CLI passes what the server served when the run
started; it is part of the run's identity), a server that now serves another agent or
checkpoint is refused. Records carry ``policy``: the format, the URL and what the server
said it serves.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from para_bench.agents.base import AgentFacts, AgentRequirements, BaseAgent
from para_bench.serving import libero_format, para_format
from para_bench.serving.client import PolicyClient, RemotePolicyError
from para_bench.types import ActionChunk

POLICY_FORMATS = ("para-bench", "openpi-libero")
API_KEY_ENV = "PARA_BENCH_API_KEY"


class RemoteAgent(BaseAgent):
    """A policy behind a websocket policy server (openpi's protocol).

    Args:
        policy_url: ``ws://host:port``.
        policy_format: ``para-bench`` or ``openpi-libero``.
        replan_steps: ``openpi-libero``: actions executed per query (openpi's default 5).
        api_key: the server's API key (default: the ``PARA_BENCH_API_KEY`` environment
            variable, which is how ``--api-key`` reaches worker processes without being
            written to the run's manifest).
        timeout: seconds to wait for each answer.
        connect_timeout: seconds to keep trying to reconnect at an episode's start.
        served: ``{"agent", "checkpoint_sha"}`` the server must be serving (``para-bench``
            format), or None.

    Raises:
        RemotePolicyError: no server at the URL, a refused key, or (``para-bench`` format)
            a server that does not describe a para-bench agent.
    """

    def __init__(self, policy_url: str, policy_format: str = "para-bench",
                 replan_steps: int = 5, api_key: str | None = None, timeout: float = 60.0,
                 connect_timeout: float = 20.0, served: dict[str, Any] | None = None) -> None:
        if policy_format not in POLICY_FORMATS:
            raise ValueError(f"unknown policy format {policy_format!r}; choose one of "
                             f"{', '.join(POLICY_FORMATS)}")
        if replan_steps < 1:
            raise ValueError(f"replan_steps must be >= 1, got {replan_steps}")
        self.policy_format = policy_format
        self.replan_steps = int(replan_steps)
        self.served = served
        self.client = PolicyClient(policy_url, api_key=api_key or os.environ.get(API_KEY_ENV),
                                   timeout=timeout, connect_timeout=connect_timeout)
        meta = self._connect(retry=False)
        facts = facts_from_metadata(meta, policy_url, policy_format)
        self.requirements, self.train_scene_ids = facts.requirements, facts.train_scene_ids
        #: what records say about the policy that ran (see the module docstring)
        self.policy_record = {
            "format": policy_format, "url": policy_url,
            "server": {k: meta[k] for k in ("server", "agent", "checkpoint_sha")
                       if k in meta and isinstance(meta[k], (str, type(None)))},
        }
        if policy_format == "openpi-libero":
            self.policy_record["replan_steps"] = self.replan_steps
        self._episode: dict[str, Any] | None = None

    def reset(self, task: dict[str, Any], seed: int) -> None:
        super().reset(task, seed)
        self._episode = {"task": task.get("task", ""), "seed": int(seed),
                         "instruction": task.get("instruction", "")}
        if not self.client.connected:  # the last episode lost it: try again (a restart)
            self._connect(retry=True)

    def act(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> ActionChunk:
        if self.policy_format == "openpi-libero":
            instruction = (self._episode or {}).get("instruction") or info.get("instruction", "")
            answer = self.client.infer(libero_format.encode_observation(obs, instruction))
            return ActionChunk.from_deltas(
                libero_format.decode_actions(answer, self.replan_steps))
        episode, self._episode = self._episode, None  # sent once: it starts the episode
        msg = para_format.encode_observation(obs, info, episode)
        return para_format.decode_chunk(self.client.infer(msg))

    def close(self) -> None:
        self.client.close()

    def _connect(self, retry: bool) -> dict[str, Any]:
        meta = self.client.connect(retry=retry)
        if self.served is not None and served_policy(meta) != self.served:
            self.client.close()
            raise RemotePolicyError(f"{self.client.url} now serves {served_policy(meta)}, not "
                                    f"{self.served} (the policy this run evaluates)")
        return meta

    @classmethod
    def facts(cls, policy_url: str, policy_format: str = "para-bench",
              api_key: str | None = None, timeout: float = 60.0, **kwargs: Any) -> AgentFacts:
        """What the runner must know before any episode: the served agent's requirements and
        training scenes (read from the server's metadata), or the LIBERO convention's."""
        from para_bench.serving.client import check_server

        meta = {}
        if policy_format == "para-bench":
            meta = check_server(policy_url, api_key or os.environ.get(API_KEY_ENV),
                                timeout=min(timeout, 30.0))
        return facts_from_metadata(meta, policy_url, policy_format)


def served_policy(meta: dict[str, Any]) -> dict[str, Any]:
    """What a para-bench server serves: ``{"agent", "checkpoint_sha"}``."""
    return {"agent": meta.get("agent"), "checkpoint_sha": meta.get("checkpoint_sha")}


def facts_from_metadata(meta: dict[str, Any], url: str, policy_format: str) -> AgentFacts:
    """The remote agent's :class:`AgentFacts`: the served agent's (``para-bench``) or the
    LIBERO convention's (``openpi-libero``: 256 px, LIBERO's rendering, wrist camera,
    deltas)."""
    if policy_format != "para-bench":
        return AgentFacts(AgentRequirements(image_size=libero_format.RENDER_SIZE,
                                            render_quality="libero", control="delta",
                                            wrist=True))
    ids = meta.get("train_scene_ids")
    return AgentFacts(requirements_from_metadata(meta, url),
                      tuple(ids) if isinstance(ids, list) else None)


def requirements_from_metadata(meta: dict[str, Any], url: str) -> AgentRequirements:
    """The served agent's requirements from a para-bench server's metadata.

    Raises:
        RemotePolicyError: the metadata describes no para-bench agent.
    """
    req = meta.get("requirements")
    if meta.get("policy_format") != "para-bench" or not isinstance(req, dict):
        raise RemotePolicyError(
            f"{url} does not serve a para-bench agent (its metadata has no para-bench "
            "requirements); for openpi's LIBERO policies use --policy-format openpi-libero")
    known = set(AgentRequirements.__dataclass_fields__)
    return AgentRequirements(**{k: v for k, v in req.items() if k in known})
