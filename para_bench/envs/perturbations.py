"""Scene perturbations given as plain, serialisable parameters (reset options).

* :class:`CameraPerturbation` — orbit the agent-view camera about the point where its
  optical axis meets the table: ``yaw_deg`` about the world z axis, ``pitch_deg`` change
  of elevation (positive = higher), ``distance_scale`` (1.0 = as built).
* :class:`ObjectShift` — shift the task's movable objects (all, or ``names``) by
  ``dx`` / ``dy`` metres in the table frame (LIBERO's table axes are the world x / y axes),
  then let the scene settle; infeasible placements raise ``ValueError``.

:func:`parse_reset_options` validates a whole ``reset(options=...)`` into a
:class:`SceneRequest`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

MAX_YAW_DEG = 90.0
MAX_PITCH_DEG = 40.0
DISTANCE_SCALE_RANGE = (0.5, 2.0)
MAX_SHIFT_M = 0.3


def _number(d: dict, key: str, default: float, what: str) -> float:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{what} option {key!r} must be a finite number, got {value!r}")
    return float(value)


def _check_keys(d: Any, allowed: set[str], what: str) -> dict:
    if not isinstance(d, dict):
        raise ValueError(f"{what} options must be a dict, got {type(d).__name__}")
    unknown = set(d) - allowed
    if unknown:
        raise ValueError(
            f"unknown {what} option(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
        )
    return d


@dataclass(frozen=True)
class CameraPerturbation:
    """Orbit of the agent-view camera; see the module docstring."""

    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    distance_scale: float = 1.0

    @classmethod
    def from_options(cls, d: dict | None) -> CameraPerturbation | None:
        """Validates a ``camera`` reset option; ``None`` / ``{}`` means no perturbation."""
        if not d:
            return None
        _check_keys(d, {"yaw_deg", "pitch_deg", "distance_scale"}, "camera")
        p = cls(
            yaw_deg=_number(d, "yaw_deg", 0.0, "camera"),
            pitch_deg=_number(d, "pitch_deg", 0.0, "camera"),
            distance_scale=_number(d, "distance_scale", 1.0, "camera"),
        )
        if abs(p.yaw_deg) > MAX_YAW_DEG:
            raise ValueError(f"camera yaw_deg must be within ±{MAX_YAW_DEG}, got {p.yaw_deg}")
        if abs(p.pitch_deg) > MAX_PITCH_DEG:
            raise ValueError(
                f"camera pitch_deg must be within ±{MAX_PITCH_DEG}, got {p.pitch_deg}"
            )
        lo, hi = DISTANCE_SCALE_RANGE
        if not lo <= p.distance_scale <= hi:
            raise ValueError(
                f"camera distance_scale must be in [{lo}, {hi}], got {p.distance_scale}"
            )
        return p

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ObjectShift:
    """Shift of movable objects in the table plane; see the module docstring."""

    dx: float = 0.0
    dy: float = 0.0
    names: tuple[str, ...] | None = None

    @classmethod
    def from_options(cls, d: dict | None) -> ObjectShift | None:
        """Validates an ``objects`` reset option; ``None`` / ``{}`` means no perturbation."""
        if not d:
            return None
        _check_keys(d, {"dx", "dy", "names"}, "objects")
        names = d.get("names")
        if names is not None:
            if isinstance(names, str) or not all(isinstance(n, str) for n in names) or not names:
                raise ValueError("objects option 'names' must be a non-empty list of object names")
            names = tuple(names)
        p = cls(_number(d, "dx", 0.0, "objects"), _number(d, "dy", 0.0, "objects"), names)
        if math.hypot(p.dx, p.dy) > MAX_SHIFT_M:
            raise ValueError(f"object shift must be at most {MAX_SHIFT_M} m, got ({p.dx}, {p.dy})")
        return p

    def to_dict(self) -> dict:
        d = asdict(self)
        d["names"] = list(self.names) if self.names else None
        return d


RESET_OPTIONS = {"init_state", "placement_seed", "camera", "objects"}


@dataclass(frozen=True)
class SceneRequest:
    """What one reset asks for, validated: the starting scene and its perturbations.

    Attributes:
        init_state: one of LIBERO's official init states, or None with ``placement_seed``.
        placement_seed: a fresh placement from LIBERO's own sampler, seeded; or None.
        camera: the camera orbit, or None.
        shift: the object shift, or None.
    """

    init_state: int | None
    placement_seed: int | None
    camera: CameraPerturbation | None
    shift: ObjectShift | None


def _is_int(value: Any) -> bool:
    import numpy as np

    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def parse_reset_options(options: dict | None, n_init_states: int,
                        default_init_state: Callable[[], int],
                        movable_objects: list[str], task_key: str) -> SceneRequest:
    """Validates ``reset(options=...)`` (see :meth:`LiberoEnv.reset`).

    Args:
        options: the reset options (``init_state``, ``placement_seed``, ``camera``,
            ``objects``).
        n_init_states: how many official init states the task has.
        default_init_state: called (once) when neither ``init_state`` nor
            ``placement_seed`` is given.
        movable_objects: the names an ``objects`` option may name.
        task_key: the task, for messages.

    Raises:
        ValueError: unknown options, both or malformed scene choices, an init state out of
            range, an unknown object, a perturbation out of range.
    """
    options = dict(options or {})
    unknown = set(options) - RESET_OPTIONS
    if unknown:
        raise ValueError(f"unknown reset option(s) {sorted(unknown)}; allowed: "
                         f"{sorted(RESET_OPTIONS)}")
    init_state = options.get("init_state")
    placement = options.get("placement_seed")
    if placement is not None:
        if init_state is not None:
            raise ValueError("give one of init_state or placement_seed, not both")
        if not _is_int(placement) or not 0 <= placement < 2**32:
            raise ValueError(f"placement_seed must be an integer in 0..2**32-1, "
                             f"got {placement!r}")
    else:
        if init_state is None:
            init_state = default_init_state()
        if not _is_int(init_state) or not 0 <= init_state < n_init_states:
            raise ValueError(f"init_state must be an integer in 0..{n_init_states - 1}, "
                             f"got {init_state!r}")
    camera = CameraPerturbation.from_options(options.get("camera"))
    shift = ObjectShift.from_options(options.get("objects"))
    if shift and shift.names:
        unknown_objects = set(shift.names) - set(movable_objects)
        if unknown_objects:
            raise ValueError(f"unknown object(s) {sorted(unknown_objects)} in {task_key}; "
                             f"movable objects: {movable_objects}")
    return SceneRequest(None if init_state is None else int(init_state),
                        None if placement is None else int(placement), camera, shift)
