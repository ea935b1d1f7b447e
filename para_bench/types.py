"""Plain data types shared by environments, agents, the runner and the results.

Everything here is numpy / builtin only, serialisable to JSON, and cheap to import.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

ControlMode = Literal["delta", "servo", "teleport"]
RECORD_FORMAT_VERSION = 2


@dataclass
class ActionChunk:
    """What an agent returns from ``act``: one chunk of actions executed before it looks again.

    Exactly one of ``deltas`` or ``targets`` is set.

    Attributes:
        deltas: (K, 7) raw LIBERO OSC_POSE deltas in [-1, 1] (dx, dy, dz, drx, dry, drz, grip).
        targets: (K, 3) end-effector target positions, world frame, metres.
        gripper: (K,) gripper command for each target, -1 open .. +1 closed.
        orientations: optional (K, 4) target orientations as quaternions xyzw.
        control: how targets are executed (``servo`` or ``teleport``); ``None`` uses the
            run's control mode. Ignored for deltas.
        debug: optional extras for videos and logs (e.g. predicted pixels ``"pixels"``).
    """

    deltas: np.ndarray | None = None
    targets: np.ndarray | None = None
    gripper: np.ndarray | None = None
    orientations: np.ndarray | None = None
    control: ControlMode | None = None
    debug: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_deltas(cls, deltas: np.ndarray) -> ActionChunk:
        """Wraps a (7,) or (K, 7) array of LIBERO deltas."""
        return cls(deltas=np.atleast_2d(np.asarray(deltas, dtype=np.float64)))

    @classmethod
    def from_targets(
        cls,
        targets: np.ndarray,
        gripper: np.ndarray | float,
        orientations: np.ndarray | None = None,
        control: ControlMode | None = None,
    ) -> ActionChunk:
        """Builds a chunk of end-effector targets; a scalar gripper applies to all."""
        targets = np.atleast_2d(np.asarray(targets, dtype=np.float64))
        grip = np.broadcast_to(np.asarray(gripper, dtype=np.float64), (len(targets),)).copy()
        return cls(targets=targets, gripper=grip, orientations=orientations, control=control)

    def __len__(self) -> int:
        return len(self.deltas if self.deltas is not None else self.targets)

    def validate(self) -> ActionChunk:
        """Checks shapes and finiteness; raises ``ValueError`` with the reason."""
        if (self.deltas is None) == (self.targets is None):
            raise ValueError("ActionChunk needs exactly one of deltas or targets")
        if self.deltas is not None:
            d = np.asarray(self.deltas, dtype=np.float64)
            if d.ndim != 2 or d.shape[1] != 7 or len(d) == 0:
                raise ValueError(f"deltas must have shape (K, 7) with K >= 1, got {d.shape}")
            if not np.all(np.isfinite(d)):
                raise ValueError("deltas contain NaN or inf")
            self.deltas = d
            return self
        t = np.asarray(self.targets, dtype=np.float64)
        if t.ndim != 2 or t.shape[1] != 3 or len(t) == 0:
            raise ValueError(f"targets must have shape (K, 3) with K >= 1, got {t.shape}")
        g = np.asarray(self.gripper if self.gripper is not None else np.zeros(len(t)), float)
        if g.shape != (len(t),):
            raise ValueError(f"gripper must have shape ({len(t)},), got {g.shape}")
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(g))):
            raise ValueError("targets or gripper contain NaN or inf")
        if self.orientations is not None:
            o = np.asarray(self.orientations, dtype=np.float64)
            if o.shape != (len(t), 4) or not np.all(np.isfinite(o)):
                raise ValueError(f"orientations must be finite with shape ({len(t)}, 4)")
            norms = np.linalg.norm(o, axis=1)
            if np.any(np.abs(norms - 1.0) > 0.1):
                i = int(np.argmax(np.abs(norms - 1.0)))
                raise ValueError(f"orientation {i} is not a unit quaternion (norm "
                                 f"{norms[i]:.3g}); give (x, y, z, w) with norm 1")
            self.orientations = o
        if self.control not in (None, "servo", "teleport"):
            raise ValueError(f"target chunks are executed by servo or teleport, not {self.control}")
        self.targets, self.gripper = t, g
        return self


def as_action_chunk(action: Any) -> ActionChunk:
    """Normalises an agent's return value: a plain array means LIBERO deltas."""
    if isinstance(action, ActionChunk):
        return action.validate()
    arr = np.asarray(action, dtype=np.float64)
    if arr.ndim not in (1, 2) or arr.shape[-1] != 7:
        raise ValueError(f"a plain action must be (7,) or (K, 7) LIBERO deltas, got {arr.shape}")
    return ActionChunk.from_deltas(arr).validate()


@dataclass(frozen=True)
class EpisodeSpec:
    """One episode of a plan: everything that fixes the scene, independent of the agent.

    Attributes:
        suite: suite name, e.g. ``pos_ood``.
        suite_version: version of the suite definition the plan came from.
        split: ``train`` or ``test``.
        benchmark: LIBERO benchmark, e.g. ``libero_spatial``.
        task_id: task index within the benchmark.
        init_state: index into the task's 50 official init states (evaluation scenes), or
            None when the scene is sampled.
        placement_seed: seed of LIBERO's own placement sampler (the BDDL regions, as LIBERO
            generated its init files) for a sampled scene (training scenes), or None.
        camera: viewpoint perturbation (``yaw_deg``, ``pitch_deg``, ``distance_scale``) or None.
        objects: object shift (``dx``, ``dy``, optional ``names``) or None.
        seed: episode seed (agent and environment RNG).
        extra: suite-specific annotations (e.g. distance to the nearest training position).
    """

    suite: str
    suite_version: int
    split: str
    benchmark: str
    task_id: int
    init_state: int | None
    camera: dict | None = None
    objects: dict | None = None
    seed: int = 0
    extra: dict = field(default_factory=dict, hash=False, compare=False)
    placement_seed: int | None = None

    def __post_init__(self) -> None:
        if (self.init_state is None) == (self.placement_seed is None):
            raise ValueError("an EpisodeSpec needs exactly one of init_state (an official "
                             "init state) or placement_seed (a sampled scene)")

    @property
    def task(self) -> str:
        """``benchmark/task_id``, the form ``--tasks`` takes."""
        return f"{self.benchmark}/{self.task_id}"

    @property
    def perturbation(self) -> dict:
        """The reset options that perturb the scene."""
        return {"camera": self.camera, "objects": self.objects}

    @property
    def base_scene(self) -> str:
        """``init<N>`` (official init state N) or ``sampled<S>`` (placement seed S)."""
        if self.init_state is not None:
            return f"init{self.init_state}"
        return f"sampled{self.placement_seed}"

    @property
    def scene_id(self) -> str:
        """Stable id of the scene alone: task, base placement and perturbation.

        Independent of the suite, split and seed, so a checkpoint's training scenes can be
        compared with any plan's (two plans that put the same objects in the same places
        under the same camera share a scene id).
        """
        key = {"task": self.task, "scene": self.base_scene, "camera": self.camera,
               "objects": self.objects}
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.task}/{self.base_scene}/{digest}"

    @property
    def episode_id(self) -> str:
        """Stable id: a hash of everything that defines the scene (not ``extra``)."""
        key = {k: v for k, v in asdict(self).items() if k != "extra"}
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        return f"{self.suite}-{self.split}-{self.benchmark}-{self.task_id}-{digest}"

    def reset_options(self) -> dict:
        """Options for ``env.reset(options=...)``."""
        opts: dict[str, Any] = ({"init_state": self.init_state} if self.init_state is not None
                                else {"placement_seed": self.placement_seed})
        if self.camera:
            opts["camera"] = dict(self.camera)
        if self.objects:
            opts["objects"] = dict(self.objects)
        return opts

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> EpisodeSpec:
        return cls(**d)


@dataclass
class EpisodeRecord:
    """One finished episode, as written to ``episodes.jsonl`` (one JSON object per line).

    Attributes:
        format: record format version (:data:`RECORD_FORMAT_VERSION`).
        episode_id: :attr:`EpisodeSpec.episode_id`.
        spec: the full :class:`EpisodeSpec` as a dict.
        task: ``benchmark/task_id``.
        init_state: official init-state index, or None for a sampled scene (see ``spec``).
        perturbation: ``{"camera": ..., "objects": ...}``.
        agent: agent name.
        checkpoint: checkpoint path or None; ``checkpoint_sha`` its content hash.
        status: ``ok`` (the episode ran to the end), ``error`` (a fault ended it) or
            ``infeasible`` (the scene cannot take its perturbation: not a trial, excluded
            from ``n``).
        error: the reason when ``status != "ok"``.
        fault: who owns a non-ok episode: ``agent``, ``environment``, ``reset``,
            ``simulator``, ``worker`` or ``scene`` (see :mod:`para_bench.evaluation.worker`).
        success: task success (False for errors).
        steps: control steps executed.
        metrics: per-episode metrics (``jerk``, ``accel_mean``, ``coverage``, ...).
        eef_trajectory: executed EEF positions at control rate, (T, 3) as nested lists.
        wall_time_s: seconds for the episode (the agent's episode only: reference rollouts
            and start-up are not counted).
        run_id: the identity hash of the run that made the record (its run folder's
            manifest holds the identity itself).
        train_scene: the episode's scene is one the checkpoint was trained on (only with
            ``--allow-train-scenes``; None when the checkpoint's scenes are unknown).
    """

    episode_id: str
    spec: dict
    task: str
    init_state: int | None
    perturbation: dict
    agent: str
    status: str
    success: bool
    steps: int
    metrics: dict
    checkpoint: str | None = None
    checkpoint_sha: str | None = None
    error: str | None = None
    eef_trajectory: list | None = None
    wall_time_s: float = 0.0
    fault: str | None = None
    run_id: str | None = None
    train_scene: bool | None = None
    format: int = RECORD_FORMAT_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=_json_default)

    @classmethod
    def from_dict(cls, d: dict) -> EpisodeRecord:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer, np.bool_)):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
