"""para-bench's own policy format: what a served para-bench agent receives and returns.

**Observation dict** (client -> server), one per ``act`` call:

=====================  ====================================================================
key                    meaning
=====================  ====================================================================
``rgb`` ...            every array of the environment's observation under its own key
                       (``rgb``, ``depth``, ``intrinsics``, ``extrinsics``, ``eef_pos``,
                       ``eef_quat_xyzw``, ``gripper_qpos``, ``joint_pos``, ...)
``instruction``        the task's instruction (str)
``task``               ``benchmark/id`` (str)
``seed``               the episode seed (int)
``info``               the ``info`` dict the agent gets in-process (privileged keys only
                       for privileged agents)
``reset``              optional ``True``: this observation starts a new episode
=====================  ====================================================================

openpi's protocol has no reset message: a connection's first observation starts an
episode (the served agent's ``reset(task, seed)`` runs first), and ``reset: True`` starts
a new one on the same connection. ``task`` / ``seed`` / ``info`` may be left out by foreign
clients (defaults: ``""``, 0, ``{"instruction": ...}``); ``prompt`` is accepted for
``instruction``.

**Action dict** (server -> client): ``actions`` (K, 7) LIBERO deltas, or (K, 3) world
targets when ``action_kind == "targets"``, then with ``gripper`` (K,), optional
``orientations`` (K, 4) xyzw and ``control``; ``debug`` carries the chunk's numeric
extras (predicted ``pixels`` for videos); ``server_timing`` has ``infer_ms`` and
``batch_size``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from para_bench.types import ActionChunk

EPISODE_KEYS = ("instruction", "task", "seed", "info", "reset", "prompt")


def encode_observation(obs: dict[str, np.ndarray], info: dict[str, Any],
                       episode: dict[str, Any] | None) -> dict[str, Any]:
    """The observation dict for one ``act`` call.

    Args:
        obs: the environment's observation.
        info: the ``info`` the agent would get in-process.
        episode: ``{"task", "instruction", "seed"}`` on the first call of an episode (adds
            ``reset: True``); None afterwards.
    """
    msg: dict[str, Any] = {k: np.asarray(v) for k, v in obs.items()}
    msg["info"] = _plain(info)
    msg["instruction"] = str(info.get("instruction", ""))
    if episode is not None:
        msg.update(task=str(episode["task"]), seed=int(episode["seed"]),
                   instruction=str(episode["instruction"]), reset=True)
    return msg


def decode_observation(msg: Any) -> tuple[dict[str, np.ndarray], dict[str, Any], dict, bool]:
    """Splits a received observation dict into ``(obs, info, episode, reset)``.

    ``episode`` is ``{"task", "instruction", "seed"}`` (what ``agent.reset`` needs when an
    episode starts); ``reset`` is whether the message asks for a new episode
    (``reset: True``; a connection's first message starts one anyway).

    Raises:
        ValueError: not a dict, or a field of the wrong type.
    """
    if not isinstance(msg, dict):
        raise ValueError(f"an observation must be a dict, got {type(msg).__name__}")
    instruction = msg.get("instruction", msg.get("prompt", ""))
    task, seed = msg.get("task", ""), msg.get("seed", 0)
    if not isinstance(instruction, str) or not isinstance(task, str):
        raise ValueError("'instruction' and 'task' must be strings")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"'seed' must be an integer, got {type(seed).__name__}")
    info = msg.get("info", {"instruction": instruction, "task": task})
    if not isinstance(info, dict):
        raise ValueError("'info' must be a dict")
    obs = {k: v for k, v in msg.items() if k not in EPISODE_KEYS}
    episode = {"task": task, "instruction": instruction, "seed": int(seed)}
    return obs, info, episode, msg.get("reset") is True


def encode_chunk(chunk: ActionChunk) -> dict[str, Any]:
    """The action dict of a (validated) chunk."""
    if chunk.deltas is not None:
        out: dict[str, Any] = {"actions": chunk.deltas, "action_kind": "deltas"}
    else:
        out = {"actions": chunk.targets, "action_kind": "targets", "gripper": chunk.gripper,
               "orientations": chunk.orientations, "control": chunk.control}
    out["debug"] = {k: v for k, v in chunk.debug.items() if _numeric(v)}
    return out


def decode_chunk(msg: Any) -> ActionChunk:
    """The :class:`ActionChunk` in an action dict (validated).

    Raises:
        ValueError: no ``actions``, an unknown ``action_kind``, or a malformed chunk.
    """
    if not isinstance(msg, dict) or "actions" not in msg:
        raise ValueError("the server's answer has no 'actions'")
    kind = msg.get("action_kind", "deltas")
    if kind == "deltas":
        chunk = ActionChunk.from_deltas(np.asarray(msg["actions"], dtype=np.float64))
    elif kind == "targets":
        orient = msg.get("orientations")
        chunk = ActionChunk(targets=np.asarray(msg["actions"], dtype=np.float64),
                            gripper=msg.get("gripper"), control=msg.get("control"),
                            orientations=None if orient is None else np.asarray(orient))
    else:
        raise ValueError(f"unknown action_kind {kind!r}")
    debug = msg.get("debug")
    if isinstance(debug, dict):
        chunk.debug.update(debug)
    return chunk.validate()


def _numeric(value: Any) -> bool:
    """An array or number (what ``debug`` may carry over the wire)."""
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "biuf"
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _plain(value: Any) -> Any:
    """``info`` made sendable: dicts, lists, strings, numbers and numeric arrays; the rest
    (none today) becomes its ``str``."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value if value.dtype.kind in "biuf" else value.tolist()
    if value is None or isinstance(value, (str, bool, int, float, np.generic)):
        return value
    return str(value)
